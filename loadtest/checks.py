"""The correctness checker: a pure function from one run's collected data to one
verdict per invariant.

Each check names the invariant, says whether it held and, when it did not,
what broke (which product, buyer, hold, order, coupon, lottery, waitlist
ticket, auction, bid, group, vote, inviter, invitee or viewer, and the
numbers). No I/O, no
clock: the same data always gives the same verdicts, so each check is tested
by feeding it a run with exactly that violation.

An auction's bid chain is verified by `server.core.auction_chain.verify`, the
one implementation of docs/protocol.md "Verifying an auction" (the server's
verifier); the checks here hold the run's own records (every bid's answer,
every auction event the viewers received) to what the server published.
"""

from __future__ import annotations

import bisect
import itertools
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from loadtest.model import (
    AuctionEvent,
    AuctionRecord,
    BidRecord,
    GroupDealRecord,
    HoldRecord,
    PollRecord,
    ReferralAnswer,
    RunData,
    SocialEvent,
)
from server.core.auction_chain import verify as verify_auction_chain
from server.core.auction_terms import hold_sale_id
from server.core.domain import verify_lottery

SHOWN = 5  # problems quoted per failed check; the rest are counted


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "detail": self.detail}


def _verdict(name: str, problems: list[str], fine: str) -> Check:
    if not problems:
        return Check(name, True, fine)
    shown = "; ".join(problems[:SHOWN])
    more = f" (and {len(problems) - SHOWN} more)" if len(problems) > SHOWN else ""
    return Check(name, False, shown + more)


def _store_orders(d: RunData) -> tuple[list[dict[str, Any]], str]:
    if d.orders_store is not None:
        return d.orders_store, "store"
    return d.orders_api, "orders API"


def _no_final_stock(d: RunData) -> str:
    return "no final stock reading" + (f" (the audit failed: {d.audit_error})"
                                       if d.audit_error else "")


def _units_by_product(orders: Iterable[dict[str, Any]]) -> Counter[str]:
    units: Counter[str] = Counter()
    for o in orders:
        units[str(o["product_id"])] += int(o["quantity"])
    return units


def sold_within_stock(d: RunData) -> Check:
    orders, source = _store_orders(d)
    units = _units_by_product(orders)
    problems = []
    for pid, stock in sorted(d.products.items()):
        if units[pid] > stock:
            problems.append(f"product {pid}: {units[pid]} units in the {source}, stock {stock}")
        final = [s for s in d.final_stock if s.product_id == pid]
        if final and final[-1].sold > stock:
            problems.append(f"product {pid}: Redis counts {final[-1].sold} sold, stock {stock}")
    for sale in d.sales:
        sold = sum(int(o["quantity"]) for o in orders if o["sale_id"] == sale.sale_id)
        if sold > sale.units:
            problems.append(f"sale {sale.sale_id}: {sold} units sold, the sale offered "
                            f"{sale.units}")
    total = sum(units[p] for p in d.products)
    return _verdict("sold <= stock", problems,
                    f"{total} unit(s) sold of {sum(d.products.values())} in stock")


def sold_equals_orders(d: RunData) -> Check:
    orders, source = _store_orders(d)
    units = _units_by_product(orders)
    problems = []
    if not d.final_stock and d.products:
        problems.append(_no_final_stock(d))
    for s in d.final_stock:
        if s.product_id in d.products and s.sold != units[s.product_id]:
            problems.append(f"product {s.product_id}: Redis counts {s.sold} sold, confirmed "
                            f"orders in the {source} hold {units[s.product_id]} units")
    if d.orders_api_error:
        problems.append(f"the orders API could not be read back: {d.orders_api_error}")
    elif d.orders_store is not None:
        api = {o["order_id"] for o in d.orders_api}
        store = {o["order_id"] for o in d.orders_store}
        if api != store:
            problems.append(f"orders API and store disagree: {len(api - store)} only in the "
                            f"API, {len(store - api)} only in the store")
    for c in d.server_audit_failed:
        problems.append(f"server audit: {c.get('name')}: {c.get('detail')}")
    return _verdict("sold = confirmed orders", problems,
                    f"{sum(units.values())} unit(s) in {len(orders)} order(s), as Redis counts")


def stock_conserved(d: RunData) -> Check:
    problems = []
    samples = [*d.stock_samples, *d.final_stock]
    for s in samples:
        if s.product_id not in d.products:
            continue
        stock = d.products[s.product_id]
        if s.left + s.held + s.sold != stock or s.total != stock:
            problems.append(f"product {s.product_id} at t={s.t:.2f}s: left {s.left} + held "
                            f"{s.held} + sold {s.sold} = {s.left + s.held + s.sold}, stock "
                            f"{stock} (Redis total {s.total})")
        elif min(s.left, s.held, s.sold) < 0:
            problems.append(f"product {s.product_id} at t={s.t:.2f}s: a negative counter "
                            f"(left {s.left}, held {s.held}, sold {s.sold})")
    if d.products and not d.final_stock:
        problems.append(_no_final_stock(d))
    return _verdict("left + held + sold = stock", problems,
                    f"held at {len(samples)} sampled moment(s), the end included")


def per_buyer_limit(d: RunData) -> Check:
    orders, _ = _store_orders(d)
    limits = {s.sale_id: s.limit_per_buyer for s in d.sales}
    # An auction's winner holds its one unit under a sale-like id (one unit, one buyer);
    # a group deal's orders carry the deal's id (one unit per buyer).
    limits.update({hold_sale_id(a.auction_id): 1 for a in d.auctions})
    limits.update({deal.deal_id: 1 for deal in d.group_deals})
    bought: Counter[tuple[str, str]] = Counter()
    for o in orders:
        bought[(str(o["sale_id"]), str(o["buyer_id"]))] += int(o["quantity"])
    problems = []
    for (sale_id, buyer), n in sorted(bought.items()):
        limit = limits.get(sale_id)
        if limit is None:
            problems.append(f"order of buyer {buyer} in unknown sale {sale_id}")
        elif n > limit:
            problems.append(f"buyer {buyer} bought {n} unit(s) in sale {sale_id}, limit {limit}")
    return _verdict("no buyer above the per-buyer limit", problems,
                    f"{len(bought)} buyer(s) within their limits")


def one_order_per_hold(d: RunData) -> Check:
    orders, source = _store_orders(d)
    by_hold = Counter(str(o["hold_id"]) for o in orders)
    by_id = Counter(str(o["order_id"]) for o in orders)
    problems = [f"hold {h} has {n} orders in the {source}"
                for h, n in sorted(by_hold.items()) if n > 1]
    problems += [f"order id {o} appears {n} times" for o, n in sorted(by_id.items()) if n > 1]
    return _verdict("no two orders for one hold", problems,
                    f"{len(by_hold)} hold(s), one order each")


def orders_have_holds(d: RunData) -> Check:
    orders, _ = _store_orders(d)
    given = {h.hold_id: h for h in d.holds}
    problems = []
    for o in orders:
        hold = given.get(str(o["hold_id"]))
        if hold is None:
            problems.append(f"order {o['order_id']} is for hold {o['hold_id']}, which no "
                            "viewer was given")
        elif hold.viewer_id != o["buyer_id"] or hold.quantity != int(o["quantity"]):
            problems.append(f"order {o['order_id']} (buyer {o['buyer_id']}, "
                            f"{o['quantity']} unit(s)) differs from hold {hold.hold_id} "
                            f"(viewer {hold.viewer_id}, {hold.quantity} unit(s))")
    return _verdict("no order without a hold the generator was given", problems,
                    f"{len(orders)} order(s) match holds among {len(given)} given")


def placed_orders_stored(d: RunData) -> Check:
    orders, source = _store_orders(d)
    stored = {str(o["order_id"]): o for o in orders}
    problems = []
    for ack in d.acks:
        o = stored.get(ack.order_id)
        if o is None:
            problems.append(f"order {ack.order_id} (hold {ack.hold_id}) was told placed to "
                            f"{ack.viewer_id} but is not in the {source}")
        elif o["hold_id"] != ack.hold_id or int(o["quantity"]) != ack.quantity:
            problems.append(f"order {ack.order_id}: told hold {ack.hold_id} x{ack.quantity}, "
                            f"{source} has hold {o['hold_id']} x{o['quantity']}")
    return _verdict("every order told placed is in the store", problems,
                    f"{len({a.order_id for a in d.acks})} acknowledged order(s) found "
                    f"in the {source}")


