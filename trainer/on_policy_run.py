"""An on-policy distillation run, start to finish: student and teacher, the agent-loop batch source, the loop,
checkpoints and exact resume.

`run(cfg, prompts, make_toolset)` loads both models (refusing a teacher whose tokenizer hash is not the
student's), makes the student trainable as `tinygpt train` does (tuning.prepare: LoRA / DoRA / full), and runs
the one loop (loop.train) with on_policy.OnPolicyBatches and on_policy_loss. The student samples through its own
Engine with no prefix cache (its weights change every step, so no stale KV is ever reused; each episode has a
fresh session). The run directory is the trainer's (run.json, on-policy.toml, metrics.jsonl with the episodes'
endings, checkpoints/, adapter/, loss.png) plus episodes/ (the sampled episodes as .atraj). A checkpoint holds
the trainable weights, optimizer state, step, prompt cursor (micro-batch k = step k + 1) and the sampler's state:
each episode's seed is a function of (seed, k, episode), saved for the next step and checked on resume, so
`run(resumed_config(RUN, flags), ..., resume=True)` continues from the newest checkpoint and ends with the losses
and weights of the uninterrupted run. The first Ctrl-C finishes the step, writes a checkpoint and returns status
"interrupted". The toolset comes from the caller (`make_toolset`: trainer does not import tools); prompts too.
"""
from __future__ import annotations

import hashlib
import json
from collections import Counter
from functools import partial
from pathlib import Path
from typing import Callable

from tinygpt.trainer import checkpoint, run_dir
from tinygpt.trainer.config import read_toml, refuse_changes, to_toml
from tinygpt.trainer.errors import TrainError
from tinygpt.trainer.loop import Hooks, LoopConfig, StepMetrics, train
from tinygpt.trainer.on_policy_config import OnPolicyConfig
from tinygpt.trainer.outputs import check_register, finish
from tinygpt.trainer.progress import TrainProgress
from tinygpt.trainer.sft import Interrupt

CONFIG = "on-policy.toml"
EPISODES = "episodes"
RESUME_FREE = {"register"}  # what a resumed run may be given: it changes nothing the run computes


def load_pair(cfg: OnPolicyConfig):
    """(student, teacher) LoadedModels; TrainError unless they share the tokenizer."""
    from tinygpt.runtime.models import load

    if not cfg.teacher:
        raise TrainError("--teacher is required: a local model with the student's tokenizer (a cloud teacher gives "
                         "text only: record its episodes and train on them with `tinygpt train`)")
    student, teacher = load(cfg.student), load(cfg.teacher)
    if teacher.tokenizer_hash != student.tokenizer_hash:
        raise TrainError(f"--teacher {cfg.teacher}: its tokenizer (hash {teacher.tokenizer_hash}) is not the "
                         f"student's ({student.tokenizer_hash}); on-policy distillation scores the student's own "
                         "token ids, so the teacher must share the student's tokenizer")
    if teacher.vocab_size < student.vocab_size:
        raise TrainError(f"--teacher {cfg.teacher}: its vocabulary ({teacher.vocab_size}) is smaller than the "
                         f"student's ({student.vocab_size}); the student could sample ids it cannot score")
    return student, teacher


def resumed_config(given: str, flags: dict) -> OnPolicyConfig:
    """The saved config of the on-policy run in `given`, for `run(..., resume=True)`; TrainError for a directory
    that is not an on-policy run, or for flags (None: not given) that would change what it computes."""
    path, _ = run_dir.open_existing(given, CONFIG)
    saved = OnPolicyConfig(**read_toml(path / CONFIG, OnPolicyConfig))
    if flags.get("out") is not None and Path(flags["out"]).expanduser().resolve() != path.resolve():
        raise TrainError(f"--resume {path} continues the run where it is; leave out --out {flags['out']}")
    refuse_changes(path, saved, {k: v for k, v in flags.items() if k != "out"}, RESUME_FREE)
    for k in RESUME_FREE:
        if flags.get(k) is not None:
            setattr(saved, k, flags[k])
    saved.out = str(path.resolve())
    return saved


def config_key(cfg: OnPolicyConfig) -> str:
    """A hash of everything in the config that changes what the run computes."""
    kept = {k: v for k, v in cfg.as_dict().items() if k not in RESUME_FREE | {"out"}}
    return hashlib.sha256(json.dumps(kept, sort_keys=True).encode()).hexdigest()[:16]


def prompts_key(prompts: list[str]) -> str:
    """A hash of the prompts in order (the step's prompts are picked by index, so order matters)."""
    return hashlib.sha256(json.dumps(prompts).encode()).hexdigest()[:16]


