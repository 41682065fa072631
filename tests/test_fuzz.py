"""Property-based fuzz pass over every HTTP endpoint and every WebSocket message type.

One real server for the module (real Redis, real SQLite file), run on its own event
loop in a thread so that Hypothesis drives it with plain blocking clients. Each
HTTP route the app declares has a strategy here (a test fails when a route has
none, so routes added later cannot be forgotten), and so does each viewer message
type of `server.core.protocol` with each of its fields. Requests come from the room's
host and from strangers, with well-formed-but-wrong values (types, ranges, huge
numbers, unicode, nulls, nested objects, extra and missing keys), wrong methods,
odd headers, valid-looking and invalid path ids; frames also as junk JSON,
non-objects, oversized, binary and raw protocol-level junk.

Every example fails on an HTTP 5xx, on an ERROR record or a traceback in the
server's log, and on a WebSocket close code other than those docs/protocol.md
documents for bad input. Derandomized, with a fixed example budget per target, so
CI runs the same examples every time in well under a minute.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlencode

import httpx
import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.routing import Mount, Route, WebSocketRoute
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Subprotocol

from server.core import protocol
from server.realtime import handshake
from server.state.embedded_redis import RedisServer
from server.web.routes import CLIENT_DIR
from tests.support import LiveServer, make_settings

# Close codes docs/protocol.md gives for bad input (and 1000, the client's own).
BAD_INPUT_CLOSES = frozenset({1000, 1002, 1003, 1007, 1008, 1009, 4000, 4001, 4003, 4004,
                              4029})
EXAMPLES = 40


def fuzz_settings(examples: int = EXAMPLES) -> settings:
    return settings(max_examples=examples, deadline=None, derandomize=True, database=None,
                    suppress_health_check=list(HealthCheck), print_blob=False)


# ---------------------------------------------------------------- the server under test


class Faults(logging.Handler):
    """Every ERROR record and every record with a traceback, from any logger."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self._guard = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.ERROR or record.exc_info or record.exc_text:
            with self._guard:
                self.records.append(record)

    def since(self, mark: int) -> list[str]:
        with self._guard:
            return [f"{r.name} {r.levelname}: {r.getMessage()}" +
                    (f"\n{logging.Formatter().formatException(r.exc_info)}" if r.exc_info
                     else "") for r in self.records[mark:]]

    def mark(self) -> int:
        with self._guard:
            return len(self.records)


@dataclass
class World:
    """The server and the objects the fuzz aims at (real ids, so that requests get
    past the lookups into the code behind them)."""

    port: int
    faults: Faults
    room: str = ""
    key: str = ""
    other_room: str = ""  # a room whose key the fuzz never uses
    ids: dict[str, list[str]] = field(default_factory=dict)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


class ThreadedServer:
    """tests.support.LiveServer on its own event loop in a thread."""

    def __init__(self, redis_url: str, data_dir: Path) -> None:
        # Rates raised out of the way: the fuzz is about validation, not the limits
        # (the frame and chat limits have their own tests).
        self.settings = make_settings(
            redis_url, data_dir, hub={"messages_per_s": 10000, "message_burst": 100000},
            chat={"messages_per_s": 1000, "burst": 10000})
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.port = 0
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="fuzz-server", daemon=True)
        self._stop: asyncio.Event | None = None

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._serve())
        except BaseException as exc:  # reported by start()
            self.error = exc
            self.ready.set()
        finally:
            self.loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        live = await LiveServer(self.settings).start()
        self.port = live.port
        self.ready.set()
        try:
            await self._stop.wait()
        finally:
            await live.stop()

    def start(self) -> int:
        self.thread.start()
        if not self.ready.wait(60) or self.error is not None:
            raise RuntimeError(f"fuzz server did not start: {self.error!r}")
        return self.port

    def stop(self) -> None:
        if self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)
        self.thread.join(60)


