"""Serving: one process, or `--workers` processes on one shared socket, each
with uvicorn on the bounded edge and the fast WebSocket hook; the shutdown
order (drain, then stop within a bound) and the start-up banner."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import shutil
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import uvicorn
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors import Multiprocess

from server.core.settings import Settings, load_settings
from server.state.ownership import DataDirBusy, claim, use_for_redis
from server.web import logfilter
from server.web.logjson import JsonFormatter, uvicorn_log_config
from server.web.metrics import MULTIPROC_ENV, process_gone

log = logging.getLogger("livesell")


# Bounds on shutdown after a signal: Services.stop bounds each of its steps, and
# uvicorn waits up to the grace for open requests; past this the process stops
# its Redis child and exits anyway, so no signal is ever ignored.
SHUTDOWN_SLACK_S = 60.0
# After a second signal, or once the server has returned (the event loop's own
# teardown), the process ends within this.
HURRY_S = 5.0
FAILED = 1
_PARENT_ENV = "LIVESELL_WORKER_PARENT"  # tells a --workers process its parent's pid
_SETTINGS_ENV = "LIVESELL_WORKER_SETTINGS"  # the parent's resolved settings, as JSON


def configure_logging(settings: Settings) -> None:
    """The root logger's level and format: a line for people, or JSON objects
    (server/web/logjson.py) for log shippers."""
    if settings.server.log_format == "json":
        handler = logging.StreamHandler()
        handler.setFormatter(JsonFormatter())
        logging.basicConfig(level=settings.server.log_level.upper(), handlers=[handler])
    else:
        logging.basicConfig(level=settings.server.log_level.upper(),
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def serve(settings: Settings) -> int:
    """Own the data directory, bind the port, then run the app; a failure at any
    step ends at once with a message and status 1, leaving nothing running."""
    configure_logging(settings)
    # Credentials in URLs (?token=, ?host_key=) never reach the log: uvicorn logs
    # every WebSocket accept, and the access log every request, with its query.
    logfilter.install()
    if settings.server.workers > 1 and settings.server.port == 0:
        print("livesell: --port 0 cannot be shared by several workers; give a port",
              file=sys.stderr)
        return 2
    try:
        lock = claim(settings.data_path)
    except DataDirBusy as exc:
        print(f"livesell: {exc}", file=sys.stderr)
        return FAILED
    except OSError as exc:
        print(f"livesell: cannot use the data directory {settings.data_path}: {exc}",
              file=sys.stderr)
        return FAILED
    try:
        try:
            sock = _listen(settings.server.host, settings.server.port)
        except OSError as exc:
            print(f"livesell: cannot listen on {settings.server.host}:{settings.server.port}: "
                  f"{exc.strerror or exc}", file=sys.stderr)
            return FAILED
        with sock:
            if settings.server.workers > 1:
                return _serve_workers(settings, sock)
            return _serve_one(settings, sock)
    finally:
        lock.release()


def _listen(host: str, port: int) -> socket.socket:
    """The listening socket, bound before anything starts (as uvicorn would bind it)."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET,
                         socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        # Listen now: two SO_REUSEADDR sockets may both bind one port until one listens.
        sock.listen(2048)
    except BaseException:
        sock.close()
        raise
    sock.set_inheritable(True)  # --workers hands it to each worker process
    return sock


def _uvicorn_options(settings: Settings) -> dict[str, Any]:
    from server.realtime.edges import BoundedHttpToolsProtocol
    from server.realtime.fastws import FastWebSocketProtocol

    return dict(
        host=settings.server.host, port=settings.server.port, lifespan="on",
        ws=FastWebSocketProtocol, ws_max_size=settings.hub.max_frame_bytes,
        ws_per_message_deflate=False,
        ws_ping_interval=settings.hub.ping_interval_s or None,
        ws_ping_timeout=settings.hub.ping_interval_s or None,
        # httptools with a bounded request head, a header-read timeout and a
        # per-address connection cap (server/realtime/edges.py; its limits ride on the
        # Config: see _config).
        log_level=settings.server.log_level, http=BoundedHttpToolsProtocol,
        timeout_keep_alive=settings.server.keep_alive_timeout_s,
        proxy_headers=True, forwarded_allow_ips=settings.server.forwarded_allow_ips,
        loop="uvloop" if sys.platform != "win32" else "asyncio",
        # A little longer than the app's own drain (Services.drain), which closes
        # the viewers once what they sent is answered.
        timeout_graceful_shutdown=settings.server.shutdown_grace_s + 2.0,
        access_log=settings.server.log_level == "debug", backlog=2048,
        **({"log_config": uvicorn_log_config()} if settings.server.log_format == "json"
           else {}),
    )


