"""What a chaos run is made of (`livesell-loadtest run SCENARIO --chaos SPEC`):
the SPEC grammar and its checks against the run, a `Fault` and the
`FaultRecord` of what it did, and the bounds and timings every part of a chaos
run shares. Pure: no process, network or clock is touched here.

SPEC is a comma-separated list. T is seconds since the show started (the crowd
has joined; a flash sale's countdown starts there), decimals allowed:

    kill-redis@T            SIGKILL the server's redis-server
    flush-redis@T           FLUSHALL on the server's Redis (its loopback port, with
                            the password the server keeps beside Redis's data)
    stall-store@T:DURATION  another process holds BEGIN EXCLUSIVE on orders.sqlite3
    kill-worker@T           SIGKILL one server worker (--server-processes 2 or more)
    sigterm@T               SIGTERM the server, then restart it on the same port and
                            data directory, as a process manager would
    kill-server@T           SIGKILL one of the servers behind the balancer (--servers 2
                            or more; the one with the most viewers), which stays down:
                            its viewers resume through the balancer on the others

The other parts: loadtest/chaos.py injects the faults on their schedule,
loadtest/chaos_watch.py watches each one's recovery, loadtest/chaos_report.py
turns the records into the report's `chaos` section and its verdicts.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

FAULTS: Final = {
    "kill-redis": "SIGKILL the server's redis-server",
    "flush-redis": "FLUSHALL on the server's Redis",
    "stall-store": "another process holds BEGIN EXCLUSIVE on the order store for DURATION s",
    "kill-worker": "SIGKILL one server worker process (needs --server-processes 2 or more)",
    "sigterm": "SIGTERM the server, restart it on the same port and data directory",
    "kill-server": "SIGKILL one server behind the balancer (needs --servers 2 or more)",
}
# The faults a run of several servers behind a balancer (--servers) takes; the others
# act on the single spawned server's own redis-server, SQLite file or workers.
CLUSTER_FAULTS: Final = frozenset({"kill-server"})
MAX_FAULTS: Final = 20
MAX_SPEC_CHARS: Final = 2000
MAX_T_S: Final = 3600.0
MAX_STALL_S: Final = 300.0
_SECONDS: Final = re.compile(r"\d{1,4}(\.\d{1,6})?")

# Each fault finds its target (a pid, Redis's address and a connection) this long
# before its time, so the blow itself lands on time even on a busy machine; the
# stall's helper process starts earlier still and takes its lock on time.
PREPARE_LEAD_S: Final = 0.5
STALL_LEAD_S: Final = 1.0
STALL_LOCK_WAIT_S: Final = 30.0
EXIT_TIMEOUT_S: Final = 30.0  # SIGTERM to exit; then SIGKILL
REDIS_EXIT_WAIT_S: Final = 10.0
RECOVERY_TIMEOUT_S: Final = 60.0  # how long each fault's recovery is watched at most
READY_SETTLE_S: Final = 3.0  # ready all along for this long: it never went down
VIEWERS_SETTLE_S: Final = 5.0  # nobody dropped within this long: nobody lost the link
PROBE_INTERVAL_S: Final = 0.1
PROBE_TIMEOUT_S: Final = 2.0
PID_POLL_S: Final = 0.05
FINISH_GRACE_S: Final = 5.0


class ChaosError(ValueError):
    """A --chaos SPEC that cannot run: unknown fault, bad time, or a fault that
    does not fit this run."""


def fmt_seconds(x: float) -> str:
    return f"{x:g}"


@dataclass(frozen=True, slots=True)
class Fault:
    kind: str
    at_s: float
    duration_s: float = 0.0  # stall-store only

    @property
    def label(self) -> str:
        tail = f":{fmt_seconds(self.duration_s)}" if self.kind == "stall-store" else ""
        return f"{self.kind}@{fmt_seconds(self.at_s)}{tail}"


@dataclass(slots=True)
class FaultRecord:
    """What happened to one fault: when it went in, how, and its recovery."""

    fault: Fault
    injected_s: float | None = None  # seconds since the show started; None: not injected
    ok: bool = False
    outcome: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    recovery: dict[str, Any] = field(default_factory=dict)





def _seconds(text: str, what: str, where: str) -> float:
    text = text.strip()
    if text.startswith("-"):
        raise ChaosError(f"{where}: {what} {text!r} is negative")
    if not _SECONDS.fullmatch(text):
        raise ChaosError(f"{where}: {what} {text!r} is not a time in seconds "
                         "(digits with an optional decimal part, e.g. 8 or 2.5)")
    value = float(text)
    if value > MAX_T_S:
        raise ChaosError(f"{where}: {what} {text} is above the maximum {fmt_seconds(MAX_T_S)}")
    return value


def parse_chaos(spec: str) -> list[Fault]:
    """The faults of a --chaos SPEC, in the order written; every item is checked
    and the first fault found is named with its position."""
    if len(spec) > MAX_SPEC_CHARS:
        raise ChaosError(f"--chaos: SPEC is {len(spec)} characters, at most "
                         f"{MAX_SPEC_CHARS}")
    if not spec.strip():
        raise ChaosError("--chaos: SPEC is empty; expected FAULT@T[,FAULT@T...], "
                         "e.g. kill-redis@8,stall-store@10:2")
    items = spec.split(",")
    if len(items) > MAX_FAULTS:
        raise ChaosError(f"--chaos: {len(items)} faults, at most {MAX_FAULTS}")
    faults = []
    for n, raw in enumerate(items, 1):
        item = raw.strip()
        where = f"--chaos item {n} {item!r}"
        if not item:
            raise ChaosError(f"--chaos item {n} is empty (two commas, or one at an end)")
        name, at, rest = item.partition("@")
        name = name.strip()
        if name not in FAULTS:
            raise ChaosError(f"{where}: unknown fault {name!r}; expected one of "
                             + ", ".join(FAULTS))
        if not at:
            raise ChaosError(f"{where}: expected {name}@T (T: seconds since the show "
                             "started)")
        t_text, colon, d_text = rest.partition(":")
        at_s = _seconds(t_text, "T", where)
        duration = 0.0
        if name == "stall-store":
            if not colon or not d_text.strip():
                raise ChaosError(f"{where}: stall-store needs a DURATION: "
                                 "stall-store@T:SECONDS")
            duration = _seconds(d_text, "DURATION", where)
            if duration <= 0:
                raise ChaosError(f"{where}: DURATION must be above 0")
            if duration > MAX_STALL_S:
                raise ChaosError(f"{where}: DURATION {fmt_seconds(duration)} is above the maximum "
                                 f"{fmt_seconds(MAX_STALL_S)}")
        elif colon:
            raise ChaosError(f"{where}: {name} takes no DURATION (only stall-store does)")
        faults.append(Fault(name, at_s, duration))
    return faults


def check_chaos(faults: Sequence[Fault], *, spawned: bool, length_s: float,
                length_name: str, server_processes: int, servers: int = 0) -> None:
    """Refuse faults that cannot run here: any against a server the tester did
    not start, a time past the run's length, kill-worker with one process,
    kill-server without several servers behind a balancer (`servers`: --servers,
    0 without it) and the single server's faults with them."""
    if not faults:
        return
    if not spawned:
        raise ChaosError("--chaos: faults go only into a server the load tester spawned "
                         "(--spawn, the default), not into a server given by --url")
    for f in faults:
        if f.at_s > length_s:
            raise ChaosError(f"--chaos {f.label}: T {fmt_seconds(f.at_s)} s is beyond the run's "
                             f"length ({length_name} {fmt_seconds(length_s)} s)")
        if f.kind == "kill-server" and servers < 2:
            raise ChaosError(f"--chaos {f.label}: kill-server needs several servers behind "
                             f"the balancer (--servers 2 or more); this run has "
                             + (f"{servers}" if servers else "one server and no balancer"))
        if servers and f.kind not in CLUSTER_FAULTS:
            raise ChaosError(f"--chaos {f.label}: {f.kind} acts on a single spawned server; "
                             "with --servers only " + ", ".join(sorted(CLUSTER_FAULTS))
                             + " runs")
        if f.kind == "kill-worker" and server_processes < 2:
            raise ChaosError(f"--chaos {f.label}: kill-worker needs several server "
                             f"processes (--server-processes 2 or more); this run has "
                             f"{server_processes}")
