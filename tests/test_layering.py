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
