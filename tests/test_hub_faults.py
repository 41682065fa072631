"""The hub under faults: a viewer that stops reading, alone or while it asks for
snapshots, costs the other viewers nothing and its own buffer stays bounded."""

from __future__ import annotations

import array
import asyncio
import fcntl
import logging
import math
import socket
import termios
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import redis.asyncio as aioredis
from websockets.asyncio.client import ClientConnection, connect

from server.core.keys import room_keys
from server.realtime.hub import Conn, ConnState, Hub, LocalRoom
from tests.support import LiveServer, ViewerClient, create_room, join, make_settings


async def _wait_for(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


async def _small_window_socket(port: int) -> socket.socket:
    """A connected TCP socket with a small receive buffer: when its owner stops
    reading, its window closes soon. (The server's kernel still takes up to its
    send buffer's limit before the server's own buffer fills.)"""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    return sock


async def _stalled_viewer(live: LiveServer, room_id: str) -> asyncio.StreamWriter:
    """A WebSocket viewer that completes the handshake and never reads again."""
    sock = await _small_window_socket(live.port)
    reader, writer = await asyncio.open_connection(sock=sock)
    writer.write((f"GET /ws/{room_id} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                  "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                  "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                  "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    assert b" 101 " in await reader.readuntil(b"\r\n\r\n")
    return writer


def _live(room: LocalRoom, conn: Conn) -> bool:
    return conn in room.fast or conn in room.slow


def _unsent(conn: Conn) -> int:
    """Bytes the server process holds for this viewer: its transport's buffer on
    the fast path, the hub's queue on the fallback path."""
    if conn.raw is None:
        return conn.outbox_bytes
    return int(conn.raw.transport.get_write_buffer_size())


def _unacknowledged(conn: Conn) -> int:
    """On the fast path, _unsent and the kernel's send queue for the viewer's
    socket (SIOCOUTQ): zero once the viewer has received everything."""
    if conn.raw is None:
        return conn.outbox_bytes
    queued = array.array("i", [0])
    sock = conn.raw.transport.get_extra_info("socket")
    fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, queued, True)
    return _unsent(conn) + queued[0]


class _Faults:
    """Collects what reaches the event loop's exception handler (an exception in
    a callback such as Hub._flush, or in a transport's pause_writing)."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        self.loop = asyncio.get_running_loop()
        self.previous = self.loop.get_exception_handler()
        self.loop.set_exception_handler(lambda _loop, ctx: self.seen.append(ctx))

    def restore(self) -> None:
        self.loop.set_exception_handler(self.previous)


async def _seqs_until(client: ViewerClient, last: int, timeout: float = 30.0) -> list[int]:
    """The seqs of the events the client received after its snapshot, once it has
    received `last` (or the deadline passed: then whatever it has)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not any(f.get("seq") == last for f in client.frames if f.get("type") != "snapshot"):
        if loop.time() > deadline:
            break
        await asyncio.sleep(0.01)
    return client.seqs()


# ------------------------------------ a viewer falls behind mid-fan-out (issue 10, case 5)


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "fallback"])
async def test_a_viewer_falling_behind_mid_fanout_costs_the_others_nothing(
        redis_url: str, data_dir: Path, caplog: pytest.LogCaptureFixture, fast: bool) -> None:
    """The stalled viewer joins between healthy ones, so some are written after it
    in the same fan-out loop in which its write passes the buffer mark (fast path:
    pause_writing -> behind; fallback path: its queue passes the bound -> closed)."""
    caplog.set_level(logging.WARNING)
    # The bound holds many events: a healthy viewer on the fallback path, whose
    # queue is checked before its sender task runs, must never reach it.
    live = await LiveServer(make_settings(
        redis_url, data_dir, hub={"client_buffer_bytes": 65536, "behind_timeout_s": 120}),
        fast=fast).start()
    faults = _Faults()
    stalled: asyncio.StreamWriter | None = None
    clients: list[ViewerClient] = []
    try:
        async with httpx.AsyncClient(base_url=live.base) as http:
            host = await create_room(http)
        hub: Hub = live.services.hub
        clients = [await join(live, host.room_id) for _ in range(4)]
        start = {(await c.next_event("snapshot"))["seq"] for c in clients}
        room = hub.rooms[host.room_id]
        await _wait_for(lambda: len(room.fast) + len(room.slow) == 4, "4 live viewers")
        assert {c.state for c in room.members} == {ConnState.LIVE}
        stalled = await _stalled_viewer(live, host.room_id)
        await _wait_for(lambda: len(room.fast) + len(room.slow) == 5, "the stalled one live")
        healthy = {c.viewer_id for c in clients}
        stalled_conn = next(c for c in room.members if c.viewer.viewer_id not in healthy)
        later = [await join(live, host.room_id) for _ in range(4)]
        start |= {(await c.next_event("snapshot"))["seq"] for c in later}
        clients += later
        assert len(start) == 1
        first = start.pop() + 1
        await _wait_for(lambda: len(room.fast) + len(room.slow) == 9, "9 live viewers")
        if fast:
            assert list(room.fast).index(stalled_conn) == 4  # four are written after it

        text = "y" * 4000
        published = 0
        # Until the stalled viewer is off live delivery (bounded: a few MB at most
        # fit in the kernel's buffers on loopback), then some more.
        last = 0
        while _live(room, stalled_conn) and published < 5000:
            last = await hub.publish(host.room_id, {"type": "announcement", "text": text})
            published += 1
        assert not _live(room, stalled_conn), "the stalled viewer never fell behind"
        for _ in range(20):
            last = await hub.publish(host.room_id, {"type": "announcement", "text": text})
            published += 1
        if fast:
            assert stalled_conn.behind and not stalled_conn.closed
            assert stalled_conn.state is ConnState.BEHIND
        else:
            assert stalled_conn.closed
            assert stalled_conn.state is ConnState.CLOSED

        # Every healthy viewer got every event (the room's own, such as viewer
        # counts, are numbered too), in order, once.
        for c in clients:
            seqs = [s for s in await _seqs_until(c, last) if s <= last]
            assert seqs == list(range(first, last + 1)), (len(seqs), last - first + 1)
            assert sum(f.get("type") == "announcement" for f in c.frames) == published
        assert [ctx.get("message") for ctx in faults.seen] == []
        assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    finally:
        faults.restore()
        if stalled is not None:
            stalled.close()
        await asyncio.gather(*(c.close() for c in clients))
        await live.stop()


