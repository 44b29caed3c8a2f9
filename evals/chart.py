"""The gate's PNG chart: per suite and per category, each arm's pass rate as a bar with its interval as a whisker
(upper panel), and the paired difference with its interval, zero line and guard margins (lower panel).

Geometry is fixed (GROUP_W pixels per group) so the image's size follows from the number of groups, and
`rate_y` / `diff_y` map values to rows (the tests read bars back through them). It only draws.
"""
from __future__ import annotations

from dataclasses import dataclass

from tinygpt.evals.compare import Difference, Rate
from tinygpt.evals.gate import GateResult
from tinygpt.evals.png import Canvas, encode, text_height, text_width

SOFTWARE = "tinygpt eval-gate"
GROUP_W, LEFT, RIGHT = 130, 64, 24
TOP, RATE_H, LABEL_H, DIFF_H, BOTTOM = 64, 200, 40, 160, 24
BAR_W = 28
BASELINE, CANDIDATE = (150, 150, 150), (40, 100, 200)
INK, GRID, MARGIN = (0, 0, 0), (228, 228, 228), (210, 50, 50)
VERDICT_INK = {"ship": (20, 140, 60), "routed-ship": (190, 130, 0), "reject": (200, 40, 40),
               "inconclusive": (140, 60, 160)}


@dataclass(frozen=True)
class Group:
    label: str
    baseline: Rate
    candidate: Rate
    diff: Difference
    margin: float | None  # a guard's margin, drawn as a line at -margin


def groups(result: GateResult) -> list[Group]:
    """Each suite, followed by its categories."""
    out = []
    for s in result.suites:
        out.append(Group(f"{s.suite} ({s.role})", s.baseline, s.candidate, s.diff,
                         s.margin if s.role == "guard" else None))
        out += [Group(f" {c.category}", c.baseline, c.candidate, c.diff, None) for c in s.categories]
    return out


def size(n_groups: int) -> tuple[int, int]:
    return LEFT + GROUP_W * n_groups + RIGHT, TOP + RATE_H + LABEL_H + DIFF_H + BOTTOM


def rate_y(rate: float) -> int:
    """The row of a pass rate in the upper panel (0 at its bottom, 1 at its top)."""
    return TOP + RATE_H - round(rate * RATE_H)


def diff_span(result: GateResult) -> float:
    """Half the lower panel's range: the largest bound or margin, rounded up to 25 points (at most 100)."""
    reach = max([abs(v) for g in groups(result) for v in (g.diff.lo, g.diff.hi)] +
                [g.margin for g in groups(result) if g.margin is not None] + [0.0])
    return min(1.0, max(0.25, -(-reach // 0.25) * 0.25))


def diff_y(value: float, span: float) -> int:
    mid = TOP + RATE_H + LABEL_H + DIFF_H // 2
    return mid - round(value / span * (DIFF_H // 2))


def group_x(i: int) -> int:
    """The left edge of group i."""
    return LEFT + GROUP_W * i


def draw(result: GateResult) -> Canvas:
    gs = groups(result)
    width, height = size(len(gs))
    canvas = Canvas(width, height)
    title = f"{result.verdict}: {result.candidate.model} vs {result.baseline.model}"
    canvas.text(8, 8, title[: (width - 16) // 12], VERDICT_INK[result.verdict], scale=2)
    x = 8
    for color, name in ((BASELINE, f"baseline {result.baseline.model}"),
                        (CANDIDATE, f"candidate {result.candidate.model}")):
        canvas.rect(x, 34, x + 9, 43, color)
        x = canvas.text(x + 13, 35, name[:40]) + 16
    canvas.text(x, 35, f"whiskers: {result.confidence:.0%} intervals; below: difference in points", (90, 90, 90))
    _rate_panel(canvas, gs)
    _diff_panel(canvas, gs, diff_span(result))
    return canvas


def _rate_panel(canvas: Canvas, gs: list[Group]) -> None:
    right = canvas.width - RIGHT
    for pct in (0, 25, 50, 75, 100):
        y = rate_y(pct / 100)
        canvas.rect(LEFT, y, right, y + 1, GRID if pct else INK)
        canvas.text(LEFT - 6 - text_width(f"{pct}%"), y - 3, f"{pct}%")
    for i, g in enumerate(gs):
        mid = group_x(i) + GROUP_W // 2
        for x0, rate, color in ((mid - BAR_W - 2, g.baseline, BASELINE), (mid + 2, g.candidate, CANDIDATE)):
            canvas.rect(x0, rate_y(rate.rate), x0 + BAR_W, rate_y(0), color)
            _whisker(canvas, x0 + BAR_W // 2, rate_y(rate.hi), rate_y(rate.lo))
        label = g.label[: (GROUP_W - 8) // 6]
        canvas.text(mid - text_width(label) // 2, rate_y(0) + 8, label)
        text = f"{g.diff.estimate * 100:+.1f}"
        canvas.text(mid - text_width(text) // 2, rate_y(0) + 10 + text_height(), text, (90, 90, 90))


def _diff_panel(canvas: Canvas, gs: list[Group], span: float) -> None:
    right = canvas.width - RIGHT
    for frac in (-1, -0.5, 0, 0.5, 1):
        y = diff_y(frac * span, span)
        canvas.rect(LEFT, y, right, y + 1, INK if frac == 0 else GRID)
        label = f"{frac * span * 100:+.0f}" if frac else "0"
        canvas.text(LEFT - 6 - text_width(label), y - 3, label)
    for i, g in enumerate(gs):
        mid = group_x(i) + GROUP_W // 2
        if g.margin is not None:
            y = diff_y(-g.margin, span)
            canvas.rect(group_x(i) + 10, y, group_x(i) + GROUP_W - 10, y + 2, MARGIN)
        _whisker(canvas, mid, diff_y(g.diff.hi, span), diff_y(g.diff.lo, span))
        y = diff_y(g.diff.estimate, span)
        canvas.rect(mid - 4, y - 4, mid + 5, y + 5, CANDIDATE)


def _whisker(canvas: Canvas, x: int, top: int, bottom: int) -> None:
    canvas.rect(x - 1, top, x + 2, bottom + 1, INK)
    canvas.rect(x - 6, top, x + 7, top + 2, INK)
    canvas.rect(x - 6, bottom - 1, x + 7, bottom + 1, INK)


def chart_png(result: GateResult) -> bytes:
    """The chart of `result` as PNG bytes."""
    return encode(draw(result), SOFTWARE)
