"""A trace the server really recorded replays through the load tester with every
check passing (the recorder and the replayer agree on the format)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from loadtest.trace import parse_trace
from tests.loadtest.test_runs import _assert_all_passed, _report, _run
from tests.support import LiveServer, create_room, join


async def test_a_recorded_show_replays_and_passes(server: LiveServer, http: httpx.AsyncClient,
                                                  tmp_path: Path) -> None:
    host = await create_room(http)
    await host.call("POST", "/recording", {"enabled": True}, expect=200)
    product = await host.product(stock=20, price=1500)
    await host.call("PATCH", f"/products/{product['product_id']}", {"stock": 12}, expect=200)
    await host.call("POST", "/pins", {"product_id": product["product_id"]}, expect=200)
    await host.sale(product["product_id"], units=10, limit=2, duration_s=30)
    drop = await host.call("POST", "/coupons", {"kind": "percent", "value": 10, "count": 3},
                           expect=201)
    # A keyword lottery: the trace keeps the keyword only as a keyed stand-in, and
    # the replay still enters with it.
    lottery = await host.call("POST", "/lotteries", {"prize": "Mug", "duration_s": 60,
                                                     "entry": "keyword",
                                                     "keyword": "Secret-Word-123"},
                              expect=201)
    # Gaps as in a real show, so the replay keeps the order of host and viewers.
    await asyncio.sleep(0.5)
    viewers = [await join(server, host.room_id) for _ in range(4)]
    for v in viewers:
        hold = await v.request("buy", product_id=product["product_id"], quantity=2)
        if v is viewers[0]:
            await v.request("claim_coupon", coupon_id=drop["coupon_id"])
            await v.request("checkout", hold_id=hold["hold"]["id"],
                            coupon_id=drop["coupon_id"])
        else:
            await v.request("checkout", hold_id=hold["hold"]["id"])
        entered = await v.request("enter_lottery", lottery_id=lottery["lottery_id"],
                                  keyword="secret-word-123 please")
        assert entered["type"] == "lottery_entered", entered
        await v.send({"type": "chat", "text": "hi"})
        await v.send({"type": "like", "count": 3})
    await asyncio.sleep(0.5)
    await host.call("POST", f"/lotteries/{lottery['lottery_id']}/draw", expect=200)
    await asyncio.gather(*(v.close() for v in viewers))
    await asyncio.sleep(0.2)
    r = await http.get(f"/api/rooms/{host.room_id}/trace", headers={"X-Host-Key": host.key})
    assert r.status_code == 200
    assert "secret-word-123" not in r.text.lower()
    trace = parse_trace(r.text, "recorded")
    assert {rec.action for rec in trace.records} >= {"product", "update_product", "sale",
                                                     "buy", "checkout", "draw"}
    path = tmp_path / "recorded.jsonl"
    path.write_text(r.text)
    out = await asyncio.to_thread(_run, str(path), "--viewers", "8", "--speed", "1",
                                  "--report-dir", str(tmp_path / "r"), cwd=tmp_path)
    report = _report(tmp_path / "r")
    _assert_all_passed(out, report)
    outcomes = report["measurements"]["outcomes"]
    assert outcomes["checkout"]["order_placed"] > 0
    assert outcomes["enter_lottery"]["lottery_entered"] > 0
