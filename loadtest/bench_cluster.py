"""Scaling out, measured on this machine (docs/benchmarks.md, "Several servers",
issue 17):

- fan-out through HAProxy: the `fanout` scenario (VIEWERS viewers, RATE host
  announcements a second, so VIEWERS x RATE deliveries a second asked) run with
  `--servers 1`, `2` and `3` (loadtest/cluster.py: the servers on
  127.0.0.1..3, one Redis, one PostgreSQL), interleaved run by run so a slow
  stretch of the machine weighs on every layout alike; per run the deliveries
  a second in the show, the servers' CPU per delivery (every server added up),
  HAProxy's and the load generator's CPU per delivery and Redis's CPU per host
  event (sampled here beside the engine's own sampling, over the same show
  window; PostgreSQL's too), latency and reach, and HAProxy's own count of
  failed health checks and of servers it took out (a server taken out has its
  viewers' connections closed: such a run measured an outage, and its checks
  say so);
- buys: the bench's flash sale (loadtest/bench_sale.py, BUYERS buyers, UNITS
  units) on one spawned server of 1 and of 2 processes (`serve --workers`) on
  one Redis, interleaved too; per run buys a second, server and Redis CPU per
  buy.

Every run also records the machine's load: the load average before and after,
the share of the machine's CPU that was busy (and stolen) during the show, and
the cores' worth of it that other work took (busy, less the layout's parts).

Medians of the runs that passed their checks, with their min and max, and each
layout's ratio to the one-server (one-process) median measured in the same
session; runs that failed are kept in the per-run list with what failed.
Written to bench_cluster.json in the report directory and printed.

    python -m loadtest.bench_cluster [--runs 3] [--viewers 2000] [--rate 40]
        [--duration 10] [--buyers 10000] [--units 1000] [--no-fanout] [--no-sale]
        [--report-dir DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from loadtest.args import bounded
from loadtest.stats import cpu_ticks

LAYOUTS = (1, 2, 3)
PROCESSES = (1, 2)
WATCH_EVERY_S = 0.1
STATS_EVERY_S = 0.5

FANOUT_FIGURES = ("deliveries_per_s", "delivered_share", "cpu_us_per_delivery",
                  "haproxy_cpu_us_per_delivery", "generator_cpu_us_per_delivery",
                  "redis_cpu_us_per_event", "p50_ms", "p99_ms", "others_cores")
SALE_FIGURES = ("buys_per_s", "server_cpu_us_per_buy", "redis_cpu_us_per_buy", "p50_ms",
                "p99_ms")


def _spread(values: list[float | None]) -> dict[str, float] | None:
    got = [v for v in values if v is not None]
    if not got:
        return None
    return {"median": round(statistics.median(got), 2), "min": round(min(got), 2),
            "max": round(max(got), 2)}


def _busy_ticks() -> tuple[int, int, int] | None:
    """The machine's busy, stolen and total CPU ticks since boot (busy is
    everything but idle and iowait)."""
    ticks = cpu_ticks()
    if ticks is None:
        return None
    total = sum(ticks)
    return total - ticks[3] - ticks[4], ticks[7], total


def _loadavg() -> list[float] | None:
    with contextlib.suppress(OSError, AttributeError):
        return [round(x, 2) for x in os.getloadavg()]
    return None


# One reading of the watch: monotonic time, CPU seconds so far by part of the layout
# (haproxy, redis, servers, generators, this process, postgresql), and the machine's
# busy, stolen and total ticks.
WatchSample = tuple[float, dict[str, float], tuple[int, int, int] | None]
PARTS = ("haproxy", "redis", "servers", "generators", "bench", "postgresql")


class LayoutWatch:
    """Beside one cluster run, every WATCH_EVERY_S: the CPU of each part of the
    layout (the engine counts the servers per delivery; HAProxy, Redis, the load
    generators, this process and PostgreSQL are read here too; a PostgreSQL
    backend that ended takes its CPU with it) and the machine's busy ticks, so
    what other work took during the show is known; and every STATS_EVERY_S
    HAProxy's view of each server (failed checks, times taken out, most sessions
    at once), the last reading kept (the balancer is gone when the run returns)."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.samples: list[WatchSample] = []
        self.servers: dict[str, dict[str, int]] = {}
        self._last_stats = 0.0

    def _read(self, cluster: Any) -> dict[str, float] | None:
        from loadtest.stats import descendants_of, read_proc

        ha = read_proc(cluster.balancer.proc.pid)
        red = read_proc(cluster.redis_pid) if cluster.redis_pid else None
        srv, _ = cluster.sample()
        me = read_proc(os.getpid())
        if ha is None or red is None or srv is None or me is None:
            return None
        gens = [read_proc(p.pid) for p in self.engine.pool.procs if p.pid]
        # The cluster's own PostgreSQL (its postmaster and backends), when it has one.
        pg = getattr(cluster, "_own_pg", None)
        pg_pid = pg.proc.pid if pg is not None and pg.proc is not None else None
        pgs = [read_proc(p) for p in ([pg_pid, *descendants_of(pg_pid)] if pg_pid else [])]
        return {"haproxy": ha.cpu_s, "redis": red.cpu_s, "servers": srv.cpu_s,
                "generators": sum(g.cpu_s for g in gens if g is not None),
                "bench": me.cpu_s, "postgresql": sum(s.cpu_s for s in pgs if s is not None)}

    async def loop(self) -> None:
        from loadtest.cluster import ServerCluster

        while True:
            await asyncio.sleep(WATCH_EVERY_S)
            cluster = self.engine.target.server
            if not isinstance(cluster, ServerCluster) or cluster.balancer is None \
                    or cluster.balancer.proc is None:
                continue
            cpu = self._read(cluster)
            if cpu is not None:
                self.samples.append((time.monotonic(), cpu, _busy_ticks()))
            if time.monotonic() - self._last_stats >= STATS_EVERY_S:
                self._last_stats = time.monotonic()
                with contextlib.suppress(OSError, ValueError, KeyError):
                    self._keep(await asyncio.to_thread(cluster.balancer_stats))

    def _keep(self, stats: dict[str, dict[str, str]]) -> None:
        for name, row in stats.items():
            mine = self.servers.setdefault(name, {"sessions_max": 0})
            mine["checks_failed"] = int(row.get("chkfail") or 0)
            mine["times_down"] = int(row.get("chkdown") or 0)
            mine["sessions_max"] = max(mine["sessions_max"], int(row.get("scur") or 0))
            mine["sessions_total"] = int(row.get("stot") or 0)

    def window(self, start: float, end: float) -> dict[str, Any]:
        """Each part's CPU seconds from the last sample at or before `start` to the
        first at or after `end`; the machine's busy and stolen shares between the
        same two samples, and the cores' worth of CPU that work other than this
        layout took meanwhile (busy, less every part read here: other people's work,
        and the kernel's softirq time for the loopback traffic)."""
        before = [s for s in self.samples if s[0] <= start]
        after = [s for s in self.samples if s[0] >= end]
        if not before or not after:
            return {}
        a, b = before[-1], after[0]
        wall = b[0] - a[0]
        out: dict[str, Any] = {f"{k}_cpu_s": round(b[1][k] - a[1][k], 3) for k in PARTS}
        out["watch_window_s"] = round(wall, 3)
        if a[2] is not None and b[2] is not None and b[2][2] > a[2][2] and wall > 0:
            total = b[2][2] - a[2][2]
            cores = os.cpu_count() or 1
            out["machine_busy_share"] = round((b[2][0] - a[2][0]) / total, 3)
            out["machine_steal_share"] = round((b[2][1] - a[2][1]) / total, 3)
            ours = sum(b[1][k] - a[1][k] for k in PARTS)
            out["others_cores"] = round(max(0.0, out["machine_busy_share"] * cores
                                            - ours / wall), 2)
        return out


