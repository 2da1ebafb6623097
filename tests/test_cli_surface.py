"""The CLI surface: --version, a fast --help that loads no torch, help texts shown whole,
-o reaching signal options, --resume refusing flags that would change the run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from coordfit_cli.main import app

FAST = ["--steps", "3", "--width", "8", "--no-progress"]


def test_help_and_version_import_no_torch() -> None:
    code = """
import json, sys
from typer.testing import CliRunner
from coordfit_cli.main import app
codes = [CliRunner().invoke(app, a).exit_code for a in (["--help"], ["image", "--help"], ["video", "--help"],
                                                      ["shape", "--help"], ["views", "--help"], ["report", "--help"],
                                                      ["nvs", "train", "--help"], ["nvs", "bench", "--help"],
                                                      ["--version"])]
print(json.dumps({"codes": codes, "heavy": sorted(m for m in ("torch", "numpy", "coordfit.api") if m in sys.modules)}))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result == {"codes": [0] * 9, "heavy": []}


def test_version(runner) -> None:
    import coordfit

    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0 and res.stdout.strip() == f"coordfit {coordfit.__version__}"


def _options(command) -> list:
    """Every parameter of ``command`` and of its subcommands."""
    params = list(command.params)
    for sub in getattr(command, "commands", {}).values():
        params += _options(sub)
    return params


def test_help_texts_with_brackets_are_shown_whole(runner) -> None:
    import typer

    from coordfit_cli.main import _OneLineErrors

    demo = typer.Typer(cls=_OneLineErrors)  # the group class of coordfit's app, which escapes help texts

    @demo.command()
    def go(steps: int = typer.Option(1, help="Total steps [default: 2000; resume: as saved].")) -> None:
        """Go [fast] somewhere."""

    @demo.command()
    def stay() -> None:
        """Stay."""

    res = runner.invoke(demo, ["go", "--help"], env={"COLUMNS": "400"})
    assert res.exit_code == 0
    assert "Total steps [default: 2000; resume: as saved]." in res.stdout and "Go [fast] somewhere." in res.stdout
    group = typer.main.get_command(app)  # and every bracketed help text of coordfit's own commands
    for name, command in group.commands.items():
        for sub, cmd in (getattr(command, "commands", None) or {name: command}).items():
            texts = [p.help for p in cmd.params if "[" in (getattr(p, "help", None) or "")]
            path = [name, sub] if sub != name else [name]
            shown = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "400"}).stdout
            assert all(t in shown for t in texts), (path, texts)


def test_split_is_echoed_as_written(runner, tmp_path: Path) -> None:
    out = tmp_path / "v"
    res = runner.invoke(app, ["video", "--split", "xy+t", "--max-frames", "2", "--resize", "8x8", "--out", str(out), *FAST])
    assert res.exit_code == 0, res.output
    assert json.loads((out / "metrics.json").read_text())["split"] == "xy+t"


def test_dash_o_reaches_signal_options_and_model_options(runner, tmp_path: Path) -> None:
    out = tmp_path / "v"
    res = runner.invoke(app, ["video", "-o", "max_frames=2", "-o", "resize=8x6", "-o", "fusion=sum", "--out", str(out),
                              *FAST])
    assert res.exit_code == 0, res.output
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["signal"]["options"] == {"max_frames": 2, "resize": [8, 6]}
    assert cfg["signal"]["shape"][0] == 2 and cfg["model_config"]["fusion"] == "sum"
    res = runner.invoke(app, ["video", "-o", "resize=big", "--out", str(tmp_path / "w"), *FAST])
    assert res.exit_code == 2 and "--resize (video signal option resize) must be 2 whole numbers" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_dash_o_goes_to_the_model_where_both_take_the_key(runner, tmp_path: Path) -> None:
    out = tmp_path / "s"
    res = runner.invoke(app, ["shape", "--label-resolution", "16", "--resolution", "16", "--eval-points", "100",
                              "-o", "seed=3", "-o", "margin=0.1", "--out", str(out), *FAST])
    assert res.exit_code == 0, res.output
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model_config"]["seed"] == 3  # coordx's Fourier seed, as before signal options took -o
    assert cfg["signal"]["options"]["margin"] == 0.1 and cfg["signal"]["options"]["seed"] == 0


@pytest.mark.parametrize("args,named", [
    (["--width", "16"], "--width"),
    (["--lr", "0.01"], "--lr"),
    (["-o", "fusion=sum"], "-o"),
    (["--alpha", "drop"], "--alpha"),
    (["--seed", "0"], "--seed"),
    (["--precision", "fp32"], "--precision"),
])
def test_resume_refuses_flags_that_change_the_run(runner, image_png: Path, tmp_path: Path, args, named) -> None:
    out = tmp_path / "r"
    assert runner.invoke(app, ["image", str(image_png), "--out", str(out), *FAST]).exit_code == 0
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    res = runner.invoke(app, ["image", "--resume", str(out), "--steps", "5", *args])
    assert res.exit_code == 2, res.output
    assert res.stderr.startswith("error: --resume continues the run") and named in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before


def test_resume_takes_the_flags_that_keep_the_run(runner, image_png: Path, tmp_path: Path) -> None:
    out = tmp_path / "r"
    assert runner.invoke(app, ["image", str(image_png), "--out", str(out), *FAST]).exit_code == 0
    res = runner.invoke(app, ["image", "--resume", str(out), "--steps", "5", "--threads", "1", "--device", "cpu",
                              "--checkpoint-every", "2", "--target", "90", "--no-progress"])
    assert res.exit_code == 0, res.output
    train = json.loads((out / "config.json").read_text())["train"]
    assert train["steps"] == 5 and train["checkpoint_every"] == 2 and train["target"] == 90.0
    assert json.loads((out / "metrics.json").read_text())["steps"] == 5


def test_a_full_out_folder_suggests_resume_only_where_there_is_one(tmp_path: Path) -> None:
    from coordfit.core.errors import CoordfitError
    from coordfit.core.io import ensure_empty_dir

    (tmp_path / "x").write_text("x")
    with pytest.raises(CoordfitError, match=r"not empty; choose a new folder or use --resume"):
        ensure_empty_dir(tmp_path)
    with pytest.raises(CoordfitError, match=r"not empty; choose a new folder$"):
        ensure_empty_dir(tmp_path, resumable=False)  # as `report merge`, which has no --resume


def test_shipped_files_resolve_from_the_top_level_assets_folder() -> None:
    from coordfit.core.defaults import asset_path
    from coordfit.nvs.registry import SHIPPED_CHECKPOINT

    assert SHIPPED_CHECKPOINT == asset_path("nvs", "efficient-lvsm-32px.safetensors") and SHIPPED_CHECKPOINT.is_file()
    assert asset_path("nvs", "efficient-lvsm-32px.json").is_file()
