"""The load tester's auction and waitlist checks: a consistent run (an auction
with proxy bids, two extensions and a refused late snipe; a waitlist whose
units go down the line in ticket order) passes every check, and for each check
a run with exactly the violation it exists for fails it with a message saying
what broke. Chains are built with server.core.auction_chain's hashes, so a
mutated chain is re-hashed and only the rule it breaks is broken."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from loadtest.checks import (
    AUCTION_CHAIN,
    AUCTION_EXTENSIONS,
    AUCTION_HIGHEST,
    AUCTION_WINNER,
    WAITLIST_ONCE,
    WAITLIST_ORDER,
    WAITLIST_STOCK,
    Check,
    check_run,
)
from loadtest.model import (
    AuctionEvent,
    AuctionRecord,
    BidRecord,
    HoldRecord,
    RunData,
    WaitlistEvent,
    WaitlistJoin,
)
from server.core.auction_chain import entry_hash, genesis_hash
from tests.loadtest.test_checks import good_run

AID = "a_T"
A, B, C = "aaaaaaaaaaaa", "bbbbbbbbbbbb", "cccccccccccc"  # pseudonyms of v1, v2, v3
PSEUDONYM = {"v1": A, "v2": B, "v3": C}
STARTED_AT, FIRST_END, WINDOW = 100_000, 106_000, 2_000


def _terms(mode: str = "extend") -> dict[str, Any]:
    return {"auction_id": AID, "product_id": "lt-auction", "title": "Auction item",
            "currency": "EUR", "start_price": 1000,
            "increments": [{"from": 0, "step": 100}, {"from": 5000, "step": 250}],
            "anti_snipe": mode, "extend_s": WINDOW // 1000, "duration_s": 6,
            "signed_only": False, "pay_s": 60, "started_at": STARTED_AT,
            "first_ends_at": FIRST_END}


# (bidder, amount, at, kind): v1 opens; v2 leads with a maximum of 1500; v1's 1200 is
# outbid by v2's proxy at 1300; v3 snipes 1600 half a second before the end (extended
# to 107500); v1 snipes 1700 half a second before that (extended to 109000) and wins.
BIDS = [(A, 1000, 101_000, "bid"), (B, 1100, 102_000, "bid"), (B, 1300, 103_000, "proxy"),
        (C, 1600, 105_500, "bid"), (A, 1700, 107_000, "bid")]


def chain(terms: dict[str, Any], raw: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Entries with seq, prev and hash filled in from the terms' genesis (their
    ends_at as given)."""
    prev = genesis_hash(terms)
    out = []
    for seq, e in enumerate(raw, start=1):
        entry = {**e, "seq": seq, "prev": prev}
        entry["hash"] = entry_hash(prev, entry)
        prev = entry["hash"]
        out.append(entry)
    return out


def ruled_entries(mode: str) -> list[dict[str, Any]]:
    """BIDS with the end each makes by the anti-snipe rule."""
    raw, end = [], FIRST_END
    for bidder, amount, at, kind in BIDS:
        if mode == "extend" and end - at < WINDOW:
            end = at + WINDOW
        raw.append({"bidder": bidder, "amount": amount, "at": at, "ends_at": end,
                    "kind": kind})
    return chain(_terms(mode), raw)


def view(terms: dict[str, Any], entries: list[dict[str, Any]],
         ended: bool) -> dict[str, Any]:
    """The auction object as the server publishes it after these entries."""
    genesis = genesis_hash(terms)
    last = entries[-1] if entries else None
    end = FIRST_END
    moves = 0
    for e in entries:
        moves += e["ends_at"] != end
        end = e["ends_at"]
    amount = last["amount"] if last else None
    out: dict[str, Any] = {
        **terms, "has_reserve": True, "reserve_met": amount is not None and amount >= 1500,
        "buy_now_price": None, "ends_at": end, "state": "ended" if ended else "open",
        "leader": last["bidder"] if last else None, "leader_name": "lt0" if last else None,
        "amount": amount, "min_next": amount + 100 if amount else 1000,
        "bids": len(entries), "extensions": moves, "genesis": genesis,
        "head": last["hash"] if last else genesis, "result": None}
    if ended:
        out["result"] = {
            "winner": amount and last and last["bidder"], "winner_name": "lt0",
            "amount": amount, "reserve_price": 1500, "reserve_met": True,
            "ended_at": end + 10, "ended_by": "clock", "bids": len(entries),
            "head": out["head"], "hold": {"id": "h_won", "expires_at": end + 60_010,
                                          "unit_price": amount},
            "second_chance": None}
    return out


