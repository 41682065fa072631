"""The auction benchmark: bids per second one livesell process accepts, and the
time from a bid to the last viewer seeing the new leading bid, beside a
reference that runs the same bid.lua straight through redis-py on a private
redis-server, in one run on this machine.

    python -m loadtest.bench_auction --viewers 1000,5000 --runs 3

For each run and crowd size: livesell is spawned on its embedded defaults
(pinned like the flash-sale bench, loadtest.spawn.plan_cores), a room gets a
one-unit product and an hour-long auction with a 1-unit increment, and a crowd
of counting viewers (loadtest.bench_clients, generator processes) joins.

- Latency: two bidders in this process take turns bidding the minimum next bid,
  paced at `--latency-rate` bids per second. Each bid's send time is paired with
  the `auction_bid` event it caused (by its amount: amounts only rise), and that
  event's latest receipt over every viewer of the crowd: the bid to the last
  viewer. Percentiles over the bids; `frames_per_viewer_per_bid` is every frame
  the crowd got in that part per viewer per bid (at least 1 when every viewer got
  every bid's event; the `viewers` counts add a little).
- Throughput: `--bidders` connections bid for `--seconds`, each as soon as its
  previous answer came back, at the minimum next bid it last heard of plus 0-2
  steps (every third with a maximum above it). Accepted bids are the chain's
  growth over the window (every accepted bid and every proxy bid is an entry);
  answers per second count every reply (refusals included). Server and
  redis-server CPU per answer from /proc.

The reference does the throughput part with the production KEYS and ARGV
(server/state/scripts.py `bid_call`) from as many concurrent redis-py callers,
one call per await over a pool of 50 connections, with no viewers and no store:
the Redis-bound ceiling of the bid step. Results are medians of `--runs` runs
with [min..max]; the JSON goes to --report-dir.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
from websockets.asyncio.client import ClientConnection, connect

from loadtest.args import bounded
from loadtest.bench import _csv_ints
from loadtest.bench_clients import Clients
from loadtest.spawn import SpawnedServer, plan_cores
from loadtest.stats import cpu_seconds, summary


class Bidder:
    """One bidding viewer over a real WebSocket: requests with ids, answers by id,
    and (for the latency part) the seq of each auction_bid event by its amount."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self.seq_by_amount: dict[int, int] = {}
        self.n = 0
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for raw in self.ws:
            frame = orjson.loads(raw)
            if frame.get("type") == "auction_bid":
                self.seq_by_amount[int(frame["amount"])] = int(frame["seq"])
            fut = self.waiting.pop(str(frame.get("re")), None)
            if fut is not None and not fut.done():
                fut.set_result(frame)

    async def bid(self, auction_id: str, amount: int,
                  max_amount: int | None = None) -> dict[str, Any]:
        self.n += 1
        rid = f"b{self.n}"
        fut = self.waiting[rid] = asyncio.get_running_loop().create_future()
        body: dict[str, Any] = {"type": "bid", "request_id": rid, "auction_id": auction_id,
                                "amount": amount}
        if max_amount is not None:
            body["max_amount"] = max_amount
        await self.ws.send(orjson.dumps(body).decode())
        return await asyncio.wait_for(fut, 60)

    async def close(self) -> None:
        await self.ws.close()
        self.reader.cancel()


def _least(answer: dict[str, Any], known: int) -> int:
    if answer.get("type") == "bid_placed":
        return max(known, int(answer["min_next"]))
    details = answer.get("details") or {}
    return max(known, int(details.get("min_next", known)))


async def _room(http: httpx.AsyncClient) -> tuple[str, str]:
    r = await http.post("/api/rooms", json={"title": "auction bench"})
    r.raise_for_status()
    room, key = r.json()["room"]["room_id"], r.json()["host_key"]
    headers = {"X-Host-Key": key}
    p = await http.post(f"/api/rooms/{room}/products", headers=headers, json={
        "title": "Bench lot", "price": 100, "currency": "USD", "stock": 1})
    p.raise_for_status()
    a = await http.post(f"/api/rooms/{room}/auctions", headers=headers, json={
        "product_id": p.json()["product_id"], "start_price": 1, "duration_s": 3600,
        "increments": [{"from": 0, "step": 1}]})
    a.raise_for_status()
    return room, a.json()["auction_id"]


