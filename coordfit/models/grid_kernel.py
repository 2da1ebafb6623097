"""The fused multiresolution grid encoding: one kernel per device, forward and backward.

:class:`~coordfit.models.grid_encoding.MultiresGrid` calls :func:`encode` for fp32 inputs;
it returns None where no kernel can run, and the grid uses its PyTorch path (the same
numbers, tested). Two sources, one per device, both reviewed against the same reference:

* **CPU**: ``kernels/grid_cpu.cpp``, plain C++ with a C ABI (no torch headers), compiled
  on first use with the system C++ compiler (``$CXX``, else ``c++``/``g++``/``clang++``;
  about 10 s, once per machine) into ``$COORDFIT_CACHE/kernels`` (default
  ``~/.cache/coordfit/kernels``), loaded with :mod:`ctypes`. Without a compiler: one
  warning, then PyTorch.
* **CUDA**: :mod:`coordfit.models.grid_triton`, a Triton kernel, compiled by Triton on the
  first CUDA call (Triton ships with torch's CUDA wheels on Linux). Without Triton: one
  warning, then PyTorch.

``COORDFIT_GRID_KERNEL=0`` turns the kernel off (the PyTorch path everywhere);
``MultiresGrid.kernel = False`` does so for one grid. Nothing is stored differently: a
run fitted with the kernel loads, renders and resumes without it.

The backward on the CPU splits the table's levels across threads (their rows are
disjoint), so every row's gradient is summed in point order whatever the thread count:
deterministic, and the same on 1 or 2 threads. On CUDA, the table's gradient is summed
with atomic adds, whose order varies between runs (last-bit differences, as
``index_add_`` on CUDA); under ``torch.use_deterministic_algorithms(True)`` the CUDA
grid uses the PyTorch path instead.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import torch

__all__ = ["encode", "Fused", "cpu_library", "kernel_enabled", "cache_dir"]

_SOURCE = Path(__file__).with_name("kernels") / "grid_cpu.cpp"
_FLAGS = ["-O3", "-std=c++20", "-shared", "-fPIC", "-ffp-contract=off", "-fno-math-errno", "-pthread"]


def kernel_enabled() -> bool:
    """False when ``COORDFIT_GRID_KERNEL=0`` asks for the PyTorch path everywhere."""
    return os.environ.get("COORDFIT_GRID_KERNEL", "1").strip().lower() not in ("0", "false", "no", "off")


def cache_dir() -> Path:
    """Where compiled kernels are kept: ``$COORDFIT_CACHE/kernels``, else ``$XDG_CACHE_HOME/coordfit/kernels``
    (``~/.cache/coordfit/kernels``)."""
    root = os.environ.get("COORDFIT_CACHE") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "coordfit"
    return Path(root) / "kernels"


def _compiler() -> str | None:
    for name in (os.environ.get("CXX"), "c++", "g++", "clang++"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


@functools.lru_cache(maxsize=None)
def cpu_library() -> ctypes.CDLL | str:
    """The compiled CPU kernel (built on first use, cached on disk), or why it is not there."""
    cxx = _compiler()
    if cxx is None:
        return "no C++ compiler found (set CXX, or install g++ or clang++)"
    source = _SOURCE.read_bytes()
    version = subprocess.run([cxx, "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    key = hashlib.sha256(source + " ".join([version, *_FLAGS, sys.platform]).encode()).hexdigest()[:16]
    for folder in (cache_dir(), Path(tempfile.gettempdir()) / f"coordfit-kernels-{getattr(os, 'getuid', lambda: 0)()}"):
        lib = folder / f"grid_cpu-{key}.so"
        try:
            if not lib.exists():
                _build(cxx, lib)
            return _load(lib)
        except OSError as exc:  # an unwritable cache, or a file another process left broken
            reason = f"{type(exc).__name__}: {exc}"
        except subprocess.CalledProcessError as exc:
            first = ((exc.stderr or "").strip().splitlines() or [""])[0]
            return f"the C++ compiler failed on {_SOURCE.name}: {first}"
    return reason


def _build(cxx: str, lib: Path) -> None:
    """Compile to a temporary name beside ``lib``, then rename: a concurrent or killed build
    never leaves a half-written library under the real name."""
    lib.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=lib.stem + ".", suffix=".tmp.so", dir=lib.parent)
    os.close(fd)
    try:
        subprocess.run([cxx, *_FLAGS, "-o", tmp, str(_SOURCE)], check=True, capture_output=True, text=True)
        os.replace(tmp, lib)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _load(lib: Path) -> ctypes.CDLL:
    dll = ctypes.CDLL(str(lib))
    i64, i32, ptr = ctypes.c_int64, ctypes.c_int, ctypes.c_void_p
    dll.coordfit_grid_forward.argtypes = [i32, i32, i64, ptr, ptr, i32, ptr, ptr, ptr, i32]
    dll.coordfit_grid_backward.argtypes = [i32, i32, i64, ptr, ptr, ptr, i32, ptr, ptr, ptr, ptr, i32]
    dll.coordfit_grid_forward.restype = dll.coordfit_grid_backward.restype = i32
    f32 = ctypes.c_float
    dll.coordfit_adam_rows.argtypes = [i64, i32, ptr, ptr, ptr, ptr, f32, f32, f32, f32, f32, f32, i32]
    dll.coordfit_adam_rows.restype = i32
    return dll


@functools.lru_cache(maxsize=None)
def _triton_reason() -> str | None:
    """None when the Triton kernels import (Triton is there and fits this torch), else why not."""
    try:
        from . import grid_triton  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - ImportError, or a Triton built for another torch
        return f"triton does not import ({type(exc).__name__}: {exc}); pip install triton"
    return None


def _unavailable(device: torch.device) -> str | None:
    """None when the kernel runs on ``device``, else why not (warned about once per reason)."""
    if device.type == "cpu":
        lib = cpu_library()
        return lib if isinstance(lib, str) else None
    if device.type == "cuda":
        if torch.are_deterministic_algorithms_enabled():
            return "deterministic"  # not a failure: the PyTorch path is the deterministic one
        return _triton_reason()
    return "unsupported"  # mps and others: the PyTorch path, no warning


@functools.lru_cache(maxsize=None)
def _warn_once(device_type: str, reason: str) -> None:
    warnings.warn(f"the fused grid kernel cannot run on {device_type} ({reason}); "
                  "grid encodings use the PyTorch path (same results, slower)", stacklevel=4)


def encode(x: torch.Tensor, table: torch.Tensor, meta: torch.Tensor, fmeta: torch.Tensor) -> torch.Tensor | None:
    """``x [N, D]`` fp32 -> ``[N, L * F]`` by the fused kernel, or None where it cannot run."""
    if not kernel_enabled() or x.dtype != torch.float32 or table.dtype != torch.float32:
        return None
    if (x.dim() != 2 or x.shape[1] != (meta.shape[1] - 3) // 2 or table.dim() != 2 or x.device != table.device
            or meta.dtype != torch.int64 or fmeta.dtype != torch.float32):
        return None  # the PyTorch path raises the error a user should see
    reason = _unavailable(x.device)
    if reason is not None:
        if reason not in ("deterministic", "unsupported"):
            _warn_once(x.device.type, reason)
        return None
    if x.device.type == "cuda":
        from . import grid_triton

        return Fused.apply(grid_triton, x, table, meta, fmeta)
    return Fused.apply(_cpu, x, table, meta, fmeta)


def _ptr(t: torch.Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


class _Cpu:
    """The compiled CPU kernel as a backend of :class:`Fused` (``grid_triton`` is the CUDA one)."""

    @staticmethod
    def forward(x: torch.Tensor, table: torch.Tensor, meta: torch.Tensor, fmeta: torch.Tensor, out: torch.Tensor) -> None:
        cpu_library().coordfit_grid_forward(x.shape[1], table.shape[1], x.shape[0], _ptr(x), _ptr(table), meta.shape[0],
                                            _ptr(meta), _ptr(fmeta), _ptr(out), torch.get_num_threads())

    @staticmethod
    def backward(x: torch.Tensor, table: torch.Tensor, grad: torch.Tensor, meta: torch.Tensor, fmeta: torch.Tensor,
                 g_table: torch.Tensor | None, g_x: torch.Tensor | None) -> None:
        cpu_library().coordfit_grid_backward(x.shape[1], table.shape[1], x.shape[0], _ptr(x), _ptr(table), _ptr(grad),
                                             meta.shape[0], _ptr(meta), _ptr(fmeta), _ptr(g_table), _ptr(g_x),
                                             torch.get_num_threads())


_cpu = _Cpu()


class Fused(torch.autograd.Function):
    """A kernel backend (``forward(x, table, meta, fmeta, out)``, ``backward(x, table, grad, meta,
    fmeta, g_table, g_x)``) under autograd: gradients to the table and, where asked, to ``x``."""

    @staticmethod
    def forward(ctx, backend, x: torch.Tensor, table: torch.Tensor, meta: torch.Tensor,  # noqa: ANN001
                fmeta: torch.Tensor) -> torch.Tensor:
        x, table = x.contiguous(), table.contiguous()
        out = x.new_empty(x.shape[0], meta.shape[0] * table.shape[1])  # [N, L * F]
        if x.shape[0]:
            backend.forward(x, table, meta, fmeta, out)
        ctx.backend = backend
        ctx.save_for_backward(x, table, meta, fmeta)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):  # noqa: ANN205
        x, table, meta, fmeta = ctx.saved_tensors
        g_table = torch.zeros_like(table) if ctx.needs_input_grad[2] else None
        g_x = torch.empty_like(x) if ctx.needs_input_grad[1] else None
        if x.shape[0] and (g_table is not None or g_x is not None):
            ctx.backend.backward(x, table, grad.contiguous(), meta, fmeta, g_table, g_x)
        return None, g_x, g_table, None, None
