"""The README's "Using it" commands run as written on a fresh clone, in order.

Fast: every path a command reads (a model dir, a jailed directory, a traces dir) is made by an earlier command,
every subcommand exists, and a hub id (a --model nothing made) is marked "needs network".
Slow (~40 s alone): the commands really run, in a temp copy of the tree (git's files) with TINYGPT_CACHE and HOME
(so no user config) in temp dirs: REPLs get `/quit` on stdin (a task first where the turn is recorded), `serve`
is started on a free port (the one change: `--port 0`), checked with GET /health and stopped with Ctrl-C;
hub-id lines are skipped.
"""
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from tinygpt.cli import COMMANDS

REPO = Path(__file__).resolve().parents[1]
NETWORK = "needs network"


@dataclass(frozen=True)
class Step:
    argv: list[str]
    note: str

    @property
    def line(self) -> str:
        return shlex.join(self.argv)


def using_it(text: str) -> list[Step]:
    """The commands of the first bash block under "## Using it", split at `;`, with their `# comment`."""
    block = re.search(r"^## Using it\n.*?^```bash\n(.*?)^```", text, re.S | re.M)
    assert block, 'README.md has no "## Using it" section with a ```bash block'
    steps = []
    for raw in block.group(1).splitlines():
        comment = re.match(r"(.*?)\s+#\s(.*)$", raw)
        code, note = (comment.group(1), comment.group(2)) if comment else (raw, "")
        steps += [Step(shlex.split(part), note.strip()) for part in code.split(";") if part.strip()]
    return steps


STEPS = using_it((REPO / "README.md").read_text(encoding="utf-8"))


def _norm(path: str) -> str:
    return os.path.normpath(path)


def _option(argv: list[str], name: str) -> str | None:
    return argv[argv.index(name) + 1] if name in argv else None


def reads_and_makes(step: Step) -> tuple[list[str], list[str]]:
    """(paths the command needs to exist, paths it creates), for the commands the README uses."""
    argv = step.argv
    if argv[0] == "mkdir":
        return [], [a for a in argv[1:] if not a.startswith("-")]
    assert argv[0] == "tinygpt", f"README command {step.line!r} is not a tinygpt command"
    sub = argv[1]
    assert sub.startswith("-") or sub in COMMANDS, f"README uses unknown command {sub!r}"
    reads = [m for m in [_option(argv, "--model")] if m]
    tools = _option(argv, "--tools")
    if tools and tools.startswith("fs:") and tools != "fs:virtual":
        reads.append(tools[3:].removesuffix(":ro"))
    if sub == "traces" and argv[2] in ("ls", "stats"):
        reads.append(argv[3])
    if sub == "traces-to-data":
        reads.append(argv[2])
    makes = [argv[2]] if sub == "init-model" else []
    makes += [p for p in (_option(argv, "--trajectory-dir"), _option(argv, "--out")) if p]
    return reads, makes


def test_the_using_it_block_is_found_and_starts_with_the_venv():
    assert len(STEPS) >= 8
    assert STEPS[0].argv == ["source", ".venv/bin/activate"]


def test_every_path_a_readme_command_reads_is_made_by_an_earlier_one():
    made: set[str] = set()
    for step in STEPS[1:]:
        reads, makes = reads_and_makes(step)
        for path in reads:
            if _norm(path) in made:
                continue
            assert _option(step.argv, "--model") == path and NETWORK in step.note, (
                f"README: {step.line!r} needs {path}, which no earlier command creates "
                f"(a hub id must be marked '# {NETWORK}')")
        made.update(_norm(p) for p in makes)


def _tree(tmp: Path) -> Path:
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True,
                           text=True)
    if files.returncode != 0:
        pytest.skip("needs a git checkout")
    tree = tmp / "clone"
    for name in files.stdout.splitlines():
        if (REPO / name).is_file():
            (tree / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, tree / name)
    (tree / ".venv").symlink_to(REPO / ".venv")
    return tree


def _serve(argv: list[str], tree: Path, env: dict) -> None:
    proc = subprocess.Popen(argv + ["--port", "0"], cwd=tree, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()  # the banner, printed once the socket accepts connections
        url = re.search(r"on (http://\S+)", line)
        assert url, f"serve printed {line!r}; stderr: {proc.stderr.read() if proc.poll() is not None else ''}"
        with urllib.request.urlopen(url.group(1) + "/health", timeout=30) as resp:
            assert resp.status == 200
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    assert proc.returncode in (0, 130), proc.stderr.read()


@pytest.mark.slow
def test_readme_commands_run_as_written_in_order(tmp_path):
    from tinygpt.runtime.vocab import qwen_gguf_path

    tree = _tree(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TINYGPT_", "VIRTUAL_ENV", "PYTHON", "XDG_"))}
    env.update(TINYGPT_CACHE=str(tmp_path / "cache"), HOME=str(tmp_path / "home"),  # no user config either
               TINYGPT_QWEN_GGUF=str(qwen_gguf_path()))  # the vocab download is tested in test_vocab_fetch
    skipped = []
    for step in STEPS:
        argv = step.argv
        if argv[0] == "source":
            env["PATH"] = f"{tree / '.venv' / 'bin'}{os.pathsep}{env['PATH']}"
            continue
        if NETWORK in step.note:
            skipped.append(step.line)
            continue
        if argv[:2] == ["tinygpt", "serve"]:
            _serve(argv, tree, env)
            continue
        repl = argv[1:2] in (["chat"], ["agent"])
        stdin = ("list the files\n/quit\n" if "--trajectory-dir" in argv else "/quit\n") if repl else ""
        done = subprocess.run(argv, cwd=tree, env=env, input=stdin, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"{step.line} -> {done.returncode}\n{done.stderr[-2000:]}"
    assert skipped == ["tinygpt chat --model mlx-community/Qwen3-0.6B-4bit"]  # reason: needs network
    assert list((tree / "runs" / "traces").glob("*.atraj")) and (tree / "data" / "rows.jsonl").is_file()
