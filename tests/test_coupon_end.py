"""The host ends a coupon drop early (`POST /coupons/{id}/end`, server/features/
coupons.py): from then on nobody claims it and a coupon claimed from it no longer
applies at checkout; every viewer hears `coupon_ended`; the order store keeps it
ended, so a rebuild of Redis does not bring it back. On SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import httpx

from server.core.domain import now_ms
from tests.support import BOTH_STORES, LiveServer, create_room, join
from tests.test_social import rebuilt

pytestmark = BOTH_STORES


def code(answer: dict[str, Any]) -> str:
    return str(answer.get("code") if answer["type"] == "error" else answer["type"])


async def test_an_ended_drop_is_neither_claimed_nor_used_and_stays_ended(
        server: LiveServer, http: httpx.AsyncClient, redis_url: str) -> None:
    host = await create_room(http)
    pid = (await host.product(stock=10, price=2000))["product_id"]
    await host.sale(pid, units=5, limit=5, price=2000)
    drop = await host.call("POST", "/coupons", {"kind": "amount", "value": 500, "count": 5,
                                                "expires_in_s": 3600}, expect=201)
    cid = drop["coupon_id"]
    claimer, late, watcher = [await join(server, host.room_id) for _ in range(3)]
    assert code(await claimer.request("claim_coupon", coupon_id=cid)) == "coupon_claimed"

    before = now_ms()
    ended = await host.call("POST", f"/coupons/{cid}/end", expect=200)
    assert before <= ended["expires_at"] <= now_ms() < drop["expires_at"]
    assert {k: v for k, v in ended.items() if k != "expires_at"} == \
        {k: v for k, v in drop.items() if k not in ("expires_at", "remaining")} | \
        {"remaining": 4}
    event = await watcher.next_event("coupon_ended")
    assert event["coupon"] == ended

    # Nobody claims it now, and the claimed coupon does not apply; buying without it does.
    assert code(await late.request("claim_coupon", coupon_id=cid)) == "coupon_expired"
    hold = await claimer.request("buy", product_id=pid)
    refused = await claimer.request("checkout", hold_id=hold["hold"]["id"], coupon_id=cid)
    assert code(refused) == "coupon_expired", refused
    order = await claimer.request("checkout", hold_id=hold["hold"]["id"])
    assert order["type"] == "order_placed" and order["order"]["discount"] == 0, order

    # Again: nothing changes (the earlier end stands).
    again = await host.call("POST", f"/coupons/{cid}/end", expect=200)
    assert again["expires_at"] == ended["expires_at"]

    # Redis loses everything: the drop comes back from the store, still ended.
    await rebuilt(http, redis_url, host.room_id)
    fresh = await join(server, host.room_id)
    snapshot = await fresh.next_event("snapshot")
    [restored] = [c for c in snapshot["coupons"] if c["coupon_id"] == cid] or [None]
    assert restored is None or restored["expires_at"] == ended["expires_at"], restored
    assert code(await fresh.request("claim_coupon", coupon_id=cid)) == "coupon_expired"
    for v in (claimer, late, watcher, fresh):
        await v.close()


async def test_ending_needs_the_key_a_drop_of_the_room_and_a_live_show(
        server: LiveServer, http: httpx.AsyncClient) -> None:
    host = await create_room(http)
    other = await create_room(http)
    drop = await host.call("POST", "/coupons", {"kind": "percent", "value": 10,
                                                "count": 2}, expect=201)
    cid = drop["coupon_id"]
    r = await http.post(f"/api/rooms/{host.room_id}/coupons/{cid}/end",
                        headers={"X-Host-Key": "wrong"})
    assert r.status_code in (401, 403), r.text
    missing = await host.call("POST", "/coupons/c_nosuchdrop/end", expect=404)
    assert missing["error"]["code"] == "coupon_not_found"
    # Another room's drop is not this room's to end.
    foreign = await other.call("POST", f"/coupons/{cid}/end", expect=404)
    assert foreign["error"]["code"] == "coupon_not_found"
    # The drop is untouched by those: still claimable.
    viewer = await join(server, host.room_id)
    assert code(await viewer.request("claim_coupon", coupon_id=cid)) == "coupon_claimed"
    await host.call("POST", "/end", expect=200)
    over = await host.call("POST", f"/coupons/{cid}/end", expect=409)
    assert over["error"]["code"] == "show_ended"
    await viewer.close()
