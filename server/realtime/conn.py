"""One viewer's connection as the hub sees it, and the states it goes through.

A connection is JOINING until the hub adds it to its room, then CATCHING_UP
from that moment (its welcome follows): it waits for the missed events or a
snapshot, collecting the room's live events in `pending` meanwhile, and, when
those reach further than the events this process has received live, until the
live stream passes them (`live_after`), so no event comes twice. Then it is
LIVE: in the room's
fan-out (`fast`, written pre-framed bytes through the transport hook, or
`slow`, the plain ASGI fallback with a bounded queue and a sender task). A
viewer whose buffer passes `hub.client_buffer_bytes` is BEHIND: out of the
fan-out until its buffer drains, then CATCHING_UP again with a fresh snapshot.
CLOSED is final. The state is read from the flags the hub's hot paths use
(`Conn.state`), so naming it costs the fan-out nothing.
"""

from __future__ import annotations

import asyncio
import collections
import enum
from typing import TYPE_CHECKING, Any

from starlette.websockets import WebSocket

from server.core.errors import CLOSE_TOO_SLOW
from server.core.identity import Viewer
from server.core.protocol import text_frame
from server.realtime.fastws import EXTENSION, FastWebSocketProtocol
from server.realtime.limits import TokenBucket

if TYPE_CHECKING:
    from server.realtime.hub import Hub


class ConnState(enum.Enum):
    JOINING = "joining"
    CATCHING_UP = "catching up"
    LIVE = "live"
    BEHIND = "behind"
    CLOSED = "closed"


class Conn:
    """One viewer's connection as the hub sees it."""

    __slots__ = ("behind", "behind_handle", "chat_bucket", "closed", "closing", "drain_poll",
                 "frame_bucket", "hub", "is_host", "live_after", "outbox", "outbox_bytes",
                 "outbox_ready", "pending", "raw", "resync_after", "resync_timer", "room_id",
                 "sender", "snapshotting", "viewer", "ws")

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
        # The last event this viewer got from the room's log or its snapshot, while the
        # room's live stream has not reached it yet (CatchUp.go_live); 0 otherwise.
        self.live_after = 0
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

    @property
    def state(self) -> ConnState:
        """Where this connection is in its life (see the module docstring)."""
        if self.closed:
            return ConnState.CLOSED
        if self.behind:
            return ConnState.BEHIND
        room = self.hub.rooms.get(self.room_id)
        if room is None or self not in room.members:
            return ConnState.JOINING
        if self in room.fast or self in room.slow:
            return ConnState.LIVE
        return ConnState.CATCHING_UP

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
            self.hub.slow_closes += 1
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
                    self.hub.catchup.drained(self)
        except Exception:  # the client went away; the receive loop notices too
            # leave(), not only closed = True: leave() does nothing for a closed
            # connection, and the room must forget this one.
            self.hub.leave(self)
