"""The bounded HTTP edge: what a stranger's TCP connection may cost before the app sees it.

`BoundedHttpToolsProtocol` is uvicorn's httptools protocol (uvicorn accepts a
protocol class as its `http` setting) with three limits that httptools and
uvicorn do not have:

- the request line and headers of each request together are at most
  `server.max_header_bytes`; over it the client gets 431 and the connection is
  closed. httptools itself has no limit, and it joins a header's pieces by
  copying, so an endless header line cost the event loop seconds and the process
  memory it never gave back;
- a connection that has not completed a request's headers within
  `server.header_timeout_s` of its first byte (or of being opened) is closed:
  slowloris and silent sockets. Between requests uvicorn's keep-alive timeout
  (`server.keep_alive_timeout_s`) applies;
- at most `server.max_connections_per_ip` connections per client address are
  open at once in this process (IPv6 clients by /64), HTTP and the WebSockets
  they upgrade to alike; the next one gets 503 and is closed.

Bytes are counted before the parser sees them, so the parser never holds more
than the limit. Each client fault is logged on one INFO line of uvicorn's
error logger (like its own connection lines, so --workers processes show it
too), at most once a minute per address and kind, with the number left out since. After the upgrade
the transport belongs to the WebSocket protocol (server/realtime/fastws.py): nothing
here runs per WebSocket frame; the connection's place under the per-IP cap
moves to that protocol, which gives it back when the connection is lost.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httptools
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from server.core.netrules import parse_networks
from server.core.settings import ServerSettings

# After a refusal the answer is sent and the write side shut (FIN), reading
# stops, and the socket is closed this much later: a client still sending has
# time to read the answer before the close (with unread data) resets it.
LINGER_S = 1.0
# One log line per address and kind of fault per this many seconds.
LOG_INTERVAL_S = 60.0
# Most (kind, address) pairs the log limiter remembers; past it, the oldest go.
LOG_KEYS_MAX = 4096

_ATTRIBUTE = "livesell_edges"


@dataclass(frozen=True, slots=True)
class EdgeLimits:
    """The limits, carried on uvicorn's Config (picklable: --workers sends the
    config to each worker process)."""

    max_header_bytes: int
    header_timeout_s: float
    max_connections_per_ip: int
    cap_exempt: tuple[str, ...]

    @classmethod
    def from_settings(cls, server: ServerSettings) -> EdgeLimits:
        return cls(max_header_bytes=server.max_header_bytes,
                   header_timeout_s=server.header_timeout_s,
                   max_connections_per_ip=server.max_connections_per_ip,
                   cap_exempt=tuple(server.connection_cap_exempt.split()))


def attach(config: Config, server: ServerSettings) -> Config:
    """Give `config` the limits its BoundedHttpToolsProtocol connections apply."""
    setattr(config, _ATTRIBUTE, EdgeLimits.from_settings(server))
    return config


def limits_of(config: Config) -> EdgeLimits:
    limits = getattr(config, _ATTRIBUTE, None)
    if isinstance(limits, EdgeLimits):
        return limits
    return EdgeLimits.from_settings(ServerSettings())


class LogLimiter:
    """At most one line per (kind, address) per interval; counts what it held back."""

    def __init__(self, interval_s: float = LOG_INTERVAL_S, max_keys: int = LOG_KEYS_MAX) -> None:
        self.interval_s = interval_s
        self.max_keys = max_keys
        self._last: dict[tuple[str, str], tuple[float, int]] = {}

    def allow(self, kind: str, address: str) -> int | None:
        """None: stay quiet. Otherwise log now, mentioning this many held back."""
        now = time.monotonic()
        key = (kind, address)
        seen = self._last.get(key)
        if seen is not None and now - seen[0] < self.interval_s:
            self._last[key] = (seen[0], seen[1] + 1)
            return None
        if seen is None and len(self._last) >= self.max_keys:
            self._prune(now)
        self._last[key] = (now, 0)
        return 0 if seen is None else seen[1]

    def _prune(self, now: float) -> None:
        for key in [k for k, (t, _) in self._last.items() if now - t >= self.interval_s]:
            del self._last[key]
        while len(self._last) >= self.max_keys:  # all recent: forget the oldest
            del self._last[next(iter(self._last))]


class ConnectionGate:
    """Open connections per client address in one server (one process)."""

    def __init__(self, limits: EdgeLimits) -> None:
        self.cap = limits.max_connections_per_ip
        self.exempt = parse_networks(" ".join(limits.cap_exempt))
        self.open: dict[str, int] = {}
        self.log = LogLimiter()

    def key(self, host: str) -> str | None:
        """The address a connection counts under, or None if it is not counted."""
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return None  # not an IP (a Unix socket's peer): nothing to count by
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if any(address in network for network in self.exempt):
            return None
        if isinstance(address, ipaddress.IPv6Address):
            # One client usually holds a whole /64: count it as one address.
            return str(ipaddress.IPv6Network((address, 64), strict=False))
        return str(address)

    def admit(self, host: str) -> Callable[[], None] | None:
        """None: over the cap. Otherwise admitted: call the result once when the
        connection is lost."""
        key = self.key(host) if self.cap > 0 else None
        if key is None:
            return _nothing
        count = self.open.get(key, 0)
        if count >= self.cap:
            return None
        self.open[key] = count + 1
        released = False

        def release() -> None:
            nonlocal released
            if released:
                return
            released = True
            left = self.open[key] - 1
            if left:
                self.open[key] = left
            else:
                del self.open[key]

        return release


def _nothing() -> None:
    pass


_gates: weakref.WeakKeyDictionary[ServerState, ConnectionGate] = weakref.WeakKeyDictionary()


def gate_of(server_state: ServerState, limits: EdgeLimits) -> ConnectionGate:
    gate = _gates.get(server_state)
    if gate is None:
        gate = _gates[server_state] = ConnectionGate(limits)
    return gate


def _plain_response(status: bytes, body: bytes, default_headers: list[tuple[bytes, bytes]]
                    ) -> bytes:
    parts = [b"HTTP/1.1 ", status, b"\r\n"]
    for name, value in default_headers:
        parts += [name, b": ", value, b"\r\n"]
    parts += [b"content-type: text/plain; charset=utf-8\r\n",
              b"x-content-type-options: nosniff\r\n",
              b"content-length: ", str(len(body)).encode(), b"\r\n",
              b"connection: close\r\n\r\n", body]
    return b"".join(parts)


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a bounded request head, a header-read
    timeout and a per-address connection cap (see the module docstring)."""

    def __init__(self, config: Config, server_state: ServerState, app_state: dict[str, Any],
                 _loop: asyncio.AbstractEventLoop | None = None) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.limits = limits_of(config)
        # True while the bytes fed belong to a request's head (line and headers).
        self.in_head = True
        self.head_bytes = 0
        self.head_timer: asyncio.TimerHandle | None = None
        self.refused = False
        self.release_slot: Callable[[], None] | None = None

    # ---------------------------------------------------------------- connection
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        host = self.client[0] if self.client else ""
        gate = gate_of(self.server_state, self.limits)
        release = gate.admit(host)
        if release is None:
            held_back = gate.log.allow("cap", gate.key(host) or host)
            if held_back is not None:
                self.logger.info("%s - refused a connection: %d open from this address "
                                 "(server.max_connections_per_ip)%s", host, gate.cap,
                                 since_last_line(held_back))
            # No linger: the client has sent little or nothing yet, and a burst of
            # refused connections must not hold descriptors for a second each.
            self.refuse(b"503 Service Unavailable",
                        b"Too many connections from your address.\n", linger=False)
            return
        self.release_slot = release
        self.arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self.cancel_head_timer()
        release, self.release_slot = self.release_slot, None
        if release is not None:
            release()
        super().connection_lost(exc)

    def handle_websocket_upgrade(self) -> None:
        self.cancel_head_timer()
        super().handle_websocket_upgrade()
        # The transport now belongs to the WebSocket protocol; its connection_lost
        # gives the place under the cap back (FastWebSocketProtocol.edge_release).
        release, self.release_slot = self.release_slot, None
        if release is None:
            return
        ws = self.transport.get_protocol()
        if ws is not self and hasattr(type(ws), "edge_release"):
            ws.edge_release = release  # type: ignore[attr-defined]
        else:
            release()  # a WebSocket protocol without the hook: not counted from here on

    # ---------------------------------------------------------------- reading
    def data_received(self, data: bytes) -> None:
        if self.refused:
            return
        while data:
            if not self.in_head:
                self.feed(data)
                return
            if self.head_timer is None:
                self.arm_head_timer()
            room = self.limits.max_header_bytes - self.head_bytes
            if len(data) <= room:
                self.head_bytes += len(data)
                self.feed(data)
                return
            # Feed only what the limit allows: the head must end inside it.
            self.head_bytes += room
            piece, data = data[:room], data[room:]
            if piece and not self.feed(piece):
                return
            if self.in_head:
                self.head_too_large()
                return
            # The head ended in the piece; the rest is its body, perhaps the next
            # request (whose head the loop counts from 0: a pipelined head that
            # began inside the piece can pass the limit by that much, one read).

    def feed(self, data: bytes) -> bool:
        """uvicorn's data_received, with a client's malformed request or unsupported
        upgrade logged on one rate-limited INFO line (uvicorn logs a WARNING per
        request). False: stop feeding (closed, refused or upgraded)."""
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self.log_fault("invalid", "invalid HTTP request (%s): 400", str(exc) or "unparsable")
            self.send_400_response("Invalid HTTP request received.")
            return False
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self.log_fault("upgrade", "unsupported upgrade request (%s): ignored",
                               _header(self.headers, b"upgrade"))
            return False
        return not self.transport.is_closing()

    # ---------------------------------------------------------------- parser callbacks
    def on_headers_complete(self) -> None:
        self.in_head = False
        self.cancel_head_timer()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self.in_head = True
        self.head_bytes = 0
        super().on_message_complete()

    # ---------------------------------------------------------------- refusals
    def head_too_large(self) -> None:
        self.log_fault("head", "request line and headers over %d bytes: 431",
                       self.limits.max_header_bytes)
        if self.cycle is not None and not self.cycle.response_complete:
            # An earlier request on this connection is still being answered: a
            # second answer cannot be put in front of it. Just close.
            self.refused = True
            self.transport.close()
            return
        self.refuse(b"431 Request Header Fields Too Large",
                    b"Request line and headers are too large.\n")

    def refuse(self, status: bytes, body: bytes, linger: bool = True) -> None:
        """Answer, then close; with `linger`, shut the write side, stop reading and
        close after LINGER_S."""
        self.refused = True
        self.cancel_head_timer()
        transport = self.transport
        transport.write(_plain_response(status, body, self.server_state.default_headers))
        if not linger:
            transport.close()
            return
        if transport.can_write_eof():
            transport.write_eof()
        transport.pause_reading()
        self.loop.call_later(LINGER_S, transport.close)

    def arm_head_timer(self) -> None:
        self.head_timer = self.loop.call_later(self.limits.header_timeout_s,
                                               self.head_timeout)

    def cancel_head_timer(self) -> None:
        if self.head_timer is not None:
            self.head_timer.cancel()
            self.head_timer = None

    def head_timeout(self) -> None:
        self.head_timer = None
        if self.transport.is_closing():
            return
        self.log_fault("slow", "closed: no complete request headers within %gs",
                       self.limits.header_timeout_s)
        self.transport.close()

    def log_fault(self, kind: str, message: str, *args: object) -> None:
        host = self.client[0] if self.client else ""
        held_back = gate_of(self.server_state, self.limits).log.allow(kind, host)
        if held_back is not None:
            self.logger.info("%s - " + message + "%s", host, *args, since_last_line(held_back))


def _header(headers: list[tuple[bytes, bytes]] | None, name: bytes) -> str:
    for key, value in headers or ():
        if key == name:
            return value[:40].decode("latin-1").encode("unicode_escape").decode("ascii")
    return ""


def since_last_line(held_back: int) -> str:
    return f" ({held_back} more since the last line)" if held_back else ""
