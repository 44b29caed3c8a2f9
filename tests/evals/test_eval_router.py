"""eval-router: known answers for accuracy, calibration, escalation, APGR and CPT (RouteLLM's sanity checks: a
random order recovers half the gap on average, the oracle almost all of it), the rule agreeing with the policy,
the quality sources, the CLI's help, errors and files, and a run on the project's labelled set."""
import json

import numpy as np
import pytest

from tinygpt import cli
from tinygpt.evals import router_eval as re_
from tinygpt.evals import router_quality as rq
from tinygpt.evals.errors import EvalError
from tinygpt.router.classifier import ece as classifier_ece

COSTS = {"specialist": 1.0, "generalist": 3.0, "cloud": 30.0}
DOMAINS = {"fileops": ("ls", "cd", "mv", "cp"), "math": ("add", "multiply"), "weather": ("forecast",)}


def tool_examples(n_per_domain, seed=0, text_words=8):
    """Requests of random filler words whose tools say the domain (the text carries no signal)."""
    import random

    from tinygpt.router.data import Example
    from tinygpt.router.features import Request

    rng = random.Random(seed)
    filler = [f"word{i}" for i in range(400)]
    return [Example(Request(" ".join(rng.choice(filler) for _ in range(text_words)),
                            tuple(rng.sample(tools, rng.randint(1, len(tools))))), domain, f"{domain}-{i}")
            for domain, tools in DOMAINS.items() for i in range(n_per_domain)]


def test_a_perfect_calibrated_router_has_accuracy_1_and_ece_0_and_bins_sum_to_n():
    labels = ["a", "b", "c", "a", "b"] * 8
    probs = np.eye(3)[[{"a": 0, "b": 1, "c": 2}[y] for y in labels]]
    out = re_.evaluate(probs, labels, ["a", "b", "c"], {"a": 0.5, "b": 0.5}, 0.0, None, COSTS)
    assert out["accuracy"]["rate"] == 1.0 and out["accuracy"]["hi"] == 1.0 and out["accuracy"]["lo"] < 1.0
    assert out["ece"] == 0.0
    assert all(r["rate"] == 1.0 for r in out["per_domain"].values())
    assert sum(b["count"] for b in out["reliability"]) == len(labels) and len(out["reliability"]) == 1
    # "c" has no specialist: exactly the c requests should and do escalate
    assert out["escalation"] == {"escalated": 8, "should": 8, "true_positives": 8, "precision": 1.0, "recall": 1.0}
    assert out["curve"] is None


def test_reliability_bins_sum_to_n_and_give_the_classifiers_ece():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(500, 4)) * 2
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    y = rng.integers(0, 4, 500)
    table = re_.reliability(probs.max(1), probs.argmax(1) == y, 10)
    assert sum(b["count"] for b in table) == 500
    assert all(b["lo"] <= b["confidence"] <= b["hi"] for b in table)
    assert re_.ece_of(table) == pytest.approx(classifier_ece(probs, y))
    # an overconfident router: always 0.9 sure, right half the time -> ECE 0.4
    conf, correct = np.full(10, 0.9), np.arange(10) % 2 == 0
    assert re_.ece_of(re_.reliability(conf, correct)) == pytest.approx(0.4)


def test_apgr_and_cpt_on_a_hand_computed_example():
    conf = np.array([0.1, 0.2, 0.3, 0.4])
    local, cloud = np.array([0.0, 1.0, 0.0, 1.0]), np.ones(4)
    thresholds, shares, q = re_.escalation_curve(conf, local, cloud)
    assert shares.tolist() == [0, 0.25, 0.5, 0.75, 1.0] and q.tolist() == [0.5, 0.75, 0.75, 1.0, 1.0]
    assert thresholds.tolist() == [0.1, 0.2, 0.3, 0.4, np.inf]  # escalate_below = 0.2 sends only the first
    s = re_.curve_summary(shares, q, 0.5, 1.0)
    assert s["pgr"] == [0.0, 0.5, 0.5, 1.0, 1.0]
    assert s["apgr"] == pytest.approx(0.0625 + 0.125 + 0.1875 + 0.25)  # trapezoids: 0.625
    assert s["cpt50"] == pytest.approx(0.25)
    assert s["cpt80"] == pytest.approx(0.5 + 0.25 * 0.3 / 0.5)  # between (0.5, 0.5) and (0.75, 1.0): 0.65
    assert re_.curve_summary(shares, q, 1.0, 1.0)["apgr"] is None  # no gap, nothing to recover


