"""Real load-test runs of the auction scenario (both anti-snipe modes) and of a
flash sale whose sold-out buyers wait in the waitlist, against a server the
tool spawns on loopback. Every check must pass, the auction and waitlist
checks among them, and the report must show the bids, snipes and offers that
the checks were about."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from loadtest.checks import (
    AUCTION_CHAIN,
    AUCTION_EXTENSIONS,
    AUCTION_HIGHEST,
    AUCTION_WINNER,
    WAITLIST_ONCE,
    WAITLIST_ORDER,
    WAITLIST_STOCK,
)

# ~50 bidders, a 6 s auction with a 2 s extend window; bidders bid every 0.8 s on
# average and a third of them snipe in the last second (some just after the end).
AUCTION = """
name = "small_auction"

[viewers]
count = 60
join_rate_per_s = 300
latency_sample = 20
processes = 1

[run]
duration_s = 8
settle_timeout_s = 60

[sale]
currency = "EUR"

[auction]
enabled = true
start_price = 1000
duration_s = 6
anti_snipe = "{mode}"
extend_s = 2
reserve_price = 1500
bidders = 50
proxy_share = 0.3
proxy_steps = 10
bid_interval_s = 0.8
max_bids = 6
snipe_share = 0.35
snipe_window_s = 1.0
snipe_late_s = 0.2
snipes = 2
"""

WAITLIST_SALE = """
name = "waitlist_sale"

[viewers]
count = 150
join_rate_per_s = 300
latency_sample = 20
processes = 1

[run]
duration_s = 6
settle_timeout_s = 90

[sale]
enabled = true
units = 30
limit_per_buyer = 1
countdown_s = 1
buyer_share = 0.8
greedy_share = 0.1
checkout_share = 0.6
hold_seconds = 2
think_s = 0.2
sold_out_retries = 2
retry_interval_s = 0.5
waitlist_share = 0.6
"""


def _run(scenario: Path, report: Path, cwd: Path) -> tuple[subprocess.CompletedProcess[str],
                                                            dict[str, Any]]:
    out = subprocess.run([sys.executable, "-m", "loadtest", "run", str(scenario),
                          "--report-dir", str(report), "--quiet"],
                         capture_output=True, text=True, timeout=300, cwd=cwd)
    assert (report / "report.json").is_file(), (out.stdout, out.stderr)
    data: dict[str, Any] = json.loads((report / "report.json").read_text())
    return out, data


def _assert_all_passed(out: subprocess.CompletedProcess[str], report: dict[str, Any]) -> None:
    failed = [c for c in report["checks"] if not c["ok"]]
    assert out.returncode == 0 and not failed, (out.stdout, out.stderr, failed)
    assert report["ok"] is True and report["exit_code"] == 0


@pytest.mark.parametrize("mode", ["extend", "sudden_death"])
def test_an_auction_with_proxies_and_snipes_passes_every_check(tmp_path: Path,
                                                               mode: str) -> None:
    scenario = tmp_path / "small_auction.toml"
    scenario.write_text(AUCTION.format(mode=mode))
    out, report = _run(scenario, tmp_path / "r", tmp_path)
    _assert_all_passed(out, report)
    names = {c["name"] for c in report["checks"]}
    assert {AUCTION_WINNER, AUCTION_HIGHEST, AUCTION_EXTENSIONS, AUCTION_CHAIN,
            "left + held + sold = stock", "every hold ended (checked out, released or "
            "expired)", "every viewer saw sequence numbers without gaps or recovered each "
            "gap"} <= names
    (auction,) = report["measurements"]["auctions"]
    assert auction["state"] == "ended" and auction["ended_by"] == "clock"
    assert auction["anti_snipe"] == mode
    kinds = auction["bids_by_kind"]
    assert kinds.get("plain", 0) > 0 and kinds.get("proxy", 0) > 0 and kinds.get("snipe", 0) > 0
    assert auction["chain_entries"] > 5 and auction["answers"].get("leading", 0) > 0
    assert auction["events_received"] >= 50 * auction["chain_entries"]
    if mode == "extend":
        assert auction["extensions"] > 0 and auction["end_moved_s"] > 0
    else:
        assert auction["extensions"] == 0 and auction["end_moved_s"] == 0
    # The auction sold its unit to the winner, who paid: one order at the winning amount.
    assert auction["winner"] is not None and auction["reserve_met"] is True
    sel = report["measurements"]["selling"]
    assert sel["orders_stored"] == sel["orders_acknowledged"] == 1
    assert report["measurements"]["outcomes"]["checkout"] == {"order_placed": 1}


def test_a_sale_whose_sold_out_buyers_wait_in_line_passes_every_check(
        tmp_path: Path) -> None:
    scenario = tmp_path / "waitlist_sale.toml"
    scenario.write_text(WAITLIST_SALE)
    out, report = _run(scenario, tmp_path / "r", tmp_path)
    _assert_all_passed(out, report)
    names = {c["name"] for c in report["checks"]}
    assert {WAITLIST_STOCK, WAITLIST_ORDER, WAITLIST_ONCE} <= names
    sel = report["measurements"]["selling"]
    assert sel["waitlist_joins"] > 10 and sel["waitlist_offers"] > 0
    assert report["measurements"]["outcomes"]["waitlist_offer"]["hold"] > 0
