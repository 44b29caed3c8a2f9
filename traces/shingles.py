"""Word n-gram hashes of text, computed in bulk with numpy (no Python loop, no string per word).

A word is a maximal run of bytes above 0x20 (so not space or control) in the lowercased UTF-8 text, so case and
spacing never matter. Each word gets a 64-bit polynomial hash of its bytes; an n-gram's hash is the polynomial
hash of its n word hashes. Both come from prefix sums with inverse powers (arithmetic modulo 2**64), so hashes
do not depend on position and one pass serves every n. Used by near-dedupe and decontamination; no sketches here.
"""
import numpy as np

_BYTE_BASE = np.uint64(0x100000001B3)  # odd, hence invertible modulo 2**64
_WORD_BASE = np.uint64(0x9E3779B97F4A7C15)
_POWERS: dict[int, tuple[np.ndarray, np.ndarray]] = {}


def _powers(base: np.uint64, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(base**k, base**-k) modulo 2**64 for k < n, cached per base and grown by doubling."""
    have = _POWERS.get(int(base))
    if have is None or len(have[0]) < n:
        size = max(n, 2 * len(have[0]) if have else 4096)
        inverse = np.uint64(pow(int(base), -1, 1 << 64))
        tables = []
        for factor in (base, inverse):
            factors = np.full(size, factor, np.uint64)
            factors[0] = 1
            tables.append(np.cumprod(factors))
        _POWERS[int(base)] = have = (tables[0], tables[1])
    return have


def _segment_hashes(values: np.ndarray, starts: np.ndarray, ends: np.ndarray, base: np.uint64) -> np.ndarray:
    """Polynomial hash sum(values[t] * base**(end-1-t)) of each segment [start, end), independent of position."""
    power, inverse = _powers(base, len(values) + 1)
    prefix = np.zeros(len(values) + 1, np.int64)
    # int64 and uint64 wrap alike; numpy's int64 cumsum is the faster one.
    np.cumsum((values * inverse[: len(values)]).view(np.int64), out=prefix[1:])
    prefix = prefix.view(np.uint64)
    return (prefix[ends] - prefix[starts]) * power[ends - 1]


class WordBatch:
    """The word hashes of many texts computed in one numpy pass (numpy's per-call cost dominates small texts).

    Texts are joined with a newline, so no word spans two texts; `words(i)` is the view of text i.
    """

    def __init__(self, texts: list[str]):
        encoded = [t.lower().encode("utf-8") for t in texts]
        data = np.frombuffer(b"\n".join(encoded), np.uint8)
        space = data <= 0x20
        edges = np.diff(np.concatenate(([True], space, [True])).view(np.int8))
        starts = np.flatnonzero(edges == -1)  # whitespace (or start) -> word
        ends = np.flatnonzero(edges == 1)  # word -> whitespace (or end)
        # +1 per byte so that zero bytes still count.
        self.hashes = _segment_hashes(data.astype(np.uint64) + np.uint64(1), starts, ends, _BYTE_BASE)
        lengths = np.fromiter((len(e) for e in encoded), np.int64, len(encoded))
        offsets = np.concatenate(([0], np.cumsum(lengths + 1)[:-1]))
        self.first = np.searchsorted(starts, offsets)  # index of each text's first word
        self.stop = np.searchsorted(starts, offsets + lengths)  # one past its last word
        self._grams: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.first)

    def words(self, index: int) -> "Words":
        return Words.in_batch(self, index)

    def grams(self, n: int) -> np.ndarray:
        """Hashes of every run of n consecutive words of the whole batch (sliced per text by `Words`)."""
        if n not in self._grams:
            count = max(len(self.hashes) - n + 1, 0)
            starts = np.arange(count)
            self._grams[n] = _segment_hashes(self.hashes, starts, starts + n, _WORD_BASE)
        return self._grams[n]


class Words:
    """The words of one text: `ngram_hashes(n)`, `whole_hash()`, `count`. `Words(text)` is a batch of one."""

    __slots__ = ("_batch", "_first", "count")

    def __init__(self, text: str):
        self._bind(WordBatch([text]), 0)

    @classmethod
    def in_batch(cls, batch: WordBatch, index: int) -> "Words":
        words = cls.__new__(cls)
        words._bind(batch, index)
        return words

    def _bind(self, batch: WordBatch, index: int) -> None:
        self._batch = batch
        self._first = int(batch.first[index])
        self.count = int(batch.stop[index]) - self._first

    @property
    def hashes(self) -> np.ndarray:
        """The 64-bit hash of each word."""
        return self._batch.hashes[self._first: self._first + self.count]

    def ngram_hashes(self, n: int) -> np.ndarray:
        """64-bit hashes of every run of n consecutive words (none when there are fewer than n words)."""
        if self.count < n:
            return np.zeros(0, np.uint64)
        return self._batch.grams(n)[self._first: self._first + self.count - n + 1]

    def whole_hash(self) -> np.ndarray:
        """The hash of all words as one gram (what `ngram_hashes(count)` gives); one value even for no words."""
        if not self.count:
            return np.zeros(1, np.uint64)
        start = np.array([self._first])
        return _segment_hashes(self._batch.hashes, start, start + self.count, _WORD_BASE)


def fold32(hashes: np.ndarray) -> np.ndarray:
    """Fold 64-bit hashes to 32 bits (xor of halves), the input width of datasketch's affine32 MinHash."""
    return ((hashes >> np.uint64(32)) ^ hashes).astype(np.uint32)
