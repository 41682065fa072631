"""The order store: SQLite through aiosqlite, the durable record of the show.

One writer task owns every write. Writes queue up, and the writer takes all
that are waiting (up to `store.batch_max`), runs them in one transaction and
only then resolves each caller's future (group commit: one fsync per batch,
one await per batch). WAL mode lets readers on a second connection run beside
the writer. Orders are unique per hold, so a retried checkout never writes
twice. The catalogue (rooms, products, sales, coupon drops, lotteries) is kept
here too, so Redis can be rebuilt from the store after it loses its data.

The store is also the arbiter of every hold's outcome (docs/faults.md): a hold
ends in the store either as one order row or as one abort row, never both,
decided inside a write transaction. An order is written only if its hold was
not aborted and only under the room's current epoch; the epoch changes when
Redis is rebuilt, which fences out orders promised under the lost Redis state
that the rebuild could not count.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

import aiosqlite
import orjson

log = logging.getLogger("livesell.store")

SCHEMA_VERSION: Final = 3
SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS rooms (
    room_id TEXT PRIMARY KEY,
    title TEXT NOT NULL,
    stream_url TEXT NOT NULL,
    host_key_hash TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS products (
    room_id TEXT NOT NULL,
    product_id TEXT NOT NULL,
    data TEXT NOT NULL,
    stock INTEGER NOT NULL CHECK (stock >= 0),
    position INTEGER NOT NULL,
    PRIMARY KEY (room_id, product_id)
);
CREATE TABLE IF NOT EXISTS sales (
    sale_id TEXT PRIMARY KEY,
    room_id TEXT NOT NULL,
    product_id TEXT NOT NULL,
    data TEXT NOT NULL,
    stopped_at INTEGER,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS coupon_drops (
    coupon_id TEXT PRIMARY KEY,
    room_id TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS lotteries (
    lottery_id TEXT PRIMARY KEY,
    room_id TEXT NOT NULL,
    data TEXT NOT NULL,
    seed TEXT NOT NULL,
    result TEXT
);
CREATE TABLE IF NOT EXISTS orders (
    order_id TEXT PRIMARY KEY,
    hold_id TEXT NOT NULL UNIQUE,
    room_id TEXT NOT NULL,
    product_id TEXT NOT NULL,
    sale_id TEXT NOT NULL,
    buyer_id TEXT NOT NULL,
    quantity INTEGER NOT NULL CHECK (quantity > 0),
    unit_price INTEGER NOT NULL,
    subtotal INTEGER NOT NULL,
    discount INTEGER NOT NULL,
    total INTEGER NOT NULL,
    currency TEXT NOT NULL,
    coupon_id TEXT NOT NULL,
    payment_ref TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    request_id TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS orders_room ON orders (room_id, product_id);
CREATE INDEX IF NOT EXISTS orders_sale ON orders (sale_id, buyer_id);
-- Schema 2: the outcome arbiter. A hold given up by checkout recovery gets an
-- abort row; no order can be written for it afterwards (and no abort row is
-- written for a hold that has an order).
CREATE TABLE IF NOT EXISTS aborted_holds (
    hold_id TEXT PRIMARY KEY,
    room_id TEXT NOT NULL,
    reason TEXT NOT NULL,
    aborted_at INTEGER NOT NULL
);
-- Lottery entries, written before the entrant is told "entered": the draw and a
-- rebuild of Redis read them from here.
CREATE TABLE IF NOT EXISTS lottery_entries (
    lottery_id TEXT NOT NULL,
    viewer_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    entered_at INTEGER NOT NULL,
    PRIMARY KEY (lottery_id, viewer_id)
);
-- The room's Redis epoch: set when Redis is loaded for the room. An order whose
-- checkout began under another epoch is refused (fenced).
CREATE TABLE IF NOT EXISTS room_epochs (
    room_id TEXT PRIMARY KEY,
    epoch TEXT NOT NULL
);
-- Schema 3: a room's lifecycle (server/features/rooms.py). A room without a row is live
-- (rooms made before schema 3 were).
CREATE TABLE IF NOT EXISTS room_states (
    room_id TEXT PRIMARY KEY,
    state TEXT NOT NULL CHECK (state IN ('scheduled', 'live', 'ended', 'archived')),
    starts_at INTEGER,
    ended_at INTEGER,
    changed_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS rooms_newest ON rooms (created_at, room_id);
-- The host's room policy (server/core/policy.py) as JSON; no row: the defaults. A new
-- table rather than a column, so older stores gain it without a migration.
CREATE TABLE IF NOT EXISTS room_policies (
    room_id TEXT PRIMARY KEY,
    data TEXT NOT NULL
);
"""

