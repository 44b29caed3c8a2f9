"""Near-duplicate detection: datasketch MinHash sketches of word n-grams, indexed by datasketch MinHashLSH.

`Sketcher` turns shingle hashes into a MinHash signature with numpy, bit-identical to datasketch's affine32
`MinHash.update_batch` (the tests check this) but without a Python call per shingle. `NearDeduper` keeps the
first episode of each near-duplicate cluster: LSH candidates are confirmed by estimated Jaccard >= threshold.
It does not read traces or decide what text is shingled (see `export.py`).
"""
import numpy as np
from datasketch import LeanMinHash, MinHash, MinHashLSH

_LSH_WEIGHTS = (0.2, 0.8)  # (false positive, false negative) weights for datasketch's band/row optimizer
_FMIX = (np.uint32(16), np.uint32(0x85EBCA6B), np.uint32(13), np.uint32(0xC2B2AE35), np.uint32(16))


def fmix32(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finalizer, the pre-mix datasketch's affine32 scheme applies to input hashes."""
    s1, m1, s2, m2, s3 = _FMIX
    h = h ^ (h >> s1)
    h = h * m1
    h = h ^ (h >> s2)
    h = h * m2
    return h ^ (h >> s3)


class Sketcher:
    """Computes `num_perm` MinHash values of a set of 32-bit shingle hashes (datasketch affine32, `seed`)."""

    def __init__(self, num_perm: int = 128, seed: int = 1):
        if not 16 <= num_perm <= 1024:
            raise ValueError(f"num_perm must be between 16 and 1024, got {num_perm}")
        self.num_perm = num_perm
        self.seed = seed
        a, b = MinHash(num_perm=num_perm, seed=seed, scheme="affine32").permutations
        self._a = a.reshape(1, -1)
        self._b = b.reshape(1, -1)
        self._empty = np.full(num_perm, np.iinfo(np.uint32).max, np.uint32)
        self._scratch = np.empty((0, num_perm), np.uint32)

    def signature(self, hashes32: np.ndarray) -> np.ndarray:
        """MinHash values (uint32, length num_perm) of the set of `hashes32`; all-max for an empty set."""
        if len(hashes32) == 0:
            return self._empty.copy()
        if len(self._scratch) < len(hashes32):
            self._scratch = np.empty((max(len(hashes32), 2 * len(self._scratch)), self.num_perm), np.uint32)
        values = self._scratch[: len(hashes32)]
        np.multiply(fmix32(hashes32).reshape(-1, 1), self._a, out=values)  # uint32 wraps: a*h + b mod 2**32
        np.add(values, self._b, out=values)
        return values.min(axis=0)

    def minhash(self, signature: np.ndarray) -> LeanMinHash:
        """Wrap a signature as a datasketch LeanMinHash (what MinHashLSH indexes)."""
        return LeanMinHash(seed=self.seed, hashvalues=signature, scheme="affine32")


class NearDeduper:
    """Keeps the first of each group of sketches whose estimated Jaccard similarity is >= `threshold`."""

    def __init__(self, threshold: float = 0.8, num_perm: int = 128, seed: int = 1):
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"near-dedupe threshold must be in (0, 1], got {threshold}")
        self.threshold = threshold
        self.sketcher = Sketcher(num_perm, seed)
        # Weighted toward recall: LSH false positives cost only a Jaccard check below, misses cost duplicates.
        self.lsh = MinHashLSH(threshold=threshold, num_perm=num_perm, weights=_LSH_WEIGHTS)
        self._kept: dict[int, np.ndarray] = {}

    def duplicate_of(self, key: int, signature: np.ndarray) -> int | None:
        """The key of a kept near-duplicate of `signature`, or None (then `key` is kept and indexed)."""
        minhash = self.sketcher.minhash(signature)
        for other in self.lsh.query(minhash):
            if np.count_nonzero(self._kept[other] == signature) >= self.threshold * len(signature):
                return other
        self.lsh.insert(key, minhash, check_duplication=False)
        self._kept[key] = signature
        return None
