"""`ExportConfig`: what `traces-to-data` keeps and how it dedupes, as a plain dataclass with defaults.

Kept apart from `to_data.py` (numpy, datasketch) so that the CLI can build its parser, and `--help` can show
the defaults, without importing the export machinery. This module checks values; it does not run anything.
"""
from dataclasses import dataclass, fields

from tinygpt.traces.errors import TraceError


@dataclass
class ExportConfig:
    """What traces-to-data keeps and how it dedupes. CLI flags are the kebab-case of these fields."""

    require_pass: bool = False
    min_reward: float | None = None
    split: tuple[str, ...] = ()  # keep only these splits (empty: all)
    model: tuple[str, ...] = ()  # keep only these model names or fingerprints (empty: all)
    exact_dedupe: bool = True
    near_dedupe: bool = True
    num_perm: int = 128
    ngram: int = 5
    threshold: float = 0.8
    seed: int = 1
    decontaminate: tuple[str, ...] = ()  # JSONL files of eval tasks (see decontaminate.py)
    decontam_ngram: int = 13
    mask_error_turns: bool = False
    workers: int = 0  # 0: one per CPU core, in-process for small inputs

    def check(self) -> None:
        """Raise TraceError for values that make no sense, naming the flag."""
        if not 16 <= self.num_perm <= 1024:
            raise TraceError(f"--num-perm must be between 16 and 1024, got {self.num_perm}")
        if self.ngram < 1 or self.decontam_ngram < 1:
            raise TraceError("--ngram and --decontam-ngram must be >= 1")
        if not 0.0 < self.threshold <= 1.0:
            raise TraceError(f"--threshold must be in (0, 1], got {self.threshold}")
        if self.workers < 0:
            raise TraceError(f"--workers must be >= 0, got {self.workers}")

    def changed(self) -> dict:
        """The fields that differ from their defaults (what a run's one-line summary shows)."""
        default = ExportConfig()
        return {f.name: getattr(self, f.name) for f in fields(self)
                if getattr(self, f.name) != getattr(default, f.name)}
