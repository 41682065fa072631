"""Trace replay planning: id binding, crowd scaling and speed, on small traces."""

from __future__ import annotations

import json
from typing import Any

from loadtest.scenario import BUNDLED_TRACES
from loadtest.trace import bind_ids, load_trace, parse_trace, replay_plan, scale_viewers

HEADER = {"kind": "livesell-trace", "version": 1, "room_id": "r_x", "started_at": 1000}


def _trace(*records: dict[str, Any]) -> str:
    return "\n".join(json.dumps(r) for r in (HEADER, *records)) + "\n"


def test_server_made_ids_bind_to_the_latest_object_created_before_use() -> None:
    text = _trace(
        {"t": 0, "actor": "host", "action": "coupon", "data": {"kind": "percent", "value": 5,
                                                               "count": 3}},
        {"t": 10, "actor": "host", "action": "coupon", "data": {"kind": "amount", "value": 5,
                                                                "count": 3}},
        {"t": 20, "actor": "viewer", "viewer": "v1", "action": "claim_coupon",
         "data": {"coupon_id": "c_second"}},
        {"t": 30, "actor": "viewer", "viewer": "v2", "action": "claim_coupon",
         "data": {"coupon_id": "c_first"}},
        {"t": 40, "actor": "host", "action": "lottery", "id": "l_given",
         "data": {"prize": "x", "duration_s": 5}},
        {"t": 50, "actor": "viewer", "viewer": "v2", "action": "enter_lottery",
         "data": {"lottery_id": "l_given"}},
        {"t": 60, "actor": "viewer", "viewer": "v1", "action": "buy",
         "data": {"product_id": "never_made"}},
        {"t": 70, "actor": "host", "action": "draw", "data": {"lottery_id": "l_unknown"}},
    )
    trace = parse_trace(text, "t.jsonl")
    binding, implicit, unresolved = bind_ids(trace)
    assert binding[3] == ("coupon", "c_second")  # line 3: the second drop, the newest at t=20
    assert binding[2] == ("coupon", "c_first")
    assert binding[6] == ("lottery", "l_given")  # the explicit "id" on the creating record
    assert implicit == ["never_made"]
    assert unresolved == ["lottery l_unknown"]


def test_scaling_keeps_the_burst_shape_up_and_samples_down() -> None:
    up = scale_viewers(["a", "b", "c"], 8, seed=1)
    assert [len(v) for v in up.values()] == [3, 3, 2]
    assert sorted(i for v in up.values() for i in v) == list(range(8))
    down = scale_viewers(["a", "b", "c", "d"], 2, seed=1)
    assert len(down) == 2 and sorted(i for v in down.values() for i in v) == [0, 1]
    assert scale_viewers(["a", "b", "c", "d"], 2, seed=1) == down  # seeded


def test_replay_plan_divides_time_by_speed_and_copies_actions() -> None:
    text = _trace(
        {"t": 0, "actor": "host", "action": "announce", "data": {"text": "hi"}},
        {"t": 1000, "actor": "viewer", "viewer": "v1", "action": "buy",
         "data": {"type": "buy", "product_id": "mug"}},
        {"t": 2000, "actor": "viewer", "viewer": "v2", "action": "chat",
         "data": {"length": 12}},
    )
    plan = replay_plan(parse_trace(text, "t.jsonl"), viewers=4, speed=2.0, seed=1)
    assert plan.viewer_count == 4 and plan.duration_ms == 1000.0
    buys = [s for s in plan.viewers if s.action == "buy"]
    assert len(buys) == 2 and {s.t_ms for s in buys} == {500.0}
    assert buys[0].data == {"product_id": "mug"}  # the frame's own "type" is dropped
    assert plan.host[0].action == "announce"
    assert plan.implicit_products == ["mug"]


def test_the_bundled_sample_trace_is_valid() -> None:
    trace = load_trace(BUNDLED_TRACES["sample"])
    assert len(trace.viewers) == 40 and trace.duration_ms > 5000
    binding, implicit, unresolved = bind_ids(trace)
    assert not implicit and not unresolved
    assert {kind for kind, _ in binding.values()} == {"product", "sale", "coupon", "lottery"}


def test_a_version_1_pin_replays_as_it_was_recorded_before_buy_it_now() -> None:
    pin = {"t": 0, "actor": "host", "action": "pin", "data": {"product_id": "p1"}}
    old = parse_trace(_trace(pin), "old.jsonl")
    assert old.records[0].data == {"product_id": "p1", "open_for_sale": False}
    new_header = json.dumps({**HEADER, "version": 2})
    new = parse_trace(new_header + "\n" + json.dumps(pin) + "\n", "new.jsonl")
    assert new.records[0].data == {"product_id": "p1"}  # the server's default: open
