"""`livesell-loadtest bench`, fan-out part: for each hub (livesell spawned on
its embedded defaults; the `websockets` library's `broadcast()` in
`loadtest.refhub`; Node's `ws` in `loadtest/refhubs/node_hub.js`; the
raw-write floor in `loadtest.floorhub`), each crowd
size and each event rate, the hub sends ~200-byte events at the rate for a few
seconds to every viewer (loadtest/bench_clients.py). The hub process is pinned
to its own core and its CPU time is read from /proc: CPU microseconds per
delivered frame, and the p50/p99 latency from each event's `ts` to its receipt
on a spread sample of connections. Each cell is the median of several runs,
with their min and max beside it; livesell's figures are also given as ratios
to the references and to the floor.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loadtest.bench_clients import Clients
from loadtest.bench_hubs import Hub, LivesellHub, ProcessHub, install_node_ws
from loadtest.stats import cpu_seconds as _cpu
from loadtest.stats import min_median_max, summary

# A run whose viewers got fewer of the expected frames than this is flagged.
MIN_REACH = 0.9


async def bench_fanout(args: argparse.Namespace, say: Any) -> list[dict[str, Any]]:
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return await _bench_fanout(args, say, None, None)
    # This process joins the generator's cores for the fan-out part only: the
    # sale part that follows splits the cores again itself (target.py), from
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


@dataclass
class _Running:
    """A hub on its core and its viewers on the generators' cores."""

    name: str
    hub: Hub
    clients: Clients | None = None
    joined: int = 0


def _make_hub(name: str, args: argparse.Namespace, node_script: Path | None,
              tmp: str) -> Hub:
    if name == "livesell":
        return LivesellHub()
    if name == "websockets":
        return ProcessHub(name, [sys.executable, "-m", "loadtest.refhub"])
    if name == "floor":
        state = ["--state", str(args.floor_state)] if args.floor_state else []
        return ProcessHub(name, [sys.executable, "-m", "loadtest.floorhub", *state],
                          trigger=args.trigger)
    assert node_script is not None
    return ProcessHub(name, ["node", str(node_script)], cwd=Path(tmp))


async def _bench_fanout(args: argparse.Namespace, say: Any, hub_cpus: list[int] | None,
                        gen_cpus: list[int] | None) -> list[dict[str, Any]]:
    """Per crowd size, every hub runs at once with its own viewers (idle but for its
    pings while another is measured), and each run measures the hubs one after
    another: the machine's drift over minutes (the same code's figures moved 20-50 %
    between bench runs) falls on every hub of a run alike, not on whichever hub ran
    in a slow minute (docs/benchmarks.md, issue 13, fourth part)."""
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="livesell-bench-") as tmp:
        node_script = None
        if "node" in args.hubs:
            say("installing the ws package with npm for the Node reference hub")
            node_script = install_node_ws(Path(tmp))
        for viewers in args.viewers:
            # Several hubs and their viewers' processes run at once: each is stopped
            # on the way out even when starting a later one, or stopping another,
            # fails (the exit stack runs every callback and raises after).
            async with contextlib.AsyncExitStack() as running_now:
                running: list[_Running] = []
                for name in args.hubs:
                    one = _Running(name, _make_hub(name, args, node_script, tmp))
                    running.append(one)
                    running_now.push_async_callback(one.hub.stop)
                    await one.hub.start(hub_cpus)
                    one.clients = Clients(one.hub.viewer_url, viewers, gen_cpus)
                    running_now.push_async_callback(asyncio.to_thread, one.clients.stop)
                    one.joined = await asyncio.to_thread(one.clients.connected)
                    held = (f", each holding {args.floor_state} bytes"
                            if name == "floor" and args.floor_state else "")
                    say(f"{name}: {one.joined}/{viewers} viewers connected{held}")
                await asyncio.sleep(2.0)  # let join-time events settle
                for rate in args.rates:
                    for run in range(args.runs):
                        for one in running:
                            rows.append(await _measure(one, viewers, rate, run, args, say))
    return rows


