"""Rooms with a lifecycle and an owner (server/features/rooms.py): who may create a room,
ending a show (sales stop, holds settle, viewers told), an ended room surviving
restart and a Redis rebuild, the paged public list, bounded trace descriptors,
and the pulse's due-time schedule among thousands of idle rooms."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from server.core.domain import now_ms
from server.core.keys import DUE, ROOMS, room_keys
from server.core.settings import ServerSettings
from server.features.recorder import MAX_OPEN_TRACES
from server.features.rooms import encode_cursor, room_creation_refusal
from tests.support import (
    Host,
    LiveServer,
    StoreLock,
    create_room,
    eventually,
    join,
    make_settings,
)


@pytest.fixture
async def rclient(redis_url: str) -> AsyncIterator[Any]:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        yield client
    finally:
        await client.aclose()


async def _many_rooms(http: httpx.AsyncClient, n: int, prefix: str) -> list[Host]:
    gate = asyncio.Semaphore(32)

    async def one(i: int) -> Host:
        async with gate:
            return await create_room(http, f"{prefix} {i}")

    return list(await asyncio.gather(*(one(i) for i in range(n))))


# ---------------------------------------------------------------------- ownership


def test_room_creation_decision() -> None:
    def code(host: str, admin: str, offered: bytes) -> str | None:
        refused = room_creation_refusal(ServerSettings(host=host, admin_key=admin), offered)
        return None if refused is None else f"{refused.status} {refused.code}"

    for loopback in ("127.0.0.1", "127.8.9.10", "::1", "[::1]", "localhost"):
        assert code(loopback, "", b"") is None
    for public in ("0.0.0.0", "", "::", "192.0.2.10", "shop.example"):
        assert code(public, "", b"") == "403 admin_key_not_set"
        assert code(public, "", b"anything") == "403 admin_key_not_set"
        assert code(public, "k3y", b"k3y") is None
        assert code(public, "k3y", b"wrong") == "401 unauthorized"
    assert code("127.0.0.1", "k3y", b"") == "401 unauthorized"
    assert code("127.0.0.1", "k3y", "é".encode("latin-1")) == "401 unauthorized"


async def test_room_creation_on_loopback_and_on_a_public_address(
        server: LiveServer, http: httpx.AsyncClient, redis_url: str, tmp_path: Path) -> None:
    created = await http.post("/api/rooms", json={"title": "Loopback show"})
    assert created.status_code == 201 and created.json()["room"]["state"] == "live"
    # The server below listens on loopback (tests never bind a public address), but
    # its settings say 0.0.0.0 with no admin key: creation is refused, clearly.
    public = make_settings(redis_url, tmp_path / "public", server={"host": "0.0.0.0"})
    live = await LiveServer(public).start()
    try:
        async with httpx.AsyncClient(base_url=live.base, timeout=30) as client:
            r = await client.post("/api/rooms", json={"title": "Anonymous"})
            assert r.status_code == 403, r.text
            error = r.json()["error"]
            assert error["code"] == "admin_key_not_set" and "server.admin_key" in \
                error["message"]
    finally:
        await live.stop()


# ---------------------------------------------------------------------- ending a show


async def test_end_show_stops_sales_voids_holds_and_settles_checkouts(
        redis_url: str, data_dir: Path, rclient: Any) -> None:
    settings = make_settings(redis_url, data_dir, store={"busy_timeout_ms": 120_000})
    live = await LiveServer(settings).start()
    try:
        async with httpx.AsyncClient(base_url=live.base, timeout=120) as http:
            await _end_show_case(live, http, rclient)
    finally:
        await live.stop()


async def _end_show_case(live: LiveServer, http: httpx.AsyncClient, rclient: Any) -> None:
    host = await create_room(http)
    product = await host.product(stock=10)
    pid = product["product_id"]
    sale = await host.sale(pid, units=10, limit=5)
    coupon = await host.call("POST", "/coupons", {"kind": "amount", "value": 100,
                                                  "count": 5, "currency": "USD"}, expect=201)
    lottery = await host.call("POST", "/lotteries", {"prize": "Mug", "winners": 1,
                                                     "entry": "button", "duration_s": 600},
                              expect=201)
    holder, payer = await join(live, host.room_id), await join(live, host.room_id)
    entered = await holder.request("enter_lottery", lottery_id=lottery["lottery_id"])
    assert entered["type"] == "lottery_entered"
    held = await holder.request("buy", product_id=pid, quantity=3)
    paying = await payer.request("buy", product_id=pid, quantity=2)
    assert held["type"] == paying["type"] == "hold"
    keys = room_keys(host.room_id)
    assert await rclient.hget(keys.bought(sale["sale_id"]), holder.viewer_id) == "3"
    pay_hold = paying["hold"]["id"]
    async with StoreLock(live.settings.store_path) as lock:
        # The payer's checkout is in flight: 'confirming' in Redis, its order write
        # waiting on the store, when the host ends the show.
        checkout = asyncio.create_task(payer.request("checkout", hold_id=pay_hold,
                                                     timeout=240))

        async def confirming() -> bool:
            return bool(await rclient.hget(keys.hold(pay_hold), "state") == "confirming")

        await eventually(confirming)
        ending = asyncio.create_task(host.call("POST", "/end"))
        await asyncio.sleep(0.2)  # let the end queue its store write behind the order
        await lock.release()
        ended, answer = await asyncio.gather(ending, checkout)
    assert ended["state"] == "ended" and isinstance(ended["ended_at"], int)
    # Settled once: an order or (had recovery won) a cancellation, never both.
    order_row = await live.services.store.order_for_hold(pay_hold)
    aborted = pay_hold in await live.services.store.aborted(host.room_id)
    assert (order_row is not None) != aborted
    assert (answer["type"] == "order_placed") == (order_row is not None), answer
    sold = 2 if order_row is not None else 0
    # The holder hears it: its hold voided, then show_ended.
    voided = await holder.next_event("holds_voided")
    assert voided["hold_ids"] == [held["hold"]["id"]] and voided["units"] == 3
    drawn = await holder.next_event("lottery_drawn")
    assert drawn["lottery"]["result"]["winners"] == [holder.viewer_id]
    note = await holder.next_event("show_ended")
    assert note["room_id"] == host.room_id and note["ended_at"] == ended["ended_at"]
    assert await rclient.hget(keys.hold(held["hold"]["id"]), "state") == "voided"
    stock = await rclient.hgetall(keys.stock(pid))
    assert {k: int(v) for k, v in stock.items()} == \
        {"total": 10, "left": 10 - sold, "held": 0, "sold": sold}
    assert int(await rclient.hget(keys.bought(sale["sale_id"]), holder.viewer_id)) == 0
    audit = await host.audit()
    assert audit["ok"], audit["checks"]
    assert audit["products"][0]["sold_in_store"] == sold
    assert audit["orders"]["orders"] == (1 if sold else 0)
    # Refused from now on with show_ended: buys, claims, entries, host changes.
    late = await holder.request("buy", product_id=pid)
    assert late["code"] == "show_ended", late
    claim = await holder.request("claim_coupon", coupon_id=coupon["coupon_id"])
    assert claim["code"] == "show_ended", claim
    entry = await payer.request("enter_lottery", lottery_id=lottery["lottery_id"])
    assert entry["code"] == "show_ended", entry
    change = await host.call("POST", "/sales", {"product_id": pid, "price": 100, "units": 1,
                                                "limit_per_buyer": 1}, expect=409)
    assert change["error"]["code"] == "show_ended"
    # Ending again is safe and answers the same; the ended room reads as ended.
    again = await host.call("POST", "/end", expect=200)
    assert again["state"] == "ended" and again["ended_at"] == ended["ended_at"]
    state = (await http.get(f"/api/rooms/{host.room_id}")).json()
    assert state["room"]["state"] == "ended"
    assert await live.services.store.room_state(host.room_id) == \
        {"state": "ended", "starts_at": None, "ended_at": ended["ended_at"]}
    # Nothing of the room is left on the pulse's schedule.
    assert await rclient.zscore(DUE, host.room_id) is None
    assert await rclient.zcard(keys.timers) == 0
    await asyncio.gather(holder.close(), payer.close())


async def test_scheduled_room_goes_live(server: LiveServer, http: httpx.AsyncClient) -> None:
    now = now_ms()
    for bad in (now - 1000, now + 91 * 86400 * 1000, "soon", 1.5):
        r = await http.post("/api/rooms", json={"title": "Later", "starts_at": bad})
        assert r.status_code == 400 and r.json()["error"]["details"]["field"] == "starts_at"
    r = await http.post("/api/rooms", json={"title": "Later", "starts_at": now + 3_600_000})
    assert r.status_code == 201
    body = r.json()
    host = Host(http, body["room"]["room_id"], body["host_key"])
    assert body["room"]["state"] == "scheduled"
    product = await host.product(stock=2)  # setting up does not go live
    state = (await http.get(f"/api/rooms/{host.room_id}")).json()["room"]
    assert state["state"] == "scheduled" and state["starts_at"] == now + 3_600_000
    viewer = await join(server, host.room_id)
    await host.sale(product["product_id"], units=2)  # selling does
    assert (await viewer.next_event("show_live"))["room_id"] == host.room_id
    state = (await http.get(f"/api/rooms/{host.room_id}")).json()["room"]
    assert state["state"] == "live"
    assert (await host.call("POST", "/live", expect=200))["state"] == "live"
    await host.call("POST", "/end", expect=200)
    refused = await host.call("POST", "/live", expect=409)
    assert refused["error"]["code"] == "show_ended"
    await viewer.close()


# ---------------------------------------------------------------------- durability


async def test_ended_room_survives_restart_and_redis_rebuild(
        redis_url: str, data_dir: Path, rclient: Any) -> None:
    settings = make_settings(redis_url, data_dir)
    live = await LiveServer(settings).start()
    try:
        async with httpx.AsyncClient(base_url=live.base, timeout=60) as http:
            ended, still = await create_room(http, "Ended"), await create_room(http, "Live")
            for host in (ended, still):
                product = await host.product(stock=4)
                await host.sale(product["product_id"], units=4, duration_s=3600)
            await ended.call("POST", "/end", expect=200)
    finally:
        await live.stop()
    live = await LiveServer(settings).start()
    try:
        async with httpx.AsyncClient(base_url=live.base, timeout=60) as http:
            async def state_of(room_id: str) -> str:
                r = await http.get(f"/api/rooms/{room_id}")
                return str(r.json()["room"]["state"]) if r.status_code == 200 else ""

            assert await state_of(ended.room_id) == "ended"
            assert await state_of(still.room_id) == "live"
            await rclient.flushall()  # Redis loses everything: rebuilt from the store

            async def rebuilt() -> bool:
                return await state_of(ended.room_id) != "" and \
                    await state_of(still.room_id) != ""

            await eventually(rebuilt, timeout=90)
            assert await state_of(ended.room_id) == "ended"
            assert await state_of(still.room_id) == "live"
            listed = {r["room_id"] for r in (await http.get("/api/rooms")).json()["rooms"]}
            assert listed == {still.room_id}
            viewer = await join(live, ended.room_id)
            snapshot = await viewer.next_event("snapshot")
            assert snapshot["room"]["state"] == "ended"
            assert snapshot["products"][0]["sale"]["state"] == "stopped"
            pid = snapshot["products"][0]["product_id"]
            late = await viewer.request("buy", product_id=pid)
            assert late["code"] == "show_ended"
            # Only the live room's sale is on the schedule (its close timer).
            assert set(await rclient.zrange(DUE, 0, -1)) == {still.room_id}
            await viewer.close()
    finally:
        await live.stop()


# ---------------------------------------------------------------------- listing


async def test_room_list_pages_live_and_upcoming_rooms(server: LiveServer,
                                                       http: httpx.AsyncClient,
                                                       rclient: Any) -> None:
    hosts = await _many_rooms(http, 45, "Show")
    ended = hosts[:5]
    for host in ended:
        await host.call("POST", "/end", expect=200)
    archived = ended[:2]
    for host in archived:
        r = await http.post(f"/api/rooms/{host.room_id}/archive",
                            headers={"X-Host-Key": host.key})
        assert r.status_code == 200, r.text
    live_ids = {h.room_id for h in hosts[5:]}
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params = {"limit": "20"} | ({"cursor": cursor} if cursor else {})
        r = await http.get("/api/rooms", params=params)
        assert r.status_code == 200, r.text
        page = r.json()
        assert len(page["rooms"]) <= 20
        seen += [room["room_id"] for room in page["rooms"]]
        assert all(room["state"] == "live" for room in page["rooms"])
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert pages < 10
    assert pages == 2 and len(seen) == len(set(seen)) == 40 and set(seen) == live_ids
    created = [h.room_id for h in hosts[5:]]
    # Newest first (created_at, then id, descending).
    states = [(await http.get(f"/api/rooms/{rid}")).json()["room"] for rid in created]
    order = sorted(states, key=lambda s: (s["created_at"], s["room_id"]), reverse=True)
    assert seen == [s["room_id"] for s in order]
    assert len((await http.get("/api/rooms")).json()["rooms"]) == 20  # the default
    for query, field in ((("limit", "0"),), "limit"), ((("limit", "101"),), "limit"), \
            ((("limit", "x"),), "limit"), ((("cursor", "!!"),), "cursor"), \
            ((("cursor", "bm90IGEgY3Vyc29y"),), "cursor"), ((("page", "2"),), "fields"), \
            ((("limit", "²"),), "limit"), ((("cursor", encode_cursor(10**19, "r_x")),), "cursor"):
        r = await http.get("/api/rooms", params=dict(query))
        assert r.status_code == 400, (query, r.text)
        details = r.json()["error"]["details"]
        assert details.get("field") == field or field in details, details
    # Archived: its Redis state is released, its orders (none here) stay in the store.
    for host in archived:
        keys = room_keys(host.room_id)
        assert not await rclient.exists(keys.room, keys.seq, keys.epoch)
        assert not await rclient.sismember(ROOMS, host.room_id)
        r = await http.get(f"/api/rooms/{host.room_id}")
        assert r.status_code == 404
    not_ended = await hosts[10].call("POST", "/archive", expect=409)
    assert not_ended["error"]["code"] == "show_not_ended"


async def test_room_list_shows_the_first_pinned_product_image(
        server: LiveServer, http: httpx.AsyncClient) -> None:
    """Each listed show carries a picture for the picker: the image of its first
    pinned product that has one; "" when no pinned product has one (an unpinned
    product's image is not used: only pins are read)."""
    bare, pictured, unpinned = await _many_rooms(http, 3, "Thumb")
    await bare.call("POST", "/pins", {"product_id": (await bare.product())["product_id"]},
                    expect=200)
    plain = await pictured.product()
    lamp = await pictured.product(image_url="https://img.example/lamp.jpg")
    mug = await pictured.product(image_url="https://img.example/mug.jpg")
    for product in (plain, lamp, mug):
        await pictured.call("POST", "/pins", {"product_id": product["product_id"]},
                            expect=200)
    await unpinned.product(image_url="https://img.example/vase.jpg")
    listed = {r["room_id"]: r["thumbnail_url"]
              for r in (await http.get("/api/rooms")).json()["rooms"]}
    assert listed == {bare.room_id: "", pictured.room_id: "https://img.example/lamp.jpg",
                      unpinned.room_id: ""}
    # Unpinned, the next pinned picture is the room's.
    await pictured.call("DELETE", f"/pins/{lamp['product_id']}", expect=200)
    listed = {r["room_id"]: r["thumbnail_url"]
              for r in (await http.get("/api/rooms")).json()["rooms"]}
    assert listed[pictured.room_id] == "https://img.example/mug.jpg"


# ---------------------------------------------------------------------- the pulse


def _open_traces(trace_dir: Path) -> int:
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(trace_dir)):
            count += 1
    return count