def stored_orders_acknowledged(d: RunData) -> Check:
    orders, source = _store_orders(d)
    acked = {a.order_id for a in d.acks}
    problems = [f"order {o['order_id']} (hold {o['hold_id']}, buyer {o['buyer_id']}) is in "
                f"the {source} but no viewer was told it was placed"
                for o in orders if o["order_id"] not in acked]
    return _verdict("every stored order was acknowledged", problems,
                    f"{len(orders)} stored order(s), each acknowledged")


def coupons(d: RunData) -> Check:
    orders, _ = _store_orders(d)
    counts = {c.coupon_id: c.count for c in d.coupons}
    claims: defaultdict[str, Counter[str]] = defaultdict(Counter)
    for c in d.claims:
        claims[c.coupon_id][c.viewer_id] += 1
    problems = []
    for cid, by_viewer in sorted(claims.items()):
        if cid not in counts:
            problems.append(f"claims acknowledged for unknown coupon drop {cid}")
            continue
        if len(by_viewer) > counts[cid]:
            problems.append(f"coupon drop {cid}: {len(by_viewer)} claims acknowledged, "
                            f"{counts[cid]} dropped")
    uses: Counter[tuple[str, str]] = Counter()
    for o in orders:
        cid = str(o.get("coupon_id") or "")
        if not cid:
            continue
        uses[(cid, str(o["buyer_id"]))] += 1
        if claims[cid][str(o["buyer_id"])] == 0:
            problems.append(f"order {o['order_id']} used coupon {cid}, which buyer "
                            f"{o['buyer_id']} was never told it claimed")
    problems += [f"coupon {cid} of buyer {b} used by {n} orders"
                 for (cid, b), n in sorted(uses.items()) if n > 1]
    per_drop = Counter(cid for cid, _ in uses)
    problems += [f"coupon drop {cid}: used {n} times, {counts[cid]} dropped"
                 for cid, n in sorted(per_drop.items()) if cid in counts and n > counts[cid]]
    return _verdict("coupons claimed <= dropped, each used at most once", problems,
                    f"{len(d.claims)} claim(s) of {sum(counts.values())} coupon(s), "
                    f"{sum(uses.values())} used")


def lotteries(d: RunData) -> Check:
    problems = []
    entered: defaultdict[str, set[str]] = defaultdict(set)
    for e in d.entries:
        entered[e.lottery_id].add(e.viewer_id)
    seen = set()
    for lot in d.lotteries:
        lid = str(lot.get("lottery_id"))
        seen.add(lid)
        result = lot.get("result")
        if not isinstance(result, dict):
            problems.append(f"lottery {lid} was not drawn (state {lot.get('state')!r})")
            continue
        outcome = verify_lottery({"seed_hash": lot.get("seed_hash"),
                                  "winners_count": lot.get("winners_count"), **result})
        problems += [f"lottery {lid}: {p}" for p in outcome.problems]
        missing = entered[lid] - {str(e) for e in result.get("entrants", [])}
        if missing:
            problems.append(f"lottery {lid}: {len(missing)} acknowledged entrant(s) missing "
                            f"from the published list, e.g. {sorted(missing)[0]}")
    for lid in sorted(set(entered) - seen):
        problems.append(f"lottery {lid}: entries acknowledged but no published record")
    return _verdict("lottery winners recompute from the published seed", problems,
                    f"{len(d.lotteries)} lottery(ies) verified with server.core.domain."
                    "verify_lottery")


def sequence_numbers(d: RunData) -> Check:
    problems = []
    gaps = recovered = 0
    for v in d.viewers:
        name = v.viewer_id or f"viewer #{v.index}"
        for g in v.gaps:
            gaps += 1
            if g.recovered:
                recovered += 1
            else:
                what = (f"missed events after seq {g.after} (next seen {g.got})"
                        if g.cause == "gap" else f"dropped after seq {g.after}")
                problems.append(f"{name} {what} and never recovered by resume or snapshot")
        if v.first_seq == 0:
            problems.append(f"{name} never received a snapshot or resume point")
        elif d.final_seq and v.connected_at_end and v.last_seq < d.final_seq:
            problems.append(f"{name} stopped at seq {v.last_seq}, the end marker is "
                            f"{d.final_seq}: later events never arrived")
    return _verdict("every viewer saw sequence numbers without gaps or recovered each gap",
                    problems, f"{len(d.viewers)} viewer(s); {gaps} gap(s), all {recovered} "
                    "recovered")


def holds_ended(d: RunData) -> Check:
    if not d.holds_must_end:
        return Check("every hold ended (checked out, released or expired)", True,
                     "not checked: the run was cut short")
    problems = [f"product {s.product_id}: {s.held} unit(s) still held after the show"
                for s in d.final_stock if s.product_id in d.products and s.held]
    return _verdict("every hold ended (checked out, released or expired)", problems,
                    f"{len(d.holds)} hold(s) given, none left at the end")


def chat_rate_limit(d: RunData) -> Check | None:
    if d.chat_limit is None or not any(v.chats_sent for v in d.viewers):
        return None
    rate, burst = d.chat_limit
    problems = []
    for v in d.viewers:
        # The bucket is per connection: each reconnect starts with a full burst.
        allowed = burst * (1 + v.reconnects) + rate * v.chat_active_s + 1
        if v.chats_seen_own > allowed:
            problems.append(f"{v.viewer_id or v.index}: {v.chats_seen_own} chat(s) accepted "
                            f"in {v.chat_active_s:.1f}s over {1 + v.reconnects} "
                            f"connection(s), the limit allows {allowed:.1f}")
    sent = sum(v.chats_sent for v in d.viewers)
    refused = sum(v.chats_refused for v in d.viewers)
    return _verdict("chat rate limit holds", problems,
                    f"{sent} chat(s) sent, {refused} refused as rate_limited")


def slos(d: RunData) -> list[Check]:
    out = []
    if d.max_buy_p99_ms:
        p99 = d.buy_p99_ms
        ok = p99 is not None and p99 <= d.max_buy_p99_ms
        out.append(Check("buy p99 within checks.max_buy_p99_ms", ok,
                         f"p99 {p99} ms, limit {d.max_buy_p99_ms} ms"))
    if d.min_reach:
        reach = d.reach
        ok = reach is not None and reach >= d.min_reach
        out.append(Check("fan-out reach at least checks.min_reach", ok,
                         f"reach {reach}, minimum {d.min_reach}"))
    return out


# ------------------------------------------------------------------ waitlists

WAITLIST_STOCK = "waitlist offers stay within stock (units held + sold <= stock at each offer)"
WAITLIST_ORDER = "waitlist offers go in ticket (join) order among the viewers still waiting"
WAITLIST_ONCE = "no viewer is offered twice for one waitlist place"


def _int(value: Any) -> int:
    """An integer that may come as text (Redis scores: "17" or "17.0")."""
    return int(float(value)) if isinstance(value, str) else int(value)


def _offers(d: RunData, product_id: str | None = None) -> list[tuple[int, dict[str, Any]]]:
    """(event seq, offer) for every unit offered, in seq order."""
    return [(ev.seq, o) for ev in d.waitlist_events
            if product_id is None or ev.product_id == product_id for o in ev.offers]


