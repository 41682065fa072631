"""What a run measures along the way: the timeline (the crowd's counters, the
spawned server's CPU and memory, the audit's stock every
`run.audit_interval_s`) every quarter second, the server's and its Redis's CPU
finely around a sale's opening (for CPU per buy), and the marks at the
show's start and end and around the join. Also the machine's description.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from pathlib import Path
from typing import Any

import httpx

from loadtest.context import RunContext
from loadtest.host import Host, HostError
from loadtest.model import StockSample
from loadtest.pool import GeneratorPool
from loadtest.stats import host_jiffies, steal_share
from loadtest.target import SALE_PRODUCT, Target

BURST_SAMPLE_S = 0.02  # /proc CPU times tick every 10 ms
BURST_LEAD_S = 0.3
BURST_WINDOW_S = 20.0


# A burst sample: (wall time before reading /proc, wall time after, server CPU
# seconds, Redis CPU seconds).
BurstSample = tuple[float, float, float, float]


def burst_cpu_per_buy(samples: list[BurstSample], opening: float, buy_window_s: float,
                      buy_ms: list[float], buys: int,
                      steal: list[tuple[float, int, int]] | None = None,
                      last_reply_at: float | None = None) -> dict[str, Any]:
    """Server and Redis CPU from the opening (epoch s) to the last buy reply, per
    buy request answered. The last reply is the latest the generators saw
    (`last_reply_at`, epoch s), and at least the slowest reply's latency after the
    buy window: a generator that sends late (its core busy) moves it later, and a
    window ending at the opening plus the slowest latency then missed part of the
    burst, in the server's CPU and in Redis's (docs/benchmarks.md, issue 13, fourth
    part). Whatever else the server did in that window (the opening's fan-out,
    early checkouts) counts. `burst_s` is the window: when, after the opening, the
    last reply came.

    The CPU is taken between the last sample read wholly before the opening and the
    first read wholly after the last reply: never less than the window's own CPU,
    and a little more (the server is all but idle just before and after). The
    sampler shares the generators' core, and while they are busy it may be
    scheduled late; figures read between samples as if the CPU had been spent
    evenly came out at half the true cost in such runs (docs/benchmarks.md, issue
    13, fourth part). `cpu_window_s` says how long the measured interval was,
    beside `burst_s`, the window's own. Samples that do not cover the window give
    no figure rather than a short one. With the machine's steal samples,
    `steal_share` says how much of the machine's CPU the hypervisor gave to others
    meanwhile (docs/benchmarks.md: the slow runs are the ones with high steal)."""
    if not buy_ms or not buys:
        return {}
    end = max(opening + buy_window_s + max(buy_ms) / 1000.0, last_reply_at or 0.0)
    before = [s for s in samples if s[1] <= opening]
    after = [s for s in samples if s[0] >= end]
    if not before or not after:
        return {}
    a, b = before[-1], after[0]
    out: dict[str, Any] = {"burst_s": round(end - opening, 3),
                           "cpu_window_s": round(b[1] - a[0], 3),
                           "server_cpu_us_per_buy": round((b[2] - a[2]) * 1e6 / buys, 1),
                           "redis_cpu_us_per_buy": round((b[3] - a[3]) * 1e6 / buys, 1)}
    share = steal_share(steal, opening, end) if steal else None
    if share is not None:
        out["steal_share"] = share
    return out


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):  # not Linux: the model stays unnamed
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = 0
    with contextlib.suppress(OSError, ValueError, IndexError):
        mem = int(Path("/proc/meminfo").read_text().split()[1]) * 1024
    return {"cpu": model, "cpus": os.cpu_count(), "memory_gb": round(mem / 2**30, 1),
            "kernel": os.uname().release}


class Sampler:
    def __init__(self, ctx: RunContext, target: Target, pool: GeneratorPool) -> None:
        self.ctx = ctx
        self.target = target
        self.pool = pool
        self.timeline: list[dict[str, Any]] = []
        # (monotonic time, server cpu s, redis cpu s, server rss, redis rss)
        self.cpu_samples: list[tuple[float, float, float, int, int]] = []
        # BurstSample every BURST_SAMPLE_S around a sale's
        # opening: the quarter-second samples are too coarse for a one-second burst.
        self.burst_cpu: list[BurstSample] = []
        # (wall time, machine steal ticks, machine total ticks), sampled with burst_cpu.
        self.burst_steal: list[tuple[float, int, int]] = []
        self.cpu_show: tuple[float, float] | None = None  # server cpu at show start/end
        self.applied_show: tuple[int, int] | None = None  # events applied, same
        self.show_seconds = 0.0
        self.rss_before_join = 0
        self.rss_after_join = 0
        self.audit_failures = 0
        self.audit_error = ""

    async def loop(self, host: Host) -> None:
        """Audit, server CPU/RSS and crowd counters, sampled through the run."""
        ctx, server = self.ctx, self.target.server
        started = time.monotonic()
        last_t, last_cpu = started, None
        # Rates over the last second: generators report every half second, so a
        # shorter window would alternate between bursts and zeros.
        history: list[tuple[float, int, int]] = [(started, 0, 0)]
        next_audit = 0.0
        while True:
            await asyncio.sleep(0.25)
            now = time.monotonic()
            totals = self.pool.totals()
            row: dict[str, Any] = {"t": round(now - started, 2), **totals}
            if server is not None:
                srv, red = server.sample()
                if srv is not None:
                    red_cpu = red.cpu_s if red else 0.0
                    red_rss = red.rss_bytes if red else 0
                    self.cpu_samples.append((now, srv.cpu_s, red_cpu, srv.rss_bytes, red_rss))
                    if last_cpu is not None:
                        row["server_cpu"] = round((srv.cpu_s - last_cpu) / (now - last_t), 3)
                    row["server_rss_mb"] = round(srv.rss_bytes / 2**20, 1)
                    last_cpu = srv.cpu_s
            last_t = now
            history.append((now, totals.get("applied", 0), totals.get("buys", 0)))
            while len(history) > 2 and now - history[1][0] >= 1.0:
                history.pop(0)
            t0, applied0, buys0 = history[0]
            dt = max(1e-6, now - t0)
            row["events_per_s"] = round((totals.get("applied", 0) - applied0) / dt, 1)
            row["buys_per_s"] = round((totals.get("buys", 0) - buys0) / dt, 1)
            if ctx.data.products and now - started >= next_audit:
                next_audit = now - started + ctx.scn.run.audit_interval_s
                row.update(await self._audit(host, now))
            self.timeline.append(row)
            ctx.progress.update(connected=totals.get("connected", 0),
                                events_per_s=row["events_per_s"],
                                buys_per_s=row["buys_per_s"],
                                orders=totals.get("orders", 0), errors=totals.get("errors", 0),
                                server_cpu=row.get("server_cpu", 0.0),
                                elapsed=now - started,
                                **{k: row[k] for k in ("sold", "held", "left") if k in row})

    async def _audit(self, host: Host, now: float) -> dict[str, Any]:
        """One stock sample from the audit; a failed one is counted (a chaos run
        expects some) and the first reason kept for the warnings."""
        ctx = self.ctx
        try:
            audit = await host.audit()
        except (HostError, httpx.HTTPError) as exc:
            self.audit_failures += 1
            self.audit_error = self.audit_error or f"{type(exc).__name__}: {exc}"
            return {}
        row: dict[str, Any] = {}
        t_show = now - ctx.t_show if ctx.t_show else 0.0
        for p in audit["products"]:
            if p["product_id"] in ctx.data.products:
                ctx.data.stock_samples.append(StockSample(
                    round(t_show, 3), p["product_id"], p["total"], p["left"],
                    p["held"], p["sold"]))
                if p["product_id"] == SALE_PRODUCT or ctx.plan is not None:
                    row.update(sold=p["sold"], held=p["held"], left=p["left"])
        return row

    def warnings(self) -> list[str]:
        if not self.audit_failures:
            return []
        return [f"{self.audit_failures} audit samples during the run failed (first: "
                f"{self.audit_error}); the stock checks saw the others"]

    def _rss(self) -> int:
        if self.target.server is None:
            return 0
        srv, _ = self.target.server.sample()
        return srv.rss_bytes if srv else 0

    def _server_cpu(self) -> float:
        if self.target.server is None:
            return 0.0
        srv, _ = self.target.server.sample()
        return srv.cpu_s if srv else 0.0

    async def burst(self, opening: float) -> None:
        """Server and Redis CPU, finely sampled from just before the sale opens to
        BURST_WINDOW_S after its buy window (or the end of the show)."""
        server = self.target.server
        assert server is not None
        await asyncio.sleep(max(0.0, opening - BURST_LEAD_S - time.time()))
        until = opening + self.ctx.scn.sale.buy_window_s + BURST_WINDOW_S
        while (now := time.time()) < until:
            srv, red = server.sample()
            if srv is not None:
                self.burst_cpu.append((now, time.time(), srv.cpu_s, red.cpu_s if red else 0.0))
            jiffies = host_jiffies()
            if jiffies is not None:
                self.burst_steal.append((now, *jiffies))
            await asyncio.sleep(BURST_SAMPLE_S)

    def cpu_per_buy(self, buy_ms: list[float], buys: int,
                    last_reply_at: float | None = None) -> dict[str, Any]:
        if not self.ctx.data.sales:
            return {}
        return burst_cpu_per_buy(self.burst_cpu, self.ctx.data.sales[0].starts_at / 1000.0,
                                 self.ctx.scn.sale.buy_window_s, buy_ms, buys,
                                 self.burst_steal, last_reply_at)

    def mark_join_start(self) -> None:
        self.rss_before_join = self._rss()

    def mark_join_end(self) -> None:
        self.rss_after_join = self._rss()

    def mark_show_start(self) -> None:
        self.cpu_show = (self._server_cpu(), 0.0)
        self.applied_show = (self.pool.totals().get("applied", 0), 0)

    def mark_show_end(self) -> None:
        self.show_seconds = time.monotonic() - self.ctx.t_show
        if self.cpu_show is not None:
            self.cpu_show = (self.cpu_show[0], self._server_cpu())
        if self.applied_show is not None:
            self.applied_show = (self.applied_show[0], self.pool.totals().get("applied", 0))
