"""Efficient-LVSM: a dual-stream model whose input views never attend to each other.

* Input stream (``depth`` blocks): self-attention inside each input view, MLP.
* Target stream (``depth`` blocks, separate parameters): self-attention inside each
  target view, then cross-attention to the tokens of all input views taken after the
  SAME layer of the input stream (co-refinement), then MLP.

Because input views are processed independently, their per-layer cross-attention keys
and values can be cached: :meth:`EfficientLVSM.add_views` runs only new views through
the input stream and appends to a :class:`ViewCache`; :meth:`EfficientLVSM.render`
reads the cache. Any number of input views works, including counts not seen in training.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..core.errors import CoordfitError
from .layers import Block, NVSConfig, RenderHead, Tokenizer, camera_inputs, init_weights

__all__ = ["EfficientLVSM", "ViewCache"]


@dataclass
class ViewCache:
    """Per-layer cross-attention keys and values of the input views seen so far."""

    keys: list[torch.Tensor]  # per layer [B, heads, Vi*n, head_dim], k-norm applied
    values: list[torch.Tensor]  # per layer [B, heads, Vi*n, head_dim]
    num_views: int
    image_size: tuple[int, int]  # (H, W)


class EfficientLVSM(nn.Module):
    name = "efficient-lvsm"

    def __init__(self, cfg: NVSConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg or NVSConfig()
        cfg.validate()
        self.input_tokens = Tokenizer(9, cfg)
        self.target_tokens = Tokenizer(6, cfg)
        self.input_blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.depth))
        self.target_blocks = nn.ModuleList(Block(cfg, cross=True) for _ in range(cfg.depth))
        self.head = RenderHead(cfg)
        init_weights(self, 2 * cfg.depth)

    def input_features(
        self, images: torch.Tensor, c2w: torch.Tensor, fxfycxcy: torch.Tensor
    ) -> list[torch.Tensor]:
        """Input-stream tokens after every layer, each ``[B, Vi, n, d]``.

        Views are folded into the batch, so each view only ever attends to itself.
        """
        b, vi, _, h, w = images.shape
        grid = self.cfg.check_image(h, w)
        x = self.input_tokens(camera_inputs(c2w, fxfycxcy, h, w, images))  # [B*Vi, n, d]
        feats = []
        for block in self.input_blocks:
            x = block(x, grid)
            feats.append(x.view(b, vi, *x.shape[1:]))
        return feats

    def add_views(
        self,
        cache: ViewCache | None,
        images: torch.Tensor,
        c2w: torch.Tensor,
        fxfycxcy: torch.Tensor,
    ) -> ViewCache:
        """Run only the new views ``[B, V, 3, H, W]`` through the input stream and return a
        cache holding the old and the new views' per-layer keys and values."""
        b, vi, _, h, w = images.shape
        if cache is not None and (cache.image_size != (h, w) or cache.keys[0].shape[0] != b):
            raise CoordfitError(
                f"new views are {h}x{w} (batch {b}) but the cache holds "
                f"{cache.image_size[0]}x{cache.image_size[1]} (batch {cache.keys[0].shape[0]})"
            )
        keys, values = [], []
        for layer, (block, feat) in enumerate(zip(self.target_blocks, self.input_features(images, c2w, fxfycxcy))):
            k, v = block.cross_keys_values(feat.flatten(1, 2))  # [B, heads, V*n, Dh]
            if cache is not None:
                k = torch.cat([cache.keys[layer], k], dim=2)
                v = torch.cat([cache.values[layer], v], dim=2)
            keys.append(k)
            values.append(v)
        total = vi + (cache.num_views if cache is not None else 0)
        return ViewCache(keys=keys, values=values, num_views=total, image_size=(h, w))

    def render(self, cache: ViewCache, target_c2w: torch.Tensor, target_fxfycxcy: torch.Tensor) -> torch.Tensor:
        """Render targets (c2w ``[B, Vt, 4, 4]``, fxfycxcy ``[B, Vt, 4]``) from a cache
        -> ``[B, Vt, 3, H, W]`` in [0, 1]."""
        b, vt = target_c2w.shape[:2]
        h, w = cache.image_size
        grid = self.cfg.check_image(h, w)
        x = self.target_tokens(camera_inputs(target_c2w, target_fxfycxcy, h, w))  # [B*Vt, n, d]
        for layer, block in enumerate(self.target_blocks):
            x = block(x, grid, (cache.keys[layer], cache.values[layer]), views_per_item=vt)
        return self.head(x, grid).view(b, vt, 3, h, w)

    def forward(
        self,
        images: torch.Tensor,
        c2w: torch.Tensor,
        fxfycxcy: torch.Tensor,
        target_c2w: torch.Tensor,
        target_fxfycxcy: torch.Tensor,
    ) -> torch.Tensor:
        """Same signature and shapes as :meth:`LVSM.forward`."""
        return self.render(self.add_views(None, images, c2w, fxfycxcy), target_c2w, target_fxfycxcy)
