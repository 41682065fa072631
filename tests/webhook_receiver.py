"""A real webhook receiver for the tests: a Starlette app served by uvicorn on a
free loopback port, in the test's own event loop. It answers each request as
its plan says (`ok`, `fail`: HTTP 500, `hang`: no answer until released or the
sender gives up), records every request it got, and keeps the first of each
`webhook-id` (a receiver deduplicates by it)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> dict[str, Any]:
        data: dict[str, Any] = orjson.loads(self.body)
        return data


@dataclass
class Receiver:
    url: str = ""
    # How the next requests are answered, in order; then `mode`.
    plan: list[str] = field(default_factory=list)
    mode: str = "ok"
    requests: list[Received] = field(default_factory=list)
    unique: dict[str, Received] = field(default_factory=dict)  # webhook-id -> first
    order: list[str] = field(default_factory=list)  # webhook-ids, first arrival order
    release: asyncio.Event = field(default_factory=asyncio.Event)
    answered: int = 0

    async def handle(self, request: Request) -> Response:
        body = await request.body()
        got = Received({k.lower(): v for k, v in request.headers.items()}, body)
        self.requests.append(got)
        how = self.plan.pop(0) if self.plan else self.mode
        if how == "hang":
            with contextlib.suppress(asyncio.CancelledError):
                await self.release.wait()
            how = "fail"
        if how == "fail":
            return Response("not now", status_code=500)
        msg_id = got.headers["webhook-id"]
        if msg_id not in self.unique:
            self.unique[msg_id] = got
            self.order.append(msg_id)
        self.answered += 1
        return Response(status_code=204)

    def ids_of(self, kind: str, key: str) -> list[str]:
        """The `data[key]` of each distinct message of a type, in arrival order."""
        return [self.unique[i].json["data"][key] for i in self.order
                if self.unique[i].json["type"] == kind]


@contextlib.asynccontextmanager
async def receiving(path: str = "/hooks") -> AsyncIterator[Receiver]:
    receiver = Receiver()
    app = Starlette(routes=[Route(path, receiver.handle, methods=["POST"])])
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off",
                                           timeout_graceful_shutdown=1))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        deadline = asyncio.get_running_loop().time() + 30
        while not server.started:
            if task.done():
                task.result()
            assert asyncio.get_running_loop().time() < deadline, "the receiver did not start"
            await asyncio.sleep(0.01)
        receiver.url = f"http://127.0.0.1:{port}{path}"
        yield receiver
    finally:
        receiver.release.set()
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 10)
        sock.close()
