"""The end of a run and its verdicts: settle (the crowd's flows end, no unit
is held, every invitee's order has its reward decided, the auction has ended,
the lottery is drawn, the poll is closed), the end marker every connected
viewer must reach, the generators' results, the read-back (audit, orders,
lotteries, auctions with their bid chains, the group deal, the poll, the
referral tree; retried for a while after faults), and the checks over all of
it (loadtest/checks.py, plus the chaos verdicts and the run's own faults).
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx

from loadtest import checks as checks_mod
from loadtest.chaos_report import summarize
from loadtest.context import RunContext
from loadtest.host import Host, HostError
from loadtest.messages import WorkerResult
from loadtest.model import AuctionEvent, SocialEvent, StockSample, WaitlistEvent
from loadtest.pool import GeneratorPool
from loadtest.referrals import merge_events, read_tree
from loadtest.referrals import settle as settle_referrals

T = TypeVar("T")
MARKER_TIMEOUT_S = 15.0
READBACK_RETRY_S = 15.0  # chaos runs: a read-back the server refuses is retried this long
DRAW_POLLS = 100  # a drawn lottery is looked for this often, 0.1 s apart


class Ending:
    def __init__(self, ctx: RunContext, pool: GeneratorPool) -> None:
        self.ctx = ctx
        self.pool = pool
        self._readback_deadline: float | None = None

    async def settle(self, host: Host) -> None:
        """Wait for the crowd's flows to end and for every hold to end."""
        ctx = self.ctx
        if ctx.interrupted.is_set():
            return
        ctx.progress.update(phase="settling: waiting for holds to end")
        deadline = time.monotonic() + ctx.scn.run.settle_timeout_s
        last_error = ""
        while time.monotonic() < deadline:
            busy = sum(p.get("busy", 0) for p in self.pool.progress.values())
            busy += await self._auctions_open(host)
            held = 0
            if ctx.data.products:
                try:
                    audit = await host.audit()
                except (HostError, httpx.HTTPError) as exc:
                    last_error = f"{type(exc).__name__}: {exc}"
                else:
                    last_error = ""
                    held = sum(p["held"] for p in audit["products"]
                               if p["product_id"] in ctx.data.products)
            if not busy and not held:
                break
            if not await ctx.sleep(0.25):
                return
        else:
            ctx.warnings.append(f"the crowd, its holds or the auction had not settled after "
                                f"run.settle_timeout_s ({ctx.scn.run.settle_timeout_s}s)"
                                + (f"; the last audit failed: {last_error}"
                                   if last_error else ""))
        if ctx.data.referral is not None:
            # Each invitee's order has its reward decided (and announced) before the
            # end marker; the checks then compare the tree with the events.
            why = await settle_referrals(host, max(1.0, deadline - time.monotonic()),
                                         ctx.sleep)
            if why:
                ctx.warnings.append(f"the referral rewards had not settled: {why}")
        for lid in ctx.lottery_ids:
            try:
                await self._draw(host, lid)
            except (HostError, httpx.HTTPError) as exc:
                if not ctx.opts.chaos:
                    raise
                # After faults the server may not answer yet: the crowd's results and
                # every check matter more than this draw (the lottery check reports it).
                ctx.warnings.append(f"settle after the faults: lottery {lid}: {exc}")
        for poll in ctx.data.polls:
            # Closed now if its clock has not: its counts are final before they are read.
            try:
                await host.call("POST", f"/polls/{poll.poll_id}/close")
            except HostError as exc:
                if exc.code != "poll_closed":
                    ctx.warnings.append(f"poll {poll.poll_id} could not be closed: {exc}")
            except httpx.HTTPError as exc:
                ctx.warnings.append(f"poll {poll.poll_id} could not be closed: {exc}")

    async def _auctions_open(self, host: Host) -> int:
        """How many of the run's auctions are still open (one that cannot be read
        counts as open: the bound on settling still ends the wait)."""
        n = 0
        for record in self.ctx.data.auctions:
            try:
                state = (await host.auction(record.auction_id)).get("state")
            except (HostError, httpx.HTTPError):
                state = "unknown"
            n += state not in ("ended", "cancelled")
        return n

    async def _draw(self, host: Host, lid: str) -> None:
        """Draw the lottery if its timer has not, and wait (bounded) until it is."""
        lot = await host.lottery(lid)
        refused = ""
        if lot.get("state") == "open":
            try:
                await host.call("POST", f"/lotteries/{lid}/draw")
            except HostError as exc:  # its timer may have drawn it meanwhile
                refused = str(exc)
        for _ in range(DRAW_POLLS):
            if (await host.lottery(lid)).get("state") == "drawn":
                return
            await asyncio.sleep(0.1)
        self.ctx.warnings.append(f"lottery {lid} was not drawn within "
                                 f"{DRAW_POLLS / 10:g}s after the show"
                                 + (f" (the draw was refused: {refused})" if refused else ""))

    async def finish(self, host: Host) -> None:
        """The end marker, then every generator's result."""
        ctx = self.ctx
        ctx.progress.update(phase="finishing: end marker")
        if ctx.interrupted.is_set():
            self.pool.tell("stop")
        else:
            try:
                marker = await host.call("POST", "/announcements",
                                         {"text": "livesell-loadtest: end of show"})
                ctx.final_seq = int(marker["seq"])
            except (HostError, httpx.HTTPError) as exc:
                ctx.warnings.append(f"the end marker could not be announced ({exc}): the "
                                    "viewers' reach was not checked")
            self.pool.tell("finish", ctx.final_seq, MARKER_TIMEOUT_S)
        await self.pool.collect()

    async def read_back(self, host: Host) -> None:
        ctx = self.ctx
        data = ctx.data
        ctx.progress.update(phase="reading back: audit, orders, lotteries")
        audit, data.audit_error = await self._read("audit", host.audit)
        if audit is not None:
            for p in audit["products"]:
                if p["product_id"] in data.products:
                    data.final_stock.append(StockSample(
                        round(time.monotonic() - ctx.t_show, 3) if ctx.t_show else 0.0,
                        p["product_id"], p["total"], p["left"], p["held"], p["sold"]))
            data.server_audit_failed = [c for c in audit["checks"] if not c["ok"]]
        orders, data.orders_api_error = await self._read("orders", host.orders)
        data.orders_api = orders or []
        for lid in ctx.lottery_ids:
            lot, _ = await self._read(f"lottery {lid}", functools.partial(host.lottery, lid))
            if lot is not None:
                data.lotteries.append(lot)
        for record in data.auctions:
            # Read whatever the server publishes; what it will not give is named by
            # the auction checks, not raised (the other checks still run).
            aid = record.auction_id
            try:
                record.published, record.error = await self._read(
                    f"auction {aid}", functools.partial(host.auction, aid))
                chain, error = await self._read(f"auction {aid} bids",
                                                functools.partial(host.auction_chain, aid))
            except (HostError, httpx.HTTPError) as exc:
                record.error = f"{type(exc).__name__}: {exc}"
                continue
            record.error = record.error or error
            if chain is not None:
                record.entries = list(chain["bids"])
                record.chain_genesis = str(chain["genesis"])
                record.chain_head = str(chain["head"])
        for deal in data.group_deals:
            try:
                deal.final, deal.error = await self._read(
                    f"group deal {deal.deal_id}",
                    functools.partial(host.public, f"/group-deals/{deal.deal_id}"))
            except (HostError, httpx.HTTPError) as exc:
                deal.error = f"{type(exc).__name__}: {exc}"
        if data.referral is not None:
            try:
                data.referral.tree, data.referral.error = await self._read(
                    "referral tree", functools.partial(read_tree, host))
            except (HostError, httpx.HTTPError) as exc:
                data.referral.error = f"{type(exc).__name__}: {exc}"
        for poll in data.polls:
            try:
                poll.final, poll.error = await self._read(
                    f"poll {poll.poll_id}", functools.partial(host.public,
                                                              f"/polls/{poll.poll_id}"))
            except (HostError, httpx.HTTPError) as exc:
                poll.error = f"{type(exc).__name__}: {exc}"

    async def _read(self, what: str,
                    call: Callable[[], Awaitable[T]]) -> tuple[T | None, str]:
        """One read-back call. After faults the server may still be recovering:
        a chaos run retries until READBACK_RETRY_S after the read-back began, then
        goes on without it (the checks say what they could not see); other runs
        stop at the error."""
        ctx = self.ctx
        if not ctx.opts.chaos:
            return await call(), ""
        if self._readback_deadline is None:
            self._readback_deadline = time.monotonic() + READBACK_RETRY_S
        while True:
            try:
                return await call(), ""
            except (HostError, httpx.HTTPError) as exc:
                if time.monotonic() > self._readback_deadline:
                    ctx.warnings.append(f"read-back after the faults: {what}: {exc}")
                    return None, f"{type(exc).__name__}: {exc}"
            await asyncio.sleep(0.5)


