"""Webhooks, pure: the event types, an endpoint's registration body, the
Standard Webhooks signature (`webhook-id`, `webhook-timestamp`,
`webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">` with a
`whsec_<base64>` secret) and its verification, the payload's shape, and the
retry schedule (exponential backoff with jitter, for a day).

Receivers verify with `livesell webhooks verify` or any Standard Webhooks
library; docs/operations.md "Webhooks" has the whole contract."""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from server.core.errors import BadRequest
from server.core.schema import ListOf, Shape, Str, opt, req

EVENT_TYPES: Final = (
    "order.placed", "order.cancelled", "order.refunded", "show.started", "show.ended",
    "sale.opened", "sale.sold_out", "auction.won", "lottery.drawn", "reminder.due",
)
SECRET_PREFIX: Final = "whsec_"
MAX_URL: Final = 2000
URL_PATTERN: Final = re.compile(r"""^https?://[^\s<>"'#\u0000-\u001f\u007f\u0085]+$""")
_C_NUMBER: Final = re.compile(r"^(0[xX][0-9a-fA-F]+|[0-9]+)$")
# How far a receiver lets a timestamp be from its clock (replayed old messages).
DEFAULT_TOLERANCE_S: Final = 300


ENDPOINT_SHAPE: Final = Shape("webhook", {
    "url": req(Str(MAX_URL, strip=True, pattern=URL_PATTERN,
                   says="must be an http:// or https:// URL without spaces or fragment")),
    "events": opt(ListOf(Str(40, choices=EVENT_TYPES), 0, len(EVENT_TYPES),
                         what="event types"), (), "the types to deliver (empty: all)"),
    "description": opt(Str(200, min_len=0, strip=True), ""),
}, rules=("A private, loopback or link-local address is refused unless "
          "webhooks.allow_private_targets is set (always allowed server-wide).",))
REPLAY_SHAPE: Final = Shape("replay", {
    "from_event_id": req(Str(200), "deliver again from this outbox event on")})


@dataclass(frozen=True, slots=True)
class EndpointSpec:
    url: str
    events: tuple[str, ...]  # () = every type
    description: str


def parse_endpoint(body: Mapping[str, Any], allow_private: bool) -> EndpointSpec:
    """An endpoint's registration: `url` (http or https; a private, loopback or
    link-local address only when `allow_private`), `events` (types; absent or
    empty: all) and an optional `description`."""
    v = ENDPOINT_SHAPE.read(body)
    url = v["url"]
    host = _host(url)
    if not host:
        raise BadRequest("url: names no host", details={"field": "url"})
    if not allow_private and _private(host):
        raise BadRequest("url: a private, loopback or link-local address; set "
                         "webhooks.allow_private_targets to deliver inside your network",
                         code="webhook_target_private", details={"field": "url"})
    return EndpointSpec(url, tuple(sorted(set(v["events"]))), v["description"])


def _host(url: str) -> str:
    """The host of an http(s) URL (URL_PATTERN matched): between `//` and the path,
    without user info or port; an IPv6 address without its brackets."""
    authority = re.split(r"[/?]", url.split("://", 1)[1], maxsplit=1)[0]
    authority = authority.rpartition("@")[2]
    if authority.startswith("["):
        return authority[1:].partition("]")[0]
    return authority.partition(":")[0].lower()


def literal_address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address a host names by itself, in any form a resolver accepts as one:
    dotted, but also 127.1, 2130706433, 0x7f000001 or 0177.0.0.1 (inet_aton's
    forms), or IPv6; None for a name."""
    host = host.rstrip(".")
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    parts = host.split(".")
    if not 1 <= len(parts) <= 4 or not all(_C_NUMBER.match(p) for p in parts):
        return None
    try:
        # 0x.. hexadecimal, 0.. octal, else decimal.
        values = [int(p, 16) if p[:2] in ("0x", "0X") else int(p, 8) if len(p) > 1
                  and p[0] == "0" else int(p) for p in parts]
    except ValueError:
        return None  # '09': no address (and no name a resolver would find)
    # inet_aton: the last part fills the bytes the others leave.
    widths = [1] * (len(values) - 1) + [4 - (len(values) - 1)]
    if any(v >= 256 ** w for v, w in zip(values, widths, strict=True)):
        return None
    number = 0
    for v, w in zip(values, widths, strict=True):
        number = number * 256 ** w + v
    return ipaddress.IPv4Address(number)


def is_private_address(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return addr.is_private or addr.is_loopback or addr.is_link_local or addr.is_reserved \
        or addr.is_unspecified or addr.is_multicast


def _private(host: str) -> bool:
    name = host.lower().rstrip(".")
    if name in ("localhost", "localhost.localdomain") or name.endswith(".localhost"):
        return True
    addr = literal_address(name)
    # A name is resolved again when each message is sent (features/webhooks.py).
    return addr is not None and is_private_address(addr)


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


def _key(secret: str) -> bytes:
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError(f"a webhook secret starts with {SECRET_PREFIX}")
    try:
        return base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    except ValueError as exc:
        raise ValueError("the webhook secret is not base64 after whsec_") from exc


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header's value."""
    content = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(_key(secret), content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def verify(secret: str, msg_id: str, timestamp: str, signature: str, body: bytes,
           now_s: int, tolerance_s: int = DEFAULT_TOLERANCE_S) -> str | None:
    """None when the message is genuine and fresh; else why not. `signature` may list
    several space-separated signatures (a rotated secret); one must match."""
    # At most 12 digits: int() refuses more than 4,300 with a ValueError, and no
    # time within the tolerance has more.
    if not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > 12:
        return "webhook-timestamp is not a number of seconds"
    if abs(now_s - int(timestamp)) > tolerance_s:
        return f"webhook-timestamp is more than {tolerance_s} s from now"
    try:
        expected = sign(secret, msg_id, int(timestamp), body).split(",", 1)[1]
    except ValueError as exc:
        return str(exc)
    for candidate in signature.split():
        version, _, value = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(value, expected):
            return None
    return "no v1 signature matches"


def retry_delay_s(attempts: int, first_s: float, max_s: float, jitter: float) -> float:
    """The wait before the next attempt after `attempts` failed ones: doubling from
    `first_s`, at most `max_s`, times `jitter` (a factor in 0.8..1.2, drawn by the
    caller) so that endpoints failing together do not retry together."""
    return float(min(max_s, first_s * 2 ** max(0, attempts - 1)) * jitter)


def payload(event_id: str, kind: str, at_ms: int, data: Mapping[str, Any]) -> dict[str, Any]:
    """The body every endpoint gets: `type`, `timestamp` (ms), `id` and `data`."""
    return {"id": event_id, "type": kind, "timestamp": at_ms, "data": dict(data)}
