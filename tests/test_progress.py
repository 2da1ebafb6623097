"""The one progress display: binding limit, plain heartbeat lines off a terminal."""

from __future__ import annotations

import io

from coordfit.core.progress import Progress, format_fields


def test_the_binding_limit_sets_the_fraction() -> None:
    p = Progress(steps=2000, seconds=30.0, enabled=False)
    assert p.fraction(100, 15.0) == 0.5  # the time budget binds
    assert p.fraction(1500, 3.0) == 0.75  # the steps bind
    assert Progress(steps=10, enabled=False).fraction(20, 0.0) == 1.0
    assert Progress(enabled=False).fraction(5, 5.0) == 0.0
    assert p.describe(120, 12.34) == "step 120/2000  12.3/30 s"
    assert Progress(seconds=20.0).describe(7, 1.0) == "step 7  1.0/20 s"


def test_off_a_terminal_plain_lines_every_few_seconds_and_a_last_one() -> None:
    out = io.StringIO()
    with Progress("fit", steps=100, enabled=None, every=0.0, stream=out, terminal=False) as p:
        p.update(10, 1.0, loss=0.5, psnr="20.1 dB")
        p.update(20, 2.0, loss=0.25, psnr="22.3 dB")
    lines = out.getvalue().splitlines()
    assert len(lines) == 2  # each update printed once (every=0), the last not repeated on close
    assert lines[0].startswith("fit   10%  step 10/100  1.0 s  loss 5.000e-01  psnr 20.1 dB  10.0 it/s")
    assert lines[1].startswith("fit   20%  step 20/100  2.0 s  loss 2.500e-01  psnr 22.3 dB")
    out = io.StringIO()
    with Progress("fit", seconds=10.0, every=3600.0, stream=out, terminal=False) as p:
        for step in range(1, 6):
            p.update(step, step * 0.1, loss=1.0)
    assert out.getvalue().splitlines() == ["fit    5%  step 5  0.5/10 s  loss 1.000e+00  10.0 it/s"]  # only the last


def test_disabled_progress_prints_nothing() -> None:
    out = io.StringIO()
    with Progress(steps=5, enabled=False, every=0.0, stream=out, terminal=False) as p:
        p.update(1, 1.0, loss=1.0)
    assert out.getvalue() == ""
    assert format_fields({"loss": 0.001234, "iou": 0.91234, "psnr": "24.5 dB"}) == "loss 1.234e-03  iou 0.9123  psnr 24.5 dB"


def test_other_loops_count_their_own_unit() -> None:
    out = io.StringIO()
    with Progress("report", steps=4, every=0.0, stream=out, terminal=False, unit="item") as p:
        p.update(1, 2.0, now="image-s0 siren equal_steps")
    assert out.getvalue().splitlines() == ["report   25%  item 1/4  2.0 s  now image-s0 siren equal_steps"]