async def test_recording_rooms_hold_a_bounded_number_of_trace_files(
        redis_url: str, data_dir: Path) -> None:
    settings = make_settings(redis_url, data_dir, record={"enabled": True})
    live = await LiveServer(settings).start()
    try:
        recorder = live.services.recorder
        async with httpx.AsyncClient(base_url=live.base, timeout=60) as http:
            hosts = await _many_rooms(http, 300, "Recorded")
            most = 0
            for i, host in enumerate(hosts):
                await host.call("POST", "/announcements", {"text": f"hello {i}"},
                                expect=201)
                most = max(most, _open_traces(settings.trace_dir), recorder.open_files)
            assert most <= MAX_OPEN_TRACES
            # Every room's trace was written, descriptors notwithstanding.
            assert len(list(settings.trace_dir.glob("*.jsonl"))) == 300
            last = hosts[-1]
            r = await http.get(f"/api/rooms/{last.room_id}/trace",
                               headers={"X-Host-Key": last.key})
            assert [line for line in r.text.splitlines() if "announce" in line]
            # An old room's trace, closed meanwhile, is reopened and appended to.
            first = hosts[0]
            await first.call("POST", "/announcements", {"text": "again"}, expect=201)
            r = await http.get(f"/api/rooms/{first.room_id}/trace",
                               headers={"X-Host-Key": first.key})
            assert len(r.text.splitlines()) == 3  # header, two announcements
            # Ending the show closes its trace.
            await first.call("POST", "/end", expect=200)
            assert first.room_id not in recorder._files
            assert _open_traces(settings.trace_dir) <= MAX_OPEN_TRACES
    finally:
        await live.stop()


