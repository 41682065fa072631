"""Editing a room after it was made (PATCH /api/rooms/{room_id}: its title and
stream) and listing the active mutes (GET …/moderation/mutes), against a real
server, Redis and SQLite store: the declared shape's refusals, the host key, the
end of the show, viewers told by `room_updated`, and the change kept in the store
across a restart and a Redis rebuild."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx

from server.core import domain
from tests.support import (
    Host,
    LiveServer,
    create_room,
    eventually,
    join,
    lose_redis_data,
    make_settings,
)

STREAM = "https://cdn.example.com/live/part-2.m3u8"


async def patch(host: Host, body: Any, key: str | None = "host") -> httpx.Response:
    headers = {"X-Host-Key": host.key} if key == "host" else \
        ({"X-Host-Key": key} if key else {})
    return await host.http.patch(f"/api/rooms/{host.room_id}", json=body, headers=headers)


async def room_of(http: httpx.AsyncClient, room_id: str) -> dict[str, Any]:
    r = await http.get(f"/api/rooms/{room_id}")
    assert r.status_code == 200, r.text
    room: dict[str, Any] = r.json()["room"]
    return room


def refused(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, (r.status_code, r.text)
    error: dict[str, Any] = r.json()["error"]
    assert error["code"] == code, error
    return error


async def test_the_host_edits_title_and_stream_and_viewers_hear_it(
        server: LiveServer, http: httpx.AsyncClient) -> None:
    host = await create_room(http, "First title")
    viewer = await join(server, host.room_id)
    snap = await viewer.next_event("snapshot")
    assert (snap["room"]["title"], snap["room"]["stream_url"]) == ("First title", "")

    r = await patch(host, {"title": "  Second title  ", "stream_url": STREAM})
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["room_id"] == host.room_id
    assert (answer["title"], answer["stream_url"], answer["state"]) == \
        ("Second title", STREAM, "live")
    assert answer["ended_at"] is None and answer["created_at"] == snap["room"]["created_at"]
    event = await viewer.next_event("room_updated")
    assert event == {"seq": event["seq"], "type": "room_updated", "room_id": host.room_id,
                     "title": "Second title", "stream_url": STREAM, "ts": event["ts"]}
    assert event["seq"] > snap["seq"]
    room = await room_of(http, host.room_id)
    assert (room["title"], room["stream_url"]) == ("Second title", STREAM)

    # One field at a time: the other is kept, and the event carries both.
    r = await patch(host, {"title": "Third title"})
    assert r.status_code == 200, r.text
    event = await viewer.next_event("room_updated")
    assert (event["title"], event["stream_url"]) == ("Third title", STREAM)
    # An empty stream takes the video away; the title stays.
    r = await patch(host, {"stream_url": ""})
    assert r.status_code == 200, r.text
    event = await viewer.next_event("room_updated")
    assert (event["title"], event["stream_url"]) == ("Third title", "")
    # A viewer joining now gets it in the snapshot; the public list has it too.
    late = await join(server, host.room_id)
    late_snap = await late.next_event("snapshot")
    assert (late_snap["room"]["title"], late_snap["room"]["stream_url"]) == ("Third title", "")
    listed = (await http.get("/api/rooms")).json()["rooms"]
    assert [(x["title"], x["stream_url"]) for x in listed if x["room_id"] == host.room_id] == \
        [("Third title", "")]
    await asyncio.gather(viewer.close(), late.close())


async def test_two_quick_edits_of_different_fields_keep_both(
        server: LiveServer, http: httpx.AsyncClient) -> None:
    host = await create_room(http, "Race")
    a, b = await asyncio.gather(patch(host, {"title": "Race, renamed"}),
                                patch(host, {"stream_url": STREAM}))
    assert a.status_code == b.status_code == 200, (a.text, b.text)
    room = await room_of(http, host.room_id)
    assert (room["title"], room["stream_url"]) == ("Race, renamed", STREAM)


async def test_bad_bodies_are_refused_naming_the_field(server: LiveServer,
                                                       http: httpx.AsyncClient) -> None:
    host = await create_room(http, "Strict")
    viewer = await join(server, host.room_id)
    await viewer.next_event("snapshot")
    cases: list[tuple[Any, dict[str, Any]]] = [
        ({"stream_url": "ftp://cdn.example.com/x"}, {"field": "stream_url"}),
        ({"stream_url": "https://cdn.example.com/a b"}, {"field": "stream_url"}),
        ({"stream_url": "javascript:alert(1)"}, {"field": "stream_url"}),
        ({"stream_url": "https://x/" + "a" * domain.MAX_URL}, {"field": "stream_url"}),
        ({"title": "x" * (domain.MAX_TITLE + 1)}, {"field": "title"}),
        ({"title": "   "}, {"field": "title"}),
        ({"title": 42}, {"field": "title"}),
        ({"title": "Fine", "starts_at": 1}, {"fields": ["starts_at"]}),
        ({"host_key": "x"}, {"fields": ["host_key"]}),
    ]
    for body, details in cases:
        error = refused(await patch(host, body), 400, "bad_request")
        assert error["details"] == details, (body, error)
        field = details.get("field") or details["fields"][0]
        assert field in error["message"], (body, error)
    # Nothing named, or not an object at all.
    for body in ({}, {"title": None}):
        error = refused(await patch(host, body), 400, "bad_request")
        assert "name at least one" in error["message"], error
    r = await host.http.patch(f"/api/rooms/{host.room_id}", content=b"[1]",
                              headers={"X-Host-Key": host.key,
                                       "Content-Type": "application/json"})
    assert r.status_code == 400, r.text
    # Exactly at the limits is fine.
    ok = await patch(host, {"title": "t" * domain.MAX_TITLE})
    assert ok.status_code == 200, ok.text
    # None of the refusals changed anything or told viewers anything.
    room = await room_of(http, host.room_id)
    assert (room["title"], room["stream_url"]) == ("t" * domain.MAX_TITLE, "")
    await viewer.next_event("room_updated")
    assert len([f for f in viewer.frames if f.get("type") == "room_updated"]) == 1
    await viewer.close()


async def test_the_host_key_is_required(server: LiveServer, http: httpx.AsyncClient) -> None:
    host = await create_room(http, "Keyed")
    other = await create_room(http, "Another room")
    refused(await patch(host, {"title": "Hijacked"}, key=None), 401, "unauthorized")
    refused(await patch(host, {"title": "Hijacked"}, key="not-the-key"), 401, "unauthorized")
    # Another room's key is not this room's.
    refused(await patch(host, {"title": "Hijacked"}, key=other.key), 401, "unauthorized")
    # Bearer works as everywhere else.
    r = await http.patch(f"/api/rooms/{host.room_id}", json={"title": "Bearer"},
                         headers={"Authorization": f"Bearer {host.key}"})
    assert r.status_code == 200, r.text
    r = await http.patch("/api/rooms/r_nosuchroom", json={"title": "x"},
                         headers={"X-Host-Key": host.key})
    refused(r, 404, "room_not_found")
    assert (await room_of(http, host.room_id))["title"] == "Bearer"


async def test_refused_once_the_show_ended_and_allowed_while_scheduled(
        server: LiveServer, http: httpx.AsyncClient) -> None:
    starts_at = int(time.time() * 1000) + 3_600_000
    r = await http.post("/api/rooms", json={"title": "Later", "starts_at": starts_at})
    assert r.status_code == 201, r.text
    host = Host(http, r.json()["room"]["room_id"], r.json()["host_key"])
    # Scheduled: the edit is allowed and does not take the show live.
    edited = await patch(host, {"stream_url": STREAM})
    assert edited.status_code == 200, edited.text
    assert edited.json()["state"] == "scheduled"
    assert (await room_of(http, host.room_id))["state"] == "scheduled"

    await host.call("POST", "/end", expect=200)
    viewer = await join(server, host.room_id)
    await viewer.next_event("snapshot")
    error = refused(await patch(host, {"title": "After the end"}), 409, "show_ended")
    assert "ended" in error["message"]
    room = await room_of(http, host.room_id)
    assert (room["title"], room["stream_url"], room["state"]) == ("Later", STREAM, "ended")
    # A bad body after the end: the show's end is said first, as for other changes.
    refused(await patch(host, {"title": ""}), 409, "show_ended")
    await host.call("GET", "/audit", expect=200)  # the room still answers
    assert not [f for f in viewer.frames if f.get("type") == "room_updated"]
    await viewer.close()


async def test_the_change_survives_a_restart_and_a_redis_rebuild(redis_url: str,
                                                                  data_dir: Path) -> None:
    settings = make_settings(redis_url, data_dir)
    live = await LiveServer(settings).start()
    try:
        async with httpx.AsyncClient(base_url=live.base, timeout=30) as http:
            host = await create_room(http, "Before")
            r = await patch(host, {"title": "After", "stream_url": STREAM})
            assert r.status_code == 200, r.text

            # Redis loses its data while the server runs: the room is rebuilt from
            # the store, with the edited title and stream.
            await lose_redis_data(redis_url)

            async def rebuilt() -> dict[str, Any] | None:
                got = await http.get(f"/api/rooms/{host.room_id}")
                return got.json()["room"] if got.status_code == 200 else None
            room = await eventually(rebuilt)
            assert (room["title"], room["stream_url"]) == ("After", STREAM)
            r = await patch(host, {"title": "After the rebuild"})
            assert r.status_code == 200, r.text
    finally:
        await live.stop()

    # A restart with Redis empty: only the store can know the last edit.
    await lose_redis_data(redis_url)
    live = await LiveServer(settings).start()
    try:
        async with httpx.AsyncClient(base_url=live.base, timeout=30) as http:
            room = await room_of(http, host.room_id)
            assert (room["title"], room["stream_url"]) == ("After the rebuild", STREAM)
            store_room = await live.services.show.ctx.store.room(host.room_id)
            assert (store_room["title"], store_room["stream_url"]) == \
                ("After the rebuild", STREAM)
            # And the host key still opens it.
            host.http = http
            assert (await patch(host, {"stream_url": ""})).status_code == 200
    finally:
        await live.stop()
    # A plain restart (Redis kept) shows the same.
    live = await LiveServer(settings).start()
    try:
        async with httpx.AsyncClient(base_url=live.base, timeout=30) as http:
            room = await room_of(http, host.room_id)
            assert (room["title"], room["stream_url"]) == ("After the rebuild", "")
    finally:
        await live.stop()


# ---------------------------------------------------------------------- mutes


async def test_active_mutes_are_listed_for_the_host(server: LiveServer,
                                                    http: httpx.AsyncClient) -> None:
    host = await create_room(http, "Moderated")
    empty = await host.call("GET", "/moderation/mutes", expect=200)
    assert empty["mutes"] == [] and isinstance(empty["server_time"], int)
    loud = await join(server, host.room_id, nickname="Loud")
    await loud.next_event("snapshot")
    await loud.send({"type": "chat", "text": "BUY MY STUFF"})
    await loud.next_event("chat")
    quiet = await join(server, host.room_id, nickname="Quiet")
    await quiet.next_event("snapshot")

    long = await host.call("POST", "/moderation/mute",
                           {"viewer_id": loud.viewer_id, "duration_s": 3600}, expect=200)
    short = await host.call("POST", "/moderation/mute",
                            {"viewer_id": quiet.viewer_id, "duration_s": 600}, expect=200)
    blink = await host.call("POST", "/moderation/mute",
                            {"viewer_id": "v_nobody", "duration_s": 1}, expect=200)
    listed = await host.call("GET", "/moderation/mutes", expect=200)
    # The soonest to speak again first; the name from the recent chat, if there.
    ids = [m["viewer_id"] for m in listed["mutes"]]
    if "v_nobody" in ids:  # its one second may already be over
        assert listed["mutes"][0] == {"viewer_id": "v_nobody", "until": blink["until"],
                                      "nickname": None}
    assert [m for m in listed["mutes"] if m["viewer_id"] != "v_nobody"] == [
        {"viewer_id": quiet.viewer_id, "until": short["until"], "nickname": None},
        {"viewer_id": loud.viewer_id, "until": long["until"], "nickname": "Loud"}]

    # A mute whose end has passed is left out.
    async def over() -> bool:
        now = await host.call("GET", "/moderation/mutes", expect=200)
        return "v_nobody" not in [m["viewer_id"] for m in now["mutes"]]
    await eventually(over, timeout=10)
    # Muting again replaces `until`.
    again = await host.call("POST", "/moderation/mute",
                            {"viewer_id": loud.viewer_id, "duration_s": 60}, expect=200)
    listed = await host.call("GET", "/moderation/mutes", expect=200)
    assert [(m["viewer_id"], m["until"]) for m in listed["mutes"]] == [
        (loud.viewer_id, again["until"]), (quiet.viewer_id, short["until"])]

    # Host only; still there after the show ended.
    r = await http.get(f"/api/rooms/{host.room_id}/moderation/mutes")
    refused(r, 401, "unauthorized")
    r = await http.get(f"/api/rooms/{host.room_id}/moderation/mutes",
                       headers={"X-Host-Key": "nope"})
    refused(r, 401, "unauthorized")
    await host.call("POST", "/end", expect=200)
    after = await host.call("GET", "/moderation/mutes", expect=200)
    assert len(after["mutes"]) == 2
    await asyncio.gather(loud.close(), quiet.close())
