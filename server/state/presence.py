"""Who is watching a room, in Redis: per room, the open connections of each
viewer (`present`, a hash viewer id -> count, which the viewer counts read) and
every viewer ever seen (`uniq`). The hub (server/realtime/hub.py) reports arrivals
and departures; presence is not in the order store, so after Redis lost its data
each process reports its viewers again.
"""

from __future__ import annotations

from collections.abc import Iterable

from redis.asyncio import Redis

from server.core.keys import room_keys
from server.state.scripts import Scripts


class Presence:
    def __init__(self, redis: Redis, scripts: Scripts, keep_place_ms: int) -> None:
        self.redis = redis
        self.scripts = scripts
        self.keep_place_ms = keep_place_ms

    async def arrived(self, viewers: Iterable[tuple[str, str]]) -> None:
        """Count one more connection for each (room id, viewer id), in one round trip."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for room_id, viewer_id in viewers:
                keys = room_keys(room_id)
                pipe.hincrby(keys.present, viewer_id, 1)
                pipe.sadd(keys.uniq, viewer_id)
                pipe.zrem(keys.gone, viewer_id)
            await pipe.execute()

    async def left(self, room_id: str, viewer_id: str) -> None:
        """Count one connection fewer; the viewer is gone from `present` at none, and
        noted in `gone` with the time (a waitlist keeps their place a while), in one
        step (leave_room.lua): a connection opened meanwhile is never lost."""
        await self.scripts.leave_room(room_id, viewer_id, self.keep_place_ms)
