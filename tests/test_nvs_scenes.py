"""Scene JSON format: round trip, clear errors for bad files, the procedural renderer."""

import json
import math

import pytest
import torch

from coordfit.core.errors import CoordfitError
from coordfit.nvs.procedural import ProceduralConfig, make_scene
from coordfit.nvs.scenes import list_scenes, load_scene, save_scene


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture()
def scene_dir(tmp_path):
    save_scene(make_scene(7, ProceduralConfig(size=16, views=3)), tmp_path)
    return tmp_path


def test_scene_round_trip(tmp_path):
    scene = make_scene(3, ProceduralConfig(size=24, views=4))
    path = save_scene(scene, tmp_path)
    data = json.loads(path.read_text())
    assert set(data["frames"][0]) == {"image_path", "fxfycxcy", "w2c"}
    back = load_scene(path)
    assert back.name == scene.name and back.images.shape == (4, 3, 24, 24)
    torch.testing.assert_close(back.c2w, scene.c2w, atol=1e-5, rtol=0)
    torch.testing.assert_close(back.fxfycxcy, scene.fxfycxcy)
    assert (back.images - scene.images).abs().max() <= 0.5 / 255 + 1e-6  # 8-bit PNG
    # w2c really is the inverse of c2w
    w2c = torch.tensor(data["frames"][1]["w2c"])
    torch.testing.assert_close(w2c @ scene.c2w[1], torch.eye(4), atol=1e-5, rtol=0)


def test_procedural_scenes_are_deterministic_and_varied():
    cfg = ProceduralConfig(size=16, views=2)
    a, b, c = make_scene(11, cfg), make_scene(11, cfg), make_scene(12, cfg)
    assert torch.equal(a.images, b.images) and torch.equal(a.c2w, b.c2w)
    assert (a.images - c.images).abs().mean() > 0.02
    assert a.images.min() >= 0 and a.images.max() <= 1
    # images are not flat: objects, checker and sky give structure
    assert a.images.std() > 0.05


def test_orbit_layout_spaces_cameras_evenly():
    s = make_scene(0, ProceduralConfig(size=8, views=4, layout="orbit"))
    xy = s.c2w[:, :2, 3]
    ang = torch.atan2(xy[:, 1], xy[:, 0])
    gaps = torch.remainder(ang.roll(-1) - ang, 2 * math.pi)
    torch.testing.assert_close(gaps, torch.full((4,), math.pi / 2), atol=1e-4, rtol=0)


def _edit(scene_dir, change):
    path = list_scenes(scene_dir)[0]
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: d["frames"][1].update(image_path="nope.png"), "does not exist"),
        (lambda d: d["frames"][0].pop("w2c"), "has no 'w2c'"),
        (lambda d: d["frames"][0].update(w2c=[[1, 0, 0]]), "4x4"),
        (lambda d: d["frames"][0]["w2c"][0].__setitem__(0, 3.0), "not a rotation"),
        (lambda d: d["frames"][0]["w2c"][3].__setitem__(0, 1.0), "last row"),
        (lambda d: d["frames"][0].update(fxfycxcy=[1, 2, 3]), "list of 4 numbers"),
        (lambda d: d["frames"][0].update(fxfycxcy=[-1, 2, 3, 4]), "positive"),
        (lambda d: d.update(frames=[]), "empty"),
        (lambda d: d.pop("frames"), "'frames' list"),
    ],
)
def test_bad_scene_files_give_clear_errors(scene_dir, change, message):
    path = _edit(scene_dir, change)
    with pytest.raises(CoordfitError, match=message):
        load_scene(path)


def test_mismatched_image_sizes_and_broken_files(scene_dir, tmp_path_factory):
    import imageio.v3 as iio
    import numpy as np

    path = list_scenes(scene_dir)[0]
    img1 = path.parent / json.loads(path.read_text())["frames"][1]["image_path"]
    iio.imwrite(img1, np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(CoordfitError, match="same size"):
        load_scene(path)
    good = img1.read_bytes()
    for broken in (b"not a png", b"", good[:40]):  # garbage, empty, truncated
        img1.write_bytes(broken)
        with pytest.raises(CoordfitError, match="cannot read image"):
            load_scene(path)
    path.write_text("{ not json")
    with pytest.raises(CoordfitError, match="not valid JSON"):
        load_scene(path)
    with pytest.raises(CoordfitError, match="no scene .json"):
        list_scenes(tmp_path_factory.mktemp("empty"))


def test_interrupted_scene_writing_leaves_the_folder_reusable(tmp_path, monkeypatch):
    from coordfit.nvs import data

    cfg = ProceduralConfig(size=8, views=2)
    out = tmp_path / "scenes"
    save = data.save_scene

    def ctrl_c_after_one(scene, folder):
        if scene.name == "scene_00001":
            raise KeyboardInterrupt
        return save(scene, folder)

    monkeypatch.setattr(data, "save_scene", ctrl_c_after_one)
    with pytest.raises(KeyboardInterrupt):
        data.write_scenes(out, 3, cfg, seed=5)
    assert [p.name for p in tmp_path.iterdir()] == ["scenes"] and not any(out.iterdir())
    monkeypatch.undo()
    data.write_scenes(out, 3, cfg, seed=5)  # the same --out again
    assert [p.name for p in list_scenes(out)] == ["scene_00000.json", "scene_00001.json", "scene_00002.json"]
    torch.testing.assert_close(load_scene(out / "scene_00002.json").c2w, make_scene(7, cfg).c2w, atol=1e-5, rtol=0)
    (tmp_path / "plain").mkdir()
    assert out.stat().st_mode == (tmp_path / "plain").stat().st_mode  # not a temporary folder's private mode
    with pytest.raises(CoordfitError, match="is not empty; choose a new folder$"):
        data.write_scenes(out, 1, cfg)
