"""The shop task families: each draws one task on a random shop and writes its gold solution.

A family is a function (rng, world) -> Plan | None (None: this shop has nothing it can ask about). Most families
make the model use what an earlier call returned: the sku `search_products` shows is the one to add, the prices
it shows pick the cheapest, its stock says how many to buy, `view_cart` shows what to remove, `list_orders` which
order to cancel, and in the two-turn families the second turn builds on the first (the product added, the order
placed). Every turn's gold ends with a call that changes the shop (add, remove, checkout, cancel), so the end
state tells a finished turn from one stopped a call short. This module does not check episodes or assign splits
(shop_suite.py, generated.py).
"""
from __future__ import annotations

import random

from tinygpt.evals.generated import Plan, c, one_turn
from tinygpt.evals.shop_world import World, article, plural


def some(rng: random.Random, n: int, name: str) -> str:
    """'a red mug' / 'one red mug' / '3 red mugs'."""
    if n > 1:
        return f"{n} {plural(name)}"
    return article(name) if rng.random() < 0.7 else f"one {name}"


def free(world: World, p: dict) -> int:
    """How many more of `p` the cart can take."""
    return p["stock"] - world.cart.get(p["sku"], 0)


def next_order(world: World) -> str:
    return f"o{len(world.orders) + 1}"


def cart_lines(world: World) -> list[dict]:
    return [{**world.product(s), "quantity": n} for s, n in world.cart.items()]


def in_stock_pick(rng: random.Random, world: World, most: int) -> tuple[dict, int] | None:
    """A product in stock and a quantity of 1..`most` (at most its stock), for a shop with an empty cart."""
    options = [p for p in world.products if p["stock"] >= 1]
    if world.cart or not options:
        return None
    p = rng.choice(options)
    return p, rng.randint(1, min(most, p["stock"]))


def buy_named(rng: random.Random, world: World) -> Plan | None:
    picked = in_stock_pick(rng, world, 3)
    if picked is None:
        return None
    p, n = picked
    what, total, oid = some(rng, n, p["name"]), n * p["price"], next_order(world)
    them = "them" if n > 1 else "it"
    prompt, asks = rng.choice(((f"Buy {what} for me.", False),
                               (f"I want to order {what}. Place the order and tell me the total.", True),
                               (f"Please get me {what}: put {them} in the cart and check out.", False),
                               (f"Order {what}, please. What did it cost?", True)))
    return one_turn(prompt, [c("search_products", query=p["name"]), c("add_to_cart", sku=p["sku"], quantity=n),
                             c("checkout"), f"Ordered {what} (order {oid}), total ${total}."],
                    (str(total),) if asks else ())


def add_named(rng: random.Random, world: World) -> Plan | None:
    options = [p for p in world.products if free(world, p) >= 1]
    if not options:
        return None
    p = rng.choice(options)
    n = rng.randint(1, min(3, free(world, p)))
    what = some(rng, n, p["name"])
    prompt = rng.choice((f"Add {what} to my cart.", f"Put {what} in my cart, please.",
                         f"Could you add {what} to the cart?", f"I'd like {what} in my cart."))
    return one_turn(prompt, [c("search_products", query=p["name"]), c("add_to_cart", sku=p["sku"], quantity=n),
                             f"Added {what} to your cart."])


def add_by_price(rng: random.Random, world: World) -> Plan | None:
    cheapest = rng.random() < 0.6
    options = []
    for kind in world.kinds():
        ranked = sorted(world.of_kind(kind), key=lambda p: p["price"], reverse=not cheapest)
        if len(ranked) >= 2 and free(world, ranked[0]) >= 1:
            options.append((kind, ranked[0]))
    if not options:
        return None
    kind, p = rng.choice(options)
    word = "cheapest" if cheapest else "most expensive"
    prompt = rng.choice((f"Add the {word} {kind} you have to my cart and tell me its price.",
                         f"Which {kind} is the {word}? Put one in my cart and tell me what it costs.",
                         f"Find the {word} {kind} and add one to my cart. How much is it?"))
    return one_turn(prompt, [c("search_products", query=kind), c("add_to_cart", sku=p["sku"], quantity=1),
                             f"Added the {p['name']}, the {word} {kind}, at ${p['price']}."], (str(p["price"]),))


def buy_all_stock(rng: random.Random, world: World) -> Plan | None:
    options = [p for p in world.products if p["stock"] >= 2]
    if world.cart or not options:
        return None
    p = rng.choice(options)
    n, name, oid = p["stock"], p["name"], next_order(world)
    prompt, asks = rng.choice(((f"Buy all the {plural(name)} you have left.", False),
                               (f"How many {plural(name)} are in stock? Order all of them.", True),
                               (f"I want every {name} you have. Order them all and tell me how many.", True)))
    return one_turn(prompt, [c("search_products", query=name), c("add_to_cart", sku=p["sku"], quantity=n),
                             c("checkout"), f"Ordered all {n} {plural(name)} (order {oid}) for ${n * p['price']}."],
                    (str(n),) if asks else ())


