"""The raw-write floor for `livesell-loadtest bench`: the least work a Python hub
on uvloop can do per delivery, so livesell's fan-out cost has a floor beside it.

`python -m loadtest.floorhub` listens on 127.0.0.1 (a free port, printed as
`PORT <n>`) and speaks loadtest/refhub.py's control protocol: the bench
connects to `/control` and sends `{"rate": R, "duration": D, "size": S}`; the
hub then sends R events a second for D seconds (refhub's ~S-byte event with
`seq` and `ts`) and answers `{"done": <events>, "clients": <viewers>}`. With
`bench --trigger request` the bench paces the events itself, as it posts
livesell's announcements: each `{"once": true, "size": S}` sends one event at
once and is answered `{"done": 1, "clients": <viewers>}`.

Viewers connect to `/`. Their path is asyncio Protocols and nothing else: the
HTTP upgrade is checked and answered by hand (Sec-WebSocket-Accept from
hashlib and base64), each open transport sits in one list, and per event the
text frame is built once and `transport.write(frame)` is called on every
transport. What a viewer sends is skipped frame by frame without being kept;
a close frame is answered with a close frame and the transport is closed.
There is no per-viewer buffer bound, ping or slow-viewer policy: that is the
point (it is a floor, not a server); only the bench's own viewers connect.

`--state BYTES` gives each viewer that much memory, allocated as it joins (in
blocks of at most 2,000 bytes, from the same allocator as the transports): a
server keeps a session per viewer, allocated between one transport and the
next, and the flush then reads transports spread through memory. With it the
floor shows what that spread costs per delivery (`bench --floor-state`,
docs/benchmarks.md, issue 13, fifth part); the control replies carry the
bytes held as `state_bytes`.
The `/control` connection, off the data path, uses the `websockets` library's
sans-I/O server protocol.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import dataclasses
import hashlib
import json
import math
from typing import Any, cast

from websockets.frames import Close, CloseCode, Frame, Opcode
from websockets.http11 import Request
from websockets.protocol import State
from websockets.server import ServerProtocol

from loadtest.bench_hubs import paced
from loadtest.refhub import event, run_hub

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 section 1.3
MAX_HEAD = 8192  # bytes of request line and headers
MAX_COMMAND = 4096  # bytes of one /control message

# A close frame with code 1000, sent unmasked as a server's is.
CLOSE_FRAME = Frame(Opcode.CLOSE, Close(CloseCode.NORMAL_CLOSURE, "").serialize()
                    ).serialize(mask=False)


def accept_key(key: str) -> str:
    """Sec-WebSocket-Accept for a Sec-WebSocket-Key (RFC 6455 section 4.2.2)."""
    return base64.b64encode(hashlib.sha1(key.encode("ascii") + WS_GUID).digest()).decode()


def text_frame(payload: bytes) -> bytes:
    """One unmasked, final text frame: built once per event, written to every viewer."""
    return Frame(Opcode.TEXT, payload).serialize(mask=False)


def parse_head(head: bytes) -> tuple[str, dict[str, str]]:
    """The path and headers (names lower-cased) of a WebSocket upgrade request head
    (without its final blank line); ValueError saying what is wrong otherwise."""
    try:
        lines = head.decode("ascii").split("\r\n")
    except UnicodeDecodeError:
        raise ValueError("the request head is not ASCII") from None
    parts = lines[0].split(" ")
    if len(parts) != 3:
        raise ValueError(f"malformed request line {lines[0][:80]!r}")
    method, path, version = parts
    if method != "GET":
        raise ValueError(f"method {method[:20]!r}: only GET upgrades")
    if version != "HTTP/1.1":
        raise ValueError(f"{version[:20]!r}: HTTP/1.1 only")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise ValueError(f"malformed header line {line[:80]!r}")
        headers[name.lower()] = value.strip()
    if headers.get("upgrade", "").lower() != "websocket":
        raise ValueError("not a WebSocket upgrade (Upgrade: websocket is missing)")
    if "upgrade" not in (t.strip().lower() for t in headers.get("connection", "").split(",")):
        raise ValueError("not a WebSocket upgrade (Connection: Upgrade is missing)")
    if headers.get("sec-websocket-version") != "13":
        raise ValueError("Sec-WebSocket-Version: 13 only")
    key = headers.get("sec-websocket-key", "")
    try:
        raw = base64.b64decode(key, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 16:
        raise ValueError("Sec-WebSocket-Key: must be 16 bytes in base64")
    return path, headers


def bad_request(reason: str) -> bytes:
    body = (reason + "\n").encode()
    return (b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body)) + body


@dataclasses.dataclass(frozen=True, slots=True)
class Command:
    """A /control command: `rate` events a second for `duration` seconds, or (`once`)
    one event now, each of about `size` bytes."""

    size: int
    rate: float = 0.0
    duration: float = 0.0
    once: bool = False


def _number(cmd: dict[str, Any], name: str, lo: float, hi: float) -> float:
    value = cmd.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float) \
            or not math.isfinite(value) or not lo <= value <= hi:
        raise ValueError(f"{name}: a number from {lo:g} to {hi:g}")
    return float(value)


def parse_command(data: bytes | str) -> Command:
    """A /control command: `{"rate": R, "duration": D, "size": S}`, or
    `{"once": true, "size": S}` (one event now, the bench pacing the events);
    ValueError saying what is wrong."""
    try:
        cmd = json.loads(data)
    except ValueError:
        raise ValueError("a command is a JSON object") from None
    if not isinstance(cmd, dict):
        raise ValueError("a command is a JSON object")
    once = cmd.get("once", False)
    if not isinstance(once, bool):
        raise ValueError("once: true or false")
    size = _number(cmd, "size", 1.0, 65_536.0)
    if size != int(size):
        raise ValueError("size: a whole number of bytes")
    if once:
        return Command(int(size), once=True)
    return Command(int(size), _number(cmd, "rate", 0.001, 100_000.0),
                   _number(cmd, "duration", 0.0, 3600.0))


# Viewer state comes in blocks of this size (above pymalloc's 512-byte limit, so
# from the allocator uvloop's transports come from), and at most this much per
# connection: 10,000 viewers then hold at most 640 MB.
STATE_BLOCK = 2000
MAX_STATE = 65_536


class FloorHub:
    """The open viewer transports, and the emitter that writes to them."""

    def __init__(self, state_bytes: int = 0) -> None:
        self.state_bytes = state_bytes  # memory given to each viewer as it joins
        self.held = 0  # bytes of viewer state held now
        self.transports: list[asyncio.Transport] = []
        self.tasks: set[asyncio.Task[None]] = set()
        self.emitting = asyncio.Lock()  # one emit at a time, in order of arrival

    def emit_once(self, seq: int, size: int) -> None:
        frame = text_frame(event(seq, size).encode())
        for transport in self.transports:
            transport.write(frame)

    async def emit(self, rate: float, duration: float, size: int) -> int:
        count = int(rate * duration)
        async for n in paced(rate, count):
            self.emit_once(n + 1, size)
        return count

    def done(self, sent: int) -> dict[str, int]:
        """The answer to a command: events sent, viewers, viewer state held."""
        return {"done": sent, "clients": len(self.transports), "state_bytes": self.held}

    def spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)


class Connection(asyncio.Protocol):
    """One accepted connection: an upgrade request, then a viewer or the control."""

    def __init__(self, hub: FloorHub) -> None:
        self.hub = hub
        self.transport: asyncio.Transport | None = None
        self.head = b""
        self.viewer = False
        self.control: ServerProtocol | None = None
        self.once_seq = 0  # the seq of the last event sent by a `once` command
        self.pending = b""  # the unparsed start of a viewer's next frame header
        self.skip = 0  # payload bytes of a viewer's frame still to discard
        self.state: list[bytearray] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        # Right after the transport, before the next connection's: a server's session
        # objects come between one viewer's transport and the next in the same way.
        left = self.hub.state_bytes
        while left > 0:
            block = min(left, STATE_BLOCK)
            self.state.append(bytearray(block))
            left -= block
        self.hub.held += self.hub.state_bytes

    def connection_lost(self, exc: Exception | None) -> None:
        self.hub.held -= sum(len(block) for block in self.state)
        self.state = []
        if self.viewer:
            self.viewer = False
            self.hub.transports.remove(cast(asyncio.Transport, self.transport))

    def data_received(self, data: bytes) -> None:
        if self.viewer:
            self._viewer_data(data)
        elif self.control is not None:
            self._control_data(data)
        else:
            self._head_data(data)

    def eof_received(self) -> bool | None:
        if self.control is not None:
            self.control.receive_eof()
            self._control_flush()
        return None  # the transport closes itself

    def _head_data(self, data: bytes) -> None:
        transport = self.transport
        assert transport is not None
        self.head += data
        end = self.head.find(b"\r\n\r\n")
        if end < 0:
            if len(self.head) > MAX_HEAD:
                self._refuse(f"request head over {MAX_HEAD} bytes")
            return
        if end > MAX_HEAD:
            self._refuse(f"request head over {MAX_HEAD} bytes")
            return
        head, rest = self.head[:end], self.head[end + 4:]
        self.head = b""
        try:
            path, headers = parse_head(head)
        except ValueError as exc:
            self._refuse(str(exc))
            return
        if path == "/control":
            self.control = ServerProtocol(max_size=MAX_COMMAND)
            self._control_data(head + b"\r\n\r\n" + rest)
        elif path == "/":
            transport.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                            b"Connection: Upgrade\r\nSec-WebSocket-Accept: "
                            + accept_key(headers["sec-websocket-key"]).encode() + b"\r\n\r\n")
            self.viewer = True
            self.hub.transports.append(transport)
            if rest:
                self._viewer_data(rest)
        else:
            self._refuse(f"path {path[:80]!r}: viewers connect to / and the bench to /control")

    def _refuse(self, reason: str) -> None:
        assert self.transport is not None
        self.head = b""
        self.transport.write(bad_request(reason))
        self.transport.close()

    def _viewer_data(self, data: bytes) -> None:
        # Frames are walked, not kept: a header is parsed, its payload skipped.
        if self.skip:
            if len(data) <= self.skip:
                self.skip -= len(data)
                return
            data = data[self.skip:]
            self.skip = 0
        buf = self.pending + data if self.pending else data
        i, end = 0, len(buf)
        while end - i >= 2:
            opcode, second = buf[i] & 0x0F, buf[i + 1]
            length = second & 0x7F
            header = 2 + (2 if length == 126 else 8 if length == 127 else 0) \
                + (4 if second & 0x80 else 0)
            if end - i < header:
                break
            if opcode == Opcode.CLOSE:
                self._close_viewer()
                return
            if length == 126:
                length = int.from_bytes(buf[i + 2:i + 4], "big")
            elif length == 127:
                length = int.from_bytes(buf[i + 2:i + 10], "big")
            i += header
            if end - i < length:
                self.skip = length - (end - i)
                i = end
                break
            i += length
        self.pending = buf[i:]

    def _close_viewer(self) -> None:
        transport = self.transport
        assert transport is not None
        self.pending, self.skip = b"", 0
        if not transport.is_closing():
            transport.write(CLOSE_FRAME)
            transport.close()

    def _control_data(self, data: bytes) -> None:
        ws = self.control
        assert ws is not None
        ws.receive_data(data)
        for ev in ws.events_received():
            if isinstance(ev, Request):
                ws.send_response(ws.accept(ev))
            elif isinstance(ev, Frame) and ev.opcode is Opcode.TEXT:
                self.hub.spawn(self._command(bytes(ev.data)))
        self._control_flush()

    async def _command(self, data: bytes) -> None:
        try:
            cmd = parse_command(data)
        except ValueError as exc:
            self._control_send({"error": str(exc)})
            return
        if cmd.once:  # one event, now: the bench paces the events itself
            self.once_seq += 1
            self.hub.emit_once(self.once_seq, cmd.size)
            self._control_send(self.hub.done(1))
            return
        async with self.hub.emitting:
            sent = await self.hub.emit(cmd.rate, cmd.duration, cmd.size)
        self._control_send(self.hub.done(sent))

    def _control_send(self, reply: dict[str, Any]) -> None:
        ws = self.control
        if ws is None or ws.state is not State.OPEN:
            return
        ws.send_text(json.dumps(reply).encode())
        self._control_flush()

    def _control_flush(self) -> None:
        ws, transport = self.control, self.transport
        assert ws is not None and transport is not None
        if transport.is_closing():
            return
        for chunk in ws.data_to_send():
            if chunk:
                transport.write(chunk)
            elif transport.can_write_eof():
                transport.write_eof()
        if ws.close_expected() and ws.state is State.CLOSED:
            transport.close()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m loadtest.floorhub",
                                     description="The raw-write floor hub of the bench.")
    parser.add_argument("--state", type=state_bytes, default=0, metavar="BYTES",
                        help="memory given to each connection as it opens, to show what "
                        f"a server's per-viewer sessions cost the flush (0..{MAX_STATE})")
    return parser.parse_args(argv)


def state_bytes(text: str) -> int:
    """`--state`: a whole number of bytes, 0 to MAX_STATE."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a whole number of bytes, not {text!r}") from None
    if not 0 <= value <= MAX_STATE:
        raise argparse.ArgumentTypeError(f"{value} is not between 0 and {MAX_STATE} bytes")
    return value


async def main() -> None:
    hub = FloorHub(parse_args().state)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Connection(hub), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    print(f"PORT {port}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    run_hub(main)