ORDER_COLUMNS: Final = ("order_id", "hold_id", "room_id", "product_id", "sale_id", "buyer_id",
                        "quantity", "unit_price", "subtotal", "discount", "total", "currency",
                        "coupon_id", "payment_ref", "created_at", "request_id")
INSERT_ORDER: Final = (
    f"INSERT INTO orders ({', '.join(ORDER_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in ORDER_COLUMNS)}) ON CONFLICT(hold_id) DO NOTHING"
)


@dataclass(frozen=True, slots=True)
class Order:
    order_id: str
    hold_id: str
    room_id: str
    product_id: str
    sale_id: str
    buyer_id: str
    quantity: int
    unit_price: int
    subtotal: int
    discount: int
    total: int
    currency: str
    coupon_id: str
    payment_ref: str
    created_at: int
    request_id: str = ""  # the checkout's request id, so a retry finds it after a loss

    def row(self) -> tuple[Any, ...]:
        return tuple(getattr(self, c) for c in ORDER_COLUMNS)

    def public(self) -> dict[str, Any]:
        return asdict(self)


class StoreClosed(RuntimeError):
    pass


class StoreError(RuntimeError):
    """A write failed and nothing of it was committed (e.g. the file stayed locked
    past busy_timeout): the caller may safely try again."""


# What became of an order write: written (or already there for this hold), refused
# because the hold was aborted, or refused because its epoch is not the room's.
PLACED: Final = "placed"
ABORTED: Final = "aborted"
FENCED: Final = "fenced"
# What became of an abort: the abort row is there, or the hold has an order.
ORDERED: Final = "ordered"


@dataclass(slots=True)
class _Write:
    """One queued write. `kind` is "sql" (a plain statement), "order", "abort",
    "epoch" or "mark" (nothing to write: wait_idle); the future resolves after its
    transaction committed."""

    kind: str
    sql: str
    params: Sequence[Any]
    fut: asyncio.Future[Any]
    epoch: str = ""


