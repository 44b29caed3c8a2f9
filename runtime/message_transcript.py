"""The conversation of an agent driven by a message-level model: its messages, in the OpenAI chat format, and no ids.

A remote model is sent messages, never token ids, so there is nothing to keep token-exact and no local KV
session: this holds what is sent on the next call (system, user, assistant with its `tool_calls` as the model
wrote them, tool messages answering each call by its id) and grows by appends only. `mark()` / `rollback()` drop
a cancelled turn whole, as Transcript's do. The token-exact conversation of a local model is transcript.py's.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class MessageTranscript:
    """Messages only, growing by appends."""

    messages: list[dict] = field(default_factory=list)

    def add_messages(self, *msgs: dict) -> None:
        """Append messages (system / user / tool); there are no ids to return (None, as the loop records them)."""
        if not msgs:
            raise ValueError("add_messages needs at least one message")
        self.messages.extend(msgs)

    def add_output(self, message: dict) -> None:
        """Append the model's assistant message."""
        self.messages.append(message)

    def mark(self) -> int:
        """A point to roll back to."""
        return len(self.messages)

    def rollback(self, mark: int) -> None:
        """Drop everything appended since `mark`."""
        del self.messages[mark:]
