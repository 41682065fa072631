"""Chaos runs of the load tester (`livesell-loadtest run ... --chaos SPEC`).

Pure parts first: the SPEC parser and its checks against a run, the address
read from a redis-server's command line, and the report's arithmetic over timed
answers. Then the stall helper against a real SQLite file from another process.
Then real runs: a spawned server, real signals (SIGKILL to its redis-server and
to a worker, SIGTERM to the server and a restart), a real FLUSHALL and a real
exclusive SQLite lock held by another process.

What the chaos machinery itself guarantees is asserted plainly: each fault
injected and recorded with its times and outcome, the failed-closed window
and the recovery measured, every correctness check evaluated and reported.
And the server keeps its promises through each fault: every check passes
(docs/faults.md).
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from loadtest.chaos_report import FAILED_CLOSED, describe, summarize
from loadtest.chaos_spec import ChaosError, Fault, FaultRecord, check_chaos, parse_chaos
from loadtest.spawn import parse_redis_address

CORRECTNESS_CHECKS = {
    "sold <= stock", "sold = confirmed orders", "left + held + sold = stock",
    "no buyer above the per-buyer limit", "no two orders for one hold",
    "no order without a hold the generator was given",
    "every order told placed is in the store", "every stored order was acknowledged",
    "every hold ended (checked out, released or expired)",
    "every viewer saw sequence numbers without gaps or recovered each gap",
    "coupons claimed <= dropped, each used at most once",
    "lottery winners recompute from the published seed",
}
CHAOS_CHECKS = {"chaos: every scheduled fault was injected",
                "chaos: the server recovered after every fault"}

# A small flash sale whose buyers press over a four-second window, so buys and
# checkouts are going on when the faults go in. Stock is ample: a buy after a
# fault can get a hold, which shows the recovery. A coupon drop and a lottery
# (drawn at 4 s) are there so their checks run after the faults too.
SMALL_SALE = """
name = "chaos_sale"
description = "a small flash sale for chaos runs"

[viewers]
count = 100
join_rate_per_s = 400
latency_sample = 20
processes = 1

[run]
duration_s = 6
audit_interval_s = 0.25
settle_timeout_s = 6

[host]
events_per_s = 2
actions = ["announce"]

[sale]
enabled = true
units = 1000
limit_per_buyer = 1
countdown_s = 1
buyer_share = 0.8
buy_window_s = 4
greedy_share = 0.0
checkout_share = 0.8
hold_seconds = 5
think_s = 0.2

[coupon]
enabled = true
count = 10
claim_share = 0.2

