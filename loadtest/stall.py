"""The `stall-store` fault's own process: it opens the server's SQLite order store
and holds `BEGIN EXCLUSIVE` for a while, as another program (a backup, a
migration, a stuck admin shell) would, then rolls back and exits.

    python -m loadtest.stall PATH AT_EPOCH SECONDS

It waits until the wall-clock time AT_EPOCH (so the parent can start it a
little early and the lock still begins on schedule), takes the lock (waiting
up to LOCK_WAIT_S if the server is writing at that instant), and prints one
line when it holds the lock and one when it let go, each with the time:

    held 1712345678.123456
    released 1712345680.124001

Exit status 0 when the lock was held for the whole time, 1 when it could not
be taken, 2 for bad arguments. Only the standard library, so it starts fast.
"""

from __future__ import annotations

import math
import sqlite3
import sys
import time
from pathlib import Path

LOCK_WAIT_S = 30.0
MAX_HOLD_S = 3600.0


def _number(text: str, what: str, lo: float, hi: float) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{what} {text!r} is not a number") from None
    if not math.isfinite(value) or not lo <= value <= hi:
        raise ValueError(f"{what} {text} is not within {lo}..{hi}")
    return value


def hold(path: Path, at_epoch: float, seconds: float) -> int:
    db = sqlite3.connect(path, timeout=LOCK_WAIT_S, isolation_level=None)
    try:
        delay = at_epoch - time.time()
        if delay > 0:
            time.sleep(delay)
        try:
            db.execute("BEGIN EXCLUSIVE")
        except sqlite3.Error as exc:
            print(f"failed {time.time():.6f} {exc}", flush=True)
            return 1
        print(f"held {time.time():.6f}", flush=True)
        time.sleep(seconds)
        db.execute("ROLLBACK")  # nothing was written: the lock was the point
        print(f"released {time.time():.6f}", flush=True)
        return 0
    finally:
        db.close()


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: python -m loadtest.stall PATH AT_EPOCH SECONDS", file=sys.stderr)
        return 2
    path = Path(argv[0])
    if not path.is_file():
        print(f"loadtest.stall: {path} is not a file", file=sys.stderr)
        return 2
    try:
        at_epoch = _number(argv[1], "AT_EPOCH", 0.0, 1e11)
        seconds = _number(argv[2], "SECONDS", 0.0, MAX_HOLD_S)
    except ValueError as exc:
        print(f"loadtest.stall: {exc}", file=sys.stderr)
        return 2
    return hold(path, at_epoch, seconds)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
