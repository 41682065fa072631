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
the median of several runs, with their min and max beside it (`spread`);
livesell's figures are also given as ratios to the references and to the
floor. livesell's CPU excludes its redis-server (shown apart); its
events are emitted through the host HTTP API, the references' by a timer (or,
for the floor with `--trigger request`, by one request from the bench per
event, paced as livesell's announcements are). `--floor-state BYTES` gives
each of the floor's viewers that much memory as it joins, as a server's
session per viewer takes, to show what spreading the transports through memory
costs the flush.

Flash sale: the `flash_sale` engine with N buyers pressing buy at the opening
instant for U units (limit 1, checkout after), against a reference that runs
the same `server/lua/reserve.lua` directly through redis-py asyncio on a
private redis-server, one call per await from N concurrent buyers, and again
pipelined in batches; and against `redis-benchmark` (Debian's redis-tools)
calling the same script with EVALSHA on such a redis-server, 50 connections,
unpipelined and with -P 16 (when it is missing, the bench installs
`redis-tools` with apt-get if it runs as root, or skips that reference).
livesell's sale runs `--runs` times (medians, with min and max in `spread`);
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
    REDIS_CPU_TOLERANCE,
    bench_sale_livesell,
    bench_sale_redis_benchmark,
    bench_sale_reference,
    ensure_redis_benchmark,
    median_run,
    paired_ratios,
    sale_medians,
)
from loadtest.floorhub import state_bytes

HUBS = ("livesell", "websockets", "node", "floor")
NO_REDIS_BENCHMARK = ("redis-benchmark is not on PATH; install redis-tools "
                      "(apt-get install redis-tools) for this reference")


