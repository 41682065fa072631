"""The room in Redis: its hash (title, stream, host key hash, lifecycle), its
sequence counter, the set of rooms, the epoch that marks its state whole, and
the reads that make a snapshot. Features call these methods; only this layer
issues the commands (docs/architecture.md)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from server.core.domain import listing_id
from server.core.keys import (
    CLAIM_ROOMS,
    DUE,
    EPOCH,
    KEYWORD_ROOMS,
    RECORDING_ROOMS,
    ROOMS,
    room_keys,
)
from server.state.scripts import Scripts

# Unanswered questions (Q&A) a snapshot carries, the most upvoted first.
TOP_QUESTIONS = 10


@dataclass(slots=True)
class RoomRead:
    """Everything a snapshot shows, read after the room's sequence number (so every
    later change arrives as a later event)."""

    seq: int
    whole: bool
    room: dict[str, str]
    products: list[dict[str, Any]]  # in catalogue order, with their position
    stocks: list[dict[str, str]]  # one per product
    sales: list[dict[str, str] | None]  # the current sale of each product
    listings: list[dict[str, str]]  # the listing of each product ({} without one)
    waiting: list[int]  # viewers on each product's waitlist
    pins: list[str]
    likes: int
    coupons: list[dict[str, str]]
    lotteries: list[tuple[str, dict[str, str], int]]  # id, hash, entrant count
    policy: dict[str, str]
    auctions: list[dict[str, str]]  # every auction's hash
    chat: list[dict[str, Any]]  # the recent chat events, oldest first, none deleted
    polls: list[dict[str, str]]  # every poll's hash
    questions: list[dict[str, Any]]  # the top unanswered questions, most votes first
    deals: list[dict[str, str]]  # every group deal's hash


class RoomsData:
    def __init__(self, redis: Any, scripts: Scripts | None = None) -> None:
        # A decode_responses=True client: replies are str, though redis-py types
        # them bytes | str; every method below gives its result a real type.
        self.redis = redis
        self.scripts = scripts

    async def load_room(self, room_id: str, title: str, stream_url: str, key_hash: str,
                        created: int) -> None:
        keys = room_keys(room_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(keys.room, mapping={"room_id": room_id, "title": title,
                                          "stream_url": stream_url, "host_key_hash": key_hash,
                                          "created_at": created})
            # Sequence numbers start at the creation time in ms, so that after Redis
            # loses its data and the room is rebuilt, new numbers still exceed old ones.
            pipe.set(keys.seq, created, nx=True)
            await pipe.execute()
        # The set of rooms is one key for all, on its own shard on a Redis Cluster.
        await self.redis.sadd(ROOMS, room_id)

    async def update_room(self, room_id: str, changes: Mapping[str, str]) -> None:
        """The room's fields the host edited (title, stream_url; the store has them)."""
        await self.redis.hset(room_keys(room_id).room, mapping=dict(changes))

    async def mark_whole(self, room_id: str, epoch: str) -> None:
        """The room's Redis state is complete and belongs to `epoch` (set last). On a
        Redis Cluster the key also names the node that serves the room as its home
        (home.lua, lib/epoch.lua)."""
        if self.scripts is not None and self.scripts.cluster:
            await self.scripts.home(room_id, "mark", epoch)
            return
        await self.redis.set(room_keys(room_id).epoch, epoch)

    @property
    def cluster(self) -> bool:
        return self.scripts is not None and self.scripts.cluster

    async def epoch(self, room_id: str) -> str | None:
        """The room's Redis epoch (None while the room is being rebuilt, and on a
        Redis Cluster while its key names another node than the one serving it:
        until the servers re-home or rebuild the room, nothing of it moves, as the
        scripts see it: lua/lib/epoch.lua)."""
        if self.scripts is not None and self.scripts.cluster:
            home = await self.scripts.home(room_id, "check")
            return home.epoch if home.state == "home" else None
        value = await self.redis.get(room_keys(room_id).epoch)
        return None if value is None else str(value)

    async def is_whole(self, room_id: str) -> bool:
        if self.cluster:
            return await self.epoch(room_id) is not None
        return bool(await self.redis.exists(room_keys(room_id).epoch))

    async def presence(self, room_id: str) -> tuple[bool, bool, bool, str | None]:
        """(whole: the room's epoch is set, exists: its hash is there, in_step: Redis
        as a whole is in step with the store, state: the show's state field), in one
        round trip: a host request needs both the room's wholeness and its state."""
        keys = room_keys(room_id)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.exists(keys.epoch)
            pipe.exists(keys.room)
            pipe.exists(EPOCH)
            pipe.hget(keys.room, "state")
            whole, exists, in_step, state = await pipe.execute()
        if whole and self.cluster:
            whole = await self.epoch(room_id) is not None  # home.lua: at home here
        return bool(whole), bool(exists), bool(in_step), state

    async def host_key_hash(self, room_id: str) -> str | None:
        found: str | None = await self.redis.hget(room_keys(room_id).room, "host_key_hash")
        return found

    async def fields(self, room_id: str, *names: str) -> list[str | None]:
        return list(await self.redis.hmget(room_keys(room_id).room, list(names)))

    async def set_fields(self, room_id: str, fields: dict[str, Any]) -> None:
        await self.redis.hset(room_keys(room_id).room, mapping=fields)

    async def checkouts_pending(self, room_id: str) -> bool:
        return bool(await self.redis.zcard(room_keys(room_id).confirming))

    async def forget_flags(self, room_id: str) -> None:
        """Off the sets the pulse reads for keyword lotteries, claim keywords and
        recording."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.srem(KEYWORD_ROOMS, room_id)
            pipe.srem(CLAIM_ROOMS, room_id)
            pipe.srem(RECORDING_ROOMS, room_id)
            await pipe.execute()

    async def release(self, room_id: str) -> int:
        """Delete every key of the room (archiving); the number of keys released."""
        keys = room_keys(room_id)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.srem(ROOMS, room_id)
            pipe.zrem(DUE, room_id)
            pipe.srem(RECORDING_ROOMS, room_id)
            pipe.srem(KEYWORD_ROOMS, room_id)
            pipe.srem(CLAIM_ROOMS, room_id)
            await pipe.execute()
        doomed = [k async for k in self.redis.scan_iter(match=keys.base + "*", count=1000)]
        for start in range(0, len(doomed), 1000):
            await self.redis.unlink(*doomed[start:start + 1000])
        return len(doomed)

    async def read(self, room_id: str) -> RoomRead:
        """The snapshot's reads: three pipelined round trips whatever the room's size."""
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
            pipe.smembers(keys.auctions)
            pipe.lrange(keys.chat_history, 0, -1)
            pipe.smembers(keys.polls)
            # Twice the snapshot's ten: ties at the edge are then ordered by age below.
            pipe.zrevrange(keys.open_questions, 0, 2 * TOP_QUESTIONS - 1, withscores=True)
            pipe.smembers(keys.deals)
            (seq, room, products_raw, pins, likes, coupon_ids, lottery_ids, whole, policy_raw,
             auction_ids, chat_raw, poll_ids, ranked, deal_ids) = await pipe.execute()
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
        n = len(products)
        stocks, sale_ids = res[0:2 * n:2], res[1:2 * n:2]
        coupons = res[2 * n:2 * n + len(coupon_ids)]
        lotteries_raw = res[2 * n + len(coupon_ids):]
        async with self.redis.pipeline(transaction=False) as pipe:
            for sid in sale_ids:
                pipe.hgetall(keys.sale(sid) if sid else keys.sale("-"))
            for p in products:
                pipe.hgetall(keys.sale(listing_id(p["product_id"])))
            for p in products:
                pipe.zcard(keys.waitlist(p["product_id"]))
            for aid in sorted(auction_ids):
                pipe.hgetall(keys.auction(aid))
            for pid in sorted(poll_ids):
                pipe.hgetall(keys.poll(pid))
            for did in sorted(deal_ids):
                pipe.hgetall(keys.sale(did))
            if ranked:
                pipe.hmget(keys.questions, [qid for qid, _ in ranked])
            res = await pipe.execute()
        questions: list[dict[str, Any]] = []
        if ranked:
            found = res.pop()
            questions = [{**orjson.loads(q), "votes": int(score)}
                         for (_, score), q in zip(ranked, found, strict=True) if q]
            questions.sort(key=lambda q: (-q["votes"], q["asked_at"], q["question_id"]))
            questions = questions[:TOP_QUESTIONS]
        sales, listings, waiting = res[:n], res[n:2 * n], res[2 * n:3 * n]
        a = 3 * n + len(auction_ids)
        p = a + len(poll_ids)
        auctions = [h for h in res[3 * n:a] if h]
        polls = [h for h in res[a:p] if h]
        deals = [h for h in res[p:p + len(deal_ids)] if h]
        # The snapshot's seq was read first: a message published since may be in the
        # history too (pages keep messages by id).
        chat = [orjson.loads(r) for r in chat_raw]
        return RoomRead(
            seq=int(seq or 0), whole=bool(whole), room=room, products=products,
            stocks=stocks, sales=[s or None for s in sales], listings=listings,
            waiting=[int(w) for w in waiting],
            pins=list(pins),
            likes=int(likes or 0), coupons=[c for c in coupons if c],
            lotteries=[(lid, lot, int(count)) for lid, lot, count in
                       zip(lottery_ids, lotteries_raw[0::2], lotteries_raw[1::2],
                           strict=True) if lot],
            policy=policy_raw, auctions=auctions, chat=chat, polls=polls,
            questions=questions, deals=deals)

    async def add_report_counts(self, room_id: str, counts: dict[str, int]) -> None:
        """Add a process's counts (holds, holds expired) to the room's report."""
        key = room_keys(room_id).report
        async with self.redis.pipeline(transaction=False) as pipe:
            for name, n in counts.items():
                pipe.hincrby(key, name, n)
            await pipe.execute()

    async def report_counters(self, room_id: str) -> tuple[dict[str, int], dict[int, int],
                                                            dict[int, int]]:
        """The report's counts, each minute's peak viewers and chat messages."""
        keys = room_keys(room_id)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(keys.report)
            pipe.zrange(keys.viewers_by_minute, 0, -1, withscores=True)
            pipe.hgetall(keys.chat_by_minute)
            counts, viewers, chat = await pipe.execute()
        return ({k: int(v) for k, v in counts.items()},
                {int(m): int(n) for m, n in viewers},
                {int(m): int(n) for m, n in chat.items()})

    async def chat_per_minute(self, room_id: str, minute: int) -> tuple[int, int]:
        """Chat messages in the minute before `minute` and in `minute` itself."""
        keys = room_keys(room_id)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.get(keys.chat_minute(minute - 1))
            pipe.get(keys.chat_minute(minute))
            last, this = await pipe.execute()
        return int(last or 0), int(this or 0)
