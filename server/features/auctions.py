"""Auctions (the Whatnot format): the host starts one on a product (one unit
out of stock, start price, increment bands, duration, optional reserve and
buy-now, anti-snipe `extend` or `sudden_death`); viewers bid, with optional
maximum (proxy) bids; the server's clock ends it (due job `auction_close`,
moved on by extensions) and the winner gets a hold at the winning amount under
the normal checkout rules. A lapsed win leaves the unit with the auction for the
host's second-chance offer to the runner-up.

Each decision is one atomic step in Redis (lua/start_auction.lua, bid.lua,
close_auction.lua, second_chance.lua), which also appends every accepted bid to
a hash chain anyone can verify (server/core/auction_chain.py; docs/protocol.md
section 15). An accepted bid is in the store before its bidder hears so; the
room sees it at once. The store keeps terms, chain, maxima and results, so a
rebuild of Redis puts every auction back as it was."""

from __future__ import annotations

import asyncio
import logging
import secrets
from typing import Any

import orjson

from server.core import events
from server.core.auction_terms import AUCTION_SHAPE, Auction, hold_sale_id, parse_auction
from server.core.domain import new_id, now_ms
from server.core.errors import BadRequest, Conflict, LivesellError, Unavailable, refusal
from server.core.jobs import Job
from server.core.protocol import Bid
from server.core.schema import Query, QueryInt
from server.core.views import as_int, auction_view
from server.features.catalogue import Catalogue
from server.features.context import Answer, Context, error_answer, rebuilding
from server.features.registry import Call, Registry, Route, ViewerCall
from server.features.rooms import show_ended
from server.state.auctions_data import CLOSE, AuctionsData, AuctionState, RestoredHold
from server.state.faults import REDIS_FAULTS
from server.state.scripts import AuctionClosed
from server.state.store import StoreError

log = logging.getLogger("livesell.auctions")



def _public_entry(entry: dict[str, Any]) -> dict[str, Any]:
    return {k: entry[k] for k in ("seq", "bidder", "amount", "at", "ends_at", "kind", "prev",
                                  "hash")}


def _answer(raw: str) -> Answer:
    """A remembered or fresh answer of bid.lua: a placed bid, or a refusal with its
    details (outbid_by_proxy carries the new amount and minimum)."""
    body = orjson.loads(raw)
    if "error" in body:
        return error_answer(refusal(str(body["error"]), **(body.get("details") or {})))
    return Answer("bid_placed", body, raw.encode())


# A page of an auction's bid chain: entries after sequence number `after`.
BIDS_QUERY = Query({"after": QueryInt(0, 0, 10**9, "the last sequence number seen"),
                    "limit": QueryInt(1000, 1, 1000, "how many to return")})


