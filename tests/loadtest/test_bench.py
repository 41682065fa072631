"""`livesell-loadtest bench` helpers: the redis-benchmark command line, output and
Redis user, the reference run against a real redis-server, the livesell sale medians,
and redis-benchmark installed or skipped when it is missing."""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from loadtest import bench_fanout, bench_sale
from loadtest.bench_clients import Clients
from loadtest.bench_hubs import ProcessHub
from server.state.scripts import CONTRACTS


def test_redis_benchmark_argv_calls_reserve_with_its_contract() -> None:
    argv = bench_sale._redis_benchmark_argv(6400, "abc123", 16)
    assert argv[0] == "redis-benchmark"
    assert argv[argv.index("-c") + 1] == "50"
    assert argv[argv.index("-P") + 1] == "16"
    assert int(argv[argv.index("-r") + 1]) > 0
    i = argv.index("EVALSHA")
    contract = CONTRACTS["reserve"]
    n_keys = len(contract.keys)
    assert argv[i + 1] == "abc123" and argv[i + 2] == str(n_keys)
    keys, args = argv[i + 3:i + 3 + n_keys], argv[i + 3 + n_keys:]
    assert len(args) == len(contract.args)
    assert all("{r_bench}" in k for k in keys)  # one hash slot, like server/core/keys.py
    named = dict(zip(contract.args, args, strict=True))
    # The request key, buyer and hold id differ per call.
    assert "__rand_int__" in keys[contract.keys.index("answer")]
    assert "__rand_int__" in keys[contract.keys.index("hold")]
    assert "__rand_int__" in named["buyer"] and "__rand_int__" in named["hold_id"]
    assert named["sale_id"] == "s1" and named["quantity"] == "1" and named["product_id"] == "p"


@pytest.mark.parametrize("pipelined", [0, 16])
def test_the_reference_reserves_exactly_the_units(pipelined: int) -> None:
    # The reference calls the production script as production does: 40 buyers of one
    # unit each against 10 units reserve exactly 10 (a reference that only got
    # refusals, or errors, once measured nothing while looking fast).
    out = asyncio.run(bench_sale.bench_sale_reference(40, 10, pipelined))
    assert out["reserved"] == 10
    assert out["stock_after"] == {"total": "10", "left": "0", "held": "10", "sold": "0"}


def test_parse_redis_benchmark_csv() -> None:
    text = ('"test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms",'
            '"p95_latency_ms","p99_latency_ms","max_latency_ms"\n'
            '"EVALSHA abc 7 k","34464.93","1.400","0.300","1.359","2.100","2.863","9.000"\n')
    got = bench_sale._parse_redis_benchmark_csv(text)
    assert got["rps"] == pytest.approx(34464.93)
    assert got["p99_latency_ms"] == pytest.approx(2.863)
    with pytest.raises(RuntimeError):
        bench_sale._parse_redis_benchmark_csv("")


def _run(t_all: float, p50: float, p99: float, buys: float) -> dict[str, object]:
    return {"buyers": 10, "units": 2, "time_to_all_reserved_s": t_all,
            "time_to_sell_out_s": None, "last_buy_reply_s": 10 / buys, "buys_per_s": buys,
            "buy_ms": {"p50": p50, "p99": p99}, "units_sold": 2, "checks_ok": True,
            "server_cpu_us_per_buy": p50 * 2, "redis_cpu_us_per_buy": None}


def test_sale_medians() -> None:
    m = bench_sale.sale_medians([_run(0.5, 10, 30, 100), _run(0.7, 20, 10, 300),
                            _run(0.6, 30, 20, 200)])
    assert m["runs"] == 3
    assert m["time_to_all_reserved_s"] == 0.6
    assert (m["buy_p50_ms"], m["buy_p99_ms"], m["buys_per_s"]) == (20, 20, 200)
    assert m["time_to_sell_out_s"] is None
    assert m["server_cpu_us_per_buy"] == 40 and m["redis_cpu_us_per_buy"] is None
    assert m["checks_ok"] is True
    assert m["suspect_runs"] == []  # no run has a Redis figure to compare


