"""`TrainConfig`: everything a training run needs, as one dataclass with defaults, help, ranges and choices.

A value comes from, in order of precedence: a command-line flag (the kebab-case of the field), the TOML file
given with `--config` (keys are the field names), the default here. `resolve` merges them and checks every
value (one clear TrainError naming the key); `to_toml` writes the resolved config so a run can be repeated with
`--config RUN/config.toml`. Standard library only: `tinygpt train --help` must not load MLX.
Not here: parsing command lines (tinygpt/cli_train.py derives the flags from these fields).
"""
from __future__ import annotations

import json
import math
import tomllib
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path

from tinygpt.trainer.errors import TrainError

METHODS = ("lora", "dora", "full")
OPTIMIZERS = ("adamw", "adam", "sgd", "lion", "adafactor", "muon")
SCHEDULES = ("constant", "cosine", "linear", "wsd")
LONG = ("split", "skip")
SEED_MAX = 2**64 - 1


def _f(default, help: str, *, lo=None, hi=None, choices=None, lo_open=False):
    meta = {"help": help, "lo": lo, "hi": hi, "choices": choices, "lo_open": lo_open}
    if isinstance(default, (list, tuple)):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class TrainConfig:
    """A training run. Field order is the order of `--help` and of the saved config."""

    model: str = _f("", "base model: registered name, model directory or hub id (default: the config file's "
                        "`model`, else the embedded default, the tool world's base)")
    data: str = _f("", "training data: a rows.jsonl from traces-to-data, a chat / completions / text .jsonl "
                       "(mlx-lm's formats), a directory holding one of those (or train.jsonl + valid.jsonl), or "
                       "a directory of .atraj traces (exported into the run directory first)")
    valid_data: str = _f("", "validation data in the same formats (default: --valid-fraction of --data)")
    valid_fraction: float = _f(0.1, "share of --data episodes held out for validation, by seed (0: none)",
                               lo=0.0, hi=0.5)
    out: str = _f("", "run directory, new or empty (default: runs/train-<time>)")
    method: str = _f("lora", "lora | dora (mlx-lm's tuner layers) | full (all weights of the last "
                             "--num-layers layers)", choices=METHODS)
    rank: int = _f(8, "LoRA/DoRA rank", lo=1, hi=4096)
    scale: float = _f(20.0, "LoRA/DoRA scale: the update is scale * B A (mlx-lm's `scale`; alpha/rank "
                            "elsewhere)", lo=0.0, lo_open=True)
    dropout: float = _f(0.0, "dropout on the LoRA/DoRA input", lo=0.0, hi=0.9)
    num_layers: int = _f(-1, "adapt the last N transformer layers (-1: all)", lo=-1)
    keys: list = _f([], "modules to adapt inside a layer, comma-separated (e.g. self_attn.q_proj,"
                        "self_attn.v_proj; default: every Linear, as mlx-lm)")
    optimizer: str = _f("adamw", "optimizer from mlx.optimizers", choices=OPTIMIZERS)
    learning_rate: float = _f(1e-4, "peak learning rate (1e-4 suits LoRA; try 1e-5 for full)", lo=0.0,
                              lo_open=True)
    weight_decay: float = _f(0.01, "decoupled weight decay (adamw, lion, sgd)", lo=0.0)
    schedule: str = _f("constant", "learning-rate schedule after warmup: constant | cosine (to --min-lr-ratio) "
                                   "| linear (to --min-lr-ratio) | wsd (warmup-stable-decay: flat, then linear "
                                   "decay over the last --decay-fraction of steps)", choices=SCHEDULES)
    warmup: int = _f(0, "linear warmup steps from 0 to the peak learning rate", lo=0)
    decay_fraction: float = _f(0.2, "wsd: share of the steps spent decaying", lo=0.0, hi=1.0, lo_open=True)
    min_lr_ratio: float = _f(0.0, "final learning rate as a share of the peak (cosine, linear, wsd)",
                             lo=0.0, hi=1.0)
    iters: int = _f(0, "optimizer steps (0: --epochs over the training batches)", lo=0)
    epochs: float = _f(1.0, "passes over the training data when --iters is 0", lo=0.0, lo_open=True)
    batch_size: int = _f(4, "sequences per micro-batch (length-bucketed)", lo=1)
    grad_accumulation: int = _f(1, "micro-batches per optimizer step", lo=1)
    grad_clip: float = _f(0.0, "clip the gradient's global L2 norm to this before each update (0: off; 1.0 is the "
                               "usual value for pretraining, where a rare huge gradient can wreck a run)", lo=0.0)
    max_seq_length: int = _f(2048, "longest sequence in tokens; longer ones are split at turn starts or "
                                   "skipped (--long-sequences), never cut at the end", lo=8)
    long_sequences: str = _f("split", "split: windows of whole turns; skip: drop the sequence (both counted)",
                             choices=LONG)
    grad_checkpoint: bool = _f(False, "recompute layer activations in the backward pass (less memory, slower)")
    seed: int = _f(0, "seed for the split, the batch order and dropout", lo=0, hi=SEED_MAX)
    val_every: int = _f(50, "validation loss every N steps, and at the end (0: only at the end)", lo=0)
    val_batches: int = _f(0, "validation batches per evaluation (0: the whole validation set)", lo=0)
    save_every: int = _f(50, "checkpoint every N steps, and at the end (0: only at the end)", lo=0)
    keep_checkpoints: int = _f(2, "how many recent checkpoints to keep", lo=1)
    only_passed: bool = _f(False, "rejection sampling: train only on episodes whose checker verdict passed "
                                  "(traces, or rows exported with traces-to-data --require-pass)")
    split: list = _f([], "traces only: keep episodes of these splits, comma-separated (gold-clone: the split "
                         "the teacher's episodes were recorded under)")
    register: str = _f("", "register the finished adapter in the model store under this name")
    teacher_logprobs: str = _f("", "offline distillation: the teacher's top-k logprobs at --data's rows (a sidecar "
                                   "from `tinygpt distill teacher-logprobs`); the loss becomes "
                                   "alpha*T^2*KL(teacher||student) + (1-alpha)*NLL")
    alpha: float = _f(0.5, "distillation: weight of the KL term; 1-alpha weighs the NLL of the recorded token",
                      lo=0.0, hi=1.0)
    temperature: float = _f(1.0, "distillation: temperature T of both distributions in the KL term (times T^2)",
                            lo=0.0, lo_open=True)

    def as_dict(self) -> dict:
        return asdict(self)


