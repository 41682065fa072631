"""`livesell-loadtest bench`, flash-sale part: the `flash_sale` engine with N
buyers pressing buy at the opening instant for U units (limit 1, checkout
after), against a reference that runs the same reserve script (lua/reserve.lua
with its libraries, as server/state/ledger.py `script_source` gives it) directly
through redis-py asyncio on a private redis-server, one call per
await from N concurrent buyers, and again pipelined in batches; and against
`redis-benchmark` (Debian's redis-tools) calling the same script with EVALSHA
on such a redis-server, 50 connections, unpipelined and with -P 16 (Debian's
redis-tools installed first when it is missing and this process may).
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import os
import secrets
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from loadtest.stats import cpu_seconds as _cpu
from loadtest.stats import host_jiffies, min_median_max, steal_between, summary

CHECKOUT_AFTER_S = 3.0  # s from a hold to its checkout, at least


async def bench_sale_livesell(buyers: int, units: int,
                              server_processes: int | None = None) -> dict[str, Any]:
    from loadtest.context import RunOptions
    from loadtest.engine import prepare
    from loadtest.scenario import load_scenario_file, resolve

    base = load_scenario_file(resolve("flash_sale"))
    s = replace(
        base, name="bench_flash_sale",
        viewers=replace(base.viewers, count=buyers, join_rate_per_s=1500.0,
                        latency_sample=200),
        run=replace(base.run, duration_s=12.0, audit_interval_s=0.05, join_timeout_s=180.0,
                    settle_timeout_s=60.0),
        host=replace(base.host, events_per_s=0.0),
        sale=replace(base.sale, units=units, limit_per_buyer=1, quantity=1, countdown_s=4.0,
                     buyer_share=1.0, buy_window_s=0.0, greedy_share=0.0,
                     checkout_share=1.0, sold_out_retries=0, think_s=0.2,
                     # The checkouts (1,000 order writes) come after the buy burst: inside
                     # it, the share of them before the last buy reply varied with that
                     # reply's time and counted as buy CPU (docs/benchmarks.md, 2026-12-04).
                     # A holder waits at most a third of its hold (think_time): five times leaves
                     # room for the 3 s and the exponential wait on top.
                     think_min_s=CHECKOUT_AFTER_S, hold_seconds=CHECKOUT_AFTER_S * 5,
                     # The bench measures the buy burst alone, as before waitlists were
                     # in the scenario: nobody joins one (joins would land in the burst).
                     waitlist_share=0.0),
        coupon=replace(base.coupon, enabled=False), lottery=replace(base.lottery,
                                                                    enabled=False))
    result = await prepare(RunOptions(scenario=s, progress=False,
                                      server_processes=server_processes)).run()
    sel = result.measurements["selling"]
    buy_ms = sel["buy_ms"]
    # The last buy reply after the opening, as the generators saw it (burst_s); the
    # slowest reply's latency only where that is missing (no CPU samples). Every buyer
    # presses at the opening instant by its own clock, but a busy generator sends
    # later, and the latency alone then made the interval short and buys/s high.
    last_reply_s = sel.get("burst_s") or (buy_ms["max"] / 1000.0 if buy_ms.get("max")
                                          else None)
    return {"buyers": buyers, "units": units,
            "last_buy_reply_s": round(last_reply_s, 3) if last_reply_s else None,
            "buys_per_s": round(buyers / last_reply_s, 1) if last_reply_s else None,
            "joined": result.measurements["viewers"]["joined"],
            "join_failure_reasons": result.measurements["viewers"]["join_failure_reasons"],
            "buy_ms": sel["buy_ms"], "units_sold": sel["units_sold"],
            "server_cpu_us_per_buy": sel.get("server_cpu_us_per_buy"),
            "redis_cpu_us_per_buy": sel.get("redis_cpu_us_per_buy"),
            "burst_s": sel.get("burst_s"), "cpu_window_s": sel.get("cpu_window_s"),
            "steal_share": sel.get("steal_share"),
            "time_to_all_reserved_s": sel.get("time_to_all_reserved_s"),
            "time_to_sell_out_s": sel.get("time_to_sell_out_s"),
            "outcomes": result.measurements["outcomes"].get("buy", {}),
            "checks_ok": result.ok,
            "failed_checks": [c.to_dict() for c in result.checks if not c.ok],
            "server": result.measurements["server"],
            "warnings": result.warnings}


async def bench_sale_reference(buyers: int, units: int, pipelined: int) -> dict[str, Any]:
    """The reserve script straight through redis-py: `pipelined` 0 means one call
    per await from `buyers` concurrent coroutines over a pool of 50 connections."""
    from redis.asyncio import BlockingConnectionPool, Redis

    from server.core.keys import RoomKeys
    from server.state.embedded_redis import RedisServer
    from server.state.ledger import script_source
    from server.state.scripts import reserve_call

    script_text = await asyncio.to_thread(script_source, "reserve")
    with tempfile.TemporaryDirectory(prefix="livesell-bench-redis-") as tmp:
        redis_server = RedisServer(Path(tmp), appendonly=False)
        url = await asyncio.to_thread(redis_server.start)
        pool = BlockingConnectionPool.from_url(url, max_connections=50,
                                               decode_responses=True)
        r = Redis(connection_pool=pool)
        try:
            keys = RoomKeys("r_bench")
            now_ms = int(time.time() * 1000)
            await r.set(keys.product_sale("p"), "s1")
            await r.set(keys.epoch, "bench")  # the room is whole (not being rebuilt)
            await r.hset(keys.sale("s1"), mapping={
                "starts_at": now_ms - 1000, "ends_at": now_ms + 600_000, "state": "active",
                "units": units, "held": 0, "sold": 0, "limit": 1, "price": 100,
                "currency": "USD"})
            await r.hset(keys.stock("p"), mapping={"total": units, "left": units, "held": 0,
                                                   "sold": 0})
            reserve = r.register_script(script_text)
            latencies: list[float] = []
            reserved_at: list[float] = []
            redis_pid = redis_server.pid
            cpu0, redis_cpu0 = time.process_time(), _cpu(redis_pid)
            jiffies0 = host_jiffies()
            started = time.perf_counter()

            def call_args(i: int) -> tuple[list[str], list[Any]]:
                # The production call's keys and arguments (server/state/scripts.py).
                return reserve_call("r_bench", sale_id="s1", product_id="p", buyer=f"v{i}",
                                    request_id="b1", hold_id=f"h{i}", quantity=1,
                                    hold_ms=180_000, answer_ttl_s=86400, verified=False,
                                    client="", max_open_holds=5)

            async def buyer(i: int) -> None:
                k, a = call_args(i)
                t = time.perf_counter()
                res = await reserve(keys=k, args=a)
                now = time.perf_counter()
                latencies.append((now - t) * 1000)
                if res[0] == "ok":
                    reserved_at.append(now - started)

            async def batch(lo: int, hi: int) -> None:
                t = time.perf_counter()
                async with r.pipeline(transaction=False) as pipe:
                    for i in range(lo, hi):
                        k, a = call_args(i)
                        await reserve(keys=k, args=a, client=pipe)
                    results = await pipe.execute()
                now = time.perf_counter()
                latencies.extend([(now - t) * 1000] * (hi - lo))
                reserved_at.extend(now - started for res in results if res[0] == "ok")

            if pipelined:
                await reserve(keys=call_args(-1)[0], args=call_args(-1)[1])  # load the script
                # Undo that warm-up reservation so the batches start from full stock.
                await r.hset(keys.stock("p"), mapping={"left": units, "held": 0})
                await r.hset(keys.sale("s1"), "held", 0)
                started = time.perf_counter()
                await asyncio.gather(*(batch(lo, min(buyers, lo + pipelined))
                                       for lo in range(0, buyers, pipelined)))
            else:
                await asyncio.gather(*(buyer(i) for i in range(buyers)))
            total = time.perf_counter() - started
            client_cpu, redis_cpu = time.process_time() - cpu0, _cpu(redis_pid) - redis_cpu0
            jiffies1 = host_jiffies()
            stock = await r.hgetall(keys.stock("p"))
        finally:
            await r.aclose()
            await pool.aclose()
            await asyncio.to_thread(redis_server.stop)
    return {"buyers": buyers, "units": units,
            "mode": f"pipelines of {pipelined}" if pipelined else "one call per await",
            "calls_per_s": round(buyers / total, 1), "total_s": round(total, 3),
            "time_to_all_reserved_s": round(max(reserved_at), 3) if reserved_at else None,
            "reserved": len(reserved_at), "call_ms": summary(latencies),
            # This process is the client: its CPU per call is redis-py's (with
            # asyncio's), set beside livesell's server CPU per buy.
            "client_cpu_us_per_call": round(client_cpu * 1e6 / buyers, 1),
            "redis_cpu_us_per_call": round(redis_cpu * 1e6 / buyers, 1),
            "steal_share": steal_between(jiffies0, jiffies1),
            "stock_after": stock}


REDIS_BENCHMARK_CALLS = 200_000
REDIS_BENCHMARK_KEYSPACE = 2_000_000_000  # -r: distinct request keys, buyers and hold ids


REDIS_BENCHMARK_USER = "benchmark"


def _redis_benchmark_argv(port: int, sha: str, pipeline: int,
                          password: str | None = None) -> list[str]:
    """EVALSHA of reserve.lua with the production call's keys and args
    (server/state/scripts.py reserve_call); __rand_int__ (each one drawn apart by
    redis-benchmark) makes the request key, buyer and hold id differ per call.
    With `password`, it logs in as REDIS_BENCHMARK_USER (see _add_benchmark_user)."""
    from server.state.scripts import reserve_call

    rnd = "__rand_int__"
    keys, args = reserve_call("r_bench", sale_id="s1", product_id="p", buyer=f"v{rnd}",
                              request_id="b1", hold_id=f"h{rnd}", quantity=1,
                              hold_ms=180_000, answer_ttl_s=86400, verified=False,
                              client="", max_open_holds=10**9)
    auth = ["--user", REDIS_BENCHMARK_USER, "-a", password] if password else []
    return ["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), *auth, "-c", "50",
            "-n", str(REDIS_BENCHMARK_CALLS), "-r", str(REDIS_BENCHMARK_KEYSPACE),
            "-P", str(pipeline), "--csv",
            "EVALSHA", sha, str(len(keys)), *keys, *(str(a) for a in args)]


def _parse_redis_benchmark_csv(text: str) -> dict[str, float]:
    rows = list(csv.reader(line for line in text.splitlines() if line.strip()))
    if len(rows) < 2:
        raise RuntimeError(f"redis-benchmark printed no results: {text[-300:]!r}")
    header, values = rows[0], rows[-1]
    out: dict[str, float] = {}
    for name, value in zip(header, values, strict=False):
        with contextlib.suppress(ValueError):
            out[name] = float(value)
    if "rps" not in out:
        raise RuntimeError(f"redis-benchmark output without rps: {text[-300:]!r}")
    return out


async def _add_benchmark_user(r: Any) -> str:
    """A Redis user for redis-benchmark, whose password can only be given on its
    command line (any local user can read that in /proc): the embedded server's own
    password never goes there. This one is fresh and lets in only data commands
    and EVALSHA of loaded scripts, on a private server that lives for this part of
    the bench: no CONFIG, MODULE, DEBUG, ACL, EVAL or SCRIPT (the @dangerous
    category and the two by name)."""
    password = secrets.token_urlsafe(24)
    await r.acl_setuser(REDIS_BENCHMARK_USER, enabled=True, passwords=[f"+{password}"],
                        keys=["*"], categories=["+@all", "-@dangerous"],
                        commands=["-eval", "-script"])
    return password


async def bench_sale_redis_benchmark(runs: int) -> list[dict[str, Any]] | None:
    """reserve.lua by EVALSHA from `redis-benchmark` on a private redis-server, with
    stock, sale units and limit too large to run out: calls per second on the success
    path, median of `runs` runs unpipelined and with -P 16. None without redis-benchmark."""
    if shutil.which("redis-benchmark") is None:
        return None
    from redis.asyncio import Redis

    from server.core.keys import RoomKeys
    from server.state.embedded_redis import RedisServer
    from server.state.ledger import script_source

    script_text = await asyncio.to_thread(script_source, "reserve")
    keys = RoomKeys("r_bench")
    big = 10**12
    out = []
    with tempfile.TemporaryDirectory(prefix="livesell-bench-redis-") as tmp:
        redis_server = RedisServer(Path(tmp), appendonly=False)
        url = await asyncio.to_thread(redis_server.start)
        r = Redis.from_url(url, decode_responses=True)
        try:
            # The embedded server asks for a password (server/state/embedded_redis.py);
            # without one redis-benchmark got NOAUTH on every call.
            password = await _add_benchmark_user(r)
            for pipeline in (1, 16):
                runs_out: list[dict[str, Any]] = []
                for _ in range(runs):
                    await r.flushall()
                    now_ms = int(time.time() * 1000)
                    await r.set(keys.product_sale("p"), "s1")
                    await r.set(keys.epoch, "bench")  # the room is whole
                    await r.hset(keys.sale("s1"), mapping={
                        "starts_at": now_ms - 60_000, "ends_at": now_ms + 3_600_000,
                        "state": "active", "units": big, "held": 0, "sold": 0, "limit": big,
                        "price": 100, "currency": "USD"})
                    await r.hset(keys.stock("p"), mapping={"total": big, "left": big,
                                                           "held": 0, "sold": 0})
                    sha = str(await r.script_load(script_text))
                    port = int(url.rsplit(":", 1)[1].split("/")[0])
                    redis_pid = redis_server.pid
                    redis_cpu0 = _cpu(redis_pid)
                    proc = await asyncio.to_thread(
                        subprocess.run, _redis_benchmark_argv(port, sha, pipeline, password),
                        capture_output=True, text=True, timeout=600)
                    redis_cpu = _cpu(redis_pid) - redis_cpu0
                    if proc.returncode != 0:
                        raise RuntimeError(f"redis-benchmark failed: {proc.stderr[-300:]}")
                    figures = _parse_redis_benchmark_csv(proc.stdout)
                    held = int(await r.hget(keys.stock("p"), "held") or 0)
                    runs_out.append({
                        "calls_per_s": round(figures["rps"], 1),
                        "p50_ms": figures.get("p50_latency_ms"),
                        "p99_ms": figures.get("p99_latency_ms"),
                        "calls": REDIS_BENCHMARK_CALLS, "held_after": held,
                        "redis_cpu_us_per_call": round(
                            redis_cpu * 1e6 / REDIS_BENCHMARK_CALLS, 1),
                        # A call that is not a success (a repeated random request key
                        # answers 'dup') leaves `held` short of the number of calls.
                        "succeeded_share": round(held / REDIS_BENCHMARK_CALLS, 5)})
                median = median_run(runs_out, ("calls_per_s", "redis_cpu_us_per_call",
                                               "p99_ms"))
                median["mode"] = "50 connections" + (f", -P {pipeline}" if pipeline > 1
                                                      else "")
                median["pipeline"] = pipeline
                median["min_succeeded_share"] = min(x["succeeded_share"] for x in runs_out)
                out.append(median)
        finally:
            await r.aclose()
            await asyncio.to_thread(redis_server.stop)
    return out


# Redis does the same work in every sale run (one reserve call per buyer): a run
# whose Redis CPU per buy is this far from the median's did not measure the same
# window as the others (docs/benchmarks.md, issue 13, fourth part).
REDIS_CPU_TOLERANCE = 0.25


def suspect_runs(runs: list[dict[str, Any]]) -> list[int]:
    """The runs (0-based) whose Redis CPU per buy is more than REDIS_CPU_TOLERANCE
    away from the median of the runs: their window did not hold the same work."""
    values = [r.get("redis_cpu_us_per_buy") for r in runs]
    known = [v for v in values if v]
    if len(known) < 3:
        return []
    middle = statistics.median(known)
    return [i for i, v in enumerate(values)
            if v and abs(v - middle) > REDIS_CPU_TOLERANCE * middle]


def sale_medians(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The per-run livesell sale figures reduced to medians (None where no run had
    one), with `spread`: the min, median and max of each of them, and
    `suspect_runs` (see suspect_runs)."""
    figures = {
        "time_to_all_reserved_s": [r["time_to_all_reserved_s"] for r in runs],
        "time_to_sell_out_s": [r["time_to_sell_out_s"] for r in runs],
        "last_buy_reply_s": [r["last_buy_reply_s"] for r in runs],
        "buys_per_s": [r["buys_per_s"] for r in runs],
        "buy_p50_ms": [r["buy_ms"]["p50"] for r in runs],
        "buy_p99_ms": [r["buy_ms"]["p99"] for r in runs],
        "server_cpu_us_per_buy": [r.get("server_cpu_us_per_buy") for r in runs],
        "redis_cpu_us_per_buy": [r.get("redis_cpu_us_per_buy") for r in runs],
        "steal_share": [r.get("steal_share") for r in runs]}
    spread = {key: min_median_max(values) for key, values in figures.items()}
    out: dict[str, Any] = {"runs": len(runs), "buyers": runs[0]["buyers"],
                           "units": runs[0]["units"]}
    out.update({key: s["median"] if s else None for key, s in spread.items()})
    out.update({"units_sold": [r["units_sold"] for r in runs],
                "checks_ok": all(r["checks_ok"] for r in runs), "spread": spread,
                "suspect_runs": suspect_runs(runs)})
    return out


