"""The post-show report and the orders export against a real server, Redis and
store: every figure checked against what the show did (orders per product and
per currency, never added across currencies; cancelled orders apart; holds and
expired holds; viewers; chat minute by minute; coupon cost; the lottery's
proof; the audit), the CSVs parsed back, and the HTML a single file with its
charts inline and nothing to fetch."""

from __future__ import annotations

import asyncio
import csv
import io
import re
from typing import Any

import httpx

from server.core.money import show
from tests.support import Host, LiveServer, eventually, join, pay, server_with


async def test_the_report_tells_the_show_as_it_happened(redis_url: str, data_dir: Any
                                                        ) -> None:
    async with server_with(redis_url, data_dir, sale={"hold_seconds": 1.0},
                           chat={"room_messages_per_s": 0}) as (server, http):
        await run_show(server, http)


async def run_show(server: LiveServer, http: httpx.AsyncClient) -> None:
    r = await http.post("/api/rooms", json={"title": "Spring drop"})
    host = Host(http, r.json()["room"]["room_id"], r.json()["host_key"])
    mug = await host.product(stock=10, price=1500, title="=HYPERLINK(\"x\")")
    bag = await host.call("POST", "/products", {"title": "Bag", "price": 300000,
                                                "currency": "JPY", "stock": 5}, expect=201)
    await host.sale(mug["product_id"], units=10, limit=3, price=1500)
    coupon = await host.call("POST", "/coupons", {"kind": "amount", "value": 200,
                                                  "count": 5, "currency": "USD"}, expect=201)
    lottery = await host.call("POST", "/lotteries", {"prize": "A poster", "duration_s": 600},
                              expect=201)
    viewers = await asyncio.gather(*(join(server, host.room_id) for _ in range(4)))
    a, b, c, d = viewers
    await a.request("claim_coupon", coupon_id=coupon["coupon_id"])
    mug_orders = [await pay(a, mug["product_id"], coupon["coupon_id"]),
                  await pay(b, mug["product_id"]), await pay(c, mug["product_id"])]
    # The bag sells at its list price (buy-it-now once pinned).
    await host.call("POST", "/pins", {"product_id": bag["product_id"], "open_for_sale": True},
                    expect=200)
    bag_order = await pay(d, bag["product_id"])
    cancelled = mug_orders[2]
    await host.call("POST", f"/orders/{cancelled['order_id']}/cancel",
                    {"reason": "wrong size"}, expect=200)
    # A hold left to expire.
    lapsing = await d.request("buy", product_id=mug["product_id"])
    assert lapsing["type"] == "hold"
    for v in viewers:
        await v.request("enter_lottery", lottery_id=lottery["lottery_id"])
    for i in range(3):
        await a.send({"type": "chat", "text": f"love it {i}"})
        await a.next_event("chat", where=lambda f, i=i: f["text"] == f"love it {i}")
    await host.call("POST", f"/lotteries/{lottery['lottery_id']}/draw", expect=200)

    async def settled() -> dict[str, Any] | None:
        report: dict[str, Any] = await host.call("GET", "/report", expect=200)
        # Counted as the show runs and added to Redis within a second or so: the
        # expired hold, and the viewers tick's minute peak.
        ready = report["funnel"]["holds_expired"] >= 1 and \
            max((m["viewers"] for m in report["timeline"]), default=0) >= 4
        return report if ready else None
    report = await eventually(settled)
    totals = report["totals"]
    # Money per currency, never added across them; the cancelled order apart.
    assert totals["revenue"] == {"USD": 1300 + 1500, "JPY": 300000}
    assert totals["discounts"] == {"USD": 200}
    assert (totals["orders"], totals["orders_cancelled"], totals["units"]) == (3, 1, 3)
    by_product = {p["product_id"]: p for p in report["products"]}
    mug_row = by_product[mug["product_id"]]
    assert (mug_row["units"], mug_row["units_cancelled"], mug_row["buyers"]) == (2, 1, 2)
    assert by_product[bag["product_id"]]["revenue"] == {"JPY": 300000}
    funnel = report["funnel"]
    assert (funnel["viewers"], funnel["peak_viewers"], funnel["buyers"]) == (4, 4, 3)
    assert funnel["holds"] == 5 and funnel["holds_expired"] == 1
    assert funnel["hold_expiry_rate"] == 0.2
    assert [c["cost"] for c in report["coupons"]] == [{"USD": 200}]
    assert report["chat"]["messages"] == 3
    assert sum(m["orders"] for m in report["timeline"]) == 3
    assert max(m["viewers"] for m in report["timeline"]) == 4
    [proof] = report["lotteries"]
    assert proof["seed"] and proof["entrants"] == 4 and len(proof["winners"]) == 1
    assert report["audit"]["ok"], report["audit"]
    await orders_export(http, host, [*mug_orders, bag_order], cancelled)
    await report_files(http, host, report)
    r = await http.get(f"/api/rooms/{host.room_id}/report")
    assert r.status_code == 401
    for v in viewers:
        await v.close()


