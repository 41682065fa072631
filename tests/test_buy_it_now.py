"""Buy-it-now against a real server and redis-server: a product open for sale is
bought at its list price outside any flash sale, under its own per-buyer limit; a
flash sale overrides it for its window only; the listing survives a rebuild of
Redis from the store; the end of the show voids its holds; the audit proves it."""

from __future__ import annotations

import asyncio
import sqlite3
from typing import Any

import httpx

from tests.support import (
    Host,
    LiveServer,
    ViewerClient,
    card_when_whole,
    create_room,
    join,
    lose_redis_data,
)


async def pinned_product(host: Host, stock: int = 10, price: int = 1000,
                         **pin: Any) -> str:
    product = await host.product(stock=stock, price=price)
    pid = str(product["product_id"])
    await host.call("POST", "/pins", {"product_id": pid, **pin}, expect=200)
    return pid


async def buy(viewer: ViewerClient, pid: str, quantity: int = 1,
              **extra: Any) -> dict[str, Any]:
    return await viewer.request("buy", product_id=pid, quantity=quantity, **extra)


def code(answer: dict[str, Any]) -> str:
    return str(answer.get("code") if answer["type"] == "error" else answer["type"])


async def test_a_pinned_product_is_bought_at_its_list_price_without_a_sale(
        server: LiveServer, http: httpx.AsyncClient) -> None:
    host = await create_room(http)
    pid = await pinned_product(host, stock=5, price=1250)
    card = await host.call("GET", f"/products/{pid}", expect=200)
    assert card["sale"] is None
    assert card["listing"] == {"open": True, "price": 1250, "currency": "USD",
                               "limit_per_buyer": 5, "held": 0, "sold": 0, "claim": None}
    viewer = await join(server, host.room_id)
    answer = await buy(viewer, pid, 2)
    assert answer["type"] == "hold", answer
    hold = answer["hold"]
    assert (hold["sale_id"], hold["unit_price"], hold["quantity"]) == (f"bn_{pid}", 1250, 2)
    placed = await viewer.request("checkout", hold_id=hold["id"])
    assert placed["type"] == "order_placed", placed
    assert (placed["order"]["sale_id"], placed["order"]["total"]) == (f"bn_{pid}", 2500)
    audit = await host.audit()
    assert audit["ok"], audit["checks"]
    stock = audit["products"][0]
    assert (stock["sold"], stock["left"], stock["sold_in_store"]) == (2, 3, 2)
    listing = audit["listings"][0]
    assert (listing["sold"], listing["held"], listing["sold_in_store"],
            listing["buyers"]) == (2, 0, 2, 1)
    await viewer.close()


async def test_a_product_not_open_for_sale_is_refused_until_the_host_opens_it(
        server: LiveServer, http: httpx.AsyncClient) -> None:
    host = await create_room(http)
    unpinned = (await host.product(stock=3))["product_id"]
    shown = await pinned_product(host, stock=3, open_for_sale=False)
    viewer = await join(server, host.room_id)
    assert code(await buy(viewer, unpinned)) == "not_on_sale"
    assert code(await buy(viewer, shown)) == "not_on_sale"
    assert code(await buy(viewer, "no-such-product")) == "product_not_found"
    card = await host.call("PUT", f"/products/{shown}/listing",
                           {"open": True, "limit_per_buyer": 2}, expect=200)
    assert card["listing"]["open"] and card["listing"]["limit_per_buyer"] == 2
    # Every viewer hears the new card.
    event = await viewer.next_event("product", where=lambda f: f["product"]["product_id"]
                                    == shown and f["product"]["listing"]["open"])
    assert event["product"]["listing"]["limit_per_buyer"] == 2
    assert code(await buy(viewer, shown, 2)) == "hold"
    assert code(await buy(viewer, shown, 1)) == "limit_reached"
    # The limit is kept when only `open` changes.
    card = await host.call("PUT", f"/products/{shown}/listing", {"open": False}, expect=200)
    assert card["listing"] == {**card["listing"], "open": False, "limit_per_buyer": 2}
    await viewer.close()


