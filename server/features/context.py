"""What every feature shares: the settings, the state layer, the hub, the order
store, and the little state a process keeps in memory between requests (host
key hashes, current sale ids, the coalesced streams' dirty marks, the rooms
due on the schedule). Also the answer type every viewer request returns."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson

from server.core import domain
from server.core.domain import now_ms
from server.core.errors import LivesellError, Unauthorized, Unavailable, refusal
from server.core.protocol import encode
from server.core.settings import Settings
from server.features.recorder import Recorder
from server.realtime.hub import Hub
from server.state.data import StateData
from server.state.health import Health
from server.state.scripts import Scripts
from server.state.store import Order, OrderStore, StoreClosed, StoreError

log = logging.getLogger("livesell.context")
# Webhook events waiting for the store, at most (past it one is logged and dropped),
# and how long the writer waits before trying the store again.
MAX_OUTBOX_WAITING = 10_000
OUTBOX_RETRY_S = 1.0


def rebuilding() -> Unavailable:
    """The refusal while a room's Redis state is being rebuilt from the store."""
    return Unavailable("the room is being restored after a Redis restart; try again in a "
                       "moment", details={"retry_after_s": 1})


def new_epoch() -> str:
    """A fresh room epoch (store.room_epochs and the room's epoch key)."""
    return f"{now_ms()}-{secrets.token_hex(4)}"


@dataclass(slots=True, frozen=True)
class Answer:
    """A reply frame for the asking viewer. `raw`, when given, is the body already
    encoded as a JSON object (a script's remembered answer, never empty): the frame
    is spliced from its bytes rather than parsed and encoded again. Never changed
    once built (the refusals of from_cached are shared), `body` included."""

    kind: str
    body: dict[str, Any]
    raw: bytes | None = None

    def frame(self, request_id: str | None) -> bytes:
        if self.raw is not None:
            head = b'{"type":"' + self.kind.encode() + b'"'
            if request_id is not None:
                head += b',"re":' + orjson.dumps(request_id)
            return head + b"," + self.raw[1:]
        out: dict[str, Any] = {"type": self.kind}
        if request_id is not None:
            out["re"] = request_id
        out.update(self.body)
        return encode(out)


def error_answer(exc: LivesellError) -> Answer:
    return Answer("error", exc.to_dict())


# The answers built for scripts' refusals, by the refusal as the script wrote it: a
# sale's opening answers thousands of buyers `sold_out` in a second, and each was
# parsed, raised as an error, turned into a dict and encoded again. Bounded: the
# refusal codes are a fixed set, and a refusal past the bound is built each time.
_REFUSED: dict[str, Answer] = {}
_REFUSED_MAX = 256


def from_cached(kind: str, cached: str) -> Answer:
    """The answer a script remembered for a request id (a retry gets the same). A
    refusal is parsed (its code names the error) once per refusal and kept; an
    answer is passed on as its bytes, spliced into the reply frame (Answer.raw)."""
    if cached.startswith('{"error"'):
        answer = _REFUSED.get(cached)
        if answer is None:
            built = error_answer(refusal(orjson.loads(cached)["error"]))
            answer = Answer(built.kind, built.body, encode(built.body))
            if len(_REFUSED) < _REFUSED_MAX:
                _REFUSED[cached] = answer
        return answer
    return Answer(kind, {}, cached.encode())


CountReader = Callable[[list[tuple[str, str]]], Awaitable[list[tuple[str, dict[str, Any]]]]]

