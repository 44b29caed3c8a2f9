"""A non-editable install works: build the wheel, install it into a bare directory, run the CLI from there.

The run uses `python -I -S` with sys.path = [install dir, the venv's site-packages], so the editable install
of this checkout (a .pth finder in site-packages, which -S skips) cannot shadow the wheel. The cwd is outside
the repo and TINYGPT_CACHE / HOME point into a temp dir.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
RUNNER = """
import importlib.metadata as md, sys
target, site = sys.argv[1], sys.argv[2]
sys.path[:0] = [target, site]
(dist,) = md.distributions(name="tinygpt", path=[target])
(entry,) = [e for e in dist.entry_points if e.group == "console_scripts" and e.name == "tinygpt"]
main = entry.load()
import tinygpt
assert tinygpt.__file__.startswith(target), tinygpt.__file__
sys.argv = ["tinygpt"] + sys.argv[3:]
sys.exit(main())
"""


def _source_files() -> list[str]:
    out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True,
                         text=True)
    if out.returncode != 0:
        pytest.skip("needs a git checkout to know which files are the source")
    return [f for f in out.stdout.splitlines() if (REPO / f).is_file() and not f.startswith(".venv/")]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """(wheel path, install dir, pip's build output): built from a copy of the tree, never in the tree."""
    root = tmp_path_factory.mktemp("pkg")
    src = root / "src"
    for name in _source_files():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, src / name)
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                            "-w", str(root / "dist"), str(src)], capture_output=True, text=True, cwd=root)
    assert build.returncode == 0, build.stdout + build.stderr
    (whl,) = (root / "dist").glob("tinygpt-*.whl")
    target = root / "site"
    inst = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--target",
                           str(target), str(whl)], capture_output=True, text=True, cwd=root)
    assert inst.returncode == 0, inst.stdout + inst.stderr
    return whl, target, build.stdout + build.stderr


def run_installed(target: Path, tmp: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TINYGPT_", "PYTHON"))}
    env.update(TINYGPT_CACHE=str(tmp / "cache"), HOME=str(tmp / "home"))
    cmd = [sys.executable, "-I", "-S", "-c", RUNNER, str(target), sysconfig.get_path("purelib"), *args]
    return subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True, timeout=timeout)


def test_the_wheel_carries_every_data_file_of_the_packages(wheel):
    whl, _, build_log = wheel
    names = set(zipfile.ZipFile(whl).namelist())
    dirs = {src: pkg for pkg, src in PYPROJECT["tool"]["setuptools"]["package-dir"].items()}
    wanted = []
    for f in _source_files():
        top, _, rest = f.partition("/")
        if top in dirs and not f.endswith(".py") and "__pycache__" not in f and rest:
            wanted.append(dirs[top].replace(".", "/") + "/" + rest)
    assert "tinygpt/runtime/assets/bpe_corpus.txt" in wanted
    assert "tinygpt/runtime/assets/world-base/model.safetensors" in wanted  # the embedded default model
    assert [w for w in wanted if w not in names] == []
    assert "tinygpt-0.1.0.dist-info/licenses/LICENSE" in names
    assert "warning" not in build_log.lower(), build_log


def test_license_is_an_spdx_expression_with_its_file(wheel):
    whl, _, _ = wheel
    project = PYPROJECT["project"]
    assert project["license"] == "Apache-2.0" and project["license-files"] == ["LICENSE"]
    assert "Apache License" in (REPO / "LICENSE").read_text(encoding="utf-8")[:200]
    meta = zipfile.ZipFile(whl).read("tinygpt-0.1.0.dist-info/METADATA").decode()
    assert "License-Expression: Apache-2.0" in meta.splitlines()


def test_installed_wheel_runs_help_creates_a_bpe_model_and_runs_the_embedded_default(wheel, tmp_path):
    _, target, _ = wheel
    helped = run_installed(target, tmp_path, "--help")
    assert helped.returncode == 0, helped.stderr
    assert "init-model" in helped.stdout and "quickstart" in helped.stdout
    for command, says in (("quickstart", "--short"), ("build-base", "usage: tinygpt build-base")):
        helped = run_installed(target, tmp_path, command, "--help")
        assert helped.returncode == 0 and says in helped.stdout, helped.stderr
    made = run_installed(target, tmp_path, "init-model", str(tmp_path / "m"), "--vocab", "bpe")
    assert made.returncode == 0, made.stderr
    assert (tmp_path / "m" / "tokenizer.json").is_file() and (tmp_path / "m" / "config.json").is_file()
    assert "created tiny model (bpe vocab" in made.stdout
    said = run_installed(target, tmp_path, "generate", "--max-tokens", "4", "--json", "hi")  # no --model: world-base
    assert said.returncode == 0, said.stderr
    assert len(json.loads(said.stdout)["output_ids"]) >= 1
    where = run_installed(target, tmp_path, "models", "show", "default", "--json")
    assert json.loads(where.stdout)["base"] == str(target / "tinygpt" / "runtime" / "assets" / "world-base")