def test_requests_with_equal_confidence_move_together():
    _, shares, q = re_.escalation_curve(np.array([0.5, 0.5, 0.9]), np.zeros(3), np.ones(3))
    assert shares.tolist() == pytest.approx([0, 2 / 3, 1]) and q.tolist() == pytest.approx([0, 2 / 3, 1])


def test_a_random_order_recovers_half_the_gap_and_the_oracle_nearly_all():
    rng = np.random.default_rng(1)
    n = 4000
    local = (rng.random(n) < 0.6).astype(float)
    cloud = np.maximum(local, rng.random(n) < 0.5)  # the cloud passes what local passes, and more
    weak, strong = local.mean(), cloud.mean()
    _, shares, q = re_.escalation_curve(rng.random(n), local, cloud)
    assert re_.curve_summary(shares, q, weak, strong)["apgr"] == pytest.approx(0.5, abs=0.03)
    _, oshares, oq = re_.escalation_curve(-(cloud - local), local, cloud)
    won = (cloud > local).mean()  # the oracle recovers everything after sending only those: APGR = 1 - won / 2
    oracle = re_.curve_summary(oshares, oq, weak, strong)
    assert oracle["apgr"] == pytest.approx(1 - won / 2) and oracle["cpt80"] == pytest.approx(0.8 * won)
    concentrated = np.zeros(n)
    concentrated[:100] = 1  # the cloud wins on 2.5% of requests
    _, oshares, oq = re_.escalation_curve(-concentrated, np.zeros(n), concentrated)
    assert re_.curve_summary(oshares, oq, 0.0, concentrated.mean())["apgr"] > 0.98


def test_the_vectorised_rule_is_the_policys_rule():
    from tinygpt.router.policy import decide
    from tinygpt.router.registry import Registry, Specialist, Target
    from tinygpt.router.settings import Settings
    from tinygpt.router.train import TrainOptions, train

    model = train(tool_examples(30), TrainOptions(steps=40, dim=1024))
    spec = [Specialist(name=f"s-{d}", base="base", domain=d, tools=[], provenance={}, status=status,
                       verdict=verdict, routable=True, why="") for d, status, verdict in
            (("fileops", "shipped", "ship"), ("math", "routed-ship", "routed-ship"))]
    cloud = Target(name="c", kind="cloud", enabled=True, low_confidence=True)
    reg = Registry(specialists=tuple(spec), generalist="base", targets=(cloud,))
    requests = [e.request for e in tool_examples(10, seed=3, text_words=3)]
    requests += [type(r)(r.text) for r in requests]  # without tools: less sure
    probs = np.array([model.probs(r) for r in requests])
    conf = probs.max(1)
    kinds = {"specialist": re_.SPECIALIST, "generalist": re_.GENERALIST, "cloud": re_.CLOUD}
    for settings in (Settings(ship=0.5, routed_ship=0.8, escalate_below=0.6), Settings(ship=0.9, escalate_below=0.95),
                     Settings(ship=0.0, routed_ship=0.0)):
        expected = [kinds[decide(r, model, reg, settings).kind] for r in requests]
        top = [model.domains[k] for k in probs.argmax(1)]
        threshold = np.array([{"fileops": settings.ship, "math": settings.routed_ship}.get(d, np.inf) for d in top])
        assert re_.route_tiers(conf, threshold, settings.escalate_below).tolist() == expected


