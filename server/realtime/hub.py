"""The hub: the local fan-out. Rooms and their viewer connections in this
process, coalescing, per-client buffers, behind and resync, resume and snapshots.

Every broadcast goes through one Lua call (`publish.lua`, through
server/state/events.py) that gives it the room's next sequence number, appends
it to the room's capped log and publishes the encoded bytes. The broker
(server/realtime/broker.py) relays what every process published to the rooms
with viewers here. Events of one loop tick are joined and framed once per room,
then written to every viewer with one synchronous call each: fan-out never
awaits a client. A connection's states are named in server/realtime/conn.py.

Pub/sub is at-most-once; the log and snapshots repair any gap, which clients
detect from the sequence numbers (the broker repairs the gap a lost pub/sub
connection leaves). How a viewer catches up, falls behind and asks to `resync`
is server/realtime/catchup.py.

The fan-out loop iterates a copy of the room's writers: a write can make the
transport call back (`pause_writing` -> `CatchUp.fell_behind`) and the fallback
path can close a viewer, and both change the room's sets while the loop runs.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.websockets import WebSocket, WebSocketState

from server.core.errors import CLOSE_GOING_AWAY
from server.core.keys import room_keys
from server.core.protocol import encode, seq_of, text_frame
from server.core.settings import HubSettings
from server.realtime.broker import Broker
from server.realtime.catchup import CatchUp
from server.realtime.conn import Conn, ConnState
from server.realtime.limits import TokenBucket
from server.state.connections import RedisClient
from server.state.events import RoomEvents
from server.state.faults import REDIS_FAULTS
from server.state.presence import Presence
from server.state.scripts import Scripts

# What the features and the app import from here.
__all__ = ["Conn", "ConnState", "Hub", "LocalRoom", "SnapshotFn", "TokenBucket"]

log = logging.getLogger("livesell.hub")

MAX_CHAT_BUCKETS = 200_000
SnapshotFn = Callable[[str], Awaitable[tuple[int, bytes]]]


class LocalRoom:
    """The viewers of one room connected to this process."""

    __slots__ = ("_transports", "batch", "catching", "fast", "heard", "keys", "last_seq",
                 "members", "repair_generation", "repairing", "room_id", "scheduled", "slow",
                 "subscribed")

    def __init__(self, room_id: str) -> None:
        self.room_id = room_id
        self.keys = room_keys(room_id)
        self.members: set[Conn] = set()
        # The live viewers on the transport hook, and their transports (changed only
        # through go_fast and drop_fast, which keep the flush's tuple up to date).
        self.fast: dict[Conn, asyncio.WriteTransport] = {}
        self._transports: tuple[asyncio.WriteTransport, ...] | None = ()
        self.slow: set[Conn] = set()
        self.catching: set[Conn] = set()
        self.batch: list[bytes] = []
        self.scheduled = False
        self.subscribed = False
        # The last event this process delivered to the room: after the pub/sub link
        # comes back, the events published meanwhile are read from the room's log
        # from here, and an event that arrives twice is delivered once.
        self.last_seq = 0
        # The highest seq that arrived by pub/sub (0: none yet): one arriving above
        # heard + 1 means events were lost on the way (Broker._listen).
        self.heard = 0
        self.repairing = False  # live events wait until the missed ones are read back
        self.repair_generation = 0  # the latest repair of the room wins

    def go_fast(self, conn: Conn) -> None:
        """Put a viewer on the transport hook on live delivery, if its connection is
        still open (a close frame may have come while it was catching up)."""
        raw = conn.raw
        if raw is not None and raw.is_open():
            self.fast[conn] = raw.transport
            self._transports = None

    def drop_fast(self, conn: Conn) -> None:
        if self.fast.pop(conn, None) is not None:
            self._transports = None

    def transports(self) -> tuple[asyncio.WriteTransport, ...]:
        """The live viewers' transports, as one tuple built once per change of the
        list (not per event): the flush touches each transport and nothing else of a
        viewer, which at thousands of viewers is most of its cost (memory reads,
        docs/benchmarks.md)."""
        transports = self._transports
        if transports is None:
            transports = self._transports = tuple(self.fast.values())
        return transports


class Hub:
    """`redis` answers in text, `pubsub_redis` in bytes (events, and the pub/sub
    connection); the hub hands both to the state layer and uses neither itself."""

    def __init__(self, redis: RedisClient, pubsub_redis: RedisClient, scripts: Scripts,
                 settings: HubSettings, chat_rate: float, chat_burst: int,
                 keep_place_ms: int = 0) -> None:
        self.scripts = scripts
        self.events = RoomEvents(redis, pubsub_redis, scripts)
        # keep_place_ms: how long a viewer who left stays noted as gone (waitlists).
        self.presence = Presence(redis, scripts, keep_place_ms)
        self.broker = Broker(self, self.events)
        self.catchup = CatchUp(self)
        self.settings = settings
        self.chat_rate = chat_rate
        self.chat_burst = chat_burst
        self.rooms: dict[str, LocalRoom] = {}
        self.snapshot: SnapshotFn | None = None
        self.dirty_viewers: set[str] = set()
        # Chat allowances per viewer, not per connection, so reconnecting does not
        # refill them. Bounded: the least recently used are forgotten.
        self._chat_buckets: collections.OrderedDict[tuple[str, str], TokenBucket] = (
            collections.OrderedDict())
        self._tasks: set[asyncio.Future[Any]] = set()
        self.snapshots_built = 0  # every snapshot started for a viewer of this process
        # Counts for the metrics (server/web/metrics.py): joins, event frames written to
        # viewers, viewers that fell behind (their missed events repaired by a
        # snapshot), and connections closed as too slow.
        self.joins = 0
        self.frames_out = 0
        self.fell_behind = 0
        self.slow_closes = 0
        # Told of every Redis error the relay and the snapshots meet (the app's
        # health logs it once per outage).
        self.on_redis_error: Callable[[BaseException], None] | None = None

    def chat_bucket_for(self, room_id: str, viewer_id: str) -> TokenBucket:
        key = (room_id, viewer_id)
        bucket = self._chat_buckets.get(key)
        if bucket is None:
            bucket = self._chat_buckets[key] = TokenBucket(self.chat_rate, self.chat_burst)
            if len(self._chat_buckets) > MAX_CHAT_BUCKETS:
                self._chat_buckets.popitem(last=False)
        else:
            self._chat_buckets.move_to_end(key)
        return bucket

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        await self.broker.start()

    async def stop(self) -> None:
        """Close every viewer with 1001, then stop listening. Never hangs: each wait
        is bounded, because shutdown must finish even with Redis gone."""
        self.close_all(CLOSE_GOING_AWAY, "server shutting down")
        tasks = list(self._tasks)
        if self.broker.listener is not None:
            tasks.append(self.broker.listener)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=2.0)
        await self.broker.close()

    def spawn(self, coro: Awaitable[Any]) -> asyncio.Future[Any]:
        task: asyncio.Future[Any] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # ------------------------------------------------------------------ publishing

    def publish(self, room_id: str, event: dict[str, Any], keep: int = 0) -> asyncio.Future[Any]:
        """Broadcast an event to the room on every process (a chat message also kept
        in the room's history of `keep` messages); resolves to its seq, or -1 when the
        room is being rebuilt and nothing was sent (publish.lua)."""
        event.setdefault("ts", time.time_ns() // 1_000_000)
        return self.events.publish(room_id, encode(event), self.settings.log_size, keep)

    # ------------------------------------------------------------------ delivery

    def deliver(self, room: LocalRoom, payload: bytes) -> None:
        """An event for the room's viewers (from the broker): joined with the rest
        of this loop tick's and written once the tick is done."""
        room.batch.append(payload)
        if not room.scheduled and not room.repairing:
            room.scheduled = True
            asyncio.get_running_loop().call_soon(self._flush, room)

    def _flush(self, room: LocalRoom) -> None:
        room.scheduled = False
        if room.repairing:
            # A flush scheduled before the repair began: the repair delivers the batch
            # after the events it reads back (Broker._repair_gaps), in seq order.
            return
        payloads, room.batch = room.batch, []
        if not payloads:
            return
        # Events come in seq order; only after a reconnect can the first ones be
        # events this room already got (published live and read back from the log).
        if seq_of(payloads[0]) <= room.last_seq:
            payloads = [p for p in payloads if seq_of(p) > room.last_seq]
            if not payloads:
                return
        room.last_seq = seq_of(payloads[-1])
        # One frame per event, built once per room; several events in one write.
        frames = b"".join([text_frame(p) for p in payloads])
        self.frames_out += len(payloads) * (len(room.fast) + len(room.slow))
        # Copies, not the live collections: a write can call pause_writing ->
        # CatchUp.fell_behind, and _enqueue can close a viewer, both of which remove that
        # viewer from the room while the loop runs. A viewer removed mid-loop was
        # removed by its own write, so it is never written again from the copy.
        # Only the transport is asked before a write: a viewer whose close frame was
        # sent or received has left the tuple already (FastWebSocketProtocol.on_closing),
        # and a transport closed in the same step says so itself.
        for transport in room.transports():
            if not transport.is_closing():
                transport.write(frames)
        slow = tuple(room.slow)
        for conn in slow:
            conn._enqueue(payloads)
        ready = []
        for conn in room.catching:  # extending a list calls nothing back
            if conn.pending is not None:
                conn.pending.extend(payloads)
                if conn.live_after and conn.live_after <= room.last_seq:
                    ready.append(conn)
        # Viewers whose backlog or snapshot was ahead of the room's live stream, which
        # has now caught up: they go live with what came after it (CatchUp.go_live).
        for conn in ready:
            self.catchup.go_live(conn, conn.live_after)

    def flush_soon(self, room: LocalRoom) -> None:
        """Deliver the room's batch once this loop tick is done (the broker, after
        a repair)."""
        if not room.scheduled:
            room.scheduled = True
            asyncio.get_running_loop().call_soon(self._flush, room)

    # ------------------------------------------------------------------ membership

    def _room(self, room_id: str) -> LocalRoom:
        room = self.rooms.get(room_id)
        if room is None:
            room = self.rooms[room_id] = LocalRoom(room_id)
            self.broker.track(room)
        return room

    async def join(self, conn: Conn, since: int | None, welcome: dict[str, Any]) -> None:
        """Add a viewer: welcome, then the missed events or a snapshot, then live events.

        `welcome` gains `resumed` (whether the missed events follow, rather than a
        snapshot) and `server_time`."""
        room = self._room(conn.room_id)
        self.joins += 1
        room.members.add(conn)
        conn.pending = []
        room.catching.add(conn)
        if conn.raw is not None:
            conn.raw.set_buffer_limit(self.settings.client_buffer_bytes)
            conn.raw.on_pause = lambda: self.catchup.fell_behind(conn)
            conn.raw.on_resume = lambda: self.catchup.drained(conn)
            conn.raw.on_closing = lambda: room.drop_fast(conn)
        else:
            conn.sender = asyncio.create_task(conn._send_loop())
        await self.broker.subscribe(room)
        if not conn.is_host:
            await self.presence.arrived([(conn.room_id, conn.viewer.viewer_id)])
            self.dirty_viewers.add(conn.room_id)
        backlog = await self.broker.backlog(conn.room_id, since) if since is not None else None
        conn.send(encode({**welcome, "resumed": backlog is not None,
                          "server_time": time.time_ns() // 1_000_000}))
        if since is not None and backlog is not None:
            for event in backlog:
                conn.send(event)
            self.catchup.go_live(conn, seq_of(backlog[-1]) if backlog else since)
            return
        await self.catchup.send_snapshot(conn)

    async def resync(self, conn: Conn) -> None:
        """A viewer's `resync` frame (CatchUp.resync: rate-limited, coalesced)."""
        await self.catchup.resync(conn)

    async def resync_now(self, conn: Conn) -> None:
        """A snapshot for this viewer, never more than one on its way (CatchUp)."""
        await self.catchup.resync_now(conn)

    def close(self, conn: Conn, code: int, reason: str) -> None:
        """Close a viewer's connection now, whatever its buffer holds."""
        if conn.closed:
            return
        self.leave(conn)
        if conn.raw is not None:
            conn.raw.close_now(code, reason)
        elif conn.ws.application_state == WebSocketState.CONNECTED:
            conn.closing = self.spawn(self._close_ws(conn.ws, code, reason))

    @staticmethod
    async def _close_ws(ws: WebSocket, code: int, reason: str) -> None:
        with contextlib.suppress(Exception):
            await ws.close(code, reason)

    def leave(self, conn: Conn) -> None:
        if conn.closed:
            return
        conn.closed = True
        if conn.behind_handle is not None:
            conn.behind_handle.cancel()
        if conn.drain_poll is not None:
            conn.drain_poll.cancel()
        if conn.resync_timer is not None:
            conn.resync_timer.cancel()
            conn.resync_timer = None
        if conn.raw is not None:
            conn.raw.on_pause = conn.raw.on_resume = conn.raw.on_closing = None
        if conn.sender is not None:
            conn.sender.cancel()
        room = self.rooms.get(conn.room_id)
        if room is None:
            return
        room.members.discard(conn)
        room.drop_fast(conn)
        room.slow.discard(conn)
        room.catching.discard(conn)
        if not conn.is_host:
            self.dirty_viewers.add(conn.room_id)
        self.spawn(self._left(room, None if conn.is_host else conn.viewer.viewer_id))

    async def _left(self, room: LocalRoom, viewer_id: str | None) -> None:
        try:
            if viewer_id is not None:
                await self.presence.left(room.room_id, viewer_id)
        except REDIS_FAULTS:
            log.warning("could not record that %s left %s", viewer_id, room.room_id)
        if not room.members:
            await self.broker.unsubscribe_if_empty(room)

    async def reassert_presence(self, room_id: str | None = None) -> int:
        """Count this process's viewers (of one room, or all) as present again: Redis
        lost its data and was rebuilt, and presence is not in the store."""
        rooms = [r for r in list(self.rooms.values()) if room_id in (None, r.room_id)]
        conns = [c for room in rooms for c in list(room.members)
                 if not c.is_host and not c.closed]
        if not conns:
            return 0
        await self.presence.arrived([(c.room_id, c.viewer.viewer_id) for c in conns])
        self.dirty_viewers.update(c.room_id for c in conns)
        return len(conns)

    def resync_all(self, room_id: str | None = None) -> int:
        """Send every viewer of this process (of one room, or all) a fresh snapshot:
        the room was rebuilt after Redis lost its data, so each has a gap."""
        conns = [c for room in list(self.rooms.values()) if room_id in (None, room.room_id)
                 for c in list(room.members) if not c.closed]
        for conn in conns:
            self.spawn(self.resync_now(conn))
        return len(conns)

    def close_all(self, code: int, reason: str) -> int:
        """Close every viewer of this process (the drain); returns how many."""
        conns = [conn for room in list(self.rooms.values()) for conn in list(room.members)]
        for conn in conns:
            self.close(conn, code, reason)
        return len(conns)
