"""The fused grid kernel against the PyTorch reference: values and gradients, every
combination of input dims (1-4), features (1, 2, 4, 8) and level kind (tiny-cuda-nn's
dense + hashed ladder, explicit dense levels), at the edges of [-1, 1] and beyond."""

from __future__ import annotations

import warnings

import pytest
import torch

from coordfit.models import grid_kernel
from coordfit.models.grid_encoding import GridSpec, MultiresGrid, growth_factor

pytestmark = pytest.mark.skipif(isinstance(grid_kernel.cpu_library(), str),
                                reason=f"no CPU grid kernel here: {grid_kernel.cpu_library()}")


def grid(dims: int, f: int, kind: str) -> MultiresGrid:
    torch.manual_seed(dims * 10 + f)
    if kind == "ladder":  # coarse levels dense, fine levels hashed into 2^8 rows
        n_max = 300 if dims == 1 else 40
        enc = MultiresGrid(dims, GridSpec(5, f, 8, 4, growth_factor(4, n_max, 5)))
        assert any(enc.hashed) and not all(enc.hashed)
    else:
        enc = MultiresGrid(dims, GridSpec(features_per_level=f, dense_levels=[(2,) * dims, (5,) * dims,
                                                                              tuple(range(3, 3 + dims))]))
    enc.table.data.normal_()
    return enc


def edge_points(n: int, dims: int) -> torch.Tensor:
    """Random points, the corners and faces of [-1, 1]^D, and a few outside it."""
    g = torch.Generator().manual_seed(dims)
    x = torch.rand(n, dims, generator=g) * 2 - 1
    edges = torch.tensor([-1.0, 1.0, 0.0, -1.0, 1.0, 1.0 - 1e-7, -1.0 + 1e-7])
    x[: len(edges)] = edges[:, None].expand(-1, dims)
    x[len(edges): len(edges) + 6, 0] = torch.tensor([-1.0, 1.0, -1.5, 1.5, -1.0, 1.0])
    x[-4:] = torch.rand(4, dims, generator=g) * 6 - 3
    return x


def assert_matches_reference(enc: MultiresGrid, x: torch.Tensor, out: torch.Tensor, table_tol: float = 1e-5) -> None:
    """``out = enc(x)`` by a kernel equals ``enc.reference(x)``: values, table and input gradients."""
    ref = enc.reference(x)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    probe = torch.randn_like(out)
    g_out = torch.autograd.grad((out * probe).sum(), [enc.table, x])
    g_ref = torch.autograd.grad((ref * probe).sum(), [enc.table, x])
    torch.testing.assert_close(g_out[0], g_ref[0], rtol=table_tol, atol=table_tol)
    torch.testing.assert_close(g_out[1], g_ref[1], rtol=1e-4, atol=1e-3 * float(enc.scales.max()))


@pytest.mark.parametrize("kind", ["ladder", "explicit"])
@pytest.mark.parametrize("f", [1, 2, 4, 8])
@pytest.mark.parametrize("dims", [1, 2, 3, 4])
def test_kernel_equals_reference(dims: int, f: int, kind: str) -> None:
    enc = grid(dims, f, kind)
    x = edge_points(257, dims).requires_grad_(True)
    out = grid_kernel.encode(x, enc.table, enc.kernel_meta, enc.kernel_fmeta)
    assert out is not None  # the kernel ran (no silent fallback)
    assert_matches_reference(enc, x, out)


def test_forward_runs_the_kernel_and_table_only_gradients() -> None:
    enc = grid(3, 2, "ladder")
    x = edge_points(100, 3)
    out = enc(x)
    assert out.grad_fn is not None and "Fused" in type(out.grad_fn).__name__
    (g,) = torch.autograd.grad(out.square().sum(), [enc.table])
    (want,) = torch.autograd.grad(enc.reference(x).square().sum(), [enc.table])
    torch.testing.assert_close(g, want, rtol=1e-5, atol=1e-5)


def test_backward_is_deterministic_and_the_same_on_one_or_two_threads() -> None:
    enc = grid(2, 2, "ladder")
    x = torch.rand(3000, 2, generator=torch.Generator().manual_seed(5)) * 2 - 1  # many points per row
    probe = torch.randn(3000, enc.out_features, generator=torch.Generator().manual_seed(6))
    threads = torch.get_num_threads()
    grads = []
    try:
        for n in (1, 2, 2, 1):
            torch.set_num_threads(n)
            grads.append(torch.autograd.grad((enc(x) * probe).sum(), enc.table)[0])
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(grads[0], g) for g in grads[1:])


