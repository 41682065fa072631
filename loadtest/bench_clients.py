"""The bench's viewers: plain counting WebSocket clients (the load tester's
`Link`), spread over generator processes pinned to the generators' cores and
steered through queues (reset the counters, report them, stop). A spread
sample of them also keeps each event's latency from its `ts`.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing as mp
import os
import queue
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from loadtest.stats import spread_indices
from loadtest.viewer import Link


class _Counter:
    """A bench viewer: counts frames; sampled ones also keep latencies."""

    __slots__ = ("crowd", "sampled")

    def __init__(self, crowd: _Crowd, sampled: bool) -> None:
        self.crowd = crowd
        self.sampled = sampled

    def on_frame(self, data: bytes) -> None:
        c = self.crowd
        c.frames += 1
        if c.track_last and c.measuring and data.startswith(b'{"seq":'):
            # The envelope's seq is its first key: its receipt by the last viewer is the
            # latest time any viewer got it (the auction bench's "last viewer").
            c.last[int(data[7:data.index(b",", 7)])] = time.time() * 1000.0
        if self.sampled and c.measuring:
            ts = orjson.loads(data).get("ts")
            if ts is not None:
                c.latency.append(time.time() * 1000.0 - ts)

    def on_lost(self, link: Link) -> None:
        self.crowd.lost += 1


@dataclass(slots=True)
class _Crowd:
    frames: int = 0
    lost: int = 0
    measuring: bool = False
    latency: list[float] = field(default_factory=list)
    track_last: bool = False
    last: dict[int, float] = field(default_factory=dict)  # event seq -> latest receipt ms


async def _client_main(url: str, count: int, sampled: set[int], ctrl: Any, out: Any,
                       track_last: bool) -> None:
    from urllib.parse import urlsplit

    loop = asyncio.get_running_loop()
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    crowd = _Crowd(track_last=track_last)
    links: list[Link] = []

    async def one(i: int) -> None:
        for attempt in range(3):
            link = Link(_Counter(crowd, i in sampled), url)
            try:
                await loop.create_connection(lambda link=link: link, host, port)  # type: ignore[misc]
                await asyncio.wait_for(link.opened, 30)
                links.append(link)
                return
            except Exception:  # refused or timed out under the join burst: try again
                await asyncio.sleep(0.5 * (attempt + 1))

    started = time.monotonic()
    pending = []
    for i in range(count):
        delay = started + i / 1500.0 - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        pending.append(asyncio.ensure_future(one(i)))
    await asyncio.gather(*pending)
    out.put(("connected", len(links)))
    inbox: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()

    def reader() -> None:
        while True:
            msg = ctrl.get()
            loop.call_soon_threadsafe(inbox.put_nowait, msg)
            if msg[0] == "stop":
                return

    threading.Thread(target=reader, daemon=True).start()
    cpu0 = wall0 = 0.0
    while True:
        msg = await inbox.get()
        if msg[0] == "reset":
            crowd.frames, crowd.latency, crowd.measuring = 0, [], True
            crowd.last = {}
            cpu0, wall0 = time.process_time(), time.monotonic()
            out.put(("reset",))
        elif msg[0] == "report":
            crowd.measuring = False
            util = (time.process_time() - cpu0) / max(1e-6, time.monotonic() - wall0)
            out.put(("report", crowd.frames, crowd.latency, util, crowd.lost, crowd.last))
        elif msg[0] == "stop":
            for link in links:
                link.close()
            await asyncio.sleep(0.5)
            return


def _client_process(url: str, count: int, sampled: set[int], cpus: list[int] | None,
                    ctrl: Any, out: Any, track_last: bool = False) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if cpus:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, cpus)
    import uvloop

    uvloop.run(_client_main(url, count, sampled, ctrl, out, track_last))


class Clients:
    """Bench viewers spread over generator processes."""

    def __init__(self, url: str, count: int, cpus: list[int] | None, sample: int = 200,
                 track_last: bool = False) -> None:
        procs = max(1, (os.cpu_count() or 2) - 1)
        ctx = mp.get_context("spawn")
        self.out: Any = ctx.Queue()
        self.ctrls: list[Any] = []
        self.procs: list[Any] = []
        # After report(): each event's (by seq) latest receipt over every viewer, in ms,
        # when tracked (`track_last`).
        self.last: dict[int, float] = {}
        sampled = spread_indices(count, sample)
        for w in range(procs):
            n = len(range(w, count, procs))
            mine = {i // procs for i in sampled if i % procs == w}
            ctrl = ctx.Queue()
            p = ctx.Process(target=_client_process, daemon=True,
                            args=(url, n, mine, [cpus[w % len(cpus)]] if cpus else None,
                                  ctrl, self.out, track_last))
            p.start()
            self.ctrls.append(ctrl)
            self.procs.append(p)

    def _gather(self, kind: str, timeout: float) -> list[tuple[Any, ...]]:
        got: list[tuple[Any, ...]] = []
        deadline = time.monotonic() + timeout
        while len(got) < len(self.procs):
            try:
                msg = self.out.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                raise RuntimeError(f"bench clients did not answer {kind!r} in time") from None
            if msg[0] == kind:
                got.append(msg)
        return got

    def connected(self) -> int:
        return sum(m[1] for m in self._gather("connected", 180))

    def reset(self) -> None:
        for c in self.ctrls:
            c.put(("reset",))
        self._gather("reset", 30)

    def report(self) -> tuple[int, list[float], float, int]:
        for c in self.ctrls:
            c.put(("report",))
        got = self._gather("report", 60)
        self.last = {}
        for m in got:
            for seq, at in m[5].items():
                self.last[seq] = max(at, self.last.get(seq, 0.0))
        return (sum(m[1] for m in got), [x for m in got for x in m[2]],
                max(m[3] for m in got), sum(m[4] for m in got))

    def stop(self) -> None:
        for c in self.ctrls:
            c.put(("stop",))
        for p in self.procs:
            p.join(10)
            if p.is_alive():
                p.kill()
                p.join()
