"""``coordfit nvs ...``: scenes, train, eval and bench for the view-synthesis models.

``train``'s flags are made from :class:`~coordfit.engine.config.NVSTrainConfig` and
``bench``'s from :class:`~coordfit.bench.config.BenchConfig` (:func:`cli._flags.config_flags`:
one flag per field, the help and default from the field). Every value is checked by the
library (one ``error:`` line, exit 2); the options here only parse.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Optional

import typer

from coordfit.bench.config import BenchConfig
from coordfit.core.defaults import RESUME_SETTINGS
from coordfit.engine.config import NVSTrainConfig

from ._common import console, err_console, handle_errors, parse_options
from ._flags import PROGRESS, RESUME, check_resume_flags, config_flags, format_default, given, make_command, option

nvs_app = typer.Typer(
    help="Novel-view synthesis: LVSM and Efficient-LVSM (KV cache, QuadTree attention).",
    no_args_is_help=True,
)

_DEVICE_HELP = "auto (CUDA, then MPS, then the CPU), cpu, cuda or mps (default: auto)."
_THREADS_HELP = "Torch CPU threads (default: the device's, 1 on a CPU, as for image, video and shape)."


def _opt(default: Any, *names: str, help: str) -> Any:  # noqa: A002
    """An option declared by hand, its default stated in the help as the fitting commands state theirs."""
    shown = format_default(default)
    return typer.Option(default, *names, help=f"{help} (default: {shown})." if shown else f"{help}.",
                        show_default=False)


@contextmanager
def _on_device(device: str, threads: Optional[int]) -> Iterator[Any]:
    """``device`` resolved, with torch's thread count set for the work on it: ``--threads``,
    else the device's default (one on a CPU, as for the fitting commands), restored after."""
    from coordfit.core.device import device_defaults, device_settings, resolve_device

    dev = resolve_device(device)
    with device_settings(dev, "fp32", threads or device_defaults(dev).threads):
        yield dev


