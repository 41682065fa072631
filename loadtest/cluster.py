"""Several livesell servers behind a real load balancer, on this machine: one
Redis, one PostgreSQL, N `livesell serve` processes on 127.0.0.1, 127.0.0.2,
... (a different loopback address each, as different machines would have) and
HAProxy in front, WebSocket-aware, health-checking each server's /api/ready.
`livesell-loadtest run ... --servers N` runs its show through the balancer
(loadtest/target.py), `--chaos kill-server@T` SIGKILLs one of the servers
(loadtest/chaos.py), and tests/test_multi_server.py starts the same layout on
the test session's Redis and PostgreSQL.

The servers share what makes them one service: the Redis URL, the store URL,
the token secret (`auth.secret`, so a viewer's token minted on one server is
accepted by every other and a viewer resumes anywhere) and the admin key. Each
has a data directory of its own (the ownership lock; nothing else is kept
there with an external Redis and a PostgreSQL store). Secrets go to the
servers in their environment, never on a command line.

Every process started here (redis-server, postgres, the servers, haproxy) is
asked by the kernel to stop when the thread that started it ends
(PR_SET_PDEATHSIG), so a killed run leaves none behind; `stop` ends them in
order: the balancer, the servers (SIGINT, their drain), then Redis and
PostgreSQL in `cleanup`, after the store was read.

`ServerCluster` is a `SpawnedServer` to the rest of the load tester: `start`
returns the balancer's URL, `sample` adds up every server's CPU and memory,
`read_orders` reads PostgreSQL.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import csv
import io
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from loadtest.spawn import START_TIMEOUT_S, STOP_TIMEOUT_S, SpawnedServer, SpawnError
from loadtest.stats import ProcSample
from server.state.redis_probe import free_port
from server.state.redis_process import die_with_parent_preexec

MAX_SERVERS: Final = 8
HAPROXY_HINT: Final = ("HAProxy was not found (haproxy on PATH or /usr/sbin/haproxy): install "
                       "Debian's `haproxy` package (apt-get install haproxy); --servers "
                       "puts the servers behind it")
# Health checks: every CHECK_INTER_MS, a server is down after FALL failed checks in a
# row and up again after RISE good ones (HAProxy's inter, fall, rise).
CHECK_INTER_MS: Final = 500
FALL: Final = 2
RISE: Final = 2
# How long one check may take to be answered (HAProxy's `timeout check`). Unset, a
# check gets `inter` (500 ms) for its connect and answer both: a server merely slowed
# by CPU contention (its core shared with Redis, PostgreSQL, HAProxy and other work)
# then failed two checks in a row, was marked down and, by `on-marked-down
# shutdown-sessions`, had every viewer's connection closed, which then failed the
# run's checks (docs/benchmarks.md, "Several servers"). A killed server refuses the
# check's connection at once and is still out within FALL x inter; a hung one within
# about FALL x (inter + CHECK_TIMEOUT_MS).
CHECK_TIMEOUT_MS: Final = 2000
STATS_TIMEOUT_S: Final = 2.0
BACKEND: Final = "livesell"


def server_address(index: int) -> str:
    """The loopback address of the index-th server (0-based): 127.0.0.1, .2, ..."""
    return f"127.0.0.{index + 1}"


def find_haproxy() -> str | None:
    found = shutil.which("haproxy")
    if found:
        return found
    return "/usr/sbin/haproxy" if os.access("/usr/sbin/haproxy", os.X_OK) else None


def maxconn() -> int:
    """Connections HAProxy takes at once: each uses two descriptors (client and
    server side), within the hard limit of open files HAProxy may raise itself to."""
    try:
        import resource

        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    except (ImportError, OSError, ValueError):
        return 4096
    if hard == resource.RLIM_INFINITY:
        return 50_000
    return max(256, min(50_000, (hard - 200) // 2))


def haproxy_config(port: int, servers: list[tuple[str, str, int]], stats_socket: Path,
                   *, inter_ms: int = CHECK_INTER_MS,
                   check_timeout_ms: int = CHECK_TIMEOUT_MS) -> str:
    """The balancer's configuration (docs/deploy.md explains each line): HTTP mode
    (WebSocket upgrades are understood and the connection becomes a tunnel), least
    connections (viewers stay connected for a whole show), health checks on
    /api/ready (503 while a server starts, drains or has lost Redis or its store;
    an answer may take check_timeout_ms), a failed connection retried on another
    server, and the client's address passed on in X-Forwarded-For
    (server.forwarded_allow_ips lists the balancer)."""
    lines = [
        "global",
        f"    maxconn {maxconn()}",
        f"    stats socket {stats_socket} mode 600 level operator",
        "",
        "defaults",
        "    mode http",
        "    option forwardfor",
        "    option redispatch",
        "    retries 3",
        "    timeout connect 2s",
        "    timeout client 60s",
        "    timeout server 60s",
        "    timeout http-request 10s",
        "    timeout http-keep-alive 5s",
        "    timeout tunnel 1h",
        "    timeout client-fin 5s",
        "    timeout server-fin 5s",
        "",
        "frontend viewers",
        f"    bind 127.0.0.1:{port}",
        f"    default_backend {BACKEND}",
        "",
        f"backend {BACKEND}",
        "    balance leastconn",
        "    option httpchk",
        "    http-check send meth GET uri /api/ready",
        "    http-check expect status 200",
        f"    timeout check {check_timeout_ms}ms",
        f"    default-server inter {inter_ms}ms fastinter {max(100, inter_ms // 5)}ms "
        f"fall {FALL} rise {RISE} on-marked-down shutdown-sessions",
    ]
    lines += [f"    server {name} {host}:{p} check" for name, host, p in servers]
    return "\n".join(lines) + "\n"


class Balancer:
    """HAProxy as a child process, with its configuration and stats socket in
    `directory`, listening on a free 127.0.0.1 port."""

    def __init__(self, directory: Path, servers: list[tuple[str, str, int]],
                 port: int = 0) -> None:
        binary = find_haproxy()
        if binary is None:
            raise SpawnError(HAPROXY_HINT)
        self.binary = binary
        self.dir = directory
        self.servers = servers
        self.port = port or free_port()
        self.config = directory / "haproxy.cfg"
        # A Unix socket path is at most 107 bytes: keep it short.
        self.socket = directory / "ha.sock"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.config.write_text(haproxy_config(self.port, self.servers, self.socket))
        checked = subprocess.run([self.binary, "-c", "-q", "-f", str(self.config)],
                                 capture_output=True, text=True, timeout=60, check=False)
        if checked.returncode != 0:
            raise SpawnError(f"haproxy refused its configuration: "
                             f"{(checked.stderr or checked.stdout)[-2000:]}")
        log = (self.dir / "haproxy.log").open("ab")
        try:
            # -db: stay in the foreground, a child of ours (no daemon, no master).
            self.proc = subprocess.Popen([self.binary, "-db", "-f", str(self.config)],
                                         stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True,
                                         preexec_fn=die_with_parent_preexec())
        finally:
            log.close()
        self.wait_status({name: "UP" for name, _, _ in self.servers}, START_TIMEOUT_S)

    def log_tail(self, chars: int = 2000) -> str:
        with contextlib.suppress(OSError):
            return (self.dir / "haproxy.log").read_text(errors="replace")[-chars:]
        return ""

    def stats(self) -> dict[str, dict[str, str]]:
        """HAProxy's own view of each server of the backend (`show stat` on the
        stats socket): status (UP, DOWN, "UP 1/2" while rising, ...), scur (current
        sessions: a connected viewer is one), stot (sessions so far), ..."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(STATS_TIMEOUT_S)
            s.connect(str(self.socket))
            s.sendall(b"show stat\n")
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
        text = b"".join(chunks).decode(errors="replace").lstrip("# ")
        rows = csv.DictReader(io.StringIO(text))
        return {row["svname"]: dict(row) for row in rows
                if row.get("pxname") == BACKEND and row.get("svname") not in ("BACKEND",
                                                                              "FRONTEND")}

    def wait_status(self, want: dict[str, str], timeout: float) -> dict[str, dict[str, str]]:
        """Until HAProxy reports each named server in the wanted status (bounded)."""
        deadline = time.monotonic() + timeout
        seen: dict[str, dict[str, str]] = {}
        while True:
            if self.proc is not None and self.proc.poll() is not None:
                raise SpawnError(f"haproxy exited ({self.proc.returncode}): {self.log_tail()}")
            with contextlib.suppress(OSError):
                seen = self.stats()
                if all(seen.get(n, {}).get("status") == st for n, st in want.items()):
                    return seen
            if time.monotonic() > deadline:
                got = {n: seen.get(n, {}).get("status") for n in want}
                raise SpawnError(f"haproxy did not report {want} within {timeout:.0f}s "
                                 f"(it reports {got}): {self.log_tail()}")
            time.sleep(0.05)

    def stop(self) -> int | None:
        """SIGTERM (HAProxy's immediate stop: a soft stop would wait for every
        WebSocket tunnel to end); SIGKILL if it does not go."""
        proc, self.proc = self.proc, None
        if proc is None:
            return None
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                # Bounded too: a process stuck in the kernel is left, said, not waited for.
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(STOP_TIMEOUT_S)
        return proc.returncode


