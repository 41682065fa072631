"""Every method of the `OrderStore` protocol (server/state/store.py), called directly
and checked for the same answers on both stores (BOTH_STORES): the SQLite file and
a real PostgreSQL database. Whatever a feature can see of the store is here, so a
difference between the two implementations fails a test rather than a show."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any

import pytest

from server.core.domain import now_ms
from server.state.store import PLACED, Order, StoreClosed, StoreError
from tests.store_kinds import AnyStore, open_store_at
from tests.support import BOTH_STORES

pytestmark = BOTH_STORES


def order(hold: str, room: str = "r_1", qty: int = 1, buyer: str = "v1", sale: str = "s1",
          product: str = "p1", at: int = 1, coupon: str = "", total: int | None = None) -> Order:
    return Order(order_id="o_" + hold, hold_id=hold, room_id=room, product_id=product,
                 sale_id=sale, buyer_id=buyer, quantity=qty, unit_price=100,
                 subtotal=100 * qty, discount=0, total=100 * qty if total is None else total,
                 currency="USD", coupon_id=coupon, payment_ref="x", created_at=at,
                 request_id="rq_" + hold)


@pytest.fixture
async def store(tmp_path: Path, store_url: str) -> AsyncIterator[AnyStore]:
    s = await open_store_at(store_url, tmp_path, busy_timeout_ms=2000)
    await s.set_room_epoch("r_1", "e1")
    yield s
    await s.close()


async def test_rooms_and_their_lifecycle(store: AnyStore) -> None:
    await store.add_room("r_a", "A", "", "h1", 1000)
    await store.add_room("r_b", "B", "https://v", "h2", 2000)
    await store.add_room("r_c", "C", "", "h3", 3000)
    assert [r["room_id"] for r in await store.rooms()] == ["r_a", "r_b", "r_c"]
    assert await store.room("r_b") == {"room_id": "r_b", "title": "B",
                                        "stream_url": "https://v", "host_key_hash": "h2",
                                        "created_at": 2000}
    assert await store.room("r_x") is None
    await store.update_room("r_b", None, "https://w")
    await store.update_room("r_b", "B2", None)
    room = await store.room("r_b")
    assert room is not None and (room["title"], room["stream_url"]) == ("B2", "https://w")
    assert await store.room_state("r_a") == {"state": "live", "starts_at": None,
                                              "ended_at": None}
    await store.set_room_state("r_a", "scheduled", 500, None, 10)
    await store.set_room_state("r_c", "ended", None, 4000, 4000)
    assert await store.room_states() == {
        "r_a": {"state": "scheduled", "starts_at": 500, "ended_at": None},
        "r_c": {"state": "ended", "starts_at": None, "ended_at": 4000}}
    # Newest first; the ended room is left out, and a scheduled one whose start is
    # older than stale_before.
    listed = await store.public_rooms(10, None, 0)
    assert [(r["room_id"], r["state"]) for r in listed] == [("r_b", "live"),
                                                            ("r_a", "scheduled")]
    assert [r["room_id"] for r in await store.public_rooms(10, None, 600)] == ["r_b"]
    assert [r["room_id"] for r in await store.public_rooms(1, (2000, "r_b"), 0)] == ["r_a"]
    with pytest.raises(Exception) as refused:
        await store.add_room("r_a", "again", "", "h", 1)
    assert not isinstance(refused.value, StoreError)


async def test_catalogue_rows_keep_their_order_and_values(store: AnyStore) -> None:
    await store.put_product("r_1", "p2", {"product_id": "p2", "title": "Two"}, 5)
    await store.put_product("r_1", "p1", {"product_id": "p1", "title": "One"}, 3)
    await store.put_product("r_1", "p2", {"product_id": "p2", "title": "Two!"}, 7)
    assert await store.products("r_1") == [({"product_id": "p2", "title": "Two!"}, 7),
                                           ({"product_id": "p1", "title": "One"}, 3)]
    for i, at in enumerate((30, 10, 10)):
        await store.add_sale("r_1", {"sale_id": f"s{i}", "product_id": "p1", "units": 2}, at)
    await store.stop_sale("s0", 99)
    assert [(d["sale_id"], stopped) for d, stopped in await store.sales("r_1")] == \
        [("s1", None), ("s2", None), ("s0", 99)]
    await store.put_listing("r_1", "p1", True, 4, 1)
    await store.put_listing("r_1", "p1", False, 2, 2)
    assert await store.listings("r_1") == {"p1": (False, 2, 4)}
    assert await store.put_claim_word("r_1", "p1", "MUG", True, 1) is None
    assert await store.put_claim_word("r_1", "p2", "mug", False, 2) == "p1"
    assert await store.claim_words("r_1") == {"p1": ("MUG", True)}
    assert await store.put_claim_word("r_1", "p1", None, False, 3) is None
    assert await store.put_claim_word("r_1", "p2", "mug", False, 4) is None
    assert await store.claim_words("r_1") == {"p2": ("mug", False)}
    for c in ("c2", "c1"):
        await store.add_coupon_drop("r_1", {"coupon_id": c, "expires_at": 5})
    assert [d["coupon_id"] for d in await store.coupon_drops("r_1")] == ["c2", "c1"]
    # Ended early: the expiry moves to `at`, never later; another room's is not found.
    assert await store.end_coupon_drop("r_1", "c1", 3) == 3
    assert await store.end_coupon_drop("r_1", "c1", 4) == 3
    assert await store.end_coupon_drop("r_2", "c2", 1) is None
    assert await store.end_coupon_drop("r_1", "c_none", 1) is None
    assert [(d["coupon_id"], d["expires_at"]) for d in await store.coupon_drops("r_1")] == \
        [("c2", 5), ("c1", 3)]
    await store.set_room_policy("r_1", {"chat": "fans"})
    assert await store.room_policy("r_1") == {"chat": "fans"}
    assert await store.room_policy("r_2") is None
    await store.set_pinned_message("r_1", {"text": "hi"})
    assert await store.pinned_message("r_1") == {"text": "hi"}
    await store.set_pinned_message("r_1", None)
    assert await store.pinned_message("r_1") is None
    assert await store.room_channel("r_1") == "main"
    await store.set_room_channel("r_1", "shop")
    assert await store.room_channel("r_1") == "shop"


async def test_lotteries_polls_deals_questions_and_auctions(store: AnyStore) -> None:
    await store.add_lottery("r_1", {"lottery_id": "l1"}, "seed1")
    await store.add_lottery("r_1", {"lottery_id": "l2"}, "seed2")
    for viewer in ("v2", "v1", "v2"):
        await store.add_lottery_entry("r_1", "l1", viewer, 5)
    await store.add_lottery_entry("r_1", "l2", "v3", 5)
    await store.set_lottery_result("l1", {"winners": ["v1"]})
    assert await store.lotteries("r_1") == [({"lottery_id": "l1"}, "seed1",
                                             {"winners": ["v1"]}),
                                            ({"lottery_id": "l2"}, "seed2", None)]
    assert await store.lottery_entrants("r_1") == {"l1": ["v1", "v2"], "l2": ["v3"]}
    assert await store.lottery_entrants("r_1", "l2") == {"l2": ["v3"]}

    await store.add_poll("r_1", {"poll_id": "q1"})
    await store.add_poll_vote("q1", "v1", 0, 1)
    await store.add_poll_vote("q1", "v1", 1, 2)
    await store.add_poll_vote("q1", "v2", 1, 2)
    await store.close_poll("q1", 50)
    await store.close_poll("q1", 60)
    assert await store.polls("r_1") == [({"poll_id": "q1"}, 50, {"v1": 0, "v2": 1})]

    await store.add_group_deal("r_1", {"deal_id": "d1"})
    await store.close_group_deal("d1", 7)
    await store.close_group_deal("d1", 8)
    assert await store.group_deals("r_1") == [({"deal_id": "d1"}, 7)]

    await store.add_question("r_1", {"question_id": "k1", "text": "a"})
    await store.add_question("r_1", {"question_id": "k1", "text": "again"})
    await store.add_question_vote("k1", "v1")
    await store.add_question_vote("k1", "v1")
    await store.answer_question("k1", 9)
    assert await store.questions("r_1") == [({"question_id": "k1", "text": "a"}, 9, ["v1"])]

    await store.add_auction("r_1", {"auction_id": "a1"}, "salt")
    await store.add_auction_bid("a1", 2, "v2", "n2", {"seq": 2})
    await store.add_auction_bid("a1", 1, "v1", "n1", {"seq": 1})
    await store.add_auction_bid("a1", 1, "v9", "n9", {"seq": 99})
    await store.set_auction_max("a1", "v1", "n1", 500, 10)
    await store.set_auction_max("a1", "v1", "n1", 400, 11)
    await store.set_auction_max("a1", "v2", "n2", 700, 12)
    await store.set_auction_result("a1", {"winner": "v2"})
    assert await store.auctions("r_1") == [({"auction_id": "a1"}, "salt", {"winner": "v2"})]
    assert await store.auction_bids("a1") == [("v1", "n1", {"seq": 1}),
                                              ("v2", "n2", {"seq": 2})]
    assert await store.auction_maxima("a1") == [("v1", "n1", 500, 10),
                                                ("v2", "n2", 700, 12)]


async def test_orders_and_what_is_counted_of_them(store: AnyStore) -> None:
    await store.add_sale("r_1", {"sale_id": "s1", "product_id": "p1", "units": 3}, 1)
    await store.put_product("r_1", "p1", {"product_id": "p1"}, 3)
    placed = [order("h1", qty=2, at=5), order("h2", buyer="v2", at=3, coupon="c1"),
              order("h3", buyer="v2", at=4, qty=1)]
    assert await asyncio.gather(*(store.place_order(o, "e1") for o in placed)) == \
        [PLACED] * 3
    assert [o.hold_id for o in await store.orders("r_1")] == ["h2", "h3", "h1"]
    assert [o.hold_id for o in await store.orders("r_1", 1, 1)] == ["h3"]
    assert await store.order_for_hold("h1") == placed[0]
    assert await store.first_order_of("r_1", "v2") == placed[1]
    assert await store.first_order_of("r_1", "v9") is None
    assert await store.sold_by_product("r_1") == {"p1": 4}
    assert await store.sold_by_sale_and_buyer("r_1") == {"s1": {"v1": 2, "v2": 2}}
    assert await store.coupon_uses("r_1") == {"c1": {"v2": "o_h2"}}
    assert await store.oversold_sales("r_1") == {"s1": (4, 3)}
    assert await store.oversold_products("r_1") == {"p1": (4, 3)}
    assert await store.order_totals("r_1") == {"orders": 3, "units": 4, "revenue": 400,
                                               "buyers": 2, "cancelled": 0, "refunds": 0}
    await store.abort_hold("h9", "r_1", "recovery", 5)
    assert await store.aborted("r_1") == ["h9"]
    assert await store.aborted_count("r_1") == 1
    assert await store.outcome_conflicts("r_1") == 0
    assert await store.room_epoch("r_1") == "e1"
    assert await store.room_epoch("r_2") == ""


async def test_cancellations_and_refunds(store: AnyStore) -> None:
    for o in (order("h1", qty=3, total=1000), order("h2"), order("h3", qty=2)):
        assert await store.place_order(o, "e1") == PLACED
    kind, cancelled, first = await _some(store.cancel_order("r_1", "o_h2", "oops", 10, "e1"))
    assert (kind, cancelled.hold_id, first) == ("ok", "h2",
                                                {"reason": "oops", "cancelled_at": 10,
                                                 "epoch": "e1"})
    again = await _some(store.cancel_order("r_1", "o_h2", "later", 20, "e1"))
    assert again[0] == "ok" and again[2] == first
    assert await store.cancel_order("r_1", "o_nope", "x", 1, "e1") is None
    assert (await _some(store.cancel_order("r_1", "o_h3", "x", 1, "e0")))[0] == "fenced"
    assert await store.cancellations("r_1") == {"o_h2": {"reason": "oops",
                                                         "cancelled_at": 10}}

    new = await _some(store.refund_order("r_1", "o_h1", "rq1", 1, True, "dent", 30, "e1"))
    assert new[0] == "new" and new[2]["amount"] == 333 and new[2]["restock"] == 1
    same = await _some(store.refund_order("r_1", "o_h1", "rq1", 1, True, "dent", 31, "e1"))
    assert same[0] == "again" and same[2]["refund_id"] == new[2]["refund_id"]
    too = await _some(store.refund_order("r_1", "o_h1", "rq2", 5, False, "x", 32, "e1"))
    assert too[0] == "too_many" and too[2] == {"left": 2}
    rest = await _some(store.refund_order("r_1", "o_h1", "rq3", None, False, "x", 33, "e1"))
    assert rest[0] == "new" and rest[2]["amount"] == 667 and rest[2]["quantity"] == 2
    done = await _some(store.refund_order("r_1", "o_h1", "rq4", None, False, "x", 34, "e1"))
    assert done[0] == "refunded"
    assert (await _some(store.refund_order("r_1", "o_h2", "rq5", 1, True, "x", 35,
                                           "e1")))[0] == "cancelled"
    assert (await _some(store.refund_order("r_1", "o_h3", "rq6", 1, True, "x", 36,
                                           "e0")))[0] == "fenced"
    assert (await _some(store.cancel_order("r_1", "o_h1", "x", 40, "e1")))[0] == "refunded"
    assert await store.refund_order("r_1", "o_nope", "rq", 1, True, "x", 1, "e1") is None
    refunds = await store.refunds("r_1")
    assert [(r["quantity"], r["amount"], r["restock"]) for r in refunds["o_h1"]] == \
        [(1, 333, True), (2, 667, False)]
    # Counts leave out the cancelled order and the unit refunded into stock.
    assert await store.sold_by_product("r_1") == {"p1": 4}
    totals = await store.order_totals("r_1")
    assert totals == {"orders": 2, "units": 4, "revenue": 1200 - 1000, "buyers": 1,
                      "cancelled": 1, "refunds": 2}


async def _some(pending: Any) -> tuple[str, Order, dict[str, Any]]:
    result = await pending
    assert result is not None
    return result  # type: ignore[no-any-return]


async def test_fan_points_are_awarded_and_taken_back_once(store: AnyStore) -> None:
    assert await store.add_fan_award("ch", "w1", "v1", "Ann", 5, "watch", "r_1", 1)
    assert not await store.add_fan_award("ch", "w1", "v1", "Ann", 5, "watch", "r_1", 1)
    assert await store.add_fan_award("ch", "o1", "v1", "", 20, "order", "r_1", 2)
    assert await store.add_fan_award("ch", "w2", "v2", "Bob", 7, "watch", "r_1", 3)
    assert await store.add_fan_award("other", "w1", "v1", "Ann", 1, "watch", "r_1", 1)
    assert sorted(await store.fan_totals("ch")) == [("v1", 25), ("v2", 7)]
    assert await store.top_fans("ch", 1) == [{"viewer_id": "v1", "nickname": "Ann",
                                              "points": 25}]
    assert await store.reverse_fan_award("ch", "o1", "rev_o1", "r_1", 4) == ("v1", 20)
    assert await store.reverse_fan_award("ch", "o1", "rev_o1", "r_1", 4) is None
    assert await store.reverse_fan_award("ch", "nope", "rev_nope", "r_1", 4) is None
    assert sorted(await store.fan_totals("ch")) == [("v1", 5), ("v2", 7)]


async def test_referrals_and_their_rewards(store: AnyStore) -> None:
    await store.set_referral_program("r_1", {"reward": "points", "max": 2})
    assert await store.referral_program("r_1") == {"reward": "points", "max": 2}
    assert await store.referral_program("r_2") is None
    await store.add_invite_sent("r_1", "v1", "Ann", 10)
    await store.add_invite_sent("r_1", "v1", "Annie", 11, count=2)
    assert await store.add_referral("r_1", "v2", "v1", "Annie", "Bob", 20) == "v1"
    assert await store.add_referral("r_1", "v2", "v3", "Cid", "Bob", 21) == "v1"
    assert await store.inviter_nickname("r_1", "v2") == "Annie"
    assert await store.inviter_nickname("r_1", "v9") is None
    coupon = {"coupon_id": "cp_ref", "expires_at": now_ms() + 3_600_000}
    reward = {"points": 0, "coupon": {"coupon_id": "cp_ref"}}
    assert await store.add_referral_reward("r_1", "v2", "v1", "o_1", "paid", reward, 30,
                                           coupon)
    assert not await store.add_referral_reward("r_1", "v2", "v1", "o_2", "paid", reward, 31,
                                               None)
    assert [d["coupon_id"] for d in await store.coupon_drops("r_1")] == ["cp_ref"]
    assert await store.reverse_referral_reward("r_1", "v2", "o_2") is None
    assert await store.reverse_referral_reward("r_1", "v2", "o_1") == {"inviter": "v1",
                                                                      "reward": reward}
    assert await store.reverse_referral_reward("r_1", "v2", "o_1") is None
    drop = (await store.coupon_drops("r_1"))[0]
    assert drop["expires_at"] <= now_ms()
    tree = await store.referral_tree("r_1")
    assert tree == {
        "invites": [{"inviter": "v1", "nickname": "Annie", "sent": 3, "first_at": 10}],
        "referrals": [{"invitee": "v2", "inviter": "v1", "inviter_nickname": "Annie",
                       "nickname": "Bob", "joined_at": 20}],
        "rewards": [{"invitee": "v2", "inviter": "v1", "order_id": "o_1",
                     "state": "reversed", "reward": reward, "at": 30}]}


def _endpoint(eid: str, room: str | None, events: list[str], at: int) -> dict[str, Any]:
    return {"endpoint_id": eid, "room_id": room, "url": f"https://hooks/{eid}",
            "secret": f"whsec_{eid}", "events": events, "description": eid, "created_at": at}


async def test_the_webhook_outbox_endpoints_leases_and_replays(store: AnyStore) -> None:
    assert await store.place_order(order("h0"), "e1") == PLACED  # before any endpoint
    assert not await store.has_endpoints()
    await store.add_endpoint(_endpoint("we_all", None, [], 1))
    await store.add_endpoint(_endpoint("we_r1", "r_1", ["order.cancelled"], 2))
    assert await store.has_endpoints()
    assert [e["endpoint_id"] for e in await store.endpoints(None)] == ["we_all"]
    assert [e["endpoint_id"] for e in await store.endpoints("r_1")] == ["we_r1"]
    everywhere = await store.endpoints(None, everywhere=True)
    assert [e["endpoint_id"] for e in everywhere] == ["we_all", "we_r1"]
    assert everywhere[1] == {"endpoint_id": "we_r1", "room_id": "r_1",
                             "url": "https://hooks/we_r1", "events": ["order.cancelled"],
                             "description": "we_r1", "created_at": 2,
                             "secret": "whsec_we_r1"}
    # Events from now on: an order (its event in the same transaction), its
    # cancellation, and an event of another room written on its own, once.
    assert await store.place_order(order("h1", at=100), "e1") == PLACED
    await store.cancel_order("r_1", "o_h1", "x", 200, "e1")
    for _ in range(2):
        await store.add_outbox("r_2", "sale.sold_out", "s9", {"sale_id": "s9"}, 300)
    assert await store.fan_out(1000, 100) == 4
    assert await store.fan_out(1000, 100) == 0
    heads = await store.due_heads(1000, 10, "me")
    assert sorted((h["endpoint_id"], h["type"]) for h in heads) == \
        [("we_all", "order.placed"), ("we_r1", "order.cancelled")]
    head = next(h for h in heads if h["endpoint_id"] == "we_all")
    assert head["event_id"] == "evt_o_h1.order.placed" and head["attempts"] == 0
    assert head["url"] == "https://hooks/we_all" and head["created_at"] == 100
    assert await store.oldest_pending() == 100
    assert await store.next_due() == 1000
    # Leases: one owner at a time until it runs out.
    assert await store.lease_endpoint("we_all", "me", 1000, 5000)
    assert not await store.lease_endpoint("we_all", "other", 2000, 6000)
    assert [h["endpoint_id"] for h in await store.due_heads(2000, 10, "other")] == ["we_r1"]
    assert await store.lease_endpoint("we_all", "other", 5000, 9000)
    await store.record_attempt("we_all", head["seq"], "pending", 500, "boom" * 200, 1100,
                               4000)
    await store.record_attempt("we_all", head["seq"], "delivered", 200, "", 4100, 0)
    log = await store.deliveries("we_all", 10)
    assert [(d["type"], d["state"], d["attempts"]) for d in log] == \
        [("sale.sold_out", "pending", 0), ("order.cancelled", "pending", 0),
         ("order.placed", "delivered", 2)]
    assert log[2]["delivered_at"] == 4100 and log[2]["last_status"] == 200
    assert log[2]["last_error"] == ""
    # Replay from the order's event: the endpoint's own events from there, again.
    assert await store.replay("we_all", "evt_o_h1.order.placed", 7000) == 3
    assert await store.replay("we_r1", "evt_o_h1.order.placed", 7000) == 1
    assert await store.replay("we_all", "evt_nope", 7000) is None
    assert [d["state"] for d in await store.deliveries("we_all", 10)] == ["pending"] * 3
    assert await store.disable_endpoint("we_r1", 8000)
    assert not await store.disable_endpoint("we_r1", 8000)
    assert [e["endpoint_id"] for e in await store.endpoints(None, everywhere=True)] == \
        ["we_all"]


async def test_group_commit_answers_each_write_and_isolates_a_bad_one(
        store: AnyStore) -> None:
    store.writer_stats()
    await store.add_room("r_dup", "first", "", "h", 1)
    writes: list[Awaitable[Any]] = [store.place_order(order(f"g{i}"), "e1")
                                    for i in range(200)]
    writes.insert(100, store.add_room("r_dup", "again", "", "h", 2))  # a bad write
    results = await asyncio.gather(*writes, return_exceptions=True)
    bad = results.pop(100)
    assert isinstance(bad, Exception) and not isinstance(bad, StoreError)
    assert results == [PLACED] * 200
    assert len(await store.orders("r_1")) == 200
    batches, failed = store.writer_stats()
    assert failed == 0 and sum(n for n, _ in batches) >= 201
    # Queued in one tick: committed in far fewer transactions than writes.
    assert len(batches) < 100
    await store.wait_idle()


async def test_a_closed_store_refuses_writes_and_reads(tmp_path: Path,
                                                       store_url: str) -> None:
    s = await open_store_at(store_url, tmp_path)
    await s.set_room_epoch("r_1", "e1")
    pending = asyncio.ensure_future(s.place_order(order("c1"), "e1"))
    await asyncio.sleep(0)  # queued (not a wait for a condition: one step of the loop)
    await s.close()
    assert await pending == PLACED  # queued before the close: committed by it
    await s.close()
    with pytest.raises(StoreClosed):
        await s.place_order(order("c2"), "e1")
    with pytest.raises(StoreClosed):
        await s.orders("r_1")
    again = await open_store_at(store_url, tmp_path)
    try:
        assert [o.hold_id for o in await again.orders("r_1")] == ["c1"]
    finally:
        await again.close()
