"""The SQLite order store's writer: one task owns every write (group commit).

Writes queue up; the writer takes all that are waiting (up to `batch_max`), runs
them in one transaction and only then resolves each caller's future: one fsync
per batch, one await per batch. The order and abort decisions of the store as
arbiter (server/state/store.py) are made here, inside the write transaction, so
the checks and the inserts are one decision.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aiosqlite

from server.state.sqlite_schema import INSERT_ORDER, INSERT_OUTBOX, outbox_row_of_order
from server.state.store import ABORTED, FENCED, ORDERED, PLACED, StoreClosed, StoreError

log = logging.getLogger("livesell.store")
MAX_SAMPLES = 10_000


@dataclass(slots=True)
class _Write:
    """One queued write. `kind` is "sql" (a plain statement), "order", "abort",
    "epoch", "call" (`params[0]`, a coroutine function of the connection, reads and
    writes inside the transaction and gives the result) or "mark" (nothing to
    write: wait_idle); the future resolves after its transaction committed."""

    kind: str
    sql: str
    params: Sequence[Any]
    fut: asyncio.Future[Any]
    epoch: str = ""


class GroupWriter:
    """The writer task over the store's write connection."""

    def __init__(self, batch_max: int) -> None:
        self.batch_max = batch_max
        self._queue: asyncio.Queue[_Write | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        # Readiness: when the transaction now running began (None: idle), and
        # whether the last transaction failed.
        self.busy_since: float | None = None
        self.last_failed = False
        # For the metrics (server/web/metrics.py takes them once a second): each
        # transaction's writes and seconds, at most MAX_SAMPLES between two takes.
        self.batches: list[tuple[int, float]] = []
        self.failed = 0

    def start(self, db: aiosqlite.Connection) -> None:
        self._task = asyncio.create_task(self._writer(db), name="store-writer")

    async def close(self) -> None:
        """Stop taking writes and commit everything queued before this."""
        self._closing = True
        if self._task is not None:
            self._queue.put_nowait(None)
            try:
                await self._task
            except asyncio.CancelledError:
                # The writer was cancelled: done. The caller being cancelled (a bounded
                # shutdown step ran out) must hear it, not wait on behind a stall.
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise

    def queue(self, kind: str, sql: str, params: Sequence[Any],
              epoch: str = "") -> asyncio.Future[Any]:
        """Queue one write; its future resolves once its transaction committed."""
        if self._closing:
            raise StoreClosed("the order store is shutting down")
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Write(kind, sql, params, fut, epoch))
        return fut

    async def _writer(self, db: aiosqlite.Connection) -> None:
        loop = asyncio.get_running_loop()
        stop = False
        batch: list[_Write] = []
        try:
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
                if len(self.batches) < MAX_SAMPLES:
                    self.batches.append((len(batch), loop.time() - self.busy_since))
                self.busy_since = None
            # Drain anything queued before the stop marker was seen.
            batch = []
            while not self._queue.empty():
                item = self._queue.get_nowait()
                if item is not None:
                    batch.append(item)
            if batch:
                await self._commit(db, batch)
        finally:
            # Cancelled (a shutdown that ran out of time): whatever was not committed
            # is told so instead of waiting for ever; nothing of it was acknowledged.
            self._closing = True
            while not self._queue.empty():
                item = self._queue.get_nowait()
                if item is not None:
                    batch.append(item)
            for item in batch:
                if not item.fut.done():
                    item.fut.set_exception(StoreClosed("the order store was closed "
                                                          "before this write committed"))

    async def _commit(self, db: aiosqlite.Connection, batch: list[_Write]) -> None:
        try:
            results = await self._run_transaction(db, batch)
        except sqlite3.OperationalError as exc:
            # Locked past busy_timeout, disk I/O, ...: the transaction rolled back and
            # nothing of it is in the file. Every write of the batch failed the same
            # way; retrying each alone would only multiply the wait.
            self.last_failed = True
            self.failed += 1
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
                elif kind == "call":
                    for k in range(i, j):
                        results[k] = await batch[k].params[0](db)
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
            # The order's event, in the same transaction: never an order without its
            # event, nor an event of an order that did not commit.
            await db.executemany(INSERT_OUTBOX, [outbox_row_of_order(row) for row in rows])
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
