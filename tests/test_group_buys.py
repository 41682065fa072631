"""Group buys against a real server and redis-server: 300 viewers racing to
start and fill groups of 3 in a deal of 30 units complete exactly 10 groups,
no viewer is in two groups, a full group's holds are paid at the group price;
a group that does not fill in time ends with every hold released and its units
back; retries are safe; the audit proves it."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import httpx

from tests.support import Host, LiveServer, ViewerClient, create_room, eventually, join


def code(answer: dict[str, Any]) -> str:
    return str(answer.get("code") if answer["type"] == "error" else answer["type"])


async def open_deal(host: Host, stock: int = 100, **terms: Any) -> dict[str, Any]:
    product = await host.product(stock=stock, price=2000)
    body = {"product_id": product["product_id"], "group_size": 3, "group_price": 1200,
            "fill_s": 600, "units": 30, **terms}
    deal: dict[str, Any] = await host.call("POST", "/group-deals", body, expect=201)
    return deal


async def test_300_viewers_racing_fill_exactly_ten_groups_of_three(
        server: LiveServer, http: httpx.AsyncClient) -> None:
    host = await create_room(http)
    deal = await open_deal(host)
    did = deal["deal_id"]
    viewers = await asyncio.gather(*(join(server, host.room_id) for _ in range(300)))
    rng = random.Random(3)
    outcome: dict[str, dict[str, Any]] = {}

    async def shop(v: ViewerClient, i: int) -> None:
        # Join an open group if one is listed, else start one; a few tries each.
        for _ in range(6):
            listed = await host.call("GET", f"/group-deals/{did}", expect=200)
            groups = [g for g in listed["groups"] if g["seats_left"] > 0]
            if groups and rng.random() < 0.8:
                g = rng.choice(groups)
                answer = await v.request("join_group", group_id=g["group_id"])
            else:
                answer = await v.request("start_group", deal_id=did)
            if answer["type"] == "group":
                outcome[v.viewer_id] = answer
                return
            if answer["code"] == "deal_full" and not groups:
                return
    await asyncio.gather(*(shop(v, i) for i, v in enumerate(viewers)))
    # The open groups fill by the remaining viewers' joins; wait until none is open.
    async def settled() -> dict[str, Any] | None:
        listed: dict[str, Any] = await host.call("GET", f"/group-deals/{did}", expect=200)
        return listed if not listed["groups"] else None
    leftover = [v for v in viewers if v.viewer_id not in outcome]
    for v in leftover:
        listed = await host.call("GET", f"/group-deals/{did}", expect=200)
        open_ones = [g for g in listed["groups"] if g["seats_left"] > 0]
        if not open_ones:
            break
        answer = await v.request("join_group", group_id=open_ones[0]["group_id"])
        if answer["type"] == "group":
            outcome[v.viewer_id] = answer
    final = await eventually(settled)
    assert (final["held"], final["sold"], final["left"]) == (30, 0, 0)
    # Exactly 30 members in 10 full groups of 3; nobody in two.
    by_group: dict[str, list[str]] = {}
    for viewer_id, answer in outcome.items():
        by_group.setdefault(answer["group_id"], []).append(viewer_id)
    assert len(outcome) == 30 and len(by_group) == 10
    assert all(len(m) == 3 for m in by_group.values())
    # A member of a full group pays at the group price.
    member = next(v for v in viewers if v.viewer_id in outcome)
    group = await host.call("GET", f"/groups/{outcome[member.viewer_id]['group_id']}",
                            expect=200)
    assert (group["state"], group["members"], group["seats_left"]) == ("complete", 3, 0)
    # The card's avatars: every member's nickname, in the order they came.
    members = [v for v in viewers if outcome.get(v.viewer_id, {}).get("group_id")
               == group["group_id"]]
    assert sorted(group["member_names"]) == sorted(v.welcome["viewer"]["nickname"]
                                                   for v in members)
    hold_id = outcome[member.viewer_id]["hold"]["id"]
    # Every member learned when the group filled: its holds and when they expire.
    filled = await member.next_event("group_update", where=lambda f: f["group"]["group_id"]
                                     == group["group_id"] and f["group"]["state"] == "complete")
    assert filled["holds"][member.viewer_id] == hold_id and filled["expires_at"] > 0
    late = await join(server, host.room_id)
    snap = await late.next_event("snapshot")
    assert [d["deal_id"] for d in snap["group_deals"]] == [did]
    assert snap["limits"]["hold_seconds"] == 180
    await late.close()
    placed = await member.request("checkout", hold_id=hold_id)
    assert placed["type"] == "order_placed", placed
    assert (placed["order"]["total"], placed["order"]["sale_id"]) == (1200, did)
    again = await member.request("start_group", deal_id=did)
    assert code(again) == "already_in_group"
    late = next(v for v in viewers if v.viewer_id not in outcome)
    assert code(await late.request("start_group", deal_id=did)) == "deal_full"
    audit = await host.audit()
    assert audit["ok"], [c for c in audit["checks"] if not c["ok"]]
    await asyncio.gather(*(v.close() for v in viewers))


async def test_a_group_not_full_in_time_releases_every_hold(
        server: LiveServer, http: httpx.AsyncClient) -> None:
    host = await create_room(http)
    deal = await open_deal(host, stock=10, fill_s=10, units=6)
    did = deal["deal_id"]
    a, b, c = [await join(server, host.room_id) for _ in range(3)]
    started = await a.request("start_group", deal_id=did, request_id="s1")
    assert started["type"] == "group" and started["hold"]["state"] == "pending"
    # A retry of the same request is the same group, not a second one.
    retried = await a.request("start_group", deal_id=did, request_id="s1")
    assert retried == started
    gid = started["group_id"]
    joined = await b.request("join_group", group_id=gid)
    assert (joined["members"], joined["state"]) == (2, "open")
    # Not full: neither hold can be paid yet.
    assert code(await a.request("checkout", hold_id=started["hold"]["id"])) == "group_not_full"
    card = await host.call("GET", f"/products/{deal['product_id']}", expect=200)
    assert (card["stock"]["left"], card["stock"]["held"]) == (7, 3)
    expired = await c.next_event("group_update", timeout=60,
                                 where=lambda f: f["group"]["state"] == "expired")
    assert set(expired["holds"]) == {a.viewer_id, b.viewer_id}
    card = await host.call("GET", f"/products/{deal['product_id']}", expect=200)
    assert (card["stock"]["left"], card["stock"]["held"]) == (10, 0)
    assert code(await a.request("checkout", hold_id=started["hold"]["id"])) == "hold_expired"
    assert code(await c.request("join_group", group_id=gid)) == "group_expired"
    # Its members may start again.
    assert code(await a.request("start_group", deal_id=did)) == "group"
    # Closing the deal ends the open groups now.
    closed = await host.call("POST", f"/group-deals/{did}/close", expect=200)
    assert (closed["state"], closed["held"], closed["groups"]) == ("closed", 0, [])
    assert code(await b.request("start_group", deal_id=did)) == "deal_closed"
    # A full group's holds not yet paid are voided when the show ends.
    second = await open_deal(host, stock=3, units=3, group_size=2)
    g2 = await a.request("start_group", deal_id=second["deal_id"])
    full = await b.request("join_group", group_id=g2["group_id"])
    assert full["state"] == "complete"
    await host.call("POST", "/end", expect=200)
    voided = await c.next_event("holds_voided", where=lambda f: f["sale_id"]
                                == second["deal_id"])
    assert voided["units"] == 2 and voided["reason"] == "show_ended"
    card = await host.call("GET", f"/products/{second['product_id']}", expect=200)
    assert (card["stock"]["left"], card["stock"]["held"]) == (3, 0)
    assert code(await b.request("checkout", hold_id=full["hold"]["id"])) in (
        "sale_stopped", "show_ended")
    audit = await host.audit()
    assert audit["ok"], [ch for ch in audit["checks"] if not ch["ok"]]
    await asyncio.gather(a.close(), b.close(), c.close())


async def test_bad_group_deal_requests_say_what_was_wrong(
        server: LiveServer, http: httpx.AsyncClient) -> None:
    host = await create_room(http)
    pid = (await host.product(stock=5))["product_id"]
    for body, field in (({"product_id": pid, "group_size": 1, "group_price": 1, "units": 3},
                         "group_size"),
                        ({"product_id": pid, "group_size": 3, "group_price": 1, "units": 2},
                         "units"),
                        ({"product_id": pid, "group_size": 3, "units": 3}, "group_price"),
                        ({"product_id": pid, "group_size": 3, "group_price": 1, "units": 3,
                          "fill_s": 1}, "fill_s")):
        error = (await host.call("POST", "/group-deals", body, expect=400))["error"]
        assert field in error["message"], (body, error)
    viewer = await join(server, host.room_id)
    assert code(await viewer.request("start_group", deal_id="gb_nothing")) == "deal_not_found"
    assert code(await viewer.request("join_group", group_id="g_nothing")) == "group_not_found"
    await viewer.close()
