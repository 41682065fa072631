"""The bounded HTTP edge (server/realtime/edges.py), against `livesell serve` run as a
process: a request head over `server.max_header_bytes` gets 431 and a closed
connection (the exact limit passes), an endless header costs neither the event
loop nor memory, slow and silent connections are closed after
`server.header_timeout_s`, idle keep-alive ones after `server.keep_alive_timeout_s`,
and `server.max_connections_per_ip` counts HTTP and upgraded WebSocket
connections once each, refusing the next with 503 and one log line.

Real server process (its own event loop and memory, so its ping times and RSS
are its own), real Redis, raw sockets to 127.0.0.1 and real WebSocket clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from server.core.settings import ServerSettings, SettingsError, load_settings
from server.realtime.edges import ConnectionGate, EdgeLimits, LogLimiter

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="reads /proc and sends POSIX signals")

MiB = 1024 * 1024


class ServeProcess:
    """`python -m server serve` on a free loopback port with [server] overrides."""

    def __init__(self, tmp: Path, redis_url: str, **server: Any) -> None:
        self.tmp = tmp
        self.out_path = tmp / "serve.out"
        self.err_path = tmp / "serve.err"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("LIVESELL_")}
        self.env["LIVESELL_REDIS_URL"] = redis_url
        for key, value in server.items():
            self.env[f"LIVESELL_SERVER_{key.upper()}"] = str(value)
        self.proc: asyncio.subprocess.Process | None = None
        self.port = 0

    def output(self) -> str:
        return (self.out_path.read_text(errors="replace")
                + self.err_path.read_text(errors="replace"))

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def rss_bytes(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS")

    async def start(self) -> None:
        with self.out_path.open("wb") as out, self.err_path.open("wb") as err:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "server", "serve", "--host", "127.0.0.1", "--port", "0",
                "--data-dir", str(self.tmp / "data"), "--log-level", "info",
                stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=self.env)

        async def banner() -> int:
            for line in self.out_path.read_text().splitlines():
                if "host console:" in line:
                    return int(line.rsplit(":", 1)[1].split("/")[0])
            assert self.proc is not None and self.proc.returncode is None, self.output()
            return 0

        self.port = await eventually(banner, "the server prints its URLs")

        async def ready() -> bool:
            status, _ = await http_request(self.port, "GET", "/api/ready")
            return status == 200

        await eventually(ready, "the server is ready")

    async def stop(self) -> None:
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 60)
            except TimeoutError:
                proc.kill()
                await proc.wait()
                raise AssertionError("the server did not stop on SIGTERM") from None
            assert proc.returncode == 0, self.output()


async def eventually(check: Callable[[], Awaitable[Any]], what: str,
                     timeout: float = 60.0) -> Any:
    """Poll until `check` returns a truthy value; generous, CI machines are loaded."""
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.0f}s: {what}")
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def serving(tmp_path: Path, redis_url: str, **server: Any) -> AsyncIterator[ServeProcess]:
    proc = ServeProcess(tmp_path, redis_url, **server)
    try:
        await proc.start()
        yield proc
    finally:
        await proc.stop()


class Conn:
    """One raw TCP connection that speaks HTTP/1.1 by hand."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int) -> Conn:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 30)
        return cls(reader, writer)

    async def response(self) -> tuple[int, bytes]:
        """Status and body of the next response (content-length bodies only)."""
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), 30)
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        body = await asyncio.wait_for(self.reader.readexactly(length), 30)
        return status, body

    async def closed_by_server(self, timeout: float = 60.0) -> bytes:
        """Everything the server still sends, up to its close (EOF or reset)."""
        data = b""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"the server did not close the connection: {data[:200]!r}")
            try:
                chunk = await asyncio.wait_for(self.reader.read(65536), left)
            except ConnectionResetError:
                return data
            except TimeoutError:
                continue
            if not chunk:
                return data
            data += chunk

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


async def http_request(port: int, method: str, path: str,
                       headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """One request on its own connection (closed after), for polling."""
    try:
        conn = await Conn.open(port)
    except OSError:
        return 0, b""
    try:
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        conn.writer.write(f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}"
                          "Connection: close\r\n\r\n".encode())
        return await conn.response()
    except (OSError, asyncio.IncompleteReadError):
        return 0, b""
    finally:
        await conn.close()


