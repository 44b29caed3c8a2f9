"""The Hermes / Qwen tool-call format: `<tool_call>\\n{"name": ..., "arguments": {...}}\\n</tool_call>`, one block
per call joined by "\\n", after the answer's text and a "\\n" (Qwen2.5, Qwen3, Hermes 2 Pro / 3, and the chat
template tinygpt writes into its own models, runtime/chat_template.py).

`<tool_call>` and `</tool_call>` are added tokens of the Qwen vocabulary; results come back in the template's
<tool_response> blocks. This module only defines the syntax; the one place these literals are spelled.
"""
from tinygpt.runtime.tool_formats.format import ToolFormat

OPEN, CLOSE = "<tool_call>", "</tool_call>"

FORMAT = ToolFormat(
    name="hermes", trigger=OPEN, anywhere=True, lead="\n", call=(OPEN + "\n", "\n" + CLOSE), sep="\n",
    markers=(OPEN, CLOSE), stop_tokens=("<|im_end|>", "<|endoftext|>"),
)


def matches(template: str) -> bool:
    """A template that writes `<tool_call>` blocks of JSON (not Qwen3-Coder's `<function=...>` XML inside them)."""
    return OPEN in template and "<function=" not in template
