"""The SQLite order store's writer: one task owns every write (group commit; the
queue and the task are server/state/group_commit.py's, the transaction is here).

Writes queue up; the writer takes all that are waiting (up to `batch_max`), runs
them in one transaction and only then resolves each caller's future: one fsync
per batch, one await per batch. The order and abort decisions of the store as
arbiter (server/state/store.py) are made here, inside the write transaction, so
the checks and the inserts are one decision.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from collections.abc import Sequence
from typing import Any

import aiosqlite

from server.state.group_commit import GroupCommit, Write
from server.state.sqlite_schema import INSERT_ORDER, INSERT_OUTBOX, outbox_row_of_order
from server.state.store import ABORTED, FENCED, ORDERED, PLACED, StoreError

log = logging.getLogger("livesell.store")


class GroupWriter(GroupCommit):
    """The writer task over the store's write connection."""

    def __init__(self, batch_max: int) -> None:
        super().__init__(batch_max)
        self._db: aiosqlite.Connection | None = None

    def start(self, db: aiosqlite.Connection) -> None:
        self._db = db
        self._start()

    async def close(self) -> None:
        """Stop taking writes and commit everything queued before this."""
        await self._stop()

    async def _commit(self, batch: list[Write]) -> None:
        db = self._db
        assert db is not None, "started before any write"
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

    async def _run_transaction(self, db: aiosqlite.Connection, batch: list[Write]) -> list[Any]:
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

    async def _insert_orders(self, db: aiosqlite.Connection, group: list[Write]) -> list[str]:
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
