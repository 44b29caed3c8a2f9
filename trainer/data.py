"""What a run trains on: `--data` (and `--valid-data`) resolved to train / validation Examples, with counts.

`--data` may be a rows.jsonl (traces-to-data), a chat / completions / text JSONL, a directory holding rows.jsonl
or mlx-lm's train.jsonl (+ valid.jsonl), or a directory of `.atraj` traces, which is first exported into the run
directory with traces-to-data's own code (so `--only-passed` and `--split` are its `--require-pass` and
`--split`). Rows carry no checker verdict: `--only-passed` on a rows file is accepted only when the export's
report.json says it was made with `--require-pass`. The train/validation split is by group (episode or line),
drawn from the seed, before long sequences are split, so no episode is on both sides.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tinygpt.trainer.config import TrainConfig
from tinygpt.trainer.errors import TrainError
from tinygpt.trainer.example import Example
from tinygpt.trainer.windows import fit


@dataclass
class DataSet:
    train: list[Example]
    valid: list[Example]
    report: dict = field(default_factory=dict)


def _has_traces(directory: Path) -> bool:
    from tinygpt.traces.reader import list_traces

    return bool(list_traces(directory, include_partial=True))


def detect_format(path: Path) -> str:
    """"rows" or a chat_data format for a JSONL file, from its first record."""
    from tinygpt.trainer.chat_data import record_format
    from tinygpt.trainer.rows import is_row

    try:
        with open(path, encoding="utf-8") as fh:
            first = next((line for line in fh if line.strip()), None)
    except UnicodeDecodeError:
        raise TrainError(f"{path}: not a UTF-8 text file; give a JSONL file") from None
    if first is None:
        raise TrainError(f"{path} is empty; it holds no training records")
    try:
        record = json.loads(first)
    except json.JSONDecodeError as exc:
        raise TrainError(f"{path}: the first line is not JSON ({exc.msg}); give a JSONL file") from None
    if is_row(record):
        return "rows"
    fmt = record_format(record)
    if fmt is None:
        raise TrainError(f"{path}: records must be traces-to-data rows {{input_ids, loss_mask}}, chat {{messages}}, "
                         "completions {prompt, completion} or text {text}")
    return fmt


def _read(path: Path, loaded) -> tuple[list[Example], dict]:
    kind = detect_format(path)
    if kind == "rows":
        from tinygpt.trainer.rows import read_rows

        examples, counts = read_rows(path, tokenizer_hash=loaded.tokenizer_hash, vocab_size=loaded.vocab_size)
    else:
        from tinygpt.trainer.chat_data import read_chat_file

        examples, counts = read_chat_file(path, loaded.tokenizer)
    return examples, {"path": str(path), "format": kind, **counts}


def _export_traces(directory: Path, cfg: TrainConfig, run_dir: Path) -> tuple[Path, dict]:
    """Export the traces under `directory` into RUN/data with traces-to-data (reused on --resume)."""
    from tinygpt.traces.export_config import ExportConfig
    from tinygpt.traces.to_data import traces_to_data

    out = run_dir / "data"
    if not (out / "rows.jsonl").exists():
        config = ExportConfig(require_pass=cfg.only_passed, split=tuple(cfg.split))
        report = traces_to_data([directory], out, config)
        if report.rows == 0:
            raise TrainError(f"--data {directory}: no training rows after traces-to-data ({report.written} episodes "
                             f"kept of {report.read} read; filtered: {report.filtered or 'none'}); see {out}/report.json")
    return out / "rows.jsonl", json.loads((out / "report.json").read_text())


def _check_passed(rows: Path) -> None:
    report = rows.parent / "report.json"
    try:
        exported = json.loads(report.read_text())["config"]["require_pass"]
    except (OSError, ValueError, KeyError, TypeError):
        exported = None
    if exported is not True:
        raise TrainError(f"--only-passed: {rows} rows carry no checker verdict, and no report.json beside them says "
                         "they were exported with --require-pass. Pass the traces directory as --data, or "
                         f"re-export: tinygpt traces-to-data TRACES --out DIR --require-pass")


def sources(cfg: TrainConfig, run_dir: Path) -> tuple[Path, Path | None, dict]:
    """(training file, validation file or None, notes) for the config's --data / --valid-data."""
    if not cfg.data:
        raise TrainError("--data is required: a rows.jsonl from traces-to-data, a chat/completions JSONL, or a "
                         "directory of traces")
    data, notes = Path(cfg.data).expanduser(), {}
    if not data.exists():
        raise TrainError(f"--data {data}: no such file or directory")
    valid = None
    if data.is_dir():
        if (data / "rows.jsonl").is_file() and (data / "train.jsonl").is_file():
            raise TrainError(f"--data {data}: the directory holds both rows.jsonl and train.jsonl; name the file to "
                             f"train on (--data {data / 'rows.jsonl'} or {data / 'train.jsonl'})")
        if (data / "rows.jsonl").is_file():
            data = data / "rows.jsonl"
        elif (data / "train.jsonl").is_file():
            valid = data / "valid.jsonl" if (data / "valid.jsonl").is_file() else None
            data = data / "train.jsonl"
        elif _has_traces(data):
            data, notes["traces_to_data"] = _export_traces(data, cfg, run_dir)
            return data, _valid_path(cfg, valid), notes
        else:
            raise TrainError(f"--data {data}: the directory holds no rows.jsonl, train.jsonl or .atraj traces")
    if cfg.split:
        raise TrainError("--split filters traces; --data is not a directory of .atraj traces")
    if cfg.only_passed:
        _check_passed(data)
    return data, _valid_path(cfg, valid), notes


