"""A tool: a typed Python function plus the schema and validator derived from its signature and docstring.

`tool_from_function(fn)` is the only way to make one; the schema is in the OpenAI function-calling shape
and strict (`additionalProperties: false`, `required` listed). It does NOT run tools or catch their
errors: tools/registry.py does that.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable

import msgspec

from tinygpt.tools.docstrings import parse_docstring
from tinygpt.tools.schema import Param, args_struct, parameters_schema, params_of, type_label

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")


@dataclass(frozen=True)
class Tool:
    """A callable tool with its JSON Schema (`parameters`) and argument validator (`args_type`)."""
    name: str
    description: str
    parameters: dict
    fn: Callable[..., Any]
    params: tuple[Param, ...]
    args_type: type[msgspec.Struct]

    def schema(self) -> dict:
        """This tool in the OpenAI function-calling shape."""
        return {"type": "function",
                "function": {"name": self.name, "description": self.description,
                             "parameters": self.parameters}}

    def signature_text(self) -> str:
        """A one-line signature for error messages, e.g. `tail(file_name: string, lines: integer = 10)`."""
        parts = []
        for p in self.params:
            text = f"{p.name}: {type_label(p.annotation)}"
            if not p.required:
                text += f" = {p.default!r}"
            parts.append(text)
        return f"{self.name}({', '.join(parts)})"


def tool_from_function(fn: Callable[..., Any], name: str | None = None,
                       description: str | None = None) -> Tool:
    """Make a Tool from a typed function or bound method; TypeError if it can't be one.

    The description defaults to the docstring's text before its first section; parameter
    descriptions come from its `Args:` (Google) or `Parameters` (numpy) section.
    """
    tool_name = name or getattr(fn, "__name__", "")
    if not _NAME.match(tool_name):
        raise TypeError(f"invalid tool name {tool_name!r}: use 1-64 letters, digits, '_' or '-', "
                        "starting with a letter or '_'")
    doc = parse_docstring(fn.__doc__)
    params = params_of(fn, doc_params=doc.params)
    text = doc.description if description is None else description
    return Tool(name=tool_name, description=text, parameters=parameters_schema(params), fn=fn,
                params=tuple(params), args_type=args_struct(tool_name, params))
