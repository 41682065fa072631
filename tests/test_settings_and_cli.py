"""Configuration loading and the `livesell` command as a user runs it."""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from server.core.settings import (
    DEFAULT_CONFIG_PATH,
    SECTIONS,
    Settings,
    SettingsError,
    load_settings,
)
from server.state.redis_process import process_alive


def test_default_file_documents_every_setting_with_the_same_defaults() -> None:
    from_file = load_settings(None, env={})
    from_code = Settings()
    assert from_file == from_code
    text = DEFAULT_CONFIG_PATH.read_text()
    for section, cls in SECTIONS.items():
        assert f"[{section}]" in text
        for f in dataclasses.fields(cls):
            assert f"\n{f.name} = " in text, f"{section}.{f.name} is not documented"


def test_file_env_and_overrides_in_order(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("[server]\nport = 9001\n[sale]\nhold_seconds = 30\n")
    s = load_settings(cfg, env={"LIVESELL_SERVER_PORT": "9002",
                                "LIVESELL_REDIS_URL": "redis://127.0.0.1:1/0"})
    assert s.server.port == 9002 and s.sale.hold_seconds == 30.0
    assert s.redis.url == "redis://127.0.0.1:1/0"
    s = load_settings(cfg, env={}, overrides={"server": {"port": 9003}})
    assert s.server.port == 9003


@pytest.mark.parametrize(("content", "env", "message"), [
    ("[server]\nport = 70000\n", {}, "server.port"),
    ("[server]\nport = 'x'\n", {}, "server.port: expected an integer"),
    ("[server]\nprot = 1\n", {}, "unknown key server.prot"),
    ("[nope]\nx = 1\n", {}, "unknown section [nope]"),
    ("[sale]\nhold_seconds = -1\n", {}, "sale.hold_seconds"),
    ("[hub]\nlog_size = true\n", {}, "hub.log_size"),
    ("not toml = = =", {}, "not valid TOML"),
    ("", {"LIVESELL_HUB_LOG_SIZE": "lots"}, "hub.log_size"),
    ("", {"LIVESELL_REDIS_APPENDONLY": "maybe"}, "redis.appendonly"),
    ("", {"LIVESELL_REDIS_URL": "http://x"}, "redis.url"),
    ("[redis]\ncluster = true\n", {}, "redis.cluster: needs redis.url"),
    ("", {"LIVESELL_REDIS_CLUSTER": "true", "LIVESELL_REDIS_URL": "unix:///tmp/r.sock"},
     "redis.cluster: needs redis.url"),
    ("", {"LIVESELL_REDIS_CLUSTER": "several"}, "redis.cluster"),
    ("[server]\nlog_level = 'loud'\n", {}, "server.log_level"),
])
def test_bad_values_name_the_key(tmp_path: Path, content: str, env: dict[str, str],
                                 message: str) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text(content)
    with pytest.raises(SettingsError) as err:
        load_settings(cfg, env=env)
    assert message in str(err.value)


def test_missing_config_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="does not exist"):
        load_settings(tmp_path / "absent.toml", env={})


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "server", *args], capture_output=True,
                          text=True, timeout=60, env={**os.environ, **(env or {})})


def test_cli_rejects_bad_flags_and_config(tmp_path: Path) -> None:
    out = _cli("serve", "--port", "99999")
    assert out.returncode == 2 and "not a port" in out.stderr
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[hub]\nmax_frame_bytes = 1\n")
    out = _cli("serve", "--config", str(cfg))
    assert out.returncode == 2 and "hub.max_frame_bytes" in out.stderr
    out = _cli("verify-lottery", "--file", str(tmp_path / "none.json"))
    assert out.returncode == 2 and "cannot read" in out.stderr
    # A cluster is not the embedded redis-server: it needs the address of one node.
    out = _cli("serve", "--redis-cluster", env={"LIVESELL_REDIS_URL": ""})
    assert out.returncode == 2 and "redis.cluster: needs redis.url" in out.stderr


def test_serve_on_embedded_defaults_starts_and_stops_cleanly(tmp_path: Path) -> None:
    """The README's first command: embedded redis-server, SQLite in the data dir, URLs
    printed, and SIGINT stops everything, the redis child included."""
    data = tmp_path / "data"
    proc = _serve("--port", "0", "--data-dir", str(data), "--log-level", "warning")
    try:
        text = _banner(proc)
        assert "viewer page:" in text and "host console:" in text, text
        base = text.split("host console:")[1].split()[0].removesuffix("/host")
        health = httpx.get(base + "/api/health", timeout=10).json()
        assert health["ok"] is True and health["components"]["redis"] == "up"
        assert httpx.get(base + "/api/ready", timeout=10).status_code == 200
        r = httpx.post(base + "/api/rooms", json={"title": "smoke"}, timeout=10)
        assert r.status_code == 201
        redis_pid = _child_redis_pid(proc.pid)
        assert redis_pid is not None
        assert (data / "orders.sqlite3").exists()
        assert (data / "redis").is_dir()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
        assert not process_alive(redis_pid)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def _child_redis_pid(parent: int) -> int | None:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmd = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == parent and b"redis-server" in cmd:
            return int(entry.name)
    return None


def test_workers_serve_with_the_config_file_and_flags(tmp_path: Path) -> None:
    """`--workers` processes build their app from the parent's resolved settings:
    a setting from --config reaches every response (before, workers read only the
    environment and silently served the defaults)."""
    config = tmp_path / "live.toml"
    config.write_text('[security]\nreferrer_policy = "no-referrer"\n')
    with socket.socket() as probe:  # --workers needs a fixed port
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = _serve("--port", str(port), "--workers", "2", "--config", str(config),
                  "--data-dir", str(tmp_path / "data"), "--log-level", "warning")
    try:
        text = _banner(proc)
        assert "host console:" in text, text
        base = text.split("host console:")[1].split()[0].removesuffix("/host")
        deadline = time.monotonic() + 60
        while not wait_ready(base):
            assert time.monotonic() < deadline, "workers never got ready"
            time.sleep(0.1)
        # Fresh connections land on either worker; every one answers with the setting.
        for _ in range(20):
            r = httpx.get(base + "/api/health", timeout=10, headers={"connection": "close"})
            assert r.headers["referrer-policy"] == "no-referrer", r.headers
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def wait_ready(base: str) -> bool:
    try:
        return httpx.get(base + "/api/ready", timeout=10).status_code == 200
    except httpx.HTTPError:
        return False


def test_forwarded_allow_ips_must_be_addresses_or_networks() -> None:
    assert load_settings(None, env={}, overrides={"server": {
        "forwarded_allow_ips": "10.0.0.0/8, 192.0.2.1 ,*"}}).server.forwarded_allow_ips
    with pytest.raises(SettingsError, match=r"server.forwarded_allow_ips: 'proxy' is not"):
        load_settings(None, env={}, overrides={"server": {"forwarded_allow_ips": "proxy"}})


def _serve(*args: str) -> subprocess.Popen[str]:
    """`livesell serve` as a user runs it: no LIVESELL_* variables from the tests."""
    return subprocess.Popen([sys.executable, "-m", "server", "serve", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={k: v for k, v in os.environ.items()
                                 if not k.startswith("LIVESELL_")})


def _banner(proc: subprocess.Popen[str]) -> str:
    """The start-up lines, up to the host console's URL (or the end of output)."""
    assert proc.stdout is not None
    lines = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if "host console:" in line:
            break
    return "".join(lines)