async def test_a_sale_opens_among_2000_idle_rooms(server: LiveServer, http: httpx.AsyncClient,
                                                  rclient: Any) -> None:
    await _many_rooms(http, 2000, "Idle")
    host = await create_room(http, "The one with a sale")
    product = await host.product(stock=3)
    viewer = await join(server, host.room_id)
    sale = await host.sale(product["product_id"], units=3, starts_in_s=2, duration_s=60)
    # Idle rooms are not on the schedule: only the room with timers is.
    assert set(await rclient.zrange(DUE, 0, -1)) == {host.room_id}
    opened = await viewer.next_event("sale_open", timeout=60)
    assert opened["sale"]["sale_id"] == sale["sale_id"]
    hold = await viewer.request("buy", product_id=product["product_id"])
    assert hold["type"] == "hold"
    await viewer.close()


async def test_schema_2_files_are_migrated_with_their_rooms_live(tmp_path: Path) -> None:
    import sqlite3

    from server.state.sqlite_store import SqliteOrderStore

    path = tmp_path / "orders.sqlite3"
    store = SqliteOrderStore(path)
    await store.open()
    await store.add_room("r_old", "Before schema 3", "", "hash", 1000)
    await store.close()
    # What a schema 2 file looks like: no room_states table.
    db = sqlite3.connect(path)
    db.execute("DROP TABLE room_states")
    db.execute("UPDATE schema_version SET version = 2")
    db.commit()
    db.close()
    store = SqliteOrderStore(path)
    await store.open()
    try:
        assert await store.room_state("r_old") == {"state": "live", "starts_at": None,
                                                    "ended_at": None}
        listed = await store.public_rooms(10, None, 0)
        assert [r["room_id"] for r in listed] == ["r_old"] and listed[0]["state"] == "live"
        await store.set_room_state("r_old", "ended", None, 2000, 2000)
        assert await store.public_rooms(10, None, 0) == []
    finally:
        await store.close()
    db = sqlite3.connect(path)
    assert db.execute("SELECT version FROM schema_version").fetchall() == [(3,)]
    db.close()


