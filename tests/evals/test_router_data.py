"""The project's labelled request set for the router: four domains from the suites' tasks and `general`, split by
group, and a router trained on its train split routes its heldout split (and sends off-domain requests to the
generalist)."""
import json

import pytest

pytest.importorskip("bfcl_eval", reason="BFCL's tasks come from the bfcl-eval wheel")

from tinygpt import cli  # noqa: E402
from tinygpt.evals.router_data import labelled_rows  # noqa: E402


@pytest.fixture(scope="module")
def rows():
    return labelled_rows()


DOMAINS = {"fileops", "trading", "vehicle", "travel", "general"}
# the QA prober's requests outside every domain (none of them is in the labelled set)
OFF_DOMAIN = ["what is the capital of France", "tell me a joke", "how do I bake bread at home", "who wrote Hamlet",
              "who won the world cup in 2018", "hello", "", "   ", "what's a good name for a golden retriever",
              "Какая погода в Москве сегодня?"]


def test_four_domains_and_general_split_by_group_and_one_api_per_bfcl_row(rows):
    assert {r["domain"] for r in rows} == DOMAINS
    for split in ("train", "heldout"):
        assert {r["domain"] for r in rows if r["split"] == split} == DOMAINS
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
    assert json.loads(capsys.readouterr().out)["domains"].keys() == DOMAINS
    from tinygpt.router.data import read_jsonl
    from tinygpt.router.model import load

    model = load(tmp_path / "r")
    heldout = read_jsonl(tmp_path / "heldout.jsonl")
    right = sum(model.domains[int(model.probs(e.request).argmax())] == e.domain for e in heldout)
    assert right / len(heldout) > 0.95
    assert cli.main(["route", "data", "--out", str(tmp_path / "train.jsonl")]) == 2  # never over a file
    assert "File exists" in capsys.readouterr().err


def test_general_rows_are_bfcl_irrelevance_and_generated_chat_and_never_repeat_off_domain_prompts(rows):
    general = [r for r in rows if r["domain"] == "general"]
    assert sum(r["task_id"].startswith("irrelevance_") for r in general) == 240
    chat = [r for r in general if r["task_id"].startswith("general-chat-")]
    assert len(chat) >= 300 and all(r["tools"] == [] for r in chat)
    assert len({r["group"] for r in chat}) >= 30  # grouped by template: heldout phrasings were never trained on
    assert not {t.lower() for t in OFF_DOMAIN} & {r["text"].lower() for r in rows}


def test_a_router_trained_on_the_train_split_sends_off_domain_requests_to_the_generalist(rows):
    from tinygpt.router.data import example_from
    from tinygpt.router.features import Request
    from tinygpt.router.policy import decide
    from tinygpt.router.registry import Registry, Specialist
    from tinygpt.router.train import TrainOptions, train

    examples = [example_from(r, "row") for r in rows if r["split"] == "train"]
    model = train(examples, TrainOptions())
    specialists = tuple(Specialist(name=f"{d}-spec", base="base", domain=d, tools=[], provenance={},
                                   status="shipped", verdict="ship", routable=True, why="")
                        for d in sorted(DOMAINS - {"general"}))
    registry = Registry(specialists=specialists, generalist="gen")
    heldout = [example_from(r, "row") for r in rows if r["split"] == "heldout"]
    general = [e for e in heldout if e.domain == "general"]
    to_generalist = [decide(e.request, model, registry).route == "gen" for e in general]
    assert sum(to_generalist) / len(general) >= 0.9
    off = [decide(Request(t), model, registry) for t in OFF_DOMAIN]
    assert [d.route for d in off] == ["gen"] * len(OFF_DOMAIN), [(d.route, d.reason) for d in off]
    assert "empty request" in off[6].reason and "empty request" in off[7].reason
    in_domain = [e for e in heldout if e.domain != "general"]
    right = [decide(e.request, model, registry).route == f"{e.domain}-spec" for e in in_domain]
    assert sum(right) / len(in_domain) >= 0.95
