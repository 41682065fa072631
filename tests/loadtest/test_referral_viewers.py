"""Referral invites from the load generator's real `Crowd` and `Viewer` against a
real server on loopback: the inviter connects from 127.0.0.2 and each invitee
from its own 127.0.0.x, which the server sees (a guest invitee on its
inviter's address is refused as a self-invite, on another it is accepted);
the inviter's own link is refused self_invite, a second acceptance of the same
link answered invite_accepted, and the tree holds what the viewers were told.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from loadtest.crowd import Crowd
from loadtest.messages import WorkerPlan
from loadtest.referrals import INVITER_SOURCE
from loadtest.scenario import load_scenario_file, resolve
from loadtest.viewer import Viewer
from tests.support import Host, LiveServer, create_room, eventually

INDICES = [0, 1, 2, 3]  # position 3 invites (inviter_share 0.25); 0, 1 and 2 are invited


@pytest.fixture
async def crowd(server: LiveServer, http: httpx.AsyncClient) -> AsyncIterator[
        tuple[Crowd, Host]]:
    host = await create_room(http)
    await host.call("PUT", "/referrals", {"reward": {"kind": "points", "points": 50},
                                          "max_rewards_per_inviter": 2}, expect=200)
    base = load_scenario_file(resolve("flash_sale"))
    scenario = dataclasses.replace(
        base, sale=dataclasses.replace(base.sale, buyer_share=0.0),
        coupon=dataclasses.replace(base.coupon, enabled=False),
        lottery=dataclasses.replace(base.lottery, enabled=False),
        referral=dataclasses.replace(base.referral, enabled=True, inviter_share=0.25,
                                     invitee_share=1.0, retry_share=1.0, duplicate_share=0.0,
                                     self_share=1.0, accept_within_s=0.0))
    plan = WorkerPlan(worker_id=0, host="127.0.0.1", port=server.port, room_id=host.room_id,
                      indices=list(INDICES), sampled=set(), scenario=scenario,
                      abandon="release")
    sent: list[Any] = []
    c = Crowd(plan, sent.append)
    try:
        yield c, host
    finally:
        c.finishing = True
        for v in c.viewers.values():
            v.leave()
        for task in list(c.tasks):
            task.cancel()
        await asyncio.gather(*c.tasks, return_exceptions=True)


def _local_address(v: Viewer) -> str:
    assert v.link is not None and v.link.transport is not None
    return str(v.link.transport.get_extra_info("sockname")[0])


async def test_invitees_connect_from_their_own_loopback_address(
        crowd: tuple[Crowd, Host]) -> None:
    c, host = crowd
    ref = c.referrals
    assert ref.inviters == [3] and ref.invitees == {0, 1, 2}
    await asyncio.gather(*(c._join_one(v) for v in c.viewers.values()))
    assert c.result.join_failures == []
    assert _local_address(c.viewers[3]) == INVITER_SOURCE
    assert [_local_address(c.viewers[i]) for i in (0, 1, 2)] == \
        ["127.0.0.3", "127.0.0.4", "127.0.0.5"]
    ref.start()

    async def all_answered() -> bool:
        return all(ref.answered[i].is_set() for i in (0, 1, 2))
    await eventually(all_answered, timeout=30)
    inviter = c.viewers[3].rec.viewer_id
    told = {(a.viewer_id, a.kind): (a.inviter_id, a.outcome, a.told_inviter)
            for a in c.result.referral_answers}
    assert told[(inviter, "invite")][1] == "invite"
    assert told[(inviter, "self")] == (inviter, "self_invite", "")
    for i in (0, 1, 2):
        vid = c.viewers[i].rec.viewer_id
        assert told[(vid, "accept")] == (inviter, "invite_accepted", "lt3")
        assert told[(vid, "retry")] == (inviter, "invite_accepted", "lt3")
    tree = await host.call("GET", "/referrals", expect=200)
    (node,) = tree["inviters"]
    assert node["viewer_id"] == inviter
    assert sorted(i["viewer_id"] for i in node["invitees"]) == \
        sorted(c.viewers[i].rec.viewer_id for i in (0, 1, 2))


async def test_a_guest_on_the_inviters_address_is_a_self_invite(
        crowd: tuple[Crowd, Host]) -> None:
    """What the spread addresses are for: the same link, accepted by a guest from
    the inviter's address, is refused; from another loopback address, accepted."""
    c, _ = crowd
    inviter, same, other = c.viewers[3], c.viewers[0], c.viewers[1]
    same.connect_from(INVITER_SOURCE)
    other.connect_from("127.0.0.77")
    for v in (inviter, same, other):
        await c._join_one(v)
    assert _local_address(same) == INVITER_SOURCE and _local_address(other) == "127.0.0.77"
    link = await inviter.request("invite", {})
    assert link["type"] == "invite", link
    refused = await same.request("accept_invite", {"invite": link["invite"]})
    assert refused.get("code") == "self_invite", refused
    accepted = await other.request("accept_invite", {"invite": link["invite"]})
    assert accepted["type"] == "invite_accepted", accepted


def test_a_viewer_never_connects_from_outside_loopback(crowd: tuple[Crowd, Host]) -> None:
    c, _ = crowd
    v = c.viewers[0]
    for address in ("10.1.2.3", "::1", "8.8.8.8"):
        with pytest.raises(ValueError, match="source address"):
            v.connect_from(address)
    assert v.source == "127.0.0.3"  # unchanged
