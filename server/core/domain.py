"""Sale rules: what a room, product, sale, coupon drop and lottery are, how host
requests are validated into them, and the lottery draw maths.

Pure: no I/O. The atomic decisions (reserve, claim, enter) live in the Lua
scripts (server/state/scripts.py); this module holds the rules that are not races.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import os
import re
import secrets
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Final, Literal

from server.core.errors import BadRequest
from server.core.protocol import (
    CURRENCY_PATTERN,
    MAX_AMOUNT,
    MAX_DURATION_S,
    MAX_LEVELS,
    MAX_STOCK,
    get_int,
)
from server.core.schema import ID, Bool, Field, Int, Shape, Str, opt, req

URL_PATTERN: Final = re.compile(r"^https?://[^\s<>\"']+$")
MAX_TITLE: Final = 120
MAX_DESCRIPTION: Final = 2000
MAX_URL: Final = 2048
MAX_ANNOUNCEMENT: Final = 500
MAX_KEYWORD: Final = 50
MAX_PRIZE: Final = 200


def now_ms() -> int:
    return time.time_ns() // 1_000_000


# new_id's randomness, drawn from the OS in blocks: a hold id per buy was a
# getrandom system call per buy (about 2 % of a flash sale's CPU per buy).
_ID_BYTES: Final = 9
_ID_BLOCK: Final = _ID_BYTES * 512
_id_pool = b""
_id_at = 0


def _forget_id_pool() -> None:
    """A forked child must not hand out the ids its parent will (--workers)."""
    global _id_pool, _id_at
    _id_pool, _id_at = b"", 0


os.register_at_fork(after_in_child=_forget_id_pool)


def new_id(prefix: str) -> str:
    """A short random id (72 bits from the OS's CSPRNG, as secrets.token_urlsafe(9)
    with x and y for its - and _); the prefix says what it names (r_ room, p_
    product, h_ hold, ...). Called on the event loop's thread, as every caller is:
    the pool is the process's, and two threads taking from it at once could be
    handed the same bytes (a thread of its own would need its own pool)."""
    global _id_pool, _id_at
    at = _id_at
    if at + _ID_BYTES > len(_id_pool):
        _id_pool, at = os.urandom(_ID_BLOCK), 0
    _id_at = at + _ID_BYTES
    return f"{prefix}_{base64.b64encode(_id_pool[at:at + _ID_BYTES], b'xy').decode()}"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


# Empty: none.
# (Control characters named: ECMAScript's \s, which OpenAPI tools read the pattern
# with, does not cover \u001c-\u001f and \u0085 as Python's does.)
URL: Final = Str(MAX_URL, min_len=0,
                 pattern=re.compile(r"""^(https?://[^\s<>"'\u0000-\u001f\u007f\u0085]+)?$"""),
                 strip=True, says="must be an http:// or https:// URL")
# A product's image: an http(s) URL as `URL` takes, or the path of an image the
# host uploaded (server/features/images.py:
# /images/<room id>/<sha256 hex>.<png|jpg|webp|gif>).
# The path's parts are spelled out, so no `..`, `//` or query can get through.
IMAGE_URL: Final = Str(
    MAX_URL, min_len=0,
    pattern=re.compile(r"""^(https?://[^\s<>"'\u0000-\u001f\u007f\u0085]+"""
                       r"|/images/[A-Za-z0-9_-]{1,64}/[0-9a-f]{64}\.(png|jpg|webp|gif))?$"),
    strip=True,
    says="must be an http:// or https:// URL or an uploaded image's path "
         "(/images/<room>/<sha256>.<png|jpg|webp|gif>)")
