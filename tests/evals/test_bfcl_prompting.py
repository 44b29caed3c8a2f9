"""BFCL multi-turn in prompting mode (`--mode prompting`): BFCL's own prompting system prompt, no tools in the
chat template, calls written and read as a Python list (the pythonic tool format). The gold replay passes and
the gold less the last call of every turn fails, on the same harness as native mode; BFCL's ground-truth call
strings read through the pythonic parser as the calls the harness replays."""
import ast
import json

import pytest

pytest.importorskip("bfcl_eval", reason="BFCL's data, backends and checker come from the bfcl-eval wheel")

from tinygpt.evals import bfcl  # noqa: E402
from tinygpt.evals.runner import RunSettings, run_suite  # noqa: E402
from tinygpt.evals.suite import Call, drop_last_call  # noqa: E402
from tinygpt.runtime.tool_formats import pythonic  # noqa: E402
from tinygpt.traces.atraj import Message, ModelCall  # noqa: E402
from tinygpt.traces.reader import read_episode  # noqa: E402

IDS = ["multi_turn_base_0", "multi_turn_miss_func_0", "multi_turn_miss_param_1", "multi_turn_long_context_2"]


@pytest.fixture(scope="module")
def tasks():
    by_id = {t.id: t for t in bfcl.tasks("test")}
    return [by_id[i] for i in IDS]


@pytest.mark.parametrize("policy", ["gold", "drop-last"])
def test_prompting_mode_replays_gold_and_drop_last_fails(tiny_engine, tasks, tmp_path, policy):
    manifest, rows = run_suite(tiny_engine, bfcl, tasks, RunSettings(policy=policy, mode="prompting"), tmp_path,
                               model="tiny", split="test")
    assert manifest.settings["mode"] == "prompting"
    assert [(r.task_id, r.passed) for r in rows] == [(t.id, policy == "gold") for t in tasks]
    episode = read_episode(tmp_path / rows[0].trajectories[0])
    system = next(e for e in episode.events if isinstance(e, Message))
    assert system.role == "system" and system.content == bfcl.system_prompt(tasks[0].data.entry["function"])
    calls = [e for e in episode.events if isinstance(e, ModelCall) and e.tool_calls]
    first = calls[0]
    turn = tasks[0].gold[0] if policy == "gold" else drop_last_call(tasks[0].gold[0])
    assert first.text == pythonic.FORMAT.render([(c.name, c.arguments, None) for c in turn[0]])
    assert first.text.startswith("[cd(folder=")
    prompt = tiny_engine.tokenizer.decode(first.prompt_token_ids)
    assert "<tools>" not in prompt and "You are an expert in composing functions." in prompt  # BFCL's, not ours


def test_native_mode_is_the_default_and_unchanged(tiny_engine, tasks, tmp_path):
    _, rows = run_suite(tiny_engine, bfcl, tasks[:1], RunSettings(policy="gold"), tmp_path, model="tiny",
                        split="test")
    episode = read_episode(tmp_path / rows[0].trajectories[0])
    first = next(e for e in episode.events if isinstance(e, ModelCall))
    assert rows[0].passed and first.text.startswith("<tool_call>")
    assert "<tools>" in tiny_engine.tokenizer.decode(first.prompt_token_ids)
    assert not any(isinstance(e, Message) and e.role == "system" for e in episode.events)


def test_bfcls_keyword_ground_truth_reads_through_the_pythonic_parser_as_the_replayed_calls():
    checked = positional = 0
    for task in bfcl.tasks("test"):
        for strings, steps in zip(task.data.ground_truth, task.gold):
            for source, call in zip(strings, steps[0] if strings else ()):
                if ast.parse(source, mode="eval").body.args:  # the harness names these from the backend's signature
                    with pytest.raises(pythonic.CallError, match="has positional arguments; write each one as"):
                        pythonic.read_call(source)
                    positional += 1
                    continue
                name, arguments = pythonic.read_call(source)
                assert Call(name, arguments) == call, source
                checked += 1
    assert (checked, positional) == (4465, 160)  # bfcl-eval 2026.3.23, all 800 tasks


def test_cli_runs_prompting_mode_and_refuses_what_it_cannot_do(tiny_model_dir, tmp_path, capsys):
    from tinygpt import cli

    argv = ["eval", "--suite", "bfcl-multi-turn", "--model", str(tiny_model_dir), "--out", str(tmp_path), "--json",
            "--mode", "prompting", "--policy", "gold", "--task", IDS[0]]
    assert cli.main(argv) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["pass_rate"] == 1.0 and "mode prompting" in err
    refusals = {
        ("--suite", "bfcl-multi-turn", "--mode", "fc"): "--mode 'fc': suite bfcl-multi-turn has modes native, "
                                                        "prompting",
        ("--suite", "fileops", "--mode", "prompting"): "--mode 'prompting': suite fileops has no modes",
        ("--suite", "bfcl-multi-turn", "--mode", "prompting", "--remote", "http://127.0.0.1:9/v1", "--model", "m"):
            "--mode prompting reads calls out of the model's text",
    }
    for args, message in refusals.items():
        with pytest.raises(SystemExit) as exit_:
            cli.main(["eval", *args])
        assert exit_.value.code == 2 and message in capsys.readouterr().err
