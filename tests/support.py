"""Test support: a real livesell server on port 0 in the test's event loop, an
HTTP host client and real WebSocket viewer clients."""

from __future__ import annotations

import asyncio
import contextlib
import io
import itertools
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, Self

import httpx
import orjson
import pytest
import uvicorn
from uvicorn.logging import AccessFormatter, DefaultFormatter
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Subprotocol

from server.core.settings import Settings, load_settings
from server.realtime import handshake
from server.realtime.edges import BoundedHttpToolsProtocol, attach
from server.realtime.fastws import FastWebSocketProtocol
from server.web.app import create_app

_ids = itertools.count(1)


def make_settings(redis_url: str, data_dir: Path, **sections: dict[str, Any]) -> Settings:
    """Settings for a test server: its order store is the SQLite file in `data_dir`
    unless `store={"url": store_url}` names a PostgreSQL database (the `store_url`
    fixture)."""
    overrides: dict[str, dict[str, Any]] = {
        # gc_young_threshold 0: servers run inside the test process must not retune
        # the test runner's collector (tests/test_gcpolicy.py tests the policy itself).
        "server": {"port": 0, "data_dir": str(data_dir), "log_level": "warning",
                   "gc_young_threshold": 0},
        "redis": {"url": redis_url},
        # Every test client comes from 127.0.0.1: the per-address guest mint limit is
        # off unless a test sets it (tests/test_identities.py).
        "auth": {"guest_mints_per_ip_per_min": 0},
    }
    for name, values in sections.items():
        overrides.setdefault(name, {}).update(values)
    return load_settings(None, env={}, overrides=overrides)


# Runs a test that takes the `server` fixture twice: under the transport hook
# (server/realtime/fastws.py) and under uvicorn's plain websockets-sansio protocol, where
# the hub falls back to `send_text` through ASGI.
BOTH_TRANSPORTS = pytest.mark.parametrize("server", [True, False], indirect=True,
                                          ids=["hook", "plain-asgi"])
# Runs a test that takes the `store_url` fixture (or the `server` fixture, which takes
# it) on each order store: the SQLite file and a PostgreSQL database of its own.
BOTH_STORES = pytest.mark.parametrize("store_url", ["sqlite", "postgresql"], indirect=True)


class LiveServer:
    """Runs the app under uvicorn with the fast WebSocket protocol."""

    def __init__(self, settings: Settings, fast: bool = True, port: int = 0) -> None:
        self.settings = settings
        self.fast = fast
        self.requested_port = port  # 0: a free one; a fixed one to restart in place
        self.app = create_app(settings)
        self.server: uvicorn.Server | None = None
        self.task: asyncio.Task[None] | None = None
        self.port = 0

    async def start(self) -> Self:
        config = uvicorn.Config(
            self.app, host="127.0.0.1", port=self.requested_port, lifespan="on",
            ws=FastWebSocketProtocol if self.fast else "websockets-sansio",
            ws_max_size=self.settings.hub.max_frame_bytes, ws_per_message_deflate=False,
            log_level="warning", timeout_graceful_shutdown=5,
            # The production HTTP edge (bounded head, header timeout, per-address
            # cap), as server/web/cli.py wires it.
            http=BoundedHttpToolsProtocol, proxy_headers=True,
            forwarded_allow_ips=self.settings.server.forwarded_allow_ips,
            # uvicorn types it int but schedules it with call_later (a float is fine).
            timeout_keep_alive=self.settings.server.keep_alive_timeout_s,  # type: ignore[arg-type]
        )
        attach(config, self.settings.server)
        self.server = uvicorn.Server(config)
        self.server.install_signal_handlers = False  # type: ignore[attr-defined]
        self.task = asyncio.create_task(self.server.serve())
        for _ in range(400):
            if self.server.started or self.task.done():
                break
            await asyncio.sleep(0.025)
        if not self.server.started:
            if self.task.done():
                self.task.result()
            raise RuntimeError("server did not start")
        self.port = self.server.servers[0].sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self.server is not None and self.task is not None:
            self.server.should_exit = True
            await asyncio.wait_for(self.task, 30)
            self.server = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ws_url(self, room_id: str, **params: Any) -> str:
        """The room's WebSocket URL with non-secret parameters (`since`, `nickname`);
        credentials go in the subprotocol list (`offer`), never here."""
        secrets = set(params) & set(handshake.SECRET_PARAMS)
        assert not secrets, f"{secrets}: pass credentials with offer(), not in the URL"
        query = "&".join(f"{k}={v}" for k, v in params.items() if v is not None)
        return f"ws://127.0.0.1:{self.port}/ws/{room_id}" + (f"?{query}" if query else "")

    @property
    def services(self) -> Any:
        return self.app.state.services