# A file in the streams folder livesell serves at /streams/ (a shop's encoder writes
# its HLS there: server/features/streams.py, which takes the same names): 1 to 8
# names joined by '/', each of letters, digits, '_', '-' and '.', not starting with
# '.', so no `.`, `..`, hidden file, empty part, backslash, query or escape.
STREAM_NAME: Final = r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}"
STREAM_DEPTH: Final = 8
_STREAM_PATH: Final = rf"{STREAM_NAME}(?:/{STREAM_NAME}){{0,{STREAM_DEPTH - 1}}}"
STREAM_PATH_PATTERN: Final = re.compile(rf"^{_STREAM_PATH}$")
STREAMS_PREFIX: Final = "/streams/"
# A room's stream: an http(s) URL as `URL` takes, or the path of a stream this
# server serves from its streams folder (/streams/<show>/index.m3u8), played from
# the page's own origin.
STREAM_URL: Final = Str(
    MAX_URL, min_len=0,
    pattern=re.compile(r"""^(https?://[^\s<>"'\u0000-\u001f\u007f\u0085]+"""
                       rf"|{STREAMS_PREFIX}{_STREAM_PATH})?$"),
    strip=True,
    says="must be an http:// or https:// URL or a path in this server's streams folder "
         "(/streams/<name>/index.m3u8)")
TITLE: Final = Str(MAX_TITLE, strip=True)
CURRENCY: Final = Str(3, min_len=3, pattern=CURRENCY_PATTERN)

ROOM_SHAPE: Final = Shape("room", {
    "title": req(TITLE),
    "stream_url": opt(STREAM_URL, "", "the stream the pages play (http or https, or "
                                      "/streams/... from this server's streams folder)"),
})


@dataclass(frozen=True, slots=True)
class Product:
    product_id: str
    title: str
    price: int
    currency: str
    image_url: str
    description: str

    def public(self) -> dict[str, Any]:
        return asdict(self)


_PRODUCT: Final = {
    "title": req(TITLE),
    "price": req(Int(0, MAX_AMOUNT), "in minor units (cents)"),
    "currency": opt(CURRENCY, "USD", "ISO 4217 code"),
    "image_url": opt(IMAGE_URL, "", "an http(s) URL or an uploaded image's /images/... path "
                                    "(POST /api/rooms/{room_id}/images)"),
    "description": opt(Str(MAX_DESCRIPTION, min_len=0), ""),
    "stock": req(Int(0, MAX_STOCK), "units in stock"),
}
PRODUCT_SHAPE: Final = Shape("product", {
    "product_id": opt(ID, doc="made by the server when not given"), **_PRODUCT})
PRODUCT_UPDATE_SHAPE: Final = Shape(
    "product update",
    {name: Field(f.kind, doc=f.doc) for name, f in _PRODUCT.items()},
    doc="The fields to change; `stock` sets the total stock.",
    non_empty="product update: give at least one field")


def parse_product(body: Mapping[str, Any]) -> tuple[Product, int]:
    """A new product and its initial stock."""
    v = PRODUCT_SHAPE.read(body)
    product = Product(
        product_id=v.get("product_id") or new_id("p"), title=v["title"], price=v["price"],
        currency=v["currency"], image_url=v["image_url"], description=v["description"])
    return product, v["stock"]


def apply_product_update(product: Product,
                         body: Mapping[str, Any]) -> tuple[Product, int | None]:
    """The product with the given fields changed, and the new total stock if given."""
    v = PRODUCT_UPDATE_SHAPE.read(body)
    updated = Product(
        product_id=product.product_id,
        title=v.get("title", product.title),
        price=v.get("price", product.price),
        currency=v.get("currency", product.currency),
        image_url=v.get("image_url", product.image_url),
        description=v.get("description", product.description),
    )
    return updated, v.get("stock")


@dataclass(frozen=True, slots=True)
class Sale:
    sale_id: str
    product_id: str
    price: int
    currency: str
    units: int
    limit_per_buyer: int
    starts_at: int
    ends_at: int

    def public(self) -> dict[str, Any]:
        return asdict(self)


SALE_SHAPE: Final = Shape("sale", {
    "product_id": req(ID),
    "price": opt(Int(0, MAX_AMOUNT), doc="the sale price; the product's price when not given"),
    "units": req(Int(1, MAX_STOCK), "units for sale"),
    "limit_per_buyer": opt(Int(1, MAX_STOCK), 1),
    "starts_at": opt(Int(0, 2**53), doc="Unix time in ms, within a minute before now "
                     f"and {MAX_DURATION_S} s after"),
    "starts_in_s": opt(Int(0, MAX_DURATION_S), doc="seconds from now (default 0: now)"),
    "duration_s": req(Int(1, MAX_DURATION_S)),
}, exclusive=(("starts_at", "starts_in_s"),))


