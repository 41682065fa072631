"""Auctions in Redis, outside their atomic scripts: reading an auction, its chain
and the room's auctions, and loading them back from the store when Redis is
rebuilt (the decisions are lua/start_auction.lua, bid.lua, close_auction.lua and
second_chance.lua, called through server/state/scripts.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from server.core import auction_chain
from server.core.auction_terms import Auction, hold_sale_id
from server.core.jobs import Job
from server.core.keys import room_keys

CLOSE = "auction_close"


@dataclass(frozen=True, slots=True)
class RestoredHold:
    """A hold of an auction's unit to make again in a rebuild (its order not placed,
    its time not up)."""

    hold_id: str
    buyer: str
    unit_price: int
    expires_at: int


@dataclass(frozen=True, slots=True)
class AuctionState:
    """An auction's hash fields beyond its terms, as a rebuild computes them from the
    store (the same fields the scripts keep)."""

    fields: dict[str, Any]
    entries: list[str]  # the chain list's elements (entry JSON with bidder id and name)
    maxima: dict[str, int]
    unit_held: bool  # the auction (or a hold of it) has the unit: it is held in stock
    hold: RestoredHold | None
    is_open: bool


class AuctionsData:
    def __init__(self, redis: Any) -> None:
        self.redis = redis  # decode_responses=True

    async def auction(self, room_id: str, auction_id: str) -> dict[str, str]:
        return dict(await self.redis.hgetall(room_keys(room_id).auction(auction_id)))

    async def auction_ids(self, room_id: str) -> list[str]:
        return sorted(await self.redis.smembers(room_keys(room_id).auctions))

    async def auctions(self, room_id: str) -> list[dict[str, str]]:
        """Every auction of the room (hashes), newest first."""
        keys = room_keys(room_id)
        ids = await self.auction_ids(room_id)
        async with self.redis.pipeline(transaction=False) as pipe:
            for aid in ids:
                pipe.hgetall(keys.auction(aid))
            found = [dict(h) for h in await pipe.execute() if h]
        found.sort(key=lambda h: (-int(orjson.loads(h["terms"])["started_at"]),
                                  h["auction_id"]))
        return found

    async def chain(self, room_id: str, auction_id: str, after: int = 0,
                    limit: int = -1) -> list[dict[str, Any]]:
        """Entries after seq `after` (at most `limit`; -1: all), each with the bidder's
        id (`viewer`) and name as the chain list keeps them."""
        stop = -1 if limit < 0 else after + limit - 1
        raw = await self.redis.lrange(room_keys(room_id).auction_chain(auction_id), after, stop)
        return [orjson.loads(r) for r in raw]

    async def entry(self, room_id: str, auction_id: str, seq: int) -> dict[str, Any] | None:
        """Chain entry `seq` (from 1), with the bidder's id and name, or None."""
        raw = await self.redis.lindex(room_keys(room_id).auction_chain(auction_id), seq - 1)
        return orjson.loads(raw) if raw else None

    async def load(self, room_id: str, auction: Auction, salt: str,
                   state: AuctionState) -> None:
        """Put a stored auction back into Redis (the room is being rebuilt: no script
        runs on it until its epoch is set)."""
        keys = room_keys(room_id)
        aid, pid = auction.auction_id, auction.product_id
        sid = hold_sale_id(aid)
        terms = auction.public()
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(keys.auction(aid), keys.auction_chain(aid), keys.auction_maxima(aid))
            pipe.hset(keys.auction(aid), mapping={
                "auction_id": aid, "product_id": pid, "terms": orjson.dumps(terms).decode(),
                "start": auction.start_price,
                "bands": auction_chain.increments_text(auction.bands()),
                "mode": auction.anti_snipe, "extend_ms": auction.extend_s * 1000,
                "reserve": auction.reserve_price or 0, "buy_now": auction.buy_now_price or 0,
                "signed_only": "1" if auction.signed_only else "0",
                "pay_ms": auction.pay_s * 1000, "salt": salt, "genesis": auction.genesis(),
                "currency": auction.currency, **state.fields})
            if state.entries:
                pipe.rpush(keys.auction_chain(aid), *state.entries)
            if state.maxima:
                pipe.hset(keys.auction_maxima(aid), mapping=state.maxima)
            pipe.hset(keys.sale(sid), mapping={
                "sale_id": sid, "kind": "auction", "product_id": pid, "state": "auction",
                "units": 1, "held": 1 if state.hold else 0, "sold": 0, "limit": 1,
                "price": auction.start_price, "currency": auction.currency,
                "starts_at": auction.started_at, "ends_at": 2**53 - 1})
            pipe.sadd(keys.auctions, aid)
            if state.unit_held:
                pipe.hincrby(keys.stock(pid), "left", -1)
                pipe.hincrby(keys.stock(pid), "held", 1)
            if state.is_open:
                pipe.set(keys.product_auction(pid), aid)
                pipe.zadd(keys.timers, {Job(CLOSE, aid).member: int(state.fields["ends_at"])})
            if state.hold is not None:
                h = state.hold
                pipe.hset(keys.hold(h.hold_id), mapping={
                    "id": h.hold_id, "buyer": h.buyer, "product_id": pid, "sale_id": sid,
                    "quantity": 1, "unit_price": h.unit_price, "currency": auction.currency,
                    "created_at": h.expires_at - auction.pay_s * 1000,
                    "expires_at": h.expires_at, "state": "held"})
                pipe.zadd(keys.holds, {h.hold_id: h.expires_at})
                pipe.hincrby(keys.bought(sid), h.buyer, 1)
                pipe.hincrby(keys.open_holds, h.buyer, 1)
            await pipe.execute()
