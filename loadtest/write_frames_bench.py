"""Micro-benchmark of the transport hook's per-delivery write (server/realtime/fastws.py).

Opens real WebSocket connections to FastWebSocketProtocol over loopback
socketpairs (uvloop, a real handshake through uvicorn's code, an ASGI app that
accepts and waits) and times `write_frames` over all of them, the way the hub's
fan-out loop calls it: one 200-byte pre-encoded frame per connection per event.
With `--baseline FILE` (another version of server/realtime/fastws.py, e.g. from
`git show REV:server/fastws.py > /tmp/fastws_before.py`), the two classes run in
the same process, alternately, on their own connections: the ratio compares
them under the same load. Prints the median nanoseconds per write of each and
the ratio; the client side discards what it reads between timings.

    python -m loadtest.write_frames_bench --baseline /tmp/fastws_before.py
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import socket
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import uvloop
from uvicorn.config import Config
from uvicorn.server import ServerState

from server.core.protocol import text_frame
from server.realtime.fastws import FastWebSocketProtocol

HANDSHAKE = (b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
             b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
             b"Sec-WebSocket-Version: 13\r\n\r\n")


async def _accept_and_wait(scope: Any, receive: Any, send: Any) -> None:
    await receive()
    await send({"type": "websocket.accept"})
    await receive()  # the disconnect


class _Discard(asyncio.Protocol):
    def data_received(self, data: bytes) -> None:
        pass


def _factory(proto: asyncio.Protocol) -> Callable[[], asyncio.Protocol]:
    return lambda: proto


def _load_class(path: Path) -> type[Any]:
    spec = importlib.util.spec_from_file_location("fastws_baseline", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.FastWebSocketProtocol  # type: ignore[no-any-return]


async def _open(cls: type[Any], n: int, config: Config, state: ServerState
                ) -> tuple[list[Any], list[asyncio.Transport]]:
    loop = asyncio.get_running_loop()
    protocols: list[Any] = []
    clients: list[asyncio.Transport] = []
    for _ in range(n):
        server_sock, client_sock = socket.socketpair()
        proto = cls(config=config, server_state=state, app_state={})
        await loop.connect_accepted_socket(_factory(proto), server_sock)
        client, _ = await loop.connect_accepted_socket(_Discard, client_sock)
        client.write(HANDSHAKE)
        protocols.append(proto)
        clients.append(client)
    deadline = time.monotonic() + 30
    while not all(p.conn.state.name == "OPEN" for p in protocols):
        if time.monotonic() > deadline:
            raise RuntimeError("handshakes did not complete")
        await asyncio.sleep(0.01)
    for p in protocols:
        p.open_frames()
    return protocols, clients


async def _drained(protocols: list[Any]) -> None:
    for _ in range(5000):  # at most about 5 s
        if not any(p.transport.get_write_buffer_size() for p in protocols):
            break
        await asyncio.sleep(0.001)
    await asyncio.sleep(0.005)  # let the readers empty the kernel's queues


def _time_writes(writers: list[Any], frame: bytes, passes: int) -> float:
    t0 = time.perf_counter_ns()
    for _ in range(passes):
        for write in writers:
            write(frame)
    return (time.perf_counter_ns() - t0) / (passes * len(writers))


async def _main(args: argparse.Namespace) -> None:
    config = Config(app=_accept_and_wait, ws=FastWebSocketProtocol, log_level="warning",
                    ws_ping_interval=None, lifespan="off")
    config.load()
    state = ServerState()
    classes: dict[str, type[Any]] = {"current": FastWebSocketProtocol}
    if args.baseline is not None:
        classes = {"baseline": _load_class(args.baseline), **classes}
    opened = {name: await _open(cls, args.connections, config, state)
              for name, cls in classes.items()}
    frame = text_frame(b"x" * args.frame_bytes)
    passes = max(1, args.calls // args.connections)
    results: dict[str, list[float]] = {name: [] for name in classes}
    order = list(opened)
    for _ in range(args.runs):
        order.reverse()  # neither class always runs first
        for name in order:
            protocols, _ = opened[name]
            await _drained(protocols)
            writers = [p.write_frames for p in protocols]
            results[name].append(_time_writes(writers, frame, passes))
    print(f"{args.connections} connections, {passes * args.connections} write_frames calls "
          f"per run, {len(frame)}-byte frames, {args.runs} runs")
    for name, values in results.items():
        print(f"{name:>8}: median {statistics.median(values):7.1f} ns/write "
              f"(min {min(values):.1f}, max {max(values):.1f})")
    if "baseline" in results:
        ratio = statistics.median(results["current"]) / statistics.median(results["baseline"])
        print(f"   ratio current/baseline: {ratio:.3f}")
    for _protocols, clients in opened.values():
        for c in clients:
            c.close()
    await asyncio.sleep(0.1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--baseline", type=Path,
                        help="another server/realtime/fastws.py to compare with")
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--calls", type=int, default=10_000, help="write_frames calls per run")
    parser.add_argument("--frame-bytes", type=int, default=200)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args(argv)
    if not 1 <= args.connections <= 5000 or not 1 <= args.runs <= 1000:
        parser.error("--connections must be 1-5000 and --runs 1-1000")
    uvloop.run(_main(args))


if __name__ == "__main__":
    main()