async def test_closing_keeps_the_holds_already_taken(
        server: LiveServer, http: httpx.AsyncClient) -> None:
    host = await create_room(http)
    pid = await pinned_product(host, stock=4)
    viewer = await join(server, host.room_id)
    hold = (await buy(viewer, pid))["hold"]
    await host.call("PUT", f"/products/{pid}/listing", {"open": False}, expect=200)
    assert code(await buy(viewer, pid)) == "not_on_sale"
    placed = await viewer.request("checkout", hold_id=hold["id"])
    assert placed["type"] == "order_placed", placed
    assert (await host.audit())["ok"]
    await viewer.close()


async def test_a_flash_sale_overrides_the_list_price_for_its_window_only(
        server: LiveServer, http: httpx.AsyncClient) -> None:
    host = await create_room(http)
    pid = await pinned_product(host, stock=20, price=1000)
    viewer = await join(server, host.room_id)
    # Bought once at the list price: this process remembers "no sale" for the product.
    first = await buy(viewer, pid)
    assert first["hold"]["unit_price"] == 1000
    # A sale scheduled for later: until it opens, the list price still applies.
    later = await host.sale(pid, units=5, limit=1, starts_in_s=600, price=500)
    assert code(await buy(viewer, pid)) == "hold"
    await host.call("POST", f"/sales/{later['sale_id']}/stop", expect=200)
    # A sale open now: its price and its own per-buyer limit.
    sale = await host.sale(pid, units=5, limit=1, price=500)
    in_sale = await buy(viewer, pid)
    assert (in_sale["hold"]["sale_id"], in_sale["hold"]["unit_price"]) == \
        (sale["sale_id"], 500)
    assert code(await buy(viewer, pid)) == "limit_reached"
    # Stopped: the list price again, under the listing's own count (2 of 5 so far).
    await host.call("POST", f"/sales/{sale['sale_id']}/stop", expect=200)
    after = await buy(viewer, pid, 3)
    assert (after["hold"]["sale_id"], after["hold"]["unit_price"]) == (f"bn_{pid}", 1000)
    assert code(await buy(viewer, pid)) == "limit_reached"
    # With the listing closed, a scheduled sale refuses with its own reason.
    await host.call("PUT", f"/products/{pid}/listing", {"open": False}, expect=200)
    await host.sale(pid, units=5, limit=1, starts_in_s=600, price=500)
    assert code(await buy(viewer, pid)) == "not_started"
    # A listing's id is not a sale's: it is closed, never stopped.
    await host.call("POST", f"/sales/bn_{pid}/stop", expect=404)
    assert (await host.audit())["ok"]
    await viewer.close()


async def test_many_buyers_at_once_take_exactly_the_stock(
        server: LiveServer, http: httpx.AsyncClient) -> None:
    host = await create_room(http)
    pid = await pinned_product(host, stock=7)
    crowd = await asyncio.gather(*(join(server, host.room_id) for _ in range(40)))
    answers = await asyncio.gather(*(buy(v, pid) for v in crowd))
    holds = [a["hold"] for a in answers if a["type"] == "hold"]
    assert len(holds) == 7
    assert {code(a) for a in answers if a["type"] == "error"} == {"sold_out"}
    owners = {a["hold"]["id"]: v for a, v in zip(answers, crowd, strict=True)
              if a["type"] == "hold"}
    placed = await asyncio.gather(*(owners[h["id"]].request("checkout", hold_id=h["id"])
                                    for h in holds))
    assert [p["type"] for p in placed] == ["order_placed"] * 7
    orders = await host.call("GET", "/orders", expect=200)
    assert sum(o["quantity"] for o in orders["orders"]) == 7
    audit = await host.audit()
    assert audit["ok"], audit["checks"]
    assert audit["products"][0]["left"] == 0
    await asyncio.gather(*(v.close() for v in crowd))


