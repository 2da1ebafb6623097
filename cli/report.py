"""`coordfit report`: run a benchmark suite and write the speedup report; `report merge`
combines the folders of several shards.

The suite's flags are made from :class:`coordfit.bench.config.ReportConfig` (one flag per
field, the help and default from the field); :func:`coordfit.bench.runner.run_report` runs it.
"""

from __future__ import annotations

import dataclasses
import inspect
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from coordfit.bench.config import ReportConfig

from ._common import console, err_console, handle_errors
from ._flags import PROGRESS, config_flags, given, make_command, option
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

_FIELDS = [f.name for f in dataclasses.fields(ReportConfig)]
_FLAGS = {
    **config_flags(ReportConfig),
    "out": option("--out", tp=Optional[Path], help="Report folder, new or empty (default: a new folder under "
                  "reports/, named by the time)."),
    "resume": option("--resume", tp=Optional[bool], help="Continue an interrupted run in --out; skips what is "
                     "measured."),
    "progress": PROGRESS,
}


def _doc() -> None:
    """Run a suite (signals x models x protocols) and write the report into --out."""


def _report(kw: dict[str, Any]) -> None:
    if kw["ctx"].invoked_subcommand is not None:
        return
    from coordfit.bench.runner import run_report
    from coordfit.core.errors import TrainingInterrupted

    cfg = ReportConfig.from_dict(given(kw, _FIELDS), "report")
    resume = bool(kw.get("resume"))
    out = kw.get("out") or (None if resume else Path("reports") / datetime.now().strftime("%Y%m%d-%H%M%S"))
    try:
        report = run_report(cfg, out, resume=resume, progress=kw.get("progress"))
    except (KeyboardInterrupt, TrainingInterrupted):
        err_console.print(f"interrupted; the measurements so far are kept in {out}: continue with the same "
                          f"command and --out {out} --resume", markup=False)
        raise typer.Exit(130) from None
    console.print(f"report: {report}")
    console.print(f"        {report.with_name('report.html')}")
    console.print(f"        {report.with_name('results.json')}")


_CTX = inspect.Parameter("ctx", inspect.Parameter.KEYWORD_ONLY, annotation=typer.Context)
report_cmd = report_app.callback()(handle_errors(make_command(_doc, _FLAGS, _report, leading=[_CTX])))


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
