"""Tasks in the embedded tool world (tools/worlds.py), each with a scripted teacher and a checker.

A task is a user request on a fresh copy of the default virtual file system. Its teacher is the list of
assistant steps (tool calls, then an answer) that solves it, written as replies in a model's tool-call format
(`replies(fmt)`; `teacher` is in tinygpt's own chat template's format); its checker passes an episode when the
final file-system state equals the state the teacher's calls produce and the final answer contains what it must.
The quickstart uses these to show the trace -> data loop on real recorded episodes. Not BFCL (see bfcl).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from tinygpt.runtime import tool_formats
from tinygpt.traces.atraj import ModelCall, Reward, Verdict

OWN_FORMAT = "hermes"  # the tool-call format of the chat template tinygpt writes into its own models


@dataclass(frozen=True)
class Call:
    """A teacher step that calls one tool."""

    name: str
    arguments: dict


def call(name: str, **arguments) -> Call:
    return Call(name, arguments)


@dataclass(frozen=True)
class WorldTask:
    """One task: prompt, teacher steps (calls, then the answer text), and what the answer must contain."""

    id: str
    prompt: str
    steps: tuple[Call | str, ...]
    answer_contains: tuple[str, ...] = field(default_factory=tuple)

    def replies(self, fmt: tool_formats.ToolFormat | str = OWN_FORMAT) -> tuple[str, ...]:
        """The teacher's replies as a model in `fmt` writes them (call ids, where it writes them, numbered)."""
        fmt = tool_formats.get(fmt) if isinstance(fmt, str) else fmt
        return tuple(fmt.render([(s.name, s.arguments, f"c{i:08d}")]) if isinstance(s, Call) else s
                     for i, s in enumerate(self.steps))

    @property
    def teacher(self) -> tuple[str, ...]:
        """The replies in tinygpt's own models' format (OWN_FORMAT)."""
        return self.replies()


TASKS = (
    WorldTask("count-todo", "How many lines are in notes/todo.txt?",
              (call("cd", folder="notes"), call("wc", file_name="todo.txt", mode="l"),
               "notes/todo.txt has 3 lines."), ("3",)),
    WorldTask("archive-q1", "Move reports/q1_report.txt into the reports/archive folder.",
              (call("cd", folder="reports"), call("mv", source="q1_report.txt", destination="archive"),
               "Moved q1_report.txt into reports/archive.")),
    WorldTask("write-summary", "Create notes/summary.txt containing the word done.",
              (call("cd", folder="notes"), call("touch", file_name="summary.txt"),
               call("echo", content="done", file_name="summary.txt"),
               "Created notes/summary.txt with 'done'.")),
    WorldTask("grep-budget", "Which line of reports/q2_report.txt mentions the budget?",
              (call("cd", folder="reports"), call("grep", file_name="q2_report.txt", pattern="budget"),
               "The line is: budget analysis: over by 5"), ("over by 5",)),
    WorldTask("hidden-data", "List everything in the data folder, hidden files included.",
              (call("cd", folder="data"), call("ls", a=True), "data holds .cache and measurements.csv."),
              (".cache", "measurements.csv")),
    WorldTask("readme-lines", "Show me the last line of README.md.",
              (call("tail", file_name="README.md", lines=1),
               "The last line is: Notes, reports and a small data set for trying the file tools."),
              ("small data set",)),
)


def expected_state(task: WorldTask) -> dict:
    """The file-system state after running the teacher's calls on a fresh default world."""
    from tinygpt.tools.catalog import open_filesystem

    fs = open_filesystem("fs:virtual")
    for step in task.steps:
        if isinstance(step, Call):
            result = getattr(fs, step.name)(**step.arguments)
            if isinstance(result, dict) and "error" in result:
                raise ValueError(f"task {task.id}: teacher call {step} fails: {result['error']}")
    return fs.to_bfcl()


def make_judge(task: WorldTask, fs):
    """A judge for record_episode: compares `fs` (the episode's world) and the final answer to the task."""
    want = expected_state(task)

    def judge(events: list) -> tuple[Reward, Verdict]:
        calls = [e for e in events if isinstance(e, ModelCall)]
        answer = calls[-1].content if calls and not calls[-1].tool_calls else ""
        state_ok = fs.to_bfcl() == want
        missing = [s for s in task.answer_contains if s not in answer]
        passed = state_ok and not missing and bool(answer)
        why = "ok" if passed else ("file system differs from the expected state" if not state_ok else
                                   f"answer lacks {missing}" if missing else "no final answer")
        return (Reward(value=1.0 if passed else 0.0, source="world_tasks", reason=why),
                Verdict(passed=passed, checker="world_tasks.state+answer", details=why))

    return judge
