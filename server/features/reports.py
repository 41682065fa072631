"""What the host reads about the show: live stats, the orders, the audit
(Redis counters beside the store's record, with checks anyone can rerun), and
the post-show report and exports (their content: features/show_report.py)."""

from __future__ import annotations

from typing import Any

from server.core import auction_chain
from server.core.auction_terms import hold_sale_id
from server.core.domain import listing_id, now_ms
from server.core.errors import Unavailable
from server.core.group_deals import deal_view
from server.core.schema import Query, QueryInt
from server.core.views import auction_view, sale_view
from server.features import show_report
from server.features.context import Context
from server.features.registry import Call, Registry, Route
from server.features.room import Room
from server.state.store import Order

ORDERS_QUERY = Query({"limit": QueryInt(100, 1, 1000, "how many to return"),
                      "offset": QueryInt(0, 0, 10**9, "how many to skip")})


class Reports:
    def __init__(self, ctx: Context, room: Room) -> None:
        self.ctx = ctx
        self.room = room

    def register(self, registry: Registry) -> None:
        registry.route(Route("GET", "/orders", self._orders, query=ORDERS_QUERY))
        registry.route(Route("GET", "/stats", self._stats))
        # It reports 'rebuilding' itself.
        registry.route(Route("GET", "/audit", self._audit, needs_whole=False))
        # The post-show report and the orders, to keep (features/show_report.py).
        registry.route(Route("GET", "/report", self._report))
        registry.route(Route("GET", "/report.csv", self._report_csv, media_type="text/csv",
                             download="{room}-report.csv"))
        registry.route(Route("GET", "/report.html", self._report_html,
                             media_type="text/html", download="{room}-report.html"))
        registry.route(Route("GET", "/orders.csv", self._orders_csv, media_type="text/csv",
                             download="{room}-orders.csv"))
        registry.on_upkeep(self.flush_counts)

    async def _orders(self, call: Call) -> Any:
        q = ORDERS_QUERY.read(call.query)
        limit, offset = q["limit"], q["offset"]
        return {"orders": await self.orders(call.room_id, limit, offset)}

    async def _stats(self, call: Call) -> Any:
        return await self.stats(call.room_id)

    async def _audit(self, call: Call) -> Any:
        return await self.audit(call.room_id)

    async def stats(self, room_id: str) -> dict[str, Any]:
        """The host console's live numbers."""
        state = await self.room.room_state(room_id)
        totals = await self.ctx.store.order_totals(room_id)
        last_minute, this_minute = await self.ctx.data.rooms.chat_per_minute(
            room_id, now_ms() // 60_000)
        unique = state["viewers"]["unique"]
        products = [{"product_id": c["product_id"], "title": c["title"], **c["stock"],
                     "sale": c["sale"]} for c in state["products"]]
        return {
            "server_time": state["server_time"],
            "viewers": state["viewers"],
            "likes": state["likes"],
            "chat_per_minute": last_minute,
            "chat_this_minute": this_minute,
            "holds_units": sum(p["held"] for p in products),
            "orders": totals["orders"],
            "orders_cancelled": totals["cancelled"],
            "units_sold": totals["units"],
            "revenue": totals["revenue"],
            "buyers": totals["buyers"],
            "conversion": round(totals["buyers"] / unique, 4) if unique else 0.0,
            "products": products,
        }

    async def orders(self, room_id: str, limit: int, offset: int) -> list[dict[str, Any]]:
        """The room's orders, each with its `status`: `placed`, `cancelled` (with
        `reason` and `cancelled_at`), `refunded` or `partly_refunded` (with `refunds`)."""
        cancelled = await self.ctx.store.cancellations(room_id)
        refunds = await self.ctx.store.refunds(room_id)
        return [o.public() | status(o, cancelled, refunds)
                for o in await self.ctx.store.orders(room_id, limit, offset)]

    async def flush_counts(self) -> None:
        """Add this process's report counts to Redis (once a second, by the pulse)."""
        taken, self.ctx.report_counts = self.ctx.report_counts, {}
        for room_id, counts in taken.items():
            await self.ctx.data.rooms.add_report_counts(room_id, counts)

    async def _all_orders(self, room_id: str) -> list[Order]:
        orders: list[Order] = []
        while True:
            page = await self.ctx.store.orders(room_id, 1000, len(orders))
            orders.extend(page)
            if len(page) < 1000:
                return orders

    async def report(self, room_id: str) -> dict[str, Any]:
        """The post-show report (show_report.build) of what the store and Redis hold."""
        store = self.ctx.store
        state = await self.room.room_state(room_id)
        counts, viewers_by_minute, chat_by_minute = \
            await self.ctx.data.rooms.report_counters(room_id)
        lotteries = []
        for data, seed, result in await store.lotteries(room_id):
            lotteries.append({
                "lottery_id": data["lottery_id"], "prize": data.get("prize", ""),
                "seed_hash": data.get("seed_hash", ""), "seed": seed if result else None,
                "entrants": len(result["entrants"]) if result else 0,
                "entrants_digest": result.get("entrants_digest") if result else None,
                "winners": result.get("winners", []) if result else [],
                "verify": f"livesell verify-lottery --url "
                          f"<server>/api/rooms/{room_id}/lotteries/{data['lottery_id']}"})
        auctions = []
        for h in await self.ctx.data.auctions.auctions(room_id):
            view = auction_view(h)
            chain = await self.ctx.data.auctions.chain(room_id, view["auction_id"])
            auctions.append({"auction_id": view["auction_id"], "title": view.get("title"),
                             "state": view["state"], "bids": view["bids"],
                             "result": view.get("result"),
                             "chain_ok": not auction_chain.verify(view, chain)})
        return show_report.build(
            {**state["room"], "channel": await self.ctx.channel_of(room_id)},
            await self._all_orders(room_id), await store.cancellations(room_id),
            await store.refunds(room_id),
            await store.products(room_id), await store.coupon_drops(room_id), counts,
            viewers_by_minute, chat_by_minute, state["viewers"], int(state["likes"]),
            lotteries, auctions, await self.audit(room_id), now_ms())

    async def _report(self, call: Call) -> Any:
        return await self.report(call.room_id)

    async def _report_csv(self, call: Call) -> Any:
        return show_report.report_csv(await self.report(call.room_id))

    async def _report_html(self, call: Call) -> Any:
        return show_report.report_html(await self.report(call.room_id))

    async def _orders_csv(self, call: Call) -> Any:
        titles = {p["product_id"]: p.get("title", "")
                  for p, _ in await self.ctx.store.products(call.room_id)}
        return show_report.orders_csv(await self._all_orders(call.room_id),
                                      await self.ctx.store.cancellations(call.room_id),
                                      await self.ctx.store.refunds(call.room_id), titles)

    async def _auction_checks(self, room_id: str, by_buyer: dict[str, dict[str, int]],
                              checks: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Each auction's chain verifies from its published record; an ended one's
        every accepted bid is in the store; its unit was sold at most once."""
        out = []
        for h in await self.ctx.data.auctions.auctions(room_id):
            view = auction_view(h)
            aid = view["auction_id"]
            chain = await self.ctx.data.auctions.chain(room_id, aid)
            problems = auction_chain.verify(view, chain)
            checks.append({"name": f"auction {aid}: the bid chain verifies",
                           "ok": not problems, "detail": problems[:10]})
            sold = sum(by_buyer.get(hold_sale_id(aid), {}).values())
            checks.append({"name": f"auction {aid}: its unit sold at most once",
                           "ok": sold <= 1, "detail": {"orders": sold}})
            stored = 0
            if view["state"] != "open":
                stored = len(await self.ctx.store.auction_bids(aid))
                checks.append({"name": f"auction {aid}: every accepted bid is in the store",
                               "ok": stored == view["bids"],
                               "detail": {"redis": view["bids"], "store": stored}})
            out.append({"auction_id": aid, "state": view["state"], "bids": view["bids"],
                        "sold_in_store": sold, "bids_in_store": stored})
        return out

    async def audit(self, room_id: str) -> dict[str, Any]:
        """Redis counters beside the store's record, per product and sale, with checks.

        While the room is being rebuilt there is nothing to compare: the audit says
        `rebuilding` and is not ok. The store-only checks (no sale's orders above its
        units, no hold both ordered and aborted) prove the record itself."""
        store = self.ctx.store
        if not await self.ctx.data.rooms.is_whole(room_id):
            try:
                await self.ctx.ensure_whole(room_id)
            except Unavailable:
                return {"room_id": room_id, "state": "rebuilding", "products": [],
                        "sales": [], "listings": [], "orders": await store.order_totals(room_id),
                        "checks": [], "ok": False}
        state = await self.room.room_state(room_id)
        sold_store = await store.sold_by_product(room_id)
        by_buyer = await store.sold_by_sale_and_buyer(room_id)
        totals = await store.order_totals(room_id)
        products = []
        checks: list[dict[str, Any]] = []
        for card in state["products"]:
            pid, st = card["product_id"], card["stock"]
            products.append({"product_id": pid, **st, "sold_in_store": sold_store.get(pid, 0)})
            checks.append({"name": f"{pid}: left + held + sold = total",
                           "ok": st["left"] + st["held"] + st["sold"] == st["total"],
                           "detail": st})
            checks.append({"name": f"{pid}: sold in Redis = sold in store",
                           "ok": st["sold"] == sold_store.get(pid, 0),
                           "detail": {"redis": st["sold"], "store": sold_store.get(pid, 0)}})
        sales = []
        for sid in await self.ctx.data.sales.sale_ids(room_id):
            sale, left = await self.ctx.data.sales.sale_and_left(room_id, sid)
            if not sale:
                continue
            view = sale_view(sale, left, now_ms())
            buyers = by_buyer.get(sid, {})
            over = {b: n for b, n in buyers.items() if n > view["limit_per_buyer"]}
            sales.append({**view, "sold_in_store": sum(buyers.values()),
                          "buyers": len(buyers)})
            checks.append({"name": f"sale {sid}: sold + held <= units",
                           "ok": view["sold"] + view["held"] <= view["units"],
                           "detail": {"units": view["units"], "held": view["held"],
                                      "sold": view["sold"]}})
            checks.append({"name": f"sale {sid}: no buyer above the limit",
                           "ok": not over, "detail": over})
        listings = []
        stored = await store.listings(room_id)
        for card in state["products"]:
            pid, lv = card["product_id"], card["listing"]
            buyers = by_buyer.get(listing_id(pid), {})
            # Against the highest limit it ever had: a host may lower it after buys.
            highest = stored.get(pid, (False, lv["limit_per_buyer"],
                                       lv["limit_per_buyer"]))[2]
            over = {b: n for b, n in buyers.items() if n > highest}
            listings.append({"product_id": pid, **lv, "sold_in_store": sum(buyers.values()),
                             "buyers": len(buyers)})
            checks.append({"name": f"listing {pid}: no buyer above the limit",
                           "ok": not over, "detail": over})
        auctions = await self._auction_checks(room_id, by_buyer, checks)
        for deal_id in await self.ctx.data.groups.deal_ids(room_id):
            deal = deal_view(await self.ctx.data.groups.deal(room_id, deal_id))
            in_store = sum(by_buyer.get(deal_id, {}).values())
            over = {b: n for b, n in by_buyer.get(deal_id, {}).items() if n > 1}
            checks.append({"name": f"group deal {deal_id}: held + sold <= units",
                           "ok": deal["held"] + deal["sold"] <= deal["units"]
                           and in_store <= deal["units"],
                           "detail": {"units": deal["units"], "held": deal["held"],
                                      "sold": deal["sold"], "sold_in_store": in_store}})
            checks.append({"name": f"group deal {deal_id}: one unit per buyer",
                           "ok": not over, "detail": over})
        oversold = await store.oversold_sales(room_id)
        checks.append({"name": "store: no sale has orders above its units",
                       "ok": not oversold,
                       "detail": {sid: {"sold": n, "units": u}
                                  for sid, (n, u) in oversold.items()}})
        over_stock = await store.oversold_products(room_id)
        checks.append({"name": "store: no product has orders above its stock",
                       "ok": not over_stock,
                       "detail": {pid: {"sold": n, "stock": t}
                                  for pid, (n, t) in over_stock.items()}})
        conflicts = await store.outcome_conflicts(room_id)
        checks.append({"name": "store: no hold both ordered and aborted",
                       "ok": conflicts == 0, "detail": {"holds": conflicts}})
        return {"room_id": room_id, "state": "whole", "products": products, "sales": sales,
                "listings": listings, "auctions": auctions,
                "orders": totals, "aborted_holds": await store.aborted_count(room_id),
                "checks": checks,
                "ok": all(c["ok"] for c in checks)}


def status(order: Order, cancelled: dict[str, dict[str, Any]],
           refunds: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """An order's status fields (Reports.orders)."""
    if order.order_id in cancelled:
        return {"status": "cancelled", **cancelled[order.order_id]}
    made = refunds.get(order.order_id)
    if not made:
        return {"status": "placed"}
    whole = sum(r["quantity"] for r in made) >= order.quantity
    return {"status": "refunded" if whole else "partly_refunded", "refunds": made}
