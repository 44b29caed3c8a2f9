"""`tinygpt retrain --teacher-remote URL`: a model on an OpenAI-compatible server plays the train tasks.

Teachers here are real HTTP servers on 127.0.0.1 reached through the official `openai` SDK: `tinygpt serve`'s app on
a tiny random model (it fails every task, so the data stage has nothing to train on and says so), and a small
scripted server that answers each fileops task with its gold calls (every episode passes, text only, so the run
trains on chat records end to end). An unreachable URL is one error line, exit 2, and no run directory."""
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

FLAGS = ["--domain", "fileops", "--guards", "--train-tasks", "2", "--eval-tasks", "1", "--iters", "2",
         "--save-every", "2", "--max-tokens", "2", "--in-flight", "2", "--name", "fs-remote", "--json"]


@pytest.fixture(scope="module")
def env(tmp_path_factory, tiny_model_dir):
    root = tmp_path_factory.mktemp("retrain-remote")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TINYGPT_CACHE", str(root / "cache"))
        mp.setenv("TINYGPT_CONFIG", "")
        yield {"root": root, "model": str(tiny_model_dir)}


@pytest.fixture(scope="module")
def tiny_server(env, tiny_model_dir):
    """`tinygpt serve` (its app and server, as the CLI builds them) on the tiny model, in a thread."""
    from server_for_tests import running_server

    with running_server(tiny_model_dir, max_tokens=64, store=str(env["root"] / "store")) as url:
        yield url


def sse(delta: dict, finish: str) -> bytes:
    chunks = [{"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "gold",
               "choices": [{"index": 0, "delta": d, "finish_reason": f}]} for d, f in ((delta, None), ({}, finish))]
    return b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"


@pytest.fixture(scope="module")
def gold_server():
    """A scripted OpenAI-compatible server: for a fileops train task (found by its user message) it answers step
    k (k = the assistant messages so far) with the gold calls of that step, or the gold final answer."""
    from tinygpt.evals.suite import load_suite

    suite = load_suite("fileops")
    gold = {t.turns[0]: t.gold[0] for t in suite.tasks("train")[:8] if len(t.turns) == 1}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            messages = request["messages"]
            user = next(m["content"] for m in messages if m["role"] == "user")
            steps = gold.get(user, ("OK",))
            step = steps[min(sum(m["role"] == "assistant" for m in messages), len(steps) - 1)]
            if isinstance(step, str):
                body = sse({"role": "assistant", "content": step}, "stop")
            else:
                calls = [{"index": i, "id": f"call_{i}", "type": "function",
                          "function": {"name": c.name, "arguments": json.dumps(c.arguments)}} for i, c in
                         enumerate(step)]
                body = sse({"role": "assistant", "content": "", "tool_calls": calls}, "tool_calls")
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()


def retrain(env, out, *extra):
    from tinygpt.cli import main

    return main(["retrain", "--model", env["model"], "--out", str(out), *FLAGS, *extra])


def stage(run, name: str) -> dict:
    version = json.loads((run / "retrain.json").read_text())["stages"][name]
    return json.loads((run / name / f"v{version}" / "stage.json").read_text())


def test_a_failing_remote_teacher_leaves_no_data_and_says_so(env, tiny_server, tmp_path, capsys):
    run = tmp_path / "run"
    capsys.readouterr()
    assert retrain(env, run, "--teacher-remote", tiny_server, "--teacher-model", "tiny") == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert last.startswith("tinygpt retrain: error: no checker-passing episode among the 2 read"), err
    rollouts = stage(run, "rollouts")
    assert rollouts["status"] == "complete" and rollouts["outputs"]["passed"] == 0
    assert rollouts["outputs"]["unanswered"] == 0  # the server answered: the episodes failed the checker
    teacher = f"remote:{tiny_server}#tiny"
    assert rollouts["inputs"]["teacher"] == rollouts["inputs"]["teacher_fingerprint"] == teacher
    from tinygpt.traces.reader import list_traces, read_episode

    headers = [read_episode(p).header for p in list_traces(run / "rollouts/v1/traces")]
    assert len(headers) == 2 and all(h.model_fingerprint == teacher for h in headers)
    assert json.loads((run / "retrain.json").read_text())["status"] == "failed"
    assert stage(run, "data")["status"] == "running"


def test_a_passing_remote_teacher_trains_on_chat_records_end_to_end(env, gold_server, tmp_path, capsys):
    run = tmp_path / "run"
    code = retrain(env, run, "--teacher-remote", gold_server, "--teacher-model", "gold")
    summary = json.loads(capsys.readouterr().out)
    assert code == 1 and summary["verdict"] == "reject"  # a random tiny model does not improve
    assert summary["teacher"] == f"remote:{gold_server}#gold" and summary["data_format"] == "chat"
    assert stage(run, "rollouts")["outputs"]["passed"] == 2
    data = stage(run, "data")["outputs"]
    assert (data["format"], data["examples"], data["chat_only"], data["rows"]) == ("chat", 2, 2, 0)
    records = [json.loads(line) for line in open(data["chat_file"])]
    assert len(records) == 2 and all(r["messages"][-1]["role"] == "assistant" and r["tools"] for r in records)
    train = json.loads((run / "train/v1/run/run.json").read_text())
    assert (train["summary"]["step"], train["summary"]["train_examples"]) == (2, 2)
    assert stage(run, "train")["outputs"]["rows_file"] == data["chat_file"]  # what it trained on
    assert stage(run, "train")["inputs"]["chat_sha"] == data["chat_sha"]
    capsys.readouterr()
    assert retrain(env, run, "--teacher-remote", gold_server, "--teacher-model", "gold") == 1
    assert capsys.readouterr().err.count("reusing") == 6  # the same teacher: every stage reused


@pytest.mark.parametrize("case", ["unreachable", "with --teacher", "no model"])
def test_a_teacher_that_cannot_be_used_is_one_line_exit_2_and_no_run_dir(env, tmp_path, case, capsys):
    from tinygpt.cli import main

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}/v1"
    run = tmp_path / "run"
    args = ["retrain", "--model", env["model"], "--out", str(run), *FLAGS, "--teacher-remote", url, "--timeout", "2"]
    args += {"unreachable": ["--teacher-model", "tiny"], "with --teacher": ["--teacher-model", "tiny", "--teacher",
                                                                           "oracle"], "no model": []}[case]
    capsys.readouterr()
    try:
        code = main(args)
    except SystemExit as exc:  # argparse's own error
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "error" in err[-1] and (case != "unreachable" or "cannot be used" in err[-1] and url in err[-1]), err
    assert len([line for line in err if "error" in line]) == 1
    assert not run.exists()


def test_a_teacher_that_answers_no_episode_stops_the_stage_with_one_error(env, tmp_path):
    from tinygpt.retrain import RetrainConfig, RetrainError, StageDir, prepare, stage_rollouts

    import io

    from rich.console import Console

    with socket.socket() as s:  # the server went away after the check: every episode gets no answer
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}/v1"
    plan = prepare(RetrainConfig(model=env["model"], domain="fileops", out=str(tmp_path / "run"), guards=[],
                                 teacher_remote=url, teacher_model="tiny", timeout=2, train_tasks=2, in_flight=2))
    sd = StageDir(tmp_path / "run", "rollouts", 1, "x", {})
    sd.path.mkdir(parents=True)
    with pytest.raises(RetrainError, match=r"answered none of the 2 episodes \(first: .*127\.0\.0\.1"):
        stage_rollouts(plan, sd, Console(file=io.StringIO()))
