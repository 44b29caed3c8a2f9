"""The Llama 3.1 / 3.2 / 3.3 JSON tool-call format: the whole answer is one `{"name": ..., "parameters": {...}}`
right after the assistant header, ended by `<|eot_id|>` (Meta's template raises on more than one call per turn,
and writes no text beside a call).

In ipython mode Llama writes `<|python_tag|>` before a call and ends it with `<|eom_id|>`: the parser reads both
(the tag as an ignored prefix, `<|eom_id|>` as an end token); the grammar writes the template's own form.
This module only defines the syntax.
"""
from tinygpt.runtime.tool_formats.format import ToolFormat

FORMAT = ToolFormat(
    name="llama3", trigger='{"name": ', anywhere=False, parallel=False, args_key="parameters",
    stop_tokens=("<|eot_id|>", "<|eom_id|>", "<|end_of_text|>"), prefixes=("<|python_tag|>",),
)


def matches(template: str) -> bool:
    """Meta's Llama 3.x template: header tokens, and calls written with a "parameters" key."""
    return "<|start_header_id|>" in template and '"parameters": ' in template
