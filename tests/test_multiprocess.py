"""Two server instances on one Redis and one store, as `--workers 2` runs them: events
reach viewers on both, timers fire once, and the stock gate holds across both."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx

from tests.support import LiveServer, create_room, join, make_settings


@contextlib.asynccontextmanager
async def _two_servers(redis_url: str, data_dir: Path) -> AsyncIterator[tuple[LiveServer,
                                                                            LiveServer]]:
    """Two servers on one Redis and one store, as `--workers 2` runs them."""
    settings = make_settings(redis_url, data_dir)
    a = await LiveServer(settings).start()
    b = await LiveServer(settings).start()
    try:
        yield a, b
    finally:
        await b.stop()
        await a.stop()


async def test_two_servers_share_rooms_and_stock(redis_url: str, data_dir: Path) -> None:
    async with _two_servers(redis_url, data_dir) as (a, b), \
            httpx.AsyncClient(base_url=a.base) as http:
        host = await create_room(http)
        product = await host.product(stock=30)
        on_a = [await join(a, host.room_id) for _ in range(20)]
        on_b = [await join(b, host.room_id) for _ in range(20)]
        await host.sale(product["product_id"], units=25, limit=2, starts_in_s=1)
        for v in (on_a[0], on_b[0]):
            opened = await v.next_event("sale_open", timeout=10)
            assert opened["sale"]["product_id"] == product["product_id"]
        await asyncio.sleep(0.3)
        # Each timer fired on exactly one of the two servers.
        assert sum(1 for f in on_b[1].frames if f["type"] == "sale_open") == 1
        everyone = on_a + on_b
        answers = await asyncio.gather(*(v.request("buy", product_id=product["product_id"],
                                                   quantity=2) for v in everyone))
        held = sum(x["hold"]["quantity"] for x in answers if x["type"] == "hold")
        assert held == 24  # 12 buyers x 2; the 13th finds 1 unit: insufficient_stock
        placed = await asyncio.gather(*(v.request("checkout", hold_id=x["hold"]["id"])
                                        for v, x in zip(everyone, answers, strict=True)
                                        if x["type"] == "hold"))
        assert all(p["type"] == "order_placed" for p in placed)
        audit = await host.audit()
        assert audit["ok"] and audit["products"][0]["sold"] == 24
        await host.call("POST", "/announcements", {"text": "thanks"}, expect=201)
        for v in (on_a[-1], on_b[-1]):
            assert (await v.next_event("announcement"))["text"] == "thanks"
        await asyncio.gather(*(v.close() for v in everyone))


async def test_a_server_whose_remembered_sale_changed_elsewhere_buys_in_the_current_one(
        redis_url: str, data_dir: Path) -> None:
    """A buy starts from the sale id its server remembers (no task, no read); when
    another server replaced that sale, reserve.lua says so and the buy goes the full
    way, in the new sale. A refusal the show's end explains is explained there too."""
    async with _two_servers(redis_url, data_dir) as (a, b), \
            httpx.AsyncClient(base_url=a.base) as http:
        host = await create_room(http)
        pid = (await host.product(stock=10))["product_id"]
        first = await host.sale(pid, units=5, limit=1)
        early, late, last = [await join(b, host.room_id) for _ in range(3)]
        held = await early.request("buy", product_id=pid)
        assert held["type"] == "hold" and held["hold"]["sale_id"] == first["sale_id"]
        # Server A replaces the sale; server B still remembers the first one.
        await host.call("POST", f"/sales/{first['sale_id']}/stop", expect=200)
        second = await host.sale(pid, units=5, limit=1)
        moved = await late.request("buy", product_id=pid)
        assert moved["type"] == "hold", moved
        assert moved["hold"]["sale_id"] == second["sale_id"]
        # Server A ends the show: B's remembered sale is stopped in Redis, and the
        # refusal reserve.lua gives ('ended') is told as the show's end.
        await host.call("POST", "/end", expect=200)
        refused = await last.request("buy", product_id=pid)
        assert refused["type"] == "error" and refused["code"] == "show_ended", refused
        audit = await host.audit()
        assert audit["ok"], audit["checks"]
        await asyncio.gather(early.close(), late.close(), last.close())
