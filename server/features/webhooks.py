"""Webhooks: endpoints a shop registers (per room with the host key, or for
every room with the admin key), and the delivery of the order store's outbox
to them (docs/operations.md "Webhooks").

Events are written to the outbox by the store itself, an order's in the same
transaction as the order (server/state/sqlite_writer.py), so an order is never
placed without its event nor an event sent for an order that did not commit.
Each process runs one dispatcher: it hands new outbox events to the matching
endpoints' deliveries, then sends each endpoint's oldest pending message, one
endpoint per lease (so one process at a time keeps an endpoint's order), signed
the Standard Webhooks way (server/core/webhooks.py). A failed attempt is retried
with exponential backoff and jitter until `webhooks.give_up_after_s` after the
event, then it is a dead letter and the endpoint's next message goes. Delivery
is at least once: a process killed after a receiver took a message but before
it was recorded sends it again, with the same `webhook-id`, by which receivers
deduplicate."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import secrets
from typing import Any, Final

import httpx
import orjson

from server import __version__
from server.core import webhooks
from server.core.domain import new_id, now_ms
from server.core.errors import BadRequest, Conflict, NotFound
from server.core.schema import paged
from server.features.context import Context
from server.features.registry import Call, Registry, Route
from server.state.store import StoreClosed, StoreError

log = logging.getLogger("livesell.webhooks")

FAN_OUT_BATCH: Final = 500
LEASE_EXTRA_S: Final = 5.0  # a lease outlives two attempts' timeouts by this much
IDLE_WAIT_S: Final = 1.0  # the dispatcher looks for new events at least this often


def public(endpoint: dict[str, Any]) -> dict[str, Any]:
    """An endpoint as listed: never its secret."""
    return {k: v for k, v in endpoint.items() if k != "secret"}


DELIVERIES_QUERY = paged(100, 1000)


class Webhooks:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.settings = ctx.settings.webhooks
        self.owner = f"{os.getpid()}-{secrets.token_hex(4)}"
        self._task: asyncio.Task[None] | None = None
        self._client: httpx.AsyncClient | None = None
        self._rng = random.Random()
        self._stopping = False
        # For the metrics: attempts by outcome, and the age of the oldest message not
        # delivered yet, as of the last round.
        self.attempts: dict[str, int] = {}
        self.outbox_lag_s = 0.0

    def register(self, registry: Registry) -> None:
        registry.route(Route("POST", "/webhooks", self._add, status=201,
                             body=webhooks.ENDPOINT_SHAPE, needs_whole=False, guard_ended=False))
        registry.route(Route("GET", "/webhooks", self._list, needs_whole=False))
        registry.route(Route("DELETE", "/webhooks/{endpoint_id}", self._remove,
                             needs_whole=False))
        registry.route(Route("GET", "/webhooks/{endpoint_id}/deliveries", self._log,
                             needs_whole=False, query=DELIVERIES_QUERY))
        registry.route(Route("POST", "/webhooks/{endpoint_id}/replay", self._replay,
                             body=webhooks.REPLAY_SHAPE, needs_whole=False))
        registry.on_upkeep(self._keep_running)

    # ------------------------------------------------------------------ endpoints

    async def add(self, room_id: str | None, body: dict[str, Any]) -> dict[str, Any]:
        """Register an endpoint; the answer carries its secret, this once."""
        spec = webhooks.parse_endpoint(
            body, allow_private=room_id is None or self.settings.allow_private_targets)
        try:
            httpx.URL(spec.url)
        except httpx.InvalidURL as exc:
            raise BadRequest(f"url: {exc}", details={"field": "url"}) from None
        if room_id is not None and len(await self.ctx.store.endpoints(room_id)) >= \
                self.settings.max_endpoints_per_room:
            raise Conflict(f"this room has {self.settings.max_endpoints_per_room} endpoints "
                           "already (webhooks.max_endpoints_per_room)",
                           code="too_many_endpoints")
        endpoint = {"endpoint_id": new_id("we"), "room_id": room_id, "url": spec.url,
                    "events": list(spec.events), "description": spec.description,
                    "created_at": now_ms(), "secret": webhooks.new_secret()}
        await self.ctx.store.add_endpoint(endpoint)
        return endpoint

    async def endpoint(self, room_id: str | None, endpoint_id: str) -> dict[str, Any]:
        for e in await self.ctx.store.endpoints(room_id):
            if e["endpoint_id"] == endpoint_id:
                return e
        raise NotFound(f"no webhook endpoint {endpoint_id} here",
                       code="endpoint_not_found")

    async def listed(self, room_id: str | None) -> dict[str, Any]:
        return {"endpoints": [public(e) for e in await self.ctx.store.endpoints(room_id)]}

    async def remove(self, room_id: str | None, endpoint_id: str) -> dict[str, Any]:
        await self.endpoint(room_id, endpoint_id)
        await self.ctx.store.disable_endpoint(endpoint_id, now_ms())
        return {"endpoint_id": endpoint_id, "removed": True}

    async def delivery_log(self, room_id: str | None, endpoint_id: str,
                           limit: int) -> dict[str, Any]:
        await self.endpoint(room_id, endpoint_id)
        return {"endpoint_id": endpoint_id,
                "deliveries": await self.ctx.store.deliveries(endpoint_id, limit)}

    async def replay(self, room_id: str | None, endpoint_id: str,
                     body: dict[str, Any]) -> dict[str, Any]:
        from_id = webhooks.REPLAY_SHAPE.read(body)["from_event_id"]
        await self.endpoint(room_id, endpoint_id)
        count = await self.ctx.store.replay(endpoint_id, from_id, now_ms())
        if count is None:
            raise NotFound(f"no event {from_id[:80]} in the outbox", code="event_not_found")
        return {"endpoint_id": endpoint_id, "replayed": count}

    async def _add(self, call: Call) -> Any:
        return await self.add(call.room_id, call.body)

    async def _list(self, call: Call) -> Any:
        return await self.listed(call.room_id)

    async def _remove(self, call: Call) -> Any:
        return await self.remove(call.room_id, call.params["endpoint_id"])

    async def _log(self, call: Call) -> Any:
        return await self.delivery_log(call.room_id, call.params["endpoint_id"],
                                       DELIVERIES_QUERY.read(call.query)["limit"])

    async def _replay(self, call: Call) -> Any:
        return await self.replay(call.room_id, call.params["endpoint_id"], call.body)

    # ------------------------------------------------------------------ dispatcher

    async def _keep_running(self) -> None:
        """Upkeep (once a second): the dispatcher runs while the server does."""
        if not self._stopping and (self._task is None or self._task.done()):
            self._task = asyncio.get_running_loop().create_task(self._run(),
                                                                name="webhooks")

    async def _run(self) -> None:
        self._client = httpx.AsyncClient(follow_redirects=False, trust_env=False)
        try:
            while not self._stopping:
                try:
                    sent = await self.deliver_due()
                except (StoreError, StoreClosed) as exc:
                    log.info("webhooks: the store is not answering (%s); trying again", exc)
                    sent = 0
                except Exception:
                    log.exception("webhooks: dispatcher round failed")
                    sent = 0
                if not sent:
                    await asyncio.sleep(IDLE_WAIT_S)
        finally:
            await self._client.aclose()

    async def deliver_due(self) -> int:
        """One round: new events to deliveries, then each due endpoint's oldest
        message; how many attempts were made."""
        store = self.ctx.store
        if not await store.has_endpoints():
            # Nothing registered: a read, no write transaction, each round.
            self.outbox_lag_s = 0.0
            return 0
        now = now_ms()
        await store.fan_out(now, FAN_OUT_BATCH)
        oldest = await store.oldest_pending()
        self.outbox_lag_s = max(0.0, (now - oldest) / 1000) if oldest is not None else 0.0
        heads = await store.due_heads(now, self.settings.concurrency * 4, self.owner)
        # A process killed mid-delivery holds its endpoints this long at most.
        lease_ms = int((2 * self.settings.timeout_s + LEASE_EXTRA_S) * 1000)
        gate = asyncio.Semaphore(self.settings.concurrency)

        async def one(head: dict[str, Any]) -> int:
            async with gate:
                if not await store.lease_endpoint(head["endpoint_id"], self.owner, now_ms(),
                                                  now_ms() + lease_ms):
                    return 0  # another process delivers to it now
                await self.attempt(head)
                return 1

        done = await asyncio.gather(*(one(h) for h in heads), return_exceptions=True)
        for outcome in done:
            if isinstance(outcome, BaseException) and not isinstance(
                    outcome, (StoreError, StoreClosed)):
                log.error("webhooks: an attempt failed", exc_info=outcome)
        return sum(n for n in done if isinstance(n, int))

    async def attempt(self, head: dict[str, Any]) -> None:
        """Send one message and record what became of it."""
        assert self._client is not None
        event_id = head["event_id"]
        body = orjson.dumps(webhooks.payload(event_id, head["type"], head["created_at"],
                                             orjson.loads(head["data"])))
        sent_at = now_ms()
        timestamp = sent_at // 1000
        headers = {"content-type": "application/json",
                   "user-agent": f"livesell-webhooks/{__version__}",
                   "webhook-id": event_id, "webhook-timestamp": str(timestamp),
                   "webhook-signature": webhooks.sign(head["secret"], event_id, timestamp,
                                                      body)}
        status: int | None = None
        try:
            # The whole exchange within timeout_s, the name's lookup included (httpx's
            # own timeout is per phase: a receiver trickling its answer could outlast
            # the endpoint's lease).
            async with asyncio.timeout(self.settings.timeout_s):
                if head["room_id"] is not None and not self.settings.allow_private_targets:
                    await self._refuse_private(head["url"])
                answer = await self._client.post(head["url"], content=body, headers=headers,
                                                 timeout=self.settings.timeout_s)
            status = answer.status_code
            error = "" if 200 <= status < 300 else f"HTTP {status}"
        except Exception as exc:  # any failure of this one message is its attempt's
            error = f"{type(exc).__name__}: {exc}"[:300]
        now = now_ms()
        outcome = "delivered" if not error else "retry"
        # Counted from when the message was handed to the endpoint (or replayed).
        since = int(head["since"]) or int(head["created_at"])
        if error and now - since >= self.settings.give_up_after_s * 1000:
            outcome = "dead"
        self.attempts[outcome] = self.attempts.get(outcome, 0) + 1
        if not error:
            await self.ctx.store.record_attempt(head["endpoint_id"], head["seq"], "delivered",
                                                status, "", now, now)
            return
        attempts = int(head["attempts"]) + 1
        if outcome == "dead":
            log.warning("webhook %s to %s is a dead letter after %d attempts: %s", event_id,
                        head["endpoint_id"], attempts, error)
            await self.ctx.store.record_attempt(head["endpoint_id"], head["seq"], "dead",
                                                status, error, now, now)
            return
        delay = webhooks.retry_delay_s(attempts, self.settings.first_retry_s,
                                       self.settings.max_retry_s,
                                       self._rng.uniform(0.8, 1.2))
        await self.ctx.store.record_attempt(head["endpoint_id"], head["seq"], "pending",
                                            status, error, now, now + int(delay * 1000))

    async def _refuse_private(self, url: str) -> None:
        """A room's endpoint must not reach the shop's own network: its host is
        resolved now, each time, and refused when any address it names is private."""
        parsed = httpx.URL(url)
        infos = await asyncio.get_running_loop().getaddrinfo(
            parsed.host, parsed.port or (443 if parsed.scheme == "https" else 80))
        for info in infos:
            addr = webhooks.literal_address(str(info[4][0]).split("%")[0])
            if addr is None or webhooks.is_private_address(addr):
                raise PermissionError(f"{parsed.host} resolves to a private address "
                                      f"({info[4][0]}); webhooks.allow_private_targets "
                                      "is off")

    async def stop(self) -> None:
        self._stopping = True
        task = self._task
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, 5.0)
