"""Chaos injection for a load-test run (`livesell-loadtest run SCENARIO --chaos
SPEC`): `Chaos` puts the faults of the SPEC (loadtest/chaos_spec.py) into the
server the load tester spawned, one after another on the show's clock, and
starts the watchers of each one's recovery (loadtest/chaos_watch.py, its base).
Each fault finds its target a little ahead (a pid below the server, Redis's
loopback address and a connection, the stall helper started early) so the
blow itself lands on time: SIGKILL to redis-server, FLUSHALL, the stall
helper's BEGIN EXCLUSIVE (`python -m loadtest.stall`), SIGKILL to a worker,
SIGTERM to the server and its restart, SIGKILL to one of several servers behind
the balancer (--servers). `summary` hands the records to loadtest/chaos_report.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from loadtest.chaos_report import Answer, summarize
from loadtest.chaos_spec import (
    EXIT_TIMEOUT_S,
    FINISH_GRACE_S,
    PID_POLL_S,
    PREPARE_LEAD_S,
    REDIS_EXIT_WAIT_S,
    STALL_LEAD_S,
    Fault,
    FaultRecord,
    fmt_seconds,
)
from loadtest.chaos_watch import Watch
from loadtest.checks import Check
from loadtest.cluster import ServerCluster
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


class FaultError(RuntimeError):
    """A fault could not be injected (nothing to inject it into)."""


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


class Chaos(Watch):
    """Injects the faults of one run into its spawned server and watches each
    one's recovery until it recovered, RECOVERY_TIMEOUT_S passed, or `stop`."""

    def __init__(self, faults: Sequence[Fault], server: SpawnedServer, base: str,
                 t0_wall: float, connected: Callable[[], int],
                 note: Callable[[str], None]) -> None:
        super().__init__(server, base, t0_wall, connected, note)
        self.faults = list(faults)
        self.records: list[FaultRecord] = []
        self._task: asyncio.Task[None] | None = None
        self._helpers: list[asyncio.subprocess.Process] = []

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

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
        elif kind == "kill-server":
            await self._kill_server(rec)
        else:  # pragma: no cover - parse_chaos admits only the kinds above
            raise FaultError(f"unknown fault {kind!r}")

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
            fmt_seconds(rec.fault.duration_s), stdin=asyncio.subprocess.DEVNULL,
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

    async def _kill_server(self, rec: FaultRecord) -> None:
        cluster = self.server
        if not isinstance(cluster, ServerCluster):
            raise FaultError("kill-server needs several servers behind a balancer "
                             "(--servers 2 or more)")
        await self._until(rec)
        live = cluster.live()
        if len(live) < 2:
            raise FaultError(f"{len(live)} server(s) running; kill-server leaves at least one")
        # The server with the most viewers (HAProxy's current sessions), so the most
        # viewers have to resume elsewhere; the first such on a tie.
        try:
            before = await asyncio.to_thread(cluster.sessions)
        except OSError:
            before = {}
        victim = max(live, key=lambda s: before.get(s.name, 0))
        cluster.kill(victim)
        rec.injected_s = self.now_s()
        rec.ok = True
        total = sum(before.values())
        rec.details.update(killed_server=victim.name, killed_address=f"{victim.host}:"
                           f"{victim.port}", killed_pid=victim.pid, servers_before=len(live),
                           sessions_before=before)
        rec.outcome = (f"SIGKILL sent to server {victim.name} ({victim.host}:{victim.port}, "
                       f"pid {victim.pid}), which had {before.get(victim.name, '?')} of "
                       f"{total} sessions at the balancer; {len(live) - 1} server(s) left")
        self._watch(self._watch_balancer(rec, cluster, victim.name))
        self._watch(self._watch_ready(rec))
        self._watch(self._watch_viewers(rec))

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
