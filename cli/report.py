"""`coordfit report`: run a benchmark suite and write the speedup report; `report merge`
combines the folders of several shards."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Optional

import typer

from ._common import console, err_console, handle_errors
from .app import app

report_app = typer.Typer(
    help="Run a benchmark suite and write the speedup report (results.json, report.md, report.html, "
    "plots). With no subcommand it runs the suite; `coordfit report merge DIR... --out DIR` combines shards.",
    epilog="Examples: coordfit report --suite quick | coordfit report --suite standard --shard 2/8 "
    "--out reports/s2 | coordfit report merge reports/s1 reports/s2 --out reports/all | "
    "coordfit report --out reports/s2 --resume --suite standard --shard 2/8",
    invoke_without_command=True,
    no_args_is_help=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@report_app.callback()
@handle_errors
def report_cmd(
    ctx: typer.Context,
    suite: Annotated[str, typer.Option("--suite", help="quick (no data, < 10 min on 2 CPU cores), standard or full.")] = "quick",
    data: Annotated[Optional[Path], typer.Option("--data", help="Real-data folder (default: $COORDFIT_DATA or ../shared/data).")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="Report folder, new or empty (default: reports/<time>/).")] = None,
    shard: Annotated[Optional[str], typer.Option("--shard", help="Run slice I of N (1-based), e.g. 3/8; merge the slices later.")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted run in --out; skips what is measured.")] = False,
    steps: Annotated[Optional[int], typer.Option("--steps", help="Override the suite's equal_steps steps (a reduced run).")] = None,
    seconds: Annotated[Optional[float], typer.Option("--seconds", help="Override the suite's equal_time seconds.")] = None,
    repeats: Annotated[Optional[int], typer.Option("--repeats", help="Override the timed repeats (default 5).")] = None,
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda or mps.")] = "auto",
    threads: Annotated[int, typer.Option("--threads", help="torch CPU threads: 1 keeps ratios steady on a shared machine; raise it on a dedicated one.")] = 1,
    progress: Annotated[Optional[bool], typer.Option("--progress/--no-progress", help="Progress: a bar on a terminal, a line every few seconds elsewhere (default: on).")] = None,
) -> None:
    """Run a suite (signals x models x protocols) and write the report into --out."""
    if ctx.invoked_subcommand is not None:
        return
    from coordfit.bench import build_suite, parse_shard, run_suite
    from coordfit.bench.suite import with_budgets
    from coordfit.core.errors import CoordfitError
    from coordfit.engine.train import TrainingInterrupted

    if resume and out is None:
        raise CoordfitError("--resume needs --out DIR (the folder of the interrupted run)")
    if threads < 1:
        raise CoordfitError(f"--threads must be at least 1, got {threads}")
    if out is None:
        out = Path("reports") / datetime.now().strftime("%Y%m%d-%H%M%S")
    plan = with_budgets(build_suite(suite, data, device), steps, seconds, repeats)
    try:
        report = run_suite(plan, out, parse_shard(shard), resume=resume,
                           progress=progress, threads=threads)
    except (KeyboardInterrupt, TrainingInterrupted):
        err_console.print(f"interrupted; the measurements so far are kept in {out}: continue with the same "
                          f"command and --out {out} --resume", markup=False)
        raise typer.Exit(130) from None
    console.print(f"report: {report}")
    console.print(f"        {report.with_name('report.html')}")
    console.print(f"        {report.with_name('results.json')}")


@report_app.command("merge")
@handle_errors
def merge_cmd(
    dirs: Annotated[list[Path], typer.Argument(help="Report folders of the shards of one suite.")],
    out: Annotated[Path, typer.Option("--out", help="Folder for the merged report (new or empty).")],
) -> None:
    """Combine the report folders of several shards into one report."""
    from coordfit.bench import merge_reports

    report = merge_reports(dirs, out)
    console.print(f"merged {len(dirs)} folder(s): {report}")


app.add_typer(report_app, name="report")
