"""The order stores side by side: M concurrent writers each place orders one after
another (as checkouts do: the next one only after the last was acknowledged), N
orders in all, against the SQLite store and the PostgreSQL store in one run, and
report orders per second and the ack latency (the time from `place_order` to its
answer, which comes only once the order is durable: ack -> durable), medians of
several runs, the two stores' runs alternated (docs/benchmarks.md, "Order
stores: SQLite and PostgreSQL").

    python -m loadtest.bench_store --orders 20000 --writers 200 --runs 5
    python -m loadtest.bench_store --store postgresql --pg-url postgresql://…

Without --pg-url a private PostgreSQL is started for the run (loadtest/pg_cluster.py:
Debian's `postgresql` binaries, fsync and synchronous_commit on, on loopback), and
each run gets a new database; SQLite writes a new file in a temporary directory
(WAL, synchronous=FULL). Both stores group-commit: the writers' orders queued while
a transaction runs go in the next one, so the transactions' sizes are reported too.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg

from loadtest.args import bounded
from loadtest.pg_cluster import PgCluster
from server.state.pg_store import PgOrderStore
from server.state.sqlite_store import SqliteOrderStore
from server.state.store import PLACED, Order

KINDS = ("sqlite", "postgresql")


def _order(n: int, room: str) -> Order:
    hold = f"h{n}"
    return Order(order_id=f"o_{hold}", hold_id=hold, room_id=room, product_id="p1",
                 sale_id="s1", buyer_id=f"v{n}", quantity=1, unit_price=1200, subtotal=1200,
                 discount=0, total=1200, currency="EUR", coupon_id="", payment_ref=f"pay_{n}",
                 created_at=1_700_000_000_000 + n, request_id=f"rq{n}")


async def _one_run(store: SqliteOrderStore | PgOrderStore, orders: int,
                   writers: int) -> dict[str, float]:
    room = "r_bench"
    await store.set_room_epoch(room, "e1")
    store.writer_stats()
    latencies: list[float] = []

    async def writer(w: int) -> None:
        for n in range(w, orders, writers):
            t0 = time.perf_counter()
            result = await store.place_order(_order(n, room), "e1")
            latencies.append(time.perf_counter() - t0)
            assert result == PLACED, result

    start = time.perf_counter()
    await asyncio.gather(*(writer(w) for w in range(writers)))
    elapsed = time.perf_counter() - start
    batches, failed = store.writer_stats()
    assert failed == 0 and len(await store.orders(room, orders + 1)) == orders
    latencies.sort()
    sizes = [n for n, _ in batches]
    return {"orders_per_s": orders / elapsed,
            "p50_ms": latencies[len(latencies) // 2] * 1000,
            "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
            "batch_mean": statistics.fmean(sizes) if sizes else 0.0,
            "transactions": float(len(batches))}


async def _run_once(kind: str, run: int, args: argparse.Namespace,
                    cluster: PgCluster | None, workdir: Path) -> dict[str, float]:
    store: SqliteOrderStore | PgOrderStore
    if kind == "sqlite":
        store = SqliteOrderStore(workdir / f"bench{run}.sqlite3", args.batch_max)
    else:
        url = args.pg_url or await _new_database(cluster, f"bench{run}")
        store = PgOrderStore(url, args.batch_max)
    await store.open()
    try:
        r = await _one_run(store, args.orders, args.writers)
    finally:
        await store.close()
    print(f"  {kind} run {run + 1}: {r['orders_per_s']:,.0f} orders/s, p50 "
          f"{r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms, "
          f"{r['batch_mean']:.1f} orders per transaction", flush=True)
    return r


async def _new_database(cluster: PgCluster | None, name: str) -> str:
    assert cluster is not None
    admin: Any = await asyncpg.connect(cluster.url())
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return cluster.url(name)


def _median(results: list[dict[str, float]], key: str) -> float:
    return statistics.median(r[key] for r in results)


async def bench(args: argparse.Namespace) -> dict[str, list[dict[str, float]]]:
    kinds = args.store or list(KINDS)
    cluster = None
    if "postgresql" in kinds and not args.pg_url:
        cluster = PgCluster()
    try:
        if cluster is not None:
            await asyncio.to_thread(cluster.start)
        with tempfile.TemporaryDirectory(prefix="livesell-bench-store-") as tmp:
            out: dict[str, list[dict[str, float]]] = {kind: [] for kind in kinds}
            # Alternated run by run, so that a change in the machine's load weighs on
            # both stores alike.
            for run in range(args.runs):
                for kind in kinds:
                    out[kind].append(await _run_once(kind, run, args, cluster, Path(tmp)))
            return out
    finally:
        if cluster is not None:
            await asyncio.to_thread(cluster.remove)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.bench_store",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", action="append", choices=KINDS,
                        help="a store to measure (again for both; default: both)")
    parser.add_argument("--orders", type=bounded(1, 10_000_000, int), default=20000)
    parser.add_argument("--writers", type=bounded(1, 100_000, int), default=200,
                        help="concurrent writers, each awaiting its order's ack")
    parser.add_argument("--runs", type=bounded(1, 100, int), default=5)
    parser.add_argument("--batch-max", type=bounded(1, 10_000, int), default=500,
                        help="store.batch_max: most orders in one transaction")
    parser.add_argument("--pg-url", default="",
                        help="an existing PostgreSQL database instead of a private one")
    args = parser.parse_args(argv)
    results = asyncio.run(bench(args))
    print(f"\n{args.orders} orders, {args.writers} writers, median of {args.runs} runs:\n")
    print("| store | orders/s | ack p50 ms | ack p99 ms | orders per transaction |")
    print("|---|---:|---:|---:|---:|")
    for kind, runs in results.items():
        per_run = " / ".join(f"{r['orders_per_s']:,.0f}" for r in runs)
        print(f"| {kind} | {_median(runs, 'orders_per_s'):,.0f} ({per_run}) | "
              f"{_median(runs, 'p50_ms'):.1f} | {_median(runs, 'p99_ms'):.1f} | "
              f"{_median(runs, 'batch_mean'):.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
