"""Coupon drops and lotteries in Redis: loading them (at creation and in a
rebuild), reading them, and the few writes around their atomic scripts
(claim_coupon, enter_lottery, close_lottery in server/state/scripts.py)."""

from __future__ import annotations

from typing import Any, Final

from server.core.domain import CouponDrop, Lottery
from server.core.keys import DUE, KEYWORD_ROOMS, room_keys
from server.core.protocol import encode

# A drop's expiry moved to ARGV[1] unless it is sooner, in one step: two ends at once
# (the host's End now and the show's end) never move it back out.
EXPIRE_BY: Final = """
local e = redis.call('HGET', KEYS[1], 'expires_at')
if e and tonumber(e) > tonumber(ARGV[1]) then
  redis.call('HSET', KEYS[1], 'expires_at', ARGV[1])
end
return e
"""


class OffersData:
    def __init__(self, redis: Any) -> None:
        self.redis = redis  # decode_responses=True (see RoomsData)
        self._expire_by = redis.register_script(EXPIRE_BY)

    # ------------------------------------------------------------------ coupons

    async def load_coupon(self, room_id: str, drop: CouponDrop, claimed: int,
                          uses: dict[str, str]) -> None:
        keys = room_keys(room_id)
        claims = {b: f"used:{o}" for b, o in uses.items()}
        if drop.reserved_for and drop.reserved_for not in claims:
            # A reserved drop is claimed for its viewer from the start.
            claims[drop.reserved_for] = "claimed"
            claimed = max(claimed, 1)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(keys.coupon(drop.coupon_id), mapping={
                "coupon_id": drop.coupon_id, "title": drop.title, "kind": drop.kind,
                "value": drop.value, "min_spend": drop.min_spend, "currency": drop.currency,
                "count": drop.count, "claimed": claimed, "expires_at": drop.expires_at,
                "for": drop.reserved_for})
            pipe.delete(keys.claims(drop.coupon_id))
            if claims:
                pipe.hset(keys.claims(drop.coupon_id), mapping=claims)
            pipe.sadd(keys.coupons, drop.coupon_id)
            await pipe.execute()

    async def expire_coupon(self, room_id: str, coupon_id: str, at: int) -> None:
        """The drop expires at `at` at the latest (a withdrawn referral reward)."""
        await self._expire_by(keys=[room_keys(room_id).coupon(coupon_id)], args=[at])

    async def coupon(self, room_id: str, coupon_id: str) -> dict[str, str]:
        return dict(await self.redis.hgetall(room_keys(room_id).coupon(coupon_id)))

    async def close_coupons(self, room_id: str, at: int) -> None:
        """Every drop of the room expires at `at` at the latest (the show ended)."""
        keys = room_keys(room_id)
        coupon_ids = sorted(await self.redis.smembers(keys.coupons))
        if not coupon_ids:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for cid in coupon_ids:
                await self._expire_by(keys=[keys.coupon(cid)], args=[at], client=pipe)
            await pipe.execute()

    async def counts(self, items: list[tuple[str, str, str]]) -> list[int]:
        """For each (room, "coupon" or "lottery", id): coupons left, or entrants."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for room_id, kind, item_id in items:
                keys = room_keys(room_id)
                if kind == "coupon":
                    pipe.hmget(keys.coupon(item_id), ["count", "claimed"])
                else:
                    pipe.scard(keys.entrants(item_id))
            res = await pipe.execute()
        return [max(0, int(v[0] or 0) - int(v[1] or 0)) if kind == "coupon" else int(v)
                for (_, kind, _), v in zip(items, res, strict=True)]

    # ------------------------------------------------------------------ lotteries

    async def load_lottery(self, room_id: str, lottery: Lottery,
                           result: dict[str, Any] | None, entrants: list[str],
                           close_timer: str) -> None:
        """The lottery's hash and entrants, in one MULTI; an undrawn one gets its
        close timer (member `close_timer`), and then the room goes on the schedule
        (and, for a keyword lottery, on the set of rooms the chat reads it from):
        keys of every room, on their own shard on a Redis Cluster (schedule.py)."""
        keys = room_keys(room_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            if entrants:
                pipe.sadd(keys.entrants(lottery.lottery_id), *entrants)
            pipe.hset(keys.lottery(lottery.lottery_id), mapping={
                "lottery_id": lottery.lottery_id, "prize": lottery.prize,
                "winners": lottery.winners, "mode": lottery.entry, "keyword": lottery.keyword,
                "seed_hash": lottery.seed_hash, "opens_at": lottery.opens_at,
                "closes_at": lottery.closes_at, "state": "drawn" if result else "open",
                "min_level": lottery.min_level,
                "result": encode(result) if result else ""})
            pipe.sadd(keys.lotteries, lottery.lottery_id)
            if result is None:
                pipe.zadd(keys.timers, {close_timer: lottery.closes_at})
            await pipe.execute()
        if result is None:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.zadd(DUE, {room_id: lottery.closes_at}, lt=True)
                if lottery.entry == "keyword":
                    pipe.sadd(KEYWORD_ROOMS, room_id)
                await pipe.execute()

    async def lottery_min_level(self, room_id: str, lottery_id: str) -> int:
        """The fan level the lottery needs (0 also when there is no such lottery)."""
        return int(await self.redis.hget(room_keys(room_id).lottery(lottery_id), "min_level")
                   or 0)

    async def lottery(self, room_id: str, lottery_id: str) -> tuple[dict[str, str], int]:
        """The lottery's hash ({} when there is none) and its number of entrants."""
        keys = room_keys(room_id)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(keys.lottery(lottery_id))
            pipe.scard(keys.entrants(lottery_id))
            lot, count = await pipe.execute()
        return lot, int(count)

    async def lottery_ids(self, room_id: str) -> list[str]:
        return sorted(await self.redis.smembers(room_keys(room_id).lotteries))

    async def lottery_state(self, room_id: str, lottery_id: str) -> str | None:
        state: str | None = await self.redis.hget(room_keys(room_id).lottery(lottery_id),
                                                  "state")
        return state

    async def entrants(self, room_id: str, lottery_id: str) -> list[str]:
        return sorted(await self.redis.smembers(room_keys(room_id).entrants(lottery_id)))

    async def keyword_lotteries(self, room_id: str) -> dict[str, str]:
        """The room's open keyword lotteries: id -> keyword."""
        keys = room_keys(room_id)
        ids = sorted(await self.redis.smembers(keys.lotteries))
        if not ids:
            return {}
        async with self.redis.pipeline(transaction=False) as pipe:
            for lid in ids:
                pipe.hmget(keys.lottery(lid), ["state", "mode", "keyword"])
            rows = await pipe.execute()
        return {lid: kw for lid, (state, mode, kw) in zip(ids, rows, strict=True)
                if state == "open" and mode == "keyword" and kw}

    async def keyword_rooms(self) -> set[str]:
        return set(await self.redis.smembers(KEYWORD_ROOMS))

    async def undo_entry(self, room_id: str, lottery_id: str, viewer_id: str,
                         request_id: str) -> None:
        """Take back an entry the store could not record (and its remembered answer),
        so that the viewer's retry enters again."""
        keys = room_keys(room_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.srem(keys.entrants(lottery_id), viewer_id)
            pipe.delete(keys.request(viewer_id, "enter_lottery", request_id))
            await pipe.execute()

    async def reopen(self, room_id: str, lottery_id: str, close_timer: str, at: int) -> None:
        """A draw failed: the lottery is open again and its close timer due at `at`
        (then the room on the schedule: schedule.py)."""
        keys = room_keys(room_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(keys.lottery(lottery_id), "state", "open")
            pipe.zadd(keys.timers, {close_timer: at})
            await pipe.execute()
        await self.redis.zadd(DUE, {room_id: at}, lt=True)

    async def set_drawn(self, room_id: str, lottery_id: str, result: dict[str, Any],
                        close_timer: str) -> None:
        keys = room_keys(room_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(keys.lottery(lottery_id),
                      mapping={"state": "drawn", "result": encode(result)})
            pipe.zrem(keys.timers, close_timer)
            await pipe.execute()
