"""The project's labelled request set for the router: four domains from the suites' tasks, split by group, and a
router trained on its train split routes its heldout split."""
import json

import pytest

pytest.importorskip("bfcl_eval", reason="BFCL's tasks come from the bfcl-eval wheel")

from tinygpt import cli  # noqa: E402
from tinygpt.evals.router_data import labelled_rows  # noqa: E402


@pytest.fixture(scope="module")
def rows():
    return labelled_rows()


def test_four_domains_split_by_group_and_one_api_per_bfcl_row(rows):
    assert {r["domain"] for r in rows} == {"fileops", "trading", "vehicle", "travel"}
    for split in ("train", "heldout"):
        assert {r["domain"] for r in rows if r["split"] == split} == {"fileops", "trading", "vehicle", "travel"}
    train = {r["group"] for r in rows if r["split"] == "train"}
    heldout = {r["group"] for r in rows if r["split"] == "heldout"}
    assert not train & heldout
    assert not {r["text"] for r in rows if r["split"] == "train"} & {r["text"] for r in rows if r["split"] == "heldout"}
    fileops_tools = next(r["tools"] for r in rows if r["domain"] == "fileops")
    assert {"cd", "ls", "mv"} <= set(fileops_tools) and len(fileops_tools) == 18
    assert all(not set(r["tools"]) & set(fileops_tools) for r in rows if r["domain"] != "fileops")
    assert labelled_rows("train") == [r for r in rows if r["split"] == "train"]
    with pytest.raises(ValueError, match="unknown split"):
        labelled_rows("test")


def test_route_data_writes_what_route_train_reads_and_the_heldout_split_routes(tmp_path, capsys):
    assert cli.main(["route", "data", "--out", str(tmp_path / "train.jsonl"), "--split", "train"]) == 0
    assert cli.main(["route", "data", "--out", str(tmp_path / "heldout.jsonl"), "--split", "heldout"]) == 0
    assert "wrote " in capsys.readouterr().out
    assert cli.main(["route", "train", "--data", str(tmp_path / "train.jsonl"), "--out", str(tmp_path / "r"),
                     "--steps", "80", "--dim", "4096", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["domains"].keys() == {"fileops", "trading", "vehicle", "travel"}
    from tinygpt.router.data import read_jsonl
    from tinygpt.router.model import load

    model = load(tmp_path / "r")
    heldout = read_jsonl(tmp_path / "heldout.jsonl")
    right = sum(model.domains[int(model.probs(e.request).argmax())] == e.domain for e in heldout)
    assert right / len(heldout) > 0.95
    assert cli.main(["route", "data", "--out", str(tmp_path / "train.jsonl")]) == 2  # never over a file
    assert "File exists" in capsys.readouterr().err
