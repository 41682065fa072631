"""The embedded redis-server: one private child process on loopback, behind a
password, with its files in one directory; started, checked and stopped.

Used when no Redis URL is configured (the supervisor in
server/state/redis_supervisor.py keeps it running). Tests start their Redis with
this same class, so they exercise the same binary the embedded default uses.

Before it starts a child, `RedisServer` stops any redis-server still working in
its directory (server/state/redis_process.py); after the start it checks that
the Redis answering on the port is that child (INFO server -> process_id,
server/state/redis_probe.py), never adopting a stranger.

The child listens on 127.0.0.1 only and requires the password kept in its
directory. The password reaches redis-server on its standard input
(`redis-server -` reads its configuration there), never on its command line,
which any local user can read in /proc. The child runs with umask 077: its
append-only file, its log and anything it writes later are readable by this user
only.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import threading
import time
from pathlib import Path

from server.state.ownership import private_dir
from server.state.redis_probe import free_port, ping, probe
from server.state.redis_process import (
    PID_FILE,
    RedisStartError,
    die_with_parent_preexec,
    ensure_password,
    find_redis_server,
    pid_file_pid,
    redis_servers_in,
    stop_orphan,
    tighten_files,
)

log = logging.getLogger("livesell.redis")

# Files and directories of the embedded Redis: this user only.
CHILD_UMASK = 0o077
# The embedded Redis's memory bound (settings redis.maxmemory_mb has the same
# default) and what it does at the bound. volatile-lru evicts only keys that
# carry a TTL, least recently used first: remembered request answers (EX
# sale.request_id_ttl_s), finished holds (PEXPIREd once confirmed, expired,
# released, voided or aborted), per-minute chat counters and the rebuild lock
# (held only while Redis is rebuilt, so nearly empty). Selling state never
# carries a TTL and so is never evicted: stock, sales, per-buyer units, holds
# still 'held' or 'confirming', the holds and confirming sets, coupons and
# claims, lotteries and entrants, the room, its seq, log, timers and epoch, and
# presence. Nothing else evictable left, a write is refused (an error, not a lost
# sale); the pulse warns well before that (server/features/pulse.py MemoryWatch).
# volatile-lru rather than volatile-ttl: the latter evicts the shortest TTL
# first, which is the rebuild lock and this minute's chat counter.
DEFAULT_MAXMEMORY_MB = 512
MAXMEMORY_POLICY = "volatile-lru"


class RedisServer:
    """A private redis-server child process with its files in `data_dir`.

    With `die_with_parent` the child is SIGTERMed by the kernel when the thread
    that called `start` ends: call it from a thread that outlives the child
    (the supervisor's own thread does)."""

    def __init__(self, data_dir: Path, *, binary: str = "", port: int = 0,
                 appendonly: bool = True, start_timeout_s: float = 10.0,
                 die_with_parent: bool = False,
                 maxmemory_mb: int = DEFAULT_MAXMEMORY_MB) -> None:
        self.data_dir = data_dir
        self.binary = find_redis_server(binary)
        self.port = port
        # Read or made at the first start and kept: restarts use the same one.
        self.password: str | None = None
        self.appendonly = appendonly
        self.maxmemory_mb = maxmemory_mb
        self.start_timeout_s = start_timeout_s
        self.die_with_parent = die_with_parent
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The URL clients connect with; it carries the password, so it is never
        logged (server/web/logfilter.py redacts it should it reach a log anyway)."""
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        """The running redis-server's process id (None when not started)."""
        return self.process.pid if self.process is not None else None

    @property
    def pid_file(self) -> Path:
        return self.data_dir / PID_FILE

    def start(self, abort: threading.Event | None = None) -> str:
        """Start the child and return its URL once it answers and has loaded its
        data. `abort`, when set meanwhile, stops the child and raises."""
        private_dir(self.data_dir)
        tighten_files(self.data_dir)
        if self.password is None:
            self.password = ensure_password(self.data_dir)
        for pid in redis_servers_in(self.data_dir):
            if abort is not None and abort.is_set():
                raise RedisStartError("stopped while starting")
            stop_orphan(pid, self.data_dir)
        if abort is not None and abort.is_set():
            raise RedisStartError("stopped while starting")  # before a child exists
        if not self.port:
            self.port = free_port()
        # "-": the rest of the configuration (the password) comes on stdin.
        args = [
            self.binary, "-", "--port", str(self.port), "--bind", "127.0.0.1",
            "--dir", str(self.data_dir), "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", "everysec", "--save", "", "--daemonize", "no",
            "--protected-mode", "yes", "--logfile", str(self.data_dir / "redis.log"),
            # Bounded, evicting only keys with a TTL (see MAXMEMORY_POLICY).
            "--maxmemory", f"{self.maxmemory_mb}mb", "--maxmemory-policy", MAXMEMORY_POLICY,
        ]
        # Its own session: Ctrl-C in a terminal reaches this process only, which
        # stops Redis last, after the orders are flushed.
        # umask 077 in the child only (the umask is process-wide: this process's
        # other files, and a test harness's, keep theirs).
        self.process = proc = subprocess.Popen(
            args, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            start_new_session=True, umask=CHILD_UMASK,
            preexec_fn=die_with_parent_preexec() if self.die_with_parent else None)
        self._write_pid_file(proc.pid)
        self._send_config(proc)
        deadline = time.monotonic() + self.start_timeout_s
        ours = False
        while True:
            if abort is not None and abort.is_set():
                self.stop()
                raise RedisStartError("stopped while starting")
            if proc.poll() is not None:
                err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                self.stop()
                tail = self.data_dir / "redis.log"
                detail = err or (tail.read_text(errors="replace")[-500:] if tail.exists() else "")
                raise RedisStartError(f"redis-server exited at start with status "
                                      f"{proc.returncode}: {detail.strip() or 'no output'}")
            if not ours:
                answer = probe(self.port, self.password)
                if answer.refused or (answer.pid is not None and answer.pid != proc.pid):
                    # Ours never refuses: it read the password before it listened.
                    who = f"(pid {answer.pid}) " if answer.pid is not None else ""
                    why = ", refusing our password" if answer.refused else ""
                    self.stop()
                    raise RedisStartError(
                        f"another Redis {who}answers on 127.0.0.1:{self.port}{why}, "
                        f"not the redis-server just started (pid {proc.pid}); "
                        "refusing to use it: free the port or change redis.port")
                ours = answer.pid == proc.pid
            if ours and ping(self.port, self.password):
                log.info("redis-server %s (pid %d) listening on 127.0.0.1:%d",
                         self.binary, proc.pid, self.port)
                return self.url
            if time.monotonic() > deadline:
                self.stop()
                raise RedisStartError(
                    f"redis-server did not answer within {self.start_timeout_s}s")
            time.sleep(0.02)

    def _send_config(self, proc: subprocess.Popen[bytes]) -> None:
        """The configuration that must stay off the command line, on the child's
        stdin; closing it lets redis-server go on starting."""
        stdin = proc.stdin
        if stdin is None:
            return
        # A child that died at once (a bad binary) closed its end: its exit status
        # and stderr tell why, in the wait loop.
        with contextlib.suppress(BrokenPipeError):
            stdin.write(f"requirepass {self.password}\n".encode())
        with contextlib.suppress(BrokenPipeError):
            stdin.close()

    def _write_pid_file(self, pid: int) -> None:
        tmp = self.pid_file.with_suffix(".tmp")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps({"pid": pid, "port": self.port, "owner": os.getpid()}))
        tmp.replace(self.pid_file)

    def wait(self) -> int | None:
        """Block until the child ends; its exit status (None if none runs)."""
        proc = self.process
        return proc.wait() if proc is not None else None

    def stop(self, timeout_s: float = 10.0) -> None:
        proc, self.process = self.process, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()  # SIGTERM: redis-server fsyncs its append-only file and exits
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=5)
        if proc.stderr:
            proc.stderr.close()
        if pid_file_pid(self.pid_file) == proc.pid:
            with contextlib.suppress(OSError):
                self.pid_file.unlink()

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
