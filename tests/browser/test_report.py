"""The show report in the host console, in Chromium against a real server, Redis
and store. Two viewers buy over their WebSockets (a flash-sale lamp in USD and a
buy-it-now bag in JPY); the console's "Show report" shows the totals, one revenue
line per currency (never added together) and the funnel exactly as
GET /api/rooms/{room}/report says. The download buttons fetch with the host key
and save what came back under the server's file name (the JSON, which has none,
under the fallback `{room}-report.json`): the CSV starts with its header, the
HTML carries its SVG charts, and every object URL made for a download is revoked
afterwards. When the show ends, the panel loads the final report by itself."""

from __future__ import annotations

import csv
import io
import json
import re
from typing import Any

import httpx

from tests.browser.conftest import PageErrors
from tests.browser.helpers import (
    ARTIFACTS,
    PHONE,
    contrast_failures,
    keyed_console,
    open_tool,
    shoot,
    skip_without_browser,
    unnamed_controls,
)
from tests.support import Host, LiveServer, ViewerClient, create_room, eventually, join

skip_without_browser()

from playwright.async_api import Page, ViewportSize, expect  # noqa: E402

# The report CSV's columns, in this order (the server may add others between them).
REPORT_CSV_COLUMNS = ("product_id", "title", "currency", "orders", "units", "units_cancelled",
                      "buyers", "revenue", "discounts")

# Counts the object URLs the page makes and revokes, so the test can tell that a
# download's URL did not outlive it.
OBJECT_URLS_SCRIPT = """(() => {
  const live = new Set();
  const counts = { created: 0, revoked: 0 };
  const create = URL.createObjectURL.bind(URL);
  const revoke = URL.revokeObjectURL.bind(URL);
  URL.createObjectURL = (obj) => {
    const url = create(obj); live.add(url); counts.created += 1; return url;
  };
  URL.revokeObjectURL = (url) => { if (live.delete(url)) counts.revoked += 1; revoke(url); };
  window.__objectUrls = { counts, live: () => live.size };
})();"""


def in_order(wanted: tuple[str, ...], columns: list[str]) -> bool:
    """Whether every wanted column is there, in the wanted order."""
    rest = iter(columns)
    return all(name in rest for name in wanted)


async def buy_and_pay(viewer: ViewerClient, product_id: str) -> dict[str, Any]:
    hold = await viewer.request("buy", product_id=product_id)
    assert hold["type"] == "hold", hold
    placed = await viewer.request("checkout", hold_id=hold["hold"]["id"])
    assert placed["type"] == "order_placed", placed
    return dict(placed["order"])


async def open_console(browser: Any, base: str, host: Host, watch: Any) -> Page:
    """The host console of a room whose key this device keeps (as after creating
    it or opening it once), with object URLs counted from before the page loads."""
    console: Page = await keyed_console(browser, base, host, watch, "Report show",
                                        init_script=OBJECT_URLS_SCRIPT, accept_downloads=True)
    await open_tool(console, "Report")
    return console


async def settled_report(host: Host, holds: int) -> dict[str, Any]:
    """The report once the holds counted by the server's pulse (once a second) are in."""
    async def check() -> dict[str, Any] | None:
        report: dict[str, Any] = await host.call("GET", "/report", expect=200)
        return report if report["funnel"]["holds"] >= holds else None
    report: dict[str, Any] = await eventually(check)
    return report


async def check_summary(console: Page, report: dict[str, Any]) -> None:
    """The panel shows the report's totals, revenue per currency and funnel."""
    panel = console.locator("#rp")
    totals = report["totals"]
    for key in ("orders", "orders_cancelled", "units", "buyers"):
        await expect(panel.locator(f"#rp-t-{key}")).to_have_text(str(totals[key]))
    # One line per currency, each its own amount: never a sum across currencies.
    lines = panel.locator("#rp-revenue li")
    await expect(lines).to_have_count(len(totals["revenue"]))
    for currency, minor in totals["revenue"].items():
        line = lines.and_(console.locator(f'[data-currency="{currency}"]'))
        await expect(line).to_have_attribute("data-minor", str(minor))
    await expect(lines.and_(console.locator('[data-currency="USD"]')).locator(".rp-amount")
                 ).to_have_text(f"${totals['revenue']['USD'] / 100:.2f}")
    await expect(lines.and_(console.locator('[data-currency="JPY"]')).locator(".rp-amount")
                 ).to_have_text(f"¥{totals['revenue']['JPY']:,}")
    funnel = report["funnel"]
    steps = panel.locator("#rp-funnel li")
    await expect(steps).to_have_count(4)
    for i, name in enumerate(("viewers", "holds", "buyers", "orders")):
        step = steps.nth(i)
        await expect(step).to_have_attribute("data-step", name)
        await expect(step).to_have_attribute("data-value", str(funnel[name]))
        await expect(step.locator(".rp-n")).to_have_text(str(funnel[name]))
    await expect(steps.nth(0).locator(".rp-extra")).to_have_text(
        f"peak {funnel['peak_viewers']} at once")
    await expect(steps.nth(1).locator(".rp-extra")).to_have_text(
        f"{funnel['hold_expiry_rate'] * 100:.1f}% expired unpaid ({funnel['holds_expired']})")
    await expect(panel.locator("#rp-conversion")).to_have_text(
        f"Conversion: {funnel['conversion'] * 100:.1f}% of viewers bought.")


