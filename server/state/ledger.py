"""The engine that runs the atomic Lua scripts (`lua/`), batched.

Calls made in the same event-loop tick are gathered and sent in one round trip
(design.md section 6: the Python client, not Redis, is the bottleneck). Calls
of the same script for the same room go further: they become one call of that
script's batch form, which runs the unchanged script body once per call inside
one script invocation, so the client packs one command and parses one reply
instead of one per buyer. That command carries each distinct key once (the
sale, the stock, the room's sets are shared by every buyer) and every call's
key positions and arguments as one JSON document, encoded by orjson in C and
decoded by Redis's built-in cjson: redis-py packs each argument of a command
in Python, and with 256 buyers of 11 keys and 10 arguments that was about 6,000
arguments and most of the ledger's CPU (docs/benchmarks.md).

Each caller still gets its own answer, in order, and an error in one call (a
Lua error) reaches only that caller. A typed method's reply
(server/state/scripts.py) is converted when its future is resolved, so it
costs no task and no extra await. Scripts are loaded by SHA at start and
reloaded transparently if Redis restarts and forgets them.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
from collections.abc import Callable, Sequence
from importlib import resources
from typing import Any, Final, TypeVar, overload

import orjson
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import DataError, NoScriptError

from server.state.faults import REDIS_FAULTS

log = logging.getLogger("livesell.ledger")

SCRIPT_NAMES: Final = (
    "publish",
    "reserve",
    "release",
    "begin_checkout",
    "finish_checkout",
    "abort_checkout",
    "stop_sale",
    "claim_coupon",
    "enter_lottery",
    "adjust_stock",
    "close_lottery",
    "viewers",
    "reschedule",
    "chat_gate",
    "mint_guest",
    "promote",
    "join_waitlist",
    "leave_room",
    "claim_word",
    "start_auction",
    "bid",
    "close_auction",
    "second_chance",
    "vote",
    "close_poll",
    "ask",
    "upvote",
    "answer_question",
    "start_group",
    "join_group",
    "expire_group",
    "award",
    "referral_reward",
    "cancel_order",
    "home",
)
MAX_BATCH: Final = 256
MAX_SAMPLES: Final = 10_000  # timing samples kept between two takes by the metrics
BATCH_SUFFIX: Final = "@batch"

Arg = str | int | float | bytes

# The batch form of a script: its body becomes a local function of KEYS and
# ARGV (the parameters shadow the globals, so the body runs unchanged), called
# once per packed call. KEYS holds each distinct key of the batch once; ARGV[1]
# is a JSON array with, per call, the positions in KEYS of its keys and its
# arguments (all strings, as ARGV always is). pcall keeps one call's Lua error
# (a table {err = ...} from redis.call, or a string) to that call's slot; a nil
# answer becomes false so the reply array keeps its length.
_BATCH_TEMPLATE = """local function one(KEYS, ARGV)
%s
end
local calls = cjson.decode(ARGV[1])
local out = {}
for i = 1, #calls do
  local positions, ks = calls[i][1], {}
  for j = 1, #positions do ks[j] = KEYS[positions[j]] end
  local ok, r = pcall(one, ks, calls[i][2])
  if not ok then
    if type(r) == 'table' and r.err then r = {err = r.err} else r = {err = tostring(r)} end
  elseif r == nil then
    r = false
  end
  out[i] = r