@pytest.fixture(scope="module")
def world(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[World]:
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    server = ThreadedServer(redis_server.url, tmp_path_factory.mktemp("fuzz") / "data")
    _stream_files(server.settings.stream_dir, tmp_path_factory.mktemp("outside"))
    port = server.start()
    faults = Faults()
    # Attached after the server started: uvicorn's logging set-up replaces the
    # handlers of its own loggers.
    owners = [logging.getLogger("uvicorn"), logging.getLogger()]
    for owner in owners:
        owner.addHandler(faults)
    try:
        w = World(port, faults)
        _populate(w)
        yield w
        assert not faults.since(0), "\n".join(faults.since(0))
    finally:
        for owner in owners:
            owner.removeHandler(faults)
        server.stop()


def _stream_files(folder: Path, outside: Path) -> None:
    """What an encoder leaves in the streams folder, and a link to a file outside it."""
    show = folder / "fz"
    show.mkdir(parents=True)
    (show / "index.m3u8").write_text("#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1.0,\n"
                                      "seg0.ts\n")
    (show / "seg0.ts").write_bytes(b"\x47" + bytes(187))
    (outside / "secret.ts").write_bytes(b"not for the web")
    (show / "out.ts").symlink_to(outside / "secret.ts")


def _populate(w: World) -> None:
    with httpx.Client(base_url=w.base, timeout=30) as http:
        def made(r: httpx.Response) -> dict[str, Any]:
            assert r.status_code in (200, 201), r.text
            data: dict[str, Any] = r.json()
            return data

        room = made(http.post("/api/rooms", json={"title": "Fuzz"}))
        w.room, w.key = room["room"]["room_id"], room["host_key"]
        w.other_room = made(http.post("/api/rooms", json={"title": "Other"}))["room"]["room_id"]
        h = {"X-Host-Key": w.key}
        p = f"/api/rooms/{w.room}"
        product = made(http.post(p + "/products", headers=h, json={
            "product_id": "fz-product", "title": "Mug", "price": 1000, "currency": "USD",
            "stock": 1000000}))
        sale = made(http.post(p + "/sales", headers=h, json={
            "product_id": product["product_id"], "units": 1000, "duration_s": 86400}))
        coupon = made(http.post(p + "/coupons", headers=h, json={
            "kind": "percent", "value": 10, "count": 1000}))
        button = made(http.post(p + "/lotteries", headers=h, json={
            "prize": "Cap", "duration_s": 86400}))
        keyword = made(http.post(p + "/lotteries", headers=h, json={
            "prize": "Hat", "duration_s": 86400, "entry": "keyword", "keyword": "fuzz me"}))
        drawn = made(http.post(p + "/lotteries", headers=h, json={
            "prize": "Pin", "duration_s": 86400}))
        made(http.post(p + f"/lotteries/{drawn['lottery_id']}/draw", headers=h))
        poll = made(http.post(p + "/polls", headers=h, json={
            "question": "Fuzz?", "options": ["a", "b"], "duration_s": 86400}))
        deal = made(http.post(p + "/group-deals", headers=h, json={
            "product_id": product["product_id"], "group_size": 3, "group_price": 500,
            "units": 30, "fill_s": 86400}))
        auction = made(http.post(p + "/auctions", headers=h, json={
            "product_id": product["product_id"], "start_price": 100, "duration_s": 86400}))
        session = made(http.post("/api/session", json={"nickname": "fuzzer"}))
        over = made(http.post("/api/rooms", json={"title": "Over"}))
        made(http.post(f"/api/rooms/{over['room']['room_id']}/end",
                       headers={"X-Host-Key": over["host_key"]}))
    w.ids = {
        "room": [w.room, w.other_room],
        # Lifecycle changes aim elsewhere: the fuzz room must stay live for the rest.
        "spare_room": [w.other_room, over["room"]["room_id"]],
        "product": [product["product_id"]],
        "sale": [sale["sale_id"]],
        "coupon": [coupon["coupon_id"]],
        "lottery": [button["lottery_id"], keyword["lottery_id"], drawn["lottery_id"]],
        "auction": [auction["auction_id"]], "spare_auction": ["a_missing"],
        "poll": [poll["poll_id"]], "spare_poll": ["p_missing"], "question": ["q_missing"],
        "deal": [deal["deal_id"]], "spare_deal": ["gb_missing"], "group": ["g_missing"],
        "viewer": [session["viewer_id"]],
        "hold": [], "message": [], "order": ["o_missing"], "endpoint": ["we_missing"],
        "token": [session["token"]],
    }


# ---------------------------------------------------------------- value strategies

BOUNDARY_INTS = [0, 1, -1, 2, 10, 100, 255, 256, 1000, 65535, 86400, 86401, 604800, 604801,
                 2**31 - 1, 2**31, 2**53, 2**53 + 1, 10**9, 10**9 + 1, 10**12, 10**12 + 1,
                 2**63 - 1, -(2**63), 2**63, 2**64, 10**30, -(10**30)]
# Text with no lone surrogates (those cannot be written as UTF-8); they are still
# sent, escaped, by `json_text(ascii=True)`.
TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)
ODD_TEXT = st.sampled_from([
    "", " ", "\x00", "a\x00b", "\u202e\u200b", "é", "😀" * 3, "../../etc/passwd", "%00",
    "<script>alert(1)</script>", "null", "true", "0", "-1", "1e309", "NaN", "x" * 300,
    "x" * 5000, "\ud800", "Host", "  padded  ", "\t\n", "USD", "usd", "€€€", "kw-ab",
    "javascript:alert(1)", "https://example.com/a.png", "r_missing", "p_1", "v_x",
])
SCALARS = st.one_of(st.none(), st.booleans(), st.sampled_from(BOUNDARY_INTS),
                    st.integers(min_value=-(2**70), max_value=2**70),
                    st.floats(allow_nan=False, allow_infinity=False), TEXT, ODD_TEXT)
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) |
                    st.dictionaries(TEXT, inner, max_size=4), max_leaves=12)
# Mostly small numbers, where the valid ranges are, then the edges of every range.
INTS = st.one_of(st.integers(min_value=0, max_value=60), st.integers(min_value=-5, max_value=2000),
                 st.sampled_from(BOUNDARY_INTS))


def ids(kind: str, w: World) -> st.SearchStrategy[Any]:
    """An id of `kind`: a real one, a well-formed unknown one, or junk."""
    real = w.ids.get(kind) or ["none"]
    return st.one_of(st.sampled_from(real), st.from_regex(protocol.ID_PATTERN, fullmatch=True),
                     ODD_TEXT, st.sampled_from([f"{kind[0]}_missing", "x" * 65]))


