"""The process GC policy (server/core/gcpolicy.py), in a child interpreter so the test
runner's own collector is left alone."""

from __future__ import annotations

import json
import subprocess
import sys

from server.core import gcpolicy

PROBE = """
import gc, json, sys
from server.core import gcpolicy
before = gc.get_threshold()
alive = [[i] for i in range(1000)]
gcpolicy.apply(int(sys.argv[1]))
print(json.dumps({"before": before, "after": gc.get_threshold(),
                  "frozen": gc.get_freeze_count()}))
"""


def _probe(threshold: int) -> dict[str, list[int] | int]:
    out = subprocess.run([sys.executable, "-c", PROBE, str(threshold)], check=True,
                         capture_output=True, text=True, timeout=60)
    result: dict[str, list[int] | int] = json.loads(out.stdout)
    return result


def test_policy_raises_the_young_threshold_and_freezes_startup_state() -> None:
    got = _probe(50_000)
    before, after = got["before"], got["after"]
    assert isinstance(before, list) and isinstance(after, list)
    assert after == [50_000, gcpolicy.MIDDLE_THRESHOLD, before[2]]
    assert isinstance(got["frozen"], int) and got["frozen"] >= 1000


def test_zero_leaves_the_interpreter_defaults() -> None:
    got = _probe(0)
    assert got["after"] == got["before"]
    assert got["frozen"] == 0


FREEZE_PROBE = """
import gc, json
from server.core import gcpolicy
crowd = [[i] for i in range(5000)]
gcpolicy.freeze_long_lived()
print(json.dumps({"frozen": gc.get_freeze_count(), "young": gc.get_count()[0]}))
"""


def test_freezing_moves_a_joined_crowd_out_of_later_collections() -> None:
    out = subprocess.run([sys.executable, "-c", FREEZE_PROBE], check=True,
                         capture_output=True, text=True, timeout=60)
    got = json.loads(out.stdout)
    assert got["frozen"] >= 5000
    assert got["young"] < 100


GUARD_PROBE = """
import gc, json
from server.core import gcpolicy
from server.core.gcpolicy import BURST_END, BURST_MAX_S, BURST_START, BurstGuard
now = [0.0]
timers = []
g = BurstGuard(lambda: now[0], lambda delay, fn: timers.append((now[0] + delay, fn)))
def run_timers():
    for at, fn in [t for t in timers if t[0] <= now[0]]:
        timers.remove((at, fn))
        fn()
seen = {}
for _ in range(BURST_START - 1):
    g.enter()
seen["below_start"] = gc.isenabled()
g.enter()
seen["at_start"] = gc.isenabled()
while g.inflight > BURST_END + 1:
    g.leave()
seen["above_end"] = gc.isenabled()
g.leave()
seen["at_end"] = gc.isenabled()
# A burst that outlasts BURST_MAX_S gets the collector back, and is not held again
# until it has ended.
for _ in range(BURST_START - BURST_END):
    g.enter()
seen["second_burst"] = gc.isenabled()
now[0] += BURST_MAX_S + 0.1
g.enter()
seen["past_max"] = gc.isenabled()
for _ in range(100):
    g.enter()
seen["still_busy"] = gc.isenabled()
run_timers()  # the first hold's timer, long after it ended: changes nothing
while g.inflight > BURST_END:
    g.leave()
for _ in range(BURST_START):
    g.enter()
seen["third_burst"] = gc.isenabled()
# Requests that hang (none starts or ends): the timer ends the hold on time.
now[0] += BURST_MAX_S - 0.1
run_timers()
seen["hung_before_max"] = gc.isenabled()
now[0] += 0.2
run_timers()
seen["hung_past_max"] = gc.isenabled()
while g.inflight > BURST_END:
    g.leave()
for _ in range(BURST_START):
    g.enter()
seen["fourth_burst"] = gc.isenabled()
g.close()
seen["closed"] = gc.isenabled()
# A collector someone else disabled is left disabled.
gc.disable()
other = BurstGuard(lambda: now[0], lambda delay, fn: None)
for _ in range(BURST_START):
    other.enter()
while other.inflight:
    other.leave()
seen["not_mine"] = gc.isenabled()
seen["holds"] = [g.holds, other.holds]
print(json.dumps(seen))
"""


def test_the_burst_guard_holds_the_collector_off_only_during_a_burst() -> None:
    out = subprocess.run([sys.executable, "-c", GUARD_PROBE], check=True,
                         capture_output=True, text=True, timeout=60)
    seen = json.loads(out.stdout)
    assert seen == {"below_start": True, "at_start": False, "above_end": False,
                    "at_end": True, "second_burst": False, "past_max": True,
                    "still_busy": True, "third_burst": False, "hung_before_max": False,
                    "hung_past_max": True, "fourth_burst": False, "closed": True,
                    "not_mine": False, "holds": [4, 0]}
