"""The hub: rooms, viewer connections, fan-out, per-client buffers, the pub/sub
relay between processes, sequence numbers, resume and snapshots.

Every broadcast goes through one Lua call (`publish.lua`) that gives it the
room's next sequence number, appends it to the room's capped log and publishes
the encoded bytes. Each process holds one pub/sub connection and one listener
task; it subscribes to a room's channel on the room's first local viewer and
unsubscribes after the last (the channels_redis pattern). Events of one loop
tick are joined and framed once per room, then written to every viewer with
one synchronous call each: fan-out never awaits a client.

A viewer whose transport buffer passes `hub.client_buffer_bytes` is "behind":
it stops receiving events (chatter is lost), gets a fresh snapshot once its
buffer drains, and is closed with 4008 if it stays behind past
`hub.behind_timeout_s`. Pub/sub is at-most-once; the log and snapshots repair
any gap, which clients detect from the sequence numbers.

A viewer has at most one snapshot on its way. A `resync` that arrives while one
is being built is answered by it; one that arrives while anything written to the
viewer has not reached it yet makes the viewer behind, so it gets one snapshot
once all of that has arrived, however many `resync` frames it sent meanwhile.
And a viewer's `resync` builds at most one snapshot per `hub.resync_interval_s`
(counted from the last snapshot it got, the joining one included): one that comes
sooner is answered by a single snapshot when the interval is up, however many
came meanwhile, so spamming `resync` cannot make the server build snapshots.

The fan-out loop iterates a copy of the room's writers: a write can make the
transport call back (`pause_writing` -> `_fell_behind`) and the fallback path can
close a viewer, and both change the room's sets while the loop runs.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError
from starlette.websockets import WebSocket, WebSocketState

from server.core.errors import (
    CLOSE_GOING_AWAY,
    CLOSE_TOO_SLOW,
    CLOSE_TRY_AGAIN,
    LivesellError,
)
from server.core.identity import Viewer
from server.core.keys import RoomKeys, room_keys
from server.core.protocol import encode, seq_of, text_frame
from server.core.settings import HubSettings
from server.realtime.fastws import EXTENSION, FastWebSocketProtocol
from server.state.scripts import Scripts

log = logging.getLogger("livesell.hub")

MAX_CHAT_BUCKETS = 200_000
REPAIR_READ_S = 5.0  # longest wait for one room's log after a pub/sub reconnect
# How often a viewer held for a `resync` is checked for having received
# everything: the kernel tells nobody when a peer acknowledges.
HELD_POLL_S = 0.05
SnapshotFn = Callable[[str], Awaitable[tuple[int, bytes]]]


class TokenBucket:
    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.tokens = float(burst)
        self.stamp = time.monotonic()

    def take(self, n: float = 1.0) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= n:
            self.tokens -= n
            return True
        return False


class Conn:
    """One viewer's connection as the hub sees it."""

    __slots__ = ("behind", "behind_handle", "chat_bucket", "closed", "closing", "drain_poll",
                 "frame_bucket", "hub", "is_host", "outbox", "outbox_bytes", "outbox_ready",
                 "pending", "raw", "resync_after", "resync_timer", "room_id", "sender",
                 "snapshotting", "viewer", "ws")

    def __init__(self, hub: Hub, room_id: str, viewer: Viewer, ws: WebSocket,
                 is_host: bool = False) -> None:
        self.hub = hub
        # The plain-ASGI close frame on its way (Hub.close): the session waits for
        # it before returning, or uvicorn drops the connection without it.
        self.closing: asyncio.Future[Any] | None = None
        self.is_host = is_host  # the host console: watches, but is not counted as a viewer
        self.room_id = room_id
        self.viewer = viewer
        self.ws = ws
        raw = ws.scope.get("extensions", {}).get(EXTENSION)
        self.raw: FastWebSocketProtocol | None = raw
        self.pending: list[bytes] | None = None  # events queued while catching up
        self.behind = False
        self.behind_handle: asyncio.TimerHandle | None = None
        self.drain_poll: asyncio.TimerHandle | None = None
        self.snapshotting = False  # a snapshot for this viewer is being built
        # Loop time before which a `resync` from the viewer waits (coalesced) on
        # `resync_timer` rather than building a snapshot.
        self.resync_after = 0.0
        self.resync_timer: asyncio.TimerHandle | None = None
        self.closed = False
        s = hub.settings
        self.frame_bucket = TokenBucket(s.messages_per_s, s.message_burst)
        self.chat_bucket = hub.chat_bucket_for(room_id, viewer.viewer_id)
        # Fallback path (no fast extension): a bounded queue drained by a sender task.
        # outbox_bytes counts a message until its send has returned.
        self.outbox: collections.deque[bytes] = collections.deque()
        self.outbox_bytes = 0
        self.outbox_ready = asyncio.Event()
        self.sender: asyncio.Task[None] | None = None

    def send(self, payload: bytes) -> None:
        """Send one message to this viewer only, without awaiting."""
        if self.closed:
            return
        if self.raw is not None:
            self.raw.write_frames(text_frame(payload))
        else:
            self._enqueue([payload])

    def unsent(self) -> int:
        """Bytes written to this viewer that it has not received yet, as far as the
        hub can see: on the fast path its transport's buffer and the kernel's send
        queue; on the fallback path the hub's queue (the server's buffer and the
        kernel's are out of sight there, each bounded by its own limit)."""
        if self.raw is not None:
            return self.raw.unacknowledged()
        return self.outbox_bytes

    def _enqueue(self, payloads: list[bytes]) -> None:
        for p in payloads:
            self.outbox.append(p)
            self.outbox_bytes += len(p)
        self.outbox_ready.set()
        if self.outbox_bytes > self.hub.settings.client_buffer_bytes:
            self.hub.close(self, CLOSE_TOO_SLOW, "too slow: outbound buffer full")

    async def _send_loop(self) -> None:
        try:
            while not self.closed:
                await self.outbox_ready.wait()
                self.outbox_ready.clear()
                while self.outbox:
                    p = self.outbox[0]
                    await self.ws.send_text(p.decode())
                    self.outbox.popleft()
                    self.outbox_bytes -= len(p)
                if self.behind:
                    self.hub._drained(self)
        except Exception:  # the client went away; the receive loop notices too
            # leave(), not only closed = True: leave() does nothing for a closed
            # connection, and the room must forget this one.
            self.hub.leave(self)