def waitlist_within_stock(d: RunData) -> Check:
    """At the instant each unit is offered, the units held (every hold the crowd
    was given or offered and had not ended) and sold must fit in the stock. A hold
    ends at its expiry, at the release its holder sent (the generator's reading of
    the server clock before sending it: the unit was freed later), or never once
    checked out; a unit freed later than that is never counted as freed early."""
    orders, _ = _store_orders(d)
    settled = {a.hold_id for a in d.acks} | {str(o["hold_id"]) for o in orders}
    holds: dict[str, HoldRecord] = {h.hold_id: h for h in d.holds}
    for ev in d.waitlist_events:
        for o in ev.offers:
            h = o.get("hold") or {}
            if h.get("id") and h["id"] not in holds:
                holds[h["id"]] = HoldRecord(
                    str(h["id"]), str(o.get("viewer_id")), str(h.get("sale_id", "")),
                    str(h.get("product_id", ev.product_id)), int(h.get("quantity", 1)),
                    int(h["created_at"]), int(h["expires_at"]))
    problems = []
    checked = 0
    for pid in sorted({ev.product_id for ev in d.waitlist_events}):
        stock = d.products.get(pid)
        if stock is None:
            continue
        mine = [h for h in holds.values() if h.product_id == pid]
        starts = sorted(h.created_at for h in mine for _ in range(h.quantity))
        ends = sorted(_hold_end(h, settled) for h in mine for _ in range(h.quantity))
        for seq, offer in _offers(d, pid):
            hold = offer.get("hold") or {}
            t = int(hold.get("created_at", 0))
            live = bisect.bisect_right(starts, t) - bisect.bisect_right(ends, t)
            checked += 1
            if live > stock:
                problems.append(f"product {pid}: hold {hold.get('id')} offered to "
                                f"{offer.get('viewer_id')} (ticket {offer.get('ticket')}, "
                                f"event seq {seq}) at {t}: {live} unit(s) held or sold "
                                f"then, stock {stock}")
    return _verdict(WAITLIST_STOCK, problems,
                    f"{checked} offered unit(s), each within its product's stock")


def _hold_end(h: HoldRecord, settled: set[str]) -> float:
    if h.hold_id in settled:
        return float("inf")
    return min(float(h.expires_at), h.released_at) if h.released_at else float(h.expires_at)


def _away(d: RunData) -> set[str]:
    """Viewers who lost a connection during the run: the server passes over a
    waiting viewer while it is away, so an offer past one of them is no fault."""
    return {v.viewer_id for v in d.viewers
            if v.reconnects or v.close_codes or any(g.cause == "disconnect" for g in v.gaps)}


def waitlist_order(d: RunData) -> Check:
    """Each offer goes to the lowest ticket still waiting: a ticket below the one
    offered, joined (so it was in line before it), and not yet offered or taken
    off by an earlier step, was skipped (unless its viewer was ever away)."""
    away = _away(d)
    problems = []
    offers = 0
    for pid in sorted({ev.product_id for ev in d.waitlist_events}
                      | {j.product_id for j in d.waitlist_joins}):
        joined = {j.ticket: j.viewer_id for j in d.waitlist_joins if j.product_id == pid}
        waiting = sorted(joined)
        removed: set[int] = set()
        for ev in (e for e in d.waitlist_events if e.product_id == pid):
            # One step serves the line from its head: whoever it took off was ahead.
            for gone in ev.dropped:
                removed.add(_int(gone.get("ticket")))
            for offer in ev.offers:
                offers += 1
                ticket = _int(offer.get("ticket"))
                for ahead in waiting[:bisect.bisect_left(waiting, ticket)]:
                    if ahead in removed or joined[ahead] in away:
                        continue
                    problems.append(
                        f"product {pid}: ticket {ticket} ({offer.get('viewer_id')}) was "
                        f"offered a unit (event seq {ev.seq}) while ticket {ahead} "
                        f"({joined[ahead]}), ahead of it, was still waiting")
                removed.add(ticket)
    return _verdict(WAITLIST_ORDER, problems,
                    f"{offers} offer(s) in ticket order; {len(d.waitlist_joins)} place(s) "
                    f"joined")


def waitlist_once(d: RunData) -> Check:
    problems = []
    for pid in sorted({ev.product_id for ev in d.waitlist_events}):
        joined = {j.ticket: j.viewer_id for j in d.waitlist_joins if j.product_id == pid}
        tickets_of: defaultdict[str, set[int]] = defaultdict(set)
        for j in d.waitlist_joins:
            if j.product_id == pid:
                tickets_of[j.viewer_id].add(j.ticket)
        by_ticket: defaultdict[int, list[tuple[int, str, str]]] = defaultdict(list)
        by_hold: Counter[str] = Counter()
        by_viewer: Counter[str] = Counter()
        for seq, offer in _offers(d, pid):
            ticket, viewer = _int(offer.get("ticket")), str(offer.get("viewer_id"))
            hold_id = str((offer.get("hold") or {}).get("id"))
            by_ticket[ticket].append((seq, viewer, hold_id))
            by_hold[hold_id] += 1
            by_viewer[viewer] += 1
            if ticket in joined and joined[ticket] != viewer:
                problems.append(f"product {pid}: ticket {ticket} was joined by "
                                f"{joined[ticket]} but offered to {viewer} (event seq {seq})")
        for ticket, got in sorted(by_ticket.items()):
            if len(got) > 1:
                problems.append(
                    f"product {pid}: ticket {ticket} ({got[0][1]}) was offered {len(got)} "
                    f"times (event seq {', '.join(str(g[0]) for g in got)}; holds "
                    f"{', '.join(g[2] for g in got)})")
        problems += [f"product {pid}: hold {h} was offered {n} times"
                     for h, n in sorted(by_hold.items()) if n > 1]
        for viewer, n in sorted(by_viewer.items()):
            places = len(tickets_of.get(viewer, ()))
            if places and n > places:
                problems.append(f"product {pid}: {viewer} joined the line for {places} "
                                f"place(s) but was offered {n} unit(s)")
    return _verdict(WAITLIST_ONCE, problems,
                    f"{len(_offers(d))} offer(s), one per place")


# ------------------------------------------------------------------ auctions

AUCTION_WINNER = ("an auction has one winner (at most one; exactly one when a bid was "
                  "accepted and the reserve met)")
AUCTION_HIGHEST = ("the winner pays the highest accepted bid, and no bid was accepted after "
                   "the end")
AUCTION_EXTENSIONS = ("every extension of an auction's end came from an accepted bid inside "
                      "the extend window (none in sudden_death)")
AUCTION_CHAIN = ("the auction's bid chain verifies (server.core.auction_chain.verify) and "
                 "holds what the viewers were shown and told")
ACCEPTED = ("leading", "won")  # bid_placed outcomes that made a chain entry of the bidder's


def _unread(rec: AuctionRecord) -> str:
    return (f"auction {rec.auction_id} could not be read back"
            + (f": {rec.error}" if rec.error else ""))


def _first_end(rec: AuctionRecord) -> int:
    """The end in force before any bid: the published `first_ends_at`, else the
    start answer's `ends_at`, else the terms' start + duration."""
    pub = rec.published or {}
    for source, key in ((pub, "first_ends_at"), (rec.started, "first_ends_at"),
                        (rec.started, "ends_at")):
        if source.get(key) is not None:
            return int(source[key])
    return int(pub.get("started_at", 0)) + int(pub.get("duration_s", 0)) * 1000


def _ends_before(rec: AuctionRecord) -> list[int]:
    """The end in force before each chain entry."""
    out, end = [], _first_end(rec)
    for e in rec.entries:
        out.append(end)
        end = int(e["ends_at"])
    return out


def _end_at(rec: AuctionRecord, t: float) -> int:
    """The end in force at time `t` (by the chain's entries accepted by then)."""
    end = _first_end(rec)
    for e in rec.entries:
        if int(e["at"]) > t:
            break
        end = int(e["ends_at"])
    return end


def _events(d: RunData, aid: str, kind: str) -> list[AuctionEvent]:
    return [ev for ev in d.auction_events if ev.auction_id == aid and ev.kind == kind]


def _bids(d: RunData, aid: str) -> list[BidRecord]:
    return [b for b in d.bids if b.auction_id == aid]


def _who(ev: AuctionEvent) -> str:
    seen = f"{ev.receipts} viewer(s)" + (f", e.g. {ev.viewers[0]}" if ev.viewers else "")
    return f"{ev.kind} seq {ev.seq} ({seen})"


