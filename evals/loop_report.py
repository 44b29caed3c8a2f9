"""The closing numbers of the loop: base, specialist and router on the same held-out tasks, in and out of domain.

`router_examples` labels the first user turn (with the suite's system message and its tool names) of train
tasks by their suite: the router learns the world's domains from tasks no eval uses. `route_tasks` asks the
router where each held-out task's first request goes. The router's score on a task is the score of the model it
chose on that task, read from the base's and the specialist's result rows of the same task: evaluation is greedy,
so an episode is a function of the model and the task, and routing to a model replays its episode exactly (what
RouteLLM-style evaluations do; `tinygpt agent --router` would play the same ids). `table` gives each arm's pass
rate with a 95% Wilson interval on the domain's tasks, on the other domains' tasks, and on all of them, and
`chart_png` draws it. A suite is named (a generated suite of the tool world) or given as an object: the user's
chats (chat_suite.ChatSuite, `tinygpt quickstart --data`), whose first request is the chat's messages through its
first user message, with its tools. It runs no model.
"""
from __future__ import annotations

from dataclasses import dataclass

from tinygpt.evals.png import Canvas, encode, text_width
from tinygpt.evals.stats import wilson
from tinygpt.evals.suite import Task, load_suite, select_tasks, start_episode

ARMS = ("base", "specialist", "router")
SOFTWARE = "tinygpt quickstart"
COLORS = {"base": (150, 150, 150), "specialist": (40, 100, 200), "router": (20, 140, 60)}


def suite_of(suite):
    """A suite by name (load_suite) or the suite object itself."""
    return load_suite(suite) if isinstance(suite, str) else suite


def request_messages(suite, task: Task) -> tuple[list[dict], list[dict]]:
    """The first request of a task as a client sends it: system + first user turn, and the tools offered."""
    if hasattr(suite, "request"):  # the user's chats: the recorded request
        return suite.request(task)
    episode = start_episode(suite, task)
    try:
        system = episode.system if episode.system is not None else suite.SYSTEM
        messages = ([{"role": "system", "content": system}] if system else []) + [
            {"role": "user", "content": task.turns[0]}]
        return messages, episode.toolset.schemas()
    finally:
        if episode.close is not None:
            episode.close()


def router_examples(suites: list, per_suite: int) -> list:
    """Labelled router examples: the first `per_suite` train tasks of each suite (a name or a suite object),
    labelled by the suite's name."""
    from tinygpt.router.data import Example
    from tinygpt.router.features import request_from

    out = []
    for suite in map(suite_of, suites):
        for task in select_tasks(suite, "train", limit=per_suite):
            messages, tools = request_messages(suite, task)
            out.append(Example(request=request_from(messages, tools), domain=suite.NAME, group=task.id))
    return out


def route_tasks(router, registry, settings, suites: list[tuple]) -> dict[str, dict[str, dict]]:
    """{suite: {task_id: {"route", "kind", "domain", "score"}}} for the first n held-out tasks of each (suite, n)
    pair (a suite by name or as an object)."""
    from tinygpt.router.features import request_from
    from tinygpt.router.policy import decide

    out: dict[str, dict[str, dict]] = {}
    for suite, n in suites:
        suite = suite_of(suite)
        name = suite.NAME
        for task in select_tasks(suite, "heldout", limit=n):
            messages, tools = request_messages(suite, task)
            d = decide(request_from(messages, tools), router, registry, settings)
            out.setdefault(name, {})[task.id] = {"route": d.route, "kind": d.kind, "domain": d.domain,
                                                  "score": round(d.score, 4)}
    return out


def routed_passes(routes: dict[str, dict[str, dict]], passed: dict[str, dict[str, dict[str, bool]]],
                  specialist: str) -> dict[str, dict[str, bool]]:
    """{suite: {task_id: passed}} for the router: the specialist's result where it routed there, else the base's."""
    return {suite: {tid: passed[suite]["specialist" if r["route"] == specialist else "base"][tid]
                    for tid, r in tasks.items()}
            for suite, tasks in routes.items()}


