"""What a failing Redis raises, for the layers above that must not import the
Redis client: they catch `REDIS_FAULTS` (a Redis error, or the socket's own)."""

from __future__ import annotations

from typing import Final

from redis.exceptions import RedisError

REDIS_FAULTS: Final = (RedisError, OSError)
