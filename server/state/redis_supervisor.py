"""Supervision of the embedded redis-server: `RedisSupervisor` owns one
`RedisServer` (server/state/embedded_redis.py) from a dedicated thread that
starts the child, waits on it and restarts it (same port, same files) when it
dies, with a bounded backoff; it gives up ("failed") after `restart_attempts`
consecutive failed restarts. Its `state` and its listeners tell the app when
Redis is up. The dedicated thread matters: the death signal follows the forking
thread, so that thread must outlive the child.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from server.core.settings import RedisSettings
from server.state.embedded_redis import DEFAULT_MAXMEMORY_MB, RedisServer
from server.state.redis_process import RedisStartError

log = logging.getLogger("livesell.redis")

# A child that stayed up this long before dying was not crash-looping: the
# failure count and the backoff start over.
STABLE_AFTER_S = 10.0
FIRST_BACKOFF_S = 0.1


class RedisState(enum.StrEnum):
    STARTING = "starting"      # the first start is under way
    UP = "up"                  # the child answers
    DOWN = "down"              # the child died; waiting out the backoff
    RESTARTING = "restarting"  # starting a new child
    FAILED = "failed"          # gave up: the first start failed, or too many restarts did
    STOPPED = "stopped"        # stopped on purpose


Listener = Callable[[RedisState], None]


class RedisSupervisor:
    """Keeps one embedded redis-server running from a dedicated thread.

    `start()` blocks until the first child answers (or raises RedisStartError);
    afterwards the thread restarts a dead child on the same port and files.
    `state` may be read from any thread; listeners are called on the
    supervisor's thread after each change."""

    def __init__(self, data_dir: Path, *, binary: str = "", port: int = 0,
                 appendonly: bool = True, start_timeout_s: float = 10.0,
                 restart_attempts: int = 10, restart_backoff_max_s: float = 5.0,
                 maxmemory_mb: int = DEFAULT_MAXMEMORY_MB) -> None:
        self.server = RedisServer(data_dir, binary=binary, port=port, appendonly=appendonly,
                                  start_timeout_s=start_timeout_s, die_with_parent=True,
                                  maxmemory_mb=maxmemory_mb)
        self.restart_attempts = restart_attempts
        self.restart_backoff_max_s = restart_backoff_max_s
        self.state = RedisState.STOPPED
        self.restarts = 0  # children started after the first
        self._listeners: list[Listener] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._first_done = threading.Event()
        self._start_error: RedisStartError | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def password(self) -> str | None:
        return self.server.password

    @property
    def pid(self) -> int | None:
        return self.server.pid

    def add_listener(self, listener: Listener) -> None:
        with self._lock:
            self._listeners.append(listener)

    def _set(self, state: RedisState) -> None:
        with self._lock:
            if state == self.state:
                return
            if self._stopping.is_set() and state not in (RedisState.STOPPED,
                                                         RedisState.FAILED):
                return  # a restart racing stop() must not revive the state
            self.state = state
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(state)
            except Exception:
                log.exception("redis state listener failed")

    def start(self) -> str:
        """Start the supervisor thread and the first child; return the URL."""
        if self._thread is not None:
            raise RuntimeError("the supervisor was already started")
        self._set(RedisState.STARTING)
        self._thread = threading.Thread(target=self._run, name="redis-supervisor", daemon=True)
        self._thread.start()
        self._first_done.wait()
        if self._start_error is not None:
            self._thread.join()
            raise self._start_error
        return self.url

    @classmethod
    def from_settings(cls, data_dir: Path, redis: RedisSettings) -> RedisSupervisor:
        """The embedded Redis as the [redis] settings describe it (server.core.settings
        RedisSettings), for the app and for the --workers parent alike."""
        return cls(data_dir, binary=redis.binary, port=redis.port,
                   appendonly=redis.appendonly, start_timeout_s=redis.start_timeout_s,
                   restart_attempts=redis.restart_attempts,
                   restart_backoff_max_s=redis.restart_backoff_max_s,
                   maxmemory_mb=redis.maxmemory_mb)

    def terminate_now(self) -> None:
        """SIGTERM the child and return at once (a watchdog on its way out; the
        child also gets its death signal when this process ends)."""
        self._stopping.set()
        proc = self.server.process
        if proc is not None:
            with contextlib.suppress(OSError):
                proc.terminate()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the child (SIGTERM, then SIGKILL after `timeout_s`) and the thread."""
        self._stopping.set()
        thread = self._thread
        if thread is None:
            return
        proc = self.server.process
        if proc is not None:
            with contextlib.suppress(OSError):
                proc.terminate()
        thread.join(timeout_s)
        if thread.is_alive():
            proc = self.server.process
            if proc is not None:
                with contextlib.suppress(OSError):
                    proc.kill()
            thread.join(5.0)
        if thread.is_alive():
            log.error("the redis supervisor thread did not stop")
        else:
            self.server.stop()
        if self.state is not RedisState.FAILED:
            self._set(RedisState.STOPPED)

    def _run(self) -> None:
        failures = 0
        delay = FIRST_BACKOFF_S
        first = True
        try:
            while not self._stopping.is_set():
                if not first:
                    self._set(RedisState.RESTARTING)
                try:
                    self.server.start(self._stopping)
                except RedisStartError as exc:
                    if self._stopping.is_set():
                        return
                    if first:
                        self._start_error = exc
                        self._set(RedisState.FAILED)
                        return
                    failures += 1
                    log.error("redis-server restart failed (%d of %d): %s",
                              failures, self.restart_attempts, exc)
                else:
                    started = time.monotonic()
                    if not first:
                        self.restarts += 1
                        log.warning("redis-server is back (pid %s) on 127.0.0.1:%d",
                                    self.server.pid, self.server.port)
                    first = False
                    self._set(RedisState.UP)
                    self._first_done.set()
                    pid = self.server.pid
                    status = self.server.wait()
                    if self._stopping.is_set():
                        return
                    ran = time.monotonic() - started
                    if ran >= STABLE_AFTER_S:
                        failures, delay = 0, FIRST_BACKOFF_S
                    else:
                        failures += 1
                    log.warning("redis-server (pid %s) ended with status %s after %.1fs; "
                                "restarting it in %.1fs", pid, status, ran, delay)
                    self.server.stop()
                if failures >= self.restart_attempts:
                    log.error("redis-server failed %d times in a row; giving up",
                              failures)
                    self._set(RedisState.FAILED)
                    return
                self._set(RedisState.DOWN)
                if self._stopping.wait(delay):
                    return
                delay = min(delay * 2, self.restart_backoff_max_s)
        except BaseException as exc:  # a bug here must not leave start() waiting
            if not self._first_done.is_set():
                self._start_error = RedisStartError(f"redis supervisor failed: {exc!r}")
            log.exception("redis supervisor failed")
            self._set(RedisState.FAILED)
        finally:
            # The child would get its death signal when this thread ends anyway;
            # stopping it here also reaps it and removes the pid file.
            self.server.stop()
            self._first_done.set()
