"""Building blocks: linear layers, sine activation with SIREN init, positional encodings."""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn

__all__ = ["Linear", "Sine", "SineLinear", "siren_init_", "mlp", "NerfEncoding", "FourierEncoding", "make_encoding", "macs"]


class Sine(nn.Module):
    """``sin(w0 * x)``: the SIREN activation (apply after a Linear)."""

    def __init__(self, w0: float = 30.0) -> None:
        super().__init__()
        self.w0 = float(w0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(self.w0 * x)

    def extra_repr(self) -> str:
        return f"w0={self.w0}"


class Linear(nn.Linear):
    """``W x + bias_scale * b``: ``nn.Linear`` whose bias enters scaled.

    CoordX's shared pre-fusion layers run once on every branch and add ``b / branches``
    (the official code's ``BatchLinear`` with ``num_input``), so a sum fusion adds the
    bias once. ``bias=False`` gives a bias-free layer (tiny-cuda-nn's MLPs).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, bias_scale: float = 1.0) -> None:
        super().__init__(in_features, out_features, bias=bias)
        self.bias_scale = float(bias_scale)

    def scaled_bias(self) -> torch.Tensor | None:
        if self.bias is None or self.bias_scale == 1.0:
            return self.bias
        return self.bias * self.bias_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(x, self.weight, self.scaled_bias())

    def extra_repr(self) -> str:
        return super().extra_repr() + (f", bias_scale={self.bias_scale:g}" if self.bias_scale != 1.0 else "")


class SineLinear(Linear):
    """``sin(w0 * (W x + bias_scale * b))`` as one layer.

    The factor w0 is folded into the weights inside the product (``(w0 W) x + w0 b``),
    which is the same function and gradient but saves a pass over the activations.
    """

    def __init__(self, in_features: int, out_features: int, w0: float = 30.0, bias_scale: float = 1.0) -> None:
        super().__init__(in_features, out_features, bias_scale=bias_scale)
        self.w0 = float(w0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(nn.functional.linear(x, self.weight * self.w0, self.bias * (self.w0 * self.bias_scale)))

    def extra_repr(self) -> str:
        return super().extra_repr() + f", w0={self.w0}"


@torch.no_grad()
def siren_init_(linear: nn.Linear, w0: float, first: bool) -> nn.Linear:
    """SIREN init: first layer U(-1/n, 1/n); later layers U(+-sqrt(6/n)/w0); default bias."""
    n = linear.in_features
    bound = 1.0 / n if first else math.sqrt(6.0 / n) / w0
    linear.weight.uniform_(-bound, bound)
    return linear


def mlp(
    dims: list[int],
    activation: Literal["sine", "relu"],
    w0: float = 30.0,
    first: bool = True,
    last_activation: bool = True,
    bias: bool = True,
    bias_scale: float = 1.0,
) -> nn.Sequential:
    """Linear layers ``dims[0] -> dims[1] -> ...``, each followed by the activation.

    ``first`` marks the first Linear as a network input layer (SIREN first-layer init).
    ``last_activation=False`` leaves the final Linear bare (an output or pre-fusion layer).
    ``bias`` and ``bias_scale`` apply to every layer (see :class:`Linear`).
    """
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        act = last_activation or i < len(dims) - 2
        if act and activation == "sine":
            lin: Linear = SineLinear(a, b, w0, bias_scale=bias_scale)
        else:
            lin = Linear(a, b, bias=bias, bias_scale=bias_scale)
        if activation == "sine":
            siren_init_(lin, w0, first=first and i == 0)
        layers.append(lin)
        if act and activation != "sine":
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class NerfEncoding(nn.Module):
    """NeRF encoding: ``[x, sin(2^k x), cos(2^k x)]`` for k < L (no pi, as NeRF's code)."""

    def __init__(self, in_features: int, frequencies: int, include_input: bool = True) -> None:
        super().__init__()
        self.in_features = in_features
        self.include_input = include_input
        self.register_buffer("freqs", 2.0 ** torch.arange(frequencies, dtype=torch.float32), persistent=False)

    @property
    def out_features(self) -> int:
        return self.in_features * (2 * len(self.freqs) + int(self.include_input))

    def macs_per_point(self) -> float:
        """Counted as one operation per output feature (products with the frequencies, sin, cos)."""
        return float(self.out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [N, d] -> [N, d * (2L + 1)]
        xf = (x[..., None] * self.freqs).flatten(-2)
        parts = [torch.sin(xf), torch.cos(xf)]
        if self.include_input:
            parts.insert(0, x)
        return torch.cat(parts, dim=-1)


class FourierEncoding(nn.Module):
    """Gaussian Fourier features (Tancik 2020): ``[sin(2 pi B v), cos(2 pi B v)]``.

    ``v`` is the coordinate mapped to [0, 1] (the paper's convention, so ``sigma``
    means what it means there); ``B ~ N(0, sigma^2)`` is a saved, frozen buffer.
    """

    def __init__(self, in_features: int, features: int, sigma: float, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("B", torch.randn(features, in_features, generator=g) * sigma)

    @property
    def out_features(self) -> int:
        return 2 * self.B.shape[0]

    def macs_per_point(self) -> float:
        """The projection by ``B`` and the sin/cos, counted as ``2F * d``."""
        return float(self.out_features * self.B.shape[1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [N, d] -> [N, 2F]
        proj = (2.0 * math.pi) * ((x + 1.0) * 0.5) @ self.B.T
        return torch.cat([torch.sin(proj), torch.cos(proj)], dim=-1)


def macs(module: nn.Module) -> float:
    """Multiply-adds per point of ``module``: ``in x out`` per Linear, plus ``macs_per_point()``
    of any submodule that defines it (encodings); activations are not counted."""
    total = 0.0
    for m in module.modules():
        if isinstance(m, nn.Linear):
            total += m.in_features * m.out_features
        elif hasattr(m, "macs_per_point"):
            total += m.macs_per_point()
    return total


def nyquist_frequencies(shape: tuple[int, ...]) -> int:
    """NeRF frequency count for a grid by Nyquist: 7 at 512 px, 6 at 256 px."""
    return max(1, int(math.ceil(math.log2(max(max(shape), 2)))) - 2)


def make_encoding(
    kind: str, in_features: int, shape: tuple[int, ...], frequencies: int | None, features: int, sigma: float, seed: int = 0
) -> nn.Module | None:
    if kind == "none":
        return None
    if kind == "nerf":
        return NerfEncoding(in_features, frequencies or nyquist_frequencies(shape))
    return FourierEncoding(in_features, features, sigma, seed=seed)
