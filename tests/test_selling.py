"""End to end: a host runs a sale over HTTP, viewers buy over WebSocket."""

from __future__ import annotations

import asyncio

import httpx

from tests.support import LiveServer, create_room, join


async def test_buy_hold_checkout_places_order(server: LiveServer, http: httpx.AsyncClient) -> None:
    host = await create_room(http)
    product = await host.product(stock=5, price=2000)
    viewer = await join(server, host.room_id)
    snap = await viewer.next_event("snapshot")
    assert snap["products"][0]["product_id"] == product["product_id"]
    sale = await host.sale(product["product_id"], units=3, limit=2, price=1500)
    assert sale["state"] == "open"
    reply = await viewer.request("buy", product_id=product["product_id"], quantity=2)
    assert reply["type"] == "hold", reply
    hold = reply["hold"]
    assert hold["quantity"] == 2 and hold["unit_price"] == 1500
    placed = await viewer.request("checkout", hold_id=hold["id"])
    assert placed["type"] == "order_placed", placed
    order = placed["order"]
    assert order["total"] == 3000 and order["hold_id"] == hold["id"]
    orders = await host.call("GET", "/orders", expect=200)
    assert [o["order_id"] for o in orders["orders"]] == [order["order_id"]]
    # The per-buyer limit of 2 is reached.
    again = await viewer.request("buy", product_id=product["product_id"], quantity=1)
    assert again["type"] == "error" and again["code"] == "limit_reached"
    audit = await host.audit()
    assert audit["ok"], audit
    stock = audit["products"][0]
    assert (stock["left"], stock["held"], stock["sold"]) == (3, 0, 2)
    await viewer.close()


async def test_stock_updates_reach_other_viewers(server: LiveServer,
                                                 http: httpx.AsyncClient) -> None:
    host = await create_room(http)
    product = await host.product(stock=4)
    buyer = await join(server, host.room_id)
    watcher = await join(server, host.room_id)
    await host.sale(product["product_id"], units=4, limit=4)
    reply = await buyer.request("buy", product_id=product["product_id"], quantity=3)
    assert reply["type"] == "hold"
    update = await watcher.next_event("stock", where=lambda f: f["stock"]["held"] == 3)
    assert update["stock"] == {"total": 4, "left": 1, "held": 3, "sold": 0}
    assert update["sale"]["left"] == 1
    await asyncio.gather(buyer.close(), watcher.close())
