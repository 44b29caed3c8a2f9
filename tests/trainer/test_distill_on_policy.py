"""On-policy distillation end to end on tiny models: the student plays episodes in the agent loop, the teacher
scores its tokens, the per-token reverse-KL advantage updates it.

The task (answer-only, no tools block, so rows stay ~30 tokens): "weather in Paris?" -> "weather: Paris", "clock
for Rome" -> "time: Rome", over trainer_task's 4 templates per kind x 8 cities; 16 (template, city) pairs are held
out. The teacher is the tiny model after 150 SFT steps on the 48 others (15-16/16 held out), the student after 60
(fused into a standalone model). The metric: exact answers under greedy decoding in the agent loop; and the exact
reverse KL to the teacher along the student's greedy episodes.
"""
import json
import shutil

import mlx.core as mx
import numpy as np
import pytest

from tinygpt import cli
from tinygpt.runtime.agent import Agent, AgentConfig
from tinygpt.runtime.engine import Engine
from tinygpt.runtime.models import load
from tinygpt.runtime.sampling import SamplingParams
from tinygpt.tools.registry import Toolset
from tinygpt.traces.atraj import ModelCall
from tinygpt.trainer import sft
from tinygpt.trainer.config import resolve
from tinygpt.trainer.errors import TrainError
from tinygpt.trainer.fuse import fuse
from tinygpt.trainer.on_policy import OnPolicyBatches, episode_sequence
from tinygpt.trainer.on_policy_config import resolve as on_policy_config
from tinygpt.trainer.on_policy_run import run
from trainer_task import task_items

ITEMS = list(task_items())
TRAIN = [p for _, p, _, held in ITEMS if not held]


def answer(tool: str, city: str) -> str:
    return f"{tool.split('_')[1]}: {city}"


def no_tools():
    return Toolset([], timeout_s=None)


def sft_models(tiny_model_dir, root, seed: int = 0):
    """(teacher dir, student dir): the tiny model after 150 and after 60 SFT steps on the answers (SFT seed
    `seed`), fused."""
    with open(root / "chat.jsonl", "w") as fh:
        for tool, prompt, city, held in ITEMS:
            if not held:
                fh.write(json.dumps({"messages": [{"role": "user", "content": prompt},
                                                  {"role": "assistant", "content": answer(tool, city)}]}) + "\n")
    out = {}
    for name, iters in (("teacher", 150), ("student", 60)):
        cfg = resolve({"model": str(tiny_model_dir), "data": str(root / "chat.jsonl"), "out": str(root / name),
                       "rank": 16, "learning_rate": 1e-3, "batch_size": 8, "iters": iters, "valid_fraction": 0.0,
                       "save_every": 0, "seed": seed})
        out[name] = fuse(tiny_model_dir, sft.run(cfg)["adapter"], root / f"{name}-model")
    return out["teacher"], out["student"]


@pytest.fixture(scope="module")
def models(tiny_model_dir, tmp_path_factory):
    return sft_models(tiny_model_dir, tmp_path_factory.mktemp("answers"))


def episodes(loaded, prompts, max_tokens=12):
    """Each prompt's greedy episode in the agent loop (no tools): (ids, mask, answer text)."""
    engine = Engine(loaded, prefix_cache_bytes=0)
    out = []
    for prompt in prompts:
        agent = Agent(engine, no_tools(), AgentConfig(max_steps=1, sampling=SamplingParams(max_tokens=max_tokens)))
        events = list(agent.run(prompt))
        out.append((*episode_sequence(events), next(e for e in events if isinstance(e, ModelCall)).content))
    return out


def exact_answers(loaded, held_out: bool) -> int:
    items = [(t, p, c) for t, p, c, held in ITEMS if held == held_out]
    return sum(text.strip() == answer(t, c) for (t, _, c), (_, _, text) in zip(items, episodes(loaded, [
        p for _, p, _ in items])))


def greedy_kl(student, teacher, prompts) -> float:
    """The exact reverse KL(student || teacher), full vocabulary, averaged over the tokens of the student's own
    greedy episodes: what on-policy distillation lowers, measured without sampling noise."""
    total, count = 0.0, 0
    for ids, mask, _ in episodes(student, prompts):
        x = mx.array(ids[:-1])[None]
        ls, lt = student.model(x)[0], teacher.model(x)[0]
        ls, lt = ls - mx.logsumexp(ls, -1, keepdims=True), lt - mx.logsumexp(lt, -1, keepdims=True)
        kl = (mx.exp(ls) * (ls - lt)).sum(-1)
        on = mx.array(np.array(mask[1:], np.float32))
        total, count = total + float((kl * on).sum()), count + int(sum(mask[1:]))
    return total / count


