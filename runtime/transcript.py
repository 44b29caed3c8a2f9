"""A token-exact conversation: each new message is rendered and tokenized once and its ids appended.

History is never re-templated and re-encoded (re-encoding decoded text can give other ids), so what the
engine's persistent KV holds, what the agent recorded and what training sees are the same ids. New messages are
rendered by the model's own chat template after a short probe conversation standing in for the history, never
after the history itself: templates may refuse or move things in a real history (Mistral Nemo's raises on a user
message right after tool results, and writes the tools and the system prompt before the *last* user message
only). The probe is the system message (if the conversation has one) and a user message, then:
- for tool results: the assistant message whose calls they answer (the real one); the delta is what rendering the
  results adds to rendering the probe;
- for anything else (a user message): an answer, after whose closer the delta starts. So a user message gets
  what the template writes for a last user message: with Mistral the tools block and the system prompt again.
Messages no model call follows (the results that end a turn at max_steps) get no generation prompt.
The model's sampled ids are appended verbatim; the rest of the template's turn closer (e.g. the "\n" after
`<|im_end|>`) is added in front of the next message; a sampled end token stands for the template's own
(Llama's `<|eom_id|>` for `<|eot_id|>`). `output_end` is where the last sampled ids end, so `since_output()` is
exactly what the next model call adds to what the engine was given (a new or loaded transcript has none: all
of it). A `mark()` taken before a turn lets a cancelled turn be dropped whole (`rollback`), as Ollama drops an
interrupted exchange; the caller then rewinds the engine session to `ids` (Engine.rewind). Not here:
generation (engine.py), tools (agent.py).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import jinja2

_USER = "\u00a7probe\u00a7"  # the probe's user message
_ANSWER = "\u00a7answer\u00a7"  # the probe's answer: the new messages start after its closer


class TemplateError(RuntimeError):
    """The model's chat template refuses the messages, or cannot be appended to token-exactly."""


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
        try:
            return self.engine.render(msgs, self.tools, add_generation_prompt=gen)
        except jinja2.TemplateError as exc:  # the template's own raise_exception (e.g. roles must alternate)
            raise TemplateError(f"the chat template refused the messages: {exc}") from None

    def _probe(self) -> list[dict]:
        """The history's stand-in: its system message, if any, and a user message."""
        head = self.messages[:1] if self.messages and self.messages[0]["role"] == "system" else []
        return head + [{"role": "user", "content": _USER}]

    def _delta(self, new: list[dict], gen: bool) -> str:
        if not self.messages:
            return self._render(new, gen)
        if new[0]["role"] == "tool":  # results follow the calls they answer: the last assistant message, as it is
            last = next((i for i in range(len(self.messages) - 1, -1, -1)
                         if self.messages[i]["role"] == "assistant"), None)
            if last is None:
                raise TemplateError("tool results need the assistant message whose calls they answer; the "
                                    "conversation has none")
            probe = self._probe() + self.messages[last:]
            base, full = self._render(probe, False), self._render(probe + new, gen)
            if not full.startswith(base):
                raise TemplateError("the chat template renders an assistant message differently once tool results "
                                    "follow it; tinygpt cannot append to it token-exactly")
            return self._pending_close + full[len(base):]
        # a new exchange: it follows a closed turn (an answer; tool results render the same way before it)
        full = self._render(self._probe() + [{"role": "assistant", "content": _ANSWER}] + new, gen)
        closer = self._closer()
        after = full.split(_ANSWER, 1)[1] if _ANSWER in full else ""
        if not after.startswith(closer):
            raise TemplateError("the chat template closes an answer differently when a message follows it; "
                                "tinygpt cannot append to it token-exactly")
        return self._pending_close + after[len(closer):]

    def add_messages(self, *msgs: dict, generation_prompt: bool = True) -> list[int]:
        """Append messages (user / system / tool) plus, unless no model call follows them (tool results that end a
        turn at max_steps), the generation prompt; return the ids appended."""
        if not msgs:
            raise ValueError("add_messages needs at least one message")
        text = self._delta(list(msgs), generation_prompt)
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
        self._pending_close = self._rest_of_closer(output_ids[-1:] if stopped_on_eos else [])

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
        """The text the template puts after an answer's body, e.g. "<|im_end|>\\n"."""
        text = self._render(self._probe() + [{"role": "assistant", "content": _ANSWER}], False)
        return text.split(_ANSWER, 1)[1] if _ANSWER in text else ""

    def _rest_of_closer(self, end: list[int]) -> str:
        """What follows sampled ids that ended with `end` (the end token, or [] when cut off): the closer, less
        its end-of-turn token, which a sampled end token stands for (Llama's <|eom_id|> for <|eot_id|>)."""
        closer = self._closer()
        if not end:
            return closer
        tok = self.engine.tokenizer
        sampled = tok.decode(end)
        if sampled and closer.startswith(sampled):
            return closer[len(sampled):]
        ends = [tok.decode([i]) for i in sorted(getattr(tok, "eos_token_ids", None) or [tok.eos_token_id])]
        if sampled in ends:
            first = next((e for e in ends if e and closer.startswith(e)), "")
            return closer[len(first):]
        return closer
