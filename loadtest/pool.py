"""The generator processes, seen from the parent: start one per share of the
crowd (loadtest/worker.py runs in each), tell them the run's commands, and
gather what they send back (ready, progress every half second, joined, the
final `WorkerResult`, or an error) through one queue read by a thread.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import queue
import threading
import time
from collections import Counter
from typing import Any

from loadtest.context import RunContext
from loadtest.messages import WorkerPlan, WorkerResult
from loadtest.stats import spread_indices
from loadtest.worker import run_worker

WORKER_START_TIMEOUT_S = 60.0
RESULT_TIMEOUT_S = 90.0
CHAOS_RETRY_S = 10.0  # chaos runs: buyers retry "try again" answers for this long


class GeneratorPool:
    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx
        self.procs: list[Any] = []
        self.ctrls: list[Any] = []
        self.out: Any = None
        self.inbox: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()
        self.progress: dict[int, dict[str, Any]] = {}  # the latest per process
        self.ready: set[int] = set()
        self.joined: dict[int, dict[str, Any]] = {}
        self.results: dict[int, WorkerResult] = {}
        self.errors: list[str] = []
        self.abandon = ""  # what holders who do not check out do: "expire" or "release"
        self._reader_stop = False
        self._lost: list[str] = []  # why a queue could not be read or written

    def start(self, ws_host: str, ws_port: int, room_id: str, spawned: bool,
              gen_cpus: list[int] | None) -> None:
        ctx = self.ctx
        s = ctx.scn
        n = ctx.viewer_count()
        cpu_total = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
            os.cpu_count() or 2)
        procs = s.viewers.processes or max(1, (os.cpu_count() or cpu_total) - 1)
        procs = max(1, min(procs, n))
        sampled = spread_indices(n, s.viewers.latency_sample)
        abandon = s.sale.abandon
        if abandon == "auto":
            abandon = "expire" if spawned and s.sale.hold_seconds else "release"
        mp_ctx = mp.get_context("spawn")
        self.out = mp_ctx.Queue()
        plan_steps = ctx.plan.viewers if ctx.plan is not None else None
        chaos = bool(ctx.opts.chaos)
        for w in range(procs):
            indices = list(range(w, n, procs))
            mine = set(indices)
            cpus = [gen_cpus[w % len(gen_cpus)]] if gen_cpus else None
            plan = WorkerPlan(
                worker_id=w, host=ws_host, port=ws_port, room_id=room_id,
                indices=indices, sampled=sampled & mine, scenario=s, abandon=abandon,
                cpus=cpus, workers=procs,
                latency_cap=max(10_000, 400_000 // procs),
                record_answers=chaos,
                retry_for_s=CHAOS_RETRY_S if chaos else 0.0,
                steps=[st for st in plan_steps if st.viewer in mine]
                if plan_steps is not None else None)
            ctrl = mp_ctx.Queue()
            proc = mp_ctx.Process(target=run_worker, args=(plan, ctrl, self.out),
                                  name=f"loadtest-gen-{w}", daemon=True)
            proc.start()
            self.procs.append(proc)
            self.ctrls.append(ctrl)
        self.abandon = abandon
        loop = asyncio.get_running_loop()
        out = self.out

        def reader() -> None:
            while True:
                try:
                    msg = out.get(timeout=0.5)
                except queue.Empty:
                    if self._reader_stop:
                        return
                    continue
                except (EOFError, OSError, ValueError) as exc:
                    if not self._reader_stop:
                        self._lost.append(f"the generators' queue broke: "
                                          f"{type(exc).__name__}: {exc}")
                    return
                try:
                    loop.call_soon_threadsafe(self.inbox.put_nowait, msg)
                except RuntimeError:  # the loop closed: the run is over
                    return

        threading.Thread(target=reader, name="gen-reader", daemon=True).start()

    def tell(self, *msg: Any) -> None:
        """A command to every generator process."""
        for i, ctrl in enumerate(self.ctrls):
            try:
                ctrl.put(msg)
            except (OSError, ValueError) as exc:
                self._lost.append(f"generator {i}: command {msg[0]!r} not sent: {exc}")

    def lost(self) -> list[str]:
        """Messages to or from the generators that could not go through, each once."""
        return list(dict.fromkeys(self._lost))

    async def pump(self) -> None:
        """Sort the generators' messages (a task for the length of the run)."""
        while True:
            msg = await self.inbox.get()
            kind, wid = msg[0], msg[1]
            if kind == "ready":
                self.ready.add(wid)
            elif kind == "progress":
                self.progress[wid] = msg[2]
            elif kind == "joined":
                self.joined[wid] = msg[2]
            elif kind == "result":
                self.results[wid] = msg[2]
            elif kind == "error":
                self.errors.append(f"generator {wid}: {msg[2]}")
                self.results.setdefault(wid, WorkerResult(wid))

    def totals(self) -> dict[str, int]:
        """The crowd's counters, summed over the processes' latest progress."""
        totals: Counter[str] = Counter()
        for p in self.progress.values():
            totals.update({k: v for k, v in p.items() if isinstance(v, int)})
        return dict(totals)

    async def wait_ready(self) -> None:
        self.ctx.progress.update(phase="starting generator processes",
                                 viewers=self.ctx.viewer_count())
        deadline = time.monotonic() + WORKER_START_TIMEOUT_S
        while len(self.ready) < len(self.procs):
            if time.monotonic() > deadline or self.errors:
                raise RuntimeError("generator processes did not start: "
                                   + "; ".join(self.errors))
            await asyncio.sleep(0.05)

    async def collect(self) -> None:
        """Wait (bounded) for every process's result; a process that died without
        one counts as a generator fault."""
        deadline = time.monotonic() + RESULT_TIMEOUT_S
        while len(self.results) < len(self.procs) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            if any(not p.is_alive() for p in self.procs) and len(self.results) < len(
                    self.procs):
                dead = [i for i, p in enumerate(self.procs)
                        if not p.is_alive() and i not in self.results]
                if dead:
                    await asyncio.sleep(1.0)  # a result may still be in the queue
                    for i in dead:
                        if i not in self.results:
                            self.errors.append(f"generator {i} exited without a result")
                            self.results[i] = WorkerResult(i)
        if len(self.results) < len(self.procs):
            self.ctx.warnings.append("some generator processes sent no result in time")

    def stop(self) -> None:
        for proc in self.procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=5)
        self._reader_stop = True
        for q in [*self.ctrls, *([self.out] if self.out is not None else [])]:
            q.close()
            q.join_thread()
        self.procs.clear()
        self.ctrls.clear()
