"""Products, their stock counters and the pinned list in Redis. Stock moves
by the atomic scripts (server/state/scripts.py); here are the plain reads and
the host's writes."""

from __future__ import annotations

from typing import Any

import orjson

from server.core.domain import Listing, listing_id
from server.core.keys import room_keys
from server.core.protocol import encode
from server.state.sales_data import listing_hash


class CatalogueData:
    def __init__(self, redis: Any) -> None:
        self.redis = redis  # decode_responses=True (see RoomsData)

    async def product(self, room_id: str, product_id: str) -> dict[str, Any] | None:
        """The product's public fields plus its `position` in the catalogue."""
        raw = await self.redis.hget(room_keys(room_id).products, product_id)
        return None if raw is None else dict(orjson.loads(raw))

    async def count_and_exists(self, room_id: str, product_id: str) -> tuple[int, bool]:
        keys = room_keys(room_id)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hlen(keys.products)
            pipe.hexists(keys.products, product_id)
            count, exists = await pipe.execute()
        return int(count), bool(exists)

    async def add(self, room_id: str, product_id: str, data: dict[str, Any],
                  stock: int, listing: Listing) -> None:
        """A new product (`data` with its position), its stock and its listing
        (buy-it-now at its price), in one MULTI."""
        keys = room_keys(room_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(keys.products, product_id, encode(data))
            pipe.hset(keys.stock(product_id),
                      mapping={"total": stock, "left": stock, "held": 0, "sold": 0})
            pipe.hset(keys.sale(listing_id(product_id)),
                      mapping=listing_hash(listing, int(data["price"]), str(data["currency"])))
            await pipe.execute()

    async def put(self, room_id: str, product_id: str, data: dict[str, Any]) -> None:
        """The product's new data; its listing's price follows, in the same MULTI (a
        hold keeps the price it was taken at)."""
        keys = room_keys(room_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(keys.products, product_id, encode(data))
            pipe.hset(keys.sale(listing_id(product_id)),
                      mapping={"price": int(data["price"]), "currency": str(data["currency"])})
            await pipe.execute()

    async def stock_total(self, room_id: str, product_id: str) -> int:
        total = await self.redis.hget(room_keys(room_id).stock(product_id), "total")
        return int(total or 0)

    async def card_parts(
            self, room_id: str, product_id: str,
    ) -> tuple[dict[str, str], dict[str, str] | None, dict[str, str], int]:
        """The product's stock hash, its current sale's hash (None without one), its
        listing's hash ({} without one) and how many wait for it: what its card
        shows."""
        keys = room_keys(room_id)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(keys.stock(product_id))
            pipe.get(keys.product_sale(product_id))
            pipe.hgetall(keys.sale(listing_id(product_id)))
            pipe.zcard(keys.waitlist(product_id))
            stock, sid, listing, waiting = await pipe.execute()
        sale = await self.redis.hgetall(keys.sale(sid)) if sid else None
        return stock, sale or None, listing, int(waiting)

    async def stocks_and_sales(
            self, items: list[tuple[str, str]],
    ) -> list[tuple[dict[str, str], dict[str, str] | None, int]]:
        """The stock and current sale hashes of many (room, product) pairs, and how
        many wait for each, in two round trips."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for room_id, pid in items:
                keys = room_keys(room_id)
                pipe.hgetall(keys.stock(pid))
                pipe.get(keys.product_sale(pid))
                pipe.zcard(keys.waitlist(pid))
            res = await pipe.execute()
        async with self.redis.pipeline(transaction=False) as pipe:
            for (room_id, _), sid in zip(items, res[1::3], strict=True):
                pipe.hgetall(room_keys(room_id).sale(sid or "-"))
            sales = await pipe.execute()
        return [(stock, sale or None, int(waiting)) for stock, sale, waiting
                in zip(res[0::3], sales, res[2::3], strict=True)]

    async def thumbnails(self, room_ids: list[str], pins: int) -> dict[str, str]:
        """room id -> the image of its first pinned product that has one among its
        first `pins` pins (rooms without are left out), in two round trips: only
        those pinned products are read, never a whole catalogue, since the room list
        is public."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for room_id in room_ids:
                pipe.lrange(room_keys(room_id).pins, 0, pins - 1)
            pinned: list[list[str]] = await pipe.execute()
        wanted = [(room_id, ids) for room_id, ids in zip(room_ids, pinned, strict=True) if ids]
        if not wanted:
            return {}
        async with self.redis.pipeline(transaction=False) as pipe:
            for room_id, ids in wanted:
                pipe.hmget(room_keys(room_id).products, ids)
            cards: list[list[str | None]] = await pipe.execute()
        found: dict[str, str] = {}
        for (room_id, _), raws in zip(wanted, cards, strict=True):
            for raw in raws:
                image = str(orjson.loads(raw).get("image_url") or "") if raw else ""
                if image:
                    found[room_id] = image
                    break
        return found

    async def pins(self, room_id: str) -> list[str]:
        return list(await self.redis.lrange(room_keys(room_id).pins, 0, -1))

    async def add_pin(self, room_id: str, product_id: str) -> None:
        await self.redis.rpush(room_keys(room_id).pins, product_id)

    async def remove_pin(self, room_id: str, product_id: str) -> bool:
        return bool(await self.redis.lrem(room_keys(room_id).pins, 0, product_id))

    async def restore(self, room_id: str,
                             products: list[tuple[dict[str, Any], int, int]]) -> None:
        """Products (data, stock total, units sold) in catalogue order, their stock
        counters with nothing held, in one MULTI."""
        keys = room_keys(room_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            for i, (data, stock, sold) in enumerate(products):
                pid = data["product_id"]
                pipe.hset(keys.products, pid, encode({**data, "position": i + 1}))
                pipe.hset(keys.stock(pid), mapping={"total": stock,
                                                    "left": max(0, stock - sold),
                                                    "held": 0, "sold": sold})
            await pipe.execute()
