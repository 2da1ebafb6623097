"""Posed photos of one scene, from three sources, and the choice of input and held-out views.

* coordfit's scene JSON (the ``nvs`` format: ``frames`` with ``image_path``, ``fxfycxcy``
  and an OpenCV ``w2c``), read by :func:`coordfit.nvs.load_scene`;
* the NeRF / instant-ngp ``transforms.json``: ``frames`` with ``file_path`` (relative to
  the file, with or without an extension) and an OpenGL camera-to-world
  ``transform_matrix``; intrinsics from ``fl_x``/``fl_y``/``cx``/``cy`` or
  ``camera_angle_x`` (``camera_angle_y``), at the top level or per frame, for an image
  of ``w`` x ``h`` (scaled when the image file has another size). Alpha is composited
  over white, the convention of the NeRF synthetic scenes;
* ``procedural:<seed>[,views=<n>][,size=<px>]``: a scene from coordfit's own renderer
  (seeds from 1,000,000,000 up are never seen by the shipped prior's training).

Every view is returned as a :class:`coordfit.nvs.Scene` (images ``[V, 3, H, W]`` on
[0, 1], OpenCV ``c2w`` ``[V, 4, 4]``, ``fxfycxcy`` ``[V, 4]``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ...core.errors import CoordfitError
from ...core.io import read_json
from ...geometry.cameras import opengl_to_opencv
from ...nvs.scenes import Scene, load_scene
from ...nvs.scenes import _matrix as _checked_matrix

__all__ = ["read_views", "read_transforms", "procedural_views", "choose_views"]

_EXTENSIONS = ("", ".png", ".jpg", ".jpeg", ".PNG", ".JPG", ".JPEG")
PROCEDURAL = "procedural:"


def read_views(source: str | Path) -> Scene:
    """Read a scene JSON, a ``transforms.json`` or ``procedural:<seed>``; one-line errors."""
    src = str(source)
    if src.startswith(PROCEDURAL):
        return procedural_views(src)
    path = Path(src)
    if not path.is_file():
        raise CoordfitError(f"{path} does not exist" if not path.exists() else f"{path} is not a file")
    data = read_json(path)
    frames = data.get("frames") if isinstance(data, dict) else None
    if not isinstance(frames, list) or not frames:
        raise CoordfitError(f"{path}: expected an object with a non-empty 'frames' list")
    first = frames[0] if isinstance(frames[0], dict) else {}
    if "transform_matrix" in first:
        return read_transforms(path, data)
    if "w2c" in first:
        return load_scene(path)
    raise CoordfitError(f"{path}: frame 0 has neither 'transform_matrix' (transforms.json) nor 'w2c' (coordfit scene)")


def procedural_views(spec: str) -> Scene:
    """``procedural:<seed>[,views=<n>][,size=<px>]`` -> a rendered scene (6 views, 32 px by default)."""
    from ...nvs.procedural import ProceduralConfig, make_scene

    head, *rest = spec[len(PROCEDURAL):].split(",")
    opts = {"views": 6, "size": 32}
    try:
        seed = int(head)
        for item in rest:
            key, value = item.split("=")
            if key not in opts:
                raise ValueError
            opts[key] = int(value)
    except ValueError:
        raise CoordfitError(f"'{spec}' must look like procedural:<seed>[,views=<n>][,size=<px>]") from None
    return make_scene(seed, ProceduralConfig(size=opts["size"], views=opts["views"]))


def read_transforms(path: str | Path, data: dict | None = None) -> Scene:
    """Read a NeRF / instant-ngp ``transforms.json`` (OpenGL poses) into OpenCV cameras."""
    path = Path(path)
    data = read_json(path) if data is None else data
    frames = data.get("frames") if isinstance(data, dict) else None
    if not isinstance(frames, list) or not frames:
        raise CoordfitError(f"{path}: 'frames' is missing or empty")
    images, c2ws, intr = [], [], []
    for i, frame in enumerate(frames):
        where = f"{path}: frame {i}"
        if not isinstance(frame, dict) or "file_path" not in frame or "transform_matrix" not in frame:
            raise CoordfitError(f"{where} needs 'file_path' and 'transform_matrix'")
        image = _read_rgb(_find_image(path.parent, str(frame["file_path"]), where), where)
        if images and image.shape != images[0].shape:
            raise CoordfitError(
                f"{where}: image is {image.shape[-1]}x{image.shape[-2]} but frame 0 is "
                f"{images[0].shape[-1]}x{images[0].shape[-2]}; all views must have the same size"
            )
        intr.append(_intrinsics({**data, **frame}, image.shape[-2], image.shape[-1], where))
        c2ws.append(opengl_to_opencv(_checked_matrix(frame["transform_matrix"], f"{where} transform_matrix")))
        images.append(image)
    return Scene(path.parent.name or path.stem, torch.stack(images), torch.stack(c2ws).float(), torch.stack(intr))


def _find_image(folder: Path, rel: str, where: str) -> Path:
    for ext in _EXTENSIONS:
        p = folder / (rel + ext)
        if p.is_file():
            return p
    raise CoordfitError(f"{where}: image {folder / rel} does not exist (tried {', '.join(e or 'as is' for e in _EXTENSIONS[:4])})")


def _read_rgb(path: Path, where: str) -> torch.Tensor:
    """``[3, H, W]`` on [0, 1]; grey is replicated, alpha composited over white."""
    from ..image import read_image

    try:
        arr, _ = read_image(path)
    except CoordfitError as exc:
        raise CoordfitError(f"{where}: {exc}") from None
    if arr.shape[-1] in (2, 4):
        alpha = arr[..., -1:]
        arr = arr[..., :-1] * alpha + (1.0 - alpha)
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    return torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32)).permute(2, 0, 1).contiguous()


def _number(d: dict, key: str, where: str) -> float | None:
    if key not in d:
        return None
    try:
        value = float(d[key])
    except (TypeError, ValueError):
        raise CoordfitError(f"{where}: '{key}' must be a number, got {d[key]!r:.40}") from None
    if not math.isfinite(value) or value <= 0:
        raise CoordfitError(f"{where}: '{key}' must be a positive number, got {value}")
    return value


def _intrinsics(d: dict, height: int, width: int, where: str) -> torch.Tensor:
    """``[fx, fy, cx, cy]`` in pixels of the image as read."""
    w, h = _number(d, "w", where) or width, _number(d, "h", where) or height
    fx, fy = _number(d, "fl_x", where), _number(d, "fl_y", where)
    for key in ("camera_angle_x", "camera_angle_y"):
        angle = _number(d, key, where)
        if angle is not None and angle >= math.pi:
            raise CoordfitError(f"{where}: '{key}' must be below pi radians, got {angle}")
    if fx is None:
        ax = _number(d, "camera_angle_x", where)
        if ax is None:
            raise CoordfitError(f"{where}: no focal length ('fl_x' or 'camera_angle_x')")
        fx = 0.5 * w / math.tan(0.5 * ax)
    if fy is None:
        ay = _number(d, "camera_angle_y", where)
        fy = 0.5 * h / math.tan(0.5 * ay) if ay is not None else fx
    cx, cy = _number(d, "cx", where) or w / 2, _number(d, "cy", where) or h / 2
    sx, sy = width / w, height / h
    return torch.tensor([fx * sx, fy * sy, cx * sx, cy * sy], dtype=torch.float32)


def choose_views(num_views: int, inputs: Sequence[int] | None, holdout: Sequence[int] | None) -> tuple[list[int], list[int]]:
    """Check the input and held-out view numbers of a scene with ``num_views`` views.

    Inputs default to every view that is not held out. The two sets never overlap.
    """
    if num_views < 2:
        raise CoordfitError(f"the scene has {num_views} view; fitting views needs at least 2 (inputs and a view to judge)")
    held = list(holdout or [])
    chosen = list(inputs) if inputs is not None else [i for i in range(num_views) if i not in held]
    for name, idx in (("inputs", chosen), ("holdout", held)):
        bad = [i for i in idx if not 0 <= i < num_views]
        if bad:
            raise CoordfitError(f"--{name} names view {bad[0]}, but the scene has views 0 to {num_views - 1}")
        if len(set(idx)) != len(idx):
            raise CoordfitError(f"--{name} names a view twice: {idx}")
    both = sorted(set(chosen) & set(held))
    if both:
        raise CoordfitError(f"view {both[0]} is both an input and held out; --inputs and --holdout must not overlap")
    if not chosen:
        raise CoordfitError("no input views: --inputs is empty or --holdout names every view")
    return chosen, held
