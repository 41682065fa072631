"""The viewer WebSocket's frames, declared: what a viewer may send, as shapes
(server/core/schema.py) that check a message as `decode_viewer_message` does, and
what the server sends, as JSON Schemas (draft 2020-12) of the fields the code
builds. The AsyncAPI document (server/web/asyncapi.py) is made of both, and
tests/test_asyncapi.py holds them to the real server: each shape against
`decode_viewer_message`, each schema against every frame a live show sends.

Viewer -> server: `message_shapes(limits)`, one `Shape` per type in
`protocol.MESSAGE_TYPES`; the bounds that come from the settings (chat length,
likes per frame, quantity per buy) are a `FrameLimits` (`frame_limits(settings)`,
as the web layer builds it). `decode_viewer_message` stays the hot path: these
shapes describe it, they do not replace it.

Server -> viewer: `frame_schemas()`, one schema per frame type: each broadcast
event (`events.ROOM_EVENTS`: `seq`, added by lua/publish.lua, and `ts`, added by
Hub.publish, besides its own fields), each frame sent to one connection
(`events.DIRECT_FRAMES`), each reply an `Answer` carries (`REPLY_TYPES`) and the
`error` frame. The objects several frames carry (a sale, a product card, an
auction ...) are shared definitions (`definitions()`), referred to by `$ref`;
where they live is the caller's (`ref`: a template with one `{}` for the name).
Objects are closed (`additionalProperties: false`) except the one the code passes
through open-ended: an error's `details`. Pure: no I/O.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import orjson

from server.core import events
from server.core.errors import BadRequest
from server.core.protocol import (
    ID_PATTERN,
    MAX_AMOUNT,
    MAX_INVITE,
    MAX_LEVELS,
    MESSAGE_TYPES,
    FrameLimits,
    get_int,
    get_str,
)
from server.core.schema import ID, JSON, Field, Int, Shape, Str, nullable, opt, req
from server.core.settings import Settings
from server.core.text import clean_text

# The JSON Schema dialect of every schema here (the `schemaFormat` of the AsyncAPI
# document's payloads).
DIALECT: Final = "https://json-schema.org/draft/2020-12/schema"
# Where a standalone schema keeps the shared definitions (`frame_schema`).
LOCAL_REF: Final = "#/$defs/{}"


def frame_limits(settings: Settings) -> FrameLimits:
    """The settings' bounds on viewer messages: what server/web/services.py gives
    `decode_viewer_message`, and what the message schemas here state."""
    return FrameLimits(settings.chat.max_length, settings.chat.max_likes_per_frame,
                       settings.sale.max_quantity_per_buy)


# ------------------------------------------------------------------ viewer -> server
#
# Kinds the shape module has no word for, each reading a field exactly as
# decode_viewer_message does.


@dataclass(frozen=True, slots=True)
class Unchecked:
    """Any JSON value: accepted and never looked at (the `request_id` of ping, chat,
    like and resync)."""

    doc: str = ""

    def read(self, d: Mapping[str, Any], key: str) -> Any:
        return d[key]

    def schema(self) -> JSON:
        return {"description": self.doc} if self.doc else {}


@dataclass(frozen=True, slots=True)
class AnyNumber:
    """A JSON number of any size (a ping's client clock)."""

    def read(self, d: Mapping[str, Any], key: str) -> float:
        value = d[key]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise BadRequest(f"{key}: expected a number", details={"field": key})
        return float(value)

    def schema(self) -> JSON:
        return {"type": "number"}


@dataclass(frozen=True, slots=True)
class CleanText:
    """Text others will see (chat, a question): trimmed, then cleaned
    (server/core/text.py: NFKC, no bidi or zero-width characters), and 1..max_len
    characters both before and after the cleaning."""

    max_len: int

    def read(self, d: Mapping[str, Any], key: str) -> str:
        text = clean_text(get_str(d, key, max_len=self.max_len, strip=True))
        return get_str({key: text}, key, max_len=self.max_len, strip=True)

    def schema(self) -> JSON:
        return {**Str(self.max_len, strip=True).schema(),
                "description": "trimmed and cleaned (NFKC; bidi and zero-width characters "
                               "removed): a non-space character must remain"}


@dataclass(frozen=True, slots=True)
class AtLeastField:
    """An integer from the value of an earlier field (`field`, declared before it
    and already checked) up to `hi`; `lo` is the least that field may be."""

    field: str
    lo: int
    hi: int

    def read(self, d: Mapping[str, Any], key: str) -> int:
        # The earlier field as its own check read it (14.0 is 14), so both agree.
        least = get_int(d, self.field, lo=self.lo, hi=self.hi)
        return get_int(d, key, lo=least, hi=self.hi)

    def schema(self) -> JSON:
        return {"type": "integer", "minimum": self.lo, "maximum": self.hi,
                "description": f"at least `{self.field}`"}


RE_DOC: Final = ("optional and not checked; when it is a string matching "
                 f"{ID_PATTERN.pattern} the reply (`pong`, an `error`) carries it as `re`")
_LOOSE_ID: Final = Field(Unchecked(RE_DOC))
_REQUEST_ID: Final = req(ID, "unique per viewer and message type (docs/protocol.md section 8)")


def _message(kind: str, doc: str, fields: dict[str, Field],
             rules: tuple[str, ...] = ()) -> Shape:
    return Shape(kind, {"type": req(Str(len(kind), choices=(kind,))), **fields}, doc=doc,
                 rules=rules)


def message_shapes(limits: FrameLimits) -> dict[str, Shape]:
    """The shape of each viewer message type (protocol.MESSAGE_TYPES), under the
    server's `limits`."""
    return dict(_message_shapes(limits))


@functools.lru_cache(maxsize=16)
def _message_shapes(limits: FrameLimits) -> dict[str, Shape]:
    text = CleanText(limits.chat_max_length)
    shapes = [
        _message("ping", "Answered `pong` at once.", {
            "t": opt(AnyNumber(), doc="the client's clock, echoed as the pong's `t`"),
            "request_id": _LOOSE_ID}),
        _message("chat", "Broadcast as a `chat` event; a comment that claims a product "
                 "(comment-to-buy) is answered `hold`, `waitlist` or `error`.", {
                     "text": req(text), "request_id": _LOOSE_ID}),
        _message("like", "Counted into the room's `likes` event; no reply.", {
            "count": opt(Int(1, limits.max_likes_per_frame), 1), "request_id": _LOOSE_ID}),
        _message("buy", "Answered `hold` or `error`.", {
            "request_id": _REQUEST_ID, "product_id": req(ID),
            "quantity": opt(Int(1, limits.max_quantity_per_buy), 1)}),
        _message("checkout", "Answered `order_placed` or `error`.", {
            "request_id": _REQUEST_ID, "hold_id": req(ID),
            "coupon_id": opt(ID, doc="a coupon the viewer claimed")}),
        _message("release", "Answered `hold_released` or `error`.", {
            "request_id": _REQUEST_ID, "hold_id": req(ID)}),
        _message("claim_coupon", "Answered `coupon_claimed` or `error`.", {
            "request_id": _REQUEST_ID, "coupon_id": req(ID)}),
        _message("enter_lottery", "Answered `lottery_entered` or `error`.", {
            "request_id": _REQUEST_ID, "lottery_id": req(ID),
            "keyword": opt(Str(limits.chat_max_length),
                           doc="needed for a keyword lottery")}),
        _message("join_waitlist", "Answered `waitlist` or `error`.", {
            "request_id": _REQUEST_ID, "product_id": req(ID)}),
        _message("leave_waitlist", "Answered `waitlist_left`.", {
            "request_id": _REQUEST_ID, "product_id": req(ID)}),
        _message("bid", "Answered `bid_placed` or `error`.", {
            "request_id": _REQUEST_ID, "auction_id": req(ID),
            "amount": req(Int(1, MAX_AMOUNT), "minor units"),
            "max_amount": opt(AtLeastField("amount", 1, MAX_AMOUNT),
                              doc="a proxy bid's maximum")},
                 rules=("`max_amount` is at least `amount`.",)),
        _message("vote", "Answered `voted` or `error`.", {
            "request_id": _REQUEST_ID, "poll_id": req(ID),
            "option": req(Int(0, 5), "0-based, below the poll's number of options")}),
        _message("ask", "Answered `asked` or `error`.", {
            "request_id": _REQUEST_ID, "text": req(text)}),
        _message("upvote", "Answered `upvoted` or `error`.", {
            "request_id": _REQUEST_ID, "question_id": req(ID)}),
        _message("start_group", "Answered `group` or `error`.", {
            "request_id": _REQUEST_ID, "deal_id": req(ID)}),
        _message("join_group", "Answered `group` or `error`.", {
            "request_id": _REQUEST_ID, "group_id": req(ID)}),
        _message("watching", "Sent once a minute by a visible page; answered `fan`.", {
            "request_id": _REQUEST_ID}),
        _message("fan_status", "Answered `fan`.", {"request_id": _REQUEST_ID}),
        _message("invite", "Answered `invite` (the viewer's signed link).", {
            "request_id": _REQUEST_ID}),
        _message("accept_invite", "Answered `invite_accepted` or `error`.", {
            "request_id": _REQUEST_ID,
            "invite": req(Str(MAX_INVITE), "the token of the link (judged by the server)")}),
        _message("resync", "Answered by a `snapshot` (coalesced, at most one per "
                 "hub.resync_interval_s).", {"request_id": _LOOSE_ID}),
    ]
    out = {s.what: s for s in shapes}
    assert tuple(out) == MESSAGE_TYPES, "one shape per protocol.MESSAGE_TYPES, in order"
    return out


def message_schemas(limits: FrameLimits) -> dict[str, JSON]:
    """The JSON Schema of each viewer message type."""
    return {kind: shape.schema() for kind, shape in message_shapes(limits).items()}


# ------------------------------------------------------------------ server -> viewer

# Replies to one request (features' `Answer`s), besides `error`.
REPLY_TYPES: Final = (
    "hold", "order_placed", "hold_released", "coupon_claimed", "lottery_entered",
    "waitlist", "waitlist_left", "voted", "asked", "upvoted", "group", "bid_placed", "fan",
    "invite", "invite_accepted")
ERROR_TYPE: Final = "error"
FRAME_TYPES: Final = (*events.ROOM_EVENTS, *events.DIRECT_FRAMES, *REPLY_TYPES, ERROR_TYPE)
# Replies that may answer a `chat` frame (comment-to-buy), whose `re` is there only
# when the chat frame had a request id; every other reply answers a request that
# must have one.
_CHAT_REPLIES: Final = frozenset({"hold", "waitlist"})

_STR: Final[JSON] = {"type": "string"}
_BOOL: Final[JSON] = {"type": "boolean"}
_COUNT: Final[JSON] = {"type": "integer", "minimum": 0}
_MS: Final[JSON] = {"type": "integer", "minimum": 0, "description": "ms, server clock"}
_ID: Final[JSON] = {"type": "string", "pattern": ID_PATTERN.pattern}
_CURRENCY: Final[JSON] = {"type": "string", "pattern": "^[A-Z]{3}$"}
_PSEUDONYM: Final[JSON] = {"type": "string", "pattern": "^[0-9a-f]{12}$",
                           "description": "a bidder's pseudonym in this auction"}
_SHA1: Final[JSON] = {"type": "string", "pattern": "^[0-9a-f]{40}$"}
_SHA256: Final[JSON] = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
_NULL: Final[JSON] = {"type": "null"}
_TICKET: Final[JSON] = {"type": "integer", "minimum": 1, "description": "a place in the line"}


def _const(value: str) -> JSON:
    return {"const": value}


def _enum(*values: str) -> JSON:
    return {"type": "string", "enum": list(values)}


def _list(item: JSON, **extra: Any) -> JSON:
    return {"type": "array", "items": item, **extra}


def _obj(props: dict[str, JSON], optional: tuple[str, ...] = (), doc: str = "") -> JSON:
    """A closed object: every property required unless named in `optional`."""
    missing = set(optional) - set(props)
    assert not missing, f"optional fields not declared: {missing}"
    out: JSON = {"type": "object", "properties": props,
                 "required": [k for k in props if k not in optional],
                 "additionalProperties": False}
    if doc:
        out["description"] = doc
    return out


def _with_doc(schema: JSON, doc: str) -> JSON:
    return {**schema, "description": doc}


class _Builder:
    """The definitions and frame schemas, their `$ref`s made with `template`."""

    def __init__(self, template: str) -> None:
        self.template = template

    def ref(self, name: str) -> JSON:
        return {"$ref": self.template.format(name)}

    def definitions(self) -> dict[str, JSON]:
        r = self.ref
        defs: dict[str, JSON] = {
            "Stock": _obj({"total": _COUNT, "left": _COUNT, "held": _COUNT, "sold": _COUNT},
                          doc="A product's own counters: left + held + sold = total."),
            "Sale": _obj({
                "sale_id": _ID, "product_id": _ID, "price": _COUNT, "currency": _CURRENCY,
                "units": _COUNT, "limit_per_buyer": _COUNT, "starts_at": _MS, "ends_at": _MS,
                "state": _enum("scheduled", "open", "ended", "stopped"),
                "held": _COUNT, "sold": _COUNT, "left": _COUNT,
            }, doc="A flash sale; `state` by the server clock when the object was made."),
            "Listing": _obj({
                "open": _BOOL, "price": _COUNT,
                "currency": {"type": "string", "pattern": "^([A-Z]{3})?$",
                             "description": "'' for a product without a listing"},
                "limit_per_buyer": _COUNT, "held": _COUNT, "sold": _COUNT,
                "claim": nullable(_obj({"keyword": _STR, "quantities": _BOOL},
                                       doc="the comment-to-buy keyword")),
            }, doc="Buy-it-now at the product's list price."),
            "ProductCard": _obj({
                "product_id": _ID, "title": _STR, "price": _COUNT, "currency": _CURRENCY,
                "image_url": _STR, "description": _STR, "stock": r("Stock"),
                "sale": nullable(r("Sale")), "listing": r("Listing"), "waiting": _COUNT,
            }, doc="A product with its stock, its latest sale (null: none), its listing "
                   "and how many wait for it."),
            "Hold": _obj({
                "id": _ID, "product_id": _ID, "sale_id": _ID, "quantity": _COUNT,
                "unit_price": _COUNT, "currency": _CURRENCY, "created_at": _MS,
                "expires_at": _MS,
            }, doc="Units held for one viewer until `expires_at`; `sale_id` is the sale's, "
                   "or the listing's bn_<product_id>."),
            "Order": _obj({
                "order_id": _ID, "hold_id": _ID, "room_id": _ID, "product_id": _ID,
                "sale_id": _ID, "buyer_id": _ID, "quantity": _COUNT, "unit_price": _COUNT,
                "subtotal": _COUNT, "discount": _COUNT, "total": _COUNT,
                "currency": _CURRENCY,
                "coupon_id": _with_doc(_STR, "'' without a coupon"),
                "payment_ref": _STR, "created_at": _MS,
                "request_id": _with_doc(_STR, "the checkout's request id"),
            }, doc="A placed order."),
            "Coupon": _obj({
                "coupon_id": _ID, "title": _STR, "kind": _enum("amount", "percent"),
                "value": _COUNT, "min_spend": _COUNT, "currency": _CURRENCY,
                "count": _COUNT, "remaining": _COUNT, "expires_at": _MS,
            }, doc="A coupon drop."),
            "LotteryResult": _obj({
                "seed": _SHA256, "entrants_digest": _SHA256, "winners": _list(_ID),
                "drawn_at": _MS, "entrants": _list(_STR),
            }, optional=("entrants",),
                doc="A drawn lottery's result; the entrant list itself (`entrants`) is "
                    "only in GET .../lotteries/{id} and the draw's answer, never in an "
                    "event."),
            "Lottery": _obj({
                "lottery_id": _ID, "prize": _STR, "winners_count": _COUNT,
                "entry": _enum("button", "keyword"), "keyword": _STR, "seed_hash": _SHA256,
                "opens_at": _MS, "closes_at": _MS, "state": _enum("open", "drawing", "drawn"),
                "entrants": _COUNT, "min_level": _COUNT, "result": r("LotteryResult"),
            }, optional=("result",), doc="A lottery; `result` once drawn."),
            "AuctionHold": _obj({"id": _ID, "expires_at": _MS, "unit_price": _COUNT},
                                doc="A hold of the auction's unit (the winner's, or the "
                                    "runner-up's on a second chance)."),
            "AuctionResult": _obj({
                "winner": nullable(_PSEUDONYM), "winner_name": nullable(_STR),
                "amount": nullable(_COUNT), "reserve_price": nullable(_COUNT),
                "reserve_met": _BOOL, "ended_at": _MS,
                "ended_by": _enum("clock", "host", "buy_now", "cancelled"),
                "bids": _COUNT, "head": _SHA1, "hold": nullable(r("AuctionHold")),
                "second_chance": nullable(_obj({
                    "bidder": _PSEUDONYM, "bidder_name": _STR, "amount": _COUNT,
                    "hold": r("AuctionHold")})),
                "unit": _enum("held", "aside", "returned", "none"),
            }, doc="How an auction ended."),
            "Auction": _obj({
                "auction_id": _ID, "product_id": _ID, "title": _STR, "currency": _CURRENCY,
                "start_price": _COUNT,
                "increments": _list(_obj({"from": _COUNT, "step": _COUNT}), minItems=1),
                "anti_snipe": _enum("extend", "sudden_death"), "extend_s": _COUNT,
                "duration_s": _COUNT, "signed_only": _BOOL, "pay_s": _COUNT,
                "started_at": _MS, "first_ends_at": _MS, "has_reserve": _BOOL,
                "reserve_met": _BOOL, "buy_now_price": nullable(_COUNT), "ends_at": _MS,
                "state": _enum("open", "ended", "cancelled"), "leader": nullable(_PSEUDONYM),
                "leader_name": nullable(_STR), "amount": nullable(_COUNT),
                "min_next": _COUNT, "bids": _COUNT, "extensions": _COUNT,
                "genesis": _SHA1, "head": _SHA1, "result": nullable(r("AuctionResult")),
            }, doc="An auction as everyone sees it (never a bidder's maximum)."),
            "ChainEntry": _obj({
                "seq": _COUNT, "bidder": _PSEUDONYM, "amount": _COUNT, "at": _MS,
                "ends_at": _MS, "kind": _enum("bid", "proxy", "buy_now"), "prev": _SHA1,
                "hash": _SHA1,
            }, doc="An accepted bid's entry in the auction's hash chain."),
            "Poll": _obj({
                "poll_id": _ID, "question": _STR, "options": _list(_STR, minItems=2),
                "opens_at": _MS, "closes_at": _MS, "votes": _list(_COUNT),
                "total": _COUNT, "percent": _list(_COUNT), "state": _enum("open", "closed"),
                "closed_at": nullable(_MS),
            }, doc="A poll with its counts."),
            "Question": _obj({
                "question_id": _ID, "viewer_id": _ID, "nickname": _STR, "text": _STR,
                "votes": _COUNT, "asked_at": _MS, "answered_at": nullable(_MS),
            }, doc="A viewer's question to the host."),
            "PinnedMessage": _obj({
                "text": _STR, "nickname": _STR,
                "message_id": nullable(_with_doc(_ID, "null for the host's own note")),
                "pinned_at": _MS,
            }, doc="The message the host pinned."),
            "GroupDeal": _obj(self._deal_props(), doc="A group deal (without its groups)."),
            "GroupDealOpened": _obj({
                **self._deal_props(), "groups": _list(r("Group")),
            }, doc="A group deal as its opening announces it: with its open groups (none "
                   "yet)."),
            "Group": _obj({
                "group_id": _ID, "deal_id": _ID, "state": _enum("open", "complete", "expired"),
                "size": _COUNT, "members": _COUNT, "seats_left": _COUNT, "deadline": _MS,
                "starter": _STR, "member_names": _list(_STR),
            }, doc="A group of a deal."),
            "Room": _obj({"room_id": _ID, "title": _STR, "stream_url": _STR,
                          "created_at": _MS, "state": _enum("scheduled", "live", "ended"),
                          "starts_at": nullable(_MS), "ended_at": nullable(_MS)},
                         doc="A room: its title, stream and lifecycle."),
            "Mutes": _obj({
                "mutes": _list(_obj({
                    "viewer_id": _ID, "until": _MS,
                    "nickname": _with_doc(nullable(_STR), "the name of their latest "
                                          "message in the room's recent chat, if any")})),
                "server_time": _MS}, doc="The viewers muted now, the soonest to speak "
                                         "again first."),
            "Policy": _obj({"require_verified": _BOOL, "limit_per_ip": _BOOL,
                            "slow_mode_s": _COUNT}, doc="The room policy the host set."),
            "Viewers": _obj({"now": _COUNT, "unique": _COUNT, "peak": _COUNT},
                            doc="Viewers connected now, ever, and the most at once (host "
                                "consoles not counted)."),
        }
        defs["ChatEvent"] = self._event("chat", {
            "message_id": _ID, "viewer_id": _ID, "nickname": _STR, "text": _STR,
            "level": {"type": "integer", "minimum": 0, "maximum": MAX_LEVELS,
                      "description": "the sender's fan level then (0: none)"},
            "host": {"const": True, "description": "only on a host console's message"},
        }, optional=("host",), doc="A chat message (also the items of a snapshot's `chat`).")
        return defs

    @staticmethod
    def _deal_props() -> dict[str, JSON]:
        return {"deal_id": _ID, "product_id": _ID, "title": _STR, "currency": _CURRENCY,
                "group_size": _COUNT, "units": _COUNT, "held": _COUNT, "sold": _COUNT,
                "min_level": _COUNT, "group_price": _COUNT, "fill_s": _COUNT,
                "state": _enum("open", "closed"), "left": _COUNT}

    # -------------------------------------------------------------- frame helpers

    @staticmethod
    def _event(kind: str, props: dict[str, JSON], optional: tuple[str, ...] = (),
               doc: str = "") -> JSON:
        """A broadcast event: numbered (`seq`, first; publish.lua) and stamped (`ts`,
        Hub.publish)."""
        return _obj({"seq": _with_doc(_COUNT, "the room's sequence number"),
                     "type": _const(kind), **props,
                     "ts": _with_doc(_MS, "when it was published")}, optional, doc)

    @staticmethod
    def _reply(kind: str, props: dict[str, JSON], doc: str,
               optional: tuple[str, ...] = ()) -> JSON:
        """A reply to one request: `re` is its request id."""
        if kind in _CHAT_REPLIES:
            optional = ("re", *optional)
        return _obj({"type": _const(kind),
                     "re": _with_doc(_ID, "the request's request_id"), **props},
                    optional, doc)

    def frames(self) -> dict[str, JSON]:
        r, ev, reply = self.ref, self._event, self._reply
        out: dict[str, JSON] = {
            # ---- broadcast events
            "product": ev("product", {"product": r("ProductCard")},
                          doc="A product was added or changed."),
            "pinned": ev("pinned", {"product": r("ProductCard"), "pins": _list(_ID)},
                         doc="The host pinned a product; `pins`: every pinned id in order."),
            "unpinned": ev("unpinned", {"product_id": _ID, "pins": _list(_ID)},
                           doc="The host unpinned a product."),
            "sale_open": ev("sale_open", {"sale": r("Sale")}, doc="A sale opened."),
            "sale_scheduled": ev("sale_scheduled", {"sale": r("Sale")},
                                 doc="A sale was made to start later."),
            "sale_countdown": ev("sale_countdown", {
                "sale_id": _ID, "product_id": _ID, "starts_at": _MS,
                "seconds_left": {"type": "integer", "minimum": 1}},
                doc="Each of the last seconds before a sale opens."),
            "sale_closed": ev("sale_closed", {"sale": r("Sale")},
                              doc="A sale ended (`ended`) or the host stopped it "
                                  "(`stopped`)."),
            "holds_voided": ev("holds_voided", {
                "sale_id": _ID, "product_id": _ID,
                "reason": _enum("sale_stopped", "show_ended"), "units": _COUNT,
                "hold_ids": _list(_ID)}, doc="Open holds were voided, their units back."),
            "stock": ev("stock", {"product_id": _ID, "stock": r("Stock"),
                                  "sale": nullable(r("Sale")), "waiting": _COUNT},
                        doc="A product's counters changed (coalesced)."),
            "waitlist_offer": ev("waitlist_offer", {
                "product_id": _ID,
                "offers": _list(_obj({"viewer_id": _ID, "ticket": _TICKET, "hold": r("Hold")})),
                "dropped": _list(_obj({
                    "viewer_id": _ID, "ticket": _TICKET,
                    "reason": _enum("away", "limit_reached", "too_many_holds",
                                    "signed_identity_required")}))},
                doc="Units went to the head of a product's waitlist."),
            "claimed": ev("claimed", {
                "product_id": _ID, "viewer_id": _ID, "nickname": _STR,
                "quantity": {"type": "integer", "minimum": 1}, "message_id": _ID},
                doc="A comment bought units (comment-to-buy)."),
            "coupon_drop": ev("coupon_drop", {"coupon": r("Coupon")},
                              doc="The host dropped coupons."),
            "coupon_ended": ev("coupon_ended", {"coupon": r("Coupon")},
                               doc="The host ended a drop early (`expires_at`: when)."),
            "coupon_count": ev("coupon_count", {"coupon_id": _ID, "remaining": _COUNT},
                               doc="Coupons left in a drop (coalesced)."),
            "lottery_open": ev("lottery_open", {"lottery": r("Lottery")},
                               doc="The host opened a lottery."),
            "lottery_drawn": ev("lottery_drawn", {"lottery": r("Lottery")},
                                doc="A lottery was drawn (`result` without the entrant "
                                    "list)."),
            "lottery_entrants": ev("lottery_entrants", {"lottery_id": _ID,
                                                        "entrants": _COUNT},
                                   doc="A lottery's entrants (coalesced)."),
            "auction_started": ev("auction_started", {"auction": r("Auction")},
                                  doc="The host started an auction."),
            "auction_bid": ev("auction_bid", {
                "auction_id": _ID, "product_id": _ID, "entry": r("ChainEntry"),
                "leader": _PSEUDONYM, "leader_name": _STR, "amount": _COUNT,
                "min_next": _COUNT, "ends_at": _MS, "extended": _BOOL,
                "extensions": _COUNT, "bids": _COUNT, "reserve_met": _BOOL,
                "buy_now_price": _with_doc(_NULL, "null: a bid was accepted, so buy-now "
                                           "is over")},
                doc="A bid was accepted."),
            "auction_ended": ev("auction_ended", {"auction": r("Auction")},
                                doc="The clock, the host or a buy-now ended an auction."),
            "auction_cancelled": ev("auction_cancelled", {"auction": r("Auction")},
                                    doc="The host or the show's end cancelled an auction."),
            "auction_second_chance": ev("auction_second_chance", {"auction": r("Auction")},
                                        doc="The host offered the unit to the runner-up."),
            "message_pinned": ev("message_pinned",
                                 {"pinned_message": nullable(r("PinnedMessage"))},
                                 doc="The host pinned (or, null, unpinned) a message."),
            "poll_open": ev("poll_open", {"poll": r("Poll")}, doc="The host opened a poll."),
            "poll_votes": ev("poll_votes", {
                "poll_id": _ID, "votes": _list(_COUNT), "total": _COUNT,
                "percent": _list(_COUNT)}, doc="A poll's counts (coalesced)."),
            "poll_closed": ev("poll_closed", {"poll": r("Poll")}, doc="A poll closed."),
            "question": ev("question", {"question": r("Question")},
                           doc="A viewer asked a question."),
            "question_votes": ev("question_votes", {"question_id": _ID, "votes": _COUNT},
                                 doc="A question's upvotes (coalesced)."),
            "question_answered": ev("question_answered", {"question": r("Question")},
                                    doc="The host answered a question."),
            "group_deal": ev("group_deal", {
                "deal": {"oneOf": [r("GroupDeal"), r("GroupDealOpened")],
                         "description": "with `groups` (empty) only when the deal opens"}},
                doc="A group deal opened, closed or its units changed."),
            "group_update": ev("group_update", {
                "group": r("Group"),
                "holds": {"type": "object", "additionalProperties": _ID,
                          "description": "viewer id -> hold id of every member (filled "
                                         "or expired)"},
                "expires_at": _with_doc(_MS, "when a filled group's holds expire")},
                optional=("holds", "expires_at"),
                doc="A group started, gained a member, filled or expired."),
            "referral_reward": ev("referral_reward", {
                "inviter": _ID, "nickname": _STR, "state": _enum("paid", "reversed"),
                "reward": {"oneOf": [
                    _obj({"kind": _const("points"), "points": _COUNT}),
                    _obj({"kind": _const("coupon"), "coupon": r("Coupon")})]}},
                doc="An inviter earned or lost a referral reward."),
            "order_cancelled": ev("order_cancelled", {
                "order_id": _ID, "hold_id": _ID, "buyer_id": _ID, "product_id": _ID,
                "quantity": _COUNT, "reason": _STR, "cancelled_at": _MS},
                doc="The host cancelled an order; its units are back in stock."),
            "order_refunded": ev("order_refunded", {
                "order_id": _ID, "buyer_id": _ID, "product_id": _ID,
                "refund": _obj({
                    "refund_id": _STR, "order_id": _ID, "room_id": _ID,
                    "quantity": _COUNT, "amount": _COUNT, "restock": _BOOL,
                    "reason": _STR, "refunded_at": _MS})},
                doc="The host refunded units of an order."),
            "chat": {**r("ChatEvent"), "description": "A viewer (or the host) chats."},
            "chat_deleted": ev("chat_deleted", {"message_id": _ID},
                               doc="The host deleted a chat message."),
            "viewer_muted": ev("viewer_muted", {"viewer_id": _ID, "until": _MS},
                               doc="The host muted a viewer."),
            "announcement": ev("announcement", {"text": _STR}, doc="The host announced."),
            "likes": ev("likes", {"total": _COUNT}, doc="The room's like total "
                                                        "(coalesced)."),
            "viewers": ev("viewers", {"now": _COUNT, "unique": _COUNT, "peak": _COUNT},
                          doc="Viewers joined or left (coalesced)."),
            "room_policy": ev("room_policy", {"policy": r("Policy")},
                              doc="The host changed the room policy."),
            "room_updated": ev("room_updated", {
                "room_id": _ID, "title": _STR,
                "stream_url": _with_doc(_STR, "the stream the pages play; \"\": none")},
                doc="The host changed the show's title or stream (both as they are now)."),
            "show_live": ev("show_live", {"room_id": _ID}, doc="A scheduled show went live."),
            "show_reminder": ev("show_reminder", {"room_id": _ID, "title": _STR,
                                                  "starts_at": _MS},
                                doc="A scheduled show starts soon."),
            "show_ended": ev("show_ended", {"room_id": _ID, "ended_at": _MS},
                             doc="The host ended the show."),
            # ---- frames to one connection
            "welcome": _obj({
                "type": _const("welcome"), "room_id": _ID,
                "viewer": _obj({"viewer_id": _ID, "nickname": _STR, "verified": _BOOL}),
                "token": _with_doc(_STR, "offer it as livesell.token.<token> on reconnect"),
                "resumed": _with_doc(_BOOL, "true: the missed events follow; false: a "
                                     "snapshot"),
                "server_time": _MS}, doc="The first frame of a connection (no seq)."),
            "pong": _obj({
                "type": _const("pong"), "server_time": _MS,
                "t": {"type": "number", "description": "the ping's `t`"},
                "re": _with_doc(_ID, "the ping's request_id")}, optional=("t", "re"),
                doc="The answer to a ping."),
            "snapshot": self._snapshot(),
            # ---- replies
            "hold": reply("hold", {"hold": r("Hold")},
                          "Units held for the buyer (a `buy`, or a comment that claims)."),
            "order_placed": reply("order_placed", {"order": r("Order")},
                                  "The checkout's order is placed."),
            "hold_released": reply("hold_released", {"hold_id": _ID},
                                   "The hold was released."),
            "coupon_claimed": reply("coupon_claimed", {"coupon_id": _ID,
                                                       "remaining": _COUNT},
                                    "A coupon of the drop is the viewer's."),
            "lottery_entered": reply("lottery_entered", {"lottery_id": _ID,
                                                         "entrants": _COUNT},
                                     "The viewer is entered."),
            "waitlist": reply("waitlist", {
                "product_id": _ID, "position": {"type": "integer", "minimum": 1},
                "waiting": _COUNT, "ticket": _TICKET},
                "The viewer's place on the product's waitlist."),
            "waitlist_left": reply("waitlist_left", {"product_id": _ID,
                                                     "was_waiting": _BOOL},
                                   "The viewer is off the waitlist."),
            "voted": reply("voted", {"poll_id": _ID, "option": _COUNT},
                           "The vote counted (the first one of the viewer)."),
            "asked": reply("asked", {"question": r("Question")}, "The question is asked."),
            "upvoted": reply("upvoted", {"question_id": _ID, "votes": _COUNT},
                             "The upvote counted."),
            "group": reply("group", {
                "group_id": _ID, "deal_id": _ID, "state": _enum("open", "complete"),
                "size": _COUNT, "members": _COUNT, "deadline": _MS,
                "hold": _obj({"id": _ID, "unit_price": _COUNT, "currency": _CURRENCY,
                              "state": _enum("pending", "held"),
                              "expires_at": _with_doc(_MS, "once the group is full")},
                             optional=("expires_at",))},
                "The group the viewer started or joined, and their hold in it."),
            "bid_placed": reply("bid_placed", {
                "auction_id": _ID, "outcome": _enum("leading", "max_raised", "won"),
                "amount": _COUNT, "max_amount": _COUNT, "min_next": _COUNT,
                "ends_at": _MS, "pseudonym": _PSEUDONYM,
                "entry_seq": _with_doc(_COUNT, "the bid's chain entry (not for "
                                       "max_raised)")},
                "The bid is accepted.", optional=("entry_seq",)),
            "fan": reply("fan", {
                "channel": _STR, "points": _COUNT,
                "level": {"type": "integer", "minimum": 0, "maximum": MAX_LEVELS},
                "badge": nullable(_STR), "next_level_points": nullable(_COUNT),
                "awarded": _COUNT}, "The viewer's fan standing in the room's channel."),
            "invite": reply("invite", {"invite": _STR, "path": _STR},
                            "The viewer's invite link to the room."),
            "invite_accepted": reply("invite_accepted", {"inviter": _STR},
                                     "The invite is accepted; `inviter`: their nickname."),
            "error": _obj({
                "type": _const("error"),
                "re": _with_doc(_ID, "the request's request_id, when the frame had a "
                                "valid one"),
                "code": _with_doc(_STR, "stable, for programs (docs/protocol.md "
                                  "section 10)"),
                "message": _with_doc(_STR, "for people"),
                "details": {"type": "object",
                            "description": "open-ended: the field at fault, limits, "
                                           "retry_after_s ... (passed through as each "
                                           "refusal builds it)"}},
                optional=("re", "details"), doc="A refusal or a fault."),
        }
        return out

    def _snapshot(self) -> JSON:
        r = self.ref
        limits = ("max_pins", "max_quantity_per_buy", "max_holds_per_viewer",
                  "chat_max_length", "nickname_max_length", "max_likes_per_frame",
                  "max_slow_mode_s", "title_max_length", "description_max_length",
                  "prize_max_length", "keyword_max_length", "announcement_max_length",
                  "max_open_questions", "hold_seconds", "poll_question_max_length",
                  "poll_option_max_length", "poll_max_options", "pinned_max_length",
                  "image_max_bytes")
        return _obj({
            "seq": _with_doc(_COUNT, "the last event sequence number the state includes"),
            "type": _const("snapshot"),
            "server_time": _MS,
            "room": r("Room"),
            "products": _list(r("ProductCard")),
            "pins": _list(_ID),
            "coupons": _list(r("Coupon")),
            "lotteries": _list(r("Lottery")),
            "auctions": _list(r("Auction")),
            "polls": _list(r("Poll")),
            "chat": _list(r("ChatEvent")),
            "questions": _list(r("Question")),
            "group_deals": _list(r("GroupDeal")),
            "pinned_message": nullable(r("PinnedMessage")),
            "fans": _obj({"channel": _STR, "enabled": _BOOL,
                          "levels": _list(_obj({"level": _COUNT, "points": _COUNT,
                                                "badge": _STR}))}),
            "likes": _COUNT,
            "viewers": r("Viewers"),
            "policy": r("Policy"),
            "limits": _obj(dict.fromkeys(limits, _COUNT),
                           doc="The server's limits, from its settings."),
        }, doc="The room's whole state (sent on joining, after resync, after falling "
               "behind).")


@functools.cache
def _built(template: str) -> tuple[dict[str, JSON], dict[str, JSON]]:
    builder = _Builder(template)
    frames = builder.frames()
    assert set(frames) == set(FRAME_TYPES), "one schema per frame type"
    return builder.definitions(), {kind: frames[kind] for kind in FRAME_TYPES}


def _copy(schemas: dict[str, JSON]) -> dict[str, JSON]:
    """A copy sharing no object with the cached schemas (whose pieces are shared)."""
    out: dict[str, JSON] = orjson.loads(orjson.dumps(schemas))
    return out


def definitions(ref: str = LOCAL_REF) -> dict[str, JSON]:
    """The shared definitions (a sale, a product card ...), their `$ref`s made with
    `ref` (a template with one `{}` for a definition's name)."""
    return _copy(_built(ref)[0])


def frame_schemas(ref: str = LOCAL_REF) -> dict[str, JSON]:
    """The schema of each frame type the server sends a viewer (FRAME_TYPES), their
    `$ref`s made with `ref`."""
    return _copy(_built(ref)[1])


def frame_schema(kind: str) -> JSON:
    """One frame type's schema, standalone: with `$schema` and the definitions."""
    return {"$schema": DIALECT, **frame_schemas()[kind], "$defs": definitions()}

