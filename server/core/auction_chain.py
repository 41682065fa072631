"""An auction's bid log as anyone can check it: the hash of its terms (genesis),
the hash of each chain entry, the increment rule, and `verify`, which holds a
published auction and its chain to the rules of docs/protocol.md section 15.

The decisions themselves are made in Redis (server/state/lua/bid.lua), which
writes the chain in the same step; this module recomputes them from the
outside. `livesell verify-auction`, the store's audit and the load tester's
checks all call `verify`. Pure: no I/O.

SHA-1, because the chain is computed inside Redis's atomic step and
`redis.sha1hex` is the one hash a Redis script has (docs/protocol.md,
"Verifying an auction", says why that is enough for this log)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any, Final

GENESIS_TAG: Final = "livesell-auction"
ENTRY_KINDS: Final = frozenset({"bid", "proxy", "buy_now"})


def sha1_hex(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8"), usedforsecurity=False).hexdigest()


def increments_text(bands: Sequence[Mapping[str, Any]]) -> str:
    """The increment table as the genesis hashes it: "from:step,from:step"."""
    return ",".join(f"{int(b['from'])}:{int(b['step'])}" for b in bands)


def genesis_hash(terms: Mapping[str, Any]) -> str:
    """The chain's first `prev`: it commits to the terms the auction started with
    (`first_ends_at` is the end before any extension)."""
    return sha1_hex("|".join([
        GENESIS_TAG, str(terms["auction_id"]), str(int(terms["start_price"])),
        str(int(terms["started_at"])), str(int(terms["first_ends_at"])),
        str(terms["anti_snipe"]), str(int(terms["extend_s"]) * 1000),
        increments_text(terms["increments"])]))


def entry_hash(prev: str, entry: Mapping[str, Any]) -> str:
    return sha1_hex("|".join([
        prev, str(int(entry["seq"])), str(entry["bidder"]), str(int(entry["amount"])),
        str(int(entry["at"])), str(int(entry["ends_at"])), str(entry["kind"])]))


def step_at(amount: int, bands: Sequence[Mapping[str, Any]]) -> int:
    """The increment of the band `amount` is in (bands sorted by `from`, the first 0)."""
    step = int(bands[0]["step"])
    for band in bands:
        if amount >= int(band["from"]):
            step = int(band["step"])
        else:
            break
    return step


def min_next(amount: int | None, start_price: int,
             bands: Sequence[Mapping[str, Any]]) -> int:
    """The least next bid: the start price before any bid, else the leading amount
    plus its band's step."""
    if amount is None:
        return start_price
    return amount + step_at(amount, bands)


def verify(auction: Mapping[str, Any], entries: Sequence[Mapping[str, Any]]) -> list[str]:
    """Every way the published auction and its chain break the rules; [] when it
    verifies. `auction` is the auction object (with `result` once ended)."""
    problems: list[str] = []
    try:
        bands = list(auction["increments"])
        start = int(auction["start_price"])
        mode = str(auction["anti_snipe"])
        extend_ms = int(auction["extend_s"]) * 1000
        first_end = int(auction["first_ends_at"])
        genesis = genesis_hash(auction)
    except (KeyError, TypeError, ValueError) as exc:
        return [f"the auction's terms are incomplete or malformed: {exc!r}"]
    if auction.get("genesis") != genesis:
        problems.append(f"genesis {auction.get('genesis')!r} does not recompute from the "
                        f"terms ({genesis})")
    prev, end, amount = genesis, first_end, None
    for i, e in enumerate(entries, start=1):
        try:
            seq, at, ends_at = int(e["seq"]), int(e["at"]), int(e["ends_at"])
            value, kind = int(e["amount"]), str(e["kind"])
        except (KeyError, TypeError, ValueError) as exc:
            problems.append(f"entry {i}: malformed ({exc!r})")
            return problems
        if seq != i:
            problems.append(f"entry {i}: seq is {seq}")
        if kind not in ENTRY_KINDS:
            problems.append(f"entry {i}: unknown kind {kind!r}")
        if e.get("prev") != prev:
            problems.append(f"entry {i}: prev {e.get('prev')!r} is not the previous hash "
                            f"{prev!r}")
        if e.get("hash") != entry_hash(str(e.get("prev")), e):
            problems.append(f"entry {i}: hash does not recompute")
        least = min_next(amount, start, bands)
        if value < least:
            problems.append(f"entry {i}: amount {value} below the minimum next bid {least}")
        if at >= end:
            problems.append(f"entry {i}: accepted at {at}, not before the end in force {end}")
        if kind == "buy_now":
            expected = at
        elif mode == "extend":
            expected = max(end, at + extend_ms)
        else:
            expected = end
        if ends_at != expected:
            problems.append(f"entry {i}: end after it is {ends_at}, the rule gives {expected}")
        prev, end, amount = str(e.get("hash")), ends_at, value
    if int(auction.get("bids") or 0) != len(entries):
        problems.append(f"the auction counts {auction.get('bids')} bids, the chain has "
                        f"{len(entries)}")
    result = auction.get("result")
    if not isinstance(result, Mapping):
        return problems
    if result.get("head") != prev:
        problems.append(f"result head {result.get('head')!r} is not the last hash {prev!r}")
    reserve = result.get("reserve_price")
    met = amount is not None and (reserve is None or amount >= int(reserve))
    ended_by = result.get("ended_by")
    if ended_by == "cancelled":
        met = False
    last = entries[-1] if entries else None
    if met and last is not None:
        if result.get("winner") != last.get("bidder") or result.get("amount") != amount:
            problems.append(f"winner {result.get('winner')!r} at {result.get('amount')} is not "
                            f"the last accepted bid: {last.get('bidder')!r} at {amount}")
    elif result.get("winner") is not None:
        problems.append(f"winner {result.get('winner')!r} although "
                        + ("the auction was cancelled" if ended_by == "cancelled" else
                           "no bid reached the reserve" if entries else "nobody bid"))
    ended_at = result.get("ended_at")
    if ended_by in ("clock",) and isinstance(ended_at, int) and ended_at < end:
        problems.append(f"ended by the clock at {ended_at}, before the end in force {end}")
    return problems
