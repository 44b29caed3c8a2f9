"""The Mistral tool-call format (Mistral 7B v0.3, Nemo, and their v3 tokenizers): `[TOOL_CALLS][{"name": ...,
"arguments": {...}, "id": "a1B2c3D4e"}, ...]` as the whole answer, ended by `</s>`.

The model writes each call's id: 9 ASCII letters or digits, which the template checks when the call and its
result are rendered back (`[TOOL_RESULTS]{"content": ..., "call_id": ...}`). `[TOOL_CALLS]` is a control
token of the vocabulary. Later templates that write `[TOOL_CALLS]name[ARGS]{...}` (Mistral Small 3.2,
Devstral) are another syntax, not this one. This module only defines the syntax.
"""
from tinygpt.runtime.tool_formats.format import ToolFormat

MARKER = "[TOOL_CALLS]"

FORMAT = ToolFormat(
    name="mistral", trigger=MARKER, anywhere=True, section=(MARKER + "[", "]"), sep=", ", id_key="id",
    id_pattern="[A-Za-z0-9]{9}", markers=(MARKER,), stop_tokens=("</s>",),
)


def matches(template: str) -> bool:
    """A template that writes `[TOOL_CALLS][` followed by a JSON list (not the `name[ARGS]` form)."""
    return MARKER + "[" in template and "[ARGS]" not in template