def _config(app: Any, settings: Settings, **extra: Any) -> uvicorn.Config:
    from server.realtime.edges import attach

    return attach(uvicorn.Config(app, **_uvicorn_options(settings), **extra), settings.server)


def _shutdown_bound(settings: Settings) -> float:
    """How long a graceful shutdown may take before the watchdog ends it: uvicorn's
    wait for connections (grace + 2 s, the drain inside it), then the app's stop,
    whose steps are each bounded (server/web/app.py Services.stop: the drain, the ledger
    and the store each up to grace + 5 s, the rest about 30 s with Redis's stop)."""
    return 4 * settings.server.shutdown_grace_s + SHUTDOWN_SLACK_S


class _Server(uvicorn.Server):
    """uvicorn's server without its signal handling: `_Shutdown` turns signals
    into a shutdown, and a clean one ends with status 0 (uvicorn would raise the
    signal again after shutting down, ending the process by it)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class _Shutdown:
    """The one place SIGINT and SIGTERM become a shutdown. The first asks uvicorn
    for a graceful one (stop accepting, let requests finish, run the app's
    shutdown); a second closes connections at once. Each arms a watchdog thread
    that, if the process is still here at its deadline, stops the Redis child and
    exits with status 1."""

    def __init__(self, server: uvicorn.Server, bound_s: float,
                 stop_redis: Callable[[], None]) -> None:
        self.server = server
        self.bound_s = bound_s
        # Called from the watchdog thread, so it must not wait: it only signals Redis.
        self.stop_redis = stop_redis
        self.signals = 0
        self._deadline = float("inf")
        self._timer: threading.Timer | None = None

    @property
    def forced(self) -> bool:
        return self.signals > 1

    def on_signal(self, sig: int) -> None:
        self.signals += 1
        name = signal.Signals(sig).name
        if self.signals == 1:
            log.info("%s: shutting down", name)
            self.server.should_exit = True
            self.arm(self.bound_s)
        else:
            log.warning("%s again: closing connections now", name)
            self.server.force_exit = True
            self.arm(HURRY_S)

    def arm(self, limit_s: float) -> None:
        deadline = time.monotonic() + limit_s
        if deadline >= self._deadline:
            return
        self._deadline = deadline
        if self._timer is not None:
            self._timer.cancel()
        self._timer = threading.Timer(limit_s, self._overrun, args=(limit_s,))
        self._timer.daemon = True
        self._timer.start()

    def disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()

    def _overrun(self, limit_s: float) -> None:
        log.error("shutdown did not finish within %.0fs; stopping redis-server and exiting",
                  limit_s)
        try:
            self.stop_redis()
        finally:
            logging.shutdown()
            os._exit(FAILED)


def _serve_one(settings: Settings, sock: socket.socket) -> int:
    from server.web.app import create_app
    from server.web.services import Services

    app = create_app(settings)
    services: Services = app.state.services
    server = _Server(_config(app, settings))

    def stop_redis() -> None:
        if services.embedded is not None:
            services.embedded.stop()

    def abandon_redis() -> None:
        if services.embedded is not None:
            services.embedded.terminate_now()

    shutdown = _Shutdown(server, _shutdown_bound(settings), abandon_redis)
    host, port = sock.getsockname()[:2]

    async def announce() -> None:
        while not server.started:  # noqa: ASYNC110 - uvicorn sets a flag
            await asyncio.sleep(0.05)
        _print_urls(settings.server.host or host, port)

    async def run() -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, shutdown.on_signal, sig)
        announcing = asyncio.create_task(announce())
        started = False
        try:
            await server.serve(sockets=[sock])
            started = server.started
        except SystemExit:  # uvicorn's answer to a failed lifespan startup
            pass
        finally:
            announcing.cancel()
            # Whatever happened above (a forced exit skips the app's shutdown),
            # the Redis child ends before this process does.
            await asyncio.to_thread(stop_redis)
            shutdown.arm(HURRY_S)
        if not started:
            print("livesell: start-up failed (see the log above)", file=sys.stderr)
            return FAILED
        return FAILED if shutdown.forced else 0

    try:
        if sys.platform == "win32":
            return asyncio.run(run())
        import uvloop

        return uvloop.run(run())
    finally:
        shutdown.disarm()


def _serve_workers(settings: Settings, sock: socket.socket) -> int:
    from server.state.redis_process import RedisStartError
    from server.state.redis_supervisor import RedisSupervisor

    embedded = use = None
    if not settings.redis.url:
        use = use_for_redis(settings.data_path)
        # Started here, in the parent, once for every worker; the supervisor's
        # thread outlives the child, which dies with this process.
        try:
            # Inside the try: finding no redis-server binary is a RedisStartError too.
            embedded = RedisSupervisor.from_settings(settings.data_path / "redis",
                                                     settings.redis)
            os.environ["LIVESELL_REDIS_URL"] = embedded.start()
        except RedisStartError as exc:
            use.release()
            print(f"livesell: cannot start the embedded redis-server: {exc}", file=sys.stderr)
            return FAILED
    os.environ["LIVESELL_SERVER_DATA_DIR"] = str(settings.data_path)
    os.environ[_PARENT_ENV] = str(os.getpid())
    # The workers' metrics files (prometheus-client's multi-process mode; see
    # server/web/metrics.py): a fresh directory, so no dead worker's counts linger.
    metrics_dir = settings.data_path / "metrics"
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir(mode=0o700, parents=True)
    os.environ[MULTIPROC_ENV] = str(metrics_dir)
    # Each worker builds its app from these settings, exactly as resolved here
    # (defaults, --config, environment, flags): a worker reading only the
    # environment would silently drop the config file and the flags. The
    # environment of a process is readable by its own user only, like the data dir.
    resolved = dataclasses.asdict(settings)
    resolved["redis"]["url"] = os.environ.get("LIVESELL_REDIS_URL", settings.redis.url)
    resolved["server"]["data_dir"] = str(settings.data_path)
    os.environ[_SETTINGS_ENV] = json.dumps(resolved)
    config = _config("server.web.serving:worker_app", settings, factory=True,
                     workers=settings.server.workers)
    host, port = sock.getsockname()[:2]
    _print_urls(settings.server.host or host, port)
    workers = _Workers(config, [sock], _shutdown_bound(settings))
    try:
        workers.run()
    finally:
        if embedded is not None:
            embedded.stop()
        if use is not None:
            use.release()
    if any(p.exitcode == STARTUP_FAILURE for p in workers.processes):
        print("livesell: a worker failed to start (see the log above)", file=sys.stderr)
        return FAILED
    return 0


class _Workers(Multiprocess):
    """uvicorn's worker supervisor, with a bound on how long workers may take to
    stop after SIGINT or SIGTERM: past it they are killed."""

    def __init__(self, config: uvicorn.Config, sockets: list[socket.socket],
                 bound_s: float) -> None:
        super().__init__(config, sockets)
        self.bound_s = bound_s
        self._timer: threading.Timer | None = None

    def _arm(self) -> None:
        if self._timer is None:
            self._timer = threading.Timer(self.bound_s, self._kill_workers)
            self._timer.daemon = True
            self._timer.start()

    def _kill_workers(self) -> None:
        log.error("workers did not stop within %.0fs; killing them", self.bound_s)
        for process in list(self.processes):
            with contextlib.suppress(OSError, ValueError):
                process.kill()

    def keep_subprocess_alive(self) -> None:
        """uvicorn's restart of a dead worker, and then its metrics leave the sums: a
        SIGKILLed worker never ran its own clean-up, so its live gauges (connections,
        rooms, requests in flight) would count forever in every scrape."""
        before = [p.pid for p in self.processes]
        super().keep_subprocess_alive()
        for old, new in zip(before, [p.pid for p in self.processes], strict=False):
            if old is not None and old != new:
                process_gone(old)

    def handle_int(self) -> None:
        self._arm()
        super().handle_int()

    def handle_term(self) -> None:
        self._arm()
        super().handle_term()


def worker_app() -> Any:
    """The app of one `--workers` process. It ends with the parent (a SIGKILLed
    parent must not leave workers serving on its port without their Redis)."""
    from server.state.redis_process import end_with_parent
    from server.web.app import create_app

    parent = os.environ.get(_PARENT_ENV, "")
    if parent.isdecimal():
        end_with_parent(int(parent))
    resolved = os.environ.get(_SETTINGS_ENV)
    if not resolved:
        return create_app()
    settings = load_settings(None, env={}, overrides=json.loads(resolved))
    configure_logging(settings)  # a spawned worker starts with no logging set up
    return create_app(settings)


def _print_urls(host: str, port: int) -> None:
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else f"[{host}]" if ":" in host else host
    base = f"http://{shown}:{port}"
    print(f"livesell is running\n  viewer page:  {base}/\n  host console: {base}/host\n"
          f"  API:          {base}/api\nPress Ctrl-C to stop.", flush=True)
