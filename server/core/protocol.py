"""The wire vocabulary: decode and validate incoming frames and bodies, encode events.

Incoming WebSocket frames and HTTP JSON bodies pass through the same field
checkers, so both edges report faults the same way: a `BadRequest` naming the
field and what was wrong. Outgoing events are encoded once with orjson and,
for the fast fan-out path, wrapped once in an unmasked server text frame.
Pure: no I/O.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import orjson

from server.core.errors import BadRequest
from server.core.text import clean_text

ID_PATTERN: Final = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# An invite token: base64url payload, a dot, base64url signature.
INVITE_PATTERN: Final = re.compile(r"^[A-Za-z0-9_-]{1,400}\.[A-Za-z0-9_-]{1,100}$")
# The most fan levels a server may configure (a lottery's or deal's min_level at most).
MAX_LEVELS: Final = 20
CURRENCY_PATTERN: Final = re.compile(r"^[A-Z]{3}$")

# Integer minor units: prices and amounts stay below 10^12 (ten billion in
# major units), far inside both int64 and Lua's exact double range (2^53).
MAX_AMOUNT: Final = 10**12
MAX_STOCK: Final = 10**9
MAX_DURATION_S: Final = 7 * 86400


def loads_object(raw: bytes | str, what: str = "body") -> dict[str, Any]:
    """Parse JSON that must be an object."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"{what} is not valid JSON: {exc}", code="invalid_json") from None
    if not isinstance(value, dict):
        raise BadRequest(f"{what} must be a JSON object, got {type(value).__name__}",
                         code="invalid_json")
    return value


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "boolean", int: "integer", float: "number", str: "string",
            list: "array", dict: "object"}.get(type(value), type(value).__name__)


def get_str(d: Mapping[str, Any], key: str, *, max_len: int, min_len: int = 1,
            pattern: re.Pattern[str] | None = None, default: str | None = None,
            required: bool = True, strip: bool = False) -> str:
    if key not in d or d[key] is None:
        if required and default is None:
            raise BadRequest(f"{key}: required", details={"field": key})
        return default if default is not None else ""
    value = d[key]
    if not isinstance(value, str):
        raise BadRequest(f"{key}: expected a string, got {_type_name(value)}",
                         details={"field": key})
    if strip:
        value = value.strip()
    if len(value) < min_len:
        raise BadRequest(f"{key}: must be at least {min_len} characters", details={"field": key})
    if len(value) > max_len:
        raise BadRequest(f"{key}: must be at most {max_len} characters", details={"field": key})
    if pattern is not None and not pattern.fullmatch(value):
        raise BadRequest(f"{key}: has invalid characters or format", details={"field": key})
    if "\x00" in value:
        raise BadRequest(f"{key}: must not contain NUL characters", details={"field": key})
    return value


def get_int(d: Mapping[str, Any], key: str, *, lo: int, hi: int,
            default: int | None = None) -> int:
    if key not in d or d[key] is None:
        if default is None:
            raise BadRequest(f"{key}: required", details={"field": key})
        return default
    value = d[key]
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            # 14.0 is the integer 14, as JSON Schema (and so the OpenAPI document) says.
            if value < lo or value > hi:
                raise BadRequest(f"{key}: must be between {lo} and {hi}, got {value:g}",
                                 details={"field": key})
            return int(value)
        raise BadRequest(f"{key}: expected an integer, got {_type_name(value)}",
                         details={"field": key})
    if value < lo or value > hi:
        raise BadRequest(f"{key}: must be between {lo} and {hi}, got {value}",
                         details={"field": key})
    return value


def get_float(d: Mapping[str, Any], key: str, *, lo: float, hi: float,
              default: float | None = None) -> float:
    if key not in d or d[key] is None:
        if default is None:
            raise BadRequest(f"{key}: required", details={"field": key})
        return default
    value = d[key]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadRequest(f"{key}: expected a number, got {_type_name(value)}",
                         details={"field": key})
    if not (lo <= value <= hi):
        raise BadRequest(f"{key}: must be between {lo} and {hi}, got {value}",
                         details={"field": key})
    return float(value)


def get_bool(d: Mapping[str, Any], key: str, *, default: bool) -> bool:
    if key not in d or d[key] is None:
        return default
    value = d[key]
    if not isinstance(value, bool):
        raise BadRequest(f"{key}: expected true or false, got {_type_name(value)}",
                         details={"field": key})
    return value


def reject_unknown(d: Mapping[str, Any], allowed: frozenset[str], what: str) -> None:
    if d.keys() <= allowed:  # the usual case: no set built, nothing sorted
        return
    unknown = sorted(set(d) - allowed)
    if unknown:
        raise BadRequest(f"{what}: unknown field(s) {', '.join(unknown)}",
                         details={"fields": unknown})


# ---------------------------------------------------------------- incoming frames


@dataclass(frozen=True, slots=True)
class Ping:
    client_time: float | None


@dataclass(frozen=True, slots=True)
class Chat:
    text: str


