"""Chaos injection for a load-test run (`livesell-loadtest run SCENARIO --chaos
SPEC`): faults put into the server the load tester spawned, on a schedule, and
what each one did to the run.

SPEC is a comma-separated list. T is seconds since the show started (the crowd
has joined; a flash sale's countdown starts there), decimals allowed:

    kill-redis@T            SIGKILL the server's redis-server
    flush-redis@T           FLUSHALL on the server's Redis (its loopback port, with
                            the password the server keeps beside Redis's data)
    stall-store@T:DURATION  another process holds BEGIN EXCLUSIVE on orders.sqlite3
    kill-worker@T           SIGKILL one server worker (--server-processes 2 or more)
    sigterm@T               SIGTERM the server, then restart it on the same port and
                            data directory, as a process manager would

Three parts: the parser and its checks against the run (pure: `parse_chaos`,
`check_chaos`); `Chaos`, which injects the faults one after another and
watches each one's recovery (a new redis-server or worker pid, `/api/ready`
answering 200 again, the viewers back); and `summarize`, a pure function from
the fault records and the generators' timed buy and checkout answers to the
report's `chaos` section and its two verdicts.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import httpx

from loadtest.checks import Check
from loadtest.spawn import (
    START_TIMEOUT_S,
    SpawnedServer,
    SpawnError,
    find_redis,
    find_workers,
    redis_address,
    redis_password,
)
from loadtest.stats import command_of

FAULTS: Final = {
    "kill-redis": "SIGKILL the server's redis-server",
    "flush-redis": "FLUSHALL on the server's Redis",
    "stall-store": "another process holds BEGIN EXCLUSIVE on the order store for DURATION s",
    "kill-worker": "SIGKILL one server worker process (needs --server-processes 2 or more)",
    "sigterm": "SIGTERM the server, restart it on the same port and data directory",
}
MAX_FAULTS: Final = 20
MAX_SPEC_CHARS: Final = 2000
MAX_T_S: Final = 3600.0
MAX_STALL_S: Final = 300.0
_SECONDS: Final = re.compile(r"\d{1,4}(\.\d{1,6})?")

# Answers that say the server refused to act because a part it needs is down: the
# promise is to fail closed like this, not to hang, crash or guess.
FAILED_CLOSED: Final = frozenset({"unavailable", "store_unavailable"})
# No answer in time, or a fault the server did not expect.
NOT_ANSWERED: Final = frozenset({"timeout", "internal"})
SUCCESS: Final = {"buy": "hold", "checkout": "order_placed"}

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

# (sent, answered: seconds since the show started; action "buy" or "checkout";
# outcome: "hold", "order_placed" or the error code)
Answer = tuple[float, float, str, str]


class ChaosError(ValueError):
    """A --chaos SPEC that cannot run: unknown fault, bad time, or a fault that
    does not fit this run."""


class FaultError(RuntimeError):
    """A fault could not be injected (nothing to inject it into)."""


def _fmt(x: float) -> str:
    return f"{x:g}"


@dataclass(frozen=True, slots=True)
class Fault:
    kind: str
    at_s: float
    duration_s: float = 0.0  # stall-store only

    @property
    def label(self) -> str:
        tail = f":{_fmt(self.duration_s)}" if self.kind == "stall-store" else ""
        return f"{self.kind}@{_fmt(self.at_s)}{tail}"


@dataclass(slots=True)
class FaultRecord:
    """What happened to one fault: when it went in, how, and its recovery."""

    fault: Fault
    injected_s: float | None = None  # seconds since the show started; None: not injected
    ok: bool = False
    outcome: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    recovery: dict[str, Any] = field(default_factory=dict)


# ------------------------------------------------------------------ parsing (pure)


def _seconds(text: str, what: str, where: str) -> float:
    text = text.strip()
    if text.startswith("-"):
        raise ChaosError(f"{where}: {what} {text!r} is negative")
    if not _SECONDS.fullmatch(text):
        raise ChaosError(f"{where}: {what} {text!r} is not a time in seconds "
                         "(digits with an optional decimal part, e.g. 8 or 2.5)")
    value = float(text)
    if value > MAX_T_S:
        raise ChaosError(f"{where}: {what} {text} is above the maximum {_fmt(MAX_T_S)}")
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
                raise ChaosError(f"{where}: DURATION {_fmt(duration)} is above the maximum "
                                 f"{_fmt(MAX_STALL_S)}")
        elif colon:
            raise ChaosError(f"{where}: {name} takes no DURATION (only stall-store does)")
        faults.append(Fault(name, at_s, duration))
    return faults


def check_chaos(faults: Sequence[Fault], *, spawned: bool, length_s: float,
                length_name: str, server_processes: int) -> None:
    """Refuse faults that cannot run here: any against a server the tester did
    not start, a time past the run's length, kill-worker with one process."""
    if not faults:
        return
    if not spawned:
        raise ChaosError("--chaos: faults go only into a server the load tester spawned "
                         "(--spawn, the default), not into a server given by --url")
    for f in faults:
        if f.at_s > length_s:
            raise ChaosError(f"--chaos {f.label}: T {_fmt(f.at_s)} s is beyond the run's "
                             f"length ({length_name} {_fmt(length_s)} s)")
        if f.kind == "kill-worker" and server_processes < 2:
            raise ChaosError(f"--chaos {f.label}: kill-worker needs several server "
                             f"processes (--server-processes 2 or more); this run has "
                             f"{server_processes}")


