"""The dependency table of ARCHITECTURE.md, enforced on the source: no package imports what it may not."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ALLOWED = {
    "traces": set(),
    "kernels": set(),
    "tools": {"traces"},
    "runtime": {"tools", "traces", "kernels"},
    "router": {"runtime", "traces"},
    "trainer": {"runtime", "traces", "kernels"},
    "evals": {"runtime", "router", "tools", "traces"},
    "web": {"router", "runtime", "traces"},
}
PACKAGES = set(ALLOWED) | {"tinygpt"}


def _imported_packages(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "tinygpt" and len(parts) > 1 and parts[1] in ALLOWED:
                found.add(parts[1])
            elif parts[0] == "tinygpt":
                found.add("tinygpt")
    return found


def test_every_package_imports_only_what_architecture_allows():
    bad = []
    for pkg, allowed in ALLOWED.items():
        for path in (ROOT / pkg).rglob("*.py"):
            for dep in _imported_packages(path) - allowed - {pkg}:
                bad.append(f"{path.relative_to(ROOT)} imports tinygpt.{dep}")
    assert bad == []


def test_the_checker_sees_a_violation(tmp_path):
    f = tmp_path / "x.py"
    f.write_text("from tinygpt.web import app\nimport tinygpt.trainer.sft\n")
    assert _imported_packages(f) == {"web", "trainer"}


MLX_TOPS = {"mlx", "mlx_lm"}
DECODERS = {"generate_step", "BatchGenerator", "stream_generate", "generate", "batch_generate"}  # mlx-lm's loops
ONE_PATH = {"runtime/solo.py", "runtime/lane.py"}  # the scheduler's solo path and batch: the only decode loops


def _imports(path: Path) -> list[tuple[str, str]]:
    """(module, name) of every import in `path`, at any depth (inside functions too); name "" for `import m`."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [(a.name, "") for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out += [(node.module, a.name) for a in node.names]
    return out


def _mlx_imports(path: Path) -> list[str]:
    return [m for m, _ in _imports(path) if m.split(".")[0] in MLX_TOPS]


def _decoders(path: Path) -> list[str]:
    return [f"{m}.{n}" for m, n in _imports(path) if m.split(".")[0] == "mlx_lm" and n in DECODERS]


def _private_mlx_lm(path: Path) -> list[str]:
    """Private names taken from mlx-lm: `from mlx_lm.x import _y`, or `mlx_lm.x._y` spelled out."""
    bad = [f"{m}.{n}" for m, n in _imports(path) if m.split(".")[0] == "mlx_lm" and n.startswith("_")]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            chain = ast.unparse(node.value)
            if chain.split(".")[0] == "mlx_lm":
                bad.append(f"{chain}.{node.attr}")
    return bad


def _sources(*packages: str):
    for pkg in packages:
        yield from (ROOT / pkg).rglob("*.py")


def test_nothing_under_web_imports_mlx_or_mlx_lm():
    bad = [f"{p.relative_to(ROOT)}: {m}" for p in _sources("web") for m in _mlx_imports(p)]
    assert bad == []


def test_one_generation_path():
    """Only the scheduler's lane (batch) and solo run drive mlx-lm's decode loops; nothing else decodes."""
    bad = [f"{p.relative_to(ROOT)}: {d}" for p in _sources(*ALLOWED, "tinygpt") for d in _decoders(p)
           if str(p.relative_to(ROOT)) not in ONE_PATH]
    assert bad == []
    assert all(_decoders(ROOT / f) for f in ONE_PATH)  # the rule names the real path


def test_no_private_mlx_lm_names():
    bad = [f"{p.relative_to(ROOT)}: {n}" for p in _sources(*ALLOWED, "tinygpt") for n in _private_mlx_lm(p)]
    assert bad == []


def test_the_mlx_checkers_see_violations(tmp_path):
    f = tmp_path / "x.py"
    f.write_text("def f():\n    import mlx.core as mx\n    from mlx_lm.generate import generate_step\n"
                 "    from mlx_lm.utils import _download\n    import mlx_lm.utils\n    return mlx_lm.utils._hidden\n")
    assert _mlx_imports(f) == ["mlx.core", "mlx_lm.generate", "mlx_lm.utils", "mlx_lm.utils"]
    assert _decoders(f) == ["mlx_lm.generate.generate_step"]
    assert sorted(_private_mlx_lm(f)) == ["mlx_lm.utils._download", "mlx_lm.utils._hidden"]


NO_MLX = ("tinygpt.runtime.tool_formats", "tinygpt.runtime.tool_formats.split", "tinygpt.runtime.tool_calls")


def test_tool_formats_and_the_call_parser_load_without_mlx():
    """The web layer streams and parses tool calls with them, so importing them must not load MLX."""
    import subprocess
    import sys

    names = ", ".join(NO_MLX)
    code = (f"import sys, {names}; from tinygpt.runtime.tool_formats import all_formats; all_formats(); "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'mlx', 'mlx_lm'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]"
    assert [m for p in (ROOT / "runtime" / "tool_formats").glob("*.py") for m in _mlx_imports(p)] == []
