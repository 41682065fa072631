"""A private PostgreSQL for the tests and the store benchmark (loadtest/bench_store.py):
a cluster (initdb) in a temporary directory, one `postgres` server on a free
loopback port, stopped with the run.

PostgreSQL refuses to run as root, and the tests run as root in CI: the cluster's
directory then belongs to the `postgres` system user (Debian's package creates it)
and initdb and the server run as that user. Run as anyone else, they run as the
caller. The server listens on 127.0.0.1 only, with its Unix socket inside the
cluster's directory; the superuser `livesell` logs in over TCP with a password
(scram-sha-256), so the URLs the tests use carry one, as a production URL does.

It keeps fsync=on and synchronous_commit=on, PostgreSQL's defaults: the stores
under test commit durably, as they would in production (no test here depends on
a faster, unsafe setting). The server is asked by the kernel to stop when the
thread that started it ends (PR_SET_PDEATHSIG, the helper the embedded Redis uses),
so a killed test run leaves no postgres behind; a directory left by such a run is
removed by the next run that starts a cluster.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Final

from server.state.redis_probe import free_port
from server.state.redis_process import die_with_parent_preexec, process_alive

PACKAGE_HINT: Final = ("PostgreSQL's server binaries (initdb, postgres) were not found: "
                       "install Debian's `postgresql` package (apt-get install postgresql), "
                       "which the PostgreSQL store's tests and bench need; .ci/run "
                       "installs it")
PREFIX: Final = "livesell-pg-"
USER: Final = "livesell"
START_TIMEOUT_S: Final = 60.0


def find_binaries() -> tuple[str, str] | None:
    """(initdb, postgres): on PATH, else the newest of Debian's versioned folders."""
    initdb, postgres = shutil.which("initdb"), shutil.which("postgres")
    if initdb and postgres:
        return initdb, postgres
    for folder in sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                         key=lambda p: int(Path(p).parent.name)
                         if Path(p).parent.name.isdigit() else 0, reverse=True):
        i, p = Path(folder) / "initdb", Path(folder) / "postgres"
        if i.exists() and p.exists():
            return str(i), str(p)
    return None


def _run_as() -> str | None:
    """The user the cluster runs as: `postgres` when we are root, else ourselves."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise RuntimeError("the tests run as root and PostgreSQL refuses to: a `postgres` "
                           "system user is needed (Debian's `postgresql` package creates "
                           "it)") from None
    return "postgres"


def sweep_stale() -> None:
    """Remove the directories of clusters whose server is gone (a killed run's)."""
    for folder in Path(tempfile.gettempdir()).glob(f"{PREFIX}*"):
        pid_file = folder / "data" / "postmaster.pid"
        with contextlib.suppress(OSError, ValueError, IndexError):
            if pid_file.exists() and process_alive(int(pid_file.read_text().split()[0])):
                continue
            owner = folder / "owner"
            if owner.exists() and process_alive(int(owner.read_text())):
                continue  # another run's cluster, still starting
            shutil.rmtree(folder, ignore_errors=True)


class PgCluster:
    """One private PostgreSQL server. `start()` (initdb the first time), `stop()`,
    `start()` again on the same port and files: the fault tests stop it mid-sale."""

    def __init__(self) -> None:
        found = find_binaries()
        if found is None:
            raise FileNotFoundError(PACKAGE_HINT)
        self.initdb, self.postgres = found
        self.user = _run_as()
        sweep_stale()
        self.root = Path(tempfile.mkdtemp(prefix=PREFIX))
        (self.root / "owner").write_text(str(os.getpid()))
        self.data = self.root / "data"
        self.password = secrets.token_urlsafe(16)
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self._initialised = False

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{USER}:{self.password}@127.0.0.1:{self.port}/{database}"

    def _chown(self, path: Path) -> None:
        if self.user is not None:
            shutil.chown(path, self.user, self.user)

    def _initialise(self) -> None:
        self._chown(self.root)
        (self.root / "sock").mkdir()
        self._chown(self.root / "sock")
        pwfile = self.root / "pw"
        pwfile.write_text(self.password + "\n")
        self._chown(pwfile)
        log = self.root / "initdb.log"
        with log.open("wb") as out:
            done = subprocess.run(
                [self.initdb, "-D", str(self.data), f"--username={USER}",
                 f"--pwfile={pwfile}", "--auth-local=trust", "--auth-host=scram-sha-256",
                 "--encoding=UTF8", "--no-locale", "--no-instructions"],
                user=self.user, stdout=out, stderr=subprocess.STDOUT, check=False,
                timeout=120)
        pwfile.unlink()
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed ({done.returncode}): {log.read_text()}")
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write("\n# livesell tests\n"
                       "listen_addresses = '127.0.0.1'\n"
                       f"unix_socket_directories = '{self.root / 'sock'}'\n"
                       "fsync = on\n"
                       "synchronous_commit = on\n"
                       "max_connections = 200\n"
                       "shared_buffers = 32MB\n")
        self._initialised = True

    def start(self) -> None:
        if not self._initialised:
            self._initialise()
        if not self.port:
            self.port = free_port()
        log = (self.root / "postgres.log").open("ab")
        try:
            self.proc = subprocess.Popen(
                [self.postgres, "-D", str(self.data), "-p", str(self.port)],
                user=self.user, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, preexec_fn=die_with_parent_preexec())
        finally:
            log.close()
        try:
            self._wait_ready()
        except BaseException:
            # Not ready in time (or interrupted): nothing may stay running that no
            # caller holds (a caller whose start failed does not stop it).
            self.stop(signal.SIGQUIT)
            raise

    def _wait_ready(self) -> None:
        """Until postmaster.pid says "ready" (the server accepts connections)."""
        assert self.proc is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        pid_file = self.data / "postmaster.pid"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"postgres exited ({self.proc.returncode}): "
                                   f"{self.log_tail()}")
            with contextlib.suppress(OSError):
                lines = pid_file.read_text().splitlines()
                if len(lines) >= 8 and lines[0].strip() == str(self.proc.pid) \
                        and lines[7].strip() == "ready":
                    return
            time.sleep(0.02)
        raise RuntimeError(f"postgres not ready after {START_TIMEOUT_S} s: {self.log_tail()}")

    def log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return (self.root / "postgres.log").read_text()[-2000:]
        return ""

    def stop(self, mode: signal.Signals = signal.SIGINT) -> None:
        """Stop the server: SIGINT is PostgreSQL's fast shutdown (sessions are ended,
        their transactions rolled back), SIGQUIT its immediate one (as a crash)."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(mode)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    def remove(self) -> None:
        """Stop the server and delete its files."""
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