async def bench_livesell(viewers: int, args: argparse.Namespace) -> dict[str, Any]:
    plan = plan_cores(sorted(os.sched_getaffinity(0)))
    # Thousands of guests from one address: the per-address mint limit is off, as in
    # the fan-out bench (loadtest/bench_hubs.py); and a bench bidder bids as fast as
    # its answers come back, far above a person's 20 frames a second (hub.messages_per_s).
    server = SpawnedServer({"LIVESELL_AUTH_GUEST_MINTS_PER_IP_PER_MIN": "0",
                            "LIVESELL_HUB_MESSAGES_PER_S": "10000",
                            "LIVESELL_HUB_MESSAGE_BURST": "10000"},
                           cpus=plan.server, redis_cpus=plan.redis)
    base = await asyncio.to_thread(server.start)
    crowd: Clients | None = None
    bidders: list[Bidder] = []
    try:
        async with httpx.AsyncClient(base_url=base, timeout=60) as http:
            room, aid = await _room(http)
            ws_url = base.replace("http://", "ws://") + f"/ws/{room}"
            crowd = Clients(ws_url, viewers, plan.generators, sample=0, track_last=True)
            joined = await asyncio.to_thread(crowd.connected)
            for _ in range(max(2, args.bidders)):
                ws = await connect(ws_url, max_size=2**24, compression=None, open_timeout=60)
                bidders.append(Bidder(ws))
            # --- latency: paced bids, each paired with its event's last receipt
            if crowd is not None:
                await asyncio.to_thread(crowd.reset)
            sent: list[tuple[int, float]] = []
            least = 1
            start = time.monotonic()
            for i in range(args.latency_bids):
                delay = start + i / args.latency_rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                t0 = time.time() * 1000.0
                answer = await bidders[i % 2].bid(aid, least)
                if answer.get("type") == "bid_placed":
                    sent.append((int(answer["amount"]), t0))
                least = _least(answer, least)
            await asyncio.sleep(1.0)  # a bench, not a test: let the last deliveries land
            frames = 0
            latencies: list[float] = []
            if crowd is not None:
                frames = (await asyncio.to_thread(crowd.report))[0]
                for amount, t0 in sent:
                    seq = bidders[0].seq_by_amount.get(amount)
                    if seq is not None and seq in crowd.last:
                        latencies.append(crowd.last[seq] - t0)
            # --- throughput: bidders as fast as their answers come back
            view = (await http.get(f"/api/rooms/{room}/auctions/{aid}")).json()
            shared = {"least": int(view["min_next"])}
            codes: dict[str, int] = {}
            cpu0, rcpu0 = cpu_seconds(server.pid), cpu_seconds(server.redis_pid)
            t_start = time.monotonic()
            stop_at = t_start + args.seconds

            async def loop(b: Bidder, i: int) -> None:
                rng = random.Random(i)
                while time.monotonic() < stop_at:
                    amount = shared["least"] + rng.randrange(0, 3)
                    top = amount + rng.randrange(1, 20) if i % 3 == 0 else None
                    answer = await b.bid(aid, amount, top)
                    kind = str(answer.get("outcome") or answer.get("code"))
                    codes[kind] = codes.get(kind, 0) + 1
                    shared["least"] = _least(answer, shared["least"])
            await asyncio.gather(*(loop(b, i) for i, b in enumerate(bidders[:args.bidders])))
            elapsed = time.monotonic() - t_start
            cpu, rcpu = cpu_seconds(server.pid) - cpu0, cpu_seconds(server.redis_pid) - rcpu0
            after = (await http.get(f"/api/rooms/{room}/auctions/{aid}")).json()
            answers = sum(codes.values())
            accepted = int(after["bids"]) - int(view["bids"])
            return {
                "viewers": viewers, "joined": joined, "bidders": args.bidders,
                "latency_bids": len(sent),
                "bid_to_last_viewer_ms": summary(latencies) if latencies else None,
                "frames_per_viewer_per_bid": round(frames / (viewers * len(sent)), 4)
                if viewers and sent else None,
                "answers_per_s": round(answers / elapsed, 1),
                "accepted_per_s": round(accepted / elapsed, 1),
                "outcomes": codes,
                "server_cpu_us_per_answer": round(cpu * 1e6 / answers, 1) if answers else None,
                "redis_cpu_us_per_answer": round(rcpu * 1e6 / answers, 1) if answers
                else None,
                "server_cpu_util": round(cpu / elapsed, 3)}
    finally:
        for b in bidders:
            await b.close()
        if crowd is not None:
            await asyncio.to_thread(crowd.stop)
        await asyncio.to_thread(server.stop)


