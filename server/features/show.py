"""The show: every host action and viewer action of a live room, end to end.

Host actions validate with `domain`, write the durable record to the store,
then update Redis and broadcast through the hub. Viewer actions run one atomic
script each (server/state/scripts.py) and answer the asking viewer. Checkout is the one place
where the order store decides: the buyer hears "placed" only after the order's
transaction committed. Thin HTTP and WebSocket routes call into this module.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import dataclass
from typing import Any

import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError

from server.core import domain, policy
from server.core.domain import CouponDrop, Lottery, Product, Sale, now_ms
from server.core.errors import (
    BadRequest,
    Conflict,
    LivesellError,
    NotFound,
    Unauthorized,
    Unavailable,
    refusal,
)
from server.core.identity import Viewer
from server.core.keys import DUE, EPOCH, KEYWORD_ROOMS, RECORDING_ROOMS, ROOMS, room_keys
from server.core.policy import RoomPolicy
from server.core.protocol import encode
from server.core.settings import Settings
from server.features.recorder import Recorder
from server.features.rooms import LIVE, SCHEDULED, Lifecycle, pop_starts_at
from server.realtime.hub import Hub
from server.state.health import Health
from server.state.scripts import Released, ReleaseMode, Scripts
from server.state.store import ABORTED, PLACED, Order, OrderStore, StoreError

log = logging.getLogger("livesell.show")


def rebuilding() -> Unavailable:
    """The refusal while a room's Redis state is being rebuilt from the store."""
    return Unavailable("the room is being restored after a Redis restart; try again in a "
                       "moment", details={"retry_after_s": 1})


def new_epoch() -> str:
    """A fresh room epoch (store.room_epochs and the room's epoch key)."""
    return f"{now_ms()}-{secrets.token_hex(4)}"


def _int(value: Any, default: int = 0) -> int:
    return int(value) if value not in (None, "") else default


def sale_view(sale: dict[str, Any], stock_left: int, now: int) -> dict[str, Any]:
    """The public form of a sale hash, with its state by the server clock."""
    units, held, sold = _int(sale.get("units")), _int(sale.get("held")), _int(sale.get("sold"))
    starts_at, ends_at = _int(sale.get("starts_at")), _int(sale.get("ends_at"))
    if sale.get("state") == "stopped":
        state = "stopped"
    elif now < starts_at:
        state = "scheduled"
    elif now < ends_at:
        state = "open"
    else:
        state = "ended"
    return {
        "sale_id": sale.get("sale_id", ""), "product_id": sale.get("product_id", ""),
        "price": _int(sale.get("price")), "currency": sale.get("currency", ""),
        "units": units, "limit_per_buyer": _int(sale.get("limit")),
        "starts_at": starts_at, "ends_at": ends_at, "state": state,
        "held": held, "sold": sold, "left": max(0, min(units - held - sold, stock_left)),
    }


def stock_view(stock: dict[str, Any]) -> dict[str, int]:
    return {k: _int(stock.get(k)) for k in ("total", "left", "held", "sold")}


@dataclass(slots=True)
class Answer:
    """A reply frame for the asking viewer."""

    kind: str
    body: dict[str, Any]

    def frame(self, request_id: str | None) -> bytes:
        out: dict[str, Any] = {"type": self.kind}
        if request_id is not None:
            out["re"] = request_id
        out.update(self.body)
        return encode(out)


def error_answer(exc: LivesellError) -> Answer:
    return Answer("error", exc.to_dict())


def _from_cached(kind: str, cached: str) -> Answer:
    data = orjson.loads(cached)
    if "error" in data:
        return error_answer(refusal(data["error"]))
    return Answer(kind, data)


