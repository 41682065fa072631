"""One real load-test run of the social scenario with small numbers against a
server the tool spawns on loopback: during a flash sale, 60 viewers start and
join groups of 3 of a 15-unit deal (10 s to fill: the server's least), vote
in a poll, and 3 of them share invite links that 12 others accept (from their
own 127.0.0.x addresses) before buying in the sale, with one reward per
inviter (K = 1). Every check must pass, the group, poll and referral checks
among them, and the report must show the groups that filled, the ones that
expired, the votes retried and refused, and the invites accepted, retried,
refused (already_invited, self_invite) and rewarded."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from loadtest.checks import (
    GROUP_COMPLETE,
    GROUP_EXPIRED,
    GROUP_ONE,
    GROUP_ORDERS,
    GROUP_UNITS,
    POLL_CHANGE,
    POLL_COUNTS,
    POLL_ONCE,
    REFERRAL_CAP,
    REFERRAL_EVENTS,
    REFERRAL_FIRST,
    REFERRAL_ONE,
    REFERRAL_PAID,
    REFERRAL_SELF,
)

# 14 participants, 6 of them starters: the 5 groups the 15 units allow at once need
# 10 joiners and 8 come, so at least one group expires; the sixth starter waits for
# units (deal_full) that lapsed holds or the expiry bring back. Referrals: 3
# inviters (all try their own link), 12 invitees (none of the 14 participants),
# 4 each, buying among 24 other buyers for 20 units; K = 1, so an inviter with
# two invitees who ordered has one paid and one capped.
SOCIAL = """
name = "small_social"

[viewers]
count = 60
join_rate_per_s = 300
latency_sample = 20
processes = 1

[run]
duration_s = 10
settle_timeout_s = 60

[sale]
enabled = true
units = 20
limit_per_buyer = 1
currency = "EUR"
countdown_s = 1
buyer_share = 0.4
checkout_share = 0.7
hold_seconds = 3
think_s = 0.2

[group_buy]
enabled = true
group_size = 3
group_price = 800
fill_s = 10
units = 15
participants = 14
start_share = 0.43
look_share = 0.5
act_within_s = 2
tries = 10
retry_interval_s = 0.5
checkout_share = 0.7
expired_checkout_share = 1.0

[poll]
enabled = true
duration_s = 8
voter_share = 0.8
vote_within_s = 4
retry_share = 0.25
change_share = 0.25
ask_share = 0.05
upvote_share = 0.3

[referral]
enabled = true
points = 50
max_rewards_per_inviter = 1
inviter_share = 0.05
invitee_share = 0.3
duplicate_share = 0.5
retry_share = 0.5
self_share = 1.0
accept_within_s = 0.5
"""
INVITERS, INVITEES, K = 3, 12, 1


def test_a_social_show_passes_every_check(tmp_path: Path) -> None:
    scenario = tmp_path / "small_social.toml"
    scenario.write_text(SOCIAL)
    report_dir = tmp_path / "r"
    out = subprocess.run([sys.executable, "-m", "loadtest", "run", str(scenario),
                          "--report-dir", str(report_dir), "--quiet"],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert (report_dir / "report.json").is_file(), (out.stdout, out.stderr)
    report: dict[str, Any] = json.loads((report_dir / "report.json").read_text())
    failed = [c for c in report["checks"] if not c["ok"]]
    assert out.returncode == 0 and not failed, (out.stdout, out.stderr, failed)
    assert report["ok"] is True and report["exit_code"] == 0
    names = {c["name"] for c in report["checks"]}
    assert {GROUP_COMPLETE, GROUP_ONE, GROUP_UNITS, GROUP_EXPIRED, GROUP_ORDERS, POLL_COUNTS,
            POLL_ONCE, POLL_CHANGE, REFERRAL_CAP, REFERRAL_ONE, REFERRAL_SELF, REFERRAL_FIRST,
            REFERRAL_PAID, REFERRAL_EVENTS, "sold <= stock", "left + held + sold = stock",
            "every hold ended (checked out, released or expired)"} <= names
    m = report["measurements"]
    (deal,) = m["group_deals"]
    assert deal["groups_complete"] >= 1 and deal["groups_expired"] >= 1, deal
    assert deal["groups_open_at_the_end"] == 0 and deal["final_held"] == 0
    assert deal["joins"].get("complete", 0) >= 1 and deal["starts"].get("open", 0) >= 1
    assert deal["orders"] >= 1 and deal["final_sold"] == deal["orders"]
    assert deal["checkouts"].get("expired: hold_expired", 0) >= 1
    (poll,) = m["polls"]
    assert poll["state"] == "closed" and poll["final_total"] == poll["answers"]["first: voted"]
    assert poll["answers"].get("retry: voted", 0) >= 1
    assert poll["answers"].get("change: already_voted", 0) >= 1
    # The flash sale ran beside them.
    assert m["outcomes"]["buy"].get("hold", 0) >= 1
    assert m["outcomes"]["ask"].get("asked", 0) >= 1
    # Referrals: every invitee accepted (its own address is not its inviter's), the
    # retries answered the same, the second links and own links refused.
    ref = m["referrals"]
    assert ref["program"] == {"reward": {"kind": "points", "points": 50},
                              "max_rewards_per_inviter": K}
    answers = ref["answers"]
    assert answers["invite: invite"] == INVITERS
    assert answers["self: self_invite"] == INVITERS
    assert answers["accept: invite_accepted"] == INVITEES, answers
    assert answers.get("retry: invite_accepted", 0) >= 1
    assert answers.get("duplicate: already_invited", 0) >= 1
    assert set(answers) == {"invite: invite", "self: self_invite", "accept: invite_accepted",
                            "retry: invite_accepted", "duplicate: already_invited"}, answers
    totals = ref["totals"]
    assert (totals["inviters"], totals["joins"]) == (INVITERS, INVITEES)
    # Every invitee pressed buy once its invites were answered; those who ordered
    # decided their inviter's reward, each announced to the room.
    assert sum(m["outcomes"]["invitee_buy"].values()) == INVITEES
    assert m["outcomes"]["invitee_buy"].get("hold", 0) >= 1
    assert totals["first_orders"] >= 1 and totals["rewards_paid"] >= 1
    assert totals["rewards_paid"] <= INVITERS * K
    assert ref["reward_events"].get("paid", 0) == totals["rewards_paid"]
    assert ref["rewards"].get("paid", 0) + ref["rewards"].get("capped", 0) == \
        totals["first_orders"]
    if totals["first_orders"] > INVITERS * K:  # some inviter had a second: capped
        assert ref["rewards"].get("capped", 0) >= 1, ref