def auction_winner(d: RunData) -> Check:
    problems = []
    for rec in d.auctions:
        aid, pub = rec.auction_id, rec.published
        if pub is None:
            problems.append(_unread(rec))
            continue
        if pub.get("state") == "open":
            problems.append(f"auction {aid} was still open at the read-back (ends_at "
                            f"{pub.get('ends_at')})")
            continue
        result = pub.get("result") or {}
        winners: defaultdict[str, list[str]] = defaultdict(list)
        if result.get("winner"):
            winners[str(result["winner"])].append("the published result")
        ended = _events(d, aid, "auction_ended")
        for ev in ended:
            told = ((ev.data.get("auction") or {}).get("result") or {}).get("winner")
            if told:
                winners[str(told)].append(_who(ev))
        for b in _bids(d, aid):
            if b.outcome == "won":
                winners[str(b.reply.get("pseudonym"))].append(
                    f"bid {b.request_id} of {b.viewer_id} told won")
        if len(winners) > 1:
            problems.append(f"auction {aid}: {len(winners)} winners: " + "; ".join(
                f"{w} ({', '.join(src[:2])})" for w, src in sorted(winners.items())))
        if len({ev.seq for ev in ended}) > 1:
            problems.append(f"auction {aid} ended {len({ev.seq for ev in ended})} times "
                            f"(auction_ended seq {', '.join(str(ev.seq) for ev in ended)})")
        reserve = result.get("reserve_price")
        winner = result.get("winner")
        if not rec.entries:
            if winner:
                problems.append(f"auction {aid}: winner {winner} but no bid in the chain")
            continue
        if result.get("ended_by") == "cancelled":
            continue
        last = rec.entries[-1]
        met = reserve is None or int(last["amount"]) >= int(reserve)
        if met and not winner:
            problems.append(f"auction {aid}: {len(rec.entries)} bid(s) accepted (the last "
                            f"{last['amount']} by {last['bidder']}) and the reserve "
                            f"{'(none)' if reserve is None else reserve} met, but no winner")
        elif not met and winner:
            problems.append(f"auction {aid}: winner {winner} at {last['amount']} although "
                            f"the reserve {reserve} was not met")
    return _verdict(AUCTION_WINNER, problems,
                    f"{len(d.auctions)} auction(s), each with one winner or none by the "
                    "rules")


def auction_highest(d: RunData) -> Check:
    problems = []
    accepted = 0
    for rec in d.auctions:
        aid, pub = rec.auction_id, rec.published
        if pub is None:
            problems.append(_unread(rec))
            continue
        result = pub.get("result") or {}
        entries = rec.entries
        top = max((int(e["amount"]) for e in entries), default=None)
        if entries and result.get("winner"):
            last = entries[-1]
            paid = int(result.get("amount") or 0)
            if result["winner"] != last["bidder"] or paid != int(last["amount"]):
                problems.append(f"auction {aid}: the winner {result['winner']} pays "
                                f"{result.get('amount')}, the highest accepted bid is "
                                f"{last['amount']} by {last['bidder']} (entry {last['seq']})")
            if top is not None and int(last["amount"]) < top:
                problems.append(f"auction {aid}: the last entry's {last['amount']} is below "
                                f"the chain's highest {top}")
        for b in _bids(d, aid):
            if b.outcome not in ACCEPTED:
                continue
            accepted += 1
            told = int(b.reply.get("amount") or b.amount)
            if top is None or told > top:
                problems.append(f"auction {aid}: bid {b.request_id} of {b.viewer_id} was told "
                                f"{b.outcome} at {told}, above the highest accepted bid in "
                                f"the chain ({top})")
        for ev in _events(d, aid, "auction_bid"):
            shown = int(ev.data.get("amount") or 0)
            if top is None or shown > top:
                problems.append(f"auction {aid}: {_who(ev)} showed a leading bid of {shown}, "
                                f"above the highest in the chain ({top})")
        # Nothing accepted after the end.
        ended_at = result.get("ended_at")
        for e, end in zip(entries, _ends_before(rec), strict=True):
            at = int(e["at"])
            if at >= end:
                problems.append(f"auction {aid}: entry {e['seq']} ({e['kind']} by "
                                f"{e['bidder']} at {e['amount']}) was accepted at {at}, "
                                f"{at - end} ms after the end in force {end}")
            elif ended_at is not None and at > int(ended_at):
                problems.append(f"auction {aid}: entry {e['seq']} was accepted at {at}, "
                                f"after the auction ended at {ended_at}")
        for b in _bids(d, aid):
            if b.outcome not in ACCEPTED:
                continue
            end = _end_at(rec, b.sent_at)
            if ended_at is not None:
                end = min(end, int(ended_at))
            if b.sent_at >= end:
                problems.append(f"auction {aid}: bid {b.request_id} of {b.viewer_id} sent at "
                                f"{b.sent_at:.0f}, {b.sent_at - end:.0f} ms after the end "
                                f"{end}, was told {b.outcome}")
    return _verdict(AUCTION_HIGHEST, problems,
                    f"{accepted} accepted bid(s) answered, none above the winning amount or "
                    "after the end")


def auction_extensions(d: RunData) -> Check:
    problems = []
    moves = 0
    for rec in d.auctions:
        aid, pub = rec.auction_id, rec.published
        if pub is None:
            problems.append(_unread(rec))
            continue
        mode = str(pub.get("anti_snipe"))
        window = int(pub.get("extend_s", 0)) * 1000
        moved_by: dict[int, bool] = {}
        for e, prev in zip(rec.entries, _ends_before(rec), strict=True):
            at, end, seq = int(e["at"]), int(e["ends_at"]), int(e["seq"])
            moved_by[seq] = end != prev
            if e.get("kind") == "buy_now":
                continue  # ends the auction at its own time
            what = f"entry {seq} ({e.get('kind')} by {e.get('bidder')} at {at})"
            if end != prev:
                moves += 1
                if mode == "sudden_death":
                    problems.append(f"auction {aid} (sudden_death): {what} moved the end "
                                    f"from {prev} to {end}")
                elif at >= prev:
                    problems.append(f"auction {aid}: {what} moved the end from {prev} to "
                                    f"{end}, but came {at - prev} ms after that end")
                elif prev - at >= window:
                    problems.append(f"auction {aid}: {what} moved the end from {prev} to "
                                    f"{end}, but was {prev - at} ms before it, outside the "
                                    f"{window} ms extend window")
                elif end != at + window:
                    problems.append(f"auction {aid}: {what} moved the end to {end}, not to "
                                    f"its time + extend_s ({at + window})")
            elif mode == "extend" and prev - window < at < prev:
                problems.append(f"auction {aid}: {what} came {prev - at} ms before the end "
                                f"{prev}, inside the {window} ms window, but did not move it")
        published = pub.get("extensions")
        moved = sum(moved_by.values())
        if published is not None and int(published) != moved:
            problems.append(f"auction {aid}: the auction says {published} extension(s), its "
                            f"chain moves the end {moved} time(s)")
        for ev in _events(d, aid, "auction_bid"):
            entry = ev.data.get("entry") or {}
            seq = int(entry.get("seq", 0))
            if bool(ev.data.get("extended")) and mode == "sudden_death":
                problems.append(f"auction {aid} (sudden_death): {_who(ev)} said the end "
                                "was extended")
            elif seq in moved_by and bool(ev.data.get("extended")) != moved_by[seq]:
                problems.append(f"auction {aid}: {_who(ev)} said extended="
                                f"{bool(ev.data.get('extended'))} for entry {seq}, which "
                                f"{'moved' if moved_by[seq] else 'did not move'} the end")
    return _verdict(AUCTION_EXTENSIONS, problems,
                    f"{moves} extension(s), each by a bid inside its window")


_ENTRY_FIELDS = ("seq", "bidder", "amount", "at", "ends_at", "kind", "prev", "hash")