class OrderStore:
    def __init__(self, path: Path, batch_max: int = 500, busy_timeout_ms: int = 5000) -> None:
        self.path = path
        self.batch_max = batch_max
        self.busy_timeout_ms = busy_timeout_ms
        self._writer_db: aiosqlite.Connection | None = None
        self._reader_db: aiosqlite.Connection | None = None
        self._queue: asyncio.Queue[_Write | None] = asyncio.Queue()
        self._writer_task: asyncio.Task[None] | None = None
        self._closing = False
        # Readiness: when the transaction now running began (None: idle), and
        # whether the last transaction failed.
        self.busy_since: float | None = None
        self.last_failed = False

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._writer_db = await aiosqlite.connect(self.path, isolation_level=None)
        db = self._writer_db
        await db.execute("PRAGMA journal_mode=WAL")
        # FULL: a commit is on disk before the buyer hears "placed".
        await db.execute("PRAGMA synchronous=FULL")
        await db.execute(f"PRAGMA busy_timeout={int(self.busy_timeout_ms)}")
        # One transaction, and the version read inside it: several worker processes
        # open the same file at start, and a migration must run once and whole.
        await db.execute("BEGIN IMMEDIATE")
        try:
            await self._create_or_migrate(db)
            await db.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(Exception):
                await db.execute("ROLLBACK")
            raise
        self._reader_db = await aiosqlite.connect(self.path, isolation_level=None)
        await self._reader_db.execute(f"PRAGMA busy_timeout={int(self.busy_timeout_ms)}")
        self._reader_db.row_factory = aiosqlite.Row
        self._writer_task = asyncio.create_task(self._writer(), name="store-writer")

    async def _create_or_migrate(self, db: aiosqlite.Connection) -> None:
        # Statement by statement (executescript would commit the transaction first).
        statement = ""
        for line in SCHEMA.splitlines(keepends=True):
            statement += line
            if sqlite3.complete_statement(statement):
                await db.execute(statement)
                statement = ""
        async with db.execute("SELECT version FROM schema_version") as cur:
            row = await cur.fetchone()
        if row is None:
            await db.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION,))
        elif row[0] > SCHEMA_VERSION:
            raise RuntimeError(f"order store {self.path} has schema {row[0]}, newer than "
                               f"this server's {SCHEMA_VERSION}")
        elif row[0] < SCHEMA_VERSION:
            # New tables and indexes come from SCHEMA above (IF NOT EXISTS).
            if row[0] < 2:
                # 1 -> 2: orders gain the checkout's request id.
                await db.execute(
                    "ALTER TABLE orders ADD COLUMN request_id TEXT NOT NULL DEFAULT ''")
            # 2 -> 3: room_states; existing rooms have no row, so they stay live.
            await db.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION,))

    async def close(self) -> None:
        """Stop taking writes, flush everything queued, close the files."""
        if self._closing:
            return
        self._closing = True
        if self._writer_task is not None:
            self._queue.put_nowait(None)
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer_task
        for db in (self._reader_db, self._writer_db):
            if db is not None:
                await db.close()
        self._reader_db = self._writer_db = None

    # ------------------------------------------------------------------ writes

    def _queue_write(self, kind: str, sql: str, params: Sequence[Any],
                     epoch: str = "") -> asyncio.Future[Any]:
        if self._closing:
            raise StoreClosed("the order store is shutting down")
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Write(kind, sql, params, fut, epoch))
        return fut

    def write(self, sql: str, params: Sequence[Any]) -> asyncio.Future[Any]:
        """Queue one statement; the future resolves once its transaction committed."""
        return self._queue_write("sql", sql, params)

    async def place_order(self, order: Order, epoch: str) -> str:
        """Write the order unless its hold was aborted or `epoch` is no longer the
        room's: PLACED (also when this hold's order is already there), ABORTED or
        FENCED. Raises StoreError when nothing could be committed."""
        result: str = await self._queue_write("order", INSERT_ORDER, order.row(), epoch)
        return result

    async def abort_hold(self, hold_id: str, room_id: str, reason: str, at: int) -> str:
        """Decide a hold as aborted unless it already has an order: ABORTED (the
        abort row is there; no order can follow) or ORDERED."""
        result: str = await self._queue_write("abort", "", (hold_id, room_id, reason, at))
        return result

    async def set_room_epoch(self, room_id: str, epoch: str) -> None:
        """Make `epoch` the room's: every order queued under another one is fenced."""
        await self._queue_write("epoch", "", (room_id, epoch))

    async def wait_idle(self) -> None:
        """Wait until every write queued so far has been committed or failed."""
        marker = self._queue_write("mark", "", ())
        with contextlib.suppress(Exception):
            await marker

    async def _writer(self) -> None:
        assert self._writer_db is not None
        db = self._writer_db
        loop = asyncio.get_running_loop()
        stop = False
        while not stop:
            first = await self._queue.get()
            if first is None:
                break
            batch = [first]
            while len(batch) < self.batch_max and not self._queue.empty():
                item = self._queue.get_nowait()
                if item is None:
                    stop = True
                    break
                batch.append(item)
            self.busy_since = loop.time()
            await self._commit(db, batch)
            self.busy_since = None
        # Drain anything queued before the stop marker was seen.
        rest = []
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if item is not None:
                rest.append(item)
        if rest:
            await self._commit(db, rest)

    async def _commit(self, db: aiosqlite.Connection, batch: list[_Write]) -> None:
        try:
            results = await self._run_transaction(db, batch)
        except sqlite3.OperationalError as exc:
            # Locked past busy_timeout, disk I/O, ...: the transaction rolled back and
            # nothing of it is in the file. Every write of the batch failed the same
            # way; retrying each alone would only multiply the wait.
            self.last_failed = True
            log.warning("order store write failed (%s): %d writes refused", exc, len(batch))
            err = StoreError(f"order store unavailable: {exc}")
            for item in batch:
                if not item.fut.done():
                    item.fut.set_exception(err)
            return
        except Exception:
            # One bad statement must not fail its neighbours: redo them one by one.
            for item in batch:
                try:
                    one = await self._run_transaction(db, [item])
                except Exception as exc:
                    if not item.fut.done():
                        item.fut.set_exception(exc)
                else:
                    if not item.fut.done():
                        item.fut.set_result(one[0])
            return
        self.last_failed = False
        for item, result in zip(batch, results, strict=True):
            if not item.fut.done():
                item.fut.set_result(result)

    async def _run_transaction(self, db: aiosqlite.Connection, batch: list[_Write]) -> list[Any]:
        """Run the batch in one transaction, in queue order; one result per write."""
        results: list[Any] = [None] * len(batch)
        await db.execute("BEGIN IMMEDIATE")
        try:
            # Consecutive writes of the same kind and SQL go together (one executemany).
            i = 0
            while i < len(batch):
                j = i
                while j < len(batch) and batch[j].kind == batch[i].kind and \
                        batch[j].sql == batch[i].sql:
                    j += 1
                group = batch[i:j]
                kind = group[0].kind
                if kind == "order":
                    results[i:j] = await self._insert_orders(db, group)
                elif kind == "abort":
                    results[i:j] = [await self._abort(db, item.params) for item in group]
                elif kind == "mark":
                    pass  # wait_idle: resolves with the writes queued before it
                elif kind == "epoch":
                    await db.executemany(
                        "INSERT INTO room_epochs VALUES (?, ?) ON CONFLICT(room_id) "
                        "DO UPDATE SET epoch = excluded.epoch", [item.params for item in group])
                elif j - i == 1:
                    await db.execute(group[0].sql, group[0].params)
                else:
                    await db.executemany(group[0].sql, [item.params for item in group])
                i = j
            await db.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(Exception):
                await db.execute("ROLLBACK")
            raise
        return results

    async def _insert_orders(self, db: aiosqlite.Connection, group: list[_Write]) -> list[str]:
        """Insert the orders that may be written; say of each what became of it. Runs
        inside the write transaction, so the checks and the inserts are one decision."""
        holds = [item.params[1] for item in group]
        rooms = sorted({item.params[2] for item in group})
        aborted: set[str] = set()
        for start in range(0, len(holds), 500):
            chunk = holds[start:start + 500]
            async with db.execute(
                    f"SELECT hold_id FROM aborted_holds WHERE hold_id IN "
                    f"({', '.join('?' for _ in chunk)})", chunk) as cur:
                aborted.update(r[0] for r in await cur.fetchall())
        epochs: dict[str, str] = {}
        for start in range(0, len(rooms), 500):
            chunk = rooms[start:start + 500]
            async with db.execute(
                    f"SELECT room_id, epoch FROM room_epochs WHERE room_id IN "
                    f"({', '.join('?' for _ in chunk)})", chunk) as cur:
                epochs.update({r[0]: r[1] for r in await cur.fetchall()})
        results: list[str] = []
        rows: list[Sequence[Any]] = []
        for item in group:
            if item.params[1] in aborted:
                results.append(ABORTED)
            elif epochs.get(item.params[2], "") != item.epoch:
                results.append(FENCED)
            else:
                results.append(PLACED)
                rows.append(item.params)
        if rows:
            await db.executemany(INSERT_ORDER, rows)
        return results

    @staticmethod
    async def _abort(db: aiosqlite.Connection, params: Sequence[Any]) -> str:
        hold_id = params[0]
        async with db.execute("SELECT 1 FROM orders WHERE hold_id = ?", (hold_id,)) as cur:
            if await cur.fetchone() is not None:
                return ORDERED
        await db.execute("INSERT INTO aborted_holds VALUES (?, ?, ?, ?) "
                         "ON CONFLICT(hold_id) DO NOTHING", params)
        return ABORTED

    # ------------------------------------------------------------------ catalogue writes

    async def add_room(self, room_id: str, title: str, stream_url: str, host_key_hash: str,
                       created_at: int) -> None:
        await self.write("INSERT INTO rooms VALUES (?, ?, ?, ?, ?)",
                         (room_id, title, stream_url, host_key_hash, created_at))

    async def set_room_state(self, room_id: str, state: str, starts_at: int | None,
                             ended_at: int | None, changed_at: int) -> None:
        await self.write(
            "INSERT INTO room_states VALUES (?, ?, ?, ?, ?) ON CONFLICT(room_id) DO UPDATE "
            "SET state = excluded.state, starts_at = excluded.starts_at, "
            "ended_at = excluded.ended_at, changed_at = excluded.changed_at",
            (room_id, state, starts_at, ended_at, changed_at))

    async def put_product(self, room_id: str, product_id: str, data: dict[str, Any],
                          stock: int) -> None:
        await self.write(
            "INSERT INTO products (room_id, product_id, data, stock, position) VALUES "
            "(?, ?, ?, ?, (SELECT COALESCE(MAX(position), 0) + 1 FROM products "
            "WHERE room_id = ?)) ON CONFLICT(room_id, product_id) DO UPDATE SET "
            "data = excluded.data, stock = excluded.stock",
            (room_id, product_id, orjson.dumps(data).decode(), stock, room_id))

    async def add_sale(self, room_id: str, sale: dict[str, Any], created_at: int) -> None:
        await self.write(
            "INSERT INTO sales (sale_id, room_id, product_id, data, created_at) "
            "VALUES (?, ?, ?, ?, ?)",
            (sale["sale_id"], room_id, sale["product_id"], orjson.dumps(sale).decode(),
             created_at))

    async def stop_sale(self, sale_id: str, stopped_at: int) -> None:
        await self.write("UPDATE sales SET stopped_at = ? WHERE sale_id = ?",
                         (stopped_at, sale_id))

    async def add_coupon_drop(self, room_id: str, drop: dict[str, Any]) -> None:
        await self.write("INSERT INTO coupon_drops VALUES (?, ?, ?)",
                         (drop["coupon_id"], room_id, orjson.dumps(drop).decode()))

    async def add_lottery(self, room_id: str, lottery: dict[str, Any], seed: str) -> None:
        await self.write("INSERT INTO lotteries VALUES (?, ?, ?, ?, NULL)",
                         (lottery["lottery_id"], room_id, orjson.dumps(lottery).decode(), seed))

    async def add_lottery_entry(self, room_id: str, lottery_id: str, viewer_id: str,
                                at: int) -> None:
        await self.write("INSERT INTO lottery_entries VALUES (?, ?, ?, ?) "
                         "ON CONFLICT(lottery_id, viewer_id) DO NOTHING",
                         (lottery_id, viewer_id, room_id, at))

    async def set_lottery_result(self, lottery_id: str, result: dict[str, Any]) -> None:
        await self.write("UPDATE lotteries SET result = ? WHERE lottery_id = ?",
                         (orjson.dumps(result).decode(), lottery_id))

    async def set_room_policy(self, room_id: str, policy: dict[str, Any]) -> None:
        await self.write("INSERT INTO room_policies VALUES (?, ?) ON CONFLICT(room_id) "
                         "DO UPDATE SET data = excluded.data",
                         (room_id, orjson.dumps(policy).decode()))

    # ------------------------------------------------------------------ reads

    async def _all(self, sql: str, params: Iterable[Any] = ()) -> list[aiosqlite.Row]:
        if self._reader_db is None:
            raise StoreClosed("the order store is closed")
        async with self._reader_db.execute(sql, tuple(params)) as cur:
            return list(await cur.fetchall())

    async def rooms(self) -> list[dict[str, Any]]:
        rows = await self._all("SELECT * FROM rooms ORDER BY created_at")
        return [dict(r) for r in rows]

    async def room_state(self, room_id: str) -> dict[str, Any]:
        """The room's lifecycle: state ('live' without a row), starts_at, ended_at."""
        rows = await self._all("SELECT state, starts_at, ended_at FROM room_states "
                               "WHERE room_id = ?", (room_id,))
        if not rows:
            return {"state": "live", "starts_at": None, "ended_at": None}
        return dict(rows[0])

    async def room_states(self) -> dict[str, dict[str, Any]]:
        """room id -> its lifecycle, for rooms that have a row (the others are live)."""
        rows = await self._all("SELECT room_id, state, starts_at, ended_at FROM room_states")
        return {r["room_id"]: {"state": r["state"], "starts_at": r["starts_at"],
                               "ended_at": r["ended_at"]} for r in rows}

    async def public_rooms(self, limit: int, before: tuple[int, str] | None,
                           stale_before: int) -> list[dict[str, Any]]:
        """Live and scheduled rooms, newest first, after the cursor `before`
        (created_at, room_id) of the last room of the previous page. Scheduled rooms
        whose start is older than `stale_before` (never went live) are left out."""
        where = ("COALESCE(s.state, 'live') IN ('live', 'scheduled') AND "
                 "(s.state IS NOT 'scheduled' OR s.starts_at >= ?)")
        params: list[Any] = [stale_before]
        if before is not None:
            where += " AND (r.created_at, r.room_id) < (?, ?)"
            params += [before[0], before[1]]
        rows = await self._all(
            "SELECT r.room_id, r.title, r.stream_url, r.created_at, "
            "COALESCE(s.state, 'live') AS state, s.starts_at FROM rooms r "
            f"LEFT JOIN room_states s USING (room_id) WHERE {where} "
            "ORDER BY r.created_at DESC, r.room_id DESC LIMIT ?", (*params, limit))
        return [dict(r) for r in rows]

    async def room(self, room_id: str) -> dict[str, Any] | None:
        rows = await self._all("SELECT * FROM rooms WHERE room_id = ?", (room_id,))
        return dict(rows[0]) if rows else None

    async def room_policy(self, room_id: str) -> dict[str, Any] | None:
        rows = await self._all("SELECT data FROM room_policies WHERE room_id = ?", (room_id,))
        return dict(orjson.loads(rows[0]["data"])) if rows else None

    async def products(self, room_id: str) -> list[tuple[dict[str, Any], int]]:
        rows = await self._all(
            "SELECT data, stock FROM products WHERE room_id = ? ORDER BY position", (room_id,))
        return [(orjson.loads(r["data"]), r["stock"]) for r in rows]

    async def sales(self, room_id: str) -> list[tuple[dict[str, Any], int | None]]:
        rows = await self._all(
            "SELECT data, stopped_at FROM sales WHERE room_id = ? ORDER BY created_at, rowid",
            (room_id,))
        return [(orjson.loads(r["data"]), r["stopped_at"]) for r in rows]

    async def coupon_drops(self, room_id: str) -> list[dict[str, Any]]:
        rows = await self._all("SELECT data FROM coupon_drops WHERE room_id = ? ORDER BY rowid",
                               (room_id,))
        return [orjson.loads(r["data"]) for r in rows]

    async def lotteries(self, room_id: str) -> list[tuple[dict[str, Any], str, Any]]:
        rows = await self._all(
            "SELECT data, seed, result FROM lotteries WHERE room_id = ? ORDER BY rowid",
            (room_id,))
        return [(orjson.loads(r["data"]), r["seed"],
                 orjson.loads(r["result"]) if r["result"] else None) for r in rows]

    async def lottery_entrants(self, room_id: str,
                               lottery_id: str | None = None) -> dict[str, list[str]]:
        """lottery id -> its entrants (sorted), for one lottery or every one of the room."""
        if lottery_id is None:
            rows = await self._all("SELECT lottery_id, viewer_id FROM lottery_entries "
                                   "WHERE room_id = ? ORDER BY lottery_id, viewer_id",
                                   (room_id,))
        else:
            rows = await self._all("SELECT lottery_id, viewer_id FROM lottery_entries "
                                   "WHERE lottery_id = ? ORDER BY viewer_id", (lottery_id,))
        out: dict[str, list[str]] = {}
        for r in rows:
            out.setdefault(r["lottery_id"], []).append(r["viewer_id"])
        return out

    async def orders(self, room_id: str, limit: int = 1000, offset: int = 0) -> list[Order]:
        rows = await self._all(
            "SELECT * FROM orders WHERE room_id = ? ORDER BY created_at, order_id "
            "LIMIT ? OFFSET ?", (room_id, limit, offset))
        return [Order(**dict(r)) for r in rows]

    async def order_for_hold(self, hold_id: str) -> Order | None:
        rows = await self._all("SELECT * FROM orders WHERE hold_id = ?", (hold_id,))
        return Order(**dict(rows[0])) if rows else None

    async def aborted(self, room_id: str) -> list[str]:
        """The room's holds decided as aborted (their ids, sorted)."""
        rows = await self._all("SELECT hold_id FROM aborted_holds WHERE room_id = ? "
                               "ORDER BY hold_id", (room_id,))
        return [r["hold_id"] for r in rows]

    async def aborted_count(self, room_id: str) -> int:
        rows = await self._all("SELECT COUNT(*) AS n FROM aborted_holds WHERE room_id = ?",
                               (room_id,))
        return int(rows[0]["n"])

    async def room_epoch(self, room_id: str) -> str:
        rows = await self._all("SELECT epoch FROM room_epochs WHERE room_id = ?", (room_id,))
        return str(rows[0]["epoch"]) if rows else ""

    async def outcome_conflicts(self, room_id: str) -> int:
        """Holds with both an order and an abort row: zero by construction; the
        audit proves it."""
        rows = await self._all(
            "SELECT COUNT(*) AS n FROM orders JOIN aborted_holds USING (hold_id) "
            "WHERE orders.room_id = ?", (room_id,))
        return int(rows[0]["n"])

    async def oversold_sales(self, room_id: str) -> dict[str, tuple[int, int]]:
        """Sales whose orders in the store exceed their units: sale -> (sold, units).
        The record alone, without Redis, proves there was no oversell."""
        rows = await self._all(
            "SELECT s.sale_id, s.data, COALESCE(SUM(o.quantity), 0) AS n FROM sales s "
            "LEFT JOIN orders o ON o.sale_id = s.sale_id WHERE s.room_id = ? "
            "GROUP BY s.sale_id", (room_id,))
        out: dict[str, tuple[int, int]] = {}
        for r in rows:
            units = int(orjson.loads(r["data"])["units"])
            if int(r["n"]) > units:
                out[r["sale_id"]] = (int(r["n"]), units)
        return out

    async def sold_by_product(self, room_id: str) -> dict[str, int]:
        rows = await self._all(
            "SELECT product_id, SUM(quantity) AS n FROM orders WHERE room_id = ? "
            "GROUP BY product_id", (room_id,))
        return {r["product_id"]: int(r["n"]) for r in rows}

    async def sold_by_sale_and_buyer(self, room_id: str) -> dict[str, dict[str, int]]:
        rows = await self._all(
            "SELECT sale_id, buyer_id, SUM(quantity) AS n FROM orders WHERE room_id = ? "
            "GROUP BY sale_id, buyer_id", (room_id,))
        out: dict[str, dict[str, int]] = {}
        for r in rows:
            out.setdefault(r["sale_id"], {})[r["buyer_id"]] = int(r["n"])
        return out

    async def coupon_uses(self, room_id: str) -> dict[str, dict[str, str]]:
        rows = await self._all(
            "SELECT coupon_id, buyer_id, order_id FROM orders WHERE room_id = ? "
            "AND coupon_id != ''", (room_id,))
        out: dict[str, dict[str, str]] = {}
        for r in rows:
            out.setdefault(r["coupon_id"], {})[r["buyer_id"]] = r["order_id"]
        return out

    async def order_totals(self, room_id: str) -> dict[str, int]:
        rows = await self._all(
            "SELECT COUNT(*) AS orders, COALESCE(SUM(quantity), 0) AS units, "
            "COALESCE(SUM(total), 0) AS revenue, COUNT(DISTINCT buyer_id) AS buyers "
            "FROM orders WHERE room_id = ?", (room_id,))
        return {k: int(rows[0][k]) for k in ("orders", "units", "revenue", "buyers")}
