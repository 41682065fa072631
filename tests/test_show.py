"""End to end through the public interfaces: pins, scheduled sales, idempotent
retries, coupons at checkout, lotteries, chat, likes, moderation, clock."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import httpx
import orjson
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from server.core.domain import verify_lottery
from tests.support import LiveServer, create_room, join, offer, viewers


async def test_pins_at_most_three(server: LiveServer, http: httpx.AsyncClient) -> None:
    host = await create_room(http)
    products = [await host.product(stock=3) for _ in range(4)]
    viewer = await join(server, host.room_id)
    # The pages learn the limit from the room state, never from a copy of their own.
    state = (await http.get(f"/api/rooms/{host.room_id}")).json()
    assert state["limits"]["max_pins"] == server.settings.sale.max_pins == 3
    assert state["limits"]["max_holds_per_viewer"] == server.settings.sale.max_holds_per_viewer
    for p in products[:3]:
        await host.call("POST", "/pins", {"product_id": p["product_id"]}, expect=200)
    event = await viewer.next_event("pinned", where=lambda f: len(f["pins"]) == 3)
    assert event["product"]["stock"]["left"] == 3
    refused = await host.call("POST", "/pins", {"product_id": products[3]["product_id"]},
                              expect=409)
    assert refused["error"]["code"] == "pin_limit"
    await host.call("DELETE", f"/pins/{products[0]['product_id']}", expect=200)
    unpinned = await viewer.next_event("unpinned")
    assert unpinned["pins"] == [p["product_id"] for p in products[1:3]]
    await viewer.close()


async def test_scheduled_sale_counts_down_then_opens(server: LiveServer,
                                                     http: httpx.AsyncClient) -> None:
    host = await create_room(http)
    product = await host.product(stock=5)
    viewer = await join(server, host.room_id)
    sale = await host.sale(product["product_id"], units=5, starts_in_s=2, duration_s=2)
    assert sale["state"] == "scheduled"
    early = await viewer.request("buy", product_id=product["product_id"])
    assert early["code"] == "not_started"
    tick = await viewer.next_event("sale_countdown")
    assert tick["starts_at"] == sale["starts_at"] and tick["seconds_left"] in (1, 2)
    opened = await viewer.next_event("sale_open")
    assert opened["ts"] >= sale["starts_at"]
    hold = await viewer.request("buy", product_id=product["product_id"])
    assert hold["type"] == "hold"
    closed = await viewer.next_event("sale_closed", timeout=10)
    assert closed["ts"] >= sale["ends_at"] and closed["sale"]["state"] == "ended"
    late = await viewer.request("buy", product_id=product["product_id"])
    assert late["code"] == "ended"
    await viewer.close()


async def test_timer_poll_sleeps_until_the_earliest_timer_and_wakes_for_new_ones(
        server: LiveServer, http: httpx.AsyncClient) -> None:
    from server.features.pulse import TIMER_IDLE_S, TIMER_TICK_S

    class Counted(asyncio.Event):
        """Counts wake-ups (the pulse's own loop clears the real one at each poll)."""

        def __init__(self) -> None:
            super().__init__()
            self.sets = 0

        def set(self) -> None:
            self.sets += 1
            super().set()

    pulse, show = server.services.pulse, server.services.show
    host = await create_room(http)
    product = await host.product(stock=5)
    # Nothing due and nothing scheduled: the next poll is the idle one.
    assert await pulse.timers_tick() == TIMER_IDLE_S
    show.ctx.timers_changed = woken = Counted()
    sale = await host.sale(product["product_id"], units=5, starts_in_s=3, duration_s=60)
    assert woken.sets == 1  # scheduling wakes the sleeping poll
    # The earliest timer is the first countdown tick, 2 s from now: sleep that long
    # at most, since a poll that slept a whole idle second could miss the tick.
    wait = await pulse.timers_tick()
    assert TIMER_TICK_S <= wait <= 2.0
    # A hold is an expiring item too: getting one wakes the poll.
    viewer = await join(server, host.room_id)
    await viewer.next_event("sale_open", timeout=10)
    before = woken.sets
    hold = await viewer.request("buy", product_id=product["product_id"])
    assert hold["type"] == "hold" and woken.sets == before + 1
    assert sale["sale_id"] == hold["hold"]["sale_id"]
    await viewer.close()


async def test_retries_return_the_first_answer(server: LiveServer,
                                               http: httpx.AsyncClient) -> None:
    host = await create_room(http)
    product = await host.product(stock=5)
    await host.sale(product["product_id"], units=5, limit=5)
    viewer = await join(server, host.room_id)
    first = await viewer.request("buy", request_id="buy-1", product_id=product["product_id"])
    again = await viewer.request("buy", request_id="buy-1", product_id=product["product_id"])
    assert first == again and first["type"] == "hold"
    hold_id = first["hold"]["id"]
    results = await asyncio.gather(*(viewer.request("checkout", request_id=f"co-{i}",
                                                    hold_id=hold_id) for i in range(6)))
    # Retried after the dust settles, every request id answers with the same order.
    results += await asyncio.gather(*(viewer.request("checkout", request_id=f"co-{i}x",
                                                     hold_id=hold_id) for i in range(3)))
    results.append(await viewer.request("checkout", request_id="co-0", hold_id=hold_id))
    assert results[-1]["type"] == "order_placed"
    orders = {r["order"]["order_id"] for r in results if r["type"] == "order_placed"}
    assert len(orders) == 1, results
    # A checkout racing another of the same hold is told so, never charged twice.
    assert {r.get("code") for r in results if r["type"] == "error"} <= {"request_in_progress"}
    # Request ids are per message type: reusing one for a claim is a new request.
    claim = await viewer.request("claim_coupon", request_id="buy-1", coupon_id="c_none")
    assert claim["code"] == "coupon_not_found"
    listed = await host.call("GET", "/orders", expect=200)
    assert len(listed["orders"]) == 1
    audit = await host.audit()
    assert audit["products"][0]["sold"] == 1 and audit["ok"]
    # Another viewer cannot check out someone else's hold.
    other = await join(server, host.room_id)
    stolen = await other.request("checkout", hold_id=hold_id)
    assert stolen["code"] == "hold_not_found"
    await asyncio.gather(viewer.close(), other.close())


async def test_release_returns_units(server: LiveServer, http: httpx.AsyncClient) -> None:
    host = await create_room(http)
    product = await host.product(stock=2)
    await host.sale(product["product_id"], units=2, limit=2)
    viewer = await join(server, host.room_id)
    hold = await viewer.request("buy", product_id=product["product_id"], quantity=2)
    sold_out = await (await join(server, host.room_id)).request(
        "buy", product_id=product["product_id"])
    assert sold_out["code"] == "sold_out"
    released = await viewer.request("release", hold_id=hold["hold"]["id"])
    assert released["type"] == "hold_released"
    again = await viewer.request("release", hold_id=hold["hold"]["id"])
    assert again == {**released, "re": again["re"]}
    late = await viewer.request("checkout", hold_id=hold["hold"]["id"])
    assert late["code"] == "hold_released"
    assert (await host.audit())["products"][0]["left"] == 2
    await viewer.close()


async def test_coupon_applies_once_at_checkout(server: LiveServer,
                                               http: httpx.AsyncClient) -> None:
    host = await create_room(http)
    product = await host.product(stock=10)
    await host.sale(product["product_id"], units=10, limit=5, price=1000)
    viewer = await join(server, host.room_id)
    drop = await host.call("POST", "/coupons", {"kind": "amount", "value": 300, "count": 5,
                                                "min_spend": 1500, "currency": "USD"},
                           expect=201)
    event = await viewer.next_event("coupon_drop")
    assert event["coupon"]["remaining"] == 5
    claimed = await viewer.request("claim_coupon", coupon_id=drop["coupon_id"])
    assert claimed["type"] == "coupon_claimed" and claimed["remaining"] == 4
    count = await viewer.next_event("coupon_count")
    assert count["remaining"] == 4
    small = await viewer.request("buy", product_id=product["product_id"], quantity=1)
    refused = await viewer.request("checkout", hold_id=small["hold"]["id"],
                                   coupon_id=drop["coupon_id"])
    assert refused["code"] == "coupon_min_spend"
    big = await viewer.request("buy", product_id=product["product_id"], quantity=2)
    placed = await viewer.request("checkout", hold_id=big["hold"]["id"],
                                  coupon_id=drop["coupon_id"])
    assert placed["type"] == "order_placed", placed
    assert (placed["order"]["subtotal"], placed["order"]["discount"],
            placed["order"]["total"]) == (2000, 300, 1700)
    third = await viewer.request("buy", product_id=product["product_id"], quantity=2)
    reused = await viewer.request("checkout", hold_id=third["hold"]["id"],
                                  coupon_id=drop["coupon_id"])
    assert reused["code"] == "coupon_used"
    euro = await host.call("POST", "/coupons", {"kind": "percent", "value": 10, "count": 5,
                                                "currency": "EUR"}, expect=201)
    await viewer.request("claim_coupon", coupon_id=euro["coupon_id"])
    wrong = await viewer.request("checkout", hold_id=third["hold"]["id"],
                                 coupon_id=euro["coupon_id"])
    assert wrong["code"] == "coupon_currency" and "currency" in wrong["message"]
    # The first hold can still be bought without the coupon.
    plain = await viewer.request("checkout", hold_id=small["hold"]["id"])
    assert plain["order"]["discount"] == 0
    await viewer.close()


async def test_lottery_draw_is_verifiable(server: LiveServer, http: httpx.AsyncClient,
                                          tmp_path: Path) -> None:
    host = await create_room(http)
    lottery = await host.call("POST", "/lotteries", {"prize": "A signed mug", "winners": 3,
                                                     "entry": "button", "duration_s": 60},
                              expect=201)
    assert len(lottery["seed_hash"]) == 64 and "result" not in lottery
    clients = [await join(server, host.room_id) for _ in range(8)]
    entries = await asyncio.gather(*(c.request("enter_lottery", lottery_id=lottery["lottery_id"])
                                     for c in clients))
    assert all(e["type"] == "lottery_entered" for e in entries)
    twice = await clients[0].request("enter_lottery", lottery_id=lottery["lottery_id"])
    assert twice["code"] == "already_entered"
    entrants = await host.call("GET", f"/lotteries/{lottery['lottery_id']}/entrants",
                               expect=200)
    assert sorted(entrants["entrants"]) == sorted(c.viewer_id for c in clients)
    drawn = await host.call("POST", f"/lotteries/{lottery['lottery_id']}/draw", expect=200)
    event = await clients[1].next_event("lottery_drawn")
    # The event carries the count and the winners; the list is fetched to verify.
    assert event["lottery"]["result"] == {k: v for k, v in drawn["result"].items()
                                          if k != "entrants"}
    assert event["lottery"]["entrants"] == len(drawn["result"]["entrants"]) == 8
    result = drawn["result"]
    assert len(result["winners"]) == 3 and set(result["winners"]) <= set(result["entrants"])
    published = {"seed_hash": drawn["seed_hash"], "winners_count": 3, **result}
    assert verify_lottery(published).ok
    # Another first digit, whatever the seed's was ("00" + rest was no change for a seed
    # that began with "00": one run in 256 failed).
    first = "1" if result["seed"][0] == "0" else "0"
    tampered_seed = {**published, "seed": first + result["seed"][1:]}
    assert not verify_lottery(tampered_seed).ok
    tampered_list = {**published, "entrants": [*result["entrants"][:-1], "v_intruder"]}
    check = verify_lottery(tampered_list)
    assert not check.ok and any("entrants_digest" in p for p in check.problems)
    # The command users run, against the published URL and a saved file.
    url = f"{server.base}/api/rooms/{host.room_id}/lotteries/{lottery['lottery_id']}"
    out = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "server",
                                                   "verify-lottery", "--url", url],
                                  capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "OK" in out.stdout
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**drawn, "result": {**result, "winners": result["winners"][::-1]}}))
    out = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "server",
                                                   "verify-lottery", "--file", str(bad)],
                                  capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and "winners differ" in out.stdout
    late = await clients[2].request("enter_lottery", lottery_id=lottery["lottery_id"])
    assert late["code"] == "lottery_closed"
    await asyncio.gather(*(c.close() for c in clients))


