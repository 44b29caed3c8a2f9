"""Result rows round-trip, and every kind of bad or partial results file is a clear error naming file and line."""
import json
import time

import pytest

from evals_synthetic import write_run
from tinygpt.evals.errors import EvalError
from tinygpt.evals.results import (
    MANIFEST_SUFFIX, ROWS_SUFFIX, ResultRow, ResultWriter, RunManifest, new_run_id, read_results, read_rows,
)


def test_rows_round_trip(tmp_path):
    manifest = write_run(tmp_path, model="m", outcomes={"a": [True, False], "b": [False, False]},
                         fingerprint="base+adapter", categories={"a": "x", "b": "y"})
    (run,) = read_results(tmp_path)
    assert run.manifest.status == "complete" and run.manifest.run_id == manifest.run_id
    assert [(r.task_id, r.pass_index, r.passed, r.category) for r in run.rows] == [
        ("a", 0, True, "x"), ("a", 1, False, "x"), ("b", 0, False, "y"), ("b", 1, False, "y")]
    assert {(r.base_fingerprint, r.adapter_fingerprint) for r in run.rows} == {("base", "adapter")}


def _rows_file(directory):
    (path,) = directory.glob(f"*{ROWS_SUFFIX}")
    return path


@pytest.mark.parametrize("damage, says", [
    (lambda lines: lines[:1] + ['{"version": 1, "run_id": "x"'] + lines[2:], ":2: not a valid result row"),
    (lambda lines: lines[:2] + [lines[2].replace('"passed":true', '"passed":"yes"')] + lines[3:],
     ":3: not a valid result row"),
    (lambda lines: [lines[0].replace('"steps":1', '"steps":1,"extra":1')] + lines[1:], ":1: not a valid result row"),
    (lambda lines: lines[:1] + [""] + lines[1:], ":2: empty line"),
    (lambda lines: [lines[0].replace('"score":1.0', '"score":1.5')] + lines[1:], ":1: not a valid result row"),
])
def test_a_bad_row_is_an_error_naming_file_and_line(tmp_path, damage, says):
    write_run(tmp_path, model="m", outcomes={"a": [True], "b": [False], "c": [True]})
    path = _rows_file(tmp_path)
    lines = path.read_text().splitlines()
    path.write_text("\n".join(damage(lines)) + "\n")
    with pytest.raises(EvalError) as err:
        read_results(tmp_path)
    assert str(path) + says in str(err.value)


def test_a_run_that_did_not_complete_is_refused(tmp_path):
    manifest = RunManifest(run_id=new_run_id("fileops", "validation", "m"), status="running", suite="fileops",
                           split="validation", model="m", model_fingerprint="f", policy="model", passes=1, tasks=2,
                           started_at=time.time())
    writer = ResultWriter(tmp_path, manifest)
    writer.add(ResultRow(run_id=manifest.run_id, suite="fileops", split="validation", category="c", task_id="a",
                         pass_index=0, model="m", model_fingerprint="f", base_fingerprint="f", policy="model",
                         passed=True, score=1.0, steps=1, prompt_tokens=1, output_tokens=1, latency_s=0.1,
                         finished_at=time.time(), end="answer"))
    with pytest.raises(ValueError, match="1 rows written, 2 planned"):
        writer.complete()
    writer.close()
    with pytest.raises(EvalError, match="did not complete"):
        read_results(tmp_path)


def test_truncated_or_mixed_files_are_refused(tmp_path):
    write_run(tmp_path, model="m", outcomes={"a": [True], "b": [False]})
    path = _rows_file(tmp_path)
    lines = path.read_text().splitlines()
    path.write_text(lines[0] + "\n")
    with pytest.raises(EvalError, match="1 rows, but the run planned 2 tasks x 1 passes"):
        read_results(tmp_path)
    path.write_text(lines[0] + "\n" + lines[1].replace('"model":"m"', '"model":"other"') + "\n")
    with pytest.raises(EvalError, match=":2: the row says run .* model other"):
        read_results(tmp_path)


def test_a_results_file_without_its_manifest_is_refused(tmp_path):
    write_run(tmp_path, model="m", outcomes={"a": [True]})
    next(tmp_path.glob(f"*{MANIFEST_SUFFIX}")).unlink()
    with pytest.raises(EvalError, match="without its run manifest"):
        read_results(tmp_path)


def test_a_newer_row_version_asks_for_an_upgrade(tmp_path):
    write_run(tmp_path, model="m", outcomes={"a": [True]})
    path = _rows_file(tmp_path)
    path.write_text(path.read_text().replace('"version":1', '"version":99'))
    with pytest.raises(EvalError, match="version 99 is newer"):
        read_rows(path)


def test_the_writer_never_replaces_a_file(tmp_path):
    manifest = write_run(tmp_path, model="m", outcomes={"a": [True]})
    again = RunManifest(**{**json.loads((tmp_path / f"{manifest.run_id}{MANIFEST_SUFFIX}").read_text()),
                           "status": "running"})
    with pytest.raises(EvalError, match="already exists"):
        ResultWriter(tmp_path, again)
    assert len(read_results(tmp_path)) == 1


def test_missing_directory(tmp_path):
    with pytest.raises(EvalError, match="does not exist"):
        read_results(tmp_path / "nope")
