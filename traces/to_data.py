"""traces -> training data: filter, decontaminate, exact and near dedupe, then write rows and chat records.

`traces_to_data(sources, out_dir, config)` reads finished `.atraj` episodes (in sorted path order, so the first
of duplicates is kept and results are reproducible), drops what the config filters out, and writes
`rows.jsonl` (pre-tokenized `input_ids` + `loss_mask`), `chat.jsonl` (OpenAI-style messages + tools) and
`report.json`, renamed into place together at the end (see spool.Assembly), so an interrupted or failed run
leaves no half output; files in the output directory that no run wrote are never overwritten. Per-episode work
runs in worker processes (which leave Ctrl-C to this one); the dedupe index lives in this one. It does not
train and does not tokenize.
"""
import gc
import hashlib
import multiprocessing
import os
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import msgspec

from tinygpt.traces.decontaminate import EvalSet, load_eval_set
from tinygpt.traces.errors import TraceError
from tinygpt.traces.export_config import ExportConfig
from tinygpt.traces.export import calls_with_errors, chat_record, dedupe_text, is_token_exact
from tinygpt.traces.near_dedupe import NearDeduper, Sketcher, band_bytes
from tinygpt.traces.raw_episode import RawEpisode, parse_raw_episode, row_json
from tinygpt.traces.reader import PART_SUFFIX, list_traces, read_trace_files
from tinygpt.traces.shingles import WordBatch, Words, fold32
from tinygpt.traces.spool import Assembly, Spool

_ENCODER = msgspec.json.Encoder()
_POOL_MIN_FILES = 2000  # below this, starting worker processes costs more than it saves
_BATCH = 64  # files per worker task: amortizes numpy's per-call cost and the pipe round trips


class ExportReport(msgspec.Struct, kw_only=True):
    """Counts of one run. Every finished episode read lands in exactly one of filtered / contaminated /
    exact_dup / near_dup / written; `rows` <= `written` (chat-only episodes have no exact ids)."""

    files: int = 0
    read: int = 0
    torn: int = 0
    corrupt: int = 0
    incomplete: int = 0
    filtered: dict[str, int] = {}
    contaminated: int = 0
    exact_dup: int = 0
    near_dup: int = 0
    written: int = 0
    rows: int = 0
    chat_only: int = 0
    tokens: int = 0
    trained_tokens: int = 0
    tokenizer_hashes: list[str] = []
    errors: list[str] = []
    seconds: float = 0.0
    config: dict = {}


@dataclass
class _Worker:
    """Per-process state: the config, the eval set, the sketcher and the spool, built once per worker."""

    config: ExportConfig
    evals: EvalSet | None
    spool_dir: Path
    sketcher: Sketcher | None = field(init=False)
    spool: Spool = field(init=False)

    def __post_init__(self):
        self.sketcher = Sketcher(self.config.num_perm, self.config.seed) if self.config.near_dedupe else None
        self.spool = Spool(self.spool_dir, _STREAMS)


_STATE: list[_Worker] = []
_STREAMS = ("rows", "chat")


def _init_worker(config: ExportConfig, evals: EvalSet | None, spool_dir: Path) -> None:
    _STATE[:] = [_Worker(config, evals, spool_dir)]


def _init_pool_worker(config: ExportConfig, evals: EvalSet | None, spool_dir: Path) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's: it stops the pool, quietly
    gc.enable()  # forked while the parent had paused it; a worker's heap stays small
    _init_worker(config, evals, spool_dir)


def _filter_reason(episode: RawEpisode, config: ExportConfig) -> str | None:
    h, end = episode.header, episode.end
    if config.split and h.split not in config.split:
        return "split"
    if config.model and h.model not in config.model and h.model_fingerprint not in config.model:
        return "model"
    if config.require_pass and (end.verdict is None or not end.verdict.passed):
        return "not_passed"
    if config.min_reward is not None and end.reward.value < config.min_reward:
        return "reward"
    return None


