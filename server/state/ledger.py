"""The engine that runs the atomic Lua scripts (`lua/`), batched.

Calls made in the same event-loop tick are gathered and sent in one round trip
(design.md section 6: the Python client, not Redis, is the bottleneck). Calls
of the same script for the same room go further: they become one call of that
script's batch form, which runs the unchanged script body once per call inside
one script invocation, so the client packs one command and parses one reply
instead of one per buyer. Each caller still gets its own answer, in order, and
an error in one call (a Lua error) reaches only that caller. A typed method's
reply (server/state/scripts.py) is converted when its future is resolved, so
it costs no task and no extra await. Scripts are loaded by SHA at start and
reloaded transparently if Redis restarts and forgets them.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable, Sequence
from importlib import resources
from typing import Any, Final, TypeVar, overload

from redis.asyncio import Redis
from redis.exceptions import NoScriptError

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
)
MAX_BATCH: Final = 256
BATCH_SUFFIX: Final = "@batch"

Arg = str | int | float | bytes

# The batch form of a script: its body becomes a local function of KEYS and
# ARGV (the parameters shadow the globals, so the body runs unchanged), called
# once per packed call. ARGV[1] is the number of calls; then, per call, its
# key count, its argument count and its arguments. KEYS holds every call's keys
# in order. pcall keeps one call's Lua error (a table {err = ...} from
# redis.call, or a string) to that call's slot; a nil answer becomes false so
# the reply array keeps its length.
_BATCH_TEMPLATE = """local function one(KEYS, ARGV)
%s
end
local out, k, a = {}, 1, 2
for i = 1, tonumber(ARGV[1]) do
  local nk, na = tonumber(ARGV[a]), tonumber(ARGV[a + 1])
  local ks, as = {}, {}
  for j = 1, nk do ks[j] = KEYS[k + j - 1] end
  for j = 1, na do as[j] = ARGV[a + 1 + j] end
  k = k + nk
  a = a + 2 + na
  local ok, r = pcall(one, ks, as)
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


def _load_sources() -> dict[str, str]:
    base = resources.files("server.state") / "lua"
    plain = {name: (base / f"{name}.lua").read_text(encoding="utf-8") for name in SCRIPT_NAMES}
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
        self.sources = _load_sources()
        self.shas = {name: hashlib.sha1(src.encode()).hexdigest()
                     for name, src in self.sources.items()}
        self._pending: list[_Call] = []
        self._scheduled = False
        self._inflight: set[asyncio.Task[None]] = set()

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
        try:
            results = await self._execute(batch)
        except REDIS_FAULTS as exc:
            for _, _, _, fut, _ in batch:
                if not fut.done():
                    fut.set_exception(exc)
            return
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
        results: list[Any] = [None] * len(batch)
        async with self.redis.pipeline(transaction=False) as pipe:
            for (name, _), members in groups.items():
                if len(members) == 1:
                    _, keys, args, _, _ = batch[members[0]]
                    pipe.evalsha(self.shas[name], len(keys), *keys, *args)
                    continue
                all_keys: list[str] = []
                packed: list[Arg] = [len(members)]
                for i in members:
                    _, keys, args, _, _ = batch[i]
                    all_keys.extend(keys)
                    packed.append(len(keys))
                    packed.append(len(args))
                    packed.extend(args)
                pipe.evalsha(self.shas[name + BATCH_SUFFIX], len(all_keys), *all_keys, *packed)
            replies = await pipe.execute(raise_on_error=False)
        for members, reply in zip(groups.values(), replies, strict=True):
            if len(members) == 1:
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
