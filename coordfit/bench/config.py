"""What ``coordfit report`` (:class:`ReportConfig`) and ``coordfit nvs bench``
(:class:`BenchConfig`) run, importable without torch: the commands' flags are made from
these fields, their comments the help."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ..core.errors import CoordfitError
from ..core.registry import Config

__all__ = ["ReportConfig", "BenchConfig"]


@dataclass
class ReportConfig(Config):
    """Which suite ``coordfit report`` runs, which part of it, with what budgets and where."""

    suite: Literal["quick", "standard", "full"] = "quick"  # quick (no data, under 10 minutes on 2 CPU cores), standard or full
    data: str | None = None  # real-data folder (default: $COORDFIT_DATA or ../shared/data)
    shard: str | None = None  # run slice I of N (1-based), e.g. 3/8; merge the slices later
    steps: int | None = None  # override the suite's equal_steps steps (a reduced run)
    seconds: float | None = None  # override the suite's equal_time seconds
    repeats: int | None = None  # override the suite's timed repeats (default: the suite's)
    device: str = "auto"  # auto, cpu, cuda or mps
    threads: int = 1  # torch CPU threads: 1 keeps ratios steady on a shared machine; raise it on a dedicated one

    def validate(self) -> None:
        super().validate()
        if self.threads < 1:
            raise CoordfitError(f"--threads must be at least 1, got {self.threads}")


@dataclass
class BenchConfig(Config):
    """What ``coordfit nvs bench`` measures."""

    width: int = 128
    """token width of both models"""
    depth: int = 4
    """layers per stream of efficient-lvsm (lvsm gets twice as many)"""
    head_dim: int = 64
    """channels per attention head"""
    patch: int = 4
    """patch size of both models (32 px, patch 4: 64 tokens per view)"""
    size: int = 32
    """image height and width in pixels"""
    views: list[int] = field(default_factory=lambda: [2, 4, 8, 16, 32])
    """input view counts of the model tables (repeat the flag, or 2,4,8)"""
    targets: int = 8
    """target views rendered per call"""
    tokens: list[int] = field(default_factory=lambda: [1024, 4096, 16384])
    """token counts of the attention table, rounded down to a square"""
    quadtree_levels: int = 4
    """QuadTree pyramid levels (fewer where the token grid halves fewer times)"""
    quadtree_topk: list[int] = field(default_factory=lambda: [8, 8, 8])
    """QuadTree keys kept per query at each level above the finest, coarsest first"""
    repeats: int = 3
    """timed calls per row after one warm-up call (the median is reported)"""
    isolate: bool = True
    """on a CPU, time each attention row in a fresh process (honest peak memory)"""

    def validate(self) -> None:
        """One line on the first value that cannot be measured."""
        super().validate()
        from ..nvs.layers import NVSConfig

        for name in ("width", "depth", "head_dim", "patch", "size", "targets", "repeats", "quadtree_levels"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise CoordfitError(f"--{name.replace('_', '-')} must be a positive integer, got {value!r}")
        if not self.views or min(self.views) < 1:
            raise CoordfitError(f"--views must be positive, got {self.views}")
        if not self.tokens or min(self.tokens) < 4:
            raise CoordfitError(f"--tokens must be at least 4, got {self.tokens}")
        model = NVSConfig(width=self.width, head_dim=self.head_dim, depth=self.depth, patch=self.patch)
        model.validate()
        model.check_image(self.size, self.size)