async def test_a_retried_buy_gets_the_same_hold(server: LiveServer,
                                                http: httpx.AsyncClient) -> None:
    host = await create_room(http)
    pid = await pinned_product(host, stock=5)
    viewer = await join(server, host.room_id)
    first = await buy(viewer, pid, request_id="same-request")
    again = await buy(viewer, pid, request_id="same-request")
    assert first["hold"] == again["hold"]
    card = await host.call("GET", f"/products/{pid}", expect=200)
    assert card["stock"]["held"] == 1 and card["listing"]["held"] == 1
    await viewer.close()


async def test_a_new_list_price_applies_to_new_holds_only(
        server: LiveServer, http: httpx.AsyncClient) -> None:
    host = await create_room(http)
    pid = await pinned_product(host, stock=5, price=1000)
    viewer = await join(server, host.room_id)
    old = (await buy(viewer, pid))["hold"]
    card = await host.call("PATCH", f"/products/{pid}", {"price": 1400}, expect=200)
    assert card["listing"]["price"] == 1400
    new = (await buy(viewer, pid))["hold"]
    assert (old["unit_price"], new["unit_price"]) == (1000, 1400)
    placed = await viewer.request("checkout", hold_id=old["id"])
    assert placed["order"]["total"] == 1000
    await viewer.close()


async def test_the_listing_and_its_buyers_survive_a_rebuild_of_redis(
        server: LiveServer, http: httpx.AsyncClient, redis_url: str) -> None:
    host = await create_room(http)
    pid = await pinned_product(host, stock=10, price=900)
    await host.call("PUT", f"/products/{pid}/listing", {"open": True, "limit_per_buyer": 2},
                    expect=200)
    closed = await pinned_product(host, stock=3, open_for_sale=False)
    viewer = await join(server, host.room_id)
    hold = (await buy(viewer, pid, 2))["hold"]
    assert (await viewer.request("checkout", hold_id=hold["id"]))["type"] == "order_placed"
    await lose_redis_data(redis_url)

    card = await card_when_whole(http, host.room_id, pid)
    assert card["listing"] == {"open": True, "price": 900, "currency": "USD",
                               "limit_per_buyer": 2, "held": 0, "sold": 2, "claim": None}
    assert card["stock"] == {"total": 10, "left": 8, "held": 0, "sold": 2}
    # The buyer's two units are remembered: the limit still holds.
    assert code(await buy(viewer, pid)) == "limit_reached"
    assert code(await buy(viewer, closed)) == "not_on_sale"
    other = await join(server, host.room_id)
    assert code(await buy(other, pid, 2)) == "hold"
    audit = await host.audit()
    assert audit["ok"], audit["checks"]
    await asyncio.gather(viewer.close(), other.close())


async def test_ending_the_show_voids_the_holds_taken_at_the_list_price(
        server: LiveServer, http: httpx.AsyncClient) -> None:
    host = await create_room(http)
    pid = await pinned_product(host, stock=6)
    viewer = await join(server, host.room_id)
    hold = (await buy(viewer, pid, 2))["hold"]
    await host.call("POST", "/end", expect=200)
    voided = await viewer.next_event("holds_voided")
    assert (voided["sale_id"], voided["reason"], voided["units"], voided["hold_ids"]) == \
        (f"bn_{pid}", "show_ended", 2, [hold["id"]])
    answer = await viewer.request("checkout", hold_id=hold["id"])
    assert answer["type"] == "error" and answer["code"] in ("sale_stopped", "show_ended")
    assert code(await buy(viewer, pid)) == "show_ended"
    await host.call("PUT", f"/products/{pid}/listing", {"open": True}, expect=409)
    card = await host.call("GET", f"/products/{pid}", expect=200)
    assert card["stock"] == {"total": 6, "left": 6, "held": 0, "sold": 0}
    assert not card["listing"]["open"]
    audit = await host.audit()
    assert audit["ok"], audit["checks"]
    await viewer.close()


