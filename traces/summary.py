"""Per-episode summaries and aggregate statistics of a set of traces (what `tinygpt traces ls/stats` show).

`summarize(episode)` gives one `EpisodeSummary` (of a reader.Episode or a raw_episode.RawEpisode);
`collect_stats(paths)` reads files (the fast raw way) and adds them up into a `TraceStats`, counting torn and
unreadable files instead of failing on them. No rendering here (see the CLI).
"""
from pathlib import Path
from typing import Callable

import msgspec

from tinygpt.traces.errors import TraceError
from tinygpt.traces.export import kind
from tinygpt.traces.raw_episode import id_count, read_raw_episode


class EpisodeSummary(msgspec.Struct, frozen=True, kw_only=True):
    """One line of `traces ls`."""

    path: str
    episode_id: str
    task_id: str
    split: str
    model: str
    created_at: float
    complete: bool
    status: str
    calls: int
    tool_calls: int
    prompt_tokens: int
    output_tokens: int
    token_exact: bool
    reward: float | None
    passed: bool | None
    torn_bytes: int


def _count(ids) -> int:
    if ids is None or isinstance(ids, list):
        return len(ids or ())
    return id_count(ids)


def summarize(episode) -> EpisodeSummary:
    """Counts and outcome of one episode."""
    calls = [e for e in episode.events if kind(e) == "model_call"]
    end = episode.end
    return EpisodeSummary(
        path=episode.path, episode_id=episode.header.episode_id, task_id=episode.header.task_id,
        split=episode.header.split, model=episode.header.model, created_at=episode.header.created_at,
        complete=end is not None,
        status=end.status if end is not None else "unfinished", calls=len(calls),
        tool_calls=sum(len(c.tool_calls) for c in calls),
        prompt_tokens=sum(_count(c.prompt_token_ids) for c in calls),
        output_tokens=sum(_count(c.output_token_ids) for c in calls),
        token_exact=all(c.token_exact for c in calls),
        reward=end.reward.value if end is not None else None,
        passed=end.verdict.passed if end is not None and end.verdict is not None else None,
        torn_bytes=episode.torn_bytes,
    )


class TraceStats(msgspec.Struct, kw_only=True):
    """Totals over many episodes. `pass_rate` is over episodes that have a checker verdict."""

    files: int = 0
    episodes: int = 0
    complete: int = 0
    unfinished: int = 0
    torn: int = 0
    unreadable: int = 0
    with_verdict: int = 0
    passed: int = 0
    pass_rate: float | None = None
    mean_reward: float | None = None
    calls: int = 0
    tool_calls: int = 0
    prompt_tokens: int = 0
    output_tokens: int = 0
    not_token_exact: int = 0
    by_model: dict[str, int] = {}
    by_split: dict[str, int] = {}
    errors: list[str] = []

    def add(self, s: EpisodeSummary) -> None:
        self.episodes += 1
        self.complete += s.complete
        self.unfinished += not s.complete
        self.torn += s.torn_bytes > 0
        self.with_verdict += s.passed is not None
        self.passed += bool(s.passed)
        self.calls += s.calls
        self.tool_calls += s.tool_calls
        self.prompt_tokens += s.prompt_tokens
        self.output_tokens += s.output_tokens
        self.not_token_exact += not s.token_exact
        self.by_model[s.model] = self.by_model.get(s.model, 0) + 1
        self.by_split[s.split] = self.by_split.get(s.split, 0) + 1


def collect_stats(
    paths: list[Path], progress: Callable[[int, int], None] | None = None,
) -> tuple[TraceStats, list[EpisodeSummary]]:
    """Read every file; return the totals and the per-episode summaries (unreadable files are counted)."""
    stats = TraceStats(files=len(paths))
    summaries = []
    rewards = []
    for index, path in enumerate(paths, 1):
        try:
            summary = summarize(read_raw_episode(path))
        except TraceError as err:
            stats.unreadable += 1
            if len(stats.errors) < 20:
                stats.errors.append(str(err))
        else:
            stats.add(summary)
            summaries.append(summary)
            if summary.reward is not None:
                rewards.append(summary.reward)
        if progress is not None:
            progress(index, len(paths))
    if stats.with_verdict:
        stats.pass_rate = stats.passed / stats.with_verdict
    if rewards:
        stats.mean_reward = sum(rewards) / len(rewards)
    return stats, summaries
