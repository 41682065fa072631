"""The process side of "every promise holds under faults": the embedded
redis-server is supervised (restarted on the same port and files when it dies),
dies with its server, is never run twice on one append-only file, a data
directory has one owner, a failed start ends at once, and SIGTERM ends with 0.

Everything runs as real processes, faults are real signals, and every check is
made from outside: processes in /proc, Redis over its socket, the server over
HTTP and WebSocket. Every wait has a deadline; none relies on a sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from websockets.asyncio.client import connect

from server.core.keys import room_keys
from server.state.embedded_redis import RedisServer
from server.state.ownership import DataDirBusy, claim, holds, use_for_redis
from server.state.redis_probe import answering_pid, free_port
from server.state.redis_process import RedisStartError, find_redis_server, read_password
from server.state.redis_supervisor import RedisState, RedisSupervisor
from tests.support import Host, ViewerClient, create_room, wait_until

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="watches processes through /proc")

START_S = 60.0  # a loaded CI machine may take long to start a server
_serial = itertools.count(1)


# ---------------------------------------------------------------- /proc, from outside


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, parent pid) of a process, None when it no longer exists."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[0], int(fields[1])


def alive(pid: int) -> bool:
    """Running (a zombie has ended; it only waits for its parent to reap it)."""
    st = _stat(pid)
    return st is not None and st[0] not in ("Z", "X")


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _pids() -> list[int]:
    return [int(e.name) for e in Path("/proc").iterdir() if e.name.isdigit()]


def redis_children(parent: int) -> list[int]:
    return [pid for pid in _pids() if _comm(pid) == "redis-server" and alive(pid)
            and (_stat(pid) or ("", 0))[1] == parent]


def children(parent: int) -> list[int]:
    return [pid for pid in _pids() if alive(pid) and (_stat(pid) or ("", 0))[1] == parent]


def redis_servers_on(directory: Path) -> list[int]:
    """Live redis-server processes whose working directory, the one they keep
    their append-only file in, is `directory`."""
    found = []
    for pid in _pids():
        if _comm(pid) != "redis-server" or not alive(pid):
            continue
        with contextlib.suppress(OSError):
            if os.path.samefile(os.readlink(f"/proc/{pid}/cwd"), directory):
                found.append(pid)
    return found


def redis_port_of(pid: int) -> int:
    """The port in redis-server's process title, `redis-server 127.0.0.1:PORT`."""
    title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").split()
    return int(title[1].rsplit(b":", 1)[1])


async def until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.0f}s: {what}")
        await asyncio.sleep(0.02)


def password_on(port: int) -> str | None:
    """The password of the redis-server on `port`, from the file in the directory it
    works in (None for one started without: an orphan a test made by hand)."""
    for pid in _pids():
        if _comm(pid) != "redis-server" or not alive(pid):
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            if redis_port_of(pid) == port:
                return read_password(Path(os.readlink(f"/proc/{pid}/cwd")))
    return None


def redis_client(port: int) -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=port, password=password_on(port),
                       socket_timeout=10, decode_responses=True)


def redis_pid_on(port: int) -> int | None:
    try:
        with redis_client(port) as r:
            return int(r.info("server")["process_id"])
    except (redis.RedisError, OSError):
        return None


def subscribers(port: int, channel: str) -> int:
    try:
        with redis_client(port) as r:
            return int(dict(r.pubsub_numsub(channel)).get(channel, 0))
    except (redis.RedisError, OSError):
        return 0


# ---------------------------------------------------------------- a served livesell


