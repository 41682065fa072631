"""Redis faults by kind, for the layers above that must not import the Redis
client: what they catch, what they answer 503 for, what start-up retries."""

from __future__ import annotations

from typing import Final

from redis.exceptions import AuthenticationError, RedisClusterException, RedisError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

# What a request path or a background task catches when Redis cannot serve now: a
# Redis error, or an OS error from the socket under it (a reset or refused
# connection redis-py did not wrap). It answers "try again" and keeps going. On a
# Redis Cluster, redis-py also raises RedisClusterException, which is no RedisError
# (a slot no node serves mid-failover, a cluster it cannot discover).
REDIS_FAULTS: Final = (RedisError, RedisClusterException, OSError)
# A Redis error as such: the web layer answers 503 with Retry-After for it.
STATE_FAULTS: Final = (RedisError, RedisClusterException)
# Faults that pass when a restarting Redis is back (refused or dropped connections,
# time-outs): worth another try during start-up. A refused password is one of them
# by class, but is no passing fault: see `password_refused`.
TRANSIENT_FAULTS: Final = (RedisConnectionError, RedisTimeoutError, RedisClusterException,
                           OSError)


def password_refused(exc: BaseException) -> bool:
    """Whether Redis refused the password (or wants one and got none): trying again
    cannot help."""
    return isinstance(exc, AuthenticationError)
