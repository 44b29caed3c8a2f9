"""The shop suite: multi-turn shopping tasks (catalogue, cart, orders) on a small in-memory shop, judged by end state.

Tasks are generated from a fixed seed (shop_tasks.py families on shop_world.py shops) by the machinery all
generated suites share (generated.py: content-hash splits that never overlap, filled to 2000 / 200 / 200 tasks;
train is large because it feeds the pretraining corpus). An episode runs on a fresh `Shop` of the task's world
(tools/shop_api.py); after each user turn the checker compares the whole shop (stock, cart, orders) with the
state the gold calls leave and looks in the final answer for what the turn must say. It does not run the agent.
"""
from __future__ import annotations


from tinygpt.evals import generated
from tinygpt.evals.generated import Plan, content_hash, says, split_of  # noqa: F401  (the suite's surface)
from tinygpt.evals.shop_tasks import FAMILIES
from tinygpt.evals.shop_world import make_world
from tinygpt.tools.shop_api import Shop, shop_toolset

NAME = "shop"
SPLITS = generated.SPLITS
SYSTEM = ("You help a customer of a shop through the tools: search_products finds a product's sku, and the skus "
          "and order ids the tools return are what later calls take. When the job is done, answer briefly.")
SEED = 14
QUOTAS = {"train": 3000, "validation": 200, "heldout": 200}


def difference(want: dict, got: dict) -> str:
    """The first difference between two shop states (Shop.state()), in words ("" when equal)."""
    for sku in sorted(set(want["products"]) | set(got["products"])):
        a, b = want["products"].get(sku), got["products"].get(sku)
        if a is None or b is None:
            return f"product {sku} should {'not ' if a is None else ''}exist"
        if a != b:
            field = next(k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k))
            return f"product {sku} should have {field} {a.get(field)}, not {b.get(field)}"
    for sku in sorted(set(want["cart"]) | set(got["cart"])):
        a, b = want["cart"].get(sku, 0), got["cart"].get(sku, 0)
        if a != b:
            return f"the cart should hold {a} of {sku}, not {b}"
    for oid in sorted(set(want["orders"]) | set(got["orders"])):
        a, b = want["orders"].get(oid), got["orders"].get(oid)
        if a is None or b is None:
            return f"order {oid} should {'not ' if a is None else ''}exist"
        if a["status"] != b["status"]:
            return f"order {oid} should be {a['status']}, not {b['status']}"
        if a != b:
            return f"order {oid} should hold other items"
    return ""


DOMAIN = generated.Domain(
    name=NAME, families=FAMILIES, make_world=make_world, backend=Shop.from_config, state=Shop.state,
    difference=difference, toolset=lambda shop: shop_toolset(shop, timeout_s=None), noun="shop")


SUITE = generated.Suite(DOMAIN, seed=SEED, quotas=QUOTAS)
tasks, start, judge, replay = SUITE.tasks, SUITE.start, SUITE.judge, SUITE.replay