class Auctions:
    def __init__(self, ctx: Context, catalogue: Catalogue) -> None:
        self.ctx = ctx
        self.catalogue = catalogue

    @property
    def data(self) -> AuctionsData:
        return self.ctx.data.auctions

    def register(self, registry: Registry) -> None:
        registry.route(Route("POST", "/auctions", self._start, status=201, body=AUCTION_SHAPE,
                             goes_live=True))
        registry.route(Route("GET", "/auctions", self._list, access="public"))
        registry.route(Route("GET", "/auctions/{auction_id}", self._get, access="public",
                             answer="Auction"))
        registry.route(Route("GET", "/auctions/{auction_id}/bids", self._bids,
                             access="public", query=BIDS_QUERY))
        registry.route(Route("POST", "/auctions/{auction_id}/end", self._end_now))
        registry.route(Route("POST", "/auctions/{auction_id}/cancel", self._cancel))
        registry.route(Route("POST", "/auctions/{auction_id}/second-chance",
                             self._second_chance))
        registry.message(Bid, self._bid, explain_end=True)
        registry.job(CLOSE, self._closes)
        registry.on_restore(self.restore)

    # ------------------------------------------------------------------ host

    async def _start(self, call: Call) -> Any:
        return await self.start(call.room_id, call.body)

    async def _list(self, call: Call) -> Any:
        return {"auctions": [auction_view(h) for h in await self.data.auctions(call.room_id)]}

    async def _get(self, call: Call) -> Any:
        return await self.auction(call.room_id, call.params["auction_id"])

    async def _bids(self, call: Call) -> Any:
        aid = call.params["auction_id"]
        view = await self.auction(call.room_id, aid)
        q = BIDS_QUERY.read(call.query)
        after, limit = q["after"], q["limit"]
        entries = await self.data.chain(call.room_id, aid, after, limit + 1)
        return {"auction_id": aid, "genesis": view["genesis"], "head": view["head"],
                "bids": [_public_entry(e) for e in entries[:limit]],
                "more": len(entries) > limit}

    async def _end_now(self, call: Call) -> Any:
        return await self.close(call.room_id, call.params["auction_id"], "now")

    async def _cancel(self, call: Call) -> Any:
        return await self.close(call.room_id, call.params["auction_id"], "cancel")

    async def _second_chance(self, call: Call) -> Any:
        return await self.second_chance(call.room_id, call.params["auction_id"])

    async def auction(self, room_id: str, auction_id: str) -> dict[str, Any]:
        h = await self.data.auction(room_id, auction_id)
        if not h:
            raise refusal("auction_not_found")
        return auction_view(h)

    async def start(self, room_id: str, body: dict[str, Any]) -> dict[str, Any]:
        if await self.ctx.ensure_whole(room_id) == "ended":
            raise show_ended()
        pid = body.get("product_id")
        if not isinstance(pid, str):
            raise BadRequest("product_id: required string", details={"field": "product_id"})
        product, _ = await self.catalogue.product(room_id, pid)
        sale = self.ctx.settings.sale
        auction = parse_auction(body, auction_id=new_id("a"), product_id=product.product_id,
                                title=product.title, currency=product.currency,
                                now=now_ms(), default_extend_s=sale.auction_extend_s,
                                default_pay_s=round(sale.hold_seconds))
        salt = secrets.token_hex(16)
        terms = auction.public()
        # Durable first: a rebuild of Redis finds it; the unit is taken in Redis next.
        await self.ctx.store.add_auction(room_id, terms, salt)
        started = await self.ctx.scripts.start_auction(
            room_id, auction=auction, salt=salt, terms=orjson.dumps(terms).decode())
        if started[0] != "ok":
            await self.ctx.store.set_auction_result(auction.auction_id, {
                "result": None, "unit": "none", "not_started": started[0]})
            if started[0] == "rebuilding":
                raise rebuilding()
            if started[0] == "active":
                raise refusal("auction_active", auction_id=started[1])
            raise refusal("sold_out", "no unit of this product is left in stock to auction")
        self.ctx.dirty_stock.add((room_id, product.product_id))
        self.ctx.note_due(room_id, auction.first_ends_at)
        self.ctx.timers_changed.set()
        view = await self.auction(room_id, auction.auction_id)
        await self.ctx.publish(room_id, events.auction_started(view))
        return view

    # ------------------------------------------------------------------ bids

    async def _bid(self, call: ViewerCall, msg: Bid) -> Answer:
        viewer = call.viewer
        decided = await self.ctx.scripts.bid(
            call.room_id, auction_id=msg.auction_id, bidder=viewer.viewer_id,
            nickname=viewer.nickname, request_id=msg.request_id, amount=msg.amount,
            max_amount=msg.max_amount, verified=viewer.verified,
            answer_ttl_s=self.ctx.settings.sale.request_id_ttl_s)
        if decided.status == "rebuilding":
            return error_answer(rebuilding())
        if decided.status == "refused":
            return _answer(decided.answer)
        if decided.status == "dup":
            # A retry: the bid stands in Redis; make sure the store has what this step
            # wrote (the first attempt's write may have failed): its entry and the
            # bidder's maximum, named in the remembered answer. One entry, not the
            # chain: a retried request costs the same however long the auction ran.
            try:
                await self._record_again(call.room_id, msg.auction_id, viewer.viewer_id,
                                         viewer.nickname, decided.answer)
            except StoreError:
                return error_answer(self._unrecorded())
            return _answer(decided.answer)
        entry = orjson.loads(decided.entry) if decided.entry else None
        if decided.event:
            # The room hears at once: the auction in Redis already stands this way.
            await self.ctx.publish(call.room_id, events.auction_bid(orjson.loads(decided.event)))
        try:
            await self._record(msg.auction_id, viewer.viewer_id, viewer.nickname,
                               decided.max_amount, decided.at, entry)
        except StoreError:
            return error_answer(self._unrecorded())
        answer = _answer(decided.answer)
        if entry is not None and entry["kind"] == "buy_now":
            # Its close job moves to now first: if the close below fails (Redis lost,
            # the store stalled), the pulse ends it at once rather than at the old end.
            now = now_ms()
            await self.ctx.data.schedule.add_jobs(call.room_id,
                                                  {Job(CLOSE, msg.auction_id).member: now})
            self.ctx.note_due(call.room_id, now)
            self.ctx.timers_changed.set()
            await self._finish(call.room_id, msg.auction_id, "due")
        return answer

    @staticmethod
    def _unrecorded() -> LivesellError:
        return Unavailable("your bid is in the auction but could not be recorded yet: send "
                           "it again with the same request_id", code="store_unavailable")

    async def _record(self, auction_id: str, viewer_id: str, name: str, max_amount: int,
                      at: int, entry: dict[str, Any] | None) -> None:
        writes = [self.ctx.store.set_auction_max(auction_id, viewer_id, name, max_amount, at)]
        if entry is not None:
            writes.append(self.ctx.store.add_auction_bid(
                auction_id, int(entry["seq"]), str(entry["viewer"]), str(entry["name"]),
                _public_entry(entry)))
        await asyncio.gather(*writes)

    async def _record_again(self, room_id: str, auction_id: str, viewer_id: str, name: str,
                            answer: str) -> None:
        body = orjson.loads(answer)
        seq, top = body.get("entry_seq"), body.get("max_amount")
        entry = await self.data.entry(room_id, auction_id, int(seq)) if seq else None
        if top is not None:
            at = int(entry["at"]) if entry else now_ms()
            await self._record(auction_id, viewer_id, name, int(top), at, entry)

    async def _record_chain(self, room_id: str, auction_id: str) -> None:
        """Every entry of the chain in Redis into the store (those there stay as they
        are): after a retried bid, and before a result is recorded."""
        entries = await self.data.chain(room_id, auction_id)
        if entries:
            await asyncio.gather(*(self.ctx.store.add_auction_bid(
                auction_id, int(e["seq"]), str(e["viewer"]), str(e["name"]),
                _public_entry(e)) for e in entries))

    # ------------------------------------------------------------------ the end

    async def _closes(self, room_id: str, auction_id: str) -> None:
        try:
            await self._finish(room_id, auction_id, "due")
        except LivesellError as exc:
            log.info("room %s: auction %s not closed: %s", room_id, auction_id, exc.code)
        except REDIS_FAULTS:
            raise
        except StoreError:
            raise

    async def close(self, room_id: str, auction_id: str, mode: str) -> dict[str, Any]:
        """The host ends it now (`now`) or cancels it (`cancel`)."""
        closed = await self._finish(room_id, auction_id, "now" if mode == "now" else "cancel")
        if closed.status == "over":
            raise Conflict(f"the auction is already {closed.ended_by}", code="auction_ended")
        return await self.auction(room_id, auction_id)

    async def _finish(self, room_id: str, auction_id: str, mode: str) -> AuctionClosed:
        h = await self.data.auction(room_id, auction_id)
        if not h:
            raise refusal("auction_not_found")
        closed = await self.ctx.scripts.close_auction(
            room_id, auction_id=auction_id, product_id=h["product_id"],
            mode="due" if mode == "due" else "now" if mode == "now" else "cancel")
        if closed.status == "rebuilding":
            raise rebuilding()
        if closed.status == "missing":
            raise refusal("auction_not_found")
        if closed.status == "not_due":
            # Extended meanwhile: its timer is back at the end in force.
            self.ctx.note_due(room_id, closed.expires_at)
            self.ctx.timers_changed.set()
            return closed
        if closed.status == "over":
            return closed
        pid = h["product_id"]
        if closed.status == "ended" and closed.winner:
            self.ctx.note_due(room_id, closed.expires_at)  # the winner's hold expires
            self.ctx.timers_changed.set()
        else:
            self.ctx.dirty_stock.add((room_id, pid))
        await self._record_chain(room_id, auction_id)
        view = await self._record_result(room_id, auction_id)
        if closed.status == "ended":
            await self.ctx.publish(room_id, events.auction_ended(view))
            if closed.winner:
                self.ctx.outbox(room_id, "auction.won", auction_id, view)
        if not (closed.status == "ended" and closed.winner):
            await self.ctx.stock_freed(room_id, pid)  # the unit is back in stock
        return closed

    async def _record_result(self, room_id: str, auction_id: str) -> dict[str, Any]:
        h = await self.data.auction(room_id, auction_id)
        view = auction_view(h)
        await self.ctx.store.set_auction_result(auction_id, {
            "result": view["result"], "unit": h.get("unit", ""),
            "winner_id": h.get("winner", ""), "second_id": h.get("sc_bidder", "")})
        return view

    async def second_chance(self, room_id: str, auction_id: str) -> dict[str, Any]:
        offered = await self.ctx.scripts.second_chance(room_id, auction_id)
        if offered.status == "rebuilding":
            raise rebuilding()
        if offered.status == "missing":
            raise refusal("auction_not_found")
        if offered.status == "refused":
            raise refusal(offered.bidder)
        self.ctx.note_due(room_id, offered.expires_at)
        self.ctx.timers_changed.set()
        view = await self._record_result(room_id, auction_id)
        await self.ctx.publish(room_id, events.auction_second_chance(view))
        return view

    async def wind_down(self, room_id: str) -> None:
        """The show ended: open auctions are cancelled, holds of auctions voided (as
        every hold is), and units kept after unpaid wins go back to stock."""
        for aid in await self.data.auction_ids(room_id):
            h = await self.data.auction(room_id, aid)
            if not h:
                continue
            pid = h["product_id"]
            if h.get("state") == "open":
                await self._finish(room_id, aid, "cancel")
            stopped = await self.ctx.scripts.stop_sale(room_id, sale_id=hold_sale_id(aid),
                                                       product_id=pid)
            if stopped.voided:
                self.ctx.dirty_stock.add((room_id, pid))
                await self.ctx.publish(room_id, events.holds_voided(
                    hold_sale_id(aid), pid, "show_ended", stopped.units, stopped.voided))
            if (await self.data.auction(room_id, aid)).get("unit") == "aside":
                await self._finish(room_id, aid, "cancel")

    # ------------------------------------------------------------------ rebuild

    async def restore(self, room_id: str) -> None:
        """Every auction of the room from the store: terms, chain, maxima, result; the
        unit back with the auction (or its live hold) unless it was sold or returned."""
        store = self.ctx.store
        for terms, salt, stored in await store.auctions(room_id):
            if stored is not None and stored.get("not_started"):
                continue
            auction = Auction.from_public(terms)
            bids = await store.auction_bids(auction.auction_id)
            maxima = await store.auction_maxima(auction.auction_id)
            await self.data.load(room_id, auction, salt,
                                 await self._rebuilt(auction, bids, maxima, stored))
            if stored is None:
                self.ctx.timers_changed.set()

    async def _rebuilt(self, auction: Auction, bids: list[tuple[str, str, dict[str, Any]]],
                       maxima: list[tuple[str, str, int, int]],
                       stored: dict[str, Any] | None) -> AuctionState:
        entries = [e for _, _, e in bids]
        fields: dict[str, Any] = {
            "state": "open", "bids": len(entries), "extensions": 0,
            "head": entries[-1]["hash"] if entries else auction.genesis(),
            "ends_at": entries[-1]["ends_at"] if entries else auction.first_ends_at,
            "leader": "", "leader_max": 0, "second": "", "second_max": 0}
        end = auction.first_ends_at
        for e in entries:
            if e["kind"] != "buy_now" and e["ends_at"] != end:
                fields["extensions"] += 1
            end = e["ends_at"]
        tops = {v: m for v, _, m, _ in maxima}
        if bids:
            leader, name, last = bids[-1]
            fields.update(leader=leader, leader_name=name, leader_ps=last["bidder"],
                          amount=last["amount"], leader_max=max(tops.get(leader, 0),
                                                                last["amount"]))
            if last["kind"] == "buy_now":
                fields["bought_now"] = "1"
            others = [(m, at, v, n) for v, n, m, at in maxima if v != leader]
            if others:
                top = max(others, key=lambda o: (o[0], -o[1]))
                fields.update(second=top[2], second_max=top[0], second_name=top[3])
        unit_held, hold, is_open = True, None, stored is None
        if stored is not None:
            result = stored.get("result") or {}
            fields.update(state="cancelled" if result.get("ended_by") == "cancelled"
                          else "ended", ended_at=as_int(result.get("ended_at")),
                          ended_by=result.get("ended_by", ""))
            unit = stored.get("unit", "none")
            winner_id = stored.get("winner_id") or ""
            if winner_id:
                fields.update(winner=winner_id, hold_id=result["hold"]["id"],
                              hold_expires=result["hold"]["expires_at"])
            sc = result.get("second_chance")
            if sc:
                fields.update(sc_bidder=stored.get("second_id", ""), sc_ps=sc["bidder"],
                              sc_name=sc.get("bidder_name", ""), sc_amount=sc["amount"],
                              sc_hold=sc["hold"]["id"], sc_expires=sc["hold"]["expires_at"])
            live = sc["hold"] if sc else (result.get("hold") if winner_id else None)
            buyer = stored.get("second_id") if sc else winner_id
            unit_held = unit in ("held", "aside")
            if unit_held and live is not None:
                order = await self.ctx.store.order_for_hold(str(live["id"]))
                if order is not None:
                    unit_held = False  # sold: the stock counts it from the orders
                elif int(live["expires_at"]) > now_ms() and buyer:
                    hold = RestoredHold(str(live["id"]), str(buyer), int(live["unit_price"]),
                                        int(live["expires_at"]))
            fields["unit"] = "held" if hold else ("aside" if unit_held else unit)
        else:
            fields["unit"] = "auction"
        return AuctionState(
            fields=fields,
            entries=[orjson.dumps({**e, "viewer": v, "name": n}).decode()
                     for v, n, e in bids],
            maxima=tops, unit_held=unit_held, hold=hold, is_open=is_open)

