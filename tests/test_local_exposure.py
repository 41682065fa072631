"""Local exposure: another user on the machine can neither talk to the embedded
Redis nor read the data directory.

The embedded redis-server is started the way the server starts it (a
RedisSupervisor, or the real `python -m server serve`) and checked from
outside: over raw sockets and redis-py, through /proc, and through the modes of
the files on disk. The CLI runs with umask 0, so every mode seen is one the
server chose, not one the test runner's umask happened to give.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from websockets.asyncio.client import connect

from server.state.embedded_redis import RedisServer
from server.state.ownership import private_file
from server.state.redis_probe import probe
from server.state.redis_process import PASSWORD_FILE, process_alive, read_password
from server.state.redis_supervisor import RedisState, RedisSupervisor
from server.web import logfilter
from tests.support import Host, ViewerClient, create_room, wait_until

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="reads /proc and POSIX file modes")

START_S = 60.0


def _raw(port: int, payload: bytes) -> bytes:
    """What Redis answers to `payload`, read to the first line end (bounded)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(payload)
        data = b""
        deadline = time.monotonic() + 10
        while b"\r\n" not in data and time.monotonic() < deadline and len(data) < 4096:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        return data


def _listening(port: int) -> list[str]:
    """The local addresses (hex, as /proc/net/tcp* writes them) listening on `port`."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                address, hex_port = fields[1].rsplit(":", 1)
                if int(hex_port, 16) == port and fields[3] == "0A":  # LISTEN
                    found.append(address)
    return found


def _cmdline(pid: int) -> bytes:
    return Path(f"/proc/{pid}/cmdline").read_bytes()


def _group_or_other_bits(root: Path) -> dict[str, str]:
    """Every path under `root` (itself included) that group or others may use."""
    loose = {}
    for path in [root, *root.rglob("*")]:
        mode = path.lstat().st_mode
        if stat.S_IMODE(mode) & 0o077:
            loose[str(path.relative_to(root))] = oct(stat.S_IMODE(mode))
    return loose


# ---------------------------------------------------------------- the embedded Redis


def test_embedded_redis_refuses_clients_without_its_password(tmp_path: Path) -> None:
    supervisor = RedisSupervisor(tmp_path / "redis", appendonly=True)
    url = supervisor.start()
    try:
        port, password = supervisor.port, supervisor.password
        assert password and len(password) >= 32
        # No password, a wrong one: refused before any command runs.
        assert _raw(port, b"PING\r\n").startswith(b"-NOAUTH")
        assert _raw(port, b"SET ls:x 1\r\n").startswith(b"-NOAUTH")
        assert _raw(port, b"AUTH " + b"x" * 43 + b"\r\n").startswith(b"-WRONGPASS")
        with redis.Redis(host="127.0.0.1", port=port, socket_timeout=10) as anonymous, \
                pytest.raises(redis.AuthenticationError):
            anonymous.ping()
        assert probe(port) == (None, True)  # what the supervisor sees of a stranger
        # With it, everything works; its URL carries it.
        with redis.Redis.from_url(url, decode_responses=True, socket_timeout=10) as r:
            assert r.set("ls:test", "1") is True and r.get("ls:test") == "1"
            assert r.info("server")["process_id"] == supervisor.pid
            assert r.config_get("bind")["bind"] == "127.0.0.1"
        assert probe(port, password).pid == supervisor.pid
        # Loopback only: one listening socket, on 127.0.0.1 (0100007F), none on ::.
        assert _listening(port) == ["0100007F"]
    finally:
        supervisor.stop()


def test_password_is_private_off_the_command_line_and_kept_across_restarts(
        tmp_path: Path) -> None:
    directory = tmp_path / "redis"
    supervisor = RedisSupervisor(directory, appendonly=True, restart_backoff_max_s=0.2)
    url = supervisor.start()
    try:
        password = supervisor.password
        first = supervisor.pid
        assert password is not None and first is not None
        path = directory / PASSWORD_FILE
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert read_password(directory) == password
        # Not in what any local user can read of the process, nor in its environment.
        assert password.encode() not in Path(f"/proc/{first}/cmdline").read_bytes()
        assert password.encode() not in Path(f"/proc/{first}/environ").read_bytes()
        assert password.encode() not in (directory / "redis.log").read_bytes()
        with redis.Redis.from_url(url, decode_responses=True, socket_timeout=10) as r:
            r.set("ls:kept", "yes")
            # A child that dies comes back with the same password: a client holding
            # the URL goes on (its pooled connection may fail once, then reconnects).
            os.kill(first, signal.SIGKILL)
            wait_until(lambda: supervisor.state is RedisState.UP
                       and supervisor.pid not in (None, first), 30, "a restarted child")

            def kept() -> str | None:
                try:
                    value: str | None = r.get("ls:kept")
                    return value
                except (redis.ConnectionError, redis.TimeoutError):
                    return None

            assert wait_until(kept, 30, "the restarted child answers the old URL") == "yes"
            second = supervisor.pid
            assert second is not None
            assert password.encode() not in Path(f"/proc/{second}/cmdline").read_bytes()
    finally:
        supervisor.stop()
    # A new start on the directory (the next run of the server) reuses it too.
    with RedisServer(directory, appendonly=True) as again:
        assert again.password == password and again.url == url.replace(
            f":{supervisor.port}/", f":{again.port}/")
        with redis.Redis.from_url(again.url, decode_responses=True) as r:
            assert r.get("ls:kept") == "yes"
    assert read_password(directory) == password


def test_a_mangled_password_file_stops_the_start_with_a_message(tmp_path: Path) -> None:
    directory = tmp_path / "redis"
    directory.mkdir()
    (directory / PASSWORD_FILE).write_text("short\n")
    server = RedisServer(directory, appendonly=False)
    with pytest.raises(RuntimeError, match=rf"{PASSWORD_FILE} does not hold a password"):
        server.start()
    assert server.process is None


def test_files_of_an_earlier_version_are_tightened(tmp_path: Path) -> None:
    directory = tmp_path / "redis"
    directory.mkdir(mode=0o755)
    os.chmod(directory, 0o755)
    old_aof = directory / "appendonly.aof"
    old_aof.write_bytes(b"")
    os.chmod(old_aof, 0o644)
    with RedisServer(directory, appendonly=True) as server:
        assert server.password
        assert _group_or_other_bits(directory) == {}


def test_making_a_store_private_keeps_the_locks_sqlite_holds_on_it(tmp_path: Path) -> None:
    """Closing any descriptor of a file drops this process's POSIX locks on it, and
    SQLite locks with those: `private_file` on a database in use (a second in-process
    server on one store) must not open it, or another process could write into a
    transaction this one believes it holds alone."""
    path = tmp_path / "orders.sqlite3"
    private_file(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and path.stat().st_size == 0
    os.chmod(path, 0o644)
    db = sqlite3.connect(path, isolation_level=None)
    try:
        # The rollback journal: its locks are all on the database file (with WAL
        # the write lock is in -shm, and losing the file's lock shows differently:
        # a second connection recovers the WAL under the first, "disk I/O error").
        db.execute("CREATE TABLE t (x)")
        db.execute("BEGIN EXCLUSIVE")
        db.execute("INSERT INTO t VALUES (1)")
        private_file(path)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert _group_or_other_bits(tmp_path) == {}
        other = subprocess.run(
            [sys.executable, "-c", "import sqlite3, sys\n"
             "db = sqlite3.connect(sys.argv[1], timeout=0, isolation_level=None)\n"
             "try:\n    db.execute('BEGIN IMMEDIATE')\nexcept sqlite3.OperationalError as e:\n"
             "    print(e)\nelse:\n    print('got the lock')\n", str(path)],
            capture_output=True, text=True, timeout=60)
        assert other.stdout.strip() == "database is locked", other
        db.execute("COMMIT")
    finally:
        db.close()


# ---------------------------------------------------------------- external Redis URLs


def test_the_password_of_an_external_redis_url_is_redacted() -> None:
    assert logfilter.redact("cannot reach Redis at redis://:Sup3r-S3cret_pw@10.0.0.5:6379/0: x") \
        == "cannot reach Redis at redis://:[redacted]@10.0.0.5:6379/0: x"
    assert logfilter.redact("rediss://app:Sup3r-S3cret_pw@cache.internal:6380/1") \
        == "rediss://app:[redacted]@cache.internal:6380/1"
    assert logfilter.redact("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"


def test_a_refused_external_redis_password_is_not_logged(
        tmp_path: Path, redis_server: RedisServer) -> None:
    """An external Redis given by URL (the tests' own, which has a password): with
    a wrong password in the URL the server refuses to start, and says so without
    writing that password anywhere."""
    wrong = "Wr0ng-but-secret-" + "p" * 20
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVESELL_")}
    env["LIVESELL_REDIS_URL"] = f"redis://:{wrong}@127.0.0.1:{redis_server.port}/0"
    done = subprocess.run(
        [sys.executable, "-m", "server", "serve", "--port", "0", "--data-dir",
         str(tmp_path / "data"), "--log-level", "debug"],
        capture_output=True, text=True, env=env, timeout=120, stdin=subprocess.DEVNULL)
    assert done.returncode == 1, done
    assert "cannot reach Redis at redis://:[redacted]@127.0.0.1" in done.stderr, done.stderr
    assert wrong not in done.stderr and wrong not in done.stdout
    # It started no Redis of its own and wrote none of its files.
    assert not (tmp_path / "data" / "redis").exists()


def test_a_redis_that_never_answers_fails_the_start_within_its_timeout(
        tmp_path: Path) -> None:
    """A Redis that accepts connections but never answers (here: a stopped process)
    fails the start after redis.start_timeout_s with a message, instead of hanging
    the server's start for ever."""
    stalled = RedisServer(tmp_path / "stalled", appendonly=False)
    url = stalled.start()
    pid = stalled.pid
    assert pid is not None
    try:
        os.kill(pid, signal.SIGSTOP)
        env = {k: v for k, v in os.environ.items() if not k.startswith("LIVESELL_")}
        env["LIVESELL_REDIS_URL"] = url
        env["LIVESELL_REDIS_START_TIMEOUT_S"] = "1"
        done = subprocess.run(
            [sys.executable, "-m", "server", "serve", "--port", "0", "--data-dir",
             str(tmp_path / "data")],
            capture_output=True, text=True, env=env, timeout=120, stdin=subprocess.DEVNULL)
        assert done.returncode == 1, done
        assert "cannot reach Redis at" in done.stderr and "no answer within" in done.stderr, \
            done.stderr
    finally:
        os.kill(pid, signal.SIGCONT)
        stalled.stop()


# ---------------------------------------------------------------- the CLI on its defaults


class _Serve:
    """`python -m server serve` on the embedded defaults, run with umask 0."""

    def __init__(self, tmp: Path, data: Path, n: int) -> None:
        self.err_path = tmp / f"serve{n}.err"
        env = {k: v for k, v in os.environ.items() if not k.startswith("LIVESELL_")}
        env["LIVESELL_RECORD_ENABLED"] = "true"  # trace files too
        with self.err_path.open("wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "server", "serve", "--host", "127.0.0.1", "--port",
                 "0", "--data-dir", str(data), "--log-level", "warning"],
                stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL, env=env,
                text=True, umask=0)
        self.base = ""

    def wait_serving(self) -> str:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + START_S
        while not self.base and time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                raise AssertionError(f"serve exited: {self.err_path.read_text()}")
            if "host console:" in line:
                self.base = line.split("host console:")[1].strip().removesuffix("/host")
        assert self.base, "no URL printed"
        wait_until(self._ready, START_S, "the server is ready")
        return self.base

    def _ready(self) -> bool:
        try:
            return httpx.get(self.base + "/api/ready", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    def redis_child(self) -> int:
        def find() -> int | None:
            for entry in Path("/proc").iterdir():
                if entry.name.isdigit():
                    with contextlib.suppress(OSError, IndexError, ValueError):
                        ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                        if ppid == self.proc.pid and \
                                (entry / "comm").read_text().strip() == "redis-server":
                            return int(entry.name)
            return None

        found: int = wait_until(find, START_S, "the server's redis-server child")
        return found

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(60)
        finally:
            if self.proc.stdout is not None:
                self.proc.stdout.close()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@contextlib.contextmanager
def _serving(tmp: Path, data: Path, n: int) -> Iterator[_Serve]:
    served = _Serve(tmp, data, n)
    try:
        yield served
    finally:
        served.kill()


async def _buy_one(base: str, host: Host, product_id: str) -> dict[str, object]:
    port = int(base.rsplit(":", 1)[1])
    ws = await connect(f"ws://127.0.0.1:{port}/ws/{host.room_id}", compression=None,
                       open_timeout=30)
    viewer = ViewerClient(ws)
    try:
        await viewer.next_event("welcome")
        hold = await viewer.request("buy", product_id=product_id, quantity=1)
        assert hold["type"] == "hold", hold
        placed = await viewer.request("checkout", hold_id=hold["hold"]["id"])
        assert placed["type"] == "order_placed", placed
        return placed
    finally:
        await viewer.close()


async def test_cli_on_embedded_defaults_keeps_its_data_private_and_serves_after_restart(
        tmp_path: Path) -> None:
    data = tmp_path / "data"
    expected = {"livesell.lock", "secret.key", "orders.sqlite3", "orders.sqlite3-wal",
                "orders.sqlite3-shm", f"redis/{PASSWORD_FILE}", "redis/redis.log",
                "redis/redis-server.pid"}
    with _serving(tmp_path, data, 1) as served:
        base = served.wait_serving()
        child = served.redis_child()
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            host = await create_room(http)
            product = (await host.product(stock=10))["product_id"]
            await host.sale(product, units=5, limit=1)
            await _buy_one(base, host, product)
        present = {str(p.relative_to(data)) for p in data.rglob("*") if p.is_file()}
        assert expected <= present, expected - present
        # The append-only file: redis/appendonly.aof up to Redis 6, a manifest and its
        # parts in redis/appendonlydir/ from Redis 7 (both checked for privacy below).
        assert "redis/appendonly.aof" in present or \
            "redis/appendonlydir/appendonly.aof.manifest" in present, sorted(present)
        assert f"traces/{host.room_id}.jsonl" in present
        assert stat.S_IMODE(data.stat().st_mode) == 0o700
        assert _group_or_other_bits(data) == {}
        password = read_password(data / "redis")
        assert password is not None
        assert password.encode() not in _cmdline(child)
        assert password.encode() not in _cmdline(served.proc.pid)
        assert served.stop() == 0
        assert not process_alive(child)
    assert _group_or_other_bits(data) == {}
    assert password not in served.err_path.read_text()

    # As an earlier version would have left them: everything readable by all.
    for path in [data, *data.rglob("*")]:
        os.chmod(path, 0o755 if path.is_dir() else 0o644)

    with _serving(tmp_path, data, 2) as served:
        base = served.wait_serving()
        assert read_password(data / "redis") == password  # the same Redis password
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            # The room, its host key and its sale came back from the append-only file:
            # a second buyer buys, and Redis and the store agree on two units sold.
            host = Host(http, host.room_id, host.key)
            await _buy_one(base, host, product)
            audit = await host.audit()
            assert audit["ok"], audit
            assert audit["products"][0]["sold"] == 2 == audit["products"][0]["sold_in_store"]
            again = await create_room(http, "after the restart")
            other = (await again.product(stock=3))["product_id"]
            await again.sale(other, units=3, limit=1)
            await _buy_one(base, again, other)
        assert _group_or_other_bits(data) == {}
        assert served.stop() == 0
    assert _group_or_other_bits(data) == {}
