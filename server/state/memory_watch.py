"""Redis's memory use against its maxmemory: a warning once per crossing."""

from __future__ import annotations

import logging
from typing import Any

from redis.exceptions import ResponseError

log = logging.getLogger("livesell.memory")

# Redis's used_memory as a share of its maxmemory: above WARN a warning is logged,
# once; it is logged again only after the use fell below REARM (no flapping).
MEMORY_WARN_RATIO = 0.8
MEMORY_REARM_RATIO = 0.7


class MemoryWatch:
    """Warns once per crossing when Redis nears its maxmemory. At maxmemory Redis
    evicts keys with a TTL (remembered answers, finished holds) and, with none
    left, refuses writes: buys would fail. One INFO call per upkeep tick."""

    def __init__(self) -> None:
        self.high = False
        self.enabled = True  # False once Redis refused INFO (a managed Redis may)

    async def check(self, redis: Any) -> float | None:
        """The share of maxmemory in use (None without a maxmemory), warning on
        the way up past MEMORY_WARN_RATIO."""
        if not self.enabled:
            return None
        try:
            info = await redis.info("memory")
        except ResponseError as exc:
            self.enabled = False
            log.info("redis refused INFO memory (%s); its memory is not watched", exc)
            return None
        limit = int(info.get("maxmemory", 0))
        if limit <= 0:
            return None
        used = int(info.get("used_memory", 0))
        ratio = used / limit
        if not self.high and ratio >= MEMORY_WARN_RATIO:
            self.high = True
            log.warning("redis uses %.0f%% of its maxmemory (%d of %d MiB): at the bound "
                        "it evicts remembered answers and finished holds, then refuses writes",
                        ratio * 100, used >> 20, limit >> 20)
        elif self.high and ratio < MEMORY_REARM_RATIO:
            self.high = False
            log.info("redis memory back to %.0f%% of its maxmemory", ratio * 100)
        return ratio
