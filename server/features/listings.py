"""Buy-it-now: a product's listing. While the host has a product open for sale, a
viewer can buy it at its list price outside any flash sale, under a per-buyer
limit, with the holds and checkout of a flash sale (buying.py). A flash sale that
is open overrides it; reserve.lua decides which of the two a buy gets, by the
server's clock, in the same atomic step as the stock.

Pinning a product opens it (unless the pin says `open_for_sale: false`); the host
opens or closes any product with `PUT .../products/{product_id}/listing`. Closing
keeps the holds already taken (their price was right); ending the show voids
them, as it does a sale's. Durable in the store first (a rebuild loads every
listing with its buyers' counts from the orders), then Redis, then every viewer
hears the product's card."""

from __future__ import annotations

import asyncio
from typing import Any

from server.core import domain, events
from server.core.domain import Listing, listing_id, now_ms
from server.features.catalogue import Catalogue
from server.features.context import Context
from server.features.registry import Call, Registry, Route
from server.state.sales_data import SalesData


class Listings:
    def __init__(self, ctx: Context, catalogue: Catalogue) -> None:
        self.ctx = ctx
        self.catalogue = catalogue
        catalogue.pin_listeners.append(self._pinned)

    @property
    def data(self) -> SalesData:
        return self.ctx.data.sales

    def register(self, registry: Registry) -> None:
        registry.route(Route("PUT", "/products/{product_id}/listing", self._put,
                             body=domain.LISTING_SHAPE, answer="ProductCard",
                             record_as="listing"))
        registry.on_restore(self.restore)

    def default(self, product_id: str) -> Listing:
        return Listing(product_id, open=False,
                       limit_per_buyer=self.ctx.settings.sale.listing_limit_per_buyer)

    async def current(self, room_id: str, product_id: str) -> Listing:
        h = await self.data.listing(room_id, product_id)
        if not h.get("limit"):
            return self.default(product_id)
        return Listing(product_id, open=h.get("state") == "open",
                       limit_per_buyer=int(h["limit"]))

    async def _put(self, call: Call) -> Any:
        return await self.put(call.room_id, call.params["product_id"], call.body)

    async def put(self, room_id: str, product_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """Open or close the product for sale at its list price, or change its limit;
        answers the product's card, which every viewer gets too."""
        await self.catalogue.product(room_id, product_id)  # refuses an unknown one
        listing = domain.parse_listing(body, product_id,
                                       await self.current(room_id, product_id),
                                       self.ctx.settings.sale.listing_limit_per_buyer)
        await self.apply(room_id, listing)
        card = await self.catalogue.product_card(room_id, product_id)
        await self.ctx.publish(room_id, events.product(card))
        return card

    async def apply(self, room_id: str, listing: Listing) -> None:
        product, _ = await self.catalogue.product(room_id, listing.product_id)
        await self.ctx.store.put_listing(room_id, listing.product_id, listing.open,
                                         listing.limit_per_buyer, now_ms())
        await self.data.put_listing(room_id, listing, product.price, product.currency)
        if listing.open:
            await self.ctx.stock_freed(room_id, listing.product_id)

    async def _pinned(self, room_id: str, product_id: str, open_for_sale: bool) -> None:
        """A pin sets whether the product is open for sale (the pin's event carries
        the card, so nothing is published here)."""
        current = await self.current(room_id, product_id)
        if current.open != open_for_sale:
            await self.apply(room_id, Listing(product_id, open_for_sale,
                                              current.limit_per_buyer))

    async def close_all(self, room_id: str, product_ids: list[str]) -> None:
        """The show ended: every listing closes and its open holds are voided (units
        back to stock), as a stopped sale's are. The products' steps go together: the
        ledger sends their scripts in one round trip, the store commits them in one."""
        await asyncio.gather(*(self._close(room_id, pid) for pid in product_ids))

    async def _close(self, room_id: str, product_id: str) -> None:
        current = await self.current(room_id, product_id)
        if current.open:
            await self.ctx.store.put_listing(room_id, product_id, False,
                                             current.limit_per_buyer, now_ms())
        lid = listing_id(product_id)
        stopped = await self.ctx.scripts.stop_sale(room_id, sale_id=lid, product_id=product_id)
        if stopped.voided:
            self.ctx.dirty_stock.add((room_id, product_id))
            await self.ctx.publish(room_id, events.holds_voided(
                lid, product_id, "show_ended", stopped.units, stopped.voided))

    async def restore(self, room_id: str) -> None:
        """Every product's listing from the store (closed at the default limit when
        the host never set it); each buyer's units from the orders taken through it."""
        by_sale = await self.ctx.store.sold_by_sale_and_buyer(room_id)
        stored = await self.ctx.store.listings(room_id)
        for data, _ in await self.ctx.store.products(room_id):
            pid = data["product_id"]
            is_open, limit, _ = stored.get(pid, (False, self.default(pid).limit_per_buyer, 0))
            await self.data.load_listing(room_id, Listing(pid, is_open, limit),
                                         int(data["price"]), str(data["currency"]),
                                         by_sale.get(listing_id(pid), {}))
