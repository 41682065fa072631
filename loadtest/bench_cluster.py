"""Scaling out, measured on this machine (docs/benchmarks.md, issue 17):

- fan-out through HAProxy: the `fanout` scenario (VIEWERS viewers, RATE host
  events a second) run with `--servers 1`, `2` and `3` (loadtest/cluster.py:
  the servers on 127.0.0.1..3, one Redis, one PostgreSQL), interleaved run by
  run so a slow stretch of the machine weighs on every layout alike; per run
  the deliveries a second in the show, the servers' CPU per delivery (every
  server added up), latency and reach;
- buys: the bench's flash sale (loadtest/bench_sale.py, BUYERS buyers, UNITS
  units) on one spawned server of 1 and of 2 processes (`serve --workers`) on
  one Redis, interleaved too; per run buys a second, server and Redis CPU per
  buy.

Medians of the runs with their min and max, and each layout's ratio to the
one-server (one-process) median measured in the same session. Written to
bench_cluster.json in the report directory and printed.

    python -m loadtest.bench_cluster [--runs 3] [--viewers 2000] [--rate 40]
        [--duration 10] [--buyers 10000] [--units 1000] [--no-fanout] [--no-sale]
        [--report-dir DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from loadtest.args import bounded

LAYOUTS = (1, 2, 3)
PROCESSES = (1, 2)


def _spread(values: list[float | None]) -> dict[str, float] | None:
    got = [v for v in values if v is not None]
    if not got:
        return None
    return {"median": round(statistics.median(got), 2), "min": round(min(got), 2),
            "max": round(max(got), 2)}


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
    result = await prepare(RunOptions(scenario=s, progress=False, servers=servers)).run()
    m = result.measurements
    fan, srv = m["fanout"], m["server"]
    return {"servers": servers, "deliveries_per_s": fan.get("deliveries_per_s"),
            "reach": fan.get("reach"), "latency_ms": fan.get("latency_ms"),
            "cpu_us_per_delivery": srv.get("cpu_us_per_delivery"),
            "cpu_s_during_show": srv.get("cpu_s_during_show"),
            "joined": m["viewers"]["joined"], "checks_ok": result.ok,
            "failed_checks": [c.to_dict() for c in result.checks if not c.ok],
            "warnings": result.warnings}


async def sale_run(processes: int, buyers: int, units: int) -> dict[str, Any]:
    from loadtest.bench_sale import bench_sale_livesell

    one = await bench_sale_livesell(buyers, units, server_processes=processes)
    keep = ("buys_per_s", "server_cpu_us_per_buy", "redis_cpu_us_per_buy", "burst_s",
            "time_to_all_reserved_s", "buy_ms", "units_sold", "joined", "checks_ok",
            "failed_checks", "steal_share")
    return {"processes": processes, **{k: one.get(k) for k in keep}}


def summarize(runs: list[dict[str, Any]], key: str, figures: tuple[str, ...]
              ) -> dict[str, Any]:
    by: dict[int, list[dict[str, Any]]] = {}
    for r in runs:
        by.setdefault(int(r[key]), []).append(r)
    out: dict[str, Any] = {}
    for n, rows in sorted(by.items()):
        out[str(n)] = {f: _spread([r.get(f) for r in rows]) for f in figures}
        out[str(n)]["p99_ms"] = _spread([(r.get("latency_ms") or r.get("buy_ms") or {})
                                         .get("p99") for r in rows])
        out[str(n)]["all_checks_ok"] = all(r.get("checks_ok") for r in rows)
    base = out.get("1", {})
    for entry in out.values():
        for f in figures:
            b, x = (base.get(f) or {}).get("median"), (entry.get(f) or {}).get("median")
            entry[f"{f}_ratio_to_1"] = round(x / b, 3) if b and x else None
    return out


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
            k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}}
        if not args.no_fanout:
            runs = []
            for run in range(args.runs):
                for n in LAYOUTS:
                    one = await fanout_run(n, args.viewers, args.rate, args.duration)
                    print(f"fan-out run {run + 1}, {n} server(s): {one['deliveries_per_s']} "
                          f"deliveries/s, {one['cpu_us_per_delivery']} µs/delivery, p99 "
                          f"{(one['latency_ms'] or {}).get('p99')} ms, reach {one['reach']}, "
                          f"checks ok {one['checks_ok']}", flush=True)
                    runs.append(one)
            result["fanout_runs"] = runs
            result["fanout"] = summarize(runs, "servers", ("deliveries_per_s",
                                                           "cpu_us_per_delivery"))
        if not args.no_sale:
            runs = []
            for run in range(args.runs):
                for n in PROCESSES:
                    one = await sale_run(n, args.buyers, args.units)
                    print(f"sale run {run + 1}, {n} process(es): {one['buys_per_s']} buys/s, "
                          f"server {one['server_cpu_us_per_buy']} µs/buy, redis "
                          f"{one['redis_cpu_us_per_buy']} µs/buy, checks ok "
                          f"{one['checks_ok']}", flush=True)
                    runs.append(one)
            result["sale_runs"] = runs
            result["sale"] = summarize(runs, "processes", ("buys_per_s",
                                                           "server_cpu_us_per_buy",
                                                           "redis_cpu_us_per_buy"))
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