@pytest.mark.slow
def test_installed_wheel_runs_the_main_command(wheel, tmp_path):
    """The shortened quickstart from the wheel: the whole loop on the wheel's own default model and tool world."""
    _, target, _ = wheel
    out = tmp_path / "qs"
    done = run_installed(target, tmp_path, "quickstart", "--short", "--out", str(out), "--json", timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "teacher oracle on calendar/train: 24/24 passed" in done.stderr
    summary = json.loads(done.stdout)
    status = json.loads((out / "quickstart.json").read_text())
    assert status["status"] == "complete" and status["results"] == summary["results"]
    assert list((out / "loop" / "rollouts" / "v1" / "traces").rglob("*.atraj"))
    assert (out / "summary.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert not list((tmp_path / "cache").rglob("*.safetensors"))  # the default model is the wheel's own, never copied


def _bootstrap_dir(tmp: Path) -> Path:
    """A tree with only bootstrap.sh and pyproject.toml: enough for its set-up logic, not an install."""
    for name in ("bootstrap.sh", "pyproject.toml"):
        shutil.copy2(REPO / name, tmp / name)
    return tmp


def _bootstrap(tree: Path, *args: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env["PYTHON"] = sys.executable
    done = subprocess.run(["bash", str(tree / "bootstrap.sh"), *args], cwd=tree, env=env, capture_output=True,
                          text=True, timeout=120)
    return done, (done.stdout + done.stderr).splitlines()


def test_bootstrap_on_a_set_up_tree_prints_one_line(tmp_path):
    tree = _bootstrap_dir(tmp_path)
    (tree / ".venv" / "bin").mkdir(parents=True)
    (tree / ".venv" / "bin" / "python").symlink_to(sys.executable)
    stamp = subprocess.run("cat pyproject.toml bootstrap.sh | cksum", shell=True, cwd=tree, capture_output=True,
                           text=True, check=True).stdout
    (tree / ".venv" / ".tinygpt-stamp").write_text(stamp)
    done, lines = _bootstrap(tree, "setup")
    assert done.returncode == 0, lines
    assert [ln for ln in lines if "OpenBLAS" not in ln] == ["[bootstrap] ready: .venv/bin/tinygpt --help"]


def test_bootstrap_hides_pip_output_but_shows_its_tail_when_pip_fails(tmp_path):
    tree = _bootstrap_dir(tmp_path)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tree / ".venv")], check=True)
    done, lines = _bootstrap(tree, "setup")
    assert done.returncode == 1
    log = tree / ".venv" / "bootstrap-pip.log"
    assert "No module named pip" in log.read_text()
    assert "[bootstrap] failed: pip install --upgrade pip setuptools wheel" in lines
    assert any("No module named pip" in ln for ln in lines)  # the log's tail, shown because it failed
    assert lines[-1] == f"[bootstrap] the full pip output is in {Path('.venv') / 'bootstrap-pip.log'}"
    assert not (tree / ".venv" / ".tinygpt-stamp").exists() and len(lines) <= 40


def test_bootstrap_rejects_an_unknown_command_before_setting_anything_up(tmp_path):
    tree = _bootstrap_dir(tmp_path)
    done, lines = _bootstrap(tree, "tset")
    assert done.returncode == 2 and lines == ["[bootstrap] unknown command 'tset' (use: demo | test | setup)"]
    assert not (tree / ".venv").exists()


def test_every_file_the_code_opens_next_to_itself_is_in_the_wheel(wheel):
    whl, _, _ = wheel
    names = zipfile.ZipFile(whl).namelist()
    dirs = PYPROJECT["tool"]["setuptools"]["package-dir"].values()
    opened = []
    for src in dirs:
        for py in (REPO / src).rglob("*.py"):
            for line in py.read_text(encoding="utf-8").splitlines():
                if "__file__" in line or "resources.files(" in line:
                    opened += [(py.name, lit) for lit in re.findall(r"[\"']([\w.-]+\.[a-z]{2,5})[\"']", line)]
    assert ("vocab.py", "bpe_corpus.txt") in opened
    assert [(py, lit) for py, lit in opened if not any(n.endswith("/" + lit) for n in names)] == []


@pytest.mark.slow
def test_bootstrap_install_prints_one_line_per_step(tmp_path):
    """The install path, offline: a fresh venv (no pip of its own) sees this venv's packages first, so every
    pip step is satisfied locally; what is checked is what bootstrap prints, not what pip downloads."""
    tree = tmp_path / "tree"
    for name in _source_files():
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, tree / name)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tree / ".venv")], check=True)
    site = Path(subprocess.run([str(tree / ".venv" / "bin" / "python"), "-c",
                                "import sysconfig; print(sysconfig.get_path('purelib'))"],
                               capture_output=True, text=True, check=True).stdout.strip())
    (site / "00-deps.pth").write_text(f"import sys; sys.path.insert(0, {sysconfig.get_path('purelib')!r})\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "PYTHON", "VIRTUAL_ENV"))}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_NO_INDEX="1", PIP_NO_BUILD_ISOLATION="0", PYTHON=sys.executable)
    done = subprocess.run(["bash", "bootstrap.sh", "setup"], cwd=tree, env=env, capture_output=True, text=True,
                          timeout=300)
    lines = [ln for ln in (done.stdout + done.stderr).splitlines() if "OpenBLAS" not in ln]
    assert done.returncode == 0, lines
    assert lines == [
        "[bootstrap] installing into .venv (a few minutes on a fresh machine; pip's output: "
        ".venv/bootstrap-pip.log)",
        "[bootstrap]   1/3 pip, setuptools, wheel",
        "[bootstrap]   2/3 tinygpt and its dependencies (editable, with [dev])",
        "[bootstrap]   3/3 bfcl-eval==2026.3.23 (data and checker, --no-deps)",
        "[bootstrap] installed",
        "[bootstrap] ready: .venv/bin/tinygpt --help",
    ]
    assert "Successfully installed tinygpt" in (tree / ".venv" / "bootstrap-pip.log").read_text()
