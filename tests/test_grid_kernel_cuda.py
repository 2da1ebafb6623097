"""The fused grid kernel on CUDA (Triton): against the PyTorch reference, and in a model.
Skipped as a module without CUDA; the same source is checked on the CPU by Triton's
interpreter in tests/test_grid_kernel.py."""

from __future__ import annotations

import pytest
import torch

if not torch.cuda.is_available():
    pytest.skip("no CUDA device", allow_module_level=True)

from coordfit.models import grid_kernel  # noqa: E402
from test_grid_kernel import assert_matches_reference, edge_points, grid  # noqa: E402

if grid_kernel._triton_reason() is not None:
    pytest.skip(f"no Triton: {grid_kernel._triton_reason()}", allow_module_level=True)


@pytest.mark.parametrize("kind", ["ladder", "explicit"])
@pytest.mark.parametrize("f", [1, 2, 4, 8])
@pytest.mark.parametrize("dims", [1, 2, 3, 4])
def test_cuda_kernel_equals_reference(dims: int, f: int, kind: str) -> None:
    enc = grid(dims, f, kind).cuda()
    x = edge_points(4099, dims).cuda().requires_grad_(True)
    out = enc(x)
    assert "Fused" in type(out.grad_fn).__name__
    assert_matches_reference(enc, x, out, table_tol=1e-4)  # atomic adds: another summation order


def test_cuda_deterministic_mode_takes_the_torch_path() -> None:
    enc = grid(3, 2, "ladder").cuda()
    x = edge_points(500, 3).cuda()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        out = enc(x)
    finally:
        torch.use_deterministic_algorithms(False)
    assert "Fused" not in type(out.grad_fn).__name__
    torch.testing.assert_close(out, enc.reference(x))