class Host:
    """The host side of a room, over HTTP."""

    def __init__(self, http: httpx.AsyncClient, room_id: str, host_key: str) -> None:
        self.http = http
        self.room_id = room_id
        self.key = host_key

    async def call(self, method: str, path: str, body: Any = None,
                   expect: int | None = None) -> Any:
        r = await self.http.request(method, f"/api/rooms/{self.room_id}{path}",
                                    json=body, headers={"X-Host-Key": self.key})
        if expect is not None:
            assert r.status_code == expect, (r.status_code, r.text)
        return r.json()

    async def product(self, stock: int = 10, price: int = 1000, **extra: Any) -> dict[str, Any]:
        body = {"title": "Test product", "price": price, "currency": "USD", "stock": stock,
                **extra}
        result: dict[str, Any] = await self.call("POST", "/products", body, expect=201)
        return result

    async def sale(self, product_id: str, units: int, limit: int = 1, starts_in_s: int = 0,
                   duration_s: int = 600, price: int = 500) -> dict[str, Any]:
        result: dict[str, Any] = await self.call("POST", "/sales", {
            "product_id": product_id, "price": price, "units": units,
            "limit_per_buyer": limit, "starts_in_s": starts_in_s, "duration_s": duration_s,
        }, expect=201)
        return result

    async def audit(self) -> dict[str, Any]:
        result: dict[str, Any] = await self.call("GET", "/audit", expect=200)
        return result


async def create_room(http: httpx.AsyncClient, title: str = "Test show") -> Host:
    r = await http.post("/api/rooms", json={"title": title})
    assert r.status_code == 201, r.text
    data = r.json()
    return Host(http, data["room"]["room_id"], data["host_key"])


class ViewerClient:
    """A viewer over a real WebSocket. Keeps every frame it receives."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.frames: list[dict[str, Any]] = []
        self.replies: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.reader = asyncio.create_task(self._read())
        self.welcome: dict[str, Any] = {}
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                frame = orjson.loads(raw)
                self.frames.append(frame)
                if frame.get("type") == "welcome":
                    self.welcome = frame
                re = frame.get("re")
                if re is not None and re in self.replies and not self.replies[re].done():
                    self.replies[re].set_result(frame)
                self.events.put_nowait(frame)
        except Exception:
            pass
        finally:
            if not self.closed.done():
                self.closed.set_result(None)

    @property
    def viewer_id(self) -> str:
        return str(self.welcome["viewer"]["viewer_id"])

    @property
    def token(self) -> str:
        return str(self.welcome["token"])

    async def send(self, obj: Any) -> None:
        await self.ws.send(orjson.dumps(obj).decode())

    async def request(self, kind: str, timeout: float = 60, **fields: Any) -> dict[str, Any]:
        rid = fields.pop("request_id", None) or f"rq{next(_ids)}"
        fut = self.replies.get(rid)
        if fut is None or fut.done():
            fut = self.replies[rid] = asyncio.get_running_loop().create_future()
        await self.send({"type": kind, "request_id": rid, **fields})
        return await asyncio.wait_for(fut, timeout)

    async def next_event(self, kind: str, timeout: float = 30,
                         where: Any = None) -> dict[str, Any]:
        async def wait() -> dict[str, Any]:
            while True:
                frame = await self.events.get()
                if frame.get("type") == kind and (where is None or where(frame)):
                    return frame
        return await asyncio.wait_for(wait(), timeout)

    def seqs(self) -> list[int]:
        return [f["seq"] for f in self.frames if "seq" in f and f.get("type") != "snapshot"]

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.ws.close()
        self.reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self.reader


def offer(token: str | None = None, host_key: str | None = None) -> list[Subprotocol]:
    """The Sec-WebSocket-Protocol entries that carry a viewer's credentials."""
    return [Subprotocol(p) for p in handshake.offer(token, host_key)]


async def pay(v: ViewerClient, product_id: str, coupon_id: str | None = None
              ) -> dict[str, Any]:
    """Buy one unit and check it out (with a coupon, if given); the order placed."""
    hold = await v.request("buy", product_id=product_id)
    assert hold["type"] == "hold", hold
    fields: dict[str, Any] = {"coupon_id": coupon_id} if coupon_id else {}
    placed = await v.request("checkout", hold_id=hold["hold"]["id"], **fields)
    assert placed["type"] == "order_placed", placed
    return dict(placed["order"])


