"""The load tester's referral checks: a consistent run (two inviters, K = 2: Ada's
three invitees ordered, two rewards paid and the third capped; Bob's one
invitee who ordered paid, another who never ordered undecided; a retried
acceptance answered invite_accepted, a second inviter's link refused
already_invited, an inviter's own link refused self_invite; one
referral_reward event per reward paid) passes every check, and for each check
a run with exactly the violation it exists for fails it with a message saying
what broke."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from loadtest.checks import (
    REFERRAL_CAP,
    REFERRAL_EVENTS,
    REFERRAL_FIRST,
    REFERRAL_ONE,
    REFERRAL_PAID,
    REFERRAL_SELF,
    Check,
    check_run,
)
from loadtest.model import (
    HoldRecord,
    OrderAck,
    ReferralAnswer,
    ReferralEvent,
    ReferralRecord,
    RunData,
    StockSample,
)
from tests.loadtest.test_checks import good_run

ADA, BOB = "v_ada", "v_bob"  # the inviters (nicknames lt1, lt2)
K, POINTS, JOINED = 2, 50, 1100
REWARD = {"kind": "points", "points": POINTS}
REFERRAL = {REFERRAL_CAP, REFERRAL_ONE, REFERRAL_SELF, REFERRAL_FIRST, REFERRAL_PAID,
            REFERRAL_EVENTS}


def _order(oid: str, hold: str, buyer: str, at: int) -> dict[str, Any]:
    return {"order_id": oid, "hold_id": hold, "room_id": "r1", "product_id": "p",
            "sale_id": "s1", "buyer_id": buyer, "quantity": 1, "unit_price": 100,
            "subtotal": 100, "discount": 0, "total": 100, "currency": "USD",
            "coupon_id": "", "payment_ref": "sim", "created_at": at, "status": "placed"}


def _add_order(d: RunData, oid: str, buyer: str, at: int) -> None:
    """An order the buyer was told placed, of a hold it was given (stock kept
    consistent: one more unit sold)."""
    hold = f"h_{oid}"
    order = _order(oid, hold, buyer, at)
    d.orders_api.append(dict(order))
    assert d.orders_store is not None
    d.orders_store.append(dict(order))
    d.holds.append(HoldRecord(hold, buyer, "s1", "p", 1, at - 100, at + 4000))
    d.acks.append(OrderAck(oid, hold, buyer, 1, ""))
    final = d.final_stock[-1]
    d.final_stock[-1] = StockSample(final.t, "p", final.total, final.left - 1, 0,
                                    final.sold + 1)


def _invitee(viewer: str, reward: str | None = None,
             order_id: str | None = None) -> dict[str, Any]:
    return {"viewer_id": viewer, "nickname": f"nick-{viewer}", "joined_at": JOINED,
            "order_id": order_id, "reward": reward}


def _node(viewer: str, nickname: str, invitees: list[dict[str, Any]]) -> dict[str, Any]:
    return {"viewer_id": viewer, "nickname": nickname, "invites_sent": 1,
            "joins": len(invitees),
            "first_orders": sum(1 for i in invitees if i["reward"] is not None),
            "rewards_paid": sum(1 for i in invitees if i["reward"] == "paid"),
            "invitees": invitees}


def _tree(nodes: list[dict[str, Any]]) -> dict[str, Any]:
    invitees = [i for n in nodes for i in n["invitees"]]
    return {"program": {"reward": dict(REWARD), "max_rewards_per_inviter": K},
            "totals": {"inviters": len(nodes), "invites_sent": len(nodes),
                       "joins": len(invitees),
                       "first_orders": sum(1 for i in invitees if i["reward"] is not None),
                       "rewards_paid": sum(n["rewards_paid"] for n in nodes),
                       "rewards_reversed": 0},
            "inviters": nodes}


def _answer(viewer: str, kind: str, inviter: str, outcome: str, at: float,
            told: str = "") -> ReferralAnswer:
    return ReferralAnswer(viewer, kind, inviter, outcome, told, at)


def _event(seq: int, inviter: str, nickname: str, state: str = "paid",
           reward: dict[str, Any] | None = None) -> ReferralEvent:
    data = {"seq": seq, "type": "referral_reward", "inviter": inviter, "nickname": nickname,
            "state": state, "reward": dict(reward or REWARD), "ts": 2000 + seq}
    return ReferralEvent(seq, inviter, state, data, receipts=4)


def referral_run() -> RunData:
    """good_run() plus a referral program of K = 2 points rewards: Ada (lt1) invited
    va, vb and vc, who each ordered once (va and vb paid, vc capped); Bob (lt2)
    invited vd, who ordered (paid), and ve, who did not. va accepted Ada's link
    again (answered invite_accepted) and then tried Bob's (already_invited); Ada
    tried her own link (self_invite)."""
    d = good_run()
    for oid, buyer, at in (("o3", "va", 1500), ("o4", "vb", 1600), ("o5", "vc", 1700),
                           ("o6", "vd", 1800)):
        _add_order(d, oid, buyer, at)
    d.referral = ReferralRecord(
        program={"reward": dict(REWARD), "max_rewards_per_inviter": K},
        tree=_tree([_node(ADA, "lt1", [_invitee("va", "paid", "o3"),
                                       _invitee("vb", "paid", "o4"),
                                       _invitee("vc", "capped", "o5")]),
                    _node(BOB, "lt2", [_invitee("vd", "paid", "o6"), _invitee("ve")])]))
    d.referral_answers = [
        _answer(ADA, "invite", ADA, "invite", 900),
        _answer(BOB, "invite", BOB, "invite", 901),
        _answer(ADA, "self", ADA, "self_invite", 950),
        _answer("va", "accept", ADA, "invite_accepted", 1100, "lt1"),
        _answer("va", "retry", ADA, "invite_accepted", 1101, "lt1"),
        _answer("va", "duplicate", BOB, "already_invited", 1102),
        _answer("vb", "accept", ADA, "invite_accepted", 1100, "lt1"),
        _answer("vc", "accept", ADA, "invite_accepted", 1100, "lt1"),
        _answer("vd", "accept", BOB, "invite_accepted", 1100, "lt2"),
        _answer("ve", "accept", BOB, "invite_accepted", 1100, "lt2"),
    ]
    d.referral_events = [_event(60, ADA, "lt1"), _event(61, ADA, "lt1"),
                         _event(62, BOB, "lt2")]
    return d


def _by_name(checks: list[Check]) -> dict[str, Check]:
    return {c.name: c for c in checks}


def _node_of(d: RunData, inviter: str) -> dict[str, Any]:
    assert d.referral is not None and d.referral.tree is not None
    node: dict[str, Any] = next(n for n in d.referral.tree["inviters"]
                                if n["viewer_id"] == inviter)
    return node


def _invitee_of(d: RunData, invitee: str) -> dict[str, Any]:
    assert d.referral is not None and d.referral.tree is not None
    row: dict[str, Any] = next(i for n in d.referral.tree["inviters"] for i in n["invitees"]
                               if i["viewer_id"] == invitee)
    return row


def test_a_consistent_referral_run_passes_every_check() -> None:
    checks = check_run(referral_run())
    failed = [c for c in checks if not c.ok]
    assert not failed, failed
    by_name = _by_name(checks)
    assert set(by_name) >= REFERRAL
    assert "2 inviter(s), at most 2 reward(s) paid to one (max_rewards_per_inviter 2)" in \
        by_name[REFERRAL_CAP].detail
    assert "5 invitee(s)" in by_name[REFERRAL_ONE].detail
    assert "1 later other link(s) refused already_invited" in by_name[REFERRAL_ONE].detail
    assert "1 own-link acceptance(s)" in by_name[REFERRAL_SELF].detail
    assert "4 reward decision(s)" in by_name[REFERRAL_FIRST].detail
    assert "3 reward(s) paid for 4 first order(s)" in by_name[REFERRAL_PAID].detail
    assert "3 paid and 0 reversed" in by_name[REFERRAL_EVENTS].detail
    assert by_name["every stored order was acknowledged"].ok


def test_a_run_without_referrals_has_none_of_their_checks() -> None:
    assert not REFERRAL & {c.name for c in check_run(good_run())}


# ------------------------------------------------------------ violations


def _third_paid(d: RunData) -> None:
    # vc's first order was paid too: Ada has 3 rewards with K = 2.
    _invitee_of(d, "vc")["reward"] = "paid"
    _node_of(d, ADA)["rewards_paid"] = 3


def _third_paid_event(d: RunData) -> None:
    # The tree says capped, but the room was told Ada was paid a third time.
    d.referral_events.append(_event(63, ADA, "lt1"))


def _under_two(d: RunData) -> None:
    # va is listed under Bob as well.
    _node_of(d, BOB)["invitees"].append(_invitee("va"))


def _under_the_later(d: RunData) -> None:
    # va accepted Ada's link first, yet the tree has it under Bob.
    ada, bob = _node_of(d, ADA), _node_of(d, BOB)
    moved = next(i for i in ada["invitees"] if i["viewer_id"] == "va")
    ada["invitees"].remove(moved)
    bob["invitees"].append(moved)


def _second_link_accepted(d: RunData) -> None:
    d.referral_answers[5] = _answer("va", "duplicate", BOB, "invite_accepted", 1102, "lt2")


def _same_link_refused(d: RunData) -> None:
    d.referral_answers[4] = _answer("va", "retry", ADA, "already_invited", 1101)


def _told_another_inviter(d: RunData) -> None:
    # The retry named another inviter than the first acceptance.
    d.referral_answers[4] = _answer("va", "retry", ADA, "invite_accepted", 1101, "lt2")


def _accepted_but_absent(d: RunData) -> None:
    # vf was told its acceptance of Ada's link stood; the tree does not have it.
    d.referral_answers.append(_answer("vf", "accept", ADA, "invite_accepted", 1100, "lt1"))


def _in_tree_never_accepted(d: RunData) -> None:
    _node_of(d, BOB)["invitees"].append(_invitee("vz"))


def _refused_yet_in_tree(d: RunData) -> None:
    # ve's acceptance was refused, yet the tree has it under Bob.
    d.referral_answers[9] = _answer("ve", "accept", BOB, "invite_invalid", 1100)


def _self_accepted(d: RunData) -> None:
    d.referral_answers[2] = _answer(ADA, "self", ADA, "invite_accepted", 950, "lt1")


def _own_invitee(d: RunData) -> None:
    _node_of(d, BOB)["invitees"].append(_invitee(BOB))


def _decided_by_unknown_order(d: RunData) -> None:
    _invitee_of(d, "va")["order_id"] = "o9"


def _decided_by_anothers_order(d: RunData) -> None:
    _invitee_of(d, "va")["order_id"] = "o4"


def _decided_by_an_order_never_told(d: RunData) -> None:
    # o3 is in the store but va was never told it was placed (the ack went elsewhere).
    d.acks = [a for a in d.acks if a.order_id != "o3"]


def _decided_by_the_second_order(d: RunData) -> None:
    # va ordered o7 (at 1200, after joining) before o3 (1500), which decided.
    _add_order(d, "o7", "va", 1200)


def _ordered_without_decision(d: RunData) -> None:
    # ve ordered after joining and nothing was decided.
    _add_order(d, "o8", "ve", 1900)


def _capped_below_k(d: RunData) -> None:
    # Bob had no reward yet, but vd's first order was capped (and nothing announced).
    _invitee_of(d, "vd")["reward"] = "capped"
    _node_of(d, BOB)["rewards_paid"] = 0
    assert d.referral is not None and d.referral.tree is not None
    d.referral.tree["totals"]["rewards_paid"] = 2
    d.referral_events = [e for e in d.referral_events if e.inviter != BOB]


def _count_differs(d: RunData) -> None:
    _node_of(d, BOB)["rewards_paid"] = 0
    assert d.referral is not None and d.referral.tree is not None
    d.referral.tree["totals"]["rewards_paid"] = 2


def _totals_differ(d: RunData) -> None:
    assert d.referral is not None and d.referral.tree is not None
    d.referral.tree["totals"]["rewards_paid"] = 4


def _event_missing(d: RunData) -> None:
    d.referral_events = d.referral_events[:2]


def _event_other_reward(d: RunData) -> None:
    d.referral_events[2] = _event(62, BOB, "lt2", reward={"kind": "points", "points": 5})


def _event_two_versions(d: RunData) -> None:
    d.referral_events.insert(3, _event(62, ADA, "lt1"))


VIOLATIONS = [
    ("a third reward paid with K = 2", _third_paid, REFERRAL_CAP,
     f"inviter {ADA} (lt1): 3 reward(s) paid, at most 2"),
    ("a third reward announced with K = 2", _third_paid_event, REFERRAL_CAP,
     f"inviter {ADA}: 3 referral_reward event(s) paid (net of reversals), at most 2"),
    ("an invitee under two inviters", _under_two, REFERRAL_ONE,
     f"va is an invitee of 2 inviters ({ADA}, {BOB})"),
    ("an invitee under the later inviter", _under_the_later, REFERRAL_ONE,
     f"va is an invitee of {BOB} in the tree, but the first link it was told accepted is "
     f"{ADA}'s"),
    ("a second inviter's link accepted", _second_link_accepted, REFERRAL_ONE,
     f"va accepted {ADA}'s link, then {BOB}'s was answered invite_accepted, not "
     "already_invited"),
    ("the same link refused the second time", _same_link_refused, REFERRAL_ONE,
     f"va accepted {ADA}'s link again and was answered already_invited, not "
     "invite_accepted"),
    ("the same link naming another inviter", _told_another_inviter, REFERRAL_ONE,
     "was told inviter 'lt2', the first time 'lt1'"),
    ("an acceptance missing from the tree", _accepted_but_absent, REFERRAL_ONE,
     f"vf was told invite_accepted for the link of {ADA}, and is no inviter's invitee"),
    ("an invitee nobody accepted as", _in_tree_never_accepted, REFERRAL_ONE,
     f"vz is an invitee of {BOB} in the tree, but no viewer of the run accepted a link"),
    ("a refused acceptance in the tree", _refused_yet_in_tree, REFERRAL_ONE,
     f"ve is an invitee of {BOB} in the tree, but no link it tried was answered "
     "invite_accepted"),
    ("an own link accepted", _self_accepted, REFERRAL_SELF,
     f"{ADA} accepted its own link and was answered invite_accepted, not self_invite"),
    ("an inviter its own invitee", _own_invitee, REFERRAL_SELF,
     f"inviter {BOB} (lt2) is its own invitee in the tree"),
    ("a reward decided by an unknown order", _decided_by_unknown_order, REFERRAL_FIRST,
     "va's reward (paid) was decided by order o9, which is not in the store"),
    ("a reward decided by another buyer's order", _decided_by_anothers_order, REFERRAL_FIRST,
     "va's reward (paid) was decided by order o4, which is vb's"),
    ("a reward decided by an order never told placed", _decided_by_an_order_never_told,
     REFERRAL_FIRST, "va's reward (paid) was decided by order o3, which it was never told "
     "placed"),
    ("a reward decided by a second order", _decided_by_the_second_order, REFERRAL_FIRST,
     "va's reward (paid) was decided by order o3 (at 1500), but its order o7 (at 1200) came "
     "first"),
    ("a first order without a decision", _ordered_without_decision, REFERRAL_FIRST,
     f"ve (invited by {BOB}) has order o8 since it joined, and no reward decision"),
    ("a first order capped below K", _capped_below_k, REFERRAL_PAID,
     f"inviter {BOB} (lt2): 0 reward(s) paid for 1 invitee(s) with a first order, "
     "max_rewards_per_inviter 2: expected 1"),
    ("an inviter's count that differs from its invitees", _count_differs, REFERRAL_PAID,
     f"inviter {BOB} (lt2) counts 0 reward(s) paid, its invitees show 1"),
    ("totals that differ from the inviters", _totals_differ, REFERRAL_PAID,
     "the tree's totals count 4 reward(s) paid, its inviters 3"),
    ("a paid reward never announced", _event_missing, REFERRAL_EVENTS,
     f"inviter {BOB}: 0 referral_reward event(s) paid and 0 reversed seen by the viewers, "
     "the tree counts 1 reward(s) paid"),
    ("an event with another reward", _event_other_reward, REFERRAL_EVENTS,
     f"referral_reward seq 62 (4 viewer(s)) gave {BOB} {{'kind': 'points', 'points': 5}}, "
     "the program's reward is"),
    ("an event received in two versions", _event_two_versions, REFERRAL_EVENTS,
     "referral_reward seq 62 was received in 2 different versions"),
]


@pytest.mark.parametrize(("what", "mutate", "name", "says"), VIOLATIONS,
                         ids=[v[0] for v in VIOLATIONS])
def test_each_check_fails_on_its_violation(what: str, mutate: Callable[[RunData], None],
                                           name: str, says: str) -> None:
    d = referral_run()
    mutate(d)
    check = _by_name(check_run(d))[name]
    assert not check.ok, (what, check)
    assert says in check.detail, (what, check.detail)


@pytest.mark.parametrize(("mutate", "name"), [(_second_link_accepted, REFERRAL_ONE),
                                              (_self_accepted, REFERRAL_SELF),
                                              (_decided_by_unknown_order, REFERRAL_FIRST),
                                              (_capped_below_k, REFERRAL_PAID),
                                              (_event_missing, REFERRAL_EVENTS)])
def test_a_violation_fails_its_own_check_and_leaves_the_others(
        mutate: Callable[[RunData], None], name: str) -> None:
    d = referral_run()
    mutate(d)
    failed = {c.name for c in check_run(d) if not c.ok}
    assert failed == {name}


def _reverse_vd(d: RunData) -> None:
    """vd's order was cancelled: Bob's reward for it reversed (and announced)."""
    _invitee_of(d, "vd")["reward"] = "reversed"
    _node_of(d, BOB)["rewards_paid"] = 0
    assert d.referral is not None and d.referral.tree is not None
    d.referral.tree["totals"]["rewards_paid"] = 2
    d.referral_events.append(_event(63, BOB, "lt2", "reversed"))


def test_a_cancelled_first_order_lets_fewer_rewards_stand() -> None:
    """A reversed reward (its order cancelled) may leave an inviter below
    min(K, first orders)."""
    d = referral_run()
    _reverse_vd(d)
    assert not [c for c in check_run(d) if not c.ok]


def test_a_cancelled_first_order_never_lets_more_than_k_be_paid() -> None:
    d = referral_run()
    _reverse_vd(d)
    # Then ve, vf and vg order and all three are paid: 3 of K = 2.
    for n, invitee in enumerate(("ve", "vf", "vg")):
        oid = f"o{8 + n}"
        _add_order(d, oid, invitee, 1900 + n)
        if invitee != "ve":
            _node_of(d, BOB)["invitees"].append(_invitee(invitee))
            d.referral_answers.append(_answer(invitee, "accept", BOB, "invite_accepted", 1100,
                                              "lt2"))
        _invitee_of(d, invitee).update(reward="paid", order_id=oid)
        d.referral_events.append(_event(64 + n, BOB, "lt2"))
    _node_of(d, BOB)["rewards_paid"] = 3
    assert d.referral is not None and d.referral.tree is not None
    d.referral.tree["totals"]["rewards_paid"] = 5
    by_name = _by_name(check_run(d))
    assert not by_name[REFERRAL_PAID].ok
    assert f"inviter {BOB} (lt2): 3 reward(s) paid for 4 invitee(s) with a first order, " \
        "max_rewards_per_inviter 2: expected 2 at most (an order was cancelled)" in \
        by_name[REFERRAL_PAID].detail
    assert not by_name[REFERRAL_CAP].ok


def test_answers_that_say_nothing_are_not_held_against_the_server() -> None:
    """A timeout may or may not have been carried out: an invitee whose only answer
    was a timeout may be in the tree, and a retry that timed out is no refusal."""
    d = referral_run()
    d.referral_answers[9] = _answer("ve", "accept", BOB, "timeout", 1100)
    d.referral_answers[4] = _answer("va", "retry", ADA, "timeout", 1101)
    assert not [c for c in check_run(d) if not c.ok]


def test_a_tree_that_could_not_be_read_back_is_named_by_every_check() -> None:
    d = referral_run()
    assert d.referral is not None
    d.referral.tree, d.referral.error = None, "HostError: 503"
    by_name = _by_name(check_run(d))
    for name in REFERRAL:
        assert not by_name[name].ok, name
        assert "the referral tree could not be read back: HostError: 503" in \
            by_name[name].detail, name


def test_a_program_other_than_the_one_set_is_named() -> None:
    d = referral_run()
    assert d.referral is not None and d.referral.tree is not None
    d.referral.tree["program"] = {"reward": dict(REWARD), "max_rewards_per_inviter": 5}
    check = _by_name(check_run(d))[REFERRAL_CAP]
    assert not check.ok and "is not the one the host set" in check.detail