async def _measure(one: _Running, viewers: int, rate: int, run: int,
                   args: argparse.Namespace, say: Any) -> dict[str, Any]:
    """One run of one hub: `rate` events a second for `args.duration` seconds."""
    hub, clients, name, joined = one.hub, one.clients, one.name, one.joined
    assert clients is not None
    await asyncio.to_thread(clients.reset)
    cpu0, rcpu0 = _cpu(hub.pid), _cpu(hub.redis_pid)
    sent = await hub.emit(rate, args.duration)
    await asyncio.sleep(1.0)  # drain
    cpu1, rcpu1 = _cpu(hub.pid), _cpu(hub.redis_pid)
    frames, latency, util, lost = await asyncio.to_thread(clients.report)
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
    reach = _reach(row)
    if reach < MIN_REACH:
        # Figures of a run whose viewers did not get the events (refused joins,
        # closed connections) measure something else: say so where nobody can miss it.
        row["warning"] = f"reach {reach:.3f} < {MIN_REACH}"
        say(f"  WARNING: {name} reached {reach:.1%} of the expected "
            f"deliveries; this run's figures are not comparable")
    say(f"  {name} {viewers} viewers {rate}/s run {run + 1}: "
        f"{row['cpu_us_per_delivery']} µs/delivery, p99 "
        f"{row['p99_ms']} ms, generator {util:.0%}")
    return row


# The per-run figures each cell also gives as min, median and max (its `spread`).
SPREAD_KEYS = ("cpu_us_per_delivery", "p50_ms", "p99_ms", "reach", "redis_cpu_s",
               "generator_util")
# The hubs livesell's cells are given as ratios to.
REFERENCES = ("websockets", "node", "floor")


def _reach(row: dict[str, Any]) -> float:
    return row["deliveries"] / row["expected"] if row["expected"] else 0.0


def medians(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One cell per hub, crowd size and rate: the median of its runs under the
    figure's own key, `spread` with the min, median and max of each figure in
    SPREAD_KEYS (reach per run there; the cell's `reach` is of all its runs
    together), and for livesell its ratios to each reference in the same run."""
    cells: dict[tuple[str, int, int], list[dict[str, Any]]] = {}
    for r in rows:
        cells.setdefault((r["hub"], r["viewers"], r["rate"]), []).append(r)
    out = []
    for (hub, viewers, rate), rs in cells.items():
        spread = {key: min_median_max([_reach(r) if key == "reach" else r[key] for r in rs],
                                      4 if key == "reach" else 3)
                  for key in SPREAD_KEYS}

        def med(key: str, spread: dict[str, Any] = spread) -> float | None:
            return spread[key]["median"] if spread[key] else None

        out.append({"hub": hub, "viewers": viewers, "rate": rate, "runs": len(rs),
                    "cpu_us_per_delivery": med("cpu_us_per_delivery"),
                    "p50_ms": med("p50_ms"), "p99_ms": med("p99_ms"),
                    "redis_cpu_s": med("redis_cpu_s"),
                    "reach": round(sum(r["deliveries"] for r in rs)
                                   / max(1, sum(r["expected"] for r in rs)), 4),
                    "generator_util": med("generator_util"),
                    "spread": spread})
    by = {(m["hub"], m["viewers"], m["rate"]): m for m in out}
    for m in out:
        if m["hub"] != "livesell":
            continue
        for ref in REFERENCES:
            other = by.get((ref, m["viewers"], m["rate"]))
            if other and other["cpu_us_per_delivery"] and m["cpu_us_per_delivery"]:
                m[f"cpu_ratio_to_{ref}"] = round(m["cpu_us_per_delivery"]
                                                 / other["cpu_us_per_delivery"], 2)
            if other and other["p99_ms"] and m["p99_ms"]:
                m[f"p99_ratio_to_{ref}"] = round(m["p99_ms"] / other["p99_ms"], 2)
    return out
