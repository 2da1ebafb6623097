"""The image signal: formats, bit depths, channels, outputs, rendering, bad files."""

from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest

import coordfit
from coordfit import TrainConfig
from coordfit.core.errors import CoordfitError
from coordfit.signals import ImageSignal
from coordfit.signals.image import read_image, save_image

from conftest import smooth_image


@pytest.mark.parametrize(
    "name,channels,dtype",
    [
        ("gray.png", 1, np.uint8),
        ("rgb.png", 3, np.uint8),
        ("rgba.png", 4, np.uint8),
        ("gray16.png", 1, np.uint16),
        ("rgb16.png", 3, np.uint16),
        ("rgb.tif", 3, np.uint8),
        ("rgb.bmp", 3, np.uint8),
    ],
)
def test_read_image_formats_round_trip(tmp_path: Path, name: str, channels: int, dtype) -> None:
    img = smooth_image(9, 11, channels)
    scale = np.iinfo(dtype).max
    raw = (img * scale).round().astype(dtype)
    path = tmp_path / name
    if dtype == np.uint16 and channels > 1:
        save_image(path, raw.astype(np.float32) / scale, 16)  # Pillow cannot write these
    else:
        iio.imwrite(path, raw[..., 0] if channels == 1 else raw)
    pixels, depth = read_image(path)
    assert pixels.shape == (9, 11, channels)
    assert depth == (16 if dtype == np.uint16 else 8)
    np.testing.assert_allclose(pixels, raw.astype(np.float32) / scale, atol=1e-7)
    # and back out: save_image writes the same bit depth and channels, values round trip
    out = save_image(tmp_path / f"out_{name}.png", pixels, depth)
    back, back_depth = read_image(out)
    assert back_depth == depth and back.shape == raw.shape
    np.testing.assert_array_equal(np.round(back * scale).astype(dtype), raw)


def test_jpeg_reads_close_to_source(tmp_path: Path) -> None:
    img = (smooth_image(32, 32) * 255).round().astype(np.uint8)
    iio.imwrite(tmp_path / "a.jpg", img, quality=95)
    pixels, depth = read_image(tmp_path / "a.jpg")
    assert depth == 8 and pixels.shape == (32, 32, 3)
    assert np.abs(pixels * 255 - img).mean() < 3


def test_alpha_kept_or_dropped(tmp_path: Path) -> None:
    rgba = (smooth_image(8, 8, 4) * 255).astype(np.uint8)
    iio.imwrite(tmp_path / "a.png", rgba)
    assert ImageSignal.load(tmp_path / "a.png").out_features == 4
    assert ImageSignal.load(tmp_path / "a.png", alpha="drop").out_features == 3
    with pytest.raises(CoordfitError, match="alpha"):
        ImageSignal.load(tmp_path / "a.png", alpha="maybe")


def test_builtin_default_image_needs_no_file() -> None:
    s = ImageSignal.load(None)
    assert s.shape == (512, 512) and s.out_features == 3 and s.source == "skimage:astronaut"
    assert float(s.values.min()) >= -1 and float(s.values.max()) <= 1


@pytest.mark.parametrize("channels,suffix", [(1, "png"), (4, "png")])
def test_reconstruction_has_input_size_and_channels(tmp_path: Path, channels: int, suffix: str) -> None:
    src = save_image(tmp_path / f"in.{suffix}", smooth_image(10, 14, channels), 16)
    r = coordfit.fit(src, "siren", train=TrainConfig(steps=3), out=tmp_path / "run", progress=False, width=8)
    back, depth = read_image(tmp_path / "run" / "reconstruction.png")
    assert depth == 16 and back.shape == (10, 14, channels)
    assert r.metrics["params"] > 0