async def test_keyword_lottery_entry_by_chat(server: LiveServer,
                                             http: httpx.AsyncClient) -> None:
    host = await create_room(http)
    lottery = await host.call("POST", "/lotteries", {"prize": "Socks", "entry": "keyword",
                                                     "keyword": "Lucky Me", "duration_s": 1},
                              expect=201)
    fan, bystander = await join(server, host.room_id), await join(server, host.room_id)
    await fan.send({"type": "chat", "text": "LUCKY me please!"})
    await bystander.send({"type": "chat", "text": "just watching"})
    wrong = await bystander.request("enter_lottery", lottery_id=lottery["lottery_id"])
    assert wrong["code"] == "not_eligible"
    drawn = await fan.next_event("lottery_drawn", timeout=10)
    assert drawn["lottery"]["entrants"] == 1
    assert drawn["lottery"]["result"]["winners"] == [fan.viewer_id]
    published = await host.call("GET", f"/lotteries/{lottery['lottery_id']}", expect=200)
    assert published["result"]["entrants"] == [fan.viewer_id]
    await asyncio.gather(fan.close(), bystander.close())


async def test_chat_likes_moderation_and_clock(server: LiveServer,
                                               http: httpx.AsyncClient) -> None:
    host = await create_room(http)
    a, b = await join(server, host.room_id, nickname="Ann"), await join(server, host.room_id)
    await a.send({"type": "chat", "text": "<b>hello</b>"})
    chat = await b.next_event("chat")
    assert chat["text"] == "<b>hello</b>" and chat["nickname"] == "Ann"
    too_long = await a.request("chat", text="x" * 201)
    assert too_long["code"] == "bad_request" and "text" in too_long["message"]
    for _ in range(10):
        await a.send({"type": "like", "count": 5})
    likes = await b.next_event("likes", where=lambda f: f["total"] == 50)
    assert likes["total"] == 50
    await host.call("POST", "/moderation/delete", {"message_id": chat["message_id"]},
                    expect=200)
    deleted = await b.next_event("chat_deleted")
    assert deleted["message_id"] == chat["message_id"]
    await host.call("POST", "/moderation/mute", {"viewer_id": a.viewer_id, "duration_s": 60},
                    expect=200)
    await b.next_event("viewer_muted")
    await a.send({"type": "chat", "text": "am I muted?"})
    refused = await a.next_event("error", where=lambda f: f["code"] == "muted")
    assert refused["details"]["until"] > chat["ts"]
    await a.send({"type": "ping", "t": 123.5})
    pong = await a.next_event("pong")
    assert pong["t"] == 123.5 and abs(pong["server_time"] - chat["ts"]) < 60_000
    r = await http.get("/api/time")
    assert r.json()["server_time"] >= chat["ts"]
    stats = await host.call("GET", "/stats", expect=200)
    assert stats["viewers"]["now"] == 2 and stats["likes"] == 50
    assert stats["chat_this_minute"] + stats["chat_per_minute"] >= 1
    await asyncio.gather(a.close(), b.close())