def train_field(name: str, default=MISSING):
    """TrainConfig's field `name` (its help, range and choices) for another config class (pretraining, on-policy),
    with another default if given."""
    spec = next(f for f in fields(TrainConfig) if f.name == name)
    value = spec.default if spec.default is not MISSING else spec.default_factory()
    if isinstance(value, list):
        return field(default_factory=lambda: list(value if default is MISSING else default), metadata=spec.metadata)
    return field(default=value if default is MISSING else default, metadata=spec.metadata)


def flag(name: str) -> str:
    """The command-line flag of a field: its kebab-case."""
    return "--" + name.replace("_", "-")


def _describe(meta: dict) -> str:
    lo, hi = meta["lo"], meta["hi"]
    if hi is None:
        return f"{'>' if meta['lo_open'] else '>='} {lo}"
    return f"in {'(' if meta['lo_open'] else '['}{lo}, {hi}]"


def check_value(name: str, value, where: str = "", cls: type | None = None) -> object:
    """`value` for field `name` of `cls` (TrainConfig; any dataclass of `_f` fields), type- and range-checked;
    TrainError naming the key otherwise."""
    spec = next(f for f in fields(cls or TrainConfig) if f.name == name)
    default = spec.default if spec.default is not MISSING else spec.default_factory()
    meta, label = spec.metadata, f"{where}{flag(name) if not where else name}"
    if isinstance(default, list):
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value):
            raise TrainError(f"{label} must be a list of names, got {value!r}")
        return list(value)
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise TrainError(f"{label} must be true or false, got {value!r}")
        return value
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if type(value) is not type(default):
        want = {int: "an integer", float: "a number", str: "a string"}[type(default)]
        raise TrainError(f"{label} must be {want}, got {value!r}")
    if name == "num_layers" and value == 0:  # model.layers[-0:] is every layer (mlx-lm's slice): say -1 for that
        raise TrainError(f"{label} must be -1 (every layer) or N >= 1 (the last N layers), got 0")
    if meta["choices"] and value not in meta["choices"]:
        raise TrainError(f"{label} must be one of {', '.join(meta['choices'])}, got {value!r}")
    if isinstance(value, (int, float)) and meta["lo"] is not None:
        bad = (isinstance(value, float) and not math.isfinite(value)) or (
            value <= meta["lo"] if meta["lo_open"] else value < meta["lo"]) or (
            meta["hi"] is not None and value > meta["hi"])
        if bad:
            raise TrainError(f"{label} must be {_describe(meta)}, got {value}")
    return value


