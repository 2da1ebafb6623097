"""The optional tiny-cuda-nn backend of ``hashgrid``, and its parameter layout.

``tcnn.NetworkWithInputEncoding(HashGrid, FullyFusedMLP | CutlassMLP)`` keeps all its
parameters in one flat vector (tiny-cuda-nn's ``network_with_input_encoding.h``,
``fully_fused_mlp.cu``, ``cutlass_mlp.cu``, ``encodings/grid.h``):

* the network first, then the encoding;
* the network: one row-major ``[out, in]`` matrix per layer, no biases, in order:
  ``[width, in_pad]``, ``layers - 2`` times ``[width, width]``, ``[out_pad, width]``.
  ``in_pad`` is the encoding's ``L*F`` rounded up to a multiple of 16 (the padded
  encoding outputs are zeros, so those columns do nothing); ``out_pad`` is the output
  width rounded up to 16 (the extra rows are dropped);
* the encoding: the hash table, level after level, ``F`` features per row: exactly
  :class:`~coordfit.models.grid_encoding.MultiresGrid`'s ``table`` flattened.

coordfit owns the parameters in its own torch layout (``encoding.table`` and the
bias-free ``mlp`` Linear weights, fp32) and packs them into that vector on every call,
so a run fitted on tiny-cuda-nn saves the same checkpoint as one fitted without it and
loads, renders and resumes anywhere. :class:`TcnnLayout` converts both ways.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .grid_encoding import GridSpec

__all__ = ["TcnnLayout", "TcnnNetwork", "TcnnMismatch", "tcnn_available", "tcnn_encoding_config",
           "tcnn_network_config"]

ALIGNMENT = 16  # tiny-cuda-nn pads MLP input and output widths to multiples of 16


def tcnn_available() -> str | None:
    """None when tiny-cuda-nn can run here, else the reason it cannot."""
    if not torch.cuda.is_available():
        return "no CUDA device"
    try:
        import tinycudann  # noqa: F401
    except Exception as exc:  # ImportError, or a build for another GPU or torch  # noqa: BLE001
        return f"tinycudann does not import ({type(exc).__name__}: {exc})"
    return None


def tcnn_encoding_config(spec: GridSpec) -> dict[str, Any]:
    """The tiny-cuda-nn ``HashGrid`` config equal to a resolved ``spec`` (same table layout)."""
    return {"otype": "HashGrid", "n_levels": spec.levels, "n_features_per_level": spec.features_per_level,
            "log2_hashmap_size": spec.log2_table_size, "base_resolution": spec.base_resolution,
            "per_level_scale": spec.per_level_scale}


def tcnn_network_config(width: int, layers: int) -> dict[str, Any]:
    """ReLU MLP with ``layers`` linear layers; FullyFusedMLP where it has the width."""
    fused = width in (16, 32, 64, 128) and layers >= 2
    return {"otype": "FullyFusedMLP" if fused else "CutlassMLP", "activation": "ReLU", "output_activation": "None",
            "n_neurons": width, "n_hidden_layers": layers - 1}


@dataclass(frozen=True)
class TcnnLayout:
    """Where each coordfit tensor sits in tiny-cuda-nn's flat parameter vector."""

    dims: tuple[int, ...]  # Linear widths, coordfit's: (L*F, width, ..., width, out)
    table_shape: tuple[int, int]  # [rows, F]

    @property
    def padded(self) -> tuple[int, ...]:
        """Widths as tiny-cuda-nn stores them: input and output rounded up to 16."""
        pad = [_round_up(self.dims[0]), *self.dims[1:-1], _round_up(self.dims[-1])]
        return tuple(pad)

    @property
    def size(self) -> int:
        p = self.padded
        return sum(a * b for a, b in zip(p[:-1], p[1:])) + math.prod(self.table_shape)

    def pack(self, weights: list[torch.Tensor], table: torch.Tensor) -> torch.Tensor:
        """coordfit's Linear weights ``[out, in]`` and table ``[rows, F]`` -> the flat vector
        (padding zero). Differentiable: gradients reach ``weights`` and ``table``."""
        self._check(weights, table)
        p = self.padded
        last = len(weights) - 1
        pieces = []
        for i, w in enumerate(weights):
            pad_in = p[0] - w.shape[1] if i == 0 else 0
            pad_out = p[-1] - w.shape[0] if i == last else 0
            pieces.append(nn.functional.pad(w, (0, pad_in, 0, pad_out)).reshape(-1))
        pieces.append(table.reshape(-1))
        return torch.cat(pieces)

    def unpack(self, params: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """The flat vector -> coordfit's Linear weights ``[out, in]`` and table ``[rows, F]``."""
        if params.dim() != 1 or params.numel() != self.size:
            raise ValueError(f"expected a flat vector of {self.size} tiny-cuda-nn parameters, got {tuple(params.shape)}")
        p, d = self.padded, self.dims
        weights, at = [], 0
        for i, (a, b) in enumerate(zip(p[:-1], p[1:])):
            w = params[at:at + a * b].view(b, a)
            weights.append(w[: d[i + 1], : d[i]])
            at += a * b
        return weights, params[at:].view(self.table_shape)

    def _check(self, weights: list[torch.Tensor], table: torch.Tensor) -> None:
        shapes = [tuple(w.shape) for w in weights]
        want = [(b, a) for a, b in zip(self.dims[:-1], self.dims[1:])]
        if shapes != want or tuple(table.shape) != self.table_shape:
            raise ValueError(f"weights {shapes} and table {tuple(table.shape)} do not fit the layout {self}")


class TcnnMismatch(RuntimeError):
    """This tinycudann build does not hold its parameters as :class:`TcnnLayout` says."""


def _round_up(n: int) -> int:
    return -(-n // ALIGNMENT) * ALIGNMENT


class TcnnNetwork(nn.Module):
    """``tcnn.NetworkWithInputEncoding`` evaluated on a parameter vector it does not own.

    tiny-cuda-nn's torch module reads its ``params`` attribute in ``forward``; the
    parameter it creates is removed and each call sets the packed vector there instead,
    cast to tiny-cuda-nn's parameter precision (fp16 on most builds): coordfit's fp32
    tensors are the master weights, and their gradients flow back through the cast.
    """

    def __init__(self, n_in: int, n_out: int, spec: GridSpec, width: int, layers: int, layout: TcnnLayout) -> None:
        super().__init__()
        import tinycudann as tcnn

        native = tcnn.NetworkWithInputEncoding(n_in, n_out, tcnn_encoding_config(spec),
                                               tcnn_network_config(width, layers))
        if native.params.numel() != layout.size:
            raise TcnnMismatch(f"this tinycudann build holds {native.params.numel()} parameters where coordfit "
                               f"packs {layout.size}: its layout differs from the one coordfit knows")
        del native.params
        self.native = native

    def forward(self, x01: torch.Tensor, params: torch.Tensor) -> torch.Tensor:  # [N, D] on [0, 1] -> [N, C]
        self.native.params = params.to(self.native.dtype)
        return self.native(x01.contiguous()).float()
