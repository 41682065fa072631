"""asyncpg, typed: the few calls of it the PostgreSQL order store makes
(server/state/pg_store.py), and which of its errors mean "PostgreSQL is not
there" (a StoreError: nothing committed, try again) rather than a bad write.

asyncpg ships no type information; this module is the one place that touches it
untyped, and gives the rest typed Protocols. It is imported only when a
PostgreSQL store is chosen (server/state/store.py `open_store`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Final, Protocol, cast

import asyncpg
import asyncpg.exceptions

# SQLSTATE classes of a PostgreSQL that cannot take the write now, whatever it is:
# connection exception, insufficient resources, operator intervention (shutdown,
# statement timeout), system error, transaction rollback (deadlock, serialization),
# internal error.
_UNAVAILABLE_CLASSES: Final = frozenset({"08", "53", "57", "58", "40", "XX"})
# lock_not_available: another process held the writer lock past the lock timeout
# (SQLite's "database is locked" after busy_timeout).
_UNAVAILABLE_STATES: Final = frozenset({"55P03"})

UniqueViolation: Final[type[Exception]] = asyncpg.exceptions.UniqueViolationError


class Record(Protocol):
    """A result row: by column name or position, and as a mapping."""

    def __getitem__(self, key: int | str) -> Any: ...
    def keys(self) -> Iterator[str]: ...
    def values(self) -> Iterator[Any]: ...
    def items(self) -> Iterator[tuple[str, Any]]: ...
    def __len__(self) -> int: ...


class Connection(Protocol):
    """The calls made on a connection. Their time is bounded by the caller
    (asyncio.timeout), never by asyncpg's per-call timeouts."""

    async def execute(self, query: str, *args: Any) -> str: ...
    async def executemany(self, command: str, args: Iterable[Sequence[Any]]) -> None: ...
    async def fetch(self, query: str, *args: Any) -> list[Record]: ...
    async def fetchrow(self, query: str, *args: Any) -> Record | None: ...
    async def fetchval(self, query: str, *args: Any) -> Any: ...
    def transaction(self) -> AbstractAsyncContextManager[Any]: ...
    async def close(self) -> None: ...
    def terminate(self) -> None: ...
    def is_closed(self) -> bool: ...


class Pool(Protocol):
    def acquire(self) -> AbstractAsyncContextManager[Connection]: ...
    async def close(self) -> None: ...
    def terminate(self) -> None: ...


async def connect(url: str, connect_s: float, settings: dict[str, str]) -> Connection:
    """One connection (the writer's), with `settings` for its session; asyncpg gives
    up connecting after `connect_s`."""
    conn = await asyncpg.connect(url, timeout=connect_s, server_settings=settings)
    return cast(Connection, conn)


async def create_pool(url: str, size: int, connect_s: float,
                      settings: dict[str, str]) -> Pool:
    """The readers' connections, opened as needed (none at first), up to `size`."""
    pool = await asyncpg.create_pool(url, min_size=0, max_size=size, timeout=connect_s,
                                     server_settings=settings)
    return cast(Pool, pool)


def unavailable(exc: BaseException) -> bool:
    """Whether `exc` says PostgreSQL could not take the work now (unreachable, shut
    down, timed out, locked past the lock timeout), not that the work was bad."""
    if isinstance(exc, asyncpg.exceptions.ClientConfigurationError):
        return False
    if isinstance(exc, OSError | TimeoutError | asyncpg.exceptions.InterfaceError):
        return True
    if isinstance(exc, asyncpg.exceptions.PostgresError):
        state = str(getattr(exc, "sqlstate", "") or "")
        return state[:2] in _UNAVAILABLE_CLASSES or state in _UNAVAILABLE_STATES
    return False


def affected(status: str) -> int:
    """The row count of a command's status ("INSERT 0 1", "UPDATE 3")."""
    tail = status.rsplit(" ", 1)[-1]
    return int(tail) if tail.isdigit() else 0
