"""What a lane's model did, by path: prompt ids prefilled and the seconds they took, tokens decoded, prompt ids
that came from a cache instead.

Paths: `solo` (a lone job's prompt, solo.py), `staged` (a prompt prefilled outside the batch before it joins:
lane.py), `batch` (mlx-lm's BatchGenerator's own prompt processing and decode steps, from its counters; its
`other` seconds are the batch steps' rest: rows joining and leaving, new rows' first steps). Prefill seconds are
evaluated work (each chunk is evaluated before the clock stops); decode seconds include the step the pipeline
computes ahead. Benchmarks read it (bench_bfcl_inflight.py writes it into its JSON) to show where the time went.
Not here: deciding anything with it.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass
class LaneWork:
    solo_prefill_tokens: int = 0
    solo_prefill_s: float = 0.0
    staged_prefill_tokens: int = 0
    staged_prefill_s: float = 0.0
    batch_prefill_tokens: int = 0    # ids mlx-lm's prompt processing consumed (without its padding)
    batch_prefill_s: float = 0.0
    solo_decode_tokens: int = 0
    solo_decode_s: float = 0.0
    batch_decode_tokens: int = 0
    batch_decode_steps: int = 0
    batch_decode_s: float = 0.0
    batch_other_s: float = 0.0
    session_tokens: int = 0          # prompt ids a job's session already held
    prefix_cache_tokens: int = 0     # prompt ids a job started from in the prefix cache
    prefix_cache_stores: int = 0     # prompts stored in the prefix cache as they were prefilled

    def add_batch(self, stats) -> None:
        """Add what mlx-lm's `BatchGenerator.stats()` counted over one step."""
        self.batch_prefill_tokens += stats.prompt_tokens
        self.batch_prefill_s += stats.prompt_time
        self.batch_decode_tokens += stats.generation_tokens
        self.batch_decode_steps += stats.generation_steps
        self.batch_decode_s += stats.decode_time
        self.batch_other_s += stats.overhead_time

    def as_dict(self) -> dict:
        return {k: round(v, 3) if isinstance(v, float) else v for k, v in asdict(self).items()}