[lottery]
enabled = true
winners = 2
duration_s = 4
enter_share = 0.3
"""


# ------------------------------------------------------------------ the SPEC (pure)


def test_parser_reads_every_fault_in_order() -> None:
    faults = parse_chaos("kill-redis@8, flush-redis@9.5,stall-store@2:1.25,"
                         "kill-worker@0,sigterm@12.125")
    assert faults == [Fault("kill-redis", 8.0), Fault("flush-redis", 9.5),
                      Fault("stall-store", 2.0, 1.25), Fault("kill-worker", 0.0),
                      Fault("sigterm", 12.125)]
    assert [f.label for f in faults] == ["kill-redis@8", "flush-redis@9.5",
                                         "stall-store@2:1.25", "kill-worker@0",
                                         "sigterm@12.125"]
    assert parse_chaos("kill-redis@3,kill-redis@3") == [Fault("kill-redis", 3.0)] * 2


@pytest.mark.parametrize(("spec", "phrases"), [
    ("", ["SPEC is empty"]),
    ("  ", ["SPEC is empty"]),
    ("kill-db@3", ["item 1 'kill-db@3'", "unknown fault 'kill-db'", "kill-redis",
                   "stall-store"]),
    ("kill-redis", ["item 1", "expected kill-redis@T"]),
    ("kill-redis@", ["T ''", "not a time in seconds"]),
    ("kill-redis@-2", ["T '-2' is negative"]),
    ("kill-redis@soon", ["T 'soon' is not a time in seconds"]),
    ("kill-redis@1e3", ["T '1e3' is not a time in seconds"]),
    ("kill-redis@inf", ["T 'inf' is not a time in seconds"]),
    ("kill-redis@nan", ["T 'nan'"]),
    ("kill-redis@5000", ["T 5000 is above the maximum 3600"]),
    ("kill-redis@3,,sigterm@4", ["item 2 is empty"]),
    ("kill-redis@3,", ["item 2 is empty"]),
    ("sigterm@4,kill-redis@x", ["item 2 'kill-redis@x'", "T 'x'"]),
    ("stall-store@3", ["stall-store needs a DURATION", "stall-store@T:SECONDS"]),
    ("stall-store@3:", ["stall-store needs a DURATION"]),
    ("stall-store@3:0", ["DURATION must be above 0"]),
    ("stall-store@3:-1", ["DURATION '-1' is negative"]),
    ("stall-store@3:long", ["DURATION 'long' is not a time in seconds"]),
    ("stall-store@3:301", ["DURATION 301 is above the maximum 300"]),
    ("kill-redis@3:2", ["kill-redis takes no DURATION"]),
    ("sigterm@1:1", ["sigterm takes no DURATION"]),
    (",".join(["sigterm@1"] * 21), ["21 faults, at most 20"]),
    ("k" * 2001, ["at most 2000"]),
])
def test_parser_refuses_bad_specs_naming_the_item(spec: str, phrases: list[str]) -> None:
    with pytest.raises(ChaosError) as err:
        parse_chaos(spec)
    for phrase in phrases:
        assert phrase in str(err.value), str(err.value)


def test_faults_must_fit_the_run() -> None:
    faults = parse_chaos("kill-redis@6,stall-store@2:30")
    check_chaos(faults, spawned=True, length_s=6.0, length_name="run.duration_s",
                server_processes=1)  # T equal to the length is at its end: allowed
    check_chaos([], spawned=False, length_s=1.0, length_name="x", server_processes=0)
    with pytest.raises(ChaosError, match=r"kill-redis@6\.5: T 6\.5 s is beyond the run's "
                                         r"length \(run\.duration_s 6 s\)"):
        check_chaos(parse_chaos("kill-redis@6.5"), spawned=True, length_s=6.0,
                    length_name="run.duration_s", server_processes=1)
    with pytest.raises(ChaosError, match="only into a server the load tester spawned"):
        check_chaos(faults, spawned=False, length_s=6.0, length_name="run.duration_s",
                    server_processes=0)
    with pytest.raises(ChaosError, match=r"kill-worker@1: kill-worker needs several server "
                                         r"processes .*this run has 1"):
        check_chaos(parse_chaos("kill-worker@1"), spawned=True, length_s=6.0,
                    length_name="run.duration_s", server_processes=1)
    check_chaos(parse_chaos("kill-worker@1"), spawned=True, length_s=6.0,
                length_name="run.duration_s", server_processes=2)


def test_redis_address_comes_from_its_title_or_its_flags() -> None:
    assert parse_redis_address("/v/bin/redis-server 127.0.0.1:46117") == ("127.0.0.1", 46117)
    assert parse_redis_address("redis-server --port 7001 --bind 127.0.0.2 --dir /d") == (
        "127.0.0.2", 7001)
    assert parse_redis_address("redis-server [::1]:6380") == ("::1", 6380)
    assert parse_redis_address("redis-server *:6381") == ("127.0.0.1", 6381)
    assert parse_redis_address("redis-server") is None
    assert parse_redis_address("redis-server /etc/redis.conf") is None


# ------------------------------------------------------------------ the report (pure)


def test_summary_windows_recovery_and_verdicts() -> None:
    kill, stall, late = Fault("kill-redis", 2.0), Fault("stall-store", 5.0, 1.0), \
        Fault("sigterm", 9.0)
    records = [
        FaultRecord(kill, injected_s=2.01, ok=True, outcome="SIGKILL sent",
                    details={"killed_pid": 10, "new_pid": 11, "new_pid_after_s": 0.4},
                    recovery={"ready_endpoint": "/api/ready", "ready_after_s": 0.6,
                              "not_ready_probes": 4}),
        FaultRecord(stall, injected_s=5.0, ok=True, outcome="held",
                    details={"held_from_s": 5.0, "held_to_s": 6.0, "held_s": 1.0},
                    recovery={"ready_endpoint": "/api/ready", "ready_after_s": None,
                              "ready_watched_s": 2.0}),
    ]
    answers = [
        (1.0, 1.01, "buy", "hold"),             # before any fault
        (1.9, 2.05, "buy", "hold"),             # sent before the kill: not a recovery
        (2.1, 2.11, "buy", "unavailable"),
        (2.2, 2.21, "checkout", "store_unavailable"),
        (2.3, 2.31, "buy", "sold_out"),         # the ledger answered: recovered
        (2.5, 2.52, "buy", "unavailable"),
        (2.8, 2.81, "buy", "hold"),             # first hold after the kill
        (3.0, 3.5, "checkout", "order_placed"),
        (5.2, 6.1, "checkout", "order_placed"),  # waited for the lock
        (5.5, 5.6, "buy", "timeout"),
    ]
    section, verdicts = summarize(records, [kill, stall, late], answers,
                                  "kill-redis@2,stall-store@5:1,sigterm@9")
    assert section["failed_closed_answers"] == 3 and section["answers_timed"] == 10
    assert set(section["failed_closed_codes"]) == FAILED_CLOSED
    by_spec = {f["spec"]: f for f in section["faults"]}
    assert list(by_spec) == ["kill-redis@2", "stall-store@5:1", "sigterm@9"]
    k = by_spec["kill-redis@2"]
    assert k["injected_s"] == 2.01 and k["late_s"] == 0.01 and k["new_pid"] == 11
    fc = k["failed_closed"]
    assert fc["count"] == 3 and fc["by_action"] == {"buy": 2, "checkout": 1}
    assert fc["by_code"] == {"unavailable": 2, "store_unavailable": 1}
    assert (fc["first_s"], fc["last_s"], fc["window_s"]) == (2.11, 2.52, 0.41)
    assert k["other_errors"] == {"sold_out": 1}
    rec = k["recovery"]
    assert rec["first_hold_after_s"] == 0.8  # 2.81 - 2.01, not the 2.05 one sent before
    assert rec["first_buy_answered_after_s"] == 0.3
    assert rec["first_order_after_s"] == 1.49
    assert rec["ready_after_s"] == 0.6 and rec["buys_sent_after"] == 5
    s = by_spec["stall-store@5:1"]
    assert s["failed_closed"]["count"] == 0 and s["other_errors"] == {"timeout": 1}
    assert s["recovery"]["first_order_after_s"] == 1.1 and s["duration_s"] == 1.0
    assert s["recovery"]["first_buy_answered_after_s"] is None
    never = by_spec["sigterm@9"]
    assert never["injected_s"] is None and not never["ok"]
    assert "not injected" in never["outcome"] and "failed_closed" not in never
    injected, recovered = verdicts
    assert not injected.ok and "sigterm@9: not injected: the run ended first" in injected.detail
    assert not recovered.ok
    assert ("stall-store@5:1: /api/ready did not answer 200 again in the 2.0s watched "
            "before the run ended") in recovered.detail
    assert "stall-store@5:1: 1 buy(s) sent after the fault, none answered" in recovered.detail
    assert "kill-redis@2" not in recovered.detail
    words = describe(k)
    assert words["failed_closed"].startswith("3 answer(s) (buy 2, checkout 1) from 2.11s")
    assert "first hold 0.80s after" in words["recovery"]
    assert "new redis-server pid 11 after 0.40s" in words["what"]


def test_summary_of_a_clean_fault_passes_both_verdicts() -> None:
    f = Fault("flush-redis", 1.0)
    records = [FaultRecord(f, injected_s=1.0, ok=True, outcome="FLUSHALL answered OK",
                           recovery={"ready_endpoint": "/api/health", "ready_after_s": 0.1,
                                     "not_ready_probes": 0})]
    section, verdicts = summarize(records, [f], [(1.5, 1.6, "buy", "hold")], "flush-redis@1")
    assert all(v.ok for v in verdicts), verdicts
    assert section["faults"][0]["recovery"]["first_hold_after_s"] == 0.6
    assert "200 throughout" in describe(section["faults"][0])["recovery"]


# ------------------------------------------------------------------ the stall helper


def _line(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    return proc.stdout.readline().strip()


def test_stall_helper_holds_an_exclusive_lock_from_its_own_process(tmp_path: Path) -> None:
    path = tmp_path / "orders.sqlite3"
    db = sqlite3.connect(path, isolation_level=None, timeout=0.0)
    db.execute("PRAGMA journal_mode=WAL")  # as the server's store opens it
    db.execute("CREATE TABLE t (x INTEGER)")
    with subprocess.Popen([sys.executable, "-m", "loadtest.stall", str(path),
                           f"{time.time():.6f}", "2"], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True) as helper:
        try:
            held = _line(helper)
            assert held.startswith("held "), held
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                db.execute("INSERT INTO t VALUES (1)")
            released = _line(helper)
            assert released.startswith("released ")
            assert float(released.split()[1]) - float(held.split()[1]) >= 2.0
            assert helper.wait(timeout=30) == 0
        finally:
            if helper.poll() is None:
                helper.kill()
    db.execute("INSERT INTO t VALUES (2)")  # the lock is gone with the helper's rollback
    assert db.execute("SELECT count(*) FROM t").fetchone() == (1,)
    db.close()


@pytest.mark.parametrize(("args", "phrase"), [
    (["x"], "usage"),
    (["/nonexistent/orders.sqlite3", "0", "1"], "is not a file"),
    (["FILE", "soon", "1"], "AT_EPOCH 'soon' is not a number"),
    (["FILE", "0", "-1"], "SECONDS -1 is not within"),
    (["FILE", "0", "nan"], "SECONDS nan is not within"),
])
def test_stall_helper_refuses_bad_arguments(tmp_path: Path, args: list[str],
                                            phrase: str) -> None:
    path = tmp_path / "f.sqlite3"
    sqlite3.connect(path).close()
    args = [str(path) if a == "FILE" else a for a in args]
    out = subprocess.run([sys.executable, "-m", "loadtest.stall", *args], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 2 and phrase in out.stderr, out.stderr


# ------------------------------------------------------------------ real runs


def chaos_run(directory: Path, *args: str, sale: str = SMALL_SALE
              ) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """`livesell-loadtest run` of `sale` (a scenario's TOML) with `args`, in
    `directory`: what it printed and its report."""
    scenario = directory / "chaos_sale.toml"
    scenario.write_text(sale)
    out = subprocess.run([sys.executable, "-m", "loadtest", "run", str(scenario), "--quiet",
                          "--report-dir", str(directory / "r"), *args],
                         capture_output=True, text=True, timeout=300, cwd=directory)
    assert (directory / "r" / "report.json").exists(), (out.stdout, out.stderr)
    report: dict[str, Any] = json.loads((directory / "r" / "report.json").read_text())
    return out, report


def _fault(report: dict[str, Any], spec: str) -> dict[str, Any]:
    faults = {f["spec"]: f for f in report["measurements"]["chaos"]["faults"]}
    assert spec in faults, faults
    found: dict[str, Any] = faults[spec]
    return found


def _assert_checks_ran(out: subprocess.CompletedProcess[str], report: dict[str, Any]) -> None:
    """Every correctness check and both chaos verdicts are in the report and the
    summary, each passed or failed with its detail; the exit status says which."""
    names = {c["name"] for c in report["checks"]}
    assert names >= CORRECTNESS_CHECKS | CHAOS_CHECKS, names
    for c in report["checks"]:
        assert isinstance(c["ok"], bool) and c["detail"]
        assert (f"[ok  ] {c['name']}" if c["ok"] else f"[FAIL] {c['name']}: ") in out.stdout
    assert report["exit_code"] == out.returncode == (0 if report["ok"] else 1)
    assert ("all checks passed" if report["ok"] else "some checks FAILED") in out.stdout


def _assert_all_passed(out: subprocess.CompletedProcess[str], report: dict[str, Any]) -> None:
    failed = [c for c in report["checks"] if not c["ok"]]
    assert out.returncode == 0 and not failed, failed


@pytest.fixture(scope="module")
def kill_redis_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[
        subprocess.CompletedProcess[str], dict[str, Any], Path]:
    d = tmp_path_factory.mktemp("kill-redis")
    out, report = chaos_run(d, "--chaos", "kill-redis@2.5")
    return out, report, d


def test_kill_redis_is_injected_recorded_and_measured(
        kill_redis_run: tuple[subprocess.CompletedProcess[str], dict[str, Any], Path]) -> None:
    out, report, d = kill_redis_run
    f = _fault(report, "kill-redis@2.5")
    assert f["ok"] is True and f["fault"] == "kill-redis" and f["scheduled_s"] == 2.5
    assert f["injected_s"] >= 2.5 and isinstance(f["killed_pid"], int)
    assert f"SIGKILL sent to redis-server pid {f['killed_pid']}" == f["outcome"]
    # The buyers pressing after the kill were told to try again: the window is measured
    # from their answers, each code one of the failed-closed ones.
    # (The supervisor restarts Redis within a fraction of a second, so a run may see
    # no failed answer at all; when it does, each is a failed-closed code.)
    fc = f["failed_closed"]
    assert set(fc["by_code"]) <= FAILED_CLOSED
    if fc["count"]:
        assert f["injected_s"] <= fc["first_s"] <= fc["last_s"]
        assert fc["window_s"] == pytest.approx(fc["last_s"] - fc["first_s"], abs=0.002)
    rec = f["recovery"]
    assert rec["ready_endpoint"] in ("/api/ready", "/api/health")
    assert rec["buys_sent_after"] > 0
    assert {"first_hold_after_s", "first_buy_answered_after_s", "first_order_after_s",
            "ready_after_s", "viewers_back_after_s"} <= set(rec)
    assert "new_pid" in f  # None when no new redis-server came (see the xfail below)
    _assert_checks_ran(out, report)
    summary = out.stdout
    assert "chaos kill-redis@2.5 at " in summary and "failed closed: " in summary
    page = (d / "r" / "report.html").read_text()
    assert "<h2>Chaos</h2>" in page and "kill-redis@2.5" in page


def test_kill_redis_comes_back_with_a_new_redis_and_buys_recover(
        kill_redis_run: tuple[subprocess.CompletedProcess[str], dict[str, Any], Path]) -> None:
    _, report, _ = kill_redis_run
    f = _fault(report, "kill-redis@2.5")
    assert isinstance(f["new_pid"], int) and f["new_pid"] != f["killed_pid"]
    rec = f["recovery"]
    assert rec["first_hold_after_s"] is not None and rec["first_hold_after_s"] > 0
    # The supervisor brings Redis back within a fraction of a second: the probes may
    # or may not catch the process not ready; either way it is ready again.
    assert rec["ready_endpoint"] == "/api/ready" and rec["not_ready_probes"] >= 0
    assert rec["ready_after_s"] is not None


def test_kill_redis_every_check_passes(
        kill_redis_run: tuple[subprocess.CompletedProcess[str], dict[str, Any], Path]) -> None:
    out, report, _ = kill_redis_run
    _assert_all_passed(out, report)


@pytest.fixture(scope="module")
def stall_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[
        subprocess.CompletedProcess[str], dict[str, Any]]:
    out, report = chaos_run(tmp_path_factory.mktemp("stall"), "--chaos", "stall-store@1.5:2.5")
    return out, report


def test_stall_store_holds_the_lock_from_another_process_and_is_recorded(
        stall_run: tuple[subprocess.CompletedProcess[str], dict[str, Any]]) -> None:
    out, report = stall_run
    f = _fault(report, "stall-store@1.5:2.5")
    assert f["ok"] is True and f["duration_s"] == 2.5 and f["helper_exit"] == 0
    assert f["path"] == "orders.sqlite3" and isinstance(f["helper_pid"], int)
    assert f["held_from_s"] >= 1.5 - 0.001 and f["injected_s"] == f["held_from_s"]
    assert f["held_s"] >= 2.5 - 0.001
    assert f["held_to_s"] == pytest.approx(f["held_from_s"] + f["held_s"], abs=0.002)
    assert f"held by pid {f['helper_pid']} from " in f["outcome"]
    # No checkout sent while the lock was held was told "order placed" before the
    # lock was let go: the order has to be in the store first (a small allowance for
    # the helper printing its release time after the rollback).
    first_order = f["recovery"]["first_order_after_s"]
    if first_order is not None:
        assert first_order >= f["held_s"] - 0.25
    assert "failed_closed" in f and "first_hold_after_s" in f["recovery"]
    _assert_checks_ran(out, report)


def test_stall_store_every_check_passes(
        stall_run: tuple[subprocess.CompletedProcess[str], dict[str, Any]]) -> None:
    out, report = stall_run
    _assert_all_passed(out, report)


@pytest.fixture(scope="module")
def sigterm_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[
        subprocess.CompletedProcess[str], dict[str, Any]]:
    out, report = chaos_run(tmp_path_factory.mktemp("sigterm"), "--chaos", "sigterm@2.5")
    return out, report


def test_sigterm_restarts_the_server_and_the_viewers_come_back(
        sigterm_run: tuple[subprocess.CompletedProcess[str], dict[str, Any]]) -> None:
    out, report = sigterm_run
    f = _fault(report, "sigterm@2.5")
    assert f["ok"] is True and f["same_url"] is True
    assert isinstance(f["old_pid"], int) and isinstance(f["new_pid"], int)
    assert f["new_pid"] != f["old_pid"] and isinstance(f["exit_code"], int)
    assert f["new_redis_pid"] != f["old_redis_pid"] and "redis_outlived_server" not in f
    assert 0 <= f["exited_after_s"] <= f["restarted_after_s"]
    assert report["measurements"]["server"]["pid"] == f["new_pid"]
    rec = f["recovery"]
    # Every viewer lost its connection with the server and came back to the new one.
    assert rec["viewers_low"] < rec["viewers_before"] == 100
    assert rec["viewers_back_after_s"] is not None
    viewers = report["measurements"]["viewers"]
    assert viewers["reconnects"] >= 100 and viewers["joined"] == 100
    assert viewers["join_failures"] == 0 and viewers["join_failure_reasons"] == {}
    assert rec["ready_after_s"] is not None and rec["not_ready_probes"] > 0
    _assert_checks_ran(out, report)


def test_sigterm_drains_exits_0_closes_with_1012_and_every_check_passes(
        sigterm_run: tuple[subprocess.CompletedProcess[str], dict[str, Any]]) -> None:
    out, report = sigterm_run
    f = _fault(report, "sigterm@2.5")
    assert f["exit_code"] == 0
    assert set(report["measurements"]["viewers"]["close_codes"]) == {"1012"}
    _assert_all_passed(out, report)


@pytest.fixture(scope="module")
def worker_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[
        subprocess.CompletedProcess[str], dict[str, Any]]:
    out, report = chaos_run(tmp_path_factory.mktemp("worker"), "--server-processes", "2",
                             "--chaos", "kill-worker@2,flush-redis@3.5")
    return out, report


def test_kill_worker_and_flush_redis_in_one_run(
        worker_run: tuple[subprocess.CompletedProcess[str], dict[str, Any]]) -> None:
    out, report = worker_run
    assert report["settings"]["target"]["server_processes"] == 2
    k = _fault(report, "kill-worker@2")
    assert k["ok"] is True and k["killed_pid"] in k["workers_before"]
    assert len(k["workers_before"]) == 2
    # uvicorn's supervisor starts a new worker in place of the killed one.
    assert isinstance(k["new_pid"], int) and k["new_pid"] not in k["workers_before"]
    # The viewers connected to the killed worker lost their link and came back.
    assert report["measurements"]["viewers"]["reconnects"] > 0
    assert "1006" in report["measurements"]["viewers"]["close_codes"]
    fl = _fault(report, "flush-redis@3.5")
    assert fl["ok"] is True and fl["answer"] == "OK"
    host, port = fl["address"].rsplit(":", 1)
    assert host == "127.0.0.1" and int(port) > 0
    assert fl["injected_s"] >= k["injected_s"]
    # Each fault's answers are counted from its own injection to the next one's.
    assert k["failed_closed"]["last_s"] is None or k["failed_closed"]["last_s"] < fl[
        "injected_s"]
    _assert_checks_ran(out, report)


def test_kill_worker_and_flush_redis_every_check_passes(
        worker_run: tuple[subprocess.CompletedProcess[str], dict[str, Any]]) -> None:
    out, report = worker_run
    _assert_all_passed(out, report)
    fl = _fault(report, "flush-redis@3.5")
    # After a flush the server rebuilds from the store: no buyer is told the product
    # is gone.
    assert "product_not_found" not in fl["other_errors"]