def paired_ratios(runs: list[dict[str, Any]], refs: list[dict[str, Any]]) -> dict[str, Any]:
    """Each livesell run against the reference run measured right after it: server
    CPU per buy ÷ the reference's client CPU per call, and buys/s ÷ calls/s, with
    the min, median and max of each over the pairs (`spread`). A pair's two runs
    share the machine's mood of the moment, so their ratio is steadier than a
    ratio of medians taken minutes apart."""
    cpu, throughput = [], []
    for run, ref in zip(runs, refs, strict=False):
        if run.get("server_cpu_us_per_buy") and ref.get("client_cpu_us_per_call"):
            cpu.append(round(run["server_cpu_us_per_buy"] / ref["client_cpu_us_per_call"], 3))
        if run.get("buys_per_s") and ref.get("calls_per_s"):
            throughput.append(round(run["buys_per_s"] / ref["calls_per_s"], 3))
    spread = {"cpu_ratio": min_median_max(cpu), "throughput_ratio": min_median_max(throughput)}
    return {"pairs": min(len(runs), len(refs)), "cpu_ratios": cpu,
            "throughput_ratios": throughput, "spread": spread,
            **{key: s["median"] if s else None for key, s in spread.items()}}


def median_run(runs: list[dict[str, Any]], spread_keys: tuple[str, ...]) -> dict[str, Any]:
    """A reference's runs reduced to its median run by calls per second (its figures
    are one run's, so they agree with each other), with `runs_calls_per_s` and
    `spread`: the min, median and max over the runs of each figure in spread_keys."""
    ordered = sorted(runs, key=lambda r: float(r["calls_per_s"]))
    out = dict(ordered[len(ordered) // 2])
    out["runs_calls_per_s"] = [r["calls_per_s"] for r in ordered]
    out["spread"] = {key: min_median_max([r.get(key) for r in runs]) for key in spread_keys}
    return out


REDIS_TOOLS_TIMEOUT_S = 300.0


def ensure_redis_benchmark(say: Callable[[str], None],
                           timeout: float = REDIS_TOOLS_TIMEOUT_S) -> bool:
    """True when `redis-benchmark` is on PATH; if it is not, and this process is
    root on a machine with apt-get, first installs Debian's `redis-tools` (as the
    Node reference installs `ws`), within `timeout` seconds in all."""
    if shutil.which("redis-benchmark") is not None:
        return True
    apt = shutil.which("apt-get")
    if apt is None or not hasattr(os, "geteuid") or os.geteuid() != 0:
        return False
    say("installing Debian's redis-tools with apt-get for the redis-benchmark reference")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = [apt, "install", "-y", "-q", "--no-install-recommends", "redis-tools"]
    deadline = time.monotonic() + timeout
    why = f"timed out after {timeout:g}s"
    # A fresh image has no package lists: refresh them once if the install fails.
    for argv in (install, [apt, "update", "-q"], install):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        try:
            done = subprocess.run(argv, env=env, capture_output=True, text=True,
                                  timeout=left, check=False)
        except subprocess.TimeoutExpired:
            break
        except OSError as exc:
            why = str(exc)
            break
        if done.returncode != 0:
            lines = (done.stderr or done.stdout).strip().splitlines()
            why = f"{' '.join(argv[1:2])}: {lines[-1] if lines else done.returncode}"
        elif argv is install:
            return shutil.which("redis-benchmark") is not None
    say(f"  the redis-tools install failed ({why})")
    return shutil.which("redis-benchmark") is not None