def distill(student, teacher, out, **over):
    cfg = on_policy_config({"student": str(student), "teacher": str(teacher), "out": str(out), "batch_size": 8,
                            "max_tokens": 12, "agent_steps": 1, "rank": 16, "save_every": 0, "seed": 0, **over})
    return run(cfg, TRAIN, no_tools)


def test_teacher_equal_to_student_gives_kl_zero(models, tmp_path):
    _, student = models
    summary = distill(student, student, tmp_path / "run", iters=1, batch_size=4, sample_temperature=1.0)
    assert summary["status"] == "complete" and summary["tokens_trained"] > 0
    assert abs(summary["first_loss"]) < 1e-4  # the teacher's scheduler pass and the training pass agree


def learns(teacher_dir, student_dir, out, seed: int = 0):
    """Distill greedily (90 steps of 8 episodes, learning rate 1e-4); assert the task metric and the exact reverse
    KL improve by a clear margin; return (before, after) as (held-out exact /16, training exact /48, greedy KL)."""
    teacher, student = load(str(teacher_dir)), load(str(student_dir))
    assert exact_answers(teacher, True) >= 12  # the teacher knows the task (14-16/16 in the variants)
    before = exact_answers(student, True), exact_answers(student, False), greedy_kl(student, teacher, TRAIN[::4])
    summary = distill(student_dir, teacher_dir, out, iters=90, learning_rate=1e-4, sample_temperature=0.0,
                      seed=seed)
    tuned = load(str(student_dir), adapter_path=summary["adapter"])
    after = exact_answers(tuned, True), exact_answers(tuned, False), greedy_kl(tuned, teacher, TRAIN[::4])
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["episodes"] for m in lines] == [8] * 90 and all(m["ended"] for m in lines)
    assert after[1] >= before[1] + 12 and after[0] >= before[0] + 2, (before, after)  # measured: >= +15, >= +3
    assert after[2] < 0.7 * before[2], (before, after)  # measured: at most 0.58x
    return before, after


def test_on_policy_distillation_improves_exact_answers(models, tmp_path):
    """Greedy episodes, 90 steps of 8, learning rate 1e-4, student after 60 SFT steps. Measured (this 2-core
    CPU, OpenBLAS as tests/conftest.py binds it, ~20 s alone): held-out exact answers 4/16 -> 14/16, training
    prompts 11/48 -> 46/48, exact reverse KL along the student's greedy episodes 0.435 -> 0.207. Seven variants
    (other SFT and sampling seeds; MLX's bundled BLAS, whose rounding gives other fixtures) all pass, the tightest
    (SFT seed 2) at 1/16 -> 4/16, 3/48 -> 18/48, KL x0.58: docs/trainer.md lists them."""
    learns(*models, tmp_path / "run")


@pytest.mark.slow
@pytest.mark.parametrize("sft_seed,seed", [(1, 0), (2, 0), (0, 1)])
def test_on_policy_distillation_learns_across_seeds(tiny_model_dir, tmp_path, sft_seed, seed):
    """The same bar on other fixtures (SFT seed) and another sampling/adapter seed: the margin is not float luck
    (measured: SFT seed 1 4/16 -> 14/16, 16/48 -> 45/48, KL 0.317 -> 0.128; SFT seed 2 1/16 -> 4/16, 3/48 -> 18/48,
    KL 0.313 -> 0.181; seed 1 4/16 -> 16/16, 11/48 -> 46/48, KL 0.435 -> 0.160)."""
    learns(*sft_models(tiny_model_dir, tmp_path, sft_seed), tmp_path / "run", seed)


