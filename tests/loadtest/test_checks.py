"""The load tester's checker: a consistent run passes every check, and for each
check a run with exactly that violation fails it with a message saying what
broke."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable
from typing import Any

import pytest

from loadtest.checks import Check, check_run
from loadtest.model import (
    Claim,
    CouponInfo,
    Entry,
    Gap,
    HoldRecord,
    OrderAck,
    RunData,
    SaleInfo,
    StockSample,
    ViewerRecord,
)
from server.core.domain import draw_winners, entrants_digest, seed_hash


def _order(oid: str, hold: str, buyer: str, qty: int, coupon: str = "") -> dict[str, Any]:
    return {"order_id": oid, "hold_id": hold, "room_id": "r1", "product_id": "p",
            "sale_id": "s1", "buyer_id": buyer, "quantity": qty, "unit_price": 100,
            "subtotal": 100 * qty, "discount": 0, "total": 100 * qty, "currency": "USD",
            "coupon_id": coupon, "payment_ref": "sim", "created_at": 1000}


def _lottery() -> dict[str, Any]:
    seed = "ab" * 32
    entrants = ["v1", "v2", "v3"]
    return {"lottery_id": "l1", "seed_hash": seed_hash(seed), "winners_count": 2,
            "state": "drawn",
            "result": {"seed": seed, "entrants": entrants,
                       "entrants_digest": entrants_digest(entrants),
                       "winners": draw_winners(seed, entrants, 2), "drawn_at": 2000}}


def good_run() -> RunData:
    """A small consistent run: 10 units, three holds, two orders (3 units), one
    expired hold, a coupon drop of 2 with one claim used, a drawn lottery and
    three viewers whose gaps were all recovered."""
    orders = [_order("o1", "h1", "v1", 2, coupon="c1"), _order("o2", "h2", "v2", 1)]
    return RunData(
        products={"p": 10},
        sales=[SaleInfo("s1", "p", 10, 2, 500)],
        coupons=[CouponInfo("c1", 2)],
        stock_samples=[StockSample(0.0, "p", 10, 10, 0, 0), StockSample(1.0, "p", 10, 6, 4, 0),
                       StockSample(2.0, "p", 10, 7, 0, 3)],
        final_stock=[StockSample(3.0, "p", 10, 7, 0, 3)],
        orders_api=[dict(o) for o in orders],
        orders_store=[dict(o) for o in orders],
        holds=[HoldRecord("h1", "v1", "s1", "p", 2, 600, 4600),
               HoldRecord("h2", "v2", "s1", "p", 1, 600, 4600),
               HoldRecord("h3", "v3", "s1", "p", 1, 600, 4600)],
        acks=[OrderAck("o1", "h1", "v1", 2, "c1"), OrderAck("o2", "h2", "v2", 1, "")],
        claims=[Claim("c1", "v1")],
        entries=[Entry("l1", "v1"), Entry("l1", "v2"), Entry("l1", "v3")],
        lotteries=[_lottery()],
        viewers=[
            ViewerRecord(0, "v1", first_seq=50, last_seq=100, applied=50,
                         connected_at_end=True, chats_sent=10, chats_seen_own=6,
                         chat_active_s=2.0),
            ViewerRecord(1, "v2", first_seq=50, last_seq=100, applied=48, reconnects=1,
                         gaps=[Gap(60, 0, "disconnect", "resume")], connected_at_end=True),
            ViewerRecord(2, "v3", first_seq=50, last_seq=100, applied=40,
                         gaps=[Gap(70, 75, "gap", "snapshot")], connected_at_end=True),
        ],
        final_seq=100,
        chat_limit=(1.0, 5),
    )


def _by_name(checks: list[Check]) -> dict[str, Check]:
    return {c.name: c for c in checks}


def test_a_consistent_run_passes_every_check() -> None:
    checks = check_run(good_run())
    failed = [c for c in checks if not c.ok]
    assert not failed, failed
    names = {c.name for c in checks}
    assert {"sold <= stock", "sold = confirmed orders", "left + held + sold = stock",
            "no buyer above the per-buyer limit", "no two orders for one hold",
            "no order without a hold the generator was given",
            "every order told placed is in the store", "every stored order was acknowledged",
            "coupons claimed <= dropped, each used at most once",
            "lottery winners recompute from the published seed",
            "every viewer saw sequence numbers without gaps or recovered each gap",
            "every hold ended (checked out, released or expired)",
            "chat rate limit holds"} <= names


def _oversold(d: RunData) -> None:
    # Eleven units sold of a stock of ten, with holds and acks for all of them.
    d.holds.append(HoldRecord("h9", "v9", "s1", "p", 2, 600, 4600))
    d.acks.append(OrderAck("o9", "h9", "v9", 2, ""))
    d.holds.append(HoldRecord("h8", "v8", "s1", "p", 2, 600, 4600))
    d.acks.append(OrderAck("o8", "h8", "v8", 2, ""))
    d.holds.append(HoldRecord("h7", "v7", "s1", "p", 2, 600, 4600))
    d.acks.append(OrderAck("o7", "h7", "v7", 2, ""))
    d.holds.append(HoldRecord("h6", "v6", "s1", "p", 2, 600, 4600))
    d.acks.append(OrderAck("o6", "h6", "v6", 2, ""))
    extra = [_order(f"o{n}", f"h{n}", f"v{n}", 2) for n in (9, 8, 7, 6)]
    assert d.orders_store is not None
    d.orders_store.extend(extra)
    d.orders_api.extend(dict(o) for o in extra)


def _redis_sold_differs(d: RunData) -> None:
    d.final_stock = [StockSample(3.0, "p", 10, 6, 0, 4)]


def _not_conserved_midway(d: RunData) -> None:
    d.stock_samples[1] = StockSample(1.0, "p", 10, 6, 3, 0)


def _over_limit(d: RunData) -> None:
    # v1's second order takes it to 3 units in a sale with a limit of 2.
    d.holds.append(HoldRecord("h4", "v1", "s1", "p", 1, 700, 4700))
    d.acks.append(OrderAck("o4", "h4", "v1", 1, ""))
    assert d.orders_store is not None
    d.orders_store.append(_order("o4", "h4", "v1", 1))
    d.orders_api.append(_order("o4", "h4", "v1", 1))
    d.final_stock = [StockSample(3.0, "p", 10, 6, 0, 4)]


def _two_orders_one_hold(d: RunData) -> None:
    assert d.orders_store is not None
    d.orders_store.append(_order("o1b", "h2", "v2", 1))
    d.orders_api.append(_order("o1b", "h2", "v2", 1))
    d.acks.append(OrderAck("o1b", "h2", "v2", 1, ""))


def _order_without_hold(d: RunData) -> None:
    d.holds = [h for h in d.holds if h.hold_id != "h2"]


def _placed_not_stored(d: RunData) -> None:
    d.acks.append(OrderAck("o5", "h3", "v3", 1, ""))


def _stored_not_acknowledged(d: RunData) -> None:
    d.acks = [a for a in d.acks if a.order_id != "o2"]


def _coupon_over_claimed(d: RunData) -> None:
    d.claims += [Claim("c1", "v2"), Claim("c1", "v3")]


def _coupon_used_twice(d: RunData) -> None:
    d.holds.append(HoldRecord("h4", "v1", "s1", "p", 0 + 1, 700, 4700))
    d.acks.append(OrderAck("o4", "h4", "v1", 1, "c1"))
    assert d.orders_store is not None
    # A second order of v1 with the same coupon (limit 2 lets v1 buy... a third unit
    # would break the limit, so the first order is cut to one unit).
    d.orders_store[0]["quantity"] = 1
    d.orders_api[0]["quantity"] = 1
    d.holds[0].quantity = 1
    d.acks[0].quantity = 1
    d.orders_store.append(_order("o4", "h4", "v1", 1, coupon="c1"))
    d.orders_api.append(_order("o4", "h4", "v1", 1, coupon="c1"))


def _lottery_tampered(d: RunData) -> None:
    lot = d.lotteries[0]
    lot["result"]["winners"] = list(reversed(lot["result"]["winners"]))


def _lottery_lost_entry(d: RunData) -> None:
    d.entries.append(Entry("l1", "v4"))


def _unrecovered_gap(d: RunData) -> None:
    d.viewers[2].gaps.append(Gap(90, 93, "gap", ""))


def _missed_tail(d: RunData) -> None:
    d.viewers[0].last_seq = 97


def _hold_left(d: RunData) -> None:
    d.final_stock = [StockSample(3.0, "p", 10, 6, 1, 3)]
    d.stock_samples[2] = StockSample(2.0, "p", 10, 6, 1, 3)


def _chat_over_limit(d: RunData) -> None:
    d.viewers[0].chats_seen_own = 20


def _slow_buys(d: RunData) -> None:
    d.max_buy_p99_ms = 100.0
    d.buy_p99_ms = 250.0


def _api_store_disagree(d: RunData) -> None:
    d.orders_api = d.orders_api[:1]


VIOLATIONS: list[tuple[str, Callable[[RunData], None], str, list[str]]] = [
    ("oversold", _oversold, "sold <= stock", ["product p: 11 units", "stock 10"]),
    ("redis sold differs", _redis_sold_differs, "sold = confirmed orders",
     ["Redis counts 4 sold", "hold 3 units"]),
    ("orders API and store differ", _api_store_disagree, "sold = confirmed orders",
     ["orders API and store disagree", "1 only in the store"]),
    ("counters drift mid-run", _not_conserved_midway, "left + held + sold = stock",
     ["t=1.00s", "left 6 + held 3 + sold 0 = 9, stock 10"]),
    ("buyer over the limit", _over_limit, "no buyer above the per-buyer limit",
     ["buyer v1 bought 3 unit(s) in sale s1, limit 2"]),
    ("two orders for one hold", _two_orders_one_hold, "no two orders for one hold",
     ["hold h2 has 2 orders"]),
    ("order without a hold", _order_without_hold,
     "no order without a hold the generator was given", ["order o2", "hold h2"]),
    ("placed but not stored", _placed_not_stored, "every order told placed is in the store",
     ["order o5", "told placed to v3", "not in the store"]),
    ("stored but never acknowledged", _stored_not_acknowledged,
     "every stored order was acknowledged", ["order o2", "no viewer was told"]),
    ("coupons over-claimed", _coupon_over_claimed,
     "coupons claimed <= dropped, each used at most once",
     ["coupon drop c1: 3 claims acknowledged, 2 dropped"]),
    ("coupon used twice", _coupon_used_twice,
     "coupons claimed <= dropped, each used at most once",
     ["coupon c1 of buyer v1 used by 2 orders"]),
    ("lottery winners tampered", _lottery_tampered,
     "lottery winners recompute from the published seed", ["lottery l1", "winners differ"]),
    ("lottery entry lost", _lottery_lost_entry,
     "lottery winners recompute from the published seed",
     ["1 acknowledged entrant(s) missing", "v4"]),
    ("unrecovered gap", _unrecovered_gap,
     "every viewer saw sequence numbers without gaps or recovered each gap",
     ["v3 missed events after seq 90 (next seen 93)", "never recovered"]),
    ("missed tail", _missed_tail,
     "every viewer saw sequence numbers without gaps or recovered each gap",
     ["v1 stopped at seq 97", "end marker is 100"]),
    ("hold never ended", _hold_left, "every hold ended (checked out, released or expired)",
     ["product p: 1 unit(s) still held"]),
    ("chat over the rate limit", _chat_over_limit, "chat rate limit holds",
     ["v1: 20 chat(s) accepted in 2.0s over 1 connection(s), the limit allows 8.0"]),
    ("buys too slow", _slow_buys, "buy p99 within checks.max_buy_p99_ms",
     ["p99 250.0 ms, limit 100.0 ms"]),
]


@pytest.mark.parametrize(("mutate", "check", "phrases"),
                         [pytest.param(m, c, p, id=name) for name, m, c, p in VIOLATIONS])
def test_each_violation_fails_its_check_with_a_clear_message(
        mutate: Callable[[RunData], None], check: str, phrases: list[str]) -> None:
    data = good_run()
    mutate(data)
    verdicts = _by_name(check_run(data))
    assert check in verdicts, sorted(verdicts)
    verdict = verdicts[check]
    assert not verdict.ok
    for phrase in phrases:
        assert phrase in verdict.detail, verdict.detail


def test_without_a_store_the_orders_api_is_the_record() -> None:
    data = dataclasses.replace(good_run(), orders_store=None)
    assert all(c.ok for c in check_run(data))
    data.acks.append(OrderAck("o5", "h3", "v3", 1, ""))
    verdict = _by_name(check_run(data))["every order told placed is in the store"]
    assert not verdict.ok and "not in the orders API" in verdict.detail


def test_an_interrupted_run_does_not_require_holds_to_end() -> None:
    data = good_run()
    _hold_left(data)
    data.holds_must_end = False
    verdict = _by_name(check_run(data))["every hold ended (checked out, released or expired)"]
    assert verdict.ok and "cut short" in verdict.detail


def test_long_failure_lists_are_shortened_and_counted() -> None:
    data = good_run()
    data.viewers += [ViewerRecord(i, f"w{i}", first_seq=0) for i in range(3, 20)]
    verdict = _by_name(check_run(data))[
        "every viewer saw sequence numbers without gaps or recovered each gap"]
    assert not verdict.ok
    assert "never received a snapshot" in verdict.detail
    assert "(and 12 more)" in verdict.detail


def test_a_read_back_that_failed_is_named_not_compared() -> None:
    """After faults (a chaos run) the read-back may fail: the checks say what
    could not be read instead of comparing the store with an empty list."""
    data = dataclasses.replace(good_run(), orders_api=[], final_stock=[],
                               orders_api_error="HostError: GET orders: 503 unavailable",
                               audit_error="HostError: GET audit: 503 unavailable")
    verdicts = _by_name(check_run(data))
    sold = verdicts["sold = confirmed orders"]
    assert not sold.ok
    assert "the orders API could not be read back: HostError: GET orders: 503" in sold.detail
    assert "disagree" not in sold.detail
    assert "no final stock reading (the audit failed: HostError: GET audit: 503" in sold.detail
    conserved = verdicts["left + held + sold = stock"]
    assert not conserved.ok and "the audit failed" in conserved.detail
    # What was read is still checked: the store's orders against the holds given.
    assert verdicts["every order told placed is in the store"].ok


def test_a_holder_thinks_at_least_the_least_time_and_within_a_third_of_the_hold() -> None:
    from loadtest.actions import think_time

    rng = random.Random(7)
    waits = [think_time(rng, 3.0, 0.2, 15.0) for _ in range(2000)]
    assert min(waits) >= 3.0  # the bench's checkouts come after its buy burst
    assert max(waits) <= 5.0  # a third of the 15 s left
    assert 3.1 < sum(waits) / len(waits) < 3.3  # 3 s and a mean of 0.2 s on top
    assert think_time(rng, 3.0, 0.2, 6.0) == 2.0  # the cap wins over the least time
    assert think_time(rng, 0.0, 0.0, 6.0) == 0.0