def test_quality_sources():
    assert rq.parse_pairs("specialist=0.9, cloud=1", "--quality") == {"specialist": 0.9, "cloud": 1.0}
    for bad in ("specialist", "specialist=x", "specialist=-1"):
        with pytest.raises(EvalError, match="--quality"):
            rq.parse_pairs(bad, "--quality")
    with pytest.raises(EvalError, match="give exactly"):
        rq.parse_pairs("specialist=1", "--quality", rq.QUALITY_KEYS)
    q = {"specialist": 0.9, "off_domain": 0.1, "generalist": 0.6, "cloud": 0.95}
    assert rq.assumed(q, ["a", "b"], ["a", "a"]).tolist() == [[0.9, 0.6, 0.95], [0.1, 0.6, 0.95]]
    rows = [{"domain": "a", "quality": q}, {"domain": "a", "quality": q}]
    assert rq.labelled(rows, ["a", "b"], "f").tolist() == [[0.9, 0.6, 0.95], [0.1, 0.6, 0.95]]
    assert rq.labelled([{"domain": "a"}], ["a"], "f") is None
    with pytest.raises(EvalError, match="every row or none"):
        rq.labelled([{"domain": "a", "quality": q}, {"domain": "a"}], ["a", "a"], "f")


def test_quality_from_result_rows(tmp_path):
    from evals_synthetic import write_run
    from tinygpt.evals.results import read_results

    write_run(tmp_path, model="spec", outcomes={"t1": [True, True], "t2": [False, True]})
    write_run(tmp_path, model="gen", outcomes={"t1": [False, False], "t2": [True, False]})
    write_run(tmp_path, model="big", outcomes={"t1": [True, True], "t2": [True, True]})
    rows = [{"domain": "fileops", "task_id": "t1"}, {"domain": "fileops", "task_id": "t2"}]
    models = {"generalist": "gen", "cloud": "big", "fileops": "spec"}
    q = rq.from_results(read_results(tmp_path), models, rows, ["fileops", "fileops"])
    assert q.tolist() == [[1.0, 0.0, 1.0], [0.5, 0.5, 1.0]]
    with pytest.raises(EvalError, match="no result rows, e.g. spec on t3"):
        rq.from_results(read_results(tmp_path), models, rows + [{"domain": "fileops", "task_id": "t3"}],
                        ["fileops"] * 3)


@pytest.fixture
def router_dir(tmp_path, monkeypatch):
    """A router trained on synthetic requests, a labelled file of others, and an empty model store."""
    from tinygpt.router.model import save
    from tinygpt.router.train import TrainOptions, train

    monkeypatch.setenv("TINYGPT_CACHE", str(tmp_path / "cache"))
    save(train(tool_examples(30), TrainOptions(steps=40, dim=1024)), tmp_path / "r")
    with open(tmp_path / "data.jsonl", "w") as f:
        for e in tool_examples(8, seed=5):
            f.write(json.dumps({"text": e.request.text, "tools": list(e.request.tools), "domain": e.domain}) + "\n")
    return tmp_path


def test_help_and_one_line_errors(router_dir, capsys):
    assert "eval-router" in (cli.main(["--help"]) == 0 and capsys.readouterr().out)
    with pytest.raises(SystemExit) as exit_:
        cli.main(["eval-router", "--help"])
    out = capsys.readouterr().out
    assert exit_.value.code == 0 and "--quality" in out and "should escalate" in out
    base = ["eval-router", "--router", str(router_dir / "r"), "--data", str(router_dir / "data.jsonl")]
    for extra, words in ((["--quality", "specialist=2,off_domain=0,generalist=0,cloud=1"], "between 0 and 1"),
                         (["--quality", "cloud=1"], "give exactly"),
                         (["--costs", "cloud=x"], "must be a number"),
                         (["--cloud-model", "no-such-model", "--costs", "specialist=0,generalist=0"], "no price"),
                         (["--specialists", "fileops:maybe"], "ship or routed-ship"),
                         (["--cloud-model", "claude-sonnet-4-5"], "give the local tiers' USD")):
        assert cli.main(base + extra) == 2
        err = capsys.readouterr().err
        assert words in err and err.count("\n") == 1, err
    assert cli.main(["eval-router", "--router", str(router_dir / "nothing")]) == 2
    assert "no router at" in capsys.readouterr().err
    (router_dir / "bad.jsonl").write_text('{"text": "x", "domain": "fileops"}\nnot json\n')
    assert cli.main(["eval-router", "--router", str(router_dir / "r"), "--data", str(router_dir / "bad.jsonl")]) == 2
    assert "bad.jsonl:2: not JSON" in capsys.readouterr().err


