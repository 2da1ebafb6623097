"""Volume rendering, rays and boxes, the camera rig, and reading posed views (transforms.json)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from coordfit.core.errors import CoordfitError
from coordfit.geometry.rig import Rig, estimate_up, look_at_point, orbit_poses, pseudo_poses
from coordfit.signals.views.data import choose_views, read_transforms, read_views
from coordfit.geometry.volume import (
    RaySampling,
    composite,
    contract,
    distortion,
    interval_edges,
    ray_box,
    ray_segments,
    sample_intervals,
)


def test_constant_density_slab_matches_its_closed_form() -> None:
    # A ray crosses empty space, then a slab [2, 3.5) of density 1.7 and colour c, then an
    # opaque background b: C = c (1 - exp(-sigma L)) + b exp(-sigma L).
    edges = torch.linspace(0.0, 6.0, 61)  # 60 intervals of 0.1
    t, delta = sample_intervals(edges[None])
    sigma = torch.where((t >= 2.0) & (t < 3.5), 1.7, 0.0)
    sigma[:, -1] = 1e4  # the background interval
    c, b = torch.tensor([0.9, 0.2, 0.4]), torch.tensor([0.1, 0.6, 1.0])
    rgb = torch.where((t >= 2.0)[..., None] & (t < 3.5)[..., None], c, b)
    colour, weights = composite(sigma, rgb, delta)
    through = math.exp(-1.7 * 1.5)
    torch.testing.assert_close(colour[0], c * (1 - through) + b * through, atol=1e-5, rtol=0)
    torch.testing.assert_close(weights.sum(), torch.tensor(1.0), atol=1e-6, rtol=0)


def test_ray_box_intersections_by_hand() -> None:
    o = torch.tensor([[-3.0, 0.0, 0.0], [-3.0, -3.0, 0.5], [-3.0, 2.0, 0.0], [0.2, 0.0, 0.0], [-3.0, 0.0, 0.0]])
    d = torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [-1.0, 0.0, 0.0]])
    d = d / d.norm(dim=-1, keepdim=True)
    t_in, t_out = ray_box(o, d)
    r2 = math.sqrt(2.0)
    torch.testing.assert_close(t_in[:2], torch.tensor([2.0, 2 * r2]))  # along x; along the diagonal
    torch.testing.assert_close(t_out[:2], torch.tensor([4.0, 4 * r2]))
    assert t_in[2] > t_out[2]  # passes beside the box
    torch.testing.assert_close(t_in[3:4], torch.tensor([-1.0]))  # starts inside: enters behind the origin
    torch.testing.assert_close(t_out[3:4], torch.tensor([1.0]))
    cfg = RaySampling()
    t_a, t_b = ray_segments(o, d, cfg)
    assert float(t_a[2]) == float(t_b[2]) == pytest.approx(3.0)  # a miss: empty stretch at the closest approach
    assert float(t_a[3]) == pytest.approx(cfg.near) and float(t_b[3]) == pytest.approx(1.0)
    assert float(t_a[4]) == float(t_b[4]) == pytest.approx(cfg.near)  # the box is behind the camera


def test_contraction_keeps_the_box_and_squeezes_infinity_onto_the_cube() -> None:
    x = torch.tensor([[0.3, -0.9, 1.0], [2.0, 0.0, 0.0], [1e6, -5e5, 0.0]])
    y = contract(x)
    torch.testing.assert_close(y[0], x[0] / 2)
    torch.testing.assert_close(y[1], torch.tensor([0.75, 0.0, 0.0]))  # (2 - 1/2) / 2
    assert abs(float(y[2].abs().max()) - 1.0) < 1e-5
    assert float(contract(torch.randn(1000, 3) * 100).abs().max()) <= 1.0


def test_intervals_cover_the_ray_in_order() -> None:
    cfg = RaySampling(front=3, inner=5, outer=4, near=0.1, far=100.0)
    edges = interval_edges(torch.tensor([2.0, 0.1]), torch.tensor([4.0, 0.1]), cfg)
    assert edges.shape == (2, cfg.total + 1)
    assert bool((edges[:, 1:] >= edges[:, :-1]).all())
    torch.testing.assert_close(edges[:, 0], torch.tensor([0.1, 0.1]))
    torch.testing.assert_close(edges[:, -1], torch.tensor([100.0, 100.0]))
    torch.testing.assert_close(edges[0, 3], torch.tensor(2.0))  # box entry after the front samples
    torch.testing.assert_close(edges[0, 8], torch.tensor(4.0))  # box exit after the inner samples


def test_distortion_equals_the_quadratic_reference() -> None:
    w = torch.rand(5, 9)
    n = w.shape[1]
    s = (torch.arange(n) + 0.5) / n
    ref = (w[:, :, None] * w[:, None, :] * (s[:, None] - s[None, :]).abs()).sum((1, 2)) + (w**2).sum(1) / (3 * n)
    torch.testing.assert_close(distortion(w), ref)
    spike, spread = torch.zeros(1, n), torch.full((1, n), 1.0 / n)
    spike[0, 4] = 1.0
    assert float(distortion(spike)) < float(distortion(spread))


def _orbit_cameras(up: torch.Tensor, centre: torch.Tensor, count: int = 3) -> torch.Tensor:
    from coordfit.geometry.cameras import look_at

    e1 = torch.nn.functional.normalize(torch.cross(up, torch.tensor([0.3, 1.0, 0.2]), dim=0), dim=0)
    e2 = torch.cross(up, e1, dim=0)
    az = torch.tensor([0.0, 1.1, 2.5])[:count]
    eye = centre + 4.0 * (0.8 * (torch.cos(az)[:, None] * e1 + torch.sin(az)[:, None] * e2) + 0.6 * up)
    return look_at(eye, centre.expand(count, 3), up=tuple(up.tolist()))


def test_rig_finds_the_look_at_point_and_up_of_a_tilted_rig() -> None:
    up = torch.nn.functional.normalize(torch.tensor([0.2, -0.3, 0.9]), dim=0)
    centre = torch.tensor([1.0, -2.0, 0.5])
    c2w = _orbit_cameras(up, centre)
    torch.testing.assert_close(look_at_point(c2w), centre, atol=1e-4, rtol=0)
    torch.testing.assert_close(estimate_up(c2w), up, atol=1e-4, rtol=0)
    rig = Rig.from_cameras(c2w)
    torch.testing.assert_close(rig.radius, torch.full((3,), 4.0), atol=1e-4, rtol=0)
    poses = torch.cat([orbit_poses(rig, 8), pseudo_poses(rig, 16, torch.Generator().manual_seed(0))])
    to_centre = torch.nn.functional.normalize(centre - poses[:, :3, 3], dim=-1)
    torch.testing.assert_close((to_centre * poses[:, :3, 2]).sum(-1), torch.ones(24), atol=1e-4, rtol=0)
    torch.testing.assert_close(Rig.from_dict(rig.to_dict()).centre, rig.centre)


def test_procedural_scenes_stay_in_the_prior_frame() -> None:
    from coordfit.signals.views.prior import _procedural_frame

    scene = read_views("procedural:1000000004,views=3,size=8")
    rot, shift, scale = _procedural_frame(scene.c2w[:2])
    torch.testing.assert_close(rot, torch.eye(3))
    torch.testing.assert_close(shift, torch.zeros(3), atol=1e-5, rtol=0)
    assert scale == 1.0


def _write_transforms(folder: Path, frames: list[dict], **top) -> Path:
    path = folder / "transforms.json"
    path.write_text(json.dumps({**top, "frames": frames}))
    return path


def test_transforms_json_against_a_hand_made_case(tmp_path: Path) -> None:
    (tmp_path / "train").mkdir()
    rgba = np.zeros((6, 8, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 255
    rgba[0, 0, 3] = 0  # one transparent pixel: composited over white
    iio.imwrite(tmp_path / "train" / "r_0.png", rgba)
    iio.imwrite(tmp_path / "train" / "r_1.png", np.full((6, 8, 3), 90, np.uint8))
    gl = [[1.0, 0.0, 0.0, 0.5], [0.0, 0.0, -1.0, -4.0], [0.0, 1.0, 0.0, 1.0], [0.0, 0.0, 0.0, 1.0]]
    frames = [{"file_path": "./train/r_0", "transform_matrix": gl},
              {"file_path": "train/r_1.png", "transform_matrix": gl, "fl_x": 7.0, "cx": 3.0}]
    scene = read_transforms(_write_transforms(tmp_path, frames, camera_angle_x=2 * math.atan(0.5)))
    # OpenGL camera looks along -z with y up; OpenCV along +z with y down: flip the y and z columns.
    expected = torch.tensor(gl) @ torch.diag(torch.tensor([1.0, -1.0, -1.0, 1.0]))
    torch.testing.assert_close(scene.c2w[0], expected)
    torch.testing.assert_close(scene.c2w[0][:3, 2], torch.tensor([0.0, 1.0, 0.0]))  # looks along world +y
    torch.testing.assert_close(scene.fxfycxcy[0], torch.tensor([8.0, 8.0, 4.0, 3.0]))  # f = W/2 / tan(ax/2)
    torch.testing.assert_close(scene.fxfycxcy[1], torch.tensor([7.0, 7.0, 3.0, 3.0]))
    assert scene.images.shape == (2, 3, 6, 8)
    torch.testing.assert_close(scene.images[0, :, 0, 0], torch.ones(3))
    torch.testing.assert_close(scene.images[0, :, 1, 1], torch.tensor([200 / 255, 0.0, 0.0]))


def test_transforms_json_intrinsics_follow_the_image_size(tmp_path: Path) -> None:
    iio.imwrite(tmp_path / "a.png", np.zeros((10, 20, 3), np.uint8))
    eye = np.eye(4).tolist()
    path = _write_transforms(tmp_path, [{"file_path": "a", "transform_matrix": eye}],
                             fl_x=40.0, fl_y=30.0, cx=20.0, cy=10.0, w=40, h=20)
    torch.testing.assert_close(read_transforms(path).fxfycxcy[0], torch.tensor([20.0, 15.0, 10.0, 5.0]))


@pytest.mark.parametrize("what", ["no frames", "missing image", "different sizes", "nan pose", "not a rotation",
                                  "no focal length", "zero focal length", "angle too wide"])
def test_bad_transforms_json(tmp_path: Path, what: str) -> None:
    iio.imwrite(tmp_path / "a.png", np.zeros((4, 4, 3), np.uint8))
    iio.imwrite(tmp_path / "b.png", np.zeros((4, 6, 3), np.uint8))
    eye = np.eye(4).tolist()
    good = {"file_path": "a", "transform_matrix": eye}
    top: dict = {"camera_angle_x": 0.8}
    frames = [good, dict(good)]
    if what == "no frames":
        frames = []
    elif what == "missing image":
        frames[1]["file_path"] = "gone"
    elif what == "different sizes":
        frames[1]["file_path"] = "b"
    elif what == "nan pose":
        frames[1]["transform_matrix"] = [[float("nan"), 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]
    elif what == "not a rotation":
        frames[1]["transform_matrix"] = [[2.0, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]
    elif what == "no focal length":
        top = {}
    elif what == "zero focal length":
        top = {"fl_x": 0}
    elif what == "angle too wide":
        top = {"camera_angle_x": 3.5}
    with pytest.raises(CoordfitError) as err:
        read_views(_write_transforms(tmp_path, frames, **top))
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("n, inputs, holdout, message", [
    (1, None, None, "at least 2"),
    (4, [0, 1], [1, 2], "both an input and held out"),
    (4, [0, 4], [2], "names view 4"),
    (4, [0, 0], [2], "twice"),
    (3, None, [0, 1, 2], "no input views"),
])
def test_bad_view_choices(n, inputs, holdout, message) -> None:
    with pytest.raises(CoordfitError, match=message):
        choose_views(n, inputs, holdout)


def test_view_choice_defaults_to_every_view_not_held_out() -> None:
    assert choose_views(5, None, [1, 3]) == ([0, 2, 4], [1, 3])
