"""Connection trouble in a real browser: the server restarts under a watching viewer,
and an answer to a buy is lost on the wire. The page must come back as the same
viewer, resume from its last sequence number without a fresh snapshot, and re-send
the unanswered buy under the same request id so exactly one hold exists."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import httpx

from tests.browser.conftest import PageErrors
from tests.browser.helpers import PHONE, FixedPortServer, free_port, shoot, skip_without_browser
from tests.support import LiveServer, create_room, make_settings

skip_without_browser()

from playwright.async_api import WebSocketRoute, expect  # noqa: E402


class SocketLog:
    """Every WebSocket the page opens, with the frames it sent and received."""

    def __init__(self, page: Any) -> None:
        self.sockets: list[dict[str, Any]] = []
        page.on("websocket", self._opened)

    def _opened(self, ws: Any) -> None:
        entry: dict[str, Any] = {"url": ws.url, "received": [], "sent": []}
        self.sockets.append(entry)
        ws.on("framereceived", lambda payload: entry["received"].append(json.loads(payload)))
        ws.on("framesent", lambda payload: entry["sent"].append(json.loads(payload)))


async def test_viewer_survives_a_server_restart_and_resumes(redis_url: str, data_dir: Path,
                                                            browser: Any,
                                                            page_errors: PageErrors) -> None:
    port = free_port()
    settings = make_settings(redis_url, data_dir)
    first = await FixedPortServer(settings, port).start()
    second: FixedPortServer | None = None
    try:
        async with httpx.AsyncClient(base_url=first.base, timeout=30) as http:
            host = await create_room(http, "Restart show")
            lamp = await host.product(stock=3, title="Aurora Desk Lamp")
            await host.call("POST", "/pins", {"product_id": lamp["product_id"]}, expect=200)

        ctx = await browser.new_context(viewport=PHONE)
        page = page_errors.watch(await ctx.new_page(), "viewer")
        log = SocketLog(page)
        await page.goto(f"{first.base}/r/{host.room_id}")
        conn = page.locator("#conn")
        await expect(conn).to_have_attribute("data-state", "live")
        await expect(page.locator(".pcard .ptitle")).to_have_text("Aurora Desk Lamp")
        viewer_id = await page.evaluate("() => window.livesell.viewer.viewer_id")
        token = await page.evaluate("() => JSON.parse(localStorage.getItem('livesell.token'))")

        # The server goes away: the page says so, and keeps trying.
        await first.stop()
        await expect(conn).to_have_attribute("data-state", "reconnecting")
        await expect(page.locator("#conn-text")).to_have_text(re.compile("^Reconnecting"))
        last_seq = await page.evaluate("() => window.livesell.live.lastSeq")
        assert isinstance(last_seq, int) and last_seq > 0
        await shoot(page, "viewer-phone-reconnecting")

        # A new server on the same port, Redis and data directory; the host acts at once.
        second = await FixedPortServer(make_settings(redis_url, data_dir), port).start()
        async with httpx.AsyncClient(base_url=second.base, timeout=30) as http:
            host.http = http
            mug = await host.product(stock=2, title="Ceramic Mug")
            await host.call("POST", "/pins", {"product_id": mug["product_id"]}, expect=200)
            await host.call("POST", "/announcements", {"text": "We are back!"}, expect=201)

        await expect(conn).to_have_attribute("data-state", "live", timeout=15_000)
        await expect(page.locator("#announce-text")).to_have_text("We are back!")
        titles = page.locator(".pcard .ptitle")
        await expect(titles).to_have_text(["Aurora Desk Lamp", "Ceramic Mug"])

        # Same identity, and a resume from the last seen sequence number.
        assert await page.evaluate("() => window.livesell.viewer.viewer_id") == viewer_id
        resumed = log.sockets[-1]
        assert f"since={last_seq}" in resumed["url"], resumed["url"]
        # The token went in Sec-WebSocket-Protocol (the server gave the same one back,
        # so it read it), never in the URL; the server answered with the protocol only.
        assert "token" not in resumed["url"] and token not in resumed["url"], resumed["url"]
        assert await page.evaluate("() => window.livesell.live.ws.protocol") == "livesell.v1"
        welcome = resumed["received"][0]
        assert welcome["type"] == "welcome" and welcome["resumed"] is True
        assert welcome["token"] == token
        assert welcome["viewer"]["viewer_id"] == viewer_id
        kinds = [f["type"] for f in resumed["received"]]
        assert "snapshot" not in kinds, kinds
        seqs = [f["seq"] for f in resumed["received"] if "seq" in f]
        assert seqs and seqs[0] == last_seq + 1, (last_seq, seqs)
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), seqs
        assert await page.evaluate("() => window.livesell.live.stats.resyncs") == 0
        await ctx.close()
        assert page_errors.errors == []
    finally:
        if second is not None:
            await second.stop()
        await first.stop()


async def test_unanswered_buy_is_resent_with_its_request_id(server: LiveServer,
                                                            http: httpx.AsyncClient, browser: Any,
                                                            page_errors: PageErrors) -> None:
    host = await create_room(http, "Lossy network show")
    lamp = await host.product(stock=5, title="Aurora Desk Lamp")
    await host.call("POST", "/pins", {"product_id": lamp["product_id"]}, expect=200)
    await host.sale(lamp["product_id"], units=5, limit=1, price=2900)

    ctx = await browser.new_context(viewport=PHONE)
    page = page_errors.watch(await ctx.new_page(), "viewer")
    connections: list[dict[str, Any]] = []
    closing: list[asyncio.Future[None]] = []

    def route(ws: WebSocketRoute) -> None:
        # A man in the middle that, on the first connection only, swallows the answer
        # to the buy and then drops the connection, as a flaky mobile network would.
        entry: dict[str, Any] = {"sent": [], "dropped": None}
        connections.append(entry)
        upstream = ws.connect_to_server()
        first = len(connections) == 1

        def from_page(message: str | bytes) -> None:
            entry["sent"].append(json.loads(message))
            upstream.send(message)

        def from_server(message: str | bytes) -> None:
            frame = json.loads(message)
            if first and frame.get("type") == "hold" and entry["dropped"] is None:
                entry["dropped"] = frame
                closing.append(asyncio.ensure_future(ws.close(code=4000, reason="network blip")))
                return
            ws.send(message)

        ws.on_message(from_page)
        upstream.on_message(from_server)

    await page.route_web_socket(re.compile(r"/ws/"), route)
    await page.goto(f"{server.base}/r/{host.room_id}")
    card = page.locator(f'.pcard[data-product-id="{lamp["product_id"]}"]')
    await expect(card.locator(".buy-btn")).to_be_enabled()
    await card.locator(".buy-btn").click()

    # The page reconnects, re-sends the buy, and the server answers it from its record.
    await expect(page.locator("#checkout")).to_be_visible(timeout=15_000)
    await expect(page.locator("#hold-remaining")).to_have_text(re.compile(r"^(3:00|2:5\d)$"))
    assert len(connections) >= 2
    await asyncio.gather(*closing)
    dropped = connections[0]["dropped"]
    assert dropped is not None, "the first answer was never intercepted"
    buys = [[f for f in c["sent"] if f.get("type") == "buy"] for c in connections]
    assert len(buys[0]) == 1 and len(buys[1]) == 1, buys
    assert buys[0][0]["request_id"] == buys[1][0]["request_id"]
    shown_hold = await page.evaluate("() => window.livesell.state.hold.id")
    assert shown_hold == dropped["hold"]["id"]

    audit = await host.audit()
    assert audit["ok"], audit
    assert [(p["left"], p["held"], p["sold"]) for p in audit["products"]] == [(4, 1, 0)]
    assert await page.evaluate("() => window.livesell.live.pending.size") == 0
    await ctx.close()
    assert page_errors.errors == []


async def test_sequence_gap_triggers_resync(server: LiveServer, http: httpx.AsyncClient,
                                            browser: Any, page_errors: PageErrors) -> None:
    host = await create_room(http, "Gappy show")
    lamp = await host.product(stock=5, title="Aurora Desk Lamp")

    ctx = await browser.new_context(viewport=PHONE)
    page = page_errors.watch(await ctx.new_page(), "viewer")
    sent: list[dict[str, Any]] = []
    dropped: list[dict[str, Any]] = []

    def route(ws: WebSocketRoute) -> None:
        # Loses the first "pinned" event on its way to the page, as pub/sub may.
        upstream = ws.connect_to_server()

        def from_page(message: str | bytes) -> None:
            sent.append(json.loads(message))
            upstream.send(message)

        def from_server(message: str | bytes) -> None:
            frame = json.loads(message)
            if frame.get("type") == "pinned" and not dropped:
                dropped.append(frame)
                return
            ws.send(message)

        ws.on_message(from_page)
        upstream.on_message(from_server)

    await page.route_web_socket(re.compile(r"/ws/"), route)
    await page.goto(f"{server.base}/r/{host.room_id}")
    await expect(page.locator("#conn")).to_have_attribute("data-state", "live")
    await expect(page.locator("#cards-empty")).to_be_visible()

    await host.call("POST", "/pins", {"product_id": lamp["product_id"]}, expect=200)
    await host.call("POST", "/announcements", {"text": "Look at the lamp"}, expect=201)
    # The announcement arrives one number after a missing one: the page asks for a
    # snapshot, and only the snapshot can bring back the pin it never saw.
    await expect(page.locator("#announce-text")).to_have_text("Look at the lamp")
    await expect(page.locator(".pcard .ptitle")).to_have_text(["Aurora Desk Lamp"])
    assert len(dropped) == 1
    assert [f for f in sent if f.get("type") == "resync"] == [{"type": "resync"}]
    assert await page.evaluate("() => window.livesell.live.stats.resyncs") == 1
    assert await page.evaluate("() => window.livesell.live.stats.snapshots") == 2
    await ctx.close()
    assert page_errors.errors == []


async def test_duplicated_checkout_places_one_order(server: LiveServer, http: httpx.AsyncClient,
                                                    browser: Any,
                                                    page_errors: PageErrors) -> None:
    """A network that delivers the checkout twice (same request id, back to back):
    the server runs at most one checkout of the hold, and the page shows one order
    and no error, whichever answer comes first."""
    host = await create_room(http, "Double delivery show")
    lamp = await host.product(stock=3, title="Aurora Desk Lamp")
    await host.call("POST", "/pins", {"product_id": lamp["product_id"]}, expect=200)
    await host.sale(lamp["product_id"], units=3, limit=1, price=2900)

    ctx = await browser.new_context(viewport=PHONE)
    page = page_errors.watch(await ctx.new_page(), "viewer")
    checkouts: list[dict[str, Any]] = []
    answers: list[dict[str, Any]] = []

    def route(ws: WebSocketRoute) -> None:
        upstream = ws.connect_to_server()

        def from_page(message: str | bytes) -> None:
            frame = json.loads(message)
            upstream.send(message)
            if frame.get("type") == "checkout":
                checkouts.append(frame)
                upstream.send(message)  # delivered twice

        def from_server(message: str | bytes) -> None:
            frame = json.loads(message)
            if frame.get("re") and checkouts and frame["re"] == checkouts[0]["request_id"]:
                answers.append(frame)
            ws.send(message)

        ws.on_message(from_page)
        upstream.on_message(from_server)

    await page.route_web_socket(re.compile(r"/ws/"), route)
    await page.goto(f"{server.base}/r/{host.room_id}")
    buy = page.locator(".pcard .buy-btn")
    await expect(buy).to_be_enabled()
    await buy.click()
    await expect(page.locator("#checkout")).to_be_visible()
    await page.locator("#pay-btn").click()
    await expect(page.locator("#order-done")).to_be_visible()
    await expect(page.locator("#order-text")).to_contain_text("paid $29.00")
    await expect(page.locator("#checkout-msg")).to_be_hidden()
    assert len({c["request_id"] for c in checkouts}) == 1
    assert {a["type"] for a in answers} <= {"order_placed", "error"}
    assert any(a["type"] == "order_placed" for a in answers)
    for a in answers:
        if a["type"] == "error":
            assert a["code"] == "request_in_progress", a
    orders = await host.call("GET", "/orders", expect=200)
    assert len(orders["orders"]) == 1
    audit = await host.audit()
    assert audit["ok"], audit
    assert [(p["left"], p["held"], p["sold"]) for p in audit["products"]] == [(2, 0, 1)]
    await ctx.close()
    assert page_errors.errors == []
