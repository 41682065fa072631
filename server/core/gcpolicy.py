"""The garbage-collector policy of the server process and of the load
generator's processes, and the burst guard that holds the collector off while
a burst of viewer requests (a sale's opening) is in flight (BurstGuard).

A room of 10,000 viewers keeps millions of objects that the cyclic collector
tracks (each connection's protocol state, tasks, buffers). On CPython 3.11 a
full collection walks all of them with the event loop stopped: measured at
0.5-0.8 s per full collection with 10,000 viewers on the benchmark machine
(docs/benchmarks.md). A full collection runs when the objects promoted to the
old generation since the last one exceed a quarter of it. With Python's
default young threshold (700 allocations) the short-lived objects of a burst
(buy requests, their tasks and futures, waiting a few milliseconds on Redis)
live through two young collections and are promoted, so the flash sale's
opening itself used to trigger a full collection at the worst moment.

With a young threshold of tens of thousands those objects die young; the old
generation grows only with state that really lives long (viewers joining),
so full collections follow the crowd's growth, not its bursts. What the
process built at start-up (modules, settings, scripts) is frozen out of every
later collection. Garbage cycles wait a little longer to be freed: a young
generation of 50,000 objects is a few megabytes.
"""

from __future__ import annotations

import gc
from collections.abc import Callable

DEFAULT_YOUNG_THRESHOLD = 50_000
# The middle generation is collected after every other young collection, not
# after ten (Python's default). It holds what survived young collections since
# its last collection, and that is mostly crowd state still joining: after ten
# young collections of 50,000 it was ~450,000 objects and a 0.25-0.3 s pause,
# and the next burst of allocations (a sale's opening) was what set it off.
# Collected this often it stays near 100,000 objects, a pause of ~75 ms; the
# objects walked in all are the same, since each is walked there once.
MIDDLE_THRESHOLD = 1


def apply(young_threshold: int) -> None:
    """Set the young generation's threshold and freeze start-up state; 0 leaves
    the interpreter's own settings untouched."""
    if young_threshold <= 0:
        return
    gc.collect()
    gc.freeze()
    old = gc.get_threshold()[2]
    gc.set_threshold(young_threshold, MIDDLE_THRESHOLD, old)


def freeze_long_lived() -> None:
    """Move everything alive now out of every later collection: for a process
    whose state from here on lives until it exits (a load generator's crowd once
    it has joined), so collections walk only what the run itself allocates."""
    gc.collect()
    gc.freeze()


# A burst: this many viewer requests in flight at once (a sale's opening: every
# buyer presses within a second). While one lasts, the cyclic collector waits;
# it runs again once the requests in flight fall to BURST_END, or after
# BURST_MAX_S at the latest, or once BURST_MAX_YOUNG objects wait for it.
BURST_START = 64
BURST_END = 8
BURST_MAX_S = 2.0
BURST_MAX_YOUNG = 2_000_000


class BurstGuard:
    """Holds the cyclic collector off while a burst of requests is in flight.

    Measured in a flash sale of 1,000 units to 10,000 buyers (docs/benchmarks.md,
    issue 13): the buyers' requests, all waiting on Redis at once, outlive young
    collections, so collections during the burst walk them again and again
    (0.04-0.47 s of a 1.2-3.5 s burst, landing or not by chance) and promote them
    into the old generation, whose growth then sets off a full collection later.
    Held off until the burst ends, most of them are already freed by reference
    counting when the collector runs. Nothing waits longer than BURST_MAX_S (a
    timer ends the hold even if the requests in flight hang, say on a stalled
    store, and none starts or ends meanwhile), and memory stays bounded by
    BURST_MAX_YOUNG: only garbage in reference cycles waits, the rest is freed as
    always. A burst cut short by either bound is not held again until it has
    ended. The guard re-enables only a collector it disabled itself."""

    __slots__ = ("_clock", "_held_since", "_later", "_spent", "holds", "inflight")

    def __init__(self, clock: Callable[[], float],
                 later: Callable[[float, Callable[[], None]], object]) -> None:
        """`clock` reads seconds; `later(delay, fn)` calls fn after delay seconds
        (the event loop's call_later)."""
        self._clock = clock
        self._later = later
        self._held_since: float | None = None
        self._spent = False  # this burst was held as long as allowed
        self.inflight = 0
        self.holds = 0  # bursts held off so far; also names the current hold

    @property
    def holding(self) -> bool:
        return self._held_since is not None

    def enter(self) -> None:
        """A request starts."""
        self.inflight += 1
        if self._held_since is None:
            if self.inflight >= BURST_START and not self._spent and gc.isenabled():
                gc.disable()
                self._held_since = self._clock()
                self.holds += 1
                hold = self.holds
                self._later(BURST_MAX_S, lambda: self._expire(hold))
        elif self._over_bounds():
            self._release(spent=True)

    def leave(self) -> None:
        """A request ends."""
        self.inflight -= 1
        if self.inflight <= BURST_END:
            self._spent = False
            if self._held_since is not None:
                self._release(spent=False)
        elif self._held_since is not None and self._over_bounds():
            self._release(spent=True)

    def close(self) -> None:
        """Give the collector back (the server stops)."""
        if self._held_since is not None:
            self._release(spent=False)

    def _over_bounds(self) -> bool:
        assert self._held_since is not None
        return (self._clock() - self._held_since > BURST_MAX_S
                or gc.get_count()[0] > BURST_MAX_YOUNG)

    def _expire(self, hold: int) -> None:
        """BURST_MAX_S after hold number `hold` began: end it if it still runs."""
        if self._held_since is not None and self.holds == hold:
            self._release(spent=True)

    def _release(self, *, spent: bool) -> None:
        self._held_since = None
        self._spent = spent
        gc.enable()
