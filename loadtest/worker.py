"""A generator process: its entry point, its command loop and its reports.

The parent starts one process per available core (`run_worker`), each pinned
away from the server's cores where the system allows, and steers them through
a command queue: join, show (the show's clock), bind (ids made by the host
during a trace replay), replay, quiet, finish, stop. A process answers with
progress every half second and, at the end, everything its viewers were told
(`WorkerResult`, loadtest/messages.py). The viewers and what they do are
the process's `Crowd` (loadtest/crowd.py).

Each process measures its own CPU use per second and reports the seconds in
which it saturated its core, because a saturated generator measures itself,
not the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import signal
import threading
import time
import traceback
from typing import Any

from loadtest.crowd import Crowd
from loadtest.messages import WorkerPlan
from server.core import gcpolicy

PROGRESS_EVERY_S = 0.5
SATURATED = 0.9  # share of one core above which a second counts as saturated


async def _serve(plan: WorkerPlan, ctrl: Any, out: Any) -> None:
    loop = asyncio.get_running_loop()
    inbox: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()

    def reader() -> None:
        while True:
            try:
                msg = ctrl.get()
            except (EOFError, OSError):
                msg = ("stop",)
            loop.call_soon_threadsafe(inbox.put_nowait, msg)
            if msg[0] in ("stop", "finish"):
                return

    threading.Thread(target=reader, name="ctrl-reader", daemon=True).start()
    crowd = Crowd(plan, out.put)
    started_wall, started_cpu = time.monotonic(), time.process_time()

    async def report() -> None:
        last_wall, last_cpu = time.monotonic(), time.process_time()
        n = 0
        while True:
            await asyncio.sleep(PROGRESS_EVERY_S)
            n += 1
            if n % 2 == 0:
                wall, cpu = time.monotonic(), time.process_time()
                util = (cpu - last_cpu) / max(1e-6, wall - last_wall)
                last_wall, last_cpu = wall, cpu
                crowd.result.util_timeline.append((round(wall - started_wall, 2),
                                                   round(util, 3)))
                crowd.result.peak_util = max(crowd.result.peak_util, util)
                if util >= SATURATED:
                    crowd.result.saturated_s += 1
            out.put(("progress", plan.worker_id, crowd.progress()))

    reporter = asyncio.ensure_future(report())
    out.put(("ready", plan.worker_id))
    try:
        while True:
            msg = await inbox.get()
            cmd = msg[0]
            if cmd == "join":
                crowd.spawn(crowd.join_all(float(msg[1])))
            elif cmd == "show":
                crowd.start_show(float(msg[1]), int(msg[2]))
            elif cmd == "bind":
                crowd.bind(str(msg[1]), str(msg[2]), str(msg[3]))
            elif cmd == "replay":
                crowd.spawn(crowd.replay(float(msg[1])))
            elif cmd == "quiet":
                crowd.quiet()
            elif cmd in ("finish", "stop"):
                marker = int(msg[1]) if cmd == "finish" else 0
                timeout = float(msg[2]) if cmd == "finish" else 0.0
                await crowd.finish(marker, timeout)
                break
    finally:
        reporter.cancel()
        for task in list(crowd.tasks):
            task.cancel()
        if crowd.tasks:
            await asyncio.wait(list(crowd.tasks), timeout=2.0)
        result = crowd.collect()
        result.cpu_s = time.process_time() - started_cpu
        result.wall_s = time.monotonic() - started_wall
        out.put(("result", plan.worker_id, result))


def run_worker(plan: WorkerPlan, ctrl: Any, out: Any) -> None:
    """Entry point of a generator process."""
    # Ctrl-C reaches the whole process group; the parent decides how to stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if plan.cpus and hasattr(os, "sched_setaffinity"):
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, plan.cpus)
    gcpolicy.apply(gcpolicy.DEFAULT_YOUNG_THRESHOLD)
    try:
        try:
            import uvloop
        except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
            asyncio.run(_serve(plan, ctrl, out))
        else:
            uvloop.run(_serve(plan, ctrl, out))
    except Exception:
        out.put(("error", plan.worker_id, traceback.format_exc()))
    with contextlib.suppress(queue.Full):
        out.close()
        out.join_thread()
