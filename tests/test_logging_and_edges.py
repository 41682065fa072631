"""Safe to put on the internet, the log side: credentials in URLs and headers never
reach a log line (in-process server and the `livesell serve` process, access log
on), a client's bad frames cost at most one log line and no traceback, a
non-ASCII admin key is refused cleanly, and `GET /api` answers.

Real server on port 0, real WebSocket clients, raw sockets for frames no client
library sends, a handler on the real loggers, and the CLI as a process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import struct
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from uvicorn.logging import AccessFormatter
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as connect_sync

from server.core.errors import CLOSE_BAD_HANDSHAKE, CLOSE_UNSUPPORTED_DATA
from server.web import logfilter
from tests.support import (
    LiveServer,
    LogCapture,
    ViewerClient,
    create_room,
    eventually,
    make_settings,
    offer,
    wait_until,
)

REPO = Path(__file__).resolve().parent.parent

# ---------------------------------------------------------------- log capture


@pytest.fixture
def captured(server: LiveServer) -> Iterator[LogCapture]:
    """Attached after the server started (uvicorn's logging set-up replaces the
    handlers of its loggers); uvicorn.error lowered to INFO for its accept line."""
    handler = LogCapture()
    error = logging.getLogger("uvicorn.error")
    level = error.level
    error.setLevel(logging.INFO)
    owners = [logging.getLogger("uvicorn"), logging.getLogger()]
    for owner in owners:
        owner.addHandler(handler)
    try:
        yield handler
    finally:
        for owner in owners:
            owner.removeHandler(handler)
        error.setLevel(level)


# ---------------------------------------------------------------- raw WebSocket frames


def client_frame(opcode: int, payload: bytes, fin: bool = True,
                 declared: int | None = None) -> bytes:
    """A masked client frame; `declared` claims a length other than the payload's."""
    n = len(payload) if declared is None else declared
    head = bytes([(0x80 if fin else 0) | opcode])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", n)
    mask = os.urandom(4)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


