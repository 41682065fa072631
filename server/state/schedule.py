"""The schedule in Redis: each room's due jobs (a sorted set of job members
scored by due time, see server/core/jobs.py), its expiring holds and its
checkouts in progress, and the global schedule keys.DUE (room -> when its
earliest item falls due) that the pulse polls. Claiming a due job is a ZREM:
it answers 1 to exactly one process, which runs the job.

keys.DUE is one key for every room, so on a Redis Cluster it is on another
shard than most rooms: no script or MULTI holds it with a room's keys. Writers
add the item to the room first and then lower the room's entry (ZADD LT); the
pulse takes a room off first and then puts it back at its earliest item
(Context.reschedule). Either order of the two leaves every item scheduled, and
a step lost to a crash in between is caught by the reseed (Pulse.reseed_schedule).
"""

from __future__ import annotations

from typing import Any

from server.core.keys import DUE, ROOMS, room_keys


class ScheduleData:
    def __init__(self, redis: Any) -> None:
        self.redis = redis  # decode_responses=True (see RoomsData)

    async def note_rooms(self, due: dict[str, float] | dict[str, int]) -> None:
        """Lower each room's due time on the schedule to the one given (ZADD LT)."""
        if due:
            await self.redis.zadd(DUE, due, lt=True)

    async def off_schedule(self, room_id: str) -> None:
        await self.redis.zrem(DUE, room_id)

    async def due_rooms(self, now: int, limit: int) -> list[str]:
        return list(await self.redis.zrangebyscore(DUE, "-inf", now, start=0, num=limit))

    async def first_due(self) -> float | None:
        """When the earliest room on the schedule falls due (ms), if any."""
        first = await self.redis.zrange(DUE, 0, 0, withscores=True)
        return float(first[0][1]) if first else None

    async def room_due(self, room_id: str, now: int,
                       recover_ms: int) -> tuple[list[str], list[str], bool]:
        """The room's due jobs (at most 100), due holds (at most 500), and whether a
        checkout has been 'confirming' longer than `recover_ms`."""
        keys = room_keys(room_id)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zrangebyscore(keys.timers, "-inf", now, start=0, num=100)
            pipe.zrangebyscore(keys.holds, "-inf", now, start=0, num=500)
            pipe.zrangebyscore(keys.confirming, "-inf", now - recover_ms, start=0, num=1)
            timers, holds, stuck = await pipe.execute()
        return list(timers), list(holds), bool(stuck)

    async def claim(self, room_id: str, member: str) -> bool:
        """Take a due job: True for exactly one process."""
        return bool(await self.redis.zrem(room_keys(room_id).timers, member))

    async def jobs(self, room_id: str) -> list[str]:
        return list(await self.redis.zrange(room_keys(room_id).timers, 0, -1))

    async def add_jobs(self, room_id: str, jobs: dict[str, int]) -> None:
        """Due jobs of the room (member -> due ms), then the room on the schedule at
        the earliest (see the module docstring for the order)."""
        await self.redis.zadd(room_keys(room_id).timers, jobs)
        await self.redis.zadd(DUE, {room_id: min(jobs.values())}, lt=True)

    async def drop_jobs(self, room_id: str, members: list[str]) -> None:
        if members:
            await self.redis.zrem(room_keys(room_id).timers, *members)

    async def rooms(self) -> list[str]:
        return sorted(await self.redis.smembers(ROOMS))

    async def earliest(self, room_ids: list[str],
                       recover_ms: int) -> dict[str, float]:
        """Each room's earliest job, hold expiry or checkout recovery (ms), for those
        that have one: one pipeline for the lot (callers pass at most 500)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for room_id in room_ids:
                keys = room_keys(room_id)
                pipe.zrange(keys.timers, 0, 0, withscores=True)
                pipe.zrange(keys.holds, 0, 0, withscores=True)
                pipe.zrange(keys.confirming, 0, 0, withscores=True)
            firsts = await pipe.execute()
        due: dict[str, float] = {}
        for i, room_id in enumerate(room_ids):
            timer, hold, confirming = firsts[3 * i:3 * i + 3]
            times = [float(f[0][1]) for f in (timer, hold) if f]
            if confirming:
                times.append(float(confirming[0][1]) + recover_ms)
            if times:
                due[room_id] = min(times)
        return due
