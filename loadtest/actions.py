"""The requests a viewer makes, in one generator process: buy (at the
opening, retrying what a client would retry, or joining the waitlist once
sold out), then check out (with a claimed coupon for a share) or abandon the
hold; claim a coupon; enter a lottery; bid in an auction. Every answer is
counted by action and outcome, timed, and what the server granted (holds,
placed orders, claims, entries, waitlist places, bids) is kept for the checks.

`Actions` is the base of the process's `Crowd` (loadtest/crowd.py), which
decides who does what and when.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Coroutine
from typing import Any

from loadtest.messages import WorkerPlan, WorkerResult
from loadtest.model import BidRecord, Claim, Entry, HoldRecord, OrderAck, WaitlistJoin
from loadtest.viewer import Viewer, now_ms

NOT_STARTED_RETRIES = 60  # buys sent a little before the opening instant retry this often
RETRYABLE = frozenset({"rate_limited", "unavailable", "store_unavailable",
                       "request_in_progress", "timeout", "internal"})
TRANSIENT_TRIES = 5  # buys retried this often on a transient error (without retry_for_s)
CHECKOUT_TRIES = 10
MAX_ANSWERS = 500_000  # timed answers kept per process (chaos runs)


def think_time(rng: random.Random, least_s: float, mean_s: float,
               remaining_s: float) -> float:
    """How long a holder takes before checkout or release: at least `least_s`, then
    an exponential wait of mean `mean_s`, and never past a third of what is left of
    the hold (so a checkout is not late by construction)."""
    wait = least_s + (rng.expovariate(1.0 / mean_s) if mean_s else 0.0)
    return min(wait, max(0.0, remaining_s / 3.0))


class Actions:
    def __init__(self, plan: WorkerPlan) -> None:
        self.plan = plan
        self.scn = plan.scenario
        self.result = WorkerResult(plan.worker_id)
        self.outcomes: dict[str, Counter[str]] = {}
        self.rngs: dict[int, random.Random] = {}  # one per viewer, seeded by its index
        self.own_holds: dict[int, list[str]] = {}  # viewer index -> hold ids, in order
        self.holds_by_id: dict[str, HoldRecord] = {}
        self.waiters: set[int] = set()  # viewers who join the waitlist once sold out
        self.offset_ms: float | None = None  # server clock - local clock
        self.finishing = False

    def count(self, action: str, outcome: str) -> None:
        self.outcomes.setdefault(action, Counter())[outcome] += 1

    def buy_replied(self, started: float) -> None:
        """A buy's reply came: its latency from `started` (perf_counter), and when."""
        self.result.buy_ms.append((time.perf_counter() - started) * 1000.0)
        self.result.last_buy_reply_at = max(self.result.last_buy_reply_at, time.time())

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

    def server_now(self) -> float:
        """The server's clock as this process reads it (ms): its offset was learned
        from a welcome, so it trails the server's by that frame's one-way latency."""
        return now_ms() + (self.offset_ms or 0.0)

    async def sleep_until_local(self, local_ms: float) -> None:
        delay = (local_ms - now_ms()) / 1000.0
        if delay > 0:
            await asyncio.sleep(delay)

    # ------------------------------------------------------------ requests

    async def buy_flow(self, viewer: Viewer, sale: dict[str, Any], greedy: bool,
                       delay_s: float) -> None:
        """Press buy at the opening (+ `delay_s`), then check out or abandon."""
        s = self.scn.sale
        opening = self.server_to_local(sale["starts_at"])
        await self.sleep_until_local(opening + delay_s * 1000.0)
        quantity = min(s.quantity, sale.get("limit_per_buyer", s.limit_per_buyer))
        purchases = max(1, sale.get("limit_per_buyer", s.limit_per_buyer) // quantity)
        # A greedy buyer asks for one purchase more than the limit allows, all at once.
        tries = purchases + 1 if greedy else 1
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
            self.buy_replied(started)
            if reply.get("type") == "hold":
                self.count("buy", "hold")
                self.answered(sent, "buy", "hold")
                return self.hold(viewer, reply["hold"])
            code = str(reply.get("code"))
            self.count("buy", code)
            self.answered(sent, "buy", code)
            gone = code in ("sold_out", "insufficient_stock", "waitlist_ahead")
            if code == "not_started" and not_started < NOT_STARTED_RETRIES:
                not_started += 1
                await asyncio.sleep(0.05)
            elif gone and viewer.index in self.waiters:
                # Wait in line instead: the unit comes as a waitlist_offer event (the
                # crowd hands it to after_hold). `not_sold_out`: a unit came back
                # meanwhile, so buy it (a retry like any other).
                if await self.join_waitlist(viewer, product_id) != "not_sold_out" \
                        or sold_out >= s.sold_out_retries:
                    return None
                sold_out += 1
            elif gone and sold_out < s.sold_out_retries:
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

    def hold(self, viewer: Viewer, hold: dict[str, Any]) -> dict[str, Any]:
        record = HoldRecord(
            hold_id=hold["id"], viewer_id=viewer.rec.viewer_id, sale_id=hold["sale_id"],
            product_id=hold["product_id"], quantity=int(hold["quantity"]),
            created_at=int(hold["created_at"]), expires_at=int(hold["expires_at"]))
        self.result.holds.append(record)
        self.holds_by_id[record.hold_id] = record
        self.own_holds.setdefault(viewer.index, []).append(hold["id"])
        return hold

    async def join_waitlist(self, viewer: Viewer, product_id: str) -> str:
        """Join the product's waitlist; the answer's type or error code."""
        reply = await viewer.request("join_waitlist", {"product_id": product_id})
        outcome = str(reply.get("code") or reply.get("type"))
        self.count("join_waitlist", outcome)
        if reply.get("type") == "waitlist":
            self.result.waitlist_joins.append(WaitlistJoin(
                viewer_id=viewer.rec.viewer_id, product_id=product_id,
                ticket=int(reply["ticket"]), position=int(reply["position"]),
                at=self.server_now()))
        return outcome

    def offered(self, viewer: Viewer, hold: dict[str, Any]) -> None:
        """A waitlist_offer event gave this viewer a hold: check it out or abandon it
        as any other."""
        if hold.get("id") in self.holds_by_id:
            return  # seen already (a resume replays events)
        self.count("waitlist_offer", "hold")
        self.spawn(self.after_hold(viewer, self.hold(viewer, hold)))

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run `coro` as one of the process's tasks (the crowd's, which tracks them)."""
        raise NotImplementedError

    async def after_hold(self, viewer: Viewer, hold: dict[str, Any]) -> None:
        s = self.scn.sale
        rng = self.rngs[viewer.index]
        remaining_s = (self.server_to_local(hold["expires_at"]) - now_ms()) / 1000.0
        if rng.random() < s.checkout_share:
            await asyncio.sleep(think_time(rng, s.think_min_s, s.think_s, remaining_s))
            coupon = None
            claimed = self.claims_of(viewer)
            if claimed and rng.random() < s.coupon_checkout_share:
                coupon = claimed[0]
            await self.checkout(viewer, hold["id"], coupon)
        elif self.plan.abandon == "expire":
            self.result.abandoned_to_expire += 1
        else:
            await asyncio.sleep(think_time(rng, s.think_min_s, s.think_s, remaining_s))
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
        record = self.holds_by_id.get(hold_id)
        if record is not None:
            record.released_at = self.server_now()
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

    async def bid(self, viewer: Viewer, auction_id: str, kind: str, amount: int,
                  max_amount: int | None = None) -> dict[str, Any]:
        """One bid; its answer is kept (BidRecord) and counted by outcome."""
        fields: dict[str, Any] = {"auction_id": auction_id, "amount": amount}
        if max_amount is not None:
            fields["max_amount"] = max_amount
        rid = viewer.next_id("bid")
        sent = self.server_now()
        reply = await viewer.request("bid", fields, request_id=rid)
        outcome = str(reply.get("outcome") if reply.get("type") == "bid_placed"
                      else reply.get("code"))
        self.count("bid", outcome)
        self.count("bid_kind", kind)
        self.result.bids.append(BidRecord(
            auction_id=auction_id, viewer_id=viewer.rec.viewer_id, request_id=rid,
            kind=kind, amount=amount, max_amount=max_amount, sent_at=sent,
            answered_at=self.server_now(), outcome=outcome,
            reply={k: v for k, v in reply.items() if k not in ("type", "re")}))
        return reply
