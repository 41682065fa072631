"""The correctness checker: a pure function from one run's collected data to one
verdict per invariant.

Each check names the invariant, says whether it held and, when it did not,
what broke (which product, buyer, hold, order, coupon, lottery or viewer, and
the numbers). No I/O, no clock: the same data always gives the same verdicts,
so each check is tested by feeding it a run with exactly that violation.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from loadtest.model import RunData
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
    out.append(sequence_numbers(d))
    chat = chat_rate_limit(d)
    if chat is not None:
        out.append(chat)
    out += slos(d)
    return out
