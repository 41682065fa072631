"""The Redis Cluster slot audit (tests/slot_audit.py) against a real redis-server:
it catches a script call, a MULTI/EXEC and a multi-key command whose keys span hash
slots, passes those that keep to one slot, leaves every command's answer as it was,
and fails a test (at its teardown) in a pytest run of its own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.crc import key_slot

from server.state.ledger import Ledger
from tests import slot_audit
from tests.slot_audit import Violation, capture

# Two rooms' keys (their hash tags differ), a global key, and a room key's slot mate.
A1, A2 = "ls:{ra}:sale:s1", "ls:{ra}:stock:p1"
B1 = "ls:{rb}:sale:s1"
GLOBAL = "ls:rooms"
THIS_FILE = "tests/test_slot_audit.py"


def slot(key: str) -> int:
    return key_slot(key.encode())


def test_the_keys_used_here_lie_in_the_slots_the_tests_assume() -> None:
    assert slot(A1) == slot(A2)
    assert len({slot(A1), slot(B1), slot(GLOBAL)}) == 3


@pytest.fixture
async def r(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        yield client
    finally:
        await client.aclose()


def only(found: list[Violation], kind: str) -> Violation:
    assert [v.kind for v in found] == [kind], [v.describe() for v in found]
    return found[0]


def assert_slots(v: Violation, *groups: tuple[str, ...]) -> None:
    expected = {slot(keys[0]): list(keys) for keys in groups}
    assert v.slots == expected, v.describe()


ECHO_KEYS = "return #KEYS .. ':' .. table.concat(KEYS, ',')"


async def test_a_cross_slot_evalsha_is_caught_and_still_answered(r: aioredis.Redis) -> None:
    sha = await r.script_load(ECHO_KEYS)
    with capture() as found:
        answer = await r.evalsha(sha, 2, A1, B1, "argument")
    assert answer == f"2:{A1},{B1}"  # the command ran as it was
    v = only(found, "script")
    assert v.command == f"EVALSHA {sha[:12]}"
    assert_slots(v, (A1,), (B1,))
    assert v.site.startswith(f"{THIS_FILE}:"), v.stack
    # The arguments after the keys are not keys.
    assert "argument" not in v.keys


async def test_a_same_slot_evalsha_passes(r: aioredis.Redis) -> None:
    sha = await r.script_load(ECHO_KEYS)
    with capture() as found:
        assert await r.evalsha(sha, 2, A1, A2, B1) == f"2:{A1},{A2}"
        assert await r.eval(ECHO_KEYS, 0, B1, GLOBAL) == "0:"  # no key: any node
    assert found == []


async def test_a_cross_slot_eval_in_a_pipeline_is_caught(r: aioredis.Redis) -> None:
    with capture() as found:
        async with r.pipeline(transaction=False) as pipe:
            pipe.eval(ECHO_KEYS, 1, A1)
            pipe.eval(ECHO_KEYS, 2, A1, GLOBAL)
            assert await pipe.execute() == [f"1:{A1}", f"2:{A1},{GLOBAL}"]
    v = only(found, "script")
    assert v.command.startswith("EVAL return #KEYS")
    assert_slots(v, (A1,), (GLOBAL,))


async def test_a_cross_slot_multi_is_caught(r: aioredis.Redis) -> None:
    with capture() as found:
        async with r.pipeline(transaction=True) as pipe:
            pipe.hset(A1, "units", 3)
            pipe.set(A2, 1)
            pipe.sadd(GLOBAL, "ra")
            assert await pipe.execute() == [1, True, 1]
    v = only(found, "transaction")
    assert v.command == "MULTI HSET SET SADD"
    assert_slots(v, (A1, A2), (GLOBAL,))
    assert v.site.startswith(f"{THIS_FILE}:"), v.stack
    assert await r.smembers(GLOBAL) == {"ra"}


async def test_a_same_slot_multi_and_a_mixed_plain_pipeline_pass(r: aioredis.Redis) -> None:
    with capture() as found:
        async with r.pipeline(transaction=True) as pipe:
            pipe.hset(A1, "units", 3)
            pipe.set(A2, 1)
            pipe.delete(A1, A2)
            pipe.publish("ls:{ra}:events", "x")
            assert await pipe.execute() == [1, True, 2, 0]
        # Without MULTI the commands may lie anywhere (the cluster pipeline splits it).
        async with r.pipeline(transaction=False) as pipe:
            pipe.set(A1, 1)
            pipe.set(B1, 2)
            pipe.sadd(GLOBAL, "ra")
            pipe.delete(A1, A2)
            assert await pipe.execute() == [True, True, 1, 1]
    assert found == []


async def test_a_multi_counts_the_keys_it_watched(r: aioredis.Redis) -> None:
    with capture() as found:
        async with r.pipeline(transaction=True) as pipe:
            await pipe.watch(GLOBAL)
            assert await pipe.smembers(GLOBAL) == set()  # read while watching
            pipe.multi()  # type: ignore[no-untyped-call]
            pipe.set(A1, 1)
            assert await pipe.execute() == [True]
    v = only(found, "transaction")
    assert v.command == "MULTI WATCH SET"
    assert_slots(v, (GLOBAL, GLOBAL), (A1,))
    # A later WATCH of one slot starts afresh.
    with capture() as found:
        async with r.pipeline(transaction=True) as pipe:
            await pipe.watch(A1)
            pipe.multi()  # type: ignore[no-untyped-call]
            pipe.set(A2, 1)
            assert await pipe.execute() == [True]
    assert found == []


async def test_a_keyless_command_in_a_multi_is_caught(r: aioredis.Redis) -> None:
    with capture() as found:
        async with r.pipeline(transaction=True) as pipe:
            pipe.set(A1, 1)
            pipe.time()
            replies = await pipe.execute()
    assert replies[0] is True
    v = only(found, "transaction-keyless")
    assert v.slots == {slot(A1): [A1], -1: ["TIME"]}


async def test_a_cross_slot_del_is_caught(r: aioredis.Redis) -> None:
    await r.set(A1, 1)
    await r.set(B1, 1)
    with capture() as found:
        assert await r.delete(A1, B1) == 2
        assert await r.exists(A1, A2) == 0  # one slot: passes
    v = only(found, "command")
    assert v.command == "DEL"
    assert_slots(v, (A1,), (B1,))
    assert v.site.startswith(f"{THIS_FILE}:"), v.stack


async def test_a_cross_slot_command_in_a_plain_pipeline_is_caught(r: aioredis.Redis) -> None:
    with capture() as found:
        async with r.pipeline(transaction=False) as pipe:
            pipe.unlink(A1, A2)
            pipe.unlink(A1, GLOBAL)
            assert await pipe.execute() == [0, 0]
    v = only(found, "command")
    assert v.command == "UNLINK"
    assert_slots(v, (A1,), (GLOBAL,))


async def test_bytes_keys_are_audited(redis_url: str) -> None:
    raw = aioredis.Redis.from_url(redis_url)  # answers bytes; keys given as bytes
    try:
        with capture() as found:
            assert await raw.delete(A1.encode(), A2.encode()) == 0
            assert await raw.delete(A1.encode(), b"\xff{rb}") == 0
    finally:
        await raw.aclose()
    v = only(found, "command")
    assert v.slots == {slot(A1): [A1], key_slot(b"\xff{rb}"): ["\\xff{rb}"]}


async def test_a_ledger_call_is_caught_where_it_is_made(r: aioredis.Redis) -> None:
    ledger = Ledger(r)
    await ledger.load()
    with capture() as found:
        # adjust_stock reads KEYS[1] only; the second key is the violation.
        await ledger.run("adjust_stock", [A2, GLOBAL], [5])
        await ledger.run("adjust_stock", [A2], [5, "ls:{rb}:"])  # a prefix of another room
    assert [v.kind for v in found] == ["script-call", "script", "script-call"], found
    call, sent, prefix = found
    assert call.command == "Ledger.run adjust_stock"
    assert_slots(call, (A2,), (GLOBAL,))
    assert call.site.startswith(f"{THIS_FILE}:"), call.stack  # the caller, not the ledger
    # The EVALSHA the ledger sent for it, named by script.
    assert sent.command == "EVALSHA adjust_stock"
    assert sent.site.startswith("server/state/ledger.py:"), sent.stack
    assert_slots(prefix, (A2,), ("ls:{rb}:",))


async def test_the_batch_form_is_caught_by_its_keys(r: aioredis.Redis) -> None:
    ledger = Ledger(r)
    await ledger.load()
    with capture() as found:
        # Two calls in one tick, first keys of one room: one call of the batch form,
        # whose KEYS are both calls' keys.
        first = ledger.run("adjust_stock", [A2, A1], [5])
        second = ledger.run("adjust_stock", [A2, B1], [6])
        await first
        await second
    batch = [v for v in found if v.kind == "script"]
    assert [v.command for v in batch] == ["EVALSHA adjust_stock@batch"], found
    assert_slots(batch[0], (A2, A1), (B1,))


@pytest.mark.parametrize("args", [
    ("DEL", "k1", "k2"), ("UNLINK", "k1"), ("EXISTS", "k1", "k2", "k3"), ("MGET", "k1", "k2"),
    ("MSET", "k1", "v1", "k2", "v2"), ("MSETNX", "k1", "v1", "k2", "v2"), ("TOUCH", "k1", "k2"),
    ("SUNION", "k1", "k2"), ("SUNIONSTORE", "d", "k1", "k2"), ("SINTER", "k1", "k2"),
    ("SINTERSTORE", "d", "k1"), ("SDIFF", "k1", "k2"), ("SDIFFSTORE", "d", "k1", "k2"),
    ("SMOVE", "k1", "k2", "m"), ("RENAME", "k1", "k2"), ("RENAMENX", "k1", "k2"),
    ("ZUNIONSTORE", "d", 2, "k1", "k2", "WEIGHTS", 1, 2),
    ("ZINTERSTORE", "d", 2, "k1", "k2", "AGGREGATE", "MAX"), ("ZDIFFSTORE", "d", 2, "k1", "k2"),
    ("ZUNION", 2, "k1", "k2", "WITHSCORES"), ("ZINTER", 2, "k1", "k2"), ("ZDIFF", 2, "k1", "k2"),
    ("ZRANGESTORE", "d", "k1", 0, -1), ("LMOVE", "k1", "k2", "LEFT", "RIGHT"),
    ("BLMOVE", "k1", "k2", "LEFT", "RIGHT", 0), ("RPOPLPUSH", "k1", "k2"),
    ("BRPOPLPUSH", "k1", "k2", 0), ("BLPOP", "k1", "k2", 5), ("BRPOP", "k1", 0),
    ("BZPOPMIN", "k1", "k2", 1), ("BZPOPMAX", "k1", 1), ("COPY", "k1", "k2", "REPLACE"),
    ("WATCH", "k1", "k2"), ("PFCOUNT", "k1", "k2"), ("PFMERGE", "d", "k1"),
    ("BITOP", "AND", "d", "k1", "k2"), ("SORT", "k1", "LIMIT", 0, 5, "STORE", "d"),
    ("XREAD", "COUNT", 5, "STREAMS", "k1", "k2", "0", "0"),
    ("XREADGROUP", "GROUP", "g", "c", "STREAMS", "k1", ">"),
    ("GEORADIUS", "k1", 0, 0, 5, "km", "STORE", "d"), ("GEOSEARCHSTORE", "d", "k1",
                                                        "FROMLONLAT", 0, 0, "BYRADIUS", 5, "km"),
    ("EVAL", "return 1", 2, "k1", "k2", "a1"), ("EVALSHA", "0" * 40, 1, "k1", "a1"),
    ("EVAL", "return 1", 0, "a1"),
    ("HSET", "k1", "f", "v"), ("GET", "k1"), ("ZADD", "k1", 1, "m"), ("EXPIRE", "k1", 5),
    ("PUBLISH", "ch", "m"),
], ids=lambda a: str(a[0]) if isinstance(a, tuple) else None)
async def test_the_key_table_agrees_with_the_server(r: aioredis.Redis, args: tuple[Any, ...]
                                                    ) -> None:
    """Each command's keys as the audit reads them are those redis-server names
    (COMMAND GETKEYS), for the commands this server version knows."""
    name = str(args[0])
    if name == "PUBLISH":  # no key for the server; redis-py's cluster routes it by channel
        assert slot_audit.command_keys(args) == ("ch",)
        return
    info = await r.execute_command("COMMAND INFO", name)  # type: ignore[no-untyped-call]
    if not info or info[0] is None:
        pytest.skip(f"{name} is not known to this redis-server")
    expected = await r.execute_command(  # type: ignore[no-untyped-call]
        "COMMAND GETKEYS", *args)
    assert list(slot_audit.command_keys(args) or ()) == list(expected)


def test_keyless_commands_and_the_quick_test() -> None:
    assert slot_audit.command_keys(("PING",)) is None
    assert slot_audit.command_keys(("SCRIPT LOAD", "return 1")) is None
    assert slot_audit.command_keys(("CLIENT SETNAME", "x")) is None
    assert slot_audit.command_keys(("MEMORY USAGE", "k1")) == ("k1",)
    assert slot_audit.command_keys(("OBJECT", "ENCODING", "k1")) == ("k1",)
    for name in ("DEL", "del", b"DEL", "EVALSHA", "MULTI_KEYLESS_NOT"):
        assert (name in slot_audit.MULTI_KEY) == (name != "MULTI_KEYLESS_NOT")
    assert "GET" not in slot_audit.MULTI_KEY and "HSET" not in slot_audit.MULTI_KEY


def test_the_switch_reads_the_environment() -> None:
    assert slot_audit.mode_from_env({}) == "fail"
    assert slot_audit.mode_from_env({"LIVESELL_SLOT_AUDIT": "1"}) == "fail"
    assert slot_audit.mode_from_env({"LIVESELL_SLOT_AUDIT": "0"}) == "off"
    assert slot_audit.mode_from_env({"LIVESELL_SLOT_AUDIT": "record"}) == "record"


# ============================================================ a pytest run of its own

_CONFTEST = """
def pytest_configure(config):
    from tests import slot_audit
    slot_audit.configure(config)
