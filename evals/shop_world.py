"""Random small shops for the shop suite: a seeded `World` in the shape `Shop.from_config` reads.

A world has 8-14 products: 3-5 kinds ("mug", "notebook", ...) in 2-4 variants each ("red mug", "steel mug"),
with distinct prices inside a kind, random short skus (`p37`) and stock 0-9; sometimes a pre-filled cart and
one or two earlier orders. No word of the vocabulary contains another, so searching a product's name finds only
it and searching a kind finds only that kind. It does not make tasks or run tools.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field

COLOURS = ("red", "blue", "green", "black", "white", "yellow", "grey", "pink", "purple", "orange")
KINDS = {  # kind -> (price range in dollars, variants beside the colours)
    "mug": ((4, 15), ("steel", "glass")),
    "notebook": ((2, 12), ("small", "large")),
    "bottle": ((6, 25), ("steel", "glass")),
    "lamp": ((15, 60), ("small", "large")),
    "pen": ((1, 6), ("steel",)),
    "shirt": ((10, 40), ("cotton", "small", "large")),
    "towel": ((5, 20), ("cotton", "large")),
    "candle": ((3, 14), ("small", "large")),
    "plate": ((4, 18), ("glass", "wooden")),
    "backpack": ((20, 80), ("leather", "small")),
    "jar": ((3, 12), ("glass", "small")),
    "bowl": ((4, 16), ("wooden", "glass")),
    "blanket": ((18, 70), ("cotton", "large")),
    "clock": ((12, 45), ("wooden", "steel")),
    "umbrella": ((8, 30), ("small", "large")),
}


@dataclass
class World:
    """A shop under construction: products (dicts with sku, name, kind, price, stock), cart and orders."""

    products: list[dict] = field(default_factory=list)
    cart: dict[str, int] = field(default_factory=dict)
    orders: list[dict] = field(default_factory=list)

    def config(self) -> dict:
        """The shop as the JSON config `Shop.from_config` loads."""
        return {"products": [{k: p[k] for k in ("sku", "name", "price", "stock")} for p in self.products],
                "cart": dict(self.cart), "orders": [dict(o) for o in self.orders]}

    def product(self, sku: str) -> dict:
        return next(p for p in self.products if p["sku"] == sku)

    def of_kind(self, kind: str) -> list[dict]:
        return [p for p in self.products if p["kind"] == kind]

    def kinds(self) -> list[str]:
        return sorted({p["kind"] for p in self.products})

    def placed(self) -> list[dict]:
        return [o for o in self.orders if o["status"] == "placed"]


def make_world(rng: random.Random) -> World:
    """A random shop (see the module docstring)."""
    world = World()
    while not 8 <= len(world.products) <= 14:
        world.products = _catalogue(rng)
    if rng.random() < 0.5:
        for p in rng.sample([p for p in world.products if p["stock"] > 0], rng.choice((1, 2, 2, 3))):
            world.cart[p["sku"]] = rng.randint(1, min(2, p["stock"]))
    for i in range(rng.choice((0, 1, 1, 2))):
        world.orders.append(_order(rng, world, f"o{i + 1}"))
    return world


def _catalogue(rng: random.Random) -> list[dict]:
    skus = iter(rng.sample(range(10, 100), 20))
    products = []
    for kind in rng.sample(sorted(KINDS), rng.randint(3, 5)):
        (low, high), extra = KINDS[kind]
        variants = rng.sample(COLOURS + extra, rng.randint(2, 4))
        prices = rng.sample(range(low, high + 1), len(variants))
        for variant, price in zip(variants, prices):
            stock = 0 if rng.random() < 0.1 else rng.randint(1, 9)
            products.append({"sku": f"p{next(skus)}", "name": f"{variant} {kind}", "kind": kind, "price": price,
                             "stock": stock})
    return products


def _order(rng: random.Random, world: World, order_id: str) -> dict:
    """An earlier order of 1-2 products (stock already taken), placed or (one time in five) cancelled."""
    items = [{"sku": p["sku"], "name": p["name"], "quantity": n, "price": p["price"]}
             for p in rng.sample(world.products, rng.randint(1, 2)) for n in [rng.randint(1, 2)]]
    status = "cancelled" if rng.random() < 0.2 else "placed"
    return {"order_id": order_id, "items": items, "total": sum(i["price"] * i["quantity"] for i in items),
            "status": status}


def article(name: str) -> str:
    """'a red mug', 'an orange mug'."""
    return f"{'an' if name[0] in 'aeiou' else 'a'} {name}"


def plural(name: str) -> str:
    return name + "s"
