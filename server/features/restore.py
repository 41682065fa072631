"""Keeping Redis in step with the order store.

On start, and whenever the epoch marker disappears from Redis (it lost its
data), Redis is rebuilt from the store: sold counts come from the orders, so
nothing the store holds as sold is ever sold again. Each room's rebuild first
gives the room a new epoch in the store, which fences out every order still
queued under the lost state, and only then reads what was sold; the room
answers `unavailable` until its epoch key is back in Redis (docs/faults.md).
What each feature keeps in Redis is loaded by the restorer it registered.

On a Redis Cluster a shard can lose the last writes without losing the marker:
a replica promoted after its primary died has what was replicated, which
asynchronous replication does not promise is everything its primary
acknowledged. Each room's epoch key names its home node, and a room whose key
names another node moves nothing (lua/lib/epoch.lua). `check_homes` watches the
cluster's topology and, after any change, looks at every room: one a promoted
replica now serves is rebuilt from the store, exactly as after a loss of all
data; one whose slot moved by resharding to a node that never was a replica
keeps its state and gets the new node as home (docs/faults.md, section 6)."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from server.core.domain import now_ms
from server.features.context import Context, new_epoch
from server.features.registry import Registry
from server.features.rooms import ARCHIVED
from server.state.rebuild_data import ClusterNode, RebuildData

log = logging.getLogger("livesell.restore")

REBUILD_LOCK_S = 60
# A room whose epoch key is absent this long on a cluster, with no rebuild running,
# lost it with a shard (created just before its primary died): rebuilt from the
# store. A rebuild in progress (this or another process) is much shorter.
ABSENT_REBUILD_S = 10.0
# Longest wait for one node's CLUSTER NODES, and for the pub/sub subscriptions to
# move after a topology change (redis-py asks the nodes one after another).
TOPOLOGY_READ_S = 5.0


class Restore:
    def __init__(self, ctx: Context, registry: Registry) -> None:
        self.ctx = ctx
        self.registry = registry
        # The rebuild generation this process last saw (the epoch marker's value): a
        # new one means Redis was rebuilt, and this process's viewers must be counted
        # present again, whichever process did the rebuild.
        self.seen_generation: str | None = None
        # Redis Cluster: the topology the last look at every room's home was made
        # under (None: not yet), whether rooms were left to look at again, and since
        # when each room seen without its epoch key has been so.
        self.seen_topology: dict[str, ClusterNode] | None = None
        self.seen_pubsub_topology: dict[str, ClusterNode] | None = None
        self.homes_pending = False
        self.absent_since: dict[str, float] = {}

    @property
    def data(self) -> RebuildData:
        return self.ctx.data.rebuild

    async def ensure_in_step(self) -> None:
        """Rebuild Redis from the store when Redis has no epoch marker."""
        if await self.data.generation() is not None:
            await self.adopt_rooms()
            return
        token = new_epoch()
        if not await self.data.lock(token, REBUILD_LOCK_S):
            # Another process is rebuilding; wait for it to finish.
            for _ in range(REBUILD_LOCK_S * 10):
                await asyncio.sleep(0.1)
                if await self.data.generation() is not None:
                    return
            return
        try:
            states = await self.ctx.store.room_states()
            for room in await self.ctx.store.rooms():
                if states.get(room["room_id"], {}).get("state") == ARCHIVED:
                    continue  # its Redis state was released on purpose
                await self.rebuild_room(room)
                # Still ours: a rebuild waiting on a slow store must not lose the lock.
                await self.data.keep_lock(token, REBUILD_LOCK_S)
            generation = str(now_ms())
            await self.data.set_generation(generation)
            self.seen_generation = generation  # this process counted its viewers already
        finally:
            await self.data.unlock(token)

    async def adopt_rooms(self) -> None:
        """Give an epoch to rooms that Redis holds without one (loaded by a version
        before epochs existed). Their state is kept as it is: only the fence starts.
        Every process agrees on the epoch, so concurrent starts adopt the same one.
        Not on a Redis Cluster: there a room without its epoch key is being rebuilt
        (by `check_homes` or a start's rebuild), or lost the key with a shard, and
        marking it whole would open it on the state the rebuild is replacing;
        `check_homes` rebuilds such a room."""
        if self.data.cluster:
            return
        store = self.ctx.store
        rooms = [r["room_id"] for r in await store.rooms()]
        if not rooms:
            return
        for room_id in await self.data.without_epoch(rooms):
            epoch = await store.room_epoch(room_id)
            if not epoch:
                epoch = "adopted"
                await store.set_room_epoch(room_id, epoch)
            await self.data.adopt(room_id, epoch)
            log.info("room %s: adopted its Redis state under epoch %s", room_id, epoch)

    async def rebuild_room(self, room: dict[str, Any]) -> None:
        ctx = self.ctx
        room_id = room["room_id"]
        # The room answers 'unavailable' until its epoch is back (set last, below).
        await self.data.unmark(room_id)
        # The fence: from this commit on, an order whose checkout began under the lost
        # state is refused by the store. Orders committed before it are in the reads
        # below, so every order the store will ever hold for the old state is counted.
        epoch = new_epoch()
        await ctx.store.set_room_epoch(room_id, epoch)
        await ctx.data.rooms.load_room(room_id, room["title"], room["stream_url"],
                                       room["host_key_hash"], room["created_at"])
        # Held counts restart at 0, so no hold from before may move units again: not
        # through expiry (the zsets) and not through a release or a checkout of a hold
        # hash that survived (a partial loss, an operator deleting the marker, a
        # second rebuild after a failed one). Their orders, if any, are in the store.
        # Sequence numbers continue above anything handed out before the loss.
        await self.data.wipe_holds(room_id, now_ms())
        for restorer in self.registry.restorers:
            await restorer(room_id)
        # This process's viewers are present before the room opens again (a lottery
        # needs them); other processes re-count theirs when they see the rebuild.
        await ctx.hub.reassert_presence(room_id)
        await ctx.data.rooms.mark_whole(room_id, epoch)
        # Every viewer has a gap (numbers jumped, events were dropped meanwhile).
        ctx.hub.resync_all(room_id)
        log.info("rebuilt room %s from the store", room_id)

    async def check(self) -> None:
        """Once a second: rebuild if Redis lost its data; after anyone's rebuild,
        count this process's viewers present again and send them a snapshot."""
        generation = await self.data.generation()
        if generation is None:
            log.warning("redis lost its data: rebuilding it from the order store")
            await self.ensure_in_step()
            generation = await self.data.generation()
        if generation is not None and generation != self.seen_generation:
            self.seen_generation = generation
            n = await self.ctx.hub.reassert_presence()
            self.ctx.hub.resync_all()
            log.info("redis was rebuilt: %d viewers of this process counted present again "
                     "and sent a snapshot", n)
        if self.data.cluster and generation is not None:
            await self.check_homes()

    async def check_homes(self) -> None:
        """Redis Cluster: after a change of the cluster's topology (and until every
        room was settled), look at each live room's home; rebuild from the store the
        rooms a promoted replica serves (or whose epoch key was lost), and re-home
        the rooms whose slot moved by resharding. Under the rebuild lock, so one
        process reconciles at a time; the others see the rooms whole after."""
        # Bounded: a node that accepts the connection and never answers must not hold
        # the upkeep tick (rebuild checks, memory watch) with it; next second again.
        try:
            async with asyncio.timeout(TOPOLOGY_READ_S):
                topology = await self.data.topology()
        except TimeoutError as exc:
            self.ctx.health.redis_failed(exc)  # logged once per outage
            return
        if topology != self.seen_pubsub_topology:
            # This process's sharded subscriptions follow the slots (every process).
            self.seen_pubsub_topology = topology
            self.ctx.hub.spawn(self.ctx.hub.broker.follow_topology())
        if topology == self.seen_topology and not self.homes_pending:
            return
        token = new_epoch()
        if not await self.data.lock(token, REBUILD_LOCK_S):
            return  # another process rebuilds or reconciles: look again next second
        try:
            self.homes_pending = await self._settle_homes(topology, token)
            self.seen_topology = topology
        finally:
            await self.data.unlock(token)

    async def _settle_homes(self, topology: dict[str, ClusterNode], token: str) -> bool:
        """One look at every live room's home; True when some room must be looked
        at again (its epoch key absent, but not yet for ABSENT_REBUILD_S)."""
        store = self.ctx.store
        states = await store.room_states()
        rooms = [r for r in await store.rooms()
                 if states.get(r["room_id"], {}).get("state") != ARCHIVED]
        homes = await self.data.homes([r["room_id"] for r in rooms])
        now = time.monotonic()
        pending = False
        seen_absent = set()
        for room, home in zip(rooms, homes, strict=True):
            room_id = room["room_id"]
            if home.state == "absent":
                seen_absent.add(room_id)
                since = self.absent_since.setdefault(room_id, now)
                if now - since < ABSENT_REBUILD_S:
                    pending = True
                    continue
                log.warning("room %s: its epoch key is gone from the Redis Cluster (a "
                            "shard lost it): rebuilding the room from the order store",
                            room_id)
            elif home.state != "away":
                continue
            elif not home.promoted and home.home in topology \
                    and topology[home.home].healthy_primary:
                # Moved by resharding: MIGRATE carried every key as it was.
                if await self.data.rehome(room_id, home.home):
                    log.info("room %s: its slot moved to node %s; its state moved whole",
                             room_id, home.here)
                continue
            else:
                log.warning("room %s: now served by node %s, promoted from replica after "
                            "its primary %s failed; the last writes may be lost, so the "
                            "room is rebuilt from the order store", room_id, home.here,
                            home.home or "(unknown)")
            self.absent_since.pop(room_id, None)
            await self.rebuild_room(room)
            await self.data.keep_lock(token, REBUILD_LOCK_S)
        for room_id in set(self.absent_since) - seen_absent:
            del self.absent_since[room_id]
        return pending
