"""Real load-test runs against real servers on loopback: a small show with every
feature on, a trace replay, a run against a server given by --url, and Ctrl-C.
Every correctness check must pass; the report must be complete and
self-contained."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from loadtest.spawn import SpawnedServer

SMALL_SHOW = """
name = "small_show"
description = "every feature at once, small"

[viewers]
count = 200
join_rate_per_s = 400
latency_sample = 50
processes = 1

[run]
duration_s = 6
audit_interval_s = 0.2

[host]
events_per_s = 6
actions = ["announce", "pin", "unpin", "product"]

[sale]
enabled = true
units = 20
limit_per_buyer = 2
countdown_s = 1.5
buyer_share = 0.6
greedy_share = 0.2
checkout_share = 0.7
coupon_checkout_share = 0.6
hold_seconds = 2
think_s = 0.2

[coupon]
enabled = true
count = 10
claim_share = 0.2

[lottery]
enabled = true
winners = 2
duration_s = 3
enter_share = 0.3

[reconnect]
enabled = true
share = 0.2
at_s = 0.5
within_s = 1.0

[chat]
share = 0.1
messages_per_s = 2.0
likes_per_s = 2.0
"""


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "loadtest", "run", *args, "--quiet"],
                          capture_output=True, text=True, timeout=240, cwd=cwd)


def _report(directory: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((directory / "report.json").read_text())
    return data


def _assert_all_passed(out: subprocess.CompletedProcess[str], report: dict[str, Any]) -> None:
    failed = [c for c in report["checks"] if not c["ok"]]
    assert out.returncode == 0 and not failed, (out.stdout, out.stderr, failed)
    assert report["ok"] is True and report["exit_code"] == 0


def test_small_show_with_every_feature_passes_every_check(tmp_path: Path) -> None:
    scenario = tmp_path / "small_show.toml"
    scenario.write_text(SMALL_SHOW)
    out = _run(str(scenario), "--report-dir", str(tmp_path / "r"), cwd=tmp_path)
    report = _report(tmp_path / "r")
    _assert_all_passed(out, report)
    names = {c["name"] for c in report["checks"]}
    assert {"sold <= stock", "sold = confirmed orders", "left + held + sold = stock",
            "no buyer above the per-buyer limit", "no two orders for one hold",
            "no order without a hold the generator was given",
            "every order told placed is in the store", "every stored order was acknowledged",
            "coupons claimed <= dropped, each used at most once",
            "lottery winners recompute from the published seed",
            "every viewer saw sequence numbers without gaps or recovered each gap",
            "every hold ended (checked out, released or expired)",
            "chat rate limit holds"} <= names
    m = report["measurements"]
    assert m["viewers"]["joined"] == 200
    assert m["viewers"]["reconnects"] > 0
    assert m["fanout"]["latency_ms"]["count"] > 0 and m["fanout"]["reach"] is not None
    assert m["fanout"]["gaps_recovered_by"].get("resume", 0) > 0
    sel = m["selling"]
    assert 0 < sel["units_sold"] <= 20 and sel["orders_stored"] == sel["orders_acknowledged"]
    assert m["outcomes"]["buy"].get("limit_reached", 0) + m["outcomes"]["buy"].get(
        "sold_out", 0) > 0
    assert m["outcomes"]["chat"].get("rate_limited", 0) > 0
    assert m["server"]["measured"] and m["server"]["rss_peak_mb"] > 0
    assert len(report["timeline"]) > 5
    assert report["settings"]["target"]["spawned"] is True
    page = (tmp_path / "r" / "report.html").read_text()
    assert page.count("<svg") >= 4
    # Self-contained: nothing is loaded from anywhere (URLs appear only as text).
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert not re.search(r"url\(\s*['\"]?(https?:)?//", page) and "@import" not in page
    assert "xmlns" not in page
    assert "All checks passed" in page


def test_flash_sale_against_two_server_processes_passes_every_check(tmp_path: Path) -> None:
    out = _run("flash_sale", "--viewers", "200", "--duration", "6", "--server-processes", "2",
               "--report-dir", str(tmp_path / "r"), cwd=tmp_path)
    report = _report(tmp_path / "r")
    _assert_all_passed(out, report)
    assert report["settings"]["target"]["server_processes"] == 2
    sel = report["measurements"]["selling"]
    assert sel["units_sold"] > 0 and sel["orders_stored"] == sel["orders_acknowledged"]


def test_sample_trace_replays_scaled_up_and_passes(tmp_path: Path) -> None:
    out = _run("sample", "--viewers", "60", "--speed", "2", "--report-dir",
               str(tmp_path / "r"), cwd=tmp_path)
    report = _report(tmp_path / "r")
    _assert_all_passed(out, report)
    trace = report["measurements"]["trace"]
    assert trace["recorded_viewers"] == 40 and trace["synthetic_viewers"] == 60
    outcomes = report["measurements"]["outcomes"]
    assert outcomes["buy"]["hold"] > 0 and outcomes["checkout"]["order_placed"] > 0
    assert outcomes["claim_coupon"]["coupon_claimed"] == 8  # the drop had 8
    assert outcomes["enter_lottery"]["lottery_entered"] > 0
    assert report["measurements"]["fanout"]["host_actions"].get("draw: ok") == 1


@pytest.fixture
def running_server(tmp_path: Path) -> Any:
    # A rehearsal server: all 60 viewers come from one address, so the per-address
    # bounds a public server keeps (new guest identities, the room's chat rate) are
    # off, as the load tester's own spawned server has them.
    server = SpawnedServer({"LIVESELL_SALE_HOLD_SECONDS": "60",
                            "LIVESELL_AUTH_GUEST_MINTS_PER_IP_PER_MIN": "0",
                            "LIVESELL_CHAT_ROOM_MESSAGES_PER_S": "0"},
                           keep_dir=tmp_path / "srv")
    (tmp_path / "srv").mkdir()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_url_target_creates_its_own_room_and_releases_holds(
        tmp_path: Path, running_server: SpawnedServer) -> None:
    scenario = tmp_path / "tiny.toml"
    scenario.write_text("""
[viewers]
count = 60
processes = 1
[run]
duration_s = 4
[sale]
enabled = true
units = 10
limit_per_buyer = 1
countdown_s = 1
checkout_share = 0.5
think_s = 0.1
""")
    out = _run(str(scenario), "--url", running_server.base, "--report-dir",
               str(tmp_path / "r"), cwd=tmp_path)
    report = _report(tmp_path / "r")
    _assert_all_passed(out, report)
    assert report["settings"]["target"]["spawned"] is False
    # The server's hold time is long, so holders who do not check out release.
    assert report["settings"]["hold_abandon"] == "release"
    assert report["measurements"]["server"]["measured"] is False


def test_ctrl_c_stops_cleanly_and_writes_what_ran(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "loadtest", "run", "fanout", "--viewers", "50", "--duration",
         "60", "--processes", "1", "--quiet", "--report-dir", str(tmp_path / "r")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        time.sleep(7)
        os.kill(proc.pid, signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, (stdout, stderr)
    report = _report(tmp_path / "r")
    assert report["interrupted"] is True and report["exit_code"] == 130
    assert report["measurements"]["viewers"]["joined"] == 50
    assert "interrupted" in stdout
