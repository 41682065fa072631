"""Bounded state: refused requests leave nothing in Redis, accepted ones are
remembered for a bounded time, and the embedded Redis is bounded in memory with
a policy that can only evict keys with a TTL (docs/protocol.md section 8)."""

from __future__ import annotations

import asyncio
import logging
import re
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from redis.asyncio import Redis

from server.core.settings import RedisSettings, SettingsError, load_settings
from server.state.embedded_redis import DEFAULT_MAXMEMORY_MB, MAXMEMORY_POLICY, RedisServer
from server.state.memory_watch import MemoryWatch
from server.state.redis_supervisor import RedisSupervisor
from tests.support import LiveServer, create_room, eventually, join, make_settings

FLOOD = 20_000
CLIENTS = 8
WINDOW = 10  # requests in flight per connection (the server allows 16)
# Keys that may carry a TTL: remembered answers, finished holds, chat minutes.
TTL_KEYS = re.compile(r"^ls:\{[^}]+\}:(req|hold|chatmin):")


@pytest.fixture
async def fast_server(redis_url: str, data_dir: Path) -> AsyncIterator[LiveServer]:
    """A server whose per-viewer frame budget lets a few clients send 20,000 frames."""
    settings = make_settings(redis_url, data_dir,
                             hub={"messages_per_s": 10000.0, "message_burst": 100000})
    live = await LiveServer(settings).start()
    try:
        yield live
    finally:
        await live.stop()


@pytest.fixture
async def fast_http(fast_server: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=fast_server.base, timeout=30) as client:
        yield client


async def _keys_of_room(r: Redis, room_id: str) -> dict[str, int]:
    """Every key of the room with its TTL in seconds (-1: none)."""
    names = [k async for k in r.scan_iter(match=f"ls:{{{room_id}}}:*", count=1000)]
    ttls = [await r.ttl(k) for k in names]
    return dict(zip(names, ttls, strict=True))


