"""The PostgreSQL order store (server/state/store.py is its interface and states the
guarantees it keeps), through asyncpg (server/state/pg_driver.py).

Chosen by `store.url = "postgresql://…"`. One writer task owns every write and
commits them in groups on its own connection (server/state/pg_writer.py); reads go
through a small pool of other connections and see every write that has returned.
PostgreSQL's synchronous_commit stays on (the writer's session turns it back on if
the server or role turned it off): each commit's WAL is flushed before its callers
are answered. The tables and their migrations are in server/state/pg_schema.py; the
SQL below says what SqliteOrderStore's does (server/state/sqlite_store.py), method
for method, in PostgreSQL's dialect.
"""

from __future__ import annotations

import asyncio
import logging
import urllib.parse
from typing import Any, Final

import orjson

from server.core.domain import now_ms
from server.state import pg_driver
from server.state.group_commit import QueuedStore
from server.state.pg_driver import Connection, Pool, Record, affected, unavailable
from server.state.pg_schema import migrate
from server.state.pg_writer import INSERT_OUTBOX, PgGroupWriter
from server.state.store import Order, StoreClosed, StoreError
from server.state.store_rows import ORDER_COLUMNS, order_row, outbox_row, refund_record

log = logging.getLogger("livesell.store")

ORDER_SELECT: Final = f"SELECT {', '.join(ORDER_COLUMNS)} FROM orders"
ADD_COUPON_DROP: Final = "INSERT INTO coupon_drops (coupon_id, room_id, data) VALUES ($1, $2, $3)"
# An order the host did not cancel (the orders table's rows as `orders`).
LIVE: Final = ("NOT EXISTS (SELECT 1 FROM order_cancellations c "
               "WHERE c.order_id = orders.order_id)")
LIVE_O: Final = LIVE.replace("orders.order_id", "o.order_id")  # the same, as `orders o`
# An order's units still sold: its quantity less the units refunded into stock.
NET: Final = ("(quantity - (SELECT COALESCE(SUM(r.quantity), 0) FROM order_refunds r "
              "WHERE r.order_id = orders.order_id AND r.restock = 1))")
NET_O: Final = NET.replace("quantity -", "o.quantity -", 1).replace("orders.order_id",
                                                                    "o.order_id")
# Bounds on waiting for PostgreSQL beyond the lock wait (store.busy_timeout_ms):
# connecting, and a transaction or read that PostgreSQL does not answer.
ANSWER_MARGIN_S: Final = 5.0


def describe(url: str) -> str:
    """The URL as it may be shown: user, host, port and database, never a password."""
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname or "localhost"
        port = f":{parts.port}" if parts.port else ""
        user = f"{parts.username}@" if parts.username else ""
    except ValueError:
        return "postgresql://(unparsable URL)"
    return f"{parts.scheme}://{user}{host}{port}{parts.path}"


def _order(r: Record) -> Order:
    return Order(**dict(r.items()))


