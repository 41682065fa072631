"""One load-test run, end to end: the target server (spawned or given), the room,
the generator processes, the show's timeline, the read-back and the verdicts.

Timeline of a scenario run:

1. target: spawn a server (pinned to its own core) or check --url, which must be
   on a loopback address and answer /api/health;
2. room: create one through POST /api/rooms (its host key comes back), or use
   --room with --host-key / LIVESELL_HOST_KEY; add the products;
3. crowd: start the generator processes and join every viewer at the rate;
4. show (run.duration_s): drop the coupon, open the lottery, announce the sale
   (it opens after its countdown), emit host events, let chatters chat and
   reconnectors drop; the audit is sampled all along;
5. settle: wait until the crowd's flows are done and no unit is held;
   draw the lottery if its timer has not;
6. end marker: an announcement whose seq every connected viewer must reach;
7. read back: final audit, orders, lotteries; stop the spawned server and
   read its SQLite store read-only; run the checker.

A trace run replaces 3-4 by the recorded host and viewer actions. Ctrl-C
(SIGINT) skips to the read-back, so the report still shows what ran.

With --chaos (loadtest/chaos.py) faults go into the spawned server during the
show, on the show's clock; the generators keep every buy and checkout answer
with its times and retry "try again" answers for a while, and the report gets
a `chaos` section and two more verdicts (every fault injected, the server
recovered after each) beside the unchanged correctness checks.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import multiprocessing as mp
import os
import queue
import signal
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx

from loadtest import checks as checks_mod
from loadtest.chaos import Chaos, Fault, check_chaos, summarize
from loadtest.host import Host, HostError, TargetError, check_loopback
from loadtest.model import CouponInfo, RunData, SaleInfo, StockSample
from loadtest.progress import Progress
from loadtest.scenario import Scenario
from loadtest.spawn import START_TIMEOUT_S, SpawnedServer, SpawnError, plan_cores
from loadtest.stats import spread_indices, summary
from loadtest.trace import ReplayPlan, Trace, replay_plan
from loadtest.worker import TraceStep, WorkerPlan, WorkerResult, run_worker

SALE_PRODUCT = "lt-sale"
FANOUT_PRODUCTS = ("lt-a", "lt-b", "lt-c")
WORKER_START_TIMEOUT_S = 60.0
RESULT_TIMEOUT_S = 90.0
MARKER_TIMEOUT_S = 15.0
HOST_INFLIGHT = 64
BURST_SAMPLE_S = 0.02  # /proc CPU times tick every 10 ms
BURST_LEAD_S = 0.3
BURST_WINDOW_S = 20.0
T = TypeVar("T")
CHAOS_RETRY_S = 10.0  # chaos runs: buyers retry "try again" answers for this long
READBACK_RETRY_S = 15.0  # chaos runs: a read-back the server refuses is retried this long


def _interpolate(samples: list[tuple[float, float, float]], t: float) -> tuple[float, float]:
    """Server and Redis CPU seconds at wall time t, between the samples around it."""
    for (t0, s0, r0), (t1, s1, r1) in itertools.pairwise(samples):
        if t0 <= t <= t1:
            f = (t - t0) / (t1 - t0) if t1 > t0 else 0.0
            return s0 + f * (s1 - s0), r0 + f * (r1 - r0)
    raise ValueError(f"no samples around {t}")


@dataclass(slots=True)
class RunOptions:
    scenario: Scenario
    url: str | None = None
    room: str | None = None
    host_key: str | None = None
    admin_key: str | None = None
    progress: bool = True
    trace: Trace | None = None
    server_processes: int | None = None  # spawned server's processes; None: plan_cores
    chaos: list[Fault] = field(default_factory=list)
    chaos_spec: str = ""


@dataclass(slots=True)
class RunResult:
    """What the report needs: settings, measurements, verdicts and chart data."""

    settings: dict[str, Any]
    measurements: dict[str, Any]
    checks: list[checks_mod.Check]
    warnings: list[str]
    interrupted: bool
    charts: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.interrupted and all(c.ok for c in self.checks)


class Engine:
    def __init__(self, opts: RunOptions) -> None:
        self.opts = opts
        self.scn = opts.scenario
        self.progress = Progress(opts.progress, self.scn.name)
        self.interrupted = asyncio.Event()
        self.server: SpawnedServer | None = None
        self.base = ""
        self.ws_host = "127.0.0.1"
        self.ws_port = 0
        self.room_id = ""
        self.host: Host | None = None
        self.data = RunData()
        self.warnings: list[str] = []
        self.t_show = 0.0  # monotonic time the show started
        self.show_wall = 0.0
        self.sale: dict[str, Any] | None = None
        self.lottery_ids: list[str] = []
        # generator processes
        self.procs: list[Any] = []
        self.ctrls: list[Any] = []
        self.out: Any = None
        self.inbox: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()
        self.worker_progress: dict[int, dict[str, Any]] = {}
        self.ready: set[int] = set()
        self.joined: dict[int, dict[str, Any]] = {}
        self.results: dict[int, WorkerResult] = {}
        self.worker_errors: list[str] = []
        # measurements along the way
        self.timeline: list[dict[str, Any]] = []
        self.cpu_samples: list[tuple[float, float, float, int, int]] = []
        self.host_actions: Counter[str] = Counter()
        self.host_ms: list[float] = []
        self.host_events = 0
        self.join_s: float | None = None
        self.rss_before_join = 0
        self.rss_after_join = 0
        self.cpu_show: tuple[float, float] | None = None  # server cpu at show start/end
        # (wall time, server cpu s, redis cpu s) every BURST_SAMPLE_S around a sale's
        # opening: the quarter-second samples are too coarse for a one-second burst.
        self.burst_cpu: list[tuple[float, float, float]] = []
        self.applied_show: tuple[int, int] | None = None
        self.final_seq = 0
        self.show_seconds = 0.0
        self.plan: ReplayPlan | None = None
        self.orig_affinity: set[int] | None = None
        self.replay_bound: dict[tuple[str, str], str] = {}
        self.fault = ""
        self.gen_cpus: list[int] | None = None
        self.abandon = ""
        self._reader_stop = False
        self.chaos: Chaos | None = None
        self._readback_deadline: float | None = None

    # ================================================================ main

    async def run(self) -> RunResult:
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGINT, self._on_sigint)
        try:
            with self.progress:
                await self._run()
        except (TargetError, SpawnError):
            raise
        except Exception as exc:  # the run broke off: still report what ran
            self.fault = f"{type(exc).__name__}: {exc}"
            if self.server is not None:
                self.fault += "\nserver log: " + self.server.log_tail(1500)
        finally:
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(signal.SIGINT)
            self._stop_workers()
            if self.server is not None:
                self._stop_server()
            if self.orig_affinity is not None:
                with contextlib.suppress(OSError):
                    os.sched_setaffinity(0, self.orig_affinity)
        return self._result()

    def _on_sigint(self) -> None:
        if self.interrupted.is_set():
            raise KeyboardInterrupt
        self.interrupted.set()
        self.progress.note("interrupted: stopping the show and writing the report of what "
                           "ran (Ctrl-C again to abort)")

    async def _run(self) -> None:
        await self._target()
        async with httpx.AsyncClient(base_url=self.base, timeout=30.0) as http:
            await Host.reach(http, self.base)
            await self._room(http)
            assert self.host is not None
            host = self.host
            self._start_workers()
            tasks = [asyncio.ensure_future(self._pump()),
                     asyncio.ensure_future(self._sample_loop(host))]
            try:
                await self._wait_ready()
                if self.opts.trace is not None:
                    await self._replay(host)
                else:
                    await self._join()
                    await self._show(host)
                await self._settle(host)
                if self.chaos is not None:
                    await self.chaos.finish()
                await self._finish(host)
                await self._read_back(host)
            finally:
                if self.chaos is not None:
                    await self.chaos.stop()
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

    # ================================================================ target and room

    async def _target(self) -> None:
        s = self.scn
        cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
        if self.opts.url:
            self.ws_host, self.ws_port = check_loopback(self.opts.url)
            self.base = self.opts.url.rstrip("/")
            return
        env = {}
        if s.sale.hold_seconds:
            env["LIVESELL_SALE_HOLD_SECONDS"] = str(s.sale.hold_seconds)
        env["LIVESELL_CHAT_MESSAGES_PER_S"] = str(s.chat.server_rate_per_s)
        # Every simulated viewer comes from one loopback address and chats at its own
        # checked rate: the per-address identity limit and the room-wide chat cap
        # (public-edge bounds, tested in tests/test_identities.py) are off here.
        env["LIVESELL_AUTH_GUEST_MINTS_PER_IP_PER_MIN"] = "0"
        env["LIVESELL_CHAT_ROOM_MESSAGES_PER_S"] = "0"
        env["LIVESELL_CHAT_BURST"] = str(s.chat.server_burst)
        cores = plan_cores(cpus)
        self.gen_cpus = cores.generators
        self.server = SpawnedServer(env, cores.server, redis_cpus=cores.redis,
                                    workers=server_processes(self.opts))
        self.progress.update(phase="starting a server")
        self.base = await asyncio.to_thread(self.server.start)
        self.ws_host, self.ws_port = check_loopback(self.base)
        if self.gen_cpus:
            # Keep this process (the host and the progress display) off the server's core.
            self.orig_affinity = os.sched_getaffinity(0)
            with contextlib.suppress(OSError):
                os.sched_setaffinity(0, self.gen_cpus)

    async def _room(self, http: httpx.AsyncClient) -> None:
        s = self.scn
        if self.opts.room:
            if not self.opts.host_key:
                raise TargetError("--room: needs the room's host key (--host-key or "
                                  "LIVESELL_HOST_KEY)")
            self.host = Host(http, self.opts.room, self.opts.host_key)
            try:
                await self.host.audit()
            except HostError as exc:
                raise TargetError(f"--room {self.opts.room}: {exc}") from None
        else:
            try:
                self.host = await Host.create_room(http, f"livesell-loadtest {s.name}",
                                                   self.opts.admin_key)
            except HostError as exc:
                raise TargetError(f"cannot create a room on {self.base}: {exc}") from None
        self.room_id = self.host.room_id
        host = self.host
        if self.opts.trace is not None:
            return
        if s.sale.enabled:
            stock = s.sale.stock or s.sale.units
            await host.product({"product_id": SALE_PRODUCT, "title": "Flash sale item",
                                "price": s.sale.price * 2, "currency": s.sale.currency,
                                "stock": stock})
            self.data.products[SALE_PRODUCT] = stock
            await host.call("POST", "/pins", {"product_id": SALE_PRODUCT})
        if s.host.events_per_s and set(s.host.actions) - {"announce"}:
            for pid in FANOUT_PRODUCTS:
                await host.product({"product_id": pid, "title": f"Item {pid}", "price": 1000,
                                    "stock": 10})
                self.data.products[pid] = 10

    # ================================================================ workers

    def _viewer_count(self) -> int:
        if self.plan is not None:
            return self.plan.viewer_count
        return self.scn.viewers.count

    def _start_workers(self, steps: list[TraceStep] | None = None) -> None:
        s = self.scn
        n = self._viewer_count()
        cpu_total = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
            os.cpu_count() or 2)
        procs = s.viewers.processes or max(1, (os.cpu_count() or cpu_total) - 1)
        procs = max(1, min(procs, n))
        sampled = spread_indices(n, s.viewers.latency_sample)
        abandon = s.sale.abandon
        if abandon == "auto":
            abandon = "expire" if self.server is not None and s.sale.hold_seconds else "release"
        ctx = mp.get_context("spawn")
        self.out = ctx.Queue()
        plan_steps = self.plan.viewers if self.plan is not None else None
        for w in range(procs):
            indices = list(range(w, n, procs))
            mine = set(indices)
            cpus = [self.gen_cpus[w % len(self.gen_cpus)]] if self.gen_cpus else None
            plan = WorkerPlan(
                worker_id=w, host=self.ws_host, port=self.ws_port, room_id=self.room_id,
                indices=indices, sampled=sampled & mine, scenario=s, abandon=abandon,
                cpus=cpus, workers=procs,
                latency_cap=max(10_000, 400_000 // procs),
                record_answers=bool(self.opts.chaos),
                retry_for_s=CHAOS_RETRY_S if self.opts.chaos else 0.0,
                steps=[st for st in plan_steps if st.viewer in mine]
                if plan_steps is not None else None)
            ctrl = ctx.Queue()
            proc = ctx.Process(target=run_worker, args=(plan, ctrl, self.out),
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
                except (EOFError, OSError, ValueError):
                    return
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(self.inbox.put_nowait, msg)

        threading.Thread(target=reader, name="gen-reader", daemon=True).start()

    def _tell(self, *msg: Any) -> None:
        for ctrl in self.ctrls:
            with contextlib.suppress(OSError, ValueError):
                ctrl.put(msg)

    async def _pump(self) -> None:
        while True:
            msg = await self.inbox.get()
            kind, wid = msg[0], msg[1]
            if kind == "ready":
                self.ready.add(wid)
            elif kind == "progress":
                self.worker_progress[wid] = msg[2]
            elif kind == "joined":
                self.joined[wid] = msg[2]
            elif kind == "result":
                self.results[wid] = msg[2]
            elif kind == "error":
                self.worker_errors.append(f"generator {wid}: {msg[2]}")
                self.results.setdefault(wid, WorkerResult(wid))

    async def _wait_ready(self) -> None:
        self.progress.update(phase="starting generator processes",
                             viewers=self._viewer_count())
        deadline = time.monotonic() + WORKER_START_TIMEOUT_S
        while len(self.ready) < len(self.procs):
            if time.monotonic() > deadline or self.worker_errors:
                raise RuntimeError("generator processes did not start: "
                                   + "; ".join(self.worker_errors))
            await asyncio.sleep(0.05)

    def _stop_workers(self) -> None:
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

    # ================================================================ sampling

    def _progress_totals(self) -> dict[str, int]:
        totals: Counter[str] = Counter()
        for p in self.worker_progress.values():
            totals.update({k: v for k, v in p.items() if isinstance(v, int)})
        return dict(totals)

    async def _sample_loop(self, host: Host) -> None:
        """Audit, server CPU/RSS and crowd counters, sampled through the run."""
        started = time.monotonic()
        last_t, last_cpu = started, None
        # Rates over the last second: generators report every half second, so a
        # shorter window would alternate between bursts and zeros.
        history: list[tuple[float, int, int]] = [(started, 0, 0)]
        next_audit = 0.0
        while True:
            await asyncio.sleep(0.25)
            now = time.monotonic()
            totals = self._progress_totals()
            row: dict[str, Any] = {"t": round(now - started, 2), **totals}
            if self.server is not None:
                srv, red = self.server.sample()
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
            if self.data.products and now - started >= next_audit:
                next_audit = now - started + self.scn.run.audit_interval_s
                with contextlib.suppress(HostError, httpx.HTTPError):
                    audit = await host.audit()
                    t_show = now - self.t_show if self.t_show else 0.0
                    for p in audit["products"]:
                        if p["product_id"] in self.data.products:
                            self.data.stock_samples.append(StockSample(
                                round(t_show, 3), p["product_id"], p["total"], p["left"],
                                p["held"], p["sold"]))
                            if p["product_id"] == SALE_PRODUCT or self.plan is not None:
                                row.update(sold=p["sold"], held=p["held"], left=p["left"])
            self.timeline.append(row)
            self.progress.update(connected=totals.get("connected", 0),
                                 events_per_s=row["events_per_s"],
                                 buys_per_s=row["buys_per_s"],
                                 orders=totals.get("orders", 0), errors=totals.get("errors", 0),
                                 server_cpu=row.get("server_cpu", 0.0),
                                 elapsed=now - started,
                                 **{k: row[k] for k in ("sold", "held", "left") if k in row})

    def _rss(self) -> int:
        if self.server is None:
            return 0
        srv, _ = self.server.sample()
        return srv.rss_bytes if srv else 0

    def _server_cpu(self) -> float:
        if self.server is None:
            return 0.0
        srv, _ = self.server.sample()
        return srv.cpu_s if srv else 0.0

    # ================================================================ phases

    async def _sleep(self, seconds: float) -> bool:
        """Sleep unless interrupted; False when interrupted."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.interrupted.wait(), max(0.0, seconds))
        return not self.interrupted.is_set()

    async def _join(self) -> None:
        n = self._viewer_count()
        self.progress.update(phase="joining viewers")
        self.rss_before_join = self._rss()
        started = time.monotonic()
        self._tell("join", time.time() + 0.2)
        deadline = started + self.scn.run.join_timeout_s
        while len(self.joined) < len(self.procs):
            if time.monotonic() > deadline:
                self.warnings.append(f"not every viewer joined within run.join_timeout_s "
                                     f"({self.scn.run.join_timeout_s}s)")
                break
            if not await self._sleep(0.05):
                return
        self.join_s = time.monotonic() - started - 0.2
        self.rss_after_join = self._rss()
        failed = sum(j.get("failed", 0) for j in self.joined.values())
        if failed:
            self.warnings.append(f"{failed} of {n} viewers could not join")

    async def _show(self, host: Host) -> None:
        s = self.scn
        if self.interrupted.is_set():
            return
        self.progress.update(phase="show")
        self.t_show = time.monotonic()
        self.show_wall = time.time()
        self._mark_show_start()
        if s.coupon.enabled:
            coupon = await host.call("POST", "/coupons", {
                "kind": s.coupon.kind, "value": s.coupon.value, "count": s.coupon.count,
                "min_spend": s.coupon.min_spend, "currency": s.sale.currency,
                "expires_in_s": s.coupon.expires_in_s})
            self.data.coupons.append(CouponInfo(coupon["coupon_id"], coupon["count"]))
        if s.lottery.enabled:
            lot = await host.call("POST", "/lotteries", {
                "prize": s.lottery.prize, "winners": s.lottery.winners,
                "duration_s": s.lottery.duration_s})
            self.lottery_ids.append(lot["lottery_id"])
        starts_at = 0
        if s.sale.enabled:
            server_now = (await host.http.get("/api/time")).json()["server_time"]
            starts_at = int(server_now + s.sale.countdown_s * 1000)
            duration = s.sale.duration_s or int(s.run.duration_s + s.run.settle_timeout_s + 60)
            sale = await host.call("POST", "/sales", {
                "product_id": SALE_PRODUCT, "price": s.sale.price, "units": s.sale.units,
                "limit_per_buyer": s.sale.limit_per_buyer, "starts_at": starts_at,
                "duration_s": duration})
            self.sale = sale
            self.data.sales.append(SaleInfo(sale["sale_id"], SALE_PRODUCT, sale["units"],
                                            sale["limit_per_buyer"], sale["starts_at"]))
            starts_at = sale["starts_at"]
        self._tell("show", self.show_wall, starts_at)
        self._start_chaos()
        emitter = asyncio.ensure_future(self._emit(host, self.t_show + s.run.duration_s))
        sampler = asyncio.ensure_future(self._sample_burst(starts_at / 1000.0)) \
            if starts_at and self.server is not None else None
        await self._sleep(self.t_show + s.run.duration_s - time.monotonic())
        await emitter
        if sampler is not None:
            sampler.cancel()
        await self._chaos_injected()
        self._tell("quiet")
        self._mark_show_end()

    def _start_chaos(self) -> None:
        """Faults on the show's clock (started once the show's own setup calls are
        done; a fault due earlier goes in at once, late, with its actual time)."""
        if not self.opts.chaos or self.server is None or self.interrupted.is_set():
            return
        self.chaos = Chaos(self.opts.chaos, self.server, self.base, self.show_wall,
                           lambda: self._progress_totals().get("connected", 0),
                           self.progress.note)
        self.chaos.start()

    async def _chaos_injected(self) -> None:
        if self.chaos is None:
            return
        if self.interrupted.is_set():
            await self.chaos.stop()
        else:
            await self.chaos.injected(within_s=START_TIMEOUT_S + 60.0)

    async def _sample_burst(self, opening: float) -> None:
        """Server and Redis CPU, finely sampled from just before the sale opens to
        BURST_WINDOW_S after its buy window (or the end of the show)."""
        assert self.server is not None
        await asyncio.sleep(max(0.0, opening - BURST_LEAD_S - time.time()))
        until = opening + self.scn.sale.buy_window_s + BURST_WINDOW_S
        while time.time() < until:
            srv, red = self.server.sample()
            if srv is not None:
                self.burst_cpu.append((time.time(), srv.cpu_s, red.cpu_s if red else 0.0))
            await asyncio.sleep(BURST_SAMPLE_S)

    def _burst_cpu_per_buy(self, buy_ms: list[float], buys: int) -> dict[str, Any]:
        """Server and Redis CPU from the opening to the last buy reply, per buy
        request answered: every buyer presses within the buy window, and the last
        reply comes at most the slowest reply's latency after it. Whatever else the
        server did in that window (the opening's fan-out, early checkouts) counts."""
        if not self.data.sales or not buy_ms or not buys or len(self.burst_cpu) < 2:
            return {}
        opening = self.data.sales[0].starts_at / 1000.0
        end = opening + self.scn.sale.buy_window_s + max(buy_ms) / 1000.0
        if self.burst_cpu[0][0] > opening or self.burst_cpu[-1][0] < end:
            return {}
        a, b = _interpolate(self.burst_cpu, opening), _interpolate(self.burst_cpu, end)
        return {"burst_s": round(end - opening, 3),
                "server_cpu_us_per_buy": round((b[0] - a[0]) * 1e6 / buys, 1),
                "redis_cpu_us_per_buy": round((b[1] - a[1]) * 1e6 / buys, 1)}

    def _mark_show_start(self) -> None:
        self.cpu_show = (self._server_cpu(), 0.0)
        self.applied_show = (self._progress_totals().get("applied", 0), 0)

    def _mark_show_end(self) -> None:
        self.show_seconds = time.monotonic() - self.t_show
        if self.cpu_show is not None:
            self.cpu_show = (self.cpu_show[0], self._server_cpu())
        if self.applied_show is not None:
            self.applied_show = (self.applied_show[0], self._progress_totals().get("applied", 0))

    async def _emit(self, host: Host, until: float) -> None:
        """Host events at host.events_per_s until `until` (monotonic)."""
        spec = self.scn.host
        if not spec.events_per_s:
            return
        interval = 1.0 / spec.events_per_s
        text = ("Flash deal coming up " * (spec.text_length // 20 + 1))[:spec.text_length]
        pinned: list[str] = []
        inflight: set[asyncio.Task[None]] = set()
        start = time.monotonic()
        for n in itertools.count():
            due = start + n * interval
            if due >= until or self.interrupted.is_set():
                break
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            while len(inflight) >= HOST_INFLIGHT:
                await asyncio.wait(inflight, return_when=asyncio.FIRST_COMPLETED)
            action = spec.actions[n % len(spec.actions)]
            method, path = "POST", "/announcements"
            body: dict[str, str] | None = {"text": text}
            pid = FANOUT_PRODUCTS[n % len(FANOUT_PRODUCTS)]
            if action == "pin":
                path, body = "/pins", {"product_id": pid}
                if pid not in pinned:
                    pinned.append(pid)
            elif action == "unpin":
                if pinned:
                    method, path, body = "DELETE", f"/pins/{pinned.pop(0)}", None
                else:
                    path, body = "/pins", {"product_id": pid}
                    pinned.append(pid)
            elif action == "product":
                method, path, body = "PATCH", f"/products/{pid}", {"title": f"Item {pid} {n}"}
            task = asyncio.ensure_future(self._host_call(host, action, method, path, body))
            inflight.add(task)
            task.add_done_callback(inflight.discard)
        if inflight:
            await asyncio.wait(inflight)

    async def _host_call(self, host: Host, action: str, method: str, path: str,
                         body: Any) -> None:
        started = time.perf_counter()
        try:
            await host.call(method, path, body)
            self.host_actions[f"{action}: ok"] += 1
            self.host_events += 1
        except HostError as exc:
            self.host_actions[f"{action}: {exc.code}"] += 1
        except httpx.HTTPError as exc:
            self.host_actions[f"{action}: {type(exc).__name__}"] += 1
        self.host_ms.append((time.perf_counter() - started) * 1000.0)

    async def _settle(self, host: Host) -> None:
        """Wait for the crowd's flows to end and for every hold to end."""
        if self.interrupted.is_set():
            return
        self.progress.update(phase="settling: waiting for holds to end")
        deadline = time.monotonic() + self.scn.run.settle_timeout_s
        while time.monotonic() < deadline:
            busy = sum(p.get("busy", 0) for p in self.worker_progress.values())
            held = 0
            if self.data.products:
                with contextlib.suppress(HostError, httpx.HTTPError):
                    audit = await host.audit()
                    held = sum(p["held"] for p in audit["products"]
                               if p["product_id"] in self.data.products)
            if not busy and not held:
                break
            if not await self._sleep(0.25):
                return
        else:
            self.warnings.append(f"the crowd or its holds had not settled after "
                                 f"run.settle_timeout_s ({self.scn.run.settle_timeout_s}s)")
        for lid in self.lottery_ids:
            try:
                await self._draw(host, lid)
            except (HostError, httpx.HTTPError) as exc:
                if not self.opts.chaos:
                    raise
                # After faults the server may not answer yet: the crowd's results and
                # every check matter more than this draw (the lottery check reports it).
                self.warnings.append(f"settle after the faults: lottery {lid}: {exc}")

    @staticmethod
    async def _draw(host: Host, lid: str) -> None:
        """Draw the lottery if its timer has not, and wait (bounded) until it is."""
        lot = await host.lottery(lid)
        if lot.get("state") == "open":
            with contextlib.suppress(HostError):
                await host.call("POST", f"/lotteries/{lid}/draw")
        for _ in range(100):
            if (await host.lottery(lid)).get("state") == "drawn":
                break
            await asyncio.sleep(0.1)

    async def _finish(self, host: Host) -> None:
        self.progress.update(phase="finishing: end marker")
        if self.interrupted.is_set():
            self._tell("stop")
        else:
            with contextlib.suppress(HostError, httpx.HTTPError):
                marker = await host.call("POST", "/announcements",
                                         {"text": "livesell-loadtest: end of show"})
                self.final_seq = int(marker["seq"])
            self._tell("finish", self.final_seq, MARKER_TIMEOUT_S)
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
                            self.worker_errors.append(f"generator {i} exited without a "
                                                      "result")
                            self.results[i] = WorkerResult(i)
        if len(self.results) < len(self.procs):
            self.warnings.append("some generator processes sent no result in time")

    async def _read_back(self, host: Host) -> None:
        self.progress.update(phase="reading back: audit, orders, lotteries")
        audit, self.data.audit_error = await self._read("audit", host.audit)
        if audit is not None:
            for p in audit["products"]:
                if p["product_id"] in self.data.products:
                    self.data.final_stock.append(StockSample(
                        round(time.monotonic() - self.t_show, 3) if self.t_show else 0.0,
                        p["product_id"], p["total"], p["left"], p["held"], p["sold"]))
            self.data.server_audit_failed = [c for c in audit["checks"] if not c["ok"]]
        orders, self.data.orders_api_error = await self._read("orders", host.orders)
        self.data.orders_api = orders or []
        for lid in self.lottery_ids:
            lot, _ = await self._read(f"lottery {lid}", functools.partial(host.lottery, lid))
            if lot is not None:
                self.data.lotteries.append(lot)

    async def _read(self, what: str,
                    call: Callable[[], Awaitable[T]]) -> tuple[T | None, str]:
        """One read-back call. After faults the server may still be recovering:
        a chaos run retries until READBACK_RETRY_S after the read-back began, then
        goes on without it (the checks say what they could not see); other runs
        stop at the error."""
        if not self.opts.chaos:
            return await call(), ""
        if self._readback_deadline is None:
            self._readback_deadline = time.monotonic() + READBACK_RETRY_S
        while True:
            try:
                return await call(), ""
            except (HostError, httpx.HTTPError) as exc:
                if time.monotonic() > self._readback_deadline:
                    self.warnings.append(f"read-back after the faults: {what}: {exc}")
                    return None, f"{type(exc).__name__}: {exc}"
            await asyncio.sleep(0.5)

    def _stop_server(self) -> None:
        assert self.server is not None
        self.progress.update(phase="stopping the server")
        code = self.server.stop()
        if code not in (0, None):
            self.warnings.append(f"the spawned server exited with {code}: "
                                 f"{self.server.log_tail(500)}")
        if self.room_id:
            try:
                self.data.orders_store = self.server.read_orders(self.room_id)
            except Exception as exc:  # the store is what the checks compare against
                self.warnings.append(f"could not read the order store: {exc}")
        self.server.cleanup()

    # ================================================================ trace replay

    async def _replay(self, host: Host) -> None:
        plan = self.plan
        assert plan is not None
        self.progress.update(phase="replaying the trace", viewers=plan.viewer_count)
        for pid in plan.implicit_products:
            await host.product({"product_id": pid, "title": f"Product {pid}", "price": 1000,
                                "stock": 1000})
            self.data.products[pid] = 1000
            self._bind("product", pid, pid)
        for what in plan.unresolved:
            self.warnings.append(f"trace: {what} is referenced but never created; actions "
                                 "on it are skipped")
        self.t_show = time.monotonic()
        self.show_wall = time.time() + 0.5
        self._mark_show_start()
        self._tell("replay", self.show_wall)
        self._start_chaos()
        await self._sleep(self.show_wall - time.time())
        for step in plan.host:
            if self.interrupted.is_set():
                break
            await self._sleep(self.show_wall + step.t_ms / 1000.0 - time.time())
            if self.interrupted.is_set():
                break
            await self._replay_host(host, step)
        await self._sleep(self.show_wall + plan.duration_ms / 1000.0 + 0.5 - time.time())
        await self._chaos_injected()
        self._tell("quiet")
        self._mark_show_end()
        self.join_s = None

    def _bind(self, kind: str, original: str, real: str) -> None:
        self.replay_bound[(kind, original)] = real
        self._tell("bind", kind, original, real)

    def _real(self, kind: str, original: Any) -> str:
        return self.replay_bound.get((kind, str(original)), str(original))

    async def _replay_host(self, host: Host, step: Any) -> None:
        d = dict(step.data)
        speed = self.scn.trace.speed
        act = step.action
        started = time.perf_counter()
        try:
            if act == "product":
                card = await host.product(d)
                self.data.products[card["product_id"]] = int(d.get("stock", 0))
                if step.creates:
                    self._bind("product", step.creates[1], card["product_id"])
                else:
                    self._bind("product", card["product_id"], card["product_id"])
            elif act == "pin":
                await host.call("POST", "/pins", {"product_id": self._real("product",
                                                                         d["product_id"])})
            elif act == "unpin":
                await host.call("DELETE", f"/pins/{self._real('product', d['product_id'])}")
            elif act == "update_product":
                real = self._real("product", d.pop("product_id"))
                await host.call("PATCH", f"/products/{real}", d)
                if "stock" in d:
                    self.data.products[real] = int(d["stock"])
            elif act == "sale":
                d["product_id"] = self._real("product", d["product_id"])
                now = (await host.http.get("/api/time")).json()["server_time"]
                if "starts_in_s" in d:
                    d["starts_at"] = int(now + float(d.pop("starts_in_s")) * 1000 / speed)
                elif "starts_at" in d:
                    recorded_now = self.opts.trace.started_at + step.t_ms * speed \
                        if self.opts.trace else now
                    d["starts_at"] = int(now + (int(d["starts_at"]) - recorded_now) / speed)
                if "duration_s" in d:
                    d["duration_s"] = max(1, round(int(d["duration_s"]) / speed))
                sale = await host.call("POST", "/sales", d)
                self.data.sales.append(SaleInfo(sale["sale_id"], sale["product_id"],
                                                sale["units"], sale["limit_per_buyer"],
                                                sale["starts_at"]))
                if step.creates:
                    self._bind("sale", step.creates[1], sale["sale_id"])
            elif act == "stop_sale":
                await host.call("POST", f"/sales/{self._real('sale', d['sale_id'])}/stop")
            elif act == "coupon":
                coupon = await host.call("POST", "/coupons", d)
                self.data.coupons.append(CouponInfo(coupon["coupon_id"], coupon["count"]))
                if step.creates:
                    self._bind("coupon", step.creates[1], coupon["coupon_id"])
            elif act == "lottery":
                if "duration_s" in d:
                    d["duration_s"] = max(1, round(int(d["duration_s"]) / speed))
                lot = await host.call("POST", "/lotteries", d)
                self.lottery_ids.append(lot["lottery_id"])
                if step.creates:
                    self._bind("lottery", step.creates[1], lot["lottery_id"])
            elif act == "draw":
                await host.call("POST", f"/lotteries/{self._real('lottery', d['lottery_id'])}"
                                "/draw")
            elif act == "announce":
                await host.call("POST", "/announcements", d)
            self.host_actions[f"{act}: ok"] += 1
            self.host_events += 1
        except HostError as exc:
            self.host_actions[f"{act}: {exc.code}"] += 1
            self.warnings.append(f"trace line {step.line}: host {act}: {exc}")
        except httpx.HTTPError as exc:  # the server is down (a chaos restart, or a crash)
            self.host_actions[f"{act}: {type(exc).__name__}"] += 1
            self.warnings.append(f"trace line {step.line}: host {act}: {exc}")
        self.host_ms.append((time.perf_counter() - started) * 1000.0)

    # ================================================================ result

    def _result(self) -> RunResult:
        s = self.scn
        results = [self.results[k] for k in sorted(self.results)]
        d = self.data
        for r in results:
            d.viewers.extend(r.viewers)
            d.holds.extend(r.holds)
            d.acks.extend(r.acks)
            d.claims.extend(r.claims)
            d.entries.extend(r.entries)
        d.final_seq = self.final_seq
        d.chat_limit = (s.chat.server_rate_per_s, s.chat.server_burst)
        interrupted = self.interrupted.is_set()
        d.holds_must_end = not interrupted and (self.server is not None
                                                or self.opts.trace is None)
        latency = [x for r in results for x in r.latency_ms]
        buy_ms = [x for r in results for x in r.buy_ms]
        checkout_ms = [x for r in results for x in r.checkout_ms]
        buy_summary = summary(buy_ms)
        d.buy_p99_ms = buy_summary["p99"]
        d.max_buy_p99_ms = s.checks.max_buy_p99_ms
        expected = sum(max(0, d.final_seq - v.first_seq) for v in d.viewers
                       if v.first_seq and v.connected_at_end) if d.final_seq else 0
        received = sum(min(v.applied, max(0, d.final_seq - v.first_seq)) for v in d.viewers
                       if v.first_seq and v.connected_at_end) if d.final_seq else 0
        d.reach = round(received / expected, 5) if expected else None
        d.min_reach = s.checks.min_reach
        verdicts = checks_mod.check_run(d) if results else []
        chaos_section: dict[str, Any] | None = None
        if self.chaos is not None or self.opts.chaos:
            answers = [(a[0] - self.show_wall, a[1] - self.show_wall, a[2], a[3])
                       for r in results for a in r.answers]
            answers.sort(key=lambda a: a[1])
            if self.chaos is not None:
                chaos_section, chaos_checks = self.chaos.summary(answers, self.opts.chaos_spec)
            else:  # the run broke off or was interrupted before the show
                chaos_section, chaos_checks = summarize([], self.opts.chaos, answers,
                                                        self.opts.chaos_spec)
            verdicts += chaos_checks
        if self.fault:
            verdicts.append(checks_mod.Check("the run completed", False, self.fault))
        for err in self.worker_errors:
            verdicts.append(checks_mod.Check("generator processes ran without faults", False,
                                             err[-1500:]))
        outcomes: dict[str, Counter[str]] = {}
        for r in results:
            for action, codes in r.outcomes.items():
                outcomes.setdefault(action, Counter()).update(codes)
        measurements = self._measurements(results, latency, buy_ms, checkout_ms, outcomes)
        if chaos_section is not None:
            measurements["chaos"] = chaos_section
        warnings = list(self.warnings)
        for r in results:
            if r.saturated_s:
                warnings.append(
                    f"generator {r.worker_id} saturated its core for {r.saturated_s}s "
                    f"(peak {r.peak_util:.0%}): latencies include the generator's own delay; "
                    "use more processes or fewer viewers")
        charts = {
            "latency_ms": latency, "buy_ms": buy_ms, "checkout_ms": checkout_ms,
            "timeline": self.timeline,
            "stock": [(x.t, x.left, x.held, x.sold) for x in d.stock_samples
                      if x.product_id == SALE_PRODUCT or len(d.products) == 1],
            "generator_util": {r.worker_id: r.util_timeline for r in results},
        }
        return RunResult(settings=self._settings(), measurements=measurements,
                         checks=verdicts, warnings=warnings, interrupted=interrupted,
                         charts=charts)

    def _settings(self) -> dict[str, Any]:
        return {
            "scenario": self.scn.to_dict(),
            "target": {"url": self.base, "spawned": self.server is not None or
                       self.opts.url is None, "room_id": self.room_id,
                       **({"server_processes": self.server.workers,
                           "server_cpus": self.server.cpus,
                           "redis_cpus": self.server.redis_cpus,
                           "generator_cpus": self.gen_cpus}
                          if self.server is not None else {})},
            "generator_processes": len(self.results) or len(self.procs),
            "hold_abandon": self.abandon,
            "machine": machine(),
        }

    def _measurements(self, results: list[WorkerResult], latency: list[float],
                      buy_ms: list[float], checkout_ms: list[float],
                      outcomes: dict[str, Counter[str]]) -> dict[str, Any]:
        d = self.data
        n = self._viewer_count()
        joined = sum(len(r.join_ms) for r in results)
        applied = sum(r.applied for r in results)
        show_applied = (self.applied_show[1] - self.applied_show[0]) if self.applied_show \
            else 0
        show_s = self.show_seconds or 0.0
        m: dict[str, Any] = {
            "viewers": {
                "requested": n, "joined": joined,
                "join_failures": sum(len(r.join_failures) for r in results),
                "time_to_join_all_s": round(self.join_s, 3) if self.join_s else None,
                "joins_per_s": round(joined / self.join_s, 1) if self.join_s else None,
                "join_ms": summary([x for r in results for x in r.join_ms]),
                "reconnects": sum(v.reconnects for v in d.viewers),
                "close_codes": dict(Counter(str(c) for v in d.viewers
                                            for c in v.close_codes)),
            },
            "fanout": {
                "latency_ms": summary(latency),
                "latency_sampled_connections": sum(1 for r in results for v in r.viewers
                                                   if v.index in self._sampled_set()),
                "latency_events_seen": sum(r.latency_seen for r in results),
                "reach": d.reach,
                "deliveries": applied,
                "deliveries_during_show": show_applied,
                "deliveries_per_s": round(show_applied / show_s, 1) if show_s else None,
                "host_events_emitted": self.host_events,
                "host_actions": dict(self.host_actions),
                "host_request_ms": summary(self.host_ms),
                "gaps": sum(len(v.gaps) for v in d.viewers),
                "gaps_recovered_by": dict(Counter(g.recovered or "not recovered"
                                                  for v in d.viewers for g in v.gaps)),
                "duplicates": sum(v.duplicates for v in d.viewers),
                # One process reads its connections one after another: the last of its
                # viewers sees an event about (viewers x CPU per frame) after the first.
                # Latencies near this figure are the generator's, not the server's.
                "generator_spread_ms_per_event": self._generator_spread(results),
            },
            "selling": self._selling(buy_ms, checkout_ms, outcomes, results),
            "outcomes": {k: dict(v) for k, v in sorted(outcomes.items())},
            "server": self._server_measurements(show_applied, joined),
            "generator": [{"process": r.worker_id, "viewers": len(r.viewers),
                           "cpu_s": round(r.cpu_s, 2), "wall_s": round(r.wall_s, 2),
                           "peak_core_util": round(r.peak_util, 3),
                           "saturated_s": r.saturated_s, "frames": r.frames}
                          for r in results],
        }
        skipped: Counter[str] = Counter()
        for r in results:
            skipped.update(r.trace_skipped)
        if self.plan is not None:
            m["trace"] = {"recorded_viewers": len(self.opts.trace.viewers)
                          if self.opts.trace else 0,
                          "synthetic_viewers": self.plan.viewer_count,
                          "speed": self.scn.trace.speed,
                          "viewer_steps": len(self.plan.viewers),
                          "host_steps": len(self.plan.host),
                          "skipped": dict(skipped)}
        return m

    @staticmethod
    def _generator_spread(results: list[WorkerResult]) -> float | None:
        spreads = [r.cpu_s / r.frames * len(r.viewers) * 1000.0 for r in results if r.frames]
        return round(max(spreads), 2) if spreads else None

    def _sampled_set(self) -> set[int]:
        return spread_indices(self._viewer_count(), self.scn.viewers.latency_sample)

    def _selling(self, buy_ms: list[float], checkout_ms: list[float],
                 outcomes: dict[str, Counter[str]],
                 results: list[WorkerResult]) -> dict[str, Any]:
        d = self.data
        orders = d.orders_store if d.orders_store is not None else d.orders_api
        out: dict[str, Any] = {
            "buy_ms": summary(buy_ms), "checkout_ms": summary(checkout_ms),
            "holds_given": len(d.holds), "orders_acknowledged": len(d.acks),
            "orders_stored": len(orders),
            "units_sold": sum(int(o["quantity"]) for o in orders),
            "holds_released": sum(r.released for r in results),
            "holds_left_to_expire": sum(r.abandoned_to_expire for r in results),
            "checkouts_refused_hold_expired": outcomes.get("checkout", Counter()).get(
                "hold_expired", 0),
            "coupon_claims": len(d.claims),
            "orders_with_coupon": sum(1 for o in orders if o.get("coupon_id")),
            "lottery_entries": len(d.entries),
        }
        settled = {o["hold_id"] for o in orders}
        out["holds_expired_or_released"] = len({h.hold_id for h in d.holds} - settled)
        for sale in d.sales:
            sold = 0
            out.setdefault("time_to_sell_out_s", None)
            for o in sorted((o for o in orders if o["sale_id"] == sale.sale_id),
                            key=lambda o: int(o["created_at"])):
                sold += int(o["quantity"])
                if sold >= sale.units:
                    out["time_to_sell_out_s"] = round(
                        (int(o["created_at"]) - sale.starts_at) / 1000.0, 3)
                    break
            reserved = [s.t for s in d.stock_samples
                        if s.product_id == sale.product_id and s.left == 0]
            out["time_to_all_reserved_s"] = round(
                reserved[0] - (sale.starts_at / 1000.0 - self.show_wall), 2) if reserved \
                else None
        out.update(self._burst_cpu_per_buy(buy_ms, sum(outcomes.get("buy", Counter()).values())))
        return out

    def _server_measurements(self, show_deliveries: int, joined: int) -> dict[str, Any]:
        if self.server is None or not self.cpu_samples:
            return {"measured": False,
                    "why": "server CPU and memory are read from /proc of a spawned server"}
        first, last = self.cpu_samples[0], self.cpu_samples[-1]
        wall = last[0] - first[0]
        out: dict[str, Any] = {
            "measured": True, "pid": self.server.pid if self.server.proc else None,
            "cpu_s": round(last[1] - first[1], 3),
            "avg_core_util": round((last[1] - first[1]) / wall, 3) if wall else None,
            "redis_cpu_s": round(last[2] - first[2], 3),
            "rss_peak_mb": round(max(x[3] for x in self.cpu_samples) / 2**20, 1),
            "redis_rss_peak_mb": round(max(x[4] for x in self.cpu_samples) / 2**20, 1),
        }
        if self.cpu_show is not None and self.cpu_show[1]:
            cpu = self.cpu_show[1] - self.cpu_show[0]
            out["cpu_s_during_show"] = round(cpu, 3)
            out["cpu_us_per_delivery"] = round(cpu * 1e6 / show_deliveries, 2) \
                if show_deliveries else None
        if joined and self.rss_after_join:
            out["rss_kb_per_viewer"] = round(
                (self.rss_after_join - self.rss_before_join) / 1024 / joined, 2)
            out["cpu_ms_per_viewer"] = round(out["cpu_s"] * 1000 / joined, 3)
        return out


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = 0
    with contextlib.suppress(OSError, ValueError, IndexError):
        mem = int(Path("/proc/meminfo").read_text().split()[1]) * 1024
    return {"cpu": model, "cpus": os.cpu_count(), "memory_gb": round(mem / 2**30, 1),
            "kernel": os.uname().release}


def server_processes(opts: RunOptions) -> int:
    """How many processes the spawned server runs: --server-processes, else the
    core plan's choice."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    return opts.server_processes or plan_cores(cpus).workers


def prepare(opts: RunOptions) -> Engine:
    """An engine for the options (a trace's replay plan is built here, so a bad
    trace fails before anything starts, and the chaos SPEC is checked against
    the run's length and target)."""
    engine = Engine(opts)
    s = opts.scenario
    if opts.trace is not None:
        engine.plan = replay_plan(opts.trace, s.viewers.count if s.viewers.count else None,
                                  s.trace.speed, s.run.seed)
    if opts.chaos:
        if engine.plan is not None:
            length, name = engine.plan.duration_ms / 1000.0, "the trace at --speed"
        else:
            length, name = s.run.duration_s, "run.duration_s"
        check_chaos(opts.chaos, spawned=opts.url is None, length_s=length, length_name=name,
                    server_processes=server_processes(opts) if opts.url is None else 0)
    return engine

