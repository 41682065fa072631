"""Sale rules: what a room, product, sale, coupon drop and lottery are, how host
requests are validated into them, and the lottery draw maths.

Pure: no I/O. The atomic decisions (reserve, claim, enter) live in the Lua
scripts (server/state/scripts.py); this module holds the rules that are not races.
"""

from __future__ import annotations

import base64
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
    ID_PATTERN,
    MAX_AMOUNT,
    MAX_DURATION_S,
    MAX_LEVELS,
    MAX_STOCK,
    get_bool,
    get_int,
    get_str,
    reject_unknown,
)

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


def _url(d: Mapping[str, Any], key: str) -> str:
    value = get_str(d, key, max_len=MAX_URL, min_len=0, required=False, strip=True)
    if value and not URL_PATTERN.match(value):
        raise BadRequest(f"{key}: must be an http:// or https:// URL", details={"field": key})
    return value


def parse_room(body: Mapping[str, Any]) -> tuple[str, str]:
    reject_unknown(body, frozenset({"title", "stream_url"}), "room")
    return (get_str(body, "title", max_len=MAX_TITLE, strip=True),
            _url(body, "stream_url"))


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


PRODUCT_FIELDS: Final = frozenset(
    {"product_id", "title", "price", "currency", "image_url", "description", "stock"})


def parse_product(body: Mapping[str, Any]) -> tuple[Product, int]:
    """A new product and its initial stock."""
    reject_unknown(body, PRODUCT_FIELDS, "product")
    pid = get_str(body, "product_id", max_len=64, pattern=ID_PATTERN, required=False)
    product = Product(
        product_id=pid or new_id("p"),
        title=get_str(body, "title", max_len=MAX_TITLE, strip=True),
        price=get_int(body, "price", lo=0, hi=MAX_AMOUNT),
        currency=get_str(body, "currency", max_len=3, min_len=3, pattern=CURRENCY_PATTERN,
                         default="USD"),
        image_url=_url(body, "image_url"),
        description=get_str(body, "description", max_len=MAX_DESCRIPTION, min_len=0,
                            required=False),
    )
    return product, get_int(body, "stock", lo=0, hi=MAX_STOCK)


def apply_product_update(product: Product, body: Mapping[str, Any]) -> tuple[Product, int | None]:
    """The product with the given fields changed, and the new total stock if given."""
    reject_unknown(body, PRODUCT_FIELDS - {"product_id"}, "product update")
    if not body:
        raise BadRequest("product update: give at least one field")
    updated = Product(
        product_id=product.product_id,
        title=get_str(body, "title", max_len=MAX_TITLE, strip=True, default=product.title),
        price=get_int(body, "price", lo=0, hi=MAX_AMOUNT, default=product.price),
        currency=get_str(body, "currency", max_len=3, min_len=3, pattern=CURRENCY_PATTERN,
                         default=product.currency),
        image_url=_url(body, "image_url") if "image_url" in body else product.image_url,
        description=(get_str(body, "description", max_len=MAX_DESCRIPTION, min_len=0)
                     if "description" in body else product.description),
    )
    stock = get_int(body, "stock", lo=0, hi=MAX_STOCK) if "stock" in body else None
    return updated, stock


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


SALE_FIELDS: Final = frozenset(
    {"product_id", "price", "units", "limit_per_buyer", "starts_at", "starts_in_s", "duration_s"})