# ------------------------------------ resync from a viewer that never reads (issue 10, case 9)


def _kernel_and_server_absorb() -> int:
    """What a never-reading peer's connection takes in besides the hub's queue:
    the kernel's send buffer at its largest, the peer's small receive buffer
    (doubled by the kernel) and the server transport's default high-water mark."""
    wmem_max = int(Path("/proc/sys/net/ipv4/tcp_wmem").read_text().split()[2])
    return wmem_max + 2 * 4096 + 64 * 1024


class _Counted:
    """Wraps the hub's real snapshot builder and resync handler to count calls."""

    def __init__(self, hub: Hub) -> None:
        self.snapshots = 0
        self.resyncs = 0
        self.unsent_after_resync: list[int] = []
        real_snapshot = hub.snapshot
        real_resync = hub.resync
        assert real_snapshot is not None

        async def snapshot(room_id: str) -> tuple[int, bytes]:
            self.snapshots += 1
            return await real_snapshot(room_id)

        async def resync(conn: Conn) -> None:
            await real_resync(conn)
            self.resyncs += 1
            self.unsent_after_resync.append(_unsent(conn))

        hub.snapshot = snapshot
        hub.resync = resync  # type: ignore[method-assign]


async def _room_with_products(http: httpx.AsyncClient, n: int) -> Any:
    host = await create_room(http)
    description = "d" * 2000
    for i in range(n):
        await host.call("POST", "/products", {"title": f"Product {i}", "price": 1000,
                                              "currency": "USD", "stock": 10,
                                              "description": description}, expect=201)
    return host


