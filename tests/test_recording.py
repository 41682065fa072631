"""Recording a show's timeline to a JSONL trace, without secrets."""

from __future__ import annotations

import asyncio
import re

import httpx
import orjson

from tests.support import LiveServer, create_room, join


async def test_recorded_trace_holds_the_timeline_and_no_secrets(
        server: LiveServer, http: httpx.AsyncClient) -> None:
    host = await create_room(http)
    unrecorded = await host.product(stock=1)
    r = await http.get(f"/api/rooms/{host.room_id}/trace", headers={"X-Host-Key": host.key})
    assert r.status_code == 404
    await host.call("POST", "/recording", {"enabled": True}, expect=200)
    product = await host.product(stock=5, price=900)
    await host.call("POST", "/pins", {"product_id": product["product_id"]}, expect=200)
    await host.sale(product["product_id"], units=5, limit=2)
    viewer = await join(server, host.room_id)
    await viewer.send({"type": "chat", "text": "secret words"})
    hold = await viewer.request("buy", product_id=product["product_id"], quantity=2)
    await viewer.request("checkout", hold_id=hold["hold"]["id"])
    await viewer.close()
    await asyncio.sleep(0.2)
    r = await http.get(f"/api/rooms/{host.room_id}/trace", headers={"X-Host-Key": host.key})
    assert r.status_code == 200
    text = r.text
    lines = [orjson.loads(line) for line in text.splitlines()]
    header, entries = lines[0], lines[1:]
    assert header["kind"] == "livesell-trace" and header["room_id"] == host.room_id
    actions = [(e["actor"], e["action"]) for e in entries]
    assert actions[:3] == [("host", "product"), ("host", "pin"), ("host", "sale")]
    assert entries[0]["id"] == product["product_id"]
    assert entries[1]["data"] == {"product_id": product["product_id"]}
    assert entries[2]["id"].startswith("s_") and "id" not in entries[2]["data"]
    assert ("viewer", "join") in actions and ("viewer", "leave") in actions
    assert ("viewer", "buy") in actions and ("viewer", "checkout") in actions
    chat = next(e for e in entries if e["action"] == "chat")
    assert chat["data"] == {"length": len("secret words")}
    buy = next(e for e in entries if e["action"] == "buy")
    assert buy["data"]["quantity"] == 2 and "request_id" not in buy["data"]
    assert [e["t"] for e in entries] == sorted(e["t"] for e in entries)
    for secret in (host.key, viewer.token, viewer.viewer_id, "secret words"):
        assert secret not in text
    assert unrecorded["product_id"] not in text
    # Switched off, nothing more is written.
    await host.call("POST", "/recording", {"enabled": False}, expect=200)
    await host.call("POST", "/announcements", {"text": "not recorded"}, expect=201)
    r = await http.get(f"/api/rooms/{host.room_id}/trace", headers={"X-Host-Key": host.key})
    assert r.text == text
    bad = await host.call("POST", "/recording", {"enabled": "yes"}, expect=400)
    assert "enabled" in bad["error"]["message"]


async def test_lottery_keywords_are_kept_only_as_keyed_stand_ins(
        server: LiveServer, http: httpx.AsyncClient) -> None:
    host = await create_room(http)
    await host.call("POST", "/recording", {"enabled": True}, expect=200)
    lottery = await host.call("POST", "/lotteries", {
        "prize": "Cap", "duration_s": 60, "entry": "keyword", "keyword": "secret-word-123"},
        expect=201)
    lid = lottery["lottery_id"]
    right, wrong = await join(server, host.room_id), await join(server, host.room_id)
    entered = await right.request("enter_lottery", lottery_id=lid,
                                  keyword="I say SECRET-word-123 now")
    assert entered["type"] == "lottery_entered", entered
    refused = await wrong.request("enter_lottery", lottery_id=lid, keyword="my-guess-777")
    assert refused["code"] == "not_eligible", refused
    await right.close()
    await wrong.close()
    r = await http.get(f"/api/rooms/{host.room_id}/trace", headers={"X-Host-Key": host.key})
    assert r.status_code == 200
    text = r.text.lower()
    for typed in ("secret-word-123", "my-guess-777", "i say"):
        assert typed not in text
    entries = [orjson.loads(line) for line in r.text.splitlines()[1:]]
    opened = next(e for e in entries if e["action"] == "lottery")
    stand_in = opened["data"]["keyword"]
    assert stand_in.startswith("kw-") and opened["data"]["entry"] == "keyword"
    tries = [e["data"] for e in entries if e["action"] == "enter_lottery"]
    assert len(tries) == 2 and all(t["lottery_id"] == lid for t in tries)
    # The matching entry replays with the lottery's stand-in; the wrong guess with a
    # stand-in that does not contain it, so a replay refuses it too.
    assert sorted(stand_in in t["keyword"] for t in tries) == [False, True]


async def test_every_recorded_host_action_can_be_read_back_and_replayed(
        server: LiveServer) -> None:
    """Each route recorded as a show change names an action the trace reader and the
    replayer know: a trace of any show replays, with no action left behind."""
    import inspect

    from loadtest import replay as replay_module
    from loadtest import trace
    from server.features import recorder

    recorded = {r.record_as for r in server.services.show.registry.routes
                if r.record_as is not None}
    assert recorded == trace.HOST_ACTIONS == recorder.HOST_ACTIONS
    replay = inspect.getsource(replay_module)
    handled = set(re.findall(r'act == "([a-z_]+)"', replay))
    for group in re.findall(r"act in \(([^)]*)\)", replay):
        handled |= set(re.findall(r'"([a-z_]+)"', group))
    assert recorded <= handled, sorted(recorded - handled)
