"""Building blocks shared by LVSM and Efficient-LVSM: config, attention, block, tokenizer, head."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from ..core.errors import CoordfitError
from ..core.registry import Config
from .attention import AttentionKind, check_quadtree, full_attention, quadtree_attention
from ..geometry.cameras import plucker

__all__ = ["NVSConfig", "Attention", "Block", "Tokenizer", "RenderHead", "init_weights", "camera_inputs"]


@dataclass
class NVSConfig(Config):
    """Sizes and attention options of a view-synthesis model (``from_dict`` refuses unknown
    keys; ``validate()`` checks the choices and sizes, each with one line)."""

    patch: int = 4
    """Patch size p: each p x p pixel patch becomes one token."""
    width: int = 128
    """Token width d."""
    depth: int = 4
    """Transformer layers (per stream for efficient-lvsm)."""
    head_dim: int = 64
    """Channels per attention head (heads = width / head_dim)."""
    mlp_ratio: int = 4
    """MLP hidden width as a multiple of the token width."""
    attention: AttentionKind = "full"
    """Self-attention backend: full | quadtree-a | quadtree-b."""
    cross_attention: AttentionKind = "full"
    """efficient-lvsm only: target-to-input cross-attention backend."""
    quadtree_levels: int = 2
    """Pyramid levels for QuadTree attention (1 = no pyramid)."""
    quadtree_topk: list[int] = field(default_factory=lambda: [8])
    """Keys kept per query at each level above the finest, coarsest first."""

    def validate(self) -> None:
        super().validate()
        self.check_positive("patch", "width", "depth", "head_dim", "mlp_ratio", "quadtree_levels")
        topk = self.quadtree_topk
        if not isinstance(topk, list) or not all(isinstance(k, int) and not isinstance(k, bool) for k in topk):
            raise CoordfitError(f"quadtree-topk must be a list of integers such as [8], got {topk!r}")
        if self.width % self.head_dim:
            raise CoordfitError(f"width {self.width} is not a multiple of head_dim {self.head_dim}")

    def check_image(self, height: int, width: int) -> tuple[int, int]:
        """Token grid ``(h, w)`` for an image size, with clear errors when it does not fit."""
        if height % self.patch or width % self.patch:
            raise CoordfitError(f"image size {height}x{width} is not divisible by patch {self.patch}")
        grid = (height // self.patch, width // self.patch)
        if "quadtree" in self.attention or "quadtree" in self.cross_attention:
            check_quadtree(grid, self.quadtree_levels, self.quadtree_topk)
        return grid


class Attention(nn.Module):
    """Multi-head attention without biases, QK-norm (RMSNorm per head), pluggable backend."""

    def __init__(self, cfg: NVSConfig, kind: str) -> None:
        super().__init__()
        d, self.heads = cfg.width, cfg.width // cfg.head_dim
        self.kind, self.levels, self.topk = kind, cfg.quadtree_levels, list(cfg.quadtree_topk)
        self.to_q = nn.Linear(d, d, bias=False)
        self.to_kv = nn.Linear(d, 2 * d, bias=False)
        self.q_norm = nn.RMSNorm(cfg.head_dim)
        self.k_norm = nn.RMSNorm(cfg.head_dim)
        self.proj = nn.Linear(d, d, bias=False)
        if kind == "quadtree-b":
            self.level_logits = nn.Parameter(torch.zeros(self.heads, cfg.quadtree_levels))

    def _split(self, x: torch.Tensor) -> torch.Tensor:  # [B, N, d] -> [B, H, N, Dh]
        return x.unflatten(-1, (self.heads, -1)).transpose(1, 2)

    def keys_values(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x ``[B, N, d]`` -> normalised keys and values ``[B, H, N, Dh]`` (what a KV cache holds)."""
        k, v = self.to_kv(x).chunk(2, dim=-1)
        return self.k_norm(self._split(k)), self._split(v)

    def attend(
        self, x: torch.Tensor, k: torch.Tensor, v: torch.Tensor, grid: tuple[int, int]
    ) -> torch.Tensor:
        """Queries from x ``[B, N, d]`` attend to k, v ``[B, H, M, Dh]`` -> ``[B, N, d]``."""
        q = self.q_norm(self._split(self.to_q(x)))
        if self.kind == "full":
            out = full_attention(q, k, v)
        else:
            out = quadtree_attention(
                q, k, v, grid, self.levels, self.topk, variant=self.kind[-1],
                level_logits=getattr(self, "level_logits", None),
            )
        return self.proj(out.transpose(1, 2).flatten(-2))

    def forward(self, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """Self-attention over x ``[B, N, d]``."""
        k, v = self.keys_values(x)
        return self.attend(x, k, v, grid)


class Block(nn.Module):
    """Pre-LN transformer block: self-attention, optional cross-attention, GELU MLP."""

    def __init__(self, cfg: NVSConfig, cross: bool = False) -> None:
        super().__init__()
        d = cfg.width
        self.norm1 = nn.LayerNorm(d, bias=False)
        self.attn = Attention(cfg, cfg.attention)
        self.cross = None
        if cross:
            self.norm_q = nn.LayerNorm(d, bias=False)
            self.norm_kv = nn.LayerNorm(d, bias=False)  # its own norm on the key/value side
            self.cross = Attention(cfg, cfg.cross_attention)
        self.norm2 = nn.LayerNorm(d, bias=False)
        self.mlp = nn.Sequential(
            nn.Linear(d, cfg.mlp_ratio * d, bias=False), nn.GELU(), nn.Linear(cfg.mlp_ratio * d, d, bias=False)
        )

    def cross_keys_values(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Cross-attention K/V of context tokens ``[B, M, d]`` (k-norm applied)."""
        assert self.cross is not None
        return self.cross.keys_values(self.norm_kv(context))

    def forward(
        self,
        x: torch.Tensor,
        grid: tuple[int, int],
        cross_kv: tuple[torch.Tensor, torch.Tensor] | None = None,
        views_per_item: int = 1,
    ) -> torch.Tensor:
        """x ``[B*V, n, d]``; ``cross_kv`` ``[B, heads, M, Dh]`` is shared by the V views of an
        item, whose queries are concatenated for cross-attention instead of copying K/V."""
        x = x + self.attn(self.norm1(x), grid)
        if self.cross is not None:
            assert cross_kv is not None, "this block needs cross-attention keys/values"
            xq = self.norm_q(x).reshape(-1, views_per_item * x.shape[1], x.shape[2])
            x = x + self.cross.attend(xq, *cross_kv, grid).reshape(x.shape)
        return x + self.mlp(self.norm2(x))


class Tokenizer(nn.Module):
    """Patchify ``[N, C, H, W]`` and project each patch with a bias-free linear layer."""

    def __init__(self, channels: int, cfg: NVSConfig) -> None:
        super().__init__()
        self.p = cfg.patch
        self.linear = nn.Linear(channels * cfg.patch**2, cfg.width, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [N, C, H, W] -> [N, h*w, d]
        n, c, h, w = x.shape
        p = self.p
        patches = x.view(n, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5).reshape(n, (h // p) * (w // p), -1)
        return self.linear(patches)


class RenderHead(nn.Module):
    """LayerNorm -> Linear(d, p*p*3) -> sigmoid -> unpatchify to ``[N, 3, H, W]``."""

    def __init__(self, cfg: NVSConfig) -> None:
        super().__init__()
        self.p = cfg.patch
        self.norm = nn.LayerNorm(cfg.width, bias=False)
        self.linear = nn.Linear(cfg.width, 3 * cfg.patch**2, bias=False)

    def forward(self, tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        n, p = tokens.shape[0], self.p
        rgb = torch.sigmoid(self.linear(self.norm(tokens)))  # [N, h*w, 3*p*p]
        rgb = rgb.view(n, grid[0], grid[1], 3, p, p).permute(0, 3, 1, 4, 2, 5)
        return rgb.reshape(n, 3, grid[0] * p, grid[1] * p)


def init_weights(module: nn.Module, num_layers: int) -> None:
    """N(0, 0.02) for every linear layer; residual output layers scaled by 1/sqrt(2 L)."""
    for name, m in module.named_modules():
        if isinstance(m, nn.Linear):
            std = 0.02
            if name.endswith(".proj") or name.endswith("mlp.2"):
                std /= math.sqrt(2 * num_layers)
            nn.init.normal_(m.weight, std=std)


def camera_inputs(
    c2w: torch.Tensor, fxfycxcy: torch.Tensor, height: int, width: int, images: torch.Tensor | None = None
) -> torch.Tensor:
    """Per-pixel model input ``[B*V, C, H, W]``: Plucker rays (6), after RGB in [-1, 1] if given.

    c2w ``[B, V, 4, 4]``, fxfycxcy ``[B, V, 4]``, images ``[B, V, 3, H, W]`` in [0, 1].
    """
    rays = plucker(c2w, fxfycxcy, height, width).flatten(0, 1)
    if images is None:
        return rays
    return torch.cat([images.flatten(0, 1) * 2 - 1, rays], dim=1)
