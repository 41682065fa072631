"""Sales and holds in Redis: loading a sale (with its timers, in one MULTI),
reading sales and holds. Buying, releasing, checkout and stopping a sale are
atomic scripts (server/state/scripts.py); these are the reads and writes around
them."""

from __future__ import annotations

from typing import Any, Final

import orjson

from server.core.domain import Listing, Sale, listing_id
from server.core.keys import CLAIM_ROOMS, DUE, room_keys

# A listing has no window: it "ends" past any clock (so stop_sale.lua can stop it
# when the show ends, voiding its holds as it does a sale's).
LISTING_ENDS_AT: Final = 2**53 - 1


def listing_hash(listing: Listing, price: int, currency: str,
                 sold: int = 0) -> dict[str, str | int]:
    """A listing's hash: a sale's fields (reserve.lua reads both alike, release and
    checkout count its holds alike), `state` 'open', 'closed' or 'stopped' (the show
    ended), no units of its own (the product's stock bounds it), no window."""
    return {"sale_id": listing_id(listing.product_id), "kind": "listing",
            "product_id": listing.product_id, "price": price, "currency": currency,
            "units": 0, "limit": listing.limit_per_buyer, "starts_at": 0,
            "ends_at": LISTING_ENDS_AT,
            "state": "open" if listing.open else "closed", "held": 0, "sold": sold}