def test_a_sale_run_whose_redis_cpu_is_far_from_the_others_is_named() -> None:
    runs = [_run(0.5, 10, 30, 100) | {"redis_cpu_us_per_buy": r} for r in (14, 5, 15, 13, 18)]
    # Median 14: 5 is 64 % below it, 18 is 29 % above, 13 and 15 are within 25 %.
    assert bench_sale.suspect_runs(runs) == [1, 4]
    assert bench_sale.sale_medians(runs)["suspect_runs"] == [1, 4]
    assert bench_sale.suspect_runs(runs[:2]) == []  # too few runs to tell


def test_redis_benchmark_missing_is_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert asyncio.run(bench_sale.bench_sale_redis_benchmark(3)) is None


def test_without_apt_or_root_redis_tools_are_not_installed(
        monkeypatch: pytest.MonkeyPatch) -> None:
    said: list[str] = []
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert bench_sale.ensure_redis_benchmark(said.append) is False
    assert said == []  # nothing attempted, nothing announced


def test_redis_benchmark_logs_in_as_its_own_user() -> None:
    argv = bench_sale._redis_benchmark_argv(6400, "abc123", 1, "pw")
    i = argv.index("--user")
    assert argv[i:i + 4] == ["--user", bench_sale.REDIS_BENCHMARK_USER, "-a", "pw"]
    assert i < argv.index("EVALSHA")


def test_the_benchmark_user_may_run_loaded_scripts_and_nothing_dangerous(
        tmp_path: Path) -> None:
    # Its password goes on redis-benchmark's command line, which any local user can
    # read: it must not open the server to CONFIG SET (files written as this user),
    # EVAL or module loading, and it is not the server's own password.
    from redis.asyncio import Redis
    from redis.exceptions import NoPermissionError

    from server.state.embedded_redis import RedisServer

    async def run(url: str, own_password: str) -> None:
        admin = Redis.from_url(url, decode_responses=True)
        password = await bench_sale._add_benchmark_user(admin)
        assert password != own_password
        sha = await admin.script_load("return redis.call('SET', KEYS[1], ARGV[1])")
        user = Redis(host="127.0.0.1", port=int(url.rsplit(":", 1)[1].split("/")[0]),
                     username=bench_sale.REDIS_BENCHMARK_USER, password=password,
                     decode_responses=True)
        try:
            assert await user.evalsha(sha, 1, "k", "v") == "OK"
            assert await user.get("k") == "v"
            refused: list[Callable[[], Awaitable[Any]]] = [
                lambda: user.config_set("dir", str(tmp_path)),
                lambda: user.eval("return 1", 0), lambda: user.script_load("return 1"),
                user.module_list, user.acl_list, user.flushall]
            for call in refused:
                with pytest.raises(NoPermissionError):
                    await call()
        finally:
            await user.aclose()
            await admin.aclose()

    server = RedisServer(tmp_path / "redis", appendonly=False)
    url = server.start()
    try:
        assert server.password is not None
        asyncio.run(run(url, server.password))
    finally:
        server.stop()


@pytest.mark.skipif(shutil.which("redis-benchmark") is None,
                    reason="redis-benchmark is not installed (Debian's redis-tools)")
def test_redis_benchmark_reserves_on_our_redis_server(monkeypatch: pytest.MonkeyPatch) -> None:
    # The installed redis-benchmark against the embedded redis-server (which asks for a
    # password; before the benchmark user every call got NOAUTH and the part failed):
    # every call of a short run takes the success path.
    monkeypatch.setattr(bench_sale, "REDIS_BENCHMARK_CALLS", 300)
    rows = asyncio.run(bench_sale.bench_sale_redis_benchmark(1))
    assert rows is not None and [r["pipeline"] for r in rows] == [1, 16]
    for row in rows:
        assert row["held_after"] >= 300 and row["calls_per_s"] > 0  # -P rounds up
        assert row["spread"]["calls_per_s"]["median"] == row["calls_per_s"]


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two cores to split")
def test_fanout_part_gives_the_cores_back_for_the_sale_part() -> None:
    """The fan-out part runs this process on the generator's cores; the sale part
    after it splits the cores itself and must find them all (on a 2-core machine
    it otherwise ran server, Redis and generator on one core)."""
    before = os.sched_getaffinity(0)
    args = argparse.Namespace(hubs=[], viewers=[1000], rates=[5], runs=3, duration=1.0)

    async def run() -> list[dict[str, object]]:
        rows = await bench_fanout.bench_fanout(args, print)
        # A worker thread started during the fan-out part (the bench starts
        # servers through asyncio.to_thread) must be given the cores back too.
        assert await asyncio.to_thread(os.sched_getaffinity, 0) == before
        return rows

    real = bench_fanout._bench_fanout

    async def with_a_worker_thread(*a: object) -> list[dict[str, object]]:
        await asyncio.to_thread(lambda: None)
        return await real(*a)  # type: ignore[arg-type]

    mp = pytest.MonkeyPatch()
    mp.setattr(bench_fanout, "_bench_fanout", with_a_worker_thread)
    try:
        assert asyncio.run(run()) == []
    finally:
        mp.undo()
    assert os.sched_getaffinity(0) == before


