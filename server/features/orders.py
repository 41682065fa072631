"""The order lifecycle after checkout: the host cancels a placed order
(docs/protocol.md section 21). The store records the cancellation first (the
record every count of what was sold reads); then one atomic Redis step
(lua/cancel_order.lua) gives its units back to the product's stock and the
buyer's per-buyer and per-address counts back, and makes a coupon it used the
buyer's again; the room hears `order_cancelled`, the waitlist is served, and
the listeners take back what the order earned (fan points, a referral reward).

Cancelling again answers the same cancellation and finishes a Redis step a
failure left undone. Refunds and the webhook outbox are not built yet
(issue 16)."""

from __future__ import annotations

import logging
from typing import Any, Final

from server.core import events
from server.core.domain import now_ms
from server.core.errors import NotFound, Unavailable
from server.core.protocol import get_str, reject_unknown
from server.features.context import Context
from server.features.registry import Call, Registry, Route
from server.state.faults import REDIS_FAULTS
from server.state.store import StoreError

log = logging.getLogger("livesell.orders")

MAX_REASON: Final = 200


class Orders:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def register(self, registry: Registry) -> None:
        # Not a show change: an ended show's orders may still be cancelled.
        registry.route(Route("POST", "/orders/{order_id}/cancel", self._cancel, body=True))

    async def _cancel(self, call: Call) -> Any:
        reject_unknown(call.body, frozenset({"reason"}), "cancel")
        reason = get_str(call.body, "reason", max_len=MAX_REASON, min_len=0, strip=True,
                         default="")
        return await self.cancel(call.room_id, call.params["order_id"], reason)

    async def cancel(self, room_id: str, order_id: str, reason: str) -> dict[str, Any]:
        epoch = await self.ctx.data.rooms.epoch(room_id)
        if epoch is None:
            raise Unavailable("the room is being restored; try again",
                              details={"retry_after_s": 1})
        try:
            recorded = await self.ctx.store.cancel_order(room_id, order_id, reason, now_ms(),
                                                         epoch)
        except StoreError as exc:
            raise Unavailable("the cancellation could not be recorded; try again",
                              code="store_unavailable") from exc
        if recorded is None:
            raise NotFound(f"no order {order_id} in this room", code="order_not_found")
        order, cancellation = recorded
        applied = await self.ctx.scripts.cancel_order(order, cancellation["epoch"], now_ms())
        if applied == "ok":
            self.ctx.dirty_stock.add((room_id, order.product_id))
            await self.ctx.publish(room_id, events.order_cancelled(
                order.order_id, order.buyer_id, order.product_id, order.quantity,
                cancellation["reason"], cancellation["cancelled_at"]))
            await self.ctx.stock_freed(room_id, order.product_id)
            for listener in self.ctx.cancel_listeners:
                try:
                    await listener(order)
                except (StoreError, *REDIS_FAULTS) as exc:
                    log.warning("order %s cancelled; a listener could not finish: %s",
                                order.order_id, exc)
        return {"order": order.public() | {"status": "cancelled", **{
            k: cancellation[k] for k in ("reason", "cancelled_at")}}}
