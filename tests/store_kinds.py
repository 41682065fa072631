"""The order stores under test, opened the same way whichever they are: the SQLite
file in the test's directory or the PostgreSQL database of the `store_url` fixture;
and the stalled-store fault for each, a real lock held by another connection."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Self

import asyncpg

from server.state.pg_schema import WRITER_LOCK
from server.state.pg_store import PgOrderStore
from server.state.sqlite_store import SqliteOrderStore
from tests.support import StoreLock

AnyStore = SqliteOrderStore | PgOrderStore


def new_store(store_url: str, tmp_path: Path, name: str = "orders.sqlite3",
              **kwargs: Any) -> AnyStore:
    """An unopened store: PostgreSQL at `store_url`, else SQLite at tmp_path/name."""
    if store_url:
        return PgOrderStore(store_url, **kwargs)
    return SqliteOrderStore(tmp_path / name, **kwargs)


async def open_store_at(store_url: str, tmp_path: Path, name: str = "orders.sqlite3",
                        **kwargs: Any) -> AnyStore:
    store = new_store(store_url, tmp_path, name, **kwargs)
    await store.open()
    return store


class PgWriterLock:
    """Another PostgreSQL session holding livesell's writer lock until released:
    every store writer waits for it (up to store.busy_timeout_ms), as SQLite's
    writers wait for another process's BEGIN EXCLUSIVE (tests/support.py StoreLock)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.conn: Any = None

    async def __aenter__(self) -> Self:
        self.conn = await asyncpg.connect(self.url)
        await self.conn.execute("SELECT pg_advisory_lock($1)", WRITER_LOCK)
        return self

    async def release(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            await conn.execute("SELECT pg_advisory_unlock($1)", WRITER_LOCK)
            await asyncio.wait_for(conn.close(), 30)

    async def __aexit__(self, *exc: object) -> None:
        await self.release()


def lock_of(store: AnyStore) -> StoreLock | PgWriterLock:
    """The stalled-store fault for this store."""
    if isinstance(store, PgOrderStore):
        return PgWriterLock(store.url)
    return StoreLock(store.path)
