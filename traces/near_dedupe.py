"""Near-duplicate detection: datasketch MinHash sketches of word n-grams in a datasketch MinHashLSH index.

`Sketcher` turns shingle hashes into a MinHash signature with numpy, bit-identical to datasketch's affine32
`MinHash.update_batch` (the tests check this) but without a Python call per shingle. `NearDeduper` keeps the
first episode of each near-duplicate cluster: LSH candidates are confirmed by estimated Jaccard >= threshold.
Band keys are cut once from the byte-swapped signature (what MinHashLSH.insert/query compute per band), so the
index stays a plain MinHashLSH that its own `query` reads. It does not read traces or choose the shingled text.
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
        self._a = a.reshape(-1, 1).copy()
        self._b = b.reshape(-1, 1).copy()
        self._empty = np.full(num_perm, np.iinfo(np.uint32).max, np.uint32)
        self._scratch = np.empty((num_perm, 0), np.uint32)

    def signature(self, hashes32: np.ndarray) -> np.ndarray:
        """MinHash values (uint32, length num_perm) of the set of `hashes32`; all-max for an empty set."""
        if len(hashes32) == 0:
            return self._empty.copy()
        if self._scratch.shape[1] < len(hashes32):
            self._scratch = np.empty((self.num_perm, max(len(hashes32), 2 * self._scratch.shape[1])), np.uint32)
        values = self._scratch[:, : len(hashes32)]  # one row per permutation: contiguous inner loops
        np.multiply(self._a, fmix32(hashes32).reshape(1, -1), out=values)  # uint32 wraps: a*h + b mod 2**32
        np.add(values, self._b, out=values)
        return values.min(axis=1)

    def minhash(self, signature: np.ndarray) -> LeanMinHash:
        """Wrap a signature as a datasketch LeanMinHash (what MinHashLSH.query takes)."""
        return LeanMinHash(seed=self.seed, hashvalues=signature, scheme="affine32")


def band_bytes(signature: np.ndarray) -> bytes:
    """The signature byte-swapped, as MinHashLSH stores band keys; `NearDeduper` slices it per band."""
    return signature.byteswap().tobytes()


class NearDeduper:
    """Keeps the first of each group of signatures whose estimated Jaccard similarity is >= `threshold`."""

    def __init__(self, threshold: float = 0.8, num_perm: int = 128):
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"near-dedupe threshold must be in (0, 1], got {threshold}")
        self.threshold = threshold
        self.num_perm = num_perm
        # Weighted toward recall: LSH false positives cost only a Jaccard check below, misses cost duplicates.
        self.lsh = MinHashLSH(threshold=threshold, num_perm=num_perm, weights=_LSH_WEIGHTS)
        self._bands = [(4 * start, 4 * end) for start, end in self.lsh.hashranges]
        self._kept: dict[int, bytes] = {}

    def duplicate_of(self, key: int, swapped: bytes) -> int | None:
        """The key of a kept near-duplicate, or None (then `key` is kept and indexed).

        `swapped` is `band_bytes(signature)`, computed where the signature was (a worker process).
        """
        keys = [swapped[start:end] for start, end in self._bands]
        candidates = set()
        for band, table in zip(keys, self.lsh.hashtables):
            candidates.update(table.get(band))
        if candidates:
            mine = np.frombuffer(swapped, np.uint32)
            need = self.threshold * self.num_perm
            for other in sorted(candidates):
                if np.count_nonzero(np.frombuffer(self._kept[other], np.uint32) == mine) >= need:
                    return other
        for band, table in zip(keys, self.lsh.hashtables):
            table.insert(band, key)
        self._kept[key] = swapped
        return None