end
return out
"""


def batch_source(source: str) -> str:
    """The batch form of a script (see _BATCH_TEMPLATE)."""
    return _BATCH_TEMPLATE % source


# A script line `-- #include NAME` is replaced by lua/lib/NAME.lua: code several scripts
# must run in their own atomic step, written once (the offer rule, lib/offer.lua, in
# reserve.lua and the waitlist's scripts; the promotion, lib/waitlist.lua, in
# release.lua and promote.lua). Libraries do not include others: a script names each.
_INCLUDE = re.compile(r"^-- #include (\w+)$", re.MULTILINE)


def script_source(name: str) -> str:
    """The text Redis runs for script `name` (its file, libraries included): for the
    ledger and for anything else that runs a script itself (the benchmark's
    reference), so none runs a file that names a library it lacks."""
    base = resources.files("server.state") / "lua"

    def include(match: re.Match[str]) -> str:
        return (base / "lib" / f"{match.group(1)}.lua").read_text(encoding="utf-8")

    return _INCLUDE.sub(include, (base / f"{name}.lua").read_text(encoding="utf-8"))


def _load_sources() -> dict[str, str]:
    plain = {name: script_source(name) for name in SCRIPT_NAMES}
    return plain | {name + BATCH_SUFFIX: batch_source(src) for name, src in plain.items()}


def _slot(keys: Sequence[str]) -> str:
    """The hash tag of a call's first key: calls batch together only within one
    room, so a batch never spans Redis Cluster slots (keys.py)."""
    first = keys[0] if keys else ""
    start = first.find("{")
    end = first.find("}", start + 1)
    return first[start:end + 1] if start >= 0 and end > start else first


T = TypeVar("T")
# A call: script name, keys, args, the caller's future, and the reply's conversion
# (None: the raw reply).
_Call = tuple[str, Sequence[str], Sequence[Arg], "asyncio.Future[Any]",
              "Callable[[Any], Any] | None"]


def _text(arg: Arg) -> str:
    """An argument as the string Redis would hand the script in ARGV (redis-py
    sends an int or float as its repr, which is its str). Refused as redis-py
    refuses it when anything else (a bool would pass as 'True')."""
    if type(arg) is str:
        return arg
    if isinstance(arg, bytes):
        return arg.decode()  # UnicodeDecodeError: not for JSON (see _pack)
    if type(arg) is int or type(arg) is float:
        return str(arg)
    raise DataError(f"Invalid input of type: {type(arg).__name__!r}. Convert to a "
                    "bytes, string, int or float first.")


def _pack(batch: list[_Call], members: list[int]) -> tuple[list[str], bytes] | None:
    """The batch form's KEYS (each distinct key once) and its one argument (per
    call: the 1-based positions of its keys in KEYS, and its arguments); None if
    an argument is bytes that are not UTF-8, which a JSON string cannot carry."""
    positions: dict[str, int] = {}
    calls: list[tuple[list[int], list[str]]] = []
    try:
        for i in members:
            _, keys, args, _, _ = batch[i]
            calls.append(([positions.setdefault(k, len(positions) + 1) for k in keys],
                          [_text(a) for a in args]))
    except UnicodeDecodeError:
        return None
    return list(positions), orjson.dumps(calls)


def _settle(answered: list[tuple[_Call, Any]]) -> None:
    """Hand each caller its reply (an exception reply is raised in the caller)."""
    for (_, _, _, fut, decode), result in answered:
        if fut.done():
            continue
        if isinstance(result, Exception):
            fut.set_exception(result)
        elif decode is None:
            fut.set_result(result)
        else:
            try:
                fut.set_result(decode(result))
            except Exception as exc:  # a reply of a shape the script never gives
                fut.set_exception(exc)


class Ledger:
    """Runs named scripts, batching the calls of one loop tick into one pipeline."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        # On a Redis Cluster an event goes by sharded pub/sub (publish.lua), and
        # SCRIPT LOAD reaches every primary (redis-py sends it to each).
        self.cluster = isinstance(redis, RedisCluster)
        self.publish_command = "SPUBLISH" if self.cluster else "PUBLISH"
        self.sources = _load_sources()
        self.shas = {name: hashlib.sha1(src.encode()).hexdigest()
                     for name, src in self.sources.items()}
        self._pending: list[_Call] = []
        self._scheduled = False
        self._inflight: set[asyncio.Task[None]] = set()
        # For the metrics (server/web/metrics.py, which takes them once a second): each
        # pipeline's round trip in seconds, at most MAX_SAMPLES between two takes, and
        # the pipelines Redis failed.
        self.round_trips: list[float] = []
        self.failed_batches = 0

    async def load(self) -> None:
        for name, src in self.sources.items():
            sha = await self.redis.script_load(src)
            if sha != self.shas[name]:  # pragma: no cover - Redis computes the same SHA1
                self.shas[name] = sha

    @overload
    def run(self, name: str, keys: Sequence[str], args: Sequence[Arg]) -> asyncio.Future[Any]:
        ...

    @overload
    def run(self, name: str, keys: Sequence[str], args: Sequence[Arg],
            decode: Callable[[Any], T]) -> asyncio.Future[T]:
        ...

    def run(self, name: str, keys: Sequence[str], args: Sequence[Arg],
            decode: Callable[[Any], Any] | None = None) -> asyncio.Future[Any]:
        """Queue one script call; the future resolves with the script's reply, passed
        through `decode` if given. Use the typed methods of `Scripts` instead."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        self._pending.append((name, keys, args, fut, decode))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return fut

    def _flush(self) -> None:
        self._scheduled = False
        while self._pending:
            batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
            task = asyncio.get_running_loop().create_task(self._send(batch))
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)

    async def _send(
        self, batch: list[_Call]
    ) -> None:
        started = time.perf_counter()
        try:
            results = await self._execute(batch)
        except REDIS_FAULTS as exc:
            self.failed_batches += 1
            for _, _, _, fut, _ in batch:
                if not fut.done():
                    fut.set_exception(exc)
            return
        if len(self.round_trips) < MAX_SAMPLES:
            self.round_trips.append(time.perf_counter() - started)
        retry = [item for item, result in zip(batch, results, strict=True)
                 if isinstance(result, NoScriptError)]
        _settle([(item, result) for item, result in zip(batch, results, strict=True)
                 if not isinstance(result, NoScriptError)])
        if retry:
            # Redis restarted and forgot the scripts: load them again and resend.
            log.warning("redis lost the scripts; reloading them")
            try:
                await self.load()
                results = await self._execute(retry)
            except REDIS_FAULTS as exc:
                results = [exc] * len(retry)
            _settle(list(zip(retry, results, strict=True)))

    async def _execute(
        self, batch: list[_Call]
    ) -> list[Any]:
        """Send the calls in one pipeline, same-script same-room calls as one batch
        call; return one result per call, in the calls' order."""
        groups: dict[tuple[str, str], list[int]] = {}
        for i, (name, keys, _, _, _) in enumerate(batch):
            groups.setdefault((name, _slot(keys)), []).append(i)
        # The calls of each command of the pipeline, in order, and whether that
        # command is a batch call (one reply holding each call's reply).
        commands: list[tuple[list[int], bool]] = []
        async with self.redis.pipeline(transaction=False) as pipe:
            for (name, _), members in groups.items():
                packed = _pack(batch, members) if len(members) > 1 else None
                if packed is None:
                    # One call, or arguments JSON cannot carry: one command each.
                    for i in members:
                        _, keys, args, _, _ = batch[i]
                        pipe.evalsha(self.shas[name], len(keys), *keys, *args)
                        commands.append(([i], False))
                    continue
                all_keys, document = packed
                pipe.evalsha(self.shas[name + BATCH_SUFFIX], len(all_keys), *all_keys,
                             document)
                commands.append((members, True))
            replies = await pipe.execute(raise_on_error=False)
        results: list[Any] = [None] * len(batch)
        for (members, batched), reply in zip(commands, replies, strict=True):
            if not batched:
                results[members[0]] = reply
            elif isinstance(reply, Exception):
                # The whole batch call failed (NOSCRIPT, connection): every call in it did.
                for i in members:
                    results[i] = reply
            else:
                for i, one in zip(members, reply, strict=True):
                    results[i] = one
        return results

    async def drain(self) -> None:
        """Wait for every queued call to be answered (used at shutdown)."""
        while self._pending or self._inflight:
            if self._pending and not self._scheduled:
                self._flush()
            if self._inflight:
                await asyncio.gather(*list(self._inflight), return_exceptions=True)
            else:
                await asyncio.sleep(0)