def auction_chain(d: RunData) -> Check:
    problems = []
    entries_total = 0
    for rec in d.auctions:
        aid, pub = rec.auction_id, rec.published
        if pub is None or rec.error:
            problems.append(_unread(rec))
            if pub is None:
                continue
        entries_total += len(rec.entries)
        problems += [f"auction {aid}: {p}" for p in verify_auction_chain(pub, rec.entries)]
        if rec.chain_genesis and rec.chain_genesis != pub.get("genesis"):
            problems.append(f"auction {aid}: the bids pages' genesis {rec.chain_genesis} is "
                            f"not the auction's {pub.get('genesis')}")
        if rec.chain_head and rec.chain_head != pub.get("head"):
            problems.append(f"auction {aid}: the bids pages' head {rec.chain_head} is not the "
                            f"auction's {pub.get('head')}")
        by_seq = {int(e["seq"]): e for e in rec.entries}
        for ev in _events(d, aid, "auction_bid"):
            shown = ev.data.get("entry") or {}
            published = by_seq.get(int(shown.get("seq", 0)))
            if published is None:
                problems.append(f"auction {aid}: {_who(ev)} showed entry {shown.get('seq')}, "
                                "which the published chain does not have")
            elif any(shown.get(k) != published.get(k) for k in _ENTRY_FIELDS):
                problems.append(f"auction {aid}: entry {shown.get('seq')} as {_who(ev)} "
                                f"showed it (hash {shown.get('hash')}) differs from the "
                                f"published one (hash {published.get('hash')})")
        placed = {(str(e["bidder"]), int(e["amount"]), str(e["kind"])) for e in rec.entries}
        for b in _bids(d, aid):
            if b.outcome == "leading":
                key = (str(b.reply.get("pseudonym")), int(b.reply.get("amount") or 0), "bid")
                if key not in placed:
                    problems.append(f"auction {aid}: bid {b.request_id} of {b.viewer_id} was "
                                    f"told it leads at {key[1]} (pseudonym {key[0]}), but no "
                                    "chain entry has it")
            elif b.outcome == "outbid_by_proxy":
                details = b.reply.get("details") or {}
                amount = int(details.get("amount") or 0)
                if not any(a == amount and k == "proxy" for _, a, k in placed):
                    problems.append(f"auction {aid}: bid {b.request_id} of {b.viewer_id} was "
                                    f"told a proxy bid outbid it at {amount}, but no proxy "
                                    "entry has that amount")
    return _verdict(AUCTION_CHAIN, problems,
                    f"{len(d.auctions)} auction(s), {entries_total} chain entr(ies) verified")


# ------------------------------------------------------------ group buys

GROUP_COMPLETE = "no group completed with fewer members than its group size"
GROUP_ONE = "no viewer in two groups of a deal at once"
GROUP_UNITS = "units in groups (N per started group) and sold never above the deal's units"
GROUP_EXPIRED = ("every expired group's holds ended (checkout refused hold_expired, no "
                 "order)")
GROUP_ORDERS = "a deal's orders at the group price, at most one per buyer"
ACCEPTED_GROUP = ("open", "complete")  # a `group` answer's states: the viewer is a member


def _group_updates(d: RunData) -> list[SocialEvent]:
    return [ev for ev in d.social_events if ev.kind == "group_update"
            and isinstance(ev.data.get("group"), dict)]


def _group_of(ev: SocialEvent) -> dict[str, Any]:
    group: dict[str, Any] = ev.data["group"]
    return group


def _deal_of(d: RunData, deal_id: str) -> GroupDealRecord | None:
    return next((x for x in d.group_deals if x.deal_id == deal_id), None)


def _deal_orders(d: RunData, deal_id: str) -> list[dict[str, Any]]:
    orders, _ = _store_orders(d)
    return [o for o in orders if str(o["sale_id"]) == deal_id]


def group_complete(d: RunData) -> Check:
    problems = []
    complete: dict[str, str] = {}  # group id -> deal id
    for ev in _group_updates(d):
        g = _group_of(ev)
        if g.get("state") != "complete":
            continue
        gid, did = str(g.get("group_id")), str(g.get("deal_id"))
        complete[gid] = did
        deal = _deal_of(d, did)
        need = deal.group_size if deal is not None else int(g.get("size") or 0)
        raw = ev.data.get("holds")
        members = int(g.get("members") or 0)
        if members < need or int(g.get("size") or 0) != need:
            problems.append(f"group {gid}: group_update seq {ev.seq} says complete with "
                            f"{members} of {g.get('size')} member(s); the deal's groups "
                            f"need {need}")
        # The completing step's event names every member's hold; an event of an earlier
        # join published after it shows the group as it is then (complete) without them.
        if not isinstance(raw, dict):
            continue
        holds: dict[str, Any] = raw
        if len(set(holds)) < need or len(set(holds.values())) < need:
            problems.append(f"group {gid}: complete at seq {ev.seq} with {len(set(holds))} "
                            f"member hold(s) ({len(set(holds.values()))} distinct), the "
                            f"deal's groups need {need}")
    members_told: defaultdict[str, set[str]] = defaultdict(set)
    for a in d.group_answers:
        if a.outcome in ACCEPTED_GROUP:
            members_told[a.group_id].add(a.viewer_id)
        if a.outcome == "complete":
            complete.setdefault(a.group_id, a.deal_id)
            deal = _deal_of(d, a.deal_id)
            need = deal.group_size if deal is not None else a.size
            if a.members < need:
                problems.append(f"group {a.group_id}: {a.viewer_id} was told it is complete "
                                f"with {a.members} of {need} member(s)")
    for gid, did in sorted(complete.items()):
        deal = _deal_of(d, did)
        if deal is None:
            continue
        told = members_told.get(gid, set())
        if len(told) != deal.group_size:
            problems.append(f"group {gid} completed, and {len(told)} viewer(s) were told "
                            f"they are in it ({', '.join(sorted(told)[:4])}), the deal's "
                            f"groups have {deal.group_size}")
    return _verdict(GROUP_COMPLETE, problems,
                    f"{len(complete)} complete group(s), each with its full size")


def group_one_at_a_time(d: RunData) -> Check:
    problems = []
    expired_at: dict[str, int] = {}
    complete_holds: defaultdict[tuple[str, str], list[str]] = defaultdict(list)
    for ev in _group_updates(d):
        g = _group_of(ev)
        gid = str(g.get("group_id"))
        if g.get("state") == "expired":
            expired_at.setdefault(gid, ev.seq)
        elif g.get("state") == "complete" and isinstance(ev.data.get("holds"), dict):
            for viewer in ev.data["holds"]:
                if gid not in complete_holds[(str(g.get("deal_id")), viewer)]:
                    complete_holds[(str(g.get("deal_id")), viewer)].append(gid)
    # (deal, viewer) -> group -> the seq its first accepted request was sent at
    joined: defaultdict[tuple[str, str], dict[str, int]] = defaultdict(dict)
    for a in d.group_answers:
        if a.outcome in ACCEPTED_GROUP:
            seen = joined[(a.deal_id, a.viewer_id)]
            seen[a.group_id] = min(seen.get(a.group_id, a.sent_seq), a.sent_seq)
    for (did, viewer), groups in sorted(joined.items()):
        order = sorted(groups.items(), key=lambda x: x[1])
        for (g1, _), (g2, sent) in itertools.pairwise(order):
            ended = expired_at.get(g1)
            if ended is None or ended > sent:
                when = "never expired" if ended is None else f"expired only at seq {ended}"
                problems.append(f"deal {did}: {viewer} was told it is in group {g2} (asked at "
                                f"seq {sent}) while in group {g1}, which {when}")
    for (did, viewer), gids in sorted(complete_holds.items()):
        if len(gids) > 1:
            problems.append(f"deal {did}: {viewer} holds a unit in {len(gids)} complete "
                            f"groups ({', '.join(gids[:3])})")
    return _verdict(GROUP_ONE, problems,
                    f"{len(joined)} member(s), each in one group at a time")


