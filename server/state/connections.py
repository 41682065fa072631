"""The Redis connections of a server process, and the Redis faults by kind.

`open_clients` builds the two pooled clients the whole process shares (the app
opens them in its lifespan and closes them at stop), `health_client` the health
check's own connection. The web layer maps faults to answers through
server/state/faults.py, so it imports no Redis client itself
(tests/test_layers.py).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple, TypeAlias

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.connection import (
    AbstractConnection,
    Connection,
    SSLConnection,
    UnixDomainSocketConnection,
)
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


class _ClosedAware(AbstractConnection):
    """A connection that does not connect again once its pool is closed (mixed in
    before redis-py's own kind of connection)."""

    pool: ClosingPool | None = None

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


def open_clients(url: str, settings: RedisSettings) -> RedisClients:
    """The two pooled clients for the Redis at `url`. No connection is made yet:
    the first command connects (and fails then when Redis is not there)."""
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


def health_client(url: str, timeout_s: float = PING_TIMEOUT_S) -> Redis:
    """A client of one connection of its own for the health check's pings, each
    bounded by `timeout_s` (connect and reply)."""
    # Its own connection: a ping that waits for a free slot in the shared pool
    # (busy in a big sale) would report Redis down when only the pool is full.
    pool = ClosingPool.from_url(url, decode_responses=True, max_connections=1,
                                socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
                                **_POOL_FIXES)
    client = Redis(connection_pool=pool, single_connection_client=True)
    client.auto_close_connection_pool = True  # its aclose closes the pool (as from_url's)
    return client
