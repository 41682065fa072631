"""The Redis connections of a server process, and the Redis faults by kind.

`open_clients` builds the two pooled clients the whole process shares (the app
opens them in its lifespan and closes them at stop), `health_client` the health
check's own connection. The web layer maps faults to answers through
server/state/faults.py, so it imports no Redis client itself
(tests/test_layers.py).

With `redis.cluster = true` the clients are redis-py's cluster client
(`ClusterClient`), which routes each command, script and pipeline by its keys'
hash slot: every room's keys share the tag `{room_id}` (server/core/keys.py), so
a room lives on one shard and its scripts and transactions stay atomic there.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextvars import ContextVar
from typing import Any, NamedTuple, Protocol, TypeAlias, cast

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import ClusterPipeline, RedisCluster
from redis.asyncio.connection import (
    AbstractConnection,
    Connection,
    SSLConnection,
    UnixDomainSocketConnection,
)
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from server.core.settings import RedisSettings
from server.state.health import PING_TIMEOUT_S

# The client type the layers above hold (for their annotations only).
RedisClient: TypeAlias = Redis

# redis-py 8.1 skips its check that replaces pooled connections the server closed
# while "maintenance notifications" are on (their default, "auto", counts as on):
# after every Redis restart each pooled connection failed its next command once
# (redis/redis-py#4252). Switched off where the setting exists; older clients
# check their connections as before.
_POOL_FIXES: dict[str, Any] = {}
try:
    from redis.maint_notifications import MaintNotificationsConfig
except ImportError:  # pragma: no cover - redis-py before 7
    pass
else:
    _POOL_FIXES["maint_notifications_config"] = MaintNotificationsConfig(enabled=False)


class RedisClients(NamedTuple):
    """The process's two pooled clients, on two pools of `redis.max_connections`
    each: `text` answers str (scripts, the features, the hub's commands); `raw`
    answers bytes (the hub's pub/sub relay and its event-log reads, whose frames go
    to viewers undecoded)."""

    text: Redis
    raw: Redis


class _Closable(Protocol):
    closed: bool


class _ClosedAware(AbstractConnection):
    """A connection that does not connect again once its pool (or its cluster
    client) is closed (mixed in before redis-py's own kind of connection)."""

    pool: _Closable | None = None

    def _refuse_when_closed(self) -> None:
        if self.pool is not None and self.pool.closed:
            raise RedisConnectionError("the Redis client is closed: the server is stopping")

    # Both ways in: connect() (the pool's check of every connection it hands out, a
    # retry) and connect_check_health() (a command on a dropped connection). Through
    # typed names: redis-py leaves them untyped.
    async def connect(self) -> None:
        # A connected connection returns at once, as redis-py's own first step does
        # after its retry wrapper: the pool calls this for every command.
        if self.is_connected:
            return
        self._refuse_when_closed()
        connect: Callable[[], Awaitable[None]] = super().connect
        await connect()

    async def connect_check_health(self, *args: Any, **kwargs: Any) -> None:
        if not self.is_connected:
            self._refuse_when_closed()
        connect: Callable[..., Awaitable[None]] = super().connect_check_health
        await connect(*args, **kwargs)


class _TcpConnection(_ClosedAware, Connection):
    pass


class _TlsConnection(_ClosedAware, SSLConnection):
    pass


class _UnixConnection(_ClosedAware, UnixDomainSocketConnection):
    pass


_CLOSED_AWARE: dict[type[AbstractConnection], type[AbstractConnection]] = {
    Connection: _TcpConnection, SSLConnection: _TlsConnection,
    UnixDomainSocketConnection: _UnixConnection,
}


class ClosingPool(BlockingConnectionPool):
    """A blocking pool that makes no connection once it is closed (the client's
    `aclose` disconnects it, at the server's stop). redis-py's pool would connect
    again on the next command, and a task still winding down at the stop (a viewer's
    leave, a request in flight) would then leave a socket open that nothing closes;
    here that command fails as Redis being unavailable, which every caller handles."""

    closed = False

    def make_connection(self) -> AbstractConnection:
        kind = _CLOSED_AWARE.get(self.connection_class, self.connection_class)
        connection = kind(**self.connection_kwargs)
        if isinstance(connection, _ClosedAware):
            connection.pool = self
        return connection

    async def disconnect(self, inuse_connections: bool = True) -> None:
        self.closed = True
        await super().disconnect(inuse_connections)


class _Gate:
    """A cluster client's 'closed' flag, which its connections read (as a pool's)."""

    closed = False


# The cluster clients whose slot the running task holds: redis-py resends a command
# a pipeline met TRYAGAIN, MOVED or ASK for through the client's execute_command,
# inside the pipeline's execute. Taken again there, a burst of pipelines could hold
# every slot while each waits for a second one. (A task started while a slot is
# held, such as redis-py's own per-node sends, shares it.)
_HOLDING: ContextVar[frozenset[int]] = ContextVar("livesell_cluster_slots",
                                                 default=frozenset())
# Connections a node's pool has beyond the commands that may run at once: the
# pub/sub connections redis-py takes from the node's pool for good.
_POOL_SPARE = 2


class ClusterClient(RedisCluster):
    """redis-py's cluster client with the two things `ClosingPool` gives a
    single-node client: no connection is made once it is closed (a task winding
    down at the stop would leave a socket nothing closes), and a burst larger
    than `max_connections` waits for a free connection instead of failing
    (redis-py's cluster nodes raise MaxConnectionsError at once). At most
    `max_connections` commands and pipelines run at a time, each taking at most
    one connection per node, so no node's pool is ever asked for more."""

    def __init__(self, *args: Any, pool_timeout_s: float = 20.0, ping_all: bool = False,
                 max_connections: int = 100, **kwargs: Any) -> None:
        kwargs["max_connections"] = max_connections + _POOL_SPARE
        super().__init__(*args, **kwargs)
        self.ping_all = ping_all
        self.gate = _Gate()
        self.pool_timeout_s = pool_timeout_s
        self.slots = asyncio.Semaphore(max_connections)
        # Every node's connections, the start-up nodes' included, are gated.
        nodes = self.nodes_manager
        base = nodes.connection_kwargs["connection_class"]
        gated = type(f"Gated{base.__name__}", (_ClosedAware, base), {"pool": self.gate})
        nodes.connection_kwargs["connection_class"] = gated
        for node in nodes.startup_nodes.values():
            node.connection_class = gated

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """One of the client's slots for the running task, unless it holds one."""
        holding = _HOLDING.get()
        if id(self) in holding:
            yield
            return
        try:
            await asyncio.wait_for(self.slots.acquire(), self.pool_timeout_s)
        except TimeoutError:
            raise RedisConnectionError("no Redis connection free within "
                                       f"{self.pool_timeout_s} s") from None
        token = _HOLDING.set(holding | {id(self)})
        try:
            yield
        finally:
            _HOLDING.reset(token)
            self.slots.release()

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        async with self.slot():
            return await super().execute_command(*args, **kwargs)

    async def ping(self, **kwargs: Any) -> Any:
        """PING; the health check's client asks every primary (a shard down is
        Redis down for its rooms), the others one node as redis-py does."""
        if self.ping_all:
            return await self.execute_command("PING", target_nodes=self.PRIMARIES)
        return await super().ping(**kwargs)

    def pipeline(self, transaction: Any | None = None,
                 shard_hint: Any | None = None) -> ClusterPipeline:
        if shard_hint:
            return super().pipeline(transaction, shard_hint)
        # redis-py's own pipeline() builds ClusterPipeline the same way.
        return _BoundedPipeline(self, transaction)  # type: ignore[abstract]

    async def aclose(self) -> None:
        self.gate.closed = True
        await super().aclose()


class _BoundedPipeline(ClusterPipeline):
    """A cluster pipeline that takes one of its client's slots while it runs."""

    _client: ClusterClient

    def __init__(self, client: ClusterClient, transaction: Any | None = None) -> None:
        super().__init__(client, transaction)
        self._client = client

    async def execute(self, raise_on_error: bool = True,
                      allow_redirections: bool = True) -> list[Any]:
        async with self._client.slot():
            return await super().execute(raise_on_error, allow_redirections)


def _cluster(url: str, settings: RedisSettings, **kwargs: Any) -> Redis:
    """A cluster client typed as the single-node client the layers above hold: it
    answers every command, script and pipeline they use the same way (the cluster
    tests run a show through it, and tests/slot_audit.py checks every call's keys
    share a slot)."""
    client = ClusterClient.from_url(url, max_connections=settings.max_connections,
                                    pool_timeout_s=settings.pool_timeout_s,
                                    **_POOL_FIXES, **kwargs)
    return cast(Redis, client)


def open_clients(url: str, settings: RedisSettings) -> RedisClients:
    """The two pooled clients for the Redis at `url` (a start-up node of the
    cluster with `redis.cluster`). No connection is made yet: the first command
    connects (and fails then when Redis is not there)."""
    if settings.cluster:
        return RedisClients(_cluster(url, settings, decode_responses=True),
                            _cluster(url, settings, decode_responses=False))
    # Blocking pools: a burst of direct calls larger than the pool (every viewer
    # of a big room leaving at once) queues for a connection; redis-py's default
    # pool would fail the calls beyond its size with "Too many connections".
    text = Redis.from_pool(ClosingPool.from_url(
        url, decode_responses=True, max_connections=settings.max_connections,
        timeout=settings.pool_timeout_s, **_POOL_FIXES))
    raw = Redis.from_pool(ClosingPool.from_url(
        url, decode_responses=False, max_connections=settings.max_connections,
        timeout=settings.pool_timeout_s, **_POOL_FIXES))
    return RedisClients(text, raw)


def health_client(url: str, timeout_s: float = PING_TIMEOUT_S,
                  cluster: bool = False) -> Redis:
    """A client of one connection of its own for the health check's pings, each
    bounded by `timeout_s` (connect and reply). On a cluster, a client of its own
    whose ping asks every primary: a shard that is down is Redis down for the
    rooms it holds."""
    if cluster:
        several = ClusterClient.from_url(url, decode_responses=True, max_connections=2,
                                        socket_timeout=timeout_s,
                                        socket_connect_timeout=timeout_s,
                                        retry=Retry(NoBackoff(), 0), ping_all=True,
                                        **_POOL_FIXES)
        return cast(Redis, several)
    # Its own connection: a ping that waits for a free slot in the shared pool
    # (busy in a big sale) would report Redis down when only the pool is full.
    pool = ClosingPool.from_url(url, decode_responses=True, max_connections=1,
                                socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
                                **_POOL_FIXES)
    client = Redis(connection_pool=pool, single_connection_client=True)
    client.auto_close_connection_pool = True  # its aclose closes the pool (as from_url's)
    return client