def gather_results(ctx: RunContext, results: list[WorkerResult], spawned: bool) -> None:
    """The generators' records into the run's data, with the figures the checks
    compare against (the end marker's reach, the buy p99, the limits)."""
    s, d = ctx.scn, ctx.data
    for r in results:
        d.viewers.extend(r.viewers)
        d.holds.extend(r.holds)
        d.acks.extend(r.acks)
        d.claims.extend(r.claims)
        d.entries.extend(r.entries)
        d.waitlist_joins.extend(r.waitlist_joins)
        d.bids.extend(r.bids)
        d.group_answers.extend(r.group_answers)
        d.group_checkouts.extend(r.group_checkouts)
        d.votes.extend(r.votes)
        d.referral_answers.extend(r.referral_answers)
    d.waitlist_events = merge_waitlist_events([r.waitlist_events for r in results])
    d.auction_events = merge_auction_events([r.auction_events for r in results])
    d.social_events = merge_social_events([r.social_events for r in results])
    d.referral_events = merge_events([r.referral_events for r in results])
    d.final_seq = ctx.final_seq
    d.chat_limit = (s.chat.server_rate_per_s, s.chat.server_burst)
    d.holds_must_end = not ctx.interrupted.is_set() and (spawned or ctx.opts.trace is None)
    d.max_buy_p99_ms = s.checks.max_buy_p99_ms
    expected = sum(max(0, d.final_seq - v.first_seq) for v in d.viewers
                   if v.first_seq and v.connected_at_end) if d.final_seq else 0
    received = sum(min(v.applied, max(0, d.final_seq - v.first_seq)) for v in d.viewers
                   if v.first_seq and v.connected_at_end) if d.final_seq else 0
    d.reach = round(received / expected, 5) if expected else None
    d.min_reach = s.checks.min_reach


