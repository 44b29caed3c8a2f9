"""`OnPolicyConfig`: an on-policy distillation run (`tinygpt distill on-policy`), one dataclass with defaults.

Its own fields say who samples and who scores (student, teacher), on what (prompts, tools) and how (sampling
temperature, tokens, agent steps); the fields of what is trained and how it is optimized are `TrainConfig`'s own
(same flag, default, help and range: copied from it by name, one definition). Precedence is the trainer's:
flag > `--config` TOML (keys = field names) > default, checked by trainer/config.py. Standard library only.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from tinygpt.trainer.config import SEED_MAX, TrainConfig, _f, check_value, read_toml, train_field

SHARED = ("out", "method", "rank", "scale", "dropout", "num_layers", "keys", "optimizer", "learning_rate",
          "weight_decay", "schedule", "warmup", "decay_fraction", "min_lr_ratio", "seed", "save_every",
          "keep_checkpoints", "register")



@dataclass
class OnPolicyConfig:
    """An on-policy distillation run. Field order is the order of `--help` and of the saved config."""

    student: str = _f("", "the model that learns (and samples): registered name, model directory or hub id "
                          "(default: the config file's `model`, else the embedded default, the tool world's base)")
    teacher: str = _f("", "the model that scores the student's samples; it must share the student's tokenizer")
    prompts: str = _f("", "task prompts: a JSONL file of {\"prompt\": ...} records (or chat records: the first "
                          "user message), or `world` for the embedded tool world's task prompts")
    tools: str = _f("none", "the toolset the student acts with in the agent loop: a spec of `tinygpt agent "
                            "--tools` (fs:virtual, fs:DIR, ...) or none (answers only); fresh for every episode")
    system: str = _f("", "a system prompt for every episode (default: none)")
    tool_choice: str = _f("auto", "auto | required (every model step calls a tool) | none | a tool's name")
    out: str = train_field("out")
    method: str = train_field("method")
    rank: int = train_field("rank")
    scale: float = train_field("scale")
    dropout: float = train_field("dropout")
    num_layers: int = train_field("num_layers")
    keys: list = train_field("keys")
    optimizer: str = train_field("optimizer")
    learning_rate: float = train_field("learning_rate")
    weight_decay: float = train_field("weight_decay")
    schedule: str = train_field("schedule")
    warmup: int = train_field("warmup")
    decay_fraction: float = train_field("decay_fraction")
    min_lr_ratio: float = train_field("min_lr_ratio")
    iters: int = _f(50, "optimizer steps; each samples --batch-size fresh episodes from the current student", lo=1)
    batch_size: int = _f(4, "episodes sampled (and scored) per step", lo=1)
    sample_temperature: float = _f(1.0, "the student's sampling temperature (0: greedy; 1 samples the model's "
                                        "own distribution, what the reverse-KL gradient assumes)", lo=0.0)
    max_tokens: int = _f(128, "tokens per model call", lo=1)
    agent_steps: int = _f(4, "model calls per episode at most (the agent loop's max_steps)", lo=1)
    record_episodes: bool = _f(True, "record every sampled episode as an .atraj trajectory in RUN/episodes/ "
                                     "(split on-policy; `tinygpt traces show` and `traces-to-data` read them)")
    seed: int = _f(0, "seed of the prompt order, of each episode's sampling (drawn from seed, step and episode), "
                      "of the adapter's initial weights and of dropout", lo=0, hi=SEED_MAX)
    save_every: int = train_field("save_every")
    keep_checkpoints: int = train_field("keep_checkpoints")
    register: str = train_field("register")

    def as_dict(self) -> dict:
        return asdict(self)

    def train_config(self) -> "TrainConfig":
        """The TrainConfig of what is trained and how (what tuning.prepare and optim.make_optimizer read)."""
        return TrainConfig(model=self.student, iters=self.iters, batch_size=self.batch_size,
                           **{k: getattr(self, k) for k in SHARED})


def resolve(flags: dict, config_file=None) -> OnPolicyConfig:
    """Defaults < `config_file` < `flags` (None: not given), every value checked."""
    values = read_toml(config_file, OnPolicyConfig) if config_file else {}
    for name, value in flags.items():
        if value is not None:
            values[name] = check_value(name, value, cls=OnPolicyConfig)
    cfg = OnPolicyConfig(**values)
    for f in fields(cfg):
        check_value(f.name, getattr(cfg, f.name), cls=OnPolicyConfig)
    return cfg