async def bench_reference(args: argparse.Namespace) -> dict[str, Any]:
    """bid.lua through bare redis-py, with the production KEYS and ARGV."""
    from redis.asyncio import BlockingConnectionPool, Redis

    from server.core.auction_terms import Auction
    from server.core.keys import RoomKeys
    from server.state.embedded_redis import RedisServer
    from server.state.ledger import script_source
    from server.state.scripts import bid_call, start_auction_call

    with tempfile.TemporaryDirectory(prefix="livesell-bench-redis-") as tmp:
        redis_server = RedisServer(Path(tmp), appendonly=False)
        url = await asyncio.to_thread(redis_server.start)
        pool = BlockingConnectionPool.from_url(url, max_connections=50, decode_responses=True)
        r = Redis(connection_pool=pool)
        try:
            keys = RoomKeys("r_bench")
            await r.set(keys.epoch, "bench")
            await r.hset(keys.stock("p"), mapping={"total": 1, "left": 1, "held": 0, "sold": 0})
            now = int(time.time() * 1000)
            auction = Auction("a_bench", "p", "lot", "USD", 1, ((0, 1),), 3600, None, None,
                              "extend", 10, False, 180, now)
            k, a = start_auction_call("r_bench", auction=auction, salt="bench", terms=json.dumps(
                auction.public()))
            started = await r.register_script(script_source("start_auction"))(keys=k, args=a)
            assert started == ["ok"], started
            bid = r.register_script(script_source("bid"))
            shared = {"least": 1, "n": 0}
            codes: dict[str, int] = {}
            rcpu0 = cpu_seconds(redis_server.pid)
            t_start = time.monotonic()
            stop_at = t_start + args.seconds

            async def loop(i: int) -> None:
                rng = random.Random(i)
                while time.monotonic() < stop_at:
                    shared["n"] += 1
                    amount = shared["least"] + rng.randrange(0, 3)
                    top = amount + rng.randrange(1, 20) if i % 3 == 0 else None
                    k, a = bid_call("r_bench", auction_id="a_bench", bidder=f"v{i}",
                                    nickname="bench", request_id=f"b{shared['n']}",
                                    amount=amount, max_amount=top, verified=False,
                                    answer_ttl_s=600)
                    reply = await bid(keys=k, args=a)
                    answer = orjson.loads(reply[1]) if len(reply) > 1 else {}
                    kind = str(answer.get("outcome") or answer.get("error") or reply[0])
                    codes[kind] = codes.get(kind, 0) + 1
                    least = answer.get("min_next") or (answer.get("details") or {}).get(
                        "min_next")
                    if least:
                        shared["least"] = max(shared["least"], int(least))
            await asyncio.gather(*(loop(i) for i in range(args.bidders)))
            elapsed = time.monotonic() - t_start
            rcpu = cpu_seconds(redis_server.pid) - rcpu0
            accepted = int(await r.hget(keys.auction("a_bench"), "bids") or 0)
        finally:
            await r.aclose()
            await pool.aclose()
            await asyncio.to_thread(redis_server.stop)
    answers = sum(codes.values())
    return {"bidders": args.bidders, "answers_per_s": round(answers / elapsed, 1),
            "accepted_per_s": round(accepted / elapsed, 1), "outcomes": codes,
            "redis_cpu_us_per_answer": round(rcpu * 1e6 / answers, 1) if answers else None}


