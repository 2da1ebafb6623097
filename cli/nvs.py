"""``coordfit nvs ...``: scenes, train, eval and bench for the view-synthesis models."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer

from ._common import console, handle_errors, parse_options

nvs_app = typer.Typer(
    help="Novel-view synthesis: LVSM and Efficient-LVSM (KV cache, QuadTree attention).",
    no_args_is_help=True,
)


def _threads(threads: Optional[int]) -> None:
    if threads is not None:
        import torch

        torch.set_num_threads(max(1, threads))


@nvs_app.command("scenes")
@handle_errors
def scenes_cmd(
    out: Path = typer.Option(..., "--out", help="Empty or new folder for the scene JSON files and PNGs."),
    count: int = typer.Option(8, "--count", min=1, help="Number of scenes."),
    views: int = typer.Option(6, "--views", min=1, help="Views per scene."),
    size: int = typer.Option(32, "--size", min=4, help="Image height and width in pixels."),
    layout: str = typer.Option("hemisphere", "--layout", help="Camera layout: hemisphere | orbit."),
    seed: Optional[int] = typer.Option(
        None, "--seed", help="Seed of the first scene (default: the held-out range, never used in training)."
    ),
) -> None:
    """Render random procedural scenes in the scene JSON format."""
    from coordfit.io import ensure_empty_dir
    from coordfit.nvs.data import HELD_OUT_SEED
    from coordfit.nvs.procedural import ProceduralConfig, make_scene
    from coordfit.nvs.scenes import save_scene

    cfg = ProceduralConfig(size=size, views=views, layout=layout)  # type: ignore[arg-type]
    cfg.check()
    ensure_empty_dir(out)
    first = HELD_OUT_SEED if seed is None else seed
    for i in range(count):
        save_scene(make_scene(first + i, cfg, name=f"scene_{i:05d}"), out)
    console.print(f"wrote {count} scenes ({views} views, {size}x{size}) to {out}")


@nvs_app.command("train")
@handle_errors
def train_cmd(
    model: str = typer.Option("efficient-lvsm", "--model", help="lvsm | efficient-lvsm."),
    scenes: Optional[Path] = typer.Option(None, "--scenes", help="Folder of scene JSON files to train on."),
    procedural: bool = typer.Option(False, "--procedural", help="Train on fresh procedural scenes."),
    steps: Optional[int] = typer.Option(None, "--steps", min=1, help="Total steps [default: 2000; resume: as saved]."),
    batch_size: int = typer.Option(8, "--batch-size", min=1, help="Samples per step (per process)."),
    lr: float = typer.Option(1e-3, "--lr"),
    warmup: int = typer.Option(100, "--warmup", min=0),
    size: int = typer.Option(32, "--size", min=4, help="Procedural image size."),
    input_views_min: int = typer.Option(2, "--input-views-min", min=1),
    input_views_max: int = typer.Option(4, "--input-views-max", min=1),
    target_views: int = typer.Option(2, "--target-views", min=1),
    ssim_weight: float = typer.Option(0.0, "--ssim-weight", min=0.0, help="Loss = MSE + w (1 - SSIM)."),
    option: Optional[list[str]] = typer.Option(
        None, "--option", "-o", help="Model option key=value (width, depth, patch, attention, ...)."
    ),
    seed: int = typer.Option(0, "--seed"),
    checkpoint_every: int = typer.Option(250, "--checkpoint-every", min=1),
    out: Optional[Path] = typer.Option(None, "--out", help="Run folder (default runs/nvs/<model>/<time>/)."),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Continue this run folder."),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda | mps."),
    threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads for torch."),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Train a view-synthesis model (also under torchrun: DDP, gloo on CPU, NCCL on GPU)."""
    from coordfit.errors import CoordfitError
    from coordfit.nvs import train as nvs_train
    from coordfit.nvs.layers import NVSConfig

    _threads(threads)
    if resume is not None:
        run = nvs_train.resume(resume, steps=steps, device=device, progress=progress)
        console.print(f"resumed and saved to {run}")
        return
    if (scenes is None) == (not procedural):
        raise CoordfitError("pass exactly one of --scenes DIR or --procedural")
    model_config = parse_options(option)
    NVSConfig.from_dict(model_config)  # fail before any work on a bad option (validated there)
    cfg = nvs_train.TrainConfig(
        model=model, model_config=model_config, scenes=str(scenes) if scenes else None, size=size,
        input_views=(input_views_min, input_views_max), target_views=target_views, steps=steps or 2000,
        batch_size=batch_size, lr=lr, warmup=min(warmup, steps or 2000), ssim_weight=ssim_weight, seed=seed,
        checkpoint_every=checkpoint_every, device=device,
    )
    run = nvs_train.train(cfg, out=out, progress=progress)
    if os.environ.get("RANK", "0") == "0":  # one line under torchrun, not one per process
        console.print(f"saved to {run}")