class PgOrderStore(QueuedStore):
    """The order store in a PostgreSQL database; implements
    `server.state.store.OrderStore`."""

    def __init__(self, url: str, batch_max: int = 500, busy_timeout_ms: int = 5000,
                 pool_size: int = 4) -> None:
        self.url = url
        self.where = describe(url)
        self.batch_max = batch_max
        self.busy_timeout_ms = busy_timeout_ms
        self.pool_size = pool_size
        # A write waits this long for another process's writer lock (lock_timeout,
        # SQLite's busy_timeout); PostgreSQL not answering at all is given the
        # margin on top.
        self.answer_s = busy_timeout_ms / 1000 + ANSWER_MARGIN_S
        self._session = {"application_name": "livesell",
                         "lock_timeout": f"{int(busy_timeout_ms)}ms"}
        self._pool: Pool | None = None
        self._writes: PgGroupWriter = PgGroupWriter(batch_max, self._connect_writer,
                                                    self.answer_s)

    async def _connect_writer(self) -> Connection:
        conn = await pg_driver.connect(self.url, self.answer_s, self._session)
        try:
            # Durable before "placed": a commit's answer comes after its WAL flush.
            # A server or role that turned that off is overruled for this session.
            if await conn.fetchval("SHOW synchronous_commit") == "off":
                log.warning("order store %s: synchronous_commit is off there; the "
                            "store's writer turns it on", self.where)
                await conn.execute("SET synchronous_commit = on")
        except BaseException:
            conn.terminate()
            raise
        return conn

    async def open(self) -> None:
        """Connect, bring the schema to this server's version (once, whoever starts
        first), and start the writer."""
        try:
            async with asyncio.timeout(self.answer_s):
                conn = await self._connect_writer()
        except Exception as exc:
            raise RuntimeError(f"cannot reach the order store {self.where}: {exc}") from exc
        try:
            if await conn.fetchval("SHOW fsync") == "off":
                log.warning("order store %s: PostgreSQL runs with fsync off; a crash of "
                            "its machine can lose orders that were acknowledged",
                            self.where)
            await migrate(conn, self.where)
            self._pool = await pg_driver.create_pool(self.url, self.pool_size, self.answer_s,
                                                     self._session)
        except BaseException:
            conn.terminate()
            raise
        self._writes.start(conn)

    async def close(self) -> None:
        """Stop taking writes, commit everything queued, close the connections. Safe
        to call again, also after a close that was cancelled."""
        await self._writes.close()
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                async with asyncio.timeout(self.answer_s):
                    await pool.close()
            except TimeoutError:
                # Readers PostgreSQL no longer answers: dropped (every write is
                # decided by now).
                pool.terminate()
            except BaseException:
                pool.terminate()
                raise

    # ------------------------------------------------------------------ the arbiter

    def write(self, sql: str, *params: Any) -> asyncio.Future[Any]:
        """Queue one statement; the future resolves once its transaction committed."""
        return self._writes.queue("sql", sql, params)

    async def place_order(self, order: Order, epoch: str) -> str:
        result: str = await self._writes.queue("order", "", order_row(order), epoch)
        return result

    # ------------------------------------------------------------------ catalogue writes

    async def add_room(self, room_id: str, title: str, stream_url: str, host_key_hash: str,
                       created_at: int) -> None:
        await self.write("INSERT INTO rooms VALUES ($1, $2, $3, $4, $5)",
                         room_id, title, stream_url, host_key_hash, created_at)

    async def update_room(self, room_id: str, title: str | None,
                          stream_url: str | None) -> None:
        await self.write("UPDATE rooms SET title = COALESCE($1, title), "
                         "stream_url = COALESCE($2, stream_url) WHERE room_id = $3",
                         title, stream_url, room_id)

    async def set_room_state(self, room_id: str, state: str, starts_at: int | None,
                             ended_at: int | None, changed_at: int) -> None:
        await self.write(
            "INSERT INTO room_states VALUES ($1, $2, $3, $4, $5) ON CONFLICT (room_id) "
            "DO UPDATE SET state = excluded.state, starts_at = excluded.starts_at, "
            "ended_at = excluded.ended_at, changed_at = excluded.changed_at",
            room_id, state, starts_at, ended_at, changed_at)

    async def put_product(self, room_id: str, product_id: str, data: dict[str, Any],
                          stock: int) -> None:
        await self.write(
            "INSERT INTO products (room_id, product_id, data, stock, position) VALUES "
            "($1, $2, $3, $4, (SELECT COALESCE(MAX(position), 0) + 1 FROM products "
            "WHERE room_id = $1)) ON CONFLICT (room_id, product_id) DO UPDATE SET "
            "data = excluded.data, stock = excluded.stock",
            room_id, product_id, orjson.dumps(data).decode(), stock)

    async def add_sale(self, room_id: str, sale: dict[str, Any], created_at: int) -> None:
        await self.write(
            "INSERT INTO sales (sale_id, room_id, product_id, data, created_at) "
            "VALUES ($1, $2, $3, $4, $5)",
            sale["sale_id"], room_id, sale["product_id"], orjson.dumps(sale).decode(),
            created_at)

    async def stop_sale(self, sale_id: str, stopped_at: int) -> None:
        await self.write("UPDATE sales SET stopped_at = $1 WHERE sale_id = $2",
                         stopped_at, sale_id)

    async def put_listing(self, room_id: str, product_id: str, open_: bool, limit: int,
                          changed_at: int) -> None:
        await self.write(
            "INSERT INTO listings VALUES ($1, $2, $3, $4, $4, $5) "
            "ON CONFLICT (room_id, product_id) DO UPDATE SET open = excluded.open, "
            "limit_per_buyer = excluded.limit_per_buyer, "
            "max_limit = GREATEST(listings.max_limit, excluded.limit_per_buyer), "
            "changed_at = excluded.changed_at",
            room_id, product_id, int(open_), limit, changed_at)

    async def put_claim_word(self, room_id: str, product_id: str, keyword: str | None,
                             quantities: bool, changed_at: int) -> str | None:
        try:
            await self.write(
                "INSERT INTO claim_words VALUES ($1, $2, $3, $4, $5) "
                "ON CONFLICT (room_id, product_id) DO UPDATE SET keyword = excluded.keyword, "
                "quantities = excluded.quantities, changed_at = excluded.changed_at",
                room_id, product_id, keyword, int(quantities), changed_at)
        except pg_driver.UniqueViolation:
            # The unique index: another product of the room has the keyword.
            rows = await self._all("SELECT product_id FROM claim_words WHERE room_id = $1 "
                                   "AND lower(keyword) = lower($2)", room_id, keyword)
            return str(rows[0]["product_id"]) if rows else ""
        return None

    async def add_coupon_drop(self, room_id: str, drop: dict[str, Any]) -> None:
        await self.write(ADD_COUPON_DROP, drop["coupon_id"], room_id,
                         orjson.dumps(drop).decode())

    async def end_coupon_drop(self, room_id: str, coupon_id: str, at: int) -> int | None:
        async def end(conn: Connection) -> int | None:
            raw = await conn.fetchval("SELECT data FROM coupon_drops WHERE coupon_id = $1 "
                                      "AND room_id = $2", coupon_id, room_id)
            if raw is None:
                return None
            data = orjson.loads(raw)
            if int(data["expires_at"]) > at:
                data["expires_at"] = at
                await conn.execute("UPDATE coupon_drops SET data = $1 WHERE coupon_id = $2",
                                   orjson.dumps(data).decode(), coupon_id)
            return int(data["expires_at"])
        result: int | None = await self._writes.queue("call", "", (end,))
        return result

    async def add_lottery(self, room_id: str, lottery: dict[str, Any], seed: str) -> None:
        await self.write("INSERT INTO lotteries (lottery_id, room_id, data, seed) "
                         "VALUES ($1, $2, $3, $4)",
                         lottery["lottery_id"], room_id, orjson.dumps(lottery).decode(), seed)

    async def add_lottery_entry(self, room_id: str, lottery_id: str, viewer_id: str,
                                at: int) -> None:
        await self.write("INSERT INTO lottery_entries VALUES ($1, $2, $3, $4) "
                         "ON CONFLICT (lottery_id, viewer_id) DO NOTHING",
                         lottery_id, viewer_id, room_id, at)

    async def set_lottery_result(self, lottery_id: str, result: dict[str, Any]) -> None:
        await self.write("UPDATE lotteries SET result = $1 WHERE lottery_id = $2",
                         orjson.dumps(result).decode(), lottery_id)

    async def add_poll(self, room_id: str, poll: dict[str, Any]) -> None:
        await self.write("INSERT INTO polls (poll_id, room_id, data) VALUES ($1, $2, $3)",
                         poll["poll_id"], room_id, orjson.dumps(poll).decode())

    async def add_poll_vote(self, poll_id: str, viewer_id: str, option: int, at: int) -> None:
        await self.write("INSERT INTO poll_votes VALUES ($1, $2, $3, $4) "
                         "ON CONFLICT (poll_id, viewer_id) DO NOTHING",
                         poll_id, viewer_id, option, at)

    async def close_poll(self, poll_id: str, closed_at: int) -> None:
        await self.write("UPDATE polls SET closed_at = $1 WHERE poll_id = $2 AND "
                         "closed_at IS NULL", closed_at, poll_id)

    async def set_pinned_message(self, room_id: str, pinned: dict[str, Any] | None) -> None:
        if pinned is None:
            await self.write("DELETE FROM pinned_messages WHERE room_id = $1", room_id)
        else:
            await self.write("INSERT INTO pinned_messages VALUES ($1, $2) ON CONFLICT "
                             "(room_id) DO UPDATE SET data = excluded.data",
                             room_id, orjson.dumps(pinned).decode())

    async def add_group_deal(self, room_id: str, deal: dict[str, Any]) -> None:
        await self.write("INSERT INTO group_deals (deal_id, room_id, data) VALUES ($1, $2, $3)",
                         deal["deal_id"], room_id, orjson.dumps(deal).decode())

    async def close_group_deal(self, deal_id: str, closed_at: int) -> None:
        await self.write("UPDATE group_deals SET closed_at = $1 WHERE deal_id = $2 AND "
                         "closed_at IS NULL", closed_at, deal_id)

    async def add_question(self, room_id: str, question: dict[str, Any]) -> None:
        await self.write("INSERT INTO questions (question_id, room_id, data) "
                         "VALUES ($1, $2, $3) ON CONFLICT (question_id) DO NOTHING",
                         question["question_id"], room_id, orjson.dumps(question).decode())

    async def add_question_vote(self, question_id: str, viewer_id: str) -> None:
        await self.write("INSERT INTO question_votes VALUES ($1, $2) "
                         "ON CONFLICT (question_id, viewer_id) DO NOTHING",
                         question_id, viewer_id)

    async def answer_question(self, question_id: str, answered_at: int) -> None:
        await self.write("UPDATE questions SET answered_at = $1 WHERE question_id = $2 AND "
                         "answered_at IS NULL", answered_at, question_id)

    async def add_auction(self, room_id: str, terms: dict[str, Any], salt: str) -> None:
        await self.write("INSERT INTO auctions (auction_id, room_id, data, salt) "
                         "VALUES ($1, $2, $3, $4)",
                         terms["auction_id"], room_id, orjson.dumps(terms).decode(), salt)

    async def add_auction_bid(self, auction_id: str, seq: int, viewer_id: str, name: str,
                              entry: dict[str, Any]) -> None:
        await self.write("INSERT INTO auction_bids VALUES ($1, $2, $3, $4, $5) "
                         "ON CONFLICT (auction_id, seq) DO NOTHING",
                         auction_id, seq, viewer_id, name, orjson.dumps(entry).decode())

    async def set_auction_max(self, auction_id: str, viewer_id: str, name: str,
                              max_amount: int, at: int) -> None:
        await self.write("INSERT INTO auction_maxima VALUES ($1, $2, $3, $4, $5) "
                         "ON CONFLICT (auction_id, viewer_id) DO UPDATE SET "
                         "max_amount = excluded.max_amount, set_at = excluded.set_at "
                         "WHERE excluded.max_amount > auction_maxima.max_amount",
                         auction_id, viewer_id, name, max_amount, at)

    async def set_auction_result(self, auction_id: str, result: dict[str, Any]) -> None:
        await self.write("UPDATE auctions SET result = $1 WHERE auction_id = $2",
                         orjson.dumps(result).decode(), auction_id)

    async def set_room_policy(self, room_id: str, policy: dict[str, Any]) -> None:
        await self.write("INSERT INTO room_policies VALUES ($1, $2) ON CONFLICT (room_id) "
                         "DO UPDATE SET data = excluded.data",
                         room_id, orjson.dumps(policy).decode())

    # ------------------------------------------------------------------ reads

    async def _all(self, sql: str, *params: Any) -> list[Record]:
        """Run a read on a pooled connection. A connection PostgreSQL dropped (a
        restart) is replaced and the read tried once more; still unavailable, it
        raises StoreError."""
        for attempt in (1, 2):
            pool = self._pool
            if pool is None:
                raise StoreClosed("the order store is closed")
            try:
                async with asyncio.timeout(self.answer_s), pool.acquire() as conn:
                    return await conn.fetch(sql, *params)
            except Exception as exc:
                if not unavailable(exc):
                    raise
                if attempt == 2:
                    raise StoreError(f"order store unavailable: {exc}") from exc
        raise AssertionError("unreachable")

    async def rooms(self) -> list[dict[str, Any]]:
        rows = await self._all("SELECT * FROM rooms ORDER BY created_at")
        return [dict(r.items()) for r in rows]

    async def room_state(self, room_id: str) -> dict[str, Any]:
        rows = await self._all("SELECT state, starts_at, ended_at FROM room_states "
                               "WHERE room_id = $1", room_id)
        if not rows:
            return {"state": "live", "starts_at": None, "ended_at": None}
        return dict(rows[0].items())

    async def room_states(self) -> dict[str, dict[str, Any]]:
        rows = await self._all("SELECT room_id, state, starts_at, ended_at FROM room_states")
        return {r["room_id"]: {"state": r["state"], "starts_at": r["starts_at"],
                               "ended_at": r["ended_at"]} for r in rows}

    async def public_rooms(self, limit: int, before: tuple[int, str] | None,
                           stale_before: int) -> list[dict[str, Any]]:
        where = ("COALESCE(s.state, 'live') IN ('live', 'scheduled') AND "
                 "(s.state IS DISTINCT FROM 'scheduled' OR s.starts_at >= $1)")
        params: list[Any] = [stale_before]
        if before is not None:
            where += " AND (r.created_at, r.room_id) < ($2, $3)"
            params += [before[0], before[1]]
        rows = await self._all(
            "SELECT r.room_id, r.title, r.stream_url, r.created_at, "
            "COALESCE(s.state, 'live') AS state, s.starts_at FROM rooms r "
            f"LEFT JOIN room_states s USING (room_id) WHERE {where} "
            f"ORDER BY r.created_at DESC, r.room_id DESC LIMIT ${len(params) + 1}",
            *params, limit)
        return [dict(r.items()) for r in rows]

    async def room(self, room_id: str) -> dict[str, Any] | None:
        rows = await self._all("SELECT * FROM rooms WHERE room_id = $1", room_id)
        return dict(rows[0].items()) if rows else None

    async def room_policy(self, room_id: str) -> dict[str, Any] | None:
        rows = await self._all("SELECT data FROM room_policies WHERE room_id = $1", room_id)
        return dict(orjson.loads(rows[0]["data"])) if rows else None

    async def products(self, room_id: str) -> list[tuple[dict[str, Any], int]]:
        rows = await self._all("SELECT data, stock FROM products WHERE room_id = $1 "
                               "ORDER BY position", room_id)
        return [(orjson.loads(r["data"]), r["stock"]) for r in rows]

    async def sales(self, room_id: str) -> list[tuple[dict[str, Any], int | None]]:
        rows = await self._all("SELECT data, stopped_at FROM sales WHERE room_id = $1 "
                               "ORDER BY created_at, pos", room_id)
        return [(orjson.loads(r["data"]), r["stopped_at"]) for r in rows]

    async def coupon_drops(self, room_id: str) -> list[dict[str, Any]]:
        rows = await self._all("SELECT data FROM coupon_drops WHERE room_id = $1 ORDER BY pos",
                               room_id)
        return [orjson.loads(r["data"]) for r in rows]

    async def lotteries(self, room_id: str) -> list[tuple[dict[str, Any], str, Any]]:
        rows = await self._all("SELECT data, seed, result FROM lotteries WHERE room_id = $1 "
                               "ORDER BY pos", room_id)
        return [(orjson.loads(r["data"]), r["seed"],
                 orjson.loads(r["result"]) if r["result"] else None) for r in rows]

    async def polls(self, room_id: str) -> list[tuple[dict[str, Any], int | None,
                                                      dict[str, int]]]:
        rows = await self._all("SELECT poll_id, data, closed_at FROM polls WHERE room_id = $1 "
                               "ORDER BY pos", room_id)
        votes = await self._all("SELECT v.poll_id, v.viewer_id, v.option FROM poll_votes v "
                                "JOIN polls p ON p.poll_id = v.poll_id WHERE p.room_id = $1",
                                room_id)
        by_poll: dict[str, dict[str, int]] = {}
        for v in votes:
            by_poll.setdefault(str(v["poll_id"]), {})[str(v["viewer_id"])] = int(v["option"])
        return [(orjson.loads(r["data"]), r["closed_at"], by_poll.get(str(r["poll_id"]), {}))
                for r in rows]

    async def group_deals(self, room_id: str) -> list[tuple[dict[str, Any], int | None]]:
        rows = await self._all("SELECT data, closed_at FROM group_deals WHERE room_id = $1 "
                               "ORDER BY pos", room_id)
        return [(orjson.loads(r["data"]), r["closed_at"]) for r in rows]

    async def questions(self, room_id: str) -> list[tuple[dict[str, Any], int | None,
                                                          list[str]]]:
        rows = await self._all("SELECT question_id, data, answered_at FROM questions "
                               "WHERE room_id = $1 ORDER BY pos", room_id)
        votes = await self._all("SELECT v.question_id, v.viewer_id FROM question_votes v JOIN "
                                "questions q ON q.question_id = v.question_id "
                                "WHERE q.room_id = $1", room_id)
        by_question: dict[str, list[str]] = {}
        for v in votes:
            by_question.setdefault(str(v["question_id"]), []).append(str(v["viewer_id"]))
        return [(orjson.loads(r["data"]), r["answered_at"],
                 by_question.get(str(r["question_id"]), [])) for r in rows]

    async def pinned_message(self, room_id: str) -> dict[str, Any] | None:
        rows = await self._all("SELECT data FROM pinned_messages WHERE room_id = $1", room_id)
        return orjson.loads(rows[0]["data"]) if rows else None

    async def auctions(self, room_id: str) -> list[tuple[dict[str, Any], str, Any]]:
        rows = await self._all("SELECT data, salt, result FROM auctions WHERE room_id = $1 "
                               "ORDER BY pos", room_id)
        return [(orjson.loads(r["data"]), str(r["salt"]),
                 orjson.loads(r["result"]) if r["result"] else None) for r in rows]

    async def auction_bids(self, auction_id: str) -> list[tuple[str, str, dict[str, Any]]]:
        rows = await self._all("SELECT viewer_id, name, entry FROM auction_bids "
                               "WHERE auction_id = $1 ORDER BY seq", auction_id)
        return [(str(r["viewer_id"]), str(r["name"]), orjson.loads(r["entry"])) for r in rows]

    async def auction_maxima(self, auction_id: str) -> list[tuple[str, str, int, int]]:
        rows = await self._all("SELECT viewer_id, name, max_amount, set_at FROM auction_maxima "
                               "WHERE auction_id = $1 ORDER BY set_at, viewer_id", auction_id)
        return [(str(r["viewer_id"]), str(r["name"]), int(r["max_amount"]), int(r["set_at"]))
                for r in rows]

    async def lottery_entrants(self, room_id: str,
                               lottery_id: str | None = None) -> dict[str, list[str]]:
        if lottery_id is None:
            rows = await self._all("SELECT lottery_id, viewer_id FROM lottery_entries "
                                   "WHERE room_id = $1 ORDER BY lottery_id, viewer_id",
                                   room_id)
        else:
            rows = await self._all("SELECT lottery_id, viewer_id FROM lottery_entries "
                                   "WHERE lottery_id = $1 ORDER BY viewer_id", lottery_id)
        out: dict[str, list[str]] = {}
        for r in rows:
            out.setdefault(r["lottery_id"], []).append(r["viewer_id"])
        return out

    async def orders(self, room_id: str, limit: int = 1000, offset: int = 0) -> list[Order]:
        rows = await self._all(f"{ORDER_SELECT} WHERE room_id = $1 ORDER BY created_at, "
                               "order_id LIMIT $2 OFFSET $3", room_id, limit, offset)
        return [_order(r) for r in rows]

    async def order_for_hold(self, hold_id: str) -> Order | None:
        rows = await self._all(f"{ORDER_SELECT} WHERE hold_id = $1", hold_id)
        return _order(rows[0]) if rows else None

    async def aborted(self, room_id: str) -> list[str]:
        rows = await self._all("SELECT hold_id FROM aborted_holds WHERE room_id = $1 "
                               "ORDER BY hold_id", room_id)
        return [r["hold_id"] for r in rows]

    async def aborted_count(self, room_id: str) -> int:
        rows = await self._all("SELECT COUNT(*) AS n FROM aborted_holds WHERE room_id = $1",
                               room_id)
        return int(rows[0]["n"])

    async def room_epoch(self, room_id: str) -> str:
        rows = await self._all("SELECT epoch FROM room_epochs WHERE room_id = $1", room_id)
        return str(rows[0]["epoch"]) if rows else ""

    async def outcome_conflicts(self, room_id: str) -> int:
        rows = await self._all(
            "SELECT COUNT(*) AS n FROM orders JOIN aborted_holds USING (hold_id) "
            "WHERE orders.room_id = $1", room_id)
        return int(rows[0]["n"])

    async def oversold_sales(self, room_id: str) -> dict[str, tuple[int, int]]:
        rows = await self._all(
            f"SELECT s.sale_id, s.data, COALESCE(SUM({NET_O}), 0)::bigint AS n FROM sales s "
            f"LEFT JOIN orders o ON o.sale_id = s.sale_id AND {LIVE_O} "
            "WHERE s.room_id = $1 GROUP BY s.sale_id", room_id)
        out: dict[str, tuple[int, int]] = {}
        for r in rows:
            units = int(orjson.loads(r["data"])["units"])
            if int(r["n"]) > units:
                out[r["sale_id"]] = (int(r["n"]), units)
        return out

    async def listings(self, room_id: str) -> dict[str, tuple[bool, int, int]]:
        rows = await self._all("SELECT product_id, open, limit_per_buyer, max_limit "
                               "FROM listings WHERE room_id = $1", room_id)
        return {r["product_id"]: (bool(r["open"]), int(r["limit_per_buyer"]),
                                  int(r["max_limit"])) for r in rows}

    async def claim_words(self, room_id: str) -> dict[str, tuple[str, bool]]:
        rows = await self._all("SELECT product_id, keyword, quantities FROM claim_words "
                               "WHERE room_id = $1 AND keyword IS NOT NULL", room_id)
        return {r["product_id"]: (str(r["keyword"]), bool(r["quantities"])) for r in rows}

    async def oversold_products(self, room_id: str) -> dict[str, tuple[int, int]]:
        rows = await self._all(
            f"SELECT p.product_id, p.stock, COALESCE(SUM({NET_O}), 0)::bigint AS n "
            "FROM products p LEFT JOIN orders o ON o.room_id = p.room_id AND "
            f"o.product_id = p.product_id AND {LIVE_O} WHERE p.room_id = $1 "
            "GROUP BY p.room_id, p.product_id", room_id)
        return {r["product_id"]: (int(r["n"]), int(r["stock"])) for r in rows
                if int(r["n"]) > int(r["stock"])}

    async def sold_by_product(self, room_id: str) -> dict[str, int]:
        rows = await self._all(
            f"SELECT product_id, SUM({NET})::bigint AS n FROM orders WHERE room_id = $1 "
            f"AND {LIVE} GROUP BY product_id", room_id)
        return {r["product_id"]: int(r["n"]) for r in rows}

    async def sold_by_sale_and_buyer(self, room_id: str) -> dict[str, dict[str, int]]:
        rows = await self._all(
            f"SELECT sale_id, buyer_id, SUM({NET})::bigint AS n FROM orders "
            f"WHERE room_id = $1 AND {LIVE} GROUP BY sale_id, buyer_id", room_id)
        out: dict[str, dict[str, int]] = {}
        for r in rows:
            out.setdefault(r["sale_id"], {})[r["buyer_id"]] = int(r["n"])
        return out

    async def coupon_uses(self, room_id: str) -> dict[str, dict[str, str]]:
        rows = await self._all(
            "SELECT coupon_id, buyer_id, order_id FROM orders WHERE room_id = $1 "
            f"AND coupon_id != '' AND {LIVE}", room_id)
        out: dict[str, dict[str, str]] = {}
        for r in rows:
            out.setdefault(r["coupon_id"], {})[r["buyer_id"]] = r["order_id"]
        return out

    async def order_totals(self, room_id: str) -> dict[str, int]:
        rows = await self._all(
            f"SELECT COUNT(*) AS orders, COALESCE(SUM({NET}), 0)::bigint AS units, "
            "COALESCE(SUM(total), 0)::bigint AS revenue, COUNT(DISTINCT buyer_id) AS buyers "
            f"FROM orders WHERE room_id = $1 AND {LIVE}", room_id)
        cancelled = await self._all("SELECT COUNT(*) AS n FROM order_cancellations "
                                    "WHERE room_id = $1", room_id)
        refunded = await self._all("SELECT COUNT(*) AS n, COALESCE(SUM(amount), 0)::bigint "
                                   "AS amount FROM order_refunds WHERE room_id = $1", room_id)
        totals = {k: int(rows[0][k]) for k in ("orders", "units", "revenue", "buyers")}
        totals["revenue"] -= int(refunded[0]["amount"])
        return totals | {"cancelled": int(cancelled[0]["n"]),
                         "refunds": int(refunded[0]["n"])}

    async def cancel_order(self, room_id: str, order_id: str, reason: str, at: int,
                           epoch: str) -> tuple[str, Order, dict[str, Any]] | None:
        async def cancel(conn: Connection) -> tuple[str, Order, dict[str, Any]] | None:
            row = await conn.fetchrow(f"{ORDER_SELECT} WHERE order_id = $1 AND room_id = $2",
                                      order_id, room_id)
            if row is None:
                return None
            order = _order(row)
            before = await conn.fetchrow("SELECT reason, cancelled_at, epoch FROM "
                                         "order_cancellations WHERE order_id = $1", order_id)
            if before is not None:
                return "ok", order, {"reason": before[0], "cancelled_at": before[1],
                                     "epoch": before[2]}
            if await conn.fetchval("SELECT 1 FROM order_refunds WHERE order_id = $1 LIMIT 1",
                                   order_id) is not None:
                return "refunded", order, {}
            if await _epoch_of(conn, room_id) != epoch:
                return "fenced", order, {}
            status = await conn.execute(
                "INSERT INTO order_cancellations VALUES ($1, $2, $3, $4, $5) "
                "ON CONFLICT (order_id) DO NOTHING", order_id, room_id, reason, at, epoch)
            if affected(status) == 1:
                # Its event, in the same transaction as the cancellation.
                data = dict(row.items()) | {"reason": reason, "cancelled_at": at}
                await conn.execute(INSERT_OUTBOX, *outbox_row(room_id, "order.cancelled",
                                                              order_id, data, at))
            c = await conn.fetchrow("SELECT reason, cancelled_at, epoch FROM "
                                    "order_cancellations WHERE order_id = $1", order_id)
            assert c is not None
            return "ok", order, {"reason": c[0], "cancelled_at": c[1], "epoch": c[2]}
        result: tuple[str, Order, dict[str, Any]] | None = await self._writes.queue(
            "call", "", (cancel,))
        return result

    async def refund_order(self, room_id: str, order_id: str, request_id: str,
                           quantity: int | None, restock: bool, reason: str, at: int,
                           epoch: str) -> tuple[str, Order, dict[str, Any]] | None:
        async def refund(conn: Connection) -> tuple[str, Order, dict[str, Any]] | None:
            row = await conn.fetchrow(f"{ORDER_SELECT} WHERE order_id = $1 AND room_id = $2",
                                      order_id, room_id)
            if row is None:
                return None
            order = _order(row)
            refund_id = f"rf_{order_id.removeprefix('o_')}_{request_id}"
            before = await conn.fetchrow("SELECT * FROM order_refunds WHERE refund_id = $1",
                                         refund_id)
            if before is not None:
                return "again", order, dict(before.items())
            if await _epoch_of(conn, room_id) != epoch:
                return "fenced", order, {}
            if await conn.fetchval("SELECT 1 FROM order_cancellations WHERE order_id = $1",
                                   order_id) is not None:
                return "cancelled", order, {}
            done = await conn.fetchrow(
                "SELECT COALESCE(SUM(quantity), 0)::bigint, COALESCE(SUM(amount), 0)::bigint "
                "FROM order_refunds WHERE order_id = $1", order_id)
            outcome, record = refund_record(
                order, (int(done[0]), int(done[1])) if done else (0, 0), quantity,
                {"refund_id": refund_id, "order_id": order_id, "room_id": room_id,
                 "restock": restock, "reason": reason, "refunded_at": at, "epoch": epoch})
            if outcome != "new":
                return outcome, order, record
            await conn.execute("INSERT INTO order_refunds VALUES ($1, $2, $3, $4, $5, $6, $7, "
                               "$8, $9)", *record.values())
            await conn.execute(INSERT_OUTBOX, *outbox_row(
                room_id, "order.refunded", refund_id,
                order.public() | {"refund": {k: v for k, v in record.items()
                                             if k != "epoch"}}, at))
            return "new", order, record
        result: tuple[str, Order, dict[str, Any]] | None = await self._writes.queue(
            "call", "", (refund,))
        return result

    async def first_order_of(self, room_id: str, buyer_id: str) -> Order | None:
        rows = await self._all(f"{ORDER_SELECT} WHERE room_id = $1 AND buyer_id = $2 "
                               "ORDER BY created_at, order_id LIMIT 1", room_id, buyer_id)
        return _order(rows[0]) if rows else None

    async def refunds(self, room_id: str) -> dict[str, list[dict[str, Any]]]:
        rows = await self._all("SELECT refund_id, order_id, quantity, amount, restock, reason, "
                               "refunded_at FROM order_refunds WHERE room_id = $1 "
                               "ORDER BY refunded_at, refund_id", room_id)
        out: dict[str, list[dict[str, Any]]] = {}
        for r in rows:
            out.setdefault(r["order_id"], []).append(dict(r.items())
                                                     | {"restock": bool(r["restock"])})
        return out

    async def cancellations(self, room_id: str) -> dict[str, dict[str, Any]]:
        rows = await self._all("SELECT order_id, reason, cancelled_at FROM "
                               "order_cancellations WHERE room_id = $1", room_id)
        return {r["order_id"]: {"reason": r["reason"], "cancelled_at": r["cancelled_at"]}
                for r in rows}

    # ------------------------------------------------------------------ fans, referrals

    async def set_room_channel(self, room_id: str, channel: str) -> None:
        await self.write("INSERT INTO room_channels VALUES ($1, $2) ON CONFLICT (room_id) "
                         "DO UPDATE SET channel = excluded.channel", room_id, channel)

    async def room_channel(self, room_id: str) -> str:
        rows = await self._all("SELECT channel FROM room_channels WHERE room_id = $1", room_id)
        return str(rows[0]["channel"]) if rows else "main"

    async def add_fan_award(self, channel: str, award_id: str, viewer_id: str, nickname: str,
                            points: int, kind: str, room_id: str, at: int) -> bool:
        async def award(conn: Connection) -> bool:
            status = await conn.execute(
                "INSERT INTO fan_awards VALUES ($1, $2, $3, $4, $5, $6, $7) "
                "ON CONFLICT (channel, award_id) DO NOTHING",
                channel, award_id, viewer_id, points, kind, room_id, at)
            if affected(status) != 1:
                return False
            # An award without a nickname (an order's) keeps the one known.
            await conn.execute(
                "INSERT INTO fan_points VALUES ($1, $2, $3, $4) ON CONFLICT "
                "(channel, viewer_id) DO UPDATE SET points = fan_points.points + "
                "excluded.points, nickname = CASE WHEN $5 = '' THEN fan_points.nickname "
                "ELSE excluded.nickname END",
                channel, viewer_id, nickname or viewer_id, points, nickname)
            return True
        result: bool = await self._writes.queue("call", "", (award,))
        return result

    async def reverse_fan_award(self, channel: str, award_id: str, reversal_id: str,
                                room_id: str, at: int) -> tuple[str, int] | None:
        async def reverse(conn: Connection) -> tuple[str, int] | None:
            row = await conn.fetchrow("SELECT viewer_id, points FROM fan_awards WHERE "
                                      "channel = $1 AND award_id = $2", channel, award_id)
            if row is None:
                return None
            viewer_id, points = str(row[0]), int(row[1])
            status = await conn.execute(
                "INSERT INTO fan_awards VALUES ($1, $2, $3, $4, 'reversal', $5, $6) "
                "ON CONFLICT (channel, award_id) DO NOTHING",
                channel, reversal_id, viewer_id, -points, room_id, at)
            if affected(status) != 1:
                return None
            await conn.execute("UPDATE fan_points SET points = points - $1 WHERE "
                               "channel = $2 AND viewer_id = $3", points, channel, viewer_id)
            return viewer_id, points
        result: tuple[str, int] | None = await self._writes.queue("call", "", (reverse,))
        return result

    async def fan_totals(self, channel: str) -> list[tuple[str, int]]:
        rows = await self._all("SELECT viewer_id, points FROM fan_points WHERE channel = $1",
                               channel)
        return [(r["viewer_id"], int(r["points"])) for r in rows]

    async def top_fans(self, channel: str, limit: int) -> list[dict[str, Any]]:
        rows = await self._all("SELECT viewer_id, nickname, points FROM fan_points "
                               "WHERE channel = $1 ORDER BY points DESC, viewer_id LIMIT $2",
                               channel, limit)
        return [dict(r.items()) for r in rows]

    async def set_referral_program(self, room_id: str, program: dict[str, Any]) -> None:
        await self.write("INSERT INTO referral_programs VALUES ($1, $2) ON CONFLICT (room_id) "
                         "DO UPDATE SET data = excluded.data",
                         room_id, orjson.dumps(program).decode())

    async def referral_program(self, room_id: str) -> dict[str, Any] | None:
        rows = await self._all("SELECT data FROM referral_programs WHERE room_id = $1",
                               room_id)
        return dict(orjson.loads(rows[0]["data"])) if rows else None

    async def add_invite_sent(self, room_id: str, inviter: str, nickname: str,
                              at: int, count: int = 1) -> None:
        await self.write("INSERT INTO referral_invites VALUES ($1, $2, $3, $4, $5) "
                         "ON CONFLICT (room_id, inviter) DO UPDATE SET "
                         "sent = referral_invites.sent + excluded.sent, "
                         "nickname = excluded.nickname",
                         room_id, inviter, nickname, count, at)

    async def inviter_nickname(self, room_id: str, invitee: str) -> str | None:
        rows = await self._all("SELECT inviter_nickname FROM referrals WHERE room_id = $1 "
                               "AND invitee = $2", room_id, invitee)
        return str(rows[0]["inviter_nickname"]) if rows else None

    async def add_referral(self, room_id: str, invitee: str, inviter: str,
                           inviter_nickname: str, nickname: str, at: int) -> str:
        async def refer(conn: Connection) -> str:
            await conn.execute("INSERT INTO referrals VALUES ($1, $2, $3, $4, $5, $6) "
                               "ON CONFLICT (room_id, invitee) DO NOTHING",
                               room_id, invitee, inviter, inviter_nickname, nickname, at)
            found = await conn.fetchval("SELECT inviter FROM referrals WHERE room_id = $1 AND "
                                        "invitee = $2", room_id, invitee)
            return str(found) if found is not None else inviter
        result: str = await self._writes.queue("call", "", (refer,))
        return result

    async def add_referral_reward(self, room_id: str, invitee: str, inviter: str,
                                  order_id: str, state: str, reward: dict[str, Any], at: int,
                                  coupon: dict[str, Any] | None) -> bool:
        async def record(conn: Connection) -> bool:
            status = await conn.execute(
                "INSERT INTO referral_rewards VALUES ($1, $2, $3, $4, $5, $6, $7) "
                "ON CONFLICT (room_id, invitee) DO NOTHING",
                room_id, invitee, inviter, order_id, state, orjson.dumps(reward).decode(), at)
            if affected(status) != 1:
                return False
            if coupon is not None:
                await conn.execute(ADD_COUPON_DROP, coupon["coupon_id"], room_id,
                                   orjson.dumps(coupon).decode())
            return True
        result: bool = await self._writes.queue("call", "", (record,))
        return result

    async def reverse_referral_reward(self, room_id: str, invitee: str,
                                      order_id: str) -> dict[str, Any] | None:
        async def reverse(conn: Connection) -> dict[str, Any] | None:
            row = await conn.fetchrow("SELECT inviter, reward FROM referral_rewards WHERE "
                                      "room_id = $1 AND invitee = $2 AND order_id = $3 AND "
                                      "state = 'paid'", room_id, invitee, order_id)
            if row is None:
                return None
            await conn.execute("UPDATE referral_rewards SET state = 'reversed' WHERE "
                               "room_id = $1 AND invitee = $2", room_id, invitee)
            reward = dict(orjson.loads(row[1]))
            coupon = reward.get("coupon")
            if coupon:
                drop = await conn.fetchval("SELECT data FROM coupon_drops WHERE "
                                           "coupon_id = $1", coupon["coupon_id"])
                if drop is not None:
                    data = orjson.loads(drop)
                    data["expires_at"] = min(int(data["expires_at"]), now_ms())
                    await conn.execute("UPDATE coupon_drops SET data = $1 WHERE "
                                       "coupon_id = $2", orjson.dumps(data).decode(),
                                       coupon["coupon_id"])
            return {"inviter": str(row[0]), "reward": reward}
        result: dict[str, Any] | None = await self._writes.queue("call", "", (reverse,))
        return result

    async def referral_tree(self, room_id: str) -> dict[str, list[dict[str, Any]]]:
        invites = await self._all("SELECT inviter, nickname, sent, first_at FROM "
                                  "referral_invites WHERE room_id = $1 ORDER BY first_at",
                                  room_id)
        referrals = await self._all("SELECT invitee, inviter, inviter_nickname, nickname, "
                                    "joined_at FROM referrals WHERE room_id = $1 "
                                    "ORDER BY joined_at", room_id)
        rewards = await self._all("SELECT invitee, inviter, order_id, state, reward, at FROM "
                                  "referral_rewards WHERE room_id = $1 ORDER BY at", room_id)
        return {"invites": [dict(r.items()) for r in invites],
                "referrals": [dict(r.items()) for r in referrals],
                "rewards": [dict(r.items()) | {"reward": orjson.loads(r["reward"])}
                            for r in rewards]}

    # ------------------------------------------------------------------ webhooks

    async def add_outbox(self, room_id: str, kind: str, subject: str, data: dict[str, Any],
                         at: int) -> None:
        await self.write(INSERT_OUTBOX, *outbox_row(room_id, kind, subject, data, at))

    async def add_endpoint(self, endpoint: dict[str, Any]) -> None:
        async def add(conn: Connection) -> None:
            cursor = await conn.fetchval("SELECT COALESCE(MAX(seq), 0) FROM outbox")
            await conn.execute(
                "INSERT INTO webhook_endpoints (endpoint_id, room_id, url, secret, events, "
                "description, created_at, cursor) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                endpoint["endpoint_id"], endpoint["room_id"], endpoint["url"],
                endpoint["secret"], orjson.dumps(endpoint["events"]).decode(),
                endpoint["description"], endpoint["created_at"], int(cursor or 0))
        await self._writes.queue("call", "", (add,))

    async def endpoints(self, room_id: str | None, everywhere: bool = False
                        ) -> list[dict[str, Any]]:
        if everywhere:
            rows = await self._all("SELECT * FROM webhook_endpoints WHERE disabled_at IS NULL "
                                   "ORDER BY created_at")
        elif room_id is None:
            rows = await self._all("SELECT * FROM webhook_endpoints WHERE room_id IS NULL "
                                   "AND disabled_at IS NULL ORDER BY created_at")
        else:
            rows = await self._all("SELECT * FROM webhook_endpoints WHERE room_id = $1 "
                                   "AND disabled_at IS NULL ORDER BY created_at", room_id)
        return [_endpoint(r) for r in rows]

    async def disable_endpoint(self, endpoint_id: str, at: int) -> bool:
        async def disable(conn: Connection) -> bool:
            status = await conn.execute("UPDATE webhook_endpoints SET disabled_at = $1 WHERE "
                                        "endpoint_id = $2 AND disabled_at IS NULL",
                                        at, endpoint_id)
            return affected(status) == 1
        result: bool = await self._writes.queue("call", "", (disable,))
        return result

    async def has_endpoints(self) -> bool:
        rows = await self._all("SELECT 1 FROM webhook_endpoints WHERE disabled_at IS NULL "
                               "LIMIT 1")
        return bool(rows)

    async def fan_out(self, now: int, batch: int) -> int:
        async def fan(conn: Connection) -> int:
            endpoints = await conn.fetch("SELECT endpoint_id, room_id, events, cursor FROM "
                                         "webhook_endpoints WHERE disabled_at IS NULL")
            made = 0
            for endpoint_id, room_id, events, cursor in (tuple(e.values()) for e in endpoints):
                rows = await conn.fetch("SELECT seq, room_id, type FROM outbox WHERE seq > $1 "
                                        "ORDER BY seq LIMIT $2", cursor, batch)
                if not rows:
                    continue
                wanted = set(orjson.loads(events))
                picked = [(endpoint_id, r[0], now) for r in rows
                          if (room_id is None or r[1] == room_id)
                          and (not wanted or r[2] in wanted)]
                if picked:
                    await conn.executemany(
                        "INSERT INTO webhook_deliveries (endpoint_id, seq, state, attempts, "
                        "next_at, since) VALUES ($1, $2, 'pending', 0, $3, $4) "
                        "ON CONFLICT (endpoint_id, seq) DO NOTHING",
                        [(*p, now) for p in picked])
                await conn.execute("UPDATE webhook_endpoints SET cursor = $1 WHERE "
                                   "endpoint_id = $2", rows[-1][0], endpoint_id)
                made += len(picked)
            return made
        result: int = await self._writes.queue("call", "", (fan,))
        return result

    async def due_heads(self, now: int, limit: int, owner: str) -> list[dict[str, Any]]:
        rows = await self._all(
            "SELECT d.endpoint_id, d.seq, d.attempts, d.next_at, d.since, e.url, e.secret, "
            "e.room_id, o.event_id, o.type, o.data, o.created_at "
            "FROM (SELECT endpoint_id, MIN(seq) AS seq FROM webhook_deliveries "
            "WHERE state = 'pending' GROUP BY endpoint_id) h "
            "JOIN webhook_deliveries d ON d.endpoint_id = h.endpoint_id AND d.seq = h.seq "
            "JOIN webhook_endpoints e ON e.endpoint_id = d.endpoint_id "
            "JOIN outbox o ON o.seq = d.seq "
            "WHERE e.disabled_at IS NULL AND d.next_at <= $1 AND (e.lease_owner = $2 OR "
            "e.lease_until <= $1) ORDER BY d.next_at LIMIT $3", now, owner, limit)
        return [dict(r.items()) for r in rows]

    async def oldest_pending(self) -> int | None:
        at = await self._value(
            "SELECT MIN(o.created_at) FROM webhook_deliveries d JOIN outbox o ON "
            "o.seq = d.seq JOIN webhook_endpoints e ON e.endpoint_id = d.endpoint_id "
            "WHERE d.state = 'pending' AND e.disabled_at IS NULL")
        return int(at) if at is not None else None

    async def next_due(self) -> int | None:
        at = await self._value(
            "SELECT MIN(d.next_at) FROM (SELECT endpoint_id, MIN(seq) AS seq FROM "
            "webhook_deliveries WHERE state = 'pending' GROUP BY endpoint_id) h "
            "JOIN webhook_deliveries d ON d.endpoint_id = h.endpoint_id AND d.seq = h.seq "
            "JOIN webhook_endpoints e ON e.endpoint_id = d.endpoint_id "
            "WHERE e.disabled_at IS NULL")
        return int(at) if at is not None else None

    async def _value(self, sql: str, *params: Any) -> Any:
        rows = await self._all(sql, *params)
        return rows[0][0] if rows else None

    async def lease_endpoint(self, endpoint_id: str, owner: str, now: int,
                             until: int) -> bool:
        async def lease(conn: Connection) -> bool:
            status = await conn.execute(
                "UPDATE webhook_endpoints SET lease_owner = $1, lease_until = $2 WHERE "
                "endpoint_id = $3 AND (lease_owner = $1 OR lease_until <= $4)",
                owner, until, endpoint_id, now)
            return affected(status) == 1
        result: bool = await self._writes.queue("call", "", (lease,))
        return result

    async def record_attempt(self, endpoint_id: str, seq: int, state: str,
                             status: int | None, error: str, at: int, next_at: int) -> None:
        await self.write(
            "UPDATE webhook_deliveries SET state = $1, attempts = attempts + 1, next_at = $2, "
            "last_status = $3, last_error = $4, last_at = $5, delivered_at = CASE WHEN "
            "$1 = 'delivered' THEN $5 ELSE delivered_at END WHERE endpoint_id = $6 AND "
            "seq = $7 AND state = 'pending'",
            state, next_at, status, error[:500], at, endpoint_id, seq)

    async def deliveries(self, endpoint_id: str, limit: int) -> list[dict[str, Any]]:
        rows = await self._all(
            "SELECT o.event_id, o.type, o.room_id, o.created_at, d.state, d.attempts, "
            "d.next_at, d.last_status, d.last_error, d.last_at, d.delivered_at "
            "FROM webhook_deliveries d JOIN outbox o ON o.seq = d.seq "
            "WHERE d.endpoint_id = $1 ORDER BY d.seq DESC LIMIT $2", endpoint_id, limit)
        return [dict(r.items()) for r in rows]

    async def replay(self, endpoint_id: str, from_event_id: str, now: int) -> int | None:
        async def replay(conn: Connection) -> int | None:
            start = await conn.fetchval("SELECT seq FROM outbox WHERE event_id = $1",
                                        from_event_id)
            endpoint = await conn.fetchrow("SELECT room_id, events, cursor FROM "
                                           "webhook_endpoints WHERE endpoint_id = $1 AND "
                                           "disabled_at IS NULL", endpoint_id)
            if start is None or endpoint is None:
                return None
            room_id, events, cursor = endpoint[0], endpoint[1], endpoint[2]
            wanted = set(orjson.loads(events))
            found = await conn.fetch("SELECT seq, room_id, type FROM outbox WHERE seq >= $1 "
                                     "AND seq <= $2 ORDER BY seq", start, cursor)
            rows = [(endpoint_id, r[0], now) for r in found
                    if (room_id is None or r[1] == room_id)
                    and (not wanted or r[2] in wanted)]
            if rows:
                await conn.executemany(
                    "INSERT INTO webhook_deliveries (endpoint_id, seq, state, attempts, "
                    "next_at, since) VALUES ($1, $2, 'pending', 0, $3, $4) ON CONFLICT "
                    "(endpoint_id, seq) DO UPDATE SET state = 'pending', attempts = 0, "
                    "next_at = excluded.next_at, since = excluded.since",
                    [(*r, now) for r in rows])
            return len(rows)
        result: int | None = await self._writes.queue("call", "", (replay,))
        return result


async def _epoch_of(conn: Connection, room_id: str) -> str:
    """The room's Redis epoch as the store knows it (inside a write transaction: a
    rebuild of Redis that began since the caller read it has changed it)."""
    epoch = await conn.fetchval("SELECT epoch FROM room_epochs WHERE room_id = $1", room_id)
    return str(epoch) if epoch is not None else ""


def _endpoint(r: Record) -> dict[str, Any]:
    return {"endpoint_id": r["endpoint_id"], "room_id": r["room_id"], "url": r["url"],
            "events": orjson.loads(r["events"]), "description": r["description"],
            "created_at": r["created_at"], "secret": r["secret"]}