def value(plausible: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly a plausible value, often any JSON value at all."""
    return st.one_of(plausible, plausible, JSON)


Fields = Callable[[World], dict[str, st.SearchStrategy[Any]]]


@st.composite
def json_object(draw: st.DrawFn, fields: dict[str, st.SearchStrategy[Any]]) -> dict[str, Any]:
    """Some of `fields` (plausible or wrong values), sometimes extra keys."""
    obj = {}
    for name, strategy in fields.items():
        if draw(st.integers(0, 3)):  # a quarter of the time the field is missing
            obj[name] = draw(value(strategy))
    if draw(st.integers(0, 5)) == 0:
        obj[draw(TEXT | st.sampled_from(["type", "id", "__proto__", "constructor"]))] = \
            draw(JSON)
    return obj


def json_text(obj: Any, ascii_only: bool) -> str:
    return json.dumps(obj, ensure_ascii=ascii_only)


def utf8(text: str) -> bytes:
    """As bytes; a lone surrogate becomes the invalid UTF-8 it would be."""
    return text.encode("utf-8", "surrogatepass")


def sendable(text: str) -> str:
    """A text frame must be valid UTF-8 (raw frames test the invalid kind): lone
    surrogates are written escaped."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


@st.composite
def body(draw: st.DrawFn, fields: dict[str, st.SearchStrategy[Any]]) -> bytes | None:
    """An HTTP body: an object built from the fields, any JSON, or not JSON at all."""
    kind = draw(st.sampled_from(["object", "object", "object", "json", "junk", "none"]))
    if kind == "none":
        return None
    if kind == "junk":
        return draw(st.binary(max_size=64) | st.sampled_from(
            [b"{", b"{}}", b"[", b"\xff\xfe", b"{\"a\": 1e999}", b"{\"a\": NaN}",
             b"{\"title\": \"\\ud800\"}", b"  ", b"{\"a\":1,\"a\":2}", b"[" * 5000]))
    obj = draw(json_object(fields)) if kind == "object" else draw(JSON)
    return utf8(json_text(obj, draw(st.booleans())))


# ---------------------------------------------------------------- HTTP routes


def no_body(w: World) -> dict[str, st.SearchStrategy[Any]]:
    return {}


def product_fields(w: World) -> dict[str, st.SearchStrategy[Any]]:
    return {"product_id": ids("product", w), "title": TEXT | ODD_TEXT, "price": INTS,
            "currency": st.sampled_from(["USD", "EUR", "usd", "US", "ÉUR"]),
            "image_url": ODD_TEXT, "description": TEXT, "stock": INTS}


def sale_fields(w: World) -> dict[str, st.SearchStrategy[Any]]:
    return {"product_id": ids("product", w), "price": INTS, "units": INTS,
            "limit_per_buyer": INTS, "starts_at": INTS, "starts_in_s": INTS,
            "duration_s": INTS}


def coupon_fields(w: World) -> dict[str, st.SearchStrategy[Any]]:
    return {"title": TEXT, "kind": st.sampled_from(["percent", "amount", "gift", ""]),
            "value": INTS, "min_spend": INTS, "currency": st.sampled_from(["USD", "x"]),
            "count": INTS, "expires_in_s": INTS}


def lottery_fields(w: World) -> dict[str, st.SearchStrategy[Any]]:
    return {"prize": TEXT, "winners": INTS, "entry": st.sampled_from(["button", "keyword", "x"]),
            "keyword": TEXT | ODD_TEXT, "duration_s": INTS}


def auction_fields(w: World) -> dict[str, st.SearchStrategy[Any]]:
    return {"product_id": ids("product", w), "start_price": INTS, "duration_s": INTS,
            "increments": JSON | st.lists(st.fixed_dictionaries(
                {"from": INTS, "step": INTS}), max_size=12),
            "reserve_price": INTS, "buy_now_price": INTS,
            "anti_snipe": st.sampled_from(["extend", "sudden_death", "x"]),
            "extend_s": INTS, "signed_only": st.booleans() | INTS, "pay_s": INTS}


@dataclass(frozen=True)
class Endpoint:
    """How to fuzz one route: its path parameters' kinds and its body's fields."""

    params: dict[str, str]
    fields: Fields = no_body
    query: tuple[str, ...] = ()


ROOM = "/api/rooms/{room_id}"
HTTP: dict[tuple[str, str], Endpoint] = {
    ("GET", "/"): Endpoint({}),
    ("GET", "/r/{room_id}"): Endpoint({"room_id": "room"}),
    ("GET", "/host"): Endpoint({}),
    ("GET", "/api"): Endpoint({}),
    ("GET", "/api/health"): Endpoint({}),
    ("GET", "/metrics"): Endpoint({}),
    ("GET", "/api/ready"): Endpoint({}),
    ("GET", "/api/time"): Endpoint({}),
    ("GET", "/api/openapi.json"): Endpoint({}),
    ("GET", "/api/asyncapi.json"): Endpoint({}),
    ("GET", "/api/docs"): Endpoint({}),
    ("GET", "/api/qr.svg"): Endpoint({}, query=("text",)),
    ("POST", "/api/session"): Endpoint({}, lambda w: {
        "nickname": TEXT | ODD_TEXT,
        "shop_token": st.sampled_from(["a.b.c", "x" * 5000, "e30.e30.", ""]) | TEXT}),
    ("POST", "/api/rooms"): Endpoint({}, lambda w: {"title": TEXT | ODD_TEXT,
                                                    "stream_url": ODD_TEXT}),
    ("GET", "/api/rooms"): Endpoint({}, query=("limit", "offset", "state", "cursor")),
    ("GET", ROOM): Endpoint({"room_id": "room"}),
    ("PATCH", ROOM): Endpoint({"room_id": "room"}, lambda w: {
        "title": TEXT | ODD_TEXT, "stream_url": ODD_TEXT | st.just("https://cdn.example/x.m3u8")}),
    ("POST", "/api/webhooks"): Endpoint({}, lambda w: {
        "url": TEXT | ODD_TEXT | st.just("http://127.0.0.1:9/x"),
        "events": JSON | st.lists(TEXT, max_size=3), "description": TEXT}),
    ("GET", "/api/webhooks"): Endpoint({}),
    ("DELETE", "/api/webhooks/{endpoint_id}"): Endpoint({"endpoint_id": "endpoint"}),
    ("GET", "/api/webhooks/{endpoint_id}/deliveries"): Endpoint({"endpoint_id": "endpoint"},
                                                                 query=("limit",)),
    ("POST", "/api/webhooks/{endpoint_id}/replay"): Endpoint(
        {"endpoint_id": "endpoint"}, lambda w: {"from_event_id": TEXT | ODD_TEXT}),
    ("POST", ROOM + "/webhooks"): Endpoint({"room_id": "room"}, lambda w: {
        "url": TEXT | ODD_TEXT | st.just("https://shop.example/h"),
        "events": JSON | st.lists(st.sampled_from(["order.placed", "x"]), max_size=3),
        "description": TEXT}),
    ("GET", ROOM + "/webhooks"): Endpoint({"room_id": "room"}),
    ("DELETE", ROOM + "/webhooks/{endpoint_id}"): Endpoint({"room_id": "room",
                                                            "endpoint_id": "endpoint"}),
    ("GET", ROOM + "/webhooks/{endpoint_id}/deliveries"): Endpoint(
        {"room_id": "room", "endpoint_id": "endpoint"}, query=("limit",)),
    ("POST", ROOM + "/webhooks/{endpoint_id}/replay"): Endpoint(
        {"room_id": "room", "endpoint_id": "endpoint"},
        lambda w: {"from_event_id": TEXT | ODD_TEXT}),
    ("POST", ROOM + "/products"): Endpoint({"room_id": "room"}, product_fields),
    ("PATCH", ROOM + "/products/{product_id}"): Endpoint(
        {"room_id": "room", "product_id": "product"},
        lambda w: {k: v for k, v in product_fields(w).items() if k != "product_id"}),
    ("GET", ROOM + "/products/{product_id}"): Endpoint({"room_id": "room",
                                                        "product_id": "product"}),
    ("POST", ROOM + "/pins"): Endpoint({"room_id": "room"}, lambda w: {
        "product_id": ids("product", w), "open_for_sale": st.booleans() | INTS | TEXT}),
    ("PUT", ROOM + "/products/{product_id}/claims"): Endpoint(
        {"room_id": "room", "product_id": "product"},
        lambda w: {"enabled": st.booleans() | INTS, "keyword": TEXT | ODD_TEXT,
                   "quantities": st.booleans() | TEXT}),
    ("PUT", ROOM + "/products/{product_id}/listing"): Endpoint(
        {"room_id": "room", "product_id": "product"},
        lambda w: {"open": st.booleans() | INTS | TEXT, "limit_per_buyer": INTS}),
    ("DELETE", ROOM + "/pins/{product_id}"): Endpoint({"room_id": "room",
                                                       "product_id": "product"}),
    ("POST", ROOM + "/sales"): Endpoint({"room_id": "room"}, sale_fields),
    ("POST", ROOM + "/sales/{sale_id}/stop"): Endpoint({"room_id": "room", "sale_id": "sale"}),
    ("POST", ROOM + "/coupons"): Endpoint({"room_id": "room"}, coupon_fields),
    ("POST", ROOM + "/coupons/{coupon_id}/end"): Endpoint({"room_id": "room",
                                                           "coupon_id": "coupon"}),
    ("POST", ROOM + "/lotteries"): Endpoint({"room_id": "room"}, lottery_fields),
    ("GET", ROOM + "/lotteries/{lottery_id}"): Endpoint({"room_id": "room",
                                                         "lottery_id": "lottery"}),
    ("POST", ROOM + "/lotteries/{lottery_id}/draw"): Endpoint({"room_id": "room",
                                                               "lottery_id": "lottery"}),
    ("GET", ROOM + "/lotteries/{lottery_id}/entrants"): Endpoint({"room_id": "room",
                                                                  "lottery_id": "lottery"}),
    ("POST", ROOM + "/auctions"): Endpoint({"room_id": "room"}, auction_fields),
    ("GET", ROOM + "/auctions"): Endpoint({"room_id": "room"}),
    ("GET", ROOM + "/auctions/{auction_id}"): Endpoint({"room_id": "room",
                                                        "auction_id": "auction"}),
    ("GET", ROOM + "/auctions/{auction_id}/bids"): Endpoint(
        {"room_id": "room", "auction_id": "auction"}, query=("after", "limit")),
    # End and cancel aim at an unknown auction: the fuzz's own must stay open.
    ("POST", ROOM + "/auctions/{auction_id}/end"): Endpoint({"room_id": "room",
                                                             "auction_id": "spare_auction"}),
    ("POST", ROOM + "/auctions/{auction_id}/cancel"): Endpoint(
        {"room_id": "room", "auction_id": "spare_auction"}),
    ("POST", ROOM + "/auctions/{auction_id}/second-chance"): Endpoint(
        {"room_id": "room", "auction_id": "auction"}),
    ("PUT", ROOM + "/pinned-message"): Endpoint({"room_id": "room"}, lambda w: {
        "text": TEXT | ODD_TEXT, "message_id": ids("message", w)}),
    ("DELETE", ROOM + "/pinned-message"): Endpoint({"room_id": "room"}),
    ("POST", ROOM + "/polls"): Endpoint({"room_id": "room"}, lambda w: {
        "question": TEXT | ODD_TEXT, "options": JSON | st.lists(TEXT, max_size=8),
        "duration_s": INTS}),
    ("GET", ROOM + "/polls/{poll_id}"): Endpoint({"room_id": "room", "poll_id": "poll"}),
    # Closing aims at an unknown poll: the fuzz's own stays open for votes.
    ("POST", ROOM + "/polls/{poll_id}/close"): Endpoint({"room_id": "room",
                                                         "poll_id": "spare_poll"}),
    ("GET", ROOM + "/questions"): Endpoint({"room_id": "room"}, query=("limit",)),
    ("GET", ROOM + "/calendar.ics"): Endpoint({"room_id": "room"}, query=("page",)),
    ("POST", ROOM + "/group-deals"): Endpoint({"room_id": "room"}, lambda w: {
        "product_id": ids("product", w), "group_size": INTS, "group_price": INTS,
        "fill_s": INTS, "units": INTS}),
    ("GET", ROOM + "/group-deals/{deal_id}"): Endpoint({"room_id": "room", "deal_id": "deal"}),
    # Closing aims at an unknown deal: the fuzz's own stays open for its messages.
    ("POST", ROOM + "/group-deals/{deal_id}/close"): Endpoint(
        {"room_id": "room", "deal_id": "spare_deal"}),
    ("GET", ROOM + "/groups/{group_id}"): Endpoint({"room_id": "room", "group_id": "group"}),
    ("POST", ROOM + "/questions/{question_id}/answered"): Endpoint(
        {"room_id": "room", "question_id": "question"}),
    # Aims at an unknown order: cancelling one of the fuzz's own would change its counts.
    ("POST", ROOM + "/orders/{order_id}/cancel"): Endpoint(
        {"room_id": "room", "order_id": "order"}, lambda w: {"reason": TEXT | ODD_TEXT}),
    ("POST", ROOM + "/orders/{order_id}/refund"): Endpoint(
        {"room_id": "room", "order_id": "order"}, lambda w: {
            "request_id": st.from_regex(protocol.ID_PATTERN, fullmatch=True) | ODD_TEXT,
            "quantity": INTS, "restock": st.booleans() | INTS,
            "reason": TEXT | ODD_TEXT}),
    ("GET", ROOM + "/fans"): Endpoint({"room_id": "room"}, query=("limit",)),
    ("PUT", ROOM + "/referrals"): Endpoint({"room_id": "room"}, lambda w: {
        "reward": JSON | st.fixed_dictionaries({
            "kind": st.sampled_from(["points", "coupon"]) | TEXT,
            "points": INTS, "coupon": JSON}),
        "max_rewards_per_inviter": INTS}),
    ("GET", ROOM + "/referrals"): Endpoint({"room_id": "room"}),
    ("POST", ROOM + "/announcements"): Endpoint({"room_id": "room"},
                                                lambda w: {"text": TEXT | ODD_TEXT}),
    ("GET", ROOM + "/orders"): Endpoint({"room_id": "room"}, query=("limit", "offset")),
    ("GET", ROOM + "/audit"): Endpoint({"room_id": "room"}),
    ("GET", ROOM + "/report"): Endpoint({"room_id": "room"}),
    ("GET", ROOM + "/report.csv"): Endpoint({"room_id": "room"}),
    ("GET", ROOM + "/report.html"): Endpoint({"room_id": "room"}),
    ("GET", ROOM + "/orders.csv"): Endpoint({"room_id": "room"}),
    ("GET", ROOM + "/stats"): Endpoint({"room_id": "room"}),
    ("POST", ROOM + "/recording"): Endpoint({"room_id": "room"},
                                            lambda w: {"enabled": st.booleans()}),
    ("GET", ROOM + "/trace"): Endpoint({"room_id": "room"}),
    # The body is an image's bytes: JSON, junk and the odd Content-Types are refused.
    ("POST", ROOM + "/images"): Endpoint({"room_id": "room"}),
    ("GET", "/images/{room_id}/{name}"): Endpoint({"room_id": "room", "name": "image"}),
    ("POST", ROOM + "/moderation/delete"): Endpoint(
        {"room_id": "room"}, lambda w: {"message_id": ids("message", w)}),
    ("POST", ROOM + "/moderation/mute"): Endpoint(
        {"room_id": "room"}, lambda w: {"viewer_id": ids("viewer", w), "duration_s": INTS}),
    ("GET", ROOM + "/moderation/mutes"): Endpoint({"room_id": "room"}),
    ("POST", ROOM + "/live"): Endpoint({"room_id": "spare_room"}),
    ("POST", ROOM + "/end"): Endpoint({"room_id": "spare_room"}),
    ("POST", ROOM + "/archive"): Endpoint({"room_id": "spare_room"}),
    ("PATCH", ROOM + "/policy"): Endpoint({"room_id": "room"}, lambda w: {
        "require_verified": st.booleans() | INTS, "limit_per_ip": st.booleans() | TEXT,
        "slow_mode_s": INTS}),
    ("MOUNT", "/static"): Endpoint({"path": "static"}),
    ("GET", "/api/docs/static/{name}"): Endpoint({"name": "static"}),
    ("GET", "/static/vendor/{name}"): Endpoint({"name": "vendor"}),
    # The streams folder holds a playlist, a segment and a link out of it (`_populate`).
    ("GET", "/streams/{path:path}"): Endpoint({"path:path": "stream"}),
}
WS_ROUTES = frozenset({"/ws/{room_id}"})
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD", "TRACE", "PROPFIND"]
# Numbers as a query string may spell them: unicode digits (which str.isdigit
# accepts and int() may not), signs, exponents, spaces, overflow.
ODD_NUMBERS = st.sampled_from(["²", "١٢", "1e3", "99999999999999999999999", "0x10", " 5", "5 ",
                               "-1", "+1", "1_000", "1.0", "٣", "\U0001d7d9"])
QUERY_VALUES = st.one_of(st.sampled_from(["1", "0", "100", "1000", "1001", "abc", ""]),
                         ODD_NUMBERS, TEXT)
CONTENT_TYPES = st.sampled_from([
    None, "application/json", "application/json; charset=utf-8", "text/plain",
    "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "",
    "application/vnd.api+json", "json", ";", "application/json; charset=latin-1",
    b"\xe9/json"])


def app_routes() -> set[tuple[str, str]]:
    """Every (method, path) the app routes, ("WS", path) for WebSockets and
    ("MOUNT", path) for mounted apps: from the app itself."""
    from server.web.app import create_app

    app = create_app(make_settings("redis://127.0.0.1:1", Path("/nonexistent")))
    out: set[tuple[str, str]] = set()
    for r in app.routes:
        if isinstance(r, Route):
            out.update((m, r.path) for m in (r.methods or {"GET"}) if m != "HEAD")
        elif isinstance(r, WebSocketRoute):
            out.add(("WS", r.path))
        elif isinstance(r, Mount):
            out.add(("MOUNT", r.path))
        else:  # pragma: no cover - a new kind of route needs a new kind of strategy
            out.add((type(r).__name__, str(getattr(r, "path", r))))
    return out


def test_every_route_has_a_fuzz_strategy() -> None:
    routes = app_routes()
    declared = set(HTTP) | {("WS", p) for p in WS_ROUTES}
    assert routes - declared == set(), "routes without a fuzz strategy in tests/test_fuzz.py"
    assert declared - routes == set(), "fuzz strategies for routes the app no longer has"


def test_every_message_type_and_field_has_a_fuzz_strategy() -> None:
    table = protocol._FIELDS
    assert set(protocol.MESSAGE_TYPES) == set(WS_FIELDS), "message types without a strategy"
    for kind, allowed in table.items():
        assert set(WS_FIELDS[kind]) | {"type"} == set(allowed), kind


def _path_value(kind: str, w: World) -> st.SearchStrategy[str]:
    if kind == "static":
        files = sorted(str(p.relative_to(CLIENT_DIR)) for p in CLIENT_DIR.rglob("*")
                       if p.is_file())[:20]
        return st.one_of(st.sampled_from(files or ["x"]), st.sampled_from(
            ["..%2f..%2fpyproject.toml", "%2e%2e/%2e%2e/README.md", "js/", "nope.js",
             "%00", "viewer.html%00.js"]), TEXT.map(_quote))
    if kind == "vendor":
        return st.one_of(st.sampled_from(["hls.mjs", "hls.worker.js", "hls.min.mjs", "hls.js",
                                          "..%2fpackage.json", "%00", ""]), TEXT.map(_quote))
    if kind == "stream":
        # Real files, then every way of spelling a way out of the folder.
        return st.one_of(st.sampled_from(
            ["fz/index.m3u8", "fz/seg0.ts", "fz/out.ts", "fz", "fz/", "fz//index.m3u8",
             "fz/../fz/index.m3u8", "..%2f..%2fpyproject.toml", "%2e%2e/%2e%2e/README.md",
             "fz/%2e%2e/%2e%2e/x.ts", "%2fetc%2fpasswd", "fz/index.m3u8%00.ts", "%00",
             ".hidden.ts", "fz/index.M3U8", "fz\\index.m3u8"]),
            TEXT.map(_quote), st.lists(TEXT.map(_quote), max_size=10).map("/".join))
    raw = ids(kind, w).map(lambda v: v if isinstance(v, str) else json.dumps(v))
    return raw.map(lambda t: _quote(t) or "x")


def _quote(text: str) -> str:
    return quote(text, safe="", errors="surrogatepass")


@dataclass
class HttpCall:
    method: str
    path: str
    headers: dict[str, str | bytes]
    content: bytes | None


@st.composite
def http_call(draw: st.DrawFn, route: tuple[str, str], w: World) -> HttpCall:
    method, template = route
    spec = HTTP[route]
    path = template
    for name, kind in spec.params.items():
        segment = draw(_path_value(kind, w))
        path = path.replace("{" + name + "}", segment)
    if method == "MOUNT":
        method, path = "GET", template + "/" + draw(_path_value("static", w))
    if draw(st.integers(0, 7)) == 0:
        method = draw(st.sampled_from(METHODS))
    query = {name: draw(QUERY_VALUES) for name in spec.query if draw(st.booleans())}
    query.update(draw(st.dictionaries(st.sampled_from(["x", "since", "token", "limit"]),
                                      QUERY_VALUES, max_size=2)))
    if query:
        path += "?" + urlencode(query, errors="surrogatepass")
    headers: dict[str, str | bytes] = {}
    who = draw(st.sampled_from(["host", "host", "bearer", "none", "wrong", "odd"]))
    if who == "host":
        headers["X-Host-Key"] = w.key
    elif who == "bearer":
        headers["Authorization"] = "Bearer " + w.key
    elif who == "wrong":
        headers["X-Host-Key"] = draw(st.sampled_from(["wrong", w.key[:-1], w.key + "x"]))
    elif who == "odd":
        headers[draw(st.sampled_from(["X-Host-Key", "Authorization", "X-Admin-Key"]))] = \
            draw(st.sampled_from([b"\xe9\xff", b"Bearer \xe9", b"Bearer", b"x" * 8000, b"-"]))
    content = draw(body(spec.fields(w)))
    ctype = draw(CONTENT_TYPES)
    if ctype is not None:
        headers["Content-Type"] = ctype
    return HttpCall(method, path, headers, content)


def _send(http: httpx.Client, call: HttpCall) -> httpx.Response:
    headers = [(k.encode(), v if isinstance(v, bytes) else v.encode("latin-1"))
               for k, v in call.headers.items()]
    return http.request(call.method, call.path, headers=headers, content=call.content)


def _check_response(call: HttpCall, r: httpx.Response) -> None:
    assert r.status_code < 500, (call, r.status_code, r.text[:500])
    if r.status_code >= 400 and call.path.startswith("/api") and call.method != "HEAD":
        error = r.json()["error"]
        assert isinstance(error["code"], str) and isinstance(error["message"], str), r.text


@pytest.fixture(scope="module")
def http(world: World) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=world.base, timeout=30) as client:
        yield client


