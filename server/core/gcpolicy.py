"""The garbage-collector policy of the server process and of the load
generator's processes.

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