def merge_waitlist_events(parts: list[list[WaitlistEvent]]) -> list[WaitlistEvent]:
    """The generators' waitlist events, one per seq, in seq order."""
    by_seq: dict[int, WaitlistEvent] = {}
    for part in parts:
        for ev in part:
            by_seq.setdefault(ev.seq, ev)
    return [by_seq[k] for k in sorted(by_seq)]


def merge_auction_events(parts: list[list[AuctionEvent]]) -> list[AuctionEvent]:
    """The generators' auction events, one per seq and content (receipts added),
    in seq order."""
    by_seq: dict[int, list[AuctionEvent]] = {}
    for part in parts:
        for ev in part:
            variants = by_seq.setdefault(ev.seq, [])
            same = next((v for v in variants if v.data == ev.data), None)
            if same is None:
                variants.append(AuctionEvent(ev.seq, ev.kind, ev.auction_id, ev.data,
                                             ev.receipts, list(ev.viewers)))
            else:
                same.receipts += ev.receipts
                same.viewers.extend(ev.viewers[:max(0, 3 - len(same.viewers))])
    return [ev for k in sorted(by_seq) for ev in by_seq[k]]


def merge_social_events(parts: list[list[SocialEvent]]) -> list[SocialEvent]:
    """The generators' group and poll events, one per seq and content (receipts
    added), in seq order."""
    by_seq: dict[int, list[SocialEvent]] = {}
    for part in parts:
        for ev in part:
            variants = by_seq.setdefault(ev.seq, [])
            same = next((v for v in variants if v.data == ev.data), None)
            if same is None:
                variants.append(SocialEvent(ev.seq, ev.kind, ev.data, ev.receipts))
            else:
                same.receipts += ev.receipts
    return [ev for k in sorted(by_seq) for ev in by_seq[k]]


def verdicts(ctx: RunContext, results: list[WorkerResult],
             generator_errors: list[str]) -> tuple[list[checks_mod.Check],
                                                   dict[str, Any] | None]:
    """Every check of the run, and the chaos section of the measurements (None
    without --chaos)."""
    checks = checks_mod.check_run(ctx.data) if results else []
    chaos_section: dict[str, Any] | None = None
    if ctx.chaos is not None or ctx.opts.chaos:
        answers = [(a[0] - ctx.show_wall, a[1] - ctx.show_wall, a[2], a[3])
                   for r in results for a in r.answers]
        answers.sort(key=lambda a: a[1])
        if ctx.chaos is not None:
            chaos_section, chaos_checks = ctx.chaos.summary(answers, ctx.opts.chaos_spec)
        else:  # the run broke off or was interrupted before the show
            chaos_section, chaos_checks = summarize([], ctx.opts.chaos, answers,
                                                    ctx.opts.chaos_spec)
        checks += chaos_checks
    if ctx.fault:
        checks.append(checks_mod.Check("the run completed", False, ctx.fault))
    for err in generator_errors:
        checks.append(checks_mod.Check("generator processes ran without faults", False,
                                       err[-1500:]))
    return checks, chaos_section