def remove_by_price(rng: random.Random, world: World) -> Plan | None:
    cheapest = rng.random() < 0.5
    lines = sorted(cart_lines(world), key=lambda x: x["price"], reverse=not cheapest)
    if len(lines) < 2 or lines[0]["price"] == lines[1]["price"]:
        return None
    p = lines[0]
    word = "cheapest" if cheapest else "most expensive"
    prompt, asks = rng.choice(((f"Remove the {word} item from my cart.", False),
                               (f"Take the {word} thing out of my cart and tell me what it was.", True),
                               (f"My cart costs too much. Drop the {word} product in it.", False)))
    return one_turn(prompt, [c("view_cart"), c("remove_from_cart", sku=p["sku"]),
                             f"Removed the {p['name']} (${p['price']} each) from your cart."],
                    (p["name"],) if asks else ())


def checkout_cart(rng: random.Random, world: World) -> Plan | None:
    if not world.cart:
        return None
    total = sum(p["price"] * p["quantity"] for p in cart_lines(world))
    oid = next_order(world)
    prompt, answer = rng.choice((("Check out my cart and tell me the total.", str(total)),
                                 ("Place the order for what is in my cart. How much was it?", str(total)),
                                 ("I'm done shopping. Check out, please, and give me the order number.", oid)))
    return one_turn(prompt, [c("checkout"), f"Placed order {oid}, total ${total}."], (answer,))


def cancel_containing(rng: random.Random, world: World) -> Plan | None:
    placed = world.placed()
    options = [(o, i) for o in placed for i in o["items"]
               if sum(i["sku"] in [j["sku"] for j in other["items"]] for other in placed) == 1]
    if not options:
        return None
    order, item = rng.choice(options)
    name, oid = item["name"], order["order_id"]
    prompt, asks = rng.choice(((f"Cancel the order that has the {name} in it.", False),
                               (f"I don't want the {name} I ordered any more. Cancel that order.", False),
                               (f"Which of my orders has the {name}? Cancel it and tell me its id.", True)))
    return one_turn(prompt, [c("list_orders"), c("cancel_order", order_id=oid),
                             f"Cancelled order {oid}, which had the {name}."], (oid,) if asks else ())


def swap_item(rng: random.Random, world: World) -> Plan | None:
    options = [(world.product(s), b) for s, n in world.cart.items() for b in world.of_kind(world.product(s)["kind"])
               if b["sku"] not in world.cart and b["stock"] >= n]
    if not options:
        return None
    a, b = rng.choice(options)
    n = world.cart[a["sku"]]
    prompt = rng.choice((f"Swap the {a['name']} in my cart for the {b['name']}.",
                         f"Replace the {a['name']} in my cart with the {b['name']}, same quantity.",
                         f"I changed my mind about the {a['name']} in my cart; I want the {b['name']} instead."))
    return one_turn(prompt, [c("view_cart"), c("search_products", query=b["name"]),
                             c("remove_from_cart", sku=a["sku"]), c("add_to_cart", sku=b["sku"], quantity=n),
                             f"Swapped: {n} x {b['name']} in place of the {a['name']}."])


def add_then_buy(rng: random.Random, world: World) -> Plan | None:
    options = [p for p in world.products if p["stock"] >= 1]
    if world.cart or len(options) < 2:
        return None
    a, b = rng.sample(options, 2)
    na, nb = rng.randint(1, min(2, a["stock"])), rng.randint(1, min(2, b["stock"]))
    total = na * a["price"] + nb * b["price"]
    first = rng.choice((f"Put {some(rng, na, a['name'])} in my cart. What does one cost?",
                        f"Add {some(rng, na, a['name'])} to my cart and tell me the price of one."))
    second = rng.choice((f"Also add {some(rng, nb, b['name'])}, then check out and tell me the total.",
                         f"Now add {some(rng, nb, b['name'])} too and place the order. What is the total?"))
    return Plan((first, second),
                ((c("search_products", query=a["name"]), c("add_to_cart", sku=a["sku"], quantity=na),
                  f"Added. One {a['name']} costs ${a['price']}."),
                 (c("search_products", query=b["name"]), c("add_to_cart", sku=b["sku"], quantity=nb), c("checkout"),
                  f"Order {next_order(world)} is placed; the total is ${total}.")),
                ((str(a["price"]),), (str(total),)))


def buy_then_cancel(rng: random.Random, world: World) -> Plan | None:
    picked = in_stock_pick(rng, world, 2)
    if picked is None:
        return None
    p, n = picked
    what, oid = some(rng, n, p["name"]), next_order(world)
    first = rng.choice((f"Order {what} for me and tell me the order number.",
                        f"Buy {what}. What is the order id?"))
    second = rng.choice(("Actually, cancel that order.", "I changed my mind. Please cancel it.",
                         "Cancel the order you just placed."))
    return Plan((first, second),
                ((c("search_products", query=p["name"]), c("add_to_cart", sku=p["sku"], quantity=n), c("checkout"),
                  f"Ordered {what}: order {oid}, ${n * p['price']}."),
                 (c("cancel_order", order_id=oid), f"Order {oid} is cancelled.")),
                ((oid,), ()))


FAMILIES = {f.__name__.replace("_", "-"): f for f in (
    buy_named, add_named, add_by_price, buy_all_stock, remove_by_price, checkout_cart, cancel_containing,
    swap_item, add_then_buy, buy_then_cancel)}
