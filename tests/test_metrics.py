"""GET /metrics against a real server, parsed with prometheus-client's own
parser: what viewers did shows up counted exactly (joins, requests by outcome,
events by type, connections, store and Redis timings, webhook attempts); a
`--workers 2` server adds every worker's counts up; the admin key guards it
when one is set."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from server.state.redis_probe import free_port
from tests.support import LiveServer, ViewerClient, create_room, eventually, join, server_with
from tests.test_supervision import _comm, children, join_at, serving


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(found: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str,
          **labels: str) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


async def scrape(http: httpx.AsyncClient, **headers: str
                 ) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    r = await http.get("/metrics", headers=headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    return samples(r.text)


async def test_what_viewers_do_is_counted_exactly(server: LiveServer,
                                                  http: httpx.AsyncClient) -> None:
    host = await create_room(http)
    product = await host.product(stock=3)
    await host.sale(product["product_id"], units=3, limit=1)
    viewers = await asyncio.gather(*(join(server, host.room_id) for _ in range(5)))
    answers = await asyncio.gather(*(v.request("buy", product_id=product["product_id"])
                                     for v in viewers))
    assert sum(a["type"] == "hold" for a in answers) == 3
    holder, hold = next((v, a) for v, a in zip(viewers, answers, strict=True)
                        if a["type"] == "hold")
    placed = await holder.request("checkout", hold_id=hold["hold"]["id"])
    assert placed["type"] == "order_placed"
    await host.call("POST", "/announcements", {"text": "thanks"}, expect=201)
    await asyncio.gather(*(v.next_event("announcement") for v in viewers))
    found = await scrape(http)
    assert value(found, "livesell_joins_total") == 5
    assert value(found, "livesell_connections") == 5
    assert value(found, "livesell_requests_total", type="buy", outcome="hold") == 3
    assert value(found, "livesell_requests_total", type="buy", outcome="sold_out") == 2
    assert value(found, "livesell_requests_total", type="checkout",
                 outcome="order_placed") == 1
    assert value(found, "livesell_events_total", type="sale_open") >= 1
    assert value(found, "livesell_redis_up") == 1 and value(found, "livesell_store_up") == 1
    assert value(found, "livesell_redis_roundtrip_seconds_count") > 0
    assert value(found, "livesell_store_commit_seconds_count") > 0
    assert value(found, "livesell_frames_out_total") >= 5
    assert value(found, "livesell_events_total", type="announcement") == 1
    for v in viewers:
        await v.close()

    async def closed() -> bool:
        return value(await scrape(http), "livesell_connections") == 0
    await eventually(closed)


async def test_the_admin_key_guards_the_metrics(redis_url: str, data_dir: Path) -> None:
    async with server_with(redis_url, data_dir, server={"admin_key": "k" * 32}) as (_, http):
        assert (await http.get("/metrics")).status_code == 401
        assert (await http.get("/metrics", headers={"X-Admin-Key": "k" * 32})).status_code \
            == 200
        bearer = await http.get("/metrics", headers={"Authorization": "Bearer " + "k" * 32})
        assert bearer.status_code == 200 and "livesell_joins_total" in bearer.text


async def test_a_multi_process_server_adds_up_every_workers_counts(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with serving(tmp_path, data, "--workers", "2", port=free_port()) as served:
        served.wait_serving()
        async with httpx.AsyncClient(base_url=served.base, timeout=30) as http:
            host = await create_room(http)
            # New connections, each accepted by whichever worker takes it.
            viewers: list[ViewerClient] = []
            # (Fewer than auth.guest_mints_per_ip_per_min: each is a new guest.)
            for _ in range(16):
                viewers.append(await join_at(served.port, host.room_id))

            async def added_up() -> bool:
                # Every scrape, whichever worker answers it, sees all of them.
                for _ in range(4):
                    found = await scrape(http)
                    if (value(found, "livesell_joins_total"),
                            value(found, "livesell_connections")) != (16, 16):
                        return False
                return True
            await eventually(added_up)
            for v in viewers:
                await v.close()


def _workers(parent: int) -> list[int]:
    """The serving processes (not redis-server, not multiprocessing's resource
    tracker)."""
    out = []
    for pid in children(parent):
        with contextlib.suppress(OSError):
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            if _comm(pid) != "redis-server" and b"resource_tracker" not in cmd:
                out.append(pid)
    return out


def _sockets(pid: int) -> int:
    fds = Path(f"/proc/{pid}/fd")
    count = 0
    for fd in fds.iterdir():
        with contextlib.suppress(OSError):
            count += os.readlink(fd).startswith("socket:")
    return count


async def test_a_killed_workers_live_gauges_leave_the_sums(tmp_path: Path) -> None:
    """A SIGKILLed worker never runs its own clean-up: the supervisor that restarts it
    takes its files out of the live gauges, so `livesell_connections` counts the
    connections still open, not the dead worker's too."""
    data = tmp_path / "data"
    with serving(tmp_path, data, "--workers", "2", port=free_port()) as served:
        served.wait_serving()
        async with httpx.AsyncClient(base_url=served.base, timeout=30) as http:
            host = await create_room(http)
            viewers = [await join_at(served.port, host.room_id) for _ in range(12)]

            async def counted(n: int) -> bool:
                for _ in range(4):
                    if value(await scrape(http), "livesell_connections") != n:
                        return False
                return True

            await eventually(lambda: counted(12))
            workers = _workers(served.pid)
            assert len(workers) == 2, workers
            # The worker holding more sockets: the one with viewers on it.
            workers.sort(key=_sockets, reverse=True)
            os.kill(workers[0], signal.SIGKILL)

            async def settled() -> bool:
                now = _workers(served.pid)
                if len(now) != 2 or workers[0] in now:
                    return False  # not restarted yet
                still_open = sum(1 for v in viewers if not v.closed.done())
                return await counted(still_open)

            await eventually(settled)
            # Some were on the worker killed: the gauge did go down, not stay at 12.
            assert sum(1 for v in viewers if not v.closed.done()) < 12
            for v in viewers:
                await v.close()


def test_the_grafana_dashboard_names_only_metrics_the_server_exports() -> None:
    import json
    import re

    from server.web.metrics import Metrics

    root = Path(__file__).resolve().parent.parent
    dashboard = json.loads((root / "docs" / "grafana" / "livesell-dashboard.json").read_text())
    registry = Metrics().registry
    assert registry is not None
    exported: set[str] = set()
    for family in registry.collect():
        # A labelled family has no samples before its first use: its names by type.
        suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"),
                    "gauge": ("",)}[family.type]
        exported.update(family.name + suffix for suffix in suffixes)
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert exprs
    named = {m for e in exprs for m in re.findall(r"livesell_[a-z_]+", e)}
    assert named and named <= exported, named - exported
