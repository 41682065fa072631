"""How a viewer catches up: its snapshot, going live, falling behind, draining
and `resync`.

A viewer whose transport buffer passes `hub.client_buffer_bytes` is "behind":
it stops receiving events (chatter is lost), gets a fresh snapshot once its
buffer drains, and is closed with 4008 if it stays behind past
`hub.behind_timeout_s`.

A viewer has at most one snapshot on its way. A `resync` that arrives while one
is being built is answered by it; one that arrives while anything written to the
viewer has not reached it yet makes the viewer behind, so it gets one snapshot
once all of that has arrived, however many `resync` frames it sent meanwhile.
And a viewer's `resync` builds at most one snapshot per `hub.resync_interval_s`
(counted from the last snapshot it got, the joining one included): one that comes
sooner is answered by a single snapshot when the interval is up, however many
came meanwhile, so spamming `resync` cannot make the server build snapshots.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from server.core.errors import CLOSE_TOO_SLOW, CLOSE_TRY_AGAIN, LivesellError
from server.core.protocol import seq_of
from server.realtime.conn import Conn
from server.state.faults import REDIS_FAULTS

if TYPE_CHECKING:
    from server.realtime.hub import Hub

log = logging.getLogger("livesell.hub")

# How often a viewer held for a `resync` is checked for having received
# everything: the kernel tells nobody when a peer acknowledges.
HELD_POLL_S = 0.05


class CatchUp:
    """The hub's catching-up machinery (one per hub)."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    async def send_snapshot(self, conn: Conn) -> None:
        """Build a snapshot, write it, then the events that came meanwhile, and go live.
        The viewer is in `room.catching` (collecting those events) while it waits."""
        assert self.hub.snapshot is not None
        conn.snapshotting = True
        self.hub.snapshots_built += 1
        conn.resync_after = (asyncio.get_running_loop().time()
                             + self.hub.settings.resync_interval_s)
        if conn.resync_timer is not None:
            # Built after the coalesced `resync` arrived, this snapshot answers it.
            conn.resync_timer.cancel()
            conn.resync_timer = None
        try:
            seq, snap = await self.hub.snapshot(conn.room_id)
        finally:
            conn.snapshotting = False
        if conn.closed:
            return
        if conn.behind:
            # Not into a full buffer: the viewer gets a fresh one when it drains.
            room = self.hub.rooms.get(conn.room_id)
            if room is not None:
                room.catching.discard(conn)
            conn.pending = None
            return
        conn.send(snap)
        self.go_live(conn, seq)

    def go_live(self, conn: Conn, last_seq: int) -> None:
        """Into the room's fan-out, after the events up to `last_seq` (the viewer's
        backlog or snapshot) and those collected meanwhile that are newer.

        The backlog and the snapshot are read on another Redis connection than the
        pub/sub one, so they can hold events the room has not received live yet.
        Going live then would write those again when they arrive: the viewer stays
        in `catching`, collecting, until the room's live stream has passed
        `last_seq` (Hub._flush calls this again then)."""
        room = self.hub.rooms.get(conn.room_id)
        if room is None or conn.closed:
            return
        if room.last_seq < last_seq:
            conn.live_after = last_seq
            conn.pending = []  # what it holds is older than what the viewer has
            room.catching.add(conn)
            return
        conn.live_after = 0
        pending, conn.pending = conn.pending or [], None
        room.catching.discard(conn)
        for event in pending:
            if seq_of(event) > last_seq:
                conn.send(event)
        # A send can make the viewer fall behind (its buffer passed the mark) or,
        # on the fallback path, close it.
        if conn.behind or conn.closed:
            return
        if conn.raw is None:
            room.slow.add(conn)
        else:
            # Not if its close frame came while it caught up: the session ends with
            # the disconnect that follows, and leave takes it out of the room.
            room.go_fast(conn)

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
            self.hub.spawn(self.resync_now(conn))

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
            self.fell_behind(conn)
            if conn.raw is not None and conn.behind:
                # The fallback path's sender calls drained when its queue empties.
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
            self.drained(conn)

    async def _resnapshot(self, conn: Conn) -> None:
        """Take the viewer off live delivery and send it a fresh snapshot."""
        room = self.hub.rooms.get(conn.room_id)
        if room is None or conn.closed:
            return
        room.drop_fast(conn)
        room.slow.discard(conn)
        conn.pending = []
        room.catching.add(conn)
        try:
            await self.send_snapshot(conn)
        except Exception as exc:
            # Redis down, or the room being rebuilt: the viewer is off live delivery
            # and collecting events nobody will send. Close it with "try again"; it
            # reconnects and resumes from the log or a snapshot. (Often nobody awaits
            # this: a resync after a drain, a repair, a rebuild.)
            room.catching.discard(conn)
            conn.pending = None
            if isinstance(exc, REDIS_FAULTS) and self.hub.on_redis_error is not None:
                self.hub.on_redis_error(exc)
            elif not isinstance(exc, (*REDIS_FAULTS, LivesellError)):
                log.exception("viewer %s in %s: snapshot failed", conn.viewer.viewer_id,
                              conn.room_id)
            self.hub.close(conn, CLOSE_TRY_AGAIN, "temporarily unavailable; reconnect")

    def fell_behind(self, conn: Conn) -> None:
        room = self.hub.rooms.get(conn.room_id)
        if room is None or conn.closed or conn.behind:
            return
        conn.behind = True
        self.hub.fell_behind += 1
        room.drop_fast(conn)
        room.slow.discard(conn)
        if not conn.snapshotting:
            # Events missed from now on are repaired by the snapshot sent on drain.
            # While a snapshot is being built the viewer keeps collecting them: if
            # it drains before that snapshot is ready, the snapshot and those events
            # bring it up to date without another one.
            room.catching.discard(conn)
            conn.pending = None
        conn.behind_handle = asyncio.get_running_loop().call_later(
            self.hub.settings.behind_timeout_s, self._still_behind, conn)

    def _still_behind(self, conn: Conn) -> None:
        if conn.behind and not conn.closed:
            self.hub.slow_closes += 1
            self.hub.close(conn, CLOSE_TOO_SLOW, "too slow: could not keep up with the room")

    def drained(self, conn: Conn) -> None:
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
            return  # the snapshot being built is sent when ready (see fell_behind)
        self.hub.spawn(self._resnapshot(conn))