def auction_events(terms: dict[str, Any], entries: list[dict[str, Any]],
                   final: dict[str, Any]) -> list[AuctionEvent]:
    evs = [AuctionEvent(10, "auction_started", AID,
                        {"seq": 10, "type": "auction_started",
                         "auction": view(terms, [], ended=False)}, 3, ["v1", "v2", "v3"])]
    end = FIRST_END
    for e in entries:
        data = {"seq": 10 + e["seq"], "type": "auction_bid", "auction_id": AID,
                "product_id": "lt-auction", "entry": dict(e), "leader": e["bidder"],
                "leader_name": "x", "amount": e["amount"], "min_next": e["amount"] + 100,
                "ends_at": e["ends_at"], "extended": e["ends_at"] != end,
                "bids": e["seq"], "reserve_met": e["amount"] >= 1500,
                "buy_now_price": None}
        end = e["ends_at"]
        evs.append(AuctionEvent(data["seq"], "auction_bid", AID, data, 3, ["v1", "v2", "v3"]))
    seq = 11 + len(entries)
    evs.append(AuctionEvent(seq, "auction_ended", AID,
                            {"seq": seq, "type": "auction_ended", "auction": final}, 3,
                            ["v1", "v2", "v3"]))
    return evs


def _bid(rid: str, viewer: str, kind: str, amount: int, sent: float, outcome: str,
         reply: dict[str, Any], max_amount: int | None = None) -> BidRecord:
    return BidRecord(AID, viewer, rid, kind, amount, max_amount, sent, sent + 5, outcome,
                     reply)


def bids() -> list[BidRecord]:
    def placed(viewer: str, amount: int, end: int) -> dict[str, Any]:
        return {"auction_id": AID, "outcome": "leading", "amount": amount,
                "max_amount": amount, "min_next": amount + 100, "ends_at": end,
                "pseudonym": PSEUDONYM[viewer]}

    return [
        _bid("bi1n1", "v1", "plain", 1000, 100_995, "leading", placed("v1", 1000, 106_000)),
        _bid("bi2n1", "v2", "proxy", 1100, 101_995, "leading",
             {**placed("v2", 1100, 106_000), "max_amount": 1500}, max_amount=1500),
        _bid("bi1n2", "v1", "plain", 1200, 102_995, "outbid_by_proxy",
             {"code": "outbid_by_proxy", "details": {"amount": 1300, "min_next": 1400}}),
        _bid("bi3n1", "v3", "snipe", 1600, 105_495, "leading", placed("v3", 1600, 107_500)),
        _bid("bi1n3", "v1", "snipe", 1700, 106_995, "leading", placed("v1", 1700, 109_000)),
        # A late snipe, sent after the end as v2 saw it: refused.
        _bid("bi2n2", "v2", "snipe", 1800, 109_050, "auction_ended",
             {"code": "auction_ended"}),
    ]


def auction_record(mode: str = "extend") -> AuctionRecord:
    terms = _terms(mode)
    entries = ruled_entries(mode)
    final = view(terms, entries, ended=True)
    return AuctionRecord(AID, started=view(terms, [], ended=False), published=final,
                         entries=entries, chain_genesis=final["genesis"],
                         chain_head=final["head"])


# Waitlist on product p (stock 10, good_run's): h3 (v3's unit) expires at 4600 and goes
# to the head of the line, v4 (ticket 1); v4 releases it at 5000 and it goes to v5
# (ticket 2); v6 (ticket 3) is taken off at its turn (limit reached); v7 (ticket 4)
# still waits at the end.
def _offer(viewer: str, ticket: int, hold_id: str, created: int) -> dict[str, Any]:
    return {"viewer_id": viewer, "ticket": ticket,
            "hold": {"id": hold_id, "product_id": "p", "sale_id": "s1", "quantity": 1,
                     "unit_price": 100, "currency": "USD", "created_at": created,
                     "expires_at": created + 5000}}


