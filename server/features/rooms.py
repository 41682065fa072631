"""Rooms with a lifecycle and an owner.

Owns who may create a room (the admin key, unless the server listens on
loopback only), the states a room goes through, and what each change does:

    scheduled --(POST /live, or the host starts a sale, drops a coupon or
                 opens a lottery)--> live --(POST /end)--> ended
                                                --(POST /archive)--> archived

- A room made with `starts_at` (a future time, at most MAX_SCHEDULE_AHEAD_MS
  ahead) is scheduled: listed as upcoming, viewers may join, the host may set up
  the catalogue. Nothing goes live by the clock alone: the host goes live.
- Ending a show stops every sale through the stop-sale path (open holds voided,
  units and per-buyer counts given back in one atomic step; holds already in
  checkout settle through the order store), draws the open lotteries (entrants
  were admitted fairly; a drawn result stays verifiable), closes the coupon
  drops, clears the room's timers, closes its trace file and tells viewers
  `show_ended`. Buys, claims and entries are then refused with `show_ended`,
  and so are the host's changes. An ended room stays readable (snapshot,
  orders, audit, stats).
- Archiving (an ended room; the admin key or the room's host key) releases the
  room's Redis state and takes it out of every list. Its orders stay in the
  order store.

The state is durable in the order store (room_states, schema 3) and mirrored
in the room's Redis hash (`state`, `starts_at`, `ended_at`; absent means live),
from which a Redis rebuild restores it (server/features/restore.py).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import ipaddress
import logging
import re
import secrets
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

from server.core import events
from server.core.domain import now_ms
from server.core.errors import (
    CLOSE_UNKNOWN_ROOM,
    BadRequest,
    Conflict,
    Forbidden,
    LivesellError,
    Unauthorized,
)
from server.core.jobs import Job
from server.core.schema import Query, QueryInt, QueryStr
from server.core.settings import ServerSettings
from server.features.context import Answer, Context, error_answer
from server.features.listings import Listings
from server.features.lotteries import Lotteries
from server.features.registry import Call, Registry, Route
from server.features.sales import Sales
from server.features.waitlist import Waitlist
from server.state.faults import REDIS_FAULTS
from server.state.rooms_data import RoomsData

if TYPE_CHECKING:
    from server.features.auctions import Auctions

log = logging.getLogger("livesell.rooms")

SCHEDULED: Final = "scheduled"
# Due jobs of a scheduled show (item: the room id): its start and its reminder.
SHOW_START: Final = "show_start"
SHOW_REMINDER: Final = "show_reminder"
# A page address a calendar event may link to (no spaces, quotes or angle brackets).
URL: Final = re.compile(r"^https?://[^\s<>\"']{1,2000}$")
LIVE: Final = "live"
ENDED: Final = "ended"
ARCHIVED: Final = "archived"

MAX_SCHEDULE_AHEAD_MS: Final = 90 * 86400 * 1000
# A scheduled room that never went live leaves the public list this long after
# the start it announced.
STALE_SCHEDULED_MS: Final = 86400 * 1000
LIST_DEFAULT: Final = 20
LIST_MAX: Final = 100
CURSOR_PATTERN: Final = re.compile(r"[0-9]{1,15}:[A-Za-z0-9_-]{1,64}")
# The refusals a buy, claim or entry gets once the show has ended (its sales are
# stopped, coupons closed, lotteries drawn): only then is the room's state read,
# so a sold-out storm costs no extra Redis call.
ENDED_REFUSALS: Final = frozenset({"ended", "not_on_sale", "coupon_expired",
                                   "lottery_closed"})


def show_ended(ended_at: int | None = None) -> LivesellError:
    details = {"ended_at": ended_at} if ended_at else None
    return Conflict("The show has ended.", code="show_ended", details=details)


# ---------------------------------------------------------------------- ownership


def is_loopback(host: str) -> bool:
    """Whether the server listens on a loopback address only (127.0.0.0/8, ::1,
    localhost). An empty host or 0.0.0.0 listens everywhere."""
    if host.lower() == "localhost":
        return True
    with contextlib.suppress(ValueError):
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    return False


def room_creation_refusal(server: ServerSettings, offered: bytes) -> LivesellError | None:
    """Why `POST /api/rooms` with this X-Admin-Key (its raw bytes) is refused, or
    None. A loopback server needs the key only when one is set; a public one
    always needs it, and refuses every creation while none is set."""
    if server.admin_key:
        if secrets.compare_digest(offered, server.admin_key.encode()):
            return None
        return Unauthorized("creating rooms needs the admin key (header X-Admin-Key)")
    if is_loopback(server.host):
        return None
    return Forbidden(f"this server listens on {server.host or 'every address'}, not only "
                     "on loopback: set server.admin_key (LIVESELL_SERVER_ADMIN_KEY) so that "
                     "only the shop can create rooms", code="admin_key_not_set")


def admin_key_matches(server: ServerSettings, offered: bytes) -> bool:
    return bool(server.admin_key) and secrets.compare_digest(offered,
                                                             server.admin_key.encode())


def exposure_warning(server: ServerSettings) -> str | None:
    """The start-up warning for a public server with no admin key."""
    if server.admin_key or is_loopback(server.host):
        return None
    return (f"server.host is {server.host or 'every address'} and server.admin_key is not "
            "set: room creation is refused until an admin key is set")


# ---------------------------------------------------------------------- input


def encode_cursor(created_at: int, room_id: str) -> str:
    raw = f"{created_at}:{room_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, str]:
    bad = BadRequest("cursor: not a cursor this server gave (use next_cursor from the "
                     "previous page)", details={"field": "cursor"})
    if len(cursor) > 128:
        raise bad
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, ValueError):
        raise bad from None
    if not CURSOR_PATTERN.fullmatch(raw):
        raise bad
    created, _, room_id = raw.partition(":")
    return int(created), room_id


LIST_QUERY: Final = Query({
    "limit": QueryInt(LIST_DEFAULT, 1, LIST_MAX, "how many rooms to return"),
    "cursor": QueryStr(128, doc="next_cursor from the previous page"),
}, strict=True)


def parse_list_query(params: Mapping[str, str]) -> tuple[int, tuple[int, str] | None]:
    """`?limit=` and `?cursor=` of GET /api/rooms."""
    q = LIST_QUERY.read(params)
    cursor = q["cursor"]
    return q["limit"], decode_cursor(cursor) if cursor is not None else None


# ---------------------------------------------------------------------- lifecycle


class Lifecycle:
    """State changes of rooms."""

    def __init__(self, ctx: Context, sales: Sales, listings: Listings, waitlist: Waitlist,
                 lotteries: Lotteries, auctions: Auctions) -> None:
        self.ctx = ctx
        self.auctions = auctions
        self.sales = sales
        self.listings = listings
        self.waitlist = waitlist
        self.lotteries = lotteries

    @property
    def data(self) -> RoomsData:
        return self.ctx.data.rooms

    def register(self, registry: Registry) -> None:
        registry.route(Route("POST", "/live", self._go_live))
        # Ending again answers the state, so it is not refused once ended.
        registry.route(Route("POST", "/end", self._end, guard_ended=False))
        registry.route(Route("GET", "/calendar.ics", self._calendar, access="public",
                             media_type="text/calendar; charset=utf-8"))
        registry.job(SHOW_START, self._starts)
        registry.job(SHOW_REMINDER, self._reminds)
        registry.on_restore(self.restore)

    async def _calendar(self, call: Call) -> Any:
        """The show as an iCalendar event (RFC 5545), for "remind me": its start by
        the server, its title, the viewer page's address."""
        current = await self.state(call.room_id)
        title, = await self.data.fields(call.room_id, "title")
        starts = current["starts_at"] or now_ms()
        return calendar_event(call.room_id, title or "Live show", starts,
                              call.query.get("page", ""))

    async def _starts(self, room_id: str, item: str) -> None:
        """A scheduled show's start by the server's clock: it goes live (a host who
        went live earlier already did; an ended show stays ended)."""
        state, = await self.data.fields(room_id, "state")
        if state == SCHEDULED:
            await self.go_live(room_id)

    async def _reminds(self, room_id: str, item: str) -> None:
        state, starts_at, title = await self.data.fields(room_id, "state", "starts_at",
                                                         "title")
        if state == SCHEDULED and starts_at:
            await self.ctx.publish(room_id, events.show_reminder(room_id, title or "",
                                                                 int(starts_at)))
            self.ctx.outbox(room_id, "reminder.due", room_id,
                                  {"room_id": room_id, "title": title or "",
                                   "starts_at": int(starts_at)})

    async def schedule_start(self, room_id: str, starts_at: int) -> None:
        """A scheduled show's due jobs: its start, and its reminder before it."""
        now = now_ms()
        jobs = {Job(SHOW_START, room_id).member: starts_at}
        lead = self.ctx.settings.server.reminder_lead_s * 1000
        if lead and starts_at - lead > now:
            jobs[Job(SHOW_REMINDER, room_id).member] = starts_at - lead
        await self.ctx.data.schedule.add_jobs(room_id, jobs)
        self.ctx.note_due(room_id, min(jobs.values()))
        self.ctx.timers_changed.set()

    async def _go_live(self, call: Call) -> Any:
        return await self.go_live(call.room_id)

    async def _end(self, call: Call) -> Any:
        return await self.end_show(call.room_id)

    async def state(self, room_id: str) -> dict[str, Any]:
        """The room's lifecycle from its Redis hash (refuses an unknown room)."""
        await self.ctx.ensure_whole(room_id)
        state, starts_at, ended_at = await self.data.fields(room_id, "state", "starts_at",
                                                            "ended_at")
        return view(state, starts_at, ended_at)

    async def load_into_redis(self, room_id: str, lifecycle: Mapping[str, Any]) -> None:
        """Mirror the store's lifecycle into the room's Redis hash (creation and
        rebuild). An ended room's coupon drops are closed again and it is off the
        pulse's flag sets (keyword lotteries, claim keywords, recording), as at its
        end."""
        await self.data.set_fields(room_id, {
            "state": lifecycle["state"], "starts_at": lifecycle.get("starts_at") or "",
            "ended_at": lifecycle.get("ended_at") or ""})
        if lifecycle["state"] == SCHEDULED and lifecycle.get("starts_at"):
            await self.schedule_start(room_id, int(lifecycle["starts_at"]))
        if lifecycle["state"] == ENDED:
            await self.ctx.data.offers.close_coupons(
                room_id, int(lifecycle.get("ended_at") or now_ms()))
            await self.data.forget_flags(room_id)

    async def restore(self, room_id: str) -> None:
        """As the store has it: an ended room stays ended (its sales were stopped in
        the store, its lotteries drawn, so nothing restored scheduled a job)."""
        await self.load_into_redis(room_id, await self.ctx.store.room_state(room_id))

    async def guard_host_change(self, room_id: str, goes_live: bool) -> None:
        """Before a host change: refused once the show ended; a scheduled room goes
        live when the host starts selling (`goes_live`)."""
        state, = await self.data.fields(room_id, "state")
        await self.guard_state(room_id, state, goes_live)

    async def guard_state(self, room_id: str, state: str | None, goes_live: bool) -> None:
        """guard_host_change with the show's state already read (ensure_whole reads
        it in the same round trip as the room's wholeness)."""
        if state == ENDED:
            raise show_ended()
        if state == SCHEDULED and goes_live:
            await self.go_live(room_id)

    @staticmethod
    def may_explain(answer: Answer) -> bool:
        """Whether `explain_refusal` may change this answer: a refusal that the end
        of the show would explain."""
        return answer.kind == "error" and answer.body.get("code") in ENDED_REFUSALS

    async def explain_refusal(self, room_id: str, answer: Answer) -> Answer:
        """A buy, claim or entry refused because the show ended says so."""
        if not self.may_explain(answer):
            return answer
        state, ended_at = await self.data.fields(room_id, "state", "ended_at")
        if state != ENDED:
            return answer
        return error_answer(show_ended(int(ended_at) if ended_at else None))

    async def go_live(self, room_id: str) -> dict[str, Any]:
        current = await self.state(room_id)
        if current["state"] == ENDED:
            raise show_ended(current["ended_at"])
        if current["state"] == LIVE:
            return {"room_id": room_id, **current}
        now = now_ms()
        await self.ctx.store.set_room_state(room_id, LIVE, current["starts_at"], None, now)
        await self.data.set_fields(room_id, {"state": LIVE})
        await self.ctx.publish(room_id, events.show_live(room_id))
        self.ctx.outbox(room_id, "show.started", room_id,
                              {"room_id": room_id, "started_at": now})
        log.info("room %s is live", room_id)
        return {"room_id": room_id, **current, "state": LIVE}

    async def end_show(self, room_id: str) -> dict[str, Any]:
        """End the show (see the module docstring). Every step is idempotent: a
        retried or concurrent end finishes the work and answers the same state."""
        ctx = self.ctx
        current = await self.state(room_id)
        if current["state"] == ENDED:
            # A retry, or a second console: finish whatever a first end that failed
            # midway (Redis lost meanwhile, say) left undone. Its event went out then.
            await self._wind_down(room_id, int(current.get("ended_at") or now_ms()))
            return {"room_id": room_id, **current}
        ended_at = now_ms()
        # Durable first: from here on a restart or a Redis rebuild keeps it ended.
        await ctx.store.set_room_state(room_id, ENDED, current["starts_at"], ended_at,
                                       ended_at)
        await self.data.set_fields(room_id, {"state": ENDED, "ended_at": ended_at})
        await self._wind_down(room_id, ended_at)
        if ctx.recorder is not None:
            ctx.recorder.finish(room_id)
        await ctx.publish(room_id, events.show_ended(room_id, ended_at))
        ctx.outbox(room_id, "show.ended", room_id,
                         {"room_id": room_id, "ended_at": ended_at})
        log.info("room %s: show ended", room_id)
        return {"room_id": room_id, **current, "state": ENDED, "ended_at": ended_at}

    async def _wind_down(self, room_id: str, ended_at: int) -> None:
        """Everything an ended show stops, each step idempotent."""
        ctx = self.ctx
        # Nobody waits any more: first, so that no unit stopped below goes to the line.
        pids = [data["product_id"] for data, _ in await ctx.store.products(room_id)]
        await self.waitlist.close_all(room_id, pids)
        for sale_id in await ctx.data.sales.sale_ids(room_id):
            # The host's own stop: open holds voided, units back, one atomic step.
            with contextlib.suppress(LivesellError):
                await self.sales.stop_sale(room_id, sale_id)
        # Nothing is bought at the list price any more either; holds taken so are voided.
        await self.listings.close_all(room_id, pids)
        await self.lotteries.draw_open(room_id)
        await self.auctions.wind_down(room_id)
        for listener in ctx.show_end_listeners:
            await listener(room_id)
        await ctx.data.offers.close_coupons(room_id, ended_at)
        # Countdown ticks of stopped sales would only be skipped when due: drop them
        # (a lottery whose draw failed keeps its close job).
        jobs = await ctx.data.schedule.jobs(room_id)
        await ctx.data.schedule.drop_jobs(
            room_id, [m for m in jobs if Job.parse(m).kind != "lottery_close"])
        await ctx.reschedule(room_id)
        self.lotteries.keywords.pop(room_id, None)
        await self.data.forget_flags(room_id)

    async def archive(self, room_id: str) -> dict[str, Any]:
        """Archive an ended room: release its Redis state, keep its orders."""
        ctx = self.ctx
        current = await self.state(room_id)
        if current["state"] != ENDED:
            raise Conflict("only an ended show can be archived: end it first "
                           "(POST /api/rooms/{room_id}/end)", code="show_not_ended")
        if await self.data.checkouts_pending(room_id):
            raise Conflict("checkouts of this room are still being decided; try again "
                           "shortly", code="checkouts_pending", details={"retry_after_s": 5})
        now = now_ms()
        await ctx.store.set_room_state(room_id, ARCHIVED, current["starts_at"],
                                       current["ended_at"], now)
        local = ctx.hub.rooms.get(room_id)
        if local is not None:
            for conn in list(local.members):
                ctx.hub.close(conn, CLOSE_UNKNOWN_ROOM, "the room was archived")
        released = await self.data.release(room_id)
        ctx.host_keys.pop(room_id, None)
        for key in [k for k in ctx.current_sale if k[0] == room_id]:
            ctx.current_sale.pop(key, None)
        if ctx.recorder is not None:
            ctx.recorder.finish(room_id)
        log.info("room %s archived: %d Redis keys released", room_id, released)
        return {"room_id": room_id, **current, "state": ARCHIVED}

    async def public_list(self, limit: int, before: tuple[int, str] | None) -> dict[str, Any]:
        rows = await self.ctx.store.public_rooms(limit + 1, before,
                                                 now_ms() - STALE_SCHEDULED_MS)
        page = rows[:limit]
        # A picture for each show in the picker: its first pinned product's image.
        # The list itself is the store's: with Redis down it is served without them.
        try:
            thumbnails = await self.ctx.data.catalogue.thumbnails(
                [r["room_id"] for r in page], self.ctx.settings.sale.max_pins)
        except REDIS_FAULTS as exc:
            self.ctx.health.redis_failed(exc)
            thumbnails = {}
        rooms = [{"room_id": r["room_id"], "title": r["title"], "stream_url": r["stream_url"],
                  "created_at": r["created_at"], "state": r["state"],
                  "starts_at": r["starts_at"],
                  "thumbnail_url": thumbnails.get(r["room_id"], "")} for r in page]
        more = len(rows) > limit
        cursor = encode_cursor(page[-1]["created_at"], page[-1]["room_id"]) \
            if more and page else None
        return {"rooms": rooms, "next_cursor": cursor}


