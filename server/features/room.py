"""A room itself: creating one, editing its title and stream, whether it exists,
and its state as viewers see it (the snapshot: catalogue with stock and sales,
pins, coupons, lotteries, likes, viewers, policy and the server's limits). The
lifecycle (live, ended, archived) is server/features/rooms.py."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any, Final

import orjson

from server.core import domain, events, fans, policy, polls
from server.core.domain import now_ms
from server.core.errors import LivesellError, Unavailable, refusal
from server.core.fans import CHANNEL_PATTERN, DEFAULT_CHANNEL
from server.core.group_deals import deal_view
from server.core.protocol import encode, get_int
from server.core.schema import Int, Shape, Str, opt
from server.core.views import (
    as_int,
    card_view,
    coupon_view,
    lottery_view,
    recent_auctions,
    recent_polls,
)
from server.features.context import Context, new_epoch
from server.features.registry import Call, Registry, Route
from server.features.rooms import LIVE, MAX_SCHEDULE_AHEAD_MS, SCHEDULED, Lifecycle
from server.state.rooms_data import RoomsData

CREATE_SHAPE: Final = Shape("room", {
    **domain.ROOM_SHAPE.fields,
    "starts_at": opt(Int(0, 2**53), doc="schedule it: Unix time in ms, in the future and "
                     "at most 90 days ahead (default: live now)"),
    "channel": opt(Str(64, pattern=CHANNEL_PATTERN), DEFAULT_CHANNEL,
                   "the room's owner, whose fans' points it adds to"),
})
# PATCH /api/rooms/{room_id}: the fields named change, the others are kept.
UPDATE_SHAPE: Final = Shape("room", {
    "title": opt(domain.TITLE, doc="the show's title (trimmed)"),
    "stream_url": opt(domain.STREAM_URL, doc="the stream the pages play (http or https, "
                      "or /streams/... from this server's streams folder; \"\": none)"),
}, doc="The fields to change.", non_empty="room: name at least one of stream_url, title")


ROOM_FIELDS: Final = ("title", "stream_url", "created_at", "state", "starts_at", "ended_at")


def room_info(room_id: str, room: Mapping[str, Any]) -> dict[str, Any]:
    """The room as the snapshot and PATCH answer show it, from its Redis hash."""
    return {"room_id": room_id, "title": room.get("title") or "",
            "stream_url": room.get("stream_url") or "",
            "created_at": as_int(room.get("created_at")),
            "state": room.get("state") or LIVE,
            "starts_at": as_int(room.get("starts_at")) or None,
            "ended_at": as_int(room.get("ended_at")) or None}


class Room:
    def __init__(self, ctx: Context, lifecycle: Lifecycle) -> None:
        self.ctx = ctx
        self.lifecycle = lifecycle

    @property
    def data(self) -> RoomsData:
        return self.ctx.data.rooms

    def register(self, registry: Registry) -> None:
        # room_state reads the room's wholeness with the rest, in one round trip.
        registry.route(Route("GET", "", self._state, access="public", needs_whole=False))
        # A show change: refused once the show ended (409 show_ended), recorded.
        registry.route(Route("PATCH", "", self._update, body=UPDATE_SHAPE,
                             record_as="update_room", answer="Room"))

    async def _state(self, call: Call) -> Any:
        return await self.room_state(call.room_id)

    async def _update(self, call: Call) -> Any:
        """Change the show's title or stream: kept in the store, then Redis, then
        every viewer hears `room_updated` (the pages update without a reload)."""
        return await self.update_room(call.room_id, call.body)

    async def update_room(self, room_id: str, changes: Mapping[str, Any]) -> dict[str, Any]:
        """Apply `changes` (UPDATE_SHAPE, already checked): durable in the store first,
        so a restart or a Redis rebuild keeps them; the room as it is now. Only the
        fields named are written, in the store and in Redis (no read, merge and write
        back), so two quick edits of different fields each keep the other's, from any
        process."""
        named = {k: str(v) for k, v in changes.items() if k in ("title", "stream_url")}
        await self.ctx.store.update_room(room_id, named.get("title"), named.get("stream_url"))
        await self.data.update_room(room_id, named)
        room = room_info(room_id, dict(zip(ROOM_FIELDS,
                                           await self.data.fields(room_id, *ROOM_FIELDS),
                                           strict=True)))
        await self.ctx.publish(room_id, events.room_updated(room_id, room["title"],
                                                            room["stream_url"]))
        return room

    async def create_room(self, body: dict[str, Any]) -> dict[str, Any]:
        created = now_ms()
        v = CREATE_SHAPE.read(body)
        starts_at = get_int(v, "starts_at", lo=created + 1,
                            hi=created + MAX_SCHEDULE_AHEAD_MS) if "starts_at" in v else None
        channel, title, stream_url = v["channel"], v["title"], v["stream_url"]
        room_id = domain.new_id("r")
        host_key = secrets.token_urlsafe(24)
        key_hash = domain.hash_key(host_key)
        epoch = new_epoch()
        lifecycle = {"state": SCHEDULED if starts_at else LIVE, "starts_at": starts_at,
                     "ended_at": None}
        store = self.ctx.store
        if starts_at is not None:
            # Before the room row: a crash between leaves an unused state row, never
            # a scheduled room listed as live.
            await store.set_room_state(room_id, SCHEDULED, starts_at, None, created)
        if channel != DEFAULT_CHANNEL:
            await store.set_room_channel(room_id, channel)
        await store.add_room(room_id, title, stream_url, key_hash, created)
        await store.set_room_epoch(room_id, epoch)
        await self.data.load_room(room_id, title, stream_url, key_hash, created)
        await self.lifecycle.load_into_redis(room_id, lifecycle)
        await self.ctx.data.fans.set_room_channel(room_id, channel)
        self.ctx.channels[room_id] = channel
        await self.data.mark_whole(room_id, epoch)
        self.ctx.host_keys[room_id] = key_hash
        return {"room": {"room_id": room_id, "title": title, "stream_url": stream_url,
                         "channel": channel, "created_at": created, **lifecycle},
                "host_key": host_key}

    async def room_exists(self, room_id: str) -> bool:
        if room_id in self.ctx.host_keys:
            return True
        try:
            await self.ctx.ensure_whole(room_id)
        except Unavailable:
            return True  # it exists; joining it then answers 'try again'
        except LivesellError:
            return False
        return True

    async def snapshot(self, room_id: str) -> tuple[int, bytes]:
        state = await self.room_state(room_id)
        return state["seq"], encode(events.snapshot(state))

    def limits(self) -> dict[str, int]:
        """The server's limits the pages show and obey instead of copies of their own."""
        sale, chat = self.ctx.settings.sale, self.ctx.settings.chat
        return {"max_pins": sale.max_pins, "max_quantity_per_buy": sale.max_quantity_per_buy,
                "max_holds_per_viewer": sale.max_holds_per_viewer,
                "chat_max_length": chat.max_length,
                "nickname_max_length": chat.nickname_max_length,
                "max_likes_per_frame": chat.max_likes_per_frame,
                "max_slow_mode_s": policy.MAX_SLOW_MODE_S,
                "title_max_length": domain.MAX_TITLE,
                "description_max_length": domain.MAX_DESCRIPTION,
                "prize_max_length": domain.MAX_PRIZE,
                "keyword_max_length": domain.MAX_KEYWORD,
                "announcement_max_length": domain.MAX_ANNOUNCEMENT,
                "max_open_questions": chat.max_open_questions,
                "hold_seconds": round(sale.hold_seconds),
                "poll_question_max_length": polls.MAX_QUESTION,
                "poll_option_max_length": polls.MAX_OPTION,
                "poll_max_options": polls.MAX_OPTIONS,
                "pinned_max_length": polls.MAX_PINNED,
                "image_max_bytes": self.ctx.settings.images.max_bytes}

    async def room_state(self, room_id: str) -> dict[str, Any]:
        read = await self.data.read(room_id)
        if not read.whole:
            await self.ctx.ensure_whole(room_id)
        if not read.room:
            raise refusal("room_not_found")
        viewers = await self.ctx.scripts.viewers(room_id)
        now = now_ms()
        room = read.room
        # A coupon reserved for one viewer (a referral reward) is not the room's news.
        coupons = [coupon_view(c) for c in read.coupons if not c.get("for")]
        return {
            "seq": read.seq,
            "server_time": now,
            "room": room_info(room_id, room),
            "products": [card_view(p, stock, sale, listing, waiting, now)
                         for p, stock, sale, listing, waiting in
                         zip(read.products, read.stocks, read.sales, read.listings,
                             read.waiting, strict=True)],
            "pins": read.pins,
            "coupons": [c for c in coupons if c["expires_at"] > now],
            "lotteries": [lottery_view(lid, lot, n) for lid, lot, n in read.lotteries],
            "auctions": recent_auctions(read.auctions, now),
            "polls": recent_polls(read.polls, now),
            "chat": read.chat,
            "questions": read.questions,
            "group_deals": [deal_view(h) for h in read.deals if h.get("state") == "open"],
            "pinned_message": orjson.loads(room["pinned"]) if room.get("pinned") else None,
            "fans": {"channel": await self.ctx.channel_of(room_id),
                     **fans.levels_view(self.ctx.settings.fans)},
            "likes": read.likes,
            "viewers": {"now": viewers.now, "unique": viewers.unique, "peak": viewers.peak},
            "policy": policy.from_redis(read.policy).public(),
            "limits": self.limits(),
        }
