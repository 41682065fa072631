"""The catalogue: products, their stock total, and the pinned products.

Durable in the order store first, then Redis, then every viewer hears it
(`product`, `pinned`, `unpinned`). Stock changes that could undercut holds go
through adjust_stock.lua."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from server.core import domain, events
from server.core.domain import Listing, Product, now_ms
from server.core.errors import Conflict, NotFound, refusal
from server.core.views import card_view
from server.features.context import Context
from server.features.registry import Call, Registry, Route
from server.state.catalogue_data import CatalogueData

# Called when the host pins a product: (room, product, open_for_sale), before the
# pin is announced (features/listings.py opens or closes the product for sale).
PinListener = Callable[[str, str, bool], Awaitable[None]]


class Catalogue:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.pin_listeners: list[PinListener] = []

    @property
    def data(self) -> CatalogueData:
        return self.ctx.data.catalogue

    def register(self, registry: Registry) -> None:
        registry.route(Route("POST", "/products", self._add, status=201,
                             body=domain.PRODUCT_SHAPE, answer="ProductCard",
                             record_as="product"))
        registry.route(Route("PATCH", "/products/{product_id}", self._update,
                             body=domain.PRODUCT_UPDATE_SHAPE, answer="ProductCard",
                             record_as="update_product"))
        registry.route(Route("GET", "/products/{product_id}", self._get, access="public",
                             answer="ProductCard"))
        registry.route(Route("POST", "/pins", self._pin, body=domain.PIN_SHAPE,
                             record_as="pin"))
        registry.route(Route("DELETE", "/pins/{product_id}", self._unpin, record_as="unpin"))
        registry.on_restore(self.restore)

    async def _add(self, call: Call) -> Any:
        return await self.add_product(call.room_id, call.body)

    async def _update(self, call: Call) -> Any:
        return await self.update_product(call.room_id, call.params["product_id"], call.body)

    async def _get(self, call: Call) -> Any:
        return await self.product_card(call.room_id, call.params["product_id"])

    async def _pin(self, call: Call) -> Any:
        return await self.pin(call.room_id, call.body)

    async def _unpin(self, call: Call) -> Any:
        return await self.unpin(call.room_id, call.params["product_id"])

    async def product(self, room_id: str, product_id: str) -> tuple[Product, int]:
        """The product and its position in the catalogue; refuses an unknown one."""
        data = await self.data.product(room_id, product_id)
        if data is None:
            raise refusal("product_not_found")
        position = int(data.pop("position", 0))
        return Product(**data), position

    async def add_product(self, room_id: str, body: dict[str, Any]) -> dict[str, Any]:
        product, stock = domain.parse_product(body)
        limit = self.ctx.settings.sale.max_products_per_room
        count, exists = await self.data.count_and_exists(room_id, product.product_id)
        if count >= limit:
            raise Conflict(f"a room holds at most {limit} products", code="too_many_products")
        if exists:
            raise Conflict(f"product {product.product_id} already exists", code="duplicate")
        await self.ctx.store.put_product(room_id, product.product_id, product.public(), stock)
        # Its listing starts closed (pinning it opens it, features/listings.py).
        await self.data.add(room_id, product.product_id,
                            {**product.public(), "position": count + 1}, stock,
                            Listing(product.product_id, open=False, limit_per_buyer=self.ctx
                                    .settings.sale.listing_limit_per_buyer))
        card = await self.product_card(room_id, product.product_id)
        await self.ctx.publish(room_id, events.product(card))
        return card

    async def update_product(self, room_id: str, product_id: str,
                             body: dict[str, Any]) -> dict[str, Any]:
        product, position = await self.product(room_id, product_id)
        updated, stock = domain.apply_product_update(product, body)
        if stock is not None:
            adjusted = await self.ctx.scripts.adjust_stock(room_id, product_id, stock)
            if not adjusted.ok:
                raise refusal("insufficient_stock", f"stock cannot go below the "
                              f"{adjusted.held_and_sold} units held or sold")
        total = stock if stock is not None else await self.data.stock_total(room_id,
                                                                            product_id)
        await self.ctx.store.put_product(room_id, product_id, updated.public(), total)
        await self.data.put(room_id, product_id, {**updated.public(), "position": position})
        card = await self.product_card(room_id, product_id)
        await self.ctx.publish(room_id, events.product(card))
        if stock is not None:
            await self.ctx.stock_freed(room_id, product_id)
        return card

    async def product_card(self, room_id: str, product_id: str) -> dict[str, Any]:
        product, _ = await self.product(room_id, product_id)
        stock, sale, listing, waiting = await self.data.card_parts(room_id, product_id)
        return card_view(product.public(), stock, sale, listing, waiting, now_ms())

    async def pin(self, room_id: str, body: dict[str, Any]) -> dict[str, Any]:
        product_id, open_for_sale = domain.parse_pin(body)
        await self.product(room_id, product_id)
        pins = await self.data.pins(room_id)
        if product_id not in pins:
            limit = self.ctx.settings.sale.max_pins
            if len(pins) >= limit:
                raise refusal("pin_limit", f"at most {limit} products can be pinned at "
                              "once; unpin one first")
        for listener in self.pin_listeners:
            await listener(room_id, product_id, open_for_sale)
        if product_id not in pins:
            await self.data.add_pin(room_id, product_id)
        pins = await self.data.pins(room_id)
        card = await self.product_card(room_id, product_id)
        event = events.pinned(card, pins)
        seq = await self.ctx.publish(room_id, event)
        return {"seq": seq, **event}

    async def unpin(self, room_id: str, product_id: str) -> dict[str, Any]:
        if not await self.data.remove_pin(room_id, product_id):
            raise NotFound(f"product {product_id} is not pinned", code="not_pinned")
        event = events.unpinned(product_id, await self.data.pins(room_id))
        seq = await self.ctx.publish(room_id, event)
        return {"seq": seq, **event}

    async def restore(self, room_id: str) -> None:
        """Load the room's products from the store; sold counts come from its orders,
        so nothing the store holds as sold is ever sold again."""
        sold = await self.ctx.store.sold_by_product(room_id)
        await self.data.restore(room_id, [(data, stock, sold.get(data["product_id"], 0))
                                          for data, stock in
                                          await self.ctx.store.products(room_id)])