@dataclass(frozen=True, slots=True)
class Like:
    count: int


@dataclass(frozen=True, slots=True)
class Buy:
    request_id: str
    product_id: str
    quantity: int


@dataclass(frozen=True, slots=True)
class Checkout:
    request_id: str
    hold_id: str
    coupon_id: str | None


@dataclass(frozen=True, slots=True)
class Release:
    request_id: str
    hold_id: str


@dataclass(frozen=True, slots=True)
class ClaimCoupon:
    request_id: str
    coupon_id: str


@dataclass(frozen=True, slots=True)
class EnterLottery:
    request_id: str
    lottery_id: str
    keyword: str | None


@dataclass(frozen=True, slots=True)
class JoinWaitlist:
    request_id: str
    product_id: str


@dataclass(frozen=True, slots=True)
class LeaveWaitlist:
    request_id: str
    product_id: str


@dataclass(frozen=True, slots=True)
class Bid:
    request_id: str
    auction_id: str
    amount: int
    max_amount: int | None


@dataclass(frozen=True, slots=True)
class Vote:
    request_id: str
    poll_id: str
    option: int


@dataclass(frozen=True, slots=True)
class Ask:
    request_id: str
    text: str


@dataclass(frozen=True, slots=True)
class Upvote:
    request_id: str
    question_id: str


@dataclass(frozen=True, slots=True)
class StartGroup:
    request_id: str
    deal_id: str


@dataclass(frozen=True, slots=True)
class JoinGroup:
    request_id: str
    group_id: str


@dataclass(frozen=True, slots=True)
class Watching:
    request_id: str


@dataclass(frozen=True, slots=True)
class FanStatus:
    request_id: str


@dataclass(frozen=True, slots=True)
class Invite:
    request_id: str


@dataclass(frozen=True, slots=True)
class AcceptInvite:
    request_id: str
    invite: str


@dataclass(frozen=True, slots=True)
class Resync:
    pass


ViewerMessage = (Ping | Chat | Like | Buy | Checkout | Release | ClaimCoupon | EnterLottery
                 | JoinWaitlist | LeaveWaitlist | Bid | Vote | Ask | Upvote | StartGroup
                 | JoinGroup | Watching | FanStatus | Invite | AcceptInvite | Resync)


@dataclass(frozen=True, slots=True)
class FrameLimits:
    chat_max_length: int
    max_likes_per_frame: int
    max_quantity_per_buy: int


_FIELDS: Final[dict[str, frozenset[str]]] = {
    # request_id is optional on these: when given, an error reply carries it as "re".
    "ping": frozenset({"type", "t", "request_id"}),
    "chat": frozenset({"type", "text", "request_id"}),
    "like": frozenset({"type", "count", "request_id"}),
    "buy": frozenset({"type", "request_id", "product_id", "quantity"}),
    "checkout": frozenset({"type", "request_id", "hold_id", "coupon_id"}),
    "release": frozenset({"type", "request_id", "hold_id"}),
    "claim_coupon": frozenset({"type", "request_id", "coupon_id"}),
    "enter_lottery": frozenset({"type", "request_id", "lottery_id", "keyword"}),
    "join_waitlist": frozenset({"type", "request_id", "product_id"}),
    "leave_waitlist": frozenset({"type", "request_id", "product_id"}),
    "bid": frozenset({"type", "request_id", "auction_id", "amount", "max_amount"}),
    "vote": frozenset({"type", "request_id", "poll_id", "option"}),
    "ask": frozenset({"type", "request_id", "text"}),
    "upvote": frozenset({"type", "request_id", "question_id"}),
    "start_group": frozenset({"type", "request_id", "deal_id"}),
    "join_group": frozenset({"type", "request_id", "group_id"}),
    "watching": frozenset({"type", "request_id"}),
    "fan_status": frozenset({"type", "request_id"}),
    "invite": frozenset({"type", "request_id"}),
    "accept_invite": frozenset({"type", "request_id", "invite"}),
    "resync": frozenset({"type", "request_id"}),
}
# The longest invite token (server/features/referrals.py makes them much shorter).
MAX_INVITE: Final = 512
MESSAGE_TYPES: Final = tuple(_FIELDS)


