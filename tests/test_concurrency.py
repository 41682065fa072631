"""Races with exact counts: many buyers for few units, many claimants for few coupons,
hold expiry racing checkout."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import LiveServer, ViewerClient, create_room, make_settings, viewers


async def _all_buy(clients: list[ViewerClient], product_id: str,
                   quantity: int) -> list[dict[str, Any]]:
    return list(await asyncio.gather(*(c.request("buy", product_id=product_id,
                                                 quantity=quantity, timeout=120)
                                       for c in clients)))


async def test_2000_buyers_race_for_100_units(server: LiveServer,
                                              http: httpx.AsyncClient) -> None:
    host = await create_room(http)
    product = await host.product(stock=150)
    await host.sale(product["product_id"], units=100, limit=2)
    async with viewers(server, host.room_id, 2000) as clients:
        # Each buyer asks twice for 2 units (the second must hit the limit or sold out),
        # and a third of them try once more for 1.
        first = await _all_buy(clients, product["product_id"], 2)
        second = await _all_buy(clients, product["product_id"], 1)
        holds = [r for r in itertools.chain(first, second) if r["type"] == "hold"]
        refusals = {r["code"] for r in itertools.chain(first, second) if r["type"] == "error"}
        assert refusals <= {"sold_out", "limit_reached", "insufficient_stock"}, refusals
        assert sum(h["hold"]["quantity"] for h in holds) == 100
        per_buyer: dict[str, int] = {}
        for client, answers in zip(clients, zip(first, second, strict=True), strict=True):
            per_buyer[client.viewer_id] = sum(a["hold"]["quantity"] for a in answers
                                              if a["type"] == "hold")
        assert max(per_buyer.values()) <= 2
        # Half of the holders check out; the rest keep their holds.
        holders = [(c, a) for c, answers in zip(clients, zip(first, second, strict=True),
                                                strict=True)
                   for a in answers if a["type"] == "hold"]
        to_pay = holders[::2]
        placed = await asyncio.gather(*(c.request("checkout", hold_id=a["hold"]["id"],
                                                  timeout=120) for c, a in to_pay))
        assert all(p["type"] == "order_placed" for p in placed), placed[:3]
        paid_units = sum(p["order"]["quantity"] for p in placed)
    audit = await host.audit()
    assert audit["ok"], [c for c in audit["checks"] if not c["ok"]]
    stock = audit["products"][0]
    assert stock["sold"] == paid_units == stock["sold_in_store"]
    assert stock["held"] == 100 - paid_units
    assert stock["left"] == 50
    assert stock["left"] + stock["held"] + stock["sold"] == 150
    sale = audit["sales"][0]
    assert sale["sold"] + sale["held"] == 100
    orders = await host.call("GET", "/orders?limit=1000", expect=200)
    assert len(orders["orders"]) == len(placed)
    assert len({o["hold_id"] for o in orders["orders"]}) == len(placed)


async def test_coupon_race_gives_exactly_n(server: LiveServer, http: httpx.AsyncClient) -> None:
    host = await create_room(http)
    drop = await host.call("POST", "/coupons", {"kind": "percent", "value": 10, "count": 25},
                           expect=201)
    async with viewers(server, host.room_id, 300) as clients:
        answers = await asyncio.gather(*(c.request("claim_coupon", coupon_id=drop["coupon_id"])
                                         for c in clients))
        again = await asyncio.gather(*(c.request("claim_coupon", coupon_id=drop["coupon_id"])
                                       for c in clients[:50]))
        # The remaining count reaches viewers coalesced, not once per claim.
        last = await clients[-1].next_event("coupon_count", where=lambda f: f["remaining"] == 0)
        assert last["coupon_id"] == drop["coupon_id"]
        counts = [f for f in clients[-1].frames if f["type"] == "coupon_count"]
        assert len(counts) < 25
    won = [a for a in answers if a["type"] == "coupon_claimed"]
    assert len(won) == 25
    assert {a["code"] for a in answers if a["type"] == "error"} == {"coupon_gone"}
    assert sorted(a["remaining"] for a in won) == list(range(25))
    assert {a["code"] for a in again} <= {"already_claimed", "coupon_gone"}
    state = await host.call("GET", "", expect=200)
    assert state["coupons"][0]["remaining"] == 0


@pytest.fixture
async def quick_hold_server(redis_url: str, tmp_path: Path) -> AsyncIterator[LiveServer]:
    settings = make_settings(redis_url, tmp_path / "data",
                             sale={"hold_seconds": 1.5})
    live = await LiveServer(settings).start()
    yield live
    await live.stop()


async def test_expiry_racing_checkout_returns_stock_once(quick_hold_server: LiveServer) -> None:
    server = quick_hold_server
    async with httpx.AsyncClient(base_url=server.base, timeout=30) as http:
        host = await create_room(http)
        product = await host.product(stock=40)
        await host.sale(product["product_id"], units=40, limit=1)
        async with viewers(server, host.room_id, 40) as clients:
            holds = await _all_buy(clients, product["product_id"], 1)
            assert all(h["type"] == "hold" for h in holds)
            expires_at = holds[0]["hold"]["expires_at"]
            # Aim the checkouts at the moment of expiry, spread over +-150 ms.
            now = clients[0].welcome["server_time"]
            await asyncio.sleep(max(0.0, (expires_at - now) / 1000 - 0.25))

            async def late_checkout(i: int, c: ViewerClient, h: dict[str, Any]) -> dict[str, Any]:
                await asyncio.sleep((i % 30) * 0.01)
                return await c.request("checkout", hold_id=h["hold"]["id"])

            results = await asyncio.gather(*(late_checkout(i, c, h) for i, (c, h)
                                             in enumerate(zip(clients, holds, strict=True))))
            kinds = {r["type"] if r["type"] != "error" else r["code"] for r in results}
            assert kinds <= {"order_placed", "hold_expired"}, kinds
            placed = sum(1 for r in results if r["type"] == "order_placed")
            # Let the sweeper expire whatever was not checked out.
            for _ in range(100):
                audit = await host.audit()
                if audit["products"][0]["held"] == 0:
                    break
                await asyncio.sleep(0.1)
            stock = audit["products"][0]
            assert audit["ok"], audit["checks"]
            assert stock["held"] == 0
            assert stock["sold"] == placed == stock["sold_in_store"]
            assert stock["left"] == 40 - placed
            # A late checkout of an expired hold never sells.
            expired = [(c, h) for (c, h), r in zip(zip(clients, holds, strict=True), results,
                                                   strict=True) if r["type"] == "error"]
            for c, h in expired[:5]:
                again = await c.request("checkout", hold_id=h["hold"]["id"])
                assert again["code"] == "hold_expired"
            assert (await host.audit())["products"][0]["sold"] == placed