def _ics_text(text: str) -> str:
    """A TEXT value of RFC 5545: backslash, semicolon, comma and newline escaped."""
    return (text.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,")
            .replace("\n", "\\n").replace("\r", ""))


def calendar_event(room_id: str, title: str, starts_at: int, page: str) -> str:
    """One VEVENT of an hour from `starts_at` (ms, UTC), with `page` as its URL when
    it is an http(s) address. Lines end in CRLF, as RFC 5545 says."""
    def stamp(ms: int) -> str:
        return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(ms // 1000))
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//livesell//show//EN",
             "CALSCALE:GREGORIAN", "BEGIN:VEVENT", f"UID:{room_id}@livesell",
             f"DTSTAMP:{stamp(now_ms())}", f"DTSTART:{stamp(starts_at)}",
             f"DTEND:{stamp(starts_at + 3600 * 1000)}", f"SUMMARY:{_ics_text(title)}"]
    if URL.match(page):
        lines.append(f"URL:{page}")
    lines += ["BEGIN:VALARM", "ACTION:DISPLAY", f"DESCRIPTION:{_ics_text(title)}",
              "TRIGGER:-PT5M", "END:VALARM", "END:VEVENT", "END:VCALENDAR"]
    return "\r\n".join(lines) + "\r\n"


def view(state: str | None, starts_at: Any, ended_at: Any) -> dict[str, Any]:
    """The public lifecycle fields from the room hash (no state: live)."""
    return {"state": state or LIVE,
            "starts_at": int(starts_at) if starts_at else None,
            "ended_at": int(ended_at) if ended_at else None}
