"""The distillation losses against brute force: the top-k + tail KL equals the full-vocabulary KL when k is the
vocabulary (value and gradient, every temperature), equals an independent float64 computation of the bucket
formula when k < V (also where the student's tail is too small for 1 − Σ p), is 0 when teacher = student; and the
on-policy loss's gradient, in expectation over the student's own tokens, is the gradient of the exact reverse KL."""
import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
from mlx.utils import tree_flatten, tree_unflatten

from tinygpt.trainer.distill_loss import bucket_kl, student_buckets, teacher_buckets

V, N = 40, 7


def _logits(seed: int, scale: float = 2.0) -> mx.array:
    return mx.array(np.random.default_rng(seed).normal(size=(N, V)).astype(np.float32) * scale)


def _logp(z: mx.array) -> mx.array:
    return z - mx.logsumexp(z, axis=-1, keepdims=True)


def _topk_of(teacher_logp: mx.array, k: int):
    """What teacher.py stores: ids (most likely first), their log-probs, the exact tail log-mass."""
    lp = np.asarray(teacher_logp, np.float64)
    ids = np.argsort(-lp, axis=-1)[:, :k]
    vals = np.take_along_axis(lp, ids, axis=-1)
    rest = np.ones_like(lp, bool)
    np.put_along_axis(rest, ids, False, axis=-1)
    tail = np.array([np.logaddexp.reduce(row[m]) if m.any() else -np.inf for row, m in zip(lp, rest)])
    return mx.array(ids.astype(np.int32)), mx.array(vals.astype(np.float32)), mx.array(tail.astype(np.float32))


def _topk_kl(zt, zs, k, temperature):
    ids, vals, tail = _topk_of(_logp(zt), k)
    return bucket_kl(teacher_buckets(vals, tail), student_buckets(_logp(zs), ids), temperature)


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0, 4.0])
def test_k_equal_to_the_vocabulary_is_the_full_kl_value_and_gradient(temperature):
    zt, zs = _logits(0), _logits(1)

    def full(z):
        p, logq = mx.softmax(zt / temperature, axis=-1), _logp(z / temperature)
        return (p * (mx.log(p) - logq)).sum(axis=-1)

    got, want = _topk_kl(zt, zs, V, temperature), full(zs)
    assert np.allclose(np.asarray(got), np.asarray(want), atol=2e-5), (got, want)
    assert float(want.min()) > 0.01  # not a trivial comparison
    g_got = mx.grad(lambda z: _topk_kl(zt, z, V, temperature).sum())(zs)
    g_want = mx.grad(lambda z: full(z).sum())(zs)
    assert np.isfinite(np.asarray(g_got)).all()
    assert np.allclose(np.asarray(g_got), np.asarray(g_want), atol=1e-5)


def _bucket_reference(zt, zs, k, temperature):
    """The bucket formula in float64 numpy, written independently: mass on each top-k id, then the rest."""
    pt = np.exp(np.asarray(_logp(zt), np.float64))
    ps = np.exp(np.asarray(zs, np.float64) - np.logaddexp.reduce(np.asarray(zs, np.float64), axis=-1)[:, None])
    out = []
    for t_row, s_row in zip(pt, ps):
        top = np.argsort(-t_row)[:k]
        rest = np.setdiff1d(np.arange(V), top)
        a = np.append(t_row[top], t_row[rest].sum()) ** (1 / temperature)
        b = np.append(s_row[top], s_row[rest].sum()) ** (1 / temperature)
        a, b = a / a.sum(), b / b.sum()
        out.append(float((a * (np.log(a) - np.log(b))).sum()))
    return np.array(out)


@pytest.mark.parametrize("k,temperature", [(1, 1.0), (5, 1.0), (5, 2.0), (20, 0.5)])
def test_top_k_plus_tail_matches_an_independent_float64_computation(k, temperature):
    zt, zs = _logits(2), _logits(3)
    got = np.asarray(_topk_kl(zt, zs, k, temperature))
    assert np.allclose(got, _bucket_reference(zt, zs, k, temperature), atol=2e-5)


def test_the_student_tail_is_exact_where_one_minus_the_top_k_mass_rounds_to_zero():
    zt = _logits(4)
    ids, vals, tail = _topk_of(_logp(zt), 3)
    zs = np.zeros((N, V), np.float32)
    np.put_along_axis(zs, np.asarray(ids), 40.0, axis=-1)  # the student puts all but ~e^-40 of its mass on S
    buckets = student_buckets(_logp(mx.array(zs)), ids)
    true_tail = np.log(V - 3) - 40 - np.log(3)  # log of (V-3) e^0 over 3 e^40, about -37.5
    assert np.allclose(np.asarray(buckets[:, 3]), true_tail, atol=1e-3)
    naive = np.log(np.maximum(1 - np.asarray(mx.exp(buckets[:, :3]).sum(axis=-1)), 0))  # float32 1 - Σ p
    assert (np.abs(naive - true_tail) > 20).all()  # rounding noise (or log 0), not the tail
    kl = bucket_kl(teacher_buckets(vals, tail), buckets, 1.0)
    assert np.isfinite(np.asarray(kl)).all() and float(kl.min()) > 1.0  # the teacher's tail mass is missed: large


