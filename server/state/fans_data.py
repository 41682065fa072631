"""Fan points and referral invites in Redis: a channel's points (the store's,
cached for levels in chat and level gates), an award taken back when its store
write failed, and a room's referrals and reward decisions (restored from the
store after Redis lost them). The decisions are scripts: lua/award.lua,
lua/referral_reward.lua."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

from server.core.keys import fan_keys, room_keys

_CHUNK = 1000


class FansData:
    def __init__(self, redis: Any) -> None:
        self.redis = redis  # decode_responses=True (see RoomsData)

    async def points(self, channel: str, viewer_id: str) -> int:
        return int(await self.redis.hget(fan_keys(channel).points, viewer_id) or 0)

    async def loaded(self, channel: str) -> bool:
        return bool(await self.redis.exists(fan_keys(channel).loaded))

    async def claim_load(self, channel: str, ttl_ms: int) -> bool:
        """Be the one loader of the channel's points (across processes) for `ttl_ms`;
        False when another loads it now or it is loaded."""
        k = fan_keys(channel)
        if await self.redis.exists(k.loaded):
            return False
        return bool(await self.redis.set(k.loading, "1", nx=True, px=ttl_ms))

    async def load(self, channel: str, totals: list[tuple[str, int]]) -> None:
        """Put the store's points of a channel into Redis, then mark it loaded (awards
        wait for the mark: lua/award.lua answers 'unloaded' until then). Only the
        loader that claimed it (claim_load) calls this: a second load after awards
        began would overwrite their points with the store's older totals."""
        k = fan_keys(channel)
        for start in range(0, len(totals), _CHUNK):
            chunk = totals[start:start + _CHUNK]
            await self.redis.hset(k.points, mapping=dict(chunk))
        await self.redis.set(k.loaded, "1")
        await self.redis.delete(k.loading)

    async def undo_award(self, channel: str, award_id: str, viewer_id: str, points: int,
                         minute: int, capped: bool) -> None:
        """Take back an award Redis counted but the store did not record."""
        k = fan_keys(channel)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(k.award(award_id))
            pipe.hincrby(k.points, viewer_id, -points)
            if capped:
                pipe.decrby(k.minute(viewer_id, minute), points)
            await pipe.execute()

    async def take_back(self, channel: str, viewer_id: str, points: int) -> None:
        """Points taken back in the store (a reversal) leave Redis's copy too; a channel
        not loaded is read from the store when it is."""
        k = fan_keys(channel)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.exists(k.loaded)
            pipe.hget(k.points, viewer_id)
            loaded, _ = await pipe.execute()
        if loaded:
            await self.redis.hincrby(k.points, viewer_id, -points)

    async def room_channel(self, room_id: str) -> str | None:
        value = await self.redis.hget(room_keys(room_id).room, "channel")
        return str(value) if value else None

    async def set_room_channel(self, room_id: str, channel: str) -> None:
        await self.redis.hset(room_keys(room_id).room, "channel", channel)


class ReferralsData:
    def __init__(self, redis: Any) -> None:
        self.redis = redis

    async def set_program(self, room_id: str, program: dict[str, Any]) -> None:
        """The room's referral program, kept in the room hash (the store's copy)."""
        await self.redis.hset(room_keys(room_id).room, "referral_program",
                              orjson.dumps(program).decode())

    async def program(self, room_id: str) -> dict[str, Any] | None:
        raw = await self.redis.hget(room_keys(room_id).room, "referral_program")
        return dict(orjson.loads(raw)) if raw else None

    async def inviter_of(self, room_id: str, invitee: str) -> str | None:
        value = await self.redis.hget(room_keys(room_id).referrals, invitee)
        return None if value is None else str(value)

    async def set_inviter(self, room_id: str, invitee: str, inviter: str) -> None:
        await self.redis.hset(room_keys(room_id).referrals, invitee, inviter)

    async def restore(self, room_id: str, referrals: Iterable[tuple[str, str]],
                      decisions: Iterable[tuple[str, str, str]]) -> None:
        """Put a room's referrals (invitee, inviter) and reward decisions (invitee,
        'paid:<order>'…, inviter) back, replacing what Redis has."""
        k = room_keys(room_id)
        paid: dict[str, int] = {}
        decided: dict[str, str] = {}
        for invitee, decision, inviter in decisions:
            decided[invitee] = decision
            if decision.startswith("paid:"):
                paid[inviter] = paid.get(inviter, 0) + 1
        invited = dict(referrals)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(k.referrals, k.referral_rewards, k.referral_paid)
            if invited:
                pipe.hset(k.referrals, mapping=invited)
            if decided:
                pipe.hset(k.referral_rewards, mapping=decided)
            if paid:
                pipe.hset(k.referral_paid, mapping=paid)
            await pipe.execute()
