"""The BFCL v4 multi-turn suite: BFCL's own tasks, backends and checker, played through tinygpt's agent loop.

Tasks are the four multi-turn categories (`base`, `miss_func`, `miss_param`, `long_context`; 200 each) exactly as
BFCL's own loaders give them (`load_dataset_entry`, `load_ground_truth_entry`) from the pinned bfcl-eval wheel
(bfcl_wheel.py); the task id is BFCL's (`multi_turn_base_0`), the category its short name. An episode's world is
a `BfclWorld` (bfcl_tools.py): the task's backend classes under a name unique to the episode, exposed as tools
with BFCL's function docs. After each user turn the checker runs BFCL's `multi_turn_checker` on the calls that
ran in the turns so far (under names of its own): turn i passes when BFCL finds turns 0..i valid, so a task
passes exactly when BFCL's checker passes it. BFCL's step limit: a turn may take MAXIMUM_STEP_LIMIT steps with
calls; one more fails the whole task (BFCL's "force-terminated") and later turns are not played.
miss_func: the held-out functions are withheld until their turn, which has no user text in BFCL's data; the
harness sends BFCL's message for it with the functions' docs in it (its prompting-format text, since a local
model's token-exact conversation cannot re-render the tool list at its start) and offers them from then on.
Gold steps per turn: all of BFCL's ground-truth calls in one reply (positional arguments named from the backend
method's signature), then a short answer.
Modes (MODES): `native` (BFCL's FC handlers: the tools go to the chat template as OpenAI-style tools, calls in the
model's own format) or `prompting` (BFCL's prompting handlers: no tools in the template; BFCL's own system prompt,
`formulate_system_prompt` with its default format, lists the function docs as JSON and asks for a Python list of
calls, which the pythonic tool format constrains and reads). One harness: the mode picks only the system
prompt, the tool format and whether the template gets the tools. It does not run the agent (runner.py) or load
models.
"""
from __future__ import annotations

import ast
import importlib
import inspect
from dataclasses import dataclass
from functools import lru_cache

from tinygpt.evals import bfcl_wheel
from tinygpt.evals.bfcl_tools import BfclWorld
from tinygpt.evals.suite import Call, Check, Episode, Task

NAME = "bfcl-multi-turn"
SPLITS = ("test",)
DEFAULT_SPLIT = "test"
SYSTEM = None  # BFCL's function-calling mode sends no system prompt: the tools are the tool list
MODES = ("native", "prompting")
PROMPTING_FORMAT = "pythonic"  # BFCL's prompting format: [func(a=1, b="x"), ...] (runtime/tool_formats/pythonic.py)
CATEGORIES = ("base", "miss_func", "miss_param", "long_context")
GOLD_ANSWER = "Done."


@dataclass(frozen=True)
class BfclData:
    """The suite's part of a task: BFCL's dataset entry (with its `function` docs and, for miss_func, the
    held-out docs per turn), its ground truth (call strings per turn) and its BFCL test category."""

    entry: dict
    ground_truth: tuple[tuple[str, ...], ...]
    test_category: str

    @property
    def long_context(self) -> bool:
        return "long_context" in self.test_category  # as BFCL's executor is told

    def offered(self, turn: int) -> list[str]:
        """The functions offered from `turn` on: BFCL's `function` list plus those added at or before it."""
        names = [f["name"] for f in self.entry["function"]]
        for at, docs in sorted(self.entry.get("missed_function", {}).items(), key=lambda kv: int(kv[0])):
            if int(at) <= turn:
                names += [f["name"] for f in docs]
        return names

    def all_docs(self) -> list[dict]:
        return list(self.entry["function"]) + [f for docs in self.entry.get("missed_function", {}).values()
                                               for f in docs]


def max_steps() -> int:
    """Steps per turn: BFCL's limit on steps with calls, plus the step that answers."""
    bfcl_wheel.require()
    from bfcl_eval.constants.default_prompts import MAXIMUM_STEP_LIMIT

    return MAXIMUM_STEP_LIMIT + 1


def tasks(split: str) -> list[Task]:
    """Every task of the four categories, in BFCL's order (category by category)."""
    return list(_load()) if split in SPLITS else []


def start(task: Task, mode: str = "native") -> Episode:
    """A fresh world for the task under a unique name, and BFCL's checker of each turn on the calls that ran;
    `mode` prompting presents the tools as BFCL's prompting handlers do (the module docstring)."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; modes: {', '.join(MODES)}")
    data: BfclData = task.data
    prompting = mode == "prompting"
    system = system_prompt(data.entry["function"]) if prompting else None
    world = BfclWorld(data.entry, long_context=data.long_context)
    forced: list[int] = []

    def check(turn: int, summary) -> Check:
        if forced or summary.end == "max_steps":
            forced.append(turn)
            world.next_turn()
            return Check(False, f"force-terminated: turn {forced[0]} reached BFCL's step limit "
                                f"({max_steps() - 1} steps with calls)", stop=True)
        verdict = judge(data, world.calls[: turn + 1], world.name + f"_c{turn}")
        world.next_turn()
        return verdict

    return Episode(toolset=world.toolset(data.all_docs()), check=check, offered=data.offered, close=world.close,
                   system=system, tool_format=PROMPTING_FORMAT if prompting else "", template_tools=not prompting)


def system_prompt(function_docs: list[dict]) -> str:
    """BFCL's system prompt for prompting models (its default format: Python calls, docs as JSON, plain text)."""
    from bfcl_eval.constants.default_prompts import DEFAULT_SYSTEM_PROMPT_FORMAT

    return bfcl_wheel.handler_functions()["formulate_system_prompt"](DEFAULT_SYSTEM_PROMPT_FORMAT, function_docs)


