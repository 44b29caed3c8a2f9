"""Stop strings over streamed text, on mlx-lm's `TextStateMachine`: release text only once it can no longer turn
into a stop string.

The scheduler feeds each token's text; `push` returns the text that is safe to show and sets `stopped` when a
stop string has completed (then `text` is the answer up to it). Holding back a possible stop-string prefix is
what keeps a streamed answer equal to the non-streamed one. The stop that ends first wins; of those ending at
the same character, the longest. The matching is mlx-lm's Aho-Corasick trie (one state "text", every stop a
transition to the end), so the cost per character does not grow with the number of stops.
What is held back is what mlx-lm's machine holds: everything since the scan last stood at the trie's root, which
can be more than the longest real stop prefix (stop "abcx", text "abca": "abca" waits for the next piece);
the released text, joined, is the same. Not here: token-level stops (EOS ids).
"""
from __future__ import annotations

from mlx_lm.generate import TextStateMachine


class StopScanner:
    def __init__(self, stops: tuple[str, ...] | list[str]):
        self.stops = [s for s in stops if s]
        self._sm = TextStateMachine({"text": [(s, None) for s in self.stops]}) if self.stops else None
        self._state = self._sm.make_state("text") if self._sm else None
        self.text = ""      # all text released or held, up to a stop string
        self.released = 0   # chars of `text` handed out
        self.stopped = False

    def push(self, piece: str) -> str:
        """Add `piece`; return newly safe text. After a stop string completes, returns the rest before it."""
        if self.stopped:
            return ""
        if self._sm is None:
            self.text += piece
            return self._release(len(self.text))
        self._state, segments = TextStateMachine.split(self._state, piece)
        safe = "".join(t for _, t in segments)
        if self._state[0] is None:  # a stop string completed: what came before it is the answer
            self.stopped = True
            self.text = self.text[: self.released] + safe
            return self._release(len(self.text))
        held = self._state[3]
        self.text = self.text[: self.released] + safe + held
        return self._release(len(self.text) - len(held))

    def flush(self) -> str:
        """At the end of generation: everything not yet released."""
        return self._release(len(self.text))

    def _release(self, upto: int) -> str:
        upto = max(upto, self.released)
        out = self.text[self.released: upto]
        self.released = upto
        return out
