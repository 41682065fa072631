"""One synthetic viewer: a WebSocket connection that follows the protocol's client
rules (docs/protocol.md section 7) and records what it was told.

Connections use the `websockets` library's sans-I/O client protocol under a
plain asyncio `Protocol`: no task per connection and no per-frame await, so a
generator process can hold thousands of viewers. Each viewer applies events in
`seq` order, asks for a `resync` on a gap, resumes with `since=<last seq>` and
its token (offered as a subprotocol, never in the URL) after a drop, and
re-sends unanswered requests with the same `request_id` after a reconnect (the
server makes those retries safe).

A viewer has one connection attempt at a time and listens to one link, its
current one: a link it gave up on (a connect that timed out, a connection
replaced on reconnect) is aborted, and any frame it still delivers is ignored.
Otherwise a late `welcome` on a stale link would rename the viewer (its token
and viewer id) while its requests go out on the current link under another
identity, so holds and orders would be recorded against the wrong viewer.

A viewer may be given a loopback source address to connect from
(`connect_from`, 127.0.0.0/8 only): the server tells guests apart by their
address, and a referral invitee on its inviter's address would be refused as
a self-invite (loadtest/referrals.py spreads them over 127.0.0.x).

What a viewer was told (holds, placed orders, coupon claims, lottery entries)
goes to its `Crowd` (the protocol below; loadtest/crowd.py implements it),
which owns the counters, latencies and behaviour; the viewer owns its
connection and its sequence bookkeeping.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import itertools
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast

import orjson
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.protocol import State
from websockets.typing import Subprotocol
from websockets.uri import parse_uri

from loadtest.model import Gap, ViewerRecord
from loadtest.stats import Reservoir
from server.realtime import handshake

CONNECT_TIMEOUT_S = 30.0
REQUEST_TIMEOUT_S = 30.0
REQUEST_RESENDS = 3
RECONNECT_ATTEMPTS = 20
LOOPBACK_V4 = ipaddress.ip_network("127.0.0.0/8")


def now_ms() -> float:
    return time.time() * 1000.0


def loopback_source(address: str) -> str:
    """`address` when it is an IPv4 loopback address (127.0.0.0/8, which Linux routes
    to `lo` whole): the only kind a viewer may connect from. Else ValueError."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        raise ValueError(f"source address {address!r} is not an IP address") from None
    if ip.version != 4 or ip not in LOOPBACK_V4:
        raise ValueError(f"source address {address} is not in 127.0.0.0/8: viewers only "
                         "connect from loopback addresses")
    return str(ip)


class FrameSink(Protocol):
    """What a link reports to: its text frames, and its end."""

    def on_frame(self, data: bytes) -> None: ...

    def on_lost(self, link: Link) -> None: ...


class Crowd(Protocol):
    """What a viewer needs from the crowd it belongs to (loadtest/crowd.py): where
    to connect, the process's counters and clock, its task set, and where to
    report the room's events and unanswered errors."""

    ws_base: str
    host: str
    port: int
    connected: int
    frames: int
    applied: int
    latency: Reservoir
    finishing: bool

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None: ...

    def rng_delay(self, lo: float, hi: float) -> float: ...

    def learn_offset(self, server_time: float) -> None: ...

    def server_to_local(self, server_ms: float) -> float: ...

    def on_error(self, viewer: Viewer, msg: dict[str, Any]) -> None: ...

    def on_event(self, viewer: Viewer, kind: str, msg: dict[str, Any]) -> None: ...