class _Hooks(Hooks):
    def __init__(self, source, metrics: run_dir.Metrics, progress: TrainProgress, save, interrupt: Interrupt):
        self.source, self.metrics, self.progress, self.save, self.interrupt = source, metrics, progress, save, interrupt
        self.saved_at = -1

    def on_step(self, m: StepMetrics) -> None:
        last = self.source.last
        self.metrics.add(step=m.step, loss=m.loss, tokens=m.tokens, lr=m.learning_rate, seconds=round(m.seconds, 6),
                         episodes=len(last), ended=dict(Counter(r.ended for r in last)))
        self.progress.step(m)

    def on_checkpoint(self, step: int) -> None:
        self.save(step)
        self.saved_at = step

    def stop_requested(self) -> bool:
        return self.interrupt.requested


def run(cfg: OnPolicyConfig, prompts: list[str], make_toolset: Callable, *, resume: bool = False,
        announce: Callable[[OnPolicyConfig, Path], None] | None = None) -> dict:
    """Distill on-policy as `cfg` says, in a new run directory `cfg.out`, or (`resume`, with `cfg` from
    `resumed_config`) continue the run there; return the summary (also saved in RUN/run.json)."""
    if not prompts:
        raise TrainError(f"--prompts {cfg.prompts}: no prompts to sample on")
    if resume:
        run_path, marker = run_dir.open_existing(cfg.out, CONFIG)
        done = run_dir.completed(run_path, marker, cfg.register)
        if done is not None:
            return done  # nothing left to do: the run and its summary stay as they are
    check_register(cfg.register)
    student, teacher = load_pair(cfg)
    if resume:
        newest = _resumable(run_path, marker, cfg, prompts, student, teacher)
    else:
        newest, run_path = None, _start(cfg)
    if announce is not None:
        announce(cfg, run_path)
    return run_dir.run_recorded(run_path, lambda: _run(cfg, run_path, student, teacher, prompts, make_toolset,
                                                         newest), new=not resume)


def _start(cfg: OnPolicyConfig) -> Path:
    """A new run directory holding the config, its local paths made absolute (so --resume works anywhere)."""
    run_path = run_dir.create(cfg.out)
    cfg.out = str(run_path.resolve())
    cfg.student, cfg.teacher = run_dir.absolute(cfg.student, model=True), run_dir.absolute(cfg.teacher, model=True)
    if cfg.prompts != "world":
        cfg.prompts = run_dir.absolute(cfg.prompts)
    run_dir.write_atomic(run_path / CONFIG, to_toml(cfg))
    return run_path


def _resumable(run: Path, marker: dict, cfg: OnPolicyConfig, prompts: list[str], student, teacher) -> Path | None:
    """The checkpoint to resume from (None: killed before its first one, start over); TrainError, with the run
    left as it is, when the models, prompts, config or sampling seeds are not the ones it was made with."""
    from tinygpt.runtime.models import fingerprint
    from tinygpt.trainer.on_policy import episode_seed

    for key, now, who in (("base_fingerprint", fingerprint(student.path), "student's base model"),
                          ("teacher_fingerprint", teacher.fingerprint, "teacher")):
        if marker.get(key) not in (None, now):
            raise TrainError(f"--resume {run}: the {who} changed since the run started (fingerprint {marker[key]} "
                             f"then, {now} now); a resumed run must sample and score with the same models")
    ckpts = run / "checkpoints"
    checkpoint.remove_partial(ckpts)
    found = checkpoint.steps(ckpts)
    if not found:
        return None
    state = checkpoint.read_state(found[-1])
    if state.get("kind") != "on-policy":
        raise TrainError(f"--resume {run}: checkpoint {found[-1].name} is not an on-policy checkpoint")
    for key, label, now in (("prompts_fingerprint", "prompts", prompts_key(prompts)), ("config", "config",
                                                                                       config_key(cfg))):
        if state.get(key) != now:
            raise TrainError(f"--resume {run}: its {label} changed since checkpoint {found[-1].name} was written; a "
                             "resumed run must see the same prompts and config (start a new run to change them)")
    saved = state.get("sampler", {}).get("next_episode_seeds") or []
    if saved != [episode_seed(cfg.seed, state["step"], i) for i in range(len(saved))]:
        raise TrainError(f"--resume {run}: the episodes' sampling seeds after step {state['step']} are not the ones "
                         f"checkpoint {found[-1].name} saved (seeded otherwise by this version?); start a new run")
    return found[-1]