class Show:
    def __init__(self, settings: Settings, redis: Redis, scripts: Scripts, hub: Hub,
                 store: OrderStore, health: Health | None = None) -> None:
        self.settings = settings
        # A decode_responses=True client: replies are str, though redis-py types
        # them as bytes | str, so the client is used untyped here.
        self.redis: Any = redis
        self.scripts = scripts
        self.hub = hub
        self.store = store
        self.host_keys: dict[str, str] = {}  # room_id -> sha256 of host key (never changes)
        self.current_sale: dict[tuple[str, str], str] = {}  # (room, product) -> sale id
        self.dirty_stock: set[tuple[str, str]] = set()
        # Coupons left and lottery entrants change with every claim or entry: they are
        # published as the latest count at the stock rate, never once per change.
        self.dirty_counts: set[tuple[str, str, str]] = set()
        self.likes: dict[str, int] = {}
        self.keyword_lotteries: dict[str, dict[str, str]] = {}  # room -> lottery id -> keyword
        self.recorder: Recorder | None = None
        self.health = health or Health()  # where Redis failures are reported
        # Set whenever this process adds a timer or a hold: the pulse's timer poll
        # sleeps until the earliest one it knows of and is woken by this for new ones.
        self.timers_changed = asyncio.Event()
        # Holds whose checkout this process is running now: recovery leaves them to it.
        self.checkouts_in_flight: set[str] = set()
        # Rooms with a hold granted here, and the earliest expiry: put on the pulse's
        # schedule (keys.DUE) at its next tick, so a buy pays no extra round trip.
        self.due_pending: dict[str, int] = {}
        # Stored orders waiting for Redis to come back to be counted there.
        self.finishing: set[asyncio.Task[None]] = set()
        self.lifecycle = Lifecycle(self)
        hub.snapshot = self.snapshot

    # ================================================================== rooms

    async def create_room(self, body: dict[str, Any]) -> dict[str, Any]:
        created = now_ms()
        body = dict(body)
        starts_at = pop_starts_at(body, created)
        title, stream_url = domain.parse_room(body)
        room_id = domain.new_id("r")
        host_key = secrets.token_urlsafe(24)
        key_hash = domain.hash_key(host_key)
        epoch = new_epoch()
        lifecycle = {"state": SCHEDULED if starts_at else LIVE, "starts_at": starts_at,
                     "ended_at": None}
        if starts_at is not None:
            # Before the room row: a crash between leaves an unused state row, never
            # a scheduled room listed as live.
            await self.store.set_room_state(room_id, SCHEDULED, starts_at, None, created)
        await self.store.add_room(room_id, title, stream_url, key_hash, created)
        await self.store.set_room_epoch(room_id, epoch)
        await self._load_room_into_redis(room_id, title, stream_url, key_hash, created)
        await self.lifecycle.load_into_redis(room_id, lifecycle)
        await self.mark_whole(room_id, epoch)
        self.host_keys[room_id] = key_hash
        return {"room": {"room_id": room_id, "title": title, "stream_url": stream_url,
                         "created_at": created, **lifecycle}, "host_key": host_key}

    async def _load_room_into_redis(self, room_id: str, title: str, stream_url: str,
                                    key_hash: str, created: int) -> None:
        keys = room_keys(room_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(keys.room, mapping={"room_id": room_id, "title": title,
                                          "stream_url": stream_url, "host_key_hash": key_hash,
                                          "created_at": created})
            # Sequence numbers start at the creation time in ms, so that after Redis
            # loses its data and the room is rebuilt, new numbers still exceed old ones.
            pipe.set(keys.seq, created, nx=True)
            pipe.sadd(ROOMS, room_id)
            await pipe.execute()

    def note_due(self, room_id: str, at: int) -> None:
        """Something of the room falls due at `at` (ms): the pulse puts it on its
        schedule at its next tick (Pulse.flush_due)."""
        known = self.due_pending.get(room_id)
        if known is None or at < known:
            self.due_pending[room_id] = at

    async def reschedule(self, room_id: str, recovery_not_before: int = 0) -> int | None:
        """Put the room on the pulse's schedule at its earliest timer, hold, or
        checkout that may need recovery (store.recover_after_s after it began, not
        before `recovery_not_before`), or take it off when it has none
        (reschedule.lua); the new due time in ms. A 'confirming' hold was a held
        one first, on the schedule since it was granted: a process killed
        mid-checkout leaves it where every other process's pulse finds it."""
        return await self.scripts.reschedule(
            room_id, recover_after_ms=int(self.settings.store.recover_after_s * 1000),
            recovery_not_before=recovery_not_before)

    async def mark_whole(self, room_id: str, epoch: str) -> None:
        """The room's Redis state is complete and belongs to `epoch` (set last)."""
        await self.redis.set(room_keys(room_id).epoch, epoch)

    async def ensure_whole(self, room_id: str) -> None:
        """Refuse with `unavailable` while the room is being rebuilt, and with
        `room_not_found` when there is no such room."""
        keys = room_keys(room_id)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.exists(keys.epoch)
            pipe.exists(keys.room)
            pipe.exists(EPOCH)
            whole, exists, in_step = await pipe.execute()
        if whole:
            return
        if exists or room_id in self.host_keys:
            raise rebuilding()
        # Only while Redis is rebuilt may a room exist that Redis does not know; only
        # then is the store asked (an unknown id from a stranger costs no file read).
        if not in_step and await self.store.room(room_id) is not None:
            raise rebuilding()
        raise refusal("room_not_found")

    async def list_rooms(self) -> list[dict[str, Any]]:
        rooms = await self.store.rooms()
        return [{"room_id": r["room_id"], "title": r["title"], "stream_url": r["stream_url"],
                 "created_at": r["created_at"]} for r in rooms]

    async def room_exists(self, room_id: str) -> bool:
        if room_id in self.host_keys:
            return True
        try:
            await self.ensure_whole(room_id)
        except Unavailable:
            return True  # it exists; joining it then answers 'try again'
        except LivesellError:
            return False
        return True

    async def check_host(self, room_id: str, key: str | None) -> None:
        expected = self.host_keys.get(room_id)
        if expected is None:
            expected = await self.redis.hget(room_keys(room_id).room, "host_key_hash")
            if expected is None:
                raise refusal("room_not_found")
            self.host_keys[room_id] = expected
        if not key:
            raise Unauthorized("this endpoint needs the room's host key "
                               "(header X-Host-Key or Authorization: Bearer)")
        if not secrets.compare_digest(domain.hash_key(key), expected):
            raise Unauthorized("wrong host key for this room")

    # ================================================================== snapshot

    async def snapshot(self, room_id: str) -> tuple[int, bytes]:
        state = await self.room_state(room_id)
        return state["seq"], encode({"type": "snapshot", **state})

    async def room_state(self, room_id: str) -> dict[str, Any]:
        keys = room_keys(room_id)
        async with self.redis.pipeline(transaction=False) as pipe:
            # The seq is read first: every change after it arrives as a later event.
            pipe.get(keys.seq)
            pipe.hgetall(keys.room)
            pipe.hgetall(keys.products)
            pipe.lrange(keys.pins, 0, -1)
            pipe.get(keys.likes)
            pipe.smembers(keys.coupons)
            pipe.smembers(keys.lotteries)
            pipe.exists(keys.epoch)
            pipe.hgetall(keys.policy)
            (seq, room, products_raw, pins, likes, coupon_ids, lottery_ids,
             whole, policy_raw) = await pipe.execute()
        if not whole:
            await self.ensure_whole(room_id)
        if not room:
            raise refusal("room_not_found")
        viewers = await self.scripts.viewers(room_id)
        products = [orjson.loads(v) for v in products_raw.values()]
        products.sort(key=lambda p: p.get("position", 0))
        coupon_ids = sorted(coupon_ids)
        lottery_ids = sorted(lottery_ids)
        async with self.redis.pipeline(transaction=False) as pipe:
            for p in products:
                pipe.hgetall(keys.stock(p["product_id"]))
                pipe.get(keys.product_sale(p["product_id"]))
            for cid in coupon_ids:
                pipe.hgetall(keys.coupon(cid))
            for lid in lottery_ids:
                pipe.hgetall(keys.lottery(lid))
                pipe.scard(keys.entrants(lid))
            res = await pipe.execute()
        stocks = res[0:2 * len(products):2]
        sale_ids = res[1:2 * len(products):2]
        coupons_raw = res[2 * len(products):2 * len(products) + len(coupon_ids)]
        lotteries_raw = res[2 * len(products) + len(coupon_ids):]
        async with self.redis.pipeline(transaction=False) as pipe:
            for sid in sale_ids:
                pipe.hgetall(keys.sale(sid) if sid else keys.sale("-"))
            sales = await pipe.execute()
        now = now_ms()
        cards = []
        for p, stock, sale in zip(products, stocks, sales, strict=True):
            sv = stock_view(stock)
            p = {k: v for k, v in p.items() if k != "position"}
            cards.append({**p, "stock": sv,
                          "sale": sale_view(sale, sv["left"], now) if sale else None})
        coupons = [self._coupon_view(c) for c in coupons_raw if c]
        lotteries = [self._lottery_view(lid, lot, lotteries_raw[2 * i + 1])
                     for i, (lid, lot) in enumerate(zip(lottery_ids, lotteries_raw[0::2],
                                                        strict=True)) if lot]
        return {
            "seq": int(seq or 0),
            "server_time": now,
            "room": {"room_id": room_id, "title": room.get("title", ""),
                     "stream_url": room.get("stream_url", ""),
                     "created_at": _int(room.get("created_at")),
                     "state": room.get("state") or LIVE,
                     "starts_at": _int(room.get("starts_at")) or None,
                     "ended_at": _int(room.get("ended_at")) or None},
            "products": cards,
            "pins": list(pins),
            "coupons": [c for c in coupons if c["expires_at"] > now],
            "lotteries": lotteries,
            "likes": int(likes or 0),
            "viewers": {"now": viewers.now, "unique": viewers.unique, "peak": viewers.peak},
            "policy": policy.from_redis(policy_raw).public(),
            "limits": self.limits(),
        }

    def limits(self) -> dict[str, int]:
        """The server's limits the pages show and obey instead of copies of their own."""
        sale, chat = self.settings.sale, self.settings.chat
        return {"max_pins": sale.max_pins, "max_quantity_per_buy": sale.max_quantity_per_buy,
                "max_holds_per_viewer": sale.max_holds_per_viewer,
                "chat_max_length": chat.max_length,
                "nickname_max_length": chat.nickname_max_length}

    @staticmethod
    def _coupon_view(c: dict[str, Any]) -> dict[str, Any]:
        count = _int(c.get("count"))
        return {"coupon_id": c["coupon_id"], "title": c.get("title", ""), "kind": c["kind"],
                "value": _int(c.get("value")), "min_spend": _int(c.get("min_spend")),
                "currency": c.get("currency", ""), "count": count,
                "remaining": max(0, count - _int(c.get("claimed"))),
                "expires_at": _int(c.get("expires_at"))}

    @staticmethod
    def _lottery_view(lid: str, lot: dict[str, Any], entrants: int,
                      with_entrants: bool = False) -> dict[str, Any]:
        """A lottery as viewers see it. A drawn one's result carries its entrant list
        only `with_entrants` (the public GET of one lottery, which verifiers fetch, and
        the draw's answer): snapshots and the `lottery_drawn` event carry the count,
        the digest and the winners, so a big draw is not repeated in every snapshot."""
        view: dict[str, Any] = {
            "lottery_id": lid, "prize": lot.get("prize", ""), "winners_count":
            _int(lot.get("winners")), "entry": lot.get("mode", "button"),
            "keyword": lot.get("keyword", ""), "seed_hash": lot.get("seed_hash", ""),
            "opens_at": _int(lot.get("opens_at")), "closes_at": _int(lot.get("closes_at")),
            "state": lot.get("state", ""), "entrants": entrants}
        if lot.get("result"):
            result = orjson.loads(lot["result"])
            if not with_entrants:
                result.pop("entrants", None)
            view["result"] = result
        return view

    # ================================================================== catalogue

    async def _product(self, room_id: str, product_id: str) -> tuple[Product, int]:
        raw = await self.redis.hget(room_keys(room_id).products, product_id)
        if raw is None:
            raise refusal("product_not_found")
        data = orjson.loads(raw)
        position = int(data.pop("position", 0))
        return Product(**data), position

    async def add_product(self, room_id: str, body: dict[str, Any]) -> dict[str, Any]:
        product, stock = domain.parse_product(body)
        keys = room_keys(room_id)
        count = await self.redis.hlen(keys.products)
        if count >= self.settings.sale.max_products_per_room:
            raise Conflict(f"a room holds at most {self.settings.sale.max_products_per_room} "
                           "products", code="too_many_products")
        if await self.redis.hexists(keys.products, product.product_id):
            raise Conflict(f"product {product.product_id} already exists", code="duplicate")
        await self.store.put_product(room_id, product.product_id, product.public(), stock)
        data = {**product.public(), "position": count + 1}
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(keys.products, product.product_id, encode(data))
            pipe.hset(keys.stock(product.product_id),
                      mapping={"total": stock, "left": stock, "held": 0, "sold": 0})
            await pipe.execute()
        card = await self.product_card(room_id, product.product_id)
        await self.hub.publish(room_id, {"type": "product", "product": card})
        return card

    async def update_product(self, room_id: str, product_id: str,
                             body: dict[str, Any]) -> dict[str, Any]:
        product, position = await self._product(room_id, product_id)
        updated, stock = domain.apply_product_update(product, body)
        keys = room_keys(room_id)
        if stock is not None:
            adjusted = await self.scripts.adjust_stock(room_id, product_id, stock)
            if not adjusted.ok:
                raise refusal("insufficient_stock", f"stock cannot go below the "
                              f"{adjusted.held_and_sold} units held or sold")
        total = stock if stock is not None else _int(
            await self.redis.hget(keys.stock(product_id), "total"))
        await self.store.put_product(room_id, product_id, updated.public(), total)
        await self.redis.hset(keys.products, product_id,
                              encode({**updated.public(), "position": position}))
        card = await self.product_card(room_id, product_id)
        await self.hub.publish(room_id, {"type": "product", "product": card})
        return card

    async def product_card(self, room_id: str, product_id: str) -> dict[str, Any]:
        keys = room_keys(room_id)
        product, _ = await self._product(room_id, product_id)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(keys.stock(product_id))
            pipe.get(keys.product_sale(product_id))
            stock, sid = await pipe.execute()
        sv = stock_view(stock)
        sale = await self.redis.hgetall(keys.sale(sid)) if sid else None
        return {**product.public(), "stock": sv,
                "sale": sale_view(sale, sv["left"], now_ms()) if sale else None}

    # ================================================================== pins

    async def pin(self, room_id: str, body: dict[str, Any]) -> dict[str, Any]:
        product_id = domain.parse_pin(body)
        await self._product(room_id, product_id)
        keys = room_keys(room_id)
        pins = await self.redis.lrange(keys.pins, 0, -1)
        if product_id not in pins:
            if len(pins) >= self.settings.sale.max_pins:
                raise refusal("pin_limit", f"at most {self.settings.sale.max_pins} products "
                              "can be pinned at once; unpin one first")
            await self.redis.rpush(keys.pins, product_id)
        pins = await self.redis.lrange(keys.pins, 0, -1)
        card = await self.product_card(room_id, product_id)
        event = {"type": "pinned", "product": card, "pins": pins}
        seq = await self.hub.publish(room_id, event)
        return {"seq": seq, **event}

    async def unpin(self, room_id: str, product_id: str) -> dict[str, Any]:
        keys = room_keys(room_id)
        removed = await self.redis.lrem(keys.pins, 0, product_id)
        if not removed:
            raise NotFound(f"product {product_id} is not pinned", code="not_pinned")
        pins = await self.redis.lrange(keys.pins, 0, -1)
        event = {"type": "unpinned", "product_id": product_id, "pins": pins}
        seq = await self.hub.publish(room_id, event)
        return {"seq": seq, **event}

    # ================================================================== sales

    async def start_sale(self, room_id: str, body: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(body.get("product_id"), str):
            raise BadRequest("product_id: required string", details={"field": "product_id"})
        product, _ = await self._product(room_id, body["product_id"])
        now = now_ms()
        sale = domain.parse_sale(body, product, now)
        keys = room_keys(room_id)
        current = await self.redis.get(keys.product_sale(product.product_id))
        if current:
            cur = await self.redis.hgetall(keys.sale(current))
            if cur and sale_view(cur, 0, now)["state"] in ("scheduled", "open"):
                raise refusal("sale_active", sale_id=current)
        left = _int(await self.redis.hget(keys.stock(product.product_id), "left"))
        if sale.units > left:
            raise refusal("insufficient_stock",
                          f"the sale offers {sale.units} units but only {left} are in stock")
        await self.store.add_sale(room_id, sale.public(), now)
        await self._load_sale_into_redis(room_id, sale, held=0, sold=0, stopped=False,
                                         bought={})
        self.current_sale[(room_id, product.product_id)] = sale.sale_id
        view = sale_view(await self.redis.hgetall(keys.sale(sale.sale_id)), left, now)
        kind = "sale_open" if view["state"] == "open" else "sale_scheduled"
        await self.hub.publish(room_id, {"type": kind, "sale": view})
        return view

    async def _load_sale_into_redis(self, room_id: str, sale: Sale, held: int, sold: int,
                                    stopped: bool, bought: dict[str, int]) -> None:
        keys = room_keys(room_id)
        now = now_ms()
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(keys.sale(sale.sale_id), mapping={
                "sale_id": sale.sale_id, "product_id": sale.product_id, "price": sale.price,
                "currency": sale.currency, "units": sale.units, "limit": sale.limit_per_buyer,
                "starts_at": sale.starts_at, "ends_at": sale.ends_at,
                "state": "stopped" if stopped else "active", "held": held, "sold": sold})
            pipe.delete(keys.bought(sale.sale_id), keys.ip_bought(sale.sale_id))
            if bought:
                pipe.hset(keys.bought(sale.sale_id), mapping=bought)
            pipe.hset(keys.sales, sale.sale_id, sale.product_id)
            pipe.set(keys.product_sale(sale.product_id), sale.sale_id)
            if not stopped:
                timers: dict[str, int] = {}
                if sale.starts_at > now:
                    timers[f"sale_open:{sale.sale_id}"] = sale.starts_at
                    for n in range(1, self.settings.sale.countdown_from_s + 1):
                        at = sale.starts_at - n * 1000
                        if at > now:
                            timers[f"countdown:{sale.sale_id}:{n}"] = at
                if sale.ends_at > now:
                    timers[f"sale_close:{sale.sale_id}"] = sale.ends_at
                if timers:
                    pipe.zadd(keys.timers, timers)
                    pipe.zadd(DUE, {room_id: min(timers.values())}, lt=True)
            await pipe.execute()
        self.timers_changed.set()

    async def stop_sale(self, room_id: str, sale_id: str) -> dict[str, Any]:
        keys = room_keys(room_id)
        sale = await self.redis.hgetall(keys.sale(sale_id))
        if not sale:
            raise refusal("sale_not_found")
        now = now_ms()
        if sale_view(sale, 0, now)["state"] in ("stopped", "ended"):
            raise Conflict("the sale is already over", code="ended")
        product_id = sale["product_id"]
        await self.store.stop_sale(sale_id, now)
        # One atomic step: the sale stops and its open holds are voided (their units
        # go back to stock), so no hold taken at a wrong price can still be paid.
        stopped = await self.scripts.stop_sale(room_id, sale_id=sale_id, product_id=product_id)
        if stopped.status == "missing":
            raise refusal("sale_not_found")
        if stopped.status == "over":
            raise Conflict("the sale is already over", code="ended")
        if stopped.voided:
            self.dirty_stock.add((room_id, product_id))
            await self.hub.publish(room_id, {
                "type": "holds_voided", "sale_id": sale_id, "product_id": product_id,
                "reason": "sale_stopped", "units": stopped.units, "hold_ids": stopped.voided})
        return await self._announce_sale_end(room_id, sale_id)

    async def _announce_sale_end(self, room_id: str, sale_id: str) -> dict[str, Any]:
        keys = room_keys(room_id)
        sale = await self.redis.hgetall(keys.sale(sale_id))
        left = _int(await self.redis.hget(keys.stock(sale["product_id"]), "left"))
        view = sale_view(sale, left, now_ms())
        await self.hub.publish(room_id, {"type": "sale_closed", "sale": view})
        return view

    async def _sale_timer(self, room_id: str, what: str, sale_id: str, n: int = 0) -> None:
        keys = room_keys(room_id)
        sale = await self.redis.hgetall(keys.sale(sale_id))
        if not sale or sale.get("state") == "stopped":
            return
        if what == "close":
            await self._announce_sale_end(room_id, sale_id)
            return
        left = _int(await self.redis.hget(keys.stock(sale["product_id"]), "left"))
        view = sale_view(sale, left, now_ms())
        if what == "open":
            await self.hub.publish(room_id, {"type": "sale_open", "sale": view})
        else:
            await self.hub.publish(room_id, {"type": "sale_countdown", "sale_id": sale_id,
                                             "product_id": sale["product_id"],
                                             "starts_at": view["starts_at"], "seconds_left": n})

    # ================================================================== buying

    async def _sale_id_for(self, room_id: str, product_id: str, refresh: bool) -> str | None:
        key = (room_id, product_id)
        if not refresh and key in self.current_sale:
            return self.current_sale[key]
        sid: str | None = await self.redis.get(room_keys(room_id).product_sale(product_id))
        if sid is None:
            self.current_sale.pop(key, None)
        else:
            self.current_sale[key] = sid
        return sid

    async def buy(self, viewer: Viewer, room_id: str, request_id: str, product_id: str,
                  quantity: int, client: str = "") -> Answer:
        """Hold units for the viewer. `client` is the buyer's address bucket
        (admission.client_bucket), counted when the room's policy says limit_per_ip."""
        keys = room_keys(room_id)
        hold_id = domain.new_id("h")
        for attempt in range(2):
            sid = await self._sale_id_for(room_id, product_id, refresh=attempt > 0)
            if sid is None:
                async with self.redis.pipeline(transaction=False) as pipe:
                    pipe.exists(keys.epoch)
                    pipe.hexists(keys.products, product_id)
                    whole, known = await pipe.execute()
                if not whole:
                    return error_answer(rebuilding())
                if not known:
                    return error_answer(refusal("product_not_found"))
                return error_answer(refusal("not_on_sale"))
            result = await self.scripts.reserve(
                room_id, sale_id=sid, product_id=product_id, buyer=viewer.viewer_id,
                request_id=request_id, hold_id=hold_id, quantity=quantity,
                hold_ms=int(self.settings.sale.hold_seconds * 1000),
                answer_ttl_s=self.settings.sale.request_id_ttl_s, verified=viewer.verified,
                client=client, max_open_holds=self.settings.sale.max_holds_per_viewer)
            if result.status == "stale":
                continue
            if result.status == "rebuilding":
                return error_answer(rebuilding())
            if result.status == "ok":
                self.dirty_stock.add((room_id, product_id))
                self.note_due(room_id, now_ms() + int(self.settings.sale.hold_seconds * 1000))
                self.timers_changed.set()  # the hold's expiry
            return _from_cached("hold", result.answer)
        return error_answer(refusal("not_on_sale"))

    async def release(self, viewer: Viewer, room_id: str, hold_id: str) -> Answer:
        keys = room_keys(room_id)
        hold = await self.redis.hmget(keys.hold(hold_id), ["product_id", "sale_id", "buyer"])
        if hold[0] is None or hold[2] != viewer.viewer_id:
            # (During a rebuild the hold is gone, or is going: release.lua says so.)
            return error_answer(refusal("hold_not_found"))
        result = await self._release(room_id, hold_id, hold[0], hold[1], "release",
                                     viewer.viewer_id)
        if result.outcome == "rebuilding":
            return error_answer(rebuilding())
        # 'done' says what the release did: the server clock decides whether the hold
        # was still there to release or had already expired.
        state = result.state
        if state == "released":
            return Answer("hold_released", {"hold_id": hold_id})
        if state == "expired":
            return error_answer(refusal("hold_expired"))
        if state in ("confirming", "confirmed"):
            return error_answer(Conflict("the hold is already checked out", code="checked_out"))
        if state == "voided":
            return error_answer(refusal("sale_stopped"))
        if state == "aborted":
            return error_answer(refusal("checkout_cancelled"))
        return error_answer(refusal("hold_not_found"))

    async def _release(self, room_id: str, hold_id: str, product_id: str, sale_id: str,
                       mode: ReleaseMode, buyer: str = "",
                       coupon_id: str = "") -> Released:
        result = await self.scripts.release(room_id, hold_id=hold_id, product_id=product_id,
                                            sale_id=sale_id, mode=mode, buyer=buyer,
                                            coupon_id=coupon_id)
        if result.outcome == "done":
            self.dirty_stock.add((room_id, product_id))
        return result

    async def expire_due_holds(self, room_id: str, hold_ids: list[str]) -> int:
        keys = room_keys(room_id)
        async with self.redis.pipeline(transaction=False) as pipe:
            for hid in hold_ids:
                pipe.hmget(keys.hold(hid), ["product_id", "sale_id"])
            holds = await pipe.execute()
        jobs = []
        for hid, (pid, sid) in zip(hold_ids, holds, strict=True):
            if pid is None:
                await self.redis.zrem(keys.holds, hid)
                continue
            jobs.append(self._release(room_id, hid, pid, sid, "expire"))
        results = await asyncio.gather(*jobs)
        return sum(1 for r in results if r.outcome == "done")

    async def checkout(self, viewer: Viewer, room_id: str, request_id: str, hold_id: str,
                       coupon_id: str | None) -> Answer:
        """Pay for a hold. The order store decides its outcome (docs/faults.md): the
        buyer hears "placed" only once the order row committed, and an order is
        written only if recovery has not aborted the hold and Redis was not rebuilt
        since the checkout began (the room's epoch)."""
        if not await self.identity_allowed(room_id, viewer):
            return error_answer(refusal("signed_identity_required"))
        result = await self.scripts.begin_checkout(room_id, buyer=viewer.viewer_id,
                                                   request_id=request_id, hold_id=hold_id,
                                                   coupon_id=coupon_id or "")
        kind = result.status
        if kind == "dup":
            return _from_cached("order_placed", result.payload)
        if kind == "rebuilding":
            return error_answer(rebuilding())
        if kind == "refused":
            if result.payload == "hold_not_found":
                # Redis may have lost the hold and the remembered answer, but the store
                # keeps the order of a checkout that was placed: a retry still finds it.
                existing = await self.store.order_for_hold(hold_id)
                if existing is not None and existing.buyer_id == viewer.viewer_id \
                        and existing.room_id == room_id:
                    return Answer("order_placed", {"order": existing.public()})
            return error_answer(refusal(result.payload))
        if kind == "confirming":
            # Another checkout of this hold is between its store write and its answer.
            return error_answer(refusal("request_in_progress"))
        hold = orjson.loads(result.payload)
        if kind == "confirmed":
            existing = await self.store.order_for_hold(hold_id)
            if existing is None:  # pragma: no cover - confirmed implies stored
                return error_answer(Unavailable("order record not found; try again"))
            return Answer("order_placed", {"order": existing.public()})
        epoch = result.epoch
        # Due for recovery should this process die now. Until the pulse's next tick
        # writes that, the hold's own expiry keeps the room on the schedule.
        self.note_due(room_id, now_ms() + int(self.settings.store.recover_after_s * 1000))
        self.checkouts_in_flight.add(hold_id)
        try:
            return await self._place(room_id, hold, epoch, request_id)
        finally:
            self.checkouts_in_flight.discard(hold_id)

    async def _place(self, room_id: str, hold: dict[str, Any], epoch: str,
                     request_id: str) -> Answer:
        hold_id = hold["id"]
        order = self._order_from_hold(room_id, hold, request_id)
        try:
            order = Order(**{**order.public(),
                             "payment_ref": await simulated_payment(order.total)})
            outcome = await self.store.place_order(order, epoch)
        except Exception as exc:
            # Nothing was committed (the store raises only for a rolled-back write):
            # the hold goes back to 'held', so the buyer can try again before it expires.
            if not isinstance(exc, StoreError):
                log.exception("could not write order for hold %s", hold_id)
            await self.scripts.abort_checkout(room_id, hold_id=hold_id,
                                              coupon_id=hold.get("coupon_id") or "")
            self.note_due(room_id, now_ms())
            self.timers_changed.set()  # the hold is back among the expiring ones
            return error_answer(Unavailable("the order could not be recorded; your hold "
                                            "is kept, try again", code="store_unavailable"))
        if outcome != PLACED:
            # Recovery aborted this hold, or Redis was rebuilt since the checkout began:
            # no order exists or ever will for it; its units go back to stock.
            await self._release(room_id, hold_id, order.product_id, order.sale_id, "void",
                                coupon_id=hold.get("coupon_id") or "")
            return error_answer(refusal("checkout_cancelled"))
        # Only this checkout moved the hold to 'confirming' and the store wrote its
        # row (unique per hold): no need to read it back.
        answer = Answer("order_placed", {"order": order.public()})
        try:
            await self._finish(order, answer)
        except (RedisError, OSError) as exc:
            # The order is durable, so the buyer is told. The hold stays 'confirming'
            # and recovery moves its units to sold once Redis answers again.
            self.health.redis_failed(exc)
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
        deadline = loop.time() + self.settings.store.recover_after_s
        delay = 0.05
        while True:
            await asyncio.sleep(delay)
            try:
                await self._finish(order, answer)
                log.info("order %s counted in Redis", order.order_id)
                return
            except (RedisError, OSError) as exc:
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
        finished = await self.scripts.finish_checkout(order, encode(answer.body),
                                                      self.settings.sale.request_id_ttl_s)
        if finished.status not in ("ok", "already"):
            # The order is durable; a hold missing from Redis means Redis lost it and
            # the rebuild counts the order from the store.
            log.warning("order %s stored but hold %s was %s in Redis", order.order_id,
                        order.hold_id, finished)
        self.dirty_stock.add((order.room_id, order.product_id))

    @staticmethod
    def _order_from_hold(room_id: str, hold: dict[str, Any], request_id: str) -> Order:
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

    async def recover_checkouts(self, room_id: str, stuck: list[str]) -> int:
        """Decide the checkouts `stuck` in 'confirming' (past store.recover_after_s,
        found by the pulse), left by a process that died or stalled. The store
        decides first (an abort row unless the order is there); only then does Redis
        follow: void the hold (units back to stock) or count the order. A checkout
        still running in this process is left to it."""
        keys = room_keys(room_id)
        fixed = 0
        for hold_id in stuck:
            if hold_id in self.checkouts_in_flight:
                continue
            h = await self.redis.hgetall(keys.hold(hold_id))
            if not h or h.get("state") != "confirming":
                await self.redis.zrem(keys.confirming, hold_id)
                continue
            try:
                decided = await self.store.abort_hold(hold_id, room_id, "recovery", now_ms())
            except StoreError:
                return fixed  # the store is stalled: decide nothing now, try again later
            if decided == ABORTED:
                await self._release(room_id, hold_id, h["product_id"], h["sale_id"], "void",
                                    coupon_id=h.get("coupon_id") or "")
            else:
                order = await self.store.order_for_hold(hold_id)
                if order is None:  # pragma: no cover - ORDERED means the row is there
                    continue
                await self._finish(order, Answer("order_placed", {"order": order.public()}))
            fixed += 1
        return fixed

    # ================================================================== coupons

    async def drop_coupon(self, room_id: str, body: dict[str, Any]) -> dict[str, Any]:
        drop = domain.parse_coupon(body, now_ms(), self.settings.sale.max_coupons_per_drop)
        await self.store.add_coupon_drop(room_id, drop.public())
        await self._load_coupon_into_redis(room_id, drop, claimed=0, uses={})
        view = self._coupon_view(await self.redis.hgetall(room_keys(room_id).coupon(
            drop.coupon_id)))
        await self.hub.publish(room_id, {"type": "coupon_drop", "coupon": view})
        return view

    async def _load_coupon_into_redis(self, room_id: str, drop: CouponDrop, claimed: int,
                                      uses: dict[str, str]) -> None:
        keys = room_keys(room_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(keys.coupon(drop.coupon_id), mapping={
                "coupon_id": drop.coupon_id, "title": drop.title, "kind": drop.kind,
                "value": drop.value, "min_spend": drop.min_spend, "currency": drop.currency,
                "count": drop.count, "claimed": claimed, "expires_at": drop.expires_at})
            pipe.delete(keys.claims(drop.coupon_id))
            if uses:
                pipe.hset(keys.claims(drop.coupon_id),
                          mapping={b: f"used:{o}" for b, o in uses.items()})
            pipe.sadd(keys.coupons, drop.coupon_id)
            await pipe.execute()

    async def claim_coupon(self, viewer: Viewer, room_id: str, request_id: str,
                           coupon_id: str) -> Answer:
        if not await self.identity_allowed(room_id, viewer):
            return error_answer(refusal("signed_identity_required"))
        result = await self.scripts.claim_coupon(
            room_id, viewer=viewer.viewer_id, request_id=request_id, coupon_id=coupon_id,
            answer_ttl_s=self.settings.sale.request_id_ttl_s)
        if result.status == "rebuilding":
            return error_answer(rebuilding())
        if result.status == "ok":
            self.dirty_counts.add((room_id, "coupon", coupon_id))
        return _from_cached("coupon_claimed", result.answer)

    # ================================================================== lotteries

    async def open_lottery(self, room_id: str, body: dict[str, Any]) -> dict[str, Any]:
        seed = domain.new_seed()
        lottery = domain.parse_lottery(body, now_ms(), self.settings.sale.max_lottery_winners,
                                       seed)
        await self.store.add_lottery(room_id, lottery.public(), seed)
        await self._load_lottery_into_redis(room_id, lottery, None)
        view = await self.lottery(room_id, lottery.lottery_id)
        await self.hub.publish(room_id, {"type": "lottery_open", "lottery": view})
        return view

    async def _load_lottery_into_redis(self, room_id: str, lottery: Lottery,
                                       result: dict[str, Any] | None,
                                       entrants: list[str] | None = None) -> None:
        keys = room_keys(room_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            if entrants:
                pipe.sadd(keys.entrants(lottery.lottery_id), *entrants)
            pipe.hset(keys.lottery(lottery.lottery_id), mapping={
                "lottery_id": lottery.lottery_id, "prize": lottery.prize,
                "winners": lottery.winners, "mode": lottery.entry, "keyword": lottery.keyword,
                "seed_hash": lottery.seed_hash, "opens_at": lottery.opens_at,
                "closes_at": lottery.closes_at, "state": "drawn" if result else "open",
                "result": encode(result) if result else ""})
            pipe.sadd(keys.lotteries, lottery.lottery_id)
            if result is None:
                pipe.zadd(keys.timers, {f"lottery_close:{lottery.lottery_id}":
                                        lottery.closes_at})
                pipe.zadd(DUE, {room_id: lottery.closes_at}, lt=True)
                if lottery.entry == "keyword":
                    pipe.sadd(KEYWORD_ROOMS, room_id)
            await pipe.execute()
        self.timers_changed.set()
        if result is None and lottery.entry == "keyword":
            self.keyword_lotteries.setdefault(room_id, {})[lottery.lottery_id] = lottery.keyword

    async def refresh_keyword_lotteries(self, room_id: str) -> None:
        """Learn keyword lotteries opened through other processes."""
        keys = room_keys(room_id)
        ids = sorted(await self.redis.smembers(keys.lotteries))
        if not ids:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for lid in ids:
                pipe.hmget(keys.lottery(lid), ["state", "mode", "keyword"])
            rows = await pipe.execute()
        self.keyword_lotteries[room_id] = {
            lid: kw for lid, (state, mode, kw) in zip(ids, rows, strict=True)
            if state == "open" and mode == "keyword" and kw}

    async def lottery(self, room_id: str, lottery_id: str,
                      with_entrants: bool = True) -> dict[str, Any]:
        keys = room_keys(room_id)
        lot = await self.redis.hgetall(keys.lottery(lottery_id))
        if not lot:
            raise refusal("lottery_not_found")
        return self._lottery_view(lottery_id, lot,
                                  int(await self.redis.scard(keys.entrants(lottery_id))),
                                  with_entrants)

    async def lottery_entrants(self, room_id: str, lottery_id: str) -> list[str]:
        return sorted(await self.redis.smembers(room_keys(room_id).entrants(lottery_id)))

    async def enter_lottery(self, viewer: Viewer, room_id: str, request_id: str,
                            lottery_id: str, text: str) -> Answer:
        if not await self.identity_allowed(room_id, viewer):
            return error_answer(refusal("signed_identity_required"))
        keys = room_keys(room_id)
        result = await self.scripts.enter_lottery(
            room_id, viewer=viewer.viewer_id, request_id=request_id, lottery_id=lottery_id,
            entry_text=domain.normalize_entry_text(text),
            answer_ttl_s=self.settings.sale.request_id_ttl_s)
        if result.status == "rebuilding":
            return error_answer(rebuilding())
        if result.status == "ok":
            # Durable before "entered", like an order: the draw and a rebuild of Redis
            # read the entrants from the store.
            try:
                await self.store.add_lottery_entry(room_id, lottery_id, viewer.viewer_id,
                                                   now_ms())
            except Exception as exc:
                if not isinstance(exc, StoreError):
                    log.exception("could not record a lottery entry")
                async with self.redis.pipeline(transaction=True) as pipe:
                    pipe.srem(keys.entrants(lottery_id), viewer.viewer_id)
                    pipe.delete(keys.request(viewer.viewer_id, "enter_lottery", request_id))
                    await pipe.execute()
                return error_answer(Unavailable("your entry could not be recorded; try "
                                                "again", code="store_unavailable"))
            self.dirty_counts.add((room_id, "lottery", lottery_id))
        return _from_cached("lottery_entered", result.answer)

    async def draw_lottery(self, room_id: str, lottery_id: str) -> dict[str, Any]:
        keys = room_keys(room_id)
        won = await self.scripts.close_lottery(room_id, lottery_id)
        if not won:
            view = await self.lottery(room_id, lottery_id)
            raise Conflict("the lottery is already drawn", code="lottery_closed",
                           details={"lottery_id": view["lottery_id"]})
        try:
            return await self._draw(room_id, lottery_id)
        except BaseException:
            # Put it back so the timer (or the host) can draw it again.
            await self.redis.hset(keys.lottery(lottery_id), "state", "open")
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.zadd(keys.timers, {f"lottery_close:{lottery_id}": now_ms() + 1000})
                pipe.zadd(DUE, {room_id: now_ms() + 1000}, lt=True)
                await pipe.execute()
            self.timers_changed.set()
            raise

    async def _draw(self, room_id: str, lottery_id: str) -> dict[str, Any]:
        keys = room_keys(room_id)
        self.keyword_lotteries.get(room_id, {}).pop(lottery_id, None)
        lot = await self.redis.hgetall(keys.lottery(lottery_id))
        seed = next((s for data, s, _ in await self.store.lotteries(room_id)
                     if data["lottery_id"] == lottery_id), None)
        if seed is None:
            raise refusal("lottery_not_found")
        # The store holds every entry that was answered "entered" (entries admitted
        # before the close may still be committing: wait for them). Redis's set is
        # added too: a lottery opened before entries were stored has them only there.
        await self.store.wait_idle()
        stored = (await self.store.lottery_entrants(room_id, lottery_id)).get(lottery_id, [])
        entrants = sorted(set(stored) | set(await self.lottery_entrants(room_id, lottery_id)))
        count = _int(lot.get("winners"), 1)
        result = {"seed": seed, "entrants": entrants,
                  "entrants_digest": domain.entrants_digest(entrants),
                  "winners": domain.draw_winners(seed, entrants, count),
                  "drawn_at": now_ms()}
        await self.store.set_lottery_result(lottery_id, result)
        await self.redis.hset(keys.lottery(lottery_id),
                              mapping={"state": "drawn", "result": encode(result)})
        await self.redis.zrem(keys.timers, f"lottery_close:{lottery_id}")
        view = await self.lottery(room_id, lottery_id)
        slim = {**view, "result": {k: v for k, v in view["result"].items() if k != "entrants"}}
        await self.hub.publish(room_id, {"type": "lottery_drawn", "lottery": slim})
        return view

    # ================================================================== chat, likes, notes

    async def chat(self, viewer: Viewer, room_id: str, text: str, from_host: bool = False) -> None:
        keys = room_keys(room_id)
        now = now_ms()
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hget(keys.muted, viewer.viewer_id)
            pipe.incr(keys.chat_minute(now // 60_000))
            pipe.expire(keys.chat_minute(now // 60_000), 180)
            muted_until, _, _ = await pipe.execute()
        if muted_until is not None and int(muted_until) > now:
            raise refusal("muted", until=int(muted_until))
        if not from_host:
            await self.admit_chat(room_id, viewer)
        event: dict[str, Any] = {"type": "chat", "message_id": domain.new_id("m"),
                 "viewer_id": viewer.viewer_id, "nickname": viewer.nickname, "text": text}
        if from_host:
            event["host"] = True
        if await self.hub.publish(room_id, event) < 0:
            raise rebuilding()
        keywords = self.keyword_lotteries.get(room_id)
        if keywords:
            norm = domain.normalize_entry_text(text)
            for lid, kw in list(keywords.items()):
                if kw in norm:
                    # Commenting the keyword enters the lottery; one entry per viewer.
                    await self.enter_lottery(viewer, room_id, f"chat-{lid}", lid, norm)

    def like(self, room_id: str, count: int) -> None:
        self.likes[room_id] = self.likes.get(room_id, 0) + count

    async def announce(self, room_id: str, body: dict[str, Any]) -> dict[str, Any]:
        text = domain.parse_announcement(body)
        event = {"type": "announcement", "text": text}
        seq = await self.hub.publish(room_id, event)
        return {"seq": seq, **event}

    # ================================================================== room policy

    async def room_policy(self, room_id: str) -> RoomPolicy:
        return policy.from_redis(await self.redis.hgetall(room_keys(room_id).policy))

    async def set_policy(self, room_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """The host changes the room policy: durable in the store first, then Redis,
        then every viewer hears it (`room_policy`)."""
        updated = policy.apply_patch(await self.room_policy(room_id), body)
        await self.store.set_room_policy(room_id, updated.public())
        await self.redis.hset(room_keys(room_id).policy, mapping=updated.redis_hash())
        view = updated.public()
        await self.hub.publish(room_id, {"type": "room_policy", "policy": view})
        return view

    async def load_policy(self, room_id: str) -> None:
        """Put the stored policy back into Redis (a rebuild after Redis lost its data)."""
        stored = policy.from_stored(await self.store.room_policy(room_id))
        keys = room_keys(room_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(keys.policy)
            pipe.hset(keys.policy, mapping=stored.redis_hash())
            await pipe.execute()

    async def identity_allowed(self, room_id: str, viewer: Viewer) -> bool:
        """False when the room requires a shop-signed identity and the viewer is a
        guest. A verified viewer costs no Redis call."""
        if viewer.verified:
            return True
        flag = await self.redis.hget(room_keys(room_id).policy, "require_verified")
        return bool(flag != "1")

    async def admit_chat(self, room_id: str, viewer: Viewer) -> None:
        """Slow mode and the room-wide chat rate (chat_gate.lua); raises `slow_mode`
        or `chat_busy` with details.retry_after_s."""
        gate = await self.scripts.chat_gate(room_id, viewer.viewer_id,
                                            self.settings.chat.room_messages_per_s)
        if gate.status == "slow_mode":
            raise refusal("slow_mode", f"Slow mode: one message every {gate.slow_mode_s} s.",
                          retry_after_s=max(1, -(-gate.wait_ms // 1000)),
                          slow_mode_s=gate.slow_mode_s)
        if gate.status == "busy":
            raise refusal("chat_busy", retry_after_s=max(1, -(-gate.wait_ms // 1000)))

    # ================================================================== recording

    async def set_recording(self, room_id: str, enabled: bool) -> None:
        await self.redis.hset(room_keys(room_id).room, "recording", "1" if enabled else "")
        # The set the pulse reads to learn of rooms switched on through other processes.
        await (self.redis.sadd if enabled else self.redis.srem)(RECORDING_ROOMS, room_id)
        if self.recorder is not None:
            (self.recorder.rooms.add if enabled else self.recorder.rooms.discard)(room_id)

    async def refresh_recording(self, room_id: str) -> None:
        """Learn recording switched on or off through other processes."""
        if self.recorder is None:
            return
        if await self.redis.hget(room_keys(room_id).room, "recording"):
            self.recorder.rooms.add(room_id)
        else:
            self.recorder.rooms.discard(room_id)

    # ================================================================== moderation

    async def delete_message(self, room_id: str, body: dict[str, Any]) -> dict[str, Any]:
        domain.reject_unknown_fields(body, {"message_id"}, "delete")
        message_id = domain.get_id(body, "message_id")
        event = {"type": "chat_deleted", "message_id": message_id}
        seq = await self.hub.publish(room_id, event)
        return {"seq": seq, **event}

    async def mute(self, room_id: str, body: dict[str, Any]) -> dict[str, Any]:
        viewer_id, duration_s = domain.parse_mute(body)
        until = now_ms() + duration_s * 1000
        keys = room_keys(room_id)
        await self.redis.hset(keys.muted, viewer_id, until)
        event = {"type": "viewer_muted", "viewer_id": viewer_id, "until": until}
        seq = await self.hub.publish(room_id, event)
        return {"seq": seq, **event}

    # ================================================================== reports

    async def stats(self, room_id: str) -> dict[str, Any]:
        """The host console's live numbers."""
        state = await self.room_state(room_id)
        totals = await self.store.order_totals(room_id)
        keys = room_keys(room_id)
        minute = now_ms() // 60_000
        last_minute = await self.redis.get(keys.chat_minute(minute - 1))
        this_minute = await self.redis.get(keys.chat_minute(minute))
        unique = state["viewers"]["unique"]
        products = [{"product_id": c["product_id"], "title": c["title"], **c["stock"],
                     "sale": c["sale"]} for c in state["products"]]
        return {
            "server_time": state["server_time"],
            "viewers": state["viewers"],
            "likes": state["likes"],
            "chat_per_minute": int(last_minute or 0),
            "chat_this_minute": int(this_minute or 0),
            "holds_units": sum(p["held"] for p in products),
            "orders": totals["orders"],
            "units_sold": totals["units"],
            "revenue": totals["revenue"],
            "buyers": totals["buyers"],
            "conversion": round(totals["buyers"] / unique, 4) if unique else 0.0,
            "products": products,
        }

    async def orders(self, room_id: str, limit: int, offset: int) -> list[dict[str, Any]]:
        return [o.public() for o in await self.store.orders(room_id, limit, offset)]

    async def audit(self, room_id: str) -> dict[str, Any]:
        """Redis counters beside the store's record, per product and sale, with checks.

        While the room is being rebuilt there is nothing to compare: the audit says
        `rebuilding` and is not ok. The store-only checks (no sale's orders above its
        units, no hold both ordered and aborted) prove the record itself."""
        keys = room_keys(room_id)
        if not await self.redis.exists(keys.epoch):
            try:
                await self.ensure_whole(room_id)
            except Unavailable:
                return {"room_id": room_id, "state": "rebuilding", "products": [],
                        "sales": [], "orders": await self.store.order_totals(room_id),
                        "checks": [], "ok": False}
        state = await self.room_state(room_id)
        sold_store = await self.store.sold_by_product(room_id)
        by_buyer = await self.store.sold_by_sale_and_buyer(room_id)
        totals = await self.store.order_totals(room_id)
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
        sale_ids = await self.redis.hkeys(keys.sales)
        sales = []
        for sid in sorted(sale_ids):
            sale = await self.redis.hgetall(keys.sale(sid))
            if not sale:
                continue
            left = _int(await self.redis.hget(keys.stock(sale["product_id"]), "left"))
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
        oversold = await self.store.oversold_sales(room_id)
        checks.append({"name": "store: no sale has orders above its units",
                       "ok": not oversold,
                       "detail": {sid: {"sold": n, "units": u}
                                  for sid, (n, u) in oversold.items()}})
        conflicts = await self.store.outcome_conflicts(room_id)
        checks.append({"name": "store: no hold both ordered and aborted",
                       "ok": conflicts == 0, "detail": {"holds": conflicts}})
        return {"room_id": room_id, "state": "whole", "products": products, "sales": sales,
                "orders": totals, "aborted_holds": await self.store.aborted_count(room_id),
                "checks": checks,
                "ok": all(c["ok"] for c in checks)}


async def simulated_payment(amount: int) -> str:
    """The payment step. livesell ships no payment provider: this simulated step
    always approves and returns a reference. A real deployment replaces it."""
    return f"sim_{secrets.token_hex(8)}_{amount}"
