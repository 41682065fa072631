"""Webhooks against a real server, its SQLite outbox and a real receiving HTTP
server on loopback that fails, times out and recovers: every committed order
arrives exactly once after deduplication by `webhook-id`, in order, signed;
also across a SIGKILL of the sending server; a message that cannot be delivered
for long enough becomes a dead letter, and replay brings it back; endpoints are
validated and their secrets never listed; `livesell webhooks verify` agrees
with the server's signature."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from server.core import webhooks
from tests.support import (
    BOTH_STORES,
    Host,
    LiveServer,
    create_room,
    eventually,
    join,
    pay,
    server_with,
)
from tests.test_supervision import join_at, serving
from tests.webhook_receiver import Receiver, receiving

FAST = {"timeout_s": 1.0, "first_retry_s": 0.1, "max_retry_s": 0.4,
        "allow_private_targets": True}


@pytest.fixture
async def hook_server(redis_url: str, data_dir: Path,
                      store_url: str) -> AsyncIterator[tuple[LiveServer, httpx.AsyncClient]]:
    # On SQLite unless a test asks for both stores (BOTH_STORES): the outbox's tests.
    async with server_with(redis_url, data_dir, webhooks=FAST,
                           store={"url": store_url}) as pair:
        yield pair



async def arrived(receiver: Receiver, kind: str, n: int) -> list[str]:
    async def enough() -> list[str] | None:
        ids = receiver.ids_of(kind, "order_id")
        return ids if len(ids) >= n else None
    found: list[str] = await eventually(enough)
    return found


def genuine(receiver: Receiver, secret: str) -> None:
    for got in receiver.unique.values():
        h = got.headers
        assert webhooks.verify(secret, h["webhook-id"], h["webhook-timestamp"],
                               h["webhook-signature"], got.body, int(time.time())) is None


@BOTH_STORES
async def test_every_order_arrives_once_in_order_through_failures_and_timeouts(
        hook_server: tuple[LiveServer, httpx.AsyncClient]) -> None:
    server, http = hook_server
    host = await create_room(http)
    product = await host.product(stock=30)
    await host.sale(product["product_id"], units=30, limit=1)
    async with receiving() as receiver:
        # Refused, then unanswered past the sender's timeout, then taken.
        receiver.plan = ["fail", "fail", "hang", "fail", "hang"]
        endpoint = await host.call("POST", "/webhooks", {
            "url": receiver.url, "events": ["order.placed", "order.cancelled"],
            "description": "fulfilment"}, expect=201)
        secret = endpoint["secret"]
        assert secret.startswith("whsec_")
        buyers = await asyncio.gather(*(join(server, host.room_id) for _ in range(20)))
        placed = await asyncio.gather(*(pay(v, product["product_id"]) for v in buyers))
        ids = await arrived(receiver, "order.placed", 20)
        assert sorted(ids) == sorted(o["order_id"] for o in placed)
        assert len(set(ids)) == 20
        genuine(receiver, secret)
        # In order: the endpoint's messages arrived in the order the store wrote them.
        log = (await host.call("GET", f"/webhooks/{endpoint['endpoint_id']}/deliveries",
                               expect=200))["deliveries"]
        assert [d["state"] for d in log] == ["delivered"] * 20
        assert [d["event_id"] for d in reversed(log)] == receiver.order
        assert max(d["attempts"] for d in log) >= 4  # the first met every failure
        first = receiver.unique[receiver.order[0]].json
        assert first["type"] == "order.placed" and first["id"] == receiver.order[0]
        # A cancellation is an event too, written with the cancellation.
        await host.call("POST", f"/orders/{placed[0]['order_id']}/cancel",
                        {"reason": "test"}, expect=200)
        cancelled = await arrived(receiver, "order.cancelled", 1)
        assert cancelled == [placed[0]["order_id"]]
        # The listing never shows the secret.
        listed = await host.call("GET", "/webhooks", expect=200)
        assert listed["endpoints"][0]["url"] == receiver.url
        assert all("secret" not in e for e in listed["endpoints"])
        for v in buyers:
            await v.close()


async def test_a_dead_letter_does_not_block_the_next_and_replay_brings_it_back(
        redis_url: str, data_dir: Path) -> None:
    async with server_with(redis_url, data_dir, webhooks=FAST | {"give_up_after_s": 1.0}
                           ) as (server, http):
        host = await create_room(http)
        product = await host.product(stock=5)
        await host.sale(product["product_id"], units=5, limit=2)
        async with receiving() as receiver:
            receiver.mode = "fail"
            endpoint = await host.call("POST", "/webhooks", {"url": receiver.url},
                                       expect=201)
            eid = endpoint["endpoint_id"]
            v = await join(server, host.room_id)
            lost = await pay(v, product["product_id"])

            async def dead() -> list[dict[str, Any]] | None:
                log = (await host.call("GET", f"/webhooks/{eid}/deliveries",
                                       expect=200))["deliveries"]
                return log if log and log[0]["state"] == "dead" else None
            log = await eventually(dead)
            assert log[0]["last_status"] == 500 and log[0]["attempts"] >= 2
            receiver.mode = "ok"
            later = await pay(v, product["product_id"])
            assert await arrived(receiver, "order.placed", 1) == [later["order_id"]]
            replayed = await host.call("POST", f"/webhooks/{eid}/replay",
                                       {"from_event_id": log[0]["event_id"]}, expect=200)
            assert replayed["replayed"] == 2
            # The dead one arrives; the one already taken comes again under its id.
            ids = await arrived(receiver, "order.placed", 2)
            assert sorted(ids) == sorted([lost["order_id"], later["order_id"]])
            missing = await host.call("POST", f"/webhooks/{eid}/replay",
                                      {"from_event_id": "evt_nope"}, expect=404)
            assert missing["error"]["code"] == "event_not_found"
            await v.close()


async def test_endpoints_are_validated_and_private_targets_need_the_setting(
        server: LiveServer, http: httpx.AsyncClient) -> None:
    host = await create_room(http)
    for body, field in [({"url": "ftp://x"}, "url"), ({"url": "http://shop.example",
                                                       "events": ["order.eaten"]}, "events"),
                        ({"url": "http://shop.example", "x": 1}, "x"),
                        ({"url": "http://127.0.0.1:9/h"}, "url"),
                        ({"url": "http://10.1.2.3/h"}, "url"),
                        ({"url": "http://localhost/h"}, "url")]:
        answer = await host.call("POST", "/webhooks", body, expect=400)
        assert field in answer["error"]["message"], (body, answer)
    # Loopback, metadata and private addresses in every form a resolver reads as one.
    for url in ("http://[::1]:9/h", "http://2130706433:9/h", "http://127.1/h",
                "http://0x7f000001/h", "http://0177.0.0.1/h", "http://2852039166/h",
                "http://localhost./h", "http://[::ffff:10.0.0.1]/h", "http://10.1/h"):
        private = await host.call("POST", "/webhooks", {"url": url}, expect=400)
        assert private["error"]["code"] == "webhook_target_private", url
    bad = await host.call("POST", "/webhooks", {"url": "http://[zz]/h"}, expect=400)
    assert bad["error"]["details"] == {"field": "url"}
    r = await http.post(f"/api/rooms/{host.room_id}/webhooks",
                        json={"url": "https://shop.example/hooks"})
    assert r.status_code == 401
    made = await host.call("POST", "/webhooks", {"url": "https://shop.example/hooks"},
                           expect=201)
    # Another room's host cannot see or remove it.
    other = await create_room(http)
    await other.call("DELETE", f"/webhooks/{made['endpoint_id']}", expect=404)
    await host.call("DELETE", f"/webhooks/{made['endpoint_id']}", expect=200)
    assert (await host.call("GET", "/webhooks", expect=200))["endpoints"] == []
    # The server-wide list (the admin's; a loopback server without an admin key
    # lets the local operator) may name loopback receivers.
    r = await http.post("/api/webhooks", json={"url": "http://127.0.0.1:9/all"})
    assert r.status_code == 201, r.text
    listed = (await http.get("/api/webhooks")).json()["endpoints"]
    assert [e["url"] for e in listed] == ["http://127.0.0.1:9/all"]
    assert "secret" not in listed[0]


def test_the_signature_checks_out_and_the_cli_agrees(tmp_path: Path) -> None:
    secret = webhooks.new_secret()
    body = b'{"id":"evt_1","type":"order.placed","data":{}}'
    now = int(time.time())
    signature = webhooks.sign(secret, "evt_1", now, body)
    assert webhooks.verify(secret, "evt_1", str(now), signature, body, now) is None
    assert webhooks.verify(secret, "evt_1", str(now), signature, body + b" ", now) == \
        "no v1 signature matches"
    assert "from now" in str(webhooks.verify(secret, "evt_1", str(now - 600), signature,
                                             body, now))
    # Rotated secrets: several signatures, one matching, is genuine.
    other = webhooks.sign(webhooks.new_secret(), "evt_1", now, body)
    assert webhooks.verify(secret, "evt_1", str(now), f"{other} {signature}", body,
                           now) is None
    secret_file = tmp_path / "secret"
    secret_file.write_text(secret + "\n")
    body_file = tmp_path / "body.json"
    body_file.write_bytes(body)

    def cli(*extra: str, data: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [sys.executable, "-m", "server", "webhooks", "verify", "--secret-file",
             str(secret_file), "--id", "evt_1", "--timestamp", str(now), "--signature",
             signature, *extra], input=data, capture_output=True, timeout=60, check=False)

    good = cli("--body-file", str(body_file))
    assert good.returncode == 0 and b"genuine" in good.stdout, good
    assert cli(data=body).returncode == 0
    bad = cli(data=body.replace(b"order", b"ordre"))
    assert bad.returncode == 1 and b"no v1 signature matches" in bad.stdout
    late = cli("--body-file", str(body_file), "--now", str(now + 3600))
    assert late.returncode == 1 and b"from now" in late.stdout


async def test_every_committed_order_arrives_once_across_a_sigkill_of_the_sender(
        tmp_path: Path) -> None:
    data = tmp_path / "data"
    config = tmp_path / "livesell.toml"
    config.write_text("[webhooks]\ntimeout_s = 1.0\nfirst_retry_s = 0.1\nmax_retry_s = 0.3\n")
    async with receiving() as receiver:
        # Every request is held until the sender gives up on it: deliveries are in
        # flight, or just failed, whenever the kill comes.
        receiver.mode = "hang"
        with serving(tmp_path, data, "--config", str(config)) as first:
            first.wait_serving()
            async with httpx.AsyncClient(base_url=first.base, timeout=30) as http:
                host = await create_room(http)
                r = await http.post("/api/webhooks", json={"url": receiver.url,
                                                           "events": ["order.placed"]})
                assert r.status_code == 201, r.text
                secret = r.json()["secret"]
                product = await host.product(stock=40)
                await host.sale(product["product_id"], units=40, limit=1)
                buyers = await asyncio.gather(*(join_at(first.port, host.room_id)
                                                for _ in range(15)))
                placed = await asyncio.gather(*(pay(v, product["product_id"])
                                                for v in buyers))
                await eventually(lambda: _at_least(receiver, 3))
                os.kill(first.pid, signal.SIGKILL)
                assert first.exit_status(30) == -signal.SIGKILL
                for v in buyers:
                    await v.close()
        receiver.mode = "ok"
        receiver.release.set()
        with serving(tmp_path, data, "--config", str(config)) as second:
            second.wait_serving()
            ids = await arrived(receiver, "order.placed", 15)
            assert sorted(ids) == sorted(o["order_id"] for o in placed)
            genuine(receiver, secret)
            # Nothing arrived that the store does not hold.
            async with httpx.AsyncClient(base_url=second.base, timeout=30) as http:
                stored = (await Host(http, host.room_id, host.key).call(
                    "GET", "/orders", expect=200))["orders"]
            assert {o["order_id"] for o in stored} == set(ids)


async def _at_least(receiver: Receiver, n: int) -> bool:
    return len(receiver.requests) >= n


@BOTH_STORES
async def test_a_sale_sold_out_is_one_event(
        hook_server: tuple[LiveServer, httpx.AsyncClient]) -> None:
    server, http = hook_server
    host = await create_room(http)
    product = await host.product(stock=5)
    sale = await host.sale(product["product_id"], units=2, limit=1)
    async with receiving() as receiver:
        await host.call("POST", "/webhooks", {"url": receiver.url,
                                              "events": ["sale.sold_out"]}, expect=201)
        a, b = await join(server, host.room_id), await join(server, host.room_id)
        await pay(a, product["product_id"])
        await pay(b, product["product_id"])
        ids = await arrived_sales(receiver)
        assert ids == [sale["sale_id"]]
        first = receiver.unique[receiver.order[0]].json
        assert first["type"] == "sale.sold_out" and first["data"]["sold"] == 2
        for v in (a, b):
            await v.close()


async def arrived_sales(receiver: Receiver) -> list[str]:
    async def some() -> list[str] | None:
        ids = receiver.ids_of("sale.sold_out", "sale_id")
        return ids or None
    found: list[str] = await eventually(some)
    return found


async def test_a_stalled_store_delays_a_webhook_event_and_loses_none(
        redis_url: str, data_dir: Path) -> None:
    """A sale opens by its timer while another process holds the store's lock past
    the busy timeout: the room hears `sale_open` at once, the `sale.opened` event
    waits in the writer (tried again, logged) instead of holding the timer loop or
    being dropped, and is in the outbox once the lock is gone."""
    import logging
    import sqlite3

    from tests.support import StoreLock

    seen: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage())

    keep = Keep()
    logging.getLogger("livesell.context").addHandler(keep)
    try:
        async with server_with(redis_url, data_dir,
                               store={"busy_timeout_ms": 100}) as (live, http):
            host = await create_room(http)
            product = await host.product(stock=3)
            viewer = await join(live, host.room_id)
            sale = await host.sale(product["product_id"], units=2, starts_in_s=2)
            async with StoreLock(live.settings.store_path):
                opened = await viewer.next_event("sale_open", timeout=60)
                assert opened["sale"]["sale_id"] == sale["sale_id"]

                async def retried() -> bool:
                    return any("webhook events wait for the store" in m for m in seen)
                await eventually(retried)
            await viewer.close()

            def events() -> list[str]:
                with sqlite3.connect(live.settings.store_path) as db:
                    return [str(e) for (e,) in
                            db.execute("SELECT event_id FROM outbox ORDER BY seq")]

            wanted = f"evt_{sale['sale_id']}.sale.opened"

            async def written() -> list[str] | None:
                found = await asyncio.to_thread(events)
                return found if wanted in found else None
            found = await eventually(written)
            assert found.count(wanted) == 1
    finally:
        logging.getLogger("livesell.context").removeHandler(keep)