def test_a_users_file_is_never_overwritten_and_our_own_is(router_dir, capsys):
    out, chart = router_dir / "mine.json", router_dir / "mine.png"
    out.write_text("my notes")
    argv = ["eval-router", "--router", str(router_dir / "r"), "--data", str(router_dir / "data.jsonl"),
            "--specialists", "fileops,math", "--quality", "specialist=0.9,off_domain=0.1,generalist=0.6,cloud=0.95"]
    assert cli.main(argv + ["--out", str(out)]) == 2
    assert "was not written by tinygpt" in capsys.readouterr().err and out.read_text() == "my notes"
    assert not chart.exists()
    good = router_dir / "ours.json"
    (router_dir / "ours.png").write_bytes(b"\x89PNG not ours")
    assert cli.main(argv + ["--out", str(good)]) == 2 and not good.exists()
    capsys.readouterr()
    (router_dir / "ours.png").unlink()
    for _ in range(2):  # the second run replaces the files the first wrote
        assert cli.main(argv + ["--out", str(good), "--json"]) == 0
        result = json.loads(capsys.readouterr().out)
    assert json.loads(good.read_text()) == result and (router_dir / "ours.png").read_bytes()[:4] == b"\x89PNG"
    assert result["quality_source"] == "assumed (--quality)" and result["specialists_source"] == "--specialists"
    assert result["quality_inputs"] == {"specialist": 0.9, "off_domain": 0.1, "generalist": 0.6, "cloud": 0.95}
    assert result["escalation"]["should"] == 8  # the weather requests: no specialist


def test_without_specialists_or_quality_it_says_what_it_assumed(router_dir, capsys):
    argv = ["eval-router", "--router", str(router_dir / "r"), "--data", str(router_dir / "data.jsonl")]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "assumed: a ship specialist for every domain" in out and "no curve" in out