"""

_TESTS = """
import asyncio
import redis.asyncio as aioredis

URL = {url!r}

async def _send(*args):
    client = aioredis.Redis.from_url(URL)
    try:
        return await client.execute_command(*args)
    finally:
        await client.aclose()

def test_cross_slot():
    assert asyncio.run(_send("DEL", "ls:{{ra}}:x", "ls:rooms")) == 0

def test_same_slot():
    assert asyncio.run(_send("DEL", "ls:{{ra}}:x", "ls:{{ra}}:y")) == 0
"""


def _run_pytest(tmp_path: Path, redis_url: str, **env: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "conftest.py").write_text(_CONFTEST)
    (tmp_path / "test_audited.py").write_text(_TESTS.format(url=redis_url))
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LIVESELL_SLOT_AUDIT")}
    clean["PYTHONPATH"] = os.pathsep.join(p for p in (slot_audit.ROOT,
                                                      os.environ.get("PYTHONPATH")) if p)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:asyncio",
         "-W", "ignore::DeprecationWarning", str(tmp_path)],
        cwd=tmp_path, env={**clean, **env}, capture_output=True, text=True, timeout=120)


def test_a_violation_fails_its_test_at_teardown(tmp_path: Path, redis_url: str) -> None:
    out = _run_pytest(tmp_path, redis_url)
    assert out.returncode == 1, out.stdout + out.stderr
    # The cross-slot test's call passed; its teardown failed.
    assert "2 passed, 1 error" in out.stdout, out.stdout
    assert "ERROR at teardown of test_cross_slot" in out.stdout, out.stdout
    assert "[command] DEL" in out.stdout and "ls:rooms" in out.stdout, out.stdout
    assert "test_audited.py:" in out.stdout  # where it was sent


def test_the_audit_switches_off(tmp_path: Path, redis_url: str) -> None:
    out = _run_pytest(tmp_path, redis_url, LIVESELL_SLOT_AUDIT="0")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "2 passed" in out.stdout and "slot audit" not in out.stdout, out.stdout


def test_record_mode_writes_the_file_and_fails_nothing(tmp_path: Path, redis_url: str) -> None:
    record = tmp_path / "found.jsonl"
    out = _run_pytest(tmp_path, redis_url, LIVESELL_SLOT_AUDIT="record",
                      LIVESELL_SLOT_AUDIT_FILE=str(record))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "2 passed" in out.stdout, out.stdout
    assert "1 distinct violation(s)" in out.stdout, out.stdout
    lines = record.read_text().splitlines()
    assert len(lines) == 1, lines
    found = json.loads(lines[0])
    assert found["kind"] == "command" and found["command"] == "DEL"
    assert found["test"].endswith("test_audited.py::test_cross_slot"), found
    assert sorted(k for ks in found["slots"].values() for k in ks) == ["ls:rooms", "ls:{ra}:x"]
    assert "1 distinct violation(s)" in slot_audit.summarize(lines)


def test_subprocesses_are_audited_when_asked(tmp_path: Path, redis_url: str) -> None:
    (tmp_path / "child.py").write_text(_TESTS.format(url=redis_url)
                                       + "\ntest_cross_slot()\n")
    tests = _TESTS.replace("def test_same_slot", "def _unused") + textwrap.dedent("""
        import subprocess, sys
        def test_child_process():
            subprocess.run([sys.executable, {child!r}], check=True)
        """).format(child=str(tmp_path / "child.py"))
    (tmp_path / "conftest.py").write_text(_CONFTEST)
    (tmp_path / "test_audited.py").write_text(tests.format(url=redis_url))
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LIVESELL_SLOT_AUDIT")}
    clean["PYTHONPATH"] = slot_audit.ROOT
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:asyncio",
         "-W", "ignore::DeprecationWarning", "-k", "child", str(tmp_path)],
        cwd=tmp_path, env={**clean, "LIVESELL_SLOT_AUDIT_SUBPROCESSES": "1"},
        capture_output=True, text=True, timeout=120)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "ERROR at teardown of test_child_process" in out.stdout, out.stdout
    assert "child.py:" in out.stdout and "ls:rooms" in out.stdout, out.stdout
