"""Stop strings over streamed text: release text only once it can no longer turn into a stop string.

The worker feeds each token's text; `push` returns the text that is safe to show and whether a stop string
has completed (then the text up to it is the final answer). Holding back a possible stop-string prefix is what
keeps a streamed answer equal to the non-streamed one. The stop that ends first wins (as if text came one
character at a time); of those ending at the same character, the longest.

The scan is an Aho-Corasick automaton over the stop strings, fed each character once: the cost per character
does not grow with the number of stops, and the automaton's state is also the held-back prefix (its depth is
the longest suffix of the text that begins some stop string). Building it is linear in the stops' total
length. Not here: token-level stops (EOS ids).
"""
from __future__ import annotations


class _Automaton:
    """Trie of the stops with failure links; `out[n]` is the longest stop ending at node n, or -1."""

    def __init__(self, stops: list[str]):
        self.goto: list[dict[str, int]] = [{}]
        self.depth = [0]
        self.out = [-1]
        for s in stops:
            node = 0
            for ch in s:
                nxt = self.goto[node].get(ch)
                if nxt is None:
                    nxt = len(self.goto)
                    self.goto[node][ch] = nxt
                    self.goto.append({})
                    self.depth.append(self.depth[node] + 1)
                    self.out.append(-1)
                node = nxt
            self.out[node] = len(s)
        self.fail = [0] * len(self.goto)
        queue = list(self.goto[0].values())
        for node in queue:  # breadth first: a node's failure target is always finished before it
            for ch, child in self.goto[node].items():
                f = self.fail[node]
                while f and ch not in self.goto[f]:
                    f = self.fail[f]
                target = self.goto[f].get(ch, 0)
                self.fail[child] = target if target != child else 0
                if self.out[child] < 0:
                    self.out[child] = self.out[self.fail[child]]  # a shorter stop that is a suffix
                queue.append(child)

    def step(self, node: int, ch: str) -> int:
        while node and ch not in self.goto[node]:
            node = self.fail[node]
        return self.goto[node].get(ch, 0)


class StopScanner:
    def __init__(self, stops: tuple[str, ...] | list[str]):
        self.stops = [s for s in stops if s]
        self._ac = _Automaton(self.stops) if self.stops else None
        self._node = 0
        self.text = ""      # all text seen
        self.released = 0   # chars of `text` handed out
        self.stopped = False

    def push(self, piece: str) -> str:
        """Add `piece`; return newly safe text. After a stop string completes, returns the rest before it."""
        if self.stopped:
            return ""
        base = len(self.text)
        self.text += piece
        if self._ac is None:
            return self._release(len(self.text))
        ac, node = self._ac, self._node
        for i, ch in enumerate(piece):
            node = ac.step(node, ch)
            if ac.out[node] >= 0:
                self.stopped = True
                self.text = self.text[: base + i + 1 - ac.out[node]]
                return self._release(len(self.text))
        self._node = node
        return self._release(len(self.text) - ac.depth[node])

    def flush(self) -> str:
        """At the end of generation: everything not yet released."""
        return self._release(len(self.text))

    def _release(self, upto: int) -> str:
        upto = max(upto, self.released)
        out = self.text[self.released: upto]
        self.released = upto
        return out