@dataclass(slots=True)
class ClusterServer:
    """One livesell server of the cluster."""

    name: str
    host: str
    data_dir: Path
    log_dir: Path
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    killed_at: float | None = None  # monotonic time of a SIGKILL (chaos kill-server)
    exit_code: int | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


def _ready(url: str) -> bool:
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback
    with contextlib.suppress(OSError), direct.open(f"{url}/api/ready", timeout=5) as reply:
        return bool(reply.status == 200)
    return False


class ServerCluster(SpawnedServer):
    """N livesell servers on one Redis and one PostgreSQL, behind HAProxy. Redis
    and PostgreSQL are started here unless their URLs are given (the tests give
    their session's). To the load tester it is one server at the balancer's URL."""

    def __init__(self, env: dict[str, str], count: int, cpus: list[int] | None = None,
                 keep_dir: Path | None = None, *, redis_cpus: list[int] | None = None,
                 redis_url: str | None = None, store_url: str | None = None,
                 redis_cluster: bool = False) -> None:
        if not 1 <= count <= MAX_SERVERS:
            raise SpawnError(f"--servers: {count} is not within 1..{MAX_SERVERS}")
        super().__init__(env, cpus, keep_dir, redis_cpus=redis_cpus, workers=1)
        self.count = count
        self.redis_url = redis_url or ""
        # The given Redis is a Redis Cluster (a start-up node): `redis.cluster` on.
        self.redis_cluster = redis_cluster
        if redis_cluster and not redis_url:
            raise SpawnError("--redis-cluster: needs the address of one of its nodes")
        self.store_url = store_url or ""
        self._own_redis: Any = None  # server.state.embedded_redis.RedisServer
        self._own_pg: Any = None  # loadtest.pg_cluster.PgCluster
        self.secret = secrets.token_hex(32)
        self.admin_key = secrets.token_urlsafe(24)
        self.servers: list[ClusterServer] = []
        self.balancer: Balancer | None = None

    # ------------------------------------------------------------ SpawnedServer's face

    @property
    def pid(self) -> int:
        """The first live server's pid (the report's `server.pid`)."""
        for s in self.servers:
            if s.alive:
                return s.pid
        return super().pid

    def live(self) -> list[ClusterServer]:
        return [s for s in self.servers if s.alive]

    def start(self) -> str:
        try:
            self._start_backing()
            self._start_servers()
            self.balancer = Balancer(self.dir / "haproxy",
                                     [(s.name, s.host, s.port) for s in self.servers])
            self.balancer.start()
        except BaseException:
            self.stop()
            self.cleanup()
            raise
        self.base = self.balancer.url
        self.port = self.balancer.port
        self.proc = self.servers[0].proc
        return self.base

    def _start_backing(self) -> None:
        if not self.redis_url:
            from server.state.embedded_redis import RedisServer

            self._own_redis = RedisServer(self.dir / "redis", appendonly=True,
                                          die_with_parent=True)
            self.redis_url = self._own_redis.start()
            self.redis_pid = self._own_redis.pid
            if self.redis_cpus and hasattr(os, "sched_setaffinity"):
                with contextlib.suppress(OSError):
                    os.sched_setaffinity(self.redis_pid, self.redis_cpus)
        if not self.store_url:
            from loadtest.pg_cluster import PgCluster

            try:
                self._own_pg = PgCluster()
                self._own_pg.start()
            except (FileNotFoundError, RuntimeError) as exc:
                raise SpawnError(f"--servers: the private PostgreSQL did not start: "
                                 f"{exc}") from None
            self.store_url = self._own_pg.url()

    def _server_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LIVESELL_")}
        env.update(self.env)
        env.update({
            # One service: the same Redis, store, token secret and admin key everywhere.
            "LIVESELL_REDIS_URL": self.redis_url,
            "LIVESELL_STORE_URL": self.store_url,
            "LIVESELL_AUTH_SECRET": self.secret,
            "LIVESELL_SERVER_ADMIN_KEY": self.admin_key,
        })
        if self.redis_cluster:
            env["LIVESELL_REDIS_CLUSTER"] = "true"
        return env

    def _start_servers(self) -> None:
        env = self._server_env()
        for i in range(self.count):
            s = ClusterServer(f"s{i + 1}", server_address(i), self.dir / f"s{i + 1}" / "data",
                              self.dir / f"s{i + 1}")
            s.log_dir.mkdir(parents=True, exist_ok=True)
            self.servers.append(s)
            with open(s.log_dir / "server.out", "wb") as out, \
                    open(s.log_dir / "server.err", "wb") as err:
                s.proc = subprocess.Popen(
                    [sys.executable, "-m", "server", "serve", "--host", s.host, "--port", "0",
                     "--data-dir", str(s.data_dir), "--log-level", "warning"],
                    stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env,
                    start_new_session=True, preexec_fn=die_with_parent_preexec())
            self._pin(s.pid)
        deadline = time.monotonic() + START_TIMEOUT_S
        for s in self.servers:
            self._wait_server(s, deadline)

    def _wait_server(self, s: ClusterServer, deadline: float) -> None:
        """Until the server printed its URL and answers /api/ready with 200."""
        out = s.log_dir / "server.out"
        while time.monotonic() < deadline:
            if not s.port:
                for line in out.read_text(errors="replace").splitlines():
                    if line.strip().startswith("API:"):
                        base = line.split("API:", 1)[1].strip().removesuffix("/api")
                        s.port = urlsplit(base).port or 0
            if s.port and _ready(s.url):
                return
            if s.proc is not None and s.proc.poll() is not None:
                raise SpawnError(f"server {s.name} on {s.host} exited during start-up: "
                                 + self._err_tail(s))
            time.sleep(0.05)
        raise SpawnError(f"server {s.name} on {s.host} not ready within "
                         f"{START_TIMEOUT_S:.0f}s: " + self._err_tail(s))

    @staticmethod
    def _err_tail(s: ClusterServer, chars: int = 2000) -> str:
        with contextlib.suppress(OSError):
            return (s.log_dir / "server.err").read_text(errors="replace")[-chars:]
        return ""

    def refresh(self) -> None:
        """Nothing is restarted here: a killed server stays down (the balancer
        takes it out)."""

    def restart(self) -> str:
        raise SpawnError("restart: a cluster's servers are not restarted by the load tester")

    def sample(self) -> tuple[ProcSample | None, ProcSample | None]:
        """Every server of the cluster added up (the CPU of a killed one kept), and
        Redis when it is ours. HAProxy and PostgreSQL are not counted."""
        pids = [s.pid for s in self.servers if s.alive]
        server = self._total("server", pids) if self.servers else None
        return server, self._total("redis", [self.redis_pid] if self.redis_pid else [])

    def kill(self, s: ClusterServer) -> None:
        """SIGKILL one server, as a machine that lost power would lose it."""
        assert s.proc is not None
        s.proc.kill()
        s.killed_at = time.monotonic()

    def balancer_stats(self) -> dict[str, dict[str, str]]:
        return self.balancer.stats() if self.balancer is not None else {}

    def sessions(self) -> dict[str, int]:
        """Current sessions per server as HAProxy counts them (a viewer is one)."""
        return {name: int(row.get("scur") or 0) for name, row in self.balancer_stats().items()}

    def describe(self) -> dict[str, Any]:
        """The layout, for the report's settings."""
        return {"servers": [{"name": s.name, "address": f"{s.host}:{s.port}",
                             "pid": s.proc.pid if s.proc else None,
                             "killed": s.killed_at is not None, "exit_code": s.exit_code}
                            for s in self.servers],
                "balancer": {"software": "haproxy", "url": self.base,
                             "pid": self.balancer.proc.pid if self.balancer and
                             self.balancer.proc else None,
                             "balance": "leastconn", "health_check": "GET /api/ready",
                             "check_inter_ms": CHECK_INTER_MS,
                             "check_timeout_ms": CHECK_TIMEOUT_MS, "fall": FALL, "rise": RISE},
                "redis": "private redis-server" if self._own_redis else
                "given Redis Cluster" if self.redis_cluster else "given",
                "store": "private PostgreSQL" if self._own_pg else "given PostgreSQL"}

    def stop(self) -> int | None:
        """The balancer first (no new connections), then every server with SIGINT
        (each drains), SIGKILL to one that overruns. Returns the worst exit code of
        the servers not killed on purpose."""
        if self.balancer is not None:
            self.balancer.stop()
        for s in self.servers:
            if s.alive:
                assert s.proc is not None
                s.proc.send_signal(signal.SIGINT)
        worst: int | None = None
        for s in self.servers:
            if s.proc is None:
                continue
            try:
                s.exit_code = s.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                s.proc.kill()
                try:
                    s.exit_code = s.proc.wait(STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    s.exit_code = None
                    s.notes.append("did not end even after SIGKILL")
                s.notes.append("SIGKILLed after not stopping in time")
            if s.killed_at is None and s.exit_code != 0:
                worst = s.exit_code
        return worst if worst is not None else (0 if self.servers else None)

    def read_orders(self, room_id: str) -> list[dict[str, Any]]:
        """Every order of the room, straight from PostgreSQL."""
        async def fetch() -> list[dict[str, Any]]:
            import asyncpg

            conn = await asyncpg.connect(self.store_url, timeout=30)
            try:
                rows = await conn.fetch("SELECT * FROM orders WHERE room_id = $1 "
                                        "ORDER BY created_at, order_id", room_id)
            finally:
                await conn.close()
            return [dict(r) for r in rows]

        # Called from inside the run's event loop (Target.stop): a loop of its own in a
        # thread of its own.
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, fetch()).result(timeout=120)

    def log_tail(self, chars: int = 3000) -> str:
        parts = [f"[{s.name}] {tail}" for s in self.servers if (tail := self._err_tail(s, chars))]
        if self.balancer is not None and (tail := self.balancer.log_tail(chars)):
            parts.append(f"[haproxy] {tail}")
        return "\n".join(parts)[-chars:]

    def cleanup(self) -> None:
        """Stop Redis and PostgreSQL when they are ours, then remove the directory."""
        if self._own_redis is not None:
            with contextlib.suppress(Exception):
                self._own_redis.stop()
            self._own_redis = None
        if self._own_pg is not None:
            with contextlib.suppress(Exception):
                self._own_pg.remove()
            self._own_pg = None
        super().cleanup()
