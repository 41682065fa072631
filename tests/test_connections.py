"""The state layer's Redis connections (server/state/connections.py) against real
redis-servers: the two pooled clients, the health check's own connection, and
the fault classes the web layer maps to answers without importing redis."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis.exceptions import TimeoutError as RedisTimeoutError

from server.core.settings import RedisSettings
from server.state.connections import health_client, open_clients
from server.state.embedded_redis import RedisServer
from server.state.faults import REDIS_FAULTS, STATE_FAULTS, TRANSIENT_FAULTS, password_refused
from server.state.redis_probe import free_port
from tests.support import eventually

POOL = RedisSettings(max_connections=4, pool_timeout_s=30.0)


async def test_the_two_clients_answer_str_and_bytes(redis_url: str) -> None:
    text, raw = open_clients(redis_url, POOL)
    try:
        await text.set("k", "välue")
        assert await text.get("k") == "välue"
        assert await raw.get("k") == "välue".encode()
    finally:
        await text.aclose()
        await raw.aclose()


async def test_a_burst_larger_than_the_pool_waits_for_a_connection(redis_url: str) -> None:
    """Six blocking pops on a pool of four: the four hold their connections until
    items come, the other two wait for one (redis-py's default pool would fail
    them with "Too many connections"). Each pop gets one item."""
    text, raw = open_clients(redis_url, POOL)
    watch = health_client(redis_url)
    try:
        pops = [asyncio.ensure_future(text.blpop(["q"], timeout=0)) for _ in range(6)]

        async def four_blocked() -> bool:
            info = await watch.info("clients")
            return int(info["blocked_clients"]) == 4
        await eventually(four_blocked, timeout=30)
        assert not any(p.done() for p in pops)
        await raw.rpush("q", *[f"item{i}" for i in range(6)])
        got = await asyncio.wait_for(asyncio.gather(*pops), 30)
        assert sorted(pair[1] for pair in got if pair is not None) == \
            [f"item{i}" for i in range(6)]
    finally:
        await watch.aclose()
        await text.aclose()
        await raw.aclose()


async def test_closed_clients_open_no_connection_again(redis_url: str) -> None:
    """At the stop the clients are closed, while tasks may still be winding down (a
    viewer's leave, a blocked command). Their commands then fail as Redis being
    unavailable and connect to nothing: redis-py would connect again, and leave
    sockets open that nothing closes. Counted from Redis's side (CLIENT LIST)."""
    text, raw = open_clients(redis_url, POOL)
    health = health_client(redis_url)
    watch = health_client(redis_url)

    async def clients() -> int:
        return len(await watch.client_list())

    try:
        for client in (text, raw, health):
            assert await client.ping()
        assert await clients() == 4
        pop = asyncio.ensure_future(text.blpop(["never"], timeout=0))

        async def blocked() -> bool:
            return int((await watch.info("clients"))["blocked_clients"]) == 1
        await eventually(blocked, timeout=30)

        for client in (text, raw, health):
            await client.aclose()
        # The blocked command fails (redis-py's retry does not reconnect it).
        with pytest.raises(REDIS_FAULTS):
            await asyncio.wait_for(pop, 30)
        for client in (text, raw, health):
            with pytest.raises(REDIS_FAULTS):
                await client.ping()
        with pytest.raises(REDIS_FAULTS):
            await text.set("k", "v")

        async def only_the_watch() -> bool:
            return await clients() == 1
        await eventually(only_the_watch, timeout=30)
        assert int((await watch.info("clients"))["blocked_clients"]) == 0
    finally:
        await watch.aclose()
        for client in (text, raw, health):
            await client.aclose()


async def test_pooled_connections_survive_a_redis_restart(tmp_path: Path) -> None:
    """After the Redis behind the pools restarted (same port, same password), the
    next command of each client succeeds: a pooled connection the old server
    closed is replaced, not failed once (redis/redis-py#4252)."""
    server = RedisServer(tmp_path / "redis", appendonly=False, die_with_parent=True)
    server.start()
    try:
        text, raw = open_clients(server.url, POOL)
        try:
            await text.set("k", "1")
            assert await raw.get("k") == b"1"
            await asyncio.to_thread(server.stop)
            await asyncio.to_thread(server.start)
            assert await text.set("k", "2")
            assert await raw.get("k") == b"2"
        finally:
            await text.aclose()
            await raw.aclose()
    finally:
        server.stop()


async def test_the_health_client_pings_on_its_own_connection(redis_url: str) -> None:
    client = health_client(redis_url)
    try:
        assert await client.ping()
        assert await client.ping()
        names = await client.client_list()
        assert await client.client_id() in {int(c["id"]) for c in names}
    finally:
        await client.aclose()


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A loopback port that accepts connections and never answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield listener.getsockname()[1]


async def test_the_health_client_gives_up_on_a_silent_peer(silent_port: int) -> None:
    client = health_client(f"redis://127.0.0.1:{silent_port}/0", timeout_s=0.2)
    try:
        with pytest.raises(RedisTimeoutError) as caught:
            await asyncio.wait_for(client.ping(), 30)
        assert isinstance(caught.value, TRANSIENT_FAULTS)
        assert isinstance(caught.value, STATE_FAULTS)
        assert not password_refused(caught.value)
    finally:
        await client.aclose()


async def test_faults_by_kind(redis_url: str, redis_server: RedisServer) -> None:
    """A wrong or missing password is refused (no retry helps); nothing listening is
    a passing fault; every one of them is a state fault (503)."""
    wrong = f"redis://:{'x' * 40}@127.0.0.1:{redis_server.port}/0"
    missing = f"redis://127.0.0.1:{redis_server.port}/0"
    nobody = f"redis://127.0.0.1:{free_port()}/0"
    for url, refused in ((wrong, True), (missing, True), (nobody, False)):
        text, raw = open_clients(url, POOL)
        try:
            with pytest.raises(Exception) as caught:
                await asyncio.wait_for(text.ping(), 30)
            assert isinstance(caught.value, STATE_FAULTS), (url, caught.value)
            assert isinstance(caught.value, REDIS_FAULTS), (url, caught.value)
            assert isinstance(caught.value, TRANSIENT_FAULTS), (url, caught.value)
            assert password_refused(caught.value) is refused, (url, caught.value)
        finally:
            with contextlib.suppress(Exception):
                await text.aclose()
            await raw.aclose()


async def test_a_cluster_clients_slot_is_not_taken_twice_by_one_task() -> None:
    """redis-py resends a command a cluster pipeline met MOVED, ASK or TRYAGAIN for
    through the client's execute_command, inside the pipeline's execute: the task
    that holds a slot must not wait for a second one (with every slot held by such
    pipelines, the process stalled until pool_timeout_s). Other tasks still wait."""
    from redis.exceptions import ConnectionError as RedisConnectionError

    from server.state.connections import ClusterClient

    # No connection is made: the slots are the client's own semaphore.
    client = ClusterClient(host="127.0.0.1", port=free_port(), max_connections=1,
                           pool_timeout_s=0.2)
    try:
        async with client.slot():
            async with client.slot():  # the same task: no second slot taken
                pass

            async def other() -> None:
                async with client.slot():
                    pass
            # Another task, not started from within the slot, waits, and times out.
            with pytest.raises(RedisConnectionError, match="no Redis connection free"):
                await asyncio.create_task(other(), context=contextvars.Context())
        await asyncio.wait_for(asyncio.create_task(other()), 5)  # free again
    finally:
        await client.aclose()