def _check_new_file(path: Path, flag: str) -> None:
    """Refuse an output file that exists or cannot be made (a parent is a file) before any work."""
    from coordfit.core.errors import CoordfitError

    if path.exists():
        raise CoordfitError(f"{flag} {path} exists; choose a new file")
    parent = next((p for p in path.parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise CoordfitError(f"cannot write {flag} {path}: {parent} is a file")


@nvs_app.command("scenes")
@handle_errors
def scenes_cmd(
    out: Path = typer.Option(..., "--out", help="Empty or new folder for the scene JSON files and PNGs."),
    count: int = _opt(8, "--count", help="Number of scenes"),
    views: int = _opt(6, "--views", help="Views per scene"),
    size: int = _opt(32, "--size", help="Image height and width in pixels (at least 4)"),
    layout: str = _opt("hemisphere", "--layout", help="Camera layout: hemisphere or orbit"),
    seed: Optional[int] = typer.Option(
        None, "--seed", help="Seed of the first scene (default: the held-out range, never used in training).",
        show_default=False),
) -> None:
    """Render random procedural scenes in the scene JSON format."""
    from coordfit.nvs.data import write_scenes
    from coordfit.nvs.procedural import ProceduralConfig

    cfg = ProceduralConfig.from_dict({"size": size, "views": views, "layout": layout}, "scenes")
    write_scenes(out, count, cfg, seed)
    console.print(f"wrote {count} scenes ({views} views, {size}x{size}) to {out}")


# -- train ----------------------------------------------------------------------------
_TRAIN_FIELDS = [f.name for f in dataclasses.fields(NVSTrainConfig) if f.name != "model_config"]
# What --resume may change: the new total of steps, where and how it trains, how it reports.
_RESUME_FLAGS = ("steps", *(s for s in RESUME_SETTINGS if s in _TRAIN_FIELDS), "threads", "logger", "progress")
_TRAIN_FLAGS = {
    **config_flags(NVSTrainConfig, _TRAIN_FIELDS),
    "procedural": option("--procedural", tp=Optional[bool], help="Train on fresh procedural scenes (instead of "
                         "--scenes)."),
    "option": option("--option", "-o", tp=Optional[list[str]], help="A model option as KEY=VALUE (repeatable): "
                     "width, depth, head_dim, patch, mlp_ratio, attention, cross_attention, quadtree_levels, "
                     "quadtree_topk (see docs/nvs.md)."),
    "out": option("--out", tp=Optional[Path], help="Run folder, new or empty (default: a new folder under "
                  "runs/nvs/, named by model and time)."),
    "config": option("--config", tp=Optional[Path], help="Start from an nvs run's config.json (or its folder) or a "
                     "JSON or YAML file; flags given override it."),
    "resume": RESUME,
    "threads": option("--threads", tp=Optional[int], help=_THREADS_HELP),
    "progress": PROGRESS,
}


def _train_doc() -> None:
    """Train a view-synthesis model (also under torchrun: DDP, gloo on CPU, NCCL on GPU).

    Writes model.safetensors, log.csv, curves.png and metrics.json into the run folder. Ctrl-C
    (or SIGTERM) saves a checkpoint and prints how to continue.
    """


def _train(kw: dict[str, Any]) -> None:
    from coordfit.core.errors import TrainingInterrupted
    from coordfit.engine import nvs_train

    main_rank = os.environ.get("RANK", "0") == "0"  # one line under torchrun, not one per process
    progress = kw.get("progress") if main_rank else False
    try:
        if kw.get("resume") is not None:
            check_resume_flags(kw, _RESUME_FLAGS)
            run = nvs_train.resume(kw["resume"], progress=progress, threads=kw.get("threads"),
                                   **given(kw, [f for f in _RESUME_FLAGS if f in _TRAIN_FIELDS]))
        else:
            run = nvs_train.train(_new_config(kw), out=kw.get("out"), progress=progress, threads=kw.get("threads"))
    except TrainingInterrupted as exc:
        if main_rank:
            err_console.print(f"{exc}; continue with: coordfit nvs train --resume {exc.run_dir}", markup=False)
        raise typer.Exit(130) from None
    if main_rank:
        _print_summary(run)


def _new_config(kw: dict[str, Any]) -> NVSTrainConfig:
    """The run's config: ``--config``'s (if given) under the flags given."""
    from coordfit.core.errors import CoordfitError
    from coordfit.core.io import read_mapping

    base: dict[str, Any] = {}
    if kw.get("config") is not None:
        path = Path(kw["config"])
        base = dict(read_mapping(path / "config.json" if path.is_dir() else path))
    elif (kw.get("scenes") is None) == (not kw.get("procedural")):
        raise CoordfitError("pass exactly one of --scenes DIR or --procedural")
    data = {**base, **given(kw, _TRAIN_FIELDS)}
    if kw.get("procedural"):
        data["scenes"] = None
    options = parse_options(kw.get("option"))
    if options:
        data["model_config"] = {**base.get("model_config", {}), **options}
    try:
        return NVSTrainConfig.from_dict(data)
    except CoordfitError as exc:
        raise CoordfitError(f"{kw['config']}: {exc}" if kw.get("config") is not None else str(exc)) from None


def _print_summary(run: Path) -> None:
    """What the run reached (its metrics.json), where it is, and what to do with it next."""
    from coordfit.core.io import read_json

    from ._fit import metrics_table

    metrics = read_json(run / "metrics.json", expect=dict)
    console.print(metrics_table(metrics, ("model", "params", "steps", "train_seconds", "final_loss",
                                          "final_batch_psnr", "stopped_by")))
    console.print(f"run folder: {run}  (model.safetensors, log.csv, curves.png, metrics.json)", soft_wrap=True)
    console.print("\n".join([
        "next:",
        f"  coordfit nvs eval --checkpoint {run}   # held-out PSNR and SSIM beside two baselines",
        f"  coordfit views --prior {run}   # the prior of a views fit",
        f"  coordfit nvs train --resume {run} --steps {2 * metrics.get('steps', 0)}   # train further",
    ]), markup=False, soft_wrap=True)


train_cmd = nvs_app.command("train")(handle_errors(make_command(_train_doc, _TRAIN_FLAGS, _train)))


# -- eval -------------------------------------------------------------------------------
@nvs_app.command("eval")
@handle_errors
def eval_cmd(
    checkpoint: Optional[Path] = typer.Option(
        None, "--checkpoint", help="Run folder or .safetensors (default: the shipped checkpoint).", show_default=False
    ),
    scenes: Optional[Path] = typer.Option(None, "--scenes", help="Folder of held-out scenes (default: procedural).",
                                          show_default=False),
    count: int = _opt(32, "--count", help="Procedural held-out scenes when --scenes is not given"),
    views: int = _opt(6, "--views", help="Views per procedural scene (inputs + targets)"),
    size: int = _opt(32, "--size", help="Procedural image size in pixels"),
    input_views: int = _opt(2, "--input-views", help="The first N views of a scene are inputs"),
    device: str = typer.Option("auto", "--device", help=_DEVICE_HELP, show_default=False),
    threads: Optional[int] = typer.Option(None, "--threads", help=_THREADS_HELP, show_default=False),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the scores to this new file.",
                                            show_default=False),
) -> None:
    """PSNR and SSIM on held-out views beside nearest-view and mean-of-inputs baselines.

    SSIM is scikit-image's (as everywhere in coordfit); Gaussian SSIM is the 11x11
    Gaussian-window figure the view-synthesis papers report.
    """
    from coordfit.core.io import write_json
    from coordfit.engine.config import check_threads
    from coordfit.nvs.data import held_out_scenes
    from coordfit.nvs.evaluate import evaluate
    from coordfit.nvs.registry import load_model
    from coordfit.nvs.scenes import load_scenes

    check_threads(threads)
    if json_out is not None:
        _check_new_file(json_out, "--json")
    # the checkpoint and the scenes first, the device last: a missing file is reported as such everywhere
    model, info = load_model(checkpoint)
    held = load_scenes(scenes) if scenes is not None else held_out_scenes(count, views, size)
    normalize = bool(info.get("normalize_poses", False))
    with _on_device(device, threads) as dev:
        scores = evaluate(model, held, input_views, dev, normalize=normalize)
    for name, vals in scores.items():
        console.print(f"{name:<15} PSNR {vals['psnr']:7.3f} dB   SSIM {vals['ssim']:.4f}   "
                      f"Gaussian SSIM {vals['gaussian_ssim']:.4f}")
    if json_out is not None:
        write_json(json_out, {"scenes": len(held), "input_views": input_views, **scores})


# -- bench ------------------------------------------------------------------------------
_BENCH_FLAGS = {
    **config_flags(BenchConfig),
    "out": option("--out", tp=Optional[Path], help="New JSON file for the results (default: bench.json in a new "
                  "folder under runs/nvs/bench/)."),
    "device": option("--device", help=_DEVICE_HELP),
    "threads": option("--threads", tp=Optional[int], help=_THREADS_HELP),
    "progress": PROGRESS,
}


def _bench_doc() -> None:
    """Time lvsm vs efficient-lvsm, KV-cache add-one-view, QuadTree vs full attention."""


def _bench(kw: dict[str, Any]) -> None:
    from coordfit.bench.nvs import format_tables, run_bench
    from coordfit.engine.config import check_threads

    check_threads(kw.get("threads"))
    cfg = BenchConfig.from_dict(given(kw, [f.name for f in dataclasses.fields(BenchConfig)]), "bench")
    out = kw.get("out")
    if out is None:
        from coordfit.core.io import new_run_dir

        out = new_run_dir("nvs", "bench") / "bench.json"
    else:
        _check_new_file(out, "--out")
    with _on_device(kw.get("device") or "auto", kw.get("threads")) as dev:
        result = run_bench(cfg, dev, out, log=lambda s: console.print(s, soft_wrap=True, markup=False),
                           progress=kw.get("progress"))
    console.print(format_tables(result), markup=False, soft_wrap=True)
    console.print(f"wrote {out} in {result['seconds']} s")


bench_cmd = nvs_app.command("bench")(handle_errors(make_command(_bench_doc, _BENCH_FLAGS, _bench)))
