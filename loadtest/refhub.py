"""The reference hub for `livesell-loadtest bench`: the `websockets` library's own
`broadcast()`, as small as a hub can be, to put livesell's fan-out cost beside.

`python -m loadtest.refhub` listens on 127.0.0.1 (a free port, printed as
`PORT <n>`). Viewers connect to `/`; the bench connects to `/control` and
sends `{"rate": R, "duration": D, "size": S}`: the hub then broadcasts R
events a second for D seconds, each a JSON object of about S bytes with `seq`
and `ts` (ms), and answers `{"done": <events>, "clients": <viewers>}`.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Callable, Coroutine
from typing import Any

from websockets.asyncio.server import ServerConnection, broadcast, serve

VIEWERS: set[ServerConnection] = set()


def event(seq: int, size: int) -> str:
    body = {"seq": seq, "type": "announcement", "text": "", "ts": time.time_ns() // 1_000_000}
    pad = max(0, size - len(json.dumps(body)))
    body["text"] = "x" * pad
    return json.dumps(body, separators=(",", ":"))


async def emit(rate: float, duration: float, size: int) -> int:
    count = int(rate * duration)
    start = time.monotonic()
    for n in range(count):
        delay = start + n / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        broadcast(VIEWERS, event(n + 1, size))
    return count


async def handler(ws: ServerConnection) -> None:
    if ws.request is not None and ws.request.path == "/control":
        async for raw in ws:
            cmd = json.loads(raw)
            sent = await emit(float(cmd["rate"]), float(cmd["duration"]), int(cmd["size"]))
            await ws.send(json.dumps({"done": sent, "clients": len(VIEWERS)}))
        return
    VIEWERS.add(ws)
    try:
        await ws.wait_closed()
    finally:
        VIEWERS.discard(ws)


async def main() -> None:
    async with serve(handler, "127.0.0.1", 0, compression=None, max_queue=None,
                     ping_interval=None) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        print(f"PORT {port}", flush=True)
        await server.serve_forever()



def run_hub(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run a reference hub's `main` on uvloop until interrupted (the bench stops it)."""
    try:
        import uvloop

        uvloop.run(main())
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    run_hub(main)