async def test_bad_listing_requests_say_what_was_wrong(server: LiveServer,
                                                      http: httpx.AsyncClient) -> None:
    host = await create_room(http)
    pid = (await host.product(stock=2))["product_id"]
    cases: list[tuple[Any, int, str]] = [
        ({}, 400, "open: required, true or false"),
        ({"open": "yes"}, 400, "open: expected true or false"),
        ({"open": 1}, 400, "open: expected true or false"),
        ({"open": True, "limit_per_buyer": 0}, 400, "limit_per_buyer"),
        ({"open": True, "limit_per_buyer": "2"}, 400, "limit_per_buyer"),
        ({"open": True, "price": 5}, 400, "price"),
        ([True], 400, "object"),
    ]
    for body, status, words in cases:
        r = await http.put(f"/api/rooms/{host.room_id}/products/{pid}/listing", json=body,
                           headers={"X-Host-Key": host.key})
        assert r.status_code == status, (body, r.text)
        assert words in r.json()["error"]["message"], (body, r.json())
    r = await http.put(f"/api/rooms/{host.room_id}/products/nope/listing",
                       json={"open": True}, headers={"X-Host-Key": host.key})
    assert (r.status_code, r.json()["error"]["code"]) == (404, "product_not_found")
    r = await http.put(f"/api/rooms/{host.room_id}/products/{pid}/listing",
                       json={"open": True})
    assert r.status_code == 401
    r = await http.post(f"/api/rooms/{host.room_id}/pins",
                        json={"product_id": pid, "open_for_sale": "no"},
                        headers={"X-Host-Key": host.key})
    assert r.status_code == 400 and "open_for_sale" in r.json()["error"]["message"]
    # Nothing was changed by the refused requests.
    card = await host.call("GET", f"/products/{pid}", expect=200)
    assert not card["listing"]["open"]


async def test_the_audit_catches_orders_above_the_stock_or_the_limit(
        server: LiveServer, http: httpx.AsyncClient) -> None:
    host = await create_room(http)
    # Closed at first: the limit of 1 is the only one it ever had.
    pid = await pinned_product(host, stock=2, open_for_sale=False)
    await host.call("PUT", f"/products/{pid}/listing", {"open": True, "limit_per_buyer": 1},
                    expect=200)
    viewer = await join(server, host.room_id)
    hold = (await buy(viewer, pid))["hold"]
    placed = (await viewer.request("checkout", hold_id=hold["id"]))["order"]
    assert (await host.audit())["ok"]
    # An order the server never made, written into the record behind its back: a
    # second unit for the same buyer, and two more units than the stock.
    db = sqlite3.connect(server.settings.store_path)
    with db:
        db.execute("INSERT INTO orders (order_id, hold_id, room_id, product_id, sale_id, "
                   "buyer_id, quantity, unit_price, subtotal, discount, total, currency, "
                   "coupon_id, payment_ref, created_at) VALUES (?, ?, ?, ?, ?, ?, 3, 1000, "
                   "3000, 0, 3000, 'USD', '', 'forged', 0)",
                   ("o_forged", "h_forged", host.room_id, pid, f"bn_{pid}",
                    placed["buyer_id"]))
    db.close()
    audit = await host.audit()
    failed = {c["name"] for c in audit["checks"] if not c["ok"]}
    assert f"listing {pid}: no buyer above the limit" in failed
    assert "store: no product has orders above its stock" in failed
    assert not audit["ok"]
    await viewer.close()


async def test_a_lower_limit_stops_new_buys_and_the_audit_allows_what_was_bought(
        server: LiveServer, http: httpx.AsyncClient) -> None:
    host = await create_room(http)
    pid = await pinned_product(host, stock=10)
    viewer = await join(server, host.room_id)
    hold = (await buy(viewer, pid, 3))["hold"]
    assert (await viewer.request("checkout", hold_id=hold["id"]))["type"] == "order_placed"
    await host.call("PUT", f"/products/{pid}/listing", {"open": True, "limit_per_buyer": 1},
                    expect=200)
    assert code(await buy(viewer, pid)) == "limit_reached"
    audit = await host.audit()
    assert audit["ok"], audit["checks"]
    await viewer.close()