def test_cpu_per_buy_is_taken_from_the_opening_to_the_last_reply() -> None:
    from loadtest.context import RunOptions
    from loadtest.engine import Engine
    from loadtest.model import SaleInfo
    from loadtest.scenario import load_scenario_file, resolve

    engine = Engine(RunOptions(scenario=load_scenario_file(resolve("flash_sale")),
                               progress=False))
    window = engine.ctx.scn.sale.buy_window_s
    engine.ctx.data.sales.append(SaleInfo("s1", "p", 10, 1, 100_000))  # opens at t=100 s
    sampler = engine.sampler
    end = 100.0 + window + 0.5  # the slowest reply came 500 ms after the buy window
    sampler.burst_cpu = [(99.9, 99.9, 9.9, 0.95), (99.99, 100.0, 10.0, 1.0),
                         (end, end + 0.01, 10.5, 1.25), (end + 5, end + 5, 11.0, 1.5)]
    # 0.5 s of server CPU, 0.25 s of Redis CPU for 1,000 buys, between the last sample
    # read before the opening and the first read after the last reply.
    got = sampler.cpu_per_buy([10.0, 500.0], 1000)
    assert got["server_cpu_us_per_buy"] == pytest.approx(500.0)
    assert got["redis_cpu_us_per_buy"] == pytest.approx(250.0)
    assert got["burst_s"] == pytest.approx(window + 0.5)
    assert got["cpu_window_s"] == pytest.approx(window + 0.52)
    # A sampler scheduled late (no sample for a second across the burst) gives the CPU
    # of the longer interval it saw, never a share of it as if spent evenly: it was
    # all spent in the window.
    sampler.burst_cpu = [(99.99, 100.0, 10.0, 1.0), (end + 0.5, end + 0.5, 10.5, 1.25)]
    late = sampler.cpu_per_buy([10.0, 500.0], 1000)
    assert late["server_cpu_us_per_buy"] == pytest.approx(500.0)
    assert late["cpu_window_s"] == pytest.approx(window + 1.01)
    # Generators that sent late: the last reply came 1.5 s after the buy window though
    # no reply took over 500 ms. The window ends at that reply, so the CPU spent in
    # the second after the opening plus the slowest latency counts too (read from the
    # first sample after it).
    sampler.burst_cpu = [(99.99, 100.0, 10.0, 1.0), (end, end + 0.01, 10.5, 1.25),
                         (end + 1.0, end + 1.01, 10.9, 1.45), (end + 5, end + 5, 11.0, 1.5)]
    late_senders = sampler.cpu_per_buy([10.0, 500.0], 1000, last_reply_at=end + 1.0)
    assert late_senders["server_cpu_us_per_buy"] == pytest.approx(900.0)
    assert late_senders["redis_cpu_us_per_buy"] == pytest.approx(450.0)
    assert late_senders["burst_s"] == pytest.approx(window + 1.5)
    # A last reply before the opening plus the slowest latency changes nothing.
    early = sampler.cpu_per_buy([10.0, 500.0], 1000, last_reply_at=100.2)
    assert early["server_cpu_us_per_buy"] == pytest.approx(500.0)
    # A sample whose read began before the opening and ended after it brackets
    # neither side; samples that stop before the last reply give no figure rather
    # than a short one.
    sampler.burst_cpu = [(99.99, 100.01, 10.0, 1.0), (end, end, 10.5, 1.25)]
    assert sampler.cpu_per_buy([10.0, 500.0], 1000) == {}
    sampler.burst_cpu = [(99.99, 100.0, 10.0, 1.0), (end - 0.1, end - 0.1, 10.5, 1.25)]
    assert sampler.cpu_per_buy([10.0, 500.0], 1000) == {}


