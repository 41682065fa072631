"""What one load-test run is asked to do (`RunOptions`), what it hands to the
report (`RunResult`), and the record its phases share while it runs
(`RunContext`: the scenario, the interrupt, the data the checks read, the
show's clock, the host's counters and the warnings).

The parts of a run each own one concern and meet here: target.py (the server
and the room), pool.py (the generator processes), sampling.py (CPU, memory
and the timeline), show.py and replay.py (the show), verdict.py (settling,
read-back and checks), measure.py (the figures), engine.py (the order of it
all).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from loadtest import checks as checks_mod
from loadtest.chaos import Chaos
from loadtest.chaos_spec import Fault
from loadtest.model import RunData
from loadtest.progress import Progress
from loadtest.scenario import Scenario
from loadtest.trace import ReplayPlan, Trace


@dataclass(slots=True)
class RunOptions:
    scenario: Scenario
    url: str | None = None
    room: str | None = None
    host_key: str | None = None
    admin_key: str | None = None
    progress: bool = True
    trace: Trace | None = None
    server_processes: int | None = None  # spawned server's processes; None: plan_cores
    servers: int | None = None  # several servers behind HAProxy (loadtest/cluster.py)
    redis_cluster: str | None = None  # their Redis Cluster's start-up node (--redis-cluster)
    chaos: list[Fault] = field(default_factory=list)
    chaos_spec: str = ""


@dataclass(slots=True)
class RunResult:
    """What the report needs: settings, measurements, verdicts and chart data."""

    settings: dict[str, Any]
    measurements: dict[str, Any]
    checks: list[checks_mod.Check]
    warnings: list[str]
    interrupted: bool
    charts: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.interrupted and all(c.ok for c in self.checks)


class RunContext:
    """The state every phase of one run reads or adds to."""

    def __init__(self, opts: RunOptions) -> None:
        self.opts = opts
        self.scn = opts.scenario
        self.progress = Progress(opts.progress, self.scn.name)
        self.interrupted = asyncio.Event()
        self.data = RunData()
        self.warnings: list[str] = []
        self.plan: ReplayPlan | None = None  # a trace replay's plan (set by prepare)
        self.chaos: Chaos | None = None
        self.t_show = 0.0  # monotonic time the show started
        self.show_wall = 0.0  # the same instant, epoch seconds
        self.lottery_ids: list[str] = []
        self.final_seq = 0  # the end marker's seq
        self.join_s: float | None = None
        self.fault = ""  # why the run broke off, if it did
        # the host's requests during the show
        self.host_actions: Counter[str] = Counter()
        self.host_ms: list[float] = []
        self.host_events = 0

    def viewer_count(self) -> int:
        if self.plan is not None:
            return self.plan.viewer_count
        return self.scn.viewers.count

    async def sleep(self, seconds: float) -> bool:
        """Sleep unless interrupted; False when interrupted."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.interrupted.wait(), max(0.0, seconds))
        return not self.interrupted.is_set()