async def orders_export(http: httpx.AsyncClient, host: Host, orders: list[dict[str, Any]],
                        cancelled: dict[str, Any]) -> None:
    r = await http.get(f"/api/rooms/{host.room_id}/orders.csv",
                       headers={"X-Host-Key": host.key})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert f'filename="{host.room_id}-orders.csv"' in r.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert sorted(row["order_id"] for row in rows) == sorted(o["order_id"] for o in orders)
    status = {row["order_id"]: (row["status"], row["cancel_reason"]) for row in rows}
    assert status[cancelled["order_id"]] == ("cancelled", "wrong size")
    # A title a spreadsheet would run as a formula is written as text.
    assert {row["product_title"] for row in rows} == {"'=HYPERLINK(\"x\")", "Bag"}
    assert sum(int(row["total"]) for row in rows if row["status"] == "placed"
               and row["currency"] == "USD") == 2800


async def report_files(http: httpx.AsyncClient, host: Host, report: dict[str, Any]) -> None:
    r = await http.get(f"/api/rooms/{host.room_id}/report.csv",
                       headers={"X-Host-Key": host.key})
    assert r.status_code == 200
    rows = list(csv.DictReader(io.StringIO(r.text)))
    totals = {row["currency"]: int(row["revenue"]) for row in rows
              if row["product_id"] == "(all)"}
    assert totals == report["totals"]["revenue"]
    page = await http.get(f"/api/rooms/{host.room_id}/report.html",
                          headers={"X-Host-Key": host.key})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    text = page.text
    assert text.count("<svg") >= 3  # the timeline and one revenue chart per currency
    assert "<script" not in text
    # Nothing to fetch: no source or link outside the file.
    assert not re.findall(r"""(?:src|href)\s*=\s*["']?https?:""", text)
    assert show(300000, "JPY") in text and show(2800, "USD") in text
    assert "Every check holds." in text


def test_the_timeline_carries_viewers_through_quiet_minutes_and_charts_any_length() -> None:
    from server.features import show_report

    points = show_report.timeline({10: 4, 13: 2}, {11: 1, 13: 3}, {12: 5})
    assert [(p["minute"] // 60_000, p["viewers"], p["orders"], p["chat"]) for p in points] \
        == [(10, 4, 0, 0), (11, 4, 1, 0), (12, 4, 0, 5), (13, 2, 3, 0)]
    assert points[3]["orders_per_100_viewers"] == 150.0
    assert show_report.timeline({}, {}, {}) == []
    one = {"timeline": show_report.timeline({7: 0}, {}, {}), "products": []}
    assert show_report.timeline_charts(one).count("<svg") == 2


def test_money_is_shown_with_its_currencys_decimals() -> None:
    assert show(123450, "USD") == "USD 1,234.50"
    assert show(1200, "JPY") == "JPY 1,200"
    assert show(1234, "KWD") == "KWD 1.234"


async def test_a_currency_refunded_in_full_still_makes_a_report(
        server: LiveServer, http: httpx.AsyncClient) -> None:
    r = await http.post("/api/rooms", json={"title": "Refunded"})
    host = Host(http, r.json()["room"]["room_id"], r.json()["host_key"])
    product = await host.product(stock=2, price=500)
    await host.sale(product["product_id"], units=2, limit=1, price=500)
    v = await join(server, host.room_id)
    order = await pay(v, product["product_id"])
    await host.call("POST", f"/orders/{order['order_id']}/refund", {"request_id": "all"},
                    expect=200)
    report = await host.call("GET", "/report", expect=200)
    assert report["totals"]["revenue"] == {"USD": 0}
    assert report["totals"]["refunded"] == {"USD": 500}
    page = await http.get(f"/api/rooms/{host.room_id}/report.html",
                          headers={"X-Host-Key": host.key})
    assert page.status_code == 200 and show(500, "USD") in page.text
    await v.close()