def group_units(d: RunData) -> Check:
    problems = []
    for deal in d.group_deals:
        did, n, units = deal.deal_id, deal.group_size, deal.units
        sold = 0
        open_groups: set[str] = set()
        ended: set[str] = set()  # complete or expired: a group never opens again
        for ev in d.social_events:
            if ev.kind == "group_deal":
                view = ev.data.get("deal") or {}
                if view.get("deal_id") != did:
                    continue
                held, sold = int(view.get("held") or 0), int(view.get("sold") or 0)
                if held + sold > units:
                    problems.append(f"deal {did}: group_deal seq {ev.seq} has {held} unit(s) "
                                    f"held in groups + {sold} sold = {held + sold}, the deal "
                                    f"has {units}")
            elif ev.kind == "group_update":
                g = ev.data.get("group") or {}
                if g.get("deal_id") != did:
                    continue
                gid = str(g.get("group_id"))
                if g.get("state") == "open" and gid not in ended:
                    open_groups.add(gid)
                elif g.get("state") != "open":
                    ended.add(gid)
                    open_groups.discard(gid)
                if n * len(open_groups) + sold > units:
                    problems.append(f"deal {did}: at seq {ev.seq} {len(open_groups)} open "
                                    f"group(s) x {n} unit(s) + {sold} sold = "
                                    f"{n * len(open_groups) + sold}, the deal has {units}")
        if deal.final is None:
            problems.append(f"deal {did} could not be read back"
                            + (f": {deal.error}" if deal.error else ""))
            continue
        held, sold = int(deal.final.get("held") or 0), int(deal.final.get("sold") or 0)
        if held + sold > units:
            problems.append(f"deal {did} at the end: {held} unit(s) held in groups + {sold} "
                            f"sold = {held + sold}, the deal has {units}")
        in_orders = sum(int(o["quantity"]) for o in _deal_orders(d, did))
        if sold != in_orders:
            _, source = _store_orders(d)
            problems.append(f"deal {did} at the end counts {sold} sold, its orders in the "
                            f"{source} hold {in_orders} unit(s)")
    return _verdict(GROUP_UNITS, problems,
                    f"{len(d.group_deals)} deal(s) within their units at every group and deal "
                    "event and at the end")


def group_expired_holds(d: RunData) -> Check:
    orders, source = _store_orders(d)
    ordered = {str(o["hold_id"]): o for o in orders}
    tried: defaultdict[str, list[str]] = defaultdict(list)
    for c in d.group_checkouts:
        tried[c.hold_id].append(c.outcome)
    problems = []
    ended = 0
    for ev in _group_updates(d):
        g = _group_of(ev)
        holds = ev.data.get("holds")
        if g.get("state") != "expired" or not isinstance(holds, dict):
            continue
        for viewer, hold_id in sorted(holds.items()):
            ended += 1
            o = ordered.get(str(hold_id))
            if o is not None:
                problems.append(f"group {g.get('group_id')} expired (seq {ev.seq}), but the "
                                f"hold {hold_id} of {viewer} is order {o['order_id']} in the "
                                f"{source}")
            for outcome in tried.get(str(hold_id), []):
                if outcome != "hold_expired":
                    problems.append(f"group {g.get('group_id')} expired (seq {ev.seq}), and "
                                    f"{viewer}'s checkout of its hold {hold_id} was answered "
                                    f"{outcome}, not hold_expired")
    return _verdict(GROUP_EXPIRED, problems,
                    f"{ended} hold(s) of expired groups, none placed as an order "
                    f"({sum(1 for c in d.group_checkouts if c.group_state == 'expired')} "
                    "checkout(s) of them refused hold_expired)")


def group_orders(d: RunData) -> Check:
    problems = []
    total = 0
    for deal in d.group_deals:
        orders = _deal_orders(d, deal.deal_id)
        total += len(orders)
        per_buyer: Counter[str] = Counter()
        for o in orders:
            per_buyer[str(o["buyer_id"])] += int(o["quantity"])
            price = o.get("unit_price")
            if price is None or int(price) != deal.group_price:
                problems.append(f"deal {deal.deal_id}: order {o['order_id']} of "
                                f"{o['buyer_id']} at {price} a unit, the group price is "
                                f"{deal.group_price}")
            if str(o["product_id"]) != deal.product_id:
                problems.append(f"deal {deal.deal_id}: order {o['order_id']} is for product "
                                f"{o['product_id']}, the deal's is {deal.product_id}")
        problems += [f"deal {deal.deal_id}: buyer {b} has {n} unit(s) in its orders, one "
                     "allowed" for b, n in sorted(per_buyer.items()) if n > 1]
    return _verdict(GROUP_ORDERS, problems,
                    f"{total} order(s) of {len(d.group_deals)} deal(s), each at the group "
                    "price, one per buyer")


# ------------------------------------------------------------ polls

POLL_COUNTS = "a poll's final counts equal the viewers whose first vote was answered voted"
POLL_ONCE = "no viewer counted twice in a poll"
POLL_CHANGE = "every second, different vote refused already_voted"


def _unread_poll(p: PollRecord) -> str:
    return f"poll {p.poll_id} could not be read back" + (f": {p.error}" if p.error else "")


def _first_voted(d: RunData, poll_id: str) -> dict[str, int]:
    """viewer -> the option counted for it: its first vote, when answered voted."""
    out: dict[str, int] = {}
    for v in d.votes:
        if v.poll_id == poll_id and v.kind == "first" and v.outcome == "voted":
            out.setdefault(v.viewer_id, v.answered_option if v.answered_option is not None
                           else v.option)
    return out


def poll_counts(d: RunData) -> Check:
    problems = []
    for p in d.polls:
        if p.final is None:
            problems.append(_unread_poll(p))
            continue
        counted = _first_voted(d, p.poll_id)
        expected = [0] * max(p.options, len(p.final.get("votes") or []))
        for option in counted.values():
            if 0 <= option < len(expected):
                expected[option] += 1
        votes = [int(x) for x in p.final.get("votes") or []]
        if votes != expected:
            problems.append(f"poll {p.poll_id}: final counts {votes}, the viewers whose first "
                            f"vote was answered voted make {expected}")
        for ev in d.social_events:
            poll = ev.data.get("poll") or {}
            shown = [int(x) for x in poll.get("votes") or []]
            if ev.kind == "poll_closed" and poll.get("poll_id") == p.poll_id and shown != votes:
                problems.append(f"poll {p.poll_id}: poll_closed seq {ev.seq} "
                                f"({ev.receipts} viewer(s)) showed {poll.get('votes')}, the "
                                f"poll reads {votes}")
    return _verdict(POLL_COUNTS, problems,
                    f"{len(d.polls)} poll(s), counts equal to their voters")


def poll_once(d: RunData) -> Check:
    problems = []
    for p in d.polls:
        told: defaultdict[str, set[int]] = defaultdict(set)
        for v in d.votes:
            if v.poll_id == p.poll_id and v.outcome == "voted":
                told[v.viewer_id].add(v.answered_option if v.answered_option is not None
                                      else v.option)
        problems += [f"poll {p.poll_id}: {viewer} was told voted for options "
                     f"{sorted(options)}" for viewer, options in sorted(told.items())
                     if len(options) > 1]
        if p.final is None:
            problems.append(_unread_poll(p))
            continue
        votes = [int(x) for x in p.final.get("votes") or []]
        total = int(p.final.get("total") or 0)
        if total != sum(votes):
            problems.append(f"poll {p.poll_id}: total {total}, its counts {votes} add up to "
                            f"{sum(votes)}")
        if max(total, sum(votes)) > len(told):
            problems.append(f"poll {p.poll_id}: {max(total, sum(votes))} vote(s) counted, "
                            f"{len(told)} viewer(s) were told voted: a viewer counted twice")
    return _verdict(POLL_ONCE, problems,
                    f"{len({(v.poll_id, v.viewer_id) for v in d.votes if v.outcome == 'voted'})}"
                    " voter(s), each counted once")


def poll_change_refused(d: RunData) -> Check:
    problems = []
    changes = 0
    for p in d.polls:
        counted = _first_voted(d, p.poll_id)
        for v in d.votes:
            if v.poll_id != p.poll_id or v.viewer_id not in counted:
                continue
            if v.option == counted[v.viewer_id] or v.kind == "first":
                continue
            changes += 1
            if v.outcome != "already_voted":
                problems.append(f"poll {p.poll_id}: {v.viewer_id} voted {counted[v.viewer_id]}"
                                f", then {v.option}, answered {v.outcome}, not already_voted")
            elif v.answered_option is not None and v.answered_option != counted[v.viewer_id]:
                problems.append(f"poll {p.poll_id}: {v.viewer_id}'s second vote was refused "
                                f"naming option {v.answered_option} as counted, its first "
                                f"was {counted[v.viewer_id]}")
    return _verdict(POLL_CHANGE, problems,
                    f"{changes} second, different vote(s), each refused already_voted")


