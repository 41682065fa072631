"""The hubs the fan-out bench compares: livesell (spawned, events through the
host HTTP API) and reference hubs in a subprocess that prints `PORT n` and
emits on request over a /control WebSocket (the `websockets` library's
`broadcast()` in loadtest/refhub.py; Node's `ws`, installed with npm into a
temporary directory; the raw-write floor in loadtest/floorhub.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Literal

NODE_HUB = Path(__file__).resolve().parent / "refhubs" / "node_hub.js"
EVENT_SIZE = 200


Trigger = Literal["timer", "request"]


async def paced(rate: float, count: int) -> AsyncIterator[int]:
    """0 .. count-1, the n-th at n / rate seconds from the start (on time, not
    drifting with the time the caller spends per step)."""
    start = time.monotonic()
    for n in range(count):
        delay = start + n / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        yield n


class Hub:
    """One hub under test: its process (for /proc), viewer URL and emitter."""

    name = ""
    pid = 0
    redis_pid: int | None = None
    viewer_url = ""

    async def start(self, cpus: list[int] | None) -> None:
        raise NotImplementedError

    async def emit(self, rate: int, duration: float) -> int:
        raise NotImplementedError

    async def stop(self) -> None:
        raise NotImplementedError


class LivesellHub(Hub):
    name = "livesell"

    def __init__(self) -> None:
        from loadtest.spawn import SpawnedServer

        # Every simulated viewer comes from one loopback address: the per-address
        # identity limit (a public-edge bound, 20 a minute) is off, or only 20 of the
        # viewers would join (from issue 11 until this was found, the livesell rows
        # measured 20 viewers: reach 0.02 and 0.004).
        self.server = SpawnedServer({"LIVESELL_AUTH_GUEST_MINTS_PER_IP_PER_MIN": "0"})
        self.http: Any = None
        self.host: Any = None

    async def start(self, cpus: list[int] | None) -> None:
        import httpx

        from loadtest.host import Host

        self.server.cpus = cpus
        base = await asyncio.to_thread(self.server.start)
        self.pid = self.server.pid
        self.redis_pid = self.server.redis_pid
        self.http = httpx.AsyncClient(base_url=base, timeout=30)
        self.host = await Host.create_room(self.http, "bench", None)
        self.viewer_url = base.replace("http://", "ws://") + f"/ws/{self.host.room_id}"

    async def emit(self, rate: int, duration: float) -> int:
        count = int(rate * duration)
        text = "x" * 120  # with seq, type and ts the event frame is ~200 bytes
        tasks = []
        async for _ in paced(rate, count):
            tasks.append(asyncio.ensure_future(self.host.call("POST", "/announcements",
                                                              {"text": text})))
        await asyncio.gather(*tasks)
        return count

    async def stop(self) -> None:
        if self.http is not None:
            await self.http.aclose()
        await asyncio.to_thread(self.server.stop)
        self.server.cleanup()


class ProcessHub(Hub):
    """A reference hub in a subprocess that prints `PORT n` and takes /control."""

    def __init__(self, name: str, argv: list[str], cwd: Path | None = None,
                 trigger: Trigger = "timer") -> None:
        self.name = name
        self.argv = argv
        self.cwd = cwd
        # "timer": the hub paces the events itself; "request": the bench sends each
        # event's trigger at the rate, as it posts livesell's announcements.
        self.trigger = trigger
        self.proc: subprocess.Popen[str] | None = None
        self.control: Any = None

    async def start(self, cpus: list[int] | None) -> None:
        from websockets.asyncio.client import connect

        self.proc = await asyncio.to_thread(
            subprocess.Popen, self.argv, stdout=subprocess.PIPE, text=True, cwd=self.cwd,
            start_new_session=True)
        self.pid = self.proc.pid
        if cpus:
            with contextlib.suppress(OSError):
                os.sched_setaffinity(self.pid, cpus)
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(self.proc.stdout.readline), 30)
        if not line.startswith("PORT "):
            raise RuntimeError(f"{self.name} hub did not start: {line!r}")
        port = int(line.split()[1])
        self.viewer_url = f"ws://127.0.0.1:{port}/"
        self.control = await connect(f"ws://127.0.0.1:{port}/control", compression=None)

    async def emit(self, rate: int, duration: float) -> int:
        if self.trigger == "request":
            return await self._emit_each(rate, duration)
        await self.control.send(json.dumps({"rate": rate, "duration": duration,
                                            "size": EVENT_SIZE}))
        reply = json.loads(await asyncio.wait_for(self.control.recv(), duration + 60))
        if "done" not in reply:
            raise RuntimeError(f"{self.name} hub refused the emit: {reply}")
        return int(reply["done"])

    async def _emit_each(self, rate: int, duration: float) -> int:
        count = int(rate * duration)
        once = json.dumps({"once": True, "size": EVENT_SIZE})

        async def replies() -> int:
            done = 0
            for _ in range(count):
                reply = json.loads(await asyncio.wait_for(self.control.recv(), duration + 60))
                if "done" not in reply:
                    raise RuntimeError(f"{self.name} hub refused an event: {reply}")
                done += int(reply["done"])
            return done

        reading = asyncio.ensure_future(replies())
        try:
            async for _ in paced(rate, count):
                await self.control.send(once)
            return await reading
        finally:
            reading.cancel()

    async def stop(self) -> None:
        if self.control is not None:
            await self.control.close()
        if self.proc is not None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            if self.proc.stdout is not None:
                self.proc.stdout.close()


def install_node_ws(directory: Path) -> Path:
    """`npm install ws` into `directory`; returns the hub script placed beside it."""
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        raise RuntimeError("node and npm are needed for the Node reference hub")
    subprocess.run([npm, "install", "--no-audit", "--no-fund", "--silent", "ws@8"],
                   cwd=directory, check=True, capture_output=True, timeout=300)
    script = directory / "node_hub.js"
    shutil.copyfile(NODE_HUB, script)
    return script
