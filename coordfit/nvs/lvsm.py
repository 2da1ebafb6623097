"""LVSM decoder-only: full self-attention over [all input tokens ; one target's tokens].

Each target view gets its own sequence, so input tokens are re-processed for every
target and attend to that target's tokens: nothing can be cached, and the cost grows
quadratically with the number of input views. This is the reference the efficient
model is measured against.
"""

from __future__ import annotations

import torch
from torch import nn

from .layers import Block, NVSConfig, RenderHead, Tokenizer, camera_inputs, init_weights

__all__ = ["LVSM"]


class LVSM(nn.Module):
    name = "lvsm"

    def __init__(self, cfg: NVSConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg or NVSConfig()
        cfg.validate()
        self.input_tokens = Tokenizer(9, cfg)
        self.target_tokens = Tokenizer(6, cfg)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.depth))
        self.head = RenderHead(cfg)
        init_weights(self, cfg.depth)

    def forward(
        self,
        images: torch.Tensor,
        c2w: torch.Tensor,
        fxfycxcy: torch.Tensor,
        target_c2w: torch.Tensor,
        target_fxfycxcy: torch.Tensor,
    ) -> torch.Tensor:
        """Render targets. images ``[B, Vi, 3, H, W]`` in [0, 1], c2w ``[B, Vi, 4, 4]``,
        fxfycxcy ``[B, Vi, 4]``, target_c2w ``[B, Vt, 4, 4]``, target_fxfycxcy ``[B, Vt, 4]``
        -> ``[B, Vt, 3, H, W]`` in [0, 1]."""
        b, vi, _, h, w = images.shape
        vt = target_c2w.shape[1]
        grid = self.cfg.check_image(h, w)
        n = grid[0] * grid[1]
        x_in = self.input_tokens(camera_inputs(c2w, fxfycxcy, h, w, images))  # [B*Vi, n, d]
        x_in = x_in.view(b, 1, vi * n, -1).expand(b, vt, vi * n, -1)
        x_t = self.target_tokens(camera_inputs(target_c2w, target_fxfycxcy, h, w)).view(b, vt, n, -1)
        seq = torch.cat([x_in, x_t], dim=2).flatten(0, 1)  # [B*Vt, (Vi+1)*n, d]
        for block in self.blocks:
            seq = block(seq, grid)
        out = self.head(seq[:, vi * n :], grid)  # [B*Vt, 3, H, W]
        return out.view(b, vt, 3, h, w)
