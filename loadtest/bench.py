"""`livesell-loadtest bench`: livesell beside reference implementations, measured
in one run on this machine with the same client.

Fan-out: for each hub (livesell spawned on its embedded defaults; the
`websockets` library's `broadcast()` in `loadtest.refhub`; Node's `ws` with
one pre-built buffer per event in `loadtest/refhubs/node_hub.js`, installed
with npm into a temporary directory; the raw-write floor in
`loadtest.floorhub`, one pre-built frame written to each transport from bare
asyncio Protocols), each crowd size and each event rate, the
hub sends ~200-byte events at the rate for a few seconds to every viewer. The
hub process is pinned to its own core and its CPU time is read from /proc:
CPU microseconds per delivered frame, and the p50/p99 latency from each
event's `ts` to its receipt on a spread sample of connections. Each cell is
the median of several runs; livesell's figures are also given as ratios to
the references and to the floor. livesell's CPU excludes its redis-server (shown apart); its
events are emitted through the host HTTP API, the references' by a timer.

Flash sale: the `flash_sale` engine with N buyers pressing buy at the opening
instant for U units (limit 1, checkout after), against a reference that runs
the same `server/lua/reserve.lua` directly through redis-py asyncio on a
private redis-server, one call per await from N concurrent buyers, and again
pipelined in batches; and against `redis-benchmark` (Debian's redis-tools)
calling the same script with EVALSHA on such a redis-server, 50 connections,
unpipelined and with -P 16. livesell's sale runs `--runs` times (medians);
its buys per second are buyers divided by the seconds from the opening to the
last buy reply, also given as a ratio to redis-benchmark's calls per second.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

from loadtest.bench_fanout import bench_fanout, medians
from loadtest.bench_sale import (
    bench_sale_livesell,
    bench_sale_redis_benchmark,
    bench_sale_reference,
    sale_medians,
)

HUBS = ("livesell", "websockets", "node", "floor")


def _csv_ints(text: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected integers separated by commas")\
            from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected positive integers")
    return values


def _hubs(text: str) -> list[str]:
    names = [x.strip() for x in text.split(",") if x.strip()]
    bad = [n for n in names if n not in HUBS]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"{text!r}: choose from {', '.join(HUBS)}")
    return names


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--viewers", type=_csv_ints, default=[1000, 5000],
                        help="crowd sizes (default 1000,5000)")
    parser.add_argument("--rates", type=_csv_ints, default=[5, 20],
                        help="events per second (default 5,20)")
    parser.add_argument("--runs", type=int, default=3, help="runs per cell (median; >= 3)")
    parser.add_argument("--duration", type=float, default=5.0,
                        help="seconds of events per run")
    parser.add_argument("--hubs", type=_hubs, default=list(HUBS),
                        help="hubs to compare (default livesell,websockets,node,floor)")
    parser.add_argument("--sale-buyers", type=int, default=10_000)
    parser.add_argument("--sale-units", type=int, default=1000)
    parser.add_argument("--no-fanout", action="store_true", help="skip the fan-out part")
    parser.add_argument("--no-sale", action="store_true", help="skip the flash-sale part")
    parser.add_argument("--report-dir", type=Path, help="where bench.json goes "
                        "(default ./loadtest-reports/bench-TIME)")


def run_bench(args: argparse.Namespace) -> int:
    if args.runs < 3:
        print("livesell-loadtest bench: --runs: at least 3 (cells are medians)",
              file=sys.stderr)
        return 2
    out_dir = args.report_dir or Path("loadtest-reports") / (
        f"bench-{time.strftime('%Y%m%d-%H%M%S')}")

    def say(text: str) -> None:
        print(text, flush=True)

    async def main() -> dict[str, Any]:
        from loadtest.sampling import machine

        result: dict[str, Any] = {"machine": machine(), "settings": {
            k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
            if k != "command"}}
        if not args.no_fanout:
            rows = await bench_fanout(args, say)
            result["fanout_runs"] = rows
            result["fanout"] = medians(rows)
        if not args.no_sale:
            sale_runs = []
            for run in range(args.runs):
                say(f"flash sale: livesell, {args.sale_units} units to {args.sale_buyers} "
                    f"buyers, run {run + 1} of {args.runs}")
                one = await bench_sale_livesell(args.sale_buyers, args.sale_units)
                say(f"  all reserved after {one['time_to_all_reserved_s']}s, buy ms p50 "
                    f"{one['buy_ms']['p50']} p99 {one['buy_ms']['p99']}, "
                    f"{one['buys_per_s']} buys/s, checks ok: {one['checks_ok']}")
                sale_runs.append(one)
            result["sale_livesell_runs"] = sale_runs
            result["sale_livesell"] = sale_medians(sale_runs)
            say("flash sale: reserve.lua through redis-py")
            result["sale_reference"] = []
            for batch in (0, 16):
                runs = [await bench_sale_reference(args.sale_buyers, args.sale_units, batch)
                        for _ in range(args.runs)]
                runs.sort(key=lambda r: float(r["calls_per_s"]))
                median = dict(runs[len(runs) // 2])  # the median run by calls/s
                median["runs_calls_per_s"] = [r["calls_per_s"] for r in runs]
                result["sale_reference"].append(median)
            say("flash sale: reserve.lua by EVALSHA from redis-benchmark")
            bench_rows = await bench_sale_redis_benchmark(args.runs)
            if bench_rows is None:
                say("  skipped: redis-benchmark is not on PATH (install redis-tools: "
                    "apt-get install redis-tools)")
                result["sale_redis_benchmark"] = {
                    "skipped": "redis-benchmark is not on PATH; install redis-tools "
                               "(apt-get install redis-tools) for this reference"}
            else:
                buys = result["sale_livesell"]["buys_per_s"]
                for row in bench_rows:
                    row["livesell_buys_ratio"] = round(buys / row["calls_per_s"], 3) \
                        if buys and row["calls_per_s"] else None
                result["sale_redis_benchmark"] = bench_rows
        return result

    result = asyncio.run(main())
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "bench.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    for m in result.get("fanout", []):
        ratios = ", ".join(f"{k} {v}" for k, v in m.items() if "ratio" in k)
        say(f"{m['hub']:10} {m['viewers']:5} viewers {m['rate']:3}/s: "
            f"{m['cpu_us_per_delivery']} µs/delivery, p50 {m['p50_ms']} p99 {m['p99_ms']} ms,"
            f" reach {m['reach']}, generator {m['generator_util']}"
            + (f" ({ratios})" if ratios else ""))
    if "sale_livesell" in result:
        sl = result["sale_livesell"]
        say(f"sale livesell (median of {sl['runs']} runs): all reserved after "
            f"{sl['time_to_all_reserved_s']}s, buy ms p50 {sl['buy_p50_ms']} p99 "
            f"{sl['buy_p99_ms']}, {sl['buys_per_s']} buys/s (last reply after "
            f"{sl['last_buy_reply_s']}s), checks ok in every run: {sl['checks_ok']}; "
            f"CPU per buy from the opening to the last reply: server "
            f"{sl['server_cpu_us_per_buy']} µs, redis {sl['redis_cpu_us_per_buy']} µs")
        for ref in result["sale_reference"]:
            say(f"sale reference ({ref['mode']}): {ref['calls_per_s']} calls/s, all reserved "
                f"after {ref['time_to_all_reserved_s']}s, call ms {ref['call_ms']}; CPU per "
                f"call: client {ref['client_cpu_us_per_call']} µs, redis "
                f"{ref['redis_cpu_us_per_call']} µs")
        rb = result["sale_redis_benchmark"]
        if isinstance(rb, dict):
            say(f"sale redis-benchmark: skipped: {rb['skipped']}")
        else:
            for row in rb:
                say(f"sale redis-benchmark ({row['mode']}): {row['calls_per_s']} calls/s "
                    f"(runs {row['runs_calls_per_s']}; held grew by "
                    f"{row['min_succeeded_share']:.2%}+ of the calls; redis CPU "
                    f"{row['redis_cpu_us_per_call']} µs per call); livesell buys/s ÷ "
                    f"this = {row['livesell_buys_ratio']} (target >= 0.5)")
    say(f"bench: {out_dir / 'bench.json'}")
    return 0
