"""``report.html``: one self-contained page (tables, machine, plots embedded as base64 PNG)."""

from __future__ import annotations

import base64
from html import escape
from pathlib import Path
from typing import Any

from .tables import curves_name, fmt, machine_lines, signal_table, thumbnails_name

__all__ = ["render_html"]

_CSS = """
body { font-family: system-ui, -apple-system, Segoe UI, sans-serif; margin: 2em auto; max-width: 1200px;
       color: #222; padding: 0 1em; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: 0.2em; margin-top: 2em; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.9em; }
th, td { border: 1px solid #ddd; padding: 0.3em 0.6em; text-align: right; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; font-weight: 600; }
tr.coordx td { background: #f4f9ff; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.5em 0; }
.note { color: #555; font-size: 0.9em; max-width: 60em; }
"""


def _table(columns: list[str], rows: list[list[str]], classes: list[str] | None = None) -> str:
    head = "".join(f"<th>{escape(c)}</th>" for c in columns)
    body = []
    for j, row in enumerate(rows):
        cls = f' class="{classes[j]}"' if classes and classes[j] else ""
        body.append(f"<tr{cls}>" + "".join(f"<td>{escape(v)}</td>" for v in row) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{escape(alt)}" src="data:image/png;base64,{data}"/>'


def render_html(results: dict[str, Any], plots: list[Path]) -> str:
    suite = results["suite"]
    by_name = {p.name: p for p in plots}
    parts = [f"<h1>coordfit speedup report: suite <code>{escape(suite['name'])}</code></h1>",
             f"<p>coordfit {escape(results['coordfit_version'])}, written {escape(results['created'])}.</p>",
             "<h2>Machine</h2><ul>" + "".join(f"<li>{escape(m)}</li>" for m in machine_lines(results)) + "</ul>",
             '<p class="note">' + escape(
                 "Protocols: equal_steps (" + results["protocols"]["equal_steps"] + "); equal_time ("
                 + results["protocols"]["equal_time"] + "). Timing: " + results["protocols"]["timing"]
                 + ". Speedups are relative to SIREN, geometric means over signals; the CoordX paper's "
                 "'up to 2.92x' is its best case, quoted beside the measured figure.") + "</p>"]
    for kind, s in results["summary"].items():
        rows = [[fmt(v, c) for v, c in zip(r, s["columns"])] for r in s["rows"]]
        classes = ["coordx" if r[-1] else "" for r in s["rows"]]  # the rows the paper's figure is quoted in
        parts.append(f"<h2>{escape(kind)}: {len(s['signals'])} signal(s)</h2>")
        parts.append(_table(s["columns"], rows, classes))
        parts += [f'<p class="note">{escape(note)}</p>' for note in s.get("notes", [])]
        for name, alt in ((curves_name(kind), "quality vs training time"),
                          (f"speedup_{kind}.png", "speedup vs SIREN"),
                          (thumbnails_name(kind), "reconstructions after equal time")):
            if name in by_name:
                parts.append(_img(by_name[name], f"{kind}: {alt}"))
    parts.append("<h2>Every signal</h2>")
    for signal in results["signals"]:
        t = results["timings"].get(signal)
        shape = "x".join(map(str, t["shape"])) if t else "?"
        cols, rows = signal_table(results, signal)
        parts.append(f"<h3>{escape(signal)} ({escape(shape)})</h3>")
        parts.append(_table(cols, rows))
    body = "\n".join(parts)
    title = escape(f"coordfit report: {suite['name']}")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"/><title>{title}</title>'
            f"<style>{_CSS}</style></head><body>\n{body}\n</body></html>\n")
