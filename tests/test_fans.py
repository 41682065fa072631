"""Fan points and levels against a real server, redis-server and SQLite store:
points for chat, watching and orders, each award once under its id whatever the
retries, the per-minute cap, the level in chat events, the level a lottery or
group deal requires, the host's leaderboard, points shared by a channel's rooms,
and points surviving Redis losing its data (the store is the record)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from server.core.settings import SettingsError, load_settings
from tests.support import (
    Host,
    LiveServer,
    ViewerClient,
    create_room,
    eventually,
    join,
    server_with,
)
from tests.test_social import rebuilt

FANS = {"levels": "3 6 1000", "badges": ["Fan", "Regular", "Legend"], "cap_per_minute": 4,
        "order_points": 10}


@pytest.fixture
async def fan_server(redis_url: str, data_dir: Path) -> AsyncIterator[tuple[LiveServer,
                                                                            httpx.AsyncClient]]:
    async with server_with(redis_url, data_dir, fans=FANS,
                           chat={"room_messages_per_s": 0, "messages_per_s": 100,
                                 "burst": 100}) as pair:
        yield pair


async def points_of(v: ViewerClient) -> dict[str, Any]:
    return await v.request("fan_status")


async def reaches(v: ViewerClient, points: int) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        status = await points_of(v)
        return status if status["points"] >= points else None
    status: dict[str, Any] = await eventually(check)
    return status


async def award_keys(redis_url: str, pattern: str) -> int:
    client = aioredis.Redis.from_url(redis_url)
    try:
        return len([k async for k in client.scan_iter(match=pattern, count=1000)])
    finally:
        await client.aclose()


async def minute_counts(redis_url: str) -> list[int]:
    """What each viewer-minute counter of the main channel holds."""
    client = aioredis.Redis.from_url(redis_url)
    try:
        keys = [k async for k in client.scan_iter(match="ls:fan:*:min:*", count=1000)]
        return [int(await client.get(k) or 0) for k in keys]
    finally:
        await client.aclose()


async def chat(v: ViewerClient, text: str) -> dict[str, Any]:
    await v.send({"type": "chat", "text": text})
    return await v.next_event("chat", where=lambda f: f["text"] == text)


async def test_chat_earns_points_levels_show_in_chat_and_the_cap_holds(
        fan_server: tuple[LiveServer, httpx.AsyncClient], redis_url: str) -> None:
    server, http = fan_server
    host = await create_room(http)
    v = await join(server, host.room_id)
    first = await chat(v, "hello 1")
    assert first["level"] == 0
    await chat(v, "hello 2")
    await chat(v, "hello 3")
    status = await reaches(v, 3)
    assert (status["level"], status["badge"], status["next_level_points"]) == (1, "Fan", 6)
    # The next message carries the level the sender has now.
    assert (await chat(v, "hello 4"))["level"] == 1
    for i in range(5, 9):
        await chat(v, f"hello {i}")
    # Every message's award was decided (each once, under its message's id), yet no
    # minute gave more than the cap of 4: 8 messages, 4 points (8 only should a
    # minute have turned in between, each minute capped).
    await eventually(lambda: _at_least(award_keys(redis_url, "ls:fan:*:award:chat:*"), 8))
    minutes = await minute_counts(redis_url)
    status = await points_of(v)
    assert all(n <= 4 for n in minutes) and status["points"] == sum(minutes) >= 4, minutes
    # The leaderboard is the store's: it agrees once the last award's write committed
    # (Redis decides an award first, then the store records it).
    expected = [{"viewer_id": v.viewer_id, "nickname": v.welcome["viewer"]["nickname"],
                 "points": status["points"], "level": status["level"],
                 "badge": status["badge"]}]

    async def board_agrees() -> dict[str, Any] | None:
        board: dict[str, Any] = await host.call("GET", "/fans", expect=200)
        return board if board["fans"] == expected else None
    board = await eventually(board_agrees)
    assert board["channel"] == "main"
    r = await http.get(f"/api/rooms/{host.room_id}/fans")
    assert r.status_code == 401
    r = await http.get(f"/api/rooms/{host.room_id}/fans?limit=0",
                       headers={"X-Host-Key": host.key})
    assert r.status_code == 400 and "limit" in r.text
    snap = await (await join(server, host.room_id)).next_event("snapshot")
    assert snap["fans"]["levels"][0] == {"level": 1, "points": 3, "badge": "Fan"}
    assert [m["level"] for m in snap["chat"]][:4] == [0, 0, 0, 1]
    await v.close()


async def _at_least(counted: Any, n: int) -> bool:
    return bool(await counted >= n)


async def test_watching_counts_once_a_minute_whatever_the_retries(
        fan_server: tuple[LiveServer, httpx.AsyncClient]) -> None:
    server, http = fan_server
    host = await create_room(http)
    v = await join(server, host.room_id)
    answers = await asyncio.gather(*(v.request("watching") for _ in range(10)))
    assert all(a["type"] == "fan" for a in answers), answers
    given = sum(a["awarded"] for a in answers)
    # Ten ticks within a minute (two, should the minute turn meanwhile) earn one each.
    assert 1 <= given <= 2
    assert (await points_of(v))["points"] == given
    await v.close()


async def test_orders_earn_points_once_uncapped_and_survive_redis_losing_them(
        fan_server: tuple[LiveServer, httpx.AsyncClient], redis_url: str) -> None:
    server, http = fan_server
    host = await create_room(http)
    product = await host.product(stock=5)
    await host.sale(product["product_id"], units=5, limit=2)
    v = await join(server, host.room_id)
    hold = await v.request("buy", product_id=product["product_id"])
    placed = await v.request("checkout", hold_id=hold["hold"]["id"], request_id="pay1")
    assert placed["type"] == "order_placed", placed
    # Not capped by the 4 a minute: an order earns its 10.
    await reaches(v, 10)
    again = await v.request("checkout", hold_id=hold["hold"]["id"], request_id="pay1")
    assert again["order"]["order_id"] == placed["order"]["order_id"]
    assert (await points_of(v))["points"] == 10
    # Redis loses everything: the points come back from the store.
    await rebuilt(http, redis_url, host.room_id)
    v2 = await join(server, host.room_id, token=v.token)
    assert (await points_of(v2))["points"] == 10
    # And awards go on from there, each once.
    answer = await v2.request("watching")
    assert answer["points"] == 10 + answer["awarded"]
    await asyncio.gather(v.close(), v2.close())


async def test_levels_gate_lotteries_and_group_deals(
        fan_server: tuple[LiveServer, httpx.AsyncClient]) -> None:
    server, http = fan_server
    host = await create_room(http)
    lottery = await host.call("POST", "/lotteries", {"prize": "A mug", "duration_s": 600,
                                                     "min_level": 1}, expect=201)
    assert lottery["min_level"] == 1
    bad = await host.call("POST", "/lotteries", {"prize": "x", "duration_s": 60,
                                                 "min_level": 4}, expect=400)
    assert "min_level" in bad["error"]["message"]
    product = await host.product(stock=10)
    deal = await host.call("POST", "/group-deals", {
        "product_id": product["product_id"], "group_size": 2, "group_price": 500,
        "units": 4, "min_level": 2}, expect=201)
    assert deal["min_level"] == 2
    v = await join(server, host.room_id)
    refused = await v.request("enter_lottery", lottery_id=lottery["lottery_id"])
    assert refused["code"] == "level_required", refused
    assert refused["details"] == {"min_level": 1, "level": 0}
    for i in range(3):
        await chat(v, f"warming up {i}")
    await reaches(v, 3)
    entered = await v.request("enter_lottery", lottery_id=lottery["lottery_id"])
    assert entered["type"] == "lottery_entered", entered
    grouped = await v.request("start_group", deal_id=deal["deal_id"])
    assert grouped["code"] == "level_required" and grouped["details"]["min_level"] == 2
    await v.close()


async def test_a_channel_shares_points_across_its_rooms(
        fan_server: tuple[LiveServer, httpx.AsyncClient]) -> None:
    server, http = fan_server

    async def room(channel: str | None) -> Host:
        body = {"title": "Show"} | ({"channel": channel} if channel else {})
        r = await http.post("/api/rooms", json=body)
        assert r.status_code == 201, r.text
        return Host(http, r.json()["room"]["room_id"], r.json()["host_key"])

    first, second, other = await room("shop-a"), await room("shop-a"), await room(None)
    r = await http.post("/api/rooms", json={"title": "x", "channel": "no spaces allowed"})
    assert r.status_code == 400 and "channel" in r.text
    v = await join(server, first.room_id)
    await v.request("watching")
    await chat(v, "hi")
    earned = (await reaches(v, 2))["points"]
    in_second = await join(server, second.room_id, token=v.token)
    assert (await points_of(in_second))["points"] == earned
    assert (await points_of(in_second))["channel"] == "shop-a"
    in_other = await join(server, other.room_id, token=v.token)
    assert (await points_of(in_other))["points"] == 0
    await asyncio.gather(v.close(), in_second.close(), in_other.close())


@pytest.mark.parametrize(("levels", "badges", "error"), [
    ("10 5", ["a", "b"], "more points than the one before"),
    ("0 5", ["a", "b"], "first at least 1"),
    ("ten", ["a"], "positive integers"),
    ("10 20", ["a"], "one name per level"),
    ("10", ["<b>"], "without"),
])
def test_bad_fan_levels_are_refused_with_the_reason(levels: str, badges: list[str],
                                                    error: str, tmp_path: Path) -> None:
    config = tmp_path / "fans.toml"
    quoted = ", ".join(f'"{b}"' for b in badges)
    config.write_text(f'[fans]\nlevels = "{levels}"\nbadges = [{quoted}]\n')
    with pytest.raises(SettingsError, match=error):
        load_settings(config, env={})