async def test_identity_survives_reconnect(server: LiveServer, http: httpx.AsyncClient) -> None:
    host = await create_room(http)
    session = (await http.post("/api/session", json={"nickname": "Bo"})).json()
    first = await join(server, host.room_id, token=session["token"])
    assert first.viewer_id == session["viewer_id"]
    await first.close()
    second = await join(server, host.room_id, token=session["token"])
    assert second.viewer_id == session["viewer_id"] and second.welcome["viewer"]["nickname"] == "Bo"
    forged = await join(server, host.room_id, token=session["token"][:-2] + "xx")
    assert forged.viewer_id != session["viewer_id"]
    await asyncio.gather(second.close(), forged.close())


async def test_host_endpoints_need_the_host_key(server: LiveServer,
                                                http: httpx.AsyncClient) -> None:
    host = await create_room(http)
    other = await create_room(http)
    body = {"title": "x", "price": 1, "stock": 1}
    r = await http.post(f"/api/rooms/{host.room_id}/products", json=body)
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
    r = await http.post(f"/api/rooms/{host.room_id}/products", json=body,
                        headers={"X-Host-Key": other.key})
    assert r.status_code == 401
    r = await http.post(f"/api/rooms/{host.room_id}/products", json=body,
                        headers={"Authorization": f"Bearer {host.key}"})
    assert r.status_code == 201
    rooms = (await http.get("/api/rooms")).json()["rooms"]
    assert {host.room_id, other.room_id} <= {r["room_id"] for r in rooms}
    assert "host_key" not in json.dumps(rooms)


