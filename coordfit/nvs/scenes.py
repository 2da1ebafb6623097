"""Posed multi-view scenes: the on-disk format, its loader and its writer.

One scene is one JSON file (the layout LVSM's preprocessing writes)::

    {
      "scene_name": "scene_000000",
      "frames": [
        {"image_path": "scene_000000/000.png",          # relative to the JSON's folder
         "fxfycxcy": [fx, fy, cx, cy],                   # pixels, OpenCV
         "w2c": [[...4 numbers...], ... 4 rows ...]},    # world-to-camera, OpenCV
        ...
      ]
    }

All frames of a scene must have the same image size. Images are PNG/JPEG, RGB (alpha is
dropped, grey is replicated). A scene folder is a folder of such JSON files.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..core.errors import CoordfitError
from ..core.io import atomic_write, read_json, write_json

__all__ = ["Scene", "load_scene", "save_scene", "list_scenes", "load_scenes"]


@dataclass
class Scene:
    """A set of posed views of one static scene."""

    name: str
    images: torch.Tensor  # [V, 3, H, W], float in [0, 1]
    c2w: torch.Tensor  # [V, 4, 4], OpenCV camera-to-world
    fxfycxcy: torch.Tensor  # [V, 4], pixels

    @property
    def num_views(self) -> int:
        return int(self.images.shape[0])

    @property
    def size(self) -> tuple[int, int]:
        return int(self.images.shape[-2]), int(self.images.shape[-1])


def save_scene(scene: Scene, folder: str | Path) -> Path:
    """Write ``<folder>/<name>.json`` and its PNGs under ``<folder>/<name>/``."""
    import imageio.v3 as iio

    folder = Path(folder)
    img_dir = folder / scene.name
    img_dir.mkdir(parents=True, exist_ok=True)
    w2c = torch.linalg.inv(scene.c2w.double())
    frames = []
    for i in range(scene.num_views):
        rel = f"{scene.name}/{i:03d}.png"
        pixels = (scene.images[i].clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        atomic_write(folder / rel, lambda p, px=pixels: iio.imwrite(p, px))
        frames.append(
            {
                "image_path": rel,
                "fxfycxcy": [float(x) for x in scene.fxfycxcy[i]],
                "w2c": w2c[i].tolist(),
            }
        )
    return write_json(folder / f"{scene.name}.json", {"scene_name": scene.name, "frames": frames})


def list_scenes(folder: str | Path) -> list[Path]:
    """The scene JSON files of a folder, sorted; a clear error when there are none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CoordfitError(f"scene folder {folder} does not exist")
    paths = sorted(folder.glob("*.json"))
    if not paths:
        raise CoordfitError(f"scene folder {folder} holds no scene .json files")
    return paths


def load_scenes(folder: str | Path) -> list[Scene]:
    return [load_scene(p) for p in list_scenes(folder)]


def load_scene(path: str | Path) -> Scene:
    """Read one scene JSON and its images, checking every field on the way."""
    path = Path(path)
    data = read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("frames"), list):
        raise CoordfitError(f"{path}: expected an object with a 'frames' list")
    frames = data["frames"]
    if not frames:
        raise CoordfitError(f"{path}: 'frames' is empty")
    images, c2ws, intr = [], [], []
    size: tuple[int, int] | None = None
    for i, frame in enumerate(frames):
        where = f"{path}: frame {i}"
        if not isinstance(frame, dict):
            raise CoordfitError(f"{where} is not an object")
        for key in ("image_path", "fxfycxcy", "w2c"):
            if key not in frame:
                raise CoordfitError(f"{where} has no '{key}'")
        k = _vector(frame["fxfycxcy"], 4, f"{where} fxfycxcy")
        if k[0] <= 0 or k[1] <= 0:
            raise CoordfitError(f"{where} fxfycxcy: focal lengths must be positive, got {k[:2]}")
        w2c = _matrix(frame["w2c"], f"{where} w2c")
        image = _read_image(path.parent / str(frame["image_path"]), where)
        if size is None:
            size = image.shape[-2:]
        elif image.shape[-2:] != size:
            raise CoordfitError(
                f"{where}: image is {image.shape[-1]}x{image.shape[-2]} but frame 0 is "
                f"{size[1]}x{size[0]}; all frames of a scene must have the same size"
            )
        images.append(image)
        c2ws.append(torch.linalg.inv(w2c))
        intr.append(torch.tensor(k))
    name = str(data.get("scene_name", path.stem))
    return Scene(
        name=name,
        images=torch.stack(images),
        c2w=torch.stack(c2ws).float(),
        fxfycxcy=torch.stack(intr).float(),
    )


def _vector(value: object, n: int, where: str) -> list[float]:
    if not isinstance(value, list) or len(value) != n:
        raise CoordfitError(f"{where} must be a list of {n} numbers, got {value!r:.80}")
    try:
        out = [float(x) for x in value]
    except (TypeError, ValueError):
        raise CoordfitError(f"{where} must hold numbers, got {value!r:.80}") from None
    if not all(math.isfinite(x) for x in out):
        raise CoordfitError(f"{where} holds a non-finite number: {value!r:.80}")
    return out


def _matrix(value: object, where: str) -> torch.Tensor:
    if not isinstance(value, list) or len(value) not in (3, 4):
        raise CoordfitError(f"{where} must be a 4x4 (or 3x4) matrix, got {value!r:.80}")
    rows = [_vector(r, 4, f"{where} row {j}") for j, r in enumerate(value)]
    m = torch.eye(4, dtype=torch.float64)
    m[: len(rows)] = torch.tensor(rows, dtype=torch.float64)
    if len(rows) == 4 and not torch.allclose(m[3], torch.tensor([0.0, 0, 0, 1], dtype=torch.float64)):
        raise CoordfitError(f"{where}: last row must be [0, 0, 0, 1], got {m[3].tolist()}")
    rot = m[:3, :3]
    err = (rot @ rot.T - torch.eye(3, dtype=torch.float64)).abs().max().item()
    if err > 1e-3 or torch.linalg.det(rot).item() < 0:
        raise CoordfitError(f"{where}: the 3x3 part is not a rotation (|R R^T - I| = {err:.3g})")
    return m


def _read_image(path: Path, where: str) -> torch.Tensor:
    import imageio.v3 as iio

    if not path.is_file():
        raise CoordfitError(f"{where}: image {path} does not exist")
    try:
        arr = np.asarray(iio.imread(path))
    except (OSError, ValueError, SyntaxError) as exc:  # Pillow: SyntaxError for a broken PNG, OSError otherwise
        raise CoordfitError(f"{where}: cannot read image {path} ({type(exc).__name__})") from None
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=-1)
    if arr.ndim != 3 or arr.shape[-1] not in (3, 4):
        raise CoordfitError(f"{where}: image {path} has shape {arr.shape}, expected HxWx3")
    scale = 65535.0 if arr.dtype == np.uint16 else 255.0 if arr.dtype == np.uint8 else 1.0
    img = torch.from_numpy(arr[..., :3].astype(np.float32) / scale)
    return img.permute(2, 0, 1).contiguous()  # [3, H, W]