def parse_sale(body: Mapping[str, Any], product: Product, now: int) -> Sale:
    reject_unknown(body, SALE_FIELDS, "sale")
    if "starts_at" in body and "starts_in_s" in body:
        raise BadRequest("sale: give starts_at or starts_in_s, not both")
    if "starts_at" in body:
        starts_at = get_int(body, "starts_at", lo=now - 60_000, hi=now + MAX_DURATION_S * 1000)
        starts_at = max(starts_at, now)
    else:
        starts_at = now + get_int(body, "starts_in_s", lo=0, hi=MAX_DURATION_S, default=0) * 1000
    duration = get_int(body, "duration_s", lo=1, hi=MAX_DURATION_S)
    return Sale(
        sale_id=new_id("s"),
        product_id=product.product_id,
        price=get_int(body, "price", lo=0, hi=MAX_AMOUNT, default=product.price),
        currency=product.currency,
        units=get_int(body, "units", lo=1, hi=MAX_STOCK),
        limit_per_buyer=get_int(body, "limit_per_buyer", lo=1, hi=MAX_STOCK, default=1),
        starts_at=starts_at,
        ends_at=starts_at + duration * 1000,
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


COUPON_FIELDS: Final = frozenset(
    {"title", "kind", "value", "min_spend", "currency", "count", "expires_in_s"})


def parse_coupon(body: Mapping[str, Any], now: int, max_count: int) -> CouponDrop:
    reject_unknown(body, COUPON_FIELDS, "coupon")
    kind = get_str(body, "kind", max_len=10)
    if kind not in ("amount", "percent"):
        raise BadRequest("kind: must be 'amount' or 'percent'", details={"field": "kind"})
    value = (get_int(body, "value", lo=1, hi=100) if kind == "percent"
             else get_int(body, "value", lo=1, hi=MAX_AMOUNT))
    return CouponDrop(
        coupon_id=new_id("c"),
        title=get_str(body, "title", max_len=MAX_TITLE, strip=True,
                      default=f"{value}% off" if kind == "percent" else f"{value} off"),
        kind="percent" if kind == "percent" else "amount",
        value=value,
        min_spend=get_int(body, "min_spend", lo=0, hi=MAX_AMOUNT, default=0),
        currency=get_str(body, "currency", max_len=3, min_len=3, pattern=CURRENCY_PATTERN,
                         default="USD"),
        count=get_int(body, "count", lo=1, hi=max_count),
        expires_at=now + get_int(body, "expires_in_s", lo=1, hi=MAX_DURATION_S,
                                 default=3600) * 1000,
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


LOTTERY_FIELDS: Final = frozenset({"prize", "winners", "entry", "keyword", "duration_s",
                                   "min_level"})


def parse_lottery(body: Mapping[str, Any], now: int, max_winners: int,
                  seed: str) -> Lottery:
    reject_unknown(body, LOTTERY_FIELDS, "lottery")
    entry = get_str(body, "entry", max_len=10, default="button")
    if entry not in ("button", "keyword"):
        raise BadRequest("entry: must be 'button' or 'keyword'", details={"field": "entry"})
    keyword = ""
    if entry == "keyword":
        keyword = normalize_entry_text(get_str(body, "keyword", max_len=MAX_KEYWORD, strip=True))
        if not keyword:
            raise BadRequest("keyword: required for keyword entry", details={"field": "keyword"})
    elif "keyword" in body:
        raise BadRequest("keyword: only for entry 'keyword'", details={"field": "keyword"})
    return Lottery(
        lottery_id=new_id("l"),
        prize=get_str(body, "prize", max_len=MAX_PRIZE, strip=True),
        winners=get_int(body, "winners", lo=1, hi=max_winners, default=1),
        entry="keyword" if entry == "keyword" else "button",
        keyword=keyword,
        seed_hash=seed_hash(seed),
        opens_at=now,
        closes_at=now + get_int(body, "duration_s", lo=1, hi=86400) * 1000,
        min_level=get_int(body, "min_level", lo=0, hi=MAX_LEVELS, default=0),
    )


def normalize_entry_text(text: str) -> str:
    """Keyword matching ignores case and surrounding space."""
    return " ".join(text.lower().split())


def parse_announcement(body: Mapping[str, Any]) -> str:
    reject_unknown(body, frozenset({"text"}), "announcement")
    return get_str(body, "text", max_len=MAX_ANNOUNCEMENT, strip=True)


def reject_unknown_fields(body: Mapping[str, Any], allowed: set[str], what: str) -> None:
    reject_unknown(body, frozenset(allowed), what)


def get_id(body: Mapping[str, Any], key: str) -> str:
    return get_str(body, key, max_len=64, pattern=ID_PATTERN)


def parse_mute(body: Mapping[str, Any]) -> tuple[str, int]:
    reject_unknown(body, frozenset({"viewer_id", "duration_s"}), "mute")
    return get_id(body, "viewer_id"), get_int(body, "duration_s", lo=1, hi=MAX_DURATION_S,
                                              default=300)


def parse_pin(body: Mapping[str, Any]) -> tuple[str, bool]:
    """The product to pin, and whether pinning opens it for sale (buy-it-now; the
    default, `open_for_sale: false` pins it for show only)."""
    reject_unknown(body, frozenset({"product_id", "open_for_sale"}), "pin")
    return (get_str(body, "product_id", max_len=64, pattern=ID_PATTERN),
            get_bool(body, "open_for_sale", default=True))


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


LISTING_FIELDS: Final = frozenset({"open", "limit_per_buyer"})


def parse_listing(body: Mapping[str, Any], product_id: str, current: Listing | None,
                  default_limit: int) -> Listing:
    """The host's `PUT .../listing`: `open` (required) and `limit_per_buyer` (kept
    from the current listing when not given, else the server's default)."""
    reject_unknown(body, LISTING_FIELDS, "listing")
    if not isinstance(body.get("open"), bool):
        raise BadRequest("open: required, true or false", details={"field": "open"})
    limit = current.limit_per_buyer if current else default_limit
    return Listing(product_id=product_id, open=bool(body["open"]),
                   limit_per_buyer=get_int(body, "limit_per_buyer", lo=1, hi=MAX_STOCK,
                                           default=limit))


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


def parse_claim_word(body: Mapping[str, Any], product_id: str) -> ClaimWord | None:
    """The host's `PUT .../claims`: `enabled` (required), `keyword` (letters and
    digits, 1..20, default SOLD), `quantities` (default true). None: switched off."""
    reject_unknown(body, frozenset({"enabled", "keyword", "quantities"}), "claims")
    if not isinstance(body.get("enabled"), bool):
        raise BadRequest("enabled: required, true or false", details={"field": "enabled"})
    keyword = get_str(body, "keyword", max_len=20, strip=True, default=DEFAULT_CLAIM_WORD)
    if not CLAIM_WORD_PATTERN.match(keyword):
        raise BadRequest("keyword: one word of letters and digits (1..20), like SOLD",
                         details={"field": "keyword"})
    quantities = get_bool(body, "quantities", default=True)
    return ClaimWord(product_id, keyword, quantities) if body["enabled"] else None


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