@pytest.mark.parametrize("route", sorted(HTTP), ids=lambda r: f"{r[0]} {r[1]}")
def test_http_endpoint(route: tuple[str, str], world: World, http: httpx.Client) -> None:
    @fuzz_settings()
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        call = data.draw(http_call(route, world))
        mark = world.faults.mark()
        _check_response(call, _send(http, call))
        assert not world.faults.since(mark), (call, world.faults.since(mark))

    run()


# ---------------------------------------------------------------- raw HTTP framing


def _raw_request(port: int, head: bytes, content: bytes, half_close: bool) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head + content)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        answer = b""
        with contextlib.suppress(TimeoutError, ConnectionError):
            while b"\r\n\r\n" not in answer:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                answer += chunk
        return answer


@fuzz_settings(40)
@given(data=st.data())
def test_http_framing(world: World, data: st.DataObject) -> None:
    """Content-Length that disagrees with the body (shorter, longer with the client
    then going quiet, not a number), chunked bodies, duplicated and odd headers."""
    path = data.draw(st.sampled_from([
        "/api/rooms", "/api/session", f"/api/rooms/{world.room}/products",
        f"/api/rooms/{world.room}/moderation/mute", "/api/health"]))
    content = data.draw(st.binary(max_size=40) | st.just(b'{"title": "x"}'))
    length = data.draw(st.one_of(
        st.just(str(len(content))), st.integers(0, 200).map(str),
        st.sampled_from(["-1", "abc", "1e3", "99999999999999999999", "", " 5", "0x10"])))
    extra = data.draw(st.lists(st.sampled_from([
        b"Transfer-Encoding: chunked", b"Content-Type: application/json",
        b"Content-Type: text/plain", b"Content-Length: 3", b"Expect: 100-continue",
        b"X-Host-Key: " + world.key.encode(), b"X-Host-Key: \xe9",
        b"Connection: close"]), max_size=3))
    chunked = any(h.startswith(b"Transfer-Encoding") for h in extra)
    # The client goes quiet (its side shut) whenever the server could wait for more.
    half_close = (data.draw(st.booleans()) or chunked or not length.isdigit()
                  or int(length) > len(content))
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {length}\r\n"
            .encode() + b"".join(h + b"\r\n" for h in extra) + b"Connection: close\r\n\r\n")
    mark = world.faults.mark()
    answer = _raw_request(world.port, head, content, half_close)
    if answer:
        status = answer.split(b" ", 2)[1]
        assert not status.startswith(b"5"), (head, content, answer[:300])
    assert not world.faults.since(mark), (head, content, world.faults.since(mark))