def _read(path: str, data: bytes | TraceError, config: ExportConfig) -> tuple | RawEpisode:
    """The episode in `data` (the file at `path`), or the result tuple that says why it goes no further."""
    try:
        if isinstance(data, TraceError):
            raise data
        episode = parse_raw_episode(data, path)
    except TraceError as err:
        return ("corrupt", str(err))
    if not episode.complete:
        return ("incomplete", episode.torn_bytes)
    reason = _filter_reason(episode, config)
    if reason is not None:
        return ("filtered", episode.torn_bytes, reason)
    return episode


def _finish(state: _Worker, episode: RawEpisode, text: str, words: Words) -> tuple:
    """Decontaminate, key, sketch and spool one episode that passed the filters."""
    if state.evals is not None and state.evals.contains(episode.header.task_id, words):
        return ("contaminated", episode.torn_bytes)
    key = hashlib.blake2b(text.encode(), digest_size=16).digest()
    signature = None
    if state.sketcher is not None:
        grams = words.ngram_hashes(state.config.ngram) if words.count >= state.config.ngram else words.whole_hash()
        signature = band_bytes(state.sketcher.signature(fold32(grams)))
    row = b""
    tokens = trained = 0
    if is_token_exact(episode):
        failed = calls_with_errors(episode) if state.config.mask_error_turns else set()
        row, tokens, trained = row_json(episode, failed)
    chat = _ENCODER.encode(chat_record(episode)) + b"\n"
    refs = state.spool.append(row, chat)
    return ("ok", episode.torn_bytes, key, signature, refs, tokens, trained, episode.header.tokenizer_hash)


def _process(paths: list[str]) -> list[tuple]:
    """All per-episode work for a batch of files, run in a worker; one result tuple per file, in order."""
    state = _STATE[0]
    results: list = [_read(p, data, state.config) for p, data in zip(paths, read_trace_files(paths))]
    kept = [(slot, r, dedupe_text(r)) for slot, r in enumerate(results) if isinstance(r, RawEpisode)]
    words = WordBatch([text for _, _, text in kept])  # one numpy pass for the whole batch
    for index, (slot, episode, text) in enumerate(kept):
        results[slot] = _finish(state, episode, text, words.words(index))
    return results


def _results(paths: list[str], config: ExportConfig, evals: EvalSet | None, spool_dir: Path):
    batches = [paths[i: i + _BATCH] for i in range(0, len(paths), _BATCH)]
    workers = config.workers or os.cpu_count() or 1
    if workers == 1 or (config.workers == 0 and len(paths) < _POOL_MIN_FILES):
        _init_worker(config, evals, spool_dir)
        try:
            for batch in batches:
                yield from _process(batch)
        finally:
            _STATE.pop().spool.close()
        return
    with multiprocessing.get_context().Pool(workers, _init_pool_worker, (config, evals, spool_dir)) as pool:
        for results in pool.imap(_process, batches):
            yield from results


def _collect_paths(sources: list[str | Path]) -> tuple[list[str], int]:
    """Trace files under `sources` to read (deduplicated, sorted), and the number of `.part` files skipped.

    `.part` files are read too: one that ends with its end record was finished by a process killed before the
    rename. A `.part` next to an `.atraj` of the same id is skipped (the `.atraj` is the episode).
    """
    paths: dict[str, str] = {}
    for source in sources:
        for path in list_traces(source, include_partial=True):
            paths[os.path.abspath(path)] = str(path)
    skipped = [key for key in paths if key.endswith(PART_SUFFIX) and key[: -len(".part")] in paths]
    for key in skipped:
        del paths[key]
    return [paths[key] for key in sorted(paths)], len(skipped)


