"""The PostgreSQL order store's writer: one task owns every write (group commit;
the queue and the task are server/state/group_commit.py's),
as server/state/sqlite_writer.py does for SQLite, with the same queue, the same
kinds of write and the same answers.

Writes queue up; the writer takes all that are waiting (up to `batch_max`), runs
them in one transaction and only then resolves each caller's future: one commit
(one WAL flush, synchronous_commit on) per batch. Every write transaction first
takes the advisory lock WRITER_LOCK, so write transactions run one at a time
across every process on the database, as SQLite's BEGIN IMMEDIATE makes them:
the arbiter's check of the other table and its insert are one decision, an epoch
change fences every order after it, and the outbox's seq is its commit order.

Failures, as SQLite's writer answers them:

- PostgreSQL unreachable, shut down, timed out or the writer lock held past the
  lock timeout: every write of the batch raises StoreError; nothing of it was
  committed (the transaction never reached COMMIT, and PostgreSQL rolls back a
  transaction whose connection is gone). The connection is dropped and the next
  batch connects again.
- A bad statement (a duplicate key, ...): the batch is redone write by write, each
  in its own transaction, so one bad write does not fail its neighbours.
- The connection lost while COMMIT was on its way: the outcome is unknown, so the
  writer asks PostgreSQL (txid_status of the transaction's id, read before
  COMMIT) on a new connection until it knows, and answers each write as the
  transaction ended. A write is never told "failed" when it committed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final

from server.state.group_commit import GroupCommit, Write
from server.state.pg_driver import Connection, unavailable
from server.state.pg_schema import WRITER_LOCK
from server.state.store import ABORTED, FENCED, ORDERED, PLACED, StoreError, StoreOutcomeUnknown
from server.state.store_rows import ORDER_COLUMNS, outbox_row_of_order

log = logging.getLogger("livesell.store")
RESOLVE_RETRY_MAX_S = 1.0  # between tries to learn a commit's outcome
# How long the writer asks before it says the outcome is unknown (and recovery, which
# asks the store again later, decides the holds).
RESOLVE_TRIES_S = 30.0

_BIGINT_COLUMNS: Final = frozenset({"quantity", "unit_price", "subtotal", "discount", "total",
                                    "created_at"})
# Many orders in one statement: one array per column (a multi-row insert).
INSERT_ORDERS: Final = (
    f"INSERT INTO orders ({', '.join(ORDER_COLUMNS)}) SELECT * FROM unnest("
    + ", ".join(f"${i}::{'bigint' if c in _BIGINT_COLUMNS else 'text'}[]"
                for i, c in enumerate(ORDER_COLUMNS, 1))
    + ") ON CONFLICT (hold_id) DO NOTHING"
)
# Many outbox events in one statement, their seqs in the order given.
INSERT_OUTBOX_MANY: Final = (
    "INSERT INTO outbox (event_id, room_id, type, data, created_at) "
    "SELECT e, r, t, d, c FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], "
    "$5::bigint[]) WITH ORDINALITY AS u(e, r, t, d, c, n) ORDER BY n "
    "ON CONFLICT (event_id) DO NOTHING"
)
INSERT_OUTBOX: Final = ("INSERT INTO outbox (event_id, room_id, type, data, created_at) "
                        "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (event_id) DO NOTHING")
SET_EPOCH: Final = ("INSERT INTO room_epochs VALUES ($1, $2) ON CONFLICT (room_id) "
                    "DO UPDATE SET epoch = excluded.epoch")


class _CommitUnknown(Exception):
    """The connection failed while COMMIT was on its way: the transaction `txid`
    may have committed."""

    def __init__(self, txid: int, results: list[Any], cause: BaseException) -> None:
        super().__init__(f"the outcome of transaction {txid} is unknown ({cause!r})")
        self.txid = txid
        self.results = results


class _StaleConnection(Exception):
    """The connection kept from an earlier batch was found broken at BEGIN (PostgreSQL
    restarted or dropped it meanwhile): nothing was sent, so the batch may go again on
    a new connection at once."""


class PgGroupWriter(GroupCommit):
    """The writer task over the store's write connection, which it (re)opens
    through `connect` when it has none."""

    def __init__(self, batch_max: int, connect: Callable[[], Awaitable[Connection]],
                 transaction_s: float) -> None:
        super().__init__(batch_max)
        self._connect = connect
        # A transaction that takes longer (PostgreSQL not answering) is given up:
        # before COMMIT it failed whole; at COMMIT its outcome is asked for.
        self.transaction_s = transaction_s
        self._conn: Connection | None = None

    def start(self, conn: Connection) -> None:
        self._conn = conn
        self._start()

    async def close(self) -> None:
        """Stop taking writes, commit everything queued before this, close the
        connection."""
        try:
            await self._stop()
        finally:
            self._drop()

    def _drop(self) -> None:
        """Forget the connection (broken, or in an unknown state); the next batch
        connects again."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.terminate()

    async def _connection(self) -> Connection:
        if self._conn is None or self._conn.is_closed():
            self._conn = None
            async with asyncio.timeout(self.transaction_s):
                self._conn = await self._connect()
        return self._conn

    def _fail(self, batch: list[Write], exc: BaseException) -> None:
        self.last_failed = True
        self.failed += 1
        log.warning("order store write failed (%s): %d writes refused", exc, len(batch))
        err = StoreError(f"order store unavailable: {exc}")
        for item in batch:
            if not item.fut.done():
                item.fut.set_exception(err)

    async def _commit(self, batch: list[Write]) -> None:
        if all(item.kind == "mark" for item in batch):
            # wait_idle only: everything queued before it is decided already.
            for item in batch:
                if not item.fut.done():
                    item.fut.set_result(None)
            return
        try:
            try:
                results = await self._run_transaction(batch)
            except _StaleConnection:
                # One failure on a connection PostgreSQL dropped while it sat idle is
                # not an outage: the batch goes once more on a new connection.
                results = await self._run_transaction(batch)
        except _CommitUnknown as unknown:
            committed = await self._committed(unknown.txid)
            if committed is None:
                self._unknown(batch, unknown)
                return
            if not committed:
                self._fail(batch, unknown)
                return
            results = unknown.results
        except Exception as exc:
            if unavailable(exc):
                # Unreachable, shut down, timed out, locked past lock_timeout: every
                # write of the batch failed the same way; retrying each alone would
                # only multiply the wait.
                self._fail(batch, exc)
                return
            # One bad statement must not fail its neighbours: redo them one by one.
            await self._one_by_one(batch)
            return
        self.last_failed = False
        for item, result in zip(batch, results, strict=True):
            if not item.fut.done():
                item.fut.set_result(result)

    def _unknown(self, batch: list[Write], cause: BaseException) -> None:
        """The batch may or may not have committed, and the store did not say within
        the bound: its writes hear so (the checkout leaves its hold to recovery)."""
        self.last_failed = True
        self.failed += 1
        log.error("order store: the outcome of %d writes is unknown (%s); recovery "
                  "decides their holds", len(batch), cause)
        err = StoreOutcomeUnknown(f"order store: outcome unknown: {cause}")
        for item in batch:
            if not item.fut.done():
                item.fut.set_exception(err)

    async def _one_by_one(self, batch: list[Write]) -> None:
        for i, item in enumerate(batch):
            try:
                try:
                    one = await self._run_transaction([item])
                except _CommitUnknown as unknown:
                    committed = await self._committed(unknown.txid)
                    if committed is None:
                        self._unknown([item], unknown)
                        continue
                    if not committed:
                        raise StoreError(f"order store unavailable: {unknown}") from None
                    one = unknown.results
            except Exception as exc:
                if unavailable(exc) or isinstance(exc, _StaleConnection):
                    # The store went away: the rest would each wait their whole bound
                    # for the same answer. They fail now, as a batch does.
                    self._fail(batch[i:], exc)
                    return
                if not item.fut.done():
                    item.fut.set_exception(exc)
            else:
                self.last_failed = False
                if not item.fut.done():
                    item.fut.set_result(one[0])

    async def _committed(self, txid: int) -> bool | None:
        """Whether the transaction `txid`, whose COMMIT's answer was lost, committed:
        asked on a new connection until PostgreSQL says, for RESOLVE_TRIES_S at most
        (the writer waits meanwhile: readiness shows the store stalled). None when it
        did not say in time, or answered with an error other than being away (a
        refused login, a txid from before a failover): the outcome is unknown."""
        delay = 0.05
        deadline = asyncio.get_running_loop().time() + RESOLVE_TRIES_S
        while asyncio.get_running_loop().time() < deadline:
            try:
                conn = await self._connection()
                async with asyncio.timeout(self.transaction_s):
                    status = await conn.fetchval("SELECT txid_status($1)", txid)
                if status == "committed":
                    log.warning("order store: the commit of transaction %d was not "
                                "answered; it committed", txid)
                    return True
                if status != "in progress":
                    # 'aborted' (or NULL: older than PostgreSQL remembers, which a
                    # transaction of a moment ago never is).
                    return False
            except Exception as exc:
                self._drop()
                if not unavailable(exc):
                    log.error("order store: could not learn how transaction %d ended: %r",
                              txid, exc)
                    return None
            await asyncio.sleep(delay)
            delay = min(RESOLVE_RETRY_MAX_S, delay * 2)
        return None

    async def _run_transaction(self, batch: list[Write]) -> list[Any]:
        """Run the batch in one transaction, in queue order; one result per write."""
        reused = self._conn is not None and not self._conn.is_closed()
        conn = await self._connection()
        results: list[Any] = [None] * len(batch)
        txid = 0
        committing = False
        try:
            async with asyncio.timeout(self.transaction_s):
                try:
                    await conn.execute("BEGIN")
                except Exception as exc:
                    if reused and unavailable(exc) and not isinstance(exc, TimeoutError):
                        self._drop()
                        raise _StaleConnection() from exc
                    raise
                # The writer lock first (waited for up to lock_timeout), then the
                # transaction's id, should its COMMIT's answer be lost.
                txid = int(await conn.fetchval(
                    "SELECT txid_current() FROM (SELECT pg_advisory_xact_lock($1)) AS l",
                    WRITER_LOCK))
                i = 0
                while i < len(batch):
                    j = i
                    while j < len(batch) and batch[j].kind == batch[i].kind and \
                            batch[j].sql == batch[i].sql:
                        j += 1
                    group = batch[i:j]
                    kind = group[0].kind
                    if kind == "order":
                        results[i:j] = await _insert_orders(conn, group)
                    elif kind == "abort":
                        results[i:j] = [await _abort(conn, item.params) for item in group]
                    elif kind == "call":
                        for k in range(i, j):
                            results[k] = await batch[k].params[0](conn)
                    elif kind == "mark":
                        pass  # wait_idle: resolves with the writes queued before it
                    elif kind == "epoch":
                        await conn.executemany(SET_EPOCH, [item.params for item in group])
                    elif j - i == 1:
                        await conn.execute(group[0].sql, *group[0].params)
                    else:
                        await conn.executemany(group[0].sql, [item.params for item in group])
                    i = j
                committing = True
                await conn.execute("COMMIT")
        except BaseException as exc:
            if committing and not isinstance(exc, asyncio.CancelledError):
                self._drop()
                raise _CommitUnknown(txid, results, exc) from exc
            if isinstance(exc, Exception) and not unavailable(exc) and not conn.is_closed():
                # A bad statement: the connection is sound, the transaction is not.
                try:
                    async with asyncio.timeout(self.transaction_s):
                        await conn.execute("ROLLBACK")
                except Exception:
                    self._drop()
            else:
                # Gone, timed out or cancelled mid-statement: its state is unknown, so
                # it goes (PostgreSQL rolls back what it had begun).
                self._drop()
            raise
        return results


