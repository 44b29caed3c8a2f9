"""On-policy distillation's batches and loss: the student samples in the agent loop, the teacher scores the
sampled tokens, and the per-token reverse-KL advantage A_t = −(log p_student(x_t) − log p_teacher(x_t)) drives a
policy-gradient update.

`OnPolicyBatches.batch(k)` plays `batch_size` episodes of the prompts of micro-batch k with the *current*
student (runtime.agent.Agent on a runtime Engine: the one scheduler, the tool grammar, tools run for real; the
sampling seed of each episode is a function of (seed, k, episode)), makes each episode one sequence exactly as
traces-to-data does (every call's prompt ids + sampled ids; the sampled ids are the trained targets), and has the
teacher score each whole sequence in one forward pass through its scheduler (a score-only job: runtime/scoring.py).
`on_policy_loss` recomputes log p_student(x_t) with gradients and returns, for the loop, a value equal to the
sampled reverse KL, mean(log p_s − log p_t) over sampled tokens, whose gradient is the policy gradient
−mean(A_t · ∇ log p_s(x_t)) with A detached (an unbiased estimate of ∇ KL(student ‖ teacher) when the student
samples its own distribution: temperature 1, no grammar mask). With `record_dir`, every episode is also written
as an `.atraj` trajectory (runtime.recording, the recorder the agent CLI and evals use), ended once the teacher
has scored it. Not here: the run, its checkpoints and resume (on_policy_run.py).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path

import mlx.core as mx
import numpy as np

from tinygpt.trainer.batches import gathered_size
from tinygpt.trainer.distill_loss import gathered_logits


@dataclass
class Rollout:
    """One sampled episode as a training sequence: ids, mask (1 on sampled ids), the teacher's log-prob of each
    id given the ids before it (nan at 0), and how the episode ended."""

    ids: np.ndarray
    mask: np.ndarray
    teacher: np.ndarray
    ended: str


def episode_sequence(events) -> tuple[list[int], list[int]]:
    """(ids, mask) of an agent turn's events: each model call's prompt ids (0) then its sampled ids (1)."""
    from tinygpt.traces.atraj import ModelCall

    ids, mask = [], []
    for ev in events:
        if isinstance(ev, ModelCall):
            ids += list(ev.prompt_token_ids) + list(ev.output_token_ids)
            mask += [0] * len(ev.prompt_token_ids) + [1] * len(ev.output_token_ids)
    return ids, mask


def interleave(streams: list, logs: list[list]) -> None:
    """Step the agent turns `streams` in turn, one event each, appending to `logs`, until all end: their model
    calls meet in the engine's one scheduler and decode as one batch."""
    active = list(range(len(streams)))
    while active:
        still = []
        for i in active:
            ev = next(streams[i], None)
            if ev is not None:
                logs[i].append(ev)
                still.append(i)
        active = still


def score(teacher_engine, sequences: list[list[int]]) -> list[np.ndarray]:
    """The teacher's log p(ids[i] | ids[:i]) for every i (nan at 0), one score-only job per sequence, submitted
    together to the teacher's scheduler."""
    from tinygpt.runtime.jobs import Failed, Job, Scored
    from tinygpt.runtime.sampling import SamplingParams

    got: list[list] = [[] for _ in sequences]
    jobs = [Job(prompt_ids=[int(i) for i in ids], params=SamplingParams(max_tokens=1), model=teacher_engine.name,
                prompt_logprobs=0, score_only=True, post=got[i].append) for i, ids in enumerate(sequences)]
    for end in teacher_engine.scheduler.run(jobs):
        if isinstance(end, Failed):
            raise RuntimeError(f"the teacher could not score a sample: {end.message}")
    out = []
    for events in got:
        lps = next(ev for ev in events if isinstance(ev, Scored)).logprobs
        out.append(np.array([np.nan if v is None else v for v in lps], np.float32))
    return out


SPLIT = "on-policy"  # the split of recorded episodes (traces-to-data --split on-policy)
_EPISODE = re.compile(r"step(\d{7,})-ep\d{3,}\.atraj(\.part)?")


