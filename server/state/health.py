"""Health of one server process: what /api/health (liveness) and /api/ready
(readiness) report, and the one place that logs a component going down or
coming back, once per change rather than once per request.

Liveness says the process serves HTTP; it stays 200 while Redis is down, so an
orchestrator does not restart a process that would only have to wait for Redis
too. Readiness says this process can sell now: Redis answers, the order store
is not stalled, no room is being rebuilt and the process is not draining. Load
balancers route by readiness (503 with Retry-After otherwise).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any, Final

from redis.asyncio import Redis

from server.core.keys import EPOCH
from server.state.faults import REDIS_FAULTS

log = logging.getLogger("livesell.health")

# The store counts as stalled when a write transaction has been in progress this long.
STORE_STALLED_S: Final = 2.0
PING_TIMEOUT_S: Final = 0.5
PROBE_INTERVAL_S: Final = 0.5
# A report is reused this long: a flood of health requests costs Redis a ping and an
# EXISTS per interval, not per request.
REPORT_FRESH_S: Final = 0.25


class Health:
    """Component states of this process. `redis_failed` is called from every place
    that catches a Redis error; while Redis is down a probe pings it and logs its
    return."""

    def __init__(self) -> None:
        self.state = "starting"  # starting | serving | draining | stopping
        self.redis_up = True
        self.redis_down_since: float | None = None
        self.redis: Redis | None = None
        # Extra facts from other parts: the embedded Redis supervisor's state, and
        # the order store's stall (set by the app).
        self.supervisor_state: Callable[[], str] | None = None
        self.store_busy_since: Callable[[], float | None] | None = None
        self.store_failed: Callable[[], bool] | None = None
        self._probe: asyncio.Task[None] | None = None
        self._report: dict[str, Any] | None = None
        self._report_at = 0.0
        self._report_lock = asyncio.Lock()

    def redis_failed(self, exc: BaseException) -> None:
        """A Redis call failed. Requests fail closed on their own; here Redis is
        pinged to tell an outage (logged once, then watched until it answers) from one
        stale pooled connection after a restart (nothing to say)."""
        self._report = None  # news of a failure: the next report is read afresh
        if not self.redis_up or (self._probe is not None and not self._probe.done()):
            return
        try:
            self._probe = asyncio.get_running_loop().create_task(self._confirm(exc))
        except RuntimeError:  # no running loop: nobody to probe
            self._went_down(exc)

    def _went_down(self, exc: BaseException) -> None:
        if not self.redis_up:
            return
        self.redis_up = False
        self.redis_down_since = time.monotonic()
        log.warning("redis unavailable (%s): buys, claims, entries and checkouts answer "
                    "'unavailable' until it is back", exc)

    async def _confirm(self, exc: BaseException) -> None:
        if await self._ping():
            return
        self._went_down(exc)
        while not self.redis_up and self.state != "stopping":
            await asyncio.sleep(PROBE_INTERVAL_S)
            if await self._ping():
                self.redis_answered()

    def redis_answered(self) -> None:
        if self.redis_up:
            return
        down = time.monotonic() - (self.redis_down_since or time.monotonic())
        self.redis_up = True
        self.redis_down_since = None
        log.warning("redis answers again after %.1fs", down)

    async def _ping(self) -> bool:
        if self.redis is None:
            return False
        try:
            return bool(await asyncio.wait_for(self.redis.ping(), PING_TIMEOUT_S))
        except (*REDIS_FAULTS, TimeoutError):
            return False

    async def stop(self) -> None:
        self.state = "stopping"
        if self._probe is not None:
            self._probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probe
        if self.redis is not None:
            with contextlib.suppress(*REDIS_FAULTS, TimeoutError):
                await asyncio.wait_for(self.redis.aclose(), 2.0)

    async def report(self) -> dict[str, Any]:
        """Every component's state, read live (Redis is pinged) at most every
        REPORT_FRESH_S; the state of this process itself is always current."""
        async with self._report_lock:
            if self._report is None or time.monotonic() - self._report_at > REPORT_FRESH_S:
                self._report = await self._measure()
                self._report_at = time.monotonic()
            report = self._report
        ready = report["ready"] and self.state == "serving"
        return {**report, "ok": ready, "ready": ready, "state": self.state}

    async def _measure(self) -> dict[str, Any]:
        redis_ok = await self._ping()
        if redis_ok:
            self.redis_answered()
        elif self.redis is not None and self.state == "serving":
            self.redis_failed(ConnectionError("no answer to PING"))
        rebuilding = False
        if redis_ok and self.redis is not None:
            with contextlib.suppress(*REDIS_FAULTS, TimeoutError):
                rebuilding = not await asyncio.wait_for(self.redis.exists(EPOCH),
                                                        PING_TIMEOUT_S)
        busy = self.store_busy_since() if self.store_busy_since is not None else None
        stalled = busy is not None and asyncio.get_running_loop().time() - busy > STORE_STALLED_S
        failed = self.store_failed() if self.store_failed is not None else False
        store = "stalled" if stalled else "failing" if failed else "ok"
        components: dict[str, Any] = {
            "redis": "up" if redis_ok else "down",
            "store": store,
            "rebuild": "rebuilding" if rebuilding else "idle",
        }
        if self.supervisor_state is not None:
            components["redis_process"] = self.supervisor_state()
        ready = (self.state == "serving" and redis_ok and store == "ok" and not rebuilding)
        return {"ok": ready, "live": True, "ready": ready, "state": self.state,
                "components": components}
