"""Group buys (拼团): the host opens a deal on a product (group size N, group
price, time to fill, units); a viewer starts a group (its N units come out of
stock at once, the starter holding one as a pending hold) or joins an open one;
the N-th member completes it, and every member's hold becomes checkout-able at
the group price in the same step (join_group.lua); a group not full by its
deadline ends in one step, every hold with it, its units back to stock
(expire_group.lua, due job `group_expire`). A viewer is in at most one group
of a deal at a time; groups x N never exceed the deal's units.

The deal is durable in the store and kept in Redis with a sale's fields (under
its `gb_...` id), so a full group's holds are checked out, released and expired
as any hold; its orders carry the deal's id. Groups, like holds, live in Redis
only: a rebuild of Redis ends the open ones (docs/protocol.md section 18)."""

from __future__ import annotations

import logging
from typing import Any

import orjson

from server.core import events
from server.core.domain import new_id, now_ms
from server.core.errors import BadRequest, Conflict, LivesellError, refusal
from server.core.group_deals import (
    DEAL_PREFIX,
    DEAL_SHAPE,
    GroupDeal,
    deal_view,
    group_view,
    parse_deal,
)
from server.core.protocol import JoinGroup, StartGroup
from server.features.catalogue import Catalogue
from server.features.context import Answer, Context, error_answer, from_cached, rebuilding
from server.features.fans import Fans
from server.features.registry import Call, Registry, Route, ViewerCall
from server.state.groups_data import GroupsData
from server.state.scripts import Grouped

log = logging.getLogger("livesell.group_buys")

EXPIRE = "group_expire"