def episode_seed(seed: int, k: int, i: int) -> int:
    """The sampling seed of episode i of micro-batch k: a pure function of (seed, k, i), never a running stream,
    so a resumed run samples what the uninterrupted one sampled."""
    return int(np.random.default_rng([seed, k, i]).integers(2**63))


def episode_id(k: int, i: int) -> str:
    """The recorded episode's id (and file name): step k + 1 (one micro-batch per step), episode i."""
    return f"step{k + 1:07d}-ep{i:03d}"


def drop_recorded_after(directory: Path, step: int) -> int:
    """Delete the recorded episodes of steps after `step` (a resumed run records them again); return how many."""
    dropped = 0
    for p in directory.iterdir() if directory.is_dir() else ():
        m = _EPISODE.fullmatch(p.name)
        if m and int(m.group(1)) > step and p.is_file() and not p.is_symlink():
            p.unlink()
            dropped += 1
    return dropped


class OnPolicyBatches:
    """The loop's batch source: `batch(k)` = fresh episodes from the current student, scored by the teacher, as
    (inputs, targets, weights, index, teacher log-probs) at the sampled targets. `len()` batches cover the
    prompts once (an epoch; each epoch visits them in an order drawn from (seed, epoch)). `last` holds the
    rollouts of the latest batch. With `record_dir`, each episode is recorded there as `episode_id(k, i).atraj`
    (split "on-policy", `labels` plus its step and prompt index; reward: the teacher's mean log-prob of the
    sampled tokens)."""

    def __init__(self, student_engine, teacher_engine, prompts: list[str], make_toolset, agent_config,
                 batch_size: int, seed: int, pad_multiple: int = 32, record_dir: Path | None = None,
                 labels: dict[str, str] | None = None):
        if not prompts:
            raise ValueError("no prompts to sample on")
        self.student, self.teacher = student_engine, teacher_engine
        self.prompts, self.make_toolset, self.agent_config = list(prompts), make_toolset, agent_config
        self.batch_size, self.seed, self.pad_multiple = batch_size, seed, pad_multiple
        self.record_dir, self.labels = record_dir, dict(labels or {})
        self.last: list[Rollout] = []

    def __len__(self) -> int:
        return -(-len(self.prompts) // self.batch_size)

    def picks(self, k: int) -> list[int]:
        """The indices of the prompts of micro-batch k (a pure function of (len(prompts), seed, k))."""
        epoch, pos = divmod(k, len(self))
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.prompts))
        return [int(i) for i in order[pos * self.batch_size: (pos + 1) * self.batch_size]]

    def prompts_of(self, k: int) -> list[str]:
        """The prompts of micro-batch k."""
        return [self.prompts[i] for i in self.picks(k)]

    def episode_seeds(self, k: int) -> list[int]:
        """The sampling seeds of micro-batch k's episodes (what a checkpoint saves of the sampler's state)."""
        return [episode_seed(self.seed, k, i) for i in range(len(self.picks(k)))]

    def rollouts(self, k: int) -> list[Rollout]:
        """Play and score the episodes of micro-batch k with the student as it is now (in eval mode)."""
        from tinygpt.runtime.agent import Agent
        from tinygpt.runtime.agent_events import TurnEnd

        model = self.student.model
        was_training = model.training
        model.eval()
        runs, streams, logs, recorders = [], [], [], []
        try:
            for i, (index, seed) in enumerate(zip(self.picks(k), self.episode_seeds(k))):
                sampling = replace(self.agent_config.sampling, seed=seed)
                agent = Agent(self.student, self.make_toolset(), replace(self.agent_config, sampling=sampling))
                runs.append(agent.run(self.prompts[index]))
                streams.append(runs[-1])
                if self.record_dir is not None:
                    recorders.append(self._recorder(agent, k, i, index))
                    streams[-1] = recorders[-1].record(runs[-1])
                logs.append([])
            interleave(streams, logs)
            episodes = []
            for events in logs:
                ended = next((ev.reason for ev in reversed(events) if isinstance(ev, TurnEnd)), "")
                episodes.append((*episode_sequence(events), ended))
            scored = score(self.teacher, [ids for ids, _, _ in episodes])
            rollouts = [Rollout(np.array(ids, np.int32), np.array(mask, np.uint8), lp, ended)
                        for (ids, mask, ended), lp in zip(episodes, scored)]
            for recorder, r in zip(recorders, rollouts):
                recorder.end(r.ended, self._reward(r))
            return rollouts
        finally:
            for stream in streams + runs:
                stream.close()
            for recorder in recorders:
                recorder.close()  # an episode not ended (an error, a second Ctrl-C) stays a .part
            model.train(was_training)

    def _recorder(self, agent, k: int, i: int, index: int):
        from tinygpt.runtime.recording import ConversationRecorder

        labels = {**self.labels, "step": str(k + 1), "prompt": str(index)}
        return ConversationRecorder(self.record_dir, self.student, agent, task_id=f"prompt-{index}", split=SPLIT,
                                    fsync="episode", labels=labels, episode_id=episode_id(k, i))

    def _reward(self, r: Rollout):
        from tinygpt.traces.atraj import Reward

        sampled = r.teacher[1:][r.mask[1:] == 1]
        mean = float(sampled.mean()) if len(sampled) else 0.0
        return Reward(value=mean, source=f"teacher:{self.teacher.name}",
                      reason=f"mean log p_teacher of the {len(sampled)} sampled tokens")

    def batch(self, k: int) -> tuple:
        self.last = self.rollouts(k)
        return pack(self.last, self.pad_multiple)