# ------------------------------------------------------------------ injection


def _alive(pid: int, needle: str) -> bool:
    return needle in command_of(pid)


def _gone(pid: int, needle: str, within_s: float) -> bool:
    """Wait (bounded) until a process that is not our child has exited."""
    deadline = time.monotonic() + within_s
    while _alive(pid, needle):
        if time.monotonic() > deadline:
            return False
        time.sleep(PID_POLL_S)
    return True


def _wait_exit(proc: subprocess.Popen[bytes], timeout: float) -> tuple[int, bool]:
    """The exit status, and whether it took a SIGKILL after `timeout`."""
    try:
        return proc.wait(timeout), False
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait(), True


class Chaos:
    """Injects the faults of one run into its spawned server and watches each
    one's recovery until it recovered, RECOVERY_TIMEOUT_S passed, or `stop`."""

    def __init__(self, faults: Sequence[Fault], server: SpawnedServer, base: str,
                 t0_wall: float, connected: Callable[[], int],
                 note: Callable[[str], None]) -> None:
        self.faults = list(faults)
        self.server = server
        self.base = base
        self.t0 = t0_wall  # epoch seconds of the show's start: the schedule's zero
        self.connected = connected
        self.note = note
        self.records: list[FaultRecord] = []
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._watchers: set[asyncio.Task[None]] = set()
        self._helpers: list[asyncio.subprocess.Process] = []

    def now_s(self) -> float:
        return time.time() - self.t0

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def _pause(self, seconds: float) -> bool:
        """Sleep unless stopped; False when stopped."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), max(0.0, seconds))
        return not self._stop.is_set()

    async def _run(self) -> None:
        # A fault that takes time (a restart) delays the next one; each record keeps
        # its actual time. The stall's helper process starts a little early.
        def launch_at(f: Fault) -> float:
            return f.at_s - (STALL_LEAD_S if f.kind == "stall-store" else PREPARE_LEAD_S)

        for fault in sorted(self.faults, key=launch_at):
            if not await self._pause(launch_at(fault) - self.now_s()):
                return
            rec = FaultRecord(fault)
            self.records.append(rec)
            try:
                await self._inject(rec)
            except Exception as exc:  # reported as a fault not injected, the run goes on
                rec.ok = False
                rec.outcome = f"not injected: {type(exc).__name__}: {exc}"
            if rec.outcome:
                self.note(f"chaos {fault.label}: {rec.outcome}")

    async def _inject(self, rec: FaultRecord) -> None:
        kind = rec.fault.kind
        if kind == "kill-redis":
            await self._kill_redis(rec)
        elif kind == "flush-redis":
            await self._flush_redis(rec)
        elif kind == "stall-store":
            await self._stall_store(rec)
        elif kind == "kill-worker":
            await self._kill_worker(rec)
        elif kind == "sigterm":
            await self._sigterm(rec)
        else:  # pragma: no cover - parse_chaos admits only the kinds above
            raise FaultError(f"unknown fault {kind!r}")

    def _watch(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._watchers.add(task)
        task.add_done_callback(self._watchers.discard)

    async def _until(self, rec: FaultRecord) -> None:
        """Wait for the fault's time, its target found."""
        if not await self._pause(rec.fault.at_s - self.now_s()):
            raise FaultError("the run ended first")

    async def _redis_now(self, found: int | None) -> int:
        """The redis-server to hit: the one found ahead if it still runs."""
        if found is not None and _alive(found, "redis-server"):
            return found
        pid = await asyncio.to_thread(find_redis, self.server.pid)
        if pid is None:
            raise FaultError("no redis-server runs below the server")
        return pid

    def _since(self, rec: FaultRecord) -> float:
        assert rec.injected_s is not None
        return round(self.now_s() - rec.injected_s, 3)

    # ------------------------------------------------------------ the faults

    async def _kill_redis(self, rec: FaultRecord) -> None:
        ahead = await asyncio.to_thread(find_redis, self.server.pid)
        await self._until(rec)
        pid = await self._redis_now(ahead)
        os.kill(pid, signal.SIGKILL)
        rec.injected_s = self.now_s()
        rec.ok = True
        rec.details["killed_pid"] = pid
        rec.outcome = f"SIGKILL sent to redis-server pid {pid}"
        self._watch(self._watch_redis(rec, pid))
        self._watch(self._watch_ready(rec))
        self._watch(self._watch_viewers(rec))

    async def _flush_redis(self, rec: FaultRecord) -> None:
        from redis.asyncio import Redis

        pid = await self._redis_now(None)
        host, port = redis_address(pid)
        if not ipaddress.ip_address(host).is_loopback:
            raise FaultError(f"redis-server {pid} listens on {host}, not a loopback "
                             "address; chaos only touches this machine")
        password = await asyncio.to_thread(redis_password, pid)
        client = Redis(host=host, port=port, password=password, socket_timeout=5.0,
                       socket_connect_timeout=5.0)
        try:
            await client.ping()  # connected ahead: FLUSHALL goes out on time
            await self._until(rec)
            sent = self.now_s()
            answer = await client.flushall()
        finally:
            await client.aclose()
        rec.injected_s = sent
        rec.ok = answer is True
        rec.details.update(redis_pid=pid, address=f"{host}:{port}",
                           answer="OK" if answer is True else repr(answer),
                           answered_after_ms=round((self.now_s() - sent) * 1000.0, 1))
        rec.outcome = (f"FLUSHALL on {host}:{port} (redis-server pid {pid}) answered "
                       f"{rec.details['answer']}")
        self._watch(self._watch_ready(rec))
        self._watch(self._watch_viewers(rec))

    async def _stall_store(self, rec: FaultRecord) -> None:
        path = self.server.store_path
        if not path.is_file():
            raise FaultError(f"no order store at {path}")
        at_epoch = self.t0 + rec.fault.at_s
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "loadtest.stall", str(path), f"{at_epoch:.6f}",
            _fmt(rec.fault.duration_s), stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        self._helpers.append(proc)
        rec.details.update(helper_pid=proc.pid, path=path.name)
        self._watch(self._watch_stall(rec, proc))

    async def _kill_worker(self, rec: FaultRecord) -> None:
        workers = await asyncio.to_thread(find_workers, self.server.pid)
        await self._until(rec)
        if not all(_alive(p, "spawn_main") for p in workers):
            workers = await asyncio.to_thread(find_workers, self.server.pid)
        if len(workers) < 2:
            raise FaultError(f"the server runs {len(workers)} worker process(es); "
                             "kill-worker needs 2 or more")
        victim = workers[0]
        os.kill(victim, signal.SIGKILL)
        rec.injected_s = self.now_s()
        rec.ok = True
        rec.details.update(killed_pid=victim, workers_before=workers)
        rec.outcome = f"SIGKILL sent to worker pid {victim} (of {len(workers)})"
        self._watch(self._watch_worker(rec, victim, len(workers)))
        self._watch(self._watch_ready(rec))
        self._watch(self._watch_viewers(rec))

    async def _sigterm(self, rec: FaultRecord) -> None:
        server = self.server
        proc = server.proc
        if proc is None or proc.poll() is not None:
            raise FaultError("the server is not running")
        old_pid = proc.pid
        old_redis = await asyncio.to_thread(find_redis, old_pid)
        await self._until(rec)
        if proc.poll() is not None:
            raise FaultError(f"the server (pid {old_pid}) had exited by then")
        proc.send_signal(signal.SIGTERM)
        rec.injected_s = self.now_s()
        rec.details.update(old_pid=old_pid, old_redis_pid=old_redis)
        self._watch(self._watch_viewers(rec))
        code, killed = await asyncio.to_thread(_wait_exit, proc, EXIT_TIMEOUT_S)
        rec.details.update(exit_code=code, exited_after_s=self._since(rec))
        # Ready again means the restarted server: probing starts once the old one is
        # gone (while it drains it may still answer).
        self._watch(self._watch_ready(rec))
        if killed:
            rec.details["sigkilled_after_s"] = EXIT_TIMEOUT_S
        # The server's shutdown stops its redis-server. One still running broke a
        # promise (it is recorded, and fails the verdict); the restarted server stops
        # it itself, with SIGTERM so it keeps its append-only file (orphan check).
        if old_redis is not None and not await asyncio.to_thread(
                _gone, old_redis, "redis-server", REDIS_EXIT_WAIT_S):
            rec.details["redis_outlived_server"] = old_redis
        try:
            base = await asyncio.to_thread(server.restart)
        except SpawnError as exc:
            rec.outcome = (f"SIGTERM to server pid {old_pid}: exited with {code}; the restart "
                           f"failed: {str(exc)[:500]}")
            return
        rec.details.update(new_pid=server.pid, restarted_after_s=self._since(rec),
                           new_redis_pid=server.redis_pid, same_url=base == self.base)
        rec.ok = base == self.base and not killed
        how = "was SIGKILLed after not exiting" if killed else f"exited with {code}"
        rec.outcome = (f"SIGTERM to server pid {old_pid}: {how} after "
                       f"{rec.details['exited_after_s']:.2f}s; restarted as pid {server.pid} "
                       f"on {'the same' if base == self.base else 'ANOTHER'} port, answering "
                       f"{rec.details['restarted_after_s']:.2f}s after the signal")

    # ------------------------------------------------------------ watching recovery

    async def _watch_redis(self, rec: FaultRecord, old: int) -> None:
        assert rec.injected_s is not None
        while self.now_s() - rec.injected_s < RECOVERY_TIMEOUT_S:
            pid = await asyncio.to_thread(find_redis, self.server.pid)
            if pid is not None and pid != old:
                rec.details.update(new_pid=pid, new_pid_after_s=self._since(rec))
                await asyncio.to_thread(self.server.refresh)
                return
            if not await self._pause(PID_POLL_S):
                break
        rec.details["new_pid"] = None

    async def _watch_worker(self, rec: FaultRecord, old: int, count: int) -> None:
        assert rec.injected_s is not None
        before = set(rec.details["workers_before"])
        while self.now_s() - rec.injected_s < RECOVERY_TIMEOUT_S:
            workers = await asyncio.to_thread(find_workers, self.server.pid)
            fresh = [p for p in workers if p not in before]
            if fresh and len(workers) >= count and old not in workers:
                rec.details.update(new_pid=fresh[0], new_pid_after_s=self._since(rec))
                await asyncio.to_thread(self.server.refresh)
                return
            if not await self._pause(PID_POLL_S):
                break
        rec.details["new_pid"] = None

    async def _watch_stall(self, rec: FaultRecord, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None and proc.stderr is not None
        label = rec.fault.label
        try:
            line = await asyncio.wait_for(proc.stdout.readline(),
                                          STALL_LEAD_S + STALL_LOCK_WAIT_S + 30.0)
        except TimeoutError:
            line = b""
        word, _, rest = line.decode(errors="replace").strip().partition(" ")
        if word != "held":
            err = (await proc.stderr.read()).decode(errors="replace").strip()
            rec.outcome = (f"not injected: the lock helper (pid {proc.pid}) did not take the "
                           f"lock: {(rest or err or 'no output')[-500:]}")
            self.note(f"chaos {label}: {rec.outcome}")
            return
        held_from = float(rest.split()[0]) - self.t0
        rec.injected_s = held_from
        rec.details["held_from_s"] = round(held_from, 3)
        rec.outcome = f"BEGIN EXCLUSIVE held by pid {proc.pid} from {held_from:.2f}s"
        self.note(f"chaos {label}: {rec.outcome}")
        self._watch(self._watch_ready(rec))
        line = await proc.stdout.readline()  # EOF if stopped: the helper is killed
        word, _, rest = line.decode(errors="replace").strip().partition(" ")
        if word == "released":
            held_to = float(rest.split()[0]) - self.t0
            rec.details.update(held_to_s=round(held_to, 3),
                               held_s=round(held_to - held_from, 3))
            rec.ok = True
            rec.outcome = (f"BEGIN EXCLUSIVE on {rec.details['path']} held by pid {proc.pid} "
                           f"from {held_from:.2f}s to {held_to:.2f}s "
                           f"({held_to - held_from:.2f}s)")
        else:
            rec.details["held_to_s"] = round(self.now_s(), 3)
            rec.outcome = (f"BEGIN EXCLUSIVE held by pid {proc.pid} from {held_from:.2f}s; "
                           "still held when the run ended, the helper was killed")
        rec.details["helper_exit"] = await proc.wait()
        self.note(f"chaos {label}: {rec.outcome}")

    async def _watch_ready(self, rec: FaultRecord) -> None:
        """Probe /api/ready (or /api/health where there is no /api/ready) until it
        answers 200 again after answering otherwise; 200 all along for
        READY_SETTLE_S counts as never down. A fresh connection per probe, so a
        probe reaches whichever process accepts it, as a load balancer's would."""
        assert rec.injected_s is not None
        start = rec.injected_s
        endpoint = "/api/ready"
        not_ready = 0
        first_ok: float | None = None
        ready_at: float | None = None
        first_down: float | None = None
        async with httpx.AsyncClient(base_url=self.base, timeout=PROBE_TIMEOUT_S,
                                     trust_env=False,
                                     limits=httpx.Limits(max_keepalive_connections=0)) as http:
            while self.now_s() - start < RECOVERY_TIMEOUT_S:
                try:
                    status = (await http.get(endpoint)).status_code
                except httpx.HTTPError:
                    status = 0
                if status == 404 and endpoint == "/api/ready":
                    endpoint = "/api/health"
                    continue
                t = self.now_s()
                if status == 200:
                    first_ok = t if first_ok is None else first_ok
                    if not_ready:
                        ready_at = t
                        break
                    if t - start >= READY_SETTLE_S:
                        ready_at = first_ok
                        break
                else:
                    not_ready += 1
                    first_down = t if first_down is None else first_down
                    first_ok = None
                if not await self._pause(PROBE_INTERVAL_S):
                    break
        rec.recovery.update(
            ready_endpoint=endpoint, not_ready_probes=not_ready,
            ready_watched_s=round(self.now_s() - start, 3),
            not_ready_from_s=round(first_down - start, 3) if first_down is not None else None,
            ready_after_s=round(ready_at - start, 3) if ready_at is not None else None)

    async def _watch_viewers(self, rec: FaultRecord) -> None:
        """Connected viewers (from the generators' half-second progress) until as many
        are connected as before the fault."""
        assert rec.injected_s is not None
        start = rec.injected_s
        before = low = self.connected()
        back: float | None = None
        while self.now_s() - start < RECOVERY_TIMEOUT_S:
            if not await self._pause(0.25):
                break
            n = self.connected()
            low = min(low, n)
            if low < before and n >= before:
                back = self.now_s()
                break
            if low == before and self.now_s() - start >= VIEWERS_SETTLE_S:
                break
        rec.recovery.update(viewers_before=before, viewers_low=low,
                            viewers_back_after_s=round(back - start, 3) if back else None)

    # ------------------------------------------------------------ ending

    async def injected(self, within_s: float) -> None:
        """Wait until every fault went in (a restart may still be under way)."""
        if self._task is not None:
            await asyncio.wait({self._task}, timeout=within_s)

    async def finish(self, grace_s: float = FINISH_GRACE_S) -> None:
        """Give the watchers a little longer to see recovery, then stop."""
        if self._watchers:
            await asyncio.wait(set(self._watchers), timeout=grace_s)
        await self.stop()

    async def stop(self) -> None:
        """Stop injecting and watching; a fault in progress (a restart) completes,
        stall helpers still holding their lock are killed."""
        self._stop.set()
        if self._task is not None:
            await asyncio.wait({self._task},
                               timeout=EXIT_TIMEOUT_S + REDIS_EXIT_WAIT_S + START_TIMEOUT_S)
            if not self._task.done():
                self._task.cancel()
        for proc in self._helpers:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
        if self._watchers:
            _, pending = await asyncio.wait(set(self._watchers), timeout=10.0)
            for task in pending:
                task.cancel()
        for proc in self._helpers:
            with contextlib.suppress(ProcessLookupError):
                await asyncio.wait_for(proc.wait(), 10.0)

    def summary(self, answers: Sequence[Answer], spec: str) -> tuple[dict[str, Any],
                                                                     list[Check]]:
        return summarize(self.records, self.faults, answers, spec)


# ------------------------------------------------------------------ the report (pure)


def _r(x: float | None) -> float | None:
    return round(x, 3) if x is not None else None


def summarize(records: Sequence[FaultRecord], scheduled: Sequence[Fault],
              answers: Sequence[Answer], spec: str) -> tuple[dict[str, Any], list[Check]]:
    """The report's `chaos` section and its verdicts, from the fault records and
    every timed buy and checkout answer of the run.

    Per fault: the answers that failed closed (codes in FAILED_CLOSED) from its
    injection to the next fault's, with the first and last and their count; and
    recovery: from the injection to the first buy *sent after it* that got a
    hold (and that the ledger answered at all, e.g. sold_out once the stock is
    gone), to the first checkout sent after it that placed an order, and to
    /api/ready answering 200 again (measured while the run went on)."""
    missing = Counter(scheduled) - Counter(r.fault for r in records)
    all_records = [*records, *(FaultRecord(f, outcome="not injected: the run ended first")
                               for f in missing.elements())]
    injected = sorted(r.injected_s for r in all_records if r.injected_s is not None)
    faults_out = []
    for rec in sorted(all_records, key=lambda r: r.fault.at_s):
        entry: dict[str, Any] = {
            "fault": rec.fault.kind, "spec": rec.fault.label,
            "scheduled_s": rec.fault.at_s, "injected_s": _r(rec.injected_s),
            "late_s": _r(rec.injected_s - rec.fault.at_s) if rec.injected_s is not None
            else None,
            "ok": rec.ok, "outcome": rec.outcome, **rec.details,
        }
        if rec.fault.kind == "stall-store":
            entry["duration_s"] = rec.fault.duration_s
        if rec.injected_s is not None:
            entry.update(_answers_around(rec, injected, answers))
        faults_out.append(entry)
    failed_total = sum(1 for a in answers if a[3] in FAILED_CLOSED)
    section = {
        "spec": spec,
        "clock": "seconds since the show started",
        "failed_closed_codes": sorted(FAILED_CLOSED),
        "answers_timed": len(answers),
        "failed_closed_answers": failed_total,
        "faults": faults_out,
    }
    return section, _verdicts(faults_out)


def _answers_around(rec: FaultRecord, injected: list[float],
                    answers: Sequence[Answer]) -> dict[str, Any]:
    start = rec.injected_s
    assert start is not None
    later = [t for t in injected if t > start]
    end = later[0] if later else float("inf")
    window = [a for a in answers if start <= a[1] < end]
    failed = [a for a in window if a[3] in FAILED_CLOSED]
    first = min((a[1] for a in failed), default=None)
    last = max((a[1] for a in failed), default=None)
    sent_after = [a for a in answers if a[0] >= start]

    def first_answer(ok: Callable[[Answer], bool]) -> float | None:
        t = min((a[1] for a in sent_after if ok(a)), default=None)
        return _r(t - start) if t is not None else None

    buys_after = sum(1 for a in sent_after if a[2] == "buy")
    checkouts_after = sum(1 for a in sent_after if a[2] == "checkout")
    return {
        "failed_closed": {
            "count": len(failed),
            "by_action": dict(Counter(a[2] for a in failed)),
            "by_code": dict(Counter(a[3] for a in failed)),
            "first_s": _r(first), "last_s": _r(last),
            "window_s": _r(last - first) if first is not None and last is not None else None,
            "first_after_injection_s": _r(first - start) if first is not None else None,
            "last_after_injection_s": _r(last - start) if last is not None else None,
        },
        # Everything else that was not a success: business refusals (sold_out), no
        # answer (timeout), and answers a fault should not cause (product_not_found
        # after Redis lost its data).
        "other_errors": dict(Counter(a[3] for a in window if a[3] not in FAILED_CLOSED
                                     and a[3] != SUCCESS.get(a[2]))),
        "answers_until_next_fault": len(window),
        "recovery": {
            **rec.recovery,
            "buys_sent_after": buys_after,
            "first_hold_after_s": first_answer(
                lambda a: a[2] == "buy" and a[3] == SUCCESS["buy"]),
            "first_buy_answered_after_s": first_answer(
                lambda a: a[2] == "buy" and a[3] not in FAILED_CLOSED | NOT_ANSWERED),
            "checkouts_sent_after": checkouts_after,
            "first_order_after_s": first_answer(
                lambda a: a[2] == "checkout" and a[3] == SUCCESS["checkout"]),
        },
    }


def _verdicts(faults: list[dict[str, Any]]) -> list[Check]:
    not_in = [f"{f['spec']}: {f['outcome'] or 'not injected'}" for f in faults if not f["ok"]]
    injected = Check("chaos: every scheduled fault was injected", not not_in,
                     "; ".join(not_in) if not_in else
                     f"{len(faults)} fault(s) injected: " + ", ".join(
                         f"{f['spec']} at {f['injected_s']:.2f}s" for f in faults))
    problems = []
    for f in faults:
        if f["injected_s"] is None:
            continue
        rec = f.get("recovery", {})
        if f.get("redis_outlived_server"):
            problems.append(f"{f['spec']}: redis-server pid {f['redis_outlived_server']} "
                            "outlived its server")
        if rec.get("ready_after_s") is None:
            watched = rec.get("ready_watched_s")
            within = (f"within {_fmt(RECOVERY_TIMEOUT_S)}s"
                      if watched is None or watched >= RECOVERY_TIMEOUT_S else
                      f"in the {watched:.1f}s watched before the run ended")
            problems.append(f"{f['spec']}: {rec.get('ready_endpoint', '/api/ready')} did not "
                            f"answer 200 again {within}")
        if rec.get("buys_sent_after") and rec.get("first_buy_answered_after_s") is None:
            problems.append(f"{f['spec']}: {rec['buys_sent_after']} buy(s) sent after the "
                            "fault, none answered by the ledger (only failed-closed or no "
                            "answers)")
    recovered = Check("chaos: the server recovered after every fault", not problems,
                      "; ".join(problems) if problems else
                      "ready again and buys answered after every injected fault")
    return [injected, recovered]


def _secs(x: Any) -> str:
    return f"{x:.2f}s" if isinstance(x, int | float) else "-"


def describe(entry: dict[str, Any]) -> dict[str, str]:
    """One fault of the report's `chaos` section in words: what went in, how
    long answers failed closed, and the recovery (for the summary and the page)."""
    fc = entry.get("failed_closed")
    rec = entry.get("recovery", {})
    when = (f"at {_secs(entry['injected_s'])} (scheduled {_fmt(entry['scheduled_s'])}s)"
            if entry.get("injected_s") is not None else
            f"scheduled {_fmt(entry['scheduled_s'])}s")
    what = entry.get("outcome") or "not injected"
    if entry.get("fault") in ("kill-redis", "kill-worker") and "new_pid" in entry:
        who = "redis-server" if entry["fault"] == "kill-redis" else "worker"
        what += (f"; new {who} pid {entry['new_pid']} after {_secs(entry['new_pid_after_s'])}"
                 if entry["new_pid"] else f"; no new {who} seen")
    if fc is None:
        failed = "-"
    elif not fc["count"]:
        failed = "no answer failed closed"
    else:
        by = ", ".join(f"{k} {v}" for k, v in sorted(fc["by_action"].items()))
        failed = (f"{fc['count']} answer(s) ({by}) from {_secs(fc['first_s'])} to "
                  f"{_secs(fc['last_s'])} ({_secs(fc['window_s'])})")
    if entry.get("other_errors"):
        failed += "; other errors until the next fault: " + ", ".join(
            f"{k} {v}" for k, v in sorted(entry["other_errors"].items()))
    parts = []
    if fc is not None:
        if rec.get("first_hold_after_s") is not None:
            parts.append(f"first hold {_secs(rec['first_hold_after_s'])} after")
        elif rec.get("first_buy_answered_after_s") is not None:
            parts.append(f"first buy answered {_secs(rec['first_buy_answered_after_s'])} "
                         "after (no hold)")
        elif rec.get("buys_sent_after"):
            parts.append(f"none of {rec['buys_sent_after']} buy(s) sent after was answered")
        else:
            parts.append("no buy sent after")
        if rec.get("first_order_after_s") is not None:
            parts.append(f"first order {_secs(rec['first_order_after_s'])} after")
        if "ready_endpoint" in rec:
            if rec.get("ready_after_s") is None:
                parts.append(f"{rec['ready_endpoint']} not 200 again")
            elif not rec.get("not_ready_probes"):
                parts.append(f"{rec['ready_endpoint']} 200 throughout")
            else:
                parts.append(f"{rec['ready_endpoint']} 200 again after "
                             f"{_secs(rec['ready_after_s'])}")
        if rec.get("viewers_back_after_s") is not None:
            parts.append(f"viewers back ({rec['viewers_before']}, low {rec['viewers_low']}) "
                         f"after {_secs(rec['viewers_back_after_s'])}")
        elif "viewers_low" in rec and rec["viewers_low"] < rec["viewers_before"]:
            parts.append(f"viewers not all back ({rec['viewers_low']} of "
                         f"{rec['viewers_before']} at the lowest)")
    return {"fault": entry["spec"], "when": when, "what": what, "failed_closed": failed,
            "recovery": "; ".join(parts) or "-"}
