"""The room as a late joiner finds it, and polls, against a real server and
redis-server: the snapshot carries the recent chat (without deleted messages),
the pinned message (which survives a rebuild of Redis) and the polls; each
viewer votes once under retries and racing votes, counted exactly; the clock
and the host close a poll; a vote the store cannot record is refused and
taken back."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx

from server.core.polls import percentages
from tests.support import (
    LiveServer,
    StoreLock,
    create_room,
    eventually,
    join,
    lose_redis_data,
    server_with,
)


def code(answer: dict[str, Any]) -> str:
    return str(answer.get("code") if answer["type"] == "error" else answer["type"])


async def rebuilt(http: httpx.AsyncClient, redis_url: str, room_id: str) -> dict[str, Any]:
    """FLUSHALL, then the room's state once it is whole again (rebuilt from the store)."""
    await lose_redis_data(redis_url)

    async def whole() -> dict[str, Any] | None:
        r = await http.get(f"/api/rooms/{room_id}")
        return dict(r.json()) if r.status_code == 200 else None
    room: dict[str, Any] = await eventually(whole)
    return room


def test_percentages_add_up_to_100_by_the_largest_remainders() -> None:
    assert percentages([0, 0, 0]) == [0, 0, 0]
    assert percentages([1, 1, 1]) == [34, 33, 33]
    assert percentages([12, 30, 8]) == [24, 60, 16]
    assert percentages([2, 1]) == [67, 33]
    for votes in ([1, 2, 3, 4, 5, 6], [999, 1], [7, 7, 7, 7, 7, 7]):
        assert sum(percentages(votes)) == 100


async def test_a_late_joiner_sees_recent_chat_the_pinned_message_and_polls(
        server: LiveServer, http: httpx.AsyncClient) -> None:
    host = await create_room(http)
    early = await join(server, host.room_id, nickname="ada")
    sent = []
    for i in range(3):
        await early.send({"type": "chat", "text": f"hello {i}"})
        sent.append(await early.next_event("chat", where=lambda f, i=i: f["text"]
                                           == f"hello {i}"))
    await host.call("POST", "/moderation/delete", {"message_id": sent[1]["message_id"]},
                    expect=200)
    pinned = await host.call("PUT", "/pinned-message",
                             {"message_id": sent[2]["message_id"]}, expect=200)
    assert (pinned["text"], pinned["nickname"]) == ("hello 2", "ada")
    event = await early.next_event("message_pinned")
    assert event["pinned_message"] == pinned
    poll = await host.call("POST", "/polls", {"question": "Which colour?",
                                              "options": ["Red", "Blue"]}, expect=201)
    late = await join(server, host.room_id)
    snap = await late.next_event("snapshot")
    assert [m["text"] for m in snap["chat"]] == ["hello 0", "hello 2"]
    assert all(m["type"] == "chat" and m["seq"] <= snap["seq"] for m in snap["chat"])
    assert snap["pinned_message"] == pinned
    assert [p["poll_id"] for p in snap["polls"]] == [poll["poll_id"]]
    missing = await host.call("PUT", "/pinned-message", {"message_id": "m_nothing"},
                              expect=404)
    assert missing["error"]["code"] == "message_not_found"
    note = await host.call("PUT", "/pinned-message", {"text": "Free shipping tonight"},
                           expect=200)
    assert note["message_id"] is None and note["nickname"] == "Host"
    await host.call("DELETE", "/pinned-message", expect=200)
    assert (await late.next_event("message_pinned", where=lambda f: f["pinned_message"]
                                  is None))["pinned_message"] is None
    await asyncio.gather(early.close(), late.close())


