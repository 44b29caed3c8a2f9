"""Stop strings: the scanner over mlx-lm's TextStateMachine (runtime/stop_text.py) gives the same answer as the naive
scan on any input, and Ollama's `options.stop` is bounded like OpenAI's `stop`."""
import httpx
from hypothesis import given, settings
from hypothesis import strategies as st

from tinygpt.runtime.stop_text import StopScanner
from tinygpt.web.wire_ollama import MAX_STOPS


class NaiveScanner:
    """The scan web/textstop.py used first: every stop string searched on every push (cost grows with the list)."""

    def __init__(self, stops):
        self.stops = [s for s in stops if s]
        self.text, self.released, self.stopped = "", 0, False

    def push(self, piece):
        if self.stopped:
            return ""
        start = max(0, len(self.text) - max((len(s) for s in self.stops), default=0))
        self.text += piece
        if not self.stops:
            return self._release(len(self.text))
        hits = [(i + len(s), i) for s in self.stops if (i := self.text.find(s, start)) >= 0]
        if hits:
            self.stopped = True
            self.text = self.text[: min(hits)[1]]
            return self._release(len(self.text))
        return self._release(len(self.text) - self._held())

    def flush(self):
        return self._release(len(self.text))

    def _held(self):
        best = 0
        for s in self.stops:
            for k in range(min(len(s) - 1, len(self.text)), best, -1):
                if self.text.endswith(s[:k]):
                    best = k
                    break
        return best

    def _release(self, upto):
        upto = max(upto, self.released)
        out = self.text[self.released: upto]
        self.released = upto
        return out


ALPHABET = st.sampled_from("abcé\n")  # few letters: stops and their prefixes overlap often
STOPS = st.lists(st.text(ALPHABET, max_size=5), max_size=8)
PIECES = st.lists(st.text(ALPHABET, max_size=6), max_size=12)


def _run(scanner, pieces):
    outs = [scanner.push(p) for p in pieces]
    return outs, scanner.flush(), scanner.stopped, scanner.text


@settings(max_examples=400, derandomize=True, database=None, deadline=None)
@given(stops=STOPS, pieces=PIECES)
def test_scanner_equals_the_naive_scan(stops, pieces):
    """Same answer, same stop, and never anything released early (mlx-lm's machine may hold back longer)."""
    outs, rest, stopped, text = _run(StopScanner(stops), pieces)
    n_outs, n_rest, n_stopped, n_text = _run(NaiveScanner(stops), pieces)
    assert ("".join(outs) + rest, stopped, text) == ("".join(n_outs) + n_rest, n_stopped, n_text)
    for k in range(1, len(outs) + 1):
        assert len("".join(outs[:k])) <= len("".join(n_outs[:k]))


def test_earliest_end_wins_then_the_longest():
    s = StopScanner(["bcd", "abcdef", "cd"])
    assert s.push("xxabcdefg") == "xxa" and s.stopped  # "cd" and "bcd" end first; "bcd" is longer
    s = StopScanner(["<|im_end|>"])
    assert s.push("hello <|im") == "hello " and s.push("_e") == "" and s.push("nd|> more") == ""
    assert s.stopped and s.text == "hello "


def test_many_stops_hold_back_only_a_real_prefix():
    stops = [f"STOP{i}" for i in range(30_000)]
    s = StopScanner(stops)
    assert s.push("text STO") == "text " and s.push("P") == "" and s.push("x") == "STOPx"
    assert s.push(" STOP29999 tail") == " " and s.stopped and s.text == "text STOPx "


class CountingStr(str):
    """A stop string that counts how often the scanner looks at it."""

    looks = 0

    def __len__(self):
        CountingStr.looks += 1
        return super().__len__()

    def __getitem__(self, key):
        CountingStr.looks += 1
        return super().__getitem__(key)


def test_pushing_text_never_walks_the_stop_list():
    # The per-character cost must not grow with the number of stops: after the automaton is built, a push
    # touches no stop string at all (the naive scan looked at every one on every push).
    s = StopScanner([CountingStr(f"STOP{i}") for i in range(1_000)])
    CountingStr.looks = 0
    for piece in ["some ", "text ", "ST", "OP", "x and more"] * 20:
        s.push(piece)
    assert CountingStr.looks == 0 and not s.stopped
    naive = NaiveScanner([CountingStr(f"STOP{i}") for i in range(1_000)])
    CountingStr.looks = 0
    naive.push("some text")
    assert CountingStr.looks >= 1_000  # what the test would see on the old scanner


def test_ollama_stop_list_is_bounded(server):
    body = {"model": "tiny", "prompt": "hi", "stream": False, "options": {"stop": ["x"] * (MAX_STOPS + 1)}}
    r = httpx.post(server.url + "/api/generate", json=body, timeout=30)
    assert r.status_code == 400 and "stop" in r.json()["error"]
    body["options"] = {"stop": [f"s{i}" for i in range(MAX_STOPS)], "num_predict": 2}
    r = httpx.post(server.url + "/api/generate", json=body, timeout=30)
    assert r.status_code == 200 and r.json()["eval_count"] <= 2