async def test_host_console_socket_is_not_a_viewer(server: LiveServer,
                                                   http: httpx.AsyncClient) -> None:
    host = await create_room(http)
    console = await join(server, host.room_id, host_key=host.key, nickname="Host")
    viewer = await join(server, host.room_id)
    await console.send({"type": "chat", "text": "Welcome everyone"})
    chat = await viewer.next_event("chat")
    assert chat["host"] is True and chat["text"] == "Welcome everyone"
    counted = await viewer.next_event("viewers", where=lambda f: f["now"] >= 1)
    assert (counted["now"], counted["unique"]) == (1, 1)
    stats = await host.call("GET", "/stats", expect=200)
    assert stats["viewers"]["now"] == 1
    other = await create_room(http)
    async with connect(server.ws_url(host.room_id),
                       subprotocols=offer(host_key=other.key)) as ws:
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 10)
        assert ws.close_code == 4003
    await asyncio.gather(console.close(), viewer.close())


async def test_chat_allowance_survives_reconnecting(server: LiveServer,
                                                    http: httpx.AsyncClient) -> None:
    host = await create_room(http)
    first = await join(server, host.room_id)
    for i in range(5):  # the burst
        await first.send({"type": "chat", "text": f"m{i}"})
    await first.next_event("chat", where=lambda f: f["text"] == "m4")
    token = first.token
    await first.close()
    again = await join(server, host.room_id, token=token)
    refused = await again.request("chat", text="one more")
    assert refused["code"] == "rate_limited"
    await again.close()