async def test_one_vote_per_viewer_under_retries_and_races(
        server: LiveServer, http: httpx.AsyncClient) -> None:
    host = await create_room(http)
    poll = await host.call("POST", "/polls", {"question": "Next drop?",
                                              "options": ["Mugs", "Caps", "Socks"],
                                              "duration_s": 600}, expect=201)
    pid = poll["poll_id"]
    viewers = await asyncio.gather(*(join(server, host.room_id) for _ in range(30)))
    # Each viewer sends its vote three times at once, and a different one too.
    answers = await asyncio.gather(*(
        v.request("vote", poll_id=pid, option=i % 3)
        for i, v in enumerate(viewers) for _ in range(3)))
    assert {code(a) for a in answers} == {"voted"}
    changed = await asyncio.gather(*(v.request("vote", poll_id=pid, option=(i + 1) % 3)
                                     for i, v in enumerate(viewers)))
    assert {code(a) for a in changed} == {"already_voted"}
    assert [a["details"]["option"] for a in changed] == [i % 3 for i in range(30)]
    view = await host.call("GET", f"/polls/{pid}", expect=200)
    assert (view["votes"], view["total"], view["percent"]) == ([10, 10, 10], 30, [34, 33, 33])
    # The counts reach everyone, coalesced.
    last = await viewers[0].next_event("poll_votes", where=lambda f: f["total"] == 30)
    assert last["votes"] == [10, 10, 10]
    bad = await viewers[0].request("vote", poll_id=pid, option=5)
    assert code(bad) == "bad_request" and "option" in bad["message"]
    assert code(await viewers[0].request("vote", poll_id="p_nothing", option=0)) \
        == "poll_not_found"
    closed = await host.call("POST", f"/polls/{pid}/close", expect=200)
    assert closed["state"] == "closed" and closed["votes"] == [10, 10, 10]
    assert (await viewers[1].next_event("poll_closed"))["poll"]["total"] == 30
    late = await join(server, host.room_id)
    assert code(await late.request("vote", poll_id=pid, option=0)) == "poll_closed"
    again = await host.call("POST", f"/polls/{pid}/close", expect=409)
    assert again["error"]["code"] == "poll_closed"
    # The end of the show closes the polls still open.
    other = await host.call("POST", "/polls", {"question": "Still?", "options": ["a", "b"],
                                               "duration_s": 600}, expect=201)
    await host.call("POST", "/end", expect=200)
    final = await host.call("GET", f"/polls/{other['poll_id']}", expect=200)
    assert final["state"] == "closed"
    await asyncio.gather(*(v.close() for v in [*viewers, late]))


async def test_the_clock_closes_a_poll_and_polls_survive_a_rebuild(
        server: LiveServer, http: httpx.AsyncClient, redis_url: str) -> None:
    host = await create_room(http)
    short = await host.call("POST", "/polls", {"question": "Quick?", "options": ["Yes", "No"],
                                               "duration_s": 5}, expect=201)
    long = await host.call("POST", "/polls", {"question": "Later?", "options": ["A", "B"],
                                              "duration_s": 600}, expect=201)
    viewer = await join(server, host.room_id)
    await viewer.request("vote", poll_id=short["poll_id"], option=1)
    await viewer.request("vote", poll_id=long["poll_id"], option=0)
    await host.call("PUT", "/pinned-message", {"text": "Back in 5"}, expect=200)
    closed = await viewer.next_event("poll_closed", timeout=60)
    assert closed["poll"]["poll_id"] == short["poll_id"]
    assert closed["poll"]["votes"] == [0, 1] and closed["poll"]["closed_at"] >= \
        short["closes_at"]
    room = await rebuilt(http, redis_url, host.room_id)
    polls = {p["poll_id"]: p for p in room["polls"]}
    assert polls[short["poll_id"]]["state"] == "closed"
    assert polls[long["poll_id"]]["votes"] == [1, 0]
    assert room["pinned_message"]["text"] == "Back in 5"
    # The vote stood: voting again is answered the same, another option refused.
    assert code(await viewer.request("vote", poll_id=long["poll_id"], option=0)) == "voted"
    assert code(await viewer.request("vote", poll_id=long["poll_id"], option=1)) \
        == "already_voted"
    await viewer.close()


async def test_a_vote_the_store_cannot_record_is_refused_and_taken_back(
        redis_url: str, data_dir: Path) -> None:
    async with server_with(redis_url, data_dir, store={"busy_timeout_ms": 300}) as (live, http):
        host = await create_room(http)
        poll = await host.call("POST", "/polls", {"question": "Q", "options": ["A", "B"]},
                               expect=201)
        viewer = await join(live, host.room_id)
        async with StoreLock(live.settings.store_path):
            answer = await viewer.request("vote", poll_id=poll["poll_id"], option=0)
            assert code(answer) == "store_unavailable"
        view = await host.call("GET", f"/polls/{poll['poll_id']}", expect=200)
        assert view["votes"] == [0, 0]
        # Nothing stood: the viewer may still vote, for either option.
        assert code(await viewer.request("vote", poll_id=poll["poll_id"], option=1)) == "voted"
        await viewer.close()