# ---------------------------------------------------------------- WebSocket messages

WsFields = Callable[[World], dict[str, st.SearchStrategy[Any]]]
REQUEST_ID = st.one_of(st.from_regex(protocol.ID_PATTERN, fullmatch=True), ODD_TEXT)
WS_FIELDS: dict[str, dict[str, Callable[[World], st.SearchStrategy[Any]]]] = {
    "ping": {"t": lambda w: INTS | st.floats(allow_nan=False), "request_id": lambda w: REQUEST_ID},
    "chat": {"text": lambda w: TEXT | ODD_TEXT | st.just("I say fuzz me"),
             "request_id": lambda w: REQUEST_ID},
    "like": {"count": lambda w: INTS, "request_id": lambda w: REQUEST_ID},
    "buy": {"request_id": lambda w: REQUEST_ID, "product_id": lambda w: ids("product", w),
            "quantity": lambda w: INTS},
    "checkout": {"request_id": lambda w: REQUEST_ID, "hold_id": lambda w: ids("hold", w),
                 "coupon_id": lambda w: ids("coupon", w)},
    "release": {"request_id": lambda w: REQUEST_ID, "hold_id": lambda w: ids("hold", w)},
    "claim_coupon": {"request_id": lambda w: REQUEST_ID,
                     "coupon_id": lambda w: ids("coupon", w)},
    "enter_lottery": {"request_id": lambda w: REQUEST_ID,
                      "lottery_id": lambda w: ids("lottery", w),
                      "keyword": lambda w: TEXT | st.just("FUZZ me")},
    "join_waitlist": {"request_id": lambda w: REQUEST_ID,
                      "product_id": lambda w: ids("product", w)},
    "leave_waitlist": {"request_id": lambda w: REQUEST_ID,
                       "product_id": lambda w: ids("product", w)},
    "bid": {"request_id": lambda w: REQUEST_ID, "auction_id": lambda w: ids("auction", w),
            "amount": lambda w: INTS, "max_amount": lambda w: INTS},
    "vote": {"request_id": lambda w: REQUEST_ID, "poll_id": lambda w: ids("poll", w),
             "option": lambda w: INTS},
    "ask": {"request_id": lambda w: REQUEST_ID, "text": lambda w: TEXT | ODD_TEXT},
    "start_group": {"request_id": lambda w: REQUEST_ID, "deal_id": lambda w: ids("deal", w)},
    "join_group": {"request_id": lambda w: REQUEST_ID, "group_id": lambda w: ids("group", w)},
    "upvote": {"request_id": lambda w: REQUEST_ID,
               "question_id": lambda w: ids("question", w)},
    "watching": {"request_id": lambda w: REQUEST_ID},
    "fan_status": {"request_id": lambda w: REQUEST_ID},
    "invite": {"request_id": lambda w: REQUEST_ID},
    "accept_invite": {"request_id": lambda w: REQUEST_ID,
                      "invite": lambda w: TEXT | ODD_TEXT | st.just("e30.AAAA")},
    "resync": {"request_id": lambda w: REQUEST_ID},
}


