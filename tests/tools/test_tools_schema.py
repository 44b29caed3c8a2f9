"""Schemas and validators come from signatures + docstrings, and refuse what they can't express."""
from typing import Literal, Optional

import pytest

from tinygpt.tools.docstrings import parse_docstring
from tinygpt.tools.tool import tool_from_function


def search(query: str, limit: int = 5, score: float = 0.5, exact: bool = False, tags: list[str] = [],
           meta: dict = {}, weights: dict[str, float] = {}, lang: Optional[str] = None,
           order: Literal["asc", "desc"] = "asc", cursor: Optional[int] = 0) -> dict:
    """Search the notes.

    Returns the best matches first.

    Args:
        query: Words to look for.
        limit (int): How many results
            to return at most.
        score: Minimum score.
        exact: Match whole words only.
        tags: Only notes with all these tags.
        meta: Extra filters.
        weights: Per-field weights.
        lang: Language code, if known.
        order: Sort order.
        cursor: Where to continue.

    Returns:
        dict: the matches.
    """
    return {}


def test_schema_from_signature_and_docstring():
    tool = tool_from_function(search)
    assert tool.schema() == {"type": "function", "function": {
        "name": "search",
        "description": "Search the notes.\n\nReturns the best matches first.",
        "parameters": {
            "type": "object",
            "properties": {
                "query": {"type": "string", "description": "Words to look for."},
                "limit": {"type": "integer", "description": "How many results to return at most.", "default": 5},
                "score": {"type": "number", "description": "Minimum score.", "default": 0.5},
                "exact": {"type": "boolean", "description": "Match whole words only.", "default": False},
                "tags": {"type": "array", "items": {"type": "string"},
                         "description": "Only notes with all these tags.", "default": []},
                "meta": {"type": "object", "description": "Extra filters.", "default": {}},
                "weights": {"type": "object", "additionalProperties": {"type": "number"},
                            "description": "Per-field weights.", "default": {}},
                "lang": {"type": "string", "description": "Language code, if known."},
                "order": {"type": "string", "enum": ["asc", "desc"], "description": "Sort order.",
                          "default": "asc"},
                "cursor": {"anyOf": [{"type": "integer"}, {"type": "null"}], "description": "Where to continue.",
                           "default": 0},
            },
            "required": ["query"],
            "additionalProperties": False,
        },
    }}


def test_required_optional_is_nullable_and_required():
    def f(x: Optional[str]) -> str:
        """F."""
        return ""
    assert tool_from_function(f).parameters == {
        "type": "object", "properties": {"x": {"anyOf": [{"type": "string"}, {"type": "null"}]}},
        "required": ["x"], "additionalProperties": False}


def test_bound_methods_and_name_override():
    class Box:
        def put(self, item: str, count: int = 1) -> str:
            """Put an item in the box."""
            return item * count
    tool = tool_from_function(Box().put, name="box_put")
    assert tool.name == "box_put"
    assert list(tool.parameters["properties"]) == ["item", "count"]
    assert tool.fn(item="a", count=3) == "aaa"


@pytest.mark.parametrize("fn, message", [
    (lambda: None, "invalid tool name"),
])
def test_bad_tool_names_are_refused(fn, message):
    with pytest.raises(TypeError, match=message):
        tool_from_function(fn)


def _unannotated(x) -> str:
    return ""


def _star(*args: str) -> str:
    return ""


def _kwargs(**kw: str) -> str:
    return ""


def _tuple(x: tuple[int, int]) -> str:
    return ""


def _int_keys(x: dict[int, str]) -> str:
    return ""


def _float_literal(x: Literal[1.5]) -> str:
    return ""


@pytest.mark.parametrize("fn, message", [
    (_unannotated, "has no type annotation"),
    (_star, "variadic positional"),
    (_kwargs, "variadic keyword"),
    (_tuple, "unsupported tool argument type"),
    (_int_keys, "dict keys must be str"),
    (_float_literal, "Literal values must be str, int or bool"),
])
def test_unsupported_signatures_fail_at_definition(fn, message):
    with pytest.raises(TypeError, match=message):
        tool_from_function(fn)


def test_numpy_style_docstring():
    doc = parse_docstring("""Add numbers.

    Parameters
    ----------
    a : int
        The first number,
        on two lines.
    b : int
        The second.

    Returns
    -------
    int
    """)
    assert doc.description == "Add numbers."
    assert doc.params == {"a": "The first number, on two lines.", "b": "The second."}


def test_google_docstring_with_types_and_no_args():
    assert parse_docstring(None).description == ""
    doc = parse_docstring("""Do it.

    Args:
        path (str): Where.
        flag (bool, optional):
            Whether to.
    Raises:
        ValueError: never.
    """)
    assert doc.params == {"path": "Where.", "flag": "Whether to."}
    assert doc.description == "Do it."
