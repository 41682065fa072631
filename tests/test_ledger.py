"""The ledger's batching against a real redis-server: calls of one loop tick go in
one round trip, same-script same-room calls as one batch call, and every caller
gets exactly its own answer or its own error."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import DataError, ResponseError

from server.core.keys import RoomKeys
from server.state.ledger import Ledger


@pytest.fixture
async def ledger(redis_url: str) -> AsyncIterator[Ledger]:
    client = Redis.from_url(redis_url, decode_responses=True)
    led = Ledger(client)
    await led.load()
    try:
        yield led
    finally:
        await client.aclose()


def _adjust(room: str, product: str, total: int) -> tuple[list[str], list[Any]]:
    """adjust_stock's keys and arguments: set the product's total stock."""
    return [RoomKeys(room).stock(product)], [total]


async def test_one_tick_of_calls_is_answered_in_order(ledger: Ledger) -> None:
    redis: Any = ledger.redis
    for room in ("r1", "r2"):
        await redis.hset(RoomKeys(room).stock("p"), mapping={"left": 0, "held": 0, "sold": 0})
    calls = [("r1" if i % 3 else "r2", i + 1) for i in range(60)]
    futures = [ledger.run("adjust_stock", *_adjust(room, "p", n)) for room, n in calls]
    answers = await asyncio.gather(*futures)
    # Each caller gets its own call's answer...
    for (_, n), answer in zip(calls, answers, strict=True):
        assert answer == ["ok", n, n, 0, 0]
    # ...and the calls ran in the order they were made: the last one per room wins.
    last = {room: n for room, n in calls}
    for room, n in last.items():
        assert int(await redis.hget(RoomKeys(room).stock("p"), "left")) == n


async def test_an_error_in_one_batched_call_reaches_only_its_caller(ledger: Ledger) -> None:
    redis: Any = ledger.redis
    keys = RoomKeys("r1")
    await redis.hset(keys.stock("p"), mapping={"left": 5, "held": 0, "sold": 0})
    await redis.set(keys.stock("bad"), "not a hash")  # HMGET on it is a WRONGTYPE error
    good1 = ledger.run("adjust_stock", *_adjust("r1", "p", 6))
    bad = ledger.run("adjust_stock", *_adjust("r1", "bad", 1))
    good2 = ledger.run("adjust_stock", *_adjust("r1", "p", 8))
    results = await asyncio.gather(good1, bad, good2, return_exceptions=True)
    assert results[0] == ["ok", 6, 6, 0, 0]
    assert isinstance(results[1], ResponseError)
    assert "WRONGTYPE" in str(results[1])
    assert results[2] == ["ok", 8, 8, 0, 0]
    assert await redis.get(keys.stock("bad")) == "not a hash"


async def test_batched_calls_survive_redis_forgetting_the_scripts(ledger: Ledger) -> None:
    redis: Any = ledger.redis
    await redis.hset(RoomKeys("r1").stock("p"), mapping={"left": 0, "held": 0, "sold": 0})
    await redis.script_flush()
    answers = await asyncio.gather(*(ledger.run("adjust_stock", *_adjust("r1", "p", n))
                                     for n in range(1, 11)))
    assert answers == [["ok", n, n, 0, 0] for n in range(1, 11)]
    assert int(await redis.hget(RoomKeys("r1").stock("p"), "left")) == 10


async def test_a_batch_gives_each_call_its_own_keys_and_arguments_exactly(
        ledger: Ledger, redis_url: str) -> None:
    """Same-room publishes of one tick go as one batch call that carries each
    shared key once and the arguments as JSON: every event, UTF-8 text included,
    reaches the log byte for byte in call order, each under its own seq; a
    batch whose argument is not UTF-8 (JSON cannot carry it) still runs, one
    command per call, with the bytes intact."""
    redis: Any = ledger.redis
    raw = Redis.from_url(redis_url)  # bytes, not text: the log is compared byte for byte
    try:
        keys = RoomKeys("r1")
        await redis.set(keys.epoch, "e1")
        texts = [b'{"n":%d,"t":"caf\xc3\xa9 \xe2\x82\xac \\"q\\" \\u0000"}' % i
                 for i in range(40)]
        seqs = await asyncio.gather(*(ledger.run("publish", [keys.seq, keys.log, keys.epoch,
                                                             keys.chat_history],
                                                 [t, 1000, keys.channel, 0]) for t in texts))
        assert seqs == list(range(1, 41))
        logged = await raw.lrange(keys.log, 0, -1)
        assert logged == [b'{"seq":%d,' % (i + 1) + t[1:] for i, t in enumerate(texts)]
        # Not UTF-8: no JSON string holds it, so each call goes on its own.
        odd = [b'{"n":%d,"b":"\xff\xfe"}' % i for i in range(3)]
        seqs = await asyncio.gather(*(ledger.run("publish", [keys.seq, keys.log, keys.epoch,
                                                             keys.chat_history],
                                                 [t, 1000, keys.channel, 0]) for t in odd))
        assert seqs == [41, 42, 43]
        assert (await raw.lrange(keys.log, 40, -1)) == [
            b'{"seq":%d,' % (41 + i) + t[1:] for i, t in enumerate(odd)]
        # Calls with keys of their own, interleaved with a shared one: each call's
        # keys are its own, in its own order.
        for i in range(5):
            await redis.hset(keys.stock(f"p{i}"), mapping={"left": 0, "held": 0, "sold": 0})
        order = [f"p{i % 5}" for i in range(20)]
        answers = await asyncio.gather(*(ledger.run("adjust_stock", *_adjust("r1", p, 100 + n))
                                         for n, p in enumerate(order)))
        assert answers == [["ok", 100 + n, 100 + n, 0, 0] for n in range(20)]
        for i in range(5):
            assert int(await redis.hget(keys.stock(f"p{i}"), "left")) == 115 + i
    finally:
        await raw.aclose()


async def test_a_batched_argument_of_a_type_redis_refuses_is_refused(ledger: Ledger) -> None:
    """A bool (or None) is refused in a batch as redis-py refuses it in one call,
    not sent as the text 'True'."""
    redis: Any = ledger.redis
    await redis.hset(RoomKeys("r1").stock("p"), mapping={"left": 0, "held": 0, "sold": 0})
    bads: list[Any] = [True, None]
    for bad in bads:
        results = await asyncio.gather(
            ledger.run("adjust_stock", [RoomKeys("r1").stock("p")], [bad]),
            ledger.run("adjust_stock", [RoomKeys("r1").stock("p")], [bad]),
            return_exceptions=True)
        assert all(isinstance(r, DataError) for r in results), results
    assert int(await redis.hget(RoomKeys("r1").stock("p"), "left")) == 0
