"""The Redis side of a room's event stream: publishing an event (through
publish.lua, which numbers it, appends it to the room's capped log and
publishes it), the pub/sub subscription each process holds, and reads of the
room's log and sequence number. The relay that uses them (server/realtime/broker.py)
sees channels and bytes, never a Redis type: `REDIS_FAULTS`
(server/state/faults.py) is what it catches when Redis cannot be reached.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.asyncio.cluster import ClusterPubSub, RedisCluster

from server.core.keys import room_keys
from server.core.protocol import seq_of
from server.state.scripts import Scripts


class Subscription:
    """This process's pub/sub connection: the rooms' channels it listens to. On a
    Redis Cluster, sharded pub/sub (SSUBSCRIBE): one connection per shard that
    holds a room with viewers here, each room's channel on its own shard, which
    redis-py's cluster pub/sub moves when the slot moves or fails over. There no
    reconnect is reported: the broker finds what was lost meanwhile by the gap in
    a room's sequence numbers (Broker._listen)."""

    def __init__(self, pubsub: PubSub, sharded: bool = False) -> None:
        self._pubsub = pubsub
        self._sharded: ClusterPubSub | None = pubsub if isinstance(pubsub, ClusterPubSub) \
            and sharded else None
        self._on_reconnect: Callable[[], None] | None = None
        self._watching = False

    @property
    def subscribed(self) -> bool:
        """Listening to at least one channel."""
        return bool(self._pubsub.subscribed)

    async def subscribe(self, channel: str) -> None:
        if self._sharded is not None:
            await self._sharded.ssubscribe(channel)
            return
        await self._pubsub.subscribe(channel)
        if not self._watching and self._on_reconnect is not None \
                and self._pubsub.connection is not None:
            # Registered after redis-py's own (its resubscription), so it runs second.
            self._pubsub.connection.register_connect_callback(self._connected)
            self._watching = True

    async def unsubscribe(self, channel: str) -> None:
        if self._sharded is not None:
            await self._sharded.sunsubscribe(channel)
            return
        await self._pubsub.unsubscribe(channel)

    async def follow_topology(self) -> bool:
        """Redis Cluster: subscribe each room's channel again on the node that serves
        its slot now (after a resharding the old node ends the subscription, and
        redis-py only looks again when this client meets a MOVED); True when this
        is a sharded subscription and it was looked at."""
        if self._sharded is None:
            return False
        await self._sharded.cluster.nodes_manager.initialize()
        await self._sharded.reinitialize_shard_subscriptions()
        return True

    def on_reconnect(self, callback: Callable[[], None]) -> None:
        """Call `callback` whenever the connection is made again (redis-py then has
        subscribed to the channels again; what was published meanwhile is lost)."""
        self._on_reconnect = callback

    def _connected(self, _connection: Any) -> None:
        # A bound method: redis-py holds connect callbacks by weak reference.
        if self._on_reconnect is not None:
            self._on_reconnect()

    async def next_message(self, wait_s: float) -> tuple[bytes, bytes] | None:
        """(channel, payload) of the next published message, or None when none came
        within `wait_s` seconds (or what came was not a published message)."""
        if self._sharded is not None:
            msg = await self._sharded.get_sharded_message(ignore_subscribe_messages=True,
                                                          timeout=wait_s)
            if msg is None or msg.get("type") != "smessage":
                return None
            return msg["channel"], msg["data"]
        msg = await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=wait_s)
        if msg is None or msg.get("type") != "message":
            return None
        return msg["channel"], msg["data"]

    async def aclose(self) -> None:
        # Through a typed name: redis-py types PubSub.aclose from 8.2 on, not before,
        # and neither a `type: ignore` nor its absence passes mypy on both.
        close: Callable[[], Awaitable[None]] = self._pubsub.aclose
        await close()


class RoomEvents:
    """Publish a room's events and read them back. `redis` answers in text (the
    sequence number); `stream_redis` answers in bytes (the events) and carries the
    pub/sub connection."""

    def __init__(self, redis: Redis, stream_redis: Redis, scripts: Scripts) -> None:
        self.redis = redis
        self.stream_redis = stream_redis
        self.scripts = scripts

    def publish(self, room_id: str, event: bytes, log_size: int,
                keep: int = 0) -> asyncio.Future[int]:
        """Number, log and publish an encoded event (a chat message also kept in the
        room's history of `keep`); resolves to its seq, or -1 when the room is being
        rebuilt and nothing was sent (publish.lua)."""
        return self.scripts.publish(room_id, event, log_size, keep)

    def subscription(self) -> Subscription:
        return Subscription(self.stream_redis.pubsub(ignore_subscribe_messages=True),
                            sharded=isinstance(self.stream_redis, RedisCluster))

    async def last_seq(self, room_id: str) -> int:
        """The room's latest sequence number (0: none yet)."""
        return int(await self.redis.get(room_keys(room_id).seq) or 0)

    async def since(self, room_id: str, since: int) -> list[bytes] | None:
        """The logged events after `since`, or None when the log no longer reaches
        back (or `since` is from before the room's numbering was reset)."""
        keys = room_keys(room_id)
        async with self.stream_redis.pipeline(transaction=True) as pipe:
            pipe.get(keys.seq)
            pipe.lrange(keys.log, 0, -1)
            current_raw, events = await pipe.execute()
        current = int(current_raw or 0)
        if since > current:
            return None  # the client's seq is from before a reset: start afresh
        if since == current:
            return []
        if not events or seq_of(events[0]) > since + 1:
            return None
        return [e for e in events if seq_of(e) > since]
