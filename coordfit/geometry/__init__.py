"""Coordinates and cameras: the signal grid and its split sub-grids, camera maths (rays,
look-at, intrinsics), the camera rig and volume rendering along rays."""
