"""One lock per room, forgotten when no one holds or waits for it: the read,
merge and writes of one room's patches (the policy, the title and stream) run one
at a time in this process, and a show's worth of rooms leaves no dict behind.
Pure asyncio; no I/O."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator


class RoomLocks:
    def __init__(self) -> None:
        # room id -> (its lock, how many hold it or wait for it)
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, room_id: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(room_id, (asyncio.Lock(), 0))
        self._locks[room_id] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[room_id]
            if users > 1:
                self._locks[room_id] = (lock, users - 1)
            else:
                del self._locks[room_id]

    def __len__(self) -> int:
        return len(self._locks)
