"""Flash sales: the host starts one on a product (now or scheduled), the
server's clock opens and closes it (due jobs `sale_open`, `sale_close`, and a
`countdown` tick a second before the opening), the host may stop it. Stopping
voids its open holds in one atomic step (stop_sale.lua). Buying within a sale
is server/features/buying.py."""

from __future__ import annotations

from typing import Any

from server.core import domain, events
from server.core.domain import Sale, now_ms
from server.core.errors import BadRequest, Conflict, refusal
from server.core.jobs import Job
from server.core.views import sale_state, sale_view
from server.features.catalogue import Catalogue
from server.features.context import Context
from server.features.registry import Call, Registry, Route
from server.state.sales_data import SalesData


class Sales:
    def __init__(self, ctx: Context, catalogue: Catalogue) -> None:
        self.ctx = ctx
        self.catalogue = catalogue

    @property
    def data(self) -> SalesData:
        return self.ctx.data.sales

    def register(self, registry: Registry) -> None:
        registry.route(Route("POST", "/sales", self._start, status=201, body=domain.SALE_SHAPE,
                             answer="Sale",
                             record_as="sale", goes_live=True))
        registry.route(Route("POST", "/sales/{sale_id}/stop", self._stop,
                             record_as="stop_sale"))
        registry.job("sale_open", self._opens)
        registry.job("sale_close", self._closes)
        registry.job("countdown", self._countdown)
        registry.on_restore(self.restore)

    async def _start(self, call: Call) -> Any:
        return await self.start_sale(call.room_id, call.body)

    async def _stop(self, call: Call) -> Any:
        return await self.stop_sale(call.room_id, call.params["sale_id"])

    async def start_sale(self, room_id: str, body: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(body.get("product_id"), str):
            raise BadRequest("product_id: required string", details={"field": "product_id"})
        product, _ = await self.catalogue.product(room_id, body["product_id"])
        now = now_ms()
        sale = domain.parse_sale(body, product, now)
        current = await self.data.current_sale_id(room_id, product.product_id)
        if current:
            cur = await self.data.sale(room_id, current)
            if cur and sale_state(cur, now) in ("scheduled", "open"):
                raise refusal("sale_active", sale_id=current)
        left = await self.data.stock_left(room_id, product.product_id)
        if sale.units > left:
            raise refusal("insufficient_stock",
                          f"the sale offers {sale.units} units but only {left} are in stock")
        await self.ctx.store.add_sale(room_id, sale.public(), now)
        await self.load(room_id, sale, held=0, sold=0, stopped=False, bought={})
        self.ctx.current_sale[(room_id, product.product_id)] = sale.sale_id
        view = sale_view(await self.data.sale(room_id, sale.sale_id), left, now)
        await self.ctx.publish(room_id, events.sale_started(view))
        if view["state"] == "open":
            await self.ctx.stock_freed(room_id, product.product_id)
        return view

    def jobs_of(self, sale: Sale, now: int) -> dict[str, int]:
        """The sale's due jobs (member -> due ms) still in the future."""
        jobs: dict[str, int] = {}
        if sale.starts_at > now:
            jobs[Job("sale_open", sale.sale_id).member] = sale.starts_at
            for n in range(1, self.ctx.settings.sale.countdown_from_s + 1):
                at = sale.starts_at - n * 1000
                if at > now:
                    jobs[Job("countdown", f"{sale.sale_id}:{n}").member] = at
        if sale.ends_at > now:
            jobs[Job("sale_close", sale.sale_id).member] = sale.ends_at
        return jobs

    async def load(self, room_id: str, sale: Sale, held: int, sold: int, stopped: bool,
                   bought: dict[str, int]) -> None:
        jobs = {} if stopped else self.jobs_of(sale, now_ms())
        await self.data.load(room_id, sale, held, sold, stopped, bought, jobs)
        self.ctx.timers_changed.set()

    async def stop_sale(self, room_id: str, sale_id: str) -> dict[str, Any]:
        sale = await self.data.sale(room_id, sale_id)
        if not sale or domain.is_listing(sale_id):
            # A listing is closed with PUT .../listing, not stopped (features/listings.py).
            raise refusal("sale_not_found")
        now = now_ms()
        if sale_state(sale, now) in ("stopped", "ended"):
            raise Conflict("the sale is already over", code="ended")
        product_id = sale["product_id"]
        await self.ctx.store.stop_sale(sale_id, now)
        # One atomic step: the sale stops and its open holds are voided (their units
        # go back to stock), so no hold taken at a wrong price can still be paid.
        stopped = await self.ctx.scripts.stop_sale(room_id, sale_id=sale_id,
                                                   product_id=product_id)
        if stopped.status == "missing":
            raise refusal("sale_not_found")
        if stopped.status == "over":
            raise Conflict("the sale is already over", code="ended")
        if stopped.voided:
            self.ctx.dirty_stock.add((room_id, product_id))
            await self.ctx.publish(room_id, events.holds_voided(
                sale_id, product_id, "sale_stopped", stopped.units, stopped.voided))
        view = await self._announce_end(room_id, sale_id)
        # The voided units, or the listing that applies again, may serve those waiting.
        await self.ctx.stock_freed(room_id, product_id)
        return view

    async def _announce_end(self, room_id: str, sale_id: str) -> dict[str, Any]:
        sale, left = await self.data.sale_and_left(room_id, sale_id)
        view = sale_view(sale, left, now_ms())
        await self.ctx.publish(room_id, events.sale_closed(view))
        return view

    async def _live_sale(self, room_id: str, sale_id: str) -> dict[str, Any]:
        """The sale's hash for a due job, or {} when it is gone or was stopped (the
        host's stop already told viewers)."""
        sale = await self.data.sale(room_id, sale_id)
        return {} if sale.get("state") == "stopped" else sale

    async def _opens(self, room_id: str, sale_id: str) -> None:
        sale = await self._live_sale(room_id, sale_id)
        if sale:
            left = await self.data.stock_left(room_id, sale["product_id"])
            view = sale_view(sale, left, now_ms())
            await self.ctx.publish(room_id, events.sale_open(view))
            self.ctx.outbox(room_id, "sale.opened", sale_id, view)
            await self.ctx.stock_freed(room_id, sale["product_id"])

    async def _closes(self, room_id: str, sale_id: str) -> None:
        sale = await self._live_sale(room_id, sale_id)
        if sale:
            await self._announce_end(room_id, sale_id)
            await self.ctx.stock_freed(room_id, sale["product_id"])  # the listing, if open

    async def _countdown(self, room_id: str, item: str) -> None:
        sale_id, _, n = item.partition(":")
        sale = await self._live_sale(room_id, sale_id)
        if sale:
            await self.ctx.publish(room_id, events.sale_countdown(
                sale_id, sale["product_id"], int(sale.get("starts_at") or 0), int(n)))

    async def restore(self, room_id: str) -> None:
        """Load the room's sales from the store: sold counts and each buyer's count
        from its orders, nothing held (holds did not survive)."""
        by_sale = await self.ctx.store.sold_by_sale_and_buyer(room_id)
        for data, stopped_at in await self.ctx.store.sales(room_id):
            sale = Sale(**data)
            buyers = by_sale.get(sale.sale_id, {})
            await self.load(room_id, sale, held=0, sold=sum(buyers.values()),
                            stopped=stopped_at is not None, bought=buyers)
