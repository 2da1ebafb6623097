"""The speedup report: a tiny suite end to end, merging shards, resume, the CLI."""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import torch

from coordfit.bench import (KindSettings, ModelSpec, SignalSpec, Suite, merge_reports, parse_shard, run_suite,
                            time_interleaved, train_interleaved)
from coordfit.bench.tables import fmt
from coordfit.bench.suite import build_suite, load_bench_signal, resolve_model_options, shard_signals, with_budgets
from coordfit.core.errors import CoordfitError
from conftest import smooth_image

MODELS = ("siren", "coordx")
FILES = ("suite.json", "results.json", "report.md", "report.html", "psnr_vs_time_image.png",
         "speedup_image.png", "thumbnails_image.png")


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def tiny_suite(folder: Path) -> Suite:
    import imageio.v3 as iio

    signals = []
    for j in range(2):
        path = folder / f"img{j}.png"
        iio.imwrite(path, (smooth_image(16, 20, 3, seed=j) * 255).round().astype(np.uint8))
        signals.append(SignalSpec(f"image-s{j}", "image", str(path)))
    return Suite("tiny", tuple(signals), tuple(ModelSpec(m, m) for m in MODELS),
                 {"image": KindSettings(steps=40, seconds=0.4, target=14.0, width=32)},
                 repeats=3, warmup=1, device="cpu")


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    """One full run and the two shards of the same tiny suite (about 15 s on one thread)."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("report")
    suite = tiny_suite(root)
    out = {"full": root / "full", "s1": root / "s1", "s2": root / "s2"}
    run_suite(suite, out["full"], progress=False)
    run_suite(suite, out["s1"], shard=(1, 2), progress=False)
    run_suite(suite, out["s2"], shard=(2, 2), progress=False)
    merge_reports([out["s1"], out["s2"]], root / "merged")
    out["merged"] = root / "merged"
    return suite, out


def _results(folder: Path) -> dict:
    return json.loads((folder / "results.json").read_text())


def test_every_file_is_written(reports):
    _, out = reports
    for name in FILES:
        assert (out["full"] / name).is_file() and (out["full"] / name).stat().st_size > 0, name
    for sig in ("image-s0", "image-s1"):
        for m in MODELS:
            assert (out["full"] / "thumbs" / f"{sig}__{m}.png").is_file()


def test_results_hold_every_pair_with_numbers(reports):
    suite, out = reports
    r = _results(out["full"])
    assert r["machines"][0]["torch"] == torch.__version__ and r["machines"][0]["cpu_cores"] >= 1
    for sig in ("image-s0", "image-s1"):
        t = r["timings"][sig]["models"]
        for m in MODELS:
            steps, timed = r["fits"][f"{sig}__{m}__equal_steps"], r["fits"][f"{sig}__{m}__equal_time"]
            assert steps["steps"] == 40 and timed["train_seconds"] >= 0.4
            assert 10.0 < steps["metrics"]["psnr"] < 60.0 and 0.0 < steps["metrics"]["ssim"] <= 1.0
            assert steps["params"] == t[m]["params"] > 0 and t[m]["flops_per_sample"] > 0
            assert t[m]["samples_per_step"] == 16 * 20  # the whole (tiny) grid every step
            assert t[m]["inference_seconds"]["min"] <= t[m]["inference_seconds"]["median"] <= t[m]["inference_seconds"]["max"]
            assert t[m]["inference_seconds"]["repeats"] == 3 and t[m]["train_samples_per_s"] > 0
            assert len(timed["curve"]) >= 2 and timed["curve"][-1][1] == pytest.approx(timed["train_seconds"], abs=1e-3)
            ttt = timed["time_to_target"]
            first = next((c for c in timed["curve"] if c[2] >= 14.0), None)
            assert ttt["reached"] == (first is not None)
    # equal parameter count: CoordX has one extra first layer (x and y branches) over SIREN
    siren, coordx = (r["fits"][f"image-s0__{m}__equal_steps"]["params"] for m in MODELS)
    assert coordx - siren == 32


def _md_headline(md: str) -> list[list[str]]:
    lines = md.split("## image", 1)[1].splitlines()
    rows = [ln for ln in lines if ln.startswith("| ")]
    end = next(j for j, ln in enumerate(rows[1:], 1) if ln.startswith("| model"))  # next table's header
    return [[c.strip() for c in ln.strip("|").split("|")] for ln in rows[:end]]


def test_markdown_table_matches_json(reports):
    _, out = reports
    r = _results(out["full"])
    table = _md_headline((out["full"] / "report.md").read_text())
    s = r["summary"]["image"]
    assert table[0] == s["columns"]
    assert [row[0] for row in table[1:]] == list(MODELS)
    for row, want in zip(table[1:], s["rows"]):
        assert row == [fmt(v, c) for v, c in zip(want, s["columns"])]
    # and the summary is the mean of the items it claims to summarise
    psnr = np.mean([r["fits"][f"{sig}__coordx__equal_steps"]["metrics"]["psnr"] for sig in ("image-s0", "image-s1")])
    assert table[2][2] == f"{psnr:.2f}" and table[2][1] == f"{r['fits']['image-s0__coordx__equal_steps']['params']:,}"
    assert table[1][8] == "1.00x" and table[2][-1] == "up to 2.92x"


def test_each_table_states_its_budgets_and_how_parameters_compare(reports):
    _, out = reports
    r = _results(out["full"])
    md = (out["full"] / "report.md").read_text()
    s = r["summary"]["image"]
    budgets, params = s["notes"]
    assert budgets.startswith("Budgets: equal_steps gave every model 40 optimiser steps")
    assert "equal_time gave every model 0.4 s of training" in budgets and budgets in md
    assert params == (f"Parameters: SIREN has {r['fits']['image-s0__siren__equal_steps']['params']:,}; coordx "
                      "within 5% of it (matched).")
    i, j = s["columns"].index("seconds for 40 steps"), s["columns"].index("steps in 0.4 s")
    coordx = s["rows"][1]
    assert coordx[i] == pytest.approx(np.mean([r["fits"][f"image-s{k}__coordx__equal_steps"]["train_seconds"]
                                               for k in range(2)]))
    assert coordx[j] == pytest.approx(np.mean([r["fits"][f"image-s{k}__coordx__equal_time"]["steps"] for k in range(2)]))
    assert "not matched" not in md and "every model at about SIREN's parameter count" not in md


def test_a_parameter_statement_names_what_is_not_matched():
    from coordfit.bench.tables import _params_note

    rows = [["siren", 12_803], ["coordx", 12_931], ["hashgrid", 25_000], ["splitgrid", 4_000]]
    (note,) = _params_note(rows, {m: m for m, _ in rows})
    assert note == ("Parameters: SIREN has 12,803; coordx within 5% of it (matched); hashgrid 2x, splitgrid 0.31x "
                    "of it (grid models run at their own defaults, not matched).")


def test_thumbnails_show_the_equal_time_reconstructions(reports):
    import imageio.v3 as iio

    import coordfit
    from coordfit.geometry.grid import axis_coords, evaluate_grid

    _, out = reports
    for m in MODELS:
        run = coordfit.load(out["full"] / "runs" / "image-s0" / m / "equal_time")
        want = (evaluate_grid(run.model, [axis_coords(16), axis_coords(20)]).clamp(-1, 1) + 1) * 127.5
        thumb = iio.imread(out["full"] / "thumbs" / f"image-s0__{m}__equal_time.png").astype(np.float64)
        assert np.abs(thumb - want.detach().numpy()).max() <= 1.0
    assert (out["merged"] / "thumbs" / f"image-s1__coordx__equal_time.png").is_file()


def _deterministic(results: dict) -> dict:
    keep = ("params", "steps", "options", "split")
    fits = {k: {**{f: v[f] for f in keep}, "psnr": v["metrics"]["psnr"]} for k, v in results["fits"].items()
            if v["protocol"] == "equal_steps"}
    timed = sorted(k for k, v in results["fits"].items() if v["protocol"] == "equal_time")
    timings = {s: sorted(t["models"]) for s, t in results["timings"].items()}
    return {"signals": results["signals"], "fits": fits, "timed": timed, "timings": timings,
            "columns": results["summary"]["image"]["columns"]}


def test_merging_two_shards_equals_running_both(reports):
    suite, out = reports
    assert [s.id for s in shard_signals(suite, (1, 2))] == ["image-s0"]
    one, both = _results(out["s1"]), _results(out["merged"])
    assert one["signals"] == ["image-s0"]
    assert _deterministic(both) == _deterministic(_results(out["full"]))
    assert both["shards"] == [[1, 2], [2, 2]]
    for name in FILES:
        assert (out["merged"] / name).is_file()
    with pytest.raises(CoordfitError, match="more than one folder"):
        merge_reports([out["s1"], out["s1"]], out["s1"].parent / "twice")
    with pytest.raises(CoordfitError, match="not empty"):
        merge_reports([out["s1"], out["s2"]], out["merged"])


class _Tree(HTMLParser):
    VOID = {"meta", "img", "br", "hr", "link", "input"}

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.seen: list[str] = []
        self.images: list[str] = []
        self.errors: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.seen.append(tag)
        if tag == "img":
            self.images.append(dict(attrs)["src"])
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.seen.append(tag)
        if tag == "img":
            self.images.append(dict(attrs)["src"])

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()


def test_html_is_well_formed_and_self_contained(reports):
    _, out = reports
    text = (out["full"] / "report.html").read_text()
    assert text.startswith("<!DOCTYPE html>")
    tree = _Tree()
    tree.feed(text)
    tree.close()
    assert tree.errors == [] and tree.stack == []
    for tag in ("html", "head", "title", "body", "h1", "table", "img"):
        assert tag in tree.seen
    assert tree.seen.count("table") == 1 + 2  # the headline table, one per signal
    assert len(tree.images) == 3
    import imageio.v3 as iio

    for src in tree.images:
        assert src.startswith("data:image/png;base64,")
        img = iio.imread(io.BytesIO(base64.b64decode(src.split(",", 1)[1])), extension=".png")
        assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100
    assert "http://" not in text and "https://" not in text  # nothing fetched from elsewhere


def test_resume_skips_what_is_measured(reports, tmp_path):
    suite, out = reports
    # an interrupted shard: one item (and the timing) gone, the rest kept
    import shutil

    folder = tmp_path / "again"
    shutil.copytree(out["s1"], folder)
    (folder / "items" / "image-s0__coordx__equal_time.json").unlink()
    (folder / "items" / "image-s0__timing.json").unlink()
    kept = (folder / "items" / "image-s0__siren__equal_steps.json").stat().st_mtime_ns
    with pytest.raises(CoordfitError, match="not empty"):
        run_suite(suite, folder, shard=(1, 2), progress=False)
    with pytest.raises(CoordfitError, match="another suite or shard"):
        run_suite(suite, folder, shard=(2, 2), resume=True, progress=False)
    run_suite(suite, folder, shard=(1, 2), resume=True, progress=False)
    assert (folder / "items" / "image-s0__siren__equal_steps.json").stat().st_mtime_ns == kept
    assert (folder / "items" / "image-s0__coordx__equal_time.json").is_file()
    assert sorted(_results(folder)["fits"]) == sorted(_results(out["s1"])["fits"])


def test_timing_protocol_interleaves_and_orders():
    calls: list[str] = []
    stats = time_interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, warmup=1, repeats=4)
    assert calls == ["a", "b"] * 5  # one warm-up round, then repeats interleaved
    assert stats["a"].repeats == 4 and stats["a"].min <= stats["a"].median <= stats["a"].max


def test_interleaved_training_gives_each_trainer_its_stops_not_their_sum():
    class Stub:  # a Trainer's budget counts from each run(); each run overshoots by one 0.01 s step
        def __init__(self) -> None:
            self.seconds, self.config = 0.0, dataclasses.make_dataclass("C", [("time_budget", float)])(0.0)

        def run(self, progress: bool) -> None:
            self.seconds += self.config.time_budget + 0.01

    turns: list[tuple[str, float]] = []
    stubs = {"a": Stub(), "b": Stub()}
    train_interleaved(stubs, [5.0, 10.0, 15.0], lambda name, t: turns.append((name, round(t.seconds, 2))))
    assert turns == [("a", 5.01), ("b", 5.01), ("a", 10.01), ("b", 10.01), ("a", 15.01), ("b", 15.01)]


def test_suites_and_shards():
    quick = build_suite("quick")
    labels = [m.label for m in quick.models]
    assert labels[:5] == ["siren", "pe-mlp", "coordx", "coordx-full", "coordx-r2"]
    from coordfit.models import list_models

    assert set(list_models()) <= {m.model for m in quick.models}  # every registered model is benchmarked
    assert [s.source for s in quick.signals if s.kind == "image"] == ["skimage:astronaut", "skimage:camera"]
    assert parse_shard("2/8") == (2, 8) and parse_shard(None) == (1, 1)
    for bad in ("0/3", "4/3", "x", "1/0"):
        with pytest.raises(CoordfitError):
            parse_shard(bad)
    ids = [s.id for i in range(1, 4) for s in shard_signals(quick, (i, 3))]
    assert sorted(ids) == sorted(s.id for s in quick.signals)  # shards partition the suite
    with pytest.raises(CoordfitError, match="needs the real-data folder"):
        build_suite("standard", data="/nonexistent/data")
    reduced = with_budgets(quick, steps=7, seconds=1.5, repeats=2)
    assert reduced.kinds["image"].steps == 7 and reduced.kinds["image"].seconds == 1.5 and reduced.repeats == 2
    assert reduced.kinds["image"].width == quick.kinds["image"].width and reduced.signals == quick.signals
    with pytest.raises(CoordfitError, match="--steps must be positive"):
        with_budgets(quick, steps=0)


def test_equal_parameter_matching():
    from coordfit.geometry.grid import GridInfo
    from coordfit.models import create_model

    info = GridInfo(("y", "x"), (64, 64), 3, "x+y")
    siren = create_model("siren", info, width=128).num_params()
    for spec in (ModelSpec("pe-mlp", "pe-mlp", match="width"), ModelSpec("r2", "coordx", {"rank": 2}, match="width")):
        opts = resolve_model_options(spec, info, 128)
        n = create_model(spec.model, info, **opts).num_params()
        assert abs(n - siren) / siren < 0.02, (spec.label, n, siren)


def test_cli_report_and_merge(reports, runner, tmp_path):
    from coordfit_cli.main import app

    import subprocess
    import sys

    _, out = reports
    # once as a real process: the installed entry module, exit code, where results went
    proc = subprocess.run([sys.executable, "-m", "coordfit_cli.main", "report", "merge", str(out["s1"]),
                           str(out["s2"]), "--out", str(tmp_path / "m")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert str(tmp_path / "m" / "report.md") in proc.stdout.replace("\n", "")
    assert (tmp_path / "m" / "report.html").is_file()
    res = runner.invoke(app, ["report", "merge", str(tmp_path / "nothing"), "--out", str(tmp_path / "m2")])
    assert res.exit_code == 2 and "error:" in res.output and "Traceback" not in res.output
    res = runner.invoke(app, ["report", "--suite", "quick", "--out", str(out["full"])])
    assert res.exit_code == 2 and "not empty" in res.output
    res = runner.invoke(app, ["report", "--suite", "quick", "--resume"])
    assert res.exit_code == 2 and "--resume needs --out" in res.output
    res = runner.invoke(app, ["report", "--shard", "5/2"])
    assert res.exit_code == 2
    res = runner.invoke(app, ["report", "--help"])
    assert res.exit_code == 0 and "merge" in res.output and "--shard" in re.sub(r"\x1b\[[0-9;]*m", "", res.output)


def test_bench_signals_reload_from_their_recorded_source(tmp_path):
    from coordfit.signals import signal_from_meta

    spec = SignalSpec("image-a", "image", str(tmp_path / "a.png"), size=12)
    import imageio.v3 as iio

    iio.imwrite(spec.source, (smooth_image(24, 32, 3) * 255).round().astype(np.uint8))
    signal = load_bench_signal(spec)
    assert signal.shape == (9, 12) and signal.meta()["options"] == {"alpha": "keep", "size": 12}
    again = signal_from_meta(signal.meta())  # what --resume of one of its runs reads
    assert again.shape == signal.shape and torch.equal(again.values, signal.values)


def test_a_typo_in_the_suite_options_stops_the_run(tmp_path):
    suite = dataclasses.replace(tiny_suite(tmp_path), models=(ModelSpec("coordx", "coordx", {"rnak": 2}),))
    with pytest.raises(CoordfitError, match="no option 'rnak'"):
        run_suite(suite, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_the_width_goes_to_mlps_and_grid_models_keep_theirs():
    from coordfit.geometry.grid import GridInfo
    from coordfit.models import list_models, model_entry

    info = GridInfo(("y", "x"), (16, 16), 3, "x+y")
    for name in list_models():
        opts = resolve_model_options(ModelSpec(name, name), info, 48)
        assert ("width" in opts) == (not model_entry(name).grid), name


def _damage(data, path: tuple, value=None):
    """``data`` with the key at ``path`` replaced by ``value`` (removed when ``value`` is ...)."""
    data = json.loads(json.dumps(data))
    cur = data
    for k in path[:-1]:
        cur = cur[k]
    if value is ...:
        del cur[path[-1]]
    else:
        cur[path[-1]] = value
    return data


def test_damaged_report_files_are_one_line_naming_the_file(reports, runner, tmp_path):
    """Every JSON file merge and --resume read back: a missing key, a wrong type, a list for an
    object is one error line naming the file (never a KeyError or TypeError traceback)."""
    import shutil

    from coordfit_cli.main import app

    suite, out = reports
    fit, timing = "items/image-s0__siren__equal_steps.json", "items/image-s0__timing.json"
    cases = [
        ("suite.json", (), []), ("suite.json", ("suite", "kinds", "image"), ...),
        ("suite.json", ("suite", "kinds", "image", "seconds"), "5"), ("suite.json", ("suite", "models", 0), []),
        ("suite.json", ("shard",), [2, 1]),
        (fit, (), []), (fit, ("metrics",), ...), (fit, ("metrics",), [1, 2]), (fit, ("metrics", "psnr"), [1]),
        (fit, ("params",), "many"), (fit, ("time_to_target", "reached"), True), (fit, ("curve", 0), {"step": 1}),
        (fit, ("run_dir",), ...), (fit, ("kind",), "volume"), (timing, ("kind",), "shape"),
        (timing, ("models",), []), (timing, ("models", "siren", "inference_seconds", "median"), 0),
        (timing, ("models", "coordx", "train_samples_per_s"), ...), (timing, ("machine", "load_average"), []),
        (timing, ("shape",), "16x20"),
    ]
    for j, (name, where, value) in enumerate(cases):
        shard = tmp_path / f"s{j}"
        shutil.copytree(out["s1"], shard, ignore=shutil.ignore_patterns("runs"))
        (shard / name).write_text(json.dumps(_damage(json.loads((out["s1"] / name).read_text()), where, value)
                                             if where else value))
        res = runner.invoke(app, ["report", "merge", str(shard), str(out["s2"]), "--out", str(tmp_path / f"m{j}")])
        what = f"{name} {where} -> {value!r}"
        assert res.exit_code == 2 and "Traceback" not in res.output, (what, res.output)
        err = res.stderr.strip()
        assert err.startswith("error: ") and "\n" not in err and str(shard / name) in err, (what, err)
        assert not (tmp_path / f"m{j}").exists(), what  # refused before the merged folder is made
        if name != "suite.json":  # --resume of the shard reads its items back the same way
            with pytest.raises(CoordfitError, match=re.escape(str(shard / name))):
                run_suite(suite, shard, shard=(1, 2), resume=True, progress=False)