class GroupBuys:
    def __init__(self, ctx: Context, catalogue: Catalogue, fans: Fans) -> None:
        self.fans = fans
        self.ctx = ctx
        self.catalogue = catalogue
        ctx.show_end_listeners.append(self.close_all)
        ctx.count_readers["deal"] = self._deal_counts

    @property
    def data(self) -> GroupsData:
        return self.ctx.data.groups

    def register(self, registry: Registry) -> None:
        registry.route(Route("POST", "/group-deals", self._open, status=201, body=DEAL_SHAPE,
                             goes_live=True))
        registry.route(Route("GET", "/group-deals/{deal_id}", self._get, access="public",
                             answer="GroupDealOpened"))
        registry.route(Route("POST", "/group-deals/{deal_id}/close", self._close))
        registry.route(Route("GET", "/groups/{group_id}", self._group, access="public",
                             answer="Group"))
        registry.message(StartGroup, self._start, explain_end=True)
        registry.message(JoinGroup, self._join, explain_end=True)
        registry.job(EXPIRE, self._expires)
        registry.on_restore(self.restore)

    # ------------------------------------------------------------------ host

    async def _open(self, call: Call) -> Any:
        if not isinstance(call.body.get("product_id"), str):
            raise BadRequest("product_id: required string", details={"field": "product_id"})
        product, _ = await self.catalogue.product(call.room_id, call.body["product_id"])
        deal = parse_deal(call.body, deal_id=new_id(DEAL_PREFIX), title=product.title,
                          currency=product.currency, now=now_ms())
        self.fans.check_level(deal.min_level)
        await self.ctx.store.add_group_deal(call.room_id, deal.public())
        await self.data.load_deal(call.room_id, deal, closed=False, sold=0, bought={})
        view = await self.deal(call.room_id, deal.deal_id)
        await self.ctx.publish(call.room_id, events.group_deal(view))
        return view

    async def _get(self, call: Call) -> Any:
        return await self.deal(call.room_id, call.params["deal_id"])

    async def deal(self, room_id: str, deal_id: str) -> dict[str, Any]:
        """The deal, with its open groups (seats and time left: the list a viewer
        picks a group from)."""
        h = await self.data.deal(room_id, deal_id)
        if not h:
            raise refusal("deal_not_found")
        groups = [group_view(g) for g in await self.data.open_groups(room_id, deal_id)]
        return {**deal_view(h), "groups": groups}

    async def _group(self, call: Call) -> Any:
        g = await self.data.group(call.room_id, call.params["group_id"])
        if not g:
            raise refusal("group_not_found")
        return group_view(g)

    async def _close(self, call: Call) -> Any:
        deal_id = call.params["deal_id"]
        h = await self.data.deal(call.room_id, deal_id)
        if not h:
            raise refusal("deal_not_found")
        if h.get("state") != "open":
            raise Conflict("the deal is already closed", code="deal_closed")
        await self.close(call.room_id, deal_id)
        return await self.deal(call.room_id, deal_id)

    async def close(self, room_id: str, deal_id: str) -> None:
        """No new group starts or joins; the open groups end now, their units back.
        Full groups keep their holds (their price was agreed)."""
        await self.ctx.store.close_group_deal(deal_id, now_ms())
        await self.data.close(room_id, deal_id)
        for g in await self.data.open_groups(room_id, deal_id):
            await self._expire(room_id, str(g["group_id"]), "now")
        await self.ctx.publish(room_id, events.group_deal(deal_view(
            await self.data.deal(room_id, deal_id))))

    async def close_all(self, room_id: str) -> None:
        """The show ended: every open deal closes, and the holds of full groups not
        yet paid are voided, as every hold is at the end (units back to stock)."""
        for deal_id in await self.data.deal_ids(room_id):
            h = await self.data.deal(room_id, deal_id)
            if h.get("state") == "open":
                await self.close(room_id, deal_id)
            stopped = await self.ctx.scripts.stop_sale(room_id, sale_id=deal_id,
                                                       product_id=h["product_id"])
            if stopped.voided:
                self.ctx.dirty_stock.add((room_id, h["product_id"]))
                await self.ctx.publish(room_id, events.holds_voided(
                    deal_id, h["product_id"], "show_ended", stopped.units, stopped.voided))

    # ------------------------------------------------------------------ viewers

    async def _start(self, call: ViewerCall, msg: StartGroup) -> Answer:
        h = await self.data.deal(call.room_id, msg.deal_id)
        if not h:
            return error_answer(refusal("deal_not_found"))
        viewer = call.viewer
        await self.fans.require_level(call.room_id, viewer.viewer_id,
                                      int(h.get("min_level") or 0))
        grouped = await self.ctx.scripts.start_group(
            call.room_id, deal_id=msg.deal_id, product_id=h["product_id"],
            viewer=viewer.viewer_id, nickname=viewer.nickname, request_id=msg.request_id,
            max_open_holds=self.ctx.settings.sale.max_holds_per_viewer,
            answer_ttl_s=self.ctx.settings.sale.request_id_ttl_s, verified=viewer.verified)
        return await self._answered(call.room_id, h, grouped)

    async def _join(self, call: ViewerCall, msg: JoinGroup) -> Answer:
        g = await self.data.group(call.room_id, msg.group_id)
        if not g:
            return error_answer(refusal("group_not_found"))
        h = await self.data.deal(call.room_id, g["deal_id"])
        viewer = call.viewer
        await self.fans.require_level(call.room_id, viewer.viewer_id,
                                      int(h.get("min_level") or 0))
        grouped = await self.ctx.scripts.join_group(
            call.room_id, deal_id=g["deal_id"], group_id=msg.group_id,
            product_id=h["product_id"], viewer=viewer.viewer_id, request_id=msg.request_id,
            max_open_holds=self.ctx.settings.sale.max_holds_per_viewer,
            answer_ttl_s=self.ctx.settings.sale.request_id_ttl_s,
            hold_ms=int(self.ctx.settings.sale.hold_seconds * 1000), verified=viewer.verified,
            nickname=viewer.nickname)
        return await self._answered(call.room_id, h, grouped)

    async def _answered(self, room_id: str, deal: dict[str, str], grouped: Grouped) -> Answer:
        if grouped.status == "rebuilding":
            return error_answer(rebuilding())
        if grouped.status == "refused":
            details = {"group_id": grouped.group_id} if grouped.group_id else {}
            return error_answer(refusal(grouped.answer, **details))
        if grouped.status == "dup":
            return from_cached("group", grouped.answer)
        answer = orjson.loads(grouped.answer)
        gid = str(answer["group_id"])
        self.ctx.dirty_stock.add((room_id, deal["product_id"]))
        if answer["state"] == "open" and answer["members"] == 1:
            # A new group: its deadline is on the timers (start_group.lua).
            self.ctx.note_due(room_id, int(answer["deadline"]))
            self.ctx.timers_changed.set()
        holds, expires_at = None, None
        if grouped.status == "complete":
            # Every member's hold now expires like any hold.
            self.ctx.note_due(room_id, int(answer["hold"]["expires_at"]))
            self.ctx.timers_changed.set()
            holds = dict(m.rsplit(":", 1) for m in grouped.members)
            expires_at = int(answer["hold"]["expires_at"])
        # The group as this step left it (a later join may already have filled it:
        # its own event says so, with the holds).
        seen = group_view(await self.data.group(room_id, gid))
        group = {**seen, "state": answer["state"], "members": answer["members"],
                 "seats_left": max(0, int(answer["size"]) - int(answer["members"]))}
        await self.ctx.publish(room_id, events.group_update(group, holds, expires_at))
        # The deal's counts go out coalesced, like stock: a racing crowd's joins are
        # not each a broadcast of the deal to every viewer.
        self.ctx.dirty_counts.add((room_id, "deal", deal["deal_id"]))
        return Answer("group", {}, grouped.answer.encode())

    async def _deal_counts(self, items: list[tuple[str, str]]
                           ) -> list[tuple[str, dict[str, Any]]]:
        """The coalesced `group_deal` events of (room, deal) pairs."""
        out = []
        for room_id, deal_id in items:
            h = await self.data.deal(room_id, deal_id)
            if h:
                out.append((room_id, events.group_deal(deal_view(h))))
        return out

    # ------------------------------------------------------------------ the clock

    async def _expires(self, room_id: str, group_id: str) -> None:
        try:
            await self._expire(room_id, group_id, "due")
        except LivesellError as exc:
            log.info("room %s: group %s not expired: %s", room_id, group_id, exc.code)

    async def _expire(self, room_id: str, group_id: str, mode: str) -> None:
        g = await self.data.group(room_id, group_id)
        if not g:
            return
        h = await self.data.deal(room_id, g["deal_id"])
        ended = await self.ctx.scripts.expire_group(
            room_id, deal_id=g["deal_id"], group_id=group_id, product_id=h["product_id"],
            mode="now" if mode == "now" else "due")
        if ended.status == "not_due":
            self.ctx.note_due(room_id, int(g["deadline"]))
            self.ctx.timers_changed.set()
            return
        if ended.status != "expired":
            return
        self.ctx.dirty_stock.add((room_id, h["product_id"]))
        holds = dict(m.rsplit(":", 1) for m in ended.members)
        await self.ctx.publish(room_id, events.group_update(
            group_view(await self.data.group(room_id, group_id)), holds))
        self.ctx.dirty_counts.add((room_id, "deal", g["deal_id"]))
        await self.ctx.stock_freed(room_id, h["product_id"])

    # ------------------------------------------------------------------ rebuild

    async def restore(self, room_id: str) -> None:
        """Every deal from the store, its units sold and each buyer's from the orders;
        no group (they lived in Redis only, as holds do)."""
        by_sale = await self.ctx.store.sold_by_sale_and_buyer(room_id)
        for data, closed_at in await self.ctx.store.group_deals(room_id):
            deal = GroupDeal.from_public(data)
            buyers = by_sale.get(deal.deal_id, {})
            await self.data.load_deal(room_id, deal, closed=closed_at is not None,
                                      sold=sum(buyers.values()), bought=buyers)

