"""Shared fixtures: small images that coordfit makes itself, a CLI runner."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

SHARED_DATA = Path(os.environ.get("COORDFIT_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data")).resolve()


def smooth_image(h: int = 24, w: int = 32, c: int = 3, seed: int = 0) -> np.ndarray:
    """A smooth, deterministic test image on [0, 1] (low frequencies a small net can fit)."""
    rng = np.random.default_rng(seed)
    y, x = np.meshgrid(np.linspace(0, 1, h), np.linspace(0, 1, w), indexing="ij")
    chans = []
    for _ in range(c):
        a, b, p = rng.uniform(1, 3, size=3)
        chans.append(0.5 + 0.4 * np.sin(2 * np.pi * (a * x + b * y) / 2 + p))
    return np.stack(chans, axis=-1).astype(np.float32)


@pytest.fixture
def image_png(tmp_path: Path) -> Path:
    import imageio.v3 as iio

    path = tmp_path / "small.png"
    iio.imwrite(path, (smooth_image() * 255).round().astype(np.uint8))
    return path


@pytest.fixture
def one_thread():
    """One torch thread: the test machines are small and shared, and small ops stall
    when threads are oversubscribed."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def runner():
    from typer.testing import CliRunner

    return CliRunner()


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder not found at {SHARED_DATA} (set COORDFIT_DATA)")
    return SHARED_DATA
