"""The order lifecycle after checkout: the host cancels a placed order, or
refunds some or all of its units (docs/protocol.md section 21). The store
records the change first (the record every count of what was sold reads);
then one atomic Redis step
(lua/cancel_order.lua) gives its units back to the product's stock and the
buyer's per-buyer and per-address counts back, and makes a coupon it used the
buyer's again; the room hears `order_cancelled`, the waitlist is served, and
the listeners take back what the order earned (fan points, a referral reward).

Cancelling again answers the same cancellation and finishes a Redis step a
failure left undone; a refund is made once per request id, and its retry does
the same. Each is an event (`order_cancelled`, `order_refunded`) and a webhook
event written in the same store transaction (`order.cancelled`,
`order.refunded`)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final

from server.core import events
from server.core.domain import now_ms
from server.core.errors import Conflict, NotFound, Unavailable
from server.core.protocol import (
    MAX_STOCK,
)
from server.core.schema import ID, Bool, Int, Shape, Str, opt, req
from server.features.context import Context, rebuilding
from server.features.registry import Call, Registry, Route
from server.state.faults import REDIS_FAULTS
from server.state.store import Order, StoreError

log = logging.getLogger("livesell.orders")

MAX_REASON: Final = 200
REASON: Final = Str(MAX_REASON, min_len=0, strip=True)
CANCEL_SHAPE: Final = Shape("cancel", {"reason": opt(REASON, "")})
REFUND_SHAPE: Final = Shape("refund", {
    "request_id": req(ID, "the refund's own id: a retry with it refunds nothing more"),
    "quantity": opt(Int(1, MAX_STOCK), doc="units to refund (default: every unit not "
                    "refunded yet)"),
    "restock": opt(Bool(), True, "the units go back to stock and the buyer's limits"),
    "reason": opt(REASON, ""),
})


class Orders:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def register(self, registry: Registry) -> None:
        # Not a show change: an ended show's orders may still be cancelled.
        registry.route(Route("POST", "/orders/{order_id}/cancel", self._cancel,
                             body=CANCEL_SHAPE))
        registry.route(Route("POST", "/orders/{order_id}/refund", self._refund,
                             body=REFUND_SHAPE))

    async def _cancel(self, call: Call) -> Any:
        """Cancel an order: its units go back to stock (docs/protocol.md section 21)."""
        v = CANCEL_SHAPE.read(call.body)
        return await self.cancel(call.room_id, call.params["order_id"], v["reason"])

    async def cancel(self, room_id: str, order_id: str, reason: str) -> dict[str, Any]:
        outcome, order, cancellation = await self._record(
            room_id, order_id, "cancellation",
            lambda epoch: self.ctx.store.cancel_order(room_id, order_id, reason, now_ms(),
                                                      epoch))
        if outcome == "refunded":
            raise Conflict("the order was refunded (in part): refund what is left instead",
                           code="order_refunded")
        applied = await self.ctx.scripts.cancel_order(order, cancellation["epoch"], now_ms())
        if applied == "ok":
            self.ctx.dirty_stock.add((room_id, order.product_id))
            await self.ctx.publish(room_id, events.order_cancelled(
                order.order_id, order.hold_id, order.buyer_id, order.product_id,
                order.quantity,
                cancellation["reason"], cancellation["cancelled_at"]))
            await self.ctx.stock_freed(room_id, order.product_id)
        # Whatever Redis answered (a retry after a failure, or after a rebuild that
        # counted the cancellation from the store): taking back what the order earned
        # is safe to repeat (each reversal is recorded once).
        await self._tell(order)
        return {"order": order.public() | {"status": "cancelled", **{
            k: cancellation[k] for k in ("reason", "cancelled_at")}}}

    async def _refund(self, call: Call) -> Any:
        """Refund some or all units of an order, once per request id."""
        v = REFUND_SHAPE.read(call.body)
        return await self.refund(call.room_id, call.params["order_id"], v["request_id"],
                                 v.get("quantity"), v["restock"], v["reason"])

    async def refund(self, room_id: str, order_id: str, request_id: str,
                     quantity: int | None, restock: bool, reason: str) -> dict[str, Any]:
        """Money back for `quantity` units (None: every unit not refunded yet), pro rata
        of what was paid; `restock`: those units go back to stock and the buyer's
        limits. Once per request id: a retry answers the same refund. The order's
        coupon stays used; a refund of the whole order takes back what it earned, as a
        cancellation does."""
        outcome, order, refund = await self._record(
            room_id, order_id, "refund",
            lambda epoch: self.ctx.store.refund_order(room_id, order_id, request_id,
                                                      quantity, restock, reason, now_ms(),
                                                      epoch))
        if outcome == "cancelled":
            raise Conflict("the order was cancelled: nothing is left to refund",
                           code="order_cancelled")
        if outcome == "refunded":
            raise Conflict("every unit of the order was refunded already",
                           code="order_refunded")
        if outcome == "too_many":
            raise Conflict(f"only {refund['left']} unit(s) of the order are left to refund",
                           code="refund_too_large", details={"left": refund["left"]})
        if refund["restock"]:
            applied = await self.ctx.scripts.cancel_order(
                order, refund["epoch"], now_ms(), change_id=refund["refund_id"],
                quantity=refund["quantity"])
            if applied == "ok":
                self.ctx.dirty_stock.add((room_id, order.product_id))
                await self.ctx.stock_freed(room_id, order.product_id)
        public = {k: v for k, v in refund.items() if k != "epoch"} | {
            "restock": bool(refund["restock"])}
        if outcome == "new":
            await self.ctx.publish(room_id, events.order_refunded(
                order.order_id, order.buyer_id, order.product_id, public))
        # A retry too: the whole order refunded takes back what it earned, once.
        refunded = await self.ctx.store.refunds(room_id)
        if sum(r["quantity"] for r in refunded.get(order_id, [])) >= order.quantity:
            await self._tell(order)
        return {"order": order.public(), "refund": public}

    async def _record(self, room_id: str, order_id: str, what: str,
                      write: Callable[[str], Awaitable[tuple[str, Order, dict[str, Any]]
                                                        | None]]
                      ) -> tuple[str, Order, dict[str, Any]]:
        """Record a change of an order in the store under the room's Redis epoch
        (`write(epoch)`): refused while the room is rebuilt, when the store cannot
        take it, when the room has no such order, and when a rebuild began meanwhile
        (the store's epoch moved: 'fenced')."""
        epoch = await self.ctx.data.rooms.epoch(room_id)
        if epoch is None:
            raise rebuilding()
        try:
            recorded = await write(epoch)
        except StoreError as exc:
            raise Unavailable(f"the {what} could not be recorded; try again",
                              code="store_unavailable") from exc
        if recorded is None:
            raise NotFound(f"no order {order_id} in this room", code="order_not_found")
        if recorded[0] == "fenced":
            raise rebuilding()
        return recorded

    async def _tell(self, order: Order) -> None:
        for listener in self.ctx.cancel_listeners:
            try:
                await listener(order)
            except (StoreError, *REDIS_FAULTS) as exc:
                log.warning("order %s: a listener could not finish: %s", order.order_id, exc)
