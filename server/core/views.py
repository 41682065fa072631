"""The public views of what Redis holds: a sale with its state by the server
clock, stock, a coupon drop, a lottery. One place computes each, and snapshots,
events and HTTP answers all carry it, so pages render the server's state rather
than re-deriving it (docs/protocol.md, "Room state")."""

from __future__ import annotations

from typing import Any

import orjson

from server.core.auction_chain import min_next
from server.core.polls import percentages


def as_int(value: Any, default: int = 0) -> int:
    """A Redis hash field as an int ('' and a missing field give `default`)."""
    return int(value) if value not in (None, "") else default


def sale_state(sale: dict[str, Any], now: int) -> str:
    """scheduled, open, ended or stopped: the one rule, by the server's clock.
    reserve.lua applies the same rule inside Redis when a buyer asks."""
    if sale.get("state") == "stopped":
        return "stopped"
    if now < as_int(sale.get("starts_at")):
        return "scheduled"
    if now < as_int(sale.get("ends_at")):
        return "open"
    return "ended"


def sale_view(sale: dict[str, Any], stock_left: int, now: int) -> dict[str, Any]:
    """The public form of a sale hash, with its state by the server clock."""
    units, held, sold = as_int(sale.get("units")), as_int(sale.get("held")), \
        as_int(sale.get("sold"))
    return {
        "sale_id": sale.get("sale_id", ""), "product_id": sale.get("product_id", ""),
        "price": as_int(sale.get("price")), "currency": sale.get("currency", ""),
        "units": units, "limit_per_buyer": as_int(sale.get("limit")),
        "starts_at": as_int(sale.get("starts_at")), "ends_at": as_int(sale.get("ends_at")),
        "state": sale_state(sale, now),
        "held": held, "sold": sold, "left": max(0, min(units - held - sold, stock_left)),
    }


def stock_view(stock: dict[str, Any]) -> dict[str, int]:
    return {k: as_int(stock.get(k)) for k in ("total", "left", "held", "sold")}


def listing_view(listing: dict[str, Any]) -> dict[str, Any]:
    """A product's listing (buy-it-now at its list price, outside a flash sale): open
    or not, its price and per-buyer limit, the units held and sold through it, and
    its claim keyword (comment-to-buy) or None. A product without a listing hash is
    closed."""
    claim = ({"keyword": listing["claim_kw"], "quantities": listing.get("claim_qty") == "1"}
             if listing.get("claim_kw") else None)
    return {"open": listing.get("state") == "open", "price": as_int(listing.get("price")),
            "currency": listing.get("currency", ""),
            "limit_per_buyer": as_int(listing.get("limit")),
            "held": as_int(listing.get("held")), "sold": as_int(listing.get("sold")),
            "claim": claim}


def card_view(product: dict[str, Any], stock: dict[str, Any],
              sale: dict[str, Any] | None, listing: dict[str, Any], waiting: int,
              now: int) -> dict[str, Any]:
    """A product card: the product, its stock, its current sale if any, its
    listing, and how many wait for it. Which of the two a buy gets is reserve.lua's
    rule: the sale while it is open, else the listing if open."""
    sv = stock_view(stock)
    return {**{k: v for k, v in product.items() if k != "position"}, "stock": sv,
            "sale": sale_view(sale, sv["left"], now) if sale else None,
            "listing": listing_view(listing), "waiting": waiting}


def coupon_view(c: dict[str, Any]) -> dict[str, Any]:
    count = as_int(c.get("count"))
    return {"coupon_id": c["coupon_id"], "title": c.get("title", ""), "kind": c["kind"],
            "value": as_int(c.get("value")), "min_spend": as_int(c.get("min_spend")),
            "currency": c.get("currency", ""), "count": count,
            "remaining": max(0, count - as_int(c.get("claimed"))),
            "expires_at": as_int(c.get("expires_at"))}


def lottery_view(lid: str, lot: dict[str, Any], entrants: int,
                 with_entrants: bool = False) -> dict[str, Any]:
    """A lottery as viewers see it. A drawn one's result carries its entrant list
    only `with_entrants` (the public GET of one lottery, which verifiers fetch, and
    the draw's answer): snapshots and the `lottery_drawn` event carry the count,
    the digest and the winners, so a big draw is not repeated in every snapshot."""
    view: dict[str, Any] = {
        "lottery_id": lid, "prize": lot.get("prize", ""), "winners_count":
        as_int(lot.get("winners")), "entry": lot.get("mode", "button"),
        "keyword": lot.get("keyword", ""), "seed_hash": lot.get("seed_hash", ""),
        "opens_at": as_int(lot.get("opens_at")), "closes_at": as_int(lot.get("closes_at")),
        "state": lot.get("state", ""), "entrants": entrants,
        "min_level": as_int(lot.get("min_level"))}
    if lot.get("result"):
        result = orjson.loads(lot["result"])
        if not with_entrants:
            result.pop("entrants", None)
        view["result"] = result
    return view


