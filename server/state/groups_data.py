"""Group deals in Redis, outside their atomic scripts (start_group.lua,
join_group.lua, expire_group.lua): a deal's sale-like hash (made, closed, loaded
back from the store), and reading deals and their groups."""

from __future__ import annotations

from typing import Any

from server.core.group_deals import GroupDeal
from server.core.keys import room_keys


class GroupsData:
    def __init__(self, redis: Any) -> None:
        self.redis = redis  # decode_responses=True

    async def load_deal(self, room_id: str, deal: GroupDeal, closed: bool, sold: int,
                        bought: dict[str, int]) -> None:
        """The deal's hash (nothing held: groups live in Redis only) and each buyer's
        units from its orders, in one MULTI."""
        keys = room_keys(room_id)
        did = deal.deal_id
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(keys.sale(did), mapping={
                "sale_id": did, "deal_id": did, "kind": "group", "product_id": deal.product_id,
                "title": deal.title, "state": "closed" if closed else "open",
                "units": deal.units, "held": 0, "sold": sold, "limit": 1,
                "price": deal.group_price, "currency": deal.currency,
                "group_size": deal.group_size, "fill_ms": deal.fill_s * 1000,
                "min_level": deal.min_level,
                "starts_at": deal.created_at, "ends_at": 2**53 - 1})
            pipe.delete(keys.bought(did), keys.deal_members(did))
            if bought:
                pipe.hset(keys.bought(did), mapping=bought)
            pipe.sadd(keys.deals, did)
            await pipe.execute()

    async def deal(self, room_id: str, deal_id: str) -> dict[str, str]:
        h = dict(await self.redis.hgetall(room_keys(room_id).sale(deal_id)))
        return h if h.get("kind") == "group" else {}

    async def deal_ids(self, room_id: str) -> list[str]:
        return sorted(await self.redis.smembers(room_keys(room_id).deals))

    async def close(self, room_id: str, deal_id: str) -> None:
        await self.redis.hset(room_keys(room_id).sale(deal_id), "state", "closed")

    async def open_groups(self, room_id: str, deal_id: str) -> list[dict[str, str]]:
        """The deal's open groups, the first to expire first."""
        keys = room_keys(room_id)
        ids = await self.redis.zrange(keys.deal_groups(deal_id), 0, -1)
        async with self.redis.pipeline(transaction=False) as pipe:
            for gid in ids:
                pipe.hgetall(keys.group(gid))
            return [dict(h) for h in await pipe.execute() if h]

    async def group(self, room_id: str, group_id: str) -> dict[str, str]:
        return dict(await self.redis.hgetall(room_keys(room_id).group(group_id)))
