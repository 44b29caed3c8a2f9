"""An on-policy distillation run, start to finish: student and teacher, the agent-loop batch source, the loop.

`run(cfg, prompts, make_toolset)` loads both models (refusing a teacher whose tokenizer hash is not the
student's), makes the student trainable as `tinygpt train` does (tuning.prepare: LoRA / DoRA / full), and runs
the one loop (loop.train) with on_policy.OnPolicyBatches and on_policy_loss. The student samples through its own
Engine with no prefix cache (its weights change every step, so no stale KV is ever reused; each episode has a
fresh session). The run directory is the trainer's (run.json, on-policy.toml, metrics.jsonl with the episodes'
endings, checkpoints/, adapter/, loss.png); the first Ctrl-C finishes the step, writes a checkpoint and returns
status "interrupted". Not built: `--resume` of an on-policy run. The toolset comes from the caller
(`make_toolset`: trainer does not import tools); prompts too.
"""
from __future__ import annotations

from collections import Counter
from functools import partial
from pathlib import Path
from typing import Callable

from tinygpt.trainer import checkpoint, run_dir
from tinygpt.trainer.config import to_toml
from tinygpt.trainer.errors import TrainError
from tinygpt.trainer.loop import Hooks, LoopConfig, StepMetrics, train
from tinygpt.trainer.on_policy_config import OnPolicyConfig
from tinygpt.trainer.progress import TrainProgress
from tinygpt.trainer.outputs import check_register, finish
from tinygpt.trainer.sft import Interrupt

CONFIG = "on-policy.toml"


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


def run(cfg: OnPolicyConfig, prompts: list[str], make_toolset: Callable, *,
        announce: Callable[[OnPolicyConfig, Path], None] | None = None) -> dict:
    """Distill on-policy as `cfg` says; return the summary (also saved in RUN/run.json)."""
    if not prompts:
        raise TrainError(f"--prompts {cfg.prompts}: no prompts to sample on")
    check_register(cfg.register)
    student, teacher = load_pair(cfg)
    run_path = run_dir.create(cfg.out)
    cfg.out = str(run_path.resolve())
    run_dir.write_atomic(run_path / CONFIG, to_toml(cfg))
    if announce is not None:
        announce(cfg, run_path)
    return run_dir.run_recorded(run_path, lambda: _run(cfg, run_path, student, teacher, prompts, make_toolset))


def _run(cfg: OnPolicyConfig, run: Path, student, teacher, prompts: list[str], make_toolset) -> dict:
    import mlx.core as mx

    from tinygpt.runtime.agent import Agent, AgentConfig
    from tinygpt.runtime.engine import Engine
    from tinygpt.runtime.models import fingerprint
    from tinygpt.runtime.sampling import SamplingParams
    from tinygpt.trainer.losses import has_plain_head
    from tinygpt.trainer.on_policy import OnPolicyBatches, on_policy_loss
    from tinygpt.trainer.optim import make_optimizer
    from tinygpt.trainer.tuning import count_parameters, prepare

    base = {"base": str(student.path.resolve()), "base_fingerprint": fingerprint(student.path),
            "tokenizer_hash": student.tokenizer_hash}
    run_dir.write_status(run, "running", kind="on-policy distillation", teacher=teacher.name,
                         teacher_fingerprint=teacher.fingerprint, **base)
    train_cfg = cfg.train_config()
    mx.random.seed(cfg.seed)  # the adapter's initial weights
    adapter_config = prepare(student.model, train_cfg, cfg.student)
    optimizer = make_optimizer(train_cfg, cfg.iters)
    agent = AgentConfig(max_steps=cfg.agent_steps, system=cfg.system or None, tool_choice=cfg.tool_choice,
                        sampling=SamplingParams(temperature=cfg.sample_temperature, max_tokens=cfg.max_tokens))
    student_engine = Engine(student, prefix_cache_bytes=0, solo_processors=False)
    try:  # a bad --tool-choice is the user's: said before any episode
        Agent(student_engine, make_toolset(), agent)
    except ValueError as exc:
        raise TrainError(f"--tool-choice {cfg.tool_choice}: {exc}") from None
    source = OnPolicyBatches(student_engine, Engine(teacher, prefix_cache_bytes=0), prompts,
                             make_toolset, agent, cfg.batch_size, cfg.seed)
    loss = partial(on_policy_loss, plain_head=has_plain_head(student.model))
    ckpts = run / "checkpoints"

    def save(step: int) -> None:
        meta = {"cursor": step, "seed": cfg.seed, "iters": cfg.iters, "kind": "on-policy"}
        checkpoint.save(ckpts, step, student.model, optimizer, adapter_config, meta, cfg.keep_checkpoints)
        progress.note(f"checkpoint {ckpts / f'step-{step:07d}'}")

    metrics, interrupt = run_dir.Metrics(run, keep_through_step=-1), Interrupt()
    mx.reset_peak_memory()
    try:
        with TrainProgress(cfg.iters) as progress, interrupt.installed():
            hooks = _Hooks(source, metrics, progress, save, interrupt)
            last = train(student.model, optimizer, source, loss=loss, hooks=hooks,
                         config=LoopConfig(iters=cfg.iters, save_every=cfg.save_every, seed=cfg.seed))
            if last < cfg.iters and hooks.saved_at != last:
                save(last)
    finally:
        metrics.close()
    steps = [m for m in metrics.lines if "loss" in m]
    trainable, total = count_parameters(student.model)
    summary = {"status": "complete" if last == cfg.iters else "interrupted", "run_dir": str(run), "step": last,
               "iters": cfg.iters, "first_loss": steps[0]["loss"] if steps else None,
               "final_loss": steps[-1]["loss"] if steps else None, "episodes": sum(m["episodes"] for m in steps),
               "tokens_trained": sum(m["tokens"] for m in steps), "trainable_params": trainable, "total_params": total,
               "peak_memory_mb": round(mx.get_peak_memory() / 2**20, 1), "teacher": teacher.name}
    if last == cfg.iters:
        summary.update(finish(train_cfg, run, student, adapter_config, base, metrics.lines))
    return summary
