"""Prometheus metrics (`GET /metrics`, the text format, through the official
prometheus-client; docs/operations.md "Metrics").

The hot paths keep plain counters and timing samples (the hub, the ledger, the
store's writer, the viewer session, the webhook dispatcher); once a second, and
at each scrape, this module moves what changed into the client's metrics. A
buy or a fan-out never touches the client library.

With `--workers` > 1 the parent points PROMETHEUS_MULTIPROC_DIR at a fresh
directory before the workers start (server/web/serving.py); each worker's
metrics then live in files there and any worker's `/metrics` adds them all up
(prometheus-client's multi-process mode). Gauges say how: connections add up
(`livesum`), lags and health take the worst of the live workers (`livemax` /
`livemin`; a worker's values leave when it stops)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Final

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

if TYPE_CHECKING:
    from server.web.services import Services

MULTIPROC_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
ROUND_TRIP_BUCKETS: Final = (.0005, .001, .002, .005, .01, .025, .05, .1, .25, .5, 1.0, 2.5)
COMMIT_BUCKETS: Final = (.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS: Final = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)


def multiprocess_mode() -> bool:
    return bool(os.environ.get(MULTIPROC_ENV))


class Metrics:
    """One server process's metrics."""

    def __init__(self) -> None:
        self.multi = multiprocess_mode()
        # In one process, a registry of its own (a test runs many servers in one
        # interpreter); across workers, the files are the registry.
        self.registry = None if self.multi else CollectorRegistry()
        r: Any = self.registry
        self.connections = Gauge("livesell_connections", "Open viewer WebSocket connections",
                                 registry=r, multiprocess_mode="livesum")
        self.rooms = Gauge("livesell_rooms_local", "Rooms with viewers on this server",
                           registry=r, multiprocess_mode="livesum")
        self.in_flight = Gauge("livesell_requests_in_flight", "Viewer requests being "
                               "answered", registry=r, multiprocess_mode="livesum")
        self.joins = Counter("livesell_joins", "Viewer joins", registry=r)
        self.frames = Counter("livesell_frames_out", "Event frames written to viewers "
                              "(fan-out deliveries)", registry=r)
        self.behind = Counter("livesell_fell_behind", "Viewers whose outbound buffer "
                              "filled: live events stopped for them until a snapshot "
                              "repairs what they missed (chatter dropped)", registry=r)
        self.slow = Counter("livesell_slow_client_closes", "Connections closed as too "
                            "slow to keep up", registry=r)
        self.snapshots = Counter("livesell_snapshots", "Room snapshots built for viewers",
                                 registry=r)
        self.events = Counter("livesell_events", "Room events published, by type",
                              ["type"], registry=r)
        self.requests = Counter("livesell_requests", "Viewer requests answered, by "
                                "message type and outcome (answer type or refusal code)",
                                ["type", "outcome"], registry=r)
        self.round_trip = Histogram("livesell_redis_roundtrip_seconds", "Round trip of one "
                                    "pipeline of ledger script calls", registry=r,
                                    buckets=ROUND_TRIP_BUCKETS)
        self.redis_failures = Counter("livesell_redis_failed_pipelines", "Ledger pipelines "
                                      "Redis failed", registry=r)
        self.batch = Histogram("livesell_store_batch_writes", "Writes per order-store "
                               "transaction (group commit)", registry=r,
                               buckets=BATCH_BUCKETS)
        self.commit = Histogram("livesell_store_commit_seconds", "Order-store transaction "
                                "time, commit included", registry=r, buckets=COMMIT_BUCKETS)
        self.store_failures = Counter("livesell_store_failed_transactions", "Order-store "
                                      "transactions that failed", registry=r)
        self.webhooks = Counter("livesell_webhook_attempts", "Webhook delivery attempts, by "
                                "outcome (delivered, retry, dead)", ["outcome"], registry=r)
        self.outbox_lag = Gauge("livesell_outbox_lag_seconds", "Age of the oldest webhook "
                                "message not delivered yet (0: none)", registry=r,
                                multiprocess_mode="livemax")
        self.redis_up = Gauge("livesell_redis_up", "1 while Redis answers", registry=r,
                              multiprocess_mode="livemin")
        self.store_up = Gauge("livesell_store_up", "1 while the order store commits",
                              registry=r, multiprocess_mode="livemin")
        self.loop_lag = Gauge("livesell_event_loop_lag_seconds", "How late the pulse's "
                              "timer woke: the event loop's backlog", registry=r,
                              multiprocess_mode="livemax")
        self._seen: dict[str, int] = {}
        self._seen_keyed: dict[tuple[str, ...], int] = {}

    def _delta(self, name: str, value: int) -> int:
        before = self._seen.get(name, 0)
        self._seen[name] = value
        return max(0, value - before)

    def _keyed_delta(self, key: tuple[str, ...], value: int) -> int:
        before = self._seen_keyed.get(key, 0)
        self._seen_keyed[key] = value
        return max(0, value - before)

    def sync(self, svc: Services) -> None:
        """Move what changed since the last call into the metrics."""
        hub = svc.hub
        if hub is not None:
            self.connections.set(sum(len(room.members) for room in hub.rooms.values()))
            self.rooms.set(len(hub.rooms))
            self.joins.inc(self._delta("joins", hub.joins))
            self.frames.inc(self._delta("frames", hub.frames_out))
            self.behind.inc(self._delta("behind", hub.fell_behind))
            self.slow.inc(self._delta("slow", hub.slow_closes))
            self.snapshots.inc(self._delta("snapshots", hub.snapshots_built))
            ledger = hub.scripts
            samples, ledger.round_trips = ledger.round_trips, []
            for seconds in samples:
                self.round_trip.observe(seconds)
            self.redis_failures.inc(self._delta("redis_failures", ledger.failed_batches))
        self.in_flight.set(len(svc.requests))
        ctx = svc.show.ctx
        for kind, n in list(ctx.published.items()):
            self.events.labels(kind).inc(self._keyed_delta(("event", kind), n))
        for (kind, outcome), n in list(svc.outcomes.items()):
            self.requests.labels(kind, outcome).inc(
                self._keyed_delta(("request", kind, outcome), n))
        writer = svc.store.writer_stats() if svc.store is not None else None
        if writer is not None:
            batches, failed = writer
            for writes, seconds in batches:
                self.batch.observe(writes)
                self.commit.observe(seconds)
            self.store_failures.inc(self._delta("store_failures", failed))
        hooks = svc.show.webhooks
        for outcome, n in list(hooks.attempts.items()):
            self.webhooks.labels(outcome).inc(self._keyed_delta(("webhook", outcome), n))
        self.outbox_lag.set(hooks.outbox_lag_s)
        health = svc.health
        self.redis_up.set(1 if health.redis_up else 0)
        failing = health.store_failed() if health.store_failed is not None else False
        self.store_up.set(0 if svc.store is None or failing else 1)
        self.loop_lag.set(svc.show.pulse.lag_s)

    def render(self) -> bytes:
        if self.multi:
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return bytes(generate_latest(registry))
        assert self.registry is not None
        return bytes(generate_latest(self.registry))


def process_gone(pid: int) -> None:
    """A worker stopped: its live gauges leave the sums (multi-process mode)."""
    if multiprocess_mode():
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