async def test_refused_requests_leave_redis_flat(fast_server: LiveServer,
                                                 fast_http: httpx.AsyncClient,
                                                 redis_url: str) -> None:
    host = await create_room(fast_http)
    product = await host.product(stock=1)
    await host.sale(product["product_id"], units=1, limit=1)
    buyer = await join(fast_server, host.room_id)
    taken = await buyer.request("buy", product_id=product["product_id"])
    assert taken["type"] == "hold", taken
    drop = await host.call("POST", "/coupons", {"kind": "amount", "value": 100, "count": 1,
                                                "currency": "USD"}, expect=201)
    assert (await buyer.request("claim_coupon", coupon_id=drop["coupon_id"]))["type"] == \
        "coupon_claimed"
    lottery = await host.call("POST", "/lotteries", {"prize": "Mug", "entry": "keyword",
                                                     "keyword": "yes please",
                                                     "duration_s": 600}, expect=201)
    clients = [await join(fast_server, host.room_id) for _ in range(CLIENTS)]
    r: Redis = Redis.from_url(redis_url, decode_responses=True)
    try:
        before = await r.dbsize()
        # Each client sends its share with WINDOW requests in flight, each with a new
        # request id: buys of the sold-out product, claims of the gone coupon, entries
        # with the wrong keyword.
        frames = [
            ("buy", {"product_id": product["product_id"]}),
            ("claim_coupon", {"coupon_id": drop["coupon_id"]}),
            ("enter_lottery", {"lottery_id": lottery["lottery_id"], "keyword": "no thanks"}),
        ]
        per_client = FLOOD // CLIENTS
        codes: Counter[str] = Counter()

        async def lane(client: Any, start: int, count: int) -> None:
            for i in range(start, start + count):
                kind, fields = frames[i % len(frames)]
                reply = await client.request(kind, **fields)
                codes[f"{kind}:{reply.get('code', reply['type'])}"] += 1

        lanes = []
        for client in clients:
            share = per_client // WINDOW
            lanes += [lane(client, w * share, share) for w in range(WINDOW)]
        await asyncio.wait_for(asyncio.gather(*lanes), 300)
        sent = CLIENTS * WINDOW * (per_client // WINDOW)
        assert sent == FLOOD
        # Every frame reached its script and was refused there (none rate limited).
        assert sum(codes.values()) == FLOOD
        assert set(codes) == {"buy:sold_out", "claim_coupon:coupon_gone",
                              "enter_lottery:not_eligible"}, codes
        after = await r.dbsize()
        # Before this change every refusal added a key: FLOOD more.
        assert after - before <= 2, (before, after)
        keys = await _keys_of_room(r, host.room_id)
        assert not [k for k in keys if ":req:" in k and buyer.viewer_id not in k]
    finally:
        await r.aclose()
        for client in [buyer, *clients]:
            await client.close()


async def test_accepted_answers_kept_refusals_evaluated_afresh(
        server: LiveServer, http: httpx.AsyncClient, redis_url: str) -> None:
    host = await create_room(http)
    product = await host.product(stock=5)
    viewer = await join(server, host.room_id)
    r: Redis = Redis.from_url(redis_url, decode_responses=True)
    try:
        # Refused before the sale opens; the same request id gets a hold once it has.
        sale = await host.sale(product["product_id"], units=5, limit=2, starts_in_s=1)
        assert sale["state"] == "scheduled", sale
        early = await viewer.request("buy", request_id="b-early",
                                     product_id=product["product_id"])
        assert early["type"] == "error" and early["code"] == "not_started", early
        assert not [k for k in await _keys_of_room(r, host.room_id) if ":req:" in k]

        async def bought() -> dict[str, Any] | None:
            reply = await viewer.request("buy", request_id="b-early",
                                         product_id=product["product_id"])
            if reply["type"] == "error":
                assert reply["code"] == "not_started", reply
                return None
            return reply
        hold = await eventually(bought, timeout=60, interval=0.1)
        assert hold["type"] == "hold", hold
        # Retried after acceptance: the same hold, and no second one.
        again = await viewer.request("buy", request_id="b-early",
                                     product_id=product["product_id"])
        assert again["hold"] == hold["hold"]
        # A second accepted buy reaches the limit of 2; the refusal after it is not
        # remembered and is refused afresh while the limit holds.
        second = await viewer.request("buy", product_id=product["product_id"])
        assert second["type"] == "hold", second
        for _ in range(2):
            over = await viewer.request("buy", request_id="b-over",
                                        product_id=product["product_id"])
            assert over["code"] == "limit_reached", over
        # The limit's refusal changed nothing: releasing a hold makes the same id succeed.
        released = await viewer.request("release", hold_id=second["hold"]["id"])
        assert released["type"] == "hold_released", released
        third = await viewer.request("buy", request_id="b-over",
                                     product_id=product["product_id"])
        assert third["type"] == "hold", third
        audit = await host.audit()
        assert audit["ok"], audit
        stock = audit["products"][0]
        assert (stock["left"], stock["held"], stock["sold"]) == (3, 2, 0)
        placed = await viewer.request("checkout", hold_id=hold["hold"]["id"])
        assert placed["type"] == "order_placed", placed
        # Only accepted changes left remembered answers, each with the bounded TTL;
        # keys with a TTL are only those the eviction policy may take, and selling
        # state carries none.
        keys = await _keys_of_room(r, host.room_id)
        remembered = sorted(k for k in keys if ":req:" in k)
        assert [k.rsplit(":", 2)[1:] for k in remembered] == sorted(
            [["buy", "b-early"], ["buy", "b-over"], ["checkout", placed["re"]],
             ["buy", second["re"]]])
        ttl = server.settings.sale.request_id_ttl_s
        assert all(0 < keys[k] <= ttl for k in remembered), keys
        for name, left in keys.items():
            if left >= 0:
                assert TTL_KEYS.match(name), name
            if ":hold:" in name and await r.hget(name, "state") in ("held", "confirming"):
                assert left == -1, name
    finally:
        await r.aclose()
        await viewer.close()


def test_embedded_redis_runs_bounded(tmp_path: Path) -> None:
    supervisor = RedisSupervisor(tmp_path / "redis", appendonly=False, maxmemory_mb=64)
    supervisor.start()
    try:
        client = redis.Redis.from_url(supervisor.url, decode_responses=True)
        try:
            assert client.config_get("maxmemory") == {"maxmemory": str(64 * 1024 * 1024)}
            assert client.config_get("maxmemory-policy") == {
                "maxmemory-policy": "volatile-lru"}
        finally:
            client.close()
    finally:
        supervisor.stop()
    assert MAXMEMORY_POLICY == "volatile-lru"
    assert RedisSettings().maxmemory_mb == DEFAULT_MAXMEMORY_MB
    assert load_settings(env={}).redis.maxmemory_mb == DEFAULT_MAXMEMORY_MB


async def test_memory_warning_once_per_crossing(tmp_path: Path,
                                                caplog: pytest.LogCaptureFixture) -> None:
    with RedisServer(tmp_path / "redis", appendonly=False) as server:
        r: Redis = Redis.from_url(server.url, decode_responses=True)
        try:
            watch = MemoryWatch()

            async def bound_at(share: float) -> None:
                used = int((await r.info("memory"))["used_memory"])
                await r.config_set("maxmemory", int(used / share))

            caplog.set_level(logging.INFO, logger="livesell.memory")
            await bound_at(0.5)
            assert (ratio := await watch.check(r)) is not None and ratio < 0.8
            await bound_at(0.95)
            for _ in range(3):
                await watch.check(r)
            warnings = [rec for rec in caplog.records if rec.levelno == logging.WARNING]
            assert len(warnings) == 1 and "maxmemory" in warnings[0].getMessage()
            await bound_at(0.75)  # between the two marks: still high, no new warning
            await watch.check(r)
            await bound_at(0.3)
            await watch.check(r)
            assert not watch.high
            await bound_at(0.95)
            await watch.check(r)
            warnings = [rec for rec in caplog.records if rec.levelno == logging.WARNING]
            assert len(warnings) == 2
            await r.config_set("maxmemory", 0)
            assert await watch.check(r) is None
        finally:
            await r.aclose()


def test_request_id_ttl_setting_is_bounded() -> None:
    assert load_settings(env={}).sale.request_id_ttl_s == 600
    with pytest.raises(SettingsError, match=r"sale\.request_id_ttl_s"):
        load_settings(env={}, overrides={"sale": {"request_id_ttl_s": 30}})
    with pytest.raises(SettingsError, match=r"sale\.request_id_ttl_s"):
        load_settings(env={}, overrides={"sale": {"request_id_ttl_s": 2 * 86400}})
    with pytest.raises(SettingsError, match="hold_seconds"):
        load_settings(env={}, overrides={"sale": {"request_id_ttl_s": 120,
                                                  "hold_seconds": 300.0}})
    with pytest.raises(SettingsError, match=r"redis\.maxmemory_mb"):
        load_settings(env={}, overrides={"redis": {"maxmemory_mb": 1}})
