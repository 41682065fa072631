"""Shows on a schedule, against a real server and redis-server: a scheduled
room goes live by the server's clock at its start (the `show_live` event no
earlier), its reminder goes out `server.reminder_lead_s` before, a host who
goes live early is not undone, and the show's calendar file says when."""

from __future__ import annotations

import time
from pathlib import Path

from tests.support import eventually, join, server_with


async def test_a_scheduled_show_reminds_then_goes_live_at_its_start(
        redis_url: str, data_dir: Path) -> None:
    async with server_with(redis_url, data_dir, server={"reminder_lead_s": 2}) as (live, http):
        starts_at = int(time.time() * 1000) + 4000
        r = await http.post("/api/rooms", json={"title": "Friday drop, 8pm",
                                                "starts_at": starts_at})
        assert r.status_code == 201, r.text
        room_id = r.json()["room"]["room_id"]
        viewer = await join(live, room_id)
        snap = await viewer.next_event("snapshot")
        assert (snap["room"]["state"], snap["room"]["starts_at"]) == ("scheduled", starts_at)
        reminder = await viewer.next_event("show_reminder", timeout=60)
        assert (reminder["starts_at"], reminder["title"]) == (starts_at, "Friday drop, 8pm")
        assert starts_at - 2000 <= reminder["ts"] < starts_at
        went_live = await viewer.next_event("show_live", timeout=60)
        assert went_live["ts"] >= starts_at
        state = (await http.get(f"/api/rooms/{room_id}")).json()["room"]
        assert state["state"] == "live"
        # The calendar file: the start in UTC, the title escaped, the page linked.
        ics = await http.get(f"/api/rooms/{room_id}/calendar.ics",
                             params={"page": f"http://127.0.0.1/r/{room_id}"})
        assert ics.status_code == 200
        assert ics.headers["content-type"].startswith("text/calendar")
        text = ics.text
        assert text.startswith("BEGIN:VCALENDAR\r\n") and text.endswith("END:VCALENDAR\r\n")
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(starts_at // 1000))
        assert f"DTSTART:{stamp}\r\n" in text
        assert "SUMMARY:Friday drop\\, 8pm\r\n" in text
        assert f"URL:http://127.0.0.1/r/{room_id}\r\n" in text
        bad = await http.get(f"/api/rooms/{room_id}/calendar.ics",
                             params={"page": "javascript:alert(1)"})
        assert "URL:" not in bad.text
        await viewer.close()


async def test_going_live_early_or_ending_is_not_undone_by_the_clock(
        redis_url: str, data_dir: Path) -> None:
    async with server_with(redis_url, data_dir) as (live, http):
        starts_at = int(time.time() * 1000) + 3000
        early = (await http.post("/api/rooms", json={"title": "Early",
                                                      "starts_at": starts_at})).json()
        ended = (await http.post("/api/rooms", json={"title": "Cancelled",
                                                      "starts_at": starts_at})).json()
        rid, key = early["room"]["room_id"], early["host_key"]
        await http.post(f"/api/rooms/{rid}/live", headers={"X-Host-Key": key})
        eid, ekey = ended["room"]["room_id"], ended["host_key"]
        await http.post(f"/api/rooms/{eid}/end", headers={"X-Host-Key": ekey})
        viewer = await join(live, rid)
        other = await join(live, eid)
        # Past the start: a later event (an announcement) arrives with no show_live
        # between, and the ended show stays ended.
        async def past_the_start() -> bool:
            now = (await http.get("/api/time")).json()["server_time"]
            return bool(now >= starts_at + 500)
        await eventually(past_the_start, timeout=60)
        await http.post(f"/api/rooms/{rid}/announcements", json={"text": "hi"},
                        headers={"X-Host-Key": key})
        await viewer.next_event("announcement")
        assert not [f for f in viewer.frames if f.get("type") == "show_live"]
        assert (await http.get(f"/api/rooms/{eid}")).json()["room"]["state"] == "ended"
        assert not [f for f in other.frames if f.get("type") == "show_live"]
        await viewer.close()
        await other.close()
