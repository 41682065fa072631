"""Resume with since=, snapshots after gaps, Redis losing its data, restarts."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import redis.asyncio as aioredis

from tests.support import LiveServer, create_room, join, lose_redis_data, make_settings


async def test_resume_gets_exactly_the_missed_events(server: LiveServer,
                                                     http: httpx.AsyncClient) -> None:
    host = await create_room(http)
    viewer = await join(server, host.room_id)
    snap = await viewer.next_event("snapshot")
    await host.call("POST", "/announcements", {"text": "one"}, expect=201)
    first = await viewer.next_event("announcement")
    assert first["seq"] == snap["seq"] + 1
    await viewer.close()
    missed = [await host.call("POST", "/announcements", {"text": f"missed {i}"}, expect=201)
              for i in range(5)]
    back = await join(server, host.room_id, token=viewer.token, since=first["seq"])
    assert back.viewer_id == viewer.viewer_id and back.welcome["resumed"]
    got = [await back.next_event("announcement") for _ in range(5)]
    assert [g["seq"] for g in got] == [m["seq"] for m in missed]
    assert [g["text"] for g in got] == [f"missed {i}" for i in range(5)]
    assert not any(f["type"] == "snapshot" for f in back.frames)
    live = await host.call("POST", "/announcements", {"text": "live"}, expect=201)
    after = await back.next_event("announcement")
    assert after["seq"] == live["seq"]
    # Nothing twice, nothing skipped.
    seqs = [f["seq"] for f in back.frames if f.get("type") == "announcement"]
    assert seqs == list(range(first["seq"] + 1, live["seq"] + 1))
    await back.close()


async def test_resume_beyond_the_log_gets_a_snapshot(redis_url: str, data_dir: Path) -> None:
    live = await LiveServer(make_settings(redis_url, data_dir, hub={"log_size": 10})).start()
    try:
        async with httpx.AsyncClient(base_url=live.base) as http:
            host = await create_room(http)
            viewer = await join(live, host.room_id)
            snap = await viewer.next_event("snapshot")
            await viewer.close()
            for i in range(15):
                await host.call("POST", "/announcements", {"text": f"n{i}"}, expect=201)
            back = await join(live, host.room_id, since=snap["seq"])
            fresh = await back.next_event("snapshot")
            assert fresh["seq"] == snap["seq"] + 15
            assert back.welcome["resumed"] is False
            assert not any(f["type"] == "announcement" for f in back.frames)
    finally:
        await live.stop()


async def test_resync_sends_a_snapshot(server: LiveServer, http: httpx.AsyncClient) -> None:
    host = await create_room(http)
    viewer = await join(server, host.room_id)
    first = await viewer.next_event("snapshot")
    await host.call("POST", "/announcements", {"text": "x"}, expect=201)
    announced = await viewer.next_event("announcement")
    await viewer.send({"type": "resync"})
    # A resync within hub.resync_interval_s of the join's snapshot is answered when
    # the interval is up; other events (viewer counts) may come meanwhile.
    again = await viewer.next_event("snapshot")
    assert again["seq"] >= announced["seq"] > first["seq"]
    await viewer.close()


async def test_redis_flushed_then_restart_never_sells_twice(redis_url: str,
                                                            data_dir: Path) -> None:
    settings = make_settings(redis_url, data_dir)
    live = await LiveServer(settings).start()
    async with httpx.AsyncClient(base_url=live.base) as http:
        host = await create_room(http)
        product = await host.product(stock=10)
        sale = await host.sale(product["product_id"], units=8, limit=3)
        buyers = [await join(live, host.room_id) for _ in range(3)]
        for b in buyers:
            hold = await b.request("buy", product_id=product["product_id"], quantity=2)
            placed = await b.request("checkout", hold_id=hold["hold"]["id"])
            assert placed["type"] == "order_placed"
        # One more hold that is never paid: lost with Redis, its units return.
        dangling = await buyers[0].request("buy", product_id=product["product_id"])
        assert dangling["type"] == "hold"
        drop = await host.call("POST", "/coupons", {"kind": "percent", "value": 5, "count": 2},
                               expect=201)
        await asyncio.gather(*(b.close() for b in buyers))
    await live.stop()

    await lose_redis_data(redis_url)

    live = await LiveServer(settings).start()
    try:
        async with httpx.AsyncClient(base_url=live.base) as http:
            host.http = http
            audit = await host.audit()
            assert audit["ok"], audit["checks"]
            stock = audit["products"][0]
            assert (stock["total"], stock["sold"], stock["held"], stock["left"]) == (10, 6, 0, 4)
            crowd = [await join(live, host.room_id) for _ in range(6)]
            answers = await asyncio.gather(*(c.request("buy", product_id=product["product_id"],
                                                       quantity=1) for c in crowd))
            # The sale had 8 units and 6 are sold: exactly 2 more can be held.
            holds = [a for a in answers if a["type"] == "hold"]
            assert len(holds) == 2
            assert {a["code"] for a in answers if a["type"] == "error"} == {"sold_out"}
            state = await host.call("GET", "", expect=200)
            assert state["products"][0]["sale"]["sale_id"] == sale["sale_id"]
            assert state["coupons"][0]["coupon_id"] == drop["coupon_id"]
            await asyncio.gather(*(c.close() for c in crowd))
    finally:
        await live.stop()


async def test_redis_flushed_while_running_is_rebuilt(server: LiveServer,
                                                      http: httpx.AsyncClient,
                                                      redis_url: str) -> None:
    host = await create_room(http)
    product = await host.product(stock=3)
    await host.sale(product["product_id"], units=3, limit=3)
    viewer = await join(server, host.room_id)
    hold = await viewer.request("buy", product_id=product["product_id"], quantity=2)
    assert (await viewer.request("checkout", hold_id=hold["hold"]["id"]))["type"] == \
        "order_placed"
    await lose_redis_data(redis_url)
    for _ in range(50):  # the upkeep loop notices within a second or two
        r = await http.get(f"/api/rooms/{host.room_id}")
        if r.status_code == 200:
            break
        await asyncio.sleep(0.1)
    audit = await host.audit()
    assert audit["products"][0]["sold"] == 2 and audit["products"][0]["left"] == 1
    fresh = await join(server, host.room_id)
    over = await fresh.request("buy", product_id=product["product_id"], quantity=2)
    assert over["code"] == "insufficient_stock"
    ok = await fresh.request("buy", product_id=product["product_id"], quantity=1)
    assert ok["type"] == "hold"
    await asyncio.gather(viewer.close(), fresh.close())


async def test_shutdown_drains_and_closes_viewers_with_1012(redis_url: str,
                                                            data_dir: Path) -> None:
    live = await LiveServer(make_settings(redis_url, data_dir)).start()
    async with httpx.AsyncClient(base_url=live.base) as http:
        host = await create_room(http)
    viewer = await join(live, host.room_id)
    services = live.services
    await live.stop()
    await asyncio.wait_for(viewer.closed, 30)
    assert viewer.ws.close_code == 1012
    assert services.draining


async def test_scripts_forgotten_by_redis_are_reloaded(server: LiveServer,
                                                      http: httpx.AsyncClient,
                                                      redis_url: str) -> None:
    host = await create_room(http)
    product = await host.product(stock=3)
    await host.sale(product["product_id"], units=3, limit=3)
    viewer = await join(server, host.room_id)
    client = aioredis.Redis.from_url(redis_url)
    await client.script_flush()
    await client.aclose()
    answers = await asyncio.gather(*(viewer.request("buy", product_id=product["product_id"])
                                     for _ in range(4)))
    assert sorted(a["type"] for a in answers) == ["error", "hold", "hold", "hold"]
    await viewer.close()
