"""`livesell-loadtest bench`: livesell beside reference implementations, measured
in one run on this machine with the same client.

Fan-out: for each hub (livesell spawned on its embedded defaults; the
`websockets` library's `broadcast()` in `loadtest.refhub`; Node's `ws` with
one pre-built buffer per event in `loadtest/refhubs/node_hub.js`, installed
with npm into a temporary directory), each crowd size and each event rate, the
hub sends ~200-byte events at the rate for a few seconds to every viewer. The
hub process is pinned to its own core and its CPU time is read from /proc:
CPU microseconds per delivered frame, and the p50/p99 latency from each
event's `ts` to its receipt on a spread sample of connections. Each cell is
the median of several runs; livesell's figures are also given as ratios to
the references. livesell's CPU excludes its redis-server (shown apart); its
events are emitted through the host HTTP API, the references' by a timer.

Flash sale: the `flash_sale` engine with N buyers pressing buy at the opening
instant for U units (limit 1, checkout after), against a reference that runs
the same `server/state/lua/reserve.lua` directly through redis-py asyncio on a
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
import contextlib
import csv
import json
import multiprocessing as mp
import os
import queue
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import orjson

import server
from loadtest.stats import read_proc, spread_indices, summary
from loadtest.viewer import Link

NODE_HUB = Path(__file__).resolve().parent / "refhubs" / "node_hub.js"
RESERVE_LUA = Path(server.__file__).resolve().parent / "state" / "lua" / "reserve.lua"
HUBS = ("livesell", "websockets", "node")
EVENT_SIZE = 200


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
                        help="hubs to compare (default livesell,websockets,node)")
    parser.add_argument("--sale-buyers", type=int, default=10_000)
    parser.add_argument("--sale-units", type=int, default=1000)
    parser.add_argument("--no-fanout", action="store_true", help="skip the fan-out part")
    parser.add_argument("--no-sale", action="store_true", help="skip the flash-sale part")
    parser.add_argument("--report-dir", type=Path, help="where bench.json goes "
                        "(default ./loadtest-reports/bench-TIME)")


# ================================================================== bench clients


class _Counter:
    """A bench viewer: counts frames; sampled ones also keep latencies."""

    __slots__ = ("crowd", "sampled")

    def __init__(self, crowd: _Crowd, sampled: bool) -> None:
        self.crowd = crowd
        self.sampled = sampled

    def on_frame(self, data: bytes) -> None:
        c = self.crowd
        c.frames += 1
        if self.sampled and c.measuring:
            ts = orjson.loads(data).get("ts")
            if ts is not None:
                c.latency.append(time.time() * 1000.0 - ts)

    def on_lost(self, link: Link) -> None:
        self.crowd.lost += 1


@dataclass(slots=True)
class _Crowd:
    frames: int = 0
    lost: int = 0
    measuring: bool = False
    latency: list[float] = field(default_factory=list)


async def _client_main(url: str, count: int, sampled: set[int], ctrl: Any, out: Any) -> None:
    from urllib.parse import urlsplit

    loop = asyncio.get_running_loop()
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    crowd = _Crowd()
    links: list[Link] = []

    async def one(i: int) -> None:
        for attempt in range(3):
            link = Link(_Counter(crowd, i in sampled), url)
            try:
                await loop.create_connection(lambda link=link: link, host, port)  # type: ignore[misc]
                await asyncio.wait_for(link.opened, 30)
                links.append(link)
                return
            except Exception:  # refused or timed out under the join burst: try again
                await asyncio.sleep(0.5 * (attempt + 1))

    started = time.monotonic()
    pending = []
    for i in range(count):
        delay = started + i / 1500.0 - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        pending.append(asyncio.ensure_future(one(i)))
    await asyncio.gather(*pending)
    out.put(("connected", len(links)))
    inbox: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()

    def reader() -> None:
        while True:
            msg = ctrl.get()
            loop.call_soon_threadsafe(inbox.put_nowait, msg)
            if msg[0] == "stop":
                return

    threading.Thread(target=reader, daemon=True).start()
    cpu0 = wall0 = 0.0
    while True:
        msg = await inbox.get()
        if msg[0] == "reset":
            crowd.frames, crowd.latency, crowd.measuring = 0, [], True
            cpu0, wall0 = time.process_time(), time.monotonic()
            out.put(("reset",))
        elif msg[0] == "report":
            crowd.measuring = False
            util = (time.process_time() - cpu0) / max(1e-6, time.monotonic() - wall0)
            out.put(("report", crowd.frames, crowd.latency, util, crowd.lost))
        elif msg[0] == "stop":
            for link in links:
                link.close()
            await asyncio.sleep(0.5)
            return


def _client_process(url: str, count: int, sampled: set[int], cpus: list[int] | None,
                    ctrl: Any, out: Any) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if cpus:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, cpus)
    import uvloop

    uvloop.run(_client_main(url, count, sampled, ctrl, out))


class Clients:
    """Bench viewers spread over generator processes."""

    def __init__(self, url: str, count: int, cpus: list[int] | None, sample: int = 200) -> None:
        procs = max(1, (os.cpu_count() or 2) - 1)
        ctx = mp.get_context("spawn")
        self.out: Any = ctx.Queue()
        self.ctrls: list[Any] = []
        self.procs: list[Any] = []
        sampled = spread_indices(count, sample)
        for w in range(procs):
            n = len(range(w, count, procs))
            mine = {i // procs for i in sampled if i % procs == w}
            ctrl = ctx.Queue()
            p = ctx.Process(target=_client_process, daemon=True,
                            args=(url, n, mine, [cpus[w % len(cpus)]] if cpus else None,
                                  ctrl, self.out))
            p.start()
            self.ctrls.append(ctrl)
            self.procs.append(p)

    def _gather(self, kind: str, timeout: float) -> list[tuple[Any, ...]]:
        got: list[tuple[Any, ...]] = []
        deadline = time.monotonic() + timeout
        while len(got) < len(self.procs):
            try:
                msg = self.out.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                raise RuntimeError(f"bench clients did not answer {kind!r} in time") from None
            if msg[0] == kind:
                got.append(msg)
        return got

    def connected(self) -> int:
        return sum(m[1] for m in self._gather("connected", 180))

    def reset(self) -> None:
        for c in self.ctrls:
            c.put(("reset",))
        self._gather("reset", 30)

    def report(self) -> tuple[int, list[float], float, int]:
        for c in self.ctrls:
            c.put(("report",))
        got = self._gather("report", 60)
        return (sum(m[1] for m in got), [x for m in got for x in m[2]],
                max(m[3] for m in got), sum(m[4] for m in got))

    def stop(self) -> None:
        for c in self.ctrls:
            c.put(("stop",))
        for p in self.procs:
            p.join(10)
            if p.is_alive():
                p.kill()
                p.join()


# ================================================================== hubs


class Hub:
    """One hub under test: its process (for /proc), viewer URL and emitter."""

    name = ""
    pid = 0
    redis_pid: int | None = None
    viewer_url = ""

    async def start(self, cpus: list[int] | None) -> None:
        raise NotImplementedError

    async def emit(self, rate: int, duration: float) -> int:
        raise NotImplementedError

    async def stop(self) -> None:
        raise NotImplementedError


class LivesellHub(Hub):
    name = "livesell"

    def __init__(self) -> None:
        from loadtest.spawn import SpawnedServer

        self.server = SpawnedServer({})
        self.http: Any = None
        self.host: Any = None

    async def start(self, cpus: list[int] | None) -> None:
        import httpx

        from loadtest.host import Host

        self.server.cpus = cpus
        base = await asyncio.to_thread(self.server.start)
        self.pid = self.server.pid
        self.redis_pid = self.server.redis_pid
        self.http = httpx.AsyncClient(base_url=base, timeout=30)
        self.host = await Host.create_room(self.http, "bench", None)
        self.viewer_url = base.replace("http://", "ws://") + f"/ws/{self.host.room_id}"

    async def emit(self, rate: int, duration: float) -> int:
        count = int(rate * duration)
        text = "x" * 120  # with seq, type and ts the event frame is ~200 bytes
        start = time.monotonic()
        tasks = []
        for n in range(count):
            delay = start + n / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.ensure_future(self.host.call("POST", "/announcements",
                                                              {"text": text})))
        await asyncio.gather(*tasks)
        return count

    async def stop(self) -> None:
        if self.http is not None:
            await self.http.aclose()
        await asyncio.to_thread(self.server.stop)
        self.server.cleanup()


class ProcessHub(Hub):
    """A reference hub in a subprocess that prints `PORT n` and takes /control."""

    def __init__(self, name: str, argv: list[str], cwd: Path | None = None) -> None:
        self.name = name
        self.argv = argv
        self.cwd = cwd
        self.proc: subprocess.Popen[str] | None = None
        self.control: Any = None

    async def start(self, cpus: list[int] | None) -> None:
        from websockets.asyncio.client import connect

        self.proc = await asyncio.to_thread(
            subprocess.Popen, self.argv, stdout=subprocess.PIPE, text=True, cwd=self.cwd,
            start_new_session=True)
        self.pid = self.proc.pid
        if cpus:
            with contextlib.suppress(OSError):
                os.sched_setaffinity(self.pid, cpus)
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(self.proc.stdout.readline), 30)
        if not line.startswith("PORT "):
            raise RuntimeError(f"{self.name} hub did not start: {line!r}")
        port = int(line.split()[1])
        self.viewer_url = f"ws://127.0.0.1:{port}/"
        self.control = await connect(f"ws://127.0.0.1:{port}/control", compression=None)

    async def emit(self, rate: int, duration: float) -> int:
        await self.control.send(json.dumps({"rate": rate, "duration": duration,
                                            "size": EVENT_SIZE}))
        reply = json.loads(await asyncio.wait_for(self.control.recv(), duration + 60))
        return int(reply["done"])

    async def stop(self) -> None:
        if self.control is not None:
            await self.control.close()
        if self.proc is not None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            if self.proc.stdout is not None:
                self.proc.stdout.close()


def install_node_ws(directory: Path) -> Path:
    """`npm install ws` into `directory`; returns the hub script placed beside it."""
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        raise RuntimeError("node and npm are needed for the Node reference hub")
    subprocess.run([npm, "install", "--no-audit", "--no-fund", "--silent", "ws@8"],
                   cwd=directory, check=True, capture_output=True, timeout=300)
    script = directory / "node_hub.js"
    shutil.copyfile(NODE_HUB, script)
    return script


# ================================================================== fan-out


def _cpu(pid: int | None) -> float:
    sample = read_proc(pid) if pid else None
    return sample.cpu_s if sample else 0.0


async def bench_fanout(args: argparse.Namespace, say: Any) -> list[dict[str, Any]]:
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return await _bench_fanout(args, say, None, None)
    # This process joins the generator's cores for the fan-out part only: the
    # sale part that follows splits the cores again itself (engine.py), from
    # whatever affinity it finds, so it must find all of them. Every thread is
    # set, not only this one: worker threads started meanwhile (asyncio.to_thread)
    # keep the affinity they were started with, and so do the processes they
    # start (the references' redis-server and redis-benchmark).
    _set_process_affinity(cpus[1:])
    try:
        return await _bench_fanout(args, say, cpus[:1], cpus[1:])
    finally:
        _set_process_affinity(cpus)


def _set_process_affinity(cpus: list[int]) -> None:
    for tid in os.listdir("/proc/self/task"):
        with contextlib.suppress(OSError):  # a thread that ended meanwhile
            os.sched_setaffinity(int(tid), cpus)


async def _bench_fanout(args: argparse.Namespace, say: Any, hub_cpus: list[int] | None,
                        gen_cpus: list[int] | None) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="livesell-bench-") as tmp:
        node_script = None
        if "node" in args.hubs:
            say("installing the ws package with npm for the Node reference hub")
            node_script = install_node_ws(Path(tmp))
        for name in args.hubs:
            for viewers in args.viewers:
                hub: Hub
                if name == "livesell":
                    hub = LivesellHub()
                elif name == "websockets":
                    hub = ProcessHub(name, [sys.executable, "-m", "loadtest.refhub"])
                else:
                    assert node_script is not None
                    hub = ProcessHub(name, ["node", str(node_script)], cwd=Path(tmp))
                await hub.start(hub_cpus)
                clients = None
                try:
                    clients = Clients(hub.viewer_url, viewers, gen_cpus)
                    joined = await asyncio.to_thread(clients.connected)
                    say(f"{name}: {joined}/{viewers} viewers connected")
                    await asyncio.sleep(2.0)  # let join-time events settle
                    for rate in args.rates:
                        for run in range(args.runs):
                            await asyncio.to_thread(clients.reset)
                            cpu0, rcpu0 = _cpu(hub.pid), _cpu(hub.redis_pid)
                            sent = await hub.emit(rate, args.duration)
                            await asyncio.sleep(1.0)  # drain
                            cpu1, rcpu1 = _cpu(hub.pid), _cpu(hub.redis_pid)
                            frames, latency, util, lost = await asyncio.to_thread(
                                clients.report)
                            lat = summary(latency)
                            row = {
                                "hub": name, "viewers": viewers, "joined": joined,
                                "rate": rate, "run": run, "events": sent,
                                "deliveries": frames, "expected": sent * joined,
                                "hub_cpu_s": round(cpu1 - cpu0, 3),
                                "redis_cpu_s": round(rcpu1 - rcpu0, 3),
                                "cpu_us_per_delivery": round((cpu1 - cpu0) * 1e6 / frames, 3)
                                if frames else None,
                                "p50_ms": lat["p50"], "p99_ms": lat["p99"],
                                "generator_util": round(util, 3), "lost": lost}
                            rows.append(row)
                            say(f"  {name} {viewers} viewers {rate}/s run {run + 1}: "
                                f"{row['cpu_us_per_delivery']} µs/delivery, p99 "
                                f"{row['p99_ms']} ms, generator {util:.0%}")
                finally:
                    if clients is not None:
                        await asyncio.to_thread(clients.stop)
                    await hub.stop()
    return rows


def medians(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    cells: dict[tuple[str, int, int], list[dict[str, Any]]] = {}
    for r in rows:
        cells.setdefault((r["hub"], r["viewers"], r["rate"]), []).append(r)
    out = []
    for (hub, viewers, rate), rs in cells.items():
        def med(key: str, rs: list[dict[str, Any]] = rs) -> float | None:
            vals = [r[key] for r in rs if r[key] is not None]
            return round(statistics.median(vals), 3) if vals else None
        out.append({"hub": hub, "viewers": viewers, "rate": rate, "runs": len(rs),
                    "cpu_us_per_delivery": med("cpu_us_per_delivery"),
                    "p50_ms": med("p50_ms"), "p99_ms": med("p99_ms"),
                    "redis_cpu_s": med("redis_cpu_s"),
                    "reach": round(sum(r["deliveries"] for r in rs)
                                   / max(1, sum(r["expected"] for r in rs)), 4),
                    "generator_util": med("generator_util")})
    by = {(m["hub"], m["viewers"], m["rate"]): m for m in out}
    for m in out:
        if m["hub"] != "livesell":
            continue
        for ref in ("websockets", "node"):
            other = by.get((ref, m["viewers"], m["rate"]))
            if other and other["cpu_us_per_delivery"] and m["cpu_us_per_delivery"]:
                m[f"cpu_ratio_to_{ref}"] = round(m["cpu_us_per_delivery"]
                                                 / other["cpu_us_per_delivery"], 2)
            if other and other["p99_ms"] and m["p99_ms"]:
                m[f"p99_ratio_to_{ref}"] = round(m["p99_ms"] / other["p99_ms"], 2)
    return out


# ================================================================== flash sale


async def bench_sale_livesell(buyers: int, units: int) -> dict[str, Any]:
    from loadtest.engine import RunOptions, prepare
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
                     checkout_share=1.0, sold_out_retries=0, think_s=0.2, hold_seconds=10.0),
        coupon=replace(base.coupon, enabled=False), lottery=replace(base.lottery,
                                                                    enabled=False))
    result = await prepare(RunOptions(scenario=s, progress=False)).run()
    sel = result.measurements["selling"]
    buy_ms = sel["buy_ms"]
    # Every buyer presses buy at the opening instant (buy_window_s 0), so the last
    # reply comes about the slowest reply's latency after the opening. That leaves out
    # how long the generators took to send the last request, so it is a lower bound on
    # the interval and an upper bound on buys per second.
    last_reply_s = buy_ms["max"] / 1000.0 if buy_ms.get("max") else None
    return {"buyers": buyers, "units": units,
            "last_buy_reply_s": round(last_reply_s, 3) if last_reply_s else None,
            "buys_per_s": round(buyers / last_reply_s, 1) if last_reply_s else None,
            "joined": result.measurements["viewers"]["joined"],
            "buy_ms": sel["buy_ms"], "units_sold": sel["units_sold"],
            "server_cpu_us_per_buy": sel.get("server_cpu_us_per_buy"),
            "redis_cpu_us_per_buy": sel.get("redis_cpu_us_per_buy"),
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
    from server.state.redis_supervisor import RedisServer

    script_text = await asyncio.to_thread(RESERVE_LUA.read_text)
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
            started = time.perf_counter()

            def call_args(i: int) -> tuple[list[str], list[Any]]:
                return ([keys.request(f"v{i}", "buy", "b1"), keys.product_sale("p"),
                         keys.sale("s1"), keys.stock("p"), keys.bought("s1"),
                         keys.hold(f"h{i}"), keys.holds],
                        ["s1", f"v{i}", 1, f"h{i}", 180_000, 86400, "p"])

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
            "stock_after": stock}


REDIS_BENCHMARK_CALLS = 200_000
REDIS_BENCHMARK_KEYSPACE = 2_000_000_000  # -r: distinct request keys, buyers and hold ids


def _redis_benchmark_argv(port: int, sha: str, pipeline: int) -> list[str]:
    """EVALSHA of reserve.lua with its 7 keys and 7 args; __rand_int__ (each one drawn
    apart by redis-benchmark) makes the request key, buyer and hold id differ per call."""
    from server.core.keys import RoomKeys

    keys = RoomKeys("r_bench")
    rnd = "__rand_int__"
    return ["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-c", "50",
            "-n", str(REDIS_BENCHMARK_CALLS), "-r", str(REDIS_BENCHMARK_KEYSPACE),
            "-P", str(pipeline), "--csv",
            "EVALSHA", sha, "7",
            keys.request(f"v{rnd}", "buy", "b1"), keys.product_sale("p"), keys.sale("s1"),
            keys.stock("p"), keys.bought("s1"), keys.hold(f"h{rnd}"), keys.holds,
            "s1", f"v{rnd}", "1", f"h{rnd}", "180000", "86400", "p"]


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


async def bench_sale_redis_benchmark(runs: int) -> list[dict[str, Any]] | None:
    """reserve.lua by EVALSHA from `redis-benchmark` on a private redis-server, with
    stock, sale units and limit too large to run out: calls per second on the success
    path, median of `runs` runs unpipelined and with -P 16. None without redis-benchmark."""
    if shutil.which("redis-benchmark") is None:
        return None
    from redis.asyncio import Redis

    from server.core.keys import RoomKeys
    from server.state.redis_supervisor import RedisServer

    script_text = await asyncio.to_thread(RESERVE_LUA.read_text)
    keys = RoomKeys("r_bench")
    big = 10**12
    out = []
    with tempfile.TemporaryDirectory(prefix="livesell-bench-redis-") as tmp:
        redis_server = RedisServer(Path(tmp), appendonly=False)
        url = await asyncio.to_thread(redis_server.start)
        r = Redis.from_url(url, decode_responses=True)
        try:
            for pipeline in (1, 16):
                runs_out: list[dict[str, Any]] = []
                for _ in range(runs):
                    await r.flushall()
                    now_ms = int(time.time() * 1000)
                    await r.set(keys.product_sale("p"), "s1")
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
                        subprocess.run, _redis_benchmark_argv(port, sha, pipeline),
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
                runs_out.sort(key=lambda x: float(x["calls_per_s"]))
                median: dict[str, Any] = dict(runs_out[len(runs_out) // 2])
                median["mode"] = "50 connections" + (f", -P {pipeline}" if pipeline > 1
                                                      else "")
                median["pipeline"] = pipeline
                median["runs_calls_per_s"] = [x["calls_per_s"] for x in runs_out]
                median["min_succeeded_share"] = min(x["succeeded_share"] for x in runs_out)
                out.append(median)
        finally:
            await r.aclose()
            await asyncio.to_thread(redis_server.stop)
    return out


def sale_medians(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The per-run livesell sale figures reduced to medians (None where no run had one)."""
    def med(values: list[Any]) -> float | None:
        vals = [float(v) for v in values if v is not None]
        return round(statistics.median(vals), 3) if vals else None

    return {"runs": len(runs), "buyers": runs[0]["buyers"], "units": runs[0]["units"],
            "time_to_all_reserved_s": med([r["time_to_all_reserved_s"] for r in runs]),
            "time_to_sell_out_s": med([r["time_to_sell_out_s"] for r in runs]),
            "last_buy_reply_s": med([r["last_buy_reply_s"] for r in runs]),
            "buys_per_s": med([r["buys_per_s"] for r in runs]),
            "buy_p50_ms": med([r["buy_ms"]["p50"] for r in runs]),
            "buy_p99_ms": med([r["buy_ms"]["p99"] for r in runs]),
            "server_cpu_us_per_buy": med([r.get("server_cpu_us_per_buy") for r in runs]),
            "redis_cpu_us_per_buy": med([r.get("redis_cpu_us_per_buy") for r in runs]),
            "units_sold": [r["units_sold"] for r in runs],
            "checks_ok": all(r["checks_ok"] for r in runs)}


# ================================================================== command


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
        from loadtest.engine import machine

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
