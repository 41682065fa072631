"""One owner per data directory: an exclusive lock on `data_dir/livesell.lock`.

`livesell serve` takes it before it starts anything. Before an embedded Redis
starts, `use_for_redis` takes it too unless this process holds it already, and
allows one embedded Redis per directory even within one process.
The lock is an flock(2) on an open file, so the kernel drops it when the
holder ends, however it ends: a stale lock file never blocks a restart. The
holder's pid is written inside for the message a second server prints.
Locks this process holds are kept in a registry, because a second flock from
the same process on a fresh descriptor would conflict with the first.

The directory holds the orders, the token secret and the embedded Redis's data
and password, so it is this user's only: created (or tightened to) mode 0700,
and its files created 0600 (`private_dir`, `private_file`). Modes are given
where each file is made, never through the umask, which is process-wide.
"""

from __future__ import annotations

import fcntl
import os
import stat
import threading
from pathlib import Path

LOCK_FILE = "livesell.lock"
# Files livesell keeps at the top of a data directory (secret.key: server/web/app.py).
DATA_FILES = (LOCK_FILE, "secret.key")
# Suffixes of the files SQLite keeps beside a database (they take its mode when
# SQLite creates them, so a 0600 database gets 0600 companions).
SQLITE_COMPANIONS = ("-wal", "-shm", "-journal")

_held: dict[Path, DataDirLock] = {}
_registry_lock = threading.Lock()


class DataDirBusy(RuntimeError):
    """Another process owns the data directory."""

    def __init__(self, directory: Path, holder: int | None) -> None:
        who = f"pid {holder}" if holder is not None else "another process"
        super().__init__(
            f"data directory {directory} is in use by {who} "
            f"(it holds the lock {directory / LOCK_FILE}); stop it first or give "
            "this server another --data-dir")
        self.directory = directory
        self.holder = holder


class DataDirLock:
    """The held lock of one data directory; `release` gives it up."""

    def __init__(self, directory: Path, fd: int) -> None:
        self.directory = directory
        self.path = directory / LOCK_FILE
        self._fd: int | None = fd
        self.redis_in_use = False  # an embedded Redis of this process runs on it

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        with _registry_lock:
            if _held.get(self.directory) is self:
                del _held[self.directory]
            fd, self._fd = self._fd, None
        if fd is not None:
            # The file stays: deleting it would let a newcomer lock a fresh inode
            # while a third process still waits on the old one.
            os.close(fd)


def private_dir(directory: Path) -> None:
    """Create `directory` with mode 0700 (parents as the umask says), or take group
    and other permissions off it when it exists: a data directory made by an
    earlier version, or one the operator made, holds secrets either way."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    mode = directory.stat().st_mode & 0o7777
    if mode & 0o077:
        os.chmod(directory, mode & ~0o077)


def _tighten(path: Path) -> None:
    """Take group and other permissions off `path` if it exists (not a symlink's)."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        return
    if st.st_mode & 0o077 and not stat.S_ISLNK(st.st_mode):
        os.chmod(path, stat.S_IMODE(st.st_mode) & ~0o077)


def private_data_dir(directory: Path, trace_dir: Path) -> None:
    """The data directory 0700, and what an earlier version left readable by others
    in it made this user's only: the files livesell keeps there by name, and the
    traces. Only those: a data directory shared with other files (`--data-dir .`)
    keeps their modes. (The store's files: `private_file`; Redis's directory:
    server/state/embedded_redis.py.)"""
    private_dir(directory)
    for name in DATA_FILES:
        _tighten(directory / name)
    if trace_dir.is_dir():
        _tighten(trace_dir)
        for trace in trace_dir.glob("*.jsonl"):
            _tighten(trace)


def private_file(path: Path) -> None:
    """Make sure `path` exists with no group or other permissions: created empty
    with mode 0600 when missing (an empty file is a valid empty SQLite database),
    tightened when it exists, and so are SQLite's companion files beside it.

    An existing file is never opened here: closing any descriptor of a file drops
    every POSIX lock this process holds on it, and SQLite's locks are POSIX locks
    (a second store in one process, or a reader, would lose its lock)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        _tighten(path)
    else:
        os.close(fd)  # new: nobody can hold a lock on it yet
    for suffix in SQLITE_COMPANIONS:
        _tighten(path.with_name(path.name + suffix))


def _key(data_dir: Path) -> Path:
    return Path(data_dir).expanduser().resolve()


def holder_of(data_dir: Path) -> int | None:
    """The pid written in the directory's lock file (it may be stale)."""
    try:
        text = (_key(data_dir) / LOCK_FILE).read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def claim(data_dir: Path) -> DataDirLock:
    """Take the data directory's lock or raise DataDirBusy. Creates the directory."""
    directory = _key(data_dir)
    with _registry_lock:
        if directory in _held:
            raise DataDirBusy(directory, os.getpid())
        private_dir(directory)
        fd = os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise DataDirBusy(directory, holder_of(directory)) from None
        except BaseException:
            os.close(fd)
            raise
        if os.fstat(fd).st_mode & 0o077:  # made by an earlier version
            os.fchmod(fd, 0o600)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        lock = _held[directory] = DataDirLock(directory, fd)
        return lock


def holds(data_dir: Path) -> bool:
    """Whether this process holds the data directory's lock."""
    with _registry_lock:
        return _key(data_dir) in _held


class RedisUse:
    """An embedded Redis's use of a data directory; `release` ends it, and gives
    the lock up too when the use took it."""

    def __init__(self, lock: DataDirLock, took_lock: bool) -> None:
        self.lock = lock
        self.took_lock = took_lock
        self._released = False

    def release(self) -> None:
        with _registry_lock:
            if self._released:
                return
            self._released = True
            self.lock.redis_in_use = False
        if self.took_lock:
            self.lock.release()


def use_for_redis(data_dir: Path) -> RedisUse:
    """Claim the directory for one embedded Redis: take its lock unless this
    process holds it already (`livesell serve` took it first), and refuse when
    another process holds it or an embedded Redis of this process uses it."""
    directory = _key(data_dir)
    with _registry_lock:
        lock = _held.get(directory)
        if lock is not None:
            if lock.redis_in_use:
                raise DataDirBusy(directory, os.getpid())
            lock.redis_in_use = True
            return RedisUse(lock, took_lock=False)
    lock = claim(directory)
    with _registry_lock:
        lock.redis_in_use = True
    return RedisUse(lock, took_lock=True)
