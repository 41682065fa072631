"""Whole servers on the PostgreSQL order store: a flash sale on two processes
sharing Redis and one database sells exactly its units, and PostgreSQL stopped
mid-sale makes checkouts fail closed (the hold kept, the buyer told to retry)
without losing or inventing an order. The store, read straight from PostgreSQL,
agrees with what buyers were told and with the audit."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from loadtest.pg_cluster import PgCluster
from tests.support import LiveServer, create_room, eventually, join, make_settings
from tests.test_faults import Ledger, settled, shop

ON_POSTGRESQL = pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)


async def stored_orders(url: str) -> dict[str, tuple[str, int]]:
    """order id -> (hold id, quantity), read straight from PostgreSQL."""
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch("SELECT order_id, hold_id, quantity FROM orders")
    finally:
        await conn.close()
    return {r[0]: (r[1], r[2]) for r in rows}


@ON_POSTGRESQL
async def test_a_flash_sale_on_two_processes_sells_exactly_its_units(
        redis_url: str, data_dir: Path, store_url: str) -> None:
    settings = make_settings(redis_url, data_dir, store={"url": store_url})
    a = await LiveServer(settings).start()
    b = await LiveServer(settings).start()
    try:
        async with httpx.AsyncClient(base_url=a.base, timeout=60) as http:
            host = await create_room(http)
            product = await host.product(stock=80)
            await host.sale(product["product_id"], units=60, limit=1)
            crowd = await asyncio.gather(*(join(a if i % 2 else b, host.room_id)
                                           for i in range(300)))
            try:
                answers = await asyncio.gather(*(
                    v.request("buy", product_id=product["product_id"], timeout=120)
                    for v in crowd))
                holders = [(v, h) for v, h in zip(crowd, answers, strict=True)
                           if h["type"] == "hold"]
                assert len(holders) == 60
                assert {h["code"] for h in answers if h["type"] == "error"} <= \
                    {"sold_out", "insufficient_stock"}
                placed = await asyncio.gather(*(
                    v.request("checkout", hold_id=h["hold"]["id"], timeout=120)
                    for v, h in holders))
                assert [p["type"] for p in placed] == ["order_placed"] * 60
            finally:
                await asyncio.gather(*(v.close() for v in crowd))
            stored = await stored_orders(store_url)
            assert set(stored) == {p["order"]["order_id"] for p in placed}
            assert sum(q for _, q in stored.values()) == 60
            audit = await host.audit()
            assert audit["ok"], [c for c in audit["checks"] if not c["ok"]]
            assert audit["products"][0]["sold"] == 60 == audit["products"][0]["sold_in_store"]
            assert audit["sales"][0]["sold"] == 60
    finally:
        await b.stop()
        await a.stop()


async def _until(check: Callable[[], Awaitable[bool]], timeout: float = 120) -> None:
    await eventually(check, timeout=timeout)


async def test_postgresql_stopped_mid_sale_fails_closed_and_loses_nothing(
        redis_url: str, data_dir: Path) -> None:
    """PostgreSQL's fast shutdown in the middle of a sale, then its start on the same
    port: buyers looping buy -> checkout hear `store_unavailable` (holds kept) while
    it is away and carry on after; every order a buyer was told about is in the
    database, nothing else is, and the audit agrees."""
    cluster = PgCluster()
    units = 30
    try:
        await asyncio.to_thread(cluster.start)
        settings = make_settings(redis_url, data_dir,
                                 store={"url": cluster.url(), "recover_after_s": 1.0,
                                        "busy_timeout_ms": 500},
                                 sale={"hold_seconds": 2.0})
        live = await LiveServer(settings).start()
        try:
            async with httpx.AsyncClient(base_url=live.base, timeout=60) as http:
                host = await create_room(http)
                product = await host.product(stock=units + 10)
                await host.sale(product["product_id"], units=units, limit=1000)
                crowd = [await join(live, host.room_id) for _ in range(8)]
                told, stop = Ledger(), asyncio.Event()
                await shop(crowd[0], product["product_id"], told, stop, rounds=3)
                assert len(told.placed) == 3
                shoppers = [asyncio.create_task(shop(v, product["product_id"], told, stop))
                            for v in crowd]
                await asyncio.to_thread(cluster.stop)

                async def refused() -> bool:
                    return told.codes.get("store_unavailable", 0) >= 3
                await _until(refused)
                placed_while_down = len(told.placed)
                await asyncio.to_thread(cluster.start)

                async def sold_out() -> bool:
                    stored = await stored_orders(cluster.url())
                    return sum(q for _, q in stored.values()) >= units or \
                        all(s.done() for s in shoppers)
                await _until(sold_out)
                stop.set()
                await asyncio.wait_for(asyncio.gather(*shoppers), 240)
                assert len(told.placed) > placed_while_down
                audit: dict[str, Any] = await settled(host, redis_url)
                await asyncio.gather(*(v.close() for v in crowd))
            assert audit["ok"], [c for c in audit["checks"] if not c["ok"]]
            stored = await stored_orders(cluster.url())
            assert set(told.placed) == set(stored), set(told.placed) ^ set(stored)
            assert not set(told.cancelled) & {h for h, _ in stored.values()}
            sold = sum(q for _, q in stored.values())
            assert sold == units
            assert audit["products"][0]["sold"] == sold == audit["products"][0]["sold_in_store"]
        finally:
            await live.stop()
    finally:
        await asyncio.to_thread(cluster.remove)
