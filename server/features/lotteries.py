"""Lotteries (giveaways): the host opens one with a prize, a number of winners
and a close time; viewers enter by a button or by commenting its keyword
(enter_lottery.lua, one entry per viewer, durable in the store before
"entered"); at the close (due job `lottery_close`) or when the host says, the
winners are drawn from a seed committed to at the opening, so anyone can
verify the draw (docs/protocol.md, section 14)."""

from __future__ import annotations

import logging
from typing import Any

from server.core import domain, events
from server.core.domain import Lottery, now_ms
from server.core.errors import Conflict, LivesellError, Unavailable, refusal
from server.core.identity import Viewer
from server.core.jobs import Job
from server.core.protocol import EnterLottery
from server.core.views import as_int, lottery_view
from server.features.context import Answer, Context, error_answer, from_cached, rebuilding
from server.features.fans import Fans
from server.features.registry import Call, ChatPost, Registry, Route, ViewerCall
from server.state.faults import REDIS_FAULTS
from server.state.offers_data import OffersData
from server.state.store import StoreError

log = logging.getLogger("livesell.lotteries")

CLOSE = "lottery_close"


class Lotteries:
    def __init__(self, ctx: Context, fans: Fans) -> None:
        self.fans = fans
        # (room, lottery) -> the fan level it needs (never changes): read once.
        self._min_levels: dict[tuple[str, str], int] = {}
        self.ctx = ctx
        # room -> lottery id -> keyword, for the open keyword lotteries (the recorder
        # reads it too: whether a viewer's entry text matched).
        self.keywords: dict[str, dict[str, str]] = {}

    @property
    def data(self) -> OffersData:
        return self.ctx.data.offers

    def register(self, registry: Registry) -> None:
        registry.route(Route("POST", "/lotteries", self._open, status=201,
                             body=domain.lottery_shape(
                                 self.ctx.settings.sale.max_lottery_winners),
                             answer="Lottery",
                             record_as="lottery", goes_live=True))
        registry.route(Route("GET", "/lotteries/{lottery_id}", self._get, access="public",
                             answer="Lottery"))
        registry.route(Route("POST", "/lotteries/{lottery_id}/draw", self._draw_now,
                             record_as="draw"))
        registry.route(Route("GET", "/lotteries/{lottery_id}/entrants", self._entrants))
        registry.message(EnterLottery, self._enter, explain_end=True)
        registry.job(CLOSE, self._closes)
        registry.on_chat(self._chat)
        registry.on_restore(self.restore)
        registry.on_upkeep(self.refresh_keywords)

    async def _open(self, call: Call) -> Any:
        return await self.open_lottery(call.room_id, call.body)

    async def _get(self, call: Call) -> Any:
        return await self.lottery(call.room_id, call.params["lottery_id"])

    async def _draw_now(self, call: Call) -> Any:
        return await self.draw_lottery(call.room_id, call.params["lottery_id"])

    async def _entrants(self, call: Call) -> Any:
        lid = call.params["lottery_id"]
        await self.lottery(call.room_id, lid)
        return {"lottery_id": lid, "entrants": await self.data.entrants(call.room_id, lid)}

    async def _enter(self, call: ViewerCall, msg: EnterLottery) -> Answer:
        return await self.enter_lottery(call.viewer, call.room_id, msg.request_id,
                                        msg.lottery_id, msg.keyword or "")

    async def open_lottery(self, room_id: str, body: dict[str, Any]) -> dict[str, Any]:
        seed = domain.new_seed()
        lottery = domain.parse_lottery(body, now_ms(),
                                       self.ctx.settings.sale.max_lottery_winners, seed)
        self.fans.check_level(lottery.min_level)
        await self.ctx.store.add_lottery(room_id, lottery.public(), seed)
        await self.load(room_id, lottery, None)
        view = await self.lottery(room_id, lottery.lottery_id)
        await self.ctx.publish(room_id, events.lottery_open(view))
        return view

    async def load(self, room_id: str, lottery: Lottery, result: dict[str, Any] | None,
                   entrants: list[str] | None = None) -> None:
        await self.data.load_lottery(room_id, lottery, result, entrants or [],
                                     Job(CLOSE, lottery.lottery_id).member)
        self.ctx.timers_changed.set()
        if result is None and lottery.entry == "keyword":
            self.keywords.setdefault(room_id, {})[lottery.lottery_id] = lottery.keyword

    async def refresh_keywords(self) -> None:
        """Learn keyword lotteries opened or drawn through other processes: only the
        rooms that opened one are read, so an idle room costs nothing here."""
        rooms = await self.data.keyword_rooms()
        for room_id in sorted(rooms):
            self.keywords[room_id] = await self.data.keyword_lotteries(room_id)
        for room_id in set(self.keywords) - rooms:
            self.keywords.pop(room_id, None)

    async def lottery(self, room_id: str, lottery_id: str,
                      with_entrants: bool = True) -> dict[str, Any]:
        lot, count = await self.data.lottery(room_id, lottery_id)
        if not lot:
            raise refusal("lottery_not_found")
        return lottery_view(lottery_id, lot, count, with_entrants)

    async def enter_lottery(self, viewer: Viewer, room_id: str, request_id: str,
                            lottery_id: str, text: str) -> Answer:
        await self.fans.require_level(room_id, viewer.viewer_id,
                                      await self._min_level(room_id, lottery_id))
        result = await self.ctx.scripts.enter_lottery(
            room_id, viewer=viewer.viewer_id, request_id=request_id, lottery_id=lottery_id,
            entry_text=domain.normalize_entry_text(text),
            answer_ttl_s=self.ctx.settings.sale.request_id_ttl_s, verified=viewer.verified)
        if result.status == "rebuilding":
            return error_answer(rebuilding())
        if result.status == "ok":
            # Durable before "entered", like an order: the draw and a rebuild of Redis
            # read the entrants from the store.
            try:
                await self.ctx.store.add_lottery_entry(room_id, lottery_id,
                                                       viewer.viewer_id, now_ms())
            except Exception as exc:
                if not isinstance(exc, StoreError):
                    log.exception("could not record a lottery entry")
                await self.data.undo_entry(room_id, lottery_id, viewer.viewer_id, request_id)
                return error_answer(Unavailable("your entry could not be recorded; try "
                                                "again", code="store_unavailable"))
            self.ctx.dirty_counts.add((room_id, "lottery", lottery_id))
        return from_cached("lottery_entered", result.answer)

    async def _min_level(self, room_id: str, lottery_id: str) -> int:
        key = (room_id, lottery_id)
        level = self._min_levels.get(key)
        if level is None:
            level = await self.data.lottery_min_level(room_id, lottery_id)
            if len(self._min_levels) > 10_000:
                self._min_levels.clear()
            self._min_levels[key] = level
        return level

    async def _chat(self, post: ChatPost) -> None:
        keywords = self.keywords.get(post.room_id)
        if keywords:
            norm = domain.normalize_entry_text(post.text)
            for lid, kw in list(keywords.items()):
                if kw in norm:
                    # Commenting the keyword enters the lottery; one entry per viewer.
                    await self.enter_lottery(post.viewer, post.room_id, f"chat-{lid}", lid,
                                             norm)

    async def draw_lottery(self, room_id: str, lottery_id: str) -> dict[str, Any]:
        won = await self.ctx.scripts.close_lottery(room_id, lottery_id)
        if not won:
            view = await self.lottery(room_id, lottery_id)
            raise Conflict("the lottery is already drawn", code="lottery_closed",
                           details={"lottery_id": view["lottery_id"]})
        try:
            return await self._draw(room_id, lottery_id)
        except BaseException:
            # Put it back so the due job (or the host) can draw it again.
            await self.data.reopen(room_id, lottery_id, Job(CLOSE, lottery_id).member,
                                   now_ms() + 1000)
            self.ctx.timers_changed.set()
            raise

    async def _draw(self, room_id: str, lottery_id: str) -> dict[str, Any]:
        self.keywords.get(room_id, {}).pop(lottery_id, None)
        lot, _ = await self.data.lottery(room_id, lottery_id)
        seed = next((s for data, s, _ in await self.ctx.store.lotteries(room_id)
                     if data["lottery_id"] == lottery_id), None)
        if seed is None:
            raise refusal("lottery_not_found")
        # The store holds every entry that was answered "entered" (entries admitted
        # before the close may still be committing: wait for them). Redis's set is
        # added too: a lottery opened before entries were stored has them only there.
        await self.ctx.store.wait_idle()
        stored = (await self.ctx.store.lottery_entrants(room_id, lottery_id)).get(
            lottery_id, [])
        entrants = sorted(set(stored) | set(await self.data.entrants(room_id, lottery_id)))
        count = as_int(lot.get("winners"), 1)
        result = {"seed": seed, "entrants": entrants,
                  "entrants_digest": domain.entrants_digest(entrants),
                  "winners": domain.draw_winners(seed, entrants, count),
                  "drawn_at": now_ms()}
        await self.ctx.store.set_lottery_result(lottery_id, result)
        await self.data.set_drawn(room_id, lottery_id, result, Job(CLOSE, lottery_id).member)
        view = await self.lottery(room_id, lottery_id)
        await self.ctx.publish(room_id, events.lottery_drawn(view))
        self.ctx.outbox(room_id, "lottery.drawn", lottery_id, view)
        return view

    async def _closes(self, room_id: str, lottery_id: str) -> None:
        # The job is claimed and not retried: a lottery that cannot be drawn now stays
        # open for the host to draw; say why, once.
        try:
            await self.draw_lottery(room_id, lottery_id)
        except LivesellError as exc:
            log.info("room %s: lottery %s not drawn at its close: %s (%s)", room_id,
                     lottery_id, exc.code, exc)
        except REDIS_FAULTS:
            raise  # the pulse's loop reports these once per outage
        except StoreError:
            raise
        except Exception:
            log.exception("room %s: lottery %s could not be drawn at its close",
                          room_id, lottery_id)

    async def draw_open(self, room_id: str) -> None:
        """The show ended: draw every lottery still open."""
        for lottery_id in await self.data.lottery_ids(room_id):
            if await self.data.lottery_state(room_id, lottery_id) != "open":
                continue
            try:
                await self.draw_lottery(room_id, lottery_id)
            except LivesellError:
                pass  # drawn meanwhile by its job or the host
            except Exception:
                # Its close job stays: the pulse draws it when the store answers.
                log.exception("room %s: lottery %s not drawn at the end", room_id,
                              lottery_id)

    async def restore(self, room_id: str) -> None:
        """Load the room's lotteries from the store, with their entrants and results."""
        entrants = await self.ctx.store.lottery_entrants(room_id)
        for data, _seed, result in await self.ctx.store.lotteries(room_id):
            lottery = Lottery(**data)
            await self.load(room_id, lottery, result, entrants.get(lottery.lottery_id, []))
