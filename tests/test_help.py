"""What ``--help`` says is what a command does: every default a help states is read from what
the command will really use (its preset, the device's defaults, the config's fields), every
help reads whole at 80 columns, and every command states defaults the same way."""

from __future__ import annotations

import dataclasses

import pytest
import typer.main

from coordfit.bench.config import BenchConfig, ReportConfig
from coordfit.engine.config import NVSTrainConfig
from coordfit.engine.presets import resolve_preset
from coordfit.signals.options import ImageOptions, ShapeOptions, VideoOptions, ViewsOptions
from coordfit_cli.main import app

KINDS = {"image": ImageOptions, "video": VideoOptions, "shape": ShapeOptions, "views": ViewsOptions}


def _commands() -> dict[tuple[str, ...], object]:
    """Every command of the app by its path, groups' own options included (report)."""
    out = {}
    for name, command in typer.main.get_command(app).commands.items():
        out[(name,)] = command
        for sub, cmd in (getattr(command, "commands", None) or {}).items():
            out[(name, sub)] = cmd
    return out


def _helps(path: tuple[str, ...]) -> dict[str, str]:
    """Each parameter's help (by its name) of the command at ``path``."""
    return {p.name: p.help or "" for p in _commands()[path].params if not getattr(p, "hidden", False)}


def _n(value: object) -> str:  # numbers as the helps write them
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else f"{value:g}"


def test_every_help_reads_whole_at_80_columns(runner) -> None:
    for path in _commands():
        res = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "80"})
        assert res.exit_code == 0, (path, res.output)
        assert "…" not in res.stdout, (path, [line for line in res.stdout.splitlines() if "…" in line])
        assert "[default" not in res.stdout, path  # one style everywhere: (default: X)


@pytest.mark.parametrize("kind", list(KINDS))
def test_fitting_help_defaults_are_what_the_command_runs(kind: str) -> None:
    options_cls = KINDS[kind]
    choice = resolve_preset(options_cls.default_preset, kind=kind)  # what a run with no flags uses
    cpu, cuda = choice.train.resolved("cpu"), choice.train.resolved("cuda")
    helps = _helps((kind,))
    assert f"(default: {choice.model}" in helps["model"]
    for name in ("log_every", "checkpoint_every", "seed"):
        assert f"(default: {_n(getattr(cpu, name))})" in helps[name], name
    for name in ("grid_batch", "batch_points"):
        assert _n(getattr(cpu, name)) in helps[name] and _n(getattr(cuda, name)) in helps[name], name
    assert _n(cpu.steps) in helps["steps"]
    if choice.train.time_budget is None and choice.train.steps is None:  # the first-run limits
        assert f"{_n(cpu.time_budget)} s" in helps["steps"] and f"{_n(cuda.time_budget)} s on CUDA" in helps["steps"]
    assert f"({options_cls.quality_unit or '0-1'})" in helps["target"] and "target_psnr" not in " ".join(helps)
    defaults = options_cls()
    for name in helps:  # each signal option's flag states the field's default
        if name in {f.name for f in dataclasses.fields(options_cls)} and getattr(defaults, name) is not None:
            value = getattr(defaults, name)
            shown = {True: "on", False: "off"}.get(value, value) if isinstance(value, bool) else value
            assert f"(default: {shown if isinstance(shown, str) else _n(shown)})" in helps[name], name


def test_views_help_states_the_views_preset() -> None:
    """Issue 22.1: views --help said coordx, 2000 steps or 20 s, 4,096 points while runs used hashgrid-views."""
    helps = _helps(("views",))
    assert "(default: hashgrid, from the preset hashgrid-views)" in helps["model"] and "coordx" not in helps["model"]
    assert "(default: 500)" in helps["steps"] and "20 s" not in helps["steps"]
    assert "(default: 8,192)" in helps["batch_points"]
    assert helps["prior"].endswith("(default: none).")
    image = _helps(("image",))
    assert "(default: coordx)" in image["model"] and "2,000 steps or 20 s on a CPU" in image["steps"]


@pytest.mark.parametrize("path, cls", [(("nvs", "train"), NVSTrainConfig), (("nvs", "bench"), BenchConfig),
                                       (("report",), ReportConfig)])
def test_config_commands_have_a_flag_per_field_with_its_default(path, cls) -> None:
    from coordfit.core.registry import field_docs

    helps, docs = _helps(path), field_docs(cls)
    for f in dataclasses.fields(cls):
        if f.name == "model_config":  # a mapping: -o KEY=VALUE
            assert "option" in helps
            continue
        assert f.name in helps, f.name  # every field is reachable
        value = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if value is None or "(default:" in docs[f.name]:  # no default, or its comment says it in words
            continue
        if isinstance(value, bool):
            shown = "on" if value else "off"
        elif isinstance(value, list):
            shown = ", ".join(map(_n, value))
        else:
            shown = value if isinstance(value, str) else _n(value)
        assert helps[f.name].endswith(f"(default: {shown}).") or f"(default: {shown})" in helps[f.name], f.name


def test_old_spellings_work_unlisted(runner, image_png, tmp_path) -> None:
    """--target-psnr (before --target) and --no-compile still parse; neither is listed."""
    res = runner.invoke(app, ["image", str(image_png), "--out", str(tmp_path / "a"), "--steps", "2", "--width", "8",
                              "--target-psnr", "99", "--no-compile", "--no-progress"])
    assert res.exit_code == 0, res.output
    for kind in KINDS:
        shown = runner.invoke(app, [kind, "--help"], env={"COLUMNS": "200"}).stdout
        assert "--target-psnr" not in shown and "--no-compile" not in shown
