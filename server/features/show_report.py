"""The post-show report (docs/operations.md "After the show"): what sold, per
product and per currency (amounts in different currencies are never added
together), the funnel from viewers to holds to orders, coupon cost, viewers,
orders and chat minute by minute, the lottery and auction proofs, and the
audit; as JSON, CSV and one self-contained HTML file whose charts (SVG) the
leather library draws.
Also the orders as CSV.

The order figures are the store's (cancelled orders left out and counted
apart); holds, viewers and chat per minute are counted in Redis as the show
runs (ReportData), so a Redis that lost its data reports them from then on."""

from __future__ import annotations

import csv
import html
import io
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import leather

from server.core.money import major, show
from server.state.store import Order

# The columns of the orders CSV: one row per order (an order is one product line).
ORDER_CSV: Final = ("order_id", "created_at", "status", "buyer_id", "product_id",
                    "product_title", "sale_id", "quantity", "unit_price", "subtotal",
                    "discount", "total", "currency", "coupon_id", "payment_ref",
                    "cancelled_at", "cancel_reason", "units_refunded", "amount_refunded")
MAX_TIMELINE_MINUTES: Final = 24 * 60  # a report draws a day of minutes at most
CHART_WIDTH: Final = 900
CHART_HEIGHT: Final = 300


def iso(ms: int | None) -> str:
    if not ms:
        return ""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms / 1000))


def _add(into: dict[str, int], currency: str, amount: int) -> None:
    into[currency] = into.get(currency, 0) + amount


