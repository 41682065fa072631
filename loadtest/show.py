"""The show of a scenario run: join the crowd at its rate, then for
`run.duration_s` set the referral program (the inviters and invitees act when
the show starts), drop the coupon, open the lottery, announce the sale (it
opens after its countdown), start the auction (the bidders learn it from its
`auction_started` event), open the group deal and the poll (their
`group_deal` and `poll_open` events bring the viewers in), emit host events at
`host.events_per_s`, and inject the --chaos faults on the show's clock. A
trace run has its own show (loadtest/replay.py); both start and stop the
faults through `start_chaos` and `chaos_injected`.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

import httpx

from loadtest.chaos import Chaos
from loadtest.context import RunContext
from loadtest.host import Host, HostError
from loadtest.model import AuctionRecord, CouponInfo, GroupDealRecord, PollRecord, SaleInfo
from loadtest.pool import GeneratorPool
from loadtest.referrals import set_program
from loadtest.sampling import Sampler
from loadtest.spawn import START_TIMEOUT_S
from loadtest.target import (
    AUCTION_PRODUCT,
    FANOUT_PRODUCTS,
    GROUP_PRODUCT,
    SALE_PRODUCT,
    Target,
)

HOST_INFLIGHT = 64


def start_chaos(ctx: RunContext, target: Target, pool: GeneratorPool) -> None:
    """Faults on the show's clock (started once the show's own setup calls are
    done; a fault due earlier goes in at once, late, with its actual time)."""
    if not ctx.opts.chaos or target.server is None or ctx.interrupted.is_set():
        return
    ctx.chaos = Chaos(ctx.opts.chaos, target.server, target.base, ctx.show_wall,
                      lambda: pool.totals().get("connected", 0), ctx.progress.note)
    ctx.chaos.start()


async def chaos_injected(ctx: RunContext) -> None:
    """At the show's end: wait (bounded) for the faults still due, or stop them
    when the run was interrupted."""
    if ctx.chaos is None:
        return
    if ctx.interrupted.is_set():
        await ctx.chaos.stop()
    else:
        await ctx.chaos.injected(within_s=START_TIMEOUT_S + 60.0)


async def host_call(ctx: RunContext, host: Host, action: str, method: str, path: str,
                    body: Any) -> None:
    """One host request of the show, counted by action and outcome and timed."""
    started = time.perf_counter()
    try:
        await host.call(method, path, body)
        ctx.host_actions[f"{action}: ok"] += 1
        ctx.host_events += 1
    except HostError as exc:
        ctx.host_actions[f"{action}: {exc.code}"] += 1
    except httpx.HTTPError as exc:
        ctx.host_actions[f"{action}: {type(exc).__name__}"] += 1
    ctx.host_ms.append((time.perf_counter() - started) * 1000.0)


class Show:
    def __init__(self, ctx: RunContext, target: Target, pool: GeneratorPool,
                 sampler: Sampler) -> None:
        self.ctx = ctx
        self.target = target
        self.pool = pool
        self.sampler = sampler

    async def join(self) -> None:
        ctx, pool = self.ctx, self.pool
        n = ctx.viewer_count()
        ctx.progress.update(phase="joining viewers")
        self.sampler.mark_join_start()
        started = time.monotonic()
        pool.tell("join", time.time() + 0.2)
        deadline = started + ctx.scn.run.join_timeout_s
        while len(pool.joined) < len(pool.procs):
            if time.monotonic() > deadline:
                ctx.warnings.append(f"not every viewer joined within run.join_timeout_s "
                                    f"({ctx.scn.run.join_timeout_s}s)")
                break
            if not await ctx.sleep(0.05):
                return
        ctx.join_s = time.monotonic() - started - 0.2
        self.sampler.mark_join_end()
        failed = sum(j.get("failed", 0) for j in pool.joined.values())
        if failed:
            ctx.warnings.append(f"{failed} of {n} viewers could not join")

    async def run(self, host: Host) -> None:
        ctx = self.ctx
        s = ctx.scn
        if ctx.interrupted.is_set():
            return
        ctx.progress.update(phase="show")
        ctx.t_show = time.monotonic()
        ctx.show_wall = time.time()
        self.sampler.mark_show_start()
        if s.referral.enabled:
            # Before the sale and the deal: every first order meets the program.
            ctx.data.referral = await set_program(host, s.referral)
        if s.coupon.enabled:
            coupon = await host.call("POST", "/coupons", {
                "kind": s.coupon.kind, "value": s.coupon.value, "count": s.coupon.count,
                "min_spend": s.coupon.min_spend, "currency": s.sale.currency,
                "expires_in_s": s.coupon.expires_in_s})
            ctx.data.coupons.append(CouponInfo(coupon["coupon_id"], coupon["count"]))
        if s.lottery.enabled:
            lot = await host.call("POST", "/lotteries", {
                "prize": s.lottery.prize, "winners": s.lottery.winners,
                "duration_s": s.lottery.duration_s})
            ctx.lottery_ids.append(lot["lottery_id"])
        starts_at = 0
        if s.sale.enabled:
            server_now = (await host.http.get("/api/time")).json()["server_time"]
            starts_at = int(server_now + s.sale.countdown_s * 1000)
            duration = s.sale.duration_s or int(s.run.duration_s + s.run.settle_timeout_s + 60)
            sale = await host.call("POST", "/sales", {
                "product_id": SALE_PRODUCT, "price": s.sale.price, "units": s.sale.units,
                "limit_per_buyer": s.sale.limit_per_buyer, "starts_at": starts_at,
                "duration_s": duration})
            ctx.data.sales.append(SaleInfo(sale["sale_id"], SALE_PRODUCT, sale["units"],
                                           sale["limit_per_buyer"], sale["starts_at"]))
            starts_at = sale["starts_at"]
        if s.auction.enabled:
            a = s.auction
            auction = await host.call("POST", "/auctions", {
                "product_id": AUCTION_PRODUCT, "start_price": a.start_price,
                "duration_s": a.duration_s, "anti_snipe": a.anti_snipe,
                "extend_s": a.extend_s, "reserve_price": a.reserve_price or None,
                "pay_s": a.pay_s})
            ctx.data.auctions.append(AuctionRecord(str(auction["auction_id"]), auction))
        if s.group_buy.enabled:
            g = s.group_buy
            deal = await host.call("POST", "/group-deals", {
                "product_id": GROUP_PRODUCT, "group_size": g.group_size,
                "group_price": g.group_price, "fill_s": g.fill_s, "units": g.units})
            ctx.data.group_deals.append(GroupDealRecord(
                str(deal["deal_id"]), GROUP_PRODUCT, int(deal["group_size"]),
                int(deal["group_price"]), int(deal["units"]), opened=deal))
        if s.poll.enabled:
            poll = await host.call("POST", "/polls", {
                "question": s.poll.question, "options": list(s.poll.options),
                "duration_s": s.poll.duration_s})
            ctx.data.polls.append(PollRecord(str(poll["poll_id"]), len(poll["options"]),
                                             opened=poll))
        self.pool.tell("show", ctx.show_wall, starts_at)
        start_chaos(ctx, self.target, self.pool)
        emitter = asyncio.ensure_future(self._emit(host, ctx.t_show + s.run.duration_s))
        sampler = asyncio.ensure_future(self.sampler.burst(starts_at / 1000.0)) \
            if starts_at and self.target.server is not None else None
        await ctx.sleep(ctx.t_show + s.run.duration_s - time.monotonic())
        await emitter
        if sampler is not None:
            sampler.cancel()
        await chaos_injected(ctx)
        self.pool.tell("quiet")
        self.sampler.mark_show_end()

    async def _emit(self, host: Host, until: float) -> None:
        """Host events at host.events_per_s until `until` (monotonic)."""
        ctx = self.ctx
        spec = ctx.scn.host
        if not spec.events_per_s:
            return
        interval = 1.0 / spec.events_per_s
        text = ("Flash deal coming up " * (spec.text_length // 20 + 1))[:spec.text_length]
        pinned: list[str] = []
        inflight: set[asyncio.Task[None]] = set()
        start = time.monotonic()
        for n in itertools.count():
            due = start + n * interval
            if due >= until or ctx.interrupted.is_set():
                break
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            while len(inflight) >= HOST_INFLIGHT:
                await asyncio.wait(inflight, return_when=asyncio.FIRST_COMPLETED)
            action = spec.actions[n % len(spec.actions)]
            method, path = "POST", "/announcements"
            body: dict[str, Any] | None = {"text": text}
            pid = FANOUT_PRODUCTS[n % len(FANOUT_PRODUCTS)]
            if action == "pin":
                path, body = "/pins", {"product_id": pid, "open_for_sale": False}
                if pid not in pinned:
                    pinned.append(pid)
            elif action == "unpin":
                if pinned:
                    method, path, body = "DELETE", f"/pins/{pinned.pop(0)}", None
                else:
                    path, body = "/pins", {"product_id": pid, "open_for_sale": False}
                    pinned.append(pid)
            elif action == "product":
                method, path, body = "PATCH", f"/products/{pid}", {"title": f"Item {pid} {n}"}
            task = asyncio.ensure_future(host_call(ctx, host, action, method, path, body))
            inflight.add(task)
            task.add_done_callback(inflight.discard)
        if inflight:
            await asyncio.wait(inflight)