def test_render_any_resolution_and_never_overwrite(tmp_path: Path, image_png: Path) -> None:
    coordfit.fit(image_png, "coordx", train=TrainConfig(steps=60, lr=1e-3), out=tmp_path / "run", progress=False, width=32)
    run = coordfit.load(tmp_path / "run")
    big = run.render(scale=2)
    assert big.name == "render_64x48.png" and iio.imread(big).shape == (48, 64, 3)
    exact = run.render(tmp_path / "same.png", size=(32, 24))
    recon = iio.imread(tmp_path / "run" / "reconstruction.png")
    np.testing.assert_array_equal(iio.imread(exact), recon)  # same grid -> same pixels
    # the 2x render agrees with the 1x one where their grids meet (corners are shared points)
    up = iio.imread(big).astype(int)
    assert np.abs(up[0, 0] - recon[0, 0]).max() <= 1 and np.abs(up[-1, -1] - recon[-1, -1]).max() <= 1
    with pytest.raises(CoordfitError, match="exists"):
        run.render(scale=2)
    with pytest.raises(CoordfitError, match="--scale must be a positive number"):
        run.render(tmp_path / "neg.png", scale=-1)


def test_large_render_goes_through_chunks(tmp_path: Path, image_png: Path) -> None:
    coordfit.fit(image_png, "coordx", train=TrainConfig(steps=2), out=tmp_path / "run", progress=False, width=8)
    run = coordfit.load(tmp_path / "run")
    path = run.render(size=(1024, 768))
    assert iio.imread(path).shape == (768, 1024, 3)


def _write_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda d: d / "missing.png", "does not exist"),
        (lambda d: _write_bytes(d / "text.png", b"this is not an image at all\n" * 20), "cannot read"),
        (lambda d: _write_bytes(d / "empty.png", b""), "is empty"),
        (lambda d: d, "is a folder"),
    ],
    ids=["missing", "not-an-image", "empty-file", "folder"],
)
def test_bad_image_files(tmp_path: Path, make, message: str) -> None:
    with pytest.raises(CoordfitError, match=message):
        read_image(make(tmp_path))


def test_truncated_and_tiny_images(tmp_path: Path) -> None:
    iio.imwrite(tmp_path / "full.png", (smooth_image(64, 64) * 255).astype(np.uint8))
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(CoordfitError, match="cannot read"):
        read_image(tmp_path / "cut.png")
    iio.imwrite(tmp_path / "one.png", np.zeros((1, 1, 3), np.uint8))
    with pytest.raises(CoordfitError, match="1x1 pixels"):
        read_image(tmp_path / "one.png")
    iio.imwrite(tmp_path / "line.png", np.zeros((1, 40), np.uint8))
    with pytest.raises(CoordfitError, match="40x1 pixels"):
        read_image(tmp_path / "line.png")


def test_checkpoint_from_another_model_is_refused(tmp_path: Path, image_png: Path) -> None:
    import json

    coordfit.fit(image_png, "siren", train=TrainConfig(steps=1), out=tmp_path / "s", progress=False, width=8)
    coordfit.fit(image_png, "coordx", train=TrainConfig(steps=1), out=tmp_path / "c", progress=False, width=8)
    # put the coordx weights into the siren run: loading must refuse, not crash
    (tmp_path / "s" / "model.safetensors").write_bytes((tmp_path / "c" / "model.safetensors").read_bytes())
    with pytest.raises(CoordfitError, match="is torn: model.safetensors"):  # checkpoint.json's sha256
        coordfit.load(tmp_path / "s")
    (tmp_path / "s" / "checkpoint.json").unlink()  # as a run from before checkpoint.json: the name check holds
    with pytest.raises(CoordfitError, match="weights of model 'coordx', not 'siren'"):
        coordfit.load(tmp_path / "s")
    cfg = json.loads((tmp_path / "c" / "config.json").read_text())
    cfg["model_config"]["width"] = 16  # same model, other shapes
    (tmp_path / "c" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CoordfitError, match="does not fit model 'coordx'"):
        coordfit.load(tmp_path / "c")