async def _read_until(ws: ClientConnection, frames: list[dict[str, Any]],
                      done: Callable[[], bool], timeout: float = 30.0) -> None:
    async def read() -> None:
        while not done():
            frames.append(orjson.loads(await ws.recv()))
    await asyncio.wait_for(read(), timeout)


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "fallback"])
async def test_resync_from_a_viewer_that_never_reads_costs_one_snapshot(
        redis_url: str, data_dir: Path, caplog: pytest.LogCaptureFixture, fast: bool) -> None:
    caplog.set_level(logging.WARNING)
    products = 100  # ~2 KB each: a snapshot of ~220 KB
    # The fallback path closes a viewer whose queue passes the bound, and the
    # snapshot alone must fit in it there.
    bound = 16384 if fast else 512 * 1024
    live = await LiveServer(make_settings(
        redis_url, data_dir,
        # No resync interval: this is about the resyncs that pass it (each after
        # the interval), which find the last snapshot still on its way.
        hub={"client_buffer_bytes": bound, "behind_timeout_s": 120,
             "messages_per_s": 1000, "message_burst": 1000, "resync_interval_s": 0.0}),
        fast=fast).start()
    faults = _Faults()
    ws: ClientConnection | None = None
    try:
        async with httpx.AsyncClient(base_url=live.base, timeout=30) as http:
            host = await _room_with_products(http, products)
            hub: Hub = live.services.hub
            assert hub.snapshot is not None
            snapshot_size = len((await hub.snapshot(host.room_id))[1])
            assert snapshot_size > 200_000
            counted = _Counted(hub)
            # A real WebSocket client that never reads: with at most one message
            # queued it stops reading its socket, whose window is small.
            sock = await _small_window_socket(live.port)
            ws = await connect(live.ws_url(host.room_id), sock=sock, max_queue=1,
                               max_size=2**24, compression=None, ping_interval=None)
            room = hub.rooms[host.room_id]
            await _wait_for(lambda: len(room.members) == 1, "the viewer joined")
            conn = next(iter(room.members))
            await _wait_for(lambda: conn.pending is None, "the join snapshot written")
            # The client takes in the welcome and the snapshot, then stops reading.
            # Wait until they have reached it, so that the first resync is answered.
            await _wait_for(lambda: _unacknowledged(conn) == 0, "the join snapshot received")
            most = 2 if fast else 2 + math.ceil(_kernel_and_server_absorb() / snapshot_size)
            frames_sent = max(60, most + 10)
            # The first is answered (at once, or just after a viewer-count event
            # written meanwhile has reached the client), and that snapshot cannot
            # reach it in full. The others come while it is on its way.
            await ws.send('{"type":"resync"}')
            await _wait_for(lambda: counted.snapshots == 2 and conn.pending is None
                            and not conn.behind, "the first resync's snapshot written")
            for _ in range(frames_sent - 1):
                await ws.send('{"type":"resync"}')
            await _wait_for(lambda: counted.resyncs == frames_sent or conn.closed,
                            "every resync handled")
            assert not conn.closed
            for _ in range(10):  # events the viewer, behind, does not get
                await hub.publish(host.room_id, {"type": "announcement", "text": "missed"})
            await asyncio.sleep(0)
            assert not conn.closed
            # One snapshot for the join, one for the first resync, none since: the
            # viewer is behind until that one has reached it. The fallback path
            # sees only its own queue, not what the server and the kernel took
            # from it: those can hold a few snapshots more.
            if fast:
                assert counted.snapshots == 2, counted.unsent_after_resync
            else:
                assert counted.snapshots <= most, (counted.snapshots, most)
            assert conn.behind and conn.state is ConnState.BEHIND
            limit = bound + snapshot_size + 4096
            assert max(counted.unsent_after_resync) <= limit, counted.unsent_after_resync
            assert _unsent(conn) <= limit
            built_before_reading = counted.snapshots

            # Now it reads: it drains, gets exactly one more snapshot, then live events.
            frames: list[dict[str, Any]] = []
            await _read_until(ws, frames, lambda: sum(
                f["type"] == "snapshot" for f in frames) == built_before_reading + 1)
            last = 0
            for i in range(10):
                last = await hub.publish(host.room_id, {"type": "announcement", "text": f"l{i}"})
            await _read_until(ws, frames, lambda: frames[-1].get("seq") == last)
            assert counted.snapshots == built_before_reading + 1
            assert frames[0]["type"] == "welcome"
            # The join snapshot, the first resync's (a few more on the fallback
            # path), then the one after draining: every one built was sent.
            snaps = [i for i, f in enumerate(frames) if f["type"] == "snapshot"]
            assert len(snaps) == counted.snapshots
            # After it, every event in order (the room's own, such as viewer
            # counts, are numbered too): no gap, and the ten sent live among them.
            after = frames[snaps[-1] + 1:]
            drain_seq = frames[snaps[-1]]["seq"]
            assert [f["seq"] for f in after] == list(range(drain_seq + 1, last + 1))
            assert [f["text"] for f in after if f["type"] == "announcement"] == [
                f"l{i}" for i in range(10)]
            assert not conn.behind and not conn.closed
            assert conn.state is ConnState.LIVE
        assert [ctx.get("message") for ctx in faults.seen] == []
        assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    finally:
        faults.restore()
        if ws is not None:
            await ws.close()
        await live.stop()


