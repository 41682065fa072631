"""The viewer WebSocket's machine-readable description (server/core/wire.py, served
as AsyncAPI 3.0 by server/web/asyncapi.py) against the real thing.

Pure: a shape for every viewer message type, a JSON Schema (draft 2020-12) for every
frame type the server sends (every broadcast event, every direct frame, every reply
kind an `Answer` is built with, found in the source); each schema well formed.

Agreement: each message shape, taken field by field from its own declaration, says
yes and no where `decode_viewer_message` (the hot path, unchanged) does: a message at
its bounds, one past them, a wrong JSON type, an unknown field, null and absence.

Live: a real server (redis-server, SQLite, uvicorn on port 0) runs a whole show
through the HTTP API while real WebSocket viewers send every message type; every
frame each of them receives must match the schema of its `type`, both wire.py's and
the payload of the document the server serves at /api/asyncapi.json."""

from __future__ import annotations

import ast
import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema  # type: ignore[import-untyped]
import orjson
import pytest
from referencing import Registry
from referencing.jsonschema import DRAFT202012
from websockets.asyncio.client import connect

from server.core import events, wire
from server.core.errors import BadRequest
from server.core.protocol import _FIELDS, MESSAGE_TYPES, FrameLimits, decode_viewer_message
from server.core.schema import JSON, Shape
from server.core.settings import load_settings
from server.web import asyncapi
from tests.support import (
    Host,
    LiveServer,
    ViewerClient,
    eventually,
    join,
    offer,
    server_with,
)
from tests.test_identities import OTHER_KEY, SHOP_KEY, shop_token

ROOT = Path(__file__).resolve().parent.parent
Validator = jsonschema.Draft202012Validator


# ------------------------------------------------------------------ pure