def _per(cpu_s: float | None, count: int | None) -> float | None:
    return round(cpu_s * 1e6 / count, 2) if cpu_s is not None and count else None


async def fanout_run(servers: int, viewers: int, rate: float,
                     duration: float) -> dict[str, Any]:
    from loadtest.context import RunOptions
    from loadtest.engine import prepare
    from loadtest.scenario import load_scenario_file, resolve

    base = load_scenario_file(resolve("fanout"))
    s = replace(base, name="bench_cluster_fanout",
                viewers=replace(base.viewers, count=viewers, join_rate_per_s=500.0,
                                latency_sample=250),
                run=replace(base.run, duration_s=duration, join_timeout_s=120.0),
                host=replace(base.host, events_per_s=rate, actions=("announce",)))
    load_before = _loadavg()
    engine = prepare(RunOptions(scenario=s, progress=False, servers=servers))
    watch = LayoutWatch(engine)
    watcher = asyncio.ensure_future(watch.loop())
    try:
        result = await engine.run()
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
    m = result.measurements
    fan, srv = m["fanout"], m["server"]
    show_start = engine.ctx.t_show
    shown = watch.window(show_start, show_start + engine.sampler.show_seconds) \
        if show_start and engine.sampler.show_seconds else {}
    deliveries = fan.get("deliveries_during_show")
    events = fan.get("host_events_emitted")
    latency = fan.get("latency_ms") or {}
    asked = viewers * rate
    return {"servers": servers, "deliveries_per_s": fan.get("deliveries_per_s"),
            "asked_per_s": asked,
            "delivered_share": round(fan["deliveries_per_s"] / asked, 3)
            if fan.get("deliveries_per_s") else None,
            "deliveries_during_show": deliveries, "host_events": events,
            "show_s": round(engine.sampler.show_seconds, 3),
            "reach": fan.get("reach"), "latency_ms": latency,
            "p50_ms": latency.get("p50"), "p99_ms": latency.get("p99"),
            "cpu_us_per_delivery": srv.get("cpu_us_per_delivery"),
            "cpu_s_during_show": srv.get("cpu_s_during_show"),
            "haproxy_cpu_us_per_delivery": _per(shown.get("haproxy_cpu_s"), deliveries),
            "generator_cpu_us_per_delivery": _per(shown.get("generators_cpu_s"), deliveries),
            "redis_cpu_us_per_event": _per(shown.get("redis_cpu_s"), events),
            **shown, "balancer": watch.servers,
            "reconnects": m["viewers"]["reconnects"], "gaps": fan.get("gaps"),
            "joined": m["viewers"]["joined"], "checks_ok": result.ok,
            "failed_checks": [c.to_dict() for c in result.checks if not c.ok],
            "warnings": result.warnings, "load_before": load_before,
            "load_after": _loadavg()}