def parse_sale(body: Mapping[str, Any], product: Product, now: int) -> Sale:
    """A sale of the product."""
    v = SALE_SHAPE.read(body)
    if "starts_at" in v:
        starts_at = get_int(v, "starts_at", lo=now - 60_000, hi=now + MAX_DURATION_S * 1000)
        starts_at = max(starts_at, now)
    else:
        starts_at = now + v.get("starts_in_s", 0) * 1000
    return Sale(
        sale_id=new_id("s"),
        product_id=product.product_id,
        price=v.get("price", product.price),
        currency=product.currency,
        units=v["units"],
        limit_per_buyer=v["limit_per_buyer"],
        starts_at=starts_at,
        ends_at=starts_at + v["duration_s"] * 1000,
    )


CouponKind = Literal["amount", "percent"]


@dataclass(frozen=True, slots=True)
class CouponDrop:
    coupon_id: str
    title: str
    kind: CouponKind
    value: int
    min_spend: int
    currency: str
    count: int
    expires_at: int
    created_at: int
    # A drop of one made for one viewer (a referral reward, server/features/referrals.py):
    # claimed for them when made, never announced, never claimable by anyone else.
    reserved_for: str = ""

    def public(self) -> dict[str, Any]:
        return asdict(self)


@functools.lru_cache(maxsize=8)
def coupon_shape(max_count: int) -> Shape:
    """A coupon drop's body; `max_count` is the server's [coupons] max_count."""
    return Shape("coupon", {
        "title": opt(TITLE, doc="default: '<value>% off' or '<value> off'"),
        "kind": req(Str(10, choices=("amount", "percent"))),
        "value": req(Int(1, MAX_AMOUNT), "minor units off, or a percentage (1..100)"),
        "min_spend": opt(Int(0, MAX_AMOUNT), 0),
        "currency": opt(CURRENCY, "USD"),
        "count": req(Int(1, max_count), "how many can claim it"),
        "expires_in_s": opt(Int(1, MAX_DURATION_S), 3600),
    }, rules=("A percent coupon's value is at most 100.",))


def parse_coupon(body: Mapping[str, Any], now: int, max_count: int) -> CouponDrop:
    """A coupon drop, of at most `max_count` coupons."""
    v = coupon_shape(max_count).read(body)
    kind = v["kind"]
    value = get_int(v, "value", lo=1, hi=100) if kind == "percent" else v["value"]
    return CouponDrop(
        coupon_id=new_id("c"),
        title=v.get("title") or (f"{value}% off" if kind == "percent" else f"{value} off"),
        kind="percent" if kind == "percent" else "amount",
        value=value,
        min_spend=v["min_spend"],
        currency=v["currency"],
        count=v["count"],
        expires_at=now + v["expires_in_s"] * 1000,
        created_at=now,
    )


EntryMode = Literal["button", "keyword"]


@dataclass(frozen=True, slots=True)
class Lottery:
    lottery_id: str
    prize: str
    winners: int
    entry: EntryMode
    keyword: str
    seed_hash: str
    opens_at: int
    closes_at: int
    min_level: int = 0  # the fan level a viewer needs to enter

    def public(self) -> dict[str, Any]:
        return asdict(self)


@functools.lru_cache(maxsize=8)
def lottery_shape(max_winners: int) -> Shape:
    """A lottery's body; `max_winners` is the server's [lottery] max_winners."""
    return Shape("lottery", {
        "prize": req(Str(MAX_PRIZE, strip=True)),
        "winners": opt(Int(1, max_winners), 1),
        "entry": opt(Str(10, choices=("button", "keyword")), "button"),
        "keyword": opt(Str(MAX_KEYWORD, strip=True), doc="the chat word that enters"),
        "duration_s": req(Int(1, 86400)),
        "min_level": opt(Int(0, MAX_LEVELS), 0, "the fan level a viewer needs to enter"),
    }, rules=("`keyword` is required with entry 'keyword' and refused otherwise.",))


