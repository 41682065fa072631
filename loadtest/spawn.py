"""A local livesell server for one run: started on its embedded defaults in a
temporary data directory, watched through /proc, stopped with SIGINT, and its
order store read back (read-only) for the checks.

The server runs as `python -m server serve --port 0 --data-dir TMP`, exactly
what a user would type, in its own session so that a Ctrl-C meant for the load
tester does not stop it before the report's data is collected. Its URL comes
from the lines it prints. Settings the scenario needs (a short hold time, the
chat limits it checks) are passed as `LIVESELL_*` environment variables.

The embedded Redis requires a password; `redis_password` reads it from the
file the server keeps beside Redis's data (mode 0600, this user's only).

Chaos runs (loadtest/chaos.py) kill its processes and restart it: `refresh`
finds the current redis-server and workers again, `restart` starts it anew on
the same port and data directory as a process manager would, and the CPU
figures keep the seconds of processes that are gone, so they add up across
those changes.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from loadtest.stats import ProcSample, children_of, command_of, descendants_of, read_proc
from server.state.redis_probe import free_port
from server.state.redis_process import read_password

START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0


class SpawnError(RuntimeError):
    """The server could not be started."""


@dataclass(frozen=True, slots=True)
class CorePlan:
    """Which cores the spawned server, its redis-server and the generators use
    (None: not pinned), and how many server processes run."""

    server: list[int] | None
    redis: list[int] | None
    generators: list[int] | None
    workers: int = 1


def plan_cores(cpus: list[int]) -> CorePlan:
    """Split the cores this process may use. Under 2 cores nothing is pinned. With
    2-3 the server and its redis-server share the first core and the generators
    get the rest. From 4 on, redis-server gets a core of its own (one Redis does
    all the atomic work of every server process, as in production) and the
    server half of the others, one process per core; the generators get the rest,
    as they spend about as much CPU per buy as the server does."""
    if len(cpus) < 2:
        return CorePlan(None, None, None)
    if len(cpus) < 4:
        return CorePlan(cpus[:1], cpus[:1], cpus[1:])
    rest = cpus[1:]
    n = max(1, len(rest) // 2)
    return CorePlan(rest[:n], cpus[:1], rest[n:], workers=n)


class SpawnedServer:
    def __init__(self, env: dict[str, str], cpus: list[int] | None = None,
                 keep_dir: Path | None = None, *, redis_cpus: list[int] | None = None,
                 workers: int = 1) -> None:
        self.env = env
        self.cpus = cpus
        self.redis_cpus = redis_cpus if redis_cpus is not None else cpus
        self.workers = workers
        self.worker_pids: list[int] = []
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if keep_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="livesell-loadtest-")
            self.dir = Path(self._tmp.name)
        else:
            self.dir = keep_dir
        self.data_dir = self.dir / "data"
        self.proc: subprocess.Popen[bytes] | None = None
        self.base = ""
        self.port: int | None = None  # fixed after the first start: a restart reuses it
        self.redis_pid: int | None = None
        self.restarts = 0
        # CPU seconds per (role, pid) at the last reading, and those of processes gone
        # (killed, restarted), so the totals do not drop when a process is replaced.
        self._cpu_seen: dict[tuple[str, int], float] = {}
        self._cpu_gone: dict[str, float] = {"server": 0.0, "redis": 0.0}

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def store_path(self) -> Path:
        return self.data_dir / "orders.sqlite3"

    def start(self) -> str:
        """Start the server and return its base URL (http://127.0.0.1:PORT)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("LIVESELL_")}
        env.update(self.env)
        out_path, err_path = self.dir / "server.out", self.dir / "server.err"
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            # Several processes share one listening port, which must then be fixed; a
            # restart comes back where the viewers reconnect to.
            port = str(self.port or (free_port() if self.workers > 1 else 0))
            workers = ["--workers", str(self.workers)] if self.workers > 1 else []
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "server", "serve", "--host", "127.0.0.1", "--port", port,
                 "--data-dir", str(self.data_dir), "--log-level", "warning", *workers],
                stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env,
                start_new_session=True)
        self._pin(self.proc.pid)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            text = out_path.read_text(errors="replace")
            for line in text.splitlines():
                if line.strip().startswith("API:"):
                    self.base = line.split("API:", 1)[1].strip().removesuffix("/api")
            if self.base:
                self.port = urlsplit(self.base).port
                self._find_children()
                if self._answers(deadline):
                    return self.base
                self.stop()
                raise SpawnError(f"the server printed {self.base} but did not answer there: "
                                 + err_path.read_text(errors="replace")[-2000:])
            if self.proc.poll() is not None:
                raise SpawnError("the server exited during start-up: "
                                 + err_path.read_text(errors="replace")[-2000:])
            time.sleep(0.05)
        self.stop()
        raise SpawnError(f"the server printed no URL within {START_TIMEOUT_S:.0f}s")

    def _answers(self, deadline: float) -> bool:
        """Wait until the server answers HTTP: with --workers it prints its URL
        before uvicorn has started the processes that listen."""
        direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), \
                    direct.open(f"{self.base}/api/time", timeout=5) as reply:
                if reply.status == 200:
                    return True
            if self.proc is not None and self.proc.poll() is not None:
                return False
            time.sleep(0.05)
        return False

    def _pin(self, pid: int) -> None:
        if self.cpus and hasattr(os, "sched_setaffinity"):
            with contextlib.suppress(OSError):
                os.sched_setaffinity(pid, self.cpus)

    def _find_children(self) -> None:
        """The redis-server child (pinned to its cores) and, with --workers, the
        uvicorn worker processes, which start after the URL is printed."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            workers = []
            for child in children_of(self.pid):
                command = command_of(child)
                if "redis-server" in command:
                    self.redis_pid = child
                    if self.redis_cpus and hasattr(os, "sched_setaffinity"):
                        with contextlib.suppress(OSError):
                            os.sched_setaffinity(child, self.redis_cpus)
                elif "spawn_main" in command:
                    workers.append(child)
            if self.workers <= 1 or len(workers) >= self.workers \
                    or time.monotonic() > deadline:
                self.worker_pids = workers if self.workers > 1 else []
                return
            time.sleep(0.05)

    def refresh(self) -> None:
        """Find the redis-server (anywhere below the server: a supervisor may start
        it again from another process) and the worker processes anew, after a
        fault replaced them."""
        if self.proc is None or self.proc.poll() is not None:
            return
        redis = find_redis(self.pid)
        if redis is not None and redis != self.redis_pid:
            self.redis_pid = redis
            if self.redis_cpus and hasattr(os, "sched_setaffinity"):
                with contextlib.suppress(OSError):
                    os.sched_setaffinity(redis, self.redis_cpus)
        if self.workers > 1:
            self.worker_pids = find_workers(self.pid)

    def restart(self) -> str:
        """Start the server again after it exited, on the same port and data
        directory, as a process manager would; the previous logs are kept
        beside the new ones (server.out.1, server.err.1, ...)."""
        if self.proc is not None and self.proc.poll() is None:
            raise SpawnError("restart: the server is still running")
        self.restarts += 1
        for name in ("server.out", "server.err"):
            with contextlib.suppress(OSError):
                (self.dir / name).rename(self.dir / f"{name}.{self.restarts}")
        self.base = ""
        self.redis_pid = None
        self.worker_pids = []
        return self.start()

    def _total(self, role: str, pids: list[int]) -> ProcSample | None:
        live = {pid: s for pid, s in ((p, read_proc(p)) for p in pids) if s is not None}
        for key in [k for k in self._cpu_seen if k[0] == role and k[1] not in live]:
            self._cpu_gone[role] += self._cpu_seen.pop(key)
        for pid, s in live.items():
            self._cpu_seen[(role, pid)] = s.cpu_s
        if not live:
            return None
        return ProcSample(self._cpu_gone[role] + sum(s.cpu_s for s in live.values()),
                          sum(s.rss_bytes for s in live.values()))

    def sample(self) -> tuple[ProcSample | None, ProcSample | None]:
        """The server (its process and, with --workers, every worker process) and
        its redis-server child, from /proc. CPU seconds include those of the
        processes a fault ended (a killed worker, the server before a restart)."""
        server = self._total("server", [self.pid, *self.worker_pids]) if self.proc else None
        return server, self._total("redis", [self.redis_pid] if self.redis_pid else [])

    def stop(self) -> int | None:
        """SIGINT, as Ctrl-C would; SIGKILL if it does not stop in time."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.redis_pid is not None and "redis-server" in command_of(self.redis_pid):
            with contextlib.suppress(OSError):
                os.kill(self.redis_pid, signal.SIGKILL)
        return self.proc.returncode

    def read_orders(self, room_id: str) -> list[dict[str, Any]]:
        """Every order of the room straight from the SQLite file, opened read-only."""
        uri = f"file:{self.store_path}?mode=ro"
        db = sqlite3.connect(uri, uri=True)
        try:
            db.row_factory = sqlite3.Row
            rows = db.execute("SELECT * FROM orders WHERE room_id = ? ORDER BY created_at, "
                              "order_id", (room_id,)).fetchall()
            return [dict(r) for r in rows]
        finally:
            db.close()

    def log_tail(self, chars: int = 3000) -> str:
        with contextlib.suppress(OSError):
            return (self.dir / "server.err").read_text(errors="replace")[-chars:]
        return ""

    def cleanup(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


def find_redis(server_pid: int) -> int | None:
    """The live redis-server below a server process (a killed one, a zombie, has
    no command line and is not found)."""
    for pid in descendants_of(server_pid):
        if "redis-server" in command_of(pid):
            return pid
    return None


def find_workers(server_pid: int) -> list[int]:
    """The uvicorn worker processes of a server run with --workers."""
    return sorted(pid for pid in children_of(server_pid) if "spawn_main" in command_of(pid))


def redis_address(redis_pid: int) -> tuple[str, int]:
    """The address a redis-server listens on, from its command line."""
    try:
        raw = Path(f"/proc/{redis_pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError as exc:
        raise SpawnError(f"redis-server {redis_pid} is gone: {exc}") from None
    address = parse_redis_address(raw.replace("\0", " "))
    if address is None:
        raise SpawnError(f"redis-server {redis_pid}: no address in its command line "
                         f"{raw.replace(chr(0), ' ').strip()!r}")
    return address


def redis_password(redis_pid: int) -> str | None:
    """The password of the embedded redis-server `redis_pid`, read where the server
    keeps it: the file in the directory redis-server works in (it chdirs into its
    --dir). None for a Redis without one."""
    try:
        directory = Path(os.readlink(f"/proc/{redis_pid}/cwd"))
    except OSError as exc:
        raise SpawnError(f"redis-server {redis_pid} is gone: {exc}") from None
    return read_password(directory)


def parse_redis_address(command: str) -> tuple[str, int] | None:
    """HOST and PORT from a redis-server command line: the title it gives itself
    once running (`redis-server 127.0.0.1:6379`), or the `--bind`/`--port` flags
    server/state/embedded_redis.py starts it with. None when neither says."""
    words = command.split()
    host, port = "", 0
    for flag, value in itertools.pairwise(words):
        if flag == "--port" and value.isdigit():
            port = int(value)
        elif flag == "--bind":
            host = value
    if port:
        return host or "127.0.0.1", port
    for word in words[1:2]:
        name, colon, digits = word.rpartition(":")
        if colon and digits.isdigit() and name:
            name = name.strip("[]")
            return ("127.0.0.1" if name in ("*", "0.0.0.0") else name), int(digits)
    return None
