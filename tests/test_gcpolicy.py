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
