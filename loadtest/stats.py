"""Small statistics for the report: percentiles, latency summaries, bounded
sampling, and CPU/RSS readings of a process from /proc. Pure apart from the
/proc readers."""

from __future__ import annotations

import math
import os
import random
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) of already sorted values, nearest-rank."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q / 100.0 * len(sorted_values)))
    return float(sorted_values[min(rank, len(sorted_values)) - 1])


def summary(values: Sequence[float]) -> dict[str, Any]:
    """count, p50, p95, p99, max and mean, rounded for the report (None when empty)."""
    if not values:
        return {"count": 0, "p50": None, "p95": None, "p99": None, "max": None, "mean": None}
    v = sorted(values)
    return {"count": len(v), "p50": round(percentile(v, 50), 2),
            "p95": round(percentile(v, 95), 2), "p99": round(percentile(v, 99), 2),
            "max": round(v[-1], 2), "mean": round(sum(v) / len(v), 2)}


def min_median_max(values: Iterable[float | None], digits: int = 3) -> dict[str, float] | None:
    """The lowest, median and highest of several runs' figures (a run without the
    figure, None, is left out), rounded; None when no run had it."""
    vals = sorted(float(v) for v in values if v is not None)
    if not vals:
        return None
    return {"min": round(vals[0], digits), "median": round(statistics.median(vals), digits),
            "max": round(vals[-1], digits)}


class Reservoir:
    """A uniform sample of at most `size` values from a stream of any length, so
    memory stays bounded however long the run is."""

    __slots__ = ("rng", "seen", "size", "values")

    def __init__(self, size: int, seed: int = 0) -> None:
        self.size = size
        self.values: list[float] = []
        self.seen = 0
        self.rng = random.Random(seed)

    def add(self, value: float) -> None:
        self.seen += 1
        if len(self.values) < self.size:
            self.values.append(value)
        else:
            j = self.rng.randrange(self.seen)
            if j < self.size:
                self.values[j] = value

    def extend(self, values: Sequence[float]) -> None:
        for v in values:
            self.add(v)


def spread_indices(total: int, wanted: int) -> set[int]:
    """`wanted` indices spread evenly over range(total) (early and late joiners alike)."""
    if wanted <= 0 or total <= 0:
        return set()
    if wanted >= total:
        return set(range(total))
    step = total / wanted
    return {int(i * step) for i in range(wanted)}


@dataclass(frozen=True, slots=True)
class ProcSample:
    cpu_s: float  # user + system CPU seconds so far
    rss_bytes: int


def read_proc(pid: int) -> ProcSample | None:
    """CPU seconds and resident memory of one process, or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        statm = Path(f"/proc/{pid}/statm").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    # Fields after the command: state is [0]; utime and stime are stat fields 14, 15.
    cpu = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    rss = int(statm.split()[1]) * PAGE_SIZE
    return ProcSample(cpu, rss)


def cpu_ticks() -> list[int] | None:
    """The machine's CPU time since boot in clock ticks, the first eight fields of
    /proc/stat's `cpu` line: user nice system idle iowait irq softirq steal (guest
    time is already counted in user and nice); None where unreadable."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = f.readline().split()
    except OSError:
        return None
    if len(fields) < 9 or fields[0] != "cpu":
        return None
    return [int(x) for x in fields[1:9]]


def host_jiffies() -> tuple[int, int] | None:
    """The machine's CPU time stolen by the hypervisor and its total CPU time, in
    clock ticks since boot; None where unreadable. A virtual machine whose host is
    busy runs everything slower, and that shows here: a run whose steal share is
    high measured the neighbours too."""
    ticks = cpu_ticks()
    return None if ticks is None else (ticks[7], sum(ticks))


def steal_between(before: tuple[int, int] | None,
                  after: tuple[int, int] | None) -> float | None:
    """The machine's steal share between two host_jiffies() readings; None when
    either is missing or no time passed."""
    if before is None or after is None or after[1] <= before[1]:
        return None
    return round((after[0] - before[0]) / (after[1] - before[1]), 3)


def steal_share(samples: Sequence[tuple[float, int, int]], start: float,
                end: float) -> float | None:
    """The share of the machine's CPU time stolen between `start` and `end` (same
    clock as the samples' first field), from the last sample at or before `start`
    to the first at or after `end`; None when the samples do not cover the span."""
    before = [s for s in samples if s[0] <= start]
    after = [s for s in samples if s[0] >= end]
    if not before or not after:
        return None
    return steal_between(before[-1][1:], after[0][1:])


def cpu_seconds(pid: int | None) -> float:
    """CPU seconds of one process so far; 0.0 without a pid or once it is gone."""
    sample = read_proc(pid) if pid else None
    return sample.cpu_s if sample else 0.0


def _children_by_parent() -> dict[int, list[int]]:
    """Every process id under its parent's, from one pass over /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        children.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry.name))
    return children


def children_of(pid: int) -> list[int]:
    return _children_by_parent().get(pid, [])


def descendants_of(pid: int) -> list[int]:
    """Every process below `pid` (children, their children, ...), from one pass
    over /proc: a server's helper may be started by one of its own children."""
    children = _children_by_parent()
    out: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def command_of(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(
            errors="replace").strip()
    except OSError:
        return ""
