"""``coordfit nvs ...``: scenes, train, eval and bench for the view-synthesis models.

Every value is checked by the library (one ``error:`` line, exit 2); the options here
only parse. Help strings avoid square brackets: rich would read them as markup.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Optional

import typer

from ._common import console, err_console, handle_errors, parse_options

nvs_app = typer.Typer(
    help="Novel-view synthesis: LVSM and Efficient-LVSM (KV cache, QuadTree attention).",
    no_args_is_help=True,
)

_DEVICE_HELP = "auto | cpu | cuda | mps (auto: CUDA, then MPS, then the CPU)."
_THREADS_HELP = "Torch CPU threads (default: the device's, 1 on a CPU as for image, video and shape)."


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
    count: int = typer.Option(8, "--count", help="Number of scenes."),
    views: int = typer.Option(6, "--views", help="Views per scene."),
    size: int = typer.Option(32, "--size", help="Image height and width in pixels (at least 4)."),
    layout: str = typer.Option("hemisphere", "--layout", help="Camera layout: hemisphere | orbit."),
    seed: Optional[int] = typer.Option(
        None, "--seed", help="Seed of the first scene (default: the held-out range, never used in training)."
    ),
) -> None:
    """Render random procedural scenes in the scene JSON format."""
    from coordfit.nvs.data import write_scenes
    from coordfit.nvs.procedural import ProceduralConfig

    cfg = ProceduralConfig(size=size, views=views, layout=layout)  # type: ignore[arg-type]
    write_scenes(out, count, cfg, seed)
    console.print(f"wrote {count} scenes ({views} views, {size}x{size}) to {out}")


# options that describe a run: --resume continues the run as saved and refuses them
_RUN_OPTIONS = ("model", "scenes", "procedural", "batch_size", "lr", "warmup", "size", "input_views_min",
                "input_views_max", "target_views", "ssim_weight", "option", "seed", "checkpoint_every",
                "log_every", "out")


@nvs_app.command("train")
@handle_errors
def train_cmd(
    ctx: typer.Context,
    model: str = typer.Option("efficient-lvsm", "--model", help="lvsm | efficient-lvsm."),
    scenes: Optional[Path] = typer.Option(None, "--scenes", help="Folder of scene JSON files to train on."),
    procedural: bool = typer.Option(
        False, "--procedural", help="Train on fresh procedural scenes (for --steps steps: 2000 unless given)."
    ),
    steps: int = typer.Option(2000, "--steps", help="Total steps; with --resume, the saved total unless given."),
    batch_size: int = typer.Option(8, "--batch-size", help="Samples per step (per process)."),
    lr: float = typer.Option(1e-3, "--lr", help="Peak learning rate (AdamW, warm-up then cosine decay)."),
    warmup: int = typer.Option(100, "--warmup", help="Linear warm-up steps (at most --steps)."),
    size: int = typer.Option(32, "--size", help="Procedural image size in pixels."),
    input_views_min: int = typer.Option(2, "--input-views-min", help="Fewest input views per sample."),
    input_views_max: int = typer.Option(4, "--input-views-max", help="Most input views per sample."),
    target_views: int = typer.Option(2, "--target-views", help="Target views per sample."),
    ssim_weight: float = typer.Option(0.0, "--ssim-weight", help="Loss = MSE + w (1 - SSIM)."),
    option: Optional[list[str]] = typer.Option(
        None, "--option", "-o", help="Model option key=value (width, depth, patch, attention, ...); repeat it."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the initial weights and the training scenes."),
    checkpoint_every: int = typer.Option(250, "--checkpoint-every", help="Steps between checkpoints."),
    log_every: int = typer.Option(10, "--log-every", help="Steps between log.jsonl lines (loss readings)."),
    workers: Optional[int] = typer.Option(
        None, "--workers",
        help="Threads rendering batches ahead of the step; 0: in the training thread "
        "(default: half the cores up to 4 for procedural scenes, 0 for --scenes).",
    ),
    out: Optional[Path] = typer.Option(None, "--out", help="Run folder (default runs/nvs/MODEL/TIME/)."),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Continue this run folder as saved."),
    device: str = typer.Option("auto", "--device", help=_DEVICE_HELP),
    threads: Optional[int] = typer.Option(None, "--threads", help=_THREADS_HELP),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress: a bar on a terminal, a line every few seconds elsewhere."),
) -> None:
    """Train a view-synthesis model (also under torchrun: DDP, gloo on CPU, NCCL on GPU).

    Ctrl-C (or SIGTERM) saves a checkpoint and prints how to continue.
    """
    from coordfit.core.errors import CoordfitError
    from coordfit.engine import nvs_train
    from coordfit.engine.train import TrainingInterrupted

    given = [name for name in _RUN_OPTIONS if _given(ctx, name)]
    main_rank = os.environ.get("RANK", "0") == "0"  # one line under torchrun, not one per process
    try:
        if resume is not None:
            if given:
                flags = ", ".join("--" + name.replace("_", "-") for name in given)
                raise CoordfitError(f"--resume continues {resume} as saved; drop {flags} (only --steps, "
                                    "--device, --workers, --threads and --progress apply)")
            with _progress(main_rank, progress, f"resuming {resume} at step {{step}} of {{total}}") as bar:
                run = nvs_train.resume(resume, steps=steps if _given(ctx, "steps") else None,
                                       device=device if _given(ctx, "device") else None, workers=workers,
                                       progress=bar, threads=threads)
        else:
            if (scenes is None) == (not procedural):
                raise CoordfitError("pass exactly one of --scenes DIR or --procedural")
            cfg = nvs_train.NVSTrainConfig(
                model=model, model_config=parse_options(option), scenes=str(scenes) if scenes else None,
                size=size, input_views=(input_views_min, input_views_max), target_views=target_views,
                steps=steps, batch_size=batch_size, lr=lr, warmup=min(warmup, steps), ssim_weight=ssim_weight,
                seed=seed, checkpoint_every=checkpoint_every, log_every=log_every, device=device, workers=workers,
            )
            where = "procedural scenes" if procedural else str(scenes)
            with _progress(main_rank, progress, f"training {model} for {{total}} steps on {where}") as bar:
                run = nvs_train.train(cfg, out=out, progress=bar, threads=threads)
    except TrainingInterrupted as exc:
        if main_rank:
            err_console.print(f"{exc}; continue with: coordfit nvs train --resume {exc.run_dir}", markup=False)
        raise typer.Exit(130) from None
    if main_rank:
        console.print(f"saved to {run}")


def _given(ctx: typer.Context, name: str) -> bool:
    """Whether option ``name`` was set on the command line (or its environment), not defaulted."""
    source = ctx.get_parameter_source(name)  # click's ParameterSource (vendored by recent Typer)
    return source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT")


@contextmanager
def _progress(main_rank: bool, bar: bool, headline: str) -> Iterator[Any]:
    """The trainer's progress callback ``(step, total, seconds, loss)``, drawn by
    coordfit.core.progress (a bar on a terminal, a line every few seconds elsewhere). Its first
    call comes once every check has passed, before the first step: it prints ``headline``
    (formatted with ``step`` and ``total``) and starts the display."""
    if not main_rank:
        yield None
        return
    from coordfit.core.progress import Progress

    shown: list[Progress] = []

    def update(step: int, total: int, seconds: float, loss: float) -> None:
        if not shown:
            err_console.print(headline.format(step=step, total=total), markup=False)
            shown.append(Progress("train", steps=total, start=step, enabled=bar).__enter__())
        shown[0].update(step, seconds, **({} if math.isnan(loss) else {"loss": loss}))

    try:
        yield update
    finally:
        if shown:
            shown[0].close()


@nvs_app.command("eval")
@handle_errors
def eval_cmd(
    checkpoint: Optional[Path] = typer.Option(
        None, "--checkpoint", help="Run folder or .safetensors (default: the shipped checkpoint)."
    ),
    scenes: Optional[Path] = typer.Option(None, "--scenes", help="Folder of held-out scenes (default: procedural)."),
    count: int = typer.Option(32, "--count", help="Procedural held-out scenes when --scenes is not given."),
    views: int = typer.Option(6, "--views", help="Views per procedural scene (inputs + targets)."),
    size: int = typer.Option(32, "--size", help="Procedural image size in pixels."),
    input_views: int = typer.Option(2, "--input-views", help="The first N views of a scene are inputs."),
    device: str = typer.Option("auto", "--device", help=_DEVICE_HELP),
    threads: Optional[int] = typer.Option(None, "--threads", help=_THREADS_HELP),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the scores to this new file."),
) -> None:
    """PSNR and SSIM on held-out views beside nearest-view and mean-of-inputs baselines.

    SSIM is scikit-image's (as everywhere in coordfit); Gaussian SSIM is the 11x11
    Gaussian-window figure the view-synthesis papers report.
    """
    from coordfit.core.io import write_json
    from coordfit.nvs.data import held_out_scenes
    from coordfit.nvs.evaluate import evaluate
    from coordfit.nvs.registry import load_model
    from coordfit.nvs.scenes import load_scenes
    from coordfit.engine.nvs_train import check_threads

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


@nvs_app.command("bench")
@handle_errors
def bench_cmd(
    out: Optional[Path] = typer.Option(
        None, "--out", help="New JSON file for the results (default runs/nvs/bench/TIME/bench.json)."
    ),
    views: Optional[list[int]] = typer.Option(
        None, "--views", help="Input view counts (repeat the option; default 2 4 8 16 32)."
    ),
    tokens: Optional[list[int]] = typer.Option(
        None, "--tokens", help="Token counts for the attention table, rounded down to a square (default 1024 4096 16384)."
    ),
    width: int = typer.Option(128, "--width", help="Token width of both models."),
    head_dim: int = typer.Option(64, "--head-dim", help="Channels per attention head."),
    depth: int = typer.Option(4, "--depth", help="Layers per stream of efficient-lvsm (lvsm gets 2x)."),
    targets: int = typer.Option(8, "--targets", help="Target views rendered per call."),
    repeats: int = typer.Option(3, "--repeats", help="Timed calls per row (the median is reported)."),
    isolate: bool = typer.Option(
        True, "--isolate/--no-isolate", help="CPU: one fresh process per attention row (honest peak memory)."
    ),
    device: str = typer.Option("auto", "--device", help=_DEVICE_HELP),
    threads: Optional[int] = typer.Option(None, "--threads", help=_THREADS_HELP),
) -> None:
    """Time lvsm vs efficient-lvsm, KV-cache add-one-view, QuadTree vs full attention."""
    from coordfit.bench.nvs import BenchConfig, format_tables, run_bench
    from coordfit.engine.nvs_train import check_threads

    check_threads(threads)
    cfg = BenchConfig(width=width, head_dim=head_dim, depth=depth, targets=targets, repeats=repeats, isolate=isolate)
    if views:
        cfg.views = list(views)
    if tokens:
        cfg.tokens = list(tokens)
    cfg.validate()
    if out is None:
        from coordfit.core.io import new_run_dir

        out = new_run_dir("nvs", "bench") / "bench.json"
    else:
        _check_new_file(out, "--out")
    with _on_device(device, threads) as dev:
        result = run_bench(cfg, dev, out, log=lambda s: console.print(s, soft_wrap=True, markup=False))
    console.print(format_tables(result), markup=False, soft_wrap=True)
    console.print(f"wrote {out} in {result['seconds']} s")