async def join(server: LiveServer, room_id: str, token: str | None = None,
               host_key: str | None = None, **params: Any) -> ViewerClient:
    ws = await connect(server.ws_url(room_id, **params), subprotocols=offer(token, host_key),
                       max_size=2**24, compression=None, open_timeout=30)
    viewer = ViewerClient(ws)
    # Generous: thousands of viewers joining at once on a loaded CI machine.
    await viewer.next_event("welcome", timeout=120)
    return viewer


@contextlib.asynccontextmanager
async def viewers(server: LiveServer, room_id: str, n: int) -> AsyncIterator[list[ViewerClient]]:
    clients = await asyncio.gather(*(join(server, room_id) for _ in range(n)))
    try:
        yield list(clients)
    finally:
        await asyncio.gather(*(c.close() for c in clients))


_LOCKER = r"""
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
db.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.readline()
db.execute("ROLLBACK")
print("released", flush=True)
"""


class StoreLock:
    """Another process holding `BEGIN EXCLUSIVE` on a SQLite file until released:
    the stalled-store fault, with a real lock from a real process."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.proc: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> Self:
        import sys

        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _LOCKER, str(self.path), stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE)
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), 60)
        assert line.strip() == b"locked", line
        return self

    async def release(self) -> None:
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(b"go\n")
        await proc.stdin.drain()
        assert (await asyncio.wait_for(proc.stdout.readline(), 60)).strip() == b"released"
        await asyncio.wait_for(proc.wait(), 60)

    async def __aexit__(self, *exc: object) -> None:
        await self.release()


@contextlib.asynccontextmanager
async def server_with(redis_url: str, data_dir: Path,
                      **sections: dict[str, Any]) -> AsyncIterator[tuple[LiveServer,
                                                                         httpx.AsyncClient]]:
    """A server on its own settings (`make_settings` sections) and an HTTP client of
    it, for a test that needs other settings than the `server` fixture's."""
    live = await LiveServer(make_settings(redis_url, data_dir, **sections)).start()
    try:
        async with httpx.AsyncClient(base_url=live.base, timeout=30) as http:
            yield live, http
    finally:
        await live.stop()


async def card_when_whole(http: httpx.AsyncClient, room_id: str,
                          product_id: str) -> dict[str, Any]:
    """A product's card once its room is whole again (after Redis lost its data, the
    room answers 503 until it is rebuilt from the store)."""
    async def whole() -> dict[str, Any] | None:
        r = await http.get(f"/api/rooms/{room_id}/products/{product_id}")
        return dict(r.json()) if r.status_code == 200 else None

    card: dict[str, Any] = await eventually(whole)
    return card


async def eventually(check: Any, timeout: float = 60.0, interval: float = 0.05) -> Any:
    """Poll `check` (a coroutine function) until it returns a truthy value; the
    bound is generous because CI machines are loaded."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await check()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s: {check}")
        await asyncio.sleep(interval)


def wait_until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    """The blocking form of `eventually`, for tests that drive processes: poll the
    plain function `check` until it returns a truthy value."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.0f}s: {what}")
        time.sleep(0.02)


class LogCapture(logging.Handler):
    """Every record that reaches the loggers it is added to (uvicorn's and the
    root logger's), and its text as uvicorn's own formatters write it."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.text = io.StringIO()
        self.default = DefaultFormatter("%(levelprefix)s %(name)s %(message)s",
                                        use_colors=False)
        self.access = AccessFormatter(
            '%(levelprefix)s %(client_addr)s - "%(request_line)s" %(status_code)s',
            use_colors=False)

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        formatter = self.access if record.name == "uvicorn.access" else self.default
        self.text.write(formatter.format(record) + "\n")

    def messages(self) -> list[str]:
        return [r.getMessage() for r in self.records]

    def everything(self) -> str:
        """Messages, formatted lines and raw arguments: a secret anywhere shows."""
        parts = [self.text.getvalue()]
        for r in self.records:
            parts.append(r.getMessage())
            parts.append(repr(r.args))
        return "\n".join(parts)


async def lose_redis_data(redis_url: str) -> None:
    """Redis loses its data (FLUSHALL): the fault a rebuild from the store answers."""
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(redis_url)
    await client.flushall()
    await client.aclose()
