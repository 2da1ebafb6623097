"""Posed views fitted as a radiance field: the signal, the posed-image data, rendering
and the learned view-synthesis prior."""

from .signal import ViewsSignal as ViewsSignal

__all__ = ["ViewsSignal"]
