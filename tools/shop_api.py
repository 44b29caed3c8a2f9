"""A small shop as a tool backend: a product catalogue, a cart and placed orders, all in memory.

`Shop` holds products (short sku like `p12`, a name such as "red mug", a price in whole dollars, a stock count),
a cart (sku -> quantity) and orders (`o1`, `o2`, ...: items, total, status placed | cancelled). Its seven tool
methods are documented for the schema reader (tools/docstrings.py); a wrong call returns `{"error": ...}` saying
what to do instead and never raises. `to_config()` / `from_config()` are its JSON initial state, `state()` the
normalized value an end-state checker compares. It does NOT generate shops or tasks (evals/shop_world.py) and
keeps no payment, user or address data.
"""
from __future__ import annotations

import copy
from typing import Optional

from tinygpt.tools.registry import DEFAULT_MAX_OUTPUT_CHARS, DEFAULT_TIMEOUT_S, Toolset

SHOP_TOOLS = ("search_products", "add_to_cart", "remove_from_cart", "view_cart", "checkout", "list_orders",
              "cancel_order")


class Shop:
    """The shop's state and its tools (see the module docstring)."""

    def __init__(self, products: list[dict], cart: dict[str, int], orders: list[dict]) -> None:
        self.products = {p["sku"]: dict(p) for p in products}
        self.cart = dict(cart)
        self.orders = [copy.deepcopy(o) for o in orders]

    @classmethod
    def from_config(cls, config: dict) -> "Shop":
        """A shop from its JSON config ({"products": [...], "cart": {...}, "orders": [...]}); ValueError if the
        config is malformed."""
        try:
            products, cart, orders = config["products"], config.get("cart", {}), config.get("orders", [])
            for p in products:
                if not (isinstance(p["sku"], str) and isinstance(p["name"], str) and isinstance(p["price"], int)
                        and isinstance(p["stock"], int)):
                    raise ValueError(f"product {p!r} needs a string sku and name and integer price and stock")
            shop = cls(products, cart, orders)
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a shop config (expected products with sku, name, price, stock; a cart of "
                             f"sku -> quantity; orders): missing or wrong {exc}") from None
        unknown = [s for s in shop.cart if s not in shop.products]
        if unknown:
            raise ValueError(f"the cart holds sku {unknown[0]!r}, which is not a product")
        return shop

    def to_config(self) -> dict:
        """The whole shop as a JSON value (what `from_config` reads back)."""
        return {"products": [dict(p) for p in self.products.values()], "cart": dict(self.cart),
                "orders": copy.deepcopy(self.orders)}

    def state(self) -> dict:
        """The normalized state an end-state check compares: products and orders by id, the cart by sku."""
        return {"products": {s: {k: v for k, v in p.items() if k != "sku"} for s, p in sorted(self.products.items())},
                "cart": dict(sorted(self.cart.items())),
                "orders": {o["order_id"]: {k: v for k, v in o.items() if k != "order_id"} for o in self.orders}}

    def search_products(self, query: str) -> dict:
        """Find products whose name contains the query (any case). An empty query lists every product.

        Args:
            query: Part of a product name, like "mug" or "red mug".
        """
        q = query.strip().lower()
        return {"products": [dict(p) for p in self.products.values() if q in p["name"].lower()]}

    def add_to_cart(self, sku: str, quantity: int = 1) -> dict:
        """Put a product in the cart, or more of it if it is already there.

        Args:
            sku: The product's sku, like "p12" (search_products shows it).
            quantity: How many to add.
        """
        product = self.products.get(sku)
        if product is None:
            return _no_product(sku)
        if quantity < 1:
            return {"error": f"quantity must be at least 1, got {quantity}"}
        have = self.cart.get(sku, 0)
        if product["stock"] == 0:
            return {"error": f"{sku} ({product['name']}) is out of stock"}
        if have + quantity > product["stock"]:
            return {"error": f"only {product['stock']} {product['name']} in stock and {have} in your cart; "
                             f"add at most {max(product['stock'] - have, 0)}"}
        self.cart[sku] = have + quantity
        return {"added": sku, "in_cart": self.cart[sku]}

    def remove_from_cart(self, sku: str) -> dict:
        """Take a product out of the cart (all of it).

        Args:
            sku: The sku of a product in the cart, like "p12" (view_cart shows them).
        """
        if sku not in self.cart:
            return {"error": f"{sku} is not in your cart; view_cart shows what is"}
        del self.cart[sku]
        return {"removed": sku}

    def view_cart(self) -> dict:
        """Show the cart: each product with its price and quantity, and the total."""
        items = [{**self._line(sku, n), "price": self.products[sku]["price"]} for sku, n in self.cart.items()]
        return {"items": items, "total": self._total(self.cart)}

    def checkout(self) -> dict:
        """Order everything in the cart. Empties the cart and returns the order id and total."""
        if not self.cart:
            return {"error": "your cart is empty; add products with add_to_cart first"}
        for sku, n in self.cart.items():
            product = self.products[sku]
            if n > product["stock"]:
                return {"error": f"only {product['stock']} {product['name']} in stock; remove {sku} and add "
                                 "fewer"}
        order_id = f"o{len(self.orders) + 1}"
        items = [{**self._line(sku, n), "price": self.products[sku]["price"]} for sku, n in self.cart.items()]
        total = self._total(self.cart)
        for sku, n in self.cart.items():
            self.products[sku]["stock"] -= n
        self.orders.append({"order_id": order_id, "items": items, "total": total, "status": "placed"})
        self.cart = {}
        return {"order_id": order_id, "total": total}

    def list_orders(self) -> dict:
        """Show your orders: id, products, total and status (placed or cancelled)."""
        return {"orders": [{"order_id": o["order_id"], "items": [{k: v for k, v in i.items() if k != "price"}
                                                                 for i in o["items"]],
                            "total": o["total"], "status": o["status"]} for o in self.orders]}

    def cancel_order(self, order_id: str) -> dict:
        """Cancel a placed order; its products go back in stock.

        Args:
            order_id: The order's id, like "o2" (list_orders shows them).
        """
        order = next((o for o in self.orders if o["order_id"] == order_id), None)
        if order is None:
            return {"error": f"no order {order_id!r}; list_orders shows your orders"}
        if order["status"] == "cancelled":
            return {"error": f"order {order_id} is already cancelled"}
        order["status"] = "cancelled"
        for item in order["items"]:
            if item["sku"] in self.products:
                self.products[item["sku"]]["stock"] += item["quantity"]
        return {"order_id": order_id, "status": "cancelled"}

    def _line(self, sku: str, quantity: int) -> dict:
        return {"sku": sku, "name": self.products[sku]["name"], "quantity": quantity}

    def _total(self, items: dict[str, int]) -> int:
        return sum(self.products[sku]["price"] * n for sku, n in items.items())