class Context:
    """Built with the app (so the features' routes are known before the server
    starts); the state layer, hub and store are bound when it starts (`bind`)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.health = Health()  # where Redis failures are reported
        self.recorder: Recorder | None = None
        self._data: StateData | None = None
        self._hub: Hub | None = None
        self._store: OrderStore | None = None
        self.host_keys: dict[str, str] = {}  # room -> sha256 of its host key (never changes)
        self.current_sale: dict[tuple[str, str], str] = {}  # (room, product) -> sale id
        self.dirty_stock: set[tuple[str, str]] = set()
        # Coupons left and lottery entrants change with every claim or entry: they are
        # published as the latest count at the stock rate, never once per change.
        self.dirty_counts: set[tuple[str, str, str]] = set()
        # Counts of other kinds than coupons and lotteries (a poll's votes): the
        # feature's reader of (room, id) pairs gives the events to publish.
        self.count_readers: dict[str, CountReader] = {}
        self.likes: dict[str, int] = {}
        # Set whenever this process adds a job or a hold: the pulse's timer poll sleeps
        # until the earliest one it knows of and is woken by this for new ones.
        self.timers_changed = asyncio.Event()
        # Rooms with a hold granted here, and the earliest expiry: put on the pulse's
        # schedule (keys.DUE) at its next tick, so a buy pays no extra round trip.
        self.due_pending: dict[str, int] = {}
        # How many viewer requests (buys, checkouts, claims) run in this process now:
        # the web layer binds it to the set it keeps for the drain (Services.requests).
        # While many run, the pulse holds the coalesced numbers back a little
        # (pulse.coalesced_due), buyers first.
        self.requests_running: Callable[[], int] = lambda: 0
        # Told when units of a product may have become buyable by a path that does not
        # serve its waitlist itself (stock added, a sale stopped, an offer opened):
        # features/waitlist.py hands them to the viewers waiting.
        self.stock_freed_listeners: list[Callable[[str, str], Awaitable[object]]] = []
        # Run when a show ends, after its sales, listings, lotteries and auctions wound
        # down (rooms.py `_wind_down`): polls close, group deals end their open groups.
        self.show_end_listeners: list[Callable[[str], Awaitable[object]]] = []
        # Told of each order once it is counted in Redis too (Buying._finish), after the
        # buyer's answer: fan points for the order, a referral's reward. At most once
        # per order and process (a process killed before telling them skips them).
        self.order_listeners: list[Callable[[Order], Awaitable[object]]] = []
        # Told of each order the host cancelled, once its units are back (orders.py):
        # the order's fan points and a referral reward it paid are taken back.
        self.cancel_listeners: list[Callable[[Order], Awaitable[object]]] = []
        self.channels: dict[str, str] = {}  # room -> its channel (never changes)
        # The post-show report's counts made here since the last flush (room -> name ->
        # n): holds granted, holds expired (features/reports.py adds them to Redis).
        self.report_counts: dict[str, dict[str, int]] = {}
        # Events published through this process, by type (the metrics take them).
        self.published: dict[str, int] = {}
        # The server's signing secret (viewer tokens; invite links sign with a key
        # derived from it): bound at start.
        self.secret = b""
        # Webhook events of things that already happened (not orders: those are
        # written with the order), waiting for the writer task: (room, kind, subject,
        # data, at), in the order they happened.
        self._outbox: collections.deque[tuple[str, str, str, dict[str, Any], int]] = \
            collections.deque()
        self._outbox_wake = asyncio.Event()
        self._outbox_task: asyncio.Task[None] | None = None
        self._outbox_closing = False

    def bind(self, data: StateData, hub: Hub, store: OrderStore, health: Health,
             recorder: Recorder | None, secret: bytes) -> None:
        self._data, self._hub, self._store = data, hub, store
        self.health, self.recorder = health, recorder
        self.secret = secret

    @property
    def data(self) -> StateData:
        if self._data is None:
            raise RuntimeError("the show is not started: no state layer bound yet")
        return self._data

    @property
    def hub(self) -> Hub:
        if self._hub is None:
            raise RuntimeError("the show is not started: no hub bound yet")
        return self._hub

    @property
    def store(self) -> OrderStore:
        if self._store is None:
            raise RuntimeError("the show is not started: no order store bound yet")
        return self._store

    @property
    def scripts(self) -> Scripts:
        return self.data.scripts

    def note_due(self, room_id: str, at: int) -> None:
        """Something of the room falls due at `at` (ms): the pulse puts it on its
        schedule at its next tick (Pulse.flush_due)."""
        known = self.due_pending.get(room_id)
        if known is None or at < known:
            self.due_pending[room_id] = at

    async def reschedule(self, room_id: str, recovery_not_before: int = 0) -> int | None:
        """Put the room on the pulse's schedule at its earliest job, hold, or
        checkout that may need recovery (store.recover_after_s after it began, not
        before `recovery_not_before`), or take it off when it has none
        (reschedule.lua); the new due time in ms. A 'confirming' hold was a held
        one first, on the schedule since it was granted: a process killed
        mid-checkout leaves it where every other process's pulse finds it.
        Off the schedule first, back on it after reading the room: the schedule
        is not in the room's hash slot, and in this order an item added meanwhile
        is never left unscheduled (server/state/schedule.py)."""
        schedule = self.data.schedule
        await schedule.off_schedule(room_id)
        try:
            due = await self.scripts.reschedule(
                room_id, recover_after_ms=int(self.settings.store.recover_after_s * 1000),
                recovery_not_before=recovery_not_before)
            if due is not None:
                await schedule.note_rooms({room_id: due})
        except BaseException:
            # Off the schedule but not back on it (Redis failed between, a slot moving
            # answered TRYAGAIN): due now, at the pulse's next tick (Pulse.flush_due),
            # not at the next reseed minutes later.
            self.note_due(room_id, now_ms())
            raise
        return due

    async def ensure_whole(self, room_id: str) -> str | None:
        """Refuse with `unavailable` while the room is being rebuilt, and with
        `room_not_found` when there is no such room; the show's state otherwise (read
        in the same round trip, for the guard of a host change)."""
        whole, exists, in_step, state = await self.data.rooms.presence(room_id)
        if whole:
            return state
        if exists or room_id in self.host_keys:
            raise rebuilding()
        # Only while Redis is rebuilt may a room exist that Redis does not know; only
        # then is the store asked (an unknown id from a stranger costs no file read).
        if not in_step and await self.store.room(room_id) is not None:
            raise rebuilding()
        raise refusal("room_not_found")

    async def check_host(self, room_id: str, key: str | None) -> None:
        expected = self.host_keys.get(room_id)
        if expected is None:
            expected = await self.data.rooms.host_key_hash(room_id)
            if expected is None:
                raise refusal("room_not_found")
            self.host_keys[room_id] = expected
        if not key:
            raise Unauthorized("this endpoint needs the room's host key "
                               "(header X-Host-Key or Authorization: Bearer)")
        if not secrets.compare_digest(domain.hash_key(key), expected):
            raise Unauthorized("wrong host key for this room")

    async def stock_freed(self, room_id: str, product_id: str) -> None:
        for listener in self.stock_freed_listeners:
            await listener(room_id, product_id)

    async def publish(self, room_id: str, event: dict[str, Any], keep: int = 0) -> int:
        """Number and fan out an event (server/core/events.py builds it); a chat
        message is also kept in the room's history of `keep` messages."""
        self.published[event["type"]] = self.published.get(event["type"], 0) + 1
        return int(await self.hub.publish(room_id, event, keep))

    def count(self, room_id: str, name: str, n: int = 1) -> None:
        """Count something for the room's post-show report (no Redis call here)."""
        counts = self.report_counts.setdefault(room_id, {})
        counts[name] = counts.get(name, 0) + n

    def outbox(self, room_id: str, kind: str, subject: str, data: dict[str, Any]) -> None:
        """Queue a webhook event (features/webhooks.py) for something that already
        happened. Its own task writes it, so no caller (a pulse tick, a job, a host
        request) waits on the store; a store that refuses is tried again each second,
        in order, while the process runs (orders' events are written with the order
        instead, in its transaction)."""
        if len(self._outbox) >= MAX_OUTBOX_WAITING:
            log.warning("webhook event %s of %s not written: %d events wait for the "
                        "store already", kind, subject, len(self._outbox))
            return
        self._outbox.append((room_id, kind, subject, data, now_ms()))
        self._outbox_wake.set()
        if self._outbox_task is None or self._outbox_task.done():
            self._outbox_task = asyncio.create_task(self._write_outbox(), name="outbox")

    async def _write_outbox(self) -> None:
        while True:
            if not self._outbox:
                if self._outbox_closing:
                    return
                await self._outbox_wake.wait()
                self._outbox_wake.clear()
            while self._outbox:
                try:
                    await self.store.add_outbox(*self._outbox[0])
                except StoreError as exc:
                    log.warning("webhook events wait for the store (%d): %s",
                                len(self._outbox), exc)
                    await asyncio.sleep(OUTBOX_RETRY_S)
                    continue
                except StoreClosed:
                    return
                self._outbox.popleft()

    async def stop_outbox(self, grace_s: float) -> None:
        """At shutdown, before the store closes: the events queued are written within
        `grace_s` (a store that cannot take them by then loses them, logged)."""
        self._outbox_closing = True
        self._outbox_wake.set()
        task = self._outbox_task
        if task is not None and not task.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(task), grace_s)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._outbox:
            log.warning("%d webhook events not written at shutdown", len(self._outbox))

    async def channel_of(self, room_id: str) -> str:
        """The room's channel (its owner, whose fans' points it adds to): Redis's room
        hash, else the store's record."""
        channel = self.channels.get(room_id)
        if channel is None:
            channel = await self.data.fans.room_channel(room_id) or \
                await self.store.room_channel(room_id)
            if len(self.channels) > 10_000:
                self.channels.clear()
            self.channels[room_id] = channel
        return channel
