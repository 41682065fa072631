"""Benchmark: what idle rooms cost a server (docs/benchmarks.md, "Idle rooms").

    python -m loadtest.idle_rooms [--rooms 10,5000] [--runs 3] [--idle-s 20]
                                  [--server-src DIR]

For each room count and run: start `python -m server serve` (embedded Redis,
a fresh data directory, loopback, a free port), create the rooms over HTTP,
let the server settle, then read the server process's CPU time (utime + stime
from /proc/<pid>/stat, and its redis-server child's) over `--idle-s` seconds
of idleness. Then, in one more room, a viewer waits for a sale scheduled 3 s
ahead, and the lateness of its `sale_open` is measured against the sale's
`starts_at` (one clock: the same machine). Prints one JSON line per run and
the medians per room count. `--server-src` runs another checkout's server
code (e.g. an export of main, to compare before and after).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
from websockets.asyncio.client import connect

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    """utime + stime of a process, in seconds."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def children(pid: int) -> list[int]:
    """Child processes of every thread of `pid` (the embedded redis-server is
    forked by the supervisor's thread, not the main one)."""
    found: list[int] = []
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/children") as f:
                found += [int(p) for p in f.read().split()]
        except OSError:
            continue
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _ready(base: str, proc: subprocess.Popen[bytes], limit_s: float = 60) -> None:
    deadline = time.monotonic() + limit_s
    async with httpx.AsyncClient(base_url=base, timeout=5) as http:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}")
            try:
                if (await http.get("/api/ready")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError("server not ready in time")


def one_run(rooms: int, idle_s: float, server_src: Path | None) -> dict[str, Any]:
    """Start a server on loopback, measure, stop it and remove its data."""
    data = Path(tempfile.mkdtemp(prefix="livesell-idle-"))
    port = free_port()
    env = dict(os.environ)
    if server_src is not None:
        env["PYTHONPATH"] = str(server_src)
    proc = subprocess.Popen(
        [sys.executable, "-m", "server", "serve", "--host", "127.0.0.1", "--port", str(port),
         "--data-dir", str(data), "--log-level", "warning"],
        env=env, cwd=server_src or Path.cwd(), stdout=subprocess.DEVNULL)
    try:
        return asyncio.run(measure(proc, port, rooms, idle_s))
    finally:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(data, ignore_errors=True)


async def measure(proc: subprocess.Popen[bytes], port: int, rooms: int,
                  idle_s: float) -> dict[str, Any]:
    base = f"http://127.0.0.1:{port}"
    await _ready(base, proc)
    async with httpx.AsyncClient(base_url=base, timeout=60) as http:
        gate = asyncio.Semaphore(16)

        async def make(i: int) -> None:
            async with gate:
                r = await http.post("/api/rooms", json={"title": f"Idle {i}"})
                r.raise_for_status()

        started = time.monotonic()
        await asyncio.gather(*(make(i) for i in range(rooms)))
        create_s = time.monotonic() - started
        await asyncio.sleep(3.0)  # settle: room caches refreshed, writes flushed
        redis_pids = children(proc.pid)
        before = cpu_s(proc.pid), sum(cpu_s(p) for p in redis_pids)
        await asyncio.sleep(idle_s)
        after = cpu_s(proc.pid), sum(cpu_s(p) for p in redis_pids)
        r = await http.post("/api/rooms", json={"title": "The sale"})
        room = r.json()
        room_id, key = room["room"]["room_id"], room["host_key"]
        headers = {"X-Host-Key": key}
        product = (await http.post(f"/api/rooms/{room_id}/products", headers=headers,
                                   json={"title": "Mug", "price": 1000,
                                         "currency": "EUR", "stock": 5})).json()
        async with connect(f"ws://127.0.0.1:{port}/ws/{room_id}",
                           compression=None) as ws:
            sale = (await http.post(f"/api/rooms/{room_id}/sales", headers=headers, json={
                "product_id": product["product_id"], "price": 900, "units": 5,
                "limit_per_buyer": 1, "starts_in_s": 3, "duration_s": 60})).json()
            while True:
                frame = orjson.loads(await asyncio.wait_for(ws.recv(), 30))
                if frame.get("type") == "sale_open":
                    late_ms = time.time() * 1000 - sale["starts_at"]
                    break
    return {"rooms": rooms, "create_s": round(create_s, 2),
            "server_cpu_pct": round(100 * (after[0] - before[0]) / idle_s, 2),
            "redis_cpu_pct": round(100 * (after[1] - before[1]) / idle_s, 2),
            "sale_open_late_ms": round(late_ms, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.idle_rooms",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--rooms", default="10,5000",
                        help="comma-separated room counts (default 10,5000)")
    parser.add_argument("--runs", type=int, default=3, choices=range(1, 21),
                        metavar="N", help="runs per room count (1-20, default 3)")
    parser.add_argument("--idle-s", type=float, default=20.0,
                        help="seconds of idleness measured (default 20)")
    parser.add_argument("--server-src", type=Path,
                        help="run the server code found in this directory instead")
    args = parser.parse_args(argv)
    try:
        counts = [int(c) for c in args.rooms.split(",")]
    except ValueError:
        parser.error(f"--rooms: {args.rooms!r} is not a list of integers")
    if not all(1 <= c <= 50_000 for c in counts):
        parser.error("--rooms: each count must be between 1 and 50000")
    if not 1.0 <= args.idle_s <= 600.0:
        parser.error("--idle-s: must be between 1 and 600")
    results: dict[int, list[dict[str, Any]]] = {}
    for count in counts:
        for _ in range(args.runs):
            row = one_run(count, args.idle_s, args.server_src)
            print(json.dumps(row), flush=True)
            results.setdefault(count, []).append(row)
    for count, rows in results.items():
        summary = {"rooms": count, "runs": len(rows)}
        for key in ("create_s", "server_cpu_pct", "redis_cpu_pct", "sale_open_late_ms"):
            summary[f"median_{key}"] = statistics.median(r[key] for r in rows)
        print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
