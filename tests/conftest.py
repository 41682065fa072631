"""Fixtures: one real redis-server per test session (the same binary the embedded
default finds, started by the same RedisServer, so behind its password: its URL,
`redis_url`, carries it), flushed between tests; a real server on port 0 per test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import redis

from server.state.embedded_redis import RedisServer
from tests.support import LiveServer, make_settings


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


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
async def server(request: pytest.FixtureRequest, redis_url: str,
                 data_dir: Path) -> AsyncIterator[LiveServer]:
    # With the transport hook unless a test asks otherwise (BOTH_TRANSPORTS).
    fast = getattr(request, "param", True)
    live = await LiveServer(make_settings(redis_url, data_dir), fast=fast).start()
    try:
        yield live
    finally:
        await live.stop()


@pytest.fixture
async def http(server: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.base, timeout=30) as client:
        yield client
