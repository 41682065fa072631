"""The Redis side of keeping Redis in step with the order store: the global
epoch marker, the rebuild lock, adopting rooms loaded before epochs existed,
wiping a room's holds before it is loaded again, and on a Redis Cluster the
cluster's topology and each room's home (server/features/restore.py runs the
rebuild and the reconciliation; docs/faults.md)."""

from __future__ import annotations

import asyncio
from typing import Any, NamedTuple

from server.core.keys import EPOCH, REBUILD_LOCK, room_keys
from server.state.scripts import Home, Scripts


class ClusterNode(NamedTuple):
    """One node of a Redis Cluster as CLUSTER NODES shows it."""

    node_id: str
    flags: frozenset[str]  # 'master' or 'slave', 'fail', 'fail?', 'handshake', ...
    master_id: str  # the primary a replica follows ('-' for a primary)
    config_epoch: str
    slots: tuple[tuple[str, ...], ...]

    @property
    def healthy_primary(self) -> bool:
        return "master" in self.flags and not self.flags & {"fail", "fail?", "handshake",
                                                             "noaddr"}


class RebuildData:
    def __init__(self, redis: Any, scripts: Scripts | None = None) -> None:
        self.redis = redis  # decode_responses=True (see RoomsData)
        self.scripts = scripts

    @property
    def cluster(self) -> bool:
        return self.scripts is not None and self.scripts.cluster

    async def generation(self) -> str | None:
        """The epoch marker: None when Redis lost its data (or was never loaded)."""
        found: str | None = await self.redis.get(EPOCH)
        return found

    async def set_generation(self, generation: str) -> None:
        await self.redis.set(EPOCH, generation)

    async def lock(self, token: str, ttl_s: int) -> bool:
        return bool(await self.redis.set(REBUILD_LOCK, token, nx=True, ex=ttl_s))

    async def keep_lock(self, token: str, ttl_s: int) -> None:
        await self.redis.set(REBUILD_LOCK, token, xx=True, ex=ttl_s)

    async def unlock(self, token: str) -> None:
        if await self.redis.get(REBUILD_LOCK) == token:
            await self.redis.delete(REBUILD_LOCK)

    async def without_epoch(self, room_ids: list[str]) -> list[str]:
        """Rooms whose hash Redis holds but with no epoch of their own."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for room_id in room_ids:
                pipe.exists(room_keys(room_id).epoch)
                pipe.exists(room_keys(room_id).room)
            found = await pipe.execute()
        return [room_id for i, room_id in enumerate(room_ids)
                if not found[2 * i] and found[2 * i + 1]]

    async def adopt(self, room_id: str, epoch: str) -> None:
        if self.scripts is not None and self.scripts.cluster:
            await self.scripts.home(room_id, "mark", epoch, only_if_absent=True)
            return
        await self.redis.set(room_keys(room_id).epoch, epoch, nx=True)

    # ------------------------------------------------------------------ Redis Cluster

    async def topology(self) -> dict[str, ClusterNode]:
        """The cluster's nodes by id, as one node sees them (CLUSTER NODES)."""
        nodes: dict[str, Any] = await self.redis.cluster_nodes()
        found = {}
        for node in nodes.values():
            flags = frozenset(node["flags"].split(",")) - {"myself"}
            found[node["node_id"]] = ClusterNode(
                node["node_id"], flags, node["master_id"], node["epoch"],
                tuple(tuple(str(x) for x in r) for r in node["slots"]))
        return found

    async def homes(self, room_ids: list[str]) -> list[Home]:
        """Where each room's home is (home.lua 'check'), batched by the ledger."""
        assert self.scripts is not None
        return list(await asyncio.gather(*[self.scripts.home(r, "check") for r in room_ids]))

    async def rehome(self, room_id: str, home: str) -> bool:
        """Make the node that serves the room its home, if its key still names `home`."""
        assert self.scripts is not None
        return (await self.scripts.home(room_id, "rehome", home)).state == "ok"

    async def unmark(self, room_id: str) -> None:
        """The room answers 'unavailable' until its epoch is set again."""
        await self.redis.delete(room_keys(room_id).epoch)

    async def wipe_holds(self, room_id: str, seq_floor: int) -> None:
        """Forget every hold of the room (their held counts restart at 0) and keep
        its sequence numbers at least `seq_floor` and above any handed out before."""
        keys = room_keys(room_id)
        # The event log too: it tells of the lost state, and without it every viewer's
        # next read-back (a resume, a gap on any server) finds it does not reach back
        # and gets a snapshot of the rebuilt room instead.
        await self.redis.delete(keys.holds, keys.confirming, keys.open_holds, keys.log)
        stale = [k async for k in self.redis.scan_iter(match=keys.hold("*"), count=1000)]
        for start in range(0, len(stale), 1000):
            await self.redis.unlink(*stale[start:start + 1000])
        await self.redis.set(keys.seq, max(seq_floor, int(await self.redis.get(keys.seq) or 0)))
