"""One generator process's share of the crowd: who each viewer is (buyer,
greedy, waiter, claimer, entrant, reconnector, chatter: seeded by its index),
how it reacts to what the room broadcasts (a sale announced, a coupon dropped,
a lottery opened, a waitlist's offer, an auction's events, a group deal, a
poll or a question, a referral reward, the way real clients do, so the
selling load also exercises fan-out), and the process's phases: join at its
share of the rate, the show (reconnect storm, chat), the end marker, and the
counters it reports. The requests themselves are in loadtest/actions.py; an
auction's bidders in loadtest/bidders.py; group buyers, voters and askers in
loadtest/social.py; inviters and invitees in loadtest/referrals.py; a trace's
viewer actions in loadtest/crowd_trace.py.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

from loadtest.actions import Actions
from loadtest.bidders import AUCTION_EVENTS, Bidders
from loadtest.crowd_trace import TraceSteps
from loadtest.messages import WorkerPlan, WorkerResult
from loadtest.model import WaitlistEvent
from loadtest.referrals import REFERRAL_EVENTS, Referrals
from loadtest.social import SOCIAL_EVENTS, Social
from loadtest.stats import Reservoir
from loadtest.viewer import Viewer, now_ms
from server.core import gcpolicy

CHAT_TICK_S = 0.1


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


class Crowd(Actions):
    """One generator process's share of the crowd (implements viewer.Crowd)."""

    def __init__(self, plan: WorkerPlan, send: Any) -> None:
        super().__init__(plan)
        self.send = send  # put a message to the parent
        self.host, self.port = plan.host, plan.port
        self.ws_base = f"ws://{plan.host}:{plan.port}/ws/{plan.room_id}"
        self.viewers: dict[int, Viewer] = {}
        self.roles: dict[int, Roles] = {}
        self.rng = random.Random(self.scn.run.seed * 7919 + plan.worker_id)
        self.connected = 0
        self.frames = 0
        self.applied = 0
        self.errors = 0
        self.latency = Reservoir(plan.latency_cap, self.scn.run.seed)
        self.tasks: set[asyncio.Task[Any]] = set()
        self.trace_mode = plan.steps is not None
        self.sales_seen: dict[int, set[str]] = {}
        self.claimed: dict[int, list[str]] = {}
        self.entered: dict[int, set[str]] = {}
        self.chatting_since: dict[int, float] = {}
        self.chat_on = False
        self.trace = TraceSteps(self, self.viewers, self._join_one, self.spawn)
        self.t0 = 0.0
        self.waitlist_events: dict[int, WaitlistEvent] = {}  # by seq
        self._build()
        self.bidders = Bidders(self, self.viewers)
        self.social = Social(self, self.viewers, f"http://{plan.host}:{plan.port}",
                             plan.room_id)
        self.referrals = Referrals(self, self.viewers)

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
            # Drawn last (and only when asked for), so scenarios without waitlists
            # keep every other choice they made before waitlists existed.
            if buyer and s.sale.waitlist_share > 0 and rng.random() < s.sale.waitlist_share:
                self.waiters.add(i)
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
            # Up to 20 distinct failures, counted, go to the report's warnings.
            key = f"{type(exc).__name__}: {exc}"[:300]
            errors = self.result.task_errors
            if key in errors or len(errors) < 20:
                errors[key] = errors.get(key, 0) + 1

    def rng_delay(self, lo: float, hi: float) -> float:
        return self.rng.uniform(lo, hi)

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
        if kind == "waitlist_offer":
            self._waitlist_offer(viewer, msg)
            return
        if kind in AUCTION_EVENTS or (kind == "snapshot" and self.scn.auction.enabled):
            self.bidders.on_event(viewer, kind, msg)
            if kind != "snapshot":
                return
        if kind in REFERRAL_EVENTS:
            self.referrals.on_event(viewer, kind, msg)
            return
        if kind in SOCIAL_EVENTS or (kind == "snapshot" and self.scn.poll.enabled):
            self.social.on_event(viewer, kind, msg)
            if kind != "snapshot":
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

    def _waitlist_offer(self, viewer: Viewer, msg: dict[str, Any]) -> None:
        """A step of a waitlist: kept once per seq; a hold offered to this viewer is
        taken (checked out or abandoned as any hold)."""
        seq = int(msg["seq"])
        offers = [o for o in msg.get("offers") or [] if isinstance(o, dict)]
        if seq not in self.waitlist_events:
            self.waitlist_events[seq] = WaitlistEvent(
                seq=seq, product_id=str(msg.get("product_id", "")), offers=offers,
                dropped=[d for d in msg.get("dropped") or [] if isinstance(d, dict)],
                ts=int(msg.get("ts") or 0))
        for offer in offers:
            if offer.get("viewer_id") == viewer.rec.viewer_id \
                    and isinstance(offer.get("hold"), dict):
                self.offered(viewer, offer["hold"])

    def _sale_seen(self, viewer: Viewer, roles: Roles, sale: dict[str, Any]) -> None:
        invitee = viewer.index in self.referrals.invitees
        if not roles.buyer and not invitee:
            return
        seen = self.sales_seen.setdefault(viewer.index, set())
        if sale["sale_id"] in seen:
            return
        seen.add(sale["sale_id"])
        if invitee:  # every invitee buys, once its invites are answered
            self.referrals.buy(viewer, sale, roles.buy_delay_s)
            return
        self.spawn(self.buy_flow(viewer, sale, roles.greedy, roles.buy_delay_s))

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
            except Exception as exc:  # refused, reset or timed out (connect aborted its link)
                if attempt == 2:
                    self.result.join_failures.append(f"{type(exc).__name__}: {exc}")
                    return
                await asyncio.sleep(0.5 * (attempt + 1))

    def start_show(self, t0_epoch: float, sale_starts_at: int) -> None:
        self.t0 = t0_epoch * 1000.0
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
        self.referrals.start()

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
        await self.social.close()

    # ------------------------------------------------------------ trace replay

    def bind(self, kind: str, original: str, real: str) -> None:
        self.trace.bind(kind, original, real)

    async def replay(self, t0_epoch: float) -> None:
        await self.trace.replay(t0_epoch)

    # ------------------------------------------------------------ reporting

    def progress(self) -> dict[str, Any]:
        return {"connected": self.connected, "frames": self.frames, "applied": self.applied,
                "buys": sum(self.outcomes.get("buy", Counter()).values()),
                "holds": len(self.result.holds), "orders": len(self.result.acks),
                "bids": len(self.result.bids),
                "groups": len(self.result.group_answers), "votes": len(self.result.votes),
                "invites": len(self.result.referral_answers),
                "errors": self.errors, "busy": len(self.tasks)}

    def collect(self) -> WorkerResult:
        r = self.result
        r.viewers = [v.rec for v in self.viewers.values()]
        r.latency_ms = list(self.latency.values)
        r.latency_seen = self.latency.seen
        r.outcomes = {k: dict(v) for k, v in self.outcomes.items()}
        r.frames = self.frames
        r.applied = self.applied
        r.waitlist_events = [self.waitlist_events[k] for k in sorted(self.waitlist_events)]
        r.auction_events = self.bidders.collected()
        r.social_events = self.social.collected()
        r.referral_events = self.referrals.collected()
        return r
