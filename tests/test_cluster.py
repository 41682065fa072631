"""livesell on a real Redis Cluster (three primaries, three replicas, on loopback:
tests/redis_cluster.py) with two servers in this process on one order store.

- A flash sale across servers and shards sells exactly its units, and events
  reach the other server's viewers by sharded pub/sub.
- A room whose slot moves (a live resharding) mid-show keeps its state whole:
  holds made before the move are paid after it, nothing is rebuilt.
- A primary killed mid-sale, after writes its replica never got: buys fail
  closed until the servers have rebuilt the room from the order store, and then
  the sale still sells exactly its units (without the reconciliation the lost
  writes would sell the same units twice).

Every invariant is checked from outside: the store's orders, the audit (Redis
against the store), the store's room epoch.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
from redis.crc import key_slot

from server.core.keys import room_keys
from tests.redis_cluster import RedisCluster, redis_cluster, redis_cluster_module
from tests.support import (
    Host,
    LiveServer,
    ViewerClient,
    create_room,
    eventually,
    join,
    make_settings,
    pay,
)

__all__ = ["redis_cluster", "redis_cluster_module"]  # the fixtures, used by name


@contextlib.asynccontextmanager
async def two_servers(cluster: RedisCluster, data_dir: Path
                      ) -> AsyncIterator[tuple[LiveServer, LiveServer, httpx.AsyncClient]]:
    """Two servers on the cluster and one SQLite order store, and an HTTP client of
    the first."""
    settings = make_settings(cluster.url, data_dir, redis={"cluster": True})
    a = await LiveServer(settings).start()
    try:
        b = await LiveServer(settings).start()
        try:
            async with httpx.AsyncClient(base_url=a.base, timeout=60) as http:
                yield a, b, http
        finally:
            await b.stop()
    finally:
        await a.stop()


def slot_of(room_id: str) -> int:
    return key_slot(room_keys(room_id).epoch.encode())


async def primary_of(cluster: RedisCluster, room_id: str) -> int:
    return await asyncio.to_thread(cluster.primary_for_slot, slot_of(room_id))


async def sale_room(http: httpx.AsyncClient, units: int,
                    stock: int | None = None) -> tuple[Host, str]:
    host = await create_room(http)
    product = await host.product(stock=stock if stock is not None else units)
    await host.sale(product["product_id"], units=units)
    return host, str(product["product_id"])


async def buy(v: ViewerClient, product_id: str) -> dict[str, Any]:
    return await v.request("buy", product_id=product_id)


async def try_pay(v: ViewerClient, product_id: str) -> str:
    """Buy one unit and check it out; what the buyer was told last."""
    hold = await buy(v, product_id)
    if hold["type"] != "hold":
        return str(hold.get("code", hold["type"]))
    placed = await v.request("checkout", hold_id=hold["hold"]["id"])
    return str(placed["type"] if placed["type"] == "order_placed" else placed.get("code"))


def audit_ok(audit: dict[str, Any]) -> None:
    bad = [c for c in audit["checks"] if not c["ok"]]
    assert audit["ok"] and not bad, bad


async def test_a_flash_sale_across_servers_and_shards_sells_exactly_its_units(
        redis_cluster: RedisCluster, tmp_path: Path) -> None:
    units, buyers = 15, 40
    async with two_servers(redis_cluster, tmp_path) as (a, b, http):
        # Rooms on at least two of the three shards.
        hosts = [await create_room(http, f"show {i}") for i in range(3)]
        for i in range(20):
            shards = {await primary_of(redis_cluster, h.room_id) for h in hosts}
            if len(shards) >= 2:
                break
            hosts.append(await create_room(http, f"more {i}"))
        assert len({await primary_of(redis_cluster, h.room_id) for h in hosts}) >= 2

        host = hosts[-1]
        product = await host.product(stock=units)
        await host.sale(product["product_id"], units=units)
        crowd = await asyncio.gather(*(join(a if i % 2 else b, host.room_id)
                                       for i in range(buyers)))
        try:
            told = await asyncio.gather(*(try_pay(v, product["product_id"]) for v in crowd))
            assert told.count("order_placed") == units, sorted(told)
            assert set(told) <= {"order_placed", "sold_out"}, sorted(told)

            # An event the host sends through server A reaches server B's viewers.
            watcher = crowd[0]
            await host.call("POST", "/announcements", {"text": "thank you"}, expect=201)
            event = await watcher.next_event("announcement", timeout=60)
            assert event["text"] == "thank you"

            audit = await host.audit()
            audit_ok(audit)
            assert audit["orders"]["orders"] == units
            assert audit["products"][0]["sold"] == units
            # Every room is whole on its own shard, with its node named as home.
            for h in hosts:
                r = await http.get(f"/api/rooms/{h.room_id}")
                assert r.status_code == 200, r.text
        finally:
            await asyncio.gather(*(v.close() for v in crowd))


async def test_a_room_whose_slot_moves_mid_show_keeps_its_state_whole(
        redis_cluster: RedisCluster, tmp_path: Path) -> None:
    units = 30
    async with two_servers(redis_cluster, tmp_path) as (a, b, http):
        host, product_id = await sale_room(http, units)
        store = a.services.store
        epoch_before = await store.room_epoch(host.room_id)
        source = await primary_of(redis_cluster, host.room_id)
        target = next(p for p in redis_cluster.primaries_ports() if p != source)

        early = [await join(a, host.room_id) for _ in range(5)]
        paid = [await join(b, host.room_id) for _ in range(5)]
        during = [await join(a if i % 2 else b, host.room_id) for i in range(10)]
        try:
            for v in paid:
                await pay(v, product_id)
            holds = [await buy(v, product_id) for v in early]
            assert all(h["type"] == "hold" for h in holds), holds

            # Buys go on while the slot's keys move a few at a time (ASK, TRYAGAIN):
            # each is answered, as a hold or refused, never lost.
            moving = asyncio.create_task(asyncio.to_thread(
                redis_cluster.move_slot_slowly, slot_of(host.room_id), target))
            answers = []
            for v in during:
                answers.append(await buy(v, product_id))
                if moving.done():
                    break
            await moving
            assert await primary_of(redis_cluster, host.room_id) == target
            for answer in answers:
                assert answer["type"] == "hold" or answer["type"] == "error", answer

            # The servers make the new node the room's home; holds made before the
            # move are paid after it: the state moved whole, nothing was rebuilt.
            async def checkout(v: ViewerClient, hold: dict[str, Any]) -> dict[str, Any] | None:
                placed = await v.request("checkout", hold_id=hold["hold"]["id"])
                if placed["type"] == "error" and placed.get("code") == "unavailable":
                    return None
                return placed

            for v, hold in zip(early, holds, strict=True):
                placed = await eventually(lambda v=v, hold=hold: checkout(v, hold), timeout=180)
                assert placed["type"] == "order_placed", placed
            assert await store.room_epoch(host.room_id) == epoch_before

            # Events still reach both servers' viewers from the room's new shard.
            await host.call("POST", "/announcements", {"text": "moved"}, expect=201)
            for v in (early[0], paid[0]):
                assert (await v.next_event("announcement", timeout=60))["text"] == "moved"

            # The rest sells out exactly.
            crowd = [await join(a, host.room_id) for _ in range(units)]
            try:
                told = await asyncio.gather(*(try_pay(v, product_id) for v in crowd))
            finally:
                await asyncio.gather(*(v.close() for v in crowd))
            held_during = [v for v, ans in zip(during, answers, strict=False)
                           if ans["type"] == "hold"]
            for v, ans in zip(during, answers, strict=False):
                if ans["type"] == "hold":
                    placed = await v.request("checkout", hold_id=ans["hold"]["id"])
                    assert placed["type"] == "order_placed", placed
            assert told.count("order_placed") == units - 10 - len(held_during), told
            audit = await host.audit()
            audit_ok(audit)
            assert audit["orders"]["orders"] == units
        finally:
            await asyncio.gather(*(v.close() for v in [*early, *paid, *during]))


async def replicated(cluster: RedisCluster, primary: int, replica: int) -> bool:
    """Whether the replica has every write of its primary so far."""
    def offsets() -> bool:
        p = cluster.client(primary).info("replication")
        r = cluster.client(replica).info("replication")
        return int(r["slave_repl_offset"]) >= int(p["master_repl_offset"])
    return await asyncio.to_thread(offsets)


async def test_a_primary_killed_after_unreplicated_writes_is_reconciled_from_the_store(
        redis_cluster: RedisCluster, tmp_path: Path) -> None:
    units = 20
    async with two_servers(redis_cluster, tmp_path) as (a, b, http):
        host, product_id = await sale_room(http, units)
        store = a.services.store
        primary = await primary_of(redis_cluster, host.room_id)
        replica = redis_cluster.replicas_of(primary)[0]
        crowd = [await join(a if i % 2 else b, host.room_id) for i in range(12)]
        try:
            for v in crowd[:5]:
                await pay(v, product_id)
            await eventually(lambda: replicated(redis_cluster, primary, replica), timeout=180)
            epoch_before = await store.room_epoch(host.room_id)

            # The replica stops taking the primary's writes (a real SIGSTOP): the next
            # five orders are in the store and acknowledged, their Redis writes only on
            # the primary, which then dies.
            replica_pid = redis_cluster.pid_of(replica)
            os.kill(replica_pid, signal.SIGSTOP)
            try:
                for v in crowd[5:10]:
                    await pay(v, product_id)
                await asyncio.to_thread(redis_cluster.kill_primary, primary)
            finally:
                os.kill(replica_pid, signal.SIGCONT)

            # Until the room is rebuilt from the store, buys fail closed: the first
            # hold granted after the kill comes after the store has the room's new
            # epoch (the fence the rebuild writes before the room opens again).
            failing_over = asyncio.create_task(
                asyncio.to_thread(redis_cluster.wait_for_failover, primary))
            refused = 0
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 240
            while True:
                assert loop.time() < deadline, "no hold granted within 240 s of the kill"
                answer = await buy(crowd[10], product_id)
                if answer["type"] == "hold":
                    assert await store.room_epoch(host.room_id) != epoch_before
                    break
                assert answer["type"] == "error", answer
                refused += 1
                await asyncio.sleep(0.05)
            assert refused > 0
            await failing_over
            await v_pay_hold(crowd[10], answer)

            # Then the orders the lost writes had counted are counted from the store,
            # and the rest of the sale sells out exactly.
            audit = await eventually(lambda: _audit_when_whole(host), timeout=180)
            audit_ok(audit)
            assert audit["products"][0]["sold"] == 11, audit["products"]
            rest = [await join(b, host.room_id) for _ in range(units)]
            try:
                told = await asyncio.gather(*(try_pay(v, product_id) for v in rest))
            finally:
                await asyncio.gather(*(v.close() for v in rest))
            assert told.count("order_placed") == units - 11, told
            audit = await host.audit()
            audit_ok(audit)
            assert audit["orders"]["orders"] == units
            assert audit["products"][0]["sold"] == units
        finally:
            await asyncio.gather(*(v.close() for v in crowd))


async def v_pay_hold(v: ViewerClient, hold: dict[str, Any]) -> None:
    placed = await v.request("checkout", hold_id=hold["hold"]["id"])
    assert placed["type"] == "order_placed", placed


async def _audit_when_whole(host: Host) -> dict[str, Any] | None:
    r = await host.http.get(f"/api/rooms/{host.room_id}/audit",
                            headers={"X-Host-Key": host.key})
    if r.status_code != 200:
        return None
    audit: dict[str, Any] = r.json()
    return audit if audit.get("state") == "whole" else None
