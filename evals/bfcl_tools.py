"""One BFCL episode's world: BFCL's own backend classes, run by BFCL's own executor, as a tinygpt Toolset.

`BfclWorld(entry, long_context)` holds the instances of the task's involved classes (any of the eight:
GorillaFileSystem, MathAPI, MessageAPI, TwitterAPI, TicketAPI, TradingBot, TravelAPI, VehicleControlAPI) where
BFCL keeps them, in its executor's module globals, under a name unique to this world (`name`), so no two
episodes or runs ever share one. Each tool is one function of BFCL's function docs (the task's `function` list as
BFCL's dataset loader gives it), with the schema BFCL's own `convert_to_tool` makes for OpenAI-style function
calling; a call becomes BFCL's call string (`convert_to_function_call`) and runs through
`execute_multi_turn_func_call`, and the model sees the executor's result text unchanged. Every call string that
ran is kept per turn (`calls`), which is what BFCL's checker replays. Arguments are checked against the schema by
the agent (the grammar, or the remote reply's check) before they get here; this Toolset only refuses unknown and
missing arguments, and passes the values on as the model wrote them (an integer stays an integer).
`close()` drops the world's instances, and those the checker made under its names, from BFCL's globals.
"""
from __future__ import annotations

import itertools
import re
import uuid
from typing import Any

import msgspec

from tinygpt.evals import bfcl_wheel
from tinygpt.tools.registry import Toolset
from tinygpt.tools.schema import REQUIRED, Param
from tinygpt.tools.tool import Tool

_LABELS = {"string": str, "integer": int, "number": float, "boolean": bool, "array": list, "object": dict}
_NO_CAP = 1 << 40  # BFCL shows a model every result whole (long_context's are long on purpose)
_counter = itertools.count()


def openai_tools(function_docs: list[dict]) -> list[dict]:
    """BFCL's function docs as the OpenAI-style tools BFCL's own FC handlers send (its `convert_to_tool`)."""
    from bfcl_eval.constants.enums import ModelStyle
    from bfcl_eval.constants.type_mappings import GORILLA_TO_OPENAPI

    convert = bfcl_wheel.handler_functions()["convert_to_tool"]
    return convert(function_docs, GORILLA_TO_OPENAPI, ModelStyle.OPENAI_COMPLETIONS)


def call_string(name: str, arguments: dict) -> str:
    """BFCL's executable string for one call, as its FC decoder writes it (`convert_to_function_call`)."""
    return bfcl_wheel.handler_functions()["convert_to_function_call"]([{name: arguments}])[0]


def unique_name(run: str = "") -> str:
    """A name for a world's (or a checker's) instances that no other world in this process shares."""
    tag = re.sub(r"\W+", "_", run).strip("_")  # BFCL builds Python identifiers from it
    return f"tinygpt_{tag + '_' if tag else ''}{uuid.uuid4().hex[:12]}_{next(_counter)}"


class BfclWorld:
    """The task's backends under a fresh name; its tools; the call strings that ran, per turn."""

    def __init__(self, entry: dict, *, long_context: bool, name: str | None = None):
        bfcl_wheel.require()
        self.entry, self.long_context = entry, long_context
        self.name = name or unique_name()
        self.calls: list[list[str]] = [[]]  # per turn; `next_turn()` opens the next
        self.execute([])  # BFCL makes the instances (loading each class's initial config) on the first execution

    def execute(self, call_strings: list[str]) -> list[str]:
        """Run call strings on this world's instances through BFCL's executor; its result text per call."""
        from bfcl_eval.eval_checker.multi_turn_eval.multi_turn_utils import execute_multi_turn_func_call

        results, _ = execute_multi_turn_func_call(
            call_strings, self.entry["initial_config"], self.entry["involved_classes"], self.name,
            self.entry["id"], long_context=self.long_context, is_evaL_run=False)
        return results

    def next_turn(self) -> None:
        self.calls.append([])

    def toolset(self, function_docs: list[dict]) -> Toolset:
        """The functions of `function_docs` (all the world may ever offer) as tools running on this world."""
        return Toolset([self._tool(t["function"]) for t in openai_tools(function_docs)], timeout_s=None,
                       max_output_chars=_NO_CAP)

    def _tool(self, fn: dict) -> Tool:
        name, schema = fn["name"], fn["parameters"]
        required = set(schema.get("required") or ())
        params, fields = [], []
        for pname, prop in (schema.get("properties") or {}).items():
            label = _LABELS.get(prop.get("type"), str)
            params.append(Param(pname, label, REQUIRED if pname in required else prop.get("default"),
                                prop.get("description", "")))
            fields.append((pname, Any) if pname in required else (pname, Any, msgspec.UNSET))
        args_type = msgspec.defstruct(f"{name}_arguments", fields, kw_only=True, frozen=True,
                                      forbid_unknown_fields=True)

        def run(**kwargs: Any) -> str:
            call = call_string(name, {k: v for k, v in kwargs.items() if v is not msgspec.UNSET})
            self.calls[-1].append(call)
            return self.execute([call])[0]

        return Tool(name=name, description=fn.get("description", ""), parameters=schema, fn=run,
                    params=tuple(params), args_type=args_type)

    def close(self) -> None:
        """Drop every instance held under this world's name (the checker's too) from BFCL's module globals."""
        from bfcl_eval.eval_checker.multi_turn_eval import multi_turn_utils

        held = vars(multi_turn_utils)
        for key in [k for k in held if k.startswith(self.name + "_")]:
            del held[key]