def build(room: Mapping[str, Any], orders: list[Order],
          cancelled: Mapping[str, Mapping[str, Any]],
          refunds: Mapping[str, list[dict[str, Any]]],
          products: list[tuple[dict[str, Any], int]], coupons: list[dict[str, Any]],
          counts: Mapping[str, int], viewers_by_minute: Mapping[int, int],
          chat_by_minute: Mapping[int, int], viewers: Mapping[str, int], likes: int,
          lotteries: list[dict[str, Any]], auctions: list[dict[str, Any]],
          audit: Mapping[str, Any], now: int) -> dict[str, Any]:
    """The report's JSON, from what the store and Redis hold."""
    titles = {p["product_id"]: p.get("title", "") for p, _ in products}
    live = [o for o in orders if o.order_id not in cancelled]
    per_product: dict[str, dict[str, Any]] = {
        p["product_id"]: {"product_id": p["product_id"], "title": p.get("title", ""),
                          "stock": stock, "orders": 0, "units": 0, "units_cancelled": 0,
                          "units_refunded": 0, "buyers": 0, "revenue": {}, "discounts": {}}
        for p, stock in products}
    buyers: dict[str, set[str]] = defaultdict(set)
    revenue: dict[str, int] = {}
    discounts: dict[str, int] = {}
    refunded: dict[str, int] = {}
    per_minute_orders: dict[int, int] = defaultdict(int)
    for o in orders:
        row = per_product.setdefault(o.product_id, {
            "product_id": o.product_id, "title": titles.get(o.product_id, ""), "stock": 0,
            "orders": 0, "units": 0, "units_cancelled": 0, "units_refunded": 0, "buyers": 0,
            "revenue": {}, "discounts": {}})
        if o.order_id in cancelled:
            row["units_cancelled"] += o.quantity
            continue
        back = refunds.get(o.order_id, [])
        restocked = sum(r["quantity"] for r in back if r["restock"])
        paid_back = sum(r["amount"] for r in back)
        row["orders"] += 1
        row["units"] += o.quantity - restocked
        row["units_refunded"] += sum(r["quantity"] for r in back)
        _add(row["revenue"], o.currency, o.total - paid_back)
        if paid_back:
            _add(refunded, o.currency, paid_back)
        if o.discount:
            _add(row["discounts"], o.currency, o.discount)
        buyers[o.product_id].add(o.buyer_id)
        _add(revenue, o.currency, o.total - paid_back)
        if o.discount:
            _add(discounts, o.currency, o.discount)
        per_minute_orders[o.created_at // 60_000] += 1
    for pid, row in per_product.items():
        row["buyers"] = len(buyers[pid])
    uses: dict[str, list[Order]] = defaultdict(list)
    for o in live:
        if o.coupon_id:
            uses[o.coupon_id].append(o)
    coupon_rows = []
    for c in coupons:
        cost: dict[str, int] = {}
        for o in uses.get(c["coupon_id"], []):
            _add(cost, o.currency, o.discount)
        coupon_rows.append({"coupon_id": c["coupon_id"], "title": c.get("title", ""),
                            "kind": c.get("kind"), "value": c.get("value"),
                            "count": c.get("count"), "used": len(uses.get(c["coupon_id"],
                                                                         [])),
                            "referral_reward": bool(c.get("reserved_for")), "cost": cost})
    holds, expired = int(counts.get("holds", 0)), int(counts.get("holds_expired", 0))
    all_buyers = {o.buyer_id for o in live}
    funnel = {"viewers": int(viewers.get("unique", 0)),
              "peak_viewers": int(viewers.get("peak", 0)), "holds": holds,
              "holds_expired": expired,
              "hold_expiry_rate": round(expired / holds, 4) if holds else 0.0,
              "buyers": len(all_buyers), "orders": len(live),
              "conversion": round(len(all_buyers) / viewers["unique"], 4)
              if viewers.get("unique") else 0.0}
    return {
        "room": dict(room), "generated_at": now,
        "totals": {"orders": len(live), "orders_cancelled": len(orders) - len(live),
                   "units": sum(p["units"] for p in per_product.values()),
                   "buyers": len(all_buyers), "revenue": revenue, "discounts": discounts,
                   "refunded": refunded},
        "products": list(per_product.values()),
        "funnel": funnel,
        "coupons": coupon_rows,
        "timeline": timeline(viewers_by_minute, per_minute_orders, chat_by_minute),
        "chat": {"messages": sum(chat_by_minute.values()),
                 "busiest_minute": max(chat_by_minute.values(), default=0), "likes": likes},
        "lotteries": lotteries,
        "auctions": auctions,
        "audit": {"ok": bool(audit.get("ok")), "state": audit.get("state"),
                  "failed": [c["name"] for c in audit.get("checks", []) if not c["ok"]]},
    }


def timeline(viewers: Mapping[int, int], orders: Mapping[int, int],
             chat: Mapping[int, int]) -> list[dict[str, Any]]:
    """Minute by minute, from the first minute anything happened to the last: the
    minute's peak viewers (carried forward through minutes without a change), its
    orders and chat messages, and the orders per 100 viewers (conversion over time)."""
    minutes = set(viewers) | set(orders) | set(chat)
    if not minutes:
        return []
    last = max(minutes)
    first = max(min(minutes), last - MAX_TIMELINE_MINUTES + 1)
    out = []
    seen = 0
    for m in range(first, last + 1):
        seen = viewers.get(m, seen)
        n = orders.get(m, 0)
        out.append({"minute": m * 60_000, "viewers": seen, "orders": n,
                    "chat": chat.get(m, 0),
                    "orders_per_100_viewers": round(100 * n / seen, 2) if seen else 0.0})
    return out


# ---------------------------------------------------------------------- CSV


def orders_csv(orders: Iterable[Order], cancelled: Mapping[str, Mapping[str, Any]],
               refunds: Mapping[str, list[dict[str, Any]]], titles: Mapping[str, str]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(ORDER_CSV)
    for o in orders:
        c = cancelled.get(o.order_id)
        back = refunds.get(o.order_id, [])
        units_back = sum(r["quantity"] for r in back)
        state = "cancelled" if c else "placed" if not back else \
            "refunded" if units_back >= o.quantity else "partly_refunded"
        writer.writerow([o.order_id, iso(o.created_at), state,
                         _cell(o.buyer_id), _cell(o.product_id),
                         _cell(titles.get(o.product_id, "")), _cell(o.sale_id), o.quantity,
                         o.unit_price, o.subtotal, o.discount, o.total, o.currency,
                         _cell(o.coupon_id), _cell(o.payment_ref),
                         iso(c["cancelled_at"]) if c else "", _cell(c["reason"]) if c else "",
                         units_back, sum(r["amount"] for r in back)])
    return out.getvalue()


def _cell(text: str) -> str:
    """A text cell a spreadsheet will not run as a formula (CSV injection)."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def report_csv(report: Mapping[str, Any]) -> str:
    """Per product and currency: orders, units, cancelled units, buyers, revenue and
    discounts; then the totals per currency."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["product_id", "title", "currency", "orders", "units",
                     "units_cancelled", "units_refunded", "buyers", "revenue", "discounts"])
    for p in report["products"]:
        currencies = sorted(set(p["revenue"]) | set(p["discounts"])) or [""]
        for cur in currencies:
            writer.writerow([_cell(p["product_id"]), _cell(p["title"]), cur, p["orders"],
                             p["units"],
                             p["units_cancelled"], p["units_refunded"], p["buyers"],
                             p["revenue"].get(cur, 0), p["discounts"].get(cur, 0)])
    totals = report["totals"]
    for cur in sorted(set(totals["revenue"]) | set(totals["discounts"])):
        writer.writerow(["(all)", "", cur, totals["orders"], totals["units"], "", "",
                         totals["buyers"], totals["revenue"].get(cur, 0),
                         totals["discounts"].get(cur, 0)])
    return out.getvalue()