def _answer_kinds() -> set[str]:
    """The kinds the server's features answer with: the first argument of every
    `Answer(...)` and `from_cached(...)` call, and `error` (error_answer)."""
    kinds = {"error"}
    for path in sorted((ROOT / "server").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and \
                    node.func.id in ("Answer", "from_cached") and node.args and \
                    isinstance(node.args[0], ast.Constant) and \
                    isinstance(node.args[0].value, str):
                kinds.add(node.args[0].value)
    return kinds


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def _resolve(doc: Any, ref: str) -> Any:
    """A local `$ref` (`#/a/b`) in `doc`; KeyError when it points nowhere."""
    assert ref.startswith("#/"), ref
    node = doc
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def test_every_message_has_a_shape_and_every_frame_a_schema() -> None:
    shapes = wire.message_shapes(wire.frame_limits(load_settings(None, env={})))
    assert tuple(shapes) == MESSAGE_TYPES
    for kind, shape in shapes.items():
        # Exactly the fields the decoder takes, `type` a one-choice string.
        assert shape.names == _FIELDS[kind], kind
        assert shape.fields["type"].required
        assert shape.fields["type"].kind.schema() == {"type": "string", "enum": [kind]}
        Validator.check_schema(shape.schema())
    replies = _answer_kinds()
    assert replies == {*wire.REPLY_TYPES, wire.ERROR_TYPE}, replies
    expected = {*events.ROOM_EVENTS, *events.DIRECT_FRAMES, *replies}
    assert set(wire.FRAME_TYPES) == expected
    assert len(wire.FRAME_TYPES) == len(expected)
    schemas = wire.frame_schemas()
    assert tuple(schemas) == wire.FRAME_TYPES
    defs = wire.definitions()
    for kind in wire.FRAME_TYPES:
        standalone = wire.frame_schema(kind)
        Validator.check_schema(standalone)
        for ref in _refs(standalone):
            _resolve(standalone, ref)
    for name, schema in defs.items():
        Validator.check_schema(schema)
        for ref in _refs(schema):
            assert ref.removeprefix("#/$defs/") in defs, (name, ref)
    # Broadcast events carry their number and time; the others never do.
    for kind, schema in schemas.items():
        body = _resolve({"$defs": defs}, schema["$ref"]) if "$ref" in schema else schema
        numbered = {"seq", "ts"} <= set(body["required"])
        assert numbered == (kind in events.ROOM_EVENTS), kind


# ------------------------------------------------------------------ shapes vs decoder


def _verdicts(shape: Shape, message: dict[str, Any],
              limits: FrameLimits) -> tuple[bool, bool, bool]:
    """Whether decode_viewer_message, the shape and the shape's JSON Schema each
    accept the message (the first two may refuse only with BadRequest)."""
    verdicts = []
    for check in (lambda: decode_viewer_message(message, limits), lambda: shape.read(message)):
        try:
            check()
            verdicts.append(True)
        except BadRequest:
            verdicts.append(False)
    return verdicts[0], verdicts[1], Validator(shape.schema()).is_valid(message)


def _values(schema: JSON) -> tuple[Any, Any, list[Any]]:
    """From a field's own schema: a valid value at its lower bound, one at its upper
    bound, and the values it must refuse (past a bound, of a wrong JSON type)."""
    if "enum" in schema:
        return schema["enum"][0], schema["enum"][0], ["no-such-" + schema["enum"][0], 1]
    kind = schema.get("type")
    if kind == "integer":
        lo, hi = schema["minimum"], schema["maximum"]
        return lo, hi, [lo - 1, hi + 1, str(lo), lo + 0.5, True]
    if kind == "string":
        least = max(schema.get("minLength", 1), 1)
        refused: list[Any] = ["a" * (schema["maxLength"] + 1), 1, ["a"], True]
        if not Validator(schema).is_valid(""):
            refused.append("")
        return "a" * least, "a" * schema["maxLength"], refused
    if kind == "number":
        return -1.5, 1.5e300, ["1", True, [1]]
    assert "type" not in schema, schema  # a value never looked at
    return "anything", {"any": ["value"]}, []


@pytest.mark.parametrize("limits", [wire.frame_limits(load_settings(None, env={})),
                                    FrameLimits(7, 3, 2)],
                         ids=["default-settings", "small-limits"])
def test_every_shape_says_yes_and_no_where_the_decoder_does(limits: FrameLimits) -> None:
    checked = 0
    for kind, shape in wire.message_shapes(limits).items():
        values = {name: _values(spec.kind.schema()) for name, spec in shape.fields.items()}
        required = {name for name, spec in shape.fields.items() if spec.required}
        lowest = {name: values[name][0] for name in required}
        full_low = {name: v[0] for name, v in values.items()}
        full_high = {name: v[1] for name, v in values.items()}
        for message in (lowest, full_low, full_high):
            assert _verdicts(shape, message, limits) == (True, True, True), (kind, message)
        for name, (_, _, refused) in values.items():
            for value in refused:
                message = {**full_low, name: value}
                assert _verdicts(shape, message, limits) == (False, False, False), \
                    (kind, name, value)
                checked += 1
            absent = {k: v for k, v in full_low.items() if k != name}
            nulled = {**full_low, name: None}
            expected = (name not in required,) * 3
            assert _verdicts(shape, absent, limits) == expected, (kind, name, "absent")
            assert _verdicts(shape, nulled, limits) == expected, (kind, name, "null")
        unknown = {**full_low, "not_a_field": 1}
        assert _verdicts(shape, unknown, limits) == (False, False, False), (kind, "unknown")
        checked += 1
    assert checked > 150


def test_the_shapes_follow_the_limits() -> None:
    shapes = wire.message_shapes(FrameLimits(7, 3, 2))
    assert shapes["chat"].schema()["properties"]["text"]["maxLength"] == 7
    assert shapes["like"].schema()["properties"]["count"]["maximum"] == 3
    assert shapes["buy"].schema()["properties"]["quantity"]["maximum"] == 2
    # Text another viewer sees must still hold a character once cleaned.
    for text in ("\u200b\u200b", "   "):
        with pytest.raises(BadRequest):
            shapes["chat"].read({"type": "chat", "text": text})
        with pytest.raises(BadRequest):
            decode_viewer_message({"type": "chat", "text": text}, FrameLimits(7, 3, 2))
    # A proxy maximum below the bid is refused by both.
    bid = {"type": "bid", "request_id": "b1", "auction_id": "a1", "amount": 5,
           "max_amount": 4}
    with pytest.raises(BadRequest):
        shapes["bid"].read(bid)
    with pytest.raises(BadRequest):
        decode_viewer_message(bid, FrameLimits(7, 3, 2))
    # An integer written 14.0 is 14 to both (and to JSON Schema), so a maximum below
    # it is refused by both, and one at it taken by both.
    for amount, top, taken in ((14.0, 3, False), (14.0, 14, True), (14, 14.0, True)):
        bid = {"type": "bid", "request_id": "b1", "auction_id": "a1", "amount": amount,
               "max_amount": top}
        verdicts = []
        for read in (shapes["bid"].read,
                     lambda m: decode_viewer_message(m, FrameLimits(7, 3, 2))):
            try:
                read(bid)
                verdicts.append(True)
            except BadRequest:
                verdicts.append(False)
        assert verdicts == [taken, taken], (amount, top, verdicts)


# ------------------------------------------------------------------ the document


def _document_checks(doc: dict[str, Any], raw: bytes, live: LiveServer) -> None:
    """The served document is this server's, its references resolve, and its
    payloads are wire.py's schemas."""
    settings = live.settings
    assert raw == asyncapi.document_bytes(settings)
    assert doc["asyncapi"] == "3.0.0"
    for ref in _refs(doc):
        _resolve(doc, ref)
    channel = doc["channels"]["viewer"]
    assert channel["address"] == "/ws/{room_id}" and set(channel["parameters"]) == {"room_id"}
    assert "livesell.token.<token>" in channel["description"]
    assert "livesell.host.<host key>" in channel["description"]
    sent = wire.message_schemas(wire.frame_limits(settings))
    received = wire.frame_schemas(asyncapi.COMPONENT_REF)
    messages = doc["components"]["messages"]
    for action, schemas in (("send", sent), ("receive", received)):
        operation = doc["operations"][action]
        assert operation["action"] == action
        assert operation["channel"] == {"$ref": "#/channels/viewer"}
        keys = [m["$ref"].rpartition("/")[2] for m in operation["messages"]]
        assert keys == [asyncapi.message_key(action, k) for k in schemas]
        for kind, schema in schemas.items():
            message = messages[asyncapi.message_key(action, kind)]
            assert message["payload"] == {"schemaFormat": asyncapi.SCHEMA_FORMAT,
                                          "schema": schema}
            assert channel["messages"][asyncapi.message_key(action, kind)] == {
                "$ref": f"#/components/messages/{asyncapi.message_key(action, kind)}"}
    assert {name: s["schema"] for name, s in doc["components"]["schemas"].items()} == \
        wire.definitions(asyncapi.COMPONENT_REF)
    assert set(messages) == set(channel["messages"])


# ------------------------------------------------------------------ live


class Frames:
    """A validator per frame type from wire.py's standalone schemas and one from the
    served document's payloads (its `$ref`s resolved within the document)."""

    def __init__(self, doc: dict[str, Any]) -> None:
        registry: Registry[Any] = Registry().with_resource(
            "urn:livesell:asyncapi", DRAFT202012.create_resource(doc))
        self.wire = {k: Validator(wire.frame_schema(k)) for k in wire.FRAME_TYPES}
        self.served = {k: Validator({"$ref": "urn:livesell:asyncapi#/components/messages/"
                                             f"receive.{k}/payload/schema"},
                                    registry=registry) for k in wire.FRAME_TYPES}

    def problems(self, frame: dict[str, Any]) -> list[str]:
        kind = frame.get("type")
        if kind not in self.wire:
            return [f"no schema for a frame of type {kind!r}"]
        found = []
        for name, validator in (("wire", self.wire[kind]), ("served", self.served[kind])):
            for error in validator.iter_errors(frame):
                found.append(f"{name}: {'/'.join(map(str, error.absolute_path))}: "
                             f"{error.message[:300]}")
        return found


async def _frame(v: ViewerClient, kind: str,
                 where: Callable[[dict[str, Any]], bool] | None = None,
                 timeout: float = 30) -> dict[str, Any]:
    """The first frame of `kind` (matching `where`) the viewer received, waiting for
    it if need be."""
    async def found() -> dict[str, Any] | None:
        return next((f for f in v.frames if f.get("type") == kind
                     and (where is None or where(f))), None)
    frame: dict[str, Any] = await eventually(found, timeout=timeout)
    return frame


async def _reply(v: ViewerClient, kind: str, expect: str, **fields: Any) -> dict[str, Any]:
    answer = await v.request(kind, timeout=30, **fields)
    assert answer["type"] == expect, (kind, fields, answer)
    return answer


# The frame types the show below must make its viewers receive: all of them (a new
# type of frame is added to the show with its schema).
EXPECTED = frozenset(wire.FRAME_TYPES)


async def test_every_frame_of_a_live_show_matches_its_schema(redis_url: str,
                                                             data_dir: Path) -> None:
    async with server_with(redis_url, data_dir,
                           auth={"shop_key": SHOP_KEY, "shop_token_max_lifetime_s": 3600},
                           server={"reminder_lead_s": 57}) as (live, http):
        raw = (await http.get("/api/asyncapi.json")).content
        doc = orjson.loads(raw)
        _document_checks(doc, raw, live)
        frames = Frames(doc)
        clients: list[ViewerClient] = []
        stopped: Exception | None = None
        try:
            await _show(live, http, clients)
        except Exception as exc:
            # The frames received until then are checked first: a frame the schemas
            # do not describe explains more than the wait it broke.
            stopped = exc
        finally:
            await asyncio.gather(*(c.close() for c in clients))
    failures: dict[str, tuple[dict[str, Any], list[str]]] = {}
    for client in clients:
        for frame in client.frames:
            problems = frames.problems(frame)
            if problems:  # the first of each type
                failures.setdefault(str(frame.get("type")), (frame, problems))
    assert not failures, "frames that do not match their schema:\n" + "\n".join(
        f"{orjson.dumps(f).decode()[:2000]}\n  -> {p}" for f, p in failures.values())
    if stopped is not None:
        raise stopped
    seen = {f.get("type") for c in clients for f in c.frames}
    assert seen >= EXPECTED, f"never seen: {sorted(EXPECTED - seen)}"
    received = sum(len(c.frames) for c in clients)
    assert received > 250, received


async def _show(live: LiveServer, http: httpx.AsyncClient,
                clients: list[ViewerClient]) -> None:
    """A scheduled show, run through the HTTP API, with its viewers sending every
    message type; every client it opens is added to `clients`."""
    async def viewer(token: str | None = None, host_key: str | None = None,
                     **params: Any) -> ViewerClient:
        v = await join(live, host.room_id, token=token, host_key=host_key, **params)
        clients.append(v)
        return v

    starts_at = int(time.time() * 1000) + 60_000  # its reminder is due in 3 s
    r = await http.post("/api/rooms", json={"title": "Schema show", "starts_at": starts_at})
    assert r.status_code == 201, r.text
    room = r.json()["room"]
    host = Host(http, room["room_id"], r.json()["host_key"])
    # Ada resumes from the room's first number (its creation time): whenever she joins,
    # she gets every event from the start, the reminder included.
    ada = await viewer(shop_token("ada", name="Ada"), since=room["created_at"])
    assert ada.welcome["resumed"] is True
    bob = await viewer(shop_token("bob", name="Bob"))
    cy = await viewer(nickname="Cy")
    console = await viewer(host_key=host.key)
    messages_sent: set[str] = set()

    async def send(v: ViewerClient, kind: str, **fields: Any) -> None:
        messages_sent.add(kind)
        await v.send({"type": kind, **fields})

    async def ask(v: ViewerClient, kind: str, expect: str, **fields: Any) -> dict[str, Any]:
        messages_sent.add(kind)
        return await _reply(v, kind, expect, **fields)

    # The catalogue, while the show is scheduled.
    sale_p = await host.product(stock=20, price=800)
    wait_p = await host.product(stock=1, price=700)
    auction_p = await host.product(stock=3, price=5000)
    group_p = await host.product(stock=10, price=900)
    claim_p = await host.product(stock=5, price=600)
    await host.call("POST", "/pins", {"product_id": sale_p["product_id"]}, expect=200)
    await host.call("DELETE", f"/pins/{sale_p['product_id']}", expect=200)
    await host.call("PUT", f"/products/{wait_p['product_id']}/listing", {"open": True},
                    expect=200)
    await host.call("POST", "/pins", {"product_id": claim_p["product_id"]}, expect=200)
    await host.call("PUT", f"/products/{claim_p['product_id']}/claims", {"enabled": True},
                    expect=200)
    await _frame(ada, "show_reminder")
    await host.call("POST", "/live", expect=200)
    sale = await host.call("POST", "/sales", {
        "product_id": sale_p["product_id"], "price": 500, "units": 6, "limit_per_buyer": 2,
        "starts_in_s": 3, "duration_s": 600}, expect=201)
    # Pings, likes, fan standing, errors.
    pong = await ask(ada, "ping", "pong", t=123.5)
    assert pong["t"] == 123.5 and "re" in pong
    await send(bob, "ping")
    await send(ada, "like", count=3)
    await ask(ada, "watching", "fan")
    await ask(bob, "fan_status", "fan")
    await cy.ws.send("not json")
    await cy.send({"type": "buy"})
    await cy.send({"type": "no_such_type", "request_id": "x1"})
    # Chat, from a viewer and from the host console; moderation; announcements.
    await send(bob, "chat", text="Hello from Bob", request_id="chat-1")
    await send(console, "chat", text="Welcome everyone")
    said = await _frame(ada, "chat", where=lambda f: f["text"] == "Hello from Bob")
    await host.call("PUT", "/pinned-message", {"message_id": said["message_id"]}, expect=200)
    await host.call("DELETE", "/pinned-message", expect=200)
    await host.call("PUT", "/pinned-message", {"text": "Free shipping tonight"}, expect=200)
    await host.call("POST", "/moderation/delete", {"message_id": said["message_id"]},
                    expect=200)
    await host.call("POST", "/moderation/mute", {"viewer_id": "v_nobody", "duration_s": 60},
                    expect=200)
    await host.call("POST", "/announcements", {"text": "Next drop in a minute"}, expect=201)
    await host.call("PATCH", "/policy", {"slow_mode_s": 0}, expect=200)
    await host.call("PATCH", "", {"title": "Schema show, part 2",
                                  "stream_url": "https://cdn.example.com/live.m3u8"},
                    expect=200)
    # Coupons and a lottery.
    coupon = await host.call("POST", "/coupons", {"kind": "amount", "value": 100,
                                                  "count": 10, "currency": "USD"}, expect=201)
    await ask(ada, "claim_coupon", "coupon_claimed", coupon_id=coupon["coupon_id"])
    lottery = await host.call("POST", "/lotteries", {"prize": "A cap", "duration_s": 600},
                              expect=201)
    await ask(ada, "enter_lottery", "lottery_entered", lottery_id=lottery["lottery_id"])
    await _frame(bob, "lottery_entrants")
    await host.call("POST", f"/lotteries/{lottery['lottery_id']}/draw", expect=200)
    # A poll and questions.
    poll = await host.call("POST", "/polls", {"question": "Colour?", "options": ["Red", "Blue"],
                                              "duration_s": 600}, expect=201)
    await ask(bob, "vote", "voted", poll_id=poll["poll_id"], option=1)
    await _frame(ada, "poll_votes")
    await host.call("POST", f"/polls/{poll['poll_id']}/close", expect=200)
    asked = await ask(cy, "ask", "asked", text="Does it come in blue?")
    qid = asked["question"]["question_id"]
    await ask(ada, "upvote", "upvoted", question_id=qid)
    await _frame(bob, "question_votes")
    await host.call("POST", f"/questions/{qid}/answered", expect=200)
    # A group deal: Ada starts a group of two, Bob fills it.
    deal = await host.call("POST", "/group-deals", {
        "product_id": group_p["product_id"], "group_size": 2, "group_price": 300,
        "units": 4}, expect=201)
    group = await ask(ada, "start_group", "group", deal_id=deal["deal_id"])
    await ask(bob, "join_group", "group", group_id=group["group_id"])
    await _frame(cy, "group_update", where=lambda f: f["group"]["state"] == "complete")
    # An auction won, its hold let go, offered to the runner-up; another cancelled.
    auction = await host.call("POST", "/auctions", {
        "product_id": auction_p["product_id"], "start_price": 1000, "duration_s": 600},
        expect=201)
    aid = auction["auction_id"]
    await ask(ada, "bid", "bid_placed", auction_id=aid, amount=1000, max_amount=1500)
    outbid = await ask(bob, "bid", "error", auction_id=aid, amount=1100)
    assert outbid["code"] == "outbid_by_proxy", outbid
    ended = await host.call("POST", f"/auctions/{aid}/end", expect=200)
    await ask(ada, "release", "hold_released", hold_id=ended["result"]["hold"]["id"])
    await host.call("POST", f"/auctions/{aid}/second-chance", expect=200)
    other = await host.call("POST", "/auctions", {
        "product_id": auction_p["product_id"], "start_price": 1000}, expect=201)
    await host.call("POST", f"/auctions/{other['auction_id']}/cancel", expect=200)
    # A waitlist: Cy holds the last unit, Bob waits, Cy lets it go and Bob is offered it.
    wait_pid = wait_p["product_id"]
    held = await ask(cy, "buy", "hold", product_id=wait_pid)
    await ask(bob, "join_waitlist", "waitlist", product_id=wait_pid)
    await ask(cy, "release", "hold_released", hold_id=held["hold"]["id"])
    await _frame(ada, "waitlist_offer")
    await ask(bob, "leave_waitlist", "waitlist_left", product_id=wait_pid)
    # Comment-to-buy: with a request id (the hold carries it) and without.
    await send(cy, "chat", text="SOLD", request_id="c-7")
    await _frame(cy, "hold", where=lambda f: f.get("re") == "c-7")
    await send(ada, "chat", text="sold")
    await _frame(ada, "hold", where=lambda f: "re" not in f)
    await _frame(bob, "claimed")
    # A referral: Bob joins through Ada's link; his first order pays her a coupon.
    await host.call("PUT", "/referrals", {"reward": {"kind": "coupon", "coupon": {
        "kind": "amount", "value": 200, "currency": "USD"}}}, expect=200)
    link = await ask(ada, "invite", "invite")
    await ask(bob, "accept_invite", "invite_accepted", invite=link["invite"])
    # The flash sale: scheduled, counted down, open; orders, a coupon at checkout.
    await _frame(ada, "sale_open")
    pid = sale_p["product_id"]
    ada_hold = await ask(ada, "buy", "hold", product_id=pid, quantity=2)
    ada_order = await ask(ada, "checkout", "order_placed", hold_id=ada_hold["hold"]["id"],
                          coupon_id=coupon["coupon_id"])
    bob_hold = await ask(bob, "buy", "hold", product_id=pid)
    bob_order = await ask(bob, "checkout", "order_placed", hold_id=bob_hold["hold"]["id"])
    await _frame(cy, "referral_reward", where=lambda f: f["state"] == "paid")
    await host.call("POST", f"/orders/{bob_order['order']['order_id']}/cancel",
                    {"reason": "out of stock"}, expect=200)
    await _frame(cy, "referral_reward", where=lambda f: f["state"] == "reversed")
    await host.call("POST", f"/orders/{ada_order['order']['order_id']}/refund",
                    {"request_id": "rf-1", "quantity": 1}, expect=200)
    # Cy's hold of the sale is voided when the host stops it.
    await ask(cy, "buy", "hold", product_id=pid)
    await host.call("POST", f"/sales/{sale['sale_id']}/stop", expect=200)
    await _frame(ada, "holds_voided")
    for kind in ("coupon_count", "stock", "likes", "viewers", "group_deal"):
        await _frame(ada, kind)
    # The host ends the coupon drop early.
    await host.call("POST", f"/coupons/{coupon['coupon_id']}/end", expect=200)
    await _frame(ada, "coupon_ended")
    # A snapshot of all that on request, and a resume from a sequence number.
    await send(cy, "resync")
    await _frame(cy, "snapshot", where=lambda f: bool(f["auctions"]) and bool(f["chat"]))
    since = max(cy.seqs()) - 10
    back = await viewer(token=cy.token, since=since)
    assert back.welcome["resumed"] is True

    async def caught_up() -> bool:
        return len(back.seqs()) >= 10
    await eventually(caught_up, timeout=30)
    # The end: the listing's and the group's holds voided, then show_ended; a late
    # viewer's snapshot of the ended show.
    await host.call("POST", "/end", expect=200)
    await _frame(ada, "show_ended")
    late = await viewer()
    snap = await _frame(late, "snapshot")
    assert snap["room"]["state"] == "ended"
    assert messages_sent >= set(MESSAGE_TYPES), set(MESSAGE_TYPES) - messages_sent
    clients.append(await _refused_identity(live, host.room_id))


async def _refused_identity(live: LiveServer, room_id: str) -> ViewerClient:
    """A shop token signed with another key: an error frame, then close 4001. Its
    frames, in a client whose reader has already finished."""
    bad = shop_token("eve", key=OTHER_KEY)
    ws = await connect(live.ws_url(room_id), subprotocols=offer(bad), compression=None,
                       open_timeout=30)
    client = ViewerClient(ws)
    await asyncio.wait_for(client.closed, 30)
    assert ws.close_code == 4001, ws.close_code
    assert [f["type"] for f in client.frames] == ["error"]
    assert client.frames[0]["code"] == "identity_refused"
    with contextlib.suppress(Exception):
        await ws.close()
    return client


def test_the_document_follows_the_settings() -> None:
    """A bound from the settings changes the messages it bounds, and nothing else."""
    base = load_settings(None, env={})
    small = load_settings(None, env={}, overrides={"chat": {"max_length": 7},
                                                   "sale": {"max_quantity_per_buy": 2}})
    one, two = (orjson.loads(asyncapi.document_bytes(s)) for s in (base, small))
    sent = {k: m["payload"]["schema"]["properties"]
            for k, m in two["components"]["messages"].items() if k.startswith("send.")}
    assert sent["send.chat"]["text"]["maxLength"] == 7
    assert sent["send.ask"]["text"]["maxLength"] == 7
    assert sent["send.buy"]["quantity"]["type"] == ["integer", "null"]
    assert sent["send.buy"]["quantity"]["maximum"] == 2
    changed = {k for k, m in one["components"]["messages"].items()
               if two["components"]["messages"][k] != m}
    assert changed == {"send.chat", "send.ask", "send.enter_lottery", "send.buy"}
    for doc in (one, two):
        del doc["components"]["messages"]
    assert one == two