async def test_a_hold_left_off_the_schedule_is_put_back_by_the_reseed(
        redis_url: str, data_dir: Path, rclient: Any) -> None:
    """A process killed within a tick of granting a hold leaves its room off the
    schedule; the periodic reseed (Pulse.reseed_s) puts it back and the hold
    expires, its units returned."""
    live = await LiveServer(make_settings(redis_url, data_dir,
                                          sale={"hold_seconds": 1.0})).start()
    try:
        async with httpx.AsyncClient(base_url=live.base, timeout=30) as http:
            host = await create_room(http)
            product = await host.product(stock=2)
            await host.sale(product["product_id"], units=2, limit=2, duration_s=600)
            viewer = await join(live, host.room_id)
            hold = await viewer.request("buy", product_id=product["product_id"], quantity=2)
            assert hold["type"] == "hold"
            pulse = live.services.pulse
            # The crash window: nothing of this room on the schedule (the sale's
            # close timer included), and the process's pending note gone with it.
            await pulse.flush_due()
            await rclient.zrem(DUE, host.room_id)

            async def off_schedule_and_due() -> bool:
                return (await rclient.zscore(DUE, host.room_id) is None
                        and now_ms() > hold["hold"]["expires_at"] + 200)
            await eventually(off_schedule_and_due)
            assert await rclient.hget(room_keys(host.room_id).stock(product["product_id"]),
                                      "held") == "2"
            await pulse.reseed_schedule()

            async def expired() -> bool:
                audit = await host.audit()
                return bool(audit["ok"] and audit["products"][0]["left"] == 2
                            and audit["products"][0]["held"] == 0)
            await eventually(expired)
            await viewer.close()
    finally:
        await live.stop()
