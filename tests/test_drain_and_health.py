"""Drain on SIGTERM and the health of a process whose Redis dies: real Redis
processes killed and restarted, a real store lock from another process."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import httpx
import pytest

from server.state.embedded_redis import RedisServer
from tests.support import LiveServer, StoreLock, create_room, eventually, join, make_settings


async def test_drain_answers_checkouts_in_flight_then_closes_with_1012(
        redis_url: str, data_dir: Path) -> None:
    settings = make_settings(redis_url, data_dir, store={"busy_timeout_ms": 120_000},
                             server={"shutdown_grace_s": 60.0})
    live = await LiveServer(settings).start()
    try:
        async with httpx.AsyncClient(base_url=live.base, timeout=30) as http:
            host = await create_room(http)
            product = await host.product(stock=20)
            pid = product["product_id"]
            await host.sale(pid, units=20, limit=2)
            buyers = [await join(live, host.room_id) for _ in range(6)]
            holds = await asyncio.gather(*(b.request("buy", product_id=pid) for b in buyers))
            async with StoreLock(settings.store_path) as lock:
                checkouts = [asyncio.ensure_future(b.request("checkout", hold_id=h["hold"]["id"],
                                                              timeout=120))
                             for b, h in zip(buyers, holds, strict=True)]

                async def all_waiting() -> bool:
                    return len(live.services.requests) == len(buyers)
                await eventually(all_waiting)
                drain = asyncio.ensure_future(live.services.drain())
                await eventually(lambda: asyncio.sleep(0, live.services.draining))
                # New work is refused while draining; the connection stays open.
                late = await buyers[0].request("buy", product_id=pid)
                assert late["type"] == "error" and late["code"] == "unavailable"
                assert (await http.get("/api/ready")).status_code == 503
                assert not drain.done()
                await lock.release()
            answers = await asyncio.gather(*checkouts)
            assert [a["type"] for a in answers] == ["order_placed"] * len(buyers)
            counts = await asyncio.wait_for(drain, 60)
            assert counts["answered"] == len(buyers)
            for b in buyers:
                await asyncio.wait_for(b.closed, 30)
                assert b.ws.close_code == 1012
                # The answer came before the close.
                types = [f["type"] for f in b.frames]
                assert "order_placed" in types
    finally:
        await live.stop()
    # Nothing acknowledged was lost: every placed order is in the store.
    live = await LiveServer(settings).start()
    try:
        async with httpx.AsyncClient(base_url=live.base, timeout=30) as http:
            host.http = http
            audit = await host.audit()
            assert audit["ok"] and audit["orders"]["orders"] == 6
    finally:
        await live.stop()


async def test_redis_death_fails_closed_logs_once_and_heals(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Case 3, with the app's side: while Redis is down buys answer 'unavailable', the
    health says which part is down, one log line per change; viewers stay connected
    and, once Redis is back (same port, same append-only file), everything resumes.
    A checkout whose order committed while Redis was down is answered 'placed'."""
    caplog.set_level(logging.WARNING, logger="livesell")
    redis = RedisServer(tmp_path / "redis", appendonly=True)
    redis.start()
    settings = make_settings(redis.url, tmp_path / "data",
                             store={"busy_timeout_ms": 120_000, "recover_after_s": 1.0})
    live = await LiveServer(settings).start()
    try:
        async with httpx.AsyncClient(base_url=live.base, timeout=30) as http:
            assert (await http.get("/api/ready")).status_code == 200
            host = await create_room(http)
            product = await host.product(stock=10)
            pid = product["product_id"]
            await host.sale(pid, units=10, limit=5)
            viewer, payer = await join(live, host.room_id), await join(live, host.room_id)
            hold = await payer.request("buy", product_id=pid, quantity=2)
            async with StoreLock(settings.store_path) as lock:
                paying = asyncio.ensure_future(
                    payer.request("checkout", hold_id=hold["hold"]["id"], timeout=120))
                await eventually(lambda: asyncio.sleep(0, bool(live.services.requests)))
                killed = redis.process
                assert killed is not None and killed.stderr is not None
                killed.kill()
                killed.wait()
                killed.stderr.close()
                await lock.release()
            # The order committed: the buyer is told, though Redis cannot count it yet.
            placed = await paying
            assert placed["type"] == "order_placed", placed
            answers = [await viewer.request("buy", product_id=pid) for _ in range(20)]
            assert {a["code"] for a in answers} == {"unavailable"}
            health = await http.get("/api/health")
            assert health.status_code == 200 and health.json()["components"]["redis"] == "down"
            ready = await http.get("/api/ready")
            assert ready.status_code == 503 and ready.headers["retry-after"] == "1"
            downs = [r for r in caplog.records if "redis unavailable" in r.getMessage()]
            assert len(downs) == 1, [r.getMessage() for r in downs]
            assert not [r for r in caplog.records if r.exc_info], "no traceback per request"
            assert not viewer.closed.done()
            # Back on the same port with the same append-only file.
            redis = RedisServer(tmp_path / "redis", appendonly=True, port=redis.port)
            redis.start()

            async def is_ready() -> bool:
                return (await http.get("/api/ready")).status_code == 200
            await eventually(is_ready)
            again = await viewer.request("buy", product_id=pid)
            assert again["type"] == "hold", again
            # An event published before the hub's pub/sub link is back still reaches
            # the viewer (read back from the room's log), in order, once.
            sent = await host.call("POST", "/announcements", {"text": "back"}, expect=201)
            got = await viewer.next_event("announcement", timeout=60)
            assert got["seq"] == sent["seq"] and got["text"] == "back"
            seqs = viewer.seqs()
            assert seqs == sorted(set(seqs)), "in order, none twice"

            async def counted() -> bool:
                audit = await host.audit()
                return bool(audit["ok"] and audit["products"][0]["sold"] == 2)
            await eventually(counted)
            backs = [r for r in caplog.records if "redis answers again" in r.getMessage()]
            assert len(backs) == 1
            await asyncio.gather(viewer.close(), payer.close())
    finally:
        await live.stop()
        redis.stop()