async def sale_run(processes: int, buyers: int, units: int) -> dict[str, Any]:
    from loadtest.bench_sale import bench_sale_livesell

    load_before = _loadavg()
    one = await bench_sale_livesell(buyers, units, server_processes=processes)
    keep = ("buys_per_s", "server_cpu_us_per_buy", "redis_cpu_us_per_buy", "burst_s",
            "time_to_all_reserved_s", "buy_ms", "units_sold", "joined", "checks_ok",
            "failed_checks", "steal_share")
    buy_ms = one.get("buy_ms") or {}
    return {"processes": processes, **{k: one.get(k) for k in keep},
            "p50_ms": buy_ms.get("p50"), "p99_ms": buy_ms.get("p99"),
            "load_before": load_before, "load_after": _loadavg()}


def summarize(runs: list[dict[str, Any]], key: str, figures: tuple[str, ...]
              ) -> dict[str, Any]:
    """Per layout: the medians (with min and max) of the runs that passed their
    checks, how many ran and failed, and each median's ratio to layout 1's."""
    by: dict[int, list[dict[str, Any]]] = {}
    for r in runs:
        by.setdefault(int(r[key]), []).append(r)
    out: dict[str, Any] = {}
    for n, rows in sorted(by.items()):
        good = [r for r in rows if r.get("checks_ok")]
        entry: dict[str, Any] = {f: _spread([r.get(f) for r in good]) for f in figures}
        entry["runs"] = len(rows)
        entry["runs_failed"] = len(rows) - len(good)
        entry["all_checks_ok"] = not entry["runs_failed"]
        out[str(n)] = entry
    base = out.get("1", {})
    for entry in out.values():
        for f in figures:
            b, x = (base.get(f) or {}).get("median"), (entry.get(f) or {}).get("median")
            entry[f"{f}_ratio_to_1"] = round(x / b, 3) if b and x else None
    return out


