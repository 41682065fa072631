"""The load tester's group-buy and poll checks: a consistent run (a group of
three that filled and paid at the group price, one that expired with its
holds refused, a poll whose counts are its first votes, a retried vote and a
refused second vote) passes every check, and for each check a run with
exactly the violation it exists for fails it with a message saying what
broke."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from loadtest.checks import (
    GROUP_COMPLETE,
    GROUP_EXPIRED,
    GROUP_ONE,
    GROUP_ORDERS,
    GROUP_UNITS,
    POLL_CHANGE,
    POLL_COUNTS,
    POLL_ONCE,
    Check,
    check_run,
)
from loadtest.model import (
    GroupAnswer,
    GroupCheckout,
    GroupDealRecord,
    HoldRecord,
    OrderAck,
    PollRecord,
    RunData,
    SocialEvent,
    StockSample,
    VoteRecord,
)
from tests.loadtest.test_checks import good_run

DEAL, PRODUCT, PRICE, UNITS = "gb_1", "g", 800, 6
G1, G2, POLL = "g_1", "g_2", "p_1"


def _group(gid: str, state: str, members: int, size: int = 3) -> dict[str, Any]:
    return {"group_id": gid, "deal_id": DEAL, "state": state, "size": size,
            "members": members, "seats_left": max(0, size - members), "deadline": 200_000,
            "starter": "ada"}


def _update(seq: int, gid: str, state: str, members: int,
            holds: dict[str, str] | None = None) -> SocialEvent:
    data: dict[str, Any] = {"seq": seq, "type": "group_update",
                            "group": _group(gid, state, members), "ts": 100_000 + seq}
    if holds is not None:
        data["holds"] = holds
    return SocialEvent(seq, "group_update", data, receipts=5)


def _deal_event(seq: int, held: int, sold: int) -> SocialEvent:
    deal = {"deal_id": DEAL, "product_id": PRODUCT, "group_size": 3, "group_price": PRICE,
            "units": UNITS, "held": held, "sold": sold, "left": UNITS - held - sold,
            "state": "open"}
    return SocialEvent(seq, "group_deal", {"seq": seq, "type": "group_deal", "deal": deal})


def _order(oid: str, hold: str, buyer: str, price: int = PRICE) -> dict[str, Any]:
    return {"order_id": oid, "hold_id": hold, "room_id": "r1", "product_id": PRODUCT,
            "sale_id": DEAL, "buyer_id": buyer, "quantity": 1, "unit_price": price,
            "subtotal": price, "discount": 0, "total": price, "currency": "EUR",
            "coupon_id": "", "payment_ref": "sim", "created_at": 1500}


def _answer(viewer: str, kind: str, gid: str, outcome: str, hold: str, members: int,
            sent_seq: int) -> GroupAnswer:
    return GroupAnswer(viewer, DEAL, kind, f"r-{viewer}-{gid}", gid, outcome, hold, members,
                       3, sent_seq)


def _vote(viewer: str, kind: str, option: int, outcome: str = "voted",
          answered: int | None = None) -> VoteRecord:
    return VoteRecord(viewer, POLL, kind, option, outcome,
                      answered if answered is not None else
                      (option if outcome == "voted" else None))


def _add_order(d: RunData, order: dict[str, Any], viewer: str) -> None:
    d.orders_api.append(dict(order))
    assert d.orders_store is not None
    d.orders_store.append(dict(order))
    d.acks.append(OrderAck(order["order_id"], order["hold_id"], viewer, 1, ""))


def social_run() -> RunData:
    """good_run() plus a group deal of 6 units in groups of 3 at 800: g_1 filled
    (v1 started, v2 and v3 joined; v1 and v2 paid, v3 let its hold lapse), g_2
    expired with v4 and v5 (v4's checkout of its hold refused hold_expired); and a
    poll: v1 and v2 voted Red, v3 Blue; v1 retried its vote, v2 tried Green and was
    refused already_voted."""
    d = good_run()
    d.products[PRODUCT] = UNITS
    d.final_stock.append(StockSample(3.0, PRODUCT, UNITS, UNITS - 2, 0, 2))
    d.group_deals = [GroupDealRecord(
        DEAL, PRODUCT, 3, PRICE, UNITS,
        final={"deal_id": DEAL, "product_id": PRODUCT, "group_size": 3, "group_price": PRICE,
               "units": UNITS, "held": 0, "sold": 2, "left": UNITS - 2, "state": "open",
               "groups": []})]
    d.group_answers = [
        _answer("v1", "start", G1, "open", "hg1", 1, 10),
        _answer("v2", "join", G1, "open", "hg2", 2, 11),
        _answer("v3", "join", G1, "complete", "hg3", 3, 12),
        _answer("v4", "start", G2, "open", "hg4", 1, 13),
        _answer("v5", "join", G2, "open", "hg5", 2, 14),
        _answer("v6", "join", G1, "group_full", "", 0, 13),
    ]
    d.social_events = [
        _deal_event(20, 3, 0),
        _update(21, G1, "open", 1), _update(22, G1, "open", 2),
        _update(23, G1, "complete", 3, {"v1": "hg1", "v2": "hg2", "v3": "hg3"}),
        _update(24, G2, "open", 1), _update(25, G2, "open", 2),
        _deal_event(26, 6, 0),
        # As the server publishes them: v2's join, answered before v3 filled the group,
        # announced after it (the group as it is then, complete, without holds), and an
        # earlier read of g_1 published later still.
        _update(27, G1, "complete", 3), _update(28, G1, "open", 2),
        _update(30, G2, "expired", 2, {"v4": "hg4", "v5": "hg5"}),
        _deal_event(31, 3, 0), _deal_event(32, 1, 2),
        SocialEvent(40, "poll_closed", {"seq": 40, "type": "poll_closed", "poll": {
            "poll_id": POLL, "votes": [2, 1, 0], "total": 3, "state": "closed"}}, 3),
    ]
    d.group_checkouts = [GroupCheckout("v1", G1, "hg1", "complete", "order_placed"),
                         GroupCheckout("v2", G1, "hg2", "complete", "order_placed"),
                         GroupCheckout("v4", G2, "hg4", "expired", "hold_expired")]
    d.holds += [HoldRecord(h, v, DEAL, PRODUCT, 1, 1000, 5000)
                for h, v in (("hg1", "v1"), ("hg2", "v2"), ("hg3", "v3"))]
    _add_order(d, _order("og1", "hg1", "v1"), "v1")
    _add_order(d, _order("og2", "hg2", "v2"), "v2")
    d.polls = [PollRecord(POLL, 3, final={"poll_id": POLL, "options": ["Red", "Blue", "Green"],
                                          "votes": [2, 1, 0], "total": 3,
                                          "state": "closed"})]
    d.votes = [_vote("v1", "first", 0), _vote("v2", "first", 0), _vote("v3", "first", 1),
               _vote("v1", "retry", 0), _vote("v2", "change", 2, "already_voted", 0)]
    return d


def _by_name(checks: list[Check]) -> dict[str, Check]:
    return {c.name: c for c in checks}


SOCIAL = {GROUP_COMPLETE, GROUP_ONE, GROUP_UNITS, GROUP_EXPIRED, GROUP_ORDERS, POLL_COUNTS,
          POLL_ONCE, POLL_CHANGE}


def test_a_consistent_social_run_passes_every_check() -> None:
    checks = check_run(social_run())
    failed = [c for c in checks if not c.ok]
    assert not failed, failed
    by_name = _by_name(checks)
    assert set(by_name) >= SOCIAL
    assert "1 complete group(s)" in by_name[GROUP_COMPLETE].detail
    assert "2 hold(s) of expired groups" in by_name[GROUP_EXPIRED].detail
    assert "1 second, different vote(s)" in by_name[POLL_CHANGE].detail
    assert by_name["no buyer above the per-buyer limit"].ok


def test_a_run_without_group_deal_or_poll_has_none_of_their_checks() -> None:
    assert not SOCIAL & {c.name for c in check_run(good_run())}


# ------------------------------------------------------------ violations


def _complete_with_two(d: RunData) -> None:
    # g_1 said complete with 2 of 3 members: v3 never joined.
    d.group_answers = [a for a in d.group_answers if a.viewer_id != "v3"]
    d.group_answers[1] = _answer("v2", "join", G1, "complete", "hg2", 2, 11)
    d.social_events[3] = _update(23, G1, "complete", 2, {"v1": "hg1", "v2": "hg2"})
    d.holds = [h for h in d.holds if h.hold_id != "hg3"]


def _two_groups(d: RunData) -> None:
    # v1, in the complete g_1, was also let into g_2.
    d.group_answers.append(_answer("v1", "join", G2, "open", "hg9", 2, 24))


def _units_above_deal(d: RunData) -> None:
    # The deal's own event counts 6 held + 2 sold of 6 units.
    d.social_events.insert(11, _deal_event(31, 6, 2))


def _groups_above_deal(d: RunData) -> None:
    # With 2 units sold, a third group started while g_2 was open: 2 x 3 + 2 sold of 6.
    d.social_events[6:6] = [_deal_event(27, 3, 2), _update(28, "g_3", "open", 1)]


def _expired_hold_ordered(d: RunData) -> None:
    # v5's hold of the expired g_2 became an order.
    _add_order(d, _order("og5", "hg5", "v5"), "v5")


def _expired_checkout_placed(d: RunData) -> None:
    # v4's checkout of its expired hold was answered order_placed (and stored).
    d.group_checkouts[2] = GroupCheckout("v4", G2, "hg4", "expired", "order_placed")


def _price(price: int) -> Callable[[RunData], None]:
    def mutate(d: RunData) -> None:
        assert d.orders_store is not None
        for orders in (d.orders_api, d.orders_store):
            orders[-1]["unit_price"] = price
            orders[-1]["total"] = orders[-1]["subtotal"] = price
    return mutate


def _two_orders_one_buyer(d: RunData) -> None:
    # v3's lapsed hold of g_1 was ordered, by v1 (its hold given to v1 as well).
    d.holds.append(HoldRecord("hg7", "v1", DEAL, PRODUCT, 1, 1000, 5000))
    _add_order(d, _order("og7", "hg7", "v1"), "v1")
    d.group_deals[0].final = {**(d.group_deals[0].final or {}), "sold": 3}


def _counted_twice(d: RunData) -> None:
    # v1's retry of its Red vote was counted again.
    assert d.polls[0].final is not None
    d.polls[0].final.update(votes=[3, 1, 0], total=4)


def _counts_differ(d: RunData) -> None:
    # Three voters counted, but one Red vote shows as Blue.
    assert d.polls[0].final is not None
    d.polls[0].final.update(votes=[1, 2, 0], total=3)


def _closed_event_differs(d: RunData) -> None:
    d.social_events[-1].data["poll"]["votes"] = [2, 0, 1]


def _second_vote_taken(d: RunData) -> None:
    # v2's second, different vote was answered voted.
    d.votes[-1] = _vote("v2", "change", 2)


VIOLATIONS = [
    ("a group complete with 2 of 3", _complete_with_two, GROUP_COMPLETE,
     "complete with 2 of 3 member(s)"),
    ("a viewer in two groups", _two_groups, GROUP_ONE,
     "v1 was told it is in group g_2 (asked at seq 24) while in group g_1, which never "
     "expired"),
    ("more units held and sold than the deal", _units_above_deal, GROUP_UNITS,
     "6 unit(s) held in groups + 2 sold = 8, the deal has 6"),
    ("more units in open groups than the deal", _groups_above_deal, GROUP_UNITS,
     "2 open group(s) x 3 unit(s) + 2 sold = 8, the deal has 6"),
    ("an expired group's hold placed as an order", _expired_hold_ordered, GROUP_EXPIRED,
     "the hold hg5 of v5 is order og5"),
    ("an expired group's checkout answered order_placed", _expired_checkout_placed,
     GROUP_EXPIRED, "checkout of its hold hg4 was answered order_placed, not hold_expired"),
    ("an order above the group price", _price(PRICE + 100), GROUP_ORDERS,
     "order og2 of v2 at 900 a unit, the group price is 800"),
    ("an order below the group price", _price(PRICE - 100), GROUP_ORDERS,
     "order og2 of v2 at 700 a unit, the group price is 800"),
    ("two orders of one buyer in a deal", _two_orders_one_buyer, GROUP_ORDERS,
     "buyer v1 has 2 unit(s) in its orders, one allowed"),
    ("a vote counted twice", _counted_twice, POLL_ONCE,
     "4 vote(s) counted, 3 viewer(s) were told voted"),
    ("counts that differ from the voters", _counts_differ, POLL_COUNTS,
     "final counts [1, 2, 0], the viewers whose first vote was answered voted make "
     "[2, 1, 0]"),
    ("a poll_closed event that differs from the poll", _closed_event_differs, POLL_COUNTS,
     "poll_closed seq 40 (3 viewer(s)) showed [2, 0, 1]"),
    ("a second different vote accepted", _second_vote_taken, POLL_CHANGE,
     "v2 voted 0, then 2, answered voted, not already_voted"),
]


@pytest.mark.parametrize(("what", "mutate", "name", "says"), VIOLATIONS,
                         ids=[v[0] for v in VIOLATIONS])
def test_each_check_fails_on_its_violation(what: str, mutate: Callable[[RunData], None],
                                           name: str, says: str) -> None:
    d = social_run()
    mutate(d)
    by_name = _by_name(check_run(d))
    check = by_name[name]
    assert not check.ok, (what, check)
    assert says in check.detail, (what, check.detail)


@pytest.mark.parametrize(("mutate", "name"), [(_complete_with_two, GROUP_COMPLETE),
                                              (_two_groups, GROUP_ONE),
                                              (_counts_differ, POLL_COUNTS)])
def test_a_violation_fails_its_own_check_and_leaves_the_others(
        mutate: Callable[[RunData], None], name: str) -> None:
    d = social_run()
    mutate(d)
    failed = {c.name for c in check_run(d) if not c.ok}
    assert failed == {name}


def test_a_group_or_poll_that_could_not_be_read_back_is_named() -> None:
    d = social_run()
    d.group_deals[0].final, d.group_deals[0].error = None, "HostError: 503"
    d.polls[0].final, d.polls[0].error = None, "HostError: 503"
    by_name = _by_name(check_run(d))
    assert "deal gb_1 could not be read back: HostError: 503" in by_name[GROUP_UNITS].detail
    assert "poll p_1 could not be read back" in by_name[POLL_COUNTS].detail


def test_a_vote_counted_twice_by_a_viewer_told_voted_for_two_options() -> None:
    d = social_run()
    d.votes.append(_vote("v3", "change", 2))
    check = _by_name(check_run(d))[POLL_ONCE]
    assert not check.ok and "v3 was told voted for options [1, 2]" in check.detail