class LocalRoom:
    """The viewers of one room connected to this process."""

    __slots__ = ("batch", "catching", "fast", "keys", "last_seq", "members", "repairing",
                 "room_id", "scheduled", "slow", "subscribed")

    def __init__(self, room_id: str) -> None:
        self.room_id = room_id
        self.keys = room_keys(room_id)
        self.members: set[Conn] = set()
        self.fast: dict[Conn, Callable[[bytes], None]] = {}
        self.slow: set[Conn] = set()
        self.catching: set[Conn] = set()
        self.batch: list[bytes] = []
        self.scheduled = False
        self.subscribed = False
        # The last event this process delivered to the room: after the pub/sub link
        # comes back, the events published meanwhile are read from the room's log
        # from here, and an event that arrives twice is delivered once.
        self.last_seq = 0
        self.repairing = False  # live events wait until the missed ones are read back


class Hub:
    def __init__(self, redis: Redis, pubsub_redis: Redis, scripts: Scripts,
                 settings: HubSettings, chat_rate: float, chat_burst: int) -> None:
        self.redis = redis
        self.pubsub_redis = pubsub_redis
        self.scripts = scripts
        self.settings = settings
        self.chat_rate = chat_rate
        self.chat_burst = chat_burst
        self.rooms: dict[str, LocalRoom] = {}
        self.by_channel: dict[bytes, LocalRoom] = {}
        self.snapshot: SnapshotFn | None = None
        self.dirty_viewers: set[str] = set()
        # Chat allowances per viewer, not per connection, so reconnecting does not
        # refill them. Bounded: the least recently used are forgotten.
        self._chat_buckets: collections.OrderedDict[tuple[str, str], TokenBucket] = (
            collections.OrderedDict())
        self._pubsub: PubSub | None = None
        self._listener: asyncio.Task[None] | None = None
        self._sub_lock = asyncio.Lock()
        self._has_subs = asyncio.Event()
        self._watching_reconnects = False
        self._repair_generation = 0  # one per pub/sub reconnect; the latest repair wins
        self._tasks: set[asyncio.Future[Any]] = set()
        self.snapshots_built = 0  # every snapshot started for a viewer of this process
        # Told of every Redis error the listener meets (the app's health logs it once).
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
        self._pubsub = self.pubsub_redis.pubsub(ignore_subscribe_messages=True)
        self._listener = asyncio.create_task(self._listen(), name="hub-listener")

    async def stop(self) -> None:
        """Close every viewer with 1001, then stop listening. Never hangs: each wait
        is bounded, because shutdown must finish even with Redis gone."""
        for room in list(self.rooms.values()):
            for conn in list(room.members):
                self.close(conn, CLOSE_GOING_AWAY, "server shutting down")
        tasks = list(self._tasks)
        if self._listener is not None:
            tasks.append(self._listener)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=2.0)
        if self._pubsub is not None:
            with contextlib.suppress(RedisError, OSError, TimeoutError):
                await asyncio.wait_for(self._pubsub.aclose(),  # type: ignore[no-untyped-call]
                                       2.0)

    def _spawn(self, coro: Awaitable[Any]) -> asyncio.Future[Any]:
        task: asyncio.Future[Any] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # ------------------------------------------------------------------ publishing

    def publish(self, room_id: str, event: dict[str, Any]) -> asyncio.Future[Any]:
        """Broadcast an event to the room on every process; resolves to its seq, or
        -1 when the room is being rebuilt and nothing was sent (publish.lua)."""
        event.setdefault("ts", time.time_ns() // 1_000_000)
        return self.scripts.publish(room_id, encode(event), self.settings.log_size)

    # ------------------------------------------------------------------ relay

    async def _listen(self) -> None:
        assert self._pubsub is not None
        pubsub = self._pubsub
        while True:
            try:
                if not pubsub.subscribed:
                    self._has_subs.clear()
                    await self._has_subs.wait()
                msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                if self.on_redis_error is not None:
                    self.on_redis_error(exc)  # logged once per outage by the app
                else:
                    log.warning("pub/sub connection lost (%s); retrying", exc)
                await asyncio.sleep(0.5)
                continue
            if msg is None or msg.get("type") != "message":
                continue
            room = self.by_channel.get(msg["channel"])
            if room is not None:
                try:
                    self._deliver(room, msg["data"])
                except Exception:
                    # One bad delivery must not end the relay for every room of
                    # this process (the task would end with nobody noticing).
                    log.exception("pub/sub relay: could not deliver to room %s",
                                  room.room_id)

    def _deliver(self, room: LocalRoom, payload: bytes) -> None:
        room.batch.append(payload)
        if not room.scheduled and not room.repairing:
            room.scheduled = True
            asyncio.get_running_loop().call_soon(self._flush, room)

    def _flush(self, room: LocalRoom) -> None:
        room.scheduled = False
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
        # Copies, not the live collections: a write can call pause_writing ->
        # _fell_behind, and _enqueue can close a viewer, both of which remove that
        # viewer from the room while the loop runs. A viewer removed mid-loop was
        # removed by its own write, so it is never written again from the copy.
        writers = tuple(room.fast.values())
        for write in writers:
            write(frames)
        slow = tuple(room.slow)
        for conn in slow:
            conn._enqueue(payloads)
        for conn in room.catching:  # extending a list calls nothing back
            if conn.pending is not None:
                conn.pending.extend(payloads)

    def _on_pubsub_connect(self, connection: Any) -> None:
        """redis-py calls this whenever the pub/sub connection is made again (after
        its own resubscription, which is registered first): what was published
        while it was down is only in the rooms' logs. Live events from now on wait
        behind it, so each room stays in order."""
        self._repair_generation += 1
        for room in self.rooms.values():
            room.repairing = True
        self._spawn(self._repair_gaps())

    async def _repair_gaps(self) -> None:
        """After the pub/sub link came back: deliver each room's events published
        while it was down, from the room's log; a room whose log no longer reaches
        back gets a snapshot for each of its viewers."""
        generation = self._repair_generation
        for room in list(self.rooms.values()):
            try:
                missed: list[bytes] | None = []
                if room.members:
                    # Bounded: a stalled Redis must not hold the room's live events.
                    # No repair point (last_seq 0): snapshots instead (None).
                    async with asyncio.timeout(REPAIR_READ_S):
                        missed = await self._backlog(room.keys, room.last_seq) \
                            if room.last_seq else None
            except (RedisError, OSError, TimeoutError, ValueError) as exc:
                if self.on_redis_error is not None and not isinstance(exc, ValueError):
                    self.on_redis_error(exc)
                missed = None  # each viewer gets a snapshot instead
            if generation != self._repair_generation:
                return  # another reconnect meanwhile: its repair reads every room again
            if missed is None:
                for conn in list(room.members):
                    self._spawn(self.resync_now(conn))
                missed = []
            # The missed events, then the live ones held meanwhile, in seq order once.
            merged = {seq_of(e): e for e in [*missed, *room.batch]}
            room.batch = [merged[k] for k in sorted(merged)]
            room.repairing = False
            if room.batch and not room.scheduled:
                room.scheduled = True
                asyncio.get_running_loop().call_soon(self._flush, room)

    # ------------------------------------------------------------------ membership

    async def _subscribe(self, room: LocalRoom) -> None:
        async with self._sub_lock:
            if room.subscribed:
                return
            assert self._pubsub is not None
            await self._pubsub.subscribe(room.keys.channel)
            if not self._watching_reconnects and self._pubsub.connection is not None:
                self._pubsub.connection.register_connect_callback(self._on_pubsub_connect)
                self._watching_reconnects = True
            room.subscribed = True
            self._has_subs.set()
            if not room.last_seq:
                # Where a repair after a reconnect starts reading the log. An event
                # published between SUBSCRIBE and this read is then dropped here as
                # already seen: the joining viewers' snapshot, read after it, has it.
                # If the read fails, 0 means "no repair point": a reconnect then
                # sends this room's viewers snapshots instead.
                with contextlib.suppress(RedisError, OSError):
                    room.last_seq = int(await self.redis.get(room.keys.seq) or 0)

    async def _unsubscribe_if_empty(self, room: LocalRoom) -> None:
        async with self._sub_lock:
            if room.members or not room.subscribed:
                return
            room.subscribed = False
            self.rooms.pop(room.room_id, None)
            self.by_channel.pop(room.keys.channel.encode(), None)
            if self._pubsub is not None:
                with contextlib.suppress(RedisError, OSError):
                    await self._pubsub.unsubscribe(room.keys.channel)

    def _room(self, room_id: str) -> LocalRoom:
        room = self.rooms.get(room_id)
        if room is None:
            room = self.rooms[room_id] = LocalRoom(room_id)
            self.by_channel[room.keys.channel.encode()] = room
        return room

    async def join(self, conn: Conn, since: int | None, welcome: dict[str, Any]) -> None:
        """Add a viewer: welcome, then the missed events or a snapshot, then live events.

        `welcome` gains `resumed` (whether the missed events follow, rather than a
        snapshot) and `server_time`."""
        room = self._room(conn.room_id)
        room.members.add(conn)
        conn.pending = []
        room.catching.add(conn)
        if conn.raw is not None:
            conn.raw.open_frames()
            conn.raw.set_buffer_limit(self.settings.client_buffer_bytes)
            conn.raw.on_pause = lambda: self._fell_behind(conn)
            conn.raw.on_resume = lambda: self._drained(conn)
        else:
            conn.sender = asyncio.create_task(conn._send_loop())
        await self._subscribe(room)
        keys = room.keys
        if not conn.is_host:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.hincrby(keys.present, conn.viewer.viewer_id, 1)
                pipe.sadd(keys.uniq, conn.viewer.viewer_id)
                await pipe.execute()
            self.dirty_viewers.add(conn.room_id)
        backlog = await self._backlog(keys, since) if since is not None else None
        conn.send(encode({**welcome, "resumed": backlog is not None,
                          "server_time": time.time_ns() // 1_000_000}))
        if since is not None and backlog is not None:
            for event in backlog:
                conn.send(event)
            self._go_live(conn, seq_of(backlog[-1]) if backlog else since)
            return
        await self._send_snapshot(conn)

    async def _backlog(self, keys: RoomKeys, since: int) -> list[bytes] | None:
        """The logged events after `since`, or None when the log no longer reaches back."""
        async with self.pubsub_redis.pipeline(transaction=True) as pipe:
            pipe.get(keys.seq)
            pipe.lrange(keys.log, 0, -1)
            current_raw, events = await pipe.execute()
        current = int(current_raw or 0)
        if since > current:
            return None  # the client's seq is from before a reset: start afresh
        if since == current:
            return []
        if not events or seq_of(events[0]) > since + 1:
            return None
        return [e for e in events if seq_of(e) > since]

    async def _send_snapshot(self, conn: Conn) -> None:
        """Build a snapshot, write it, then the events that came meanwhile, and go live.
        The viewer is in `room.catching` (collecting those events) while it waits."""
        assert self.snapshot is not None
        conn.snapshotting = True
        self.snapshots_built += 1
        conn.resync_after = (asyncio.get_running_loop().time()
                             + self.settings.resync_interval_s)
        if conn.resync_timer is not None:
            # Built after the coalesced `resync` arrived, this snapshot answers it.
            conn.resync_timer.cancel()
            conn.resync_timer = None
        try:
            seq, snap = await self.snapshot(conn.room_id)
        finally:
            conn.snapshotting = False
        if conn.closed:
            return
        if conn.behind:
            # Not into a full buffer: the viewer gets a fresh one when it drains.
            room = self.rooms.get(conn.room_id)
            if room is not None:
                room.catching.discard(conn)
            conn.pending = None
            return
        conn.send(snap)
        self._go_live(conn, seq)

    def _go_live(self, conn: Conn, last_seq: int) -> None:
        room = self.rooms.get(conn.room_id)
        if room is None or conn.closed:
            return
        pending, conn.pending = conn.pending or [], None
        room.catching.discard(conn)
        for event in pending:
            if seq_of(event) > last_seq:
                conn.send(event)
        # A send can make the viewer fall behind (its buffer passed the mark) or,
        # on the fallback path, close it.
        if conn.behind or conn.closed:
            return
        if conn.raw is not None:
            room.fast[conn] = conn.raw.write_frames
        else:
            room.slow.add(conn)

    async def resync(self, conn: Conn) -> None:
        """A viewer's `resync` frame, rate-limited: within `hub.resync_interval_s` of
        the viewer's last snapshot it is coalesced into one snapshot sent when the
        interval is up (a refusal would leave the client ignoring events until it
        retried; a deferred snapshot needs no change to the client's algorithm)."""
        if conn.closed or conn.resync_timer is not None:
            return  # a coalesced one is already due
        loop = asyncio.get_running_loop()
        wait = conn.resync_after - loop.time()
        if wait > 0:
            conn.resync_timer = loop.call_later(wait, self._resync_due, conn)
            return
        await self.resync_now(conn)

    def _resync_due(self, conn: Conn) -> None:
        conn.resync_timer = None
        if not conn.closed:
            self._spawn(self.resync_now(conn))

    async def resync_now(self, conn: Conn) -> None:
        """A snapshot for this viewer, never more than one on its way.

        Answered now when everything written to the viewer has reached it. Folded
        into the snapshot being built, if any. Otherwise (a snapshot or events
        still on their way, or already behind) the viewer is made behind and gets
        one snapshot once they have arrived: a viewer that sends `resync` without
        reading costs no more than its buffer bound and one snapshot."""
        if conn.closed or conn.behind or conn.snapshotting:
            return
        if conn.unsent():
            self._fell_behind(conn)
            if conn.raw is not None and conn.behind:
                # The fallback path's sender calls _drained when its queue empties.
                conn.drain_poll = asyncio.get_running_loop().call_later(
                    HELD_POLL_S, self._poll_drained, conn)
            return
        await self._resnapshot(conn)

    def _poll_drained(self, conn: Conn) -> None:
        conn.drain_poll = None
        if not conn.behind or conn.closed:
            return
        if conn.unsent():
            conn.drain_poll = asyncio.get_running_loop().call_later(
                HELD_POLL_S, self._poll_drained, conn)
        else:
            self._drained(conn)

    async def _resnapshot(self, conn: Conn) -> None:
        """Take the viewer off live delivery and send it a fresh snapshot."""
        room = self.rooms.get(conn.room_id)
        if room is None or conn.closed:
            return
        room.fast.pop(conn, None)
        room.slow.discard(conn)
        conn.pending = []
        room.catching.add(conn)
        try:
            await self._send_snapshot(conn)
        except Exception as exc:
            # Redis down, or the room being rebuilt: the viewer is off live delivery
            # and collecting events nobody will send. Close it with "try again"; it
            # reconnects and resumes from the log or a snapshot. (Often nobody awaits
            # this: a resync after a drain, a repair, a rebuild.)
            room.catching.discard(conn)
            conn.pending = None
            if isinstance(exc, RedisError | OSError) and self.on_redis_error is not None:
                self.on_redis_error(exc)
            elif not isinstance(exc, RedisError | OSError | LivesellError):
                log.exception("viewer %s in %s: snapshot failed", conn.viewer.viewer_id,
                              conn.room_id)
            self.close(conn, CLOSE_TRY_AGAIN, "temporarily unavailable; reconnect")

    def _fell_behind(self, conn: Conn) -> None:
        room = self.rooms.get(conn.room_id)
        if room is None or conn.closed or conn.behind:
            return
        conn.behind = True
        room.fast.pop(conn, None)
        room.slow.discard(conn)
        if not conn.snapshotting:
            # Events missed from now on are repaired by the snapshot sent on drain.
            # While a snapshot is being built the viewer keeps collecting them: if
            # it drains before that snapshot is ready, the snapshot and those events
            # bring it up to date without another one.
            room.catching.discard(conn)
            conn.pending = None
        conn.behind_handle = asyncio.get_running_loop().call_later(
            self.settings.behind_timeout_s, self._still_behind, conn)

    def _still_behind(self, conn: Conn) -> None:
        if conn.behind and not conn.closed:
            self.close(conn, CLOSE_TOO_SLOW, "too slow: could not keep up with the room")

    def _drained(self, conn: Conn) -> None:
        if not conn.behind or conn.closed:
            return
        conn.behind = False
        if conn.behind_handle is not None:
            conn.behind_handle.cancel()
            conn.behind_handle = None
        if conn.drain_poll is not None:
            conn.drain_poll.cancel()
            conn.drain_poll = None
        if conn.snapshotting:
            return  # the snapshot being built is sent when ready (see _fell_behind)
        self._spawn(self._resnapshot(conn))

    def close(self, conn: Conn, code: int, reason: str) -> None:
        """Close a viewer's connection now, whatever its buffer holds."""
        if conn.closed:
            return
        self.leave(conn)
        if conn.raw is not None:
            conn.raw.close_now(code, reason)
        elif conn.ws.application_state == WebSocketState.CONNECTED:
            conn.closing = self._spawn(self._close_ws(conn.ws, code, reason))

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
            conn.raw.on_pause = conn.raw.on_resume = None
        if conn.sender is not None:
            conn.sender.cancel()
        room = self.rooms.get(conn.room_id)
        if room is None:
            return
        room.members.discard(conn)
        room.fast.pop(conn, None)
        room.slow.discard(conn)
        room.catching.discard(conn)
        if not conn.is_host:
            self.dirty_viewers.add(conn.room_id)
        self._spawn(self._left(room, None if conn.is_host else conn.viewer.viewer_id))

    async def _left(self, room: LocalRoom, viewer_id: str | None) -> None:
        keys = room.keys
        try:
            if viewer_id is not None:
                n = await self.redis.hincrby(keys.present, viewer_id, -1)
                if n <= 0:
                    await self.redis.hdel(keys.present, viewer_id)
        except (RedisError, OSError):
            log.warning("could not record that %s left %s", viewer_id, room.room_id)
        if not room.members:
            await self._unsubscribe_if_empty(room)

    def local_viewers(self) -> int:
        return sum(len(r.members) for r in self.rooms.values())

    async def reassert_presence(self, room_id: str | None = None) -> int:
        """Count this process's viewers (of one room, or all) as present again: Redis
        lost its data and was rebuilt, and presence is not in the store."""
        rooms = [r for r in list(self.rooms.values()) if room_id in (None, r.room_id)]
        conns = [c for room in rooms for c in list(room.members)
                 if not c.is_host and not c.closed]
        if not conns:
            return 0
        async with self.redis.pipeline(transaction=False) as pipe:
            for conn in conns:
                keys = room_keys(conn.room_id)
                pipe.hincrby(keys.present, conn.viewer.viewer_id, 1)
                pipe.sadd(keys.uniq, conn.viewer.viewer_id)
            await pipe.execute()
        self.dirty_viewers.update(c.room_id for c in conns)
        return len(conns)

    def resync_all(self, room_id: str | None = None) -> int:
        """Send every viewer of this process (of one room, or all) a fresh snapshot:
        the room was rebuilt after Redis lost its data, so each has a gap."""
        conns = [c for room in list(self.rooms.values()) if room_id in (None, room.room_id)
                 for c in list(room.members) if not c.closed]
        for conn in conns:
            self._spawn(self.resync_now(conn))
        return len(conns)

    def close_all(self, code: int, reason: str) -> int:
        """Close every viewer of this process (the drain); returns how many."""
        conns = [conn for room in list(self.rooms.values()) for conn in list(room.members)]
        for conn in conns:
            self.close(conn, code, reason)
        return len(conns)
