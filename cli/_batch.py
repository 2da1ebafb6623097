"""Fitting many inputs alike: several paths or a folder of them, into one parent folder.

The plan (which inputs, which run folder each, what a rerun does with it) is the
library's (:mod:`coordfit.runs.batch`); this module runs it through the one-input fit of
:mod:`._fit` and prints a line per input, then the ``coordfit runs`` table.
"""

from __future__ import annotations

import shlex
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from coordfit.core.checks import parse_shard
from coordfit.core.errors import CoordfitError, TrainingInterrupted
from coordfit.signals.options import SignalOptions

from ._common import console, err_console

if TYPE_CHECKING:
    import coordfit

__all__ = ["run_batch"]


def run_batch(kind: str, options_cls: type[SignalOptions], kw: dict[str, Any], paths: list[str],
              suffixes: tuple[str, ...], fit: Callable[[dict[str, Any]], coordfit.FitResult],
              resume_flags: Iterable[str]) -> None:
    """Fit each input of ``paths`` (files, folders of ``suffixes`` files) with the same flags
    ``kw`` into ``<parent>/<input>/`` (:mod:`coordfit.runs.batch`) by ``fit(flags)``, the
    command's fit of one input: finished runs skipped, interrupted ones resumed (with the
    ``resume_flags`` of ``kw``); then the table of ``coordfit runs <parent>``. One failing
    input is reported and the others go on; the command then exits 2."""
    from coordfit.engine.presets import resolve_preset
    from coordfit.runs.batch import batch_name, expand_inputs, open_batch, plan_batch
    from coordfit.core.io import check_run_name

    from .runs import runs_cmd

    if kw.get("resume") is not None:
        raise CoordfitError("--resume continues one run; to continue a batch, run the same command again "
                            "(finished inputs are skipped, interrupted ones resumed)")
    if kw.get("out") is not None and kw.get("name") is not None:
        raise CoordfitError("--name names a folder under runs/<kind>/<model>/ and --out gives the whole path; "
                            "pass one of them")
    sources = expand_inputs(paths, suffixes)
    if kw.get("out") is not None:
        parent = Path(kw["out"])
    else:
        model = kw.get("model") or resolve_preset(kw.get("preset") or (None if kw.get("config") else
                                                  options_cls.default_preset), kind=kind, model=None).model
        parent = Path("runs") / kind / model / check_run_name(kw.get("name") or batch_name(paths, len(sources)))
    settings = {k: v for k, v in kw.items() if v is not None and k not in ("path", "out", "name", "progress", "shard")}
    open_batch(parent, kind, settings)
    items = plan_batch(sources, parent, parse_shard(kw.get("shard")))
    shard = f" (shard {kw['shard']})" if kw.get("shard") else ""
    console.print(f"{len(items)} of {len(sources)} inputs{shard} into {parent}/: "
                  + ", ".join(f"{n} {state}" for state, n in Counter(i.state for i in items).items()), soft_wrap=True)
    failed = 0
    for n, item in enumerate(items, 1):
        head = f"[{n}/{len(items)}] {item.source}"
        if item.state == "done":
            console.print(f"{head}: done before, skipped ({item.run_dir})", markup=False, soft_wrap=True)
            continue
        if item.state == "trained":
            console.print(f"{head}: trained before but its outputs were not written; `coordfit render "
                          f"{shlex.quote(str(item.run_dir))}` renders it (or delete the folder to fit it again)",
                          markup=False, soft_wrap=True)
            continue
        console.print(f"{head}: {'resuming' if item.state == 'resume' else 'fitting'} into {item.run_dir}",
                      markup=False, soft_wrap=True)
        one = {**kw, "path": item.source, "out": item.run_dir, "name": None, "shard": None}
        if item.state == "resume":
            one = {k: (v if k in (*resume_flags, "progress") else None) for k, v in one.items()}
            one["resume"] = item.run_dir
        try:
            result = fit(one)
        except TrainingInterrupted as exc:
            err_console.print(f"{exc}; run the same command again to continue (finished inputs are skipped, "
                              "this one resumes)", markup=False)
            raise typer.Exit(130) from None
        except CoordfitError as exc:
            failed += 1
            err_console.print(f"failed {item.source}: {exc}", markup=False, soft_wrap=True)
            continue
        m = result.metrics
        quality = ", ".join(f for k, f in (("psnr", "psnr {:.2f} dB"), ("iou", "iou {:.3f}"))
                            if isinstance(m.get(k), float) for f in [f.format(m[k])])
        console.print(f"{head}: {quality or 'done'} after {m.get('steps', 0):,} steps in "
                      f"{m.get('train_seconds', 0.0):.1f} s", markup=False, soft_wrap=True)
        for line in m.get("warnings", []):
            err_console.print(f"warning: {line}", markup=False)
    runs_cmd(root=parent, as_json=False)
    if failed:
        raise CoordfitError(f"{failed} of {len(items)} inputs failed (see above); the others are in {parent}")
