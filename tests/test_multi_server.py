"""Several servers, one show (issue 17): three `livesell serve` processes on
127.0.0.1, 127.0.0.2 and 127.0.0.3 (one loopback address each, as three
machines would have), on one Redis and one PostgreSQL, behind HAProxy
(loadtest/cluster.py: WebSocket-aware, health checks on /api/ready, least
connections).

First the layout on the test session's Redis and PostgreSQL (conftest.py): the
servers are one service (the same admin key, tokens minted by one accepted by
the others, so a viewer resumes anywhere), and when one is SIGKILLed HAProxy
takes it out and its viewers resume through the balancer on the others with
their token and `since`, missing nothing. Then the load tester's flash sale
through the balancer with `--servers 3 --chaos kill-server@T`: every
correctness check of its report passes (exactly the units sold, the orders in
PostgreSQL match what buyers were told, the audit agrees) with one of the
three servers killed mid-show.

Every process is a child of this test, asked by the kernel to stop when the test
process dies (PR_SET_PDEATHSIG), and stopped in `finally` otherwise. Waits are
on conditions, each bounded.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from loadtest.cluster import ServerCluster, find_haproxy
from tests.loadtest import test_chaos
from tests.redis_cluster import RedisCluster, redis_cluster, redis_cluster_module
from tests.support import ViewerClient, eventually, offer

__all__ = ["redis_cluster", "redis_cluster_module"]  # the fixtures, used by name

# The rehearsal settings the load tester uses: every test viewer comes from 127.0.0.1.
ENV = {"LIVESELL_AUTH_GUEST_MINTS_PER_IP_PER_MIN": "0"}


def _need_haproxy() -> None:
    if find_haproxy() is None:
        pytest.fail("haproxy not found: install Debian's `haproxy` package "
                    "(apt-get install haproxy); .ci/run installs it")


async def join_at(base: str, room_id: str, token: str | None = None,
                  since: int | None = None) -> ViewerClient:
    """A viewer connected to `base` (a server or the balancer)."""
    query = f"?since={since}" if since is not None else ""
    url = base.replace("http://", "ws://") + f"/ws/{room_id}{query}"
    ws = await connect(url, subprotocols=offer(token), max_size=2**24, compression=None,
                       open_timeout=30)
    viewer = ViewerClient(ws)
    welcome = await viewer.next_event("welcome", timeout=60)
    if not welcome["resumed"]:  # a snapshot follows: the state as of its seq
        await viewer.next_event("snapshot", timeout=60)
    return viewer


def last_seq(v: ViewerClient) -> int:
    return max((int(f["seq"]) for f in v.frames if isinstance(f.get("seq"), int)), default=0)


def saw(v: ViewerClient, text: str) -> bool:
    return any(f.get("type") == "announcement" and f.get("text") == text for f in v.frames)


async def sees(v: ViewerClient, text: str) -> None:
    """Until the viewer has received the announcement `text` (bounded)."""
    async def received() -> bool:
        return saw(v, text)
    await eventually(received, timeout=30)


def refused(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(5)
        return s.connect_ex((host, port)) != 0


async def test_three_servers_behind_haproxy_are_one_service_and_survive_a_kill(
        redis_url: str, pg_url: str, tmp_path: Path) -> None:
    _need_haproxy()
    cluster = ServerCluster(ENV, 3, keep_dir=tmp_path / "cluster", redis_url=redis_url,
                            store_url=pg_url)
    crowd: list[ViewerClient] = []
    try:
        base = await asyncio.to_thread(cluster.start)
        s1, s2, s3 = cluster.servers
        assert [s.host for s in cluster.servers] == ["127.0.0.1", "127.0.0.2", "127.0.0.3"]
        # Each listens on its own address only, as on its own machine.
        assert refused("127.0.0.2", s1.port) and refused("127.0.0.1", s2.port)
        status = {n: r["status"] for n, r in cluster.balancer_stats().items()}
        assert status == {"s1": "UP", "s2": "UP", "s3": "UP"}

        async with httpx.AsyncClient(base_url=base, timeout=30, trust_env=False) as http:
            # One admin key: every server refuses a room without it.
            for s in cluster.servers:
                async with httpx.AsyncClient(base_url=s.url, timeout=30,
                                             trust_env=False) as direct:
                    r = await direct.post("/api/rooms", json={"title": "no key"})
                    assert r.status_code == 401, (s.name, r.text)
            r = await http.post("/api/rooms", json={"title": "one show"},
                                headers={"X-Admin-Key": cluster.admin_key})
            assert r.status_code == 201, r.text
            room_id, key = r.json()["room"]["room_id"], r.json()["host_key"]

            async def announce(text: str) -> None:
                reply = await http.post(f"/api/rooms/{room_id}/announcements",
                                        json={"text": text}, headers={"X-Host-Key": key})
                assert reply.status_code == 201, reply.text

            # A token minted by s1 is accepted by s2 and s3: the viewer resumes there
            # as itself, with the events it missed.
            await announce("before")  # the room's event log has begun
            first = await join_at(s1.url, room_id)
            crowd.append(first)
            assert last_seq(first) >= 1
            viewer_id, token, seen = first.viewer_id, first.token, last_seq(first)
            await first.close()
            await announce("while away")
            for s in (s2, s3):
                again = await join_at(s.url, room_id, token=token, since=seen)
                crowd.append(again)
                assert again.viewer_id == viewer_id and again.welcome["resumed"] is True
                await sees(again, "while away")

            # Viewers through the balancer are spread over the three servers.
            through = [await join_at(base, room_id) for _ in range(6)]
            crowd += through

            async def spread() -> dict[str, int] | None:
                sessions = await asyncio.to_thread(cluster.sessions)
                return sessions if all(sessions.get(n, 0) >= 2 for n in ("s1", "s2",
                                                                          "s3")) else None
            before = await eventually(spread, timeout=30)
            ids = [v.viewer_id for v in through]
            tokens = [v.token for v in through]

            # SIGKILL the server with the most sessions: HAProxy marks it DOWN.
            victim = max(cluster.servers, key=lambda s: before[s.name])
            cluster.kill(victim)
            assert cluster.balancer is not None
            await asyncio.to_thread(cluster.balancer.wait_status, {victim.name: "DOWN"}, 30)
            await announce("after the kill")

            # Each viewer either got the announcement live or lost its connection.
            async def settled() -> bool:
                return all(saw(v, "after the kill") or v.closed.done() for v in through)
            await eventually(settled, timeout=30)
            lost = [i for i, v in enumerate(through) if v.closed.done()]
            assert lost, "no viewer was on the killed server"
            for i in lost:
                old = through[i]
                back = await join_at(base, room_id, token=tokens[i], since=last_seq(old))
                crowd.append(back)
                # The same viewer, resumed from the event log on another server, the
                # missed announcement among the events that follow.
                assert back.viewer_id == ids[i] and back.welcome["resumed"] is True
                await sees(back, "after the kill")
            sessions = await asyncio.to_thread(cluster.sessions)
            assert sessions[victim.name] == 0
            assert (await http.get("/api/ready")).status_code == 200
    finally:
        for v in crowd:
            await v.close()
        await asyncio.to_thread(cluster.stop)
        await asyncio.to_thread(cluster.cleanup)


# ------------------------------------------------------------------ the load tester

# A small flash sale whose buyers press over four seconds, so buys and checkouts are
# going on when a server is killed at 2.5 s; ample stock, so buys after the kill get
# holds. A coupon drop and a lottery run their checks across the kill too.
SALE = """
name = "cluster_sale"
description = "a small flash sale through the balancer"

