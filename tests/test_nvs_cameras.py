"""Cameras: Plucker rays against hand-computed cases, conventions, pose normalisation."""

import math

import pytest
import torch

from coordfit.geometry.cameras import look_at, normalize_poses, opengl_to_opencv, pixel_rays, plucker


pytestmark = pytest.mark.usefixtures("one_thread")


def _rot_z90_at(t):
    c2w = torch.eye(4, dtype=torch.float64)
    c2w[:3, :3] = torch.tensor([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]], dtype=torch.float64)
    c2w[:3, 3] = torch.tensor(t, dtype=torch.float64)
    return c2w


def test_plucker_identity_camera_hand_computed():
    # fx = fy = 2, cx = cy = 1, 2x2 image: pixel (0, 0) centre is (0.5, 0.5)
    emb = plucker(torch.eye(4, dtype=torch.float64), torch.tensor([2.0, 2, 1, 1], dtype=torch.float64), 2, 2)
    assert emb.shape == (6, 2, 2)
    d = torch.tensor([-0.25, -0.25, 1.0], dtype=torch.float64) / math.sqrt(1.125)
    torch.testing.assert_close(emb[3:, 0, 0], d)
    torch.testing.assert_close(emb[3:, 1, 1], torch.tensor([0.25, 0.25, 1.0], dtype=torch.float64) / math.sqrt(1.125))
    torch.testing.assert_close(emb[:3], torch.zeros(3, 2, 2, dtype=torch.float64))  # centre at origin


def test_plucker_rotated_translated_camera_hand_computed():
    # camera at (1, 2, 3), rotated 90 degrees about z; fx = fy = 1, cx = cy = 0.5, 1x2 image
    c2w = _rot_z90_at([1.0, 2.0, 3.0])
    k = torch.tensor([1.0, 1.0, 0.5, 0.5], dtype=torch.float64)
    emb = plucker(c2w, k, 1, 2)
    # pixel u=0: camera direction (0, 0, 1) -> world (0, 0, 1); moment (1,2,3) x (0,0,1) = (2, -1, 0)
    torch.testing.assert_close(emb[:, 0, 0], torch.tensor([2.0, -1, 0, 0, 0, 1], dtype=torch.float64))
    # pixel u=1: camera direction (1, 0, 1)/sqrt2 -> world (0, 1, 1)/sqrt2; moment (-1, -1, 1)/sqrt2
    s = 1 / math.sqrt(2)
    torch.testing.assert_close(emb[:, 0, 1], torch.tensor([-s, -s, s, 0, s, s], dtype=torch.float64))


def test_plucker_moment_is_invariant_along_the_ray():
    k = torch.tensor([1.0, 1.0, 0.5, 0.5], dtype=torch.float64)
    a = _rot_z90_at([1.0, 2.0, 3.0])
    b = _rot_z90_at([1.0, 2.0, 5.5])  # moved along its own optical axis (world +z)
    torch.testing.assert_close(plucker(a, k, 1, 1), plucker(b, k, 1, 1))
    c = _rot_z90_at([1.0, 2.5, 3.0])  # moved sideways: the moment must change
    assert (plucker(a, k, 1, 1) - plucker(c, k, 1, 1)).abs().max() > 0.1


def test_batched_rays_match_single_cameras():
    c2w = torch.stack([_rot_z90_at([0.0, 0, 0]), _rot_z90_at([1.0, -1, 2])]).float()
    k = torch.tensor([[30.0, 30, 16, 16], [20.0, 25, 15, 17]])
    o, d = pixel_rays(c2w, k, 32, 32)
    assert o.shape == d.shape == (2, 32, 32, 3)
    for i in range(2):
        torch.testing.assert_close(d[i], pixel_rays(c2w[i], k[i], 32, 32)[1])
    torch.testing.assert_close(d.norm(dim=-1), torch.ones(2, 32, 32))


def test_opengl_camera_looks_down_minus_z():
    c2w_cv = opengl_to_opencv(torch.eye(4))
    _, d = pixel_rays(c2w_cv, torch.tensor([1.0, 1.0, 0.5, 0.5]), 1, 1)
    torch.testing.assert_close(d[0, 0], torch.tensor([0.0, 0.0, -1.0]))
    torch.testing.assert_close(c2w_cv[:3, 1], torch.tensor([0.0, -1.0, 0.0]))  # image down = GL -y
    torch.testing.assert_close(opengl_to_opencv(c2w_cv), torch.eye(4))  # its own inverse


def test_look_at_points_centre_ray_at_target_with_up_up():
    c2w = look_at(torch.tensor([0.0, -4.0, 0.0]), torch.zeros(3))
    _, d = pixel_rays(c2w, torch.tensor([1.0, 1.0, 0.5, 0.5]), 1, 1)
    torch.testing.assert_close(d[0, 0], torch.tensor([0.0, 1.0, 0.0]))
    torch.testing.assert_close(c2w[:3, 1], torch.tensor([0.0, 0.0, -1.0]))  # image down is world -z
    torch.testing.assert_close(torch.linalg.det(c2w[:3, :3]), torch.tensor(1.0))


def test_normalize_poses_keeps_relative_geometry():
    eyes = torch.tensor([[4.0, 0, 1], [0, 4.0, 1], [-4.0, 0, 1]])
    c2w = look_at(eyes, torch.zeros(3, 3))
    ref, tgt = normalize_poses(c2w[:2], c2w[2:])
    torch.testing.assert_close(ref[:, :3, 3].mean(0), torch.zeros(3), atol=1e-6, rtol=0)
    assert ref[:, :3, 3].abs().max() == pytest.approx(1.0)
    # distances between cameras scale uniformly, rotations between cameras are kept
    d_before = torch.cdist(c2w[:, :3, 3], c2w[:, :3, 3])
    allp = torch.cat([ref, tgt])
    d_after = torch.cdist(allp[:, :3, 3], allp[:, :3, 3])
    assert d_after[0, 2] / d_after[0, 1] == pytest.approx(float(d_before[0, 2] / d_before[0, 1]), rel=1e-5)
    rel_before = c2w[0, :3, :3].T @ c2w[2, :3, :3]
    rel_after = allp[0, :3, :3].T @ allp[2, :3, :3]
    torch.testing.assert_close(rel_after, rel_before, atol=1e-5, rtol=0)
