"""The broker: the pub/sub relay between processes and the reads of a room's
event log, over the state layer's event stream (server/state/events.py).

Each process holds one pub/sub connection and one listener task; it subscribes
to a room's channel on the room's first local viewer and unsubscribes after the
last (the channels_redis pattern). What arrives is handed to the hub
(`Hub.deliver`), which joins one loop tick's events and frames them once per room.

Pub/sub is at-most-once. When the connection comes back after a loss, each
room's events published meanwhile are read back from its log and delivered
before the live ones held meanwhile, in seq order and once; a room whose log no
longer reaches back gets a snapshot for each of its viewers instead. An event
that arrives with a gap before it (its seq above the last one heard plus one:
events were lost on the way, as when a Redis Cluster shard fails over or a
room's slot moves, where sharded pub/sub reports no reconnect) starts the same
repair for its room.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING

from server.core.protocol import seq_of
from server.state.events import RoomEvents, Subscription
from server.state.faults import REDIS_FAULTS

if TYPE_CHECKING:
    from server.realtime.hub import Hub, LocalRoom

log = logging.getLogger("livesell.hub")

REPAIR_READ_S = 5.0  # longest wait for one room's log after a pub/sub reconnect
FOLLOW_S = 10.0  # longest wait for the sharded subscriptions to follow the slots


class Broker:
    def __init__(self, hub: Hub, events: RoomEvents) -> None:
        self.hub = hub
        self.events = events
        self.by_channel: dict[bytes, LocalRoom] = {}
        self.listener: asyncio.Task[None] | None = None
        self._sub: Subscription | None = None
        self._sub_lock = asyncio.Lock()
        self._has_subs = asyncio.Event()
        self.dropped = 0  # messages on a room's channel that were not events
        self._dropped_logged = -60.0

    async def start(self) -> None:
        self._sub = self.events.subscription()
        self._sub.on_reconnect(self._reconnected)
        self.listener = asyncio.create_task(self._listen(), name="hub-listener")

    async def close(self) -> None:
        """Close the pub/sub connection (the listener is cancelled by then); bounded,
        because shutdown must finish even with Redis gone."""
        if self._sub is not None:
            with contextlib.suppress(*REDIS_FAULTS, TimeoutError):
                await asyncio.wait_for(self._sub.aclose(), 2.0)

    def track(self, room: LocalRoom) -> None:
        """A room with local viewers: its channel's messages go to it."""
        self.by_channel[room.keys.channel.encode()] = room

    async def _listen(self) -> None:
        assert self._sub is not None
        sub = self._sub
        hub = self.hub
        while True:
            try:
                if not sub.subscribed:
                    self._has_subs.clear()
                    await self._has_subs.wait()
                msg = await sub.next_message(1.0)
            except asyncio.CancelledError:
                raise
            except REDIS_FAULTS as exc:
                if hub.on_redis_error is not None:
                    hub.on_redis_error(exc)  # logged once per outage by the app
                else:
                    log.warning("pub/sub connection lost (%s); retrying", exc)
                await asyncio.sleep(0.5)
                continue
            if msg is None:
                continue
            room = self.by_channel.get(msg[0])
            if room is None:
                continue
            try:
                seq = seq_of(msg[1])
            except ValueError:
                # Not an event (another publisher on the channel, a bug): dropped here,
                # where it enters the process. Delivered, it failed later in the hub's
                # flush and took the tick's good events of the room with it.
                self._dropped(room.room_id, msg[1])
                continue
            heard = room.heard
            if seq > heard:
                room.heard = seq
            if heard and seq > heard + 1 and not room.repairing:
                # Events between were lost on the way: read them back from the log
                # (this one waits in the room's batch until they are delivered).
                self._repair([room])
            hub.deliver(room, msg[1])

    def _dropped(self, room_id: str, payload: bytes) -> None:
        """Log a dropped message, at most once a minute."""
        now = time.monotonic()
        self.dropped += 1
        if now - self._dropped_logged >= 60.0:
            self._dropped_logged = now
            log.warning("pub/sub relay: dropped %d message(s) that are not events (last "
                        "on room %s: %r)", self.dropped, room_id, payload[:60])

    async def follow_topology(self) -> None:
        """The Redis Cluster's topology changed (Restore.check_homes saw it): the
        rooms' channels are subscribed again where their slots are now, and what
        was published meanwhile is read back from the rooms' logs. The read-back
        also matters for the subscriptions: its reads meet the moved slots' MOVED,
        on which redis-py moves each shard channel to its slot's owner as that
        node knows it (a node asked just before may not have known yet)."""
        if self._sub is None:
            return
        try:
            # Bounded: a hung node must not leave this task waiting for ever; the
            # next topology change, or a repair's MOVED, moves the channels again.
            async with asyncio.timeout(FOLLOW_S):
                followed = await self._sub.follow_topology()
        except (*REDIS_FAULTS, TimeoutError) as exc:
            if self.hub.on_redis_error is not None:
                self.hub.on_redis_error(exc)  # logged once per outage by the app
            return
        if followed:
            self._reconnected()

    def _reconnected(self) -> None:
        """The pub/sub connection was made again (after redis-py's own
        resubscription): what was published while it was down is only in the
        rooms' logs. Live events from now on wait behind it, so each room stays
        in order."""
        self._repair(list(self.hub.rooms.values()))

    def _repair(self, rooms: list[LocalRoom]) -> None:
        """Hold the rooms' live events and read back what they missed."""
        for room in rooms:
            room.repairing = True
            room.repair_generation += 1
        self.hub.spawn(self._repair_gaps([(room, room.repair_generation) for room in rooms]))

    async def _repair_gaps(self, rooms: list[tuple[LocalRoom, int]]) -> None:
        """Deliver each room's events published while the link was down, from the
        room's log; a room whose log no longer reaches back gets a snapshot for
        each of its viewers."""
        hub = self.hub
        for room, generation in rooms:
            if generation != room.repair_generation:
                continue  # a later repair of the room reads its log again
            try:
                missed: list[bytes] | None = []
                if room.members:
                    # Bounded: a stalled Redis must not hold the room's live events.
                    # No repair point (last_seq 0): snapshots instead (None).
                    async with asyncio.timeout(REPAIR_READ_S):
                        missed = await self.events.since(room.room_id, room.last_seq) \
                            if room.last_seq else None
            except (*REDIS_FAULTS, TimeoutError, ValueError) as exc:
                if hub.on_redis_error is not None and not isinstance(exc, ValueError):
                    hub.on_redis_error(exc)
                missed = None  # each viewer gets a snapshot instead
            if generation != room.repair_generation:
                continue  # another repair of the room meanwhile: it reads the log again
            if missed is None:
                for conn in list(room.members):
                    hub.spawn(hub.resync_now(conn))
                missed = []
            # The missed events, then the live ones held meanwhile, in seq order once
            # (the live ones were checked on arrival; a log entry that is not an event
            # is dropped rather than end the repair with rooms left held).
            merged = {}
            for e in [*missed, *room.batch]:
                try:
                    merged[seq_of(e)] = e
                except ValueError:
                    self._dropped(room.room_id, e)
            room.batch = [merged[k] for k in sorted(merged)]
            room.repairing = False
            if room.batch:
                hub.flush_soon(room)

    async def subscribe(self, room: LocalRoom) -> None:
        async with self._sub_lock:
            if room.subscribed:
                return
            assert self._sub is not None
            await self._sub.subscribe(room.keys.channel)
            room.subscribed = True
            self._has_subs.set()
            if not room.last_seq:
                # Where a repair after a reconnect starts reading the log (and what a
                # gap is measured from). An event
                # published between SUBSCRIBE and this read is then dropped here as
                # already seen: the joining viewers' snapshot, read after it, has it.
                # If the read fails, 0 means "no repair point": a reconnect then
                # sends this room's viewers snapshots instead.
                with contextlib.suppress(*REDIS_FAULTS):
                    room.last_seq = await self.events.last_seq(room.room_id)
                    room.heard = max(room.heard, room.last_seq)

    async def unsubscribe_if_empty(self, room: LocalRoom) -> None:
        """Forget a room whose last local viewer left, and stop listening to it."""
        async with self._sub_lock:
            if room.members or not room.subscribed:
                return
            room.subscribed = False
            self.hub.rooms.pop(room.room_id, None)
            self.by_channel.pop(room.keys.channel.encode(), None)
            if self._sub is not None:
                with contextlib.suppress(*REDIS_FAULTS):
                    await self._sub.unsubscribe(room.keys.channel)

    async def backlog(self, room_id: str, since: int) -> list[bytes] | None:
        """The room's logged events after `since`, or None when the log no longer
        reaches back."""
        return await self.events.since(room_id, since)
