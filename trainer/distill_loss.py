"""The offline distillation loss: α·T²·KL(teacher ‖ student) over the teacher's top-k ids plus a tail bucket,
+ (1−α)·NLL of the recorded token, averaged over the trained targets (the loop's loss signature).

At one trained target, with the student's log-probs log s = log_softmax(z) (T = 1), the teacher's top-k ids
S = (i_1..i_k), their teacher log-probs ℓ_j = log p(i_j) (T = 1) and the teacher's tail log-mass
τ = log(1 − Σ_j p(i_j)) (−inf when S is the whole vocabulary), both sides become k+1 buckets:
    a = (ℓ_1, .., ℓ_k, τ)                    b = (log s(i_1), .., log s(i_k), log Σ_{v∉S} s(v))
    A = log_softmax(a / T)                   B = log_softmax(b / T)
    KL_T = Σ_m exp(A_m) · (A_m − B_m)        loss = α·T²·KL_T + (1−α)·(−log s(y))
The student's tail is the exact log-sum over the ids outside S (not 1 − Σ, which cancels to 0 when the student
puts nearly all its mass on S). With k = vocabulary size the tail is empty and KL_T is exactly the full-vocabulary
KL(softmax(z_t/T) ‖ softmax(z_s/T)) of Hinton et al.; T² keeps the gradient's scale as T changes. Tempering acts
on the k+1 buckets (the tail is one bucket), the only tempering the stored top-k allows. Not here: where the
teacher's numbers come from (teacher.py, topk_file.py) or how batches carry them (distill.py).
"""
from __future__ import annotations

import mlx.core as mx

from tinygpt.trainer.losses import lm_head

NEG = -1e9  # stands for log 0 where a finite value is needed (exp gives exactly 0; gradients stay finite)


def student_buckets(logp: mx.array, ids: mx.array) -> mx.array:
    """[N, k+1]: the student's log-probs at the k ids, then the log of its mass outside them."""
    top = mx.take_along_axis(logp, ids, axis=-1)
    inside = mx.put_along_axis(mx.zeros(logp.shape, mx.bool_), ids, mx.array(True), axis=-1)
    tail = mx.logsumexp(mx.where(inside, NEG, logp), axis=-1, keepdims=True)
    return mx.concatenate([top, tail], axis=-1)


def teacher_buckets(logprobs: mx.array, tail: mx.array) -> mx.array:
    """[N, k+1]: the teacher's stored top-k log-probs, then its tail log-mass (−inf made finite)."""
    return mx.concatenate([logprobs.astype(mx.float32), mx.maximum(tail, NEG)[..., None]], axis=-1)


def bucket_kl(teacher: mx.array, student: mx.array, temperature: float) -> mx.array:
    """[N]: KL(softmax(teacher/T) ‖ softmax(student/T)) over the buckets (log-probs in, last axis)."""
    a = teacher / temperature
    b = student / temperature
    a = a - mx.logsumexp(a, axis=-1, keepdims=True)
    b = b - mx.logsumexp(b, axis=-1, keepdims=True)
    return (mx.exp(a) * (a - b)).sum(axis=-1)


def gathered_logits(model, inputs: mx.array, index: mx.array, plain_head: bool) -> mx.array:
    """[G, V] float32 logits at flat positions `index` of inputs' batch x length grid; with a plain head
    (losses.PLAIN_HEAD) the LM head runs at those positions only."""
    if plain_head:
        hidden = model.model(inputs)
        logits = lm_head(model, mx.take(hidden.reshape(-1, hidden.shape[-1]), index, axis=0))
    else:
        logits = model(inputs)
        logits = mx.take(logits.reshape(-1, logits.shape[-1]), index, axis=0)
    return logits.astype(mx.float32)


def distill_loss(model, inputs: mx.array, targets: mx.array, weights: mx.array, index: mx.array,
                 teacher_ids: mx.array, teacher_logprobs: mx.array, teacher_tail: mx.array, *,
                 alpha: float, temperature: float, plain_head: bool) -> tuple[mx.array, mx.array]:
    """Mean α·T²·KL_T + (1−α)·NLL over the weighted targets of a distill.DistillBatches batch."""
    logits = gathered_logits(model, inputs, index, plain_head)
    logp = logits - mx.logsumexp(logits, axis=-1, keepdims=True)
    per = mx.zeros(weights.shape)
    if alpha > 0:
        kl = bucket_kl(teacher_buckets(teacher_logprobs, teacher_tail), student_buckets(logp, teacher_ids),
                       temperature)
        per = per + alpha * temperature * temperature * kl
    if alpha < 1:
        per = per - (1 - alpha) * mx.take_along_axis(logp, targets[:, None], axis=-1)[:, 0]
    count = weights.sum()
    return (per * weights).sum() / mx.maximum(count, 1), count