def refuse_changes(run: Path, saved, flags: dict, free: set[str]) -> None:
    """TrainError naming every flag in `flags` (None: not given) outside `free` that would change `saved`, the
    config a resumed run continues with."""
    changed = sorted(k for k, v in flags.items() if v is not None and k not in free and v != getattr(saved, k))
    if changed:
        raise TrainError(f"--resume continues {run} with its saved config; these flags would change it: "
                         f"{', '.join(flag(k) for k in changed)}. Start a new run to change them")


def read_toml(path: str | Path, cls: type | None = None) -> dict:
    """The keys of a TOML config file, checked against the fields of `cls` (TrainConfig); TrainError for anything
    else."""
    path = Path(path)
    try:
        values = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TrainError(f"--config {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TrainError(f"--config {path}: cannot read it ({exc})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise TrainError(f"--config {path}: not valid TOML ({exc})") from exc
    known = [f.name for f in fields(cls or TrainConfig)]
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise TrainError(f"--config {path}: unknown keys {', '.join(unknown)}; known keys are the flags' names "
                         f"with '_' for '-': {', '.join(known)}")
    return {k: check_value(k, v, f"{path}: key ", cls) for k, v in values.items()}


def resolve(flags: dict, config_file: str | Path | None = None) -> TrainConfig:
    """Defaults < `config_file` < `flags` (entries that are None were not given)."""
    values = read_toml(config_file) if config_file else {}
    for name, value in flags.items():
        if value is not None:
            values[name] = check_value(name, value)
    cfg = TrainConfig(**values)
    for f in fields(cfg):  # defaults too: a default is always valid, this keeps the rule in one place
        check_value(f.name, getattr(cfg, f.name))
    if cfg.grad_checkpoint and cfg.dropout > 0 and cfg.method != "full":
        raise TrainError("--grad-checkpoint with --dropout > 0: the backward pass would recompute each layer with new "
                         "dropout masks, so the gradients would not be the forward pass's (mlx-lm's grad_checkpoint "
                         "does this silently). Use one or the other")
    if cfg.valid_data and flags.get("valid_fraction") is not None:  # a saved config.toml holds both: flags only
        raise TrainError(f"--valid-data {cfg.valid_data} is the validation set, so --valid-fraction (a share of --data "
                         "held out) would be ignored; give one of them")
    if not cfg.teacher_logprobs and (cfg.alpha, cfg.temperature) != (0.5, 1.0):
        raise TrainError("--alpha and --temperature weigh the distillation loss; they need --teacher-logprobs (a "
                         "sidecar from `tinygpt distill teacher-logprobs`)")
    return cfg


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value), ensure_ascii=False)  # JSON string escapes are valid TOML basic strings


def to_toml(cfg: TrainConfig) -> str:
    """The config as TOML that `read_toml` reads back to an equal config."""
    return "".join(f"{k} = {_toml_value(v)}\n" for k, v in cfg.as_dict().items())