async def test_a_reading_viewer_gets_a_snapshot_for_each_resync(redis_url: str,
                                                                data_dir: Path) -> None:
    live = await LiveServer(make_settings(redis_url, data_dir)).start()
    viewer: ViewerClient | None = None
    try:
        async with httpx.AsyncClient(base_url=live.base) as http:
            host = await create_room(http)
            await host.product()
            viewer = await join(live, host.room_id)
            first = await viewer.next_event("snapshot")
            for i in range(3):
                await host.call("POST", "/announcements", {"text": f"a{i}"}, expect=201)
            a2 = await viewer.next_event("announcement", where=lambda f: f["text"] == "a2")
            for _ in range(3):
                await viewer.send({"type": "resync"})
                snap = await viewer.next_event("snapshot")
                assert snap["seq"] >= a2["seq"]
                assert [p["title"] for p in snap["products"]] == ["Test product"]
            for i in range(3):
                await host.call("POST", "/announcements", {"text": f"b{i}"}, expect=201)
            b2 = await viewer.next_event("announcement", where=lambda f: f["text"] == "b2")
            # Events kept flowing around the snapshots: none lost, none twice.
            seqs = [s for s in viewer.seqs() if s <= b2["seq"]]
            assert seqs == list(range(first["seq"] + 1, b2["seq"] + 1))
    finally:
        if viewer is not None:
            await viewer.close()
        await live.stop()


async def test_garbage_on_a_room_channel_does_not_stop_the_relay(
        server: LiveServer, http: httpx.AsyncClient, redis_url: str) -> None:
    """A message on a room's channel that is not an event (another publisher, a
    bug) is dropped; the relay goes on for the events after it."""
    host = await create_room(http)
    viewer = await join(server, host.room_id)
    await viewer.next_event("snapshot")
    keys = room_keys(host.room_id)
    client = aioredis.Redis.from_url(redis_url)
    try:
        # Garbage and a real event back to back, in one write: they reach the relay
        # together (a bad message once took the good ones of its tick with it).
        seq = int(await client.incr(keys.seq))
        event = orjson.dumps({"seq": seq, "type": "announcement", "text": "same tick"})
        async with client.pipeline(transaction=False) as pipe:
            pipe.publish(keys.channel, b"not an event")
            pipe.publish(keys.channel, event)
            await pipe.execute()
    finally:
        await client.aclose()
    got = await viewer.next_event("announcement", timeout=30)
    assert got["text"] == "same tick"
    await host.call("POST", "/announcements", {"text": "still here"}, expect=201)
    got = await viewer.next_event("announcement", timeout=30)
    assert got["text"] == "still here"
    await viewer.close()


