"""The shop suite: enough tasks in every category, splits that never overlap, gold solutions the checker passes and
broken ones it fails (every task), later arguments that come from earlier results, and a checker that judges end
state and answers."""
import json
import random
import time
from collections import Counter

import pytest

from tinygpt.evals import shop_suite
from tinygpt.evals.shop_tasks import FAMILIES
from tinygpt.evals.shop_world import COLOURS, KINDS, make_world
from tinygpt.evals.suite import drop_last_call, load_suite
from tinygpt.tools.shop_api import Shop

ALL = {split: shop_suite.tasks(split) for split in shop_suite.SPLITS}
STATE_CHANGING = {"add_to_cart", "remove_from_cart", "checkout", "cancel_order"}


def calls(turn):
    return [call for step in turn if not isinstance(step, str) for call in step]


def test_split_sizes_and_every_category_in_every_split():
    assert {s: len(t) for s, t in ALL.items()} == {"train": 3000, "validation": 200, "heldout": 200}
    assert len(FAMILIES) >= 8
    for split, tasks in ALL.items():
        counts = Counter(t.category for t in tasks)
        assert set(counts) == set(FAMILIES) and min(counts.values()) >= (100 if split == "train" else 8), counts


def test_splits_never_overlap_by_id_or_by_content():
    ids = {s: {t.id for t in tasks} for s, tasks in ALL.items()}
    hashes = {s: {t.data.content_hash for t in tasks} for s, tasks in ALL.items()}
    for a in shop_suite.SPLITS:
        assert len(ids[a]) == len(ALL[a]) and len(hashes[a]) == len(ALL[a])
        for b in shop_suite.SPLITS:
            if a < b:
                assert not ids[a] & ids[b] and not hashes[a] & hashes[b]
    seen = {}
    for split, tasks in ALL.items():
        for t in tasks:
            plan = shop_suite.Plan(t.turns, t.gold, t.data.answers)
            digest = shop_suite.content_hash(t.category, plan, t.data.world)
            assert digest == t.data.content_hash and shop_suite.split_of(digest) == split == t.split
            key = json.dumps([t.turns, t.data.world], sort_keys=True)
            assert seen.setdefault(key, split) == split


def test_generation_is_deterministic_and_quick():
    start = time.perf_counter()
    again = shop_suite.SUITE.generate()
    assert time.perf_counter() - start < 3
    assert {s: [t.id for t in again[s]] for s in shop_suite.SPLITS} == {s: [t.id for t in ALL[s]] for s in ALL}


@pytest.mark.parametrize("split", shop_suite.SPLITS)
def test_every_gold_solution_passes_and_dropping_its_last_call_fails(split):
    for task in ALL[split]:
        assert all(turn and calls(turn)[-1].name in STATE_CHANGING for turn in task.gold), task.id
        assert all(c.passed for c in shop_suite.replay(task, task.gold, tools=False)), task.id
        broken = tuple(drop_last_call(turn) for turn in task.gold)
        checks = shop_suite.replay(task, broken, tools=False)
        assert not all(c.passed for c in checks), task.id
        assert any("shop differs" in c.reason for c in checks), task.id


def test_gold_calls_are_valid_tool_calls_through_the_toolset():
    for split, tasks in ALL.items():
        for category in FAMILIES:
            for task in [t for t in tasks if t.category == category][:2]:
                episode = shop_suite.start(task)
                for turn in task.gold:
                    for call in calls(turn):
                        result = episode.toolset.call(call.name, call.arguments)
                        assert not result.is_error, (task.id, call, result.content)
                assert all(c.passed for c in shop_suite.replay(task, task.gold))