def test_cores_are_split_between_server_redis_and_generators() -> None:
    from loadtest.spawn import plan_cores

    none = plan_cores([0])
    assert (none.server, none.redis, none.generators, none.workers) == (None, None, None, 1)
    two = plan_cores([0, 1])
    assert (two.server, two.redis, two.generators, two.workers) == ([0], [0], [1], 1)
    # From 4 cores Redis has one to itself and the server a process per core it gets.
    four = plan_cores([0, 1, 2, 3])
    assert (four.server, four.redis, four.generators, four.workers) == ([1], [0], [2, 3], 1)
    eight = plan_cores(list(range(8)))
    assert (eight.server, eight.redis, eight.generators, eight.workers) == (
        [1, 2, 3], [0], [4, 5, 6, 7], 3)
    for n in range(1, 33):
        plan = plan_cores(list(range(n)))
        used = [*(plan.server or []), *(plan.generators or [])]
        assert len(used) == len(set(used))  # server and generators never share a core


def test_the_livesell_hub_lets_every_bench_viewer_join() -> None:
    # Every bench viewer comes from 127.0.0.1: with the per-address guest limit on,
    # only 20 joined and the fan-out rows measured 20 viewers.
    from loadtest.bench_hubs import LivesellHub

    hub = LivesellHub()
    try:
        assert hub.server.env["LIVESELL_AUTH_GUEST_MINTS_PER_IP_PER_MIN"] == "0"
    finally:
        hub.server.cleanup()


def test_the_fanout_part_measures_the_hubs_of_each_run_one_after_another() -> None:
    """Every hub of a crowd size runs at once with its own viewers, and each run
    measures them in turn: the machine's drift over minutes falls on all of them."""
    args = argparse.Namespace(hubs=["floor", "websockets"], viewers=[20], rates=[5], runs=2,
                              duration=0.5, trigger="timer", floor_state=0)
    rows = asyncio.run(bench_fanout.bench_fanout(args, lambda text: None))
    assert [(r["run"], r["hub"]) for r in rows] == [
        (0, "floor"), (0, "websockets"), (1, "floor"), (1, "websockets")]
    for r in rows:
        assert r["joined"] == 20 and r["events"] > 0, r
        assert r["deliveries"] == r["expected"] == r["events"] * 20, r


def test_a_hub_whose_stop_fails_still_lets_every_other_hub_and_viewer_stop(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Stopping is attempted for every hub and every viewers' process even when
    stopping one of them raises; the failure is raised after."""

    class FailingStop(ProcessHub):
        async def stop(self) -> None:
            await super().stop()
            raise RuntimeError("stop failed")

    made: list[Any] = []
    make = bench_fanout._make_hub

    def make_hub(name: str, *rest: Any) -> Any:
        hub = (FailingStop(name, [sys.executable, "-m", "loadtest.refhub"])
               if name == "websockets" else make(name, *rest))
        made.append(hub)
        return hub

    started: list[Any] = []
    clients = Clients

    def track_clients(*args: Any, **kwargs: Any) -> Any:
        started.append(clients(*args, **kwargs))
        return started[-1]

    monkeypatch.setattr(bench_fanout, "_make_hub", make_hub)
    monkeypatch.setattr(bench_fanout, "Clients", track_clients)
    # The failing hub first: stopped in any order, the other one must stop too.
    args = argparse.Namespace(hubs=["websockets", "floor"], viewers=[5], rates=[5], runs=1,
                              duration=0.2, trigger="timer", floor_state=0)
    with pytest.raises(RuntimeError, match="stop failed"):
        asyncio.run(bench_fanout.bench_fanout(args, lambda text: None))
    assert [hub.name for hub in made] == ["websockets", "floor"]
    for hub in made:
        assert hub.proc is not None and hub.proc.poll() is not None, hub.name
    assert len(started) == 2
    assert all(not p.is_alive() for c in started for p in c.procs)