async def _insert_orders(conn: Connection, group: list[Write]) -> list[str]:
    """Insert the orders that may be written; say of each what became of it. Runs
    inside the write transaction, under the writer lock, so the checks and the
    inserts are one decision."""
    holds = [item.params[1] for item in group]
    rooms = sorted({item.params[2] for item in group})
    aborted = {r[0] for r in await conn.fetch(
        "SELECT hold_id FROM aborted_holds WHERE hold_id = ANY($1::text[])", holds)}
    epochs = {r[0]: r[1] for r in await conn.fetch(
        "SELECT room_id, epoch FROM room_epochs WHERE room_id = ANY($1::text[])", rooms)}
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
        await conn.execute(INSERT_ORDERS, *(list(col) for col in zip(*rows, strict=True)))
        # The order's event, in the same transaction: never an order without its
        # event, nor an event of an order that did not commit.
        events = [outbox_row_of_order(row) for row in rows]
        await conn.execute(INSERT_OUTBOX_MANY, *(list(col) for col in zip(*events,
                                                                           strict=True)))
    return results


async def _abort(conn: Connection, params: Sequence[Any]) -> str:
    hold_id = params[0]
    if await conn.fetchval("SELECT 1 FROM orders WHERE hold_id = $1", hold_id) is not None:
        return ORDERED
    await conn.execute("INSERT INTO aborted_holds VALUES ($1, $2, $3, $4) "
                       "ON CONFLICT (hold_id) DO NOTHING", *params)
    return ABORTED

