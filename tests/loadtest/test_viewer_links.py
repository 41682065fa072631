"""A synthetic viewer speaks for one identity: the one its current connection was
welcomed as. A real server on loopback, reached through a real TCP relay that
misbehaves on purpose (resets the first connection before the WebSocket
upgrade is answered, and holds back a connection's answers), and the load
generator's real `Crowd` and `Viewer`.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import struct
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import httpx
import pytest

from loadtest.crowd import Crowd
from loadtest.messages import WorkerPlan
from loadtest.scenario import load_scenario_file, resolve
from tests.support import LiveServer, create_room, eventually

HOLD_BACK_BOUND_S = 3.0  # how long the relay holds back answers waiting for another welcome
WELCOME_VIEWER = re.compile(rb'"welcome".*?"viewer_id":"([A-Za-z0-9_]+)"')


class Relay:
    """A TCP relay on 127.0.0.1 to the server. Connection 1 is reset as soon as its
    upgrade request arrives (as an overloaded server's listen queue does). The
    server's bytes for connection 2 are held back until some later connection has
    delivered its welcome (bounded: with no later connection they go on after
    HOLD_BACK_BOUND_S), so that connection 2's welcome arrives last."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.accepted = 0
        self.live: set[int] = set()  # relayed connections still open on both sides
        self.welcomed_as: dict[int, str] = {}  # relayed connection -> its welcome's viewer id
        self.later_welcomed = asyncio.Event()
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in list(self.writers):
            writer.transport.abort()  # ends both pumps of its connection
        await self.server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> None:
        self.writers.add(writer)
        self.accepted += 1
        n = self.accepted
        try:
            if n == 1:
                await reader.readuntil(b"\r\n\r\n")
                sock = writer.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                writer.transport.abort()  # an RST: the client sees a reset connection
                return
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.port)
            self.writers.add(up_writer)
            self.live.add(n)
            try:
                await asyncio.gather(self._pump(reader, up_writer, n, upstream=True),
                                     self._pump(up_reader, writer, n, upstream=False))
            finally:
                self.live.discard(n)
                up_writer.close()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def _pump(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, n: int,
                    upstream: bool) -> None:
        held = not upstream and n == 2
        try:
            while data := await src.read(65536):
                if held:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.later_welcomed.wait(), HOLD_BACK_BOUND_S)
                    held = False
                dst.write(data)
                await dst.drain()
                if not upstream and n not in self.welcomed_as and b'"welcome"' in data:
                    found = WELCOME_VIEWER.search(data)
                    assert found is not None, data[:300]
                    self.welcomed_as[n] = found.group(1).decode()
                    if n > 2:
                        self.later_welcomed.set()
        finally:
            dst.close()


@pytest.fixture
async def relay(server: LiveServer) -> AsyncIterator[Relay]:
    r = Relay(server.port)
    await r.start()
    try:
        yield r
    finally:
        await r.stop()


async def test_a_connection_reset_during_join_leaves_one_identity(
        server: LiveServer, http: httpx.AsyncClient, relay: Relay) -> None:
    """The first connection is reset before the upgrade is answered: the join
    tries again, and the viewer ends with exactly one live connection, whose
    identity is the one it records for its hold, and the store's order for that
    hold names that same buyer. (Before: the lost link also started a reconnect
    next to the join's retry, two guests were minted, and the later-arriving
    welcome on the stale link renamed the viewer while its buy went out on the
    other connection.)"""
    host = await create_room(http)
    product = await host.product(stock=5)
    await host.sale(product["product_id"], units=5, limit=1)
    assert relay.server is not None
    relay_port = int(relay.server.sockets[0].getsockname()[1])
    base = load_scenario_file(resolve("flash_sale"))
    # This viewer buys only when the test says so (no buyer, claimer or entrant role).
    scenario = replace(base, sale=replace(base.sale, buyer_share=0.0),
                       coupon=replace(base.coupon, enabled=False),
                       lottery=replace(base.lottery, enabled=False))
    plan = WorkerPlan(worker_id=0, host="127.0.0.1", port=relay_port, room_id=host.room_id,
                      indices=[0], sampled=set(),
                      scenario=scenario, abandon="release")
    sent: list[Any] = []
    crowd = Crowd(plan, sent.append)
    viewer = crowd.viewers[0]
    try:
        await crowd._join_one(viewer)
        assert crowd.result.join_failures == []
        assert relay.accepted >= 2

        # Connection 2's welcome (held back) has reached the viewer: before the fix,
        # on a stale link (the viewer then speaks on connection 3); after it, on its
        # only link.
        async def second_welcome_read() -> bool:
            return 2 in relay.welcomed_as and viewer.rec.viewer_id == relay.welcomed_as[2]
        await eventually(second_welcome_read, timeout=60)

        hold = await crowd.try_buy(viewer, product["product_id"], 1)
        assert hold is not None, crowd.outcomes
        recorded = crowd.result.holds[-1]
        assert recorded.hold_id == hold["id"]
        assert recorded.viewer_id == viewer.rec.viewer_id
        await crowd.checkout(viewer, hold["id"], None)
        assert [a.hold_id for a in crowd.result.acks] == [hold["id"]]

        orders = (await host.call("GET", "/orders?limit=100&offset=0"))["orders"]
        assert [(o["hold_id"], o["buyer_id"]) for o in orders] == \
            [(hold["id"], recorded.viewer_id)]
        # One viewer, one connection attempt at a time (the reset one, then the
        # join's retry), one live connection, welcomed as the identity it recorded.
        assert relay.accepted == 2
        assert len(relay.live) == 1, relay.live
        assert relay.welcomed_as[next(iter(relay.live))] == recorded.viewer_id
        assert crowd.connected == 1
    finally:
        crowd.finishing = True
        viewer.leave()
        for task in list(crowd.tasks):
            task.cancel()
        await asyncio.gather(*crowd.tasks, return_exceptions=True)