def spread_text(cell: dict[str, Any], key: str) -> str:
    """A cell's figure as `median [min..max]` of its runs (None where no run had it)."""
    s = cell.get("spread", {}).get(key)
    if not s:
        return "None"
    return f"{s['median']:g} [{s['min']:g}..{s['max']:g}]"


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
    parser.add_argument("--trigger", choices=("timer", "request"), default="timer",
                        help="how the floor hub paces its events: by a timer of its "
                        "own (default), or one request from the bench per event, as "
                        "livesell's events are posted (the other references: a timer)")
    parser.add_argument("--floor-state", type=state_bytes, default=0, metavar="BYTES",
                        help="memory the floor hub gives each viewer as it joins, as a "
                        "server's session per viewer takes (default 0: the bare floor; "
                        "docs/benchmarks.md, issue 13, fifth part)")
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
            # Side by side: each livesell run is followed by a run of each reference,
            # so a stretch of a noisy machine weighs on both sides of a ratio.
            sale_runs: list[dict[str, Any]] = []
            ref_runs: dict[int, list[dict[str, Any]]] = {0: [], 16: []}
            for run in range(args.runs):
                say(f"flash sale: livesell, {args.sale_units} units to {args.sale_buyers} "
                    f"buyers, run {run + 1} of {args.runs}")
                one = await bench_sale_livesell(args.sale_buyers, args.sale_units)
                say(f"  all reserved after {one['time_to_all_reserved_s']}s, buy ms p50 "
                    f"{one['buy_ms']['p50']} p99 {one['buy_ms']['p99']}, "
                    f"{one['buys_per_s']} buys/s, server CPU {one['server_cpu_us_per_buy']}"
                    f" µs per buy (CPU read over {one.get('cpu_window_s')} s for a "
                    f"{one.get('burst_s')} s burst), steal {one.get('steal_share')}, checks ok: "
                    f"{one['checks_ok']}")
                for failed in one["failed_checks"]:
                    say(f"  failed: {failed['name']}: {failed['detail'][:300]}")
                for warning in one["warnings"]:
                    say(f"  warning: {warning}")
                if one["join_failure_reasons"]:
                    say(f"  could not join: {one['join_failure_reasons']}")
                sale_runs.append(one)
                for batch in (0, 16):
                    say(f"flash sale: reserve.lua through redis-py ("
                        f"{'pipelines of 16' if batch else 'one call per await'}), "
                        f"run {run + 1} of {args.runs}")
                    ref_runs[batch].append(await bench_sale_reference(
                        args.sale_buyers, args.sale_units, batch))
            result["sale_livesell_runs"] = sale_runs
            result["sale_livesell"] = sale_medians(sale_runs)
            result["sale_reference"] = [median_run(runs, (
                "calls_per_s", "client_cpu_us_per_call", "redis_cpu_us_per_call",
                "time_to_all_reserved_s", "steal_share")) for runs in ref_runs.values()]
            result["sale_paired_ratios"] = paired_ratios(sale_runs, ref_runs[0])
            say("flash sale: reserve.lua by EVALSHA from redis-benchmark")
            have = await asyncio.to_thread(ensure_redis_benchmark, say)
            bench_rows = await bench_sale_redis_benchmark(args.runs) if have else None
            if bench_rows is None:
                say(f"  skipped: {NO_REDIS_BENCHMARK}")
                result["sale_redis_benchmark"] = {"skipped": NO_REDIS_BENCHMARK}
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
    if result.get("fanout"):
        say("fan-out cells: median [min..max] of the runs; reach of all runs "
            "[lowest..highest run]")
    for m in result.get("fanout", []):
        ratios = ", ".join(f"{k} {v}" for k, v in m.items() if "ratio" in k)
        reach = m["spread"]["reach"]
        say(f"{m['hub']:10} {m['viewers']:5} viewers {m['rate']:3}/s: "
            f"{spread_text(m, 'cpu_us_per_delivery')} µs/delivery, p50 "
            f"{spread_text(m, 'p50_ms')} p99 {spread_text(m, 'p99_ms')} ms, reach "
            f"{m['reach']}" + (f" [{reach['min']:g}..{reach['max']:g}]" if reach else "")
            + f", generator {m['generator_util']}" + (f" ({ratios})" if ratios else ""))
    if "sale_livesell" in result:
        sl = result["sale_livesell"]
        say(f"sale livesell (median [min..max] of {sl['runs']} runs): all reserved after "
            f"{spread_text(sl, 'time_to_all_reserved_s')}s, buy ms p50 "
            f"{spread_text(sl, 'buy_p50_ms')} p99 {spread_text(sl, 'buy_p99_ms')}, "
            f"{spread_text(sl, 'buys_per_s')} buys/s (last reply after "
            f"{spread_text(sl, 'last_buy_reply_s')}s), checks ok in every run: "
            f"{sl['checks_ok']}; CPU per buy from the opening to the last reply: server "
            f"{spread_text(sl, 'server_cpu_us_per_buy')} µs, redis "
            f"{spread_text(sl, 'redis_cpu_us_per_buy')} µs; machine steal "
            f"{spread_text(sl, 'steal_share')}")
        for i in sl["suspect_runs"]:
            say(f"  WARNING: sale run {i + 1}'s Redis CPU per buy is more than "
                f"{REDIS_CPU_TOLERANCE:.0%} from the runs' median: Redis does the same work "
                f"in every run, so that run's window did not hold the same burst")
        pr = result["sale_paired_ratios"]
        say(f"sale, each livesell run ÷ the one-call-per-await reference run after it "
            f"(median [min..max]): server CPU per buy ÷ client CPU per call "
            f"{spread_text(pr, 'cpu_ratio')} (target <= 0.3), buys/s ÷ calls/s "
            f"{spread_text(pr, 'throughput_ratio')} (target >= 2)")
        for ref in result["sale_reference"]:
            say(f"sale reference ({ref['mode']}; median run [min..max] of the runs): "
                f"{spread_text(ref, 'calls_per_s')} calls/s, all reserved after "
                f"{ref['time_to_all_reserved_s']}s, call ms {ref['call_ms']}; CPU per "
                f"call: client {spread_text(ref, 'client_cpu_us_per_call')} µs, redis "
                f"{spread_text(ref, 'redis_cpu_us_per_call')} µs")
        rb = result["sale_redis_benchmark"]
        if isinstance(rb, dict):
            say(f"sale redis-benchmark: skipped: {rb['skipped']}")
        else:
            for row in rb:
                say(f"sale redis-benchmark ({row['mode']}): {spread_text(row, 'calls_per_s')}"
                    f" calls/s (held grew by {row['min_succeeded_share']:.2%}+ of the calls; "
                    f"redis CPU {spread_text(row, 'redis_cpu_us_per_call')} µs per call, p99 "
                    f"{spread_text(row, 'p99_ms')} ms); livesell buys/s ÷ this = "
                    f"{row['livesell_buys_ratio']} (target >= 0.5)")
    say(f"bench: {out_dir / 'bench.json'}")
    return 0