def decode_viewer_message(obj: Mapping[str, Any], limits: FrameLimits) -> ViewerMessage:
    """Validate a parsed viewer frame. Raises BadRequest with a precise reason."""
    kind = obj.get("type")
    if not isinstance(kind, str):
        raise BadRequest("type: required string", code="invalid_message")
    allowed = _FIELDS.get(kind)
    if allowed is None:
        raise BadRequest(f"type: unknown message type {kind[:40]!r}", code="unknown_type",
                         details={"known": list(MESSAGE_TYPES)})
    reject_unknown(obj, allowed, kind)
    if kind == "ping":
        t = obj.get("t")
        if t is not None and (isinstance(t, bool) or not isinstance(t, int | float)):
            raise BadRequest("t: expected a number", details={"field": "t"})
        return Ping(float(t) if t is not None else None)
    if kind == "chat":
        # Normalised and stripped of bidi and zero-width characters (server/core/text.py).
        text = clean_text(get_str(obj, "text", max_len=limits.chat_max_length, strip=True))
        return Chat(get_str({"text": text}, "text", max_len=limits.chat_max_length,
                            strip=True))
    if kind == "like":
        return Like(get_int(obj, "count", lo=1, hi=limits.max_likes_per_frame, default=1))
    if kind == "resync":
        return Resync()
    request_id = get_str(obj, "request_id", max_len=64, pattern=ID_PATTERN)
    if kind == "buy":
        return Buy(request_id, get_str(obj, "product_id", max_len=64, pattern=ID_PATTERN),
                   get_int(obj, "quantity", lo=1, hi=limits.max_quantity_per_buy, default=1))
    if kind == "checkout":
        coupon = get_str(obj, "coupon_id", max_len=64, pattern=ID_PATTERN, required=False)
        return Checkout(request_id, get_str(obj, "hold_id", max_len=64, pattern=ID_PATTERN),
                        coupon or None)
    if kind == "release":
        return Release(request_id, get_str(obj, "hold_id", max_len=64, pattern=ID_PATTERN))
    if kind in ("join_waitlist", "leave_waitlist"):
        product = get_str(obj, "product_id", max_len=64, pattern=ID_PATTERN)
        return (JoinWaitlist if kind == "join_waitlist" else LeaveWaitlist)(request_id, product)
    if kind == "bid":
        amount = get_int(obj, "amount", lo=1, hi=MAX_AMOUNT)
        top = None
        if obj.get("max_amount") is not None:
            top = get_int(obj, "max_amount", lo=amount, hi=MAX_AMOUNT)
        return Bid(request_id, get_str(obj, "auction_id", max_len=64, pattern=ID_PATTERN),
                   amount, top)
    if kind == "ask":
        # Cleaned as chat is (server/core/text.py).
        text = clean_text(get_str(obj, "text", max_len=limits.chat_max_length, strip=True))
        return Ask(request_id, get_str({"text": text}, "text", max_len=limits.chat_max_length,
                                       strip=True))
    if kind == "start_group":
        return StartGroup(request_id, get_str(obj, "deal_id", max_len=64, pattern=ID_PATTERN))
    if kind == "join_group":
        return JoinGroup(request_id, get_str(obj, "group_id", max_len=64, pattern=ID_PATTERN))
    if kind == "watching":
        return Watching(request_id)
    if kind == "fan_status":
        return FanStatus(request_id)
    if kind == "invite":
        return Invite(request_id)
    if kind == "accept_invite":
        # Its form is the referral feature's to judge (`invite_invalid`): a link cut
        # short in transit is as much not ours as a forged one.
        return AcceptInvite(request_id, get_str(obj, "invite", max_len=MAX_INVITE))
    if kind == "upvote":
        return Upvote(request_id, get_str(obj, "question_id", max_len=64, pattern=ID_PATTERN))
    if kind == "vote":
        return Vote(request_id, get_str(obj, "poll_id", max_len=64, pattern=ID_PATTERN),
                    get_int(obj, "option", lo=0, hi=5))
    if kind == "claim_coupon":
        return ClaimCoupon(request_id,
                           get_str(obj, "coupon_id", max_len=64, pattern=ID_PATTERN))
    keyword = get_str(obj, "keyword", max_len=limits.chat_max_length, required=False)
    return EnterLottery(request_id,
                        get_str(obj, "lottery_id", max_len=64, pattern=ID_PATTERN),
                        keyword or None)


# ---------------------------------------------------------------- outgoing


def encode(obj: Any) -> bytes:
    return orjson.dumps(obj)


def seq_of(event: bytes) -> int:
    """Read the sequence number of an event without parsing it all: publish.lua
    writes it first (`{"seq":N,...`)."""
    return int(event[7 : event.index(b",", 7)])


def text_frame(payload: bytes) -> bytes:
    """An unmasked, final, uncompressed RFC 6455 text frame (server to client)."""
    n = len(payload)
    if n < 126:
        return bytes((0x81, n)) + payload
    if n < 65536:
        return struct.pack("!BBH", 0x81, 126, n) + payload
    return struct.pack("!BBQ", 0x81, 127, n) + payload


def query_int(query: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    """An integer query parameter between lo and hi, or `default` when absent."""
    raw = query.get(name)
    if raw is None:
        return default
    # isascii too: str.isdigit() also accepts '²' (which int() refuses) and other
    # scripts' digits; the length before int(), which refuses more than 4,300 digits
    # with a ValueError (a 500).
    if not (raw.isascii() and raw.isdigit()) or len(raw) > len(str(hi)) or \
            not lo <= int(raw) <= hi:
        raise BadRequest(f"{name}: must be an integer between {lo} and {hi}",
                         details={"field": name})
    return int(raw)