class RawSocket:
    """A WebSocket client over a plain TCP connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, port: int, target: str) -> AsyncIterator[RawSocket]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write((f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                          "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                          "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                          "Sec-WebSocket-Version: 13\r\n\r\n").encode())
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
            assert head.startswith(b"HTTP/1.1 101"), head
            yield cls(reader, writer)
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def read_frame(self) -> tuple[int, bytes]:
        b0, b1 = await asyncio.wait_for(self.reader.readexactly(2), 30)
        n = b1 & 0x7F
        if n == 126:
            (n,) = struct.unpack("!H", await self.reader.readexactly(2))
        elif n == 127:
            (n,) = struct.unpack("!Q", await self.reader.readexactly(8))
        return b0 & 0x0F, await asyncio.wait_for(self.reader.readexactly(n), 30)

    async def until(self, opcode: int) -> bytes:
        while True:
            op, payload = await self.read_frame()
            if op == opcode:
                return payload

    async def close_code(self) -> int:
        payload = await self.until(0x8)
        code: int = struct.unpack("!H", payload[:2])[0]
        return code


# ---------------------------------------------------------------- secrets in the log


async def test_websocket_accept_line_keeps_no_credentials(
        server: LiveServer, http: httpx.AsyncClient, captured: LogCapture) -> None:
    host = await create_room(http)
    session = (await http.post("/api/session", json={"nickname": "ann"})).json()
    token = session["token"]
    async with connect(server.ws_url(host.room_id), subprotocols=offer(token, host.key),
                       compression=None, open_timeout=30) as ws:
        viewer = ViewerClient(ws)
        await viewer.next_event("welcome")
        assert viewer.viewer_id == session["viewer_id"]  # the token was read
        await viewer.close()
    # A client built the old way, credentials in the URL: refused after the accept
    # line was logged, which must not show them.
    async with connect(f"ws://127.0.0.1:{server.port}/ws/{host.room_id}"
                       f"?host_key={host.key}&token={token}",
                       compression=None, open_timeout=30) as ws:
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 30)
        assert ws.close_code == CLOSE_BAD_HANDSHAKE

    def accept_lines() -> list[str]:
        return [m for m in captured.messages()
                if f"/ws/{host.room_id}" in m and "[accepted]" in m]

    async def accepted() -> list[str] | None:
        lines = accept_lines()
        return lines if len(lines) == 2 else None

    lines = await eventually(accepted, timeout=30)
    assert len(lines) == 2, lines
    assert "host_key=[redacted]" in lines[1] and "token=[redacted]" in lines[1], lines
    formatted = captured.text.getvalue()
    assert "[accepted]" in formatted
    for secret in (host.key, token):
        assert all(secret not in m for m in captured.messages()), secret
        assert secret not in formatted, secret


def test_filter_keeps_the_shape_of_uvicorn_access_records() -> None:
    """The access formatter unpacks five args: each is redacted in place."""
    record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1,
                               '%s - "%s %s HTTP/%s" %d',
                               ("127.0.0.1:5", "GET", "/api/x?a=1&token=T0P&host_key=K3Y",
                                "1.1", 200), None)
    assert logfilter.FILTER.filter(record)
    text = AccessFormatter('%(client_addr)s - "%(request_line)s" %(status_code)s',
                           use_colors=False).format(record)
    assert text == '127.0.0.1:5 - "GET /api/x?a=1&token=[redacted]&host_key=[redacted] ' \
                   'HTTP/1.1" 200 OK'
    header = logging.LogRecord("uvicorn.error", logging.DEBUG, __file__, 1, "< %s: %s",
                               ("X-Admin-Key", "hunter2"), None)
    logfilter.FILTER.filter(header)
    assert header.getMessage() == "< X-Admin-Key: [redacted]"
    plain = logging.LogRecord("livesell.app", logging.INFO, __file__, 1,
                              "viewer %s joined %s", ("v1", "/ws/r1?since=3"), None)
    logfilter.FILTER.filter(plain)
    assert plain.getMessage() == "viewer v1 joined /ws/r1?since=3"


def test_install_is_idempotent() -> None:
    logfilter.install()
    logfilter.install()
    for name in (*logfilter.LOGGERS, "livesell.hub", "livesell.app"):
        filters = logging.getLogger(name).filters
        assert sum(isinstance(f, logfilter.RedactSecrets) for f in filters) == 1, name


# ---------------------------------------------------------------- bad frames


async def _joined_raw(server: LiveServer, http: httpx.AsyncClient) -> tuple[str, str]:
    host = await create_room(http)
    return host.room_id, f"/ws/{host.room_id}?nickname=raw"


def _no_traceback_and_at_most(captured: LogCapture, needle: str, most: int) -> None:
    for record in captured.records:
        assert record.exc_info is None and not record.exc_text, captured.text.getvalue()
        assert record.levelno < logging.WARNING, captured.text.getvalue()
    assert "Traceback" not in captured.text.getvalue()
    hits = [m for m in captured.messages() if needle in m]
    assert len(hits) <= most, hits


@pytest.mark.parametrize("frames", [
    pytest.param([(0x1, b'{"type":"ping"\xff\xfe}', True)], id="one-frame"),
    pytest.param([(0x1, b'{"type":', False), (0x0, b'"\xc3"}', True)], id="fragmented"),
])
async def test_invalid_utf8_closes_1007_with_one_line_and_no_traceback(
        server: LiveServer, http: httpx.AsyncClient, captured: LogCapture,
        frames: list[tuple[int, bytes, bool]]) -> None:
    room_id, target = await _joined_raw(server, http)
    async with RawSocket.open(server.port, target) as raw:
        await raw.until(0x1)  # the welcome: the viewer has joined (the fast route)
        raw.writer.write(b"".join(client_frame(op, data, fin) for op, data, fin in frames))
        assert await raw.close_code() == 1007

    async def logged() -> bool:
        return any("UTF-8" in m for m in captured.messages())

    await eventually(logged, timeout=30)
    # The server has let the viewer go: nothing more is coming for this connection.
    hub = server.services.hub

    async def left() -> bool:
        return not any(room.members for room in hub.rooms.values())

    await eventually(left, timeout=30)
    _no_traceback_and_at_most(captured, "UTF-8", 1)
    line = next(m for m in captured.messages() if "UTF-8" in m)
    assert "1007" in line and f"/ws/{room_id}" in line and "nickname" not in line


async def test_binary_and_oversize_frames_close_without_traceback(
        server: LiveServer, http: httpx.AsyncClient, captured: LogCapture) -> None:
    room_id, target = await _joined_raw(server, http)
    async with RawSocket.open(server.port, target) as raw:
        await raw.until(0x1)
        raw.writer.write(client_frame(0x2, b"\x00\x01binary"))
        assert await raw.close_code() == CLOSE_UNSUPPORTED_DATA
    limit = server.settings.hub.max_frame_bytes
    async with RawSocket.open(server.port, target) as raw:
        await raw.until(0x1)
        # Only the header: the length alone is over the limit.
        raw.writer.write(client_frame(0x1, b"", declared=limit + 1))
        assert await raw.close_code() == 1009
    # A last, well-behaved connection: once it is accepted, both before it are done.
    async with RawSocket.open(server.port, target) as raw:
        await raw.until(0x1)

    async def three_accepted() -> bool:
        return sum("[accepted]" in m and room_id in m for m in captured.messages()) == 3

    await eventually(three_accepted, timeout=30)
    _no_traceback_and_at_most(captured, "binary", 1)


# ---------------------------------------------------------------- admin key, /api


@pytest.fixture
async def admin_server(redis_url: str, data_dir: Path) -> AsyncIterator[LiveServer]:
    live = await LiveServer(make_settings(redis_url, data_dir,
                                          server={"admin_key": "s3cret-admin"})).start()
    try:
        yield live
    finally:
        await live.stop()


async def test_non_ascii_admin_key_is_a_clean_401(admin_server: LiveServer) -> None:
    handler = LogCapture()
    owners = [logging.getLogger("uvicorn"), logging.getLogger()]
    for owner in owners:
        owner.addHandler(handler)
    try:
        async with httpx.AsyncClient(base_url=admin_server.base, timeout=30) as http:
            for offered in ("clé-ü".encode(), "s3cret-admiñ".encode("latin-1"), b"\xff\xfe"):
                r = await http.post("/api/rooms", json={"title": "x"},
                                    headers={b"X-Admin-Key": offered})
                assert r.status_code == 401, (offered, r.status_code, r.text)
                assert r.json()["error"]["code"] == "unauthorized"
            r = await http.post("/api/rooms", json={"title": "x"})
            assert r.status_code == 401
            r = await http.post("/api/rooms", json={"title": "x"},
                                headers={"X-Admin-Key": "s3cret-admin"})
            assert r.status_code == 201, r.text
    finally:
        for owner in owners:
            owner.removeHandler(handler)
    assert all(r.exc_info is None and r.levelno < logging.ERROR for r in handler.records), \
        handler.text.getvalue()


async def test_api_index_lists_links_that_answer(http: httpx.AsyncClient) -> None:
    r = await http.get("/api")
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    index = r.json()
    assert index["name"] == "livesell" and index["version"]
    assert index["docs"] == "docs/protocol.md"
    assert await asyncio.to_thread((REPO / index["docs"]).is_file)
    links = index["links"]
    for name in ("health", "ready", "rooms"):
        assert (await http.get(links[name])).status_code == 200, name


# ---------------------------------------------------------------- the CLI process


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="POSIX signals")
def test_serve_process_at_debug_logs_no_credentials(tmp_path: Path) -> None:
    """`livesell serve --log-level debug`: access log on, websockets' frame and
    header lines on. A request and a WebSocket carrying a host key and a viewer
    token in the query and in headers leave neither in stdout or stderr."""
    out_path, err_path = tmp_path / "serve.out", tmp_path / "serve.err"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVESELL_")}
    with out_path.open("wb") as out, err_path.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "server", "serve", "--host", "127.0.0.1", "--port", "0",
             "--data-dir", str(tmp_path / "data"), "--log-level", "debug"],
            stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env)

    def output() -> str:
        return out_path.read_text(errors="replace") + err_path.read_text(errors="replace")

    def ready(base: str) -> bool:
        try:
            return httpx.get(base + "/api/ready", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        def banner() -> str | None:
            for line in out_path.read_text().splitlines():
                if "host console:" in line:
                    return line.split("host console:")[1].strip().removesuffix("/host")
            assert proc.poll() is None, output()
            return None

        base = wait_until(banner, 60, "the server prints its URLs")
        port = int(base.rsplit(":", 1)[1])
        wait_until(lambda: ready(base), 60, "the server is ready")
        with httpx.Client(base_url=base, timeout=30) as http:
            created = http.post("/api/rooms", json={"title": "logs"}).json()
            room, key = created["room"]["room_id"], created["host_key"]
            token = http.post("/api/session", json={"nickname": "bo"}).json()["token"]
            r = http.get(f"/api/rooms/{room}/orders", params={"token": token, "host_key": key},
                         headers={"X-Host-Key": key})
            assert r.status_code == 200, r.text
        with connect_sync(f"ws://127.0.0.1:{port}/ws/{room}", subprotocols=offer(token, key),
                          additional_headers={"Authorization": f"Bearer {token}",
                                              "X-Host-Key": key},
                          compression=None, open_timeout=30) as ws:
            welcome = json.loads(ws.recv(timeout=30))
            assert welcome["type"] == "welcome" and welcome["token"] == token
        with connect_sync(f"ws://127.0.0.1:{port}/ws/{room}?host_key={key}&token={token}",
                          compression=None, open_timeout=30) as ws:
            with pytest.raises(ConnectionClosed):
                ws.recv(timeout=30)
            assert ws.close_code == CLOSE_BAD_HANDSHAKE

        # The lines that would carry them are there, redacted.
        wait_until(lambda: f"/api/rooms/{room}/orders?token=[redacted]&host_key=[redacted]"
              in output(), 30, "the access line")
        wait_until(lambda: f"/ws/{room}?host_key=[redacted]&token=[redacted]" in output(), 30,
              "the WebSocket accept line")
        wait_until(lambda: "< authorization: [redacted]" in output().lower(), 30,
              "websockets' debug line of the header")
        wait_until(lambda: "livesell.token.[redacted], livesell.host.[redacted]" in output(),
                   30, "websockets' debug line of the subprotocols")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, output()
        text = output()
        for secret in (key, token):
            assert secret not in text, secret
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_secret_passed_as_an_argument_is_redacted_and_the_record_still_formats() -> None:
    """`log.info("host_key=%s", key)`: the format string keeps its placeholder (the
    record must still format, or logging prints its arguments, the secret included,
    to stderr) and the formatted line shows no key."""
    record = logging.LogRecord("livesell.t", logging.INFO, __file__, 1,
                               "room %s host_key=%s n=%d", ("r1", "SECRETVALUE", 3), None)
    assert logfilter.RedactSecrets().filter(record)
    assert record.getMessage() == "room r1 host_key=[redacted] n=3"


def test_a_long_name_from_a_stranger_is_redacted_in_linear_time() -> None:
    """A URL with a huge run of name characters and no "=" (a stranger's request
    line) must not take the event loop quadratic time in the filter."""
    hostile = "/ws/r1?x=1&" + "key" * 200_000
    assert logfilter.redact(hostile) == hostile
    assert logfilter.redact('"' + "token" * 100_000 + '": "v"').endswith('": "[redacted]"')
