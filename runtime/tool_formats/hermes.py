"""The Hermes / Qwen tool-call format: `<tool_call>\\n{"name": ..., "arguments": {...}}\\n</tool_call>`, one block
per call joined by "\\n", after the answer's text and a "\\n" (Qwen2.5, Qwen3, Hermes 2 Pro / 3, and the chat
template tinygpt writes into its own models, runtime/chat_template.py).

`<tool_call>` and `</tool_call>` are added tokens of the Qwen vocabulary; results come back in the template's
<tool_response> blocks. This module only defines the syntax; the one place these literals are spelled.
"""
import re

from tinygpt.runtime.tool_formats.format import ToolFormat

OPEN, CLOSE = "<tool_call>", "</tool_call>"

FORMAT = ToolFormat(
    name="hermes", trigger=OPEN, anywhere=True, lead="\n", call=(OPEN + "\n", "\n" + CLOSE), sep="\n",
    markers=(OPEN, CLOSE), stop_tokens=("<|im_end|>", "<|endoftext|>"),
)


OTHER_SYNTAXES = ("<function=", "<arg_key>")  # XML inside <tool_call> (Qwen3-Coder; GLM 4.x, Ling, Laguna)


def matches(template: str) -> bool:
    """A template that writes `<tool_call>`, a newline, then the call (as a JSON object): not a name right after
    the marker, nor XML arguments inside it."""
    return re.search(re.escape(OPEN) + r"(\n|\\n)", template) is not None and \
        not any(s in template for s in OTHER_SYNTAXES)