class Viewer:
    """One fuzzing viewer connection (the room's host, or a stranger), reopened
    whenever the server closes it with a documented code."""

    def __init__(self, w: World, as_host: bool) -> None:
        self.w = w
        self.as_host = as_host
        self.ws: ClientConnection | None = None
        self.stack = contextlib.ExitStack()
        self.barriers = 0
        self.closes: list[int] = []

    def url(self) -> str:
        return f"ws://127.0.0.1:{self.w.port}/ws/{self.w.room}"

    def open(self) -> ClientConnection:
        if self.ws is None:
            self.stack.close()
            offered = handshake.offer(None, self.w.key if self.as_host else None)
            self.ws = self.stack.enter_context(connect(
                self.url(), subprotocols=[Subprotocol(p) for p in offered], max_size=2**24,
                compression=None, open_timeout=30, close_timeout=5))
        return self.ws

    def send(self, text: str) -> None:
        """Send a frame, then a ping and read up to its pong (the server has handled
        the frame by then). A close must carry a documented code."""
        ws = self.open()
        self.barriers += 1
        barrier = f"fzbarrier{self.barriers}"
        try:
            ws.send(sendable(text))
            ws.send(json.dumps({"type": "ping", "request_id": barrier}))
            while True:
                frame = json.loads(ws.recv(timeout=30))
                if frame.get("type") == "pong" and frame.get("re") == barrier:
                    return
                if frame.get("type") == "hold":  # checkouts and releases need real ones
                    self.w.ids["hold"] = [*self.w.ids["hold"][-9:], frame["hold"]["id"]]
                if frame.get("type") == "chat":
                    self.w.ids["message"] = [*self.w.ids["message"][-9:], frame["message_id"]]
        except ConnectionClosed as exc:
            code = exc.rcvd.code if exc.rcvd is not None else 1006
            self.closes.append(code)
            self.ws = None
            assert code in BAD_INPUT_CLOSES, (text[:300], code, exc)

    def close(self) -> None:
        self.stack.close()
        self.ws = None