def test_episodes_with_tool_calls_become_sequences_the_teacher_scores(tiny_model_dir, tmp_path):
    """Two agent steps with a tool in between: the sequence is call 1's prompt + output, the tool result, call 2's
    output (outputs trained); the teacher scores every position; the same k gives the same episodes."""
    from tinygpt.runtime.presets import InitSpec, init_model

    def now() -> str:
        """the time"""
        return "noon"

    teacher = load(str(init_model(tmp_path / "t", InitSpec(preset="tiny", seed=3))))
    student = load(str(tiny_model_dir))
    config = AgentConfig(max_steps=2, tool_choice="required", parallel_tool_calls=False,
                         sampling=SamplingParams(temperature=1.0, max_tokens=64))
    source = OnPolicyBatches(Engine(student, prefix_cache_bytes=0, solo_processors=False),
                             Engine(teacher, prefix_cache_bytes=0), ["what time is it?", "time?", "clock?"],
                             lambda: Toolset([now], timeout_s=None), config, batch_size=2, seed=5)
    assert len(source) == 2 and sorted(source.prompts_of(0) + source.prompts_of(1)) == sorted(source.prompts)
    rollouts = source.rollouts(0)
    assert len(rollouts) == 2 and [r.ended for r in rollouts] == ["max_steps", "max_steps"]
    for r in rollouts:
        edges = np.flatnonzero(np.diff(np.concatenate([[0], r.mask, [0]])))
        assert len(edges) == 4  # two sampled spans: the two calls
        decode = student.tokenizer.decode
        calls = [decode(r.ids[a:b].tolist()) for a, b in zip(edges[::2], edges[1::2])]
        assert all('{"name": "now", "arguments": {}}' in c for c in calls), calls
        assert "noon" in decode(r.ids[edges[1]:edges[2]].tolist())  # the tool result, not trained
        assert np.isfinite(r.teacher[1:]).all() and np.isnan(r.teacher[0]) and (r.teacher[1:] <= 0).all()
    again = source.rollouts(0)
    assert [r.ids.tolist() for r in again] == [r.ids.tolist() for r in rollouts]
    inputs, targets, weights, index, teacher_lp = source.batch(1)
    assert float(weights.sum()) == sum(int(r.mask[1:].sum()) for r in source.last)


def test_cli_on_policy(models, tmp_path, capsys):
    teacher, student = models
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"prompt": "weather in Paris?"}) + "\n" + json.dumps(
        {"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "clock for Oslo"}]}) + "\n")
    args = ["distill", "on-policy", "--student", str(student), "--teacher", str(teacher), "--prompts", str(prompts),
            "--iters", "2", "--batch-size", "2", "--max-tokens", "6", "--agent-steps", "1"]
    code = cli.main(args + ["--out", str(tmp_path / "run"), "--json"])
    out, err = capsys.readouterr()
    summary = json.loads(out)
    assert "warning: --batch-size" not in err
    assert code == 0 and summary["status"] == "complete" and summary["episodes"] == 4
    assert (tmp_path / "run" / "adapter" / "adapters.safetensors").is_file()
    assert 'prompts = "' in (tmp_path / "run" / "on-policy.toml").read_text()
    bigger = list(args)
    bigger[bigger.index("--iters") + 1] = "1"
    bigger[bigger.index("--batch-size") + 1] = "3"
    code = cli.main(bigger + ["--out", str(tmp_path / "big")])
    assert code == 0 and ("warning: --batch-size 3 is more than the 2 prompts, so each step plays 2 episodes, not 3"
                          in capsys.readouterr().err)
    other = tmp_path / "other"
    shutil.copytree(teacher, other)
    config = json.loads((other / "tokenizer_config.json").read_text())
    (other / "tokenizer_config.json").write_text(json.dumps({**config, "model_max_length": 77}))
    for extra, message in ((["--teacher", str(other)], "must share the student's tokenizer"),
                           (["--tool-choice", "nope"], "--tool-choice nope: tool_choice 'nope' is not one of"),
                           (["--num-layers", "9"], "--num-layers 9: the model has only")):
        code = cli.main(args + extra + ["--out", str(tmp_path / f"bad{len(extra[1])}")])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and message in err[-1] and err[-1].startswith("tinygpt distill: error:"), err
        assert not (tmp_path / f"bad{len(extra[1])}").exists()  # a run refused before its first step leaves nothing
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "no prompt here"}\n')
    assert cli.main(args + ["--prompts", str(bad)]) == 2
    assert "bad.jsonl:1: no prompt" in capsys.readouterr().err


def test_world_prompts_are_the_embedded_tasks():
    from tinygpt.cli_distill import read_prompts
    from tinygpt.evals.world_tasks import TASKS

    assert read_prompts("world") == [t.prompt for t in TASKS] and len(TASKS) >= 3
    with pytest.raises(TrainError, match="--prompts is required"):
        read_prompts("")
