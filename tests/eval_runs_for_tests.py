"""Not a test module: eval runs written by the real `ResultWriter`, and a gate verdict over them, for the tests of
what reads them (tests/evals/test_results_view.py, tests/web/test_ui_evals.py).

`write_run(dir, model, outcomes, fingerprint=...)` writes one run (task i passes iff `outcomes[i]`, K = 1);
`write_evals(root)` writes the set both tests use: under `root/evals` a base (10/12), a specialist that regresses
(2/12: loses 8 tasks the base passes, wins none, exact McNemar p = 2/2^8), one that does not (11/12), a gate
result rejecting the bad one, a run still running (3 rows), and under `root/elsewhere` a results file without its
manifest. Returns the manifest paths by name.
"""
import time

import msgspec

from tinygpt.evals.gate import evaluate
from tinygpt.evals.results import ResultRow, ResultWriter, RunManifest, new_run_id, read_run

CATEGORIES = ("find-copy", "sort-save")
BASE = [True] * 10 + [False] * 2
BAD = [True] * 2 + [False] * 10
GOOD = [True] * 11 + [False]


def write_run(directory, model, outcomes, *, fingerprint, suite="fileops", split="validation", policy="model",
              complete=True):
    """A run written by the real writer: `outcomes[i]` is task i's pass (K = 1). Returns the manifest path."""
    manifest = RunManifest(run_id=new_run_id(suite, split, model), status="running", suite=suite, split=split,
                           model=model, model_fingerprint=fingerprint, policy=policy, passes=1, tasks=len(outcomes),
                           started_at=time.time())
    with ResultWriter(directory, manifest) as writer:
        for i, ok in enumerate(outcomes):
            task = f"{suite}-t{i:02d}"
            writer.add(ResultRow(
                run_id=manifest.run_id, suite=suite, split=split, category=CATEGORIES[i % 2], task_id=task,
                pass_index=0, model=model, model_fingerprint=fingerprint, base_fingerprint=fingerprint.split("+")[0],
                adapter_fingerprint=fingerprint.split("+")[1] if "+" in fingerprint else None, policy=policy,
                passed=ok, score=float(ok), steps=3, prompt_tokens=100, output_tokens=20, latency_s=0.5, seed=i,
                finished_at=time.time(), end="answer", reason="ok" if ok else "the tree differs",
                trajectories=[f"traces/{manifest.run_id}/{task}.k0.atraj"]))
        if complete:
            writer.complete()
    return writer.manifest_path


def rows_file(manifest_path):
    """The results file beside a run's manifest."""
    return manifest_path.with_name(manifest_path.name.replace(".run.json", ".results.jsonl"))


def write_evals(root):
    """The runs, gate result and stray file described above, under `root`; {name: manifest path}."""
    results = root / "evals"
    paths = {"base": write_run(results, "base-m", BASE, fingerprint="fpB"),
             "bad": write_run(results, "spec-bad", BAD, fingerprint="fpB+fpA1"),
             "good": write_run(results, "spec-good", GOOD, fingerprint="fpB+fpA2")}
    gate = evaluate([read_run(paths["base"]), read_run(paths["bad"])], candidate="spec-bad", baseline="base-m",
                    suites=["fileops"])
    (results / "gate-result.json").write_bytes(msgspec.json.format(msgspec.json.encode(gate), indent=2))
    paths["live"] = write_run(results, "spec-live", [True, False, True], fingerprint="fpB+fpA3", complete=False)
    stray = root / "elsewhere" / "copied.results.jsonl"
    stray.parent.mkdir()
    stray.write_bytes(rows_file(paths["base"]).read_bytes())
    return paths