def _valid_path(cfg: TrainConfig, found: Path | None) -> Path | None:
    if not cfg.valid_data:
        return found
    valid = Path(cfg.valid_data).expanduser()
    if not valid.is_file():
        raise TrainError(f"--valid-data {valid}: no such file")
    if Path(cfg.data).expanduser().is_file() and valid.samefile(Path(cfg.data).expanduser()):
        raise TrainError(f"--valid-data {valid} is the training data itself; a validation loss on the training "
                         "examples says nothing: give other data, or leave it out for --valid-fraction")
    return valid


def split_groups(examples: list[Example], fraction: float, seed: int) -> tuple[list[Example], list[Example]]:
    """Hold out about `fraction` of the groups (at least one when there are two or more), chosen by seed."""
    groups = sorted({ex.group for ex in examples})
    n = int(round(len(groups) * fraction))
    n = min(max(n, 1 if fraction > 0 and len(groups) >= 2 else 0), len(groups) - 1)
    if n <= 0:
        return examples, []
    held = {groups[i] for i in np.random.default_rng([seed, 7]).permutation(len(groups))[:n]}
    return [ex for ex in examples if ex.group not in held], [ex for ex in examples if ex.group in held]


def load_data(cfg: TrainConfig, loaded, run_dir: Path) -> DataSet:
    """Train and validation Examples for `cfg` on model `loaded`, every one at most --max-seq-length long."""
    train_path, valid_path, notes = sources(cfg, run_dir)
    train, train_counts = _read(train_path, loaded)
    report: dict = {"train_file": train_counts, **notes}
    if valid_path is not None:
        valid, report["valid_file"] = _read(valid_path, loaded)
    else:
        train, valid = split_groups(train, cfg.valid_fraction, cfg.seed)
        report["valid_split"] = {"fraction": cfg.valid_fraction, "groups_held_out": len({e.group for e in valid})}
    if not train:
        raise TrainError(f"--data {train_path}: no trainable examples (counts: {train_counts})")
    report["train_longest"] = max(len(e) for e in train)
    train, report["train_long"] = fit(train, cfg.max_seq_length, cfg.long_sequences)
    valid, report["valid_long"] = fit(valid, cfg.max_seq_length, cfg.long_sequences)
    if not train:
        raise TrainError(f"every training sequence is longer than --max-seq-length {cfg.max_seq_length} in a way "
                         f"that cannot be split ({report['train_long']}); raise --max-seq-length")
    report.update(train_examples=len(train), valid_examples=len(valid),
                  train_tokens=int(sum(len(e) for e in train)),
                  train_supervised_tokens=sum(e.supervised for e in train),
                  valid_supervised_tokens=sum(e.supervised for e in valid))
    return DataSet(train, valid, report)


def long_warning(report: dict, cfg: TrainConfig) -> str | None:
    """One line saying how many sequences --max-seq-length split or dropped (and the trained tokens lost), with
    the flag to change; None when every sequence fit."""
    parts = []
    for side in ("train", "valid"):
        c = report.get(f"{side}_long") or {}
        if not c.get("long"):
            continue
        done = (f"{c['long_skipped']} skipped" if cfg.long_sequences == "skip" else
                f"split into {_count(c['windows'], 'window')}, {_count(c['turns_dropped'], 'single turn')} longer "
                "than the limit dropped")
        parts.append(f"{_count(c['long'], side + ' sequence')} longer than it ({done}; {c['supervised_dropped']:,} "
                     "trained tokens lost)")
    if not parts:
        return None
    return (f"warning: --max-seq-length {cfg.max_seq_length}: " + "; ".join(parts) +
            f". The longest training sequence is {report['train_longest']:,} tokens: raise --max-seq-length to keep "
            "them whole (memory grows with it); counts in data-report.json")


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"

