"""A generator process: one share of the crowd, its behaviour and its counters.

The parent starts one process per available core (`run_worker`), each pinned
away from the server's cores where the system allows, and steers them through
a command queue: join, show (the show's clock), bind (ids made by the host
during a trace replay), replay, quiet, finish, stop. A process answers with
progress every half second and, at the end, everything its viewers were told
(`WorkerResult`). Viewers act on what the room broadcasts (a sale announced,
a coupon dropped, a lottery opened), the way real clients do, so the
selling load also exercises fan-out.

Each process measures its own CPU use per second and reports the seconds in
which it saturated its core, because a saturated generator measures itself,
not the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import random
import signal
import threading
import time
import traceback
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from loadtest.model import Claim, Entry, HoldRecord, OrderAck, ViewerRecord
from loadtest.scenario import Scenario
from loadtest.stats import Reservoir
from loadtest.viewer import Viewer, now_ms
from server.core import gcpolicy

PROGRESS_EVERY_S = 0.5
SATURATED = 0.9  # share of one core above which a second counts as saturated
NOT_STARTED_RETRIES = 60  # buys sent a little before the opening instant retry this often
CHAT_TICK_S = 0.1
FINISH_TIMEOUT_S = 15.0

RETRYABLE = frozenset({"rate_limited", "unavailable", "store_unavailable",
                       "request_in_progress", "timeout", "internal"})
TRANSIENT_TRIES = 5  # buys retried this often on a transient error (without retry_for_s)
CHECKOUT_TRIES = 10
MAX_ANSWERS = 500_000  # timed answers kept per process (chaos runs)


@dataclass(frozen=True, slots=True)
class TraceStep:
    """One viewer action of a replayed trace, for one synthetic viewer."""

    t_ms: float  # since the replay started, already divided by the speed
    viewer: int  # the synthetic viewer's index
    action: str
    data: dict[str, Any]


@dataclass(slots=True)
class WorkerPlan:
    worker_id: int
    host: str
    port: int
    room_id: str
    indices: list[int]
    sampled: set[int]
    scenario: Scenario
    abandon: str  # "expire" or "release"
    cpus: list[int] | None = None
    workers: int = 1  # generator processes in the run (each joins its share of the rate)
    latency_cap: int = 200_000
    steps: list[TraceStep] | None = None  # trace replay: what each viewer does
    # Chaos runs: keep every buy and checkout answer with its times, and retry a
    # transient error (unavailable, timeout, ...) for this long instead of a few
    # times, as a client told "try again" would, so buys go on through a fault and
    # show when the server recovered.
    record_answers: bool = False
    retry_for_s: float = 0.0


@dataclass(slots=True)
class WorkerResult:
    worker_id: int
    viewers: list[ViewerRecord] = field(default_factory=list)
    holds: list[HoldRecord] = field(default_factory=list)
    acks: list[OrderAck] = field(default_factory=list)
    claims: list[Claim] = field(default_factory=list)
    entries: list[Entry] = field(default_factory=list)
    latency_ms: list[float] = field(default_factory=list)
    latency_seen: int = 0
    buy_ms: list[float] = field(default_factory=list)
    checkout_ms: list[float] = field(default_factory=list)
    outcomes: dict[str, dict[str, int]] = field(default_factory=dict)
    join_ms: list[float] = field(default_factory=list)
    join_failures: list[str] = field(default_factory=list)
    frames: int = 0
    applied: int = 0
    cpu_s: float = 0.0
    wall_s: float = 0.0
    saturated_s: int = 0
    peak_util: float = 0.0
    util_timeline: list[tuple[float, float]] = field(default_factory=list)
    abandoned_to_expire: int = 0
    released: int = 0
    trace_skipped: dict[str, int] = field(default_factory=dict)
    # (sent, answered: epoch seconds; "buy" or "checkout"; "hold", "order_placed" or
    # the error code), with record_answers
    answers: list[tuple[float, float, str, str]] = field(default_factory=list)


@dataclass(slots=True)
class Roles:
    buyer: bool
    greedy: bool
    claimer: bool
    entrant: bool
    reconnector: bool
    reconnect_delay_s: float
    chatter: bool
    buy_delay_s: float


class Crowd:
    def __init__(self, plan: WorkerPlan, send: Any) -> None:
        self.plan = plan
        self.scn = plan.scenario
        self.send = send  # put a message to the parent
        self.host, self.port = plan.host, plan.port
        self.ws_base = f"ws://{plan.host}:{plan.port}/ws/{plan.room_id}"
        self.viewers: dict[int, Viewer] = {}
        self.roles: dict[int, Roles] = {}
        self.rngs: dict[int, random.Random] = {}
        self.rng = random.Random(self.scn.run.seed * 7919 + plan.worker_id)
        self.connected = 0
        self.frames = 0
        self.applied = 0
        self.errors = 0
        self.offset_ms: float | None = None  # server clock - local clock
        self.latency = Reservoir(plan.latency_cap, self.scn.run.seed)
        self.result = WorkerResult(plan.worker_id)
        self.outcomes: dict[str, Counter[str]] = {}
        self.tasks: set[asyncio.Task[Any]] = set()
        self.finishing = False
        self.trace_mode = plan.steps is not None
        self.sales_seen: dict[int, set[str]] = {}
        self.claimed: dict[int, list[str]] = {}
        self.entered: dict[int, set[str]] = {}
        self.chatting_since: dict[int, float] = {}
        self.chat_on = False
        self.bindings: dict[tuple[str, str], str] = {}
        self.bound = asyncio.Event()
        self.own_holds: dict[int, list[str]] = {}
        self.hold_map: dict[tuple[int, str], str] = {}
        self.show_started = asyncio.Event()
        self.t0 = 0.0
        self.sale_starts_at = 0
        self._build()

    def _build(self) -> None:
        s = self.scn
        for i in self.plan.indices:
            rng = random.Random(s.run.seed * 1_000_003 + i)
            self.rngs[i] = rng
            buyer = s.sale.enabled and rng.random() < s.sale.buyer_share
            window = s.sale.buy_window_s
            self.roles[i] = Roles(
                buyer=buyer,
                greedy=buyer and rng.random() < s.sale.greedy_share,
                claimer=s.coupon.enabled and rng.random() < s.coupon.claim_share,
                entrant=s.lottery.enabled and rng.random() < s.lottery.enter_share,
                reconnector=s.reconnect.enabled and rng.random() < s.reconnect.share,
                reconnect_delay_s=rng.uniform(0.05, max(0.05, s.reconnect.within_s)),
                chatter=rng.random() < s.chat.share,
                buy_delay_s=rng.uniform(0.0, window) if window else 0.0)
            self.viewers[i] = Viewer(self, i, i in self.plan.sampled)

    # ------------------------------------------------------------ helpers

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            self.count("internal", type(exc).__name__)

    def rng_delay(self, lo: float, hi: float) -> float:
        return self.rng.uniform(lo, hi)

    def count(self, action: str, outcome: str) -> None:
        self.outcomes.setdefault(action, Counter())[outcome] += 1

    def answered(self, sent: float, action: str, outcome: str) -> None:
        """A buy or checkout answer with its times, kept in chaos runs."""
        if self.plan.record_answers and len(self.result.answers) < MAX_ANSWERS:
            self.result.answers.append((sent, time.time(), action, outcome))

    def may_retry(self, tries: int, limit: int, first_failure: float) -> bool:
        """Another try after a transient error: `limit` tries, or with retry_for_s,
        until that long after the first transient error."""
        if self.finishing:
            return False
        if self.plan.retry_for_s:
            return time.monotonic() - first_failure < self.plan.retry_for_s
        return tries < limit

    def learn_offset(self, server_time: float) -> None:
        if self.offset_ms is None:
            self.offset_ms = server_time - now_ms()

    def server_to_local(self, server_ms: float) -> float:
        return server_ms - (self.offset_ms or 0.0)

    async def sleep_until_local(self, local_ms: float) -> None:
        delay = (local_ms - now_ms()) / 1000.0
        if delay > 0:
            await asyncio.sleep(delay)

    def on_error(self, viewer: Viewer, msg: dict[str, Any]) -> None:
        code = str(msg.get("code"))
        if code == "rate_limited" and "hat" in str(msg.get("message", "")):
            viewer.rec.chats_refused += 1
            self.count("chat", "rate_limited")
        else:
            self.errors += 1
            self.count("unanswered_error", code)

    # ------------------------------------------------------------ reacting to the room

    def on_event(self, viewer: Viewer, kind: str, msg: dict[str, Any]) -> None:
        if kind == "chat":
            if msg.get("viewer_id") == viewer.rec.viewer_id:
                viewer.rec.chats_seen_own += 1
            return
        if self.trace_mode or self.finishing:
            return
        roles = self.roles[viewer.index]
        if kind == "snapshot":
            for card in msg.get("products", []):
                sale = card.get("sale")
                if sale and sale.get("state") in ("scheduled", "open"):
                    self._sale_seen(viewer, roles, sale)
            for coupon in msg.get("coupons", []):
                self._coupon_seen(viewer, roles, coupon)
            for lottery in msg.get("lotteries", []):
                self._lottery_seen(viewer, roles, lottery)
        elif kind in ("sale_scheduled", "sale_open"):
            self._sale_seen(viewer, roles, msg["sale"])
        elif kind == "coupon_drop":
            self._coupon_seen(viewer, roles, msg["coupon"])
        elif kind == "lottery_open":
            self._lottery_seen(viewer, roles, msg["lottery"])

    def _sale_seen(self, viewer: Viewer, roles: Roles, sale: dict[str, Any]) -> None:
        if not roles.buyer:
            return
        seen = self.sales_seen.setdefault(viewer.index, set())
        if sale["sale_id"] in seen:
            return
        seen.add(sale["sale_id"])
        self.spawn(self.buy_flow(viewer, roles, sale))

    def _coupon_seen(self, viewer: Viewer, roles: Roles, coupon: dict[str, Any]) -> None:
        if not roles.claimer or coupon.get("remaining", 1) <= 0:
            return
        claimed = self.claimed.setdefault(viewer.index, [])
        cid = coupon["coupon_id"]
        if cid in claimed:
            return
        claimed.append(cid)  # asked for; only an answer makes it usable
        self.spawn(self.claim(viewer, cid))

    def _lottery_seen(self, viewer: Viewer, roles: Roles, lottery: dict[str, Any]) -> None:
        if not roles.entrant or lottery.get("state") != "open":
            return
        entered = self.entered.setdefault(viewer.index, set())
        if lottery["lottery_id"] in entered:
            return
        entered.add(lottery["lottery_id"])
        self.spawn(self.enter(viewer, lottery["lottery_id"], None))

    # ------------------------------------------------------------ selling

    async def buy_flow(self, viewer: Viewer, roles: Roles, sale: dict[str, Any]) -> None:
        s = self.scn.sale
        opening = self.server_to_local(sale["starts_at"])
        await self.sleep_until_local(opening + roles.buy_delay_s * 1000.0)
        quantity = min(s.quantity, sale.get("limit_per_buyer", s.limit_per_buyer))
        purchases = max(1, sale.get("limit_per_buyer", s.limit_per_buyer) // quantity)
        # A greedy buyer asks for one purchase more than the limit allows, all at once.
        tries = purchases + 1 if roles.greedy else 1
        if tries == 1:
            # Most buyers press once: awaited in place, without gather's task and
            # future (at the opening instant thousands of these start together).
            hold = await self.try_buy(viewer, sale["product_id"], quantity)
            if hold is not None:
                await self.after_hold(viewer, hold)
            return
        holds = await asyncio.gather(*(self.try_buy(viewer, sale["product_id"], quantity)
                                       for _ in range(tries)))
        await asyncio.gather(*(self.after_hold(viewer, h) for h in holds if h is not None))

    async def try_buy(self, viewer: Viewer, product_id: str,
                      quantity: int) -> dict[str, Any] | None:
        s = self.scn.sale
        not_started = sold_out = transient = 0
        first_failure = 0.0
        while not self.finishing:
            started = time.perf_counter()
            sent = time.time()
            reply = await viewer.request("buy", {"product_id": product_id,
                                                 "quantity": quantity})
            self.result.buy_ms.append((time.perf_counter() - started) * 1000.0)
            if reply.get("type") == "hold":
                self.count("buy", "hold")
                self.answered(sent, "buy", "hold")
                return self._hold(viewer, reply["hold"])
            code = str(reply.get("code"))
            self.count("buy", code)
            self.answered(sent, "buy", code)
            if code == "not_started" and not_started < NOT_STARTED_RETRIES:
                not_started += 1
                await asyncio.sleep(0.05)
            elif code in ("sold_out", "insufficient_stock") and sold_out < s.sold_out_retries:
                sold_out += 1
                await asyncio.sleep(s.retry_interval_s)
            elif code in RETRYABLE:
                first_failure = first_failure or time.monotonic()
                if not self.may_retry(transient, TRANSIENT_TRIES, first_failure):
                    return None
                transient += 1
                await asyncio.sleep(0.2)
            else:
                return None
        return None

    def _hold(self, viewer: Viewer, hold: dict[str, Any]) -> dict[str, Any]:
        self.result.holds.append(HoldRecord(
            hold_id=hold["id"], viewer_id=viewer.rec.viewer_id, sale_id=hold["sale_id"],
            product_id=hold["product_id"], quantity=int(hold["quantity"]),
            created_at=int(hold["created_at"]), expires_at=int(hold["expires_at"])))
        self.own_holds.setdefault(viewer.index, []).append(hold["id"])
        return hold

    async def after_hold(self, viewer: Viewer, hold: dict[str, Any]) -> None:
        s = self.scn.sale
        rng = self.rngs[viewer.index]
        remaining_s = (self.server_to_local(hold["expires_at"]) - now_ms()) / 1000.0
        if rng.random() < s.checkout_share:
            think = min(rng.expovariate(1.0 / s.think_s) if s.think_s else 0.0,
                        max(0.0, remaining_s / 3.0))
            await asyncio.sleep(think)
            coupon = None
            claimed = self.claims_of(viewer)
            if claimed and rng.random() < s.coupon_checkout_share:
                coupon = claimed[0]
            await self.checkout(viewer, hold["id"], coupon)
        elif self.plan.abandon == "expire":
            self.result.abandoned_to_expire += 1
        else:
            await asyncio.sleep(min(rng.expovariate(1.0 / s.think_s) if s.think_s else 0.0,
                                    max(0.0, remaining_s / 3.0)))
            await self.release(viewer, hold["id"])

    def claims_of(self, viewer: Viewer) -> list[str]:
        return [c.coupon_id for c in self.result.claims if c.viewer_id == viewer.rec.viewer_id]

    async def checkout(self, viewer: Viewer, hold_id: str, coupon: str | None) -> None:
        tries = 0
        first_failure = 0.0
        while tries == 0 or self.may_retry(tries, CHECKOUT_TRIES, first_failure):
            tries += 1
            fields: dict[str, Any] = {"hold_id": hold_id}
            if coupon:
                fields["coupon_id"] = coupon
            started = time.perf_counter()
            sent = time.time()
            reply = await viewer.request("checkout", fields)
            self.result.checkout_ms.append((time.perf_counter() - started) * 1000.0)
            if reply.get("type") == "order_placed":
                order = reply["order"]
                self.count("checkout", "order_placed")
                self.answered(sent, "checkout", "order_placed")
                self.result.acks.append(OrderAck(
                    order_id=order["order_id"], hold_id=order["hold_id"],
                    viewer_id=viewer.rec.viewer_id, quantity=int(order["quantity"]),
                    coupon_id=order.get("coupon_id") or ""))
                return
            code = str(reply.get("code"))
            self.count("checkout", code)
            self.answered(sent, "checkout", code)
            first_failure = first_failure or time.monotonic()
            if code.startswith("coupon_"):
                coupon = None  # pay full price instead
            elif code in RETRYABLE:
                await asyncio.sleep(0.2)
            else:
                return

    async def release(self, viewer: Viewer, hold_id: str) -> None:
        reply = await viewer.request("release", {"hold_id": hold_id})
        outcome = str(reply.get("code") or reply.get("type"))
        self.count("release", outcome)
        if reply.get("type") == "hold_released":
            self.result.released += 1

    async def claim(self, viewer: Viewer, coupon_id: str) -> None:
        reply = await viewer.request("claim_coupon", {"coupon_id": coupon_id})
        if reply.get("type") == "coupon_claimed":
            self.count("claim_coupon", "coupon_claimed")
            self.result.claims.append(Claim(coupon_id, viewer.rec.viewer_id))
        else:
            self.count("claim_coupon", str(reply.get("code")))

    async def enter(self, viewer: Viewer, lottery_id: str, keyword: str | None) -> None:
        fields: dict[str, Any] = {"lottery_id": lottery_id}
        if keyword:
            fields["keyword"] = keyword
        reply = await viewer.request("enter_lottery", fields)
        if reply.get("type") == "lottery_entered":
            self.count("enter_lottery", "lottery_entered")
            self.result.entries.append(Entry(lottery_id, viewer.rec.viewer_id))
        else:
            self.count("enter_lottery", str(reply.get("code")))

    # ------------------------------------------------------------ phases

    async def join_all(self, start_epoch: float) -> None:
        """Connect this process's share of the crowd at its share of the join rate."""
        await self.sleep_until_local(start_epoch * 1000.0)
        rate = self.scn.viewers.join_rate_per_s / max(1, self.plan.workers)
        began = time.monotonic()
        joins = []
        for n, i in enumerate(self.plan.indices):
            due = began + n / rate
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            joins.append(asyncio.ensure_future(self._join_one(self.viewers[i])))
        await asyncio.gather(*joins)
        gcpolicy.freeze_long_lived()
        self.send(("joined", self.plan.worker_id, {
            "ok": len(self.result.join_ms), "failed": len(self.result.join_failures)}))

    async def _join_one(self, viewer: Viewer) -> None:
        started = time.perf_counter()
        for attempt in range(3):
            try:
                await viewer.connect()
                self.result.join_ms.append((time.perf_counter() - started) * 1000.0)
                return
            except Exception as exc:  # refused, reset or timed out
                if viewer.link is not None:
                    viewer.link.drop()
                    viewer.link = None
                if attempt == 2:
                    self.result.join_failures.append(f"{type(exc).__name__}: {exc}")
                    return
                await asyncio.sleep(0.5 * (attempt + 1))

    def start_show(self, t0_epoch: float, sale_starts_at: int) -> None:
        self.t0 = t0_epoch * 1000.0
        self.sale_starts_at = sale_starts_at
        self.show_started.set()
        rc = self.scn.reconnect
        if rc.enabled:
            base = self.server_to_local(sale_starts_at) if sale_starts_at else self.t0
            for i, roles in self.roles.items():
                if roles.reconnector:
                    self.spawn(self.storm_one(self.viewers[i], base + rc.at_s * 1000.0,
                                              roles.reconnect_delay_s))
        if self.scn.chat.share > 0:
            self.chat_on = True
            self.spawn(self.chat_loop())

    async def storm_one(self, viewer: Viewer, at_local_ms: float, delay_s: float) -> None:
        await self.sleep_until_local(at_local_ms)
        if self.finishing or viewer.link is None:
            return
        viewer.drop()
        await viewer.reconnect(delay_s)

    async def chat_loop(self) -> None:
        c = self.scn.chat
        chatters = [self.viewers[i] for i, r in self.roles.items() if r.chatter]
        credit = {v.index: self.rngs[v.index].random() for v in chatters}
        likes = {v.index: self.rngs[v.index].random() for v in chatters}
        text = ("chat " * (c.text_length // 5 + 1))[:c.text_length].strip() or "hi"
        started = now_ms()
        for v in chatters:
            self.chatting_since[v.index] = started
        while self.chat_on and not self.finishing:
            await asyncio.sleep(CHAT_TICK_S)
            for v in chatters:
                credit[v.index] += c.messages_per_s * CHAT_TICK_S
                likes[v.index] += c.likes_per_s * CHAT_TICK_S
                if credit[v.index] >= 1.0:
                    credit[v.index] -= 1.0
                    if v.send_frame({"type": "chat", "text": text}):
                        v.rec.chats_sent += 1
                        self.count("chat", "sent")
                if likes[v.index] >= 1.0:
                    likes[v.index] -= 1.0
                    if v.send_frame({"type": "like", "count": 1}):
                        self.count("like", "sent")
        ended = now_ms()
        for v in chatters:
            v.rec.chat_active_s = (ended - self.chatting_since[v.index]) / 1000.0

    def quiet(self) -> None:
        self.chat_on = False

    async def finish(self, marker_seq: int, timeout_s: float) -> None:
        """Wait (bounded) until every connected viewer has the end marker, then leave."""
        self.chat_on = False
        deadline = time.monotonic() + timeout_s
        while marker_seq and time.monotonic() < deadline:
            behind = [v for v in self.viewers.values()
                      if (v.link is not None or v.reconnecting) and not v.leaving
                      and (v.last or 0) < marker_seq]
            if not behind:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)  # let the last chat loop tick finish its bookkeeping
        self.finishing = True
        for v in self.viewers.values():
            v.rec.connected_at_end = v.link is not None and v.welcomed.is_set()
            v.leave()
        for _ in range(40):
            if all(v.link is None for v in self.viewers.values()):
                break
            await asyncio.sleep(0.05)
        for v in self.viewers.values():
            if v.link is not None and v.link.transport is not None:
                v.link.transport.abort()

    # ------------------------------------------------------------ trace replay

    def bind(self, kind: str, original: str, real: str) -> None:
        self.bindings[(kind, original)] = real
        self.bound.set()

    async def resolve(self, kind: str, original: str) -> str | None:
        """The id in this room for an id of the recorded room (waits up to 5 s)."""
        deadline = time.monotonic() + 5.0
        while (kind, original) not in self.bindings:
            if time.monotonic() > deadline or self.finishing:
                return None
            self.bound.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.bound.wait(), 0.5)
        return self.bindings[(kind, original)]

    async def replay(self, t0_epoch: float) -> None:
        steps = self.plan.steps or []
        start = t0_epoch * 1000.0
        first: dict[int, str] = {}
        for st in steps:
            first.setdefault(st.viewer, st.action)
        # Viewers whose first recorded action is not a join are in the room from the start.
        early = [self.viewers[i] for i in self.plan.indices if first.get(i) != "join"]
        await asyncio.gather(*(self._join_one(v) for v in early))
        for st in steps:
            if self.finishing:
                return
            await self.sleep_until_local(start + st.t_ms)
            self.spawn(self.replay_step(st))

    async def replay_step(self, st: TraceStep) -> None:
        v = self.viewers[st.viewer]
        d = st.data
        act = st.action
        if act == "join":
            if v.link is None:
                v.leaving = False
                await self._join_one(v)
            return
        if act == "leave":
            if v.link is None:
                # The recorded viewer leaves while this one is still reconnecting (a
                # chaos restart): its open gaps end with it, nothing is left to miss.
                v.gaps_end("left")
            v.leave()
            return
        if v.link is None and not v.reconnecting:
            self._skip(act, "not connected")
            return
        if act == "chat":
            n = int(d.get("length") or len(str(d.get("text", ""))) or 1)
            if v.send_frame({"type": "chat", "text": ("x" * max(1, min(n, 200)))}):
                v.rec.chats_sent += 1
                self.count("chat", "sent")
        elif act == "like":
            v.send_frame({"type": "like", "count": int(d.get("count") or 1)})
            self.count("like", "sent")
        elif act == "buy":
            pid = await self.resolve("product", str(d.get("product_id")))
            if pid is None:
                self._skip(act, "unknown product")
                return
            started = time.perf_counter()
            sent = time.time()
            reply = await v.request("buy", {"product_id": pid,
                                            "quantity": int(d.get("quantity") or 1)})
            self.result.buy_ms.append((time.perf_counter() - started) * 1000.0)
            if reply.get("type") == "hold":
                self.count("buy", "hold")
                self.answered(sent, "buy", "hold")
                self._hold(v, reply["hold"])
            else:
                self.count("buy", str(reply.get("code")))
                self.answered(sent, "buy", str(reply.get("code")))
        elif act in ("checkout", "release"):
            hold = await self._own_hold(v, str(d.get("hold_id")))
            if hold is None:
                self._skip(act, "no hold")
                return
            if act == "release":
                await self.release(v, hold)
                return
            coupon = None
            if d.get("coupon_id"):
                coupon = await self.resolve("coupon", str(d["coupon_id"]))
            await self.checkout(v, hold, coupon)
        elif act == "claim_coupon":
            cid = await self.resolve("coupon", str(d.get("coupon_id")))
            if cid is None:
                self._skip(act, "unknown coupon")
                return
            await self.claim(v, cid)
        elif act == "enter_lottery":
            lid = await self.resolve("lottery", str(d.get("lottery_id")))
            if lid is None:
                self._skip(act, "unknown lottery")
                return
            await self.enter(v, lid, d.get("keyword"))

    async def _own_hold(self, v: Viewer, original: str) -> str | None:
        """Recorded hold ids map to this viewer's own holds in the order it got them."""
        key = (v.index, original)
        deadline = time.monotonic() + 2.0
        while key not in self.hold_map:
            mapped = set(h for (i, _), h in self.hold_map.items() if i == v.index)
            free = [h for h in self.own_holds.get(v.index, []) if h not in mapped]
            if free:
                self.hold_map[key] = free[0]
                break
            if time.monotonic() > deadline or self.finishing:
                return None
            await asyncio.sleep(0.05)
        return self.hold_map[key]

    def _skip(self, action: str, why: str) -> None:
        key = f"{action}: {why}"
        self.result.trace_skipped[key] = self.result.trace_skipped.get(key, 0) + 1

    # ------------------------------------------------------------ reporting

    def progress(self) -> dict[str, Any]:
        return {"connected": self.connected, "frames": self.frames, "applied": self.applied,
                "buys": sum(self.outcomes.get("buy", Counter()).values()),
                "holds": len(self.result.holds), "orders": len(self.result.acks),
                "errors": self.errors, "busy": len(self.tasks)}

    def collect(self) -> WorkerResult:
        r = self.result
        r.viewers = [v.rec for v in self.viewers.values()]
        r.latency_ms = list(self.latency.values)
        r.latency_seen = self.latency.seen
        r.outcomes = {k: dict(v) for k, v in self.outcomes.items()}
        r.frames = self.frames
        r.applied = self.applied
        return r


