"""Group commit, the part both order stores' writers share (server/state/
sqlite_writer.py, server/state/pg_writer.py): one task owns every write. Writes
queue up; the task takes all that are waiting (up to `batch_max`), hands them to
the store's `_commit` as one batch (one transaction) and records the batch for the
metrics; each caller's future is resolved by `_commit` once its transaction
committed or failed. At close everything queued before is committed; a writer
cancelled meanwhile (a shutdown that ran out of time) tells every write it did not
commit so, and acknowledges nothing of it."""

from __future__ import annotations

import asyncio
import contextlib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from server.state.store import StoreClosed

MAX_SAMPLES = 10_000


@dataclass(slots=True)
class Write:
    """One queued write. `kind` is "sql" (a plain statement), "order", "abort",
    "epoch", "call" (`params[0]`, a coroutine function of the connection, reads and
    writes inside the transaction and gives the result) or "mark" (nothing to
    write: wait_idle); the future resolves after its transaction committed."""

    kind: str
    sql: str
    params: Sequence[Any]
    fut: asyncio.Future[Any]
    epoch: str = ""


class GroupCommit(ABC):
    """The queue and the writer task; a store's writer says how a batch commits."""

    def __init__(self, batch_max: int) -> None:
        self.batch_max = batch_max
        self._queue: asyncio.Queue[Write | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        # Readiness: when the transaction now running began (None: idle), and
        # whether the last transaction failed (set by `_commit`).
        self.busy_since: float | None = None
        self.last_failed = False
        # For the metrics (server/web/metrics.py takes them once a second): each
        # transaction's writes and seconds, at most MAX_SAMPLES between two takes.
        self.batches: list[tuple[int, float]] = []
        self.failed = 0

    @abstractmethod
    async def _commit(self, batch: list[Write]) -> None:
        """Run the batch in one transaction and resolve each write's future."""

    def _start(self) -> None:
        self._task = asyncio.create_task(self._writer(), name="store-writer")

    async def _stop(self) -> None:
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
        self._queue.put_nowait(Write(kind, sql, params, fut, epoch))
        return fut

    async def _writer(self) -> None:
        loop = asyncio.get_running_loop()
        stop = False
        batch: list[Write] = []
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
                await self._commit(batch)
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
                await self._commit(batch)
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


class QueuedStore:
    """What an order store answers from its writer alone (the health, the metrics,
    the drain, and the arbiter's writes that carry no SQL of the store's own): the
    same for every store whose writer is a GroupCommit in `_writes`."""

    _writes: GroupCommit

    @property
    def busy_since(self) -> float | None:
        return self._writes.busy_since

    @property
    def last_failed(self) -> bool:
        return self._writes.last_failed

    def writer_stats(self) -> tuple[list[tuple[int, float]], int]:
        taken, self._writes.batches = self._writes.batches, []
        return taken, self._writes.failed

    async def wait_idle(self) -> None:
        """Wait until every write queued so far has been committed or failed."""
        marker = self._writes.queue("mark", "", ())
        with contextlib.suppress(Exception):
            await marker

    async def abort_hold(self, hold_id: str, room_id: str, reason: str, at: int) -> str:
        result: str = await self._writes.queue("abort", "", (hold_id, room_id, reason, at))
        return result

    async def set_room_epoch(self, room_id: str, epoch: str) -> None:
        await self._writes.queue("epoch", "", (room_id, epoch))