# ---------------------------------------------------------------------- HTML


def _minutes(points: list[dict[str, Any]], key: str) -> list[tuple[datetime, int]]:
    # Naive UTC: leather compares with naive datetimes of its own.
    return [(datetime.fromtimestamp(p["minute"] / 1000, UTC).replace(tzinfo=None), p[key])
            for p in points]


def timeline_charts(report: Mapping[str, Any]) -> str:
    """Viewers, then orders and chat messages, minute by minute (two charts: their
    scales differ by orders of magnitude)."""
    points = report["timeline"]
    first = datetime.fromtimestamp(points[0]["minute"] / 1000, UTC).replace(tzinfo=None)
    last = datetime.fromtimestamp(points[-1]["minute"] / 1000, UTC).replace(tzinfo=None)
    # Scales set here: leather refuses an empty range (one minute, or all zero).
    last = max(last, first + timedelta(minutes=1))
    viewers = leather.Chart("Viewers, minute by minute (the minute's peak)")
    viewers.add_x_scale(first, last)
    viewers.add_y_scale(0, max(1, *(p["viewers"] for p in points)))
    viewers.add_line(_minutes(points, "viewers"), name="viewers")
    activity = leather.Chart("Orders and chat messages, minute by minute")
    activity.add_x_scale(first, last)
    activity.add_y_scale(0, max(1, *(max(p["orders"], p["chat"]) for p in points)))
    activity.add_line(_minutes(points, "orders"), name="orders")
    activity.add_line(_minutes(points, "chat"), name="chat messages")
    return "".join(str(c.to_svg(width=CHART_WIDTH, height=CHART_HEIGHT))
                   for c in (viewers, activity))


def revenue_chart(report: Mapping[str, Any], currency: str) -> str:
    chart = leather.Chart(f"Revenue by product ({currency})")
    chart.add_x_scale(0, max(1.0, *(major(p["revenue"].get(currency, 0), currency)
                                   for p in report["products"])))
    bars = [(major(p["revenue"][currency], currency), p["title"] or p["product_id"])
            for p in report["products"] if p["revenue"].get(currency)]
    if not bars:
        return ""  # nothing earned in it (refunded in full, or free): no chart
    chart.add_bars(bars, name=currency)
    return str(chart.to_svg(width=CHART_WIDTH, height=max(120, 60 + 40 * len(bars))))


