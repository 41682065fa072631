"""The load tester's spawned server with several processes (what it runs on
machines of 4 or more cores, loadtest/spawn.py plan_cores): started on a fixed
port, every worker found and counted in the CPU figures, all stopped."""

from __future__ import annotations

import httpx

from loadtest.spawn import SpawnedServer
from loadtest.stats import read_proc


def test_spawned_server_with_two_processes_is_measured_and_stopped_whole() -> None:
    server = SpawnedServer({}, workers=2)
    try:
        base = server.start()
        assert len(server.worker_pids) == 2 and server.redis_pid is not None
        # Both processes answer on the one port (each request goes to either).
        for _ in range(6):
            reply = httpx.get(f"{base}/api/time", timeout=10)
            assert reply.status_code == 200 and reply.json()["server_time"] > 0
        total, redis = server.sample()
        assert total is not None and redis is not None
        parts = [read_proc(p) for p in [server.pid, *server.worker_pids]]
        assert all(p is not None for p in parts)
        # The server's figures are the sum over its processes, not the parent's alone.
        parent = parts[0]
        assert parent is not None and total.rss_bytes > parent.rss_bytes
        pids = [server.pid, *server.worker_pids, server.redis_pid]
    finally:
        server.stop()
        server.cleanup()
    assert all(read_proc(p) is None or _zombie(p) for p in pids)


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True