@dataclass(frozen=True)
class Cell:
    passed: int
    tasks: int
    lo: float
    hi: float

    @property
    def rate(self) -> float:
        return self.passed / self.tasks if self.tasks else 0.0


def cell(values: list[bool]) -> Cell:
    lo, hi = wilson(sum(values), len(values)) if values else (0.0, 1.0)
    return Cell(sum(values), len(values), lo, hi)


def table(domain: str, arms: dict[str, dict[str, dict[str, bool]]]) -> dict[str, dict[str, Cell]]:
    """{arm: {"in-domain", "out-of-domain", "mixed": Cell}}; `arms[arm][suite][task_id]` = passed."""
    out = {}
    for arm, suites in arms.items():
        inside = list(suites.get(domain, {}).values())
        outside = [v for s, tasks in suites.items() if s != domain for v in tasks.values()]
        out[arm] = {"in-domain": cell(inside), "out-of-domain": cell(outside), "mixed": cell(inside + outside)}
    return out


def text_table(rows: dict[str, dict[str, Cell]], names: dict[str, str]) -> list[str]:
    """The table as aligned lines: arm, then rate [95% interval] (passed/tasks) per column."""
    columns = ("in-domain", "out-of-domain", "mixed")
    labels = {arm: f"{arm} ({names.get(arm, arm)})"[:79] for arm in rows}  # the column fits the longest name
    width = max(32, *(len(x) + 1 for x in labels.values()))
    lines = [f"{'':<{width}}" + "".join(f"{c:<30}" for c in columns)]
    for arm, cells in rows.items():
        lines.append(f"{labels[arm]:<{width}}" + "".join(
            f"{f'{c.rate:6.1%} [{c.lo:.0%}, {c.hi:.0%}] ({c.passed}/{c.tasks})':<30}" for c in
            (cells[k] for k in columns)))
    return lines


GROUP_W, LEFT, TOP, PANEL_H, BOTTOM, BAR_W = 190, 56, 70, 220, 40, 40


def chart_png(rows: dict[str, dict[str, Cell]], title: str) -> bytes:
    """Bars with 95% whiskers: the three arms in each of the three columns."""
    columns = ("in-domain", "out-of-domain", "mixed")
    canvas = Canvas(LEFT + GROUP_W * len(columns) + 24, TOP + PANEL_H + BOTTOM)
    canvas.text(8, 8, title[: (canvas.width - 16) // 12], scale=2)
    x = 8
    for arm in rows:
        canvas.rect(x, 36, x + 9, 45, COLORS.get(arm, (0, 0, 0)))
        x = canvas.text(x + 13, 37, arm) + 16
    canvas.text(x, 37, "whiskers: 95% intervals", (90, 90, 90))

    def y(rate: float) -> int:
        return TOP + PANEL_H - round(rate * PANEL_H)

    for pct in (0, 25, 50, 75, 100):
        canvas.rect(LEFT, y(pct / 100), canvas.width - 24, y(pct / 100) + 1, (228, 228, 228) if pct else (0, 0, 0))
        canvas.text(LEFT - 6 - text_width(f"{pct}%"), y(pct / 100) - 3, f"{pct}%")
    for i, column in enumerate(columns):
        left = LEFT + GROUP_W * i + (GROUP_W - len(rows) * (BAR_W + 6)) // 2
        for j, (arm, cells) in enumerate(rows.items()):
            c, x0 = cells[column], left + j * (BAR_W + 6)
            canvas.rect(x0, y(c.rate), x0 + BAR_W, y(0), COLORS.get(arm, (0, 0, 0)))
            mid = x0 + BAR_W // 2
            canvas.rect(mid - 1, y(c.hi), mid + 2, y(c.lo) + 1, (0, 0, 0))
            canvas.rect(mid - 6, y(c.hi), mid + 7, y(c.hi) + 2, (0, 0, 0))
            canvas.rect(mid - 6, y(c.lo) - 1, mid + 7, y(c.lo) + 1, (0, 0, 0))
        mid = LEFT + GROUP_W * i + GROUP_W // 2
        canvas.text(mid - text_width(column) // 2, y(0) + 10, column)
    return encode(canvas, SOFTWARE)
