"""Waitlists against a real server and redis-server: a viewer joins the waitlist
of a sold-out product; a unit that comes back (a hold released or expired, stock
added) goes to the head as a hold of their own, in order, never past the stock;
other buyers cannot take units owed to those waiting; per-buyer limits apply; a
viewer away keeps their place, then loses it."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import redis.asyncio as aioredis

from server.core.keys import room_keys
from tests.support import (
    Host,
    LiveServer,
    ViewerClient,
    create_room,
    eventually,
    join,
    server_with,
)


async def sold_out_product(host: Host, stock: int, **listing: Any) -> str:
    product = await host.product(stock=stock, price=1000)
    pid = str(product["product_id"])
    await host.call("POST", "/pins", {"product_id": pid}, expect=200)
    if listing:
        await host.call("PUT", f"/products/{pid}/listing", {"open": True, **listing},
                        expect=200)
    return pid


def for_me(viewer: ViewerClient) -> Any:
    """A waitlist_offer event that offers this viewer a hold."""
    return lambda f: any(o["viewer_id"] == viewer.viewer_id for o in f["offers"])


def all_moves(viewer: ViewerClient, pid: str, kind: str) -> list[dict[str, Any]]:
    return [m for f in sorted((f for f in viewer.frames if f.get("type") == "waitlist_offer"
                               and f["product_id"] == pid), key=lambda f: f["seq"])
            for m in f[kind]]


async def test_a_released_unit_goes_to_the_head_of_the_waitlist_in_the_same_step(
        server: LiveServer, http: httpx.AsyncClient) -> None:
    host = await create_room(http)
    pid = await sold_out_product(host, stock=2)
    b1, b2, w1, w2, late = [await join(server, host.room_id) for _ in range(5)]
    h1 = (await b1.request("buy", product_id=pid))["hold"]
    h2 = (await b2.request("buy", product_id=pid))["hold"]
    first = await w1.request("join_waitlist", product_id=pid)
    assert (first["type"], first["position"], first["waiting"]) == ("waitlist", 1, 1)
    second = await w2.request("join_waitlist", product_id=pid)
    assert (second["position"], second["waiting"]) == (2, 2)
    again = await w1.request("join_waitlist", product_id=pid)
    assert (again["position"], again["ticket"]) == (1, first["ticket"])
    assert (await late.request("buy", product_id=pid))["code"] == "sold_out"
    # The count waiting reaches every viewer with the stock.
    await late.next_event("stock", where=lambda f: f["product_id"] == pid
                          and f["waiting"] == 2)

    released = await b1.request("release", hold_id=h1["id"])
    assert released["type"] == "hold_released"
    event = await w1.next_event("waitlist_offer", where=for_me(w1))
    (offer,) = event["offers"]
    assert (offer["viewer_id"], offer["ticket"]) == (w1.viewer_id, first["ticket"])
    hold = offer["hold"]
    assert (hold["product_id"], hold["quantity"], hold["unit_price"], hold["sale_id"]) == \
        (pid, 1, 1000, f"bn_{pid}")
    # Nothing was left in stock between the release and the offer.
    card = await host.call("GET", f"/products/{pid}", expect=200)
    assert card["stock"] == {"total": 2, "left": 0, "held": 2, "sold": 0}
    assert card["waiting"] == 1
    placed = await w1.request("checkout", hold_id=hold["id"])
    assert placed["type"] == "order_placed", placed
    await b2.request("release", hold_id=h2["id"])
    event = await w2.next_event("waitlist_offer", where=for_me(w2))
    assert [o["viewer_id"] for o in event["offers"]] == [w2.viewer_id]
    assert (await late.request("join_waitlist", product_id=pid))["position"] == 1
    left = await late.request("leave_waitlist", product_id=pid)
    assert (left["type"], left["was_waiting"]) == ("waitlist_left", True)
    audit = await host.audit()
    assert audit["ok"], audit["checks"]
    await asyncio.gather(*(v.close() for v in (b1, b2, w1, w2, late)))


async def test_joining_is_refused_with_a_reason(server: LiveServer,
                                                http: httpx.AsyncClient) -> None:
    host = await create_room(http)
    pid = await sold_out_product(host, stock=1)
    viewer = await join(server, host.room_id)
    answer = await viewer.request("join_waitlist", product_id=pid)
    assert (answer["type"], answer["code"]) == ("error", "not_sold_out")
    answer = await viewer.request("join_waitlist", product_id="no-such-product")
    assert answer["code"] == "product_not_found"
    answer = await viewer.request("join_waitlist", product_id="bad id!")
    assert answer["type"] == "error" and "product_id" in answer["message"]
    assert (await viewer.request("leave_waitlist", product_id=pid))["was_waiting"] is False
    await viewer.close()


async def test_stock_added_by_the_host_goes_to_those_waiting_first(
        server: LiveServer, http: httpx.AsyncClient) -> None:
    host = await create_room(http)
    pid = await sold_out_product(host, stock=1)
    buyer, waiter, other = [await join(server, host.room_id) for _ in range(3)]
    await buyer.request("buy", product_id=pid)
    await waiter.request("join_waitlist", product_id=pid)
    await host.call("PATCH", f"/products/{pid}", {"stock": 3}, expect=200)
    event = await waiter.next_event("waitlist_offer", where=for_me(waiter))
    assert [o["viewer_id"] for o in event["offers"]] == [waiter.viewer_id]
    # The list is empty now: the last unit is anyone's.
    assert (await other.request("buy", product_id=pid))["type"] == "hold"
    await asyncio.gather(*(v.close() for v in (buyer, waiter, other)))


async def test_the_per_buyer_limit_applies_to_a_promoted_hold(
        server: LiveServer, http: httpx.AsyncClient) -> None:
    host = await create_room(http)
    pid = await sold_out_product(host, stock=2, limit_per_buyer=1)
    greedy, holder, patient = [await join(server, host.room_id) for _ in range(3)]
    bought = (await greedy.request("buy", product_id=pid))["hold"]
    assert (await greedy.request("checkout", hold_id=bought["id"]))["type"] == "order_placed"
    held = (await holder.request("buy", product_id=pid))["hold"]
    assert (await greedy.request("join_waitlist", product_id=pid))["position"] == 1
    assert (await patient.request("join_waitlist", product_id=pid))["position"] == 2
    await holder.request("release", hold_id=held["id"])
    event = await patient.next_event("waitlist_offer", where=for_me(patient))
    assert [(d["viewer_id"], d["reason"]) for d in event["dropped"]] == \
        [(greedy.viewer_id, "limit_reached")]
    assert [o["viewer_id"] for o in event["offers"]] == [patient.viewer_id]
    audit = await host.audit()
    assert audit["ok"], audit["checks"]
    await asyncio.gather(*(v.close() for v in (greedy, holder, patient)))


async def test_a_viewer_away_keeps_their_place_and_others_cannot_take_their_unit(
        server: LiveServer, http: httpx.AsyncClient, redis_url: str) -> None:
    host = await create_room(http)
    pid = await sold_out_product(host, stock=1)
    buyer, other = [await join(server, host.room_id) for _ in range(2)]
    away = await join(server, host.room_id)
    token, away_id = away.token, away.viewer_id
    held = (await buyer.request("buy", product_id=pid))["hold"]
    await away.request("join_waitlist", product_id=pid)
    await away.close()
    client = aioredis.Redis.from_url(redis_url)
    gone = room_keys(host.room_id).gone
    await eventually(lambda: client.zscore(gone, away_id))
    await buyer.request("release", hold_id=held["id"])
    # Passed over while away, their place kept: the unit stays for them.
    card = await host.call("GET", f"/products/{pid}", expect=200)
    assert (card["stock"]["left"], card["waiting"]) == (1, 1)
    assert (await other.request("buy", product_id=pid))["code"] == "waitlist_ahead"
    back = await join(server, host.room_id, token=token)
    assert back.viewer_id == away_id
    answer = await back.request("join_waitlist", product_id=pid)
    assert answer["position"] == 1
    event = await back.next_event("waitlist_offer", where=for_me(back))
    assert [o["viewer_id"] for o in event["offers"]] == [away_id]
    await client.aclose()
    await asyncio.gather(*(v.close() for v in (buyer, other, back)))


async def test_a_viewer_away_too_long_loses_their_place(
        redis_url: str, data_dir: Path) -> None:
    async with server_with(redis_url, data_dir, sale={"waitlist_keep_place_s": 0}) as (live, http):
        host = await create_room(http)
        pid = await sold_out_product(host, stock=1)
        buyer, waiter = [await join(live, host.room_id) for _ in range(2)]
        away = await join(live, host.room_id)
        away_id = away.viewer_id
        held = (await buyer.request("buy", product_id=pid))["hold"]
        await away.request("join_waitlist", product_id=pid)
        await waiter.request("join_waitlist", product_id=pid)
        await away.close()
        client = aioredis.Redis.from_url(redis_url)
        present = room_keys(host.room_id).present
        await eventually(lambda: _absent(client, present, away_id))
        await client.aclose()
        await buyer.request("release", hold_id=held["id"])
        event = await waiter.next_event("waitlist_offer", where=for_me(waiter))
        assert [(d["viewer_id"], d["reason"]) for d in event["dropped"]] == \
            [(away_id, "away")]
        assert [o["viewer_id"] for o in event["offers"]] == [waiter.viewer_id]
        await asyncio.gather(buyer.close(), waiter.close())


async def _absent(client: Any, present: str, viewer_id: str) -> bool:
    return not await client.hexists(present, viewer_id)


async def test_racing_expiries_and_releases_serve_the_waitlist_in_order_within_stock(
        redis_url: str, data_dir: Path) -> None:
    """10 units held by 10 buyers whose holds expire after 1 s, half of them also
    released by their buyers at about that moment; 30 viewers wait. Exactly the
    first 10 in line get a unit, in their order, and the stock is never exceeded."""
    async with server_with(redis_url, data_dir, sale={"hold_seconds": 1.0}) as (live, http):
        host = await create_room(http)
        pid = await sold_out_product(host, stock=10)
        buyers = await asyncio.gather(*(join(live, host.room_id) for _ in range(10)))
        holds = await asyncio.gather(*(b.request("buy", product_id=pid) for b in buyers))
        assert all(h["type"] == "hold" for h in holds)
        waiters = [await join(live, host.room_id) for _ in range(30)]
        tickets = []
        for w in waiters:  # one after another: the line's order is known
            tickets.append((await w.request("join_waitlist", product_id=pid))["ticket"])
        assert tickets == sorted(tickets)
        watcher = waiters[-1]
        # Not a wait for a condition: it only makes the releases race the expiries
        # due at 1 s; whichever wins, the assertions below hold.
        await asyncio.sleep(0.9)
        await asyncio.gather(*(b.request("release", hold_id=h["hold"]["id"])
                               for b, h in zip(buyers[:5], holds[:5], strict=True)))

        async def served() -> list[dict[str, Any]] | None:
            offers = all_moves(watcher, pid, "offers")
            return offers if len(offers) >= 10 else None

        offers = await eventually(served)
        # Offers made later (an offered hold expiring after 60 s) would follow: the
        # first 10 are the units the buyers gave back.
        first = offers[:10]
        assert [o["ticket"] for o in first] == tickets[:10]
        assert [o["viewer_id"] for o in first] == [w.viewer_id for w in waiters[:10]]
        assert all_moves(watcher, pid, "dropped") == []
        card = await host.call("GET", f"/products/{pid}", expect=200)
        assert card["stock"] == {"total": 10, "left": 0, "held": 10, "sold": 0}
        assert card["waiting"] == 20
        # Each promoted viewer holds exactly one unit of their own.
        for w, o in zip(waiters[:10], first, strict=True):
            placed = await w.request("checkout", hold_id=o["hold"]["id"])
            assert placed["type"] == "order_placed", placed
        audit = await host.audit()
        assert audit["ok"], audit["checks"]
        assert audit["products"][0]["sold"] == 10
        await asyncio.gather(*(v.close() for v in [*buyers, *waiters]))


async def test_a_sold_out_flash_sale_can_be_waited_for(
        server: LiveServer, http: httpx.AsyncClient) -> None:
    """The sale's own units are gone while the product still has stock: a buyer
    gets sold_out, so the line is open to them (reserve.lua's rule, not the stock)."""
    host = await create_room(http)
    pid = (await host.product(stock=10))["product_id"]
    await host.sale(pid, units=2, limit=1)
    b1, b2, late = [await join(server, host.room_id) for _ in range(3)]
    held = [(await b.request("buy", product_id=pid))["hold"] for b in (b1, b2)]
    assert (await late.request("buy", product_id=pid))["code"] == "sold_out"
    answer = await late.request("join_waitlist", product_id=pid)
    assert (answer["type"], answer["position"]) == ("waitlist", 1), answer
    await b1.request("release", hold_id=held[0]["id"])
    event = await late.next_event("waitlist_offer", where=for_me(late))
    assert event["offers"][0]["hold"]["unit_price"] == 500  # the sale's price
    await asyncio.gather(*(v.close() for v in (b1, b2, late)))


async def test_a_product_from_before_listings_sells_and_the_show_ends(
        server: LiveServer, http: httpx.AsyncClient, redis_url: str) -> None:
    """A product whose Redis state predates listings (no `bn_` hash, as after an
    upgrade that kept Redis): pinning makes its listing whole; a buy takes nothing
    it cannot account for; ending the show works."""
    host = await create_room(http)
    pid = (await host.product(stock=3))["product_id"]
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    keys = room_keys(host.room_id)
    await client.delete(keys.sale(f"bn_{pid}"))
    await host.call("POST", "/pins", {"product_id": pid}, expect=200)
    buyer = await join(server, host.room_id)
    answer = await buyer.request("buy", product_id=pid)
    assert answer["type"] == "hold", answer
    stock = await client.hgetall(keys.stock(pid))
    assert (stock["left"], stock["held"]) == ("2", "1")
    await host.call("POST", "/end", expect=200)
    assert (await host.audit())["ok"]
    await client.aclose()
    await buyer.close()


async def test_units_kept_for_a_viewer_away_too_long_go_on_without_another_event(
        redis_url: str, data_dir: Path) -> None:
    async with server_with(redis_url, data_dir, sale={"waitlist_keep_place_s": 1}) as (live, http):
        host = await create_room(http)
        pid = await sold_out_product(host, stock=1)
        buyer, other = [await join(live, host.room_id) for _ in range(2)]
        held = (await buyer.request("buy", product_id=pid))["hold"]
        assert (await buyer.request("checkout", hold_id=held["id"]))["type"] == \
            "order_placed"
        away = await join(live, host.room_id)
        await away.request("join_waitlist", product_id=pid)
        await away.close()
        client = aioredis.Redis.from_url(redis_url)
        await eventually(lambda: _absent(client, room_keys(host.room_id).present,
                                         away.viewer_id))
        await client.aclose()
        await host.call("PATCH", f"/products/{pid}", {"stock": 51}, expect=200)

        async def line_empty() -> bool:
            card = await host.call("GET", f"/products/{pid}", expect=200)
            return bool(card["waiting"] == 0)

        # Once the place has run out, the once-a-second sweep takes it off.
        await eventually(line_empty)
        answer = await other.request("buy", product_id=pid)
        assert answer["type"] == "hold", answer
        await asyncio.gather(buyer.close(), other.close())


async def test_viewers_who_left_are_forgotten_after_their_place_would_run_out(
        redis_url: str, data_dir: Path) -> None:
    async with server_with(redis_url, data_dir, sale={"waitlist_keep_place_s": 0}) as (live, http):
        host = await create_room(http)
        client = aioredis.Redis.from_url(redis_url)
        keys = room_keys(host.room_id)
        for _ in range(30):
            await (await join(live, host.room_id)).close()

        async def all_left() -> bool:
            return int(await client.hlen(keys.present)) == 0

        await eventually(all_left)
        last = await join(live, host.room_id)
        await last.close()

        async def only_the_last() -> bool:
            gone = await client.zrange(keys.gone, 0, -1)
            return bool(gone == [last.viewer_id.encode()])

        # Each leave trims the entries older than the place is kept (here 0 s).
        await eventually(only_the_last)
        await client.aclose()


async def test_a_long_line_is_served_in_bounded_steps(
        server: LiveServer, http: httpx.AsyncClient) -> None:
    """70 wait and 70 units arrive at once: all 70 are served, in order, by steps of
    at most 64 moves each, so no single Lua step or event grows with the line."""
    host = await create_room(http)
    pid = await sold_out_product(host, stock=1)
    buyer = await join(server, host.room_id)
    held = (await buyer.request("buy", product_id=pid))["hold"]
    await buyer.request("checkout", hold_id=held["id"])
    waiters = list(await asyncio.gather(*(join(server, host.room_id) for _ in range(70))))
    tickets = [(await w.request("join_waitlist", product_id=pid))["ticket"] for w in waiters]
    await host.call("PATCH", f"/products/{pid}", {"stock": 71}, expect=200)
    watcher = waiters[0]

    async def all_served() -> list[dict[str, Any]] | None:
        offers = all_moves(watcher, pid, "offers")
        return offers if len(offers) == 70 else None

    offers = await eventually(all_served)
    assert [o["ticket"] for o in offers] == tickets
    events = [f for f in watcher.frames if f.get("type") == "waitlist_offer"]
    assert len(events) >= 2 and max(len(f["offers"]) for f in events) <= 64
    card = await host.call("GET", f"/products/{pid}", expect=200)
    assert card["stock"] == {"total": 71, "left": 0, "held": 70, "sold": 1}
    await asyncio.gather(buyer.close(), *(w.close() for w in waiters))
