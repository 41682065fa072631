"""The server process's garbage-collector policy.

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


def apply(young_threshold: int) -> None:
    """Set the young generation's threshold and freeze start-up state; 0 leaves
    the interpreter's own settings untouched."""
    if young_threshold <= 0:
        return
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(young_threshold, middle, old)