async def test_a_drawn_lottery_snapshot_carries_counts_and_winners_not_entrants(
        server: LiveServer, http: httpx.AsyncClient) -> None:
    host = await create_room(http)
    lottery = await host.call("POST", "/lotteries", {"prize": "Bike", "winners": 3,
                                                     "duration_s": 600}, expect=201)
    lid = lottery["lottery_id"]
    async with viewers(server, host.room_id, 500) as crowd:
        entries = await asyncio.gather(*(c.request("enter_lottery", lottery_id=lid)
                                         for c in crowd))
        assert all(e["type"] == "lottery_entered" for e in entries)
        drawn = await host.call("POST", f"/lotteries/{lid}/draw", expect=200)
        entrants = {c.viewer_id for c in crowd}
    winners = drawn["result"]["winners"]
    assert len(winners) == 3 and set(winners) <= entrants
    assert set(drawn["result"]["entrants"]) == entrants  # the host's answer has them all
    late = await join(server, host.room_id)
    snapshot = await late.next_event("snapshot")
    raw = orjson.dumps(snapshot).decode()
    await late.close()
    (lot,) = snapshot["lotteries"]
    assert lot["state"] == "drawn" and lot["entrants"] == 500
    assert lot["result"]["winners"] == winners
    assert lot["result"]["entrants_digest"] == drawn["result"]["entrants_digest"]
    assert "entrants" not in lot["result"]
    assert sum(vid in raw for vid in entrants) == 3  # the winners' ids, no one else's
    assert len(raw) < 4096
    # The room state over HTTP is the snapshot's; the full list stays with the host
    # and with the one lottery's public record that verifiers fetch.
    state = await http.get(f"/api/rooms/{host.room_id}")
    assert "entrants" not in state.json()["lotteries"][0]["result"]
    listed = await host.call("GET", f"/lotteries/{lid}/entrants", expect=200)
    assert set(listed["entrants"]) == entrants
    published = await host.call("GET", f"/lotteries/{lid}", expect=200)
    assert set(published["result"]["entrants"]) == entrants
