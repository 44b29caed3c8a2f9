"""Stop strings over streamed text: release text only once it can no longer turn into a stop string.

The worker feeds each token's text; `push` returns the text that is safe to show and whether a stop string
has completed (then the text up to it is the final answer). Holding back a possible stop-string prefix is what
keeps a streamed answer equal to the non-streamed one. Not here: token-level stops (EOS ids).
"""
from __future__ import annotations


class StopScanner:
    def __init__(self, stops: tuple[str, ...] | list[str]):
        self.stops = [s for s in stops if s]
        self.text = ""      # all text seen
        self.released = 0   # chars of `text` handed out
        self.stopped = False

    def push(self, piece: str) -> str:
        """Add `piece`; return newly safe text. After a stop string completes, returns the rest before it."""
        if self.stopped:
            return ""
        start = max(0, len(self.text) - max((len(s) for s in self.stops), default=0))
        self.text += piece
        if not self.stops:
            return self._release(len(self.text))
        # The stop that ends first wins (as if text came one character at a time); ties: the longer one.
        hits = [(i + len(s), i) for s in self.stops if (i := self.text.find(s, start)) >= 0]
        if hits:
            self.stopped = True
            self.text = self.text[: min(hits)[1]]
            return self._release(len(self.text))
        return self._release(len(self.text) - self._held())

    def flush(self) -> str:
        """At the end of generation: everything not yet released."""
        return self._release(len(self.text))

    def _held(self) -> int:
        """Length of the longest suffix of `text` that is a proper prefix of some stop string."""
        best = 0
        for s in self.stops:
            for k in range(min(len(s) - 1, len(self.text)), best, -1):
                if self.text.endswith(s[:k]):
                    best = k
                    break
        return best

    def _release(self, upto: int) -> str:
        upto = max(upto, self.released)
        out = self.text[self.released: upto]
        self.released = upto
        return out