def pack(rollouts: list[Rollout], pad_multiple: int = 32) -> tuple:
    """(inputs, targets, weights, index, teacher log-probs): the sampled targets gathered from the padded grid."""
    longest = max(len(r.ids) for r in rollouts) - 1
    width = max(1, -(-longest // pad_multiple) * pad_multiple)
    ids = np.zeros((len(rollouts), width + 1), np.int32)
    mask = np.zeros((len(rollouts), width + 1), np.float32)
    teacher = np.zeros((len(rollouts), width + 1), np.float32)
    for row, r in enumerate(rollouts):
        ids[row, : len(r.ids)], mask[row, : len(r.ids)] = r.ids, r.mask
        teacher[row, 1: len(r.ids)] = r.teacher[1:]
    flat = np.flatnonzero(mask[:, 1:].reshape(-1)).astype(np.int32)
    size = gathered_size(len(flat))
    index = np.zeros(size, np.int32)
    index[: len(flat)] = flat
    weights = np.zeros(size, np.float32)
    weights[: len(flat)] = 1.0
    return (mx.array(ids[:, :-1]), mx.array(ids[:, 1:].reshape(-1)[index]), mx.array(weights), mx.array(index),
            mx.array(teacher[:, 1:].reshape(-1)[index]))


def on_policy_loss(model, inputs: mx.array, targets: mx.array, weights: mx.array, index: mx.array,
                   teacher: mx.array, *, plain_head: bool) -> tuple[mx.array, mx.array]:
    """Value: the sampled reverse KL, mean(log p_s − log p_t); gradient: −mean(A · ∇ log p_s), A = log p_t − log p_s
    detached (see the module docstring)."""
    logits = gathered_logits(model, inputs, index, plain_head)
    logp = logits - mx.logsumexp(logits, axis=-1, keepdims=True)
    student = mx.take_along_axis(logp, targets[:, None], axis=-1)[:, 0]
    gap = mx.stop_gradient(student - teacher)  # log p_s − log p_t of each sampled token = −A_t
    count = weights.sum()
    denom = mx.maximum(count, 1)
    reverse_kl = (gap * weights).sum() / denom
    surrogate = (gap * student * weights).sum() / denom  # −Σ A_t log p_s(x_t), averaged
    return reverse_kl + surrogate - mx.stop_gradient(surrogate), count
