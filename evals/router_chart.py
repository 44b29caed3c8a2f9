"""eval-router's PNG: the cost–quality curve, mean quality (the axis spans the values, in tenths) against the share of requests sent to the cloud.

Lines: the router's curve, the oracle's (largest gain escalated first), a random order's expected line from the
local split to all-cloud, the all-generalist quality (dashed), and CPT(50%) / CPT(80%) as vertical marks. Fixed
geometry; `x_of` / `y_of` (with `y_range`) map values to pixels (the tests read the curve back through them). It only draws.
"""
from __future__ import annotations

import math

from tinygpt.evals.png import Canvas, encode, text_width

SOFTWARE = "tinygpt eval-router"
WIDTH, HEIGHT = 640, 440
LEFT, RIGHT, TOP, BOTTOM = 64, 24, 64, 48
ROUTER, ORACLE, RANDOM, GENERALIST = (40, 100, 200), (20, 140, 60), (150, 150, 150), (220, 120, 0)
INK, GRID, CPT = (0, 0, 0), (228, 228, 228), (200, 40, 40)


def x_of(share: float) -> int:
    return LEFT + round(share * (WIDTH - LEFT - RIGHT))


def y_range(curve: dict) -> tuple[float, float]:
    """The quality axis: the curves and references, widened to tenths (within [0, 1])."""
    values = [p["quality"] for p in curve["points"]] + curve["oracle"]["quality"] + [
        curve["references"]["all_generalist"]["quality"], curve["weak"], curve["strong"]]
    lo, hi = max(0.0, math.floor(min(values) * 10 - 0.5) / 10), min(1.0, math.ceil(max(values) * 10 + 0.5) / 10)
    return (lo, hi) if hi > lo else (0.0, 1.0)


def y_of(quality: float, span: tuple[float, float] = (0.0, 1.0)) -> int:
    frac = (min(max(quality, span[0]), span[1]) - span[0]) / (span[1] - span[0])
    return HEIGHT - BOTTOM - round(frac * (HEIGHT - TOP - BOTTOM))


def _line(canvas: Canvas, a: tuple[int, int], b: tuple[int, int], color, width: int = 2, dash: int = 0) -> None:
    steps = max(abs(b[0] - a[0]), abs(b[1] - a[1]), 1)
    for i in range(steps + 1):
        if dash and (i // dash) % 2:
            continue
        x = a[0] + (b[0] - a[0]) * i // steps
        y = a[1] + (b[1] - a[1]) * i // steps
        canvas.rect(x - width // 2, y - width // 2, x - width // 2 + width, y - width // 2 + width, color)


def _polyline(canvas: Canvas, shares: list[float], quality: list[float], span, color) -> None:
    pts = [(x_of(s), y_of(q, span)) for s, q in zip(shares, quality)]
    for a, b in zip(pts, pts[1:]):
        _line(canvas, a, b, color)


def draw(result: dict) -> Canvas:
    c = result["curve"]
    canvas = Canvas(WIDTH, HEIGHT)
    apgr = "n/a" if c["apgr"] is None else f"{c['apgr']:.3f}"
    canvas.text(8, 8, f"eval-router: APGR {apgr} (oracle "
                      f"{'n/a' if c['oracle']['apgr'] is None else format(c['oracle']['apgr'], '.3f')})", INK, 2)
    x = 8
    for color, name in ((ROUTER, "router"), (ORACLE, "oracle"), (RANDOM, "random"), (GENERALIST, "all generalist"),
                        (CPT, "CPT 50/80%")):
        canvas.rect(x, 34, x + 9, 43, color)
        x = canvas.text(x + 13, 35, name) + 14
    canvas.text(x, 35, f"quality: {result['quality_source']}"[:40], (90, 90, 90))
    span = y_range(c)
    for v in (0, 0.25, 0.5, 0.75, 1):
        q = span[0] + v * (span[1] - span[0])
        canvas.rect(LEFT, y_of(q, span), WIDTH - RIGHT, y_of(q, span) + 1, INK if v == 0 else GRID)
        canvas.text(LEFT - 6 - text_width(f"{q:.3g}"), y_of(q, span) - 3, f"{q:.3g}")
        canvas.rect(x_of(v), TOP, x_of(v) + 1, HEIGHT - BOTTOM, INK if v == 0 else GRID)
        label = f"{v * 100:.0f}%"
        canvas.text(x_of(v) - text_width(label) // 2, HEIGHT - BOTTOM + 8, label)
    axis = "share of requests sent to the cloud"
    canvas.text((WIDTH - text_width(axis)) // 2, HEIGHT - BOTTOM + 24, axis)
    generalist = c["references"]["all_generalist"]["quality"]
    _line(canvas, (x_of(0), y_of(generalist, span)), (x_of(1), y_of(generalist, span)), GENERALIST, 1, dash=6)
    _line(canvas, (x_of(0), y_of(c["weak"], span)), (x_of(1), y_of(c["strong"], span)), RANDOM)
    for cpt in (c["cpt50"], c["cpt80"]):
        if cpt is not None:
            _line(canvas, (x_of(cpt), TOP), (x_of(cpt), HEIGHT - BOTTOM), CPT, 1, dash=4)
    _polyline(canvas, c["oracle"]["shares"], c["oracle"]["quality"], span, ORACLE)
    _polyline(canvas, [p["cloud_share"] for p in c["points"]], [p["quality"] for p in c["points"]], span, ROUTER)
    return canvas


def chart_png(result: dict) -> bytes:
    """The curve of an eval-router result (with a curve) as PNG bytes."""
    return encode(draw(result), SOFTWARE)
