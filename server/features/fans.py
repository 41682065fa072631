"""Fan points and levels (docs/protocol.md section 19): points for watching,
chat, likes, shares that bring a join, and orders, per channel (the room's
owner), awarded here only, once per award id, within a per-minute cap
(lua/award.lua decides), and recorded in the order store; the viewer's
standing, the host's leaderboard, and the level a lottery or group deal may
require.

Redis decides an award first (its id not seen, the cap), then the store
records it (again once per id); when the store refuses, Redis takes the award
back, so the two keep agreeing. Redis's points are the store's, cached: levels
in chat and the level gates read them; a channel Redis lost is loaded from the
store before its next award."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Final

from server.core import fans
from server.core.domain import now_ms
from server.core.errors import BadRequest, refusal
from server.core.identity import Viewer
from server.core.protocol import FanStatus, Watching
from server.core.schema import paged
from server.features.context import Answer, Context
from server.features.registry import Call, ChatPost, Registry, Route, ViewerCall
from server.state.faults import REDIS_FAULTS
from server.state.store import Order, StoreError

log = logging.getLogger("livesell.fans")

# How long Redis remembers an award's id; the store remembers it for ever.
REMEMBER_S: Final = 86400
LOAD_WAIT_S: Final = 30.0  # the longest a channel's points take to load from the store
MAX_LIKERS: Final = 100_000  # (room, viewer) pairs kept for the once-a-minute like award


LEADERBOARD_QUERY = paged(20, 100)


class Fans:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.settings = ctx.settings.fans
        self.thresholds = self.settings.thresholds
        self._loading: dict[str, asyncio.Lock] = {}
        # The minute each (room, viewer) last earned like points here: a like frame
        # costs no Redis call when the minute's award was already asked for.
        self._liked: dict[tuple[str, str], int] = {}
        self._background: set[asyncio.Task[Any]] = set()

    def register(self, registry: Registry) -> None:
        registry.route(Route("GET", "/fans", self._leaderboard, needs_whole=False,
                             query=LEADERBOARD_QUERY))
        registry.message(Watching, self._watching)
        registry.message(FanStatus, self._status)
        registry.on_chat(self._chatted)
        self.ctx.order_listeners.append(self._ordered)
        self.ctx.cancel_listeners.append(self._cancelled)

    # ------------------------------------------------------------------ awards

    async def award(self, room_id: str, viewer: Viewer, kind: str, award_id: str,
                    points: int, capped: bool = True) -> tuple[int, int]:
        """Award `points` once under `award_id`; (points given, the viewer's total).
        Raises StoreError when the store could not record it (nothing was given)."""
        channel = await self.ctx.channel_of(room_id)
        if not self.settings.enabled or points == 0:
            return 0, await self.ctx.data.fans.points(channel, viewer.viewer_id)
        now = now_ms()
        cap = self.settings.cap_per_minute if capped else 0
        for _ in range(3):
            got = await self.ctx.scripts.award(channel, award_id=award_id,
                                               viewer=viewer.viewer_id, points=points,
                                               cap=cap, remember_s=REMEMBER_S,
                                               minute=now // 60_000)
            if got.status != "unloaded":
                break
            await self.load(channel)
        else:  # pragma: no cover - the load marks the channel loaded
            raise StoreError("fan points could not be loaded")
        if got.status == "dup" or got.points == 0:
            return 0 if got.status == "dup" else got.points, got.total
        try:
            recorded = await self.ctx.store.add_fan_award(
                channel, award_id, viewer.viewer_id, viewer.nickname, got.points, kind,
                room_id, now)
        except Exception:
            await self.ctx.data.fans.undo_award(channel, award_id, viewer.viewer_id,
                                                got.points, now // 60_000, capped)
            raise
        if not recorded:
            # Redis forgot the id (REMEMBER_S), the store did not: given before.
            await self.ctx.data.fans.undo_award(channel, award_id, viewer.viewer_id,
                                                got.points, now // 60_000, capped)
            return 0, got.total - got.points
        return got.points, got.total

    async def load(self, channel: str) -> None:
        """Put the store's points of the channel into Redis (after Redis lost them):
        one process loads, the others wait for it (bounded by LOAD_WAIT_S)."""
        lock = self._loading.setdefault(channel, asyncio.Lock())
        data = self.ctx.data.fans
        async with lock:
            if await data.claim_load(channel, int(LOAD_WAIT_S * 1000)):
                await data.load(channel, await self.ctx.store.fan_totals(channel))
                return
            loop = asyncio.get_running_loop()
            deadline = loop.time() + LOAD_WAIT_S
            while not await data.loaded(channel):
                if loop.time() > deadline:
                    raise StoreError(f"fan points of {channel} not loaded in {LOAD_WAIT_S} s")
                await asyncio.sleep(0.05)

    def award_later(self, room_id: str, viewer: Viewer, kind: str, award_id: str,
                    points: int, capped: bool = True) -> None:
        """Award in the background (after the answer that earned it); a failure is
        logged, and the award is not made."""
        task = asyncio.get_running_loop().create_task(
            self._award_quietly(room_id, viewer, kind, award_id, points, capped))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _award_quietly(self, room_id: str, viewer: Viewer, kind: str, award_id: str,
                             points: int, capped: bool) -> None:
        try:
            await self.award(room_id, viewer, kind, award_id, points, capped)
        except (StoreError, *REDIS_FAULTS) as exc:
            log.info("fan award %s not made: %s", award_id, exc)
        except Exception:
            log.exception("fan award %s failed", award_id)

    async def _chatted(self, post: ChatPost) -> None:
        if not post.from_host:
            self.award_later(post.room_id, post.viewer, "chat", f"chat:{post.message_id}",
                             self.settings.chat_points)

    def liked(self, room_id: str, viewer: Viewer) -> None:
        """A like frame (answered at once, no Redis): like points once a minute."""
        now = now_ms()
        minute = now // 60_000
        key = (room_id, viewer.viewer_id)
        if self._liked.get(key) == minute:
            return
        if len(self._liked) >= MAX_LIKERS:
            self._liked.clear()
        self._liked[key] = minute
        self.award_later(room_id, viewer, "like",
                         fans.minute_award("like", room_id, viewer.viewer_id, now),
                         self.settings.like_points)

    async def _ordered(self, order: Order) -> None:
        # The buyer's nickname is not on the order: '' keeps the one the store knows.
        viewer = Viewer(order.buyer_id, "", 0)
        await self.award(order.room_id, viewer, "order", f"order:{order.order_id}",
                         self.settings.order_points, capped=False)

    async def _cancelled(self, order: Order) -> None:
        await self.take_back(order.room_id, f"order:{order.order_id}",
                             f"order-cancel:{order.order_id}")

    async def take_back(self, room_id: str, award_id: str, reversal_id: str) -> int:
        """Take back a recorded award, once (the store decides); the points taken."""
        channel = await self.ctx.channel_of(room_id)
        reversed_ = await self.ctx.store.reverse_fan_award(channel, award_id, reversal_id,
                                                           room_id, now_ms())
        if reversed_ is None:
            return 0
        viewer_id, points = reversed_
        await self.ctx.data.fans.take_back(channel, viewer_id, points)
        return points

    # ------------------------------------------------------------------ viewers

    async def _watching(self, call: ViewerCall, msg: Watching) -> Answer:
        await self.ctx.ensure_whole(call.room_id)
        awarded, total = await self.award(
            call.room_id, call.viewer, "watch",
            fans.minute_award("watch", call.room_id, call.viewer.viewer_id, now_ms()),
            self.settings.watch_points)
        return await self._answer(call.room_id, total, awarded)

    async def _status(self, call: ViewerCall, msg: FanStatus) -> Answer:
        channel = await self.ctx.channel_of(call.room_id)
        await self.ensure_loaded(channel)
        return await self._answer(call.room_id,
                                  await self.ctx.data.fans.points(channel,
                                                                  call.viewer.viewer_id), 0)

    async def _answer(self, room_id: str, total: int, awarded: int) -> Answer:
        channel = await self.ctx.channel_of(room_id)
        return Answer("fan", fans.standing(self.settings, channel, total, awarded))

    async def ensure_loaded(self, channel: str) -> None:
        if not await self.ctx.data.fans.loaded(channel):
            await self.load(channel)

    async def level(self, room_id: str, viewer_id: str) -> int:
        channel = await self.ctx.channel_of(room_id)
        await self.ensure_loaded(channel)
        return fans.level_of(await self.ctx.data.fans.points(channel, viewer_id),
                             self.thresholds)

    async def require_level(self, room_id: str, viewer_id: str, min_level: int) -> None:
        """Refuse `level_required` when the viewer's level is below `min_level`."""
        if min_level <= 0:
            return
        level = await self.level(room_id, viewer_id)
        if level < min_level:
            raise refusal("level_required", min_level=min_level, level=level)

    def check_level(self, min_level: int) -> None:
        """A host's `min_level` must name a configured level."""
        if min_level > len(self.thresholds):
            raise BadRequest(f"min_level: at most {len(self.thresholds)}, the number of fan "
                             "levels (fans.levels)", details={"field": "min_level"})

    def level_of(self, points: int) -> int:
        return fans.level_of(points, self.thresholds)

    # ------------------------------------------------------------------ host

    async def _leaderboard(self, call: Call) -> Any:
        limit = LEADERBOARD_QUERY.read(call.query)["limit"]
        channel = await self.ctx.channel_of(call.room_id)
        rows = await self.ctx.store.top_fans(channel, limit)
        return {"channel": channel,
                "fans": [row | {"level": (lv := self.level_of(int(row["points"]))),
                                "badge": self.settings.badges[lv - 1] if lv else None}
                         for row in rows]}

    async def stop_background(self) -> None:
        for task in list(self._background):
            task.cancel()
        if self._background:
            await asyncio.wait(list(self._background), timeout=5.0)