def waitlist_joins() -> list[WaitlistJoin]:
    return [WaitlistJoin("v4", "p", 1, 1, 1000.0), WaitlistJoin("v5", "p", 2, 2, 1100.0),
            WaitlistJoin("v6", "p", 3, 3, 1200.0), WaitlistJoin("v7", "p", 4, 4, 1300.0)]


def waitlist_events() -> list[WaitlistEvent]:
    return [WaitlistEvent(200, "p", [_offer("v4", 1, "h4", 4600)], [], 4601),
            WaitlistEvent(201, "p", [_offer("v5", 2, "h5", 5000)],
                          [{"viewer_id": "v6", "ticket": "3", "reason": "limit_reached"}],
                          5001)]


def clean_run() -> RunData:
    d = good_run()
    d.holds += [HoldRecord("h4", "v4", "s1", "p", 1, 4600, 9600, released_at=5000.0),
                HoldRecord("h5", "v5", "s1", "p", 1, 5000, 10000)]
    d.waitlist_joins = waitlist_joins()
    d.waitlist_events = waitlist_events()
    rec = auction_record()
    d.auctions = [rec]
    d.bids = bids()
    assert rec.published is not None
    d.auction_events = auction_events(_terms(), rec.entries, rec.published)
    return d


def _by_name(checks: list[Check]) -> dict[str, Check]:
    return {c.name: c for c in checks}


def test_a_consistent_auction_and_waitlist_run_passes_every_check() -> None:
    checks = check_run(clean_run())
    failed = [c for c in checks if not c.ok]
    assert not failed, failed
    names = {c.name for c in checks}
    assert {AUCTION_WINNER, AUCTION_HIGHEST, AUCTION_EXTENSIONS, AUCTION_CHAIN,
            WAITLIST_STOCK, WAITLIST_ORDER, WAITLIST_ONCE} <= names
    detail = _by_name(checks)
    assert "2 extension(s)" in detail[AUCTION_EXTENSIONS].detail
    assert "5 chain entr(ies) verified" in detail[AUCTION_CHAIN].detail
    assert "2 offered unit(s)" in detail[WAITLIST_STOCK].detail


def test_runs_without_auctions_or_waitlists_have_no_such_checks() -> None:
    names = {c.name for c in check_run(good_run())}
    assert not names & {AUCTION_WINNER, AUCTION_HIGHEST, AUCTION_EXTENSIONS, AUCTION_CHAIN,
                        WAITLIST_STOCK, WAITLIST_ORDER, WAITLIST_ONCE}


def test_a_sudden_death_auction_without_extensions_passes() -> None:
    d = clean_run()
    # In sudden death nothing moves the end: v1's 1700 at 107000 would come after it.
    _republish(d, ruled_entries("sudden_death")[:4], mode="sudden_death")
    d.bids = [b for b in bids() if b.request_id not in ("bi1n3", "bi3n1")]
    failed = [c for c in check_run(d) if not c.ok]
    assert not failed, failed
    assert "0 extension(s)" in _by_name(check_run(d))[AUCTION_EXTENSIONS].detail


# ------------------------------------------------------------------ violations

def _republish(d: RunData, entries: list[dict[str, Any]], mode: str = "extend") -> None:
    """The auction as published after `entries` (re-hashed), with matching events."""
    rec = d.auctions[0]
    terms = _terms(mode)
    rec.entries = chain(terms, [{k: e[k] for k in ("bidder", "amount", "at", "ends_at",
                                                   "kind")} for e in entries])
    rec.started = view(terms, [], ended=False)
    rec.published = view(terms, rec.entries, ended=True)
    rec.chain_genesis, rec.chain_head = rec.published["genesis"], rec.published["head"]
    d.auction_events = auction_events(terms, rec.entries, rec.published)