def parse_lottery(body: Mapping[str, Any], now: int, max_winners: int,
                  seed: str) -> Lottery:
    """A lottery of at most `max_winners` winners."""
    v = lottery_shape(max_winners).read(body)
    entry = v["entry"]
    keyword = ""
    if entry == "keyword":
        keyword = normalize_entry_text(v.get("keyword", ""))
        if not keyword:
            raise BadRequest("keyword: required for keyword entry", details={"field": "keyword"})
    elif "keyword" in v:
        raise BadRequest("keyword: only for entry 'keyword'", details={"field": "keyword"})
    return Lottery(
        lottery_id=new_id("l"),
        prize=v["prize"],
        winners=v["winners"],
        entry="keyword" if entry == "keyword" else "button",
        keyword=keyword,
        seed_hash=seed_hash(seed),
        opens_at=now,
        closes_at=now + v["duration_s"] * 1000,
        min_level=v["min_level"],
    )


def normalize_entry_text(text: str) -> str:
    """Keyword matching ignores case and surrounding space."""
    return " ".join(text.lower().split())


ANNOUNCEMENT_SHAPE: Final = Shape("announcement", {
    "text": req(Str(MAX_ANNOUNCEMENT, strip=True))})
MUTE_SHAPE: Final = Shape("mute", {
    "viewer_id": req(ID),
    "duration_s": opt(Int(1, MAX_DURATION_S), 300),
})
PIN_SHAPE: Final = Shape("pin", {
    "product_id": req(ID),
    "open_for_sale": opt(Bool(), True, "pinning opens it for sale (buy-it-now); false "
                         "pins it for show only"),
})
DELETE_SHAPE: Final = Shape("delete", {"message_id": req(ID)})


def parse_announcement(body: Mapping[str, Any]) -> str:
    return str(ANNOUNCEMENT_SHAPE.read(body)["text"])


def parse_mute(body: Mapping[str, Any]) -> tuple[str, int]:
    v = MUTE_SHAPE.read(body)
    return v["viewer_id"], v["duration_s"]


def parse_pin(body: Mapping[str, Any]) -> tuple[str, bool]:
    """The product to pin, and whether pinning opens it for sale."""
    v = PIN_SHAPE.read(body)
    return v["product_id"], v["open_for_sale"]


# ------------------------------------------------------------------ buy-it-now
#
# A product open for sale can be bought at its list price, outside any flash sale,
# under a per-buyer limit: its listing. A listing is kept like a sale (the same
# hash fields, so release, checkout and their scripts treat its holds as any
# other), under an id made from the product's: one listing per product, found by
# reserve.lua without a lookup. A flash sale that is open overrides it.

LISTING_PREFIX: Final = "bn_"


def listing_id(product_id: str) -> str:
    return LISTING_PREFIX + product_id


def is_listing(sale_id: str) -> bool:
    return sale_id.startswith(LISTING_PREFIX)


@dataclass(frozen=True, slots=True)
class Listing:
    product_id: str
    open: bool
    limit_per_buyer: int


LISTING_SHAPE: Final = Shape("listing", {
    "open": req(Bool()),
    "limit_per_buyer": opt(Int(1, MAX_STOCK), doc="kept from the current listing when not "
                           "given, else the server's default"),
})


def parse_listing(body: Mapping[str, Any], product_id: str, current: Listing | None,
                  default_limit: int) -> Listing:
    """The host's `PUT .../listing`."""
    v = LISTING_SHAPE.read(body)
    limit = current.limit_per_buyer if current else default_limit
    return Listing(product_id=product_id, open=v["open"],
                   limit_per_buyer=v.get("limit_per_buyer", limit))


# ------------------------------------------------------------------ comment-to-buy

CLAIM_WORD_PATTERN: Final = re.compile(r"^[A-Za-z0-9]{1,20}$")
DEFAULT_CLAIM_WORD: Final = "SOLD"


@dataclass(frozen=True, slots=True)
class ClaimWord:
    """A product's claim keyword: a comment `<keyword>` (or `<keyword> <n>` when
    `quantities`) buys it. Matched without regard to case."""

    product_id: str
    keyword: str
    quantities: bool

    @property
    def match_key(self) -> str:
        return self.keyword.lower()