def test_later_arguments_come_from_earlier_results():
    """Every sku added was in the latest search's or cart view's result, every order cancelled in an order list or
    a checkout's result, and most families need such a value."""
    uses = Counter()
    for task in ALL["validation"]:
        shop = Shop.from_config(task.data.world)
        shown: set[str] = set()
        for turn in task.gold:
            for call in calls(turn):
                if call.name in ("add_to_cart", "remove_from_cart", "cancel_order"):
                    value = call.arguments.get("sku", call.arguments.get("order_id"))
                    assert value in shown, (task.id, call)
                    uses[task.category] += 1
                result = getattr(shop, call.name)(**call.arguments)
                text = json.dumps(result)
                shown |= {w.strip('"') for w in text.replace(",", " ").replace("}", " ").split()}
    assert len(uses) >= len(FAMILIES) // 2 + 1


def test_an_added_sku_is_one_the_search_returned():
    task = next(t for t in ALL["validation"] if t.category == "add-by-price")
    search, add = calls(task.gold[0])
    found = Shop.from_config(task.data.world).search_products(**search.arguments)["products"]
    assert len(found) >= 2 and add.arguments["sku"] in [p["sku"] for p in found]
    want = min if "cheapest" in task.turns[0] else max
    assert add.arguments["sku"] == want(found, key=lambda p: p["price"])["sku"]


def test_two_turn_tasks_build_on_the_first_turn():
    task = next(t for t in ALL["validation"] if t.category == "buy-then-cancel")
    checkout = calls(task.gold[0])[-1]
    shop = Shop.from_config(task.data.world)
    for call in calls(task.gold[0]):
        result = getattr(shop, call.name)(**call.arguments)
    assert checkout.name == "checkout" and calls(task.gold[1])[0].arguments == {"order_id": result["order_id"]}
    checks = shop_suite.replay(task, (task.gold[0], ("Done.",)))
    assert checks[0].passed and not checks[1].passed


def test_the_checker_reads_state_and_answer():
    task = next(t for t in ALL["validation"] if t.category == "checkout-cart" and t.data.answers[0][0][0] != "o")
    (total,) = task.data.answers[0]
    shop = Shop.from_config(task.data.world)
    shop.checkout()
    assert shop_suite.judge(task, 0, shop.state(), f"The total was ${total}.").passed
    check = shop_suite.judge(task, 0, shop.state(), "Done.")
    assert not check.passed and "does not say" in check.reason
    assert not shop_suite.judge(task, 0, shop.state(), f"The total was ${total}0.").passed
    untouched = Shop.from_config(task.data.world).state()
    check = shop_suite.judge(task, 0, untouched, f"${total}")
    assert not check.passed and "shop differs" in check.reason


def test_difference_names_what_differs():
    want = Shop.from_config({"products": [{"sku": "p1", "name": "red mug", "price": 3, "stock": 2}],
                             "cart": {"p1": 1}}).state()
    got = json.loads(json.dumps(want))
    assert shop_suite.difference(want, got) == ""
    got["cart"] = {}
    assert shop_suite.difference(want, got) == "the cart should hold 1 of p1, not 0"
    got["products"]["p1"]["stock"] = 1
    assert shop_suite.difference(want, got) == "product p1 should have stock 2, not 1"
    got = json.loads(json.dumps(want))
    got["orders"]["o1"] = {"items": [], "total": 0, "status": "placed"}
    assert shop_suite.difference(want, got) == "order o1 should not exist"


def test_worlds_have_unique_findable_names():
    words = list(COLOURS) + [v for _, extra in KINDS.values() for v in extra] + list(KINDS)
    assert not [(a, b) for a in set(words) for b in set(words) if a != b and a in b]
    rng = random.Random(0)
    for _ in range(200):
        world = make_world(rng)
        names = [p["name"] for p in world.products]
        assert 8 <= len(names) <= 14 and len(set(names)) == len(names)
        assert len({p["sku"] for p in world.products}) == len(names)
        shop = Shop.from_config(world.config())
        assert all(shop.search_products(n)["products"][0]["name"] == n for n in names)
        assert all(len(shop.search_products(n)["products"]) == 1 for n in names)
        assert all(n <= p["stock"] for p in world.products for n in [world.cart.get(p["sku"], 0)])


def test_the_suite_is_registered():
    suite = load_suite("shop")
    assert suite.NAME == "shop" and len(suite.tasks("heldout")) == 200 and suite.SYSTEM