async def _serve(plan: WorkerPlan, ctrl: Any, out: Any) -> None:
    loop = asyncio.get_running_loop()
    inbox: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()

    def reader() -> None:
        while True:
            try:
                msg = ctrl.get()
            except (EOFError, OSError):
                msg = ("stop",)
            loop.call_soon_threadsafe(inbox.put_nowait, msg)
            if msg[0] in ("stop", "finish"):
                return

    threading.Thread(target=reader, name="ctrl-reader", daemon=True).start()
    crowd = Crowd(plan, out.put)
    started_wall, started_cpu = time.monotonic(), time.process_time()

    async def report() -> None:
        last_wall, last_cpu = time.monotonic(), time.process_time()
        n = 0
        while True:
            await asyncio.sleep(PROGRESS_EVERY_S)
            n += 1
            if n % 2 == 0:
                wall, cpu = time.monotonic(), time.process_time()
                util = (cpu - last_cpu) / max(1e-6, wall - last_wall)
                last_wall, last_cpu = wall, cpu
                crowd.result.util_timeline.append((round(wall - started_wall, 2),
                                                   round(util, 3)))
                crowd.result.peak_util = max(crowd.result.peak_util, util)
                if util >= SATURATED:
                    crowd.result.saturated_s += 1
            out.put(("progress", plan.worker_id, crowd.progress()))

    reporter = asyncio.ensure_future(report())
    out.put(("ready", plan.worker_id))
    try:
        while True:
            msg = await inbox.get()
            cmd = msg[0]
            if cmd == "join":
                crowd.spawn(crowd.join_all(float(msg[1])))
            elif cmd == "show":
                crowd.start_show(float(msg[1]), int(msg[2]))
            elif cmd == "bind":
                crowd.bind(str(msg[1]), str(msg[2]), str(msg[3]))
            elif cmd == "replay":
                crowd.spawn(crowd.replay(float(msg[1])))
            elif cmd == "quiet":
                crowd.quiet()
            elif cmd in ("finish", "stop"):
                marker = int(msg[1]) if cmd == "finish" else 0
                timeout = float(msg[2]) if cmd == "finish" else 0.0
                await crowd.finish(marker, timeout)
                break
    finally:
        reporter.cancel()
        for task in list(crowd.tasks):
            task.cancel()
        if crowd.tasks:
            await asyncio.wait(list(crowd.tasks), timeout=2.0)
        result = crowd.collect()
        result.cpu_s = time.process_time() - started_cpu
        result.wall_s = time.monotonic() - started_wall
        out.put(("result", plan.worker_id, result))


def run_worker(plan: WorkerPlan, ctrl: Any, out: Any) -> None:
    """Entry point of a generator process."""
    # Ctrl-C reaches the whole process group; the parent decides how to stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if plan.cpus and hasattr(os, "sched_setaffinity"):
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, plan.cpus)
    gcpolicy.apply(gcpolicy.DEFAULT_YOUNG_THRESHOLD)
    try:
        try:
            import uvloop
        except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
            asyncio.run(_serve(plan, ctrl, out))
        else:
            uvloop.run(_serve(plan, ctrl, out))
    except Exception:
        out.put(("error", plan.worker_id, traceback.format_exc()))
    with contextlib.suppress(queue.Full):
        out.close()
        out.join_thread()