async def check_proofs(console: Page, report: dict[str, Any]) -> None:
    """The giveaway's proof (seed hash, seed, winners) and each auction's chain check."""
    proofs = console.locator("#rp-proofs")
    await expect(proofs.locator("li")).to_have_count(len(report["lotteries"])
                                                     + len(report["auctions"]))
    for lot in report["lotteries"]:
        item = proofs.locator(f'[data-lottery-id="{lot["lottery_id"]}"]')
        values = item.locator(".rp-v")
        await expect(values.nth(0)).to_have_text(lot["seed_hash"])
        await expect(values.nth(1)).to_have_text(lot["seed"])
        await expect(values.nth(3)).to_have_text(", ".join(lot["winners"]))
    for auc in report["auctions"]:
        item = proofs.locator(f'[data-auction-id="{auc["auction_id"]}"]')
        await expect(item).to_have_attribute("data-chain-ok",
                                             "true" if auc["chain_ok"] else "false")
        await expect(item.locator(".rp-chain")).to_have_text(
            "✓ The bid chain verifies" if auc["chain_ok"] else "✗ The bid chain does not verify")


async def test_show_report_downloads_and_the_final_report_at_the_end(
        server: LiveServer, http: httpx.AsyncClient, browser: Any,
        page_errors: PageErrors) -> None:
    host = await create_room(http, "Report show")
    room = host.room_id
    lamp = await host.product(stock=10, price=4900, title="Aurora Desk Lamp")
    bag = await host.call("POST", "/products", {"title": "Leather Bag", "price": 300000,
                                                "currency": "JPY", "stock": 5}, expect=201)
    await host.sale(lamp["product_id"], units=5, limit=2, price=2900)
    # The bag sells at its list price (buy-it-now once pinned).
    await host.call("POST", "/pins", {"product_id": bag["product_id"], "open_for_sale": True},
                    expect=200)
    # A giveaway drawn live and an auction nobody bids in (the show's end ends it).
    vase = await host.product(stock=1, price=2000, title="Blue Vase")
    auction = await host.call("POST", "/auctions", {"product_id": vase["product_id"],
                                                    "start_price": 1000, "duration_s": 600},
                              expect=201)
    lottery = await host.call("POST", "/lotteries", {"prize": "Signed poster",
                                                     "duration_s": 600}, expect=201)
    a = await join(server, room)
    b = await join(server, room)
    try:
        await buy_and_pay(a, lamp["product_id"])
        await buy_and_pay(b, lamp["product_id"])
        await buy_and_pay(b, bag["product_id"])
        for viewer in (a, b):
            entered = await viewer.request("enter_lottery", lottery_id=lottery["lottery_id"])
            assert entered["type"] == "lottery_entered", entered
        await host.call("POST", f"/lotteries/{lottery['lottery_id']}/draw", expect=200)
        report = await settled_report(host, holds=3)
        assert report["totals"]["revenue"] == {"USD": 5800, "JPY": 300000}, report["totals"]
        assert report["room"]["state"] == "live", report["room"]

        console = await open_console(browser, server.base, host, page_errors.watch)
        panel = console.locator("#rp")
        await expect(panel.locator("#rp-summary")).to_be_hidden()
        await expect(panel.locator("#rp-intro")).to_be_visible()

        # ---------------------------------------------------------------- a live snapshot
        await console.get_by_role("button", name="Show report").click()
        await expect(panel).to_have_attribute("data-loaded", "true")
        await expect(panel.locator("#rp-summary")).to_be_visible()
        await expect(panel.locator("#rp-state")).to_have_attribute("data-state", "live")
        await check_summary(console, await host.call("GET", "/report", expect=200))
        rows = panel.locator("#rp-products tr")
        await expect(rows.first.locator("th")).to_have_text("Aurora Desk Lamp")
        await expect(rows.first.locator(".rp-rev")).to_have_text("$58.00")
        await expect(panel.locator("#rp-coupon-cost")).to_have_text("No coupons were dropped.")
        await expect(panel.locator("#rp-audit")).to_have_attribute("data-ok", "true")
        await check_proofs(console, await host.call("GET", "/report", expect=200))
        await expect(panel.locator(f'[data-auction-id="{auction["auction_id"]}"] .item-meta')
                     ).to_have_text("open · 0 bids")

        # ---------------------------------------------------------------- downloads
        result = panel.locator("#rp-dl-result")
        async with console.expect_download() as csv_info:
            await console.get_by_role("button", name="Report (CSV)").click()
        csv_file = await csv_info.value
        assert csv_file.suggested_filename == f"{room}-report.csv"
        csv_text = (await csv_file.path()).read_text(encoding="utf-8")
        header = csv_text.splitlines()[0]
        assert in_order(REPORT_CSV_COLUMNS, header.split(",")), header
        # The very file the server serves: fetched with the key, saved untouched.
        served = await http.get(f"/api/rooms/{room}/report.csv",
                                headers={"X-Host-Key": host.key})
        assert served.status_code == 200 and csv_text == served.text, (csv_text, served.text)
        totals = {row["currency"]: row for row in csv.DictReader(io.StringIO(csv_text))
                  if row["product_id"] == "(all)"}
        assert {cur: int(row["revenue"]) for cur, row in totals.items()} \
            == report["totals"]["revenue"], totals
        await expect(result).to_have_text(f"✓ Downloaded {room}-report.csv")

        async with console.expect_download() as html_info:
            await console.get_by_role("button", name="Report (HTML)").click()
        html_file = await html_info.value
        assert html_file.suggested_filename == f"{room}-report.html"
        html_text = (await html_file.path()).read_text(encoding="utf-8")
        assert "<svg" in html_text, html_text[:500]
        await expect(result).to_have_text(f"✓ Downloaded {room}-report.html")

        async with console.expect_download() as orders_info:
            await console.get_by_role("button", name="Orders (CSV)").click()
        orders_file = await orders_info.value
        assert orders_file.suggested_filename == f"{room}-orders.csv"
        orders_lines = (await orders_file.path()).read_text(encoding="utf-8").splitlines()
        assert orders_lines[0].startswith("order_id,created_at,status,"), orders_lines
        assert len(orders_lines) == 1 + 3, orders_lines

        # The JSON answer names no file: the fallback name.
        async with console.expect_download() as json_info:
            await console.get_by_role("button", name="Report (JSON)").click()
        json_file = await json_info.value
        assert json_file.suggested_filename == f"{room}-report.json"
        saved = json.loads((await json_file.path()).read_text(encoding="utf-8"))
        assert saved["room"]["room_id"] == room and saved["totals"] == report["totals"]

        # Every download's object URL was revoked afterwards.
        await console.wait_for_function(
            "() => window.__objectUrls.counts.created === 4 && window.__objectUrls.live() === 0")
        await shoot(console, "report-console-live", full_page=True)
        await panel.screenshot(path=str(ARTIFACTS / "report-panel-live.png"))

        # ---------------------------------------------------------------- the show ends
        await host.call("POST", "/end", expect=200)
        await expect(console.locator("#room-state")).to_have_text("Ended")
        # The panel loads the final report by itself.
        await expect(panel.locator("#rp-state")).to_have_attribute("data-state", "ended")
        await expect(panel.locator("#rp-state")).to_have_text(re.compile(
            r"^Room state: ended at .+\. This is the final report\.$"))
        final = await host.call("GET", "/report", expect=200)
        assert final["room"]["state"] == "ended", final["room"]
        await check_summary(console, final)
        await expect(panel.locator("#rp-audit")).to_have_attribute("data-ok", "true")
        await check_proofs(console, final)
        # The end closes the auction nobody bid in, as the server says.
        [closed] = final["auctions"]
        assert closed["state"] != "open" and closed["bids"] == 0, closed
        await expect(panel.locator(f'[data-auction-id="{auction["auction_id"]}"] .item-meta')
                     ).to_have_text(f"{closed['state']} · 0 bids · no winner")
        assert await unnamed_controls(console) == []
        _, failures = await contrast_failures(console)
        assert failures == [], failures

        # ---------------------------------------------------------------- a narrow screen
        await console.set_viewport_size(ViewportSize(width=PHONE["width"],
                                                     height=PHONE["height"]))
        await panel.scroll_into_view_if_needed()
        box = await panel.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], box
        # Nothing in the panel scrolls sideways, the products table included.
        wide = await panel.evaluate(
            "el => [el, ...el.querySelectorAll('*')].filter((e) => e.scrollWidth > e.clientWidth"
            " + 1 && getComputedStyle(e).overflowX !== 'visible').map((e) => e.id || e.className)")
        assert wide == [], wide
        await shoot(console, "report-console-phone")
        await panel.screenshot(path=str(ARTIFACTS / "report-panel-phone.png"))
    finally:
        await a.close()
        await b.close()
    assert page_errors.errors == []
