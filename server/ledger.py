"""The ledger: the only module that runs the atomic Lua scripts.

Calls made in the same event-loop tick are gathered and sent in one
pipelined round trip (design.md section 6: the Python client, not Redis, is
the bottleneck, and one pipeline per tick recovers most of the difference).
Each caller still gets its own answer. Scripts are loaded by SHA at start and
reloaded transparently if Redis restarts and forgets them.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Sequence
from importlib import resources
from typing import Any, Final

from redis.asyncio import Redis
from redis.exceptions import NoScriptError, RedisError

log = logging.getLogger("livesell.ledger")

SCRIPT_NAMES: Final = (
    "publish",
    "reserve",
    "release",
    "begin_checkout",
    "finish_checkout",
    "abort_checkout",
    "claim_coupon",
    "enter_lottery",
    "adjust_stock",
    "close_lottery",
    "viewers",
)
MAX_BATCH: Final = 256

Arg = str | int | float | bytes


def _load_sources() -> dict[str, str]:
    base = resources.files("server") / "lua"
    return {name: (base / f"{name}.lua").read_text(encoding="utf-8") for name in SCRIPT_NAMES}


_Call = tuple[str, Sequence[str], Sequence[Arg], "asyncio.Future[Any]"]


def _settle(answered: list[tuple[_Call, Any]]) -> None:
    """Hand each caller its reply (an exception reply is raised in the caller)."""
    for (*_, fut), result in answered:
        if fut.done():
            continue
        if isinstance(result, Exception):
            fut.set_exception(result)
        else:
            fut.set_result(result)


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

    def run(self, name: str, keys: Sequence[str], args: Sequence[Arg]) -> asyncio.Future[Any]:
        """Queue one script call; the future resolves with the script's reply."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        self._pending.append((name, keys, args, fut))
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
        except (RedisError, OSError) as exc:
            for *_, fut in batch:
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
            except (RedisError, OSError) as exc:
                results = [exc] * len(retry)
            _settle(list(zip(retry, results, strict=True)))

    async def _execute(
        self, batch: list[_Call]
    ) -> list[Any]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for name, keys, args, _ in batch:
                pipe.evalsha(self.shas[name], len(keys), *keys, *args)
            return list(await pipe.execute(raise_on_error=False))

    async def drain(self) -> None:
        """Wait for every queued call to be answered (used at shutdown)."""
        while self._pending or self._inflight:
            if self._pending and not self._scheduled:
                self._flush()
            if self._inflight:
                await asyncio.gather(*list(self._inflight), return_exceptions=True)
            else:
                await asyncio.sleep(0)