class Link(asyncio.Protocol):
    """One TCP connection carrying one WebSocket; reports frames to its viewer."""

    def __init__(self, viewer: FrameSink, url: str,
                 subprotocols: Sequence[str] | None = None) -> None:
        self.viewer = viewer
        self.deliver: Callable[[bytes], None] = viewer.on_frame  # a text frame's payload
        # Credentials travel as subprotocols (server/realtime/handshake.py), never in the URL.
        self.ws = ClientProtocol(parse_uri(url), max_size=2**24,
                                 subprotocols=[Subprotocol(p) for p in subprotocols]
                                 if subprotocols else None)
        self.transport: asyncio.Transport | None = None
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.dropped = False  # closed on purpose without a close frame (a simulated drop)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        if self.dropped:  # given up on before the connection existed
            self.transport.abort()
            return
        self.ws.send_request(self.ws.connect())
        self._flush()

    def data_received(self, data: bytes) -> None:
        self.ws.receive_data(data)
        for event in self.ws.events_received():
            if isinstance(event, Frame):
                if event.opcode is Opcode.TEXT:
                    self.deliver(bytes(event.data))
            elif isinstance(event, Response) and not self.opened.done():
                if self.ws.handshake_exc is not None:
                    self.opened.set_exception(self.ws.handshake_exc)
                else:
                    self.opened.set_result(None)
        self._flush()

    def eof_received(self) -> bool | None:
        self.ws.receive_eof()
        self._flush()
        return None

    def _flush(self) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        for chunk in self.ws.data_to_send():
            if chunk:
                self.transport.write(chunk)
            elif self.transport.can_write_eof():
                self.transport.write_eof()
        if self.ws.close_expected() and self.ws.state is State.CLOSED:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(ConnectionError(f"connection lost: {exc}"))
        self.viewer.on_lost(self)

    def send(self, payload: bytes) -> bool:
        if self.ws.state is not State.OPEN or self.transport is None \
                or self.transport.is_closing():
            return False
        self.ws.send_text(payload)
        self._flush()
        return True

    def close(self, code: int = 1000) -> None:
        if self.ws.state is State.OPEN:
            self.ws.send_close(code)
            self._flush()
        elif self.transport is not None:
            self.transport.close()

    def drop(self) -> None:
        """Cut the connection with no close frame, as a network failure would (one
        still being made is cut as soon as it exists)."""
        self.dropped = True
        if self.transport is not None:
            self.transport.abort()

    @property
    def close_code(self) -> int:
        code = self.ws.close_rcvd.code if self.ws.close_rcvd is not None else 1006
        return int(code)


class _ViewerLink(Link):
    """A viewer's link: hands its frames to the viewer with itself, so that the
    viewer can tell its current link from a stale one."""

    def __init__(self, viewer: Viewer, url: str, subprotocols: Sequence[str]) -> None:
        super().__init__(viewer, url, subprotocols)
        self.deliver = functools.partial(viewer.on_link_frame, self)
        # Its welcome has been read (set by the viewer): this link's identity is the viewer's.
        self.welcomed: asyncio.Future[None] = self.opened.get_loop().create_future()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.welcomed.done():
            self.welcomed.set_exception(ConnectionError(f"connection lost: {exc}"))
        super().connection_lost(exc)

    def settle(self) -> None:
        """Its connection futures are no longer awaited: cancel them, or mark their
        exception seen (asyncio logs an exception nobody retrieved)."""
        for fut in (self.opened, self.welcomed):
            if not fut.done():
                fut.cancel()
            elif not fut.cancelled():
                fut.exception()


@dataclass(slots=True)
class Pending:
    payload: bytes
    future: asyncio.Future[dict[str, Any]]


def _time_out(fut: asyncio.Future[dict[str, Any]]) -> None:
    if not fut.done():
        fut.set_exception(TimeoutError())


