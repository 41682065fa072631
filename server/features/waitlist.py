"""Waitlists that promote: on a sold-out product a viewer joins the waitlist
(join_waitlist.lua, their place answered); a unit that comes back goes to the
viewer at its head as a short hold of their own (`sale.waitlist_offer_s`), in the
same atomic step as its return when a hold expires or is released (release.lua),
or in one step right after when the host adds stock, stops a sale or opens an
offer (promote.lua, through `Context.stock_freed`). Meanwhile reserve.lua refuses
other buyers (`waitlist_ahead`), so the units waiting viewers are owed are never
bought past them. A promoted hold not taken expires and moves on to the next.

Every move is published (`waitlist_offer`: the holds made and the viewers taken
off, with their tickets) and the count waiting goes out coalesced with the stock.
Per-buyer limits and the open-hold cap apply to promoted holds; a viewer who left
the room keeps their place for `sale.waitlist_keep_place_s` but is passed over
while away. Waitlists live in Redis only: a rebuild of Redis from the store
empties them (docs/protocol.md, "Waitlists")."""

from __future__ import annotations

from typing import Any

import orjson

from server.core import events
from server.core.domain import now_ms
from server.core.errors import refusal
from server.core.identity import Viewer
from server.core.protocol import JoinWaitlist, LeaveWaitlist
from server.features.context import Answer, Context, error_answer, rebuilding
from server.features.registry import Registry, ViewerCall
from server.state.scripts import Released, WaitlistMove, WaitlistTerms


class Waitlist:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        ctx.stock_freed_listeners.append(self.promote)
        # (room, product) lines joined through this process: swept once a second, so
        # units kept for a viewer whose place has since run out (away too long) go on
        # to the next even when nothing else happens to the product.
        self.lines: set[tuple[str, str]] = set()

    @property
    def terms(self) -> WaitlistTerms:
        sale = self.ctx.settings.sale
        return WaitlistTerms(int(sale.waitlist_offer_s * 1000), sale.max_holds_per_viewer,
                             int(sale.waitlist_keep_place_s * 1000))

    def register(self, registry: Registry) -> None:
        registry.message(JoinWaitlist, self._join, explain_end=True)
        registry.message(LeaveWaitlist, self._leave)
        registry.on_upkeep(self.sweep)

    async def _join(self, call: ViewerCall, msg: JoinWaitlist) -> Answer:
        return await self.join(call.viewer, call.room_id, msg.product_id)

    async def _leave(self, call: ViewerCall, msg: LeaveWaitlist) -> Answer:
        return await self.leave(call.viewer, call.room_id, msg.product_id)

    async def join(self, viewer: Viewer, room_id: str, product_id: str) -> Answer:
        """Join the product's waitlist, or hear one's place on it (joining twice is
        the same as once)."""
        result = await self.ctx.scripts.join_waitlist(
            room_id, viewer=viewer.viewer_id, product_id=product_id,
            max_waiting=self.ctx.settings.sale.max_waitlist, verified=viewer.verified)
        if result.status == "rebuilding":
            return error_answer(rebuilding())
        if result.status == "refused":
            return error_answer(refusal(result.detail))
        self.ctx.dirty_stock.add((room_id, product_id))
        self.lines.add((room_id, product_id))
        if result.available > 0:
            # Units wait in stock for someone who was away (passed over, place kept)
            # and may be back: hand them out now.
            await self.promote(room_id, product_id)
        return Answer("waitlist", {"product_id": product_id, "position": result.position,
                                   "waiting": result.waiting, "ticket": result.ticket})

    async def leave(self, viewer: Viewer, room_id: str, product_id: str) -> Answer:
        left = await self.ctx.data.sales.leave_waitlist(room_id, product_id, viewer.viewer_id)
        if left:
            self.ctx.dirty_stock.add((room_id, product_id))
        return Answer("waitlist_left", {"product_id": product_id, "was_waiting": left})

    async def close_all(self, room_id: str, product_ids: list[str]) -> None:
        """The show ended: nobody waits any more (every offer closes)."""
        await self.ctx.data.sales.clear_waitlists(room_id, product_ids)
        self.lines = {line for line in self.lines if line[0] != room_id}

    async def promote(self, room_id: str, product_id: str) -> int:
        """Units of the product may be buyable again: the head of its waitlist first,
        in steps of a bounded size (lua/lib/waitlist.lua), each published as it is
        made. The number still waiting (0 too while the room is rebuilt)."""
        while True:
            result = await self.ctx.scripts.promote(room_id, product_id, self.terms)
            await self._publish(room_id, product_id, result.moves)
            if not result.more:
                return result.waiting

    async def released(self, room_id: str, product_id: str, result: Released) -> None:
        """What a hold's release did to the product's waitlist in its own step:
        publish it, and finish what that step left at its bound."""
        await self._publish(room_id, product_id, result.moves)
        if result.more:
            await self.promote(room_id, product_id)

    async def sweep(self) -> None:
        for line in sorted(self.lines):
            if not await self.promote(*line):
                self.lines.discard(line)

    async def _publish(self, room_id: str, product_id: str,
                       moves: tuple[WaitlistMove, ...]) -> None:
        """Publish what a release or a promotion did to the product's waitlist."""
        if not moves:
            return
        offers: list[dict[str, Any]] = []
        dropped: list[dict[str, Any]] = []
        for move in moves:
            if move.kind == "offer":
                offers.append({"viewer_id": move.viewer_id, "ticket": move.ticket,
                               "hold": orjson.loads(move.detail)})
            else:
                dropped.append({"viewer_id": move.viewer_id, "ticket": move.ticket,
                                "reason": move.detail})
        self.ctx.dirty_stock.add((room_id, product_id))
        if offers:
            # The offered holds expire like any other: on the pulse's schedule.
            self.ctx.note_due(room_id, now_ms() + self.terms.offer_ms)
            self.ctx.timers_changed.set()
        await self.ctx.publish(room_id, events.waitlist_offer(product_id, offers, dropped))
