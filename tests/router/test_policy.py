"""The learned policy: a planted signal is learned, temperature scaling calibrates, the decision rule holds."""
import random

import numpy as np
import pytest

from tinygpt.router.classifier import Sparse, ece, fit, fit_temperature, softmax
from tinygpt.router.data import Example
from tinygpt.router.errors import RouterError
from tinygpt.router.features import Request, featurize, request_from
from tinygpt.router.model import RouterFile, RouterModel
from tinygpt.router.policy import decide
from tinygpt.router.registry import Registry, Specialist, Target
from tinygpt.router.settings import Settings
from tinygpt.router.train import TrainOptions, split, train

from router_fakes import FILLER, tool_examples

FAST = TrainOptions(dim=2**12, steps=120)


def spec(name, domain, verdict="ship", created="2026-01-01"):
    return Specialist(name=name, base="base", domain=domain, tools=[], provenance={}, status="shipped",
                      verdict=verdict, routable=True, why="", created=created)


@pytest.fixture(scope="module")
def model():
    return train(tool_examples(), TrainOptions(dim=2**12, steps=120, text_only=False))


def test_a_planted_tool_name_signal_routes_unseen_requests_right(model):
    assert model.meta.metrics.accuracy == 1.0 and model.domains == ("fileops", "math", "weather")
    rng = random.Random(99)
    for tools, want in ((("mv",), "fileops"), (("multiply", "add"), "math"), (("forecast",), "weather")):
        text = " ".join(rng.choice(FILLER) for _ in range(8))
        p = model.probs(Request(text, tools))
        assert model.domains[int(p.argmax())] == want and p.max() > 0.9


def test_learning_requests_without_their_tools_keeps_a_router_from_being_sure_of_a_guess():
    rng = random.Random(5)
    no_signal = [Request(" ".join(rng.choice(FILLER) for _ in range(8))) for _ in range(40)]  # no tools
    confidence = {}
    for text_only in (False, True):
        router = train(tool_examples(), TrainOptions(dim=2**12, steps=120, text_only=text_only))
        confidence[text_only] = np.mean([router.probs(r).max() for r in no_signal])
        assert router.probs(Request("anything", ("mv", "cd"))).max() > 0.9  # the tools still decide
        assert router.meta.metrics.per_domain == {"fileops": 60, "math": 60, "weather": 60}
    assert confidence[False] > 0.8 and confidence[True] < 0.65, confidence  # a guess among 3 is right 1/3


def test_features_are_the_same_in_any_process_and_tools_are_split_into_parts():
    a = featurize(Request("Move the file", ("move_file", "listDir")), 2**10)
    assert a == featurize(Request("Move the file", ("move_file", "listDir")), 2**10)
    assert a[0] == sorted(a[0]) and all(0 <= i < 2**10 for i in a[0])
    parts = featurize(Request("", ("move_file",)), 2**16)[0]
    assert len(parts) == 3  # the name, "move", "file"
    assert featurize(Request("", ()), 64) == ([], [])
    assert len(featurize(Request("Ünïcode wörter 数据"), 2**16)[0]) > 3  # words of any script are words
    assert featurize(Request("Grüße"), 2**16) != featurize(Request("Gr e"), 2**16)


def test_temperature_scaling_lowers_the_calibration_error_of_an_overconfident_classifier():
    rng = random.Random(3)
    rows, y = [], []
    for _ in range(1500):  # a weak signal under 30% label noise: an unregularised fit is overconfident
        true = rng.randrange(3)
        label = true if rng.random() > 0.3 else rng.randrange(3)
        words = [f"d{true}w{rng.randrange(20)}"] + [rng.choice(FILLER) for _ in range(10)]
        rows.append(featurize(Request(" ".join(words)), 2**12))
        y.append(label)
    x, y = Sparse.from_rows(rows, 2**12), np.array(y)
    w, b = fit(x.take(np.arange(900)), y[:900], 3, l2=0.0, steps=300)
    cal, test = x.take(np.arange(900, 1200)).matmul(w) + b, x.take(np.arange(1200, 1500)).matmul(w) + b
    t = fit_temperature(cal, y[900:1200])
    before, after = ece(softmax(test), y[1200:]), ece(softmax(test / t), y[1200:])
    assert t > 1.0 and after < before - 0.05, (t, before, after)