def _fanout_line(run: int, one: dict[str, Any]) -> str:
    downs = sum(s.get("times_down", 0) for s in one["balancer"].values())
    failed = sum(s.get("checks_failed", 0) for s in one["balancer"].values())
    return (f"fan-out run {run}, {one['servers']} server(s): {one['deliveries_per_s']} "
            f"deliveries/s of {one['asked_per_s']:g} asked, servers "
            f"{one['cpu_us_per_delivery']} µs/delivery, haproxy "
            f"{one['haproxy_cpu_us_per_delivery']} µs/delivery, redis "
            f"{one['redis_cpu_us_per_event']} µs/event, p50 {one['p50_ms']} p99 "
            f"{one['p99_ms']} ms, reach {one['reach']}, health checks failed {failed}, "
            f"servers taken out {downs}, other work {one.get('others_cores')} cores, "
            f"load {one['load_before']} -> {one['load_after']}, checks ok "
            f"{one['checks_ok']}"
            + ("" if one["checks_ok"] else f": {json.dumps(one['failed_checks'])[:600]}"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.bench_cluster",
                                     description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("--runs", type=bounded(1, 20, int), default=3)
    parser.add_argument("--viewers", type=bounded(1, 50_000, int), default=2000)
    parser.add_argument("--rate", type=bounded(0.1, 1000.0, float), default=40.0)
    parser.add_argument("--duration", type=bounded(0.5, 600.0, float), default=10.0)
    parser.add_argument("--buyers", type=bounded(1, 1_000_000, int), default=10_000)
    parser.add_argument("--units", type=bounded(1, 1_000_000, int), default=1000)
    parser.add_argument("--no-fanout", action="store_true")
    parser.add_argument("--no-sale", action="store_true")
    parser.add_argument("--report-dir", type=Path)
    args = parser.parse_args(argv)
    if args.units > args.buyers:
        parser.error(f"--units {args.units} is more than --buyers {args.buyers}")
    out_dir = args.report_dir or Path("loadtest-reports") / (
        f"bench-cluster-{time.strftime('%Y%m%d-%H%M%S')}")

    async def run_all() -> dict[str, Any]:
        from loadtest.sampling import machine

        result: dict[str, Any] = {"machine": machine(), "settings": {
            k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "started": time.strftime("%Y-%m-%d %H:%M:%S"), "load_at_start": _loadavg()}
        if not args.no_fanout:
            runs = []
            for run in range(args.runs):
                for n in LAYOUTS:
                    one = await fanout_run(n, args.viewers, args.rate, args.duration)
                    print(_fanout_line(run + 1, one), flush=True)
                    runs.append(one)
            result["fanout_runs"] = runs
            result["fanout"] = summarize(runs, "servers", FANOUT_FIGURES)
        if not args.no_sale:
            runs = []
            for run in range(args.runs):
                for n in PROCESSES:
                    one = await sale_run(n, args.buyers, args.units)
                    print(f"sale run {run + 1}, {n} process(es): {one['buys_per_s']} buys/s, "
                          f"server {one['server_cpu_us_per_buy']} µs/buy, redis "
                          f"{one['redis_cpu_us_per_buy']} µs/buy, p99 {one['p99_ms']} ms, "
                          f"load {one['load_before']} -> {one['load_after']}, checks ok "
                          f"{one['checks_ok']}"
                          + ("" if one["checks_ok"]
                             else f": {json.dumps(one['failed_checks'])[:600]}"), flush=True)
                    runs.append(one)
            result["sale_runs"] = runs
            result["sale"] = summarize(runs, "processes", SALE_FIGURES)
        result["load_at_end"] = _loadavg()
        return result

    result = asyncio.run(run_all())
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "bench_cluster.json").write_text(json.dumps(result, indent=1))
    for part in ("fanout", "sale"):
        if part in result:
            print(part, json.dumps(result[part], indent=1))
    print(f"written: {out_dir / 'bench_cluster.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