def auction_view(h: dict[str, Any]) -> dict[str, Any]:
    """An auction as everyone sees it, from its Redis hash (lua/start_auction.lua and
    the scripts after it): the terms, the leading bid, never a maximum, the reserve
    only once it is over (docs/protocol.md section 15)."""
    terms = orjson.loads(h["terms"])
    bids = as_int(h.get("bids"))
    leader = h.get("leader_ps") or None if h.get("leader") else None
    amount = as_int(h.get("amount")) if leader else None
    reserve = terms.get("reserve_price")
    met = amount is not None and (reserve is None or amount >= reserve)
    state = h.get("state", "open")
    view: dict[str, Any] = {
        **{k: terms[k] for k in ("auction_id", "product_id", "title", "currency",
                                 "start_price", "increments", "anti_snipe", "extend_s",
                                 "duration_s", "signed_only", "pay_s", "started_at",
                                 "first_ends_at")},
        "has_reserve": reserve is not None, "reserve_met": met,
        "buy_now_price": terms.get("buy_now_price") if bids == 0 else None,
        "ends_at": as_int(h.get("ends_at")), "state": state,
        "leader": leader, "leader_name": h.get("leader_name") if leader else None,
        "amount": amount,
        "min_next": min_next(amount, int(terms["start_price"]), terms["increments"]),
        "bids": bids, "extensions": as_int(h.get("extensions")),
        "genesis": h.get("genesis", ""), "head": h.get("head", ""), "result": None}
    if state == "open":
        return view
    won = bool(h.get("winner"))
    second = None
    if h.get("sc_bidder"):
        second = {"bidder": h.get("sc_ps"), "bidder_name": h.get("sc_name", ""),
                  "amount": as_int(h.get("sc_amount")),
                  "hold": {"id": h.get("sc_hold"), "expires_at": as_int(h.get("sc_expires")),
                           "unit_price": as_int(h.get("sc_amount"))}}
    view["result"] = {
        "winner": leader if won else None,
        "winner_name": h.get("leader_name") if won else None,
        "amount": amount if won else None, "reserve_price": reserve,
        "reserve_met": met and state != "cancelled",
        "ended_at": as_int(h.get("ended_at")), "ended_by": h.get("ended_by", ""),
        "bids": bids, "head": h.get("head", ""),
        "hold": {"id": h.get("hold_id"), "expires_at": as_int(h.get("hold_expires")),
                 "unit_price": amount} if won else None,
        "second_chance": second, "unit": h.get("unit", "")}
    return view


# Snapshots carry the open auctions and polls, and those over this recently.
RECENT_AUCTION_MS = 3600 * 1000


def recent_auctions(hashes: list[dict[str, Any]], now: int) -> list[dict[str, Any]]:
    """The auctions a snapshot carries, newest first."""
    views = [auction_view(h) for h in hashes]
    views = [v for v in views if v["state"] == "open"
             or v["result"]["ended_at"] > now - RECENT_AUCTION_MS]
    views.sort(key=lambda v: (-v["started_at"], v["auction_id"]))
    return views


def poll_view(h: dict[str, Any]) -> dict[str, Any]:
    """A poll as everyone sees it, from its Redis hash: the counts, whole
    percentages adding up to 100, and its state by the server clock's close."""
    poll = orjson.loads(h["data"])
    votes = [as_int(h.get(f"v{i}")) for i in range(len(poll["options"]))]
    return {**poll, "votes": votes, "total": sum(votes), "percent": percentages(votes),
            "state": "closed" if h.get("state") == "closed" else "open",
            "closed_at": as_int(h.get("closed_at")) or None}


def recent_polls(hashes: list[dict[str, Any]], now: int) -> list[dict[str, Any]]:
    """The polls a snapshot carries: open ones and those closed in the last hour,
    newest first."""
    views = [poll_view(h) for h in hashes]
    views = [v for v in views if v["state"] == "open"
             or (v["closed_at"] or v["closes_at"]) > now - RECENT_AUCTION_MS]
    views.sort(key=lambda v: (-v["opens_at"], v["poll_id"]))
    return views