def _two_winners(d: RunData) -> None:
    # Some viewers were told the auction ended with another winner.
    ended = next(ev for ev in d.auction_events if ev.kind == "auction_ended")
    other = copy.deepcopy(ended.data)
    other["auction"]["result"]["winner"] = B
    d.auction_events.append(AuctionEvent(ended.seq, ended.kind, AID, other, 2, ["v9"]))


def _no_winner(d: RunData) -> None:
    pub = d.auctions[0].published
    assert pub is not None
    pub["result"]["winner"] = None
    for ev in d.auction_events:
        if ev.kind == "auction_ended":
            ev.data["auction"]["result"]["winner"] = None


def _winner_below_highest(d: RunData) -> None:
    # The result names v3's 1600, the bid before the highest accepted (v1's 1700).
    pub = d.auctions[0].published
    assert pub is not None
    pub["result"].update(winner=C, amount=1600)
    for ev in d.auction_events:
        if ev.kind == "auction_ended":
            ev.data["auction"]["result"].update(winner=C, amount=1600)


def _bid_told_leading_after_the_end(d: RunData) -> None:
    late = d.bids[-1]
    late.outcome = "leading"
    late.reply = {"auction_id": AID, "outcome": "leading", "amount": 1800,
                  "max_amount": 1800, "min_next": 1900, "ends_at": 109_000,
                  "pseudonym": B}


def _entry_after_the_end(d: RunData) -> None:
    entries = ruled_entries("extend")
    entries.append({"bidder": B, "amount": 1800, "at": 109_200, "ends_at": 109_000,
                    "kind": "bid"})
    _republish(d, entries)


def _extension_outside_the_window(d: RunData) -> None:
    # v2's bid 4000 ms before the end moves it (the window is 2000 ms).
    entries = ruled_entries("extend")
    entries[1]["ends_at"] = entries[1]["at"] + WINDOW + 5000  # 109000
    for e in entries[2:]:
        e["ends_at"] = max(e["ends_at"], 109_000)
    _republish(d, entries)


def _extension_in_sudden_death(d: RunData) -> None:
    _republish(d, ruled_entries("extend"), mode="sudden_death")


def _broken_hash_link(d: RunData) -> None:
    entry = d.auctions[0].entries[2]
    entry["prev"] = "0" * 40
    entry["hash"] = entry_hash(entry["prev"], entry)  # recomputes; the link does not


def _shown_entry_differs(d: RunData) -> None:
    shown = next(ev for ev in d.auction_events if ev.kind == "auction_bid")
    shown.data["entry"]["amount"] = 1050


def _leading_bid_not_in_chain(d: RunData) -> None:
    d.bids[0].reply["amount"] = 1050


def _waitlist_out_of_order(d: RunData) -> None:
    # The first unit goes to ticket 2 while ticket 1 still waits.
    d.waitlist_events = [
        WaitlistEvent(200, "p", [_offer("v5", 2, "h4", 4600)], [], 4601),
        WaitlistEvent(201, "p", [_offer("v4", 1, "h5", 5000)], [], 5001)]
    d.holds = [h for h in d.holds if h.hold_id not in ("h4", "h5")]


def _waitlist_beyond_stock(d: RunData) -> None:
    # Nine units held by v9 when v4 is offered one: 2 + 1 sold, 9 + 1 held = 13 > 10.
    d.holds.append(HoldRecord("h9", "v9", "s1", "p", 9, 4000, 20000))


def _waitlist_offered_twice(d: RunData) -> None:
    d.waitlist_events.append(WaitlistEvent(202, "p", [_offer("v4", 1, "h6", 5500)], [],
                                           5501))


