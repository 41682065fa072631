"""The order store: SQLite through aiosqlite, the durable record of the show.

One writer task owns every write. Writes queue up, and the writer takes all
that are waiting (up to `store.batch_max`), runs them in one transaction and
only then resolves each caller's future (group commit: one fsync per batch,
one await per batch). WAL mode lets readers on a second connection run beside
the writer. Orders are unique per hold, so a retried checkout never writes
twice. The catalogue (rooms, products, sales, coupon drops, lotteries) is kept
here too, so Redis can be rebuilt from the store after it loses its data.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

import aiosqlite
import orjson

log = logging.getLogger("livesell.store")

SCHEMA_VERSION: Final = 1
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
    created_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS orders_room ON orders (room_id, product_id);
CREATE INDEX IF NOT EXISTS orders_sale ON orders (sale_id, buyer_id);
"""

ORDER_COLUMNS: Final = ("order_id", "hold_id", "room_id", "product_id", "sale_id", "buyer_id",
                        "quantity", "unit_price", "subtotal", "discount", "total", "currency",
                        "coupon_id", "payment_ref", "created_at")
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

    def row(self) -> tuple[Any, ...]:
        return tuple(getattr(self, c) for c in ORDER_COLUMNS)

    def public(self) -> dict[str, Any]:
        return asdict(self)


class StoreClosed(RuntimeError):
    pass


_Write = tuple[str, Sequence[Any], "asyncio.Future[None]"]


class OrderStore:
    def __init__(self, path: Path, batch_max: int = 500) -> None:
        self.path = path
        self.batch_max = batch_max
        self._writer_db: aiosqlite.Connection | None = None
        self._reader_db: aiosqlite.Connection | None = None
        self._queue: asyncio.Queue[_Write | None] = asyncio.Queue()
        self._writer_task: asyncio.Task[None] | None = None
        self._closing = False
        self.batches = 0  # committed transactions, for metrics and tests

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._writer_db = await aiosqlite.connect(self.path, isolation_level=None)
        db = self._writer_db
        await db.execute("PRAGMA journal_mode=WAL")
        # FULL: a commit is on disk before the buyer hears "placed".
        await db.execute("PRAGMA synchronous=FULL")
        await db.execute("PRAGMA busy_timeout=5000")
        await db.executescript(SCHEMA)
        async with db.execute("SELECT version FROM schema_version") as cur:
            row = await cur.fetchone()
        if row is None:
            await db.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION,))
        elif row[0] > SCHEMA_VERSION:
            raise RuntimeError(f"order store {self.path} has schema {row[0]}, newer than "
                               f"this server's {SCHEMA_VERSION}")
        self._reader_db = await aiosqlite.connect(self.path, isolation_level=None)
        await self._reader_db.execute("PRAGMA busy_timeout=5000")
        self._reader_db.row_factory = aiosqlite.Row
        self._writer_task = asyncio.create_task(self._writer(), name="store-writer")

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

    def write(self, sql: str, params: Sequence[Any]) -> asyncio.Future[None]:
        """Queue one statement; the future resolves once its transaction committed."""
        if self._closing:
            raise StoreClosed("the order store is shutting down")
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((sql, params, fut))
        return fut

    async def place_order(self, order: Order) -> None:
        await self.write(INSERT_ORDER, order.row())

    async def _writer(self) -> None:
        assert self._writer_db is not None
        db = self._writer_db
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
            await self._commit(db, batch)
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
            await self._run_transaction(db, batch)
        except Exception:
            # One bad statement must not fail its neighbours: redo them one by one.
            for item in batch:
                try:
                    await self._run_transaction(db, [item])
                except Exception as exc:
                    if not item[2].done():
                        item[2].set_exception(exc)
                else:
                    if not item[2].done():
                        item[2].set_result(None)
            return
        for _, _, fut in batch:
            if not fut.done():
                fut.set_result(None)

    async def _run_transaction(self, db: aiosqlite.Connection, batch: list[_Write]) -> None:
        await db.execute("BEGIN IMMEDIATE")
        try:
            # Consecutive statements with the same SQL go in one executemany.
            i = 0
            while i < len(batch):
                sql = batch[i][0]
                j = i
                while j < len(batch) and batch[j][0] == sql:
                    j += 1
                if j - i == 1:
                    await db.execute(sql, batch[i][1])
                else:
                    await db.executemany(sql, [item[1] for item in batch[i:j]])
                i = j
            await db.execute("COMMIT")
            self.batches += 1
        except BaseException:
            with contextlib.suppress(Exception):
                await db.execute("ROLLBACK")
            raise

    # ------------------------------------------------------------------ catalogue writes

    async def add_room(self, room_id: str, title: str, stream_url: str, host_key_hash: str,
                       created_at: int) -> None:
        await self.write("INSERT INTO rooms VALUES (?, ?, ?, ?, ?)",
                         (room_id, title, stream_url, host_key_hash, created_at))

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

    async def set_lottery_result(self, lottery_id: str, result: dict[str, Any]) -> None:
        await self.write("UPDATE lotteries SET result = ? WHERE lottery_id = ?",
                         (orjson.dumps(result).decode(), lottery_id))

    # ------------------------------------------------------------------ reads

    async def _all(self, sql: str, params: Iterable[Any] = ()) -> list[aiosqlite.Row]:
        if self._reader_db is None:
            raise StoreClosed("the order store is closed")
        async with self._reader_db.execute(sql, tuple(params)) as cur:
            return list(await cur.fetchall())

    async def rooms(self) -> list[dict[str, Any]]:
        rows = await self._all("SELECT * FROM rooms ORDER BY created_at")
        return [dict(r) for r in rows]

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

    async def orders(self, room_id: str, limit: int = 1000, offset: int = 0) -> list[Order]:
        rows = await self._all(
            "SELECT * FROM orders WHERE room_id = ? ORDER BY created_at, order_id "
            "LIMIT ? OFFSET ?", (room_id, limit, offset))
        return [Order(**dict(r)) for r in rows]

    async def order_for_hold(self, hold_id: str) -> Order | None:
        rows = await self._all("SELECT * FROM orders WHERE hold_id = ?", (hold_id,))
        return Order(**dict(rows[0])) if rows else None

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
