"""Watching a chaos run's faults recover. `Watch` is the base of `Chaos`
(loadtest/chaos.py): it owns the run's clock (seconds since the show started),
its stop signal and the watcher tasks, and the watchers each injected fault
starts: a new redis-server or worker pid below the server, the balancer marking a
killed server down (--servers), the stall helper's
"held" and "released" lines, /api/ready answering 200 again, and as many
viewers connected as before. Each watcher writes into its fault's
`FaultRecord` and stops once it saw recovery, after RECOVERY_TIMEOUT_S, or
when the run stops it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Coroutine
from typing import Any

import httpx

from loadtest.chaos_spec import (
    PID_POLL_S,
    PROBE_INTERVAL_S,
    PROBE_TIMEOUT_S,
    READY_SETTLE_S,
    RECOVERY_TIMEOUT_S,
    STALL_LEAD_S,
    STALL_LOCK_WAIT_S,
    VIEWERS_SETTLE_S,
    FaultRecord,
)
from loadtest.cluster import ServerCluster
from loadtest.spawn import SpawnedServer, find_redis, find_workers


class Watch:
    """The clock, stop signal and recovery watchers of one chaos run."""

    def __init__(self, server: SpawnedServer, base: str, t0_wall: float,
                 connected: Callable[[], int], note: Callable[[str], None]) -> None:
        self.server = server
        self.base = base
        self.t0 = t0_wall  # epoch seconds of the show's start: the schedule's zero
        self.connected = connected
        self.note = note
        self._stop = asyncio.Event()
        self._watchers: set[asyncio.Task[None]] = set()

    def now_s(self) -> float:
        return time.time() - self.t0

    async def _pause(self, seconds: float) -> bool:
        """Sleep unless stopped; False when stopped."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), max(0.0, seconds))
        return not self._stop.is_set()

    def _watch(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._watchers.add(task)
        task.add_done_callback(self._watchers.discard)

    def _since(self, rec: FaultRecord) -> float:
        assert rec.injected_s is not None
        return round(self.now_s() - rec.injected_s, 3)

    async def _watch_redis(self, rec: FaultRecord, old: int) -> None:
        assert rec.injected_s is not None
        while self.now_s() - rec.injected_s < RECOVERY_TIMEOUT_S:
            pid = await asyncio.to_thread(find_redis, self.server.pid)
            if pid is not None and pid != old:
                rec.details.update(new_pid=pid, new_pid_after_s=self._since(rec))
                await asyncio.to_thread(self.server.refresh)
                return
            if not await self._pause(PID_POLL_S):
                break
        rec.details["new_pid"] = None

    async def _watch_worker(self, rec: FaultRecord, old: int, count: int) -> None:
        assert rec.injected_s is not None
        before = set(rec.details["workers_before"])
        while self.now_s() - rec.injected_s < RECOVERY_TIMEOUT_S:
            workers = await asyncio.to_thread(find_workers, self.server.pid)
            fresh = [p for p in workers if p not in before]
            if fresh and len(workers) >= count and old not in workers:
                rec.details.update(new_pid=fresh[0], new_pid_after_s=self._since(rec))
                await asyncio.to_thread(self.server.refresh)
                return
            if not await self._pause(PID_POLL_S):
                break
        rec.details["new_pid"] = None

    async def _watch_stall(self, rec: FaultRecord, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None and proc.stderr is not None
        label = rec.fault.label
        try:
            line = await asyncio.wait_for(proc.stdout.readline(),
                                          STALL_LEAD_S + STALL_LOCK_WAIT_S + 30.0)
        except TimeoutError:
            line = b""
        word, _, rest = line.decode(errors="replace").strip().partition(" ")
        if word != "held":
            err = (await proc.stderr.read()).decode(errors="replace").strip()
            rec.outcome = (f"not injected: the lock helper (pid {proc.pid}) did not take the "
                           f"lock: {(rest or err or 'no output')[-500:]}")
            self.note(f"chaos {label}: {rec.outcome}")
            return
        held_from = float(rest.split()[0]) - self.t0
        rec.injected_s = held_from
        rec.details["held_from_s"] = round(held_from, 3)
        rec.outcome = f"BEGIN EXCLUSIVE held by pid {proc.pid} from {held_from:.2f}s"
        self.note(f"chaos {label}: {rec.outcome}")
        self._watch(self._watch_ready(rec))
        line = await proc.stdout.readline()  # EOF if stopped: the helper is killed
        word, _, rest = line.decode(errors="replace").strip().partition(" ")
        if word == "released":
            held_to = float(rest.split()[0]) - self.t0
            rec.details.update(held_to_s=round(held_to, 3),
                               held_s=round(held_to - held_from, 3))
            rec.ok = True
            rec.outcome = (f"BEGIN EXCLUSIVE on {rec.details['path']} held by pid {proc.pid} "
                           f"from {held_from:.2f}s to {held_to:.2f}s "
                           f"({held_to - held_from:.2f}s)")
        else:
            rec.details["held_to_s"] = round(self.now_s(), 3)
            rec.outcome = (f"BEGIN EXCLUSIVE held by pid {proc.pid} from {held_from:.2f}s; "
                           "still held when the run ended, the helper was killed")
        rec.details["helper_exit"] = await proc.wait()
        self.note(f"chaos {label}: {rec.outcome}")

    async def _watch_balancer(self, rec: FaultRecord, cluster: ServerCluster,
                              victim: str) -> None:
        """HAProxy's view of a killed server: when its health checks marked it DOWN,
        and, once the viewers are back (or the watch ends), how many sessions each
        server then carries."""
        assert rec.injected_s is not None
        down_after: float | None = None
        while self.now_s() - rec.injected_s < RECOVERY_TIMEOUT_S:
            try:
                stats = await asyncio.to_thread(cluster.balancer_stats)
            except OSError:
                stats = {}
            status = stats.get(victim, {}).get("status", "")
            if down_after is None and status.startswith("DOWN"):
                down_after = self._since(rec)
                rec.details["balancer_marked_down_after_s"] = down_after
            back = rec.recovery.get("viewers_back_after_s")
            if down_after is not None and (back is not None or
                                           "viewers_low" in rec.recovery):
                rec.details["sessions_after"] = {
                    name: int(row.get("scur") or 0) for name, row in stats.items()}
                rec.details["balancer_status_after"] = {
                    name: row.get("status", "") for name, row in stats.items()}
                return
            if not await self._pause(PROBE_INTERVAL_S):
                break
        rec.details.setdefault("balancer_marked_down_after_s", down_after)

    async def _watch_ready(self, rec: FaultRecord) -> None:
        """Probe /api/ready (or /api/health where there is no /api/ready) until it
        answers 200 again after answering otherwise; 200 all along for
        READY_SETTLE_S counts as never down. A fresh connection per probe, so a
        probe reaches whichever process accepts it, as a load balancer's would."""
        assert rec.injected_s is not None
        start = rec.injected_s
        endpoint = "/api/ready"
        not_ready = 0
        first_ok: float | None = None
        ready_at: float | None = None
        first_down: float | None = None
        async with httpx.AsyncClient(base_url=self.base, timeout=PROBE_TIMEOUT_S,
                                     trust_env=False,
                                     limits=httpx.Limits(max_keepalive_connections=0)) as http:
            while self.now_s() - start < RECOVERY_TIMEOUT_S:
                try:
                    status = (await http.get(endpoint)).status_code
                except httpx.HTTPError:
                    status = 0
                if status == 404 and endpoint == "/api/ready":
                    endpoint = "/api/health"
                    continue
                t = self.now_s()
                if status == 200:
                    first_ok = t if first_ok is None else first_ok
                    if not_ready:
                        ready_at = t
                        break
                    if t - start >= READY_SETTLE_S:
                        ready_at = first_ok
                        break
                else:
                    not_ready += 1
                    first_down = t if first_down is None else first_down
                    first_ok = None
                if not await self._pause(PROBE_INTERVAL_S):
                    break
        rec.recovery.update(
            ready_endpoint=endpoint, not_ready_probes=not_ready,
            ready_watched_s=round(self.now_s() - start, 3),
            not_ready_from_s=round(first_down - start, 3) if first_down is not None else None,
            ready_after_s=round(ready_at - start, 3) if ready_at is not None else None)

    async def _watch_viewers(self, rec: FaultRecord) -> None:
        """Connected viewers (from the generators' half-second progress) until as many
        are connected as before the fault."""
        assert rec.injected_s is not None
        start = rec.injected_s
        before = low = self.connected()
        back: float | None = None
        while self.now_s() - start < RECOVERY_TIMEOUT_S:
            if not await self._pause(0.25):
                break
            n = self.connected()
            low = min(low, n)
            if low < before and n >= before:
                back = self.now_s()
                break
            if low == before and self.now_s() - start >= VIEWERS_SETTLE_S:
                break
        rec.recovery.update(viewers_before=before, viewers_low=low,
                            viewers_back_after_s=round(back - start, 3) if back else None)