def report_html(report: Mapping[str, Any]) -> str:
    """One file, nothing fetched: inline CSS and SVG charts."""
    e = html.escape
    room = report["room"]
    totals = report["totals"]
    money = "".join(f"<li>{e(show(amount, cur))}</li>"
                    for cur, amount in sorted(totals["revenue"].items())) or "<li>none</li>"
    refunded = ", ".join(e(show(a, c)) for c, a in sorted(totals["refunded"].items())) \
        or "nothing"
    funnel = report["funnel"]
    rows = "".join(
        f"<tr><td>{e(p['title'] or p['product_id'])}</td><td>{p['units']}</td>"
        f"<td>{p['units_cancelled']}</td><td>{p['buyers']}</td><td>"
        + ", ".join(e(show(a, c)) for c, a in sorted(p["revenue"].items()))
        + "</td></tr>" for p in report["products"])
    coupons = "".join(
        f"<tr><td>{e(c['title'] or c['coupon_id'])}</td><td>{c['used']}</td><td>"
        + ", ".join(e(show(a, cur)) for cur, a in sorted(c["cost"].items()))
        + "</td></tr>" for c in report["coupons"])
    proofs = "".join(
        f"<li>Lottery {e(str(lot['lottery_id']))} ({e(str(lot.get('prize', '')))}): seed hash "
        f"<code>{e(str(lot.get('seed_hash', '')))}</code>, seed "
        f"<code>{e(str(lot.get('seed') or 'not drawn'))}</code>, "
        f"{lot.get('entrants', 0)} entrants, winners "
        f"{e(', '.join(map(str, lot.get('winners') or [])) or 'none')}</li>"
        for lot in report["lotteries"])
    proofs += "".join(
        f"<li>Auction {e(str(a['auction_id']))} ({e(str(a.get('title', '')))}): "
        f"{e(str(a.get('state', '')))}, chain {'verifies' if a.get('chain_ok') else 'BROKEN'}"
        f", {a.get('bids', 0)} bids</li>" for a in report["auctions"])
    audit = report["audit"]
    charts = timeline_charts(report) if report["timeline"] else \
        "<p>No activity recorded.</p>"
    charts += "".join(revenue_chart(report, cur) for cur in sorted(totals["revenue"]))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Show report: {e(room.get('title', ''))}</title>
<style>
body {{ font: 15px/1.45 system-ui, sans-serif; margin: 2rem auto; max-width: 960px;
       color: #1b1b1f; padding: 0 1rem; }}
h1 {{ font-size: 1.6rem; }} h2 {{ margin-top: 2rem; font-size: 1.2rem; }}
table {{ border-collapse: collapse; width: 100%; }}
td, th {{ border-bottom: 1px solid #ddd; padding: .35rem .5rem; text-align: left; }}
.bad {{ color: #a4000f; font-weight: 600; }} .good {{ color: #0b6b2f; font-weight: 600; }}
svg {{ max-width: 100%; height: auto; }}
</style></head><body>
<h1>{e(room.get('title', ''))}</h1>
<p>Room {e(room.get('room_id', ''))} · {e(room.get('state', ''))} · ended
{e(iso(room.get('ended_at')) or 'not yet')} · report made {e(iso(report['generated_at']))}</p>
<h2>Sales</h2>
<p>{totals['orders']} orders ({totals['orders_cancelled']} cancelled apart), {totals['units']}
units, {totals['buyers']} buyers. Revenue, per currency (never added across currencies):</p>
<ul>{money}</ul>
<p>Refunded (already taken off the revenue above): {refunded}.</p>
<table><tr><th>Product</th><th>Units</th><th>Cancelled</th><th>Buyers</th><th>Revenue</th>
</tr>{rows}</table>
<h2>Funnel</h2>
<p>{funnel['viewers']} viewers (peak {funnel['peak_viewers']} at once) →
{funnel['holds']} holds ({funnel['hold_expiry_rate'] * 100:.1f} % expired unpaid) →
{funnel['buyers']} buyers, {funnel['orders']} orders (conversion
{funnel['conversion'] * 100:.1f} % of viewers).</p>
{charts}
<h2>Coupons</h2>
<table><tr><th>Coupon</th><th>Used</th><th>Cost</th></tr>{coupons}</table>
<h2>Chat</h2>
<p>{report['chat']['messages']} messages (busiest minute {report['chat']['busiest_minute']}),
{report['chat']['likes']} likes.</p>
<h2>Proofs</h2>
<ul>{proofs or '<li>No lottery or auction.</li>'}</ul>
<h2>Audit</h2>
<p class="{'good' if audit['ok'] else 'bad'}">{'Every check holds.' if audit['ok'] else
'Failing: ' + e(', '.join(audit['failed']) or str(audit.get('state')))}</p>
</body></html>
"""
