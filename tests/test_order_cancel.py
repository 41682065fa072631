"""Cancelling and refunding placed orders against a real server, redis-server and
order store, each test on both stores (BOTH_STORES: SQLite and PostgreSQL): units
back to stock and buyable again by exactly that many, the buyer's limit (and, for a
cancellation, coupon) back, refunds adding up to what was paid, the order's fan
points taken back, once whatever the retries, the audit agreeing throughout, also
when cancellations race new buys and after Redis lost its data and was rebuilt
from the store."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from tests.support import (
    BOTH_STORES,
    Host,
    LiveServer,
    ViewerClient,
    create_room,
    eventually,
    join,
    pay,
)
from tests.test_social import rebuilt

pytestmark = BOTH_STORES


def code(answer: dict[str, Any]) -> str:
    return str(answer.get("code") if answer["type"] == "error" else answer["type"])



async def cancel(host: Host, order_id: str, reason: str = "",
                 expect: int = 200) -> dict[str, Any]:
    result: dict[str, Any] = await host.call("POST", f"/orders/{order_id}/cancel",
                                             {"reason": reason}, expect=expect)
    return result


async def audit_ok(host: Host) -> dict[str, Any]:
    audit = await host.audit()
    assert audit["ok"], [c for c in audit["checks"] if not c["ok"]]
    return audit


async def test_a_cancelled_order_gives_its_unit_limit_and_points_back_once(
        server: LiveServer, http: httpx.AsyncClient) -> None:
    host = await create_room(http)
    product = await host.product(stock=3)
    pid = product["product_id"]
    await host.sale(pid, units=3, limit=1)
    a, b, c, d = [await join(server, host.room_id) for _ in range(4)]
    first = await pay(a, pid)
    await pay(b, pid)
    await pay(c, pid)
    assert code(await d.request("buy", product_id=pid)) == "sold_out"
    await eventually(lambda: _points(a, 10))
    done = await cancel(host, first["order_id"], "damaged in the warehouse")
    assert done["order"]["status"] == "cancelled"
    assert done["order"]["reason"] == "damaged in the warehouse"
    event = await d.next_event("order_cancelled")
    assert (event["order_id"], event["quantity"], event["buyer_id"]) == \
        (first["order_id"], 1, a.viewer_id)
    # Again: the same cancellation, nothing given back twice.
    again = await cancel(host, first["order_id"], "another reason")
    assert again == done
    card = await host.call("GET", f"/products/{pid}", expect=200)
    assert (card["stock"]["left"], card["stock"]["sold"]) == (1, 2)
    await audit_ok(host)
    # Exactly one unit came back, and the buyer's limit is theirs again.
    assert code(await a.request("buy", product_id=pid)) == "hold"
    assert code(await d.request("buy", product_id=pid)) == "sold_out"
    # The order's points are taken back.
    assert (await a.request("fan_status"))["points"] == 0
    orders = {o["order_id"]: o for o in (await host.call("GET", "/orders", expect=200))
              ["orders"]}
    assert orders[first["order_id"]]["status"] == "cancelled"
    assert sum(o["status"] == "placed" for o in orders.values()) == 2
    stats = await host.call("GET", "/stats", expect=200)
    assert (stats["orders"], stats["orders_cancelled"]) == (2, 1)
    missing = await cancel(host, "o_nope", expect=404)
    assert missing["error"]["code"] == "order_not_found"
    r = await http.post(f"/api/rooms/{host.room_id}/orders/{first['order_id']}/cancel",
                        json={})
    assert r.status_code == 401
    bad = await host.call("POST", f"/orders/{first['order_id']}/cancel", {"why": "x"},
                          expect=400)
    assert "why" in bad["error"]["message"]
    for v in (a, b, c, d):
        await v.close()


async def _points(v: ViewerClient, expected: int) -> bool:
    return bool((await v.request("fan_status"))["points"] == expected)


async def test_a_cancelled_orders_coupon_is_the_buyers_again(
        server: LiveServer, http: httpx.AsyncClient) -> None:
    host = await create_room(http)
    product = await host.product(stock=5, price=2000)
    pid = product["product_id"]
    await host.sale(pid, units=5, limit=3, price=2000)
    coupon = await host.call("POST", "/coupons", {"kind": "amount", "value": 500,
                                                  "count": 1, "currency": "USD"}, expect=201)
    v = await join(server, host.room_id)
    assert code(await v.request("claim_coupon", coupon_id=coupon["coupon_id"])) == \
        "coupon_claimed"
    used = await pay(v, pid, coupon["coupon_id"])
    assert used["discount"] == 500
    hold = await v.request("buy", product_id=pid)
    refused = await v.request("checkout", hold_id=hold["hold"]["id"],
                              coupon_id=coupon["coupon_id"])
    assert code(refused) == "coupon_used"
    await cancel(host, used["order_id"])
    again = await v.request("checkout", hold_id=hold["hold"]["id"],
                            coupon_id=coupon["coupon_id"])
    assert code(again) == "order_placed" and again["order"]["discount"] == 500
    await audit_ok(host)
    await v.close()


async def test_cancellations_racing_new_buys_never_sell_more_than_the_units(
        server: LiveServer, http: httpx.AsyncClient, redis_url: str) -> None:
    host = await create_room(http)
    product = await host.product(stock=10)
    pid = product["product_id"]
    await host.sale(pid, units=10, limit=1)
    first = await asyncio.gather(*(join(server, host.room_id) for _ in range(10)))
    orders = await asyncio.gather(*(pay(v, pid) for v in first))
    later = await asyncio.gather(*(join(server, host.room_id) for _ in range(20)))

    async def try_buy(v: ViewerClient) -> str:
        hold = await v.request("buy", product_id=pid)
        if hold["type"] != "hold":
            return code(hold)
        return code(await v.request("checkout", hold_id=hold["hold"]["id"]))

    # Five cancellations and twenty buyers at once: exactly five of them get a unit.
    results = await asyncio.gather(*(cancel(host, o["order_id"]) for o in orders[:5]),
                                   *(try_buy(v) for v in later))
    bought = [r for r in results[5:] if r == "order_placed"]
    assert len(bought) <= 5
    # Whoever was refused while the units were coming back tries once more.
    for v, r in zip(later, results[5:], strict=True):
        if r != "order_placed" and len(bought) < 5 and await try_buy(v) == "order_placed":
            bought.append("order_placed")
    assert len(bought) == 5
    card = await host.call("GET", f"/products/{pid}", expect=200)
    assert (card["stock"]["sold"], card["stock"]["left"]) == (10, 0)
    listed = (await host.call("GET", "/orders", expect=200))["orders"]
    assert sum(o["status"] == "placed" for o in listed) == 10
    assert sum(o["status"] == "cancelled" for o in listed) == 5
    await audit_ok(host)
    # Redis loses everything: the rebuild counts what the store holds as sold.
    await rebuilt(http, redis_url, host.room_id)
    card = await host.call("GET", f"/products/{pid}", expect=200)
    assert (card["stock"]["sold"], card["stock"]["left"]) == (10, 0)
    await audit_ok(host)
    # A cancellation after the rebuild still gives its unit back, once.
    await cancel(host, orders[5]["order_id"])
    await cancel(host, orders[5]["order_id"])
    card = await host.call("GET", f"/products/{pid}", expect=200)
    assert (card["stock"]["sold"], card["stock"]["left"]) == (9, 1)
    await audit_ok(host)
    for v in (*first, *later):
        await v.close()


async def refund(host: Host, order_id: str, expect: int = 200, **body: Any) -> dict[str, Any]:
    result: dict[str, Any] = await host.call("POST", f"/orders/{order_id}/refund", body,
                                             expect=expect)
    return result


async def test_refunds_give_back_what_they_restock_once_and_add_up_to_the_total(
        server: LiveServer, http: httpx.AsyncClient, redis_url: str) -> None:
    host = await create_room(http)
    product = await host.product(stock=5, price=1000)
    pid = product["product_id"]
    await host.sale(pid, units=5, limit=3, price=1000)
    a, b = await join(server, host.room_id), await join(server, host.room_id)
    hold = await a.request("buy", product_id=pid, quantity=3)
    order = (await a.request("checkout", hold_id=hold["hold"]["id"]))["order"]
    assert order["total"] == 3000
    await eventually(lambda: _points(a, 10))
    assert code(await a.request("buy", product_id=pid)) == "limit_reached"
    # One unit back into stock: a third of what was paid, the unit buyable again.
    first = await refund(host, order["order_id"], request_id="r1", quantity=1,
                         reason="scratched")
    assert (first["refund"]["quantity"], first["refund"]["amount"],
            first["refund"]["restock"]) == (1, 1000, True)
    event = await b.next_event("order_refunded")
    assert event["refund"]["refund_id"] == first["refund"]["refund_id"]
    assert await refund(host, order["order_id"], request_id="r1", quantity=1) == first
    card = await host.call("GET", f"/products/{pid}", expect=200)
    assert (card["stock"]["left"], card["stock"]["sold"]) == (3, 2)
    await audit_ok(host)
    # The buyer's limit gave that unit back too: one more, not two.
    extra = await a.request("buy", product_id=pid)
    assert code(extra) == "hold"
    assert code(await a.request("buy", product_id=pid)) == "limit_reached"
    await a.request("release", hold_id=extra["hold"]["id"])
    # Too many, a cancellation after a refund: refused, nothing changed.
    too_many = await refund(host, order["order_id"], expect=409, request_id="r2", quantity=3)
    assert too_many["error"]["code"] == "refund_too_large"
    assert too_many["error"]["details"] == {"left": 2}
    refused = await host.call("POST", f"/orders/{order['order_id']}/cancel", {}, expect=409)
    assert refused["error"]["code"] == "order_refunded"
    # The rest, money only: the refunds add up to what was paid.
    rest = await refund(host, order["order_id"], request_id="r3", restock=False)
    assert (rest["refund"]["quantity"], rest["refund"]["amount"]) == (2, 2000)
    again = await refund(host, order["order_id"], expect=409, request_id="r4")
    assert again["error"]["code"] == "order_refunded"
    card = await host.call("GET", f"/products/{pid}", expect=200)
    assert (card["stock"]["left"], card["stock"]["sold"]) == (3, 2)
    listed = {o["order_id"]: o for o in (await host.call("GET", "/orders", expect=200))
              ["orders"]}
    assert listed[order["order_id"]]["status"] == "refunded"
    assert [r["refund_id"] for r in listed[order["order_id"]]["refunds"]] == \
        [first["refund"]["refund_id"], rest["refund"]["refund_id"]]
    stats = await host.call("GET", "/stats", expect=200)
    assert (stats["revenue"], stats["units_sold"]) == (0, 2)
    # A whole order refunded takes back its points, as a cancellation does.
    assert (await a.request("fan_status"))["points"] == 0
    await audit_ok(host)
    # Redis loses everything: the rebuild counts only what stayed sold.
    await rebuilt(http, redis_url, host.room_id)
    card = await host.call("GET", f"/products/{pid}", expect=200)
    assert (card["stock"]["left"], card["stock"]["sold"]) == (3, 2)
    await audit_ok(host)
    for v in (a, b):
        await v.close()


async def test_a_cancelled_order_cannot_be_refunded(server: LiveServer,
                                                    http: httpx.AsyncClient) -> None:
    host = await create_room(http)
    product = await host.product(stock=2)
    await host.sale(product["product_id"], units=2, limit=1)
    v = await join(server, host.room_id)
    order = await pay(v, product["product_id"])
    await cancel(host, order["order_id"])
    refused = await refund(host, order["order_id"], expect=409, request_id="x1")
    assert refused["error"]["code"] == "order_cancelled"
    bad = await refund(host, order["order_id"], expect=400, quantity=1)
    assert "request_id" in bad["error"]["message"]
    missing = await refund(host, "o_nope", expect=404, request_id="x2")
    assert missing["error"]["code"] == "order_not_found"
    await v.close()