def test_without_the_kernel_one_warning_and_the_torch_path(monkeypatch: pytest.MonkeyPatch) -> None:
    enc = grid(2, 2, "ladder")
    x = edge_points(64, 2)
    want = enc.torch_forward(x)
    monkeypatch.setattr(grid_kernel, "cpu_library", lambda: "no C++ compiler found (a test)")
    grid_kernel._warn_once.cache_clear()
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        outs = [enc(x) for _ in range(3)]
    grid_kernel._warn_once.cache_clear()
    assert [str(w.message) for w in seen] == [
        "the fused grid kernel cannot run on cpu (no C++ compiler found (a test)); grid encodings use the "
        "PyTorch path (same results, slower)"]
    assert all(torch.equal(o, want) for o in outs)


def test_switches_and_other_dtypes_take_the_torch_path(monkeypatch: pytest.MonkeyPatch) -> None:
    enc = grid(2, 4, "explicit")
    x = edge_points(64, 2)
    assert grid_kernel.encode(x.double(), enc.table.double(), enc.kernel_meta, enc.kernel_fmeta) is None
    monkeypatch.setenv("COORDFIT_GRID_KERNEL", "0")
    assert grid_kernel.encode(x, enc.table, enc.kernel_meta, enc.kernel_fmeta) is None
    monkeypatch.delenv("COORDFIT_GRID_KERNEL")
    enc.kernel = False
    assert enc(x).grad_fn is not None and "Fused" not in type(enc(x).grad_fn).__name__
    torch.testing.assert_close(enc(x), enc.reference(x))
    assert enc.double()(x.double()).dtype == torch.float64  # a double grid still works, in PyTorch


def test_a_failed_build_is_a_reason_not_a_crash(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("COORDFIT_CACHE", str(tmp_path))
    monkeypatch.setattr(grid_kernel, "_SOURCE", tmp_path / "broken.cpp")
    (tmp_path / "broken.cpp").write_text("this is not C++\n")
    grid_kernel.cpu_library.cache_clear()
    try:
        reason = grid_kernel.cpu_library()
    finally:
        grid_kernel.cpu_library.cache_clear()
    assert isinstance(reason, str) and "compiler failed on broken.cpp" in reason
    assert not list((tmp_path / "kernels").glob("*.so"))  # no half-built library left behind


_TRITON_CHECK = """
from coordfit.models import grid_kernel, grid_triton
from test_grid_kernel import assert_matches_reference, edge_points, grid
for dims in (1, 2, 3, 4):
    for f in (1, 2, 4, 8):
        for kind in ("ladder", "explicit"):
            enc = grid(dims, f, kind)
            x = edge_points(150, dims).requires_grad_(True)
            assert_matches_reference(enc, x, grid_kernel.Fused.apply(grid_triton, x, enc.table, enc.kernel_meta,
                                                                     enc.kernel_fmeta))
print("ok")
"""


@pytest.mark.slow
def test_the_cuda_source_equals_reference_under_the_triton_interpreter() -> None:
    """The Triton (CUDA) kernels run on the CPU by Triton's interpreter: values and both
    gradients for every combination (about 40 s; skipped where Triton is not installed)."""
    import importlib.util
    import os
    import subprocess
    import sys
    from pathlib import Path

    if importlib.util.find_spec("triton") is None:
        pytest.skip("triton is not installed (it comes with torch's CUDA wheels; pip install triton to check here)")
    env = os.environ | {"TRITON_INTERPRET": "1", "PYTHONPATH": str(Path(__file__).parent)}
    done = subprocess.run([sys.executable, "-c", _TRITON_CHECK], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-3000:]


def test_inputs_the_kernel_cannot_take_reach_the_torch_path_and_its_error() -> None:
    enc = grid(2, 2, "ladder")
    assert grid_kernel.encode(torch.rand(5, 3), enc.table, enc.kernel_meta, enc.kernel_fmeta) is None
    assert grid_kernel.encode(torch.rand(5), enc.table, enc.kernel_meta, enc.kernel_fmeta) is None
    with pytest.raises(RuntimeError):
        enc(torch.rand(5, 3))  # a shape error from PyTorch, never a read past the input


def test_a_run_fitted_with_the_kernel_loads_and_renders_without_it(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    import imageio.v3 as iio
    import numpy as np

    import coordfit

    from conftest import smooth_image

    iio.imwrite(tmp_path / "small.png", (smooth_image() * 255).round().astype(np.uint8))
    coordfit.fit(tmp_path / "small.png", "hashgrid", train=coordfit.TrainConfig(steps=5, batch_points=256, device="cpu"),
                 out=tmp_path / "run", progress=False, levels=4, width=16)
    x = edge_points(300, 2)
    with_kernel = coordfit.load(tmp_path / "run").model(x)
    monkeypatch.setenv("COORDFIT_GRID_KERNEL", "0")  # as where no compiler is found
    run = coordfit.load(tmp_path / "run")
    torch.testing.assert_close(run.model(x), with_kernel, rtol=1e-5, atol=1e-6)
    assert run.render(tmp_path / "again.png").exists()