def _source(cfg: OnPolicyConfig, run: Path, student, teacher, prompts: list[str], make_toolset):
    """The batch source: the student's agent loop on its own engine (no prefix cache), the teacher's engine."""
    from tinygpt.runtime.agent import Agent, AgentConfig
    from tinygpt.runtime.engine import Engine
    from tinygpt.runtime.sampling import SamplingParams
    from tinygpt.trainer.on_policy import OnPolicyBatches

    agent = AgentConfig(max_steps=cfg.agent_steps, system=cfg.system or None, tool_choice=cfg.tool_choice,
                        sampling=SamplingParams(temperature=cfg.sample_temperature, max_tokens=cfg.max_tokens))
    student_engine = Engine(student, prefix_cache_bytes=0, solo_processors=False)
    try:  # a bad --tool-choice is the user's: said before any episode
        Agent(student_engine, make_toolset(), agent)
    except ValueError as exc:
        raise TrainError(f"--tool-choice {cfg.tool_choice}: {exc}") from None
    return OnPolicyBatches(student_engine, Engine(teacher, prefix_cache_bytes=0), prompts, make_toolset, agent,
                           cfg.batch_size, cfg.seed, record_dir=run / EPISODES if cfg.record_episodes else None,
                           labels={"run": str(run.resolve()), "teacher": teacher.name})


def _run(cfg: OnPolicyConfig, run: Path, student, teacher, prompts: list[str], make_toolset,
         newest: Path | None) -> dict:
    import mlx.core as mx

    from tinygpt.runtime.models import fingerprint
    from tinygpt.trainer.losses import has_plain_head
    from tinygpt.trainer.on_policy import drop_recorded_after, on_policy_loss
    from tinygpt.trainer.optim import make_optimizer
    from tinygpt.trainer.tuning import prepare

    base = {"base": str(student.path.resolve()), "base_fingerprint": fingerprint(student.path),
            "tokenizer_hash": student.tokenizer_hash}
    run_dir.write_status(run, "running", kind="on-policy distillation", teacher=teacher.name,
                         teacher_fingerprint=teacher.fingerprint, **base)
    train_cfg = cfg.train_config()
    mx.random.seed(cfg.seed)  # the adapter's initial weights
    adapter_config = prepare(student.model, train_cfg, cfg.student)
    optimizer = make_optimizer(train_cfg, cfg.iters)
    source = _source(cfg, run, student, teacher, prompts, make_toolset)
    keys = {"prompts": prompts_key(prompts), "config": config_key(cfg)}
    start = int(checkpoint.restore(newest, student.model, optimizer)["step"]) if newest is not None else 0
    if source.record_dir is not None:
        drop_recorded_after(source.record_dir, start)  # a killed run's episodes past its checkpoint: sampled again
    ckpts = run / "checkpoints"

    def save(step: int) -> None:  # micro-batch k is step k + 1: the cursor (next micro-batch) is the step
        meta = {"cursor": step, "seed": cfg.seed, "iters": cfg.iters, "kind": "on-policy",
                "sampler": {"next_episode_seeds": source.episode_seeds(step),
                            "rng": "episode i of micro-batch k samples from its own key, seeded by "
                                   "on_policy.episode_seed(seed, k, i); dropout: loop.micro_seed"},
                "prompts_fingerprint": keys["prompts"], "config": keys["config"]}
        checkpoint.save(ckpts, step, student.model, optimizer, adapter_config, meta, cfg.keep_checkpoints)
        progress.note(f"checkpoint {ckpts / f'step-{step:07d}'}")

    metrics, interrupt = run_dir.Metrics(run, keep_through_step=start if start else -1), Interrupt()
    mx.reset_peak_memory()
    try:
        with TrainProgress(cfg.iters, start) as progress, interrupt.installed():
            if start:
                progress.note(f"resumed at step {start}/{cfg.iters} from {ckpts / f'step-{start:07d}'}")
            hooks = _Hooks(source, metrics, progress, save, interrupt)
            last = train(student.model, optimizer, source, hooks=hooks, start_step=start,
                         loss=partial(on_policy_loss, plain_head=has_plain_head(student.model)),
                         config=LoopConfig(iters=cfg.iters, save_every=cfg.save_every, seed=cfg.seed))
            if last < cfg.iters and hooks.saved_at != last:
                save(last)
    finally:
        metrics.close()
    summary = _summary(cfg, run, student, teacher, source, metrics.lines, start, last)
    if last == cfg.iters:
        summary.update(finish(train_cfg, run, student, adapter_config, base, metrics.lines))
    return summary


def _summary(cfg: OnPolicyConfig, run: Path, student, teacher, source, lines: list[dict], start: int,
             last: int) -> dict:
    import mlx.core as mx

    from tinygpt.trainer.tuning import count_parameters

    steps = [m for m in lines if "loss" in m]
    trainable, total = count_parameters(student.model)
    return {"status": "complete" if last == cfg.iters else "interrupted", "run_dir": str(run), "step": last,
            "iters": cfg.iters, "resumed_from": start or None, "first_loss": steps[0]["loss"] if steps else None,
            "final_loss": steps[-1]["loss"] if steps else None, "episodes": sum(m["episodes"] for m in steps),
            "episodes_dir": str(source.record_dir) if source.record_dir is not None else None,
            "tokens_trained": sum(m["tokens"] for m in steps), "trainable_params": trainable, "total_params": total,
            "peak_memory_mb": round(mx.get_peak_memory() / 2**20, 1), "teacher": teacher.name}
