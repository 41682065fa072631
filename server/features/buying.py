"""Buying within a sale: a hold (reserve.lua), its release or expiry
(release.lua), checkout, and the recovery of checkouts a dead or stalled
process left half done.

Checkout is the one place where the order store decides: the buyer hears
"placed" only after the order's transaction committed, and an order is written
only if recovery has not aborted the hold and Redis was not rebuilt since the
checkout began (the room's epoch; docs/faults.md)."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import orjson

from server.core import domain
from server.core.domain import now_ms
from server.core.errors import Conflict, Unavailable, refusal
from server.core.identity import Viewer
from server.core.protocol import Buy, Checkout, Release, encode
from server.features.context import Answer, Context, error_answer, from_cached, rebuilding
from server.features.registry import Registry, ViewerCall
from server.features.waitlist import Waitlist
from server.state.faults import REDIS_FAULTS
from server.state.sales_data import SalesData
from server.state.scripts import Answered, Released, ReleaseMode
from server.state.store import ABORTED, PLACED, Order, StoreClosed, StoreError, StoreOutcomeUnknown

log = logging.getLogger("livesell.buying")

# What a release's outcome tells the viewer who asked for it.
RELEASE_REFUSALS: dict[str, str] = {"expired": "hold_expired", "voided": "sale_stopped",
                                    "aborted": "checkout_cancelled",
                                    # A group buy's hold stays until its group fills or
                                    # expires (features/group_buys.py).
                                    "pending": "group_not_full"}


async def simulated_payment(amount: int) -> str:
    """The payment step. livesell ships no payment provider: this simulated step
    always approves and returns a reference. A real deployment replaces it."""
    return f"sim_{secrets.token_hex(8)}_{amount}"


def order_from_hold(room_id: str, hold: dict[str, Any], request_id: str) -> Order:
    subtotal = int(hold["unit_price"]) * int(hold["quantity"])
    discount = min(int(hold.get("discount") or 0), subtotal)
    return Order(
        order_id="o_" + hold["id"].removeprefix("h_"), hold_id=hold["id"],
        room_id=room_id, product_id=hold["product_id"], sale_id=hold["sale_id"],
        buyer_id=hold["buyer"], quantity=int(hold["quantity"]),
        unit_price=int(hold["unit_price"]), subtotal=subtotal, discount=discount,
        total=subtotal - discount, currency=hold["currency"],
        coupon_id=hold.get("coupon_id") or "", payment_ref="", created_at=now_ms(),
        request_id=request_id)


async def _tell(listener: Callable[[Order], Awaitable[object]], order: Order) -> None:
    """An order listener (fan points, a referral's reward), after the buyer's answer:
    its failure is logged, never the buyer's."""
    try:
        await listener(order)
    except (StoreError, *REDIS_FAULTS) as exc:
        log.info("order %s: a listener could not finish (%s)", order.order_id, exc)
    except Exception:
        log.exception("order %s: a listener failed", order.order_id)


class Buying:
    def __init__(self, ctx: Context, waitlist: Waitlist) -> None:
        self.ctx = ctx
        self.waitlist = waitlist
        # Holds whose checkout this process is running now: recovery leaves them to it.
        self.checkouts_in_flight: set[str] = set()
        # Stored orders waiting for Redis to come back to be counted there.
        self.finishing: set[asyncio.Task[None]] = set()

    @property
    def data(self) -> SalesData:
        return self.ctx.data.sales

    def register(self, registry: Registry) -> None:
        registry.message(Buy, self._buy, explain_end=True, start=self._start_buy)
        registry.message(Checkout, self._checkout)
        registry.message(Release, self._release_message)

    async def _buy(self, call: ViewerCall, msg: Buy) -> Answer:
        return await self.buy(call.viewer, call.room_id, msg.request_id, msg.product_id,
                              msg.quantity, call.client)

    async def _checkout(self, call: ViewerCall, msg: Checkout) -> Answer:
        return await self.checkout(call.viewer, call.room_id, msg.request_id, msg.hold_id,
                                   msg.coupon_id)

    async def _release_message(self, call: ViewerCall, msg: Release) -> Answer:
        return await self.release(call.viewer, call.room_id, msg.hold_id)

    async def _read_sale_id(self, room_id: str, product_id: str) -> str | Answer:
        """The product's current sale id from Redis ('' when it never had one: its
        listing decides), remembered for the next buy; or the answer when the room
        is being rebuilt or has no such product (which is not remembered, so unknown
        product ids cost no memory)."""
        sid = await self.data.current_sale_id(room_id, product_id)
        if sid is None:
            whole, known = await self.data.why_no_sale(room_id, product_id)
            if not whole:
                self.ctx.current_sale.pop((room_id, product_id), None)
                return error_answer(rebuilding())
            if not known:
                return error_answer(refusal("product_not_found"))
            sid = ""
        self.ctx.current_sale[(room_id, product_id)] = sid
        return sid

    def _start_buy(self, call: ViewerCall, msg: Buy) -> asyncio.Future[Answer | None] | None:
        """A buy whose product's sale id is in memory, without a task: one reserve.lua
        call, its answer built when the ledger's reply arrives. None (or a future of
        None, when reserve.lua says the sale changed) sends the buy down `buy`."""
        room_id, product_id = call.room_id, msg.product_id
        sid = self.ctx.current_sale.get((room_id, product_id))
        if sid is None:
            return None
        return self._reserve(call.viewer, room_id, msg.request_id, product_id, msg.quantity,
                             call.client, sid, domain.new_id("h"))

    async def buy(self, viewer: Viewer, room_id: str, request_id: str, product_id: str,
                  quantity: int, client: str = "",
                  on_new: Callable[[], None] | None = None) -> Answer:
        """Hold units for the viewer. `client` is the buyer's address bucket
        (admission.client_bucket), counted when the room's policy says limit_per_ip.
        `on_new` is called when this request made a new hold (not for a retry)."""
        hold_id = domain.new_id("h")
        # Usually a dict hit, taken without an await; Redis is read on a miss, and
        # again when reserve.lua says the sale changed ('stale').
        sid: str | Answer | None = self.ctx.current_sale.get((room_id, product_id))
        for attempt in range(2):
            if sid is None or attempt:
                sid = await self._read_sale_id(room_id, product_id)
            if isinstance(sid, Answer):
                return sid
            answer = await self._reserve(viewer, room_id, request_id, product_id, quantity,
                                         client, sid, hold_id, on_new)
            if answer is not None:
                return answer
        return error_answer(refusal("not_on_sale"))

    def _reserve(self, viewer: Viewer, room_id: str, request_id: str, product_id: str,
                 quantity: int, client: str, sale_id: str, hold_id: str,
                 on_new: Callable[[], None] | None = None) -> asyncio.Future[Answer | None]:
        """reserve.lua with `sale_id` as the product's current sale ('' for none: the
        listing decides); the future resolves to the buyer's answer, or to None when
        that is no longer the product's current sale ('stale')."""
        sale = self.ctx.settings.sale
        hold_ms = int(sale.hold_seconds * 1000)

        def answer(result: Answered) -> Answer | None:
            status = result.status
            if status == "stale":
                key = (room_id, product_id)
                if self.ctx.current_sale.get(key) == sale_id:
                    del self.ctx.current_sale[key]  # read again by whoever buys next
                return None
            if status == "rebuilding":
                return error_answer(rebuilding())
            if status == "ok":
                self.ctx.count(room_id, "holds")
                self.ctx.dirty_stock.add((room_id, product_id))
                self.ctx.note_due(room_id, now_ms() + hold_ms)
                self.ctx.timers_changed.set()  # the hold's expiry
                if on_new is not None:
                    on_new()
            return from_cached("hold", result.answer)

        return self.ctx.scripts.reserve(
            room_id, sale_id=sale_id, product_id=product_id, buyer=viewer.viewer_id,
            request_id=request_id, hold_id=hold_id, quantity=quantity, hold_ms=hold_ms,
            answer_ttl_s=sale.request_id_ttl_s, verified=viewer.verified, client=client,
            max_open_holds=sale.max_holds_per_viewer, into=answer)

    async def release(self, viewer: Viewer, room_id: str, hold_id: str) -> Answer:
        product_id, sale_id, buyer = await self.data.hold_owner(room_id, hold_id)
        if product_id is None or buyer != viewer.viewer_id:
            # (During a rebuild the hold is gone, or is going: release.lua says so.)
            return error_answer(refusal("hold_not_found"))
        result = await self.settle(room_id, hold_id, product_id, sale_id, "release",
                                   viewer.viewer_id)
        if result.outcome == "rebuilding":
            return error_answer(rebuilding())
        # 'done' says what the release did: the server clock decides whether the hold
        # was still there to release or had already expired.
        state = result.state
        if state == "released":
            return Answer("hold_released", {"hold_id": hold_id})
        if state in ("confirming", "confirmed"):
            return error_answer(Conflict("the hold is already checked out", code="checked_out"))
        return error_answer(refusal(RELEASE_REFUSALS.get(state, "hold_not_found")))

    async def settle(self, room_id: str, hold_id: str, product_id: str, sale_id: str,
                     mode: ReleaseMode, buyer: str = "", coupon_id: str = "") -> Released:
        """Release, expire or void a hold (release.lua): its units go back to stock,
        or, in the same step, to the head of the product's waitlist."""
        result = await self.ctx.scripts.release(room_id, hold_id=hold_id,
                                                product_id=product_id, sale_id=sale_id,
                                                mode=mode, waitlist=self.waitlist.terms,
                                                buyer=buyer, coupon_id=coupon_id)
        if result.outcome == "done":
            self.ctx.dirty_stock.add((room_id, product_id))
            await self.waitlist.released(room_id, product_id, result)
        return result

    async def expire_due_holds(self, room_id: str, hold_ids: list[str]) -> int:
        jobs = []
        for hid, (pid, sid) in zip(hold_ids, await self.data.holds_products(room_id, hold_ids),
                                   strict=True):
            if pid is None:
                await self.data.forget_expiring(room_id, hid)
                continue
            jobs.append(self.settle(room_id, hid, pid, sid, "expire"))
        results = await asyncio.gather(*jobs)
        expired = sum(1 for r in results if r.outcome == "done")
        if expired:
            self.ctx.count(room_id, "holds_expired", expired)
        return expired

    async def checkout(self, viewer: Viewer, room_id: str, request_id: str, hold_id: str,
                       coupon_id: str | None) -> Answer:
        """Pay for a hold (see the module docstring)."""
        # The room's policy (require_verified) is decided in begin_checkout.lua, as in
        # reserve.lua: one rule, in the atomic step, at no extra round trip.
        result = await self.ctx.scripts.begin_checkout(room_id, buyer=viewer.viewer_id,
                                                       request_id=request_id,
                                                       hold_id=hold_id,
                                                       coupon_id=coupon_id or "",
                                                       verified=viewer.verified)
        kind = result.status
        if kind == "dup":
            return from_cached("order_placed", result.payload)
        if kind == "rebuilding":
            return error_answer(rebuilding())
        if kind == "refused":
            if result.payload == "hold_not_found":
                # Redis may have lost the hold and the remembered answer, but the store
                # keeps the order of a checkout that was placed: a retry still finds it.
                existing = await self.ctx.store.order_for_hold(hold_id)
                if existing is not None and existing.buyer_id == viewer.viewer_id \
                        and existing.room_id == room_id:
                    return Answer("order_placed", {"order": existing.public()})
            return error_answer(refusal(result.payload))
        if kind == "confirming":
            # Another checkout of this hold is between its store write and its answer.
            return error_answer(refusal("request_in_progress"))
        hold = orjson.loads(result.payload)
        if kind == "confirmed":
            existing = await self.ctx.store.order_for_hold(hold_id)
            if existing is None:  # pragma: no cover - confirmed implies stored
                return error_answer(Unavailable("order record not found; try again"))
            return Answer("order_placed", {"order": existing.public()})
        # Due for recovery should this process die now. Until the pulse's next tick
        # writes that, the hold's own expiry keeps the room on the schedule.
        self.ctx.note_due(room_id,
                          now_ms() + int(self.ctx.settings.store.recover_after_s * 1000))
        self.checkouts_in_flight.add(hold_id)
        try:
            return await self._place(room_id, hold, result.epoch, request_id)
        finally:
            self.checkouts_in_flight.discard(hold_id)

    async def _place(self, room_id: str, hold: dict[str, Any], epoch: str,
                     request_id: str) -> Answer:
        hold_id = hold["id"]
        order = order_from_hold(room_id, hold, request_id)
        try:
            order = replace(order, payment_ref=await simulated_payment(order.total))
            outcome = await self.ctx.store.place_order(order, epoch)
        except (StoreOutcomeUnknown, StoreClosed) as exc:
            # The order may be in the store (its commit was not confirmed, or the store
            # closed under it at a shutdown). The hold stays 'confirming': recovery asks
            # the store, the arbiter, store.recover_after_s from now, and counts it as
            # sold or voids it. Back to 'held' it could expire into stock while its
            # order stands. The buyer's retry hears request_in_progress until then.
            log.warning("order for hold %s: outcome unknown (%s); recovery decides", hold_id,
                        exc)
            return error_answer(refusal("request_in_progress"))
        except Exception as exc:
            # Nothing was committed (the store raises only for a rolled-back write):
            # the hold goes back to 'held', so the buyer can try again before it expires.
            if not isinstance(exc, StoreError):
                log.exception("could not write order for hold %s", hold_id)
            await self.ctx.scripts.abort_checkout(room_id, hold_id=hold_id,
                                                  coupon_id=hold.get("coupon_id") or "")
            self.ctx.note_due(room_id, now_ms())
            self.ctx.timers_changed.set()  # the hold is back among the expiring ones
            return error_answer(Unavailable("the order could not be recorded; your hold "
                                            "is kept, try again", code="store_unavailable"))
        if outcome != PLACED:
            # Recovery aborted this hold, or Redis was rebuilt since the checkout began:
            # no order exists or ever will for it; its units go back to stock.
            await self.settle(room_id, hold_id, order.product_id, order.sale_id, "void",
                              coupon_id=hold.get("coupon_id") or "")
            return error_answer(refusal("checkout_cancelled"))
        # Only this checkout moved the hold to 'confirming' and the store wrote its
        # row (unique per hold): no need to read it back.
        answer = Answer("order_placed", {"order": order.public()})
        try:
            await self._finish(order, answer)
        except REDIS_FAULTS as exc:
            # The order is durable, so the buyer is told. The hold stays 'confirming'
            # and recovery moves its units to sold once Redis answers again.
            self.ctx.health.redis_failed(exc)
            log.info("order %s placed; it is counted in Redis when Redis is back",
                     order.order_id)
            task = asyncio.get_running_loop().create_task(
                self._finish_when_back(order, answer))
            self.finishing.add(task)
            task.add_done_callback(self.finishing.discard)
        return answer

    async def _finish_when_back(self, order: Order, answer: Answer) -> None:
        """Count a stored order in Redis as soon as Redis answers again. A Redis
        restart takes a fraction of a second; without this the order's units stayed
        held (and not sold) until recovery, store.recover_after_s later. Recovery
        stays the backstop for a process that dies meanwhile; both may run, and
        finish_checkout is idempotent ('already')."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.ctx.settings.store.recover_after_s
        delay = 0.05
        while True:
            await asyncio.sleep(delay)
            try:
                await self._finish(order, answer)
                log.info("order %s counted in Redis", order.order_id)
                return
            except REDIS_FAULTS as exc:
                if loop.time() + delay >= deadline:
                    log.warning("order %s: Redis still failing (%s); recovery counts it",
                                order.order_id, exc)
                    return
            delay = min(1.0, delay * 2)

    async def stop_background(self) -> None:
        """Cancel the retries still waiting for Redis (recovery finishes them)."""
        for task in list(self.finishing):
            task.cancel()
        if self.finishing:
            await asyncio.wait(list(self.finishing), timeout=5.0)

    async def _finish(self, order: Order, answer: Answer) -> None:
        finished = await self.ctx.scripts.finish_checkout(
            order, encode(answer.body), self.ctx.settings.sale.request_id_ttl_s)
        if finished.status == "ok":
            for listener in self.ctx.order_listeners:
                task = asyncio.get_running_loop().create_task(_tell(listener, order))
                self.finishing.add(task)
                task.add_done_callback(self.finishing.discard)
        if finished.status not in ("ok", "already"):
            # The order is durable; a hold missing from Redis means Redis lost it and
            # the rebuild counts the order from the store.
            log.warning("order %s stored but hold %s was %s in Redis", order.order_id,
                        order.hold_id, finished)
        self.ctx.dirty_stock.add((order.room_id, order.product_id))

    async def recover_checkouts(self, room_id: str, stuck: list[str]) -> int:
        """Decide the checkouts `stuck` in 'confirming' (past store.recover_after_s,
        found by the pulse), left by a process that died or stalled. The store
        decides first (an abort row unless the order is there); only then does Redis
        follow: void the hold (units back to stock) or count the order. A checkout
        still running in this process is left to it."""
        fixed = 0
        for hold_id in stuck:
            if hold_id in self.checkouts_in_flight:
                continue
            h = await self.data.hold(room_id, hold_id)
            if not h or h.get("state") != "confirming":
                await self.data.forget_confirming(room_id, hold_id)
                continue
            try:
                decided = await self.ctx.store.abort_hold(hold_id, room_id, "recovery",
                                                          now_ms())
            except (StoreError, StoreOutcomeUnknown):
                return fixed  # the store is stalled: decide nothing now, try again later
            if decided == ABORTED:
                await self.settle(room_id, hold_id, h["product_id"], h["sale_id"], "void",
                                  coupon_id=h.get("coupon_id") or "")
            else:
                order = await self.ctx.store.order_for_hold(hold_id)
                if order is None:  # pragma: no cover - ORDERED means the row is there
                    continue
                await self._finish(order, Answer("order_placed", {"order": order.public()}))
            fixed += 1
        return fixed
