"""An auction's terms: what the host may set when starting one (start price,
increment bands, duration, reserve, buy-now, anti-snipe mode, who may bid, how
long the winner has to pay), how the request is validated into them, and the
id under which the winner's hold is kept like a sale's. Pure: no I/O.

The bids themselves are decided in Redis (server/state/lua/bid.lua); the chain
they leave is checked by server/core/auction_chain.py."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from server.core import auction_chain
from server.core.errors import BadRequest
from server.core.protocol import (
    MAX_AMOUNT,
    get_int,
)
from server.core.schema import ID, Bool, Int, ListOf, Obj, Shape, Str, opt, req

AntiSnipe = Literal["extend", "sudden_death"]

# (from, step): from 0 bids rise by 1.00, from 50.00 by 2.50, ... (minor units).
DEFAULT_INCREMENTS: Final = ((0, 100), (5000, 250), (10000, 500), (50000, 1000),
                             (100000, 2500))
MAX_BANDS: Final = 10
MIN_DURATION_S: Final = 5
MAX_AUCTION_S: Final = 86400
# The winner's hold is kept as a sale-like hash under this prefix and the auction's
# id (as a listing's is under bn_): release, checkout and the show's end treat it
# as any hold.
HOLD_PREFIX: Final = "au_"


def hold_sale_id(auction_id: str) -> str:
    return HOLD_PREFIX + auction_id



@dataclass(frozen=True, slots=True)
class Auction:
    auction_id: str
    product_id: str
    title: str
    currency: str
    start_price: int
    increments: tuple[tuple[int, int], ...]
    duration_s: int
    reserve_price: int | None
    buy_now_price: int | None
    anti_snipe: AntiSnipe
    extend_s: int
    signed_only: bool
    pay_s: int
    started_at: int

    @property
    def first_ends_at(self) -> int:
        return self.started_at + self.duration_s * 1000

    def bands(self) -> list[dict[str, int]]:
        return [{"from": f, "step": s} for f, s in self.increments]

    def public(self) -> dict[str, Any]:
        """The terms as stored and as the genesis hashes them."""
        return {"auction_id": self.auction_id, "product_id": self.product_id,
                "title": self.title, "currency": self.currency,
                "start_price": self.start_price, "increments": self.bands(),
                "duration_s": self.duration_s, "reserve_price": self.reserve_price,
                "buy_now_price": self.buy_now_price, "anti_snipe": self.anti_snipe,
                "extend_s": self.extend_s, "signed_only": self.signed_only,
                "pay_s": self.pay_s, "started_at": self.started_at,
                "first_ends_at": self.first_ends_at}

    def genesis(self) -> str:
        return auction_chain.genesis_hash(self.public())

    @classmethod
    def from_public(cls, d: Mapping[str, Any]) -> Auction:
        mode = str(d["anti_snipe"])
        return cls(
            auction_id=str(d["auction_id"]), product_id=str(d["product_id"]),
            title=str(d.get("title", "")), currency=str(d["currency"]),
            start_price=int(d["start_price"]),
            increments=tuple((int(b["from"]), int(b["step"])) for b in d["increments"]),
            duration_s=int(d["duration_s"]),
            reserve_price=None if d.get("reserve_price") is None else int(d["reserve_price"]),
            buy_now_price=None if d.get("buy_now_price") is None else int(d["buy_now_price"]),
            anti_snipe="sudden_death" if mode == "sudden_death" else "extend",
            extend_s=int(d["extend_s"]), signed_only=bool(d.get("signed_only")),
            pay_s=int(d["pay_s"]), started_at=int(d["started_at"]))


BAND_SHAPE: Final = Shape("increments band", {
    "from": req(Int(0, MAX_AMOUNT), "the price this band starts at"),
    "step": req(Int(1, MAX_AMOUNT), "the least raise from there"),
})
AUCTION_SHAPE: Final = Shape("auction", {
    "product_id": req(ID),
    "start_price": req(Int(1, MAX_AMOUNT), "in minor units"),
    "duration_s": opt(Int(MIN_DURATION_S, MAX_AUCTION_S), 60),
    "increments": opt(ListOf(Obj(BAND_SHAPE), 1, MAX_BANDS, what="bands"),
                      doc="bid increment bands (default: 1.00 from 0, 2.50 from 50.00, ...)"),
    "reserve_price": opt(Int(1, MAX_AMOUNT), doc="no sale below it"),
    "buy_now_price": opt(Int(2, MAX_AMOUNT), doc="a bid of it ends the auction"),
    "anti_snipe": opt(Str(20, choices=("extend", "sudden_death")), "extend"),
    "extend_s": opt(Int(1, 300), doc="a late bid extends the end by this (default: the "
                    "server's [auction] extend_s)"),
    "signed_only": opt(Bool(), False, "only shop-signed identities may bid"),
    "pay_s": opt(Int(10, MAX_AUCTION_S), doc="seconds the winner has to pay (default: "
                 "the server's [auction] pay_s)"),
}, rules=("Bands start at 0 and rise; reserve_price is at least start_price; "
          "buy_now_price is above start_price and not below reserve_price.",))


def _increments(v: Mapping[str, Any]) -> tuple[tuple[int, int], ...]:
    raw = v.get("increments")
    if raw is None:
        return DEFAULT_INCREMENTS
    bands: list[tuple[int, int]] = []
    for i, band in enumerate(raw):
        start, step = band["from"], band["step"]
        if i == 0 and start != 0:
            raise BadRequest("increments[0].from: the first band must start at 0",
                             details={"field": "increments"})
        if bands and start <= bands[-1][0]:
            raise BadRequest(f"increments[{i}].from: must rise above {bands[-1][0]}",
                             details={"field": "increments"})
        bands.append((start, step))
    return tuple(bands)


def _optional_price(body: Mapping[str, Any], key: str, lo: int) -> int | None:
    if body.get(key) is None:
        return None
    return get_int(body, key, lo=lo, hi=MAX_AMOUNT)


def parse_auction(body: Mapping[str, Any], *, auction_id: str, product_id: str,
                  title: str, currency: str, now: int, default_extend_s: int,
                  default_pay_s: int) -> Auction:
    """The host's start request, validated; the product's own fields come from the
    catalogue."""
    v = AUCTION_SHAPE.read(body)
    start = v["start_price"]
    reserve = _optional_price(v, "reserve_price", start)
    buy_now = _optional_price(v, "buy_now_price", start + 1)
    if buy_now is not None and reserve is not None and buy_now < reserve:
        raise BadRequest("buy_now_price: must not be below reserve_price",
                         details={"field": "buy_now_price"})
    return Auction(
        auction_id=auction_id, product_id=product_id, title=title, currency=currency,
        start_price=start, increments=_increments(v), duration_s=v["duration_s"],
        reserve_price=reserve, buy_now_price=buy_now,
        anti_snipe="sudden_death" if v["anti_snipe"] == "sudden_death" else "extend",
        extend_s=v.get("extend_s", default_extend_s), signed_only=v["signed_only"],
        pay_s=v.get("pay_s", default_pay_s), started_at=now)
