"""Referral invites against a real server, redis-server and SQLite store: a
signed link, accepted once (the first inviter counts), never by the inviter nor
by a guest on the inviter's address, a forged or foreign link refused; the
invitee's first order pays the inviter at most K rewards, exactly K under a
concurrent burst, retries and later orders paying nothing more; a coupon reward
usable by the inviter alone; the tree and the counts surviving Redis losing its
data."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import (
    Host,
    LiveServer,
    StoreLock,
    ViewerClient,
    create_room,
    eventually,
    join,
    pay,
    server_with,
)
from tests.test_identities import SHOP_KEY, shop_token
from tests.test_social import rebuilt


@pytest.fixture
async def ref_server(redis_url: str, data_dir: Path) -> AsyncIterator[tuple[LiveServer,
                                                                            httpx.AsyncClient]]:
    async with server_with(redis_url, data_dir,
                           auth={"shop_key": SHOP_KEY, "shop_token_max_lifetime_s": 3600},
                           fans={"cap_per_minute": 1000}) as pair:
        yield pair


async def customer(server: LiveServer, room_id: str, sub: str) -> ViewerClient:
    """A shop-signed viewer (all test clients share 127.0.0.1: guests there would be
    one network address, which the self-invite rule refuses)."""
    return await join(server, room_id, token=shop_token(sub, name=f"Customer {sub}"))


async def invite_of(v: ViewerClient) -> str:
    answer = await v.request("invite")
    assert answer["type"] == "invite", answer
    assert answer["path"] == f"/r/{v.welcome['room_id']}?invite={answer['invite']}"
    return str(answer["invite"])



async def tree_when(host: Host, check: Any) -> dict[str, Any]:
    async def ready() -> dict[str, Any] | None:
        tree: dict[str, Any] = await host.call("GET", "/referrals", expect=200)
        return tree if check(tree) else None
    tree: dict[str, Any] = await eventually(ready)
    return tree


async def test_an_invite_is_accepted_once_and_never_by_oneself(
        ref_server: tuple[LiveServer, httpx.AsyncClient]) -> None:
    server, http = ref_server
    host = await create_room(http)
    other_room = await create_room(http)
    ada = await customer(server, host.room_id, "ada")
    bob = await customer(server, host.room_id, "bob")
    cy = await customer(server, host.room_id, "cy")
    link = await invite_of(ada)
    assert await invite_of(ada) == link  # the same link each time
    # The inviter cannot accept their own link; neither can a guest on their address.
    assert (await ada.request("accept_invite", invite=link))["code"] == "self_invite"
    guest_a, guest_b = await join(server, host.room_id), await join(server, host.room_id)
    guest_link = await invite_of(guest_a)
    assert (await guest_b.request("accept_invite", invite=guest_link))["code"] == "self_invite"
    # A forged, altered or foreign link is refused.
    payload, _, signature = link.partition(".")
    forged = payload[:-2] + ("AA" if payload[-2:] != "AA" else "BB") + "." + signature
    assert (await bob.request("accept_invite", invite=forged))["code"] == "invite_invalid"
    foreign = await customer(server, other_room.room_id, "dee")
    foreign_link = await invite_of(foreign)
    assert (await bob.request("accept_invite", invite=foreign_link))["code"] == \
        "invite_invalid"
    # A link cut short or mangled in transit is not ours either.
    for mangled in ("not a token", link.partition(".")[0], link + "é", ""):
        bad = await bob.request("accept_invite", invite=mangled)
        assert bad["code"] == ("bad_request" if not mangled else "invite_invalid"), bad
    too_long = await bob.request("accept_invite", invite="x" * 600)
    assert too_long["code"] == "bad_request" and "invite" in too_long["message"]
    # Bob accepts Ada's link (again: the same answer); then Cy's link counts no more.
    accepted = await bob.request("accept_invite", invite=link)
    assert accepted == {"type": "invite_accepted", "re": accepted["re"],
                        "inviter": "Customer ada"}
    assert (await bob.request("accept_invite", invite=link))["inviter"] == "Customer ada"
    cy_link = await invite_of(cy)
    assert (await bob.request("accept_invite", invite=cy_link))["code"] == "already_invited"
    # A guest on another address than the guest who shared: a signed viewer here.
    assert (await cy.request("accept_invite", invite=guest_link))["type"] == "invite_accepted"
    tree = await host.call("GET", "/referrals", expect=200)
    assert tree["program"] is None
    by_inviter = {n["viewer_id"]: n for n in tree["inviters"]}
    assert by_inviter["shop_ada"]["invites_sent"] == 2
    assert by_inviter["shop_ada"]["joins"] == 1
    assert [i["viewer_id"] for i in by_inviter["shop_ada"]["invitees"]] == ["shop_bob"]
    assert by_inviter["shop_cy"]["joins"] == 0
    assert tree["totals"]["joins"] == 2
    # The share that brought Bob earned Ada points (once, whatever the retries).
    async def ada_points() -> int:
        return int((await ada.request("fan_status"))["points"])
    await eventually(lambda: _equals(ada_points(), 5))
    for v in (ada, bob, cy, guest_a, guest_b, foreign):
        await v.close()


async def _equals(value: Any, expected: Any) -> bool:
    return bool(await value == expected)


async def test_first_orders_pay_at_most_k_rewards_exactly_under_a_burst(
        ref_server: tuple[LiveServer, httpx.AsyncClient], redis_url: str) -> None:
    server, http = ref_server
    host = await create_room(http)
    program = await host.call("PUT", "/referrals", {
        "reward": {"kind": "points", "points": 50}, "max_rewards_per_inviter": 5}, expect=200)
    assert program == {"reward": {"kind": "points", "points": 50},
                       "max_rewards_per_inviter": 5}
    product = await host.product(stock=100)
    await host.sale(product["product_id"], units=100, limit=2)
    ada = await customer(server, host.room_id, "ada")
    link = await invite_of(ada)
    invitees = await asyncio.gather(*(customer(server, host.room_id, f"f{i}")
                                      for i in range(20)))
    answers = await asyncio.gather(*(v.request("accept_invite", invite=link)
                                     for v in invitees))
    assert all(a["type"] == "invite_accepted" for a in answers)
    rewards: list[dict[str, Any]] = []

    async def watch() -> None:
        while True:
            rewards.append(await ada.next_event("referral_reward"))
    watcher = asyncio.create_task(watch())
    # Twenty first orders at once: five rewards paid, fifteen capped.
    await asyncio.gather(*(pay(v, product["product_id"]) for v in invitees))
    tree = await tree_when(host, lambda t: t["totals"]["first_orders"] == 20)
    node = tree["inviters"][0]
    assert (node["joins"], node["first_orders"], node["rewards_paid"]) == (20, 20, 5)
    states = sorted(i["reward"] for i in node["invitees"])
    assert states == ["capped"] * 15 + ["paid"] * 5
    # A second order of an invitee pays nothing more.
    await pay(invitees[0], product["product_id"])
    await eventually(lambda: _equals(_points(ada), 5 * 50 + 20 * 5))
    await eventually(lambda: _equals(_count(rewards), 5))
    assert all(r["state"] == "paid" and r["inviter"] == "shop_ada" and
               r["reward"] == {"kind": "points", "points": 50} for r in rewards)
    # Redis loses everything: the tree is the store's, and the count of rewards paid
    # comes back with it (no sixth reward).
    await rebuilt(http, redis_url, host.room_id)
    late = await customer(server, host.room_id, "late")
    assert (await late.request("accept_invite", invite=link))["type"] == "invite_accepted"
    await pay(late, product["product_id"])
    tree = await tree_when(host, lambda t: t["totals"]["first_orders"] == 21)
    assert tree["totals"]["rewards_paid"] == 5
    watcher.cancel()
    for v in (ada, late, *invitees):
        await v.close()


async def _points(v: ViewerClient) -> int:
    return int((await v.request("fan_status"))["points"])


async def _count(items: list[Any]) -> int:
    return len(items)


async def test_a_coupon_reward_is_the_inviters_alone(
        ref_server: tuple[LiveServer, httpx.AsyncClient]) -> None:
    server, http = ref_server
    host = await create_room(http)
    bad = await host.call("PUT", "/referrals", {"reward": {"kind": "coupon", "coupon": {
        "kind": "amount", "value": 300, "count": 5}}}, expect=400)
    assert "count" in bad["error"]["message"]
    await host.call("PUT", "/referrals", {"reward": {"kind": "coupon", "coupon": {
        "title": "Thanks for sharing", "kind": "amount", "value": 300, "currency": "USD",
        "expires_in_s": 3600}}, "max_rewards_per_inviter": 1}, expect=200)
    product = await host.product(stock=10, price=2000)
    await host.sale(product["product_id"], units=10, limit=3, price=2000)
    ada = await customer(server, host.room_id, "ada")
    bob = await customer(server, host.room_id, "bob")
    eve = await customer(server, host.room_id, "eve")
    await bob.request("accept_invite", invite=await invite_of(ada))
    await pay(bob, product["product_id"])
    reward = await ada.next_event("referral_reward")
    assert (reward["state"], reward["reward"]["kind"]) == ("paid", "coupon")
    coupon = reward["reward"]["coupon"]
    assert (coupon["kind"], coupon["value"], coupon["count"]) == ("amount", 300, 1)
    # Nobody else can claim it; it is not the room's news.
    refused = await eve.request("claim_coupon", coupon_id=coupon["coupon_id"])
    assert refused["code"] == "coupon_not_found"
    snap = await (await join(server, host.room_id)).next_event("snapshot")
    assert all(c["coupon_id"] != coupon["coupon_id"] for c in snap["coupons"])
    assert (await eve.request("claim_coupon", coupon_id=coupon["coupon_id"]))["code"] == \
        "coupon_not_found"
    # Eve cannot pay with it; Ada can, once.
    hold = await eve.request("buy", product_id=product["product_id"])
    stolen = await eve.request("checkout", hold_id=hold["hold"]["id"],
                               coupon_id=coupon["coupon_id"])
    assert stolen["code"] == "coupon_not_claimed", stolen
    placed = await pay(ada, product["product_id"], coupon["coupon_id"])
    assert (placed["discount"], placed["total"]) == (300, 1700)
    hold = await ada.request("buy", product_id=product["product_id"])
    twice = await ada.request("checkout", hold_id=hold["hold"]["id"],
                              coupon_id=coupon["coupon_id"])
    assert twice["code"] == "coupon_used"
    audit = await host.audit()
    assert audit["ok"], [c for c in audit["checks"] if not c["ok"]]
    for v in (ada, bob, eve):
        await v.close()


async def test_the_program_is_validated(ref_server: tuple[LiveServer,
                                                          httpx.AsyncClient]) -> None:
    _, http = ref_server
    host = await create_room(http)
    for body, field in [({}, "reward"), ({"reward": {"kind": "cash"}}, "kind"),
                        ({"reward": {"kind": "points", "points": 0}}, "points"),
                        ({"reward": {"kind": "points", "points": 5},
                          "max_rewards_per_inviter": 0}, "max_rewards_per_inviter"),
                        ({"reward": {"kind": "points", "points": 5}, "extra": 1}, "extra")]:
        answer = await host.call("PUT", "/referrals", body, expect=400)
        assert field in answer["error"]["message"], (body, answer)
    r = await http.put(f"/api/rooms/{host.room_id}/referrals",
                       json={"reward": {"kind": "points", "points": 5}})
    assert r.status_code == 401


async def test_cancelling_the_first_order_reverses_the_reward(
        ref_server: tuple[LiveServer, httpx.AsyncClient]) -> None:
    server, http = ref_server
    host = await create_room(http)
    await host.call("PUT", "/referrals", {"reward": {"kind": "points", "points": 50},
                                          "max_rewards_per_inviter": 1}, expect=200)
    product = await host.product(stock=10)
    await host.sale(product["product_id"], units=10, limit=3)
    ada = await customer(server, host.room_id, "ada")
    bob = await customer(server, host.room_id, "bob")
    cy = await customer(server, host.room_id, "cy")
    link = await invite_of(ada)
    for v in (bob, cy):
        assert (await v.request("accept_invite", invite=link))["type"] == "invite_accepted"
    first = await pay(bob, product["product_id"])
    await eventually(lambda: _equals(_points(ada), 2 * 5 + 50))
    paid = await ada.next_event("referral_reward")
    assert paid["state"] == "paid"
    # K = 1: Cy's first order is capped while Bob's reward stands.
    await pay(cy, product["product_id"])
    await tree_when(host, lambda t: t["totals"]["first_orders"] == 2)
    done = await host.call("POST", f"/orders/{first['order_id']}/cancel",
                           {"reason": "changed mind"}, expect=200)
    assert done["order"]["status"] == "cancelled"
    reversed_ = await ada.next_event("referral_reward", where=lambda e: e["state"] ==
                                     "reversed")
    assert reversed_["reward"] == {"kind": "points", "points": 50}
    assert await _points(ada) == 2 * 5
    tree = await tree_when(host, lambda t: t["totals"]["rewards_reversed"] == 1)
    assert tree["totals"]["rewards_paid"] == 0
    states = {i["viewer_id"]: i["reward"] for i in tree["inviters"][0]["invitees"]}
    assert states == {"shop_bob": "reversed", "shop_cy": "capped"}
    # Bob's later orders pay nothing; the freed place goes to the next invitee's first.
    await pay(bob, product["product_id"])
    dee = await customer(server, host.room_id, "dee")
    await dee.request("accept_invite", invite=link)
    await pay(dee, product["product_id"])
    tree = await tree_when(host, lambda t: t["totals"]["first_orders"] == 3)
    states = {i["viewer_id"]: i["reward"] for i in tree["inviters"][0]["invitees"]}
    assert states == {"shop_bob": "reversed", "shop_cy": "capped", "shop_dee": "paid"}
    # Cancelling again takes nothing back twice.
    await host.call("POST", f"/orders/{first['order_id']}/cancel", {}, expect=200)
    await eventually(lambda: _equals(_points(ada), 3 * 5 + 50))
    for v in (ada, bob, cy, dee):
        await v.close()


async def test_a_reversed_coupon_reward_cannot_be_spent(
        ref_server: tuple[LiveServer, httpx.AsyncClient]) -> None:
    server, http = ref_server
    host = await create_room(http)
    await host.call("PUT", "/referrals", {"reward": {"kind": "coupon", "coupon": {
        "kind": "percent", "value": 10, "currency": "USD"}}}, expect=200)
    product = await host.product(stock=10, price=2000)
    await host.sale(product["product_id"], units=10, limit=3, price=2000)
    ada = await customer(server, host.room_id, "ada")
    bob = await customer(server, host.room_id, "bob")
    await bob.request("accept_invite", invite=await invite_of(ada))
    order = await pay(bob, product["product_id"])
    coupon = (await ada.next_event("referral_reward"))["reward"]["coupon"]
    # Ada's reward is hers, not a drop of the host's: ending drops does not reach it.
    refused = await host.call("POST", f"/coupons/{coupon['coupon_id']}/end", expect=404)
    assert refused["error"]["code"] == "coupon_not_found"
    await host.call("POST", f"/orders/{order['order_id']}/cancel", {}, expect=200)
    await ada.next_event("referral_reward", where=lambda e: e["state"] == "reversed")
    hold = await ada.request("buy", product_id=product["product_id"])
    refused = await ada.request("checkout", hold_id=hold["hold"]["id"],
                                coupon_id=coupon["coupon_id"])
    assert refused["code"] == "coupon_expired", refused
    audit = await host.audit()
    assert audit["ok"], [c for c in audit["checks"] if not c["ok"]]
    for v in (ada, bob):
        await v.close()


async def test_a_customer_who_bought_before_the_link_pays_the_inviter_nothing(
        ref_server: tuple[LiveServer, httpx.AsyncClient]) -> None:
    server, http = ref_server
    host = await create_room(http)
    await host.call("PUT", "/referrals", {"reward": {"kind": "points", "points": 50}},
                    expect=200)
    product = await host.product(stock=5)
    await host.sale(product["product_id"], units=5, limit=3)
    ada = await customer(server, host.room_id, "ada")
    bob = await customer(server, host.room_id, "bob")
    earlier = await pay(bob, product["product_id"])
    assert (await bob.request("accept_invite", invite=await invite_of(ada)))["type"] == \
        "invite_accepted"
    await pay(bob, product["product_id"])
    tree = await tree_when(host, lambda t: t["totals"]["first_orders"] == 1)
    [invitee] = tree["inviters"][0]["invitees"]
    assert (invitee["order_id"], invitee["reward"]) == (earlier["order_id"], "none")
    assert tree["totals"]["rewards_paid"] == 0
    for v in (ada, bob):
        await v.close()


async def test_a_stalled_store_answers_store_unavailable_and_loses_nothing(
        redis_url: str, data_dir: Path) -> None:
    """The store locked by another process past its timeout: a link is still given
    (its count is written once the store answers), an accept is refused
    store_unavailable (not an internal error); once the store answers, the same
    accept goes through and the referral and the count are recorded once."""
    async with server_with(redis_url, data_dir, store={"busy_timeout_ms": 300},
                           auth={"shop_key": SHOP_KEY, "shop_token_max_lifetime_s": 3600}
                           ) as (server, http):
        host = await create_room(http)
        ada = await customer(server, host.room_id, "ada")
        bob = await customer(server, host.room_id, "bob")
        link = await invite_of(ada)
        async with StoreLock(server.settings.store_path):
            given = await ada.request("invite")
            assert given["invite"] == link
            # The host's tree writes the pending count first: 503, not a 500.
            r = await http.get(f"/api/rooms/{host.room_id}/referrals",
                               headers={"X-Host-Key": host.key})
            assert (r.status_code, r.json()["error"]["code"]) == (503, "store_unavailable")
            refused = await bob.request("accept_invite", invite=link)
            assert refused["code"] == "store_unavailable", refused
        assert (await bob.request("accept_invite", invite=link))["type"] == "invite_accepted"
        tree = await tree_when(host, lambda t: t["totals"]["joins"] == 1)
        assert tree["inviters"][0]["invitees"][0]["viewer_id"] == "shop_bob"
        assert tree["inviters"][0]["invites_sent"] == 2
        for v in (ada, bob):
            await v.close()