# ------------------------------------------------------------ referral invites

REFERRAL_CAP = "no inviter paid more than max_rewards_per_inviter referral rewards"
REFERRAL_ONE = ("every invitee under one inviter: the first whose link it was told accepted "
                "(a later other link refused already_invited)")
REFERRAL_SELF = "no self-invite accepted (every inviter's own link refused self_invite)"
REFERRAL_FIRST = ("every referral reward decided by the invitee's first order, one it was "
                  "told placed")
REFERRAL_PAID = ("referral rewards paid per inviter = min(max_rewards_per_inviter, its "
                 "invitees' first orders)")
REFERRAL_EVENTS = "referral_reward events per inviter add up to the rewards the tree counts paid"
# Answers that say nothing of what the server decided (the request may or may not
# have been carried out): never held against it.
UNDECIDED_ANSWERS = frozenset({"timeout", "unavailable", "store_unavailable", "rate_limited",
                               "request_in_progress", "internal"})
ACCEPT_KINDS = ("accept", "retry", "duplicate")


def _referral_nodes(d: RunData) -> tuple[list[dict[str, Any]], str]:
    """The tree's inviters, or why there is no tree to check."""
    rec = d.referral
    if rec is None:
        return [], "no referral program was set"
    if rec.tree is None:
        return [], "the referral tree could not be read back" + (
            f": {rec.error}" if rec.error else "")
    return [n for n in rec.tree.get("inviters") or [] if isinstance(n, dict)], ""


def _invitees(node: dict[str, Any]) -> list[dict[str, Any]]:
    return [i for i in node.get("invitees") or [] if isinstance(i, dict)]


def _most_rewards(d: RunData) -> int:
    """K: the program's max_rewards_per_inviter as the tree has it (else as set)."""
    rec = d.referral
    program = (rec.tree or {}).get("program") if rec is not None else None
    if not isinstance(program, dict) and rec is not None:
        program = rec.program
    return int((program or {}).get("max_rewards_per_inviter") or 0)


def _inviter_named(node: dict[str, Any]) -> str:
    return f"inviter {node.get('viewer_id')} ({node.get('nickname')})"


def _orders_since_joining(d: RunData) -> dict[str, list[dict[str, Any]]]:
    """Each invitee of the tree -> its orders placed since it joined, the first first."""
    orders, _ = _store_orders(d)
    nodes, _ = _referral_nodes(d)
    joined = {str(i["viewer_id"]): int(i.get("joined_at") or 0)
              for n in nodes for i in _invitees(n)}
    out: dict[str, list[dict[str, Any]]] = {v: [] for v in joined}
    for o in orders:
        buyer = str(o["buyer_id"])
        if buyer in joined and int(o.get("created_at") or 0) >= joined[buyer]:
            out[buyer].append(o)
    for placed in out.values():
        placed.sort(key=lambda o: int(o.get("created_at") or 0))
    return out


def referral_cap(d: RunData) -> Check:
    nodes, unread = _referral_nodes(d)
    problems = [unread] if unread else []
    most = _most_rewards(d)
    rec = d.referral
    tree_program = (rec.tree or {}).get("program") if rec is not None else None
    if rec is not None and rec.tree is not None and tree_program != rec.program:
        problems.append(f"the tree's program {tree_program} is not the one the host set "
                        f"{rec.program}")
    for node in nodes:
        paid = max(int(node.get("rewards_paid") or 0),
                   sum(1 for i in _invitees(node) if i.get("reward") == "paid"))
        if paid > most:
            problems.append(f"{_inviter_named(node)}: {paid} reward(s) paid, at most {most}")
    net: Counter[str] = Counter()
    for ev in d.referral_events:
        net[ev.inviter] += {"paid": 1, "reversed": -1}.get(ev.state, 0)
    problems += [f"inviter {inviter}: {n} referral_reward event(s) paid (net of reversals), "
                 f"at most {most}" for inviter, n in sorted(net.items()) if n > most]
    top = max((int(n.get("rewards_paid") or 0) for n in nodes), default=0)
    return _verdict(REFERRAL_CAP, problems,
                    f"{len(nodes)} inviter(s), at most {top} reward(s) paid to one "
                    f"(max_rewards_per_inviter {most})")


def referral_one_inviter(d: RunData) -> Check:
    nodes, unread = _referral_nodes(d)
    problems = [unread] if unread else []
    under: defaultdict[str, list[dict[str, Any]]] = defaultdict(list)
    for node in nodes:
        for inv in _invitees(node):
            under[str(inv["viewer_id"])].append(node)
    for invitee, its in sorted(under.items()):
        if len(its) > 1:
            problems.append(f"{invitee} is an invitee of {len(its)} inviters ("
                            f"{', '.join(str(n.get('viewer_id')) for n in its)})")
    tries: defaultdict[str, list[ReferralAnswer]] = defaultdict(list)
    for a in sorted(d.referral_answers, key=lambda a: a.sent_at):  # stable: sent order
        if a.kind in ACCEPT_KINDS:
            tries[a.viewer_id].append(a)
    refused = 0
    for invitee, answers in sorted(tries.items()):
        first = next((a for a in answers if a.outcome == "invite_accepted"), None)
        parent = under[invitee][0] if under.get(invitee) else None
        if first is None:
            if parent is not None and not any(a.outcome in UNDECIDED_ANSWERS
                                              for a in answers):
                problems.append(f"{invitee} is an invitee of {parent.get('viewer_id')} in the "
                                "tree, but no link it tried was answered invite_accepted")
            continue
        if parent is None:
            if not unread:
                problems.append(f"{invitee} was told invite_accepted for the link of "
                                f"{first.inviter_id}, and is no inviter's invitee in the tree")
        elif parent.get("viewer_id") != first.inviter_id:
            problems.append(f"{invitee} is an invitee of {parent.get('viewer_id')} in the tree, "
                            f"but the first link it was told accepted is {first.inviter_id}'s")
        elif first.told_inviter and first.told_inviter != parent.get("nickname"):
            problems.append(f"{invitee} was told invite_accepted by {first.told_inviter!r}, "
                            f"its inviter in the tree is {parent.get('nickname')!r}")
        for a in answers[answers.index(first) + 1:]:
            if a.outcome in UNDECIDED_ANSWERS:
                continue
            if a.inviter_id != first.inviter_id:
                refused += a.outcome == "already_invited"
                if a.outcome != "already_invited":
                    problems.append(f"{invitee} accepted {first.inviter_id}'s link, then "
                                    f"{a.inviter_id}'s was answered {a.outcome}, not "
                                    "already_invited")
            elif a.outcome != "invite_accepted":
                problems.append(f"{invitee} accepted {first.inviter_id}'s link again and was "
                                f"answered {a.outcome}, not invite_accepted")
            elif a.told_inviter != first.told_inviter:
                problems.append(f"{invitee} accepted {first.inviter_id}'s link again and was "
                                f"told inviter {a.told_inviter!r}, the first time "
                                f"{first.told_inviter!r}")
    for invitee in sorted(set(under) - set(tries)):
        problems.append(f"{invitee} is an invitee of {under[invitee][0].get('viewer_id')} in "
                        "the tree, but no viewer of the run accepted a link as it")
    joined = sum(len(_invitees(n)) for n in nodes)
    return _verdict(REFERRAL_ONE, problems,
                    f"{joined} invitee(s), each under the first inviter it was told accepted "
                    f"it; {refused} later other link(s) refused already_invited")


def referral_no_self(d: RunData) -> Check:
    nodes, unread = _referral_nodes(d)
    problems = [unread] if unread else []
    for node in nodes:
        if any(i.get("viewer_id") == node.get("viewer_id") for i in _invitees(node)):
            problems.append(f"{_inviter_named(node)} is its own invitee in the tree")
    attempts = 0
    for a in d.referral_answers:
        if a.kind == "invite" or a.viewer_id != a.inviter_id:
            continue
        attempts += 1
        if a.outcome != "self_invite" and a.outcome not in UNDECIDED_ANSWERS:
            problems.append(f"{a.viewer_id} accepted its own link and was answered "
                            f"{a.outcome}, not self_invite")
    return _verdict(REFERRAL_SELF, problems,
                    f"{attempts} own-link acceptance(s), each refused self_invite; no inviter "
                    "is its own invitee")