class SalesData:
    def __init__(self, redis: Any) -> None:
        self.redis = redis  # decode_responses=True (see RoomsData)

    async def current_sale_id(self, room_id: str, product_id: str) -> str | None:
        sid: str | None = await self.redis.get(room_keys(room_id).product_sale(product_id))
        return sid

    async def sale(self, room_id: str, sale_id: str) -> dict[str, str]:
        """The sale's hash ({} when there is none)."""
        return dict(await self.redis.hgetall(room_keys(room_id).sale(sale_id)))

    async def sale_and_left(self, room_id: str, sale_id: str) -> tuple[dict[str, str], int]:
        """The sale's hash and the units left in its product's stock."""
        sale = await self.sale(room_id, sale_id)
        if not sale:
            return sale, 0
        return sale, await self.stock_left(room_id, sale["product_id"])

    async def stock_left(self, room_id: str, product_id: str) -> int:
        left = await self.redis.hget(room_keys(room_id).stock(product_id), "left")
        return int(left or 0)

    async def sale_ids(self, room_id: str) -> list[str]:
        return sorted(await self.redis.hkeys(room_keys(room_id).sales))

    async def why_no_sale(self, room_id: str, product_id: str) -> tuple[bool, bool]:
        """(whole, known): whether the room is whole and knows the product."""
        keys = room_keys(room_id)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.exists(keys.epoch)
            pipe.hexists(keys.products, product_id)
            whole, known = await pipe.execute()
        return bool(whole), bool(known)

    async def load(self, room_id: str, sale: Sale, held: int, sold: int, stopped: bool,
                   bought: dict[str, int], timers: dict[str, int]) -> None:
        """The sale's hash, buyers' counts and `timers` (member -> due ms) in one
        MULTI, then the room put on the schedule at the earliest (schedule.py)."""
        keys = room_keys(room_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(keys.sale(sale.sale_id), mapping={
                "sale_id": sale.sale_id, "product_id": sale.product_id, "price": sale.price,
                "currency": sale.currency, "units": sale.units, "limit": sale.limit_per_buyer,
                "starts_at": sale.starts_at, "ends_at": sale.ends_at,
                "state": "stopped" if stopped else "active", "held": held, "sold": sold})
            pipe.delete(keys.bought(sale.sale_id), keys.ip_bought(sale.sale_id))
            if bought:
                pipe.hset(keys.bought(sale.sale_id), mapping=bought)
            pipe.hset(keys.sales, sale.sale_id, sale.product_id)
            pipe.set(keys.product_sale(sale.product_id), sale.sale_id)
            if timers:
                pipe.zadd(keys.timers, timers)
            await pipe.execute()
        if timers:
            await self.redis.zadd(DUE, {room_id: min(timers.values())}, lt=True)

    # ------------------------------------------------------------------ listings

    async def listing(self, room_id: str, product_id: str) -> dict[str, str]:
        """The product's listing hash ({} when it has none)."""
        return dict(await self.redis.hgetall(room_keys(room_id).sale(listing_id(product_id))))

    async def put_listing(self, room_id: str, listing: Listing, price: int,
                          currency: str) -> None:
        """The host opened or closed the listing or changed its limit. Its price is
        the product's, written with the product (CatalogueData); its counts move with
        its holds, through the scripts. A product made before listings existed has
        no listing hash: its fields are filled in where missing, in the same MULTI."""
        key = room_keys(room_id).sale(listing_id(listing.product_id))
        async with self.redis.pipeline(transaction=True) as pipe:
            for field, value in listing_hash(listing, price, currency).items():
                pipe.hsetnx(key, field, value)
            pipe.hset(key, mapping={"state": "open" if listing.open else "closed",
                                    "limit": listing.limit_per_buyer})
            await pipe.execute()

    async def load_listing(self, room_id: str, listing: Listing, price: int, currency: str,
                           bought: dict[str, int]) -> None:
        """The listing whole, as a rebuild loads it: nothing held, `bought` (buyer ->
        units ordered) counted as sold."""
        keys = room_keys(room_id)
        lid = listing_id(listing.product_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(keys.sale(lid), mapping=listing_hash(listing, price, currency,
                                                             sold=sum(bought.values())))
            pipe.delete(keys.bought(lid), keys.ip_bought(lid))
            if bought:
                pipe.hset(keys.bought(lid), mapping=bought)
            await pipe.execute()

    # ------------------------------------------------------------------ claim keywords

    async def flag_claim_room(self, room_id: str) -> None:
        """The room has a claim keyword: on the set the processes' upkeep reads (it
        leaves it when the show ends, RoomsData.forget_flags)."""
        await self.redis.sadd(CLAIM_ROOMS, room_id)

    async def claim_words(self, room_ids: list[str]) -> list[dict[str, tuple[str, bool]]]:
        """Each room's lower-case keyword -> (product id, quantities allowed), in one
        round trip."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for room_id in room_ids:
                pipe.hgetall(room_keys(room_id).claim_words)
            raws = await pipe.execute()
        out = []
        for raw in raws:
            words: dict[str, tuple[str, bool]] = {}
            for kw, data in raw.items():
                d = orjson.loads(data)
                words[kw] = (str(d["product_id"]), bool(d["quantities"]))
            out.append(words)
        return out

    async def claim_rooms(self) -> set[str]:
        return set(await self.redis.smembers(CLAIM_ROOMS))

    # ------------------------------------------------------------------ waitlists

    async def clear_waitlists(self, room_id: str, product_ids: list[str]) -> None:
        keys = room_keys(room_id)
        if product_ids:
            await self.redis.delete(*(keys.waitlist(pid) for pid in product_ids))

    async def leave_waitlist(self, room_id: str, product_id: str, viewer_id: str) -> bool:
        return bool(await self.redis.zrem(room_keys(room_id).waitlist(product_id), viewer_id))

    # ------------------------------------------------------------------ holds

    async def hold(self, room_id: str, hold_id: str) -> dict[str, str]:
        return dict(await self.redis.hgetall(room_keys(room_id).hold(hold_id)))

    async def hold_owner(self, room_id: str, hold_id: str) -> tuple[str | None, str, str]:
        """(product id or None when there is no such hold, sale id, buyer)."""
        pid, sid, buyer = await self.redis.hmget(room_keys(room_id).hold(hold_id),
                                                 ["product_id", "sale_id", "buyer"])
        return pid, sid or "", buyer or ""

    async def holds_products(self, room_id: str,
                             hold_ids: list[str]) -> list[tuple[str | None, str]]:
        """(product id or None, sale id) of each hold, in one round trip."""
        keys = room_keys(room_id)
        async with self.redis.pipeline(transaction=False) as pipe:
            for hid in hold_ids:
                pipe.hmget(keys.hold(hid), ["product_id", "sale_id"])
            rows = await pipe.execute()
        return [(pid, sid or "") for pid, sid in rows]

    async def forget_expiring(self, room_id: str, hold_id: str) -> None:
        """Take a hold that no longer exists off the expiry set."""
        await self.redis.zrem(room_keys(room_id).holds, hold_id)

    async def forget_confirming(self, room_id: str, hold_id: str) -> None:
        await self.redis.zrem(room_keys(room_id).confirming, hold_id)

    async def confirming_before(self, room_id: str, before: int) -> list[str]:
        """Holds in checkout ('confirming') since before `before` (ms)."""
        return list(await self.redis.zrangebyscore(room_keys(room_id).confirming, "-inf",
                                                   before))
