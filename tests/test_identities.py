"""Identities that mean something (issue 11, case 3) and the room-wide chat rate:
shop-signed viewer identities, the room policy (verified identity required, the
per-buyer limit counted per address, slow mode), the guest mint limit per address,
the cap on open holds per viewer and the room-wide chat cap. Real server, real
Redis, real WebSocket clients."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import jwt
import orjson
import pytest
from redis import asyncio as aioredis
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from server.core.keys import room_keys
from tests.support import (
    Host,
    LiveServer,
    ViewerClient,
    create_room,
    eventually,
    join,
    lose_redis_data,
    make_settings,
    offer,
)

SHOP_KEY = "k" * 64  # at least 32 bytes (auth.shop_key); 64 lets the test sign HS512
OTHER_KEY = "x" * 64


def shop_token(sub: str | None = "cust-1", name: str = "Ada", ttl_s: int = 600,
               key: str = SHOP_KEY, algorithm: str = "HS256", **extra: Any) -> str:
    claims: dict[str, Any] = {"exp": int(time.time()) + ttl_s, "name": name, **extra}
    if sub is not None:
        claims["sub"] = sub
    return jwt.encode(claims, key, algorithm=algorithm)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forged(header: dict[str, Any], signature: str = "") -> str:
    """A token with the header an attacker chooses, for algorithms the server must
    refuse (PyJWT would not sign `none`, nor RS256 without a private key)."""
    payload = {"sub": "cust-1", "exp": int(time.time()) + 600, "name": "Mallory"}
    return (f"{_b64(orjson.dumps(header))}.{_b64(orjson.dumps(payload))}."
            f"{signature}")


@pytest.fixture
async def shop_server(redis_url: str, data_dir: Path) -> AsyncIterator[LiveServer]:
    live = await LiveServer(make_settings(
        redis_url, data_dir, auth={"shop_key": SHOP_KEY, "shop_token_max_lifetime_s": 3600},
        sale={"max_holds_per_viewer": 2}, chat={"room_messages_per_s": 0})).start()
    try:
        yield live
    finally:
        await live.stop()


@pytest.fixture
async def shop_http(shop_server: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=shop_server.base, timeout=30) as client:
        yield client


async def refused_join(server: LiveServer, room_id: str, token: str | None = None,
                       **params: Any) -> tuple[dict[str, Any], int | None]:
    """Join expecting a refusal: the error frame sent before the close, and the
    close code."""
    frames: list[dict[str, Any]] = []
    async with connect(server.ws_url(room_id, **params), subprotocols=offer(token),
                       open_timeout=30) as ws:
        try:
            async with asyncio.timeout(30):
                async for raw in ws:
                    frames.append(orjson.loads(raw))
        except ConnectionClosed:
            pass
        code = ws.close_code
    assert frames and frames[0]["type"] == "error", frames
    return frames[0], code


async def selling_room(http: httpx.AsyncClient, units: int = 10,
                       limit: int = 2) -> tuple[Host, str, str]:
    host = await create_room(http)
    product = await host.product(stock=units)
    sale = await host.sale(product["product_id"], units=units, limit=limit)
    return host, product["product_id"], sale["sale_id"]


# ----------------------------------------------------------------- shop identities


async def test_a_shop_token_joins_as_one_verified_viewer_on_every_connection(
        shop_server: LiveServer, shop_http: httpx.AsyncClient) -> None:
    host = await create_room(shop_http)
    token = shop_token("cust-42", name="Ada Lovelace")
    first = await join(shop_server, host.room_id, token=token)
    second = await join(shop_server, host.room_id, token=shop_token("cust-42"))
    try:
        for v in (first, second):
            assert v.welcome["viewer"]["viewer_id"] == "shop_cust-42"
            assert v.welcome["viewer"]["verified"] is True
        assert first.welcome["viewer"]["nickname"] == "Ada Lovelace"
        # The session token it is given keeps the identity, verified, on reconnect.
        again = await join(shop_server, host.room_id, token=first.token)
        assert again.welcome["viewer"] == first.welcome["viewer"]
        await again.close()
        # The HTTP exchange gives the same identity.
        r = await shop_http.post("/api/session", json={"shop_token": token})
        assert r.status_code == 201, r.text
        assert r.json()["viewer_id"] == "shop_cust-42" and r.json()["verified"] is True
        # A guest is not verified.
        guest = await join(shop_server, host.room_id)
        assert guest.welcome["viewer"]["verified"] is False
        assert not guest.viewer_id.startswith("shop_")
        await guest.close()
    finally:
        await first.close()
        await second.close()


# Each token is made when its test runs, not when the suite is collected: a suite
# longer than a token's lifetime (a loaded CI machine) must not turn "subject" into
# "expired".
@pytest.mark.parametrize(("name", "make", "reason"), [
    ("wrong key", lambda: shop_token(key=OTHER_KEY), "signature"),
    ("expired", lambda: shop_token(ttl_s=-120), "expired"),
    ("alg none", lambda: forged({"alg": "none", "typ": "JWT"}), "algorithm"),
    ("HS512", lambda: shop_token(algorithm="HS512"), "algorithm"),
    ("RS256 header",
     lambda: forged({"alg": "RS256", "typ": "JWT"}, _b64(b"\x01" * 256)), "algorithm"),
    ("missing sub", lambda: shop_token(sub=None), "missing_claim"),
    ("too long-lived", lambda: shop_token(ttl_s=7 * 86400), "lifetime"),
    ("sub not an id", lambda: shop_token(sub="ada@example.com"), "subject"),
    ("oversized", lambda: shop_token(padding="p" * 3300), "too_large"),
    ("garbage", lambda: "a.b.c", "malformed"),
])
async def test_a_bad_shop_token_is_refused_with_its_reason(
        shop_server: LiveServer, shop_http: httpx.AsyncClient, name: str,
        make: Callable[[], str], reason: str) -> None:
    token = make()
    host = await create_room(shop_http)
    frame, code = await refused_join(shop_server, host.room_id, token=token)
    assert (frame["code"], frame["details"]["reason"], code) == (
        "identity_refused", reason, 4001), name
    r = await shop_http.post("/api/session", json={"shop_token": token})
    assert r.status_code == 401, r.text
    assert r.json()["error"]["code"] == "identity_refused"
    assert r.json()["error"]["details"]["reason"] == reason


async def test_shop_tokens_are_refused_when_no_shop_key_is_set(server: LiveServer,
                                                              http: httpx.AsyncClient) -> None:
    host = await create_room(http)
    frame, code = await refused_join(server, host.room_id, token=shop_token())
    assert (frame["details"]["reason"], code) == ("not_configured", 4001)


# ----------------------------------------------------------------- the room policy


async def test_a_room_requiring_verified_identity_sells_only_to_shop_customers(
        shop_server: LiveServer, shop_http: httpx.AsyncClient) -> None:
    host, pid, _ = await selling_room(shop_http)
    coupon = await host.call("POST", "/coupons", {"title": "5 off", "kind": "amount",
                                                  "value": 100, "count": 10,
                                                  "currency": "USD", "expires_in_s": 600},
                             expect=201)
    guest = await join(shop_server, host.room_id)
    customer = await join(shop_server, host.room_id, token=shop_token("cust-7"))
    try:
        # Before the policy: a guest may hold (and release) units.
        hold = await guest.request("buy", product_id=pid, quantity=1)
        assert hold["type"] == "hold", hold
        # Host only, validated, answered with the whole policy.
        r = await shop_http.patch(f"/api/rooms/{host.room_id}/policy",
                                  json={"require_verified": True})
        assert r.status_code == 401
        await host.call("PATCH", "/policy", {"require_verified": "yes"}, expect=400)
        await host.call("PATCH", "/policy", {"slow_mode_s": 99999}, expect=400)
        await host.call("PATCH", "/policy", {"shadow": True}, expect=400)
        await host.call("PATCH", "/policy", {}, expect=400)
        policy = await host.call("PATCH", "/policy", {"require_verified": True}, expect=200)
        assert policy == {"require_verified": True, "limit_per_ip": False, "slow_mode_s": 0}
        event = await guest.next_event("room_policy")
        assert event["policy"] == policy
        state = (await shop_http.get(f"/api/rooms/{host.room_id}")).json()
        assert state["policy"] == policy

        refused = await guest.request("buy", product_id=pid, quantity=1)
        assert refused["code"] == "signed_identity_required", refused
        checkout = await guest.request("checkout", hold_id=hold["hold"]["id"])
        assert checkout["code"] == "signed_identity_required", checkout
        claim = await guest.request("claim_coupon", coupon_id=coupon["coupon_id"])
        assert claim["code"] == "signed_identity_required", claim
        # The rule is the atomic scripts' (reserve, begin_checkout, claim_coupon,
        # enter_lottery): a giveaway entry too.
        lottery = await host.call("POST", "/lotteries", {"prize": "mug", "duration_s": 600},
                                  expect=201)
        entry = await guest.request("enter_lottery", lottery_id=lottery["lottery_id"])
        assert entry["code"] == "signed_identity_required", entry
        entered = await customer.request("enter_lottery", lottery_id=lottery["lottery_id"])
        assert entered["type"] == "lottery_entered", entered
        # Guests still chat.
        await guest.send({"type": "chat", "text": "just watching"})
        await guest.next_event("chat", where=lambda f: f["text"] == "just watching")

        bought = await customer.request("buy", product_id=pid, quantity=1)
        assert bought["type"] == "hold", bought
        claimed = await customer.request("claim_coupon", coupon_id=coupon["coupon_id"])
        assert claimed["type"] == "coupon_claimed", claimed
        placed = await customer.request("checkout", hold_id=bought["hold"]["id"],
                                        coupon_id=coupon["coupon_id"])
        assert placed["type"] == "order_placed", placed
        assert placed["order"]["buyer_id"] == "shop_cust-7"
    finally:
        await guest.close()
        await customer.close()


async def test_a_lottery_in_a_verified_room_takes_only_shop_customers(
        shop_server: LiveServer, shop_http: httpx.AsyncClient) -> None:
    host = await create_room(shop_http)
    await host.call("PATCH", "/policy", {"require_verified": True}, expect=200)
    lottery = await host.call("POST", "/lotteries", {"prize": "mug", "winners": 1,
                                                     "entry": "button", "duration_s": 60},
                              expect=201)
    guest = await join(shop_server, host.room_id)
    customer = await join(shop_server, host.room_id, token=shop_token("cust-9"))
    try:
        refused = await guest.request("enter_lottery", lottery_id=lottery["lottery_id"])
        assert refused["code"] == "signed_identity_required", refused
        entered = await customer.request("enter_lottery", lottery_id=lottery["lottery_id"])
        assert entered["type"] == "lottery_entered", entered
        listed = await host.call("GET", f"/lotteries/{lottery['lottery_id']}/entrants",
                                 expect=200)
        assert listed["entrants"] == ["shop_cust-9"]
    finally:
        await guest.close()
        await customer.close()


async def test_the_per_buyer_limit_holds_for_one_shop_customer_on_two_connections(
        shop_server: LiveServer, shop_http: httpx.AsyncClient) -> None:
    host, pid, sale_id = await selling_room(shop_http, units=10, limit=2)
    phone = await join(shop_server, host.room_id, token=shop_token("cust-3"))
    laptop = await join(shop_server, host.room_id, token=shop_token("cust-3"))
    try:
        answers = await asyncio.gather(phone.request("buy", product_id=pid, quantity=2),
                                       laptop.request("buy", product_id=pid, quantity=2))
        kinds = sorted(a.get("code", a["type"]) for a in answers)
        assert kinds == ["hold", "limit_reached"], answers
        hold = next(a for a in answers if a["type"] == "hold")
        owner = phone if hold is answers[0] else laptop
        other = laptop if owner is phone else phone
        # The other device sees the same identity's hold and may check it out.
        placed = await other.request("checkout", hold_id=hold["hold"]["id"])
        assert placed["type"] == "order_placed", placed
        again = await owner.request("buy", product_id=pid, quantity=1)
        assert again["code"] == "limit_reached", again
        audit = await host.audit()
        assert audit["ok"], audit
        sale = next(s for s in audit["sales"] if s["sale_id"] == sale_id)
        assert (sale["sold"], sale["held"], sale["sold_in_store"], sale["buyers"]) == (2, 0, 2, 1)
    finally:
        await phone.close()
        await laptop.close()


# ----------------------------------------------------------------- guest mode bounds


async def test_new_guest_identities_are_limited_per_address(redis_url: str,
                                                            data_dir: Path) -> None:
    live = await LiveServer(make_settings(
        redis_url, data_dir, auth={"guest_mints_per_ip_per_min": 3,
                                   "shop_key": SHOP_KEY})).start()
    try:
        async with httpx.AsyncClient(base_url=live.base, timeout=30) as http:
            host = await create_room(http)
            minted = [await http.post("/api/session", json={"nickname": f"bot{i}"})
                      for i in range(2)]
            assert [r.status_code for r in minted] == [201, 201]
            first = await join(live, host.room_id)  # the third identity in the minute
            r = await http.post("/api/session", json={"nickname": "bot3"})
            assert r.status_code == 429, r.text
            assert r.json()["error"]["code"] == "too_many_identities"
            retry = int(r.headers["Retry-After"])
            assert 1 <= retry <= 60
            assert r.json()["error"]["details"]["retry_after_s"] == retry
            frame, code = await refused_join(live, host.room_id)
            assert (frame["code"], code) == ("too_many_identities", 4029)
            # Identities already given out keep working; shop customers are not counted.
            back = await join(live, host.room_id, token=minted[0].json()["token"])
            assert back.viewer_id == minted[0].json()["viewer_id"]
            shop = await join(live, host.room_id, token=shop_token("cust-1"))
            assert shop.welcome["viewer"]["verified"] is True
            # Bounded state: one key per address, forgotten after the minute.
            client = aioredis.Redis.from_url(redis_url)
            try:
                mint_keys = [k async for k in client.scan_iter(match="ls:mint:*")]
                assert mint_keys == [b"ls:mint:{127.0.0.1}"]
                assert 0 < await client.pttl(mint_keys[0]) <= 60_000
            finally:
                await client.aclose()
            for v in (first, back, shop):
                await v.close()
    finally:
        await live.stop()


async def test_open_holds_per_viewer_are_capped_across_the_room(
        shop_server: LiveServer, shop_http: httpx.AsyncClient) -> None:
    host = await create_room(shop_http)
    pids = []
    for _ in range(3):
        product = await host.product(stock=5)
        await host.sale(product["product_id"], units=5, limit=5)
        pids.append(product["product_id"])
    viewer = await join(shop_server, host.room_id)
    try:
        a = await viewer.request("buy", product_id=pids[0], quantity=1)
        b = await viewer.request("buy", product_id=pids[1], quantity=1)
        assert (a["type"], b["type"]) == ("hold", "hold")
        third = await viewer.request("buy", product_id=pids[2], quantity=1)
        assert third["code"] == "too_many_holds", third
        # A release frees a slot; so does a checkout (the order is no open hold).
        assert (await viewer.request("release", hold_id=a["hold"]["id"]))["type"] == \
            "hold_released"
        c = await viewer.request("buy", product_id=pids[2], quantity=1)
        assert c["type"] == "hold", c
        assert (await viewer.request("checkout", hold_id=b["hold"]["id"]))["type"] == \
            "order_placed"
        d = await viewer.request("buy", product_id=pids[0], quantity=1)
        assert d["type"] == "hold", d
        assert (await viewer.request("buy", product_id=pids[1], quantity=1))["code"] == \
            "too_many_holds"
        # A stopped sale voids its hold and gives the slot back.
        await host.call("POST", f"/sales/{c['hold']['sale_id']}/stop", expect=200)
        e = await viewer.request("buy", product_id=pids[1], quantity=1)
        assert e["type"] == "hold", e
        # Another viewer has its own allowance.
        other = await join(shop_server, host.room_id)
        assert (await other.request("buy", product_id=pids[0], quantity=1))["type"] == \
            "hold"
        await other.close()
    finally:
        await viewer.close()


async def test_limit_per_ip_shares_one_allowance_among_guests_of_one_address(
        shop_server: LiveServer, shop_http: httpx.AsyncClient, redis_url: str) -> None:
    host, pid, sale_id = await selling_room(shop_http, units=10, limit=2)
    await host.call("PATCH", "/policy", {"limit_per_ip": True}, expect=200)
    guests = [await join(shop_server, host.room_id) for _ in range(5)]
    try:
        answers = await asyncio.gather(*(g.request("buy", product_id=pid, quantity=1)
                                         for g in guests))
        held = [a for a in answers if a["type"] == "hold"]
        refused = [a for a in answers if a["type"] == "error"]
        assert len(held) == 2, answers
        assert {a["code"] for a in refused} == {"ip_limit_reached"}
        audit = await host.audit()
        sale = next(s for s in audit["sales"] if s["sale_id"] == sale_id)
        assert (sale["held"], sale["sold"]) == (2, 0)
        # One releases: its unit is given back to the address, and one more buys.
        owner = guests[answers.index(held[0])]
        released = await owner.request("release", hold_id=held[0]["hold"]["id"])
        assert released["type"] == "hold_released"
        waiting = [g for g, a in zip(guests, answers, strict=True) if a["type"] == "error"]
        retried = await waiting[0].request("buy", product_id=pid, quantity=1)
        assert retried["type"] == "hold", retried
        assert (await waiting[1].request("buy", product_id=pid, quantity=1))["code"] == \
            "ip_limit_reached"
        client = aioredis.Redis.from_url(redis_url, decode_responses=True)
        try:
            counts = await client.hgetall(room_keys(host.room_id).ip_bought(sale_id))
        finally:
            await client.aclose()
        assert counts == {"127.0.0.1": "2"}
        # Stopping the sale gives every held unit back, per address too.
        await host.call("POST", f"/sales/{sale_id}/stop", expect=200)
        client = aioredis.Redis.from_url(redis_url, decode_responses=True)
        try:
            assert await client.hgetall(room_keys(host.room_id).ip_bought(sale_id)) == {}
        finally:
            await client.aclose()
    finally:
        await asyncio.gather(*(g.close() for g in guests))


# ----------------------------------------------------------------- chat rates


async def test_slow_mode_refuses_a_second_message_but_never_the_host(
        shop_server: LiveServer, shop_http: httpx.AsyncClient) -> None:
    host = await create_room(shop_http)
    await host.call("PATCH", "/policy", {"slow_mode_s": 30}, expect=200)
    viewer = await join(shop_server, host.room_id)
    console = await join(shop_server, host.room_id, host_key=host.key)
    try:
        await viewer.send({"type": "chat", "request_id": "c1", "text": "first"})
        await viewer.next_event("chat", where=lambda f: f["text"] == "first")
        second = await viewer.request("chat", text="second")
        assert second["code"] == "slow_mode", second
        assert 1 <= second["details"]["retry_after_s"] <= 30
        assert second["details"]["slow_mode_s"] == 30
        for text in ("host one", "host two", "host three"):
            await console.send({"type": "chat", "text": text})
            await viewer.next_event("chat", where=lambda f, t=text: f["text"] == t)
        # Off again: the viewer may speak at once.
        await host.call("PATCH", "/policy", {"slow_mode_s": 0}, expect=200)
        await viewer.send({"type": "chat", "text": "third"})
        await viewer.next_event("chat", where=lambda f: f["text"] == "third")
        assert not any(f.get("text") == "second" for f in viewer.frames)
    finally:
        await viewer.close()
        await console.close()


async def test_the_room_wide_chat_cap_bounds_what_the_hub_delivers(
        redis_url: str, data_dir: Path) -> None:
    cap = 5
    live = await LiveServer(make_settings(redis_url, data_dir,
                                          chat={"room_messages_per_s": cap})).start()
    try:
        async with httpx.AsyncClient(base_url=live.base, timeout=30) as http:
            host = await create_room(http)
            observer = await join(live, host.room_id)
            chatters = await asyncio.gather(*(join(live, host.room_id) for _ in range(50)))

            async def speak(i: int, v: ViewerClient) -> bool:
                """True when the message went out, False when the cap refused it."""
                text = f"message {i}"
                await v.send({"type": "chat", "request_id": f"m{i}", "text": text})
                while True:
                    frame = await asyncio.wait_for(v.events.get(), 60)
                    if frame.get("type") == "chat" and frame["text"] == text:
                        return True
                    if frame.get("type") == "error" and frame.get("re") == f"m{i}":
                        assert frame["code"] == "chat_busy", frame
                        assert frame["details"]["retry_after_s"] >= 1
                        return False

            started = time.monotonic()
            outcomes = await asyncio.gather(*(speak(i, v) for i, v in enumerate(chatters)))
            elapsed = time.monotonic() - started
            accepted = sum(outcomes)

            async def all_seen() -> bool:
                seen = [f for f in observer.frames if f.get("type") == "chat"]
                return len(seen) >= accepted
            await eventually(all_seen)
            delivered = [f for f in observer.frames if f.get("type") == "chat"]
            # Exactly the accepted ones went out, each once; no more than the bucket
            # allows: a full burst (one second's worth) plus the rate over the time taken.
            assert len(delivered) == accepted
            assert len({f["message_id"] for f in delivered}) == accepted
            assert cap <= accepted <= cap * (elapsed + 1) + 1, (accepted, elapsed)
            assert accepted < 50
            # The host is never limited by it: right after the room's bucket was
            # drained, its messages (within its own per-viewer burst) all go out.
            console = await join(live, host.room_id, host_key=host.key)
            for n in range(5):
                await console.send({"type": "chat", "request_id": f"h{n}", "text": f"host {n}"})
            await observer.next_event("chat", where=lambda f: f["text"] == "host 4")
            assert [f for f in observer.frames if f.get("text", "").startswith("host ")] == \
                [f for f in observer.frames if f.get("type") == "chat"][accepted:]
            assert not [f for f in console.frames if f.get("type") == "error"]
            await console.close()
            await asyncio.gather(observer.close(), *(c.close() for c in chatters))
    finally:
        await live.stop()


async def test_quick_policy_patches_of_different_fields_keep_each_other(
        shop_server: LiveServer, shop_http: httpx.AsyncClient) -> None:
    # A console sends one patch per control it changes; two sent at once used to merge
    # from the same read, so the later write undid the earlier field (found by the
    # browser test of the policy panel under load).
    host, _, _ = await selling_room(shop_http)
    await host.call("PATCH", "/policy", {"require_verified": True, "slow_mode_s": 45},
                    expect=200)
    viewer = await join(shop_server, host.room_id)
    final = {"require_verified": False, "limit_per_ip": True, "slow_mode_s": 0}
    for _ in range(5):
        await asyncio.gather(
            host.call("PATCH", "/policy", {"require_verified": False}, expect=200),
            host.call("PATCH", "/policy", {"slow_mode_s": 0}, expect=200),
            host.call("PATCH", "/policy", {"limit_per_ip": True}, expect=200))
        state = (await shop_http.get(f"/api/rooms/{host.room_id}")).json()
        assert state["policy"] == final
        # Viewers hear the patches in the order they were applied: the last event is
        # the policy as it now is.
        await viewer.next_event("room_policy", where=lambda f: f["policy"] == final)
        events = [f["policy"] for f in viewer.frames if f.get("type") == "room_policy"]
        assert events[-1] == final
        await host.call("PATCH", "/policy", {"require_verified": True, "slow_mode_s": 45,
                                             "limit_per_ip": False}, expect=200)
        await viewer.next_event("room_policy", where=lambda f: f["policy"]["slow_mode_s"] == 45)
    await viewer.close()


# ----------------------------------------------------------------- durability


async def test_the_policy_survives_a_redis_loss(shop_server: LiveServer,
                                                shop_http: httpx.AsyncClient,
                                                redis_url: str) -> None:
    host, pid, _ = await selling_room(shop_http)
    policy = await host.call("PATCH", "/policy", {"require_verified": True,
                                                  "limit_per_ip": True, "slow_mode_s": 20},
                             expect=200)
    await lose_redis_data(redis_url)

    async def whole() -> bool:
        return (await shop_http.get(f"/api/rooms/{host.room_id}")).status_code == 200
    await eventually(whole)
    state = (await shop_http.get(f"/api/rooms/{host.room_id}")).json()
    assert state["policy"] == policy
    guest = await join(shop_server, host.room_id)
    try:
        refused = await guest.request("buy", product_id=pid, quantity=1)
        assert refused["code"] == "signed_identity_required", refused
    finally:
        await guest.close()


@pytest.mark.parametrize(("trusted", "separate"), [("127.0.0.1", True), ("10.9.9.9", False)])
async def test_behind_a_trusted_proxy_each_client_address_has_its_own_allowance(
        redis_url: str, data_dir: Path, trusted: str, separate: bool) -> None:
    """server.forwarded_allow_ips: a proxy listed there (loopback by default) is
    believed about the client's address (X-Forwarded-For), so the mint limit counts
    each client; an unlisted one is not, and its clients share one allowance."""
    live = await LiveServer(make_settings(
        redis_url, data_dir, auth={"guest_mints_per_ip_per_min": 2},
        server={"forwarded_allow_ips": trusted})).start()
    try:
        async with httpx.AsyncClient(base_url=live.base, timeout=30) as http:
            answers = []
            for client in ("192.0.2.1", "192.0.2.1", "192.0.2.2", "192.0.2.2"):
                r = await http.post("/api/session", json={"nickname": "fan"},
                                    headers={"X-Forwarded-For": client})
                answers.append(r.status_code)
            assert answers == ([201, 201, 201, 201] if separate else [201, 201, 429, 429])
    finally:
        await live.stop()
