"""The one registry contract (models, view-synthesis models, signal kinds, presets), the
config contract, and presets resolved in the library."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

import coordfit
from coordfit.core.errors import CoordfitError
from coordfit.geometry.grid import GridInfo
from coordfit.models import create_model, list_models, make_config, model_entry, register_model
from coordfit.models.grid_encoding import GridSpec
from coordfit.nvs import NVSConfig
from coordfit.nvs import create_model as create_nvs_model
from coordfit.nvs import registry as nvs_registry
from coordfit.engine.presets import PRESETS, register_preset, resolve_preset
from coordfit.core.registry import Config, Registry, field_docs
from coordfit.signals import ImageSignal, register_signal, signal_class
from coordfit.signals.base import SIGNALS
from coordfit.engine.train import TrainConfig

from conftest import smooth_image

IMAGE = GridInfo(("y", "x"), (12, 10), 3, "x+y")


def _reregister(which: str, name: str) -> None:
    """Register ``name`` again through the registry's own public function."""
    if which == "model":
        e = model_entry(name)
        register_model(name, description=e.description, config=e.config_cls, lr=e.lr, adam=e.adam,
                       splittable=e.splittable)(e.build)
    elif which == "view-synthesis model":
        e = nvs_registry.MODELS.get(name)
        nvs_registry.register_model(name, description=e.description)(e.build)
    elif which == "signal kind":
        register_signal(name)(signal_class(name))
    else:
        register_preset(PRESETS.get(name))


REGISTRIES = [
    ("model", coordfit.models.registry.MODELS, "coordx"),
    ("view-synthesis model", nvs_registry.MODELS, "lvsm"),
    ("signal kind", SIGNALS, "image"),
    ("preset", PRESETS, "siren-image"),
]


@pytest.mark.parametrize("which,registry,name", REGISTRIES, ids=[r[0] for r in REGISTRIES])
def test_every_registry_keeps_one_contract(which: str, registry: Registry, name: str) -> None:
    assert registry.what == which
    names = registry.names()
    assert name in names and name in registry and len(registry) == len(names) == len(set(names))
    assert list(registry) == names and [n for n, _ in registry.items()] == names
    # unknown names: one line that names the kind and every known name
    with pytest.raises(CoordfitError) as err:
        registry.get("no-such-thing")
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(f"unknown {which} 'no-such-thing'")
    assert all(n in msg for n in names)
    with pytest.raises(CoordfitError, match=f"unknown {which}"):
        registry[["unhashable"]]  # type: ignore[index]
    # a name registered twice warns, keeps its place, and the later entry wins
    before = registry.get(name)
    with pytest.warns(UserWarning, match=f"{which} '{name}' registered twice; the later one wins"):
        _reregister(which, name)
    assert registry.names() == names and registry.get(name) == before


def test_a_registry_in_isolation() -> None:
    reg: Registry[int] = Registry("colour")
    reg.add("red", 1)
    reg.add("blue", 2)
    assert reg.names() == ["red", "blue"] and reg.get("blue") == 2 and reg["red"] == 1
    with pytest.warns(UserWarning, match="colour 'red' registered twice"):
        reg.add("red", 3)
    assert reg.names() == ["red", "blue"] and reg.get("red") == 3


def _config_classes() -> list[type[Config]]:
    return [model_entry(n).config_cls for n in list_models()] + [NVSConfig, GridSpec]


@pytest.mark.parametrize("cls", _config_classes(), ids=lambda c: c.__name__)
def test_every_config_refuses_unknown_keys_and_validates_once(cls: type[Config]) -> None:
    assert issubclass(cls, Config) and dataclasses.is_dataclass(cls)
    assert not hasattr(cls, "check")  # one method name: validate()
    with pytest.raises(CoordfitError, match=r"has no option 'bogus' \(options: ") as err:
        cls.from_dict({"bogus": 1})
    assert all(f.name in str(err.value) for f in dataclasses.fields(cls))
    cfg = cls.from_dict({})
    assert cfg == cls() and cfg.to_dict() == dataclasses.asdict(cls())
    docs = field_docs(cls)  # every field says what it is (`coordfit models -v` shows it)
    assert set(docs) == {f.name for f in dataclasses.fields(cls)} and all(docs.values()), docs


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda: create_model("coordx", IMAGE, fusion="concat"), "fusion must be one of ['prod', 'sum'], got 'concat'"),
        (lambda: create_nvs_model("lvsm", {"attention": "sparse"}), "attention must be one of"),
        (lambda: create_nvs_model("lvsm", NVSConfig(cross_attention="sparse")), "cross-attention must be one of"),
        (lambda: create_model("hashgrid", IMAGE, backend="cuda"), "backend must be one of"),
        (lambda: create_model("siren", IMAGE, bogus=1), "model 'siren' has no option 'bogus'"),
        (lambda: create_nvs_model("lvsm", {"bogus": 1}), "view-synthesis model 'lvsm' has no option 'bogus'"),
        (lambda: create_nvs_model("lvsm", {"head_dim": 0}), "head-dim must be positive"),
        (lambda: create_model("siren", IMAGE, width="wide"), "must be int"),
        (lambda: create_model("coordx", IMAGE, full_split="maybe"), "must be true or false"),
    ],
)
def test_choices_and_values_are_checked_with_one_line(make, message: str) -> None:
    with pytest.raises(CoordfitError) as err:
        make()
    assert message in str(err.value) and "\n" not in str(err.value)


