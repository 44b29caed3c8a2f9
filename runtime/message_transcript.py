"""The conversation of an agent driven by a message-level model: its messages, in the OpenAI chat format, and no ids.

A remote model is sent messages, never token ids, so there is nothing to keep token-exact and no local KV
session: this holds what is sent on the next call (system, user, assistant with its `tool_calls` as the model
wrote them, tool messages answering each call by its id) and grows by appends only. `ids` is None (there are
none); `output_end` counts the messages up to the model's last one (0: no output yet, as Transcript's).
`mark()` / `rollback()` drop a cancelled turn whole, as Transcript's do. The token-exact conversation of a
local model is transcript.py's.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class MessageTranscript:
    """Messages only, growing by appends."""

    messages: list[dict] = field(default_factory=list)
    output_end: int = 0
    ids = None  # a remote conversation has no token ids

    def add_messages(self, *msgs: dict) -> None:
        """Append messages (system / user / tool); there are no ids to return (None, as the loop records them)."""
        if not msgs:
            raise ValueError("add_messages needs at least one message")
        self.messages.extend(msgs)

    def add_output(self, message: dict) -> None:
        """Append the model's assistant message."""
        self.messages.append(message)
        self.output_end = len(self.messages)

    def mark(self) -> tuple[int, int]:
        """A point to roll back to."""
        return len(self.messages), self.output_end

    def rollback(self, mark: tuple[int, int]) -> None:
        """Drop everything appended since `mark`."""
        n_msgs, self.output_end = mark
        del self.messages[n_msgs:]
