"""The `[referral]` scenario section: every key typed and ranged, the rules that
join keys refused with a message naming the key, the bundled social numbers
(10 inviters, 100 invitees, K = 3), who invites and who is invited in each
generator process, and the parent's pure helpers (the decisions still to come,
the events merged across processes, the report's figures)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from loadtest.model import ReferralAnswer, ReferralEvent, ReferralRecord, RunData
from loadtest.referrals import figures, invitee_source, merge_events, program_body, undecided
from loadtest.scenario import (
    Scenario,
    ScenarioError,
    build_scenario,
    load_scenario_file,
    referral_roles,
    resolve,
    with_overrides,
)
from loadtest.viewer import loopback_source

SALE = "[sale]\nenabled = true\ncountdown_s = 3\n"


@pytest.mark.parametrize(("toml", "phrases"), [
    ("[referral]\nenabled = 'yes'\n", ["referral.enabled", "expected true or false"]),
    ("[referral]\npoints = 0\n", ["referral.points", "below the minimum 1"]),
    ("[referral]\npoints = 100001\n", ["referral.points", "above the maximum 100000"]),
    ("[referral]\npoints = 'lots'\n", ["referral.points", "expected an integer", "'lots'"]),
    ("[referral]\nmax_rewards_per_inviter = 0\n",
     ["referral.max_rewards_per_inviter", "below the minimum 1"]),
    ("[referral]\nmax_rewards_per_inviter = 1001\n",
     ["referral.max_rewards_per_inviter", "above the maximum 1000"]),
    ("[referral]\nmax_rewards_per_inviter = 2.5\n",
     ["referral.max_rewards_per_inviter", "expected an integer, got 2.5"]),
    ("[referral]\ninviter_share = 1.5\n", ["referral.inviter_share", "above the maximum 1.0"]),
    ("[referral]\ninvitee_share = -0.1\n", ["referral.invitee_share", "below the minimum 0.0"]),
    ("[referral]\nduplicate_share = 'half'\n",
     ["referral.duplicate_share", "expected a number", "'half'"]),
    ("[referral]\nretry_share = 2\n", ["referral.retry_share", "above the maximum 1.0"]),
    ("[referral]\nself_share = true\n", ["referral.self_share", "expected a number"]),
    ("[referral]\naccept_within_s = -1\n", ["referral.accept_within_s", "below the minimum"]),
    ("[referral]\ninviters = 3\n", ["unknown key referral.inviters"]),
    ("[referral]\nenabled = true\n", ["referral.enabled", "set sale.enabled = true"]),
    (SALE + "[referral]\nenabled = true\ninviter_share = 0.001\n",
     ["referral.inviter_share: 0.001 of viewers.count 200 makes no inviter"]),
    (SALE + "[referral]\nenabled = true\ninvitee_share = 0.001\n",
     ["referral.invitee_share: 0.001 of the 192 viewer(s) that are neither inviters nor "
      "group-deal participants makes no invitee"]),
    (SALE + "[referral]\nenabled = true\ninviter_share = 0.005\nduplicate_share = 0.2\n",
     ["referral.duplicate_share: 0.2 needs a second inviter, and referral.inviter_share "
      "makes 1"]),
    (SALE + "[referral]\nenabled = true\naccept_within_s = 3\n",
     ["referral.accept_within_s: 3.0 is not before the sale opens (sale.countdown_s 3.0)"]),
])
def test_bad_referral_values_are_refused_naming_the_key(toml: str, phrases: list[str]) -> None:
    with pytest.raises(ScenarioError) as err:
        build_scenario(tomllib.loads(toml), "bad.toml")
    for phrase in phrases:
        assert phrase in str(err.value), str(err.value)
    assert str(err.value).startswith("bad.toml: ")


def test_a_bad_referral_file_exits_2_and_starts_nothing(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(SALE + "[referral]\nenabled = true\nmax_rewards_per_inviter = 0\n")
    out = subprocess.run([sys.executable, "-m", "loadtest", "run", str(path), "--report-dir",
                          str(tmp_path / "r")], capture_output=True, text=True, timeout=120,
                         cwd=tmp_path)
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert "bad.toml: referral.max_rewards_per_inviter: 0 is below the minimum 1" in out.stderr
    assert not (tmp_path / "r").exists()


def test_the_bundled_social_scenario_runs_referrals() -> None:
    social = load_scenario_file(resolve("social"))
    r = social.referral
    assert r.enabled and (r.points, r.max_rewards_per_inviter) == (50, 3)
    inviters, invitees = referral_roles(social, list(range(social.viewers.count)))
    assert (len(inviters), len(invitees)) == (10, 100)
    assert social.to_dict()["referral"]["max_rewards_per_inviter"] == 3
    # Fewer viewers: the group deal's own rule still speaks first.
    with pytest.raises(ScenarioError, match=r"group_buy.participants: 100 is above"):
        with_overrides(social, viewers=50)
    # The command line's overrides go through the referral rules too.
    no_groups = dataclasses.replace(social, group_buy=dataclasses.replace(
        social.group_buy, enabled=False))
    with pytest.raises(ScenarioError, match=r"referral.inviter_share: 0.02 of viewers.count "
                                            r"40 makes no inviter"):
        with_overrides(no_groups, viewers=40)


def test_roles_split_each_process_and_leave_group_participants_out() -> None:
    s = build_scenario({"sale": {"enabled": True},
                        "group_buy": {"enabled": True, "participants": 20},
                        "referral": {"enabled": True, "inviter_share": 0.1,
                                     "invitee_share": 0.5}}, "inline")
    indices = list(range(1, 200, 2))  # process 1 of 2: its own 100 viewers
    inviters, invitees = referral_roles(s, indices)
    assert len(inviters) == 10 and set(inviters) <= set(indices)
    assert not set(inviters) & set(invitees)
    assert all(i >= 20 for i in invitees) and set(invitees) <= set(indices)
    others = [i for i in indices if i not in inviters and i >= 20]
    assert len(invitees) == len(others) // 2


def test_addresses_are_loopback_only() -> None:
    assert invitee_source(0) == "127.0.0.3"
    assert invitee_source(247) == "127.0.0.250"
    assert invitee_source(248) == "127.0.0.3"
    assert loopback_source("127.0.0.5") == "127.0.0.5"
    for bad in ("10.0.0.5", "192.168.1.2", "::1", "0.0.0.0", "localhost", "128.0.0.1"):
        with pytest.raises(ValueError, match="source address"):
            loopback_source(bad)


def _tree(invitees: list[dict[str, object]]) -> dict[str, object]:
    return {"program": None, "totals": {}, "inviters": [
        {"viewer_id": "ada", "nickname": "lt1", "invites_sent": 1, "joins": len(invitees),
         "first_orders": 0, "rewards_paid": 0, "invitees": invitees}]}


def test_the_decisions_still_to_come_are_the_invitees_orders_since_joining() -> None:
    tree = _tree([
        {"viewer_id": "va", "joined_at": 100, "order_id": None, "reward": None},
        {"viewer_id": "vb", "joined_at": 100, "order_id": "o2", "reward": "paid"},
        {"viewer_id": "vc", "joined_at": 100, "order_id": None, "reward": None},
    ])
    orders = [{"order_id": "o1", "buyer_id": "va", "created_at": 150, "status": "placed"},
              {"order_id": "o2", "buyer_id": "vb", "created_at": 160, "status": "placed"},
              {"order_id": "o3", "buyer_id": "vc", "created_at": 90, "status": "placed"},
              {"order_id": "o4", "buyer_id": "stranger", "created_at": 170}]
    assert undecided(tree, orders) == ["va"]
    assert undecided(tree, orders[1:]) == []


def test_events_merge_once_per_seq_and_content_and_figures_sum_them() -> None:
    paid = {"seq": 7, "type": "referral_reward", "inviter": "ada", "state": "paid",
            "reward": {"kind": "points", "points": 50}}
    merged = merge_events([[ReferralEvent(7, "ada", "paid", dict(paid), 3)],
                           [ReferralEvent(7, "ada", "paid", dict(paid), 2),
                            ReferralEvent(9, "ada", "reversed", {**paid, "seq": 9,
                                                                 "state": "reversed"})]])
    assert [(e.seq, e.receipts) for e in merged] == [(7, 5), (9, 1)]
    d = RunData(referral=ReferralRecord(
        program=program_body(load_scenario_file(resolve("social")).referral),
        tree={**_tree([{"viewer_id": "va", "joined_at": 1, "order_id": "o1",
                        "reward": "paid"}]), "totals": {"rewards_paid": 1}}),
        referral_answers=[ReferralAnswer("ada", "invite", "ada", "invite"),
                          ReferralAnswer("va", "accept", "ada", "invite_accepted", "lt1"),
                          ReferralAnswer("va", "retry", "ada", "invite_accepted", "lt1")],
        referral_events=merged)
    fig = figures(d)
    assert fig["program"] == {"reward": {"kind": "points", "points": 50},
                              "max_rewards_per_inviter": 3}
    assert (fig["inviters_with_a_link"], fig["invitees_told_accepted"]) == (1, 1)
    assert fig["answers"] == {"accept: invite_accepted": 1, "invite: invite": 1,
                              "retry: invite_accepted": 1}
    assert fig["rewards"] == {"paid": 1}
    assert fig["reward_events"] == {"paid": 1, "reversed": 1}
    assert fig["events_received"] == 6
    assert figures(RunData()) == {}
    assert Scenario().referral.enabled is False