@pytest.mark.parametrize("k", [1, 5, V])
def test_teacher_equal_to_student_gives_zero(k):
    z = _logits(5)
    for temperature in (1.0, 2.0):
        assert float(mx.abs(_topk_kl(z, z, k, temperature)).max()) < 1e-6


def test_on_policy_gradient_is_the_reverse_kl_gradient_in_expectation(tiny_model_dir, tmp_path):
    """Every next token x weighted by the student's own p(x): the surrogate's gradient is exactly
    ∇ Σ_x s(x)(log s(x) − log t(x)), the gradient of the reverse KL at that context."""
    from tinygpt.runtime.models import load
    from tinygpt.runtime.presets import InitSpec, init_model
    from tinygpt.trainer.on_policy import on_policy_loss

    student = load(str(tiny_model_dir))
    teacher = load(str(init_model(tmp_path / "teacher", InitSpec(preset="tiny", seed=7))))
    prompt = [1, 50, 60, 70, 80, 90]
    ids, length, vocab = mx.array(prompt)[None], len(prompt), student.vocab_size
    teacher_lp = _logp(teacher.model(ids)[0, -1])
    student_p = mx.stop_gradient(mx.softmax(student.model(ids)[0, -1]))

    def surrogate(model):
        inputs = mx.broadcast_to(ids, (vocab, length))
        index = mx.arange(vocab) * length + length - 1
        return on_policy_loss(model, inputs, mx.arange(vocab), student_p * vocab, index, teacher_lp,
                              plain_head=True)[0]

    def reverse_kl(model):
        logp = _logp(model(ids)[0, -1])
        return (mx.exp(logp) * (logp - teacher_lp)).sum()

    value, grad = nn.value_and_grad(student.model, surrogate)(student.model)
    exact_value, exact_grad = nn.value_and_grad(student.model, reverse_kl)(student.model)
    assert abs(value.item() - exact_value.item()) < 1e-4 and exact_value.item() > 0.05
    got, want = dict(tree_flatten(grad)), dict(tree_flatten(exact_grad))
    err = sum(float(((got[k] - want[k]) ** 2).sum()) for k in want) ** 0.5
    norm = sum(float((want[k] ** 2).sum()) for k in want) ** 0.5
    assert norm > 0 and err / norm < 1e-4, err / norm


def test_on_policy_loss_on_packed_rollouts_known_answers(tiny_model_dir, tmp_path):
    """On pack()ed rollouts: with the student's own log-probs as the teacher's the value and every gradient are 0;
    the value is the mean of log p_s − log p_t over the sampled tokens only (prompt tokens' scores ignored, a
    token mean, not a sequence mean); one SGD step along the gradient raises log p_s of a token the teacher
    prefers and lowers one the teacher dislikes (the advantage's sign, detached)."""
    from tinygpt.runtime.models import load
    from tinygpt.trainer.on_policy import Rollout, on_policy_loss, pack

    student = load(str(tiny_model_dir))
    rng = np.random.default_rng(0)
    shapes = ((14, 9), (23, 12))  # (length, prompt length): sequences of unequal length, so unequal token counts
    ids = [rng.integers(5, 300, n).astype(np.int32) for n, _ in shapes]
    masks = [(np.arange(n) >= p).astype(np.uint8) for n, p in shapes]

    def own(seq):
        lp = _logp(student.model(mx.array(seq)[None])[0, :-1])
        got = np.array(mx.take_along_axis(lp, mx.array(seq[1:])[:, None], axis=-1)[:, 0])
        return np.concatenate([[np.nan], got]).astype(np.float32)

    def value_and_grad(teacher):
        batch = pack([Rollout(i, m, t, "stop") for i, m, t in zip(ids, masks, teacher)])
        loss = lambda model: on_policy_loss(model, *batch, plain_head=True)[0]  # noqa: E731
        value, grad = nn.value_and_grad(student.model, loss)(student.model)
        return value.item(), dict(tree_flatten(grad))

    mine = [own(s) for s in ids]
    value, grad = value_and_grad(mine)
    assert abs(value) < 1e-5 and max(float(mx.abs(g).max()) for g in grad.values()) < 1e-6
    shifted = [t - np.where(m == 1, 0.5 * (r + 1), 7.0) for r, (t, m) in enumerate(zip(mine, masks))]
    counts = [int(m[1:].sum()) for m in masks]
    assert abs(value_and_grad(shifted)[0] - (0.5 * counts[0] + 1.0 * counts[1]) / sum(counts)) < 1e-4
    first = int(np.flatnonzero(masks[0])[0])  # the first sampled token of sequence 0
    for delta, direction in ((-3.0, -1), (3.0, 1)):  # teacher far below / far above the student there
        teacher = [t.copy() for t in mine]
        teacher[0][first] += delta
        _, g = value_and_grad(teacher)
        before = own(ids[0])[first]
        params = dict(tree_flatten(student.model.parameters()))
        student.model.update(tree_unflatten([(k, params[k] - 1e-2 * g[k]) for k in g]))
        after = own(ids[0])[first]
        student.model.update(tree_unflatten(list(params.items())))
        assert direction * (after - before) > 1e-3, (delta, before, after)