def test_values_are_read_by_their_types() -> None:
    cfg = make_config("coordx", full_split="true", rank="4", sigma=3, frequencies=None, split="x+y")
    assert cfg.full_split is True and cfg.rank == 4 and cfg.sigma == 3.0 and isinstance(cfg.sigma, float)
    assert make_config("hashgrid", **{"per-level-scale": "1.5"}).per_level_scale == 1.5


# -- presets -----------------------------------------------------------------------------

@pytest.mark.parametrize("name", PRESETS.names())
def test_every_preset_names_a_valid_model_config_and_training(name: str) -> None:
    p = PRESETS.get(name)
    assert p.kind in SIGNALS and p.model in list_models() and p.description
    make_config(p.model, **p.model_options)
    resolve_preset(name).train.validate()


@pytest.mark.parametrize("name", [n for n, p in PRESETS.items() if p.kind == "image"])
def test_every_image_preset_trains(name: str, one_thread) -> None:
    p = PRESETS.get(name)
    signal = ImageSignal(smooth_image(12, 16))
    r = coordfit.fit(signal, preset=name, train={"steps": 3, "device": "cpu"}, save=False, progress=False, width=16)
    assert r.metrics["steps"] == 3 and r.metrics["model"] == p.model and math.isfinite(r.metrics["psnr"])
    cfg = r.model.config
    assert cfg.width == 16 and all(getattr(cfg, k) == v for k, v in p.model_options.items())
    if "split" in p.model_options:
        assert r.model.split == p.model_options["split"]


def test_paper_presets_reproduce_the_papers_image_setting() -> None:
    camera = ImageSignal.load("skimage:camera")
    assert camera.shape == (512, 512) and camera.out_features == 1
    for name, model in (("siren-image-paper", "siren"), ("coordx-image-paper", "coordx"),
                        ("coordx-image-full-paper", "coordx")):
        choice = resolve_preset(name)
        t = choice.train
        assert choice.model == model and choice.source == "skimage:camera"
        assert (t.steps, t.lr) == (10_000, 1e-4)
        assert t.grid_batch >= 512 * 512 and t.batch_points >= 512 * 512  # the whole grid every step
    full = make_config("coordx", **resolve_preset("coordx-image-full-paper").model_options)
    assert full.full_split and full.rank == 256  # the official full split
    official = make_config("coordx", **resolve_preset("coordx-image-paper").model_options)
    assert (official.rank, official.shared_layers, official.shared_bias) == (1, 2, "divided")


def test_presets_resolve_under_explicit_choices() -> None:
    base = resolve_preset("coordx-image-paper")
    for train in ({"steps": 5}, TrainConfig(steps=5)):
        r = resolve_preset("coordx-image-paper", train=train, model_options={"rank": 2})
        assert r.train.steps == 5 and r.train.lr == 1e-4 and r.train.grid_batch == base.train.grid_batch
        assert r.model_options == {"split": "x+y", "rank": 2} and r.kind == "image"
    none = resolve_preset(None)
    assert (none.kind, none.model, none.model_options, none.source) == ("image", "coordx", {}, None)
    assert none.train == TrainConfig()
    with pytest.raises(CoordfitError, match="is for video signals, not image"):
        resolve_preset("siren-video", kind="image")
    with pytest.raises(CoordfitError, match="uses model 'siren', not 'coordx'"):
        resolve_preset("siren-image", model="coordx")
    with pytest.raises(CoordfitError, match="unknown preset 'nope'"):
        resolve_preset("nope")
    with pytest.raises(CoordfitError, match=r"training has no option 'stpes' \(options: steps, "):
        resolve_preset("coordx-image-paper", train={"stpes": 5})
    with pytest.raises(CoordfitError, match="training option steps='many' must be int"):
        resolve_preset(None, train={"steps": "many"})
    assert resolve_preset(None, train={"steps": "7", "lr": "1e-3"}).train.steps == 7  # read by type, as -o values


def test_fit_takes_a_preset_in_the_library(one_thread) -> None:
    signal = ImageSignal(smooth_image(12, 16))
    r = coordfit.fit(signal, preset="coordx-image-r2", train=TrainConfig(steps=2, device="cpu"), save=False,
                     progress=False, width=8)
    assert r.model.config.rank == 2 and r.model.split == "x+y" and r.metrics["steps"] == 2
    with pytest.raises(CoordfitError, match="is for video signals, not image"):
        coordfit.fit(signal, preset="siren-video", save=False)


def test_a_preset_without_a_signal_fits_its_own(monkeypatch) -> None:
    seen = {}

    def fake_load(cls, source=None, **options):
        seen["source"] = source
        return ImageSignal(np.zeros((4, 4, 1), np.float32))

    monkeypatch.setattr(ImageSignal, "load", classmethod(fake_load))
    r = coordfit.fit(preset="siren-image-paper", train={"steps": 1, "device": "cpu"}, save=False, progress=False,
                     width=4)
    assert seen["source"] == "skimage:camera" and r.metrics["model"] == "siren"
    assert torch.isfinite(torch.tensor(r.metrics["psnr"]))


def test_models_verbose_lists_every_option_with_its_meaning(runner) -> None:
    from coordfit_cli.main import app

    res = runner.invoke(app, ["models", "-v"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    for name in list_models():
        assert f"{name} options" in res.stdout
        assert all(f.name in res.stdout for f in dataclasses.fields(model_entry(name).config_cls))
    assert "the official full split uses 256; coordfit keeps 1 for both" in res.stdout  # the rank choice, stated
    res = runner.invoke(app, ["presets"], env={"COLUMNS": "200"})
    assert res.exit_code == 0 and all(p in res.stdout for p in ("siren-image-paper", "coordx-image-full-paper"))