async def test_events_lost_on_the_way_are_read_back_from_the_log_in_order(
        server: LiveServer, http: httpx.AsyncClient, redis_url: str) -> None:
    """An event that reaches the log but never the relay (a message lost on the
    way, as when a Redis Cluster shard fails over or a room's slot moves, where
    sharded pub/sub reports no reconnect): the next event's seq shows the gap, and
    the relay reads the missing ones back from the room's log and delivers them
    before it, each once."""
    host = await create_room(http)
    viewer = await join(server, host.room_id)
    await viewer.next_event("snapshot")
    await host.call("POST", "/announcements", {"text": "first"}, expect=201)
    await viewer.next_event("announcement", where=lambda f: f["text"] == "first")
    keys = room_keys(host.room_id)
    client = aioredis.Redis.from_url(redis_url)
    try:
        # Two events numbered and logged as publish.lua does, but never published.
        for text in ("lost one", "lost two"):
            seq = int(await client.incr(keys.seq))
            await client.rpush(keys.log, orjson.dumps(
                {"seq": seq, "type": "announcement", "text": text, "ts": 1}))
    finally:
        await client.aclose()
    await host.call("POST", "/announcements", {"text": "after"}, expect=201)
    texts = []
    while "after" not in texts:
        texts.append((await viewer.next_event("announcement", timeout=30))["text"])
    assert texts == ["lost one", "lost two", "after"]
    seqs = viewer.seqs()
    assert seqs == sorted(set(seqs)) and seqs == list(range(seqs[0], seqs[-1] + 1)), seqs
    await viewer.close()


async def test_a_viewer_whose_close_frame_is_sent_or_read_leaves_the_flush_in_that_step(
        redis_url: str, data_dir: Path) -> None:
    """The flush writes to the live viewers' transports asking only the transport
    (hub.py). A viewer whose close frame is sent while its transport stays open for
    the peer's answer, or whose close frame is read, is off that list in the same
    step (FastWebSocketProtocol.on_closing), so no event frame follows its close."""
    from websockets.frames import Close, Frame, Opcode

    live = await LiveServer(make_settings(redis_url, data_dir), fast=True).start()
    clients: list[ViewerClient] = []
    try:
        async with httpx.AsyncClient(base_url=live.base) as http:
            host = await create_room(http)
            clients = [await join(live, host.room_id) for _ in range(4)]
            for c in clients:
                await c.next_event("snapshot")
            hub: Hub = live.services.hub
            room = hub.rooms[host.room_id]
            await _wait_for(lambda: len(room.fast) == 4, "4 live viewers")
            assert len(room.transports()) == 4
            closed_by_us, closed_by_peer = list(room.fast)[:2]
            assert closed_by_us.raw is not None and closed_by_peer.raw is not None
            # Our close frame, the transport left open for the answer: only the hook
            # keeps the flush from writing after it.
            closed_by_us.raw.close_now(4000, "test", abort_after=600)
            assert not closed_by_us.raw.transport.is_closing()
            assert closed_by_us not in room.fast
            assert closed_by_us.raw.transport not in room.transports()
            # The peer's close frame as the server reads it (the test shares its loop).
            closed_by_peer.raw.data_received(
                Frame(Opcode.CLOSE, Close(1000, "").serialize()).serialize(
                    mask=True, extensions=[]))
            assert closed_by_peer not in room.fast
            assert closed_by_peer.raw.transport not in room.transports()
            assert len(room.transports()) == 2
            await host.call("POST", "/announcements", {"text": "after"}, expect=201)
            gone = {closed_by_us.viewer.viewer_id, closed_by_peer.viewer.viewer_id}
            stayed = [c for c in clients if c.viewer_id not in gone]
            assert len(stayed) == 2
            for c in stayed:
                await c.next_event("announcement", where=lambda f: f["text"] == "after")
    finally:
        await asyncio.gather(*(c.close() for c in clients))
        await live.stop()
