"""The hub under pressure: a viewer that stops reading never slows the room."""

from __future__ import annotations

import asyncio
import math
import socket
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import (
    BOTH_TRANSPORTS,
    LiveServer,
    create_room,
    eventually,
    join,
    make_settings,
)


@pytest.mark.parametrize("hook", [True, False], ids=["hook", "plain-asgi"])
async def test_stalled_viewer_is_cut_off_and_the_room_keeps_flowing(redis_url: str,
                                                                    data_dir: Path,
                                                                    hook: bool) -> None:
    live = await LiveServer(make_settings(
        redis_url, data_dir, hub={"client_buffer_bytes": 8192, "behind_timeout_s": 0.5}),
        fast=hook).start()
    try:
        async with httpx.AsyncClient(base_url=live.base) as http:
            host = await create_room(http)
        fast = await join(live, host.room_id)
        snap = await fast.next_event("snapshot")
        # A client that never reads, with a small receive buffer so the kernel cannot
        # absorb the backlog: the server's buffer for it fills up.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", live.port))
        reader, writer = await asyncio.open_connection(sock=sock)
        writer.write((f"GET /ws/{host.room_id} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                      "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                      "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        assert b" 101 " in await reader.readuntil(b"\r\n\r\n")
        hub = live.services.hub
        for _ in range(200):
            if len(hub.rooms[host.room_id].members) == 2:
                break
            await asyncio.sleep(0.02)
        n = 1500
        text = "y" * 2000
        last = 0
        for i in range(n):
            last = await hub.publish(host.room_id,
                                     {"type": "announcement", "text": f"{i} {text}"})
        # The fast viewer receives every event, in order, without gaps: the
        # announcements and the room's own events between them (viewer counts).
        for _ in range(n):
            await fast.next_event("announcement", timeout=30)
        seqs = [s for s in fast.seqs() if s <= last]
        assert seqs == list(range(snap["seq"] + 1, last + 1))
        texts = [f["text"] for f in fast.frames if f.get("type") == "announcement"]
        assert texts == [f"{i} {text}" for i in range(n)]
        # The stalled one was dropped by the server.
        for _ in range(200):
            if len(hub.rooms[host.room_id].members) == 1:
                break
            await asyncio.sleep(0.05)
        assert len(hub.rooms[host.room_id].members) == 1
        writer.close()
        await fast.close()
    finally:
        await live.stop()


@BOTH_TRANSPORTS
async def test_every_viewer_gets_each_event_once(server: LiveServer,
                                                 http: httpx.AsyncClient) -> None:
    host = await create_room(http)
    clients = [await join(server, host.room_id) for _ in range(50)]
    starts = [(await c.next_event("snapshot"))["seq"] for c in clients]
    assert len(set(starts)) == 1
    # Under the hook every viewer is on the fast path (pre-encoded frames written to
    # its transport); without it, every one is on the send_text fallback.
    room = server.services.hub.rooms[host.room_id]
    if server.fast:
        assert len(room.fast) == 50 and not room.slow
    else:
        assert len(room.slow) == 50 and not room.fast
    for i in range(20):
        await host.call("POST", "/announcements", {"text": f"a{i}"}, expect=201)
    seen = []
    for c in clients:
        got = [await c.next_event("announcement") for _ in range(20)]
        assert [g["text"] for g in got] == [f"a{i}" for i in range(20)]
        seqs = [g["seq"] for g in got]
        # In order and each once; other events of the room (the coalesced viewer
        # counts the 50 joins cause) may take numbers in between.
        assert seqs == sorted(set(seqs)) and seqs[0] > starts[0], seqs
        seen.append(seqs)
    assert all(s == seen[0] for s in seen), "every viewer got the same events"
    await asyncio.gather(*(c.close() for c in clients))


async def test_plain_asgi_websockets_work_without_the_fast_path(redis_url: str,
                                                                data_dir: Path) -> None:
    live = await LiveServer(make_settings(redis_url, data_dir), fast=False).start()
    try:
        async with httpx.AsyncClient(base_url=live.base) as http:
            host = await create_room(http)
            product = await host.product(stock=2)
            await host.sale(product["product_id"], units=2, limit=2)
            clients = [await join(live, host.room_id) for _ in range(5)]
            for c in clients:
                await c.next_event("snapshot")
            room = live.services.hub.rooms[host.room_id]
            assert len(room.slow) == 5 and not room.fast
            for i in range(10):
                await host.call("POST", "/announcements", {"text": f"p{i}"}, expect=201)
            for c in clients:
                got = [await c.next_event("announcement") for _ in range(10)]
                assert [g["text"] for g in got] == [f"p{i}" for i in range(10)]
            hold = await clients[0].request("buy", product_id=product["product_id"], quantity=2)
            assert hold["type"] == "hold"
            await asyncio.gather(*(c.close() for c in clients))
    finally:
        await live.stop()


async def test_big_rooms_get_coalesced_updates_less_often(redis_url: str,
                                                          data_dir: Path) -> None:
    # 50 viewers and a budget of 100 writes/s: at most one stock update per 0.5 s.
    live = await LiveServer(make_settings(
        redis_url, data_dir, hub={"coalesced_deliveries_per_s": 100},
        sale={"max_holds_per_viewer": 20})).start()  # one viewer holds 20 below
    try:
        async with httpx.AsyncClient(base_url=live.base) as http:
            host = await create_room(http)
            product = await host.product(stock=30)
            await host.sale(product["product_id"], units=30, limit=30)
            clients = [await join(live, host.room_id) for _ in range(50)]
            loop = asyncio.get_running_loop()
            started = loop.time()
            for _ in range(20):
                hold = await clients[0].request("buy", product_id=product["product_id"])
                assert hold["type"] == "hold"
                await asyncio.sleep(0.05)
            watcher = clients[-1]
            await watcher.next_event("stock", where=lambda f: f["stock"]["held"] == 20)
            elapsed = loop.time() - started
            updates = [f for f in watcher.frames if f["type"] == "stock"]
            assert len(updates) <= elapsed / 0.5 + 2, (len(updates), elapsed)
            await asyncio.gather(*(c.close() for c in clients))
    finally:
        await live.stop()


def test_coalesced_updates_slow_down_while_the_loop_runs_late() -> None:
    from server.features.pulse import BUSY_LAG_S, BUSY_MAX_WAIT_S, coalesce_interval

    # 10,000 viewers and 30,000 writes/s: every 1/3 s, or at most every 1 s when busy.
    assert coalesce_interval(10_000, 30_000, 0.0) == pytest.approx(1 / 3)
    assert coalesce_interval(10_000, 30_000, BUSY_LAG_S * 2) == BUSY_MAX_WAIT_S
    # A small room is stretched by the factor, not up to the cap.
    assert coalesce_interval(300, 30_000, BUSY_LAG_S * 2) == pytest.approx(0.04)
    # A room already slower than the cap keeps its own interval.
    assert coalesce_interval(60_000, 30_000, 1.0) == pytest.approx(2.0)


def test_coalesced_numbers_wait_while_many_requests_run() -> None:
    from server.features.pulse import BUSY_MAX_WAIT_S, BUSY_REQUESTS, coalesced_due

    # Quiet: as soon as the room's interval since the last update is up.
    assert coalesced_due(10.0, 9.5, 9.99, 0.4, 0)
    assert not coalesced_due(10.0, 9.8, 9.0, 0.4, 0)
    # Buyers waiting: the oldest unsent change waits until it is BUSY_MAX_WAIT_S old...
    assert not coalesced_due(10.0, 5.0, 9.5, 0.4, BUSY_REQUESTS)
    assert coalesced_due(10.0, 5.0, 10.0 - BUSY_MAX_WAIT_S, 0.4, BUSY_REQUESTS)
    assert not coalesced_due(10.0, 5.0, 9.5, 0.4, BUSY_REQUESTS * 10)
    # ...and never comes sooner than the room's own interval.
    assert not coalesced_due(10.0, 9.0, 8.0, 2.0, BUSY_REQUESTS)
    assert coalesced_due(10.0, 9.5, 9.0, 0.4, BUSY_REQUESTS - 1)


async def test_a_stock_change_waits_while_many_requests_run(
        redis_url: str, data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Checkouts held by a locked store count as running requests; while there are
    BUSY_REQUESTS of them (4 here, 64 by default), a buy's stock change reaches the
    room only once it is BUSY_MAX_WAIT_S old, and the count returns to 0 after."""
    from server.features import pulse
    from server.features.context import Context
    from tests.support import StoreLock

    monkeypatch.setattr(pulse, "BUSY_REQUESTS", 4)
    settings = make_settings(redis_url, data_dir, store={"busy_timeout_ms": 120_000})
    live = await LiveServer(settings).start()
    ctx: Context = live.services.show.ctx
    loop = asyncio.get_running_loop()
    try:
        async with httpx.AsyncClient(base_url=live.base, timeout=30) as http:
            host = await create_room(http)
            pid = (await host.product(stock=20))["product_id"]
            await host.sale(pid, units=20, limit=2)
            buyers = [await join(live, host.room_id) for _ in range(5)]
            late, watcher = await join(live, host.room_id), await join(live, host.room_id)
            holds = await asyncio.gather(*(b.request("buy", product_id=pid) for b in buyers))
            await watcher.next_event("stock", where=lambda f: f["stock"]["held"] == 5)
            async with StoreLock(settings.store_path) as lock:
                checkouts = [asyncio.ensure_future(b.request(
                    "checkout", hold_id=h["hold"]["id"], timeout=120))
                    for b, h in zip(buyers, holds, strict=True)]

                async def all_running() -> bool:
                    return ctx.requests_running() == len(buyers)
                await eventually(all_running)
                assert (await late.request("buy", product_id=pid))["type"] == "hold"
                bought = loop.time()
                await watcher.next_event("stock", where=lambda f: f["stock"]["held"] == 6)
                assert loop.time() - bought >= 0.8 * pulse.BUSY_MAX_WAIT_S
                await lock.release()
            answers = await asyncio.gather(*checkouts)
            assert [a["type"] for a in answers] == ["order_placed"] * len(buyers)

            async def none_running() -> bool:
                return ctx.requests_running() == 0
            await eventually(none_running)
    finally:
        await live.stop()


async def test_a_resume_ahead_of_the_rooms_live_stream_gets_each_event_once(
        redis_url: str, data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A resuming viewer's backlog is read on another Redis connection than the
    room's pub/sub, so it can hold an event this process has not received live yet
    (held here, as a slow pub/sub link would). When that event arrives live, the
    viewer that already has it must not get it again (a CI run saw it twice)."""
    live = await LiveServer(make_settings(redis_url, data_dir)).start()
    hub = live.services.hub
    assert hub is not None
    held: list[tuple[Any, bytes]] = []
    try:
        async with httpx.AsyncClient(base_url=live.base, timeout=30) as http:
            host = await create_room(http)
            watcher = await join(live, host.room_id)
            await host.call("POST", "/announcements", {"text": "one"}, expect=201)
            first = await watcher.next_event("announcement")
            deliver = hub.deliver
            monkeypatch.setattr(hub, "deliver", lambda room, payload: held.append(
                (room, payload)))
            await host.call("POST", "/announcements", {"text": "two"}, expect=201)

            async def two_held() -> bool:
                return len(held) == 1
            await eventually(two_held)
            resumed = await join(live, host.room_id, since=first["seq"])
            assert (await resumed.next_event("announcement"))["text"] == "two"
            monkeypatch.undo()
            for room, payload in held:
                deliver(room, payload)
            await watcher.next_event("announcement", where=lambda f: f["text"] == "two")
            await host.call("POST", "/announcements", {"text": "three"}, expect=201)
            for viewer in (watcher, resumed):
                await viewer.next_event("announcement", where=lambda f: f["text"] == "three")
            texts = [f["text"] for f in resumed.frames if f.get("type") == "announcement"]
            assert texts == ["two", "three"]
            assert resumed.seqs() == sorted(set(resumed.seqs()))
            await asyncio.gather(watcher.close(), resumed.close())
    finally:
        await live.stop()


async def test_a_crowd_leaving_at_once_beyond_the_redis_pool_is_recorded(
        redis_url: str, data_dir: Path) -> None:
    """Every leave is a Redis call; 60 at once through a pool of 4 connections must
    queue, not fail with "Too many connections" and leave viewers counted present."""
    import redis.asyncio as aioredis

    from server.core.keys import RoomKeys
    from tests.support import viewers

    live = await LiveServer(make_settings(redis_url, data_dir,
                                          redis={"max_connections": 4})).start()
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        async with httpx.AsyncClient(base_url=live.base) as http:
            host = await create_room(http)
        present = RoomKeys(host.room_id).present
        async with viewers(live, host.room_id, 60):
            assert await client.hlen(present) == 60
        for _ in range(250):
            if await client.hlen(present) == 0:
                break
            await asyncio.sleep(0.02)
        assert await client.hgetall(present) == {}
    finally:
        await client.aclose()
        await live.stop()


async def test_resync_spam_builds_at_most_one_snapshot_per_interval(
        redis_url: str, data_dir: Path) -> None:
    """50 viewers each send 100 `resync` frames (paced within a frame rate raised out
    of the way): each is answered, but a viewer gets at most one snapshot per
    `hub.resync_interval_s` (its joining one included), so the whole crowd causes at
    most 50 * (elapsed / interval + 1) snapshots, not 5,000."""
    interval = 2.0
    live = await LiveServer(make_settings(
        redis_url, data_dir, hub={"resync_interval_s": interval, "messages_per_s": 1000,
                                  "message_burst": 1000})).start()
    try:
        async with httpx.AsyncClient(base_url=live.base) as http:
            host = await create_room(http)
        hub = live.services.hub
        loop = asyncio.get_running_loop()

        async def spam() -> tuple[int, float, float]:
            started = loop.time()
            viewer = await join(live, host.room_id)
            try:
                for _ in range(100):
                    last_sent_ms = time.time() * 1000
                    await viewer.send({"type": "resync"})
                    await asyncio.sleep(0.03)
                # The last resync is answered too (coalesced: by a snapshot built
                # after it arrived).
                await eventually(lambda: _answered(viewer.frames, last_sent_ms), 60)
                done = loop.time()
                return sum(f["type"] == "snapshot" for f in viewer.frames), started, done
            finally:
                await viewer.close()

        results = await asyncio.gather(*(spam() for _ in range(50)))
        built = hub.snapshots_built
        received = sum(count for count, _, _ in results)
        for count, started, done in results:
            # Snapshot builds for one viewer start at least `interval` apart, all
            # between its connecting and its last snapshot's arrival.
            assert 2 <= count <= math.floor((done - started) / interval) + 1, \
                (count, done - started)
        elapsed = max(done for _, _, done in results) - min(s for _, s, _ in results)
        assert received <= built <= 50 * (math.floor(elapsed / interval) + 1), \
            (received, built, elapsed)
        assert built == received  # nobody fell behind: every snapshot built was delivered
    finally:
        await live.stop()


async def _answered(frames: list[dict[str, Any]], sent_ms: float) -> bool:
    return any(f["type"] == "snapshot" and f["server_time"] >= int(sent_ms) for f in frames)