def test_ece_is_zero_for_a_calibrated_predictor_and_the_gap_for_an_overconfident_one():
    probs = np.array([[0.8, 0.2]] * 10)
    y = np.array([0] * 8 + [1] * 2)
    assert ece(probs, y) == pytest.approx(0.0)
    assert ece(np.array([[1.0, 0.0]] * 10), y) == pytest.approx(0.2)


def test_the_split_keeps_groups_together_and_holds_out_every_domain():
    ex = [Example(Request(f"t{i}"), d, f"{d}{i // 2}") for d in ("a", "b") for i in range(40)]
    tr, cal, te = split(ex, 0.15, 0.15, seed=0)
    assert sorted(tr + cal + te) == list(range(80))
    side = {}
    for part, idx in (("tr", tr), ("cal", cal), ("te", te)):
        for i in idx:
            assert side.setdefault(ex[i].group, part) == part
    assert {ex[i].domain for i in te} == {"a", "b"} and {ex[i].domain for i in cal} == {"a", "b"}
    assert split(ex, 0.15, 0.15, seed=0) == (tr, cal, te) != split(ex, 0.15, 0.15, seed=1)


def test_one_domain_is_not_enough():
    with pytest.raises(RouterError, match="at least two domains"):
        train([Example(Request("x"), "a", "1")], FAST)


def test_a_shipped_specialist_takes_its_domain_and_the_generalist_the_rest(model):
    reg = Registry(specialists=(spec("fs", "fileops"),), generalist="base")
    d = decide(Request("please", ("mv", "cd")), model, reg)
    assert (d.route, d.kind, d.domain, d.threshold) == ("fs", "specialist", "fileops", 0.5)
    assert d.score == d.scores["fs"] and d.scores["base"] == pytest.approx(1 - d.score, abs=1e-5)
    assert "ship specialist fs" in d.reason
    d = decide(Request("please", ("forecast",)), model, reg)
    assert (d.route, d.kind, d.domain) == ("base", "generalist", "weather")
    assert "no routable specialist for domain weather" in d.reason and d.threshold is None


def fixed(**probs) -> RouterModel:
    """A router that gives every request the same domain probabilities."""
    domains = sorted(probs)
    bias = np.log(np.array([probs[d] for d in domains], dtype=np.float32))
    return RouterModel(domains=tuple(domains), weights=np.zeros((16, len(domains)), dtype=np.float32), bias=bias,
                       temperature=1.0, meta=RouterFile(domains=domains, dim=16, temperature=1.0))


def test_a_routed_ship_specialist_needs_the_stricter_threshold_and_ship_is_preferred():
    model, request = fixed(fileops=0.7, math=0.3), Request("anything")
    routed = Registry(specialists=(spec("r", "fileops", "routed-ship"),), generalist="base")
    d = decide(request, model, routed, Settings(ship=0.5, routed_ship=0.8))
    assert (d.route, d.kind, d.score, d.threshold) == ("base", "generalist", 0.7, 0.8)
    assert d.reason == "domain fileops at 0.700 < 0.8 for routed-ship specialist r: the generalist base"
    assert decide(request, model, routed, Settings(ship=0.5, routed_ship=0.7)).route == "r"  # >= takes it
    both = Registry(specialists=(spec("r", "fileops", "routed-ship", "2026-09-09"), spec("s", "fileops")))
    d = decide(request, model, both, Settings(ship=0.5, routed_ship=0.8))
    assert (d.route, d.threshold) == ("s", 0.5) and d.scores == {"r": 0.7, "s": 0.7, "default": 0.3}
    outside = decide(Request("x"), fixed(fileops=0.2, math=0.8), routed, Settings(ship=0.0, routed_ship=0.0))
    assert outside.route == "base"  # never outside its domain, whatever the threshold


