"""`PretrainConfig`: a pretraining run from random weights (`tinygpt pretrain`), one dataclass with defaults.

Its own fields say what corpus, which tokenizer and what shape of model; the run fields that mean what they mean
in `tinygpt train` (optimizer, schedule, batches, validation, checkpoints, seed, register) are TrainConfig's own
(same help and range, copied by name; some with pretraining defaults: WSD, AdamW with weight decay 0.1, a higher
learning rate). Precedence is the trainer's: flag > `--config` TOML (keys = field names) > default, every value
checked by trainer/config.py. Standard library only: `tinygpt pretrain --help` must not load MLX.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from tinygpt.runtime.presets import PRESETS  # standard library only, like this module
from tinygpt.trainer.config import SEED_MAX, TrainConfig, _f, check_value, read_toml, train_field
from tinygpt.trainer.errors import TrainError

ARCHS = ("qwen3", "llama")



@dataclass
class PretrainConfig:
    """A pretraining run. Field order is the order of `--help` and of the saved config."""

    data: list = _f([], "the corpus: text files (.txt, .md: one document each), JSONL files ({\"text\": ...}; chat "
                        "{\"messages\", \"tools\"} and {\"prompt\", \"completion\"} records rendered with the "
                        "tokenizer's chat template), or directories of those; comma-separated")
    valid_data: list = _f([], "validation corpus in the same forms (default: --valid-fraction of --data)")
    valid_fraction: float = _f(0.05, "share of --data's packed sequences held out for validation, taken from the "
                                     "end of the token stream (0: none)", lo=0.0, hi=0.5)
    tokenizer: str = _f("", "tokenizer: a directory from `tinygpt train-tokenizer`, or any model directory or hub "
                            "id whose tokenizer to use (its files are copied into the model)")
    out: str = train_field("out")
    arch: str = _f("qwen3", "mlx-lm architecture: qwen3 (QK-norm) or llama", choices=ARCHS)
    preset: str = _f("small", "model shape to start from (runtime/presets.py); the flags below override its "
                              "dimensions", choices=tuple(PRESETS))
    layers: int = _f(0, "transformer layers (0: the preset's)", lo=0)
    hidden_size: int = _f(0, "hidden size (0: the preset's)", lo=0)
    heads: int = _f(0, "attention heads (0: the preset's)", lo=0)
    kv_heads: int = _f(0, "key/value heads, dividing --heads (0: the preset's, or --heads if that is given)", lo=0)
    head_dim: int = _f(0, "size of one head (0: the preset's, or --hidden-size / --heads if either is given)", lo=0)
    intermediate_size: int = _f(0, "MLP hidden size (0: the preset's, or 3 x --hidden-size if that is given)", lo=0)
    tie_embeddings: bool = _f(True, "share the input embedding and the LM head (fewer parameters)")
    max_position_embeddings: int = _f(0, "the model's context length in its config.json (0: --seq-length); "
                                         "must be at least --seq-length", lo=0)
    optimizer: str = train_field("optimizer")
    learning_rate: float = _f(1e-3, "peak learning rate (1e-3 suits models of a few million parameters; lower it "
                                    "for larger ones)", lo=0.0, lo_open=True)
    weight_decay: float = train_field("weight_decay", 0.1)
    schedule: str = train_field("schedule", "wsd")
    warmup: int = train_field("warmup", 100)
    decay_fraction: float = train_field("decay_fraction")
    min_lr_ratio: float = train_field("min_lr_ratio")
    iters: int = _f(0, "optimizer steps (0: --epochs over the packed sequences)", lo=0)
    epochs: float = train_field("epochs")
    batch_size: int = _f(8, "packed sequences per micro-batch", lo=1)
    grad_accumulation: int = train_field("grad_accumulation")
    grad_clip: float = train_field("grad_clip")
    seq_length: int = _f(512, "tokens per packed sequence (the documents' token stream is cut into windows of "
                              "this length)", lo=8)
    grad_checkpoint: bool = train_field("grad_checkpoint")
    seed: int = _f(0, "seed for the initial weights and the batch order", lo=0, hi=SEED_MAX)
    val_every: int = train_field("val_every", 100)
    val_batches: int = train_field("val_batches", 50)
    save_every: int = train_field("save_every", 100)
    keep_checkpoints: int = train_field("keep_checkpoints")
    register: str = _f("", "register the finished model in the model store under this name")

    def as_dict(self) -> dict:
        return asdict(self)


def resolve(flags: dict, config_file=None) -> PretrainConfig:
    """Defaults < `config_file` < `flags` (None: not given), every value checked."""
    values = read_toml(config_file, PretrainConfig) if config_file else {}
    for name, value in flags.items():
        if value is not None:
            values[name] = check_value(name, value, cls=PretrainConfig)
    cfg = PretrainConfig(**values)
    for f in fields(cfg):
        check_value(f.name, getattr(cfg, f.name), cls=PretrainConfig)
    check_shape(cfg)
    return cfg


def check_shape(cfg: PretrainConfig) -> None:
    """TrainError for dimensions that cannot make a model (before anything is loaded or written)."""
    if cfg.max_position_embeddings and cfg.seq_length > cfg.max_position_embeddings:
        raise TrainError(f"--seq-length {cfg.seq_length} is longer than the model's context, "
                         f"--max-position-embeddings {cfg.max_position_embeddings}; raise that or lower --seq-length")
    if cfg.heads and cfg.kv_heads and cfg.heads % cfg.kv_heads:
        raise TrainError(f"--kv-heads {cfg.kv_heads} must divide --heads {cfg.heads} (grouped-query attention)")
