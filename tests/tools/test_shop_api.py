"""The shop backend: tools that change stock, cart and orders as documented, errors a model can act on (never
raised), a config that round-trips, and a Toolset whose schemas come from the docstrings."""
import pytest

from tinygpt.tools.shop_api import SHOP_TOOLS, Shop, demo_config, shop_toolset


@pytest.fixture
def shop():
    return Shop.from_config(demo_config())


def test_search_matches_part_of_a_name_in_any_case(shop):
    assert [p["sku"] for p in shop.search_products("MUG")["products"]] == ["p11", "p14"]
    assert shop.search_products("red mug")["products"] == [{"sku": "p11", "name": "red mug", "price": 8, "stock": 5}]
    assert shop.search_products("sofa") == {"products": []}
    assert len(shop.search_products("")["products"]) == 8


def test_add_checkout_and_cancel_move_stock(shop):
    assert shop.add_to_cart("p11", 2) == {"added": "p11", "in_cart": 2}
    assert shop.view_cart() == {"items": [{"sku": "p23", "name": "green notebook", "quantity": 2, "price": 4},
                                          {"sku": "p11", "name": "red mug", "quantity": 2, "price": 8}],
                                "total": 24}
    assert shop.checkout() == {"order_id": "o2", "total": 24}
    assert shop.cart == {} and shop.products["p11"]["stock"] == 3 and shop.products["p23"]["stock"] == 8
    assert shop.list_orders()["orders"][1] == {
        "order_id": "o2", "total": 24, "status": "placed",
        "items": [{"sku": "p23", "name": "green notebook", "quantity": 2}, {"sku": "p11", "name": "red mug",
                                                                            "quantity": 2}]}
    assert shop.cancel_order("o2") == {"order_id": "o2", "status": "cancelled"}
    assert shop.products["p11"]["stock"] == 5 and shop.products["p23"]["stock"] == 10
    assert shop.state()["orders"]["o2"]["status"] == "cancelled"


def test_remove_from_cart_takes_all_of_it(shop):
    assert shop.remove_from_cart("p23") == {"removed": "p23"}
    assert shop.view_cart() == {"items": [], "total": 0}


@pytest.mark.parametrize("call, message", [
    (lambda s: s.add_to_cart("p99", 1), "no product with sku 'p99'; search_products shows the skus"),
    (lambda s: s.add_to_cart("p11", 0), "quantity must be at least 1"),
    (lambda s: s.add_to_cart("p14", 3), "only 2 blue mug in stock and 0 in your cart; add at most 2"),
    (lambda s: s.add_to_cart("p23", 9), "only 10 green notebook in stock and 2 in your cart; add at most 8"),
    (lambda s: s.add_to_cart("p27", 1), "p27 (black notebook) is out of stock"),
    (lambda s: s.remove_from_cart("p11"), "p11 is not in your cart; view_cart shows what is"),
    (lambda s: s.cancel_order("o7"), "no order 'o7'; list_orders shows your orders"),
    (lambda s: s.cancel_order("p11"), "no order 'p11'"),
])
def test_wrong_calls_are_errors_that_change_nothing(shop, call, message):
    before = shop.state()
    result = call(shop)
    assert message in result["error"]
    assert shop.state() == before


def test_empty_cart_and_double_cancel_are_errors(shop):
    shop.remove_from_cart("p23")
    assert "cart is empty" in shop.checkout()["error"]
    assert shop.cancel_order("o1")["status"] == "cancelled"
    assert shop.cancel_order("o1") == {"error": "order o1 is already cancelled"}
    assert shop.products["p11"]["stock"] == 6  # restored once, not twice


def test_config_round_trips_and_bad_configs_are_refused(shop):
    shop.add_to_cart("p35", 1)
    shop.checkout()
    again = Shop.from_config(shop.to_config())
    assert again.state() == shop.state() and again.checkout()["error"]
    with pytest.raises(ValueError, match="not a shop config"):
        Shop.from_config({"items": []})
    with pytest.raises(ValueError, match="integer price"):
        Shop.from_config({"products": [{"sku": "p1", "name": "x", "price": "3", "stock": 1}]})
    with pytest.raises(ValueError, match="cart holds sku 'p9'"):
        Shop.from_config({"products": [], "cart": {"p9": 1}})


def test_demo_config_is_a_fresh_copy():
    a = demo_config()
    a["products"].clear()
    assert len(demo_config()["products"]) == 8


def test_toolset_schemas_come_from_the_docstrings(shop):
    tools = shop_toolset(shop, timeout_s=None)
    assert tools.names == list(SHOP_TOOLS)
    add = tools.get("add_to_cart").schema()["function"]
    assert add["description"] == "Put a product in the cart, or more of it if it is already there."
    assert add["parameters"]["required"] == ["sku"]
    assert add["parameters"]["properties"]["quantity"] == {"type": "integer", "description": "How many to add.",
                                                           "default": 1}
    assert "search_products" in add["parameters"]["properties"]["sku"]["description"]
    assert tools.get("view_cart").schema()["function"]["parameters"]["properties"] == {}


def test_toolset_reports_model_faults_as_error_results(shop):
    tools = shop_toolset(shop, timeout_s=None)
    result = tools.call("add_to_cart", {"sku": "p11", "quantity": 1})
    assert not result.is_error and result.content == '{"added": "p11", "in_cart": 1}'
    assert tools.call("add_to_cart", {"sku": "p99"}).is_error
    assert tools.call("add_to_cart", {"sku": "p11", "quantity": "two"}).is_error
    assert tools.call("checkout", {"now": True}).is_error
    assert shop.cart == {"p23": 2, "p11": 1}
