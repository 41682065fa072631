"""Micro-benchmark of the Redis pool step every command and pipeline takes: one
`get_connection` and its `release`, on redis-py's `BlockingConnectionPool` and on
livesell's `ClosingPool` (server/state/connections.py, which refuses to connect
once closed), alternated in one process against a private redis-server, and
reported as a ratio (docs/benchmarks.md, "The Redis pool step").

    python -m loadtest.bench_pool --calls 20000 --runs 5

The connection is made once, before the timings, so what is timed is the pool's
own work (its lock, its condition, the connection's liveness check), not a round
trip to Redis.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from redis.asyncio import BlockingConnectionPool
from redis.asyncio.connection import AbstractConnection

from loadtest.args import bounded
from server.state.connections import ClosingPool
from server.state.embedded_redis import RedisServer


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m loadtest.bench_pool",
                                     description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("--calls", type=bounded(1, 10_000_000, int), default=20_000,
                        help="get+release pairs per timing (default 20000)")
    parser.add_argument("--runs", type=bounded(1, 1_000, int), default=5,
                        help="alternated timings of each pool; medians reported (default 5)")
    return parser.parse_args(argv)


async def _time_pool(pool: BlockingConnectionPool, calls: int) -> float:
    """ns per get_connection + release, the connection already made."""
    # A typed name: redis-py leaves get_connection untyped.
    get: Callable[[], Awaitable[AbstractConnection]] = pool.get_connection
    start = time.perf_counter_ns()
    for _ in range(calls):
        connection = await get()
        await pool.release(connection)
    return (time.perf_counter_ns() - start) / calls


async def _compare(url: str, calls: int, runs: int) -> dict[str, list[float]]:
    pools: dict[str, BlockingConnectionPool] = {
        "redis-py BlockingConnectionPool": BlockingConnectionPool.from_url(url),
        "livesell ClosingPool": ClosingPool.from_url(url),
    }
    timings: dict[str, list[float]] = {name: [] for name in pools}
    try:
        for pool in pools.values():  # connect once, and warm up
            await _time_pool(pool, min(calls, 1_000))
        for run in range(runs):
            # Each pool first in every other run: neither always follows the other.
            order = list(pools.items())
            for name, pool in order if run % 2 == 0 else order[::-1]:
                timings[name].append(await _time_pool(pool, calls))
    finally:
        for pool in pools.values():
            await pool.disconnect()
    return timings


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="livesell-bench-pool-") as tmp:
        redis = RedisServer(Path(tmp), appendonly=False)
        redis.start()
        try:
            timings = asyncio.run(_compare(redis.url, args.calls, args.runs))
        finally:
            redis.stop()
    medians = {name: statistics.median(values) for name, values in timings.items()}
    for name, values in timings.items():
        print(f"{name}: median {medians[name]:.0f} ns per get+release "
              f"(runs: {', '.join(f'{v:.0f}' for v in values)})")
    plain, closing = medians.values()
    print(f"ratio ClosingPool / BlockingConnectionPool: {closing / plain:.3f} "
          f"({closing - plain:+.0f} ns per command or pipeline)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