def judge(data: BfclData, calls: list[list[str]], name: str) -> Check:
    """BFCL's multi_turn_checker on `calls` (the call strings that ran, per turn so far), run under `name`."""
    from bfcl_eval.eval_checker.multi_turn_eval.multi_turn_checker import multi_turn_checker

    decoded = [[turn] if turn else [] for turn in calls]  # one step per turn holding every call that ran
    result = multi_turn_checker(decoded, [list(t) for t in data.ground_truth[: len(calls)]], data.entry,
                                data.test_category, name)
    if result["valid"]:
        return Check(True, "ok")
    return Check(False, f"{result.get('error_type', 'multi_turn')}: {result.get('error_message', '')}")


def unreplayable(task: Task) -> str | None:
    """Why no schema-checked agent can make the task's ground-truth calls, or None. The agent makes only calls
    that the turn's tools offer and whose arguments fit the schema (a local model's grammar, a remote reply's
    check); in a few tasks BFCL's ground truth does neither (its data disagrees with its own function docs), so
    a gold replay cannot pass those and a model cannot either."""
    from tinygpt.evals.bfcl_tools import openai_tools
    from tinygpt.runtime.grammar_schema import validate

    data: BfclData = task.data
    schemas = {t["function"]["name"]: t["function"]["parameters"] for t in openai_tools(data.all_docs())}
    for turn, steps in enumerate(task.gold):
        offered = data.offered(turn)
        for call in (c for step in steps if not isinstance(step, str) for c in step):
            if call.name not in offered:
                return f"turn {turn} calls {call.name}, which BFCL holds out until a later turn"
            problem = validate(call.arguments, schemas[call.name])
            if problem:
                return f"turn {turn}: {call.name}({call.arguments}) does not fit BFCL's own schema: {problem}"
    return None


def gold_calls(entry: dict, source: str) -> Call:
    """One ground-truth call string as a Call, positional arguments named from the backend method's signature."""
    from bfcl_eval.constants.executable_backend_config import CLASS_FILE_PATH_MAPPING

    node = ast.parse(source, mode="eval").body
    name = node.func.id
    arguments = {kw.arg: ast.literal_eval(kw.value) for kw in node.keywords}
    if node.args:
        for cls in entry["involved_classes"]:
            method = getattr(getattr(importlib.import_module(CLASS_FILE_PATH_MAPPING[cls]), cls), name, None)
            if method is not None:
                params = [p for p in inspect.signature(method).parameters if p != "self"]
                arguments.update({p: ast.literal_eval(a) for p, a in zip(params, node.args)})
                break
    return Call(name, {k: list(v) if isinstance(v, tuple) else v for k, v in arguments.items()})


@lru_cache(maxsize=1)
def _load() -> tuple[Task, ...]:
    bfcl_wheel.require()
    from bfcl_eval.constants.default_prompts import DEFAULT_USER_PROMPT_FOR_ADDITIONAL_FUNCTION_PROMPTING
    from bfcl_eval.utils import load_dataset_entry, load_ground_truth_entry

    out = []
    steps = max_steps()
    for category in CATEGORIES:
        test_category = f"multi_turn_{category}"
        truth = {row["id"]: row["ground_truth"] for row in load_ground_truth_entry(test_category)}
        for entry in load_dataset_entry(test_category):
            held = entry.get("missed_function", {})
            turns = []
            for i, messages in enumerate(entry["question"]):
                if str(i) in held:  # BFCL's held-out turn has no user message: its own text for it
                    turns.append(DEFAULT_USER_PROMPT_FOR_ADDITIONAL_FUNCTION_PROMPTING.format(functions=held[str(i)]))
                else:
                    turns.append("\n\n".join(m["content"] for m in messages))
            gt = tuple(tuple(t) for t in truth[entry["id"]])
            gold = tuple(((tuple(gold_calls(entry, s) for s in t), GOLD_ANSWER) if t else (GOLD_ANSWER,))
                         for t in gt)
            out.append(Task(id=entry["id"], suite=NAME, split="test", category=category, turns=tuple(turns),
                            gold=gold, max_steps=steps,
                            data=BfclData(entry=entry, ground_truth=gt, test_category=test_category)))
    return tuple(out)