def test_low_confidence_goes_to_an_enabled_target_only():
    model, request = fixed(fileops=0.55, math=0.45), Request("anything")
    off = Target(name="big", kind="remote", enabled=False, low_confidence=True)
    on = Target(name="big", kind="cloud", enabled=True, low_confidence=True)
    specs = (spec("fs", "fileops"),)
    settings = Settings(ship=0.6, escalate_below=0.6)
    assert decide(request, model, Registry(specialists=specs, targets=(off,)), settings).route == "default"
    d = decide(request, model, Registry(specialists=specs, targets=(on,)), settings)
    assert (d.route, d.kind, d.threshold) == ("big", "cloud", 0.6) and "cloud target big" in d.reason
    assert decide(request, model, Registry(targets=(on,)), Settings(escalate_below=0.5)).route == "default"
    assert decide(request, model, Registry(specialists=specs, targets=(on,)), Settings(ship=0.5,
                                                                                     escalate_below=0.9)).route == "fs"


def test_requests_from_chat_messages_read_user_and_system_text_and_tool_declarations():
    r = request_from([{"role": "system", "content": "sys"}, {"role": "assistant", "content": "no"},
                      {"role": "user", "content": [{"type": "text", "text": "hi"}]}],
                     [{"type": "function", "function": {"name": "ls"}}, {"name": "cd"}, "mv"])
    assert r == Request("sys\nhi", ("ls", "cd", "mv"))
    with pytest.raises(ValueError, match="tool 0 has no name"):
        request_from(None, [{"type": "function"}])


def test_only_the_end_of_a_long_request_is_read():
    from tinygpt.router.features import CHAR_GRAM_CHARS, MAX_CHARS
    tail = " ".join(f"tail{i}" for i in range(900))
    assert len(tail) > MAX_CHARS > CHAR_GRAM_CHARS
    a = featurize(Request("head " * 100 + tail), 2**16)
    assert a == featurize(Request("other " * 100 + tail), 2**16)  # before the last MAX_CHARS: not read
    short = featurize(Request("head " * 100 + tail[-MAX_CHARS + 600:]), 2**16)
    assert short != a


def test_a_request_unlike_the_training_data_or_empty_goes_to_the_generalist(model):
    assert 0 < model.meta.min_coverage < 1
    reg = Registry(specialists=(spec("fs", "fileops"),), generalist="base")
    seen = decide(Request(" ".join(FILLER[:6]), ("mv",)), model, reg)
    assert seen.route == "fs" and model.coverage(Request(" ".join(FILLER[:6]), ("mv",))) > model.meta.min_coverage
    strange = Request("Καλημέρα σας, τι ώρα κλείνει το φαρμακείο σήμερα;", ())
    assert model.coverage(strange) < model.meta.min_coverage
    d = decide(strange, model, reg)
    assert (d.route, d.kind, d.threshold) == ("base", "generalist", model.meta.min_coverage)
    assert "unlike the training data" in d.reason
    d = decide(Request("  \n"), model, reg)
    assert d.route == "base" and "empty request" in d.reason


def test_balanced_training_keeps_a_small_domain_from_being_swamped():
    # 100 of 600 general requests offer mv too: unweighted they outvote the 12 fileops ones (p ~ 12/112); with
    # each domain weighing alike, mv is fileops's (p ~ 1 / (1 + 100/600))
    big = [Example(Request("", ("mv",) if i % 6 == 0 else ("forecast",)), "general", f"g{i}") for i in range(600)]
    small = [Example(Request("", ("mv",)), "fileops", f"f{i}") for i in range(12)]
    probe = Request("", ("mv",))
    options = TrainOptions(dim=2**12, steps=300, text_only=False, calibration=0, test=0)
    balanced = train(big + small, options)
    plain = train(big + small, TrainOptions(**{**options.__dict__, "balanced": False}))
    assert balanced.probs(probe)[balanced.domains.index("fileops")] > 0.75
    assert plain.probs(probe)[plain.domains.index("fileops")] < 0.2
