"""Rate limits of the realtime layer: the token bucket behind a viewer's frame
and chat allowances (server/realtime/conn.py, hub.py) and the app's patience
with rejected frames."""

from __future__ import annotations

import time


class TokenBucket:
    """`rate` tokens a second up to `burst`; `take` spends them when there are enough."""

    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.tokens = float(burst)
        self.stamp = time.monotonic()

    def take(self, n: float = 1.0) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= n:
            self.tokens -= n
            return True
        return False