[viewers]
count = 120
join_rate_per_s = 400
latency_sample = 20
processes = 1

[run]
duration_s = 6
audit_interval_s = 0.25
settle_timeout_s = 20

[host]
events_per_s = 2
actions = ["announce"]

[sale]
enabled = true
units = 60
limit_per_buyer = 1
countdown_s = 1
buyer_share = 0.8
buy_window_s = 4
greedy_share = 0.1
checkout_share = 0.8
hold_seconds = 5
think_s = 0.2

[coupon]
enabled = true
count = 10
claim_share = 0.2

[lottery]
enabled = true
winners = 2
duration_s = 4
enter_share = 0.3
"""

CORRECTNESS_CHECKS = test_chaos.CORRECTNESS_CHECKS | test_chaos.CHAOS_CHECKS


@pytest.fixture(scope="module")
def cluster_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[
        subprocess.CompletedProcess[str], dict[str, Any]]:
    _need_haproxy()
    return test_chaos.chaos_run(tmp_path_factory.mktemp("cluster-run"), "--servers", "3",
                                "--chaos", "kill-server@2.5", sale=SALE)


def test_a_flash_sale_through_the_balancer_passes_every_check_with_a_server_killed(
        cluster_run: tuple[subprocess.CompletedProcess[str], dict[str, Any]]) -> None:
    out, report = cluster_run
    names = {c["name"] for c in report["checks"]}
    assert names >= CORRECTNESS_CHECKS, CORRECTNESS_CHECKS - names
    failed = [c for c in report["checks"] if not c["ok"]]
    assert out.returncode == 0 and not failed, (failed, out.stdout[-3000:], out.stderr[-3000:])
    assert "all checks passed" in out.stdout
    selling = report["measurements"]["selling"]
    # Orders were placed across the kill, never more units than the sale's 60 (the
    # checks above: exactly the units in PostgreSQL's orders, the audit agreeing).
    assert 0 < selling["units_sold"] <= 60


def test_the_killed_servers_viewers_resumed_through_the_balancer(
        cluster_run: tuple[subprocess.CompletedProcess[str], dict[str, Any]]) -> None:
    out, report = cluster_run
    layout = report["settings"]["target"]["cluster"]
    assert [s["address"].split(":")[0] for s in layout["servers"]] == [
        "127.0.0.1", "127.0.0.2", "127.0.0.3"]
    assert layout["balancer"]["software"] == "haproxy"
    assert [s["killed"] for s in layout["servers"]].count(True) == 1
    fault = report["measurements"]["chaos"]["faults"][0]
    assert fault["spec"] == "kill-server@2.5" and fault["ok"] is True
    victim = fault["killed_server"]
    had = fault["sessions_before"][victim]
    assert had >= 1 and fault["balancer_marked_down_after_s"] is not None
    assert fault["sessions_after"][victim] == 0
    rec = fault["recovery"]
    # Its viewers dropped (1006: the server vanished) and every one came back.
    assert rec["viewers_low"] < rec["viewers_before"] == 120
    assert rec["viewers_back_after_s"] is not None
    viewers = report["measurements"]["viewers"]
    assert viewers["joined"] == 120 and viewers["reconnects"] >= 1
    assert set(viewers["close_codes"]) == {"1006"}
    # Each gap was closed by a resume with `since` (the event log), not a snapshot.
    gaps = report["measurements"]["fanout"]
    assert gaps["gaps"] >= 1 and gaps["gaps_recovered_by"].get("resume", 0) >= 1
    assert "chaos kill-server@2.5 at " in out.stdout and "marked it DOWN" in out.stdout


# ------------------------------------------------------------------ on a Redis Cluster

def test_the_flash_sale_on_a_redis_cluster_passes_every_check_with_a_server_killed(
        redis_cluster: RedisCluster, tmp_path: Path) -> None:
    """The same layout and run with the three servers on a real Redis Cluster
    (three primaries, three replicas: tests/redis_cluster.py) instead of one Redis:
    rooms by hash slot, events by sharded pub/sub."""
    _need_haproxy()
    out, report = test_chaos.chaos_run(tmp_path, "--servers", "3", "--redis-cluster",
                                       redis_cluster.url, "--chaos", "kill-server@2.5",
                                       sale=SALE)
    names = {c["name"] for c in report["checks"]}
    assert names >= CORRECTNESS_CHECKS, CORRECTNESS_CHECKS - names
    failed = [c for c in report["checks"] if not c["ok"]]
    assert out.returncode == 0 and not failed, (failed, out.stdout[-3000:], out.stderr[-3000:])
    layout = report["settings"]["target"]["cluster"]
    assert layout["redis"] == "given Redis Cluster"
    assert [s["killed"] for s in layout["servers"]].count(True) == 1
    assert 0 < report["measurements"]["selling"]["units_sold"] <= 60
    # The viewers of the killed server came back and closed their gaps by resuming.
    assert report["measurements"]["viewers"]["reconnects"] >= 1