@nvs_app.command("eval")
@handle_errors
def eval_cmd(
    checkpoint: Optional[Path] = typer.Option(
        None, "--checkpoint", help="Run folder or .safetensors (default: the shipped checkpoint)."
    ),
    scenes: Optional[Path] = typer.Option(None, "--scenes", help="Folder of held-out scenes (default: procedural)."),
    count: int = typer.Option(32, "--count", min=1, help="Procedural held-out scenes when --scenes is not given."),
    views: int = typer.Option(6, "--views", min=2, help="Views per procedural scene."),
    size: int = typer.Option(32, "--size", min=4, help="Procedural image size."),
    input_views: int = typer.Option(2, "--input-views", min=1, help="The first N views are inputs."),
    device: str = typer.Option("auto", "--device"),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the scores here."),
) -> None:
    """PSNR/SSIM on held-out views beside nearest-view and mean-of-inputs baselines."""
    from coordfit.device import resolve_device
    from coordfit.errors import CoordfitError
    from coordfit.io import write_json
    from coordfit.nvs.data import held_out_scenes
    from coordfit.nvs.evaluate import evaluate
    from coordfit.nvs.registry import load_model
    from coordfit.nvs.scenes import load_scenes

    if json_out is not None and json_out.exists():
        raise CoordfitError(f"--json {json_out} exists; choose a new file")
    model, info = load_model(checkpoint)
    held = load_scenes(scenes) if scenes is not None else held_out_scenes(count, views, size)
    normalize = bool(info.get("normalize_poses", False))
    scores = evaluate(model, held, input_views, resolve_device(device), normalize=normalize)
    for name, vals in scores.items():
        console.print(f"{name:<15} PSNR {vals['psnr']:7.3f} dB   SSIM {vals['ssim']:.4f}")
    if json_out is not None:
        write_json(json_out, {"scenes": len(held), "input_views": input_views, **scores})


@nvs_app.command("bench")
@handle_errors
def bench_cmd(
    out: Optional[Path] = typer.Option(
        None, "--out", help="New JSON file for the results (default runs/nvs/bench/<time>/bench.json)."
    ),
    views: Optional[list[int]] = typer.Option(None, "--views", help="Input view counts (repeat the option)."),
    tokens: Optional[list[int]] = typer.Option(None, "--tokens", help="Token counts for the attention bench."),
    width: int = typer.Option(128, "--width"),
    head_dim: int = typer.Option(64, "--head-dim"),
    depth: int = typer.Option(4, "--depth", help="Layers per stream (lvsm gets 2x)."),
    targets: int = typer.Option(8, "--targets", min=1, help="Target views rendered per call."),
    repeats: int = typer.Option(3, "--repeats", min=1),
    isolate: bool = typer.Option(
        True, "--isolate/--no-isolate", help="CPU: one fresh process per attention row (honest peak memory)."
    ),
    device: str = typer.Option("auto", "--device"),
    threads: Optional[int] = typer.Option(None, "--threads"),
) -> None:
    """Time lvsm vs efficient-lvsm, KV-cache add-one-view, QuadTree vs full attention."""
    from coordfit.device import resolve_device
    from coordfit.errors import CoordfitError
    from coordfit.nvs.bench import BenchConfig, format_tables, run_bench

    _threads(threads)
    if any(int(v) < 1 for v in views or []) or any(int(t) < 4 for t in tokens or []):
        raise CoordfitError("--views must be >= 1 and --tokens >= 4")
    if out is None:
        from coordfit.io import new_run_dir

        out = new_run_dir("nvs", "bench") / "bench.json"
    elif out.exists():
        raise CoordfitError(f"--out {out} exists; choose a new file")
    cfg = BenchConfig(width=width, head_dim=head_dim, depth=depth, targets=targets, repeats=repeats, isolate=isolate)
    if views:
        cfg.views = list(views)
    if tokens:
        cfg.tokens = list(tokens)
    result = run_bench(cfg, resolve_device(device), out, log=lambda s: console.print(s, soft_wrap=True, markup=False))
    console.print(format_tables(result), markup=False, soft_wrap=True)
    console.print(f"wrote {out} in {result['seconds']} s")
