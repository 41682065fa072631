"""Chat, moderation, likes, the room policy and the recording switch in Redis.
Slow mode and the room's chat rate are an atomic script (chat_gate.lua)."""

from __future__ import annotations

from typing import Any

import orjson

from server.core.keys import RECORDING_ROOMS, fan_keys, room_keys


class ChatData:
    def __init__(self, redis: Any) -> None:
        self.redis = redis  # decode_responses=True (see RoomsData)

    async def count_message(self, room_id: str, viewer_id: str, now: int,
                            channel: str) -> tuple[int | None, int]:
        """Count a message in its minute's counter; the viewer's mute end (ms), if any,
        and their fan points in the room's channel (their level in chat)."""
        keys = room_keys(room_id)
        minute = keys.chat_minute(now // 60_000)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hget(keys.muted, viewer_id)
            pipe.incr(minute)
            pipe.expire(minute, 180)
            pipe.hget(fan_keys(channel).points, viewer_id)
            pipe.hincrby(keys.chat_by_minute, str(now // 60_000), 1)  # the report's
            muted_until, _, _, points, _ = await pipe.execute()
        return None if muted_until is None else int(muted_until), int(points or 0)

    async def forget_message(self, room_id: str, message_id: str) -> None:
        """A deleted message leaves the recent chat (the snapshot's history): its event
        is taken out of the capped list by value, so nothing grows with deletions."""
        key = room_keys(room_id).chat_history
        marker = f'"message_id":"{message_id}"'
        for raw in await self.redis.lrange(key, 0, -1):
            if marker in raw:
                await self.redis.lrem(key, 1, raw)

    async def history(self, room_id: str) -> list[dict[str, Any]]:
        """The room's recent chat events (lua/publish.lua keeps them), oldest first."""
        return [orjson.loads(r) for r in
                await self.redis.lrange(room_keys(room_id).chat_history, 0, -1)]

    async def mute(self, room_id: str, viewer_id: str, until: int) -> None:
        await self.redis.hset(room_keys(room_id).muted, viewer_id, until)

    async def mutes(self, room_id: str) -> tuple[dict[str, int], dict[str, str]]:
        """Every mute the room keeps (viewer id -> until, ms; ended ones too), and the
        nickname of each viewer's latest message in the recent chat."""
        muted = await self.redis.hgetall(room_keys(room_id).muted)
        names: dict[str, str] = {}
        for event in await self.history(room_id):  # oldest first: a later name wins
            if isinstance(event.get("viewer_id"), str) and isinstance(event.get("nickname"), str):
                names[event["viewer_id"]] = event["nickname"]
        return {v: int(until) for v, until in muted.items()}, names

    async def add_likes(self, room_id: str, count: int) -> int:
        return int(await self.redis.incrby(room_keys(room_id).likes, count))

    # ------------------------------------------------------------------ policy

    async def policy(self, room_id: str) -> dict[str, str]:
        return dict(await self.redis.hgetall(room_keys(room_id).policy))

    async def set_policy(self, room_id: str, fields: dict[str, Any],
                         replace: bool = False) -> None:
        keys = room_keys(room_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            if replace:
                pipe.delete(keys.policy)
            pipe.hset(keys.policy, mapping=fields)
            await pipe.execute()

    # ------------------------------------------------------------------ recording

    async def set_recording(self, room_id: str, enabled: bool) -> None:
        await self.redis.hset(room_keys(room_id).room, "recording", "1" if enabled else "")
        # The set the pulse reads to learn of rooms switched on through other processes:
        # one key for all rooms, on its own shard on a Redis Cluster, so not in a MULTI
        # with the room's hash. Written second: a crash between leaves the room's flag
        # set and the pulse not yet told, which the host's next switch repairs.
        if enabled:
            await self.redis.sadd(RECORDING_ROOMS, room_id)
        else:
            await self.redis.srem(RECORDING_ROOMS, room_id)

    async def recording(self, room_id: str) -> bool:
        return bool(await self.redis.hget(room_keys(room_id).room, "recording"))

    async def recording_rooms(self) -> set[str]:
        return set(await self.redis.smembers(RECORDING_ROOMS))
