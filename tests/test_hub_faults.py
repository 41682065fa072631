"""The hub under faults: a viewer that stops reading costs the other viewers
nothing."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from server.hub import Conn, Hub, LocalRoom
from tests.support import LiveServer, ViewerClient, create_room, join, make_settings


async def _wait_for(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


async def _small_window_socket(port: int) -> socket.socket:
    """A connected TCP socket with a small receive buffer: when its owner stops
    reading, the kernel absorbs little and the server's own buffer fills."""
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


# ------------------------------------------------------------------ case 5


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
        else:
            assert stalled_conn.closed

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