def _tally(report: ExportReport, result: tuple, exact: set[bytes], near: NearDeduper | None, index: int) -> list:
    """Count one worker result; return its spool refs when the episode is kept, else []."""
    kind = result[0]
    if kind == "corrupt":
        report.corrupt += 1
        if len(report.errors) < 20:
            report.errors.append(result[1])
        return []
    report.read += 1
    report.torn += result[1] > 0
    if kind == "incomplete":
        report.incomplete += 1
        return []
    if kind == "filtered":
        report.filtered[result[2]] = report.filtered.get(result[2], 0) + 1
        return []
    if kind == "contaminated":
        report.contaminated += 1
        return []
    _, _, key, signature, refs, tokens, trained, tokenizer_hash = result
    row = refs[0][2] > 0
    if key in exact:
        report.exact_dup += 1
        return []
    if near is not None and near.duplicate_of(index, signature) is not None:
        report.near_dup += 1
        return []
    exact.add(key)
    report.written += 1
    report.rows += row
    report.chat_only += not row
    report.tokens += tokens
    report.trained_tokens += trained
    if row and tokenizer_hash not in report.tokenizer_hashes:
        report.tokenizer_hashes.append(tokenizer_hash)
    return refs


OUTPUTS = ("rows.jsonl", "chat.jsonl", "report.json")


def _check_out(out_dir: Path) -> None:
    """Refuse an output directory holding outputs that no traces-to-data run wrote (they are not ours)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise TraceError(f"--out {out_dir} is a file; pass a directory (it is created if missing)")
    present = [name for name in OUTPUTS if (out_dir / name).exists()]
    if not present:
        return
    try:
        report = msgspec.json.decode((out_dir / "report.json").read_bytes())
    except (OSError, msgspec.DecodeError):
        report = None
    if not (isinstance(report, dict) and {"files", "written", "rows", "config"} <= report.keys()):
        raise TraceError(
            f"--out {out_dir} already holds {', '.join(present)} that traces-to-data did not write (no report.json "
            "of a run beside them); pass a new or empty directory, nothing was changed"
        )


def _cannot_write(out_dir: Path, err: OSError) -> TraceError:
    if isinstance(err, NotADirectoryError):
        why = "a part of that path is a file"
    else:
        why = err.strerror or str(err)
    return TraceError(f"cannot write training data to --out {out_dir}: {why}; nothing was written there. "
                      "Pass a writable directory with room for the output")


def traces_to_data(
    sources: list[str | Path], out_dir: str | Path, config: ExportConfig | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ExportReport:
    """Turn the finished episodes under `sources` into `out_dir/{rows,chat}.jsonl`; return the counts.

    `progress(done, total)` is called as episodes are processed. Raises TraceError for bad input (missing
    source, bad config, unreadable eval file); damaged trace files are counted in `corrupt`, not raised.
    """
    config = config or ExportConfig()
    config.check()
    started = time.perf_counter()
    paths, partial = _collect_paths(sources)
    evals = load_eval_set(list(config.decontaminate), config.decontam_ngram) if config.decontaminate else None
    report = ExportReport(files=len(paths) + partial, incomplete=partial, config=asdict(config))
    near = NearDeduper(config.threshold, config.num_perm) if config.near_dedupe else None
    exact: set[bytes] = set()
    out_dir = Path(out_dir)
    _check_out(out_dir)
    try:
        assembly = Assembly(out_dir, _STREAMS)
    except OSError as err:
        raise _cannot_write(out_dir, err) from None
    # The dedupe index holds millions of small containers; cyclic GC passes over them would dominate. Nothing
    # here makes reference cycles, so collection is paused for the run.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for index, result in enumerate(_results(paths, config, evals, assembly.spool_dir)):
            kept = _tally(report, result, exact if config.exact_dedupe else set(), near, index)
            if kept:
                assembly.keep(kept)
            if progress is not None and (index % 256 == 255 or index + 1 == len(paths)):
                progress(index + 1, len(paths))
        report.seconds = round(time.perf_counter() - started, 3)
        assembly.commit({"report.json": msgspec.json.format(msgspec.json.encode(report)) + b"\n"})
    except OSError as err:
        assembly.discard()
        raise _cannot_write(out_dir, err) from None
    except BaseException:
        assembly.discard()
        raise
    finally:
        if gc_was_enabled:
            gc.enable()
    return report