def head_of_exactly(size: int) -> bytes:
    """A GET /api/health request whose line and headers are `size` bytes."""
    start = b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: "
    end = b"\r\n\r\n"
    head = start + b"p" * (size - len(start) - len(end)) + end
    assert len(head) == size
    return head


async def create_room(port: int) -> str:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30,
                                 headers={"Connection": "close"}) as http:
        r = await http.post("/api/rooms", json={"title": "edges"})
        assert r.status_code == 201, r.text
        room: str = r.json()["room"]["room_id"]
        return room


async def join(port: int, room: str) -> ClientConnection:
    ws = await connect(f"ws://127.0.0.1:{port}/ws/{room}", compression=None, open_timeout=30)
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), 30))
        if frame.get("type") == "welcome":
            return ws


# ---------------------------------------------------------------- pure parts


def test_the_gate_counts_ipv6_per_64_mapped_v4_as_v4_and_skips_the_exempt() -> None:
    gate = ConnectionGate(EdgeLimits(max_header_bytes=16384, header_timeout_s=10.0,
                                     max_connections_per_ip=2,
                                     cap_exempt=("127.0.0.0/8", "10.1.0.0/16")))
    assert gate.key("2001:db8:1:2::5") == gate.key("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    assert gate.key("2001:db8:1:3::5") != gate.key("2001:db8:1:2::5")
    assert gate.key("::ffff:192.0.2.7") == gate.key("192.0.2.7") == "192.0.2.7"
    assert gate.key("127.0.0.9") is None and gate.key("10.1.2.3") is None
    assert gate.key("not-an-ip") is None
    first, second = gate.admit("192.0.2.7"), gate.admit("::ffff:192.0.2.7")
    assert first is not None and second is not None
    assert gate.admit("192.0.2.7") is None
    assert gate.admit("192.0.2.8") is not None
    first()
    first()  # giving back twice gives back once
    assert gate.open["192.0.2.7"] == 1
    assert gate.admit("192.0.2.7") is not None and gate.admit("192.0.2.7") is None
    for _ in range(100):
        assert gate.admit("127.0.0.1") is not None  # exempt: never refused


def test_the_log_limiter_lets_one_line_a_minute_through_and_stays_bounded() -> None:
    limiter = LogLimiter(interval_s=60.0, max_keys=100)
    assert limiter.allow("head", "192.0.2.1") == 0
    assert [limiter.allow("head", "192.0.2.1") for _ in range(5)] == [None] * 5
    assert limiter.allow("slow", "192.0.2.1") == 0  # another kind of fault
    for i in range(1000):
        assert limiter.allow("head", f"198.51.{i // 256}.{i % 256}") == 0
    assert len(limiter._last) <= 100


def test_a_bad_exempt_network_is_refused_naming_the_key() -> None:
    bad = re.escape("server.connection_cap_exempt: '10.0.0.0/33'")
    with pytest.raises(SettingsError, match=bad):
        load_settings(None, env={"LIVESELL_SERVER_CONNECTION_CAP_EXEMPT": "::1 10.0.0.0/33"})
    with pytest.raises(SettingsError, match=re.escape("server.max_header_bytes")):
        load_settings(None, env={"LIVESELL_SERVER_MAX_HEADER_BYTES": "4096"})


# ---------------------------------------------------------------- head size


def test_defaults_are_the_documented_ones() -> None:
    server = ServerSettings()
    assert server.max_header_bytes == 16384
    assert server.header_timeout_s == 10.0
    assert server.max_connections_per_ip == 256
    assert server.connection_cap_exempt.split() == ["127.0.0.0/8", "::1"]


async def test_a_head_exactly_at_the_limit_passes_and_one_byte_more_gets_431(
        tmp_path: Path, redis_url: str) -> None:
    limit = 8192
    async with serving(tmp_path, redis_url, max_header_bytes=limit) as server:
        conn = await Conn.open(server.port)
        try:
            # Keep-alive: each request on the connection has its own limit.
            for _ in range(3):
                conn.writer.write(head_of_exactly(limit))
                status, _ = await conn.response()
                assert status == 200
            conn.writer.write(head_of_exactly(limit + 1))
            status, body = await conn.response()
            assert status == 431 and b"too large" in body
            assert await conn.closed_by_server() == b""
        finally:
            await conn.close()
        # The same in one write, and split across many small writes.
        for pieces in (1, 97):
            for size, expected in ((limit, 200), (limit + 1, 431)):
                conn = await Conn.open(server.port)
                try:
                    head = head_of_exactly(size)
                    step = -(-len(head) // pieces)
                    for i in range(0, len(head), step):
                        conn.writer.write(head[i:i + step])
                        await conn.writer.drain()
                    status, _ = await conn.response()
                    assert status == expected, (size, pieces)
                finally:
                    await conn.close()
        # A long request line counts like long headers.
        status, _ = await http_request(server.port, "GET", "/api/health?" + "q" * limit)
        assert status == 431
        # Malformed requests and an unsupported upgrade: answered as uvicorn does
        # (400; the request served without upgrading), one INFO line each kind.
        for _ in range(3):
            conn = await Conn.open(server.port)
            try:
                conn.writer.write(b"G\x01T / HTTP/1.1\r\n\r\n")
                assert (await conn.response())[0] == 400
            finally:
                await conn.close()
            status, _ = await http_request(server.port, "GET", "/api/health",
                                           {"Upgrade": "h2c", "Connection": "Upgrade"})
            assert status == 200
        text = server.output()
        assert text.count("request line and headers over 8192 bytes: 431") == 1, text
        assert text.count("invalid HTTP request (") == 1, text
        assert text.count("unsupported upgrade request (h2c): ignored") == 1, text
        assert "WARNING" not in text and "Traceback" not in text, text


async def test_a_header_flood_is_cut_off_while_a_viewer_keeps_its_pace(
        tmp_path: Path, redis_url: str) -> None:
    """50 MiB of one endless header line: the client gets 431 and the connection
    closes long before 50 MiB are sent; meanwhile a joined viewer's pings stay
    fast and the server's memory does not grow."""
    flood_total = 50 * MiB
    async with serving(tmp_path, redis_url) as server:
        room = await create_room(server.port)
        viewer = await join(server.port, room)
        try:
            rss_before = server.rss_bytes()
            flood = await Conn.open(server.port)
            sent = 0

            async def send_flood() -> None:
                nonlocal sent
                flood.writer.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Flood: ")
                chunk = b"f" * 65536
                with contextlib.suppress(ConnectionResetError, BrokenPipeError):
                    while sent < flood_total:
                        flood.writer.write(chunk)
                        sent += len(chunk)
                        await flood.writer.drain()

            rtts: list[float] = []

            async def ping() -> None:
                for n in range(1_000_000):
                    t0 = time.perf_counter()
                    await viewer.send(json.dumps({"type": "ping", "t": n}))
                    while True:
                        frame = json.loads(await asyncio.wait_for(viewer.recv(), 30))
                        if frame.get("type") == "pong" and frame.get("t") == n:
                            break
                    rtts.append(time.perf_counter() - t0)
                    await asyncio.sleep(0.075)  # under the viewer's message rate

            pinging = asyncio.create_task(ping())
            await eventually(lambda: asyncio.sleep(0, len(rtts) >= 3), "first pongs")
            flooding = asyncio.create_task(send_flood())
            try:
                answer = await flood.closed_by_server()
                await asyncio.wait_for(flooding, 60)
                # A few pings after the close too, the flood's aftermath included.
                after = len(rtts) + 3
                await eventually(lambda: asyncio.sleep(0, len(rtts) >= after), "more pongs")
            finally:
                pinging.cancel()
                flooding.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await pinging
                await flood.close()
            assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
            assert sent < flood_total, sent
            grown = server.rss_bytes() - rss_before
            assert grown < 20 * MiB, grown / MiB
            # The bound is 100 ms for every ping; on a loaded CI machine
            # one ping can lose its core for longer, so the median carries the
            # bound and the worst gets ten times it.
            assert statistics.median(rtts) < 0.1, rtts
            assert max(rtts) < 1.0, rtts
            text = server.output()
            assert text.count("request line and headers over 16384 bytes: 431") == 1, text
            assert "Traceback" not in text, text
        finally:
            await viewer.close()


# ---------------------------------------------------------------- timeouts


async def test_slow_and_silent_connections_are_closed_after_the_header_timeout(
        tmp_path: Path, redis_url: str) -> None:
    timeout_s = 1.0
    async with serving(tmp_path, redis_url, header_timeout_s=timeout_s,
                       keep_alive_timeout_s=1.0) as server:
        silent = await Conn.open(server.port)
        slow = await Conn.open(server.port)
        opened = time.monotonic()
        trickled = 0

        async def trickle() -> None:
            nonlocal trickled
            for byte in b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"s" * 500:
                slow.writer.write(bytes([byte]))
                trickled += 1
                await asyncio.sleep(0.5)

        trickling = asyncio.create_task(trickle())
        try:
            assert await silent.closed_by_server() == b""
            silent_after = time.monotonic() - opened
            assert await slow.closed_by_server() == b""
            slow_after = time.monotonic() - opened
        finally:
            trickling.cancel()
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await trickling
            await silent.close()
            await slow.close()
        # Closed by the timeout: not before it, and while the trickle went on.
        assert silent_after >= timeout_s * 0.9, silent_after
        assert slow_after >= timeout_s * 0.9, slow_after
        assert trickled < 500, trickled

        # Idle between keep-alive requests: uvicorn's keep-alive timeout.
        idle = await Conn.open(server.port)
        try:
            idle.writer.write(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            status, _ = await idle.response()
            assert status == 200
            answered = time.monotonic()
            assert await idle.closed_by_server() == b""
            assert time.monotonic() - answered >= 0.9
        finally:
            await idle.close()
        # A request sent at once is not affected, on a new connection or a reused one.
        for _ in range(3):
            assert (await http_request(server.port, "GET", "/api/health"))[0] == 200
        text = server.output()
        assert text.count("closed: no complete request headers within 1s") == 1, text
        assert "Traceback" not in text, text


# ---------------------------------------------------------------- connections per address


async def test_connections_per_address_are_capped_counting_websockets_once(
        tmp_path: Path, redis_url: str) -> None:
    cap = 5
    async with serving(tmp_path, redis_url, max_connections_per_ip=cap,
                       connection_cap_exempt="", header_timeout_s=600,
                       keep_alive_timeout_s=600) as server:
        room = await create_room(server.port)
        viewers: list[ClientConnection] = []
        keep_alive: list[Conn] = []

        async def one_viewer() -> bool:
            try:
                viewers.append(await join(server.port, room))
            except InvalidStatus as exc:  # 503 while earlier connections wind down
                assert exc.response.status_code == 503
                return False
            return True

        async def one_keep_alive() -> bool:
            conn = await Conn.open(server.port)
            conn.writer.write(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            try:
                status, _ = await conn.response()
            except (asyncio.IncompleteReadError, ConnectionResetError):
                status = 0
            if status == 200:
                keep_alive.append(conn)
                return True
            await conn.close()
            return False

        async def refused() -> bytes:
            conn = await Conn.open(server.port)
            try:
                return await conn.closed_by_server()
            finally:
                await conn.close()

        try:
            # Three upgraded WebSockets and two keep-alive HTTP connections: the cap.
            for _ in range(3):
                await eventually(one_viewer, "a viewer joins")
            for _ in range(2):
                await eventually(one_keep_alive, "a keep-alive connection is admitted")
            for _ in range(3):
                answer = await refused()
                assert answer.startswith(b"HTTP/1.1 503 "), answer
            # Every admitted one still works.
            for conn in keep_alive:
                conn.writer.write(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                assert (await conn.response())[0] == 200
            for ws in viewers:
                await ws.send(json.dumps({"type": "ping", "t": 1}))

            # A viewer leaves: exactly one new connection fits again.
            await viewers.pop().close()
            await eventually(one_keep_alive, "a connection is admitted after a viewer left")
            assert (await refused()).startswith(b"HTTP/1.1 503 ")
            # An HTTP connection leaves: a viewer fits again, and nothing more.
            await keep_alive.pop().close()
            await eventually(one_viewer, "a viewer joins after a connection closed")
            assert (await refused()).startswith(b"HTTP/1.1 503 ")
        finally:
            for ws in viewers:
                await ws.close()
            for conn in keep_alive:
                await conn.close()
        # Everything closed: the address has its whole allowance back.
        async def answered() -> bool:
            return (await http_request(server.port, "GET", "/api/health"))[0] == 200

        await eventually(answered, "a request after everything closed")
        text = server.output()
        # Five refusals within a minute: one log line.
        assert text.count("refused a connection: 5 open from this address") == 1, text
        assert "Traceback" not in text, text


async def test_loopback_is_exempt_from_the_cap_by_default(
        tmp_path: Path, redis_url: str) -> None:
    async with serving(tmp_path, redis_url, max_connections_per_ip=2) as server:
        conns = [await Conn.open(server.port) for _ in range(4)]
        try:
            for conn in conns:
                conn.writer.write(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                assert (await conn.response())[0] == 200
        finally:
            for conn in conns:
                await conn.close()