@pytest.fixture(scope="module")
def viewers(world: World) -> Iterator[dict[bool, Viewer]]:
    pool = {True: Viewer(world, as_host=True), False: Viewer(world, as_host=False)}
    yield pool
    for v in pool.values():
        v.close()


@st.composite
def ws_frame(draw: st.DrawFn, kind: str, w: World) -> str:
    fields = {name: make(w) for name, make in WS_FIELDS[kind].items()}
    obj: dict[str, Any] = {"type": kind, **draw(json_object(fields))}
    if draw(st.integers(0, 9)) == 0:
        obj["type"] = draw(JSON)
    return json_text(obj, draw(st.booleans()))


@pytest.mark.parametrize("kind", sorted(WS_FIELDS))
def test_ws_message(kind: str, world: World, viewers: dict[bool, Viewer]) -> None:
    @fuzz_settings()
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        viewer = viewers[data.draw(st.booleans())]
        text = data.draw(ws_frame(kind, world))
        mark = world.faults.mark()
        viewer.send(text)
        assert not world.faults.since(mark), (text[:300], world.faults.since(mark))

    run()


@fuzz_settings(60)
@given(data=st.data())
def test_ws_junk(world: World, viewers: dict[bool, Viewer], data: st.DataObject) -> None:
    """Not a message at all: any JSON (non-objects too), broken JSON, lone surrogates
    written escaped, a frame at and above the size limit."""
    viewer = viewers[data.draw(st.booleans())]
    text = data.draw(st.one_of(
        JSON.map(lambda v: json_text(v, True)), TEXT, ODD_TEXT,
        st.sampled_from(['{"type": "buy"', "[]", "null", '"ping"', "{}", '{"type": null}',
                         '{"type": "\\ud800"}', '{"type": "ping", "t": 1e400}',
                         '{"type": "ping", "t": 99999999999999999999999}',
                         '{"type": "chat", "text": "' + "a" * 16000 + '"}',
                         '{"type": "ping", "t": 1}' + " " * 16384]),
    ))
    mark = world.faults.mark()
    viewer.send(text)
    assert not world.faults.since(mark), (text[:300], world.faults.since(mark))


# ---------------------------------------------------------------- raw WebSocket frames


