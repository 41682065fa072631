"""The chaos part of a run's report, pure: from the fault records
(loadtest/chaos_spec.py) and every timed buy and checkout answer of the
generators to the report's `measurements.chaos` section, its two verdicts
(every scheduled fault was injected; the server recovered after every fault),
and one fault in words for the printed summary and report.html.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any, Final

from loadtest.chaos_spec import RECOVERY_TIMEOUT_S, Fault, FaultRecord, fmt_seconds
from loadtest.checks import Check

# Answers that say the server refused to act because a part it needs is down: the
# promise is to fail closed like this, not to hang, crash or guess.
FAILED_CLOSED: Final = frozenset({"unavailable", "store_unavailable"})
# No answer in time, or a fault the server did not expect.
NOT_ANSWERED: Final = frozenset({"timeout", "internal"})
SUCCESS: Final = {"buy": "hold", "checkout": "order_placed"}


# (sent, answered: seconds since the show started; action "buy" or "checkout";
# outcome: "hold", "order_placed" or the error code)
Answer = tuple[float, float, str, str]


def _r(x: float | None) -> float | None:
    return round(x, 3) if x is not None else None


def summarize(records: Sequence[FaultRecord], scheduled: Sequence[Fault],
              answers: Sequence[Answer], spec: str) -> tuple[dict[str, Any], list[Check]]:
    """The report's `chaos` section and its verdicts, from the fault records and
    every timed buy and checkout answer of the run.

    Per fault: the answers that failed closed (codes in FAILED_CLOSED) from its
    injection to the next fault's, with the first and last and their count; and
    recovery: from the injection to the first buy *sent after it* that got a
    hold (and that the ledger answered at all, e.g. sold_out once the stock is
    gone), to the first checkout sent after it that placed an order, and to
    /api/ready answering 200 again (measured while the run went on)."""
    missing = Counter(scheduled) - Counter(r.fault for r in records)
    all_records = [*records, *(FaultRecord(f, outcome="not injected: the run ended first")
                               for f in missing.elements())]
    injected = sorted(r.injected_s for r in all_records if r.injected_s is not None)
    faults_out = []
    for rec in sorted(all_records, key=lambda r: r.fault.at_s):
        entry: dict[str, Any] = {
            "fault": rec.fault.kind, "spec": rec.fault.label,
            "scheduled_s": rec.fault.at_s, "injected_s": _r(rec.injected_s),
            "late_s": _r(rec.injected_s - rec.fault.at_s) if rec.injected_s is not None
            else None,
            "ok": rec.ok, "outcome": rec.outcome, **rec.details,
        }
        if rec.fault.kind == "stall-store":
            entry["duration_s"] = rec.fault.duration_s
        if rec.injected_s is not None:
            entry.update(_answers_around(rec, injected, answers))
        faults_out.append(entry)
    failed_total = sum(1 for a in answers if a[3] in FAILED_CLOSED)
    section = {
        "spec": spec,
        "clock": "seconds since the show started",
        "failed_closed_codes": sorted(FAILED_CLOSED),
        "answers_timed": len(answers),
        "failed_closed_answers": failed_total,
        "faults": faults_out,
    }
    return section, _verdicts(faults_out)


def _answers_around(rec: FaultRecord, injected: list[float],
                    answers: Sequence[Answer]) -> dict[str, Any]:
    start = rec.injected_s
    assert start is not None
    later = [t for t in injected if t > start]
    end = later[0] if later else float("inf")
    window = [a for a in answers if start <= a[1] < end]
    failed = [a for a in window if a[3] in FAILED_CLOSED]
    first = min((a[1] for a in failed), default=None)
    last = max((a[1] for a in failed), default=None)
    sent_after = [a for a in answers if a[0] >= start]

    def first_answer(ok: Callable[[Answer], bool]) -> float | None:
        t = min((a[1] for a in sent_after if ok(a)), default=None)
        return _r(t - start) if t is not None else None

    buys_after = sum(1 for a in sent_after if a[2] == "buy")
    checkouts_after = sum(1 for a in sent_after if a[2] == "checkout")
    return {
        "failed_closed": {
            "count": len(failed),
            "by_action": dict(Counter(a[2] for a in failed)),
            "by_code": dict(Counter(a[3] for a in failed)),
            "first_s": _r(first), "last_s": _r(last),
            "window_s": _r(last - first) if first is not None and last is not None else None,
            "first_after_injection_s": _r(first - start) if first is not None else None,
            "last_after_injection_s": _r(last - start) if last is not None else None,
        },
        # Everything else that was not a success: business refusals (sold_out), no
        # answer (timeout), and answers a fault should not cause (product_not_found
        # after Redis lost its data).
        "other_errors": dict(Counter(a[3] for a in window if a[3] not in FAILED_CLOSED
                                     and a[3] != SUCCESS.get(a[2]))),
        "answers_until_next_fault": len(window),
        "recovery": {
            **rec.recovery,
            "buys_sent_after": buys_after,
            "first_hold_after_s": first_answer(
                lambda a: a[2] == "buy" and a[3] == SUCCESS["buy"]),
            "first_buy_answered_after_s": first_answer(
                lambda a: a[2] == "buy" and a[3] not in FAILED_CLOSED | NOT_ANSWERED),
            "checkouts_sent_after": checkouts_after,
            "first_order_after_s": first_answer(
                lambda a: a[2] == "checkout" and a[3] == SUCCESS["checkout"]),
        },
    }


def _verdicts(faults: list[dict[str, Any]]) -> list[Check]:
    not_in = [f"{f['spec']}: {f['outcome'] or 'not injected'}" for f in faults if not f["ok"]]
    injected = Check("chaos: every scheduled fault was injected", not not_in,
                     "; ".join(not_in) if not_in else
                     f"{len(faults)} fault(s) injected: " + ", ".join(
                         f"{f['spec']} at {f['injected_s']:.2f}s" for f in faults))
    problems = []
    for f in faults:
        if f["injected_s"] is None:
            continue
        rec = f.get("recovery", {})
        if f.get("redis_outlived_server"):
            problems.append(f"{f['spec']}: redis-server pid {f['redis_outlived_server']} "
                            "outlived its server")
        if rec.get("ready_after_s") is None:
            watched = rec.get("ready_watched_s")
            within = (f"within {fmt_seconds(RECOVERY_TIMEOUT_S)}s"
                      if watched is None or watched >= RECOVERY_TIMEOUT_S else
                      f"in the {watched:.1f}s watched before the run ended")
            problems.append(f"{f['spec']}: {rec.get('ready_endpoint', '/api/ready')} did not "
                            f"answer 200 again {within}")
        if rec.get("buys_sent_after") and rec.get("first_buy_answered_after_s") is None:
            problems.append(f"{f['spec']}: {rec['buys_sent_after']} buy(s) sent after the "
                            "fault, none answered by the ledger (only failed-closed or no "
                            "answers)")
    recovered = Check("chaos: the server recovered after every fault", not problems,
                      "; ".join(problems) if problems else
                      "ready again and buys answered after every injected fault")
    return [injected, recovered]


def _secs(x: Any) -> str:
    return f"{x:.2f}s" if isinstance(x, int | float) else "-"


def describe(entry: dict[str, Any]) -> dict[str, str]:
    """One fault of the report's `chaos` section in words: what went in, how
    long answers failed closed, and the recovery (for the summary and the page)."""
    fc = entry.get("failed_closed")
    rec = entry.get("recovery", {})
    when = (f"at {_secs(entry['injected_s'])} (scheduled {fmt_seconds(entry['scheduled_s'])}s)"
            if entry.get("injected_s") is not None else
            f"scheduled {fmt_seconds(entry['scheduled_s'])}s")
    what = entry.get("outcome") or "not injected"
    if entry.get("fault") in ("kill-redis", "kill-worker") and "new_pid" in entry:
        who = "redis-server" if entry["fault"] == "kill-redis" else "worker"
        what += (f"; new {who} pid {entry['new_pid']} after {_secs(entry['new_pid_after_s'])}"
                 if entry["new_pid"] else f"; no new {who} seen")
    if entry.get("fault") == "kill-server" and entry.get("injected_s") is not None:
        down = entry.get("balancer_marked_down_after_s")
        what += (f"; the balancer marked it DOWN after {_secs(down)}" if down is not None
                 else "; the balancer did not mark it DOWN")
        if entry.get("sessions_after"):
            what += "; sessions after: " + ", ".join(
                f"{k} {v}" for k, v in sorted(entry["sessions_after"].items()))
    if fc is None:
        failed = "-"
    elif not fc["count"]:
        failed = "no answer failed closed"
    else:
        by = ", ".join(f"{k} {v}" for k, v in sorted(fc["by_action"].items()))
        failed = (f"{fc['count']} answer(s) ({by}) from {_secs(fc['first_s'])} to "
                  f"{_secs(fc['last_s'])} ({_secs(fc['window_s'])})")
    if entry.get("other_errors"):
        failed += "; other errors until the next fault: " + ", ".join(
            f"{k} {v}" for k, v in sorted(entry["other_errors"].items()))
    parts = []
    if fc is not None:
        if rec.get("first_hold_after_s") is not None:
            parts.append(f"first hold {_secs(rec['first_hold_after_s'])} after")
        elif rec.get("first_buy_answered_after_s") is not None:
            parts.append(f"first buy answered {_secs(rec['first_buy_answered_after_s'])} "
                         "after (no hold)")
        elif rec.get("buys_sent_after"):
            parts.append(f"none of {rec['buys_sent_after']} buy(s) sent after was answered")
        else:
            parts.append("no buy sent after")
        if rec.get("first_order_after_s") is not None:
            parts.append(f"first order {_secs(rec['first_order_after_s'])} after")
        if "ready_endpoint" in rec:
            if rec.get("ready_after_s") is None:
                parts.append(f"{rec['ready_endpoint']} not 200 again")
            elif not rec.get("not_ready_probes"):
                parts.append(f"{rec['ready_endpoint']} 200 throughout")
            else:
                parts.append(f"{rec['ready_endpoint']} 200 again after "
                             f"{_secs(rec['ready_after_s'])}")
        if rec.get("viewers_back_after_s") is not None:
            parts.append(f"viewers back ({rec['viewers_before']}, low {rec['viewers_low']}) "
                         f"after {_secs(rec['viewers_back_after_s'])}")
        elif "viewers_low" in rec and rec["viewers_low"] < rec["viewers_before"]:
            parts.append(f"viewers not all back ({rec['viewers_low']} of "
                         f"{rec['viewers_before']} at the lowest)")
    return {"fault": entry["spec"], "when": when, "what": what, "failed_closed": failed,
            "recovery": "; ".join(parts) or "-"}
