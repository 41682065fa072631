"""Fixtures: one real redis-server per test session (the same binary the embedded
default finds, started by the same RedisServer, so behind its password: its URL,
`redis_url`, carries it), flushed between tests; a real server on port 0 per test.

The order store is SQLite unless a test asks for `store_url` with the parameter
"postgresql" (tests/support.py BOTH_STORES): then one real PostgreSQL per session
(loadtest/pg_cluster.py) gives the test a database of its own (`pg_url`), dropped
after it."""

from __future__ import annotations

import itertools
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest
import redis

from loadtest.pg_cluster import PgCluster
from server.state.embedded_redis import RedisServer
from tests.support import LiveServer, make_settings

_databases = itertools.count(1)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    # die_with_parent: a killed test run leaves no redis-server behind.
    server = RedisServer(tmp_path_factory.mktemp("redis"), appendonly=False,
                         die_with_parent=True)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> Iterator[str]:
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    yield redis_server.url


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    """The session's PostgreSQL; missing binaries fail the tests that need it, naming
    the Debian package to install (never a silent skip)."""
    try:
        cluster = PgCluster()
    except (FileNotFoundError, RuntimeError) as exc:
        pytest.fail(str(exc))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.remove()


@pytest.fixture
async def pg_url(pg_cluster: PgCluster) -> AsyncIterator[str]:
    """A new, empty database of the session's PostgreSQL, dropped after the test."""
    name = f"t{os.getpid()}_{next(_databases)}"
    admin = await asyncpg.connect(pg_cluster.url())
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield pg_cluster.url(name)
    finally:
        admin = await asyncpg.connect(pg_cluster.url())
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@pytest.fixture
def store_url(request: pytest.FixtureRequest) -> str:
    """The order store's URL for the test's server or store: "" (SQLite, the
    default) unless the test is parametrised with "postgresql" (BOTH_STORES)."""
    kind = getattr(request, "param", "sqlite")
    if kind == "sqlite":
        return ""
    assert kind == "postgresql", kind
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
async def server(request: pytest.FixtureRequest, redis_url: str,
                 data_dir: Path, store_url: str) -> AsyncIterator[LiveServer]:
    # With the transport hook unless a test asks otherwise (BOTH_TRANSPORTS), on
    # SQLite unless it asks for PostgreSQL too (BOTH_STORES).
    fast = getattr(request, "param", True)
    live = await LiveServer(make_settings(redis_url, data_dir, store={"url": store_url}),
                            fast=fast).start()
    try:
        yield live
    finally:
        await live.stop()


@pytest.fixture
async def http(server: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.base, timeout=30) as client:
        yield client


def pytest_configure(config: pytest.Config) -> None:
    """The Redis Cluster slot audit (tests/slot_audit.py): every command the test
    process sends must keep a script, a MULTI or a multi-key command within one hash
    slot. On unless LIVESELL_SLOT_AUDIT=0; LIVESELL_SLOT_AUDIT=record only records."""
    from tests import slot_audit

    slot_audit.configure(config)