def _no_product(sku: str) -> dict:
    return {"error": f"no product with sku {sku!r}; search_products shows the skus"}


def shop_toolset(shop: Shop, *, timeout_s: Optional[float] = DEFAULT_TIMEOUT_S,
                 max_output_chars: int = DEFAULT_MAX_OUTPUT_CHARS) -> Toolset:
    """A Toolset of the shop's seven tools, acting on `shop`."""
    return Toolset([getattr(shop, name) for name in SHOP_TOOLS], timeout_s=timeout_s,
                   max_output_chars=max_output_chars)


_DEMO = {
    "products": [
        {"sku": "p11", "name": "red mug", "price": 8, "stock": 5},
        {"sku": "p14", "name": "blue mug", "price": 9, "stock": 2},
        {"sku": "p23", "name": "green notebook", "price": 4, "stock": 10},
        {"sku": "p27", "name": "black notebook", "price": 6, "stock": 0},
        {"sku": "p35", "name": "steel bottle", "price": 15, "stock": 3},
        {"sku": "p38", "name": "glass bottle", "price": 12, "stock": 4},
        {"sku": "p42", "name": "yellow lamp", "price": 25, "stock": 1},
        {"sku": "p51", "name": "white towel", "price": 7, "stock": 6},
    ],
    "cart": {"p23": 2},
    "orders": [{"order_id": "o1", "items": [{"sku": "p11", "name": "red mug", "quantity": 1, "price": 8}],
                "total": 8, "status": "placed"}],
}


def demo_config() -> dict:
    """A fresh copy of the fixed demo shop: eight products, two notebooks in the cart and one placed order."""
    return copy.deepcopy(_DEMO)
