"""Comment-to-buy against a real server and redis-server: the host sets a claim
keyword on a product; a chat comment that is the keyword buys it through the same
reserve step as the buy button; the same comment sent again buys once; the buyer
gets the hold privately and the room sees who bought; when nothing is left the
comment joins the waitlist; keywords survive a rebuild of Redis from the store."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from server.core.domain import match_claim
from tests.support import (
    Host,
    LiveServer,
    ViewerClient,
    card_when_whole,
    create_room,
    eventually,
    join,
    lose_redis_data,
)


async def claimable(host: Host, stock: int, keyword: str | None = None,
                    **extra: Any) -> str:
    product = await host.product(stock=stock, price=1500)
    pid = str(product["product_id"])
    await host.call("POST", "/pins", {"product_id": pid}, expect=200)
    body: dict[str, Any] = {"enabled": True, **extra}
    if keyword is not None:
        body["keyword"] = keyword
    card = await host.call("PUT", f"/products/{pid}/claims", body, expect=200)
    assert card["listing"]["claim"]["keyword"] == (keyword or "SOLD")
    return pid


async def comment(viewer: ViewerClient, text: str, request_id: str | None = None,
                  timeout: float = 30) -> dict[str, Any]:
    """Send a chat message; its private answer (hold, waitlist place or error)."""
    return await viewer.request("chat", text=text, timeout=timeout,
                                **({"request_id": request_id} if request_id else {}))


async def quiet(viewer: ViewerClient, text: str, request_id: str) -> None:
    """Send a comment that must not claim, and check that no private answer came.
    Chat and resync are handled one after the other in arrival order, so once the
    resync's snapshot is here, the comment's handling (and any answer) is done."""
    await viewer.send({"type": "chat", "text": text, "request_id": request_id})
    before = len([f for f in viewer.frames if f.get("type") == "snapshot"])
    await viewer.send({"type": "resync"})
    await eventually(lambda: _snapshots_after(viewer, before))
    assert not [f for f in viewer.frames if f.get("re") == request_id]


async def _snapshots_after(viewer: ViewerClient, before: int) -> bool:
    return len([f for f in viewer.frames if f.get("type") == "snapshot"]) > before


def test_which_comments_claim() -> None:
    words = {"sold": ("p1", True), "mine": ("p2", False)}
    assert match_claim("SOLD", words, 10) == ("p1", 1)
    assert match_claim("  sold   3 ", words, 10) == ("p1", 3)
    assert match_claim("Sold 11", words, 10) is None  # above the most per buy
    assert match_claim("sold 0", words, 10) is None
    assert match_claim("sold \uff13", words, 10) is None  # a full-width 3: ASCII digits only
    assert match_claim("MINE", words, 10) == ("p2", 1)
    assert match_claim("mine 2", words, 10) is None  # quantities off for p2
    assert match_claim("I sold it", words, 10) is None
    assert match_claim("sold out?", words, 10) is None
    assert match_claim("", words, 10) is None


async def test_a_comment_buys_once_and_the_room_sees_who(
        server: LiveServer, http: httpx.AsyncClient) -> None:
    host = await create_room(http)
    pid = await claimable(host, stock=5)
    buyer = await join(server, host.room_id, nickname="Mia")
    watcher = await join(server, host.room_id)
    answer = await comment(buyer, "sold 2", request_id="c-1")
    assert answer["type"] == "hold", answer
    hold = answer["hold"]
    assert (hold["product_id"], hold["quantity"], hold["unit_price"]) == (pid, 2, 1500)
    claimed = await watcher.next_event("claimed")
    assert (claimed["product_id"], claimed["viewer_id"], claimed["nickname"],
            claimed["quantity"]) == (pid, buyer.viewer_id, "Mia", 2)
    # The same comment sent again (a resend after a reconnect): the same hold.
    again = await comment(buyer, "sold 2", request_id="c-1")
    assert again["hold"] == hold
    card = await host.call("GET", f"/products/{pid}", expect=200)
    assert card["stock"]["held"] == 2
    # An ordinary comment is only chat.
    await quiet(buyer, "is it waterproof?", "c-2")
    claimed_events = [f for f in watcher.frames if f.get("type") == "claimed"]
    assert len(claimed_events) == 1
    placed = await buyer.request("checkout", hold_id=hold["id"])
    assert placed["type"] == "order_placed"
    assert (await host.audit())["ok"]
    await asyncio.gather(buyer.close(), watcher.close())


async def test_many_comments_at_once_take_exactly_the_stock_and_the_rest_wait(
        server: LiveServer, http: httpx.AsyncClient) -> None:
    host = await create_room(http)
    pid = await claimable(host, stock=4, keyword="Mine")
    crowd = await asyncio.gather(*(join(server, host.room_id) for _ in range(12)))
    answers = await asyncio.gather(*(comment(v, "mine") for v in crowd))
    holds = [a for a in answers if a["type"] == "hold"]
    waiting = [a for a in answers if a["type"] == "waitlist"]
    assert len(holds) == 4 and len(waiting) == 8, answers
    assert sorted(a["position"] for a in waiting) == list(range(1, 9))
    card = await host.call("GET", f"/products/{pid}", expect=200)
    assert card["stock"]["left"] == 0 and card["waiting"] == 8
    await asyncio.gather(*(v.close() for v in crowd))


async def test_limits_apply_to_comments_and_refusals_are_private(
        server: LiveServer, http: httpx.AsyncClient) -> None:
    host = await create_room(http)
    pid = await claimable(host, stock=10)
    await host.call("PUT", f"/products/{pid}/listing", {"open": True, "limit_per_buyer": 1},
                    expect=200)
    buyer = await join(server, host.room_id)
    assert (await comment(buyer, "SOLD"))["type"] == "hold"
    refused = await comment(buyer, "SOLD")
    assert (refused["type"], refused["code"]) == ("error", "limit_reached")
    # Closed for sale: a comment gets the buy button's refusal.
    await host.call("PUT", f"/products/{pid}/listing", {"open": False}, expect=200)
    other = await join(server, host.room_id)
    assert (await comment(other, "sold"))["code"] == "not_on_sale"
    # Switched off: SOLD is chat again.
    card = await host.call("PUT", f"/products/{pid}/claims", {"enabled": False}, expect=200)
    assert card["listing"]["claim"] is None
    await quiet(other, "sold", "after-off")
    await asyncio.gather(buyer.close(), other.close())


async def test_keywords_are_unique_and_bad_requests_say_why(
        server: LiveServer, http: httpx.AsyncClient) -> None:
    host = await create_room(http)
    first = await claimable(host, stock=1)
    second = (await host.product(stock=1))["product_id"]
    r = await http.put(f"/api/rooms/{host.room_id}/products/{second}/claims",
                       json={"enabled": True, "keyword": "sold"},
                       headers={"X-Host-Key": host.key})
    assert (r.status_code, r.json()["error"]["code"]) == (409, "keyword_in_use")
    assert r.json()["error"]["details"]["product_id"] == first
    for body, words in [({}, "enabled"), ({"enabled": "yes"}, "enabled"),
                        ({"enabled": True, "keyword": "two words"}, "keyword"),
                        ({"enabled": True, "keyword": "x" * 21}, "keyword"),
                        ({"enabled": True, "quantities": 1}, "quantities"),
                        ({"enabled": True, "price": 1}, "price")]:
        r = await http.put(f"/api/rooms/{host.room_id}/products/{second}/claims", json=body,
                           headers={"X-Host-Key": host.key})
        assert r.status_code == 400 and words in r.json()["error"]["message"], (body, r.text)
    # The first product's keyword can move to the second once it is switched off.
    await host.call("PUT", f"/products/{first}/claims", {"enabled": False}, expect=200)
    await host.call("PUT", f"/products/{second}/claims", {"enabled": True}, expect=200)


async def test_keywords_survive_a_rebuild_of_redis(server: LiveServer, http: httpx.AsyncClient,
                                                   redis_url: str) -> None:
    host = await create_room(http)
    pid = await claimable(host, stock=3, keyword="GRAB", quantities=False)
    await lose_redis_data(redis_url)

    card = await card_when_whole(http, host.room_id, pid)
    assert card["listing"]["claim"] == {"keyword": "GRAB", "quantities": False}
    viewer = await join(server, host.room_id)
    assert (await comment(viewer, "grab"))["type"] == "hold"
    await quiet(viewer, "grab 2", "two")
    await viewer.close()


async def test_keyword_changes_at_once_leave_no_stray_keyword(
        server: LiveServer, http: httpx.AsyncClient) -> None:
    """Two consoles change one product's keyword at the same moment, ten times, then
    switch it off: no keyword still buys; two products asking for one keyword at
    once: exactly one gets it."""
    host = await create_room(http)
    pid = await claimable(host, stock=50)
    for i in range(10):
        await asyncio.gather(
            host.call("PUT", f"/products/{pid}/claims", {"enabled": True, "keyword": f"A{i}"},
                      expect=200),
            host.call("PUT", f"/products/{pid}/claims", {"enabled": True, "keyword": f"B{i}"},
                      expect=200))
    await host.call("PUT", f"/products/{pid}/claims", {"enabled": False}, expect=200)
    viewer = await join(server, host.room_id)
    for i in range(10):
        await quiet(viewer, f"a{i}", f"a-{i}")
        await quiet(viewer, f"b{i}", f"b-{i}")
    others = [(await host.product(stock=1))["product_id"] for _ in range(2)]
    answers = await asyncio.gather(*(http.put(
        f"/api/rooms/{host.room_id}/products/{p}/claims", json={"enabled": True,
                                                                "keyword": "MINE"},
        headers={"X-Host-Key": host.key}) for p in others))
    assert sorted(r.status_code for r in answers) == [200, 409]
    cards = [await host.call("GET", f"/products/{p}", expect=200) for p in others]
    assert sorted(str(c["listing"]["claim"]) for c in cards) == \
        ["None", str({"keyword": "MINE", "quantities": True})]
    await viewer.close()


async def test_a_comment_for_more_than_is_left_gets_the_buy_refusal(
        server: LiveServer, http: httpx.AsyncClient) -> None:
    host = await create_room(http)
    await claimable(host, stock=1)
    viewer = await join(server, host.room_id)
    answer = await comment(viewer, "sold 2")
    assert (answer["type"], answer["code"]) == ("error", "insufficient_stock")
    await viewer.close()


async def test_a_comment_after_the_show_ended_says_so(
        server: LiveServer, http: httpx.AsyncClient) -> None:
    host = await create_room(http)
    await claimable(host, stock=3)
    viewer = await join(server, host.room_id)
    await host.call("POST", "/end", expect=200)
    await viewer.next_event("show_ended")
    # Within the second before the keyword map is refreshed, or after: never a buy.
    await viewer.send({"type": "chat", "text": "sold", "request_id": "late"})
    before = len([f for f in viewer.frames if f.get("type") == "snapshot"])
    await viewer.send({"type": "resync"})
    await eventually(lambda: _snapshots_after(viewer, before))
    replies = [f for f in viewer.frames if f.get("re") == "late"]
    assert all(f["type"] == "error" and f["code"] == "show_ended" for f in replies), replies
    await viewer.close()