def referral_first_order(d: RunData) -> Check:
    nodes, unread = _referral_nodes(d)
    problems = [unread] if unread else []
    orders, source = _store_orders(d)
    by_id = {str(o["order_id"]): o for o in orders}
    told = {(a.viewer_id, a.order_id) for a in d.acks}
    since = _orders_since_joining(d)
    decided = 0
    for node in nodes:
        for inv in _invitees(node):
            invitee, reward, oid = str(inv["viewer_id"]), inv.get("reward"), inv.get("order_id")
            placed = since.get(invitee, [])
            if reward is None or oid is None:
                if placed:
                    problems.append(f"{invitee} (invited by {node.get('viewer_id')}) has "
                                    f"order {placed[0]['order_id']} since it joined, and no "
                                    "reward decision")
                continue
            decided += 1
            order = by_id.get(str(oid))
            if order is None:
                problems.append(f"{invitee}'s reward ({reward}) was decided by order {oid}, "
                                f"which is not in the {source}")
                continue
            if str(order["buyer_id"]) != invitee:
                problems.append(f"{invitee}'s reward ({reward}) was decided by order {oid}, "
                                f"which is {order['buyer_id']}'s")
            elif (invitee, str(oid)) not in told:
                problems.append(f"{invitee}'s reward ({reward}) was decided by order {oid}, "
                                "which it was never told placed")
            at = int(order.get("created_at") or 0)
            earlier = [o for o in placed if int(o.get("created_at") or 0) < at]
            if earlier:
                problems.append(f"{invitee}'s reward ({reward}) was decided by order {oid} "
                                f"(at {at}), but its order {earlier[0]['order_id']} (at "
                                f"{earlier[0].get('created_at')}) came first")
    return _verdict(REFERRAL_FIRST, problems,
                    f"{decided} reward decision(s), each by the invitee's first order")


def referral_paid(d: RunData) -> Check:
    nodes, unread = _referral_nodes(d)
    problems = [unread] if unread else []
    most = _most_rewards(d)
    since = _orders_since_joining(d)
    total_paid = total_firsts = 0
    for node in nodes:
        invitees = _invitees(node)
        firsts = sum(1 for i in invitees
                     if i.get("order_id") is not None or since.get(str(i["viewer_id"])))
        paid = sum(1 for i in invitees if i.get("reward") == "paid")
        total_paid, total_firsts = total_paid + paid, total_firsts + firsts
        counted = int(node.get("rewards_paid") or 0)
        if counted != paid:
            problems.append(f"{_inviter_named(node)} counts {counted} reward(s) paid, its "
                            f"invitees show {paid}")
        cancelled = any(i.get("reward") == "reversed" for i in invitees) or any(
            o.get("status") == "cancelled" for i in invitees
            for o in since.get(str(i["viewer_id"]), []))
        expected = min(most, firsts)
        if paid > expected or (paid < expected and not cancelled):
            problems.append(f"{_inviter_named(node)}: {paid} reward(s) paid for {firsts} "
                            f"invitee(s) with a first order, max_rewards_per_inviter {most}: "
                            f"expected {expected}" + (" at most (an order was cancelled)"
                                                      if cancelled else ""))
    rec = d.referral
    totals = (rec.tree or {}).get("totals") if rec is not None else None
    by_inviters = sum(int(n.get("rewards_paid") or 0) for n in nodes)
    if isinstance(totals, dict) and int(totals.get("rewards_paid") or 0) != by_inviters:
        problems.append(f"the tree's totals count {totals.get('rewards_paid')} reward(s) "
                        f"paid, its inviters {by_inviters}")
    return _verdict(REFERRAL_PAID, problems,
                    f"{len(nodes)} inviter(s): {total_paid} reward(s) paid for {total_firsts} "
                    f"first order(s), max_rewards_per_inviter {most}")


def referral_events(d: RunData) -> Check:
    nodes, unread = _referral_nodes(d)
    problems = [unread] if unread else []
    rec = d.referral
    reward = ((rec.tree or {}).get("program") or rec.program or {}).get("reward") \
        if rec is not None else None
    paid: Counter[str] = Counter()
    reversed_: Counter[str] = Counter()
    versions = Counter(ev.seq for ev in d.referral_events)
    problems += [f"referral_reward seq {seq} was received in {n} different versions"
                 for seq, n in sorted(versions.items()) if n > 1]
    for ev in d.referral_events:
        if ev.state == "paid":
            paid[ev.inviter] += 1
        elif ev.state == "reversed":
            reversed_[ev.inviter] += 1
        else:
            problems.append(f"referral_reward seq {ev.seq} has state {ev.state!r}")
        if reward is not None and ev.data.get("reward") != reward:
            problems.append(f"referral_reward seq {ev.seq} ({ev.receipts} viewer(s)) gave "
                            f"{ev.inviter} {ev.data.get('reward')}, the program's reward is "
                            f"{reward}")
    counted = {str(n.get("viewer_id")): int(n.get("rewards_paid") or 0) for n in nodes}
    if not unread:
        for inviter in sorted(set(counted) | set(paid) | set(reversed_)):
            seen = paid[inviter] - reversed_[inviter]
            if seen != counted.get(inviter, 0):
                problems.append(f"inviter {inviter}: {paid[inviter]} referral_reward event(s) "
                                f"paid and {reversed_[inviter]} reversed seen by the viewers, "
                                f"the tree counts {counted.get(inviter, 0)} reward(s) paid")
    return _verdict(REFERRAL_EVENTS, problems,
                    f"{sum(paid.values())} paid and {sum(reversed_.values())} reversed "
                    f"referral_reward event(s) for {len(set(paid) | set(reversed_))} "
                    "inviter(s), as the tree counts")


GROUP_CHECKS: tuple[Callable[[RunData], Check], ...] = (
    group_complete, group_one_at_a_time, group_units, group_expired_holds, group_orders)
POLL_CHECKS: tuple[Callable[[RunData], Check], ...] = (
    poll_counts, poll_once, poll_change_refused)
AUCTION_CHECKS: tuple[Callable[[RunData], Check], ...] = (
    auction_winner, auction_highest, auction_extensions, auction_chain)
WAITLIST_CHECKS: tuple[Callable[[RunData], Check], ...] = (
    waitlist_within_stock, waitlist_order, waitlist_once)
REFERRAL_CHECKS: tuple[Callable[[RunData], Check], ...] = (
    referral_cap, referral_one_inviter, referral_no_self, referral_first_order, referral_paid,
    referral_events)


CHECKS: tuple[Callable[[RunData], Check], ...] = (
    sold_within_stock, sold_equals_orders, stock_conserved, per_buyer_limit,
    one_order_per_hold, orders_have_holds, placed_orders_stored, stored_orders_acknowledged,
    holds_ended,
)


def check_run(d: RunData) -> list[Check]:
    """One verdict per invariant that applies to this run."""
    out: list[Check] = []
    if d.products:
        out += [check(d) for check in CHECKS]
    if d.coupons or d.claims:
        out.append(coupons(d))
    if d.lotteries or d.entries:
        out.append(lotteries(d))
    if d.waitlist_joins or d.waitlist_events:
        out += [check(d) for check in WAITLIST_CHECKS]
    if d.auctions or d.bids or d.auction_events:
        out += [check(d) for check in AUCTION_CHECKS]
    if d.group_deals or d.group_answers:
        out += [check(d) for check in GROUP_CHECKS]
    if d.polls or d.votes:
        out += [check(d) for check in POLL_CHECKS]
    if d.referral is not None or d.referral_answers:
        out += [check(d) for check in REFERRAL_CHECKS]
    out.append(sequence_numbers(d))
    chat = chat_rate_limit(d)
    if chat is not None:
        out.append(chat)
    out += slos(d)
    return out