def _spread(rows: list[dict[str, Any]], key: str, sub: str | None = None) -> dict[str, Any]:
    values = [(r[key] or {}).get(sub) if sub else r[key] for r in rows]
    got = [v for v in values if v is not None]
    if not got:
        return {"median": None}
    return {"median": round(statistics.median(got), 2), "min": min(got), "max": max(got)}


async def main(args: argparse.Namespace) -> dict[str, Any]:
    from loadtest.sampling import machine

    runs: dict[int, list[dict[str, Any]]] = {v: [] for v in args.viewers}
    refs: list[dict[str, Any]] = []
    for run in range(args.runs):
        # Side by side: each run measures every crowd size and then the reference.
        for v in args.viewers:
            one = await bench_livesell(v, args)
            print(f"run {run + 1}: {v} viewers: {one['accepted_per_s']} accepted bids/s, "
                  f"{one['answers_per_s']} answers/s, bid to last viewer "
                  f"{one['bid_to_last_viewer_ms']}, frames per viewer per bid "
                  f"{one['frames_per_viewer_per_bid']}", flush=True)
            runs[v].append(one)
        ref = await bench_reference(args)
        print(f"run {run + 1}: reference bid.lua via redis-py: {ref['accepted_per_s']} "
              f"accepted/s, {ref['answers_per_s']} answers/s", flush=True)
        refs.append(ref)
    table = []
    for v, rows in runs.items():
        cell: dict[str, Any] = {"viewers": v, "runs": len(rows)}
        for key in ("accepted_per_s", "answers_per_s", "server_cpu_us_per_answer",
                    "redis_cpu_us_per_answer", "frames_per_viewer_per_bid"):
            cell[key] = _spread(rows, key)
        for p in ("p50", "p99", "max"):
            cell[f"bid_to_last_viewer_{p}_ms"] = _spread(rows, "bid_to_last_viewer_ms", p)
        # Paired: each run's livesell against the reference run right after it.
        ratios = [r["answers_per_s"] / f["answers_per_s"] for r, f in zip(rows, refs,
                                                                           strict=True)]
        cell["answers_ratio_to_reference"] = round(statistics.median(ratios), 3)
        table.append(cell)
    return {"machine": machine(), "settings": {k: v for k, v in vars(args).items()
                                               if k != "report_dir"},
            "livesell": runs, "reference": refs, "table": table,
            "reference_median": {k: _spread(refs, k) for k in ("accepted_per_s",
                                                               "answers_per_s",
                                                               "redis_cpu_us_per_answer")}}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m loadtest.bench_auction",
                                     description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("--viewers", type=_csv_ints, default=[1000, 5000],
                        help="crowd sizes (default 1000,5000)")
    parser.add_argument("--runs", type=bounded(1, 20, int), default=3)
    parser.add_argument("--seconds", type=bounded(1, 120, float), default=5.0,
                        help="seconds of the throughput part (default 5)")
    parser.add_argument("--bidders", type=bounded(2, 2000, int), default=50,
                        help="bidding connections in the throughput part (default 50)")
    parser.add_argument("--latency-bids", type=bounded(10, 10000, int), default=100)
    parser.add_argument("--latency-rate", type=bounded(1, 200, float), default=10.0,
                        help="bids per second in the latency part (default 10)")
    parser.add_argument("--report-dir", type=Path)
    return parser.parse_args(argv)


def run(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = asyncio.run(main(args))
    out = args.report_dir or Path("loadtest-reports") / (
        f"bench-auction-{time.strftime('%Y%m%d-%H%M%S')}")
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_auction.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    for cell in result["table"]:
        print(json.dumps(cell))
    print(json.dumps({"reference": result["reference_median"]}))
    return 0


if __name__ == "__main__":
    sys.exit(run())
