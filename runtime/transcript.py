"""A token-exact conversation: each new message is rendered and tokenized once and its ids appended.

History is never re-templated and re-encoded (re-encoding decoded text can give other ids), so what the
engine's persistent KV holds, what the agent recorded and what training sees are the same ids. The delta for
new messages comes from the model's own chat template: render(history + new) minus render(history); if a
template re-renders earlier turns differently, fall back to rendering the new messages after a probe turn.
The model's sampled ids are appended verbatim; the rest of the template's turn closer (e.g. the "\n" after
`<|im_end|>`) is added in front of the next message. `output_end` is where the last sampled ids end, so
`since_output()` is exactly what the next model call adds to what the engine was given (a new or loaded
transcript has none: all of it). A `mark()` taken before a turn lets a cancelled turn be dropped whole
(`rollback`), as Ollama drops an interrupted exchange; the caller then rewinds the engine session to `ids`
(Engine.rewind). Not here: generation (engine.py), tools (agent.py).
"""
from __future__ import annotations

from dataclasses import dataclass, field

_PROBE = "\u00a7probe\u00a7"


class TemplateError(RuntimeError):
    """The model's chat template cannot be used incrementally (it re-renders history unpredictably)."""


@dataclass
class Segment:
    """Ids appended in one step, and why: "prompt" (template/messages) or "output" (sampled)."""

    kind: str
    ids: list[int]
    text: str


@dataclass
class Transcript:
    """Messages and the exact ids for them, growing by appends only."""

    engine: object
    tools: list[dict] | None = None
    messages: list[dict] = field(default_factory=list)
    ids: list[int] = field(default_factory=list)
    segments: list[Segment] = field(default_factory=list)
    output_end: int = 0
    _pending_close: str = ""

    def _render(self, msgs: list[dict], gen: bool) -> str:
        return self.engine.render(msgs, self.tools, add_generation_prompt=gen)

    def _delta(self, new: list[dict]) -> str:
        if not self.messages:
            return self._render(new, True)
        base = self._render(self.messages, False)
        full = self._render(self.messages + new, True)
        if full.startswith(base):
            return self._pending_close + full[len(base):]
        probe = [{"role": "user", "content": _PROBE}]
        base = self._render(probe, False)
        full = self._render(probe + new, True)
        if not full.startswith(base):
            raise TemplateError("the chat template renders a conversation's start differently as it grows; "
                                "tinygpt cannot append to it token-exactly")
        return self._pending_close + full[len(base):]

    def add_messages(self, *msgs: dict) -> list[int]:
        """Append messages (user / system / tool) plus the generation prompt; return the ids appended."""
        if not msgs:
            raise ValueError("add_messages needs at least one message")
        text = self._delta(list(msgs))
        ids = self.engine.encode(text)
        self.messages.extend(msgs)
        self.ids.extend(ids)
        self.segments.append(Segment("prompt", ids, text))
        self._pending_close = ""
        return ids

    def add_output(self, output_ids: list[int], message: dict, stopped_on_eos: bool) -> None:
        """Append the model's sampled ids verbatim, with `message` the parsed assistant message for history."""
        self.ids.extend(output_ids)
        self.output_end = len(self.ids)
        self.segments.append(Segment("output", list(output_ids), message.get("content") or ""))
        self.messages.append(message)
        closer = self._closer()
        eos_text = self.engine.tokenizer.decode(output_ids[-1:]) if stopped_on_eos and output_ids else ""
        self._pending_close = closer[len(eos_text):] if eos_text and closer.startswith(eos_text) else closer

    def since_output(self) -> list[int]:
        """The ids appended since the last sampled ones (all ids when nothing was sampled in this transcript)."""
        return self.ids[self.output_end:]

    def mark(self) -> tuple[int, int, int, int, str]:
        """A point to roll back to: the lengths of messages, ids and segments, `output_end`, the pending closer."""
        return len(self.messages), len(self.ids), len(self.segments), self.output_end, self._pending_close

    def rollback(self, mark: tuple[int, int, int, int, str]) -> None:
        """Drop everything appended since `mark` (a half-appended step included)."""
        n_msgs, n_ids, n_segs, self.output_end, self._pending_close = mark
        del self.messages[n_msgs:], self.ids[n_ids:], self.segments[n_segs:]

    def _closer(self) -> str:
        """The text the template puts after an assistant message's body, e.g. "<|im_end|>\\n"."""
        msgs = [{"role": "user", "content": "x"}, {"role": "assistant", "content": _PROBE}]
        text = self.engine.render(msgs, None, add_generation_prompt=False)
        return text.split(_PROBE, 1)[1] if _PROBE in text else ""
