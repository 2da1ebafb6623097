"""`coordfit views`: fit a scene to a few posed photos, optionally with a learned prior."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

from coordfit.signals.options import ViewsOptions

from ._common import handle_errors
from ._fit import _opt, fitting_command
from .app import app

if TYPE_CHECKING:
    import coordfit


def _compare(result: coordfit.FitResult, flags: dict[str, Any]) -> coordfit.FitResult:
    """With a prior and unless --no-compare: the same fit without it, beside it in views.png and metrics.json."""
    if flags.get("compare") is False:
        return result
    from coordfit.viewfit import compare_run

    return compare_run(result, flags.get("progress"))


_EXTRAS = {
    "option": _opt("--option", "-o", "--set", tp=Optional[list[str]], help="Any model or views option as KEY=VALUE "
                   "(repeatable; --set is an alias), e.g. -o samples_inner=48 -o box_scale=0.6."),
    "compare": _opt("--compare/--no-compare", tp=Optional[bool], help="With a prior: also fit without it, for "
                    "views.png and metrics.json (default: on; on --resume: fitted again)."),
}


@app.command("views")
@handle_errors
@fitting_command("views", ViewsOptions, extras=_EXTRAS, finish=_compare,
                 flags=("inputs", "holdout", "prior", "prior_weight", "pseudo_views"),
                 path_help="Scene JSON (coordfit nvs format), a NeRF/instant-ngp transforms.json, or "
                 "procedural:<seed>[,views=N][,size=PX] (default: procedural:1000000000).")
def views_cmd() -> None:
    """Fit a radiance field to posed views; writes views.png, orbit.mp4, metrics.json, model.safetensors."""
