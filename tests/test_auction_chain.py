"""The bid chain's verifier (server/core/auction_chain.py) and `livesell
verify-auction`: a chain built by the rules verifies; each way of breaking a
rule (a link, a hash, an amount under the minimum, a bid after the end, an
extension the rule does not give, a winner who is not the last bid, a winner
under the reserve) is found and named."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from server.core.auction_chain import entry_hash, genesis_hash, min_next, step_at, verify

BANDS = [{"from": 0, "step": 100}, {"from": 5000, "step": 250}]


def terms(mode: str = "extend") -> dict[str, Any]:
    t: dict[str, Any] = {
        "auction_id": "a_test", "start_price": 1000, "started_at": 1_000_000,
        "first_ends_at": 1_060_000, "anti_snipe": mode, "extend_s": 10,
        "increments": BANDS}
    t["genesis"] = genesis_hash(t)
    return t


def build(mode: str, bids: list[tuple[str, int, int]]) -> tuple[dict[str, Any],
                                                                 list[dict[str, Any]]]:
    """An auction and its chain from (bidder, amount, at), by the rules."""
    auction = terms(mode)
    prev, end, entries = auction["genesis"], auction["first_ends_at"], []
    for seq, (bidder, amount, at) in enumerate(bids, start=1):
        if mode == "extend":
            end = max(end, at + 10_000)
        e = {"seq": seq, "bidder": bidder, "amount": amount, "at": at, "ends_at": end,
             "kind": "bid", "prev": prev}
        e["hash"] = prev = entry_hash(prev, e)
        entries.append(e)
    auction.update(bids=len(entries), head=prev, result={
        "winner": entries[-1]["bidder"], "amount": entries[-1]["amount"],
        "reserve_price": None, "ended_by": "clock", "ended_at": end, "head": prev})
    return auction, entries


BIDS = [("aaa", 1000, 1_010_000), ("bbb", 1100, 1_055_000), ("aaa", 5000, 1_064_000),
        ("bbb", 5250, 1_073_000)]


def test_increments_and_the_minimum_next_bid() -> None:
    assert [step_at(a, BANDS) for a in (0, 4999, 5000, 10**9)] == [100, 100, 250, 250]
    assert min_next(None, 1000, BANDS) == 1000
    assert min_next(4950, 1000, BANDS) == 5050
    assert min_next(5000, 1000, BANDS) == 5250


@pytest.mark.parametrize("mode", ["extend", "sudden_death"])
def test_a_chain_built_by_the_rules_verifies(mode: str) -> None:
    bids = BIDS if mode == "extend" else BIDS[:2]
    auction, entries = build(mode, bids)
    assert verify(auction, entries) == []


def broken(change: Any) -> list[str]:
    auction, entries = build("extend", BIDS)
    auction, entries = copy.deepcopy(auction), copy.deepcopy(entries)
    change(auction, entries)
    return verify(auction, entries)


def rehash(entries: list[dict[str, Any]], start: int, genesis: str) -> bool:
    """Recompute the hashes from entry `start` on (a forger who rewrote an entry and
    everything after it, so that only the rule it broke can give it away)."""
    prev = entries[start - 1]["hash"] if start else genesis
    for e in entries[start:]:
        e["prev"] = prev
        e["hash"] = prev = entry_hash(prev, e)
    return True


@pytest.mark.parametrize("change, found", [
    (lambda a, es: es[1].update(amount=1200), "hash does not recompute"),
    (lambda a, es: es[2].update(prev="0" * 40), "is not the previous hash"),
    (lambda a, es: a.update(start_price=900), "genesis"),
    (lambda a, es: (es[1].update(amount=1050), rehash(es, 1, a["genesis"])),
     "below the minimum next bid 1100"),
    (lambda a, es: (es[3].update(at=1_090_000, ends_at=1_100_000), rehash(es, 3, a["genesis"])),
     "not before the end in force"),
    (lambda a, es: (es[0].update(ends_at=1_070_000), rehash(es, 0, a["genesis"])),
     "the rule gives 1060000"),
    (lambda a, es: a["result"].update(winner="aaa"), "is not the last accepted bid"),
    (lambda a, es: a["result"].update(reserve_price=9000), "no bid reached the reserve"),
    (lambda a, es: a["result"].update(head="f" * 40), "is not the last hash"),
    (lambda a, es: a["result"].update(ended_at=1_070_000), "before the end in force"),
    (lambda a, es: es.pop(), "counts 4 bids, the chain has 3"),
])
def test_each_broken_rule_is_found(change: Any, found: str) -> None:
    problems = broken(change)
    assert any(found in p for p in problems), problems


def test_sudden_death_allows_no_extension() -> None:
    auction, entries = build("extend", BIDS[:2])
    auction["anti_snipe"] = "sudden_death"
    auction["genesis"] = genesis_hash(auction)
    rehash(entries, 0, auction["genesis"])
    problems = verify(auction, entries)
    assert any("the rule gives 1060000" in p for p in problems), problems


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "server", "verify-auction", *args],
                          capture_output=True, text=True, timeout=60)


def test_verify_auction_command_on_files(tmp_path: Path) -> None:
    auction, entries = build("extend", BIDS)
    good = tmp_path / "good.json"
    good.write_text(json.dumps({**auction, "entries": entries}))
    out = _cli("--file", str(good))
    assert out.returncode == 0 and out.stdout.startswith("OK: 4 accepted bid(s)"), out
    entries[2]["amount"] = 9999
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**auction, "entries": entries}))
    out = _cli("--file", str(bad))
    assert out.returncode == 1 and "entry 3: hash does not recompute" in out.stdout, out
    bad.write_text(json.dumps({**auction, "result": None, "entries": entries}))
    out = _cli("--file", str(bad))
    assert out.returncode == 2 and "not ended" in out.stderr
    out = _cli("--url", "file:///etc/passwd")
    assert out.returncode == 2 and "http" in out.stderr
