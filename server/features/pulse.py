"""The server's clockwork: timers, hold expiry, coalesced live numbers, and
keeping Redis in step with the order store.

- Due jobs (server/core/jobs.py: a sale's opening, closing and countdown ticks,
  a lottery's close, whatever a feature registers) and expiring holds live in
  per-room sorted sets scored by due time (server/state/schedule.py); every
  process claims each due job with ZREM, so exactly one process runs it, with
  the handler its feature registered for the job's kind.
- The pulse works by due time: a schedule (the zset keys.DUE, room -> when its
  earliest timer or hold falls due) says which rooms have anything due, and only
  those are looked at; a room is put back at its next item (reschedule.lua) or
  taken off. Writers add an item, then lower the room's entry (ZADD LT), in one
  MULTI for timers; a granted hold is put on the schedule at the next tick
  (Context.note_due), so a buy pays no extra round trip. A checkout left
  'confirming' is due store.recover_after_s after it began; the timer poll hands
  such rooms to the recovery task, which may wait on a stalled store. An idle
  room costs nothing: idle CPU does not grow with the number of rooms
  (docs/benchmarks.md). Each start, and then every RESEED_S, re-seeds the
  schedule from every room's sorted sets (a process killed within a tick of
  granting a hold may have left it off; so does a version before the schedule),
  so such a hold expires at most RESEED_S late while any process runs.
- Stock, like totals and viewer counts change far faster than anyone can read;
  they are published as the latest value at a bounded rate, never one frame
  per change.
- Once a second, whether Redis lost its data (then it is rebuilt from the
  store: server/features/restore.py), and the upkeep features registered.
- Checkouts a dead or stalled process left half done are decided through the
  store (Buying.recover_checkouts).
- Redis's memory use is watched against its maxmemory (MemoryWatch).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from server.core import events
from server.core.domain import now_ms
from server.core.gcpolicy import BURST_START
from server.core.jobs import Job
from server.core.views import sale_view, stock_view
from server.features.buying import Buying
from server.features.context import Context
from server.features.registry import Registry
from server.features.restore import Restore
from server.state.faults import REDIS_FAULTS
from server.state.schedule import ScheduleData
from server.state.store import StoreError

log = logging.getLogger("livesell.pulse")

# Timers and expiring holds are polled at most every TIMER_TICK_S, and at least
# every TIMER_IDLE_S; in between, the poll sleeps until the earliest due item it
# saw, or until this process adds one (Context.timers_changed). Items added by
# other processes are fired by those processes' own polls; this one finds them
# within TIMER_IDLE_S, should the other process be gone. Polling every 50 ms
# regardless was most of an idle server's CPU (15 of 18 ms per second).
TIMER_TICK_S = 0.05
TIMER_IDLE_S = 1.0
# Rooms handled per poll: more due at once are taken at the next poll, TIMER_TICK_S later.
DUE_BATCH = 200
# A room handed to recovery is not due for recovery again sooner than this.
RECOVERY_RETRY_MS = 1000
RESEED_S = 300.0
# A pulse timer that wakes this late found the event loop busy with work queued
# ahead of it (a sale's opening: thousands of buys). Coalesced numbers then go
# out at a quarter of their budget, but no room waits longer than BUSY_MAX_WAIT_S
# for them: answering buyers comes before repeating a counter that will have
# changed again by the time it arrives.
BUSY_LAG_S = 0.02
BUSY_STRETCH = 4.0
BUSY_MAX_WAIT_S = 1.0
# While this many viewer requests run at once in the process (a sale's opening:
# thousands of buys), a changed number waits until it is BUSY_MAX_WAIT_S old
# rather than going out as soon as its room's interval allows. Each such update
# is a write to every viewer of the room (0.1 s of the core at 10,000 viewers);
# three or four of them landed in a 1.2-1.7 s sale burst, whose buyers waited
# behind them. The loop's lateness alone did not show that burst: the pulse's
# timers kept waking on time between the requests. The same count as the burst
# that holds off the garbage collector.
BUSY_REQUESTS = BURST_START


def coalesced_due(now: float, last_sent: float, dirty_since: float, interval: float,
                  requests_running: int) -> bool:
    """Whether a room's changed numbers go out now: `interval` (coalesce_interval)
    after the last update; while BUSY_REQUESTS or more viewer requests run, also
    not before the oldest unsent change is BUSY_MAX_WAIT_S old."""
    if now - last_sent < interval:
        return False
    return requests_running < BUSY_REQUESTS or now - dirty_since >= BUSY_MAX_WAIT_S


def coalesce_interval(members: int, budget: int, lag_s: float) -> float:
    """Seconds between coalesced updates for a room of `members` local viewers,
    given the deliveries-per-second budget and how late the loop is running."""
    interval = members / budget
    if lag_s > BUSY_LAG_S:
        interval = max(interval, min(interval * BUSY_STRETCH, BUSY_MAX_WAIT_S))
    return interval


class Pulse:
    def __init__(self, ctx: Context, registry: Registry, buying: Buying,
                 restore: Restore) -> None:
        self.ctx = ctx
        self.registry = registry
        self.buying = buying
        self.restore = restore
        self.settings = ctx.settings
        self._tasks: list[asyncio.Task[None]] = []
        self._to_recover: set[str] = set()  # rooms with checkouts for the recovery task
        self._last_coalesced: dict[str, float] = {}  # room -> when its counts last went out
        # room -> when a tick first saw a change of its numbers not yet sent
        self._dirty_since: dict[str, float] = {}
        self.lag_s = 0.0  # how late the last pulse timer woke (the loop's backlog)
        # Sales whose every unit is sold and whose webhook event this process wrote.
        self._told_sold_out: set[str] = set()
        # How often every room's sorted sets are read again into the schedule (a
        # pipeline per 500 rooms: about 30 commands a second at 5,000 rooms).
        self.reseed_s = RESEED_S

    @property
    def schedule(self) -> ScheduleData:
        return self.ctx.data.schedule

    async def start(self) -> None:
        await self.restore.ensure_in_step()
        await self.reseed_schedule()
        self.restore.seen_generation = await self.ctx.data.rebuild.generation()
        hub = self.settings.hub
        self._tasks = [
            asyncio.create_task(self._loop(self.timers_tick, TIMER_TICK_S,
                                           self.ctx.timers_changed), name="timers"),
            asyncio.create_task(self._loop(self.stock_tick, 1.0 / hub.stock_updates_per_s),
                                name="stock"),
            asyncio.create_task(self._loop(self.likes_tick, 1.0 / hub.like_updates_per_s),
                                name="likes"),
            asyncio.create_task(self._loop(self.viewers_tick, 1.0 / hub.viewer_updates_per_s),
                                name="viewers"),
            asyncio.create_task(self._loop(self.upkeep_tick, 1.0), name="upkeep"),
            # Apart from upkeep: deciding a checkout waits on the store, which may be
            # stalled, and must not delay noticing that Redis lost its data.
            asyncio.create_task(self._loop(self.recovery_tick, 1.0), name="recovery"),
            # The schedule's safety net: a hold granted by a process killed within a
            # tick of granting it is off the schedule; any live process puts it back.
            asyncio.create_task(self._loop(self.reseed_schedule, self.reseed_s),
                                name="reseed"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        # Bounded, and cancellable itself: a tick stuck in a call that swallows its
        # cancellation once hung shutdown at "Waiting for application shutdown".
        if self._tasks:
            _, stuck = await asyncio.wait(self._tasks, timeout=5.0)
            for task in stuck:
                log.warning("pulse task %s did not stop; leaving it", task.get_name())
        # Last flush of coalesced numbers, so totals are not lost at shutdown.
        with contextlib.suppress(*REDIS_FAULTS):
            await self.likes_tick()
            await self.stock_tick()

    async def _loop(self, tick: Callable[[], Awaitable[Any]], interval: float,
                    wake: asyncio.Event | None = None) -> None:
        """Run `tick` at most every `interval` seconds. A tick that returns a number
        of seconds asks for its next run that much later; `wake`, set meanwhile,
        cuts such a longer wait short (never the `interval`)."""
        while True:
            started = time.monotonic()
            if wake is not None:
                wake.clear()
            wait: object = None
            try:
                wait = await tick()
            except asyncio.CancelledError:
                raise
            except REDIS_FAULTS as exc:
                self.ctx.health.redis_failed(exc)  # logged once, not once per tick
                await asyncio.sleep(0.5)
            except StoreError as exc:
                log.warning("%s: %s", tick.__name__, exc)
                await asyncio.sleep(0.5)
            except Exception:
                log.exception("%s failed", tick.__name__)
            before = time.monotonic()
            delay = max(0.0, started + interval - before)
            await asyncio.sleep(delay)
            # Lateness of the wake-up itself, not of the tick's own work.
            self.lag_s = max(0.0, time.monotonic() - before - delay)
            rest = started + wait - time.monotonic() if isinstance(wait, float) else 0.0
            if rest > 0:
                if wake is None:
                    await asyncio.sleep(rest)
                elif not wake.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(wake.wait(), rest)

    # ------------------------------------------------------------------ schedule

    async def flush_due(self) -> None:
        """Put the rooms of holds granted here since the last tick on the schedule."""
        pending, self.ctx.due_pending = self.ctx.due_pending, {}
        if pending:
            try:
                await self.schedule.note_rooms(pending)
            except BaseException:
                # Not written (Redis down, or shutting down): keep them for the next
                # tick, or those rooms' holds would wait for the reseed to expire.
                for room_id, at in pending.items():
                    self.ctx.note_due(room_id, at)
                raise

    async def reseed_schedule(self) -> None:
        """Schedule every room from its own sorted sets (at start and every
        reseed_s: see the module docstring). One pipeline per 500 rooms."""
        rooms = await self.schedule.rooms()
        recover_ms = int(self.settings.store.recover_after_s * 1000)
        for start in range(0, len(rooms), 500):
            await self.schedule.note_rooms(
                await self.schedule.earliest(rooms[start:start + 500], recover_ms))

    # ------------------------------------------------------------------ jobs and holds

    async def timers_tick(self) -> float:
        """Run the due jobs and expire the due holds of the rooms the schedule
        names as due; return the seconds until the next poll (until the earliest
        due room, at most TIMER_IDLE_S; TIMER_TICK_S when a full batch was due)."""
        # The wait returned counts from the tick's start (Pulse._loop adds it to the
        # moment the tick began): measured from its end instead, the poll woke early
        # by the tick's own duration, found nothing due yet, and fired a whole
        # TIMER_TICK_S late.
        began = now_ms()
        await self.flush_due()
        now = now_ms()
        rooms = await self.schedule.due_rooms(now, DUE_BATCH)
        for room_id in rooms:
            await self._room_due(room_id, now)
        if len(rooms) >= DUE_BATCH:
            return TIMER_TICK_S
        first = await self.schedule.first_due()
        if first is None:
            return TIMER_IDLE_S
        # One ms past the due time: now_ms() truncates, so a wake-up a fraction of a ms
        # early would find the item not yet due.
        return min(TIMER_IDLE_S, max(TIMER_TICK_S, (first + 1 - began) / 1000.0))

    async def _room_due(self, room_id: str, now: int) -> None:
        recover_ms = int(self.settings.store.recover_after_s * 1000)
        jobs, holds, stuck = await self.schedule.room_due(room_id, now, recover_ms)
        not_before = 0
        if stuck:
            # Deciding waits on the store, which may be stalled: the recovery task
            # does it, and the room is not due for it again for a while.
            self._to_recover.add(room_id)
            not_before = now + RECOVERY_RETRY_MS
        try:
            for member in jobs:
                # ZREM answers 1 to exactly one process: that one runs the job.
                if await self.schedule.claim(room_id, member):
                    await self.run(room_id, member)
            if holds:
                await self.buying.expire_due_holds(room_id, holds)
        finally:
            # Back on the schedule at its next item (now, if more were due than taken).
            await self.ctx.reschedule(room_id, not_before)

    async def run(self, room_id: str, member: str) -> None:
        """Hand a claimed job to the handler registered for its kind."""
        job = Job.parse(member)
        handler = self.registry.jobs.get(job.kind)
        if handler is None:
            # A job of a kind no feature of this version handles (written by another
            # version): claimed, so it is dropped; say so once per job.
            log.warning("room %s: no handler for due job %r; dropped", room_id, member)
            return
        await handler(room_id, job.item)

    # ------------------------------------------------------------------ coalesced numbers

    def _due_rooms(self, rooms: set[str]) -> set[str]:
        """Rooms whose coalesced updates may go out now: a room of N local viewers
        gets them at most every N / hub.coalesced_deliveries_per_s seconds, less
        often while the loop runs late (coalesce_interval) or many viewer requests
        run (coalesced_due)."""
        now = time.monotonic()
        budget, lag = self.settings.hub.coalesced_deliveries_per_s, self.lag_s
        running = self.ctx.requests_running()
        due = set()
        for room_id in rooms:
            local = self.ctx.hub.rooms.get(room_id)
            interval = coalesce_interval(len(local.members), budget, lag) \
                if local is not None else 0.0
            since = self._dirty_since.setdefault(room_id, now)
            if coalesced_due(now, self._last_coalesced.get(room_id, 0.0), since, interval,
                             running):
                due.add(room_id)
                del self._dirty_since[room_id]
        return due

    async def stock_tick(self) -> None:
        ctx = self.ctx
        due = self._due_rooms({r for r, _ in ctx.dirty_stock} |
                              {r for r, _, _ in ctx.dirty_counts})
        if not due:
            return
        # Rooms not yet due keep their marks for a later tick.
        counts = {c for c in ctx.dirty_counts if c[0] in due}
        ctx.dirty_counts -= counts
        dirty = {d for d in ctx.dirty_stock if d[0] in due}
        ctx.dirty_stock -= dirty
        now = time.monotonic()
        for room_id in due:
            self._last_coalesced[room_id] = now
        await self.counts_tick(counts)
        if not dirty:
            return
        items = sorted(dirty)
        read = await ctx.data.catalogue.stocks_and_sales(items)
        at = now_ms()
        published = []
        sold_out = []
        for (room_id, pid), (stock, sale, waiting) in zip(items, read, strict=True):
            sv = stock_view(stock)
            view = sale_view(sale, sv["left"], at) if sale else None
            published.append(ctx.publish(room_id, events.stock(pid, sv, view, waiting)))
            if view is not None and view["units"] and view["sold"] >= view["units"] \
                    and view["sale_id"] not in self._told_sold_out:
                sold_out.append((room_id, view))
        await asyncio.gather(*published)
        for room_id, view in sold_out:
            # Once per sale (the outbox keeps one event per sale whoever writes it).
            if len(self._told_sold_out) > 100_000:
                self._told_sold_out.clear()
            self._told_sold_out.add(view["sale_id"])
            ctx.outbox(room_id, "sale.sold_out", view["sale_id"], view)

    async def counts_tick(self, dirty: set[tuple[str, str, str]]) -> None:
        if not dirty:
            return
        for kind, reader in self.ctx.count_readers.items():
            theirs = sorted((r, i) for r, k, i in dirty if k == kind)
            if theirs:
                await asyncio.gather(*(self.ctx.publish(room_id, event)
                                       for room_id, event in await reader(theirs)))
        items = sorted(d for d in dirty if d[1] not in self.ctx.count_readers)
        if not items:
            return
        values = await self.ctx.data.offers.counts(items)
        await asyncio.gather(*(
            self.ctx.publish(room_id, events.coupon_count(item_id, value) if kind == "coupon"
                             else events.lottery_entrants(item_id, value))
            for (room_id, kind, item_id), value in zip(items, values, strict=True)))

    async def likes_tick(self) -> None:
        likes, self.ctx.likes = self.ctx.likes, {}
        for room_id, n in likes.items():
            total = await self.ctx.data.chat.add_likes(room_id, n)
            await self.ctx.publish(room_id, events.likes(total))

    async def viewers_tick(self) -> None:
        hub = self.ctx.hub
        dirty, hub.dirty_viewers = hub.dirty_viewers, set()
        for room_id in sorted(dirty):
            counts = await self.ctx.scripts.viewers(room_id)
            await self.ctx.publish(room_id, events.viewers(counts.now, counts.unique,
                                                           counts.peak))

    async def upkeep_tick(self) -> None:
        await self.restore.check()
        for task in self.registry.upkeep:
            await task()
        await self.ctx.data.check_memory()

    async def recovery_tick(self) -> None:
        """Decide the checkouts left 'confirming' past store.recover_after_s
        (Buying.recover_checkouts) in the rooms the timer poll found them in."""
        rooms, self._to_recover = self._to_recover, set()
        before = now_ms() - int(self.settings.store.recover_after_s * 1000)
        for room_id in sorted(rooms):
            holds = await self.ctx.data.sales.confirming_before(room_id, before)
            if holds:
                await self.buying.recover_checkouts(room_id, holds)
