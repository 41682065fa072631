"""Group buys (拼团): what a group deal is, how the host's request is validated
into one, and its public view. A deal is kept in Redis with a sale's fields
under its id (`gb_...`), so the holds of its full groups are checked out,
released and expired like any hold. Pure: no I/O; the groups themselves are
decided in Redis (lua/start_group.lua, join_group.lua, expire_group.lua)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import orjson

from server.core.protocol import (
    MAX_AMOUNT,
    MAX_LEVELS,
    MAX_STOCK,
    get_int,
)
from server.core.schema import ID, Int, Shape, opt, req

DEAL_PREFIX: Final = "gb"



@dataclass(frozen=True, slots=True)
class GroupDeal:
    deal_id: str
    product_id: str
    title: str
    currency: str
    group_size: int
    group_price: int
    fill_s: int
    units: int
    created_at: int
    min_level: int = 0  # the fan level a viewer needs to start or join a group

    def public(self) -> dict[str, Any]:
        return {"deal_id": self.deal_id, "product_id": self.product_id, "title": self.title,
                "currency": self.currency, "group_size": self.group_size,
                "group_price": self.group_price, "fill_s": self.fill_s, "units": self.units,
                "created_at": self.created_at, "min_level": self.min_level}

    @classmethod
    def from_public(cls, d: Mapping[str, Any]) -> GroupDeal:
        return cls(str(d["deal_id"]), str(d["product_id"]), str(d.get("title", "")),
                   str(d["currency"]), int(d["group_size"]), int(d["group_price"]),
                   int(d["fill_s"]), int(d["units"]), int(d["created_at"]),
                   int(d.get("min_level", 0)))


DEAL_SHAPE: Final = Shape("group deal", {
    "product_id": req(ID),
    "group_size": req(Int(2, 10), "buyers a group needs"),
    "group_price": req(Int(0, MAX_AMOUNT), "each member's price, in minor units"),
    "fill_s": opt(Int(10, 86400), 300, "seconds a group has to fill"),
    "units": req(Int(2, MAX_STOCK), "units the deal may sell"),
    "min_level": opt(Int(0, MAX_LEVELS), 0, "the fan level a viewer needs"),
}, rules=("`units` is at least `group_size`.",))


def parse_deal(body: Mapping[str, Any], *, deal_id: str, title: str, currency: str,
               now: int) -> GroupDeal:
    v = DEAL_SHAPE.read(body)
    size = v["group_size"]
    units = get_int(v, "units", lo=size, hi=MAX_STOCK)
    return GroupDeal(
        deal_id=deal_id, product_id=v["product_id"], title=title, currency=currency,
        group_size=size, group_price=v["group_price"], fill_s=v["fill_s"], units=units,
        created_at=now, min_level=v["min_level"])


def deal_view(h: Mapping[str, Any]) -> dict[str, Any]:
    """A deal as everyone sees it, from its Redis hash: its terms, state and units
    held (in groups, open or full) and sold."""
    terms = {k: h.get(k) for k in ("deal_id", "product_id", "title", "currency")}
    ints = {k: int(h.get(k) or 0) for k in ("group_size", "units", "held", "sold",
                                            "min_level")}
    return {**terms, **ints, "group_price": int(h.get("price") or 0),
            "fill_s": int(h.get("fill_ms") or 0) // 1000,
            "state": "open" if h.get("state") == "open" else "closed",
            "left": max(0, ints["units"] - ints["held"] - ints["sold"])}


def group_view(h: Mapping[str, Any]) -> dict[str, Any]:
    size, members = int(h.get("size") or 0), int(h.get("members") or 0)
    return {"group_id": h.get("group_id"), "deal_id": h.get("deal_id"),
            "state": h.get("state"), "size": size, "members": members,
            "seats_left": max(0, size - members), "deadline": int(h.get("deadline") or 0),
            "starter": h.get("starter", ""),
            # The members' nicknames in the order they came (the card's avatars).
            "member_names": orjson.loads(h["names"]) if h.get("names") else []}