def test_the_project_labelled_set_end_to_end(tmp_path, capsys, monkeypatch):
    pytest.importorskip("bfcl_eval", reason="BFCL's tasks come from the bfcl-eval wheel")
    from tinygpt.evals.png import software_of
    from tinygpt.evals.router_chart import SOFTWARE

    monkeypatch.setenv("TINYGPT_CACHE", str(tmp_path / "cache"))
    assert cli.main(["route", "data", "--out", str(tmp_path / "train.jsonl"), "--split", "train"]) == 0
    assert cli.main(["route", "train", "--data", str(tmp_path / "train.jsonl"), "--out", str(tmp_path / "r"),
                     "--steps", "80", "--dim", "4096", "--json"]) == 0
    capsys.readouterr()
    assert cli.main(["eval-router", "--router", str(tmp_path / "r"), "--specialists", "fileops,trading,vehicle",
                     "--quality", "specialist=0.9,off_domain=0.1,generalist=0.6,cloud=0.95",
                     "--out", str(tmp_path / "eval.json"), "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert "heldout split" in r["data"]
    assert set(r["per_domain"]) == {"fileops", "trading", "vehicle", "travel", "general"}  # off-domain rows too
    assert r["requests"] == sum(b["count"] for b in r["reliability"]) == sum(d["n"] for d in r["per_domain"].values())
    assert r["accuracy"]["rate"] > 0.95 and r["ece"] < 0.1 and r["per_domain"]["general"]["rate"] > 0.9
    # travel and general have no specialist: every such request routed as its own domain escalates
    assert r["escalation"]["should"] == r["per_domain"]["travel"]["n"] + r["per_domain"]["general"]["n"]
    assert r["escalation"]["recall"] > 0.9
    assert r["trained_on_evaluated"]["rows"] == 0
    c = r["curve"]
    assert 0.5 < c["apgr"] <= c["oracle"]["apgr"] + 1e-9 and 0 < c["cpt50"] < c["cpt80"] < 1
    assert c["points"][0]["cloud_share"] == 0 and c["points"][-1]["cloud_share"] == 1
    assert software_of((tmp_path / "eval.png").read_bytes()) == SOFTWARE


def test_quality_from_result_rows_through_the_cli(router_dir, capsys):
    from evals_synthetic import write_run

    rows = [json.loads(line) for line in (router_dir / "data.jsonl").read_text().splitlines()]
    with open(router_dir / "tasks.jsonl", "w") as f:
        for i, row in enumerate(rows):
            f.write(json.dumps({**row, "task_id": f"t{i}"}) + "\n")
    tasks = [f"t{i}" for i in range(len(rows))]
    results = router_dir / "results"
    write_run(results, model="spec-files", outcomes={t: [True] for t in tasks})
    write_run(results, model="gen", outcomes={t: [False] for t in tasks})
    write_run(results, model="big", outcomes={t: [True] for t in tasks})
    argv = ["eval-router", "--router", str(router_dir / "r"), "--data", str(router_dir / "tasks.jsonl"),
            "--specialists", "fileops", "--results", str(results), "--json"]
    assert cli.main(argv + ["--models", "generalist=gen,cloud=big"]) == 2
    assert "no specialist for domain fileops" in capsys.readouterr().err
    assert cli.main(argv + ["--models", "generalist=gen,cloud=big,fileops=spec-files"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["quality_source"].startswith("results") and r["quality_inputs"]["fileops"] == "spec-files"
    c = r["curve"]
    # a request stays local with quality 1 only on the fileops specialist; the cloud passes everything
    assert c["weak"] == pytest.approx(r["shares"]["specialist"]) and c["strong"] == 1.0
    assert cli.main(argv + ["--models", "generalist=gen,cloud=big,fileops=spec-files", "--quality",
                            "specialist=1,off_domain=0,generalist=0,cloud=1"]) == 2
    assert "not both" in capsys.readouterr().err


def test_per_row_quality_and_the_stores_specialists(router_dir, capsys):
    from tinygpt.runtime.store import ModelStore

    q = {"specialist": 1, "off_domain": 0, "generalist": 0.5, "cloud": 1}
    with open(router_dir / "q.jsonl", "w") as f:
        for line in (router_dir / "data.jsonl").read_text().splitlines():
            f.write(json.dumps({**json.loads(line), "quality": q}) + "\n")
    base, adapter = router_dir / "base", router_dir / "adapter"
    base.mkdir()
    (base / "config.json").write_text('{"model_type": "qwen3"}')
    (base / "model.safetensors").write_bytes(b"not read")
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    (adapter / "adapters.safetensors").write_bytes(b"not read")
    store = ModelStore()  # under TINYGPT_CACHE (the fixture's)
    store.add("base", base)
    store.add("math-spec", adapter, base="base")
    store.set_status("math-spec", "routed-ship")
    store.describe("math-spec", domain="math")
    assert cli.main(["eval-router", "--router", str(router_dir / "r"), "--data", str(router_dir / "q.jsonl"),
                     "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["specialists_source"] == "the model store's routable specialists"
    assert r["specialists"] == {"math": r["settings"]["routed_ship"]}
    assert r["quality_source"].startswith("labelled") and r["escalation"]["should"] == 16
    assert r["curve"]["references"]["all_generalist"]["quality"] == 0.5
    assert cli.main(["eval-router", "--router", str(router_dir / "r"), "--data", str(router_dir / "q.jsonl"),
                     "--quality", "specialist=1,off_domain=0,generalist=0,cloud=1"]) == 2
    assert "drop --quality" in capsys.readouterr().err


def test_the_three_tier_points_and_the_local_curve_on_a_hand_computed_example():
    conf = np.array([0.3, 0.6, 0.9])
    threshold = np.array([np.inf, 0.5, 0.5])  # the first request's top domain has no specialist
    quality = np.array([[0.0, 0.5, 1.0], [1.0, 0.0, 1.0], [1.0, 0.0, 0.0]])  # specialist, generalist, cloud
    c = re_.cost_quality(conf, threshold, quality, COSTS)
    assert [p["cloud_share"] for p in c["points"]] == pytest.approx([0, 1 / 3, 2 / 3, 1])
    assert [p["specialist_share"] for p in c["points"]] == pytest.approx([2 / 3, 2 / 3, 1 / 3, 0])
    assert [p["cost"] for p in c["points"]] == pytest.approx([2 / 3 + 1, 2 / 3 + 10, 1 / 3 + 20, 30])
    assert [p["quality"] for p in c["points"]] == pytest.approx([2.5 / 3, 3 / 3, 3 / 3, 2 / 3])
    assert c["weak"] == pytest.approx(2.5 / 3) and c["strong"] == pytest.approx(2 / 3)
    assert c["references"]["all_generalist"]["quality"] == pytest.approx(0.5 / 3)
    assert [p["threshold"] for p in c["points"]] == [0.3, 0.6, 0.9, None]
    local = c["local"]  # the two requests with a specialist move to the generalist, least confident first
    assert [p["specialist_share"] for p in local] == pytest.approx([2 / 3, 1 / 3, 0])
    assert [p["quality"] for p in local] == pytest.approx([2.5 / 3, 1.5 / 3, 0.5 / 3])
    assert [p["cost"] for p in local] == pytest.approx([2 / 3 + 1, 1 / 3 + 2, 3])


def test_a_router_trained_on_the_evaluated_rows_is_warned_about(router_dir, capsys):
    from tinygpt.router.data import read_jsonl
    from tinygpt.router.model import save
    from tinygpt.router.train import TrainOptions, train

    data = router_dir / "data.jsonl"
    save(train(read_jsonl(data), TrainOptions(steps=20, dim=1024), sources=[str(data)]), router_dir / "leaky")
    argv = ["eval-router", "--data", str(data), "--json", "--router"]
    assert cli.main(argv + [str(router_dir / "leaky")]) == 0
    out, err = capsys.readouterr()
    seen = json.loads(out)["trained_on_evaluated"]
    assert (seen["rows"], seen["of"], seen["sources"]) == (24, 24, [str(data)])
    assert "WARNING: the router was trained on 24 of the 24 evaluated requests" in err
    assert cli.main(argv + [str(router_dir / "r")]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["trained_on_evaluated"]["rows"] == 0 and "WARNING" not in err


def test_guarded_requests_never_reach_a_specialist_and_go_to_the_cloud_when_escalation_is_on():
    probs = np.array([[0.95, 0.05], [0.95, 0.05], [0.4, 0.6]])
    labels, domains = ["a", "a", "b"], ["a", "b"]
    costs = {"specialist": 1, "generalist": 3, "cloud": 30}
    guarded = np.array([False, True, False])
    shares = lambda below, g: re_.evaluate(probs, labels, domains, {"a": 0.5}, below, None, costs, guarded=g)["shares"]
    assert shares(0.0, None) == {"specialist": 2 / 3, "generalist": 1 / 3, "cloud": 0.0}
    assert shares(0.0, guarded) == {"specialist": 1 / 3, "generalist": 2 / 3, "cloud": 0.0}
    assert shares(0.5, guarded) == {"specialist": 1 / 3, "generalist": 1 / 3, "cloud": 1 / 3}
