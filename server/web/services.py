"""The server's parts and their order: start, drain and stop.

Start: embedded redis-server (if no URL) -> store -> scripts -> hub -> the show
and its pulse (which rebuilds Redis from the store if Redis lost its data).
Drain (SIGTERM, before stop): refuse new work, answer the requests in flight,
flush the order store, then close viewers with 1012 so they reconnect elsewhere.
Stop: stop the clockwork, close viewers left with 1001, answer queued script
calls, flush and close the store, then Redis and its child process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

from server.core import gcpolicy
from server.core.errors import CLOSE_SERVICE_RESTART
from server.core.identity import TokenSigner
from server.core.settings import Settings
from server.core.wire import frame_limits
from server.features import rooms
from server.features.context import Answer
from server.features.images import ImageStore
from server.features.pulse import Pulse
from server.features.recorder import Recorder
from server.features.show import Show
from server.features.streams import StreamFolder
from server.realtime.admission import Admission
from server.realtime.hub import Hub
from server.state.connections import RedisClient, health_client, open_clients
from server.state.data import StateData
from server.state.faults import REDIS_FAULTS, STATE_FAULTS, TRANSIENT_FAULTS, password_refused
from server.state.health import Health
from server.state.ownership import RedisUse, private_data_dir, use_for_redis
from server.state.redis_supervisor import RedisSupervisor
from server.state.scripts import Scripts
from server.state.store import OrderStore, open_store
from server.web import logfilter
from server.web.metrics import Metrics, process_gone

METRICS_SYNC_S = 1.0
log = logging.getLogger("livesell.app")

class Services:
    """Everything the endpoints need, built in the lifespan."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.embedded: RedisSupervisor | None = None
        self.data_use: RedisUse | None = None  # the embedded Redis's claim on data_dir
        self.redis: RedisClient | None = None
        self.redis_bytes: RedisClient | None = None
        self.store: OrderStore | None = None
        self.hub: Hub | None = None
        # Built now, so the features' routes are known to the app; bound to the state
        # layer, hub and store at start (requests are refused until `ready`).
        self.show = Show(settings)
        self.pulse: Pulse | None = None  # the show's, once started
        self.signer: TokenSigner | None = None
        self.admission: Admission | None = None
        self.recorder: Recorder | None = None
        # Product images the host uploads (their own thread, closed with the server).
        self.images = ImageStore(settings.image_dir, settings.images)
        # Resolved once: the path is the settings', not each request's to work out.
        self.streams = StreamFolder(settings.stream_dir)
        # The same bounds the AsyncAPI document's message schemas state.
        self.limits = frame_limits(settings)
        self.ready = False
        self.draining = False
        self.health = Health()
        # Every viewer request task in flight (buy, checkout, ...), for the drain.
        # Viewer requests in flight: tasks, or futures of requests started without one;
        # and how many of those futures handed their request to a task (the drain's
        # count of requests answered counts each request once).
        self.requests: set[asyncio.Future[Any]] = set()
        self.handoffs = 0
        self.metrics: Metrics | None = None
        self._metrics_task: asyncio.Task[None] | None = None
        # Requests answered, by message type and outcome (the answer's type, or a
        # refusal's code): the metrics take them (server/web/metrics.py).
        self.outcomes: dict[tuple[str, str], int] = {}
        self.show.ctx.requests_running = self.requests.__len__
        # Holds the cyclic collector off during a burst of requests (gcpolicy.py);
        # None when the settings leave the collector as the interpreter set it.
        self.gc_guard: gcpolicy.BurstGuard | None = None
        self._drain_task: asyncio.Task[dict[str, int]] | None = None

    def count_answer(self, msg: object, answer: Answer) -> None:
        """Count a viewer request's answer for the metrics."""
        outcome = answer.kind if answer.kind != "error" else str(answer.body.get("code",
                                                                                "error"))
        key = (message_name(type(msg)), outcome)
        self.outcomes[key] = self.outcomes.get(key, 0) + 1

    async def start(self) -> None:
        s = self.settings
        private_data_dir(s.data_path, s.trace_dir)  # orders, secrets: this user's only
        url = s.redis.url
        if not url:
            # The embedded Redis's files are the data directory's: own it first.
            self.data_use = use_for_redis(s.data_path)
            self.embedded = RedisSupervisor.from_settings(s.data_path / "redis", s.redis)
            # start() only waits here; the supervisor's own thread forks the child.
            url = await asyncio.to_thread(self.embedded.start)
        self.redis, self.redis_bytes = open_clients(url, s.redis)
        redis = self.redis

        async def ping() -> None:
            await redis.ping()
        await self._while_redis_restarts(ping, url)
        self.health.redis = health_client(url, cluster=s.redis.cluster)
        embedded = self.embedded
        if embedded is not None:
            self.health.supervisor_state = lambda: embedded.state
        self.store = store = await open_store(s)
        self.health.store_busy_since = lambda: store.busy_since
        self.health.store_failed = lambda: store.last_failed
        scripts = Scripts(self.redis)
        await self._while_redis_restarts(scripts.load, url)
        self.hub = Hub(self.redis, self.redis_bytes, scripts, s.hub, s.chat.messages_per_s,
                       s.chat.burst, keep_place_ms=int(s.sale.waitlist_keep_place_s * 1000))
        self.hub.on_redis_error = self.health.redis_failed
        await self.hub.start()
        secret = self._secret()
        self.signer = TokenSigner(secret, s.auth.token_ttl_s)
        self.admission = Admission(s, self.signer, scripts)
        self.recorder = Recorder(s.trace_dir, s.record.enabled, s.record.max_bytes, secret)
        self.show.bind(StateData(self.redis, scripts), self.hub, self.store, self.health,
                       self.recorder, secret)
        self.pulse = self.show.pulse
        await self._while_redis_restarts(self.pulse.start, url, bounded=False)
        gcpolicy.apply(s.server.gc_young_threshold)
        if s.server.gc_young_threshold > 0:
            self.gc_guard = gcpolicy.BurstGuard(time.monotonic,
                                                asyncio.get_running_loop().call_later)
        exposed = rooms.exposure_warning(s.server)
        if exposed:
            log.warning(exposed)
        self.metrics = Metrics()
        self._metrics_task = asyncio.get_running_loop().create_task(self._sync_metrics())
        self.ready = True
        self.health.state = "serving"

    async def _sync_metrics(self) -> None:
        """Once a second, what changed into the metrics: across `--workers`, each
        process's files are at most this stale when another process is scraped."""
        while True:
            await asyncio.sleep(METRICS_SYNC_S)
            if self.metrics is not None:
                try:
                    self.metrics.sync(self)
                except Exception:
                    log.exception("metrics: sync failed")

    def metrics_text(self) -> bytes:
        """The Prometheus text of this server (every worker's, with --workers)."""
        assert self.metrics is not None
        self.metrics.sync(self)
        return self.metrics.render()

    async def _while_redis_restarts(self, step: Callable[[], Awaitable[None]],
                                    url: str, bounded: bool = True) -> None:
        """Run a start-up step that needs Redis, again while Redis is restarting (the
        supervisor brings a killed one back in a fraction of a second; a --workers
        process starting just then used to fail, and uvicorn stopped the whole
        server), for up to redis.start_timeout_s. A refused password is not retried.
        A `bounded` step must also finish within that time: a Redis that accepts
        connections but never answers (stopped, or cut off) fails the start instead
        of hanging it. (The rebuild from the store is not bounded: it takes as long
        as the store has rooms.)"""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.redis.start_timeout_s
        delay = 0.05
        while True:
            try:
                if bounded:
                    await asyncio.wait_for(step(), max(0.05, deadline - loop.time()))
                else:
                    await step()
                return
            except (*TRANSIENT_FAULTS, TimeoutError) as exc:
                if password_refused(exc) or loop.time() + delay >= deadline:
                    why = str(exc) or f"no answer within {self.settings.redis.start_timeout_s} s"
                    raise RuntimeError(
                        f"cannot reach Redis at {logfilter.redact(url)}: {why}") from exc
                log.warning("start-up: Redis not answering (%s); trying again", exc)
            except STATE_FAULTS as exc:
                raise RuntimeError(
                    f"cannot reach Redis at {logfilter.redact(url)}: {exc}") from exc
            await asyncio.sleep(delay)
            delay = min(1.0, delay * 2)

    def _secret(self) -> bytes:
        if self.settings.auth.secret:
            return self.settings.auth.secret.encode()
        path = self.settings.data_path / "secret.key"
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return path.read_bytes().strip()
        with os.fdopen(fd, "wb") as f:
            secret = secrets.token_hex(32).encode()
            f.write(secret)
        return secret

    def begin_drain(self) -> None:
        """Start the drain once (the server is shutting down; see `drain`)."""
        if self._drain_task is None and not self.draining:
            self._drain_task = asyncio.get_running_loop().create_task(self.drain())

    async def drain(self) -> dict[str, int]:
        """Leave gracefully (SIGTERM): take no new connections or requests, answer the
        requests in flight (checkouts wait for their order's commit), flush the order
        store, then close viewers with 1012 (service restart) so clients reconnect to
        another process. Bounded by server.shutdown_grace_s; what is still running then
        is cancelled and logged (a checkout cancelled mid-write stays 'confirming' and
        recovery decides it through the store). Returns counts for the log and tests."""
        if self.draining:
            return {}
        self.draining = True
        self.ready = False
        self.health.state = "draining"
        grace = self.settings.server.shutdown_grace_s
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        answered, handoffs = 0, self.handoffs
        # Again until none is left: a request started without a task may hand itself to
        # a task as it ends (server/features/registry.py, MessageRoute).
        while pending := set(self.requests):
            done, late = await asyncio.wait(pending, timeout=max(0.0, deadline - loop.time()))
            answered += len(done)
            if late:
                log.warning("drain: %d requests still running after %.1fs were cancelled; "
                            "checkouts among them are decided by recovery", len(late), grace)
                for request in late:
                    request.cancel()
                # A request answered in the same step as the deadline may not have run
                # its callback yet, and may hand itself to a task there: let it, and
                # cancel that task too.
                await asyncio.sleep(0)
                for request in set(self.requests) - late:
                    request.cancel()
                break
        answered -= self.handoffs - handoffs  # a request handed to a task is one request
        if self.store is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.store.wait_idle(),
                                       max(0.1, deadline - loop.time()))
        closed = 0
        if self.hub is not None:
            closed = self.hub.close_all(CLOSE_SERVICE_RESTART, "server restarting")
        log.info("drained: %d requests answered, %d viewers closed with 1012", answered,
                 closed)
        return {"answered": answered, "closed": closed}

    async def stop(self) -> None:
        """Stop in a fixed order; every step is bounded so shutdown always completes."""
        self.ready = False
        if self._drain_task is not None and not self._drain_task.done():
            await _bounded("drain", asyncio.shield(self._drain_task),
                           self.settings.server.shutdown_grace_s + 5.0)
        await self.health.stop()
        if self.gc_guard is not None:
            self.gc_guard.close()
        grace = self.settings.server.shutdown_grace_s + 5.0
        if self._metrics_task is not None:
            self._metrics_task.cancel()
            process_gone(os.getpid())
        if self.pulse is not None:
            await _bounded("clockwork", self.pulse.stop(), 5.0)
        await _bounded("order counting", self.show.stop_background(), 6.0)
        if self.hub is not None:
            await _bounded("viewers", self.hub.stop(), 5.0)
            await _bounded("script calls", self.hub.scripts.drain(), grace)
        if self.store is not None:
            await _bounded("order store", self.store.close(), grace)
        for client in (self.redis, self.redis_bytes):
            if client is not None:
                await _bounded("redis client", client.aclose(), 2.0)
        if self.recorder is not None:
            self.recorder.close()
        self.images.close()
        if self.embedded is not None:
            await asyncio.to_thread(self.embedded.stop)
        if self.data_use is not None:
            self.data_use.release()
            self.data_use = None


async def _bounded(what: str, step: Awaitable[Any], limit_s: float) -> None:
    try:
        await asyncio.wait_for(step, limit_s)
    except TimeoutError:
        log.error("shutdown: %s did not finish within %.0fs; going on", what, limit_s)
    except REDIS_FAULTS as exc:
        log.warning("shutdown: %s: %s", what, exc)


_NAMES: dict[type, str] = {}


def message_name(kind: type) -> str:
    """A viewer message class's wire type (ClaimCoupon -> claim_coupon)."""
    name = _NAMES.get(kind)
    if name is None:
        name = _NAMES[kind] = re.sub(r"(?<!^)(?=[A-Z])", "_", kind.__name__).lower()
    return name
