"""The server's clockwork: timers, hold expiry, coalesced live numbers, and
keeping Redis in step with the order store.

- Timers (sale open/close, countdown ticks, lottery close) and expiring holds
  live in per-room sorted sets scored by due time; every process claims each
  due item with ZREM, so exactly one process fires it.
- The pulse works by due time: a schedule (the zset keys.DUE, room -> when its
  earliest timer or hold falls due) says which rooms have anything due, and only
  those are looked at; a room is put back at its next item (reschedule.lua) or
  taken off. Writers add an item, then lower the room's entry (ZADD LT), in one
  MULTI for timers; a granted hold is put on the schedule at the next tick
  (Show.note_due), so a buy pays no extra round trip. A checkout left
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
- On start, and whenever the epoch marker disappears from Redis (it lost its
  data), Redis is rebuilt from the store: sold counts come from the orders, so
  nothing the store holds as sold is ever sold again. Each room's rebuild first
  gives the room a new epoch in the store, which fences out every order still
  queued under the lost state, and only then reads what was sold; the room
  answers `unavailable` until its epoch key is back in Redis (docs/faults.md).
- Checkouts a dead or stalled process left half done are decided through the
  store (Show.recover_checkouts).
- Redis's memory use is watched against its maxmemory (MemoryWatch).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from redis.exceptions import RedisError, ResponseError

from server.core.domain import CouponDrop, Lottery, Sale, now_ms
from server.core.errors import LivesellError
from server.core.keys import (
    DUE,
    EPOCH,
    KEYWORD_ROOMS,
    REBUILD_LOCK,
    RECORDING_ROOMS,
    ROOMS,
    room_keys,
)
from server.core.protocol import encode
from server.features.rooms import ARCHIVED
from server.features.show import Show, new_epoch, sale_view, stock_view
from server.state.store import StoreError

log = logging.getLogger("livesell.pulse")

# Timers and expiring holds are polled at most every TIMER_TICK_S, and at least
# every TIMER_IDLE_S; in between, the poll sleeps until the earliest due item it
# saw, or until this process adds one (Show.timers_changed). Items added by
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
REBUILD_LOCK_S = 60
# A pulse timer that wakes this late found the event loop busy with work queued
# ahead of it (a sale's opening: thousands of buys). Coalesced numbers then go
# out at a quarter of their budget, but no room waits longer than BUSY_MAX_WAIT_S
# for them: answering buyers comes before repeating a counter that will have
# changed again by the time it arrives.
BUSY_LAG_S = 0.02
BUSY_STRETCH = 4.0
BUSY_MAX_WAIT_S = 1.0
# Redis's used_memory as a share of its maxmemory: above WARN a warning is logged,
# once; it is logged again only after the use fell below REARM (no flapping).
MEMORY_WARN_RATIO = 0.8
MEMORY_REARM_RATIO = 0.7


def coalesce_interval(members: int, budget: int, lag_s: float) -> float:
    """Seconds between coalesced updates for a room of `members` local viewers,
    given the deliveries-per-second budget and how late the loop is running."""
    interval = members / budget
    if lag_s > BUSY_LAG_S:
        interval = max(interval, min(interval * BUSY_STRETCH, BUSY_MAX_WAIT_S))
    return interval


class MemoryWatch:
    """Warns once per crossing when Redis nears its maxmemory. At maxmemory Redis
    evicts keys with a TTL (remembered answers, finished holds) and, with none
    left, refuses writes: buys would fail. One INFO call per upkeep tick."""

    def __init__(self) -> None:
        self.high = False
        self.enabled = True  # False once Redis refused INFO (a managed Redis may)

    async def check(self, redis: Any) -> float | None:
        """The share of maxmemory in use (None without a maxmemory), warning on
        the way up past MEMORY_WARN_RATIO."""
        if not self.enabled:
            return None
        try:
            info = await redis.info("memory")
        except ResponseError as exc:
            self.enabled = False
            log.info("redis refused INFO memory (%s); its memory is not watched", exc)
            return None
        limit = int(info.get("maxmemory", 0))
        if limit <= 0:
            return None
        used = int(info.get("used_memory", 0))
        ratio = used / limit
        if not self.high and ratio >= MEMORY_WARN_RATIO:
            self.high = True
            log.warning("redis uses %.0f%% of its maxmemory (%d of %d MiB): at the bound "
                        "it evicts remembered answers and finished holds, then refuses writes",
                        ratio * 100, used >> 20, limit >> 20)
        elif self.high and ratio < MEMORY_REARM_RATIO:
            self.high = False
            log.info("redis memory back to %.0f%% of its maxmemory", ratio * 100)
        return ratio


class Pulse:
    def __init__(self, show: Show) -> None:
        self.show = show
        self.redis: Any = show.redis
        self.settings = show.settings
        self._tasks: list[asyncio.Task[None]] = []
        self._to_recover: set[str] = set()  # rooms with checkouts for the recovery task
        self._last_coalesced: dict[str, float] = {}  # room -> when its counts last went out
        self.lag_s = 0.0  # how late the last pulse timer woke (the loop's backlog)
        # The rebuild generation this process last saw (the EPOCH marker's value): a
        # new one means Redis was rebuilt, and this process's viewers must be counted
        # present again, whichever process did the rebuild.
        self._seen_epoch: str | None = None
        self.memory = MemoryWatch()
        # How often every room's sorted sets are read again into the schedule (a
        # pipeline per 500 rooms: about 30 commands a second at 5,000 rooms).
        self.reseed_s = RESEED_S

    async def start(self) -> None:
        await self.ensure_in_step()
        await self.reseed_schedule()
        self._seen_epoch = await self.redis.get(EPOCH)
        hub = self.settings.hub
        self._tasks = [
            asyncio.create_task(self._loop(self.timers_tick, TIMER_TICK_S,
                                           self.show.timers_changed), name="timers"),
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
        with contextlib.suppress(RedisError, OSError):
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
            except (RedisError, OSError) as exc:
                self.show.health.redis_failed(exc)  # logged once, not once per tick
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
        pending, self.show.due_pending = self.show.due_pending, {}
        if pending:
            try:
                await self.redis.zadd(DUE, pending, lt=True)
            except BaseException:
                # Not written (Redis down, or shutting down): keep them for the next
                # tick, or those rooms' holds would wait for the reseed to expire.
                for room_id, at in pending.items():
                    self.show.note_due(room_id, at)
                raise

    async def reseed_schedule(self) -> None:
        """Schedule every room from its own sorted sets (at start and every
        reseed_s: see the module docstring). One pipeline per 500 rooms."""
        rooms = sorted(await self.redis.smembers(ROOMS))
        recover_ms = int(self.settings.store.recover_after_s * 1000)
        for start in range(0, len(rooms), 500):
            chunk = rooms[start:start + 500]
            async with self.redis.pipeline(transaction=False) as pipe:
                for room_id in chunk:
                    keys = room_keys(room_id)
                    pipe.zrange(keys.timers, 0, 0, withscores=True)
                    pipe.zrange(keys.holds, 0, 0, withscores=True)
                    pipe.zrange(keys.confirming, 0, 0, withscores=True)
                firsts = await pipe.execute()
            due: dict[str, float] = {}
            for i, room_id in enumerate(chunk):
                timer, hold, confirming = firsts[3 * i:3 * i + 3]
                times = [float(f[0][1]) for f in (timer, hold) if f]
                if confirming:
                    times.append(float(confirming[0][1]) + recover_ms)
                if times:
                    due[room_id] = min(times)
            if due:
                await self.redis.zadd(DUE, due, lt=True)

    # ------------------------------------------------------------------ timers and holds

    async def timers_tick(self) -> float:
        """Fire the due timers and expire the due holds of the rooms the schedule
        names as due; return the seconds until the next poll (until the earliest
        due room, at most TIMER_IDLE_S; TIMER_TICK_S when a full batch was due)."""
        # The wait returned counts from the tick's start (Pulse._loop adds it to the
        # moment the tick began): measured from its end instead, the poll woke early
        # by the tick's own duration, found nothing due yet, and fired a whole
        # TIMER_TICK_S late.
        began = now_ms()
        await self.flush_due()
        now = now_ms()
        rooms = await self.redis.zrangebyscore(DUE, "-inf", now, start=0, num=DUE_BATCH)
        for room_id in rooms:
            await self._room_due(room_id, now)
        if len(rooms) >= DUE_BATCH:
            return TIMER_TICK_S
        first = await self.redis.zrange(DUE, 0, 0, withscores=True)
        if not first:
            return TIMER_IDLE_S
        # One ms past the due time: now_ms() truncates, so a wake-up a fraction of a ms
        # early would find the item not yet due.
        return min(TIMER_IDLE_S, max(TIMER_TICK_S, (float(first[0][1]) + 1 - began) / 1000.0))

    async def _room_due(self, room_id: str, now: int) -> None:
        keys = room_keys(room_id)
        recover_ms = int(self.settings.store.recover_after_s * 1000)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zrangebyscore(keys.timers, "-inf", now, start=0, num=100)
            pipe.zrangebyscore(keys.holds, "-inf", now, start=0, num=500)
            pipe.zrangebyscore(keys.confirming, "-inf", now - recover_ms, start=0, num=1)
            timers, holds, stuck = await pipe.execute()
        not_before = 0
        if stuck:
            # Deciding waits on the store, which may be stalled: the recovery task
            # does it, and the room is not due for it again for a while.
            self._to_recover.add(room_id)
            not_before = now + RECOVERY_RETRY_MS
        try:
            for member in timers:
                # ZREM answers 1 to exactly one process: that one fires the timer.
                if await self.redis.zrem(keys.timers, member):
                    await self.fire(room_id, member)
            if holds:
                await self.show.expire_due_holds(room_id, list(holds))
        finally:
            # Back on the schedule at its next item (now, if more were due than taken).
            await self.show.reschedule(room_id, not_before)

    async def fire(self, room_id: str, member: str) -> None:
        kind, _, rest = member.partition(":")
        if kind == "sale_open":
            await self.show._sale_timer(room_id, "open", rest)
        elif kind == "sale_close":
            await self.show._sale_timer(room_id, "close", rest)
        elif kind == "countdown":
            sale_id, _, n = rest.partition(":")
            await self.show._sale_timer(room_id, "countdown", sale_id, int(n))
        elif kind == "lottery_close":
            # The timer is claimed (ZREM) and not retried: a lottery that cannot be
            # drawn now stays open for the host to draw; say why, once.
            try:
                await self.show.draw_lottery(room_id, rest)
            except LivesellError as exc:
                log.info("room %s: lottery %s not drawn at its close: %s (%s)", room_id,
                         rest, exc.code, exc)
            except (RedisError, OSError, StoreError):
                raise  # the pulse's loop reports these once per outage
            except Exception:
                log.exception("room %s: lottery %s could not be drawn at its close",
                              room_id, rest)

    # ------------------------------------------------------------------ coalesced numbers

    def _due_rooms(self, rooms: set[str]) -> set[str]:
        """Rooms whose coalesced updates may go out now: a room of N local viewers
        gets them at most every N / hub.coalesced_deliveries_per_s seconds, less
        often while the loop runs late (coalesce_interval)."""
        now = time.monotonic()
        budget, lag = self.settings.hub.coalesced_deliveries_per_s, self.lag_s
        due = set()
        for room_id in rooms:
            local = self.show.hub.rooms.get(room_id)
            interval = coalesce_interval(len(local.members), budget, lag) \
                if local is not None else 0.0
            if now - self._last_coalesced.get(room_id, 0.0) >= interval:
                due.add(room_id)
        return due

    async def stock_tick(self) -> None:
        show = self.show
        due = self._due_rooms({r for r, _ in show.dirty_stock} |
                              {r for r, _, _ in show.dirty_counts})
        if not due:
            return
        # Rooms not yet due keep their marks for a later tick.
        counts = {c for c in show.dirty_counts if c[0] in due}
        show.dirty_counts -= counts
        dirty = {d for d in show.dirty_stock if d[0] in due}
        show.dirty_stock -= dirty
        now = time.monotonic()
        for room_id in due:
            self._last_coalesced[room_id] = now
        await self.counts_tick(counts)
        if not dirty:
            return
        items = sorted(dirty)
        async with self.redis.pipeline(transaction=False) as pipe:
            for room_id, pid in items:
                keys = room_keys(room_id)
                pipe.hgetall(keys.stock(pid))
                pipe.get(keys.product_sale(pid))
            res = await pipe.execute()
        async with self.redis.pipeline(transaction=False) as pipe:
            for (room_id, _), sid in zip(items, res[1::2], strict=True):
                pipe.hgetall(room_keys(room_id).sale(sid or "-"))
            sales = await pipe.execute()
        now = now_ms()
        published = []
        for (room_id, pid), stock, sale in zip(items, res[0::2], sales, strict=True):
            sv = stock_view(stock)
            published.append(self.show.hub.publish(room_id, {
                "type": "stock", "product_id": pid, "stock": sv,
                "sale": sale_view(sale, sv["left"], now) if sale else None}))
        await asyncio.gather(*published)

    async def counts_tick(self, dirty: set[tuple[str, str, str]]) -> None:
        if not dirty:
            return
        items = sorted(dirty)
        async with self.redis.pipeline(transaction=False) as pipe:
            for room_id, kind, item_id in items:
                keys = room_keys(room_id)
                if kind == "coupon":
                    pipe.hmget(keys.coupon(item_id), ["count", "claimed"])
                else:
                    pipe.scard(keys.entrants(item_id))
            res = await pipe.execute()
        published = []
        for (room_id, kind, item_id), value in zip(items, res, strict=True):
            if kind == "coupon":
                remaining = max(0, int(value[0] or 0) - int(value[1] or 0))
                event = {"type": "coupon_count", "coupon_id": item_id, "remaining": remaining}
            else:
                event = {"type": "lottery_entrants", "lottery_id": item_id,
                         "entrants": int(value)}
            published.append(self.show.hub.publish(room_id, event))
        await asyncio.gather(*published)

    async def likes_tick(self) -> None:
        likes, self.show.likes = self.show.likes, {}
        for room_id, n in likes.items():
            total = await self.redis.incrby(room_keys(room_id).likes, n)
            await self.show.hub.publish(room_id, {"type": "likes", "total": int(total)})

    async def viewers_tick(self) -> None:
        dirty, self.show.hub.dirty_viewers = self.show.hub.dirty_viewers, set()
        for room_id in sorted(dirty):
            counts = await self.show.scripts.viewers(room_id)
            await self.show.hub.publish(room_id, {"type": "viewers", "now": counts.now,
                                            "unique": counts.unique, "peak": counts.peak})

    async def upkeep_tick(self) -> None:
        epoch = await self.redis.get(EPOCH)
        if epoch is None:
            log.warning("redis lost its data: rebuilding it from the order store")
            await self.ensure_in_step()
            epoch = await self.redis.get(EPOCH)
        if epoch is not None and epoch != self._seen_epoch:
            self._seen_epoch = epoch
            n = await self.show.hub.reassert_presence()
            self.show.hub.resync_all()
            log.info("redis was rebuilt: %d viewers of this process counted present again "
                     "and sent a snapshot", n)
        # Only rooms that opened a keyword lottery, or whose host switched recording
        # on: an idle room costs nothing here.
        keyword_rooms = await self.redis.smembers(KEYWORD_ROOMS)
        for room_id in sorted(keyword_rooms):
            await self.show.refresh_keyword_lotteries(room_id)
        for room_id in set(self.show.keyword_lotteries) - set(keyword_rooms):
            self.show.keyword_lotteries.pop(room_id, None)
        if self.show.recorder is not None:
            self.show.recorder.rooms = set(await self.redis.smembers(RECORDING_ROOMS))
        await self.memory.check(self.redis)

    async def recovery_tick(self) -> None:
        """Decide the checkouts left 'confirming' past store.recover_after_s
        (Show.recover_checkouts) in the rooms the timer poll found them in."""
        rooms, self._to_recover = self._to_recover, set()
        before = now_ms() - int(self.settings.store.recover_after_s * 1000)
        for room_id in sorted(rooms):
            holds = await self.redis.zrangebyscore(room_keys(room_id).confirming, "-inf",
                                                   before)
            if holds:
                await self.show.recover_checkouts(room_id, holds)

    # ------------------------------------------------------------------ rebuild

    async def ensure_in_step(self) -> None:
        """Rebuild Redis from the store when Redis has no epoch marker."""
        if await self.redis.exists(EPOCH):
            await self.adopt_rooms()
            return
        token = new_epoch()
        if not await self.redis.set(REBUILD_LOCK, token, nx=True, ex=REBUILD_LOCK_S):
            # Another process is rebuilding; wait for it to finish.
            for _ in range(REBUILD_LOCK_S * 10):
                await asyncio.sleep(0.1)
                if await self.redis.exists(EPOCH):
                    return
            return
        try:
            states = await self.show.store.room_states()
            for room in await self.show.store.rooms():
                if states.get(room["room_id"], {}).get("state") == ARCHIVED:
                    continue  # its Redis state was released on purpose
                await self.rebuild_room(room)
                # Still ours: a rebuild waiting on a slow store must not lose the lock.
                await self.redis.set(REBUILD_LOCK, token, xx=True, ex=REBUILD_LOCK_S)
            generation = str(now_ms())
            await self.redis.set(EPOCH, generation)
            self._seen_epoch = generation  # this process counted its viewers already
        finally:
            if await self.redis.get(REBUILD_LOCK) == token:
                await self.redis.delete(REBUILD_LOCK)

    async def adopt_rooms(self) -> None:
        """Give an epoch to rooms that Redis holds without one (loaded by a version
        before epochs existed). Their state is kept as it is: only the fence starts.
        Every process agrees on the epoch, so concurrent starts adopt the same one."""
        store = self.show.store
        rooms = [r["room_id"] for r in await store.rooms()]
        if not rooms:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for room_id in rooms:
                pipe.exists(room_keys(room_id).epoch)
                pipe.exists(room_keys(room_id).room)
            found = await pipe.execute()
        for i, room_id in enumerate(rooms):
            has_epoch, has_room = found[2 * i], found[2 * i + 1]
            if has_epoch or not has_room:
                continue
            epoch = await store.room_epoch(room_id)
            if not epoch:
                epoch = "adopted"
                await store.set_room_epoch(room_id, epoch)
            await self.redis.set(room_keys(room_id).epoch, epoch, nx=True)
            log.info("room %s: adopted its Redis state under epoch %s", room_id, epoch)

    async def rebuild_room(self, room: dict[str, Any]) -> None:
        show, store = self.show, self.show.store
        room_id = room["room_id"]
        keys = room_keys(room_id)
        lifecycle = await store.room_state(room_id)
        # The room answers 'unavailable' until its epoch is back (set last, below).
        await self.redis.delete(keys.epoch)
        # The fence: from this commit on, an order whose checkout began under the lost
        # state is refused by the store. Orders committed before it are in the reads
        # below, so every order the store will ever hold for the old state is counted.
        epoch = new_epoch()
        await store.set_room_epoch(room_id, epoch)
        await show._load_room_into_redis(room_id, room["title"], room["stream_url"],
                                         room["host_key_hash"], room["created_at"])
        # Held counts restart at 0 below, so no hold from before may move units again:
        # not through expiry (the zsets) and not through a release or a checkout of a
        # hold hash that survived (a partial loss, an operator deleting the marker, a
        # second rebuild after a failed one). Their orders, if any, are in the store.
        await self.redis.delete(keys.holds, keys.confirming, keys.open_holds)
        stale = [k async for k in self.redis.scan_iter(match=keys.hold("*"), count=1000)]
        for start in range(0, len(stale), 1000):
            await self.redis.unlink(*stale[start:start + 1000])
        # Sequence numbers continue above anything handed out before the loss.
        await self.redis.set(keys.seq, max(now_ms(), int(await self.redis.get(keys.seq) or 0)))
        sold = await store.sold_by_product(room_id)
        by_sale = await store.sold_by_sale_and_buyer(room_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            for i, (data, stock) in enumerate(await store.products(room_id)):
                pid = data["product_id"]
                n = sold.get(pid, 0)
                pipe.hset(keys.products, pid, encode({**data, "position": i + 1}))
                pipe.hset(keys.stock(pid), mapping={"total": stock, "left": max(0, stock - n),
                                                    "held": 0, "sold": n})
            await pipe.execute()
        for data, stopped_at in await store.sales(room_id):
            sale = Sale(**data)
            buyers = by_sale.get(sale.sale_id, {})
            await show._load_sale_into_redis(room_id, sale, held=0, sold=sum(buyers.values()),
                                             stopped=stopped_at is not None, bought=buyers)
        uses = await store.coupon_uses(room_id)
        for data in await store.coupon_drops(room_id):
            drop = CouponDrop(**data)
            used = uses.get(drop.coupon_id, {})
            await show._load_coupon_into_redis(room_id, drop, claimed=len(used), uses=used)
        entrants = await store.lottery_entrants(room_id)
        for data, _seed, result in await store.lotteries(room_id):
            lottery = Lottery(**data)
            await show._load_lottery_into_redis(room_id, lottery, result,
                                                entrants.get(lottery.lottery_id, []))
        # As the store has it: an ended room stays ended (its sales were stopped in
        # the store, its lotteries drawn, so nothing above scheduled a timer).
        await show.lifecycle.load_into_redis(room_id, lifecycle)
        await show.load_policy(room_id)
        # This process's viewers are present before the room opens again (a lottery
        # needs them); other processes re-count theirs when they see the rebuild.
        await show.hub.reassert_presence(room_id)
        await show.mark_whole(room_id, epoch)
        # Every viewer has a gap (numbers jumped, events were dropped meanwhile).
        show.hub.resync_all(room_id)
        log.info("rebuilt room %s from the store", room_id)