def _client_frame(opcode: int, payload: bytes, fin: bool, rsv: int, masked: bool,
                  declared: int | None) -> bytes:
    n = len(payload) if declared is None else declared
    head = bytes([(0x80 if fin else 0) | (rsv << 4) | opcode])
    bit = 0x80 if masked else 0
    if n < 126:
        head += bytes([bit | n])
    elif n < 65536:
        head += bytes([bit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([bit | 127]) + struct.pack("!Q", n)
    if not masked:
        return head + payload
    mask = os.urandom(4)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def _server_frames(sock: socket.socket) -> Iterator[tuple[int, bytes]]:
    """(opcode, payload) of each frame the server sends, until it closes."""
    buf = b""

    def need(n: int) -> bytes:
        nonlocal buf
        while len(buf) < n:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            buf += chunk
        out, buf = buf[:n], buf[n:]
        return out

    while True:
        b0, b1 = need(2)
        n = b1 & 0x7F
        if n == 126:
            (n,) = struct.unpack("!H", need(2))
        elif n == 127:
            (n,) = struct.unpack("!Q", need(8))
        yield b0 & 0x0F, need(n)


@fuzz_settings(60)
@given(opcode=st.sampled_from([0x0, 0x1, 0x1, 0x1, 0x2, 0x3, 0x7, 0x8, 0x9, 0xA, 0xB, 0xF]),
       payload=st.one_of(st.binary(max_size=200), st.sampled_from([
           b"\xff\xfe", b'{"type": "ping"}', b'{"type": "chat", "text": "\xc3"}',
           b"\xed\xa0\x80", b"\x03\xe8", b"\x03\xe8\xff", b"\x00\x00", b"x" * 126])),
       fin=st.booleans(), rsv=st.sampled_from([0, 0, 0, 1, 4, 7]),
       masked=st.booleans(),
       declared=st.one_of(st.none(), st.none(), st.sampled_from([2**20, 2**40, 2**63 - 1])))
def test_ws_raw_frames(world: World, opcode: int, payload: bytes, fin: bool, rsv: int,
                       masked: bool, declared: int | None) -> None:
    """Frames no client library sends: invalid UTF-8, reserved opcodes and bits,
    unmasked, fragmented, oversized control frames, lengths above the limit. The
    server answers the barrier ping or closes with a documented code."""
    mark = world.faults.mark()
    frame = _client_frame(opcode, payload, fin, rsv, masked,
                          declared if declared is not None and masked else None)
    if declared is not None and masked:
        frame = frame[:14]  # the header alone claims a huge payload
    with socket.create_connection(("127.0.0.1", world.port), timeout=30) as sock:
        sock.sendall((f"GET /ws/{world.room} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                      "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                      "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(1)
        assert b" 101 " in head.split(b"\r\n", 1)[0], head
        sock.sendall(frame)
        with contextlib.suppress(OSError):
            sock.sendall(_client_frame(0x1, b'{"type":"ping","request_id":"rawbarrier"}',
                                       True, 0, True, None))
        code: int | None = None
        with contextlib.suppress(ConnectionError, TimeoutError):
            for op, data in _server_frames(sock):
                if op == 0x8:
                    code = struct.unpack("!H", data[:2])[0] if len(data) >= 2 else 1005
                    break
                if op == 0x1 and b'"re":"rawbarrier"' in data:
                    break
    allowed = set(BAD_INPUT_CLOSES)
    if opcode == 0x8 and len(payload) >= 2:
        allowed.add(struct.unpack("!H", payload[:2])[0])  # the client's own, echoed
    assert code is None or code in allowed, (opcode, payload[:50], code)
    assert not world.faults.since(mark), world.faults.since(mark)


# ---------------------------------------------------------------- the handshake


@fuzz_settings(40)
@given(data=st.data())
def test_ws_handshake(world: World, data: st.DataObject) -> None:
    """The WebSocket handshake: room ids, nicknames and `since` in the URL, host keys
    and tokens offered as subprotocols (valid, wrong, odd), and now and then a
    credential in the URL (refused with 4000)."""
    room = data.draw(ids("room", world).map(lambda v: _quote(str(v)) or "x"))
    query: dict[str, str] = {}
    for name, strategy in (("nickname", TEXT | ODD_TEXT), ("since", QUERY_VALUES)):
        if data.draw(st.booleans()):
            query[name] = data.draw(strategy)
    if data.draw(st.integers(0, 9)) == 0:
        query[data.draw(st.sampled_from(["host_key", "token"]))] = data.draw(TEXT)
    # What a subprotocol entry may hold (RFC 6455: an HTTP token); anything else
    # is refused by the client library before it is sent.
    token_chars = st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                          "!#$%&'*+-.^_`|~", max_size=80)
    offered = []
    if data.draw(st.booleans()):
        offered.append(handshake.PROTOCOL)
    if data.draw(st.booleans()):
        offered.append(handshake.HOST_PREFIX + data.draw(
            st.sampled_from([world.key, "wrong", ""]) | token_chars))
    if data.draw(st.booleans()):
        offered.append(handshake.TOKEN_PREFIX + data.draw(
            st.sampled_from([*world.ids["token"], "x.y", "", "a.b.c"]) | token_chars))
    offered += data.draw(st.lists(token_chars.filter(bool), max_size=3))
    url = f"ws://127.0.0.1:{world.port}/ws/{room}" + (
        f"?{urlencode(query, errors='surrogatepass')}" if query else "")
    mark = world.faults.mark()
    try:
        # An empty list would still send an empty header: offer nothing as None.
        with connect(url, subprotocols=[Subprotocol(p) for p in offered] or None,
                     max_size=2**24,
                     compression=None, open_timeout=30, close_timeout=5) as ws:
            first = json.loads(ws.recv(timeout=30))
            if first["type"] == "error":
                # A refused identity is explained in one frame, then closed (4001/4029).
                assert first["code"] in ("identity_refused", "too_many_identities"), first
                ws.recv(timeout=30)
                raise AssertionError(f"no close after {first}")
            assert first["type"] == "welcome", first
    except ConnectionClosed as exc:
        code = exc.rcvd.code if exc.rcvd is not None else 1006
        assert code in BAD_INPUT_CLOSES, (url, code)
    except InvalidStatus as exc:
        # No WebSocket route matches a room segment holding a slash: the router
        # refuses the handshake (403), before the app sees it.
        assert exc.response.status_code == 403 and "/" in unquote(room), (url, exc)
    assert not world.faults.since(mark), (url, world.faults.since(mark))
