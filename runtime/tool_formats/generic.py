"""The generic JSON tool-call format, for chat templates that name no format of their own: the whole answer is
one or more `{"name": ..., "arguments": {...}}` objects, one per line.

It has no marker: a call is an answer that starts with `{"name": `, so free text never starts that way under
the grammar. Chosen when detection finds no known format (tool_formats.detect); `--tool-format json` forces it.
This module only defines the syntax.
"""
from tinygpt.runtime.tool_formats.format import ToolFormat

FORMAT = ToolFormat(name="json", trigger='{"name": ', anywhere=False, sep="\n")


def matches(template: str) -> bool:
    """Never picked by detection: it is the fallback."""
    return False
