"""The `livesell-loadtest` command.

    livesell-loadtest run SCENARIO [--url URL | --spawn] [--viewers N] [--duration S]
                      [--speed F] [--report-dir DIR] [--seed N] [--host-key KEY]
                      [--chaos SPEC] [--servers N [--redis-cluster URL]]
    livesell-loadtest list
    livesell-loadtest bench [...]

Exit codes: 0 every correctness check held; 1 a check failed (each failure is
printed with what broke) or the run could not complete; 2 bad input (an
unknown scenario key, a wrong type, an out-of-range value, a server that
cannot be reached), naming the key or the address; 130 interrupted by Ctrl-C
(the report of what ran is still written).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import sys
import time
from pathlib import Path
from typing import Any

from loadtest import __version__
from loadtest.scenario import (
    BUNDLED_TRACES,
    SCENARIO_DIR,
    Scenario,
    ScenarioError,
    TraceSpec,
    ViewersSpec,
    bundled_names,
    load_scenario_file,
    resolve,
    with_overrides,
)

EXIT_BAD_INPUT = 2


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive integer")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative")
    return value


def _server_processes(text: str) -> int:
    value = _positive_int(text)
    if value > 64:
        raise argparse.ArgumentTypeError(f"{value} is more than 64")
    return value


def _redis_cluster(text: str) -> str:
    """A redis:// address of one node of a Redis Cluster on this machine (a load
    test sends nothing to another machine)."""
    import ipaddress
    from urllib.parse import urlsplit

    if len(text) > 200:
        raise argparse.ArgumentTypeError("longer than 200 characters")
    parts = urlsplit(text)
    if parts.scheme != "redis" or not parts.hostname:
        raise argparse.ArgumentTypeError(f"{text!r}: expected redis://HOST:PORT")
    try:
        port = parts.port
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: bad port") from None
    if port is None:
        raise argparse.ArgumentTypeError(f"{text!r}: expected redis://HOST:PORT")
    try:
        loopback = ipaddress.ip_address(parts.hostname).is_loopback
    except ValueError:
        loopback = parts.hostname == "localhost"
    if not loopback:
        raise argparse.ArgumentTypeError(f"{parts.hostname}: not a loopback address (a load "
                                         "test stays on this machine)")
    return text


def _servers(text: str) -> int:
    from loadtest.cluster import MAX_SERVERS

    value = _positive_int(text)
    if value > MAX_SERVERS:
        raise argparse.ArgumentTypeError(f"{value} is more than {MAX_SERVERS} (one loopback "
                                         "address each: 127.0.0.1 to 127.0.0."
                                         f"{MAX_SERVERS})")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text} is not a positive number")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="livesell-loadtest",
        description="Load tests for livesell that end with a checked correctness report.")
    parser.add_argument("--version", action="version",
                        version=f"livesell-loadtest {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a scenario or replay a recorded trace",
                         description="Run a scenario (TOML) or replay a trace (JSONL). Bare "
                         "names are bundled: " + ", ".join(bundled_names()) + ".")
    run.add_argument("scenario", metavar="SCENARIO",
                     help="a scenario file, a trace file, or a bundled name")
    target = run.add_mutually_exclusive_group()
    target.add_argument("--url", help="a running server on this machine (http://127.0.0.1:PORT)"
                        "; the tool creates its own room there unless --room is given")
    target.add_argument("--spawn", action="store_true",
                        help="start a local server in a temporary directory (the default)")
    run.add_argument("--viewers", type=_positive_int, help="viewers (viewers.count)")
    run.add_argument("--duration", type=_positive_float,
                     help="show length in seconds (run.duration_s)")
    run.add_argument("--speed", type=_positive_float, help="trace replay speed factor")
    run.add_argument("--seed", type=_non_negative_int, help="seed (run.seed)")
    run.add_argument("--processes", type=_non_negative_int,
                     help="generator processes (viewers.processes; 0: cpu count - 1)")
    run.add_argument("--server-processes", type=_server_processes,
                     help="with a spawned server: its processes (serve --workers; default 1, "
                          "or half the cores beyond Redis's on machines of 4 or more cores)")
    run.add_argument("--servers", type=_servers,
                     help="spawn N servers (1-8) on 127.0.0.1..127.0.0.N with one private "
                          "Redis and PostgreSQL, behind HAProxy, and run through it")
    run.add_argument("--redis-cluster", type=_redis_cluster, metavar="URL",
                     help="with --servers: the servers share this Redis Cluster (Redis 7 or "
                          "newer; a redis://127.0.0.1:PORT of one of its nodes) instead of "
                          "a private redis-server")
    run.add_argument("--report-dir", type=Path,
                     help="where report.json and report.html go "
                          "(default ./loadtest-reports/NAME-TIME)")
    run.add_argument("--room", help="with --url: use this existing room instead of creating "
                     "one (needs its host key)")
    run.add_argument("--host-key", default=os.environ.get("LIVESELL_HOST_KEY"),
                     help="host key of --room (default: $LIVESELL_HOST_KEY)")
    run.add_argument("--admin-key", default=os.environ.get("LIVESELL_ADMIN_KEY"),
                     help="admin key, if the server requires one to create rooms "
                     "(default: $LIVESELL_ADMIN_KEY)")
    run.add_argument("--chaos", metavar="SPEC",
                     help="faults injected into the spawned server, T seconds after the show "
                     "starts: a comma-separated list of kill-redis@T, flush-redis@T, "
                     "stall-store@T:DURATION, kill-worker@T, sigterm@T; with --servers: "
                     "kill-server@T")
    run.add_argument("--quiet", action="store_true", help="no live progress display")

    sub.add_parser("list", help="list the bundled scenarios and traces")

    from loadtest.bench import add_arguments

    add_arguments(sub.add_parser("bench", help="livesell beside reference hubs: fan-out CPU "
                                 "per delivery and latency, and a flash-sale reserve"))
    return parser


def load(args: argparse.Namespace) -> tuple[Scenario, Any]:
    """The scenario to run and, for a trace, the parsed trace."""
    from loadtest.trace import load_trace

    path = resolve(args.scenario)
    trace = None
    if path.suffix == ".jsonl":
        trace = load_trace(path)
        scenario = Scenario(name=path.stem, description=f"replay of {path.name}",
                            viewers=ViewersSpec(count=max(1, len(trace.viewers))),
                            trace=TraceSpec(path=str(path)))
    else:
        scenario = load_scenario_file(path)
    scenario = with_overrides(scenario, viewers=args.viewers, duration=args.duration,
                              speed=args.speed, seed=args.seed, processes=args.processes)
    return scenario, trace


def cmd_list() -> int:
    for path in sorted(SCENARIO_DIR.glob("*.toml")):
        try:
            s = load_scenario_file(path)
            print(f"{path.stem:18} {s.description}")
        except ScenarioError as exc:
            print(f"{path.stem:18} (invalid: {exc})")
    for name, path in BUNDLED_TRACES.items():
        print(f"{name:18} recorded trace {path.name}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from loadtest.chaos_spec import ChaosError, parse_chaos
    from loadtest.context import RunOptions
    from loadtest.engine import prepare
    from loadtest.host import TargetError
    from loadtest.report import exit_code, write_report
    from loadtest.spawn import SpawnError
    from loadtest.trace import TraceError

    try:
        scenario, trace = load(args)
        if args.room and not args.url:
            raise ScenarioError("--room: only with --url")
        if args.server_processes and args.url:
            raise ScenarioError("--server-processes: only with a spawned server, not --url")
        if args.servers and args.url:
            raise ScenarioError("--servers: only with spawned servers, not --url")
        if args.servers and args.server_processes:
            raise ScenarioError("--servers: each server behind the balancer is one process; "
                                "not with --server-processes")
        chaos = parse_chaos(args.chaos) if args.chaos is not None else []
        if args.redis_cluster and not args.servers:
            raise ScenarioError("--redis-cluster: only with --servers")
        one_redis = sorted({f.kind for f in chaos} & {"kill-redis", "flush-redis"})
        if args.redis_cluster and one_redis:
            raise ScenarioError(f"--chaos {one_redis[0]}: a fault of the private redis-server, "
                                "not of a given Redis Cluster")
        engine = prepare(RunOptions(scenario=scenario, url=args.url, room=args.room,
                                    host_key=args.host_key, admin_key=args.admin_key,
                                    progress=not args.quiet, trace=trace,
                                    server_processes=args.server_processes,
                                    servers=args.servers, redis_cluster=args.redis_cluster,
                                    chaos=chaos, chaos_spec=args.chaos or ""))
    except (ScenarioError, TraceError, ChaosError) as exc:
        print(f"livesell-loadtest: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    report_dir = args.report_dir or Path("loadtest-reports") / (
        f"{scenario.name}-{time.strftime('%Y%m%d-%H%M%S')}")
    try:
        result = asyncio.run(engine.run())
    except (TargetError, SpawnError) as exc:
        print(f"livesell-loadtest: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("livesell-loadtest: aborted", file=sys.stderr)
        return 130
    json_path, html_path = write_report(result, report_dir)
    print_summary(result)
    print(f"report: {json_path}\n        {html_path}")
    return exit_code(result)


def print_summary(result: Any) -> None:
    m = result.measurements
    fan = m.get("fanout", {})
    sel = m.get("selling", {})
    srv = m.get("server", {})
    vw = m.get("viewers", {})
    lat = fan.get("latency_ms", {})
    joined = f"{vw.get('joined')}/{vw.get('requested')} joined"
    if vw.get("time_to_join_all_s") is not None:
        joined += f" in {vw['time_to_join_all_s']}s ({vw.get('joins_per_s')}/s)"
    print(f"viewers: {joined}; reconnects {vw.get('reconnects')}")
    print(f"fan-out: {fan.get('deliveries')} deliveries, {fan.get('deliveries_per_s')}/s in "
          f"the show; latency ms p50 {lat.get('p50')} p95 {lat.get('p95')} p99 "
          f"{lat.get('p99')} max {lat.get('max')}; reach {fan.get('reach')}")
    if sel.get("holds_given") or sel.get("buy_ms", {}).get("count"):
        print(f"selling: {sel.get('units_sold')} unit(s) sold in {sel.get('orders_stored')} "
              f"order(s); buy ms p50 {sel['buy_ms'].get('p50')} p99 {sel['buy_ms'].get('p99')}"
              f"; checkout ms p50 {sel['checkout_ms'].get('p50')} p99 "
              f"{sel['checkout_ms'].get('p99')}"
              + (f"; sold out after {sel['time_to_sell_out_s']}s"
                 if sel.get("time_to_sell_out_s") is not None else "; did not sell out"))
    ref = m.get("referrals")
    if ref:
        totals = ref.get("totals") or {}
        program = ref.get("program") or {}
        print(f"referrals: {totals.get('inviters')} inviter(s), {totals.get('joins')} "
              f"invitee(s) joined, {totals.get('first_orders')} first order(s), "
              f"{totals.get('rewards_paid')} reward(s) paid (at most "
              f"{program.get('max_rewards_per_inviter')} per inviter; "
              f"{ref.get('inviters_at_the_cap')} inviter(s) at it); rewards "
              f"{ref.get('rewards')}; answers {ref.get('answers')}")
    if srv.get("measured"):
        print(f"server: {srv.get('cpu_s')} CPU s, {srv.get('cpu_us_per_delivery')} µs per "
              f"delivery, peak RSS {srv.get('rss_peak_mb')} MB")
    if m.get("chaos"):
        from loadtest.chaos_report import describe

        for entry in m["chaos"]["faults"]:
            d = describe(entry)
            print(f"chaos {d['fault']} {d['when']}: {d['what']}\n"
                  f"  failed closed: {d['failed_closed']}\n  recovery: {d['recovery']}")
    for w in result.warnings:
        print(f"warning: {w}")
    for c in result.checks:
        mark = "ok  " if c.ok else "FAIL"
        line = f"[{mark}] {c.name}"
        if not c.ok:
            line += f": {c.detail}"
        print(line)
    if result.interrupted:
        print("interrupted: the report covers what ran")
    else:
        print("all checks passed" if result.ok else "some checks FAILED")


# What the load tester needs beyond the server (pyproject.toml's `loadtest` extra).
EXTRA_MODULES = ("rich", "matplotlib")


def missing_extras() -> list[str]:
    return [m for m in EXTRA_MODULES if importlib.util.find_spec(m) is None]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    missing = missing_extras()
    if missing and args.command != "list":
        print(f"livesell-loadtest: {', '.join(missing)} not installed; the load tester "
              "needs the loadtest extra: pip install -e \".[loadtest]\"", file=sys.stderr)
        return 2
    if args.command == "list":
        return cmd_list()
    if args.command == "bench":
        from loadtest.bench import run_bench

        return run_bench(args)
    return cmd_run(args)


if __name__ == "__main__":
    sys.exit(main())