CLAIMS_SHAPE: Final = Shape("claims", {
    "enabled": req(Bool()),
    "keyword": opt(Str(20, strip=True, pattern=CLAIM_WORD_PATTERN,
                       says="one word of letters and digits (1..20), like SOLD"),
                   DEFAULT_CLAIM_WORD),
    "quantities": opt(Bool(), True, "a comment '<keyword> <n>' buys n"),
})


def parse_claim_word(body: Mapping[str, Any], product_id: str) -> ClaimWord | None:
    """The host's `PUT .../claims`. None: switched off."""
    v = CLAIMS_SHAPE.read(body)
    return ClaimWord(product_id, v["keyword"], v["quantities"]) if v["enabled"] else None


def match_claim(text: str, words: Mapping[str, tuple[str, bool]],
                max_quantity: int) -> tuple[str, int] | None:
    """(product id, quantity) when the comment claims a product: its first word is
    a claim keyword (`words`: lower-case keyword -> (product, quantities allowed))
    and the rest is nothing, or a quantity 1..max_quantity where allowed."""
    parts = text.lower().split()
    if not parts or len(parts) > 2:
        return None
    found = words.get(parts[0])
    if found is None:
        return None
    product_id, quantities = found
    if len(parts) == 1:
        return product_id, 1
    if not quantities or not parts[1].isdigit() or not parts[1].isascii():
        return None
    n = int(parts[1])
    return (product_id, n) if 1 <= n <= max_quantity else None


# ------------------------------------------------------------------ lottery maths
#
# Published when the lottery opens: seed_hash = sha256(seed).
# Published when it draws: seed, the sorted entrant ids, their digest and the winners.
# Anyone recomputes: digest = sha256("\n".join(sorted entrants)), then a partial
# Fisher-Yates shuffle of the sorted list where step i swaps position i with
# i + (int(sha256(f"{seed}:{digest}:{i}"), big-endian) mod (n - i)).
# The winners are the first min(k, n) entries. The modulo bias is below 2^-200.


def new_seed() -> str:
    return secrets.token_hex(32)


def seed_hash(seed: str) -> str:
    return hashlib.sha256(seed.encode("utf-8")).hexdigest()


def entrants_digest(entrants: Iterable[str]) -> str:
    return hashlib.sha256("\n".join(sorted(entrants)).encode("utf-8")).hexdigest()


def draw_winners(seed: str, entrants: Iterable[str], winners: int) -> list[str]:
    pool = sorted(entrants)
    digest = entrants_digest(pool)
    n = len(pool)
    for i in range(min(winners, n)):
        h = hashlib.sha256(f"{seed}:{digest}:{i}".encode()).digest()
        j = i + int.from_bytes(h, "big") % (n - i)
        pool[i], pool[j] = pool[j], pool[i]
    return pool[: min(winners, n)]


@dataclass(frozen=True, slots=True)
class Verification:
    ok: bool
    problems: list[str]
    expected_winners: list[str]


def verify_lottery(published: Mapping[str, Any]) -> Verification:
    """Recompute a drawn lottery from its published record.

    `published` holds seed_hash, seed, entrants, entrants_digest, winners_count
    (or winner count implied) and winners, as `GET .../lotteries/{id}` returns.
    """
    problems: list[str] = []
    try:
        seed = str(published["seed"])
        claimed_hash = str(published["seed_hash"])
        entrants = [str(e) for e in published["entrants"]]
        claimed_digest = str(published["entrants_digest"])
        winners = [str(w) for w in published["winners"]]
        count = int(published.get("winners_count", len(winners)))
    except (KeyError, TypeError, ValueError) as exc:
        return Verification(False, [f"published record is incomplete: {exc}"], [])
    if seed_hash(seed) != claimed_hash:
        problems.append("seed does not hash to the seed_hash published at opening")
    if len(set(entrants)) != len(entrants):
        problems.append("entrant list has duplicates")
    if entrants_digest(entrants) != claimed_digest:
        problems.append("entrant list does not match the published entrants_digest")
    expected = draw_winners(seed, entrants, count)
    if expected != winners:
        problems.append(f"winners differ: recomputed {expected}, published {winners}")
    return Verification(not problems, problems, expected)