class Served:
    """`python -m server serve` as a user runs it, output in files."""

    def __init__(self, tmp: Path, data: Path, *args: str, port: int = 0) -> None:
        n = next(_serial)
        self.out_path, self.err_path = tmp / f"serve{n}.out", tmp / f"serve{n}.err"
        env = {k: v for k, v in os.environ.items() if not k.startswith("LIVESELL_")}
        with self.out_path.open("wb") as out, self.err_path.open("wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "server", "serve", "--host", "127.0.0.1",
                 "--port", str(port), "--data-dir", str(data), "--log-level", "info", *args],
                stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env)
        self.base = ""
        self.port = 0
        self.seen_redis: set[int] = set()  # its redis-server children, for the clean-up

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace")

    def wait_serving(self) -> Served:
        def url() -> str | None:
            for line in self.out_path.read_text().splitlines():
                if "host console:" in line:
                    return line.split("host console:")[1].strip().removesuffix("/host")
            if self.proc.poll() is not None:
                raise AssertionError(f"serve exited with {self.proc.returncode}: {self.stderr}")
            return None

        self.base = wait_until(url, START_S, "the server prints its URLs")
        self.port = int(self.base.rsplit(":", 1)[1])
        wait_until(self.healthy, START_S, "the server answers /api/health")
        return self

    def healthy(self) -> bool:
        try:
            # Readiness, not liveness: /api/health answers 200 with Redis down too.
            return httpx.get(self.base + "/api/ready", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    def redis_child(self) -> int:
        found: list[int] = wait_until(lambda: redis_children(self.pid), START_S,
                                      "the server's redis-server child")
        assert len(found) == 1, found
        self.seen_redis.update(found)
        return found[0]

    def exit_status(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"serve still runs after {timeout:.0f}s: {self.stderr}") \
                from None

    def end(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@contextlib.contextmanager
def serving(tmp: Path, data: Path, *args: str, port: int = 0) -> Iterator[Served]:
    """A served livesell; afterwards it is stopped and any redis-server child of it
    still running is killed, so a failing test leaves nothing running."""
    served = Served(tmp, data, *args, port=port)
    try:
        yield served
    finally:
        served.seen_redis.update(redis_children(served.pid))
        served.end()
        for pid in served.seen_redis:
            if alive(pid) and _comm(pid) == "redis-server":
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)


async def join_at(port: int, room_id: str) -> ViewerClient:
    ws = await connect(f"ws://127.0.0.1:{port}/ws/{room_id}", max_size=2**24,
                       compression=None, open_timeout=30)
    viewer = ViewerClient(ws)
    await viewer.next_event("welcome")
    return viewer


# After a Redis restart, the first command on each pooled connection may fail:
# redis-py 8.1.0 hands out connections the server closed (redis/redis-py#4252,
# fixed upstream after 8.1.0). Requests right after the restart are retried here
# until they are answered; the bound keeps the test honest.


async def buy_when_back(viewer: ViewerClient, product_id: str, timeout: float) -> dict[str, Any]:
    """Buy until the answer is not `unavailable` (Redis may still be coming back)."""
    deadline = time.monotonic() + timeout
    while True:
        answer = await viewer.request("buy", product_id=product_id, quantity=1)
        if answer.get("code") != "unavailable" or time.monotonic() > deadline:
            return answer
        await asyncio.sleep(0.05)


async def host_when_back(host: Host, method: str, path: str, body: Any = None, *,
                         timeout: float) -> httpx.Response:
    """A host request, repeated while the answer is 503 `unavailable`."""
    deadline = time.monotonic() + timeout
    while True:
        r = await host.http.request(method, f"/api/rooms/{host.room_id}{path}", json=body,
                                    headers={"X-Host-Key": host.key})
        if r.status_code != 503 or time.monotonic() > deadline:
            return r
        await asyncio.sleep(0.05)


# ---------------------------------------------------------------- (a) restart


async def test_a_killed_redis_child_comes_back_on_its_port_with_its_data(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with serving(tmp_path, data) as served:
        served.wait_serving()
        first = served.redis_child()
        port = redis_port_of(first)
        async with httpx.AsyncClient(base_url=served.base, timeout=30) as http:
            host: Host = await create_room(http)
            product = (await host.product(stock=10))["product_id"]
            await host.sale(product, units=5, limit=1)
            early = await join_at(served.port, host.room_id)
            late = await join_at(served.port, host.room_id)
            try:
                bought = await early.request("buy", product_id=product, quantity=1,
                                             request_id="before-kill")
                assert bought["type"] == "hold", bought
                placed = await early.request("checkout", hold_id=bought["hold"]["id"])
                assert placed["type"] == "order_placed", placed
                with redis_client(port) as r:
                    r.set("test:written-before-kill", "yes")
                    keys_before = set(r.keys(f"ls:{{{host.room_id}}}:*"))

                os.kill(first, signal.SIGKILL)
                second = wait_until(lambda: [p for p in redis_children(served.pid)
                                             if p != first], 30, "a new redis-server child")[0]
                await until(lambda: redis_pid_on(port) == second, 30,
                            "the new child answers on the same port")
                assert redis_servers_on(data / "redis") == [second]
                with redis_client(port) as r:
                    assert r.get("test:written-before-kill") == "yes"
                    assert keys_before <= set(r.keys(f"ls:{{{host.room_id}}}:*"))

                # Buys are answered again, the first buy's answer survived the restart,
                # and an event reaches a viewer who stayed connected through it.
                again = await buy_when_back(late, product, 30)
                assert again["type"] == "hold", again
                replay = await early.request("buy", product_id=product, quantity=1,
                                             request_id="before-kill")
                assert replay["type"] == "hold" and replay["hold"] == bought["hold"], replay
                placed = await late.request("checkout", hold_id=again["hold"]["id"])
                assert placed["type"] == "order_placed", placed
                # redis-py's PubSub subscribes again when its connection comes back
                # (the hub's listener retries every 0.5 s); an event published
                # before that is lost to pub/sub and found by the viewer's resync.
                await until(lambda: subscribers(port, room_keys(host.room_id).channel) == 1,
                            30, "the hub subscribes to the room again")
                posted = await host_when_back(host, "POST", "/announcements",
                                              {"text": "still here"}, timeout=30)
                assert posted.status_code == 201, posted.text
                heard = await early.next_event("announcement", timeout=30)
                assert heard["text"] == "still here"
                audited = await host_when_back(host, "GET", "/audit", timeout=30)
                assert audited.status_code == 200, audited.text
                audit = audited.json()
                assert audit["ok"], audit
                assert audit["products"][0]["sold"] == 2, audit
            finally:
                await early.close()
                await late.close()
        assert served.healthy()
        # The supervisor logged the death and the return, and no error of its own.
        assert "restarting it in" in served.stderr and "redis-server is back" in served.stderr
        assert "ERROR livesell.redis" not in served.stderr, served.stderr


# ---------------------------------------------------------------- (b) dies with the server


def test_b_a_killed_server_takes_its_redis_child_along(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with serving(tmp_path, data) as served:
        served.wait_serving()
        child = served.redis_child()
        served.proc.kill()
        served.proc.wait(30)
        wait_until(lambda: not alive(child), 20, f"redis-server {child} ends with its server")
        assert redis_servers_on(data / "redis") == []
    # The kernel dropped the dead server's lock: the next server starts at once.
    with serving(tmp_path, data) as again:
        again.wait_serving()
        assert redis_servers_on(data / "redis") == [again.redis_child()]


# ---------------------------------------------------------------- (c) orphans


@pytest.mark.parametrize("pid_file", [True, False], ids=["pid-file", "no-pid-file"])
def test_c_an_orphan_on_the_data_directory_is_stopped_first(tmp_path: Path,
                                                            pid_file: bool) -> None:
    """An older version's redis-server, still running on the directory (its own
    session, no death signal; with a pid file, or without one as versions before
    the pid file left it): stopped before the new child starts, its data kept."""
    data = tmp_path / "data"
    redis_dir = data / "redis"
    redis_dir.mkdir(parents=True)
    port = free_port()
    orphan = subprocess.Popen(
        [find_redis_server(), "--port", str(port), "--bind", "127.0.0.1",
         "--dir", str(redis_dir), "--appendonly", "yes", "--appendfsync", "everysec",
         "--save", "", "--daemonize", "no", "--logfile", str(redis_dir / "redis.log")],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)
    try:
        wait_until(lambda: redis_pid_on(port) == orphan.pid, 30, "the orphan answers")
        with redis_client(port) as r:
            r.set("test:written-by-the-orphan", "kept")
        if pid_file:
            (redis_dir / "redis-server.pid").write_text(
                json.dumps({"pid": orphan.pid, "port": port, "owner": 1}))
        with serving(tmp_path, data) as served:
            served.wait_serving()
            # SIGTERM, not SIGKILL: redis-server exits 0 after flushing its file.
            assert orphan.wait(30) == 0
            child = served.redis_child()
            assert redis_servers_on(redis_dir) == [child]
            with redis_client(redis_port_of(child)) as r:
                assert r.get("test:written-by-the-orphan") == "kept"
            assert f"stopping redis-server pid {orphan.pid}" in served.stderr
    finally:
        if orphan.poll() is None:
            orphan.kill()
            orphan.wait()


def test_c_a_stale_pid_file_is_ignored_and_replaced(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "redis").mkdir(parents=True)
    # The pid file names a process that is no redis-server although it looks close:
    # an operator's redis-cli working in the same directory (a copy of `sleep` under
    # that name). It must be left alone, and the file replaced.
    tool = tmp_path / "redis-cli"
    shutil.copy(shutil.which("sleep") or "/bin/sleep", tool)
    bystander = subprocess.Popen([str(tool), "300"], cwd=data / "redis")
    try:
        (data / "redis" / "redis-server.pid").write_text(json.dumps({"pid": bystander.pid}))
        with serving(tmp_path, data) as served:
            served.wait_serving()
            child = served.redis_child()
            recorded = json.loads((data / "redis" / "redis-server.pid").read_text())
            assert recorded["pid"] == child
        assert bystander.poll() is None, "the redis-cli bystander was stopped"
    finally:
        bystander.kill()
        bystander.wait()


def test_c_a_foreign_redis_on_the_port_is_never_adopted(tmp_path: Path) -> None:
    """redis.port names a port where another Redis (not on our directory) answers:
    the start fails with a message, the stranger is left alone, nothing of ours
    runs. The child here starts a second late, so the stranger answers first."""
    late = tmp_path / "late-redis-server"
    late.write_text(f'#!/bin/sh\nsleep 1\nexec "{find_redis_server()}" "$@"\n')
    late.chmod(0o755)
    with RedisServer(tmp_path / "foreign", appendonly=False) as foreign:
        assert foreign.pid is not None and foreign.port
        before = set(children(os.getpid()))
        embedded = RedisServer(tmp_path / "ours", binary=str(late), port=foreign.port)
        # The stranger has a password of its own, so it cannot tell us its pid.
        with pytest.raises(RedisStartError, match=rf"another Redis answers on 127.0.0.1:"
                                                  rf"{foreign.port}, refusing our password"):
            embedded.start()
        assert embedded.process is None
        assert set(children(os.getpid())) <= before
        assert redis_pid_on(foreign.port) == foreign.pid


# ---------------------------------------------------------------- (d) one owner


def test_d_a_second_server_on_the_directory_exits_and_starts_nothing(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with serving(tmp_path, data) as first:
        first.wait_serving()
        child = first.redis_child()
        with serving(tmp_path, data) as second:
            status = second.exit_status(20)
            assert status != 0
            assert "livesell.lock" in second.stderr and f"pid {first.pid}" in second.stderr, \
                second.stderr
            assert "Traceback" not in second.stderr
        assert first.healthy()
        assert redis_servers_on(data / "redis") == [child]
        assert redis_children(first.pid) == [child]


def test_d_the_lock_is_one_per_directory_and_dropped_with_its_holder(tmp_path: Path) -> None:
    data = tmp_path / "data"
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from pathlib import Path; from server.state.ownership import claim; "
         "claim(Path(sys.argv[1])); print('held', flush=True); time.sleep(120)", str(data)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(DataDirBusy, match=f"pid {holder.pid}"):
            claim(data)
        assert not holds(data)
        holder.kill()
        holder.wait(30)
        lock = claim(data)  # the lock file is still there; its lock is not
        try:
            assert holds(data)
            with pytest.raises(DataDirBusy):
                claim(data)
            # serve holds the lock; one embedded Redis of this process may use it.
            use = use_for_redis(data)
            with pytest.raises(DataDirBusy, match=f"pid {os.getpid()}"):
                use_for_redis(data)
            use.release()
            assert holds(data)
            use_for_redis(data).release()
        finally:
            lock.release()
        assert not holds(data)
        use = use_for_redis(data)  # takes the lock itself, and gives it up after
        assert holds(data)
        use.release()
        assert not holds(data)
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()


# ---------------------------------------------------------------- (e) failed start


def test_e_port_in_use_exits_at_once_and_leaves_no_redis(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with serving(tmp_path, data, port=port) as served:
            status = served.exit_status(20)
            assert status != 0
            assert f"cannot listen on 127.0.0.1:{port}" in served.stderr, served.stderr
            assert "Traceback" not in served.stderr
            assert children(served.pid) == []
        assert not (data / "redis").exists() or redis_servers_on(data / "redis") == []
    # Nothing was left holding the directory either.
    with serving(tmp_path, data) as after:
        after.wait_serving()


# ---------------------------------------------------------------- (f) clean stop


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_f_a_signal_stops_cleanly_with_status_0(tmp_path: Path, sig: signal.Signals) -> None:
    data = tmp_path / "data"
    with serving(tmp_path, data) as served:
        served.wait_serving()
        child = served.redis_child()
        served.proc.send_signal(sig)
        assert served.exit_status(60) == 0, served.stderr
        assert not alive(child)
        assert redis_servers_on(data / "redis") == []
        assert not (data / "redis" / "redis-server.pid").exists()
        assert "Traceback" not in served.stderr, served.stderr


# ---------------------------------------------------------------- --workers


def test_workers_parent_supervises_redis_and_takes_everything_along(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with serving(tmp_path, data, "--workers", "2", port=free_port()) as served:
        served.wait_serving()
        first = served.redis_child()
        workers = wait_until(lambda: [p for p in children(served.pid) if p != first
                                      and len(children(served.pid)) >= 3], START_S,
                             "two worker processes")
        os.kill(first, signal.SIGKILL)
        wait_until(lambda: [p for p in redis_children(served.pid) if p != first], 30,
                   "a new redis-server child")
        wait_until(served.healthy, 30, "the workers answer again")
        served.proc.kill()
        served.proc.wait(30)
        wait_until(lambda: not any(alive(p) for p in [*workers, *redis_children(served.pid)])
                   and redis_servers_on(data / "redis") == [], 30,
                   "workers and redis-server end with their parent")


# ---------------------------------------------------------------- the supervisor itself


def test_supervisor_gives_up_after_its_restart_attempts(tmp_path: Path) -> None:
    states: list[RedisState] = []
    lock = threading.Lock()

    def note(state: RedisState) -> None:
        with lock:
            states.append(state)

    supervisor = RedisSupervisor(tmp_path / "redis", appendonly=False, restart_attempts=2,
                                 restart_backoff_max_s=0.2)
    supervisor.add_listener(note)
    supervisor.start()
    try:
        first = supervisor.pid
        assert first is not None and supervisor.state is RedisState.UP
        os.kill(first, signal.SIGKILL)
        second = wait_until(lambda: supervisor.state is RedisState.UP and supervisor.pid
                            not in (None, first) and supervisor.pid, 30, "a restarted child")
        assert supervisor.restarts == 1
        os.kill(second, signal.SIGKILL)
        wait_until(lambda: supervisor.state is RedisState.FAILED, 30, "the supervisor gives up")
        assert redis_servers_on(tmp_path / "redis") == []
        with lock:
            assert states == [RedisState.STARTING, RedisState.UP, RedisState.DOWN,
                              RedisState.RESTARTING, RedisState.UP, RedisState.FAILED]
    finally:
        supervisor.stop()
    assert states[-1] is RedisState.FAILED  # stop() after giving up keeps "failed"


def test_supervisor_stop_ends_child_and_thread(tmp_path: Path) -> None:
    supervisor = RedisSupervisor(tmp_path / "redis", appendonly=False)
    url = supervisor.start()
    child = supervisor.pid
    assert child is not None and supervisor.password
    assert url == f"redis://:{supervisor.password}@127.0.0.1:{supervisor.port}/0"
    assert redis_pid_on(supervisor.port) == child
    supervisor.stop()
    assert not alive(child) and supervisor.state is RedisState.STOPPED
    assert not any(t.name == "redis-supervisor" and t.is_alive()
                   for t in threading.enumerate())


async def test_in_process_servers_with_embedded_redis_own_their_directories(
        tmp_path: Path) -> None:
    """Services.start takes the directory's lock before its embedded Redis starts
    (serve is not there to take it): a second server on the directory fails to
    start and starts no Redis; one on another directory runs beside the first."""
    from server.web.services import Services
    from tests.support import LiveServer, make_settings

    first = await LiveServer(make_settings("", tmp_path / "one")).start()
    try:
        assert holds(tmp_path / "one")
        child = first.services.embedded.pid
        assert redis_servers_on(tmp_path / "one" / "redis") == [child]
        second = Services(make_settings("", tmp_path / "one"))
        try:
            with pytest.raises(DataDirBusy, match=f"pid {os.getpid()}"):
                await second.start()
        finally:
            await second.stop()
        assert second.embedded is None
        assert redis_servers_on(tmp_path / "one" / "redis") == [child]
        assert holds(tmp_path / "one")
        other = await LiveServer(make_settings("", tmp_path / "two")).start()
        try:
            assert holds(tmp_path / "two")
            assert other.services.embedded.pid != child
        finally:
            await other.stop()
        assert not holds(tmp_path / "two")
    finally:
        await first.stop()
    assert not holds(tmp_path / "one") and not alive(child)


@pytest.mark.parametrize("reply", [b"$-1\r\n", b"$999999999\r\n", b"$100\r\nprocess_id:1"])
def test_whatever_listens_on_the_port_cannot_stall_the_start(reply: bytes) -> None:
    """answering_pid reads what a stranger's listener sends: a bounded amount, within
    a bounded time, whatever length it claims or however slowly it trickles."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    done = threading.Event()

    def trickle() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(64)
            conn.sendall(reply)
            while not done.wait(0.2):
                with contextlib.suppress(OSError):
                    conn.sendall(b"x")

    feeder = threading.Thread(target=trickle, daemon=True)
    feeder.start()
    started = time.monotonic()
    try:
        assert answering_pid(port) is None
        assert time.monotonic() - started < 10  # INFO_DEADLINE_S is 2 s
    finally:
        done.set()
        feeder.join(10)
        listener.close()