class Viewer:
    """A logical viewer: survives reconnections, keeps its token and its seq."""

    def __init__(self, crowd: Crowd, index: int, sampled: bool) -> None:
        self.crowd = crowd
        self.index = index
        self.sampled = sampled
        self.rec = ViewerRecord(index=index)
        self.token = ""
        self.link: _ViewerLink | None = None
        self.last: int | None = None  # last applied seq
        self.awaiting_snapshot = False
        self.open_gaps: list[Gap] = []  # gaps waiting for a resume or a snapshot
        self.catch_up_before = 0.0  # events with ts before this are replays, not live
        self.pending: dict[str, Pending] = {}
        self.ids = itertools.count(1)
        self.leaving = False  # closed on purpose; do not reconnect
        self.reconnecting = False
        self.connecting = False  # a connect() is under way; it owns the retries
        self.stale_frames = 0  # frames from a link that was not the current one (ignored)
        self.welcomed: asyncio.Event = asyncio.Event()
        self.on_event: Callable[[Viewer, str, dict[str, Any]], None] = crowd.on_event
        # The loopback address its connections come from (None: the system's choice,
        # 127.0.0.1): the server tells guests apart by address (a referral invitee on
        # its inviter's address is refused as a self-invite).
        self.source: str | None = None

    def connect_from(self, address: str) -> None:
        """Make every later connection come from `address` (127.0.0.0/8 only)."""
        self.source = loopback_source(address)

    # ------------------------------------------------------------ connection

    def url(self) -> str:
        q = [f"nickname=lt{self.index}"]
        if self.last is not None:
            q.append(f"since={self.last}")
        return f"{self.crowd.ws_base}?{'&'.join(q)}"

    def subprotocols(self) -> list[str]:
        """`livesell.v1`, and the token once the viewer has one."""
        return handshake.offer(token=self.token or None)

    async def connect(self) -> None:
        """Open a connection and wait for its welcome (raises on failure, after
        aborting the attempt's link: a link given up on never speaks for the viewer).
        One attempt at a time: the callers (the join, reconnect) retry one after another."""
        if self.connecting:
            raise RuntimeError(f"viewer {self.index} is already connecting")
        loop = asyncio.get_running_loop()
        self.connecting = True
        old = self.link
        if old is not None:  # replaced: it would stay open unread; close it as a drop
            self.link = None
            if self.welcomed.is_set():
                self.crowd.connected -= 1
            old.drop()
        self.welcomed.clear()
        link = _ViewerLink(self, self.url(), self.subprotocols())
        self.link = link
        try:
            await asyncio.wait_for(loop.create_connection(
                lambda: link, self.crowd.host, self.crowd.port,
                local_addr=(self.source, 0) if self.source else None), CONNECT_TIMEOUT_S)
            await asyncio.wait_for(link.opened, CONNECT_TIMEOUT_S)
            await asyncio.wait_for(link.welcomed, CONNECT_TIMEOUT_S)
        except BaseException:
            link.drop()
            link.settle()
            if self.link is link:
                self.link = None
                if self.welcomed.is_set():  # welcomed just as the wait timed out
                    self.welcomed.clear()
                    self.crowd.connected -= 1
            raise
        finally:
            self.connecting = False

    def on_lost(self, link: Link) -> None:
        if link is not self.link:
            return
        self.link = None
        self.crowd.connected -= 1 if self.welcomed.is_set() else 0
        self.welcomed.clear()
        if self.leaving:
            return
        if not link.dropped:
            self.rec.close_codes.append(link.close_code)
        if self.last is not None:
            gap = Gap(after=self.last, got=0, cause="disconnect")
            self.open_gaps.append(gap)
            self.rec.gaps.append(gap)
        self.awaiting_snapshot = False
        if not link.dropped and not self.connecting:
            # An unexpected close: come back as a real client would. (A link lost while
            # its connect() waits fails that connect, whose caller tries again: a second
            # attempt alongside it would mint a second identity.)
            self.crowd.spawn(self.reconnect(self.crowd.rng_delay(0.2, 1.0)))

    async def reconnect(self, delay_s: float) -> None:
        if self.reconnecting or self.leaving:
            return
        self.reconnecting = True
        try:
            await asyncio.sleep(delay_s)
            for attempt in range(RECONNECT_ATTEMPTS):
                if self.leaving or self.crowd.finishing:
                    return
                if self.link is not None and self.welcomed.is_set():
                    return  # back already (a trace's join reconnected it)
                try:
                    await self.connect()
                    self.rec.reconnects += 1
                    return
                except Exception:  # refused, reset or timed out: back off, try again
                    await asyncio.sleep(min(5.0, 0.2 * 2 ** attempt))
        finally:
            self.reconnecting = False

    def drop(self) -> None:
        if self.link is not None:
            self.link.drop()

    def leave(self) -> None:
        self.leaving = True
        if self.link is not None:
            self.link.close()

    # ------------------------------------------------------------ frames

    def on_link_frame(self, link: _ViewerLink, data: bytes) -> None:
        """A frame from `link`: read only if that is the viewer's current link."""
        if link is self.link:
            self.on_frame(data)
        else:
            self.stale_frames += 1

    def on_frame(self, data: bytes) -> None:
        """A frame from the current link (on_link_frame has checked that)."""
        crowd = self.crowd
        crowd.frames += 1
        msg = orjson.loads(data)
        kind = msg.get("type")
        seq = msg.get("seq")
        if seq is not None:
            if kind == "snapshot":
                self._snapshot(seq, msg)
            else:
                self._event(seq, kind, msg)
            return
        re = msg.get("re")
        if re is not None:
            p = self.pending.pop(re, None)
            if p is not None and not p.future.done():
                p.future.set_result(msg)
                return
        if kind == "welcome":
            link = self.link
            if link is None or link.welcomed.done():
                return  # one welcome per connection
            link.welcomed.set_result(None)
            self.token = msg["token"]
            self.rec.viewer_id = msg["viewer"]["viewer_id"]
            crowd.learn_offset(msg["server_time"])
            # Events published before the server counted this connection in arrive as
            # catch-up (missed events or the join's pending ones), not as live fan-out.
            self.catch_up_before = crowd.server_to_local(msg["server_time"])
            if self.last is not None and self.open_gaps and not msg.get("resumed"):
                self.awaiting_snapshot = True
            crowd.connected += 1
            self.welcomed.set()
            # Requests made while connecting or reconnecting go out now, with their
            # request ids (a retry the server answers with the first answer).
            for p in list(self.pending.values()):
                self._send(p.payload)
        elif kind == "error":
            crowd.on_error(self, msg)

    def _snapshot(self, seq: int, msg: dict[str, Any]) -> None:
        self._recovered("snapshot")
        self.awaiting_snapshot = False
        if self.rec.first_seq == 0:
            self.rec.first_seq = seq
        self.last = seq
        self.rec.last_seq = seq
        self.on_event(self, "snapshot", msg)

    def _recovered(self, how: str) -> None:
        for gap in self.open_gaps:
            gap.recovered = how
        self.open_gaps.clear()

    def gaps_end(self, how: str) -> None:
        """Close the open gaps without a recovery, saying why (`left`)."""
        self._recovered(how)

    def _event(self, seq: int, kind: str, msg: dict[str, Any]) -> None:
        last = self.last
        if last is None or self.awaiting_snapshot:
            return
        if seq <= last:
            self.rec.duplicates += 1
            return
        if seq != last + 1:
            gap = Gap(after=last, got=seq, cause="gap")
            self.rec.gaps.append(gap)
            self.open_gaps.append(gap)
            self.awaiting_snapshot = True
            self._send(b'{"type":"resync"}')
            return
        if self.open_gaps:
            # The first event after a reconnect follows on: the missed events were replayed.
            self._recovered("resume")
        if self.rec.first_seq == 0:
            self.rec.first_seq = last
        self.last = seq
        self.rec.last_seq = seq
        self.rec.applied += 1
        crowd = self.crowd
        crowd.applied += 1
        ts = msg.get("ts")
        if self.sampled and ts is not None:
            t = now_ms()
            if ts >= self.catch_up_before:
                crowd.latency.add(t - ts)
        self.on_event(self, kind, msg)

    # ------------------------------------------------------------ requests

    def _send(self, payload: bytes) -> bool:
        link = self.link
        return link is not None and self.welcomed.is_set() and link.send(payload)

    def send_frame(self, obj: dict[str, Any]) -> bool:
        return self._send(orjson.dumps(obj))

    def next_id(self, kind: str) -> str:
        return f"{kind[:2]}{self.index}n{next(self.ids)}"

    async def request(self, kind: str, fields: dict[str, Any],
                      request_id: str | None = None) -> dict[str, Any]:
        """Send one request and wait for its reply. A reply that does not come in
        time, or is lost with a connection, is asked for again with the same
        request_id (a retry the server answers with the first answer)."""
        rid = request_id or self.next_id(kind)
        payload = orjson.dumps({"type": kind, "request_id": rid, **fields})
        loop = asyncio.get_running_loop()
        for _ in range(REQUEST_RESENDS + 1):
            fut: asyncio.Future[dict[str, Any]] = loop.create_future()
            self.pending[rid] = Pending(payload, fut)
            self._send(payload)  # when not connected, the reconnect sends it
            # One timer per request rather than asyncio.wait_for, which wraps the
            # future in more futures and callbacks: at a sale's opening a generator
            # has thousands of requests in flight, and its own CPU is the limit.
            timer = loop.call_later(REQUEST_TIMEOUT_S, _time_out, fut)
            try:
                return await fut
            except TimeoutError:
                self.pending.pop(rid, None)
                if self.crowd.finishing:
                    break
            finally:
                timer.cancel()
        return {"type": "error", "re": rid, "code": "timeout",
                "message": "no reply from the server"}