async def test_bad_poll_and_pin_requests_say_what_was_wrong(
        server: LiveServer, http: httpx.AsyncClient) -> None:
    host = await create_room(http)
    for body, field in (({"options": ["a", "b"]}, "question"),
                        ({"question": "q", "options": ["a"]}, "options"),
                        ({"question": "q", "options": ["a", "A"]}, "distinct"),
                        ({"question": "q", "options": ["a", ""]}, "options[1]"),
                        ({"question": "q", "options": ["a", "b"], "duration_s": 1},
                         "duration_s"),
                        ({"question": "q", "options": ["a", "b"], "x": 1}, "x")):
        error = (await host.call("POST", "/polls", body, expect=400))["error"]
        assert field in error["message"], (body, error)
    pins: list[dict[str, Any]] = [{}, {"text": "a", "message_id": "m_1"}, {"text": "x" * 501}]
    for pin in pins:
        await host.call("PUT", "/pinned-message", pin, expect=400)


async def test_questions_asked_upvoted_once_and_answered(
        server: LiveServer, http: httpx.AsyncClient, redis_url: str) -> None:
    host = await create_room(http)
    ada = await join(server, host.room_id, nickname="ada")
    crowd = await asyncio.gather(*(join(server, host.room_id) for _ in range(12)))
    asked = await ada.request("ask", text="Does it come in blue?", request_id="q1")
    again = await ada.request("ask", text="Does it come in blue?", request_id="q1")
    assert asked["type"] == "asked" and again["question"] == asked["question"]
    q = asked["question"]
    assert (q["nickname"], q["votes"], q["answered_at"]) == ("ada", 0, None)
    seen = await crowd[0].next_event("question")
    assert seen["question"] == q
    other = (await crowd[0].request("ask", text="Shipping to Canada?"))["question"]
    # Each of the crowd upvotes Ada's question three times at once: counted once each.
    ups = await asyncio.gather(*(v.request("upvote", question_id=q["question_id"])
                                 for v in crowd for _ in range(3)))
    assert {u["type"] for u in ups} == {"upvoted"}
    assert max(u["votes"] for u in ups) == 12
    assert code(await ada.request("upvote", question_id=q["question_id"])) == "own_question"
    assert code(await ada.request("upvote", question_id="q_nothing")) == "question_not_found"
    await crowd[1].request("upvote", question_id=other["question_id"])
    votes = await ada.next_event("question_votes", where=lambda f: f["question_id"]
                                 == q["question_id"] and f["votes"] == 12)
    assert votes["votes"] == 12
    listed = await host.call("GET", "/questions", expect=200)
    assert [(x["question_id"], x["votes"]) for x in listed["open"]] == [
        (q["question_id"], 12), (other["question_id"], 1)]
    late = await join(server, host.room_id)
    snap = await late.next_event("snapshot")
    assert [x["question_id"] for x in snap["questions"]] == [q["question_id"],
                                                             other["question_id"]]
    # A rebuild of Redis keeps questions and upvotes.
    room = await rebuilt(http, redis_url, host.room_id)
    assert [(x["question_id"], x["votes"]) for x in room["questions"]] == [
        (q["question_id"], 12), (other["question_id"], 1)]
    assert code(await crowd[2].request("upvote", question_id=q["question_id"])) == "upvoted"
    done = await host.call("POST", f"/questions/{q['question_id']}/answered", expect=200)
    assert done["votes"] == 12 and done["answered_at"]
    assert (await late.next_event("question_answered"))["question"]["question_id"] == \
        q["question_id"]
    refused = await host.call("POST", f"/questions/{q['question_id']}/answered", expect=409)
    assert refused["error"]["code"] == "question_answered"
    assert code(await crowd[3].request("upvote", question_id=q["question_id"])) \
        == "question_answered"
    listed = await host.call("GET", "/questions", expect=200)
    assert [x["question_id"] for x in listed["answered"]] == [q["question_id"]]
    # At most three unanswered questions per viewer (the answered one no longer counts).
    for text in ("more 1", "more 2", "more 3"):
        assert code(await ada.request("ask", text=text)) == "asked"
    assert code(await ada.request("ask", text="too many")) == "too_many_questions"
    await asyncio.gather(*(v.close() for v in [ada, late, *crowd]))


async def test_a_room_keeps_a_bounded_number_of_questions(redis_url: str,
                                                          data_dir: Path) -> None:
    async with server_with(redis_url, data_dir,
                           chat={"max_questions_per_room": 10,
                                 "room_messages_per_s": 0}) as (live, http):
        host = await create_room(http)
        askers = [await join(live, host.room_id) for _ in range(4)]
        answers = [await v.request("ask", text=f"question {i} from {n}")
                   for n, v in enumerate(askers) for i in range(3)]
        assert [code(a) for a in answers] == ["asked"] * 10 + ["questions_full"] * 2
        listed = await host.call("GET", "/questions", expect=200)
        assert len(listed["open"]) == 10
        await asyncio.gather(*(v.close() for v in askers))
