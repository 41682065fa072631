"""Polls and the pinned message in Redis, outside their atomic scripts (vote.lua,
close_poll.lua): loading a poll with its votes (at its start, and from the store
when Redis is rebuilt), reading polls and their counts, taking back a vote the
store could not record, and the room's pinned message."""

from __future__ import annotations

from typing import Any

import orjson

from server.core.jobs import Job
from server.core.keys import room_keys
from server.core.polls import Poll

CLOSE = "poll_close"


class SocialData:
    def __init__(self, redis: Any) -> None:
        self.redis = redis  # decode_responses=True

    async def load_poll(self, room_id: str, poll: Poll, votes: dict[str, int],
                        closed_at: int | None) -> None:
        """The poll's hash with its counts and votes; an open one gets its close
        timer; in one MULTI."""
        keys = room_keys(room_id)
        pid = poll.poll_id
        counts = [0] * len(poll.options)
        for option in votes.values():
            if 0 <= option < len(counts):
                counts[option] += 1
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(keys.poll(pid), keys.poll_votes(pid))
            pipe.hset(keys.poll(pid), mapping={
                "data": orjson.dumps(poll.public()).decode(), "options": len(poll.options),
                "closes_at": poll.closes_at, "state": "closed" if closed_at else "open",
                "closed_at": closed_at or "",
                **{f"v{i}": n for i, n in enumerate(counts)}})
            if votes:
                pipe.hset(keys.poll_votes(pid), mapping=votes)
            pipe.sadd(keys.polls, pid)
            if closed_at is None:
                pipe.zadd(keys.timers, {Job(CLOSE, pid).member: poll.closes_at})
            await pipe.execute()

    async def poll(self, room_id: str, poll_id: str) -> dict[str, str]:
        return dict(await self.redis.hgetall(room_keys(room_id).poll(poll_id)))

    async def polls(self, room_id: str) -> list[dict[str, str]]:
        keys = room_keys(room_id)
        ids = sorted(await self.redis.smembers(keys.polls))
        async with self.redis.pipeline(transaction=False) as pipe:
            for pid in ids:
                pipe.hgetall(keys.poll(pid))
            return [dict(h) for h in await pipe.execute() if h]

    async def undo_vote(self, room_id: str, poll_id: str, viewer_id: str, option: int) -> None:
        """Take back a vote the store could not record (the viewer was told to try
        again), unless it is already gone."""
        keys = room_keys(room_id)
        if await self.redis.hdel(keys.poll_votes(poll_id), viewer_id):
            await self.redis.hincrby(keys.poll(poll_id), f"v{option}", -1)

    async def set_pinned(self, room_id: str, pinned: dict[str, Any] | None) -> None:
        key = room_keys(room_id).room
        if pinned is None:
            await self.redis.hdel(key, "pinned")
        else:
            await self.redis.hset(key, "pinned", orjson.dumps(pinned).decode())
