"""Coupon drops: the host drops a number of coupons, viewers claim one each
(claim_coupon.lua), a claimed coupon applies once at checkout (begin_checkout.lua
checks currency, minimum spend and expiry). Coupons left are published
coalesced (`coupon_count`), never once per claim.

This is the worked example of a feature module in docs/architecture.md: its
routes, its viewer message, its restore, and nothing else of anyone's."""

from __future__ import annotations

from typing import Any

from server.core import domain, events
from server.core.domain import CouponDrop, now_ms
from server.core.errors import refusal
from server.core.identity import Viewer
from server.core.protocol import ClaimCoupon
from server.core.views import coupon_view
from server.features.context import Answer, Context, error_answer, from_cached, rebuilding
from server.features.registry import Call, Registry, Route, ViewerCall
from server.state.offers_data import OffersData


class Coupons:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    @property
    def data(self) -> OffersData:
        return self.ctx.data.offers

    def register(self, registry: Registry) -> None:
        registry.route(Route("POST", "/coupons", self._drop, status=201,
                             body=domain.coupon_shape(
                                 self.ctx.settings.sale.max_coupons_per_drop),
                             answer="Coupon",
                             record_as="coupon", goes_live=True))
        # Ended early by the host: nobody claims it any more, and a coupon claimed from
        # it no longer applies (as at its own expiry, or at the show's end).
        registry.route(Route("POST", "/coupons/{coupon_id}/end", self._end, answer="Coupon",
                             record_as="end_coupon"))
        registry.message(ClaimCoupon, self._claim, explain_end=True)
        registry.on_restore(self.restore)

    async def _drop(self, call: Call) -> Any:
        return await self.drop_coupon(call.room_id, call.body)

    async def _end(self, call: Call) -> Any:
        return await self.end_coupon(call.room_id, call.params["coupon_id"])

    async def _claim(self, call: ViewerCall, msg: ClaimCoupon) -> Answer:
        return await self.claim_coupon(call.viewer, call.room_id, msg.request_id,
                                       msg.coupon_id)

    async def drop_coupon(self, room_id: str, body: dict[str, Any]) -> dict[str, Any]:
        drop = domain.parse_coupon(body, now_ms(),
                                   self.ctx.settings.sale.max_coupons_per_drop)
        await self.ctx.store.add_coupon_drop(room_id, drop.public())
        await self.data.load_coupon(room_id, drop, claimed=0, uses={})
        view = coupon_view(await self.data.coupon(room_id, drop.coupon_id))
        await self.ctx.publish(room_id, events.coupon_drop(view))
        return view

    async def end_coupon(self, room_id: str, coupon_id: str) -> dict[str, Any]:
        """End a drop now (the store first, so a rebuild keeps it ended, then Redis,
        then `coupon_ended`). Ending one already over changes nothing and answers it
        as it is. A referral reward is one viewer's, not a drop the host made: not
        found here, as to a claim."""
        current = await self.data.coupon(room_id, coupon_id)
        if not current or current.get("for"):
            raise refusal("coupon_not_found")
        expires_at = await self.ctx.store.end_coupon_drop(room_id, coupon_id, now_ms())
        if expires_at is None:
            raise refusal("coupon_not_found")
        await self.data.expire_coupon(room_id, coupon_id, expires_at)
        view = coupon_view(await self.data.coupon(room_id, coupon_id))
        await self.ctx.publish(room_id, events.coupon_ended(view))
        return view

    async def claim_coupon(self, viewer: Viewer, room_id: str, request_id: str,
                           coupon_id: str) -> Answer:
        result = await self.ctx.scripts.claim_coupon(
            room_id, viewer=viewer.viewer_id, request_id=request_id, coupon_id=coupon_id,
            answer_ttl_s=self.ctx.settings.sale.request_id_ttl_s, verified=viewer.verified)
        if result.status == "rebuilding":
            return error_answer(rebuilding())
        if result.status == "ok":
            self.ctx.dirty_counts.add((room_id, "coupon", coupon_id))
        return from_cached("coupon_claimed", result.answer)

    async def restore(self, room_id: str) -> None:
        """Load the room's drops from the store, each buyer's used coupon with it."""
        uses = await self.ctx.store.coupon_uses(room_id)
        for data in await self.ctx.store.coupon_drops(room_id):
            drop = CouponDrop(**data)
            used = uses.get(drop.coupon_id, {})
            await self.data.load_coupon(room_id, drop, claimed=len(used), uses=used)