VIOLATIONS: list[tuple[str, Callable[[RunData], None], str, list[str]]] = [
    ("two winners", _two_winners, AUCTION_WINNER,
     ["auction a_T: 2 winners", f"{A} (the published result", f"{B} (auction_ended seq 16 "
      "(2 viewer(s), e.g. v9))"]),
    ("bids accepted, reserve met, no winner", _no_winner, AUCTION_WINNER,
     ["5 bid(s) accepted (the last 1700", "reserve 1500 met, but no winner"]),
    ("winner below the highest accepted bid", _winner_below_highest, AUCTION_HIGHEST,
     [f"the winner {C} pays 1600", f"the highest accepted bid is 1700 by {A} (entry 5)"]),
    ("a bid told leading after the end", _bid_told_leading_after_the_end, AUCTION_HIGHEST,
     ["bid bi2n2 of v2 sent at 109050, 50 ms after the end 109000, was told leading"]),
    ("a chain entry after the end", _entry_after_the_end, AUCTION_HIGHEST,
     ["entry 6 (bid by bbbbbbbbbbbb at 1800) was accepted at 109200, 200 ms after the end "
      "in force 109000"]),
    ("an extension without an in-window bid", _extension_outside_the_window,
     AUCTION_EXTENSIONS,
     ["entry 2 (bid by bbbbbbbbbbbb at 102000) moved the end from 106000 to 109000, but was "
      "4000 ms before it, outside the 2000 ms extend window"]),
    ("an extension in sudden death", _extension_in_sudden_death, AUCTION_EXTENSIONS,
     ["auction a_T (sudden_death): entry 4 (bid by cccccccccccc at 105500) moved the end "
      "from 106000 to 107500", "said the end was extended"]),
    ("a broken hash link", _broken_hash_link, AUCTION_CHAIN,
     ["auction a_T: entry 3: prev '" + "0" * 40 + "' is not the previous hash"]),
    ("viewers shown another entry", _shown_entry_differs, AUCTION_CHAIN,
     ["entry 1 as auction_bid seq 11", "differs from the published one"]),
    ("a bid told leading that is not in the chain", _leading_bid_not_in_chain,
     AUCTION_CHAIN, ["bid bi1n1 of v1 was told it leads at 1050", "no chain entry has it"]),
    ("waitlist offered out of order", _waitlist_out_of_order, WAITLIST_ORDER,
     ["product p: ticket 2 (v5) was offered a unit (event seq 200) while ticket 1 (v4), "
      "ahead of it, was still waiting"]),
    ("waitlist offered beyond stock", _waitlist_beyond_stock, WAITLIST_STOCK,
     ["product p: hold h4 offered to v4 (ticket 1, event seq 200) at 4600: 13 unit(s) held "
      "or sold then, stock 10"]),
    ("one place offered twice", _waitlist_offered_twice, WAITLIST_ONCE,
     ["product p: ticket 1 (v4) was offered 2 times (event seq 200, 202; holds h4, h6)",
      "v4 joined the line for 1 place(s) but was offered 2 unit(s)"]),
]


@pytest.mark.parametrize(("mutate", "check", "phrases"),
                         [pytest.param(m, c, p, id=name) for name, m, c, p in VIOLATIONS])
def test_each_violation_fails_its_check_with_a_clear_message(
        mutate: Callable[[RunData], None], check: str, phrases: list[str]) -> None:
    data = clean_run()
    mutate(data)
    verdicts = _by_name(check_run(data))
    assert check in verdicts, sorted(verdicts)
    verdict = verdicts[check]
    assert not verdict.ok
    for phrase in phrases:
        assert phrase in verdict.detail, verdict.detail


def test_an_auction_that_could_not_be_read_back_is_named() -> None:
    d = clean_run()
    d.auctions[0].published = None
    d.auctions[0].error = "HostError: GET /api/rooms/r/auctions/a_T: 503 unavailable"
    verdicts = _by_name(check_run(d))
    for name in (AUCTION_WINNER, AUCTION_HIGHEST, AUCTION_EXTENSIONS, AUCTION_CHAIN):
        assert not verdicts[name].ok
        assert "auction a_T could not be read back: HostError" in verdicts[name].detail


def test_a_viewer_who_was_away_may_be_passed_over() -> None:
    """The server passes over a waiting viewer with no open connection: an offer
    past one who lost its connection during the run is no fault."""
    d = clean_run()
    _waitlist_out_of_order(d)
    assert not _by_name(check_run(d))[WAITLIST_ORDER].ok
    d.viewers[0].viewer_id = "v4"
    d.viewers[0].reconnects = 1
    assert _by_name(check_run(d))[WAITLIST_ORDER].ok
