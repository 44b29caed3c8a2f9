"""Turns a typed Python signature into a strict JSON Schema and a msgspec Struct that validates calls.

Both come from the same `Param` list, so the grammar (schema), the validator (Struct) and the docs agree.
Supported annotations: str, int, float, bool, list[T], dict / dict[str, T], Optional[T], Literal[...]
(-> enum). Anything else is refused when the tool is defined (a bug in the tool, not a model fault).
Rule for Optional: `x: Optional[T] = None` means "may be omitted" -> schema of T, not required (an
explicit null is still accepted); `x: Optional[T]` without default -> required, anyOf [T, null].
It does NOT call tools or render results (tools/registry.py does).
"""
from __future__ import annotations

import copy
import inspect
import json
import types
import typing
from dataclasses import dataclass
from typing import Any, Callable, Literal, Union

import msgspec

from tinygpt.tools.docstrings import parse_docstring

_SCALARS = {str: "string", int: "integer", float: "number", bool: "boolean"}
REQUIRED = inspect.Parameter.empty


@dataclass(frozen=True)
class Param:
    """One parameter of a tool: its name, annotation, default (REQUIRED if none) and description."""
    name: str
    annotation: Any
    default: Any
    description: str

    @property
    def required(self) -> bool:
        return self.default is REQUIRED


def params_of(fn: Callable, *, doc_params: dict[str, str] | None = None) -> list[Param]:
    """Read the parameters of `fn` (a function or bound method); raise TypeError if one can't be a tool arg."""
    target = getattr(fn, "__func__", fn)
    try:
        hints = typing.get_type_hints(target)
    except (NameError, TypeError) as exc:
        raise TypeError(f"cannot resolve the type hints of {_qualname(fn)}: {exc}") from exc
    descriptions = parse_docstring(fn.__doc__).params if doc_params is None else doc_params
    params = []
    for p in inspect.signature(fn).parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD, p.POSITIONAL_ONLY):
            raise TypeError(f"{_qualname(fn)}: parameter {p.name!r} is {p.kind.description}; "
                            "tool parameters must be plain named parameters")
        if p.name not in hints:
            raise TypeError(f"{_qualname(fn)}: parameter {p.name!r} has no type annotation; "
                            "annotate it (str, int, float, bool, list[...], dict, Optional, Literal)")
        annotation = hints[p.name]
        json_schema(annotation)  # refuse unsupported types now, not at call time
        params.append(Param(p.name, annotation, p.default, descriptions.get(p.name, "")))
    return params


def parameters_schema(params: list[Param]) -> dict:
    """The strict JSON Schema object for a tool's parameters (OpenAI `parameters` field)."""
    properties = {}
    for p in params:
        omittable_none = p.default is None and _is_optional(p.annotation)
        prop = json_schema(_strip_none(p.annotation) if omittable_none else p.annotation)
        if p.description:
            prop = {**prop, "description": p.description}
        if not p.required and p.default is not None and _is_json_value(p.default):
            prop = {**prop, "default": p.default}
        properties[p.name] = prop
    return {
        "type": "object",
        "properties": properties,
        "required": [p.name for p in params if p.required],
        "additionalProperties": False,
    }


def args_struct(tool_name: str, params: list[Param]) -> type[msgspec.Struct]:
    """A msgspec Struct type that accepts exactly the valid argument objects of the tool."""
    fields = []
    for p in params:
        if p.required:
            fields.append((p.name, p.annotation))
        elif isinstance(p.default, (list, dict, set)):
            fields.append((p.name, p.annotation, msgspec.field(default_factory=_copier(p.default))))
        else:
            fields.append((p.name, p.annotation, p.default))
    return msgspec.defstruct(f"{tool_name}_arguments", fields, kw_only=True, frozen=True,
                             forbid_unknown_fields=True)


def json_schema(tp: Any) -> dict:
    """JSON Schema of one annotation; TypeError if the annotation is not supported."""
    if tp in _SCALARS:
        return {"type": _SCALARS[tp]}
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is list or origin is list:
        return {"type": "array", "items": json_schema(args[0])} if args else {"type": "array"}
    if tp is dict or origin is dict:
        if not args:
            return {"type": "object"}
        if args[0] is not str:
            raise TypeError(f"dict keys must be str for a JSON tool argument, got {tp!r}")
        return {"type": "object", "additionalProperties": json_schema(args[1])}
    if origin is Literal:
        return _enum_schema(tp, args)
    if origin in (Union, types.UnionType):
        members = [a for a in args if a is not type(None)]
        schemas = [json_schema(a) for a in members]
        if len(members) < len(args):
            schemas.append({"type": "null"})
        return schemas[0] if len(schemas) == 1 else {"anyOf": schemas}
    raise TypeError(f"unsupported tool argument type {tp!r}; use str, int, float, bool, list[...], "
                    "dict, Optional[...] or Literal[...]")


def type_label(tp: Any) -> str:
    """A short human name for an annotation, used in error messages shown to the model."""
    s = json_schema(tp)
    if "enum" in s:
        return "one of " + ", ".join(json.dumps(v) for v in s["enum"])
    if "anyOf" in s:
        return " or ".join(sub.get("type", "value") for sub in s["anyOf"])
    return s.get("type", "value")


def _enum_schema(tp: Any, values: tuple) -> dict:
    kinds = {type(v) for v in values}
    if not values or not kinds <= {str, int, bool}:
        raise TypeError(f"Literal values must be str, int or bool, got {tp!r}")
    if len(kinds) == 1:
        return {"type": _SCALARS[kinds.pop()], "enum": list(values)}
    return {"enum": list(values)}


def _is_optional(tp: Any) -> bool:
    return typing.get_origin(tp) in (Union, types.UnionType) and type(None) in typing.get_args(tp)


def _strip_none(tp: Any) -> Any:
    members = tuple(a for a in typing.get_args(tp) if a is not type(None))
    return members[0] if len(members) == 1 else Union[members]


def _is_json_value(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def _copier(value: Any) -> Callable[[], Any]:
    return lambda: copy.deepcopy(value)


def _qualname(fn: Callable) -> str:
    return getattr(fn, "__qualname__", repr(fn))
