"""The figures of a run's report: `settings` (scenario, target, machine) and
`measurements` (viewers, fan-out, selling with its waitlists, auctions, group
deals, polls, referrals, outcomes, server, generators, trace), built from the generators'
results, the samples and the read-back.
Pure apart from reading the objects it is given.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from loadtest.cluster import ServerCluster
from loadtest.context import RunContext
from loadtest.messages import WorkerResult
from loadtest.model import AuctionRecord, GroupDealRecord, PollRecord
from loadtest.pool import GeneratorPool
from loadtest.referrals import figures as referral_figures
from loadtest.sampling import Sampler, machine
from loadtest.stats import spread_indices, summary
from loadtest.target import Target


def settings(ctx: RunContext, target: Target, pool: GeneratorPool) -> dict[str, Any]:
    server = target.server
    return {
        "scenario": ctx.scn.to_dict(),
        "target": {"url": target.base, "spawned": server is not None or
                   ctx.opts.url is None, "room_id": target.room_id,
                   **({"server_processes": server.workers,
                       "server_cpus": server.cpus,
                       "redis_cpus": server.redis_cpus,
                       "generator_cpus": target.gen_cpus}
                      if server is not None else {}),
                   # --servers: the servers behind the balancer, and the balancer
                   **({"cluster": server.describe()}
                      if isinstance(server, ServerCluster) else {})},
        "generator_processes": len(pool.results) or len(pool.procs),
        "hold_abandon": pool.abandon,
        "machine": machine(),
    }


def measurements(ctx: RunContext, target: Target, sampler: Sampler,
                 results: list[WorkerResult], latency: list[float], buy_ms: list[float],
                 checkout_ms: list[float],
                 outcomes: dict[str, Counter[str]]) -> dict[str, Any]:
    d = ctx.data
    n = ctx.viewer_count()
    joined = sum(len(r.join_ms) for r in results)
    applied = sum(r.applied for r in results)
    show_applied = (sampler.applied_show[1] - sampler.applied_show[0]) \
        if sampler.applied_show else 0
    show_s = sampler.show_seconds or 0.0
    sampled = spread_indices(n, ctx.scn.viewers.latency_sample)
    m: dict[str, Any] = {
        "viewers": {
            "requested": n, "joined": joined,
            "join_failures": sum(len(r.join_failures) for r in results),
            # Why the last attempt of each viewer that could not join failed, the
            # commonest first: a count alone cannot tell the server's admission
            # refusing a crowd from a fault.
            "join_failure_reasons": dict(Counter(
                f for r in results for f in r.join_failures).most_common(5)),
            "time_to_join_all_s": round(ctx.join_s, 3) if ctx.join_s else None,
            "joins_per_s": round(joined / ctx.join_s, 1) if ctx.join_s else None,
            "join_ms": summary([x for r in results for x in r.join_ms]),
            "reconnects": sum(v.reconnects for v in d.viewers),
            "close_codes": dict(Counter(str(c) for v in d.viewers
                                        for c in v.close_codes)),
        },
        "fanout": {
            "latency_ms": summary(latency),
            "latency_sampled_connections": sum(1 for r in results for v in r.viewers
                                               if v.index in sampled),
            "latency_events_seen": sum(r.latency_seen for r in results),
            "reach": d.reach,
            "deliveries": applied,
            "deliveries_during_show": show_applied,
            "deliveries_per_s": round(show_applied / show_s, 1) if show_s else None,
            "host_events_emitted": ctx.host_events,
            "host_actions": dict(ctx.host_actions),
            "host_request_ms": summary(ctx.host_ms),
            "gaps": sum(len(v.gaps) for v in d.viewers),
            "gaps_recovered_by": dict(Counter(g.recovered or "not recovered"
                                              for v in d.viewers for g in v.gaps)),
            "duplicates": sum(v.duplicates for v in d.viewers),
            # One process reads its connections one after another: the last of its
            # viewers sees an event about (viewers x CPU per frame) after the first.
            # Latencies near this figure are the generator's, not the server's.
            "generator_spread_ms_per_event": _generator_spread(results),
        },
        "selling": _selling(ctx, sampler, buy_ms, checkout_ms, outcomes, results),
        **({"auctions": [_auction(ctx, rec) for rec in d.auctions]} if d.auctions else {}),
        **({"group_deals": [_group_deal(ctx, deal) for deal in d.group_deals]}
           if d.group_deals else {}),
        **({"polls": [_poll(ctx, poll) for poll in d.polls]} if d.polls else {}),
        **({"referrals": referral_figures(d)} if d.referral is not None else {}),
        "outcomes": {k: dict(v) for k, v in sorted(outcomes.items())},
        "server": _server(target, sampler, show_applied, joined),
        "generator": [{"process": r.worker_id, "viewers": len(r.viewers),
                       "cpu_s": round(r.cpu_s, 2), "wall_s": round(r.wall_s, 2),
                       "peak_core_util": round(r.peak_util, 3),
                       "saturated_s": r.saturated_s, "frames": r.frames}
                      for r in results],
    }
    skipped: Counter[str] = Counter()
    for r in results:
        skipped.update(r.trace_skipped)
    if ctx.plan is not None:
        trace = ctx.opts.trace
        m["trace"] = {"recorded_viewers": len(trace.viewers) if trace else 0,
                      "synthetic_viewers": ctx.plan.viewer_count,
                      "speed": ctx.scn.trace.speed,
                      "viewer_steps": len(ctx.plan.viewers),
                      "host_steps": len(ctx.plan.host),
                      "skipped": dict(skipped)}
    return m


def _generator_spread(results: list[WorkerResult]) -> float | None:
    spreads = [r.cpu_s / r.frames * len(r.viewers) * 1000.0 for r in results if r.frames]
    return round(max(spreads), 2) if spreads else None


def _selling(ctx: RunContext, sampler: Sampler, buy_ms: list[float],
             checkout_ms: list[float], outcomes: dict[str, Counter[str]],
             results: list[WorkerResult]) -> dict[str, Any]:
    d = ctx.data
    orders = d.orders_store if d.orders_store is not None else d.orders_api
    out: dict[str, Any] = {
        "buy_ms": summary(buy_ms), "checkout_ms": summary(checkout_ms),
        "holds_given": len(d.holds), "orders_acknowledged": len(d.acks),
        "orders_stored": len(orders),
        "units_sold": sum(int(o["quantity"]) for o in orders),
        "holds_released": sum(r.released for r in results),
        "holds_left_to_expire": sum(r.abandoned_to_expire for r in results),
        "checkouts_refused_hold_expired": outcomes.get("checkout", Counter()).get(
            "hold_expired", 0),
        "coupon_claims": len(d.claims),
        "orders_with_coupon": sum(1 for o in orders if o.get("coupon_id")),
        "lottery_entries": len(d.entries),
        "waitlist_joins": len(d.waitlist_joins),
        "waitlist_offers": sum(len(ev.offers) for ev in d.waitlist_events),
        "waitlist_dropped": sum(len(ev.dropped) for ev in d.waitlist_events),
    }
    settled = {o["hold_id"] for o in orders}
    out["holds_expired_or_released"] = len({h.hold_id for h in d.holds} - settled)
    for sale in d.sales:
        sold = 0
        out.setdefault("time_to_sell_out_s", None)
        for o in sorted((o for o in orders if o["sale_id"] == sale.sale_id),
                        key=lambda o: int(o["created_at"])):
            sold += int(o["quantity"])
            if sold >= sale.units:
                out["time_to_sell_out_s"] = round(
                    (int(o["created_at"]) - sale.starts_at) / 1000.0, 3)
                break
        reserved = [s.t for s in d.stock_samples
                    if s.product_id == sale.product_id and s.left == 0]
        out["time_to_all_reserved_s"] = round(
            reserved[0] - (sale.starts_at / 1000.0 - ctx.show_wall), 2) if reserved \
            else None
    last_reply = max((r.last_buy_reply_at for r in results), default=0.0)
    out.update(sampler.cpu_per_buy(buy_ms, sum(outcomes.get("buy", Counter()).values()),
                                   last_reply or None))
    return out


def _auction(ctx: RunContext, rec: AuctionRecord) -> dict[str, Any]:
    """One auction's figures: bids by kind and answer, the chain, the ends."""
    d = ctx.data
    pub = rec.published or {}
    result = pub.get("result") or {}
    bids = [b for b in d.bids if b.auction_id == rec.auction_id]
    first_end = rec.started.get("ends_at")
    last_end = rec.entries[-1]["ends_at"] if rec.entries else first_end
    snipes = [b for b in bids if b.kind == "snipe"]
    return {
        "auction_id": rec.auction_id, "anti_snipe": pub.get("anti_snipe"),
        "state": pub.get("state"), "ended_by": result.get("ended_by"),
        "bids_sent": len(bids),
        "bids_by_kind": dict(Counter(b.kind for b in bids)),
        "answers": dict(Counter(b.outcome for b in bids).most_common()),
        "bid_ms": summary([max(0.0, b.answered_at - b.sent_at) for b in bids]),
        "chain_entries": len(rec.entries),
        "proxy_entries": sum(1 for e in rec.entries if e.get("kind") == "proxy"),
        "extensions": pub.get("extensions"),
        "end_moved_s": round((int(last_end) - int(first_end)) / 1000.0, 3)
        if first_end is not None and last_end is not None else None,
        "snipes_sent": len(snipes),
        "snipes_after_the_end_as_seen": sum(1 for b in snipes if b.outcome == "auction_ended"),
        "winner": result.get("winner"), "amount": result.get("amount"),
        "reserve_met": result.get("reserve_met"),
        "events_received": sum(ev.receipts for ev in d.auction_events
                               if ev.auction_id == rec.auction_id),
        "read_back_error": rec.error or None,
    }


def _group_deal(ctx: RunContext, deal: GroupDealRecord) -> dict[str, Any]:
    """One group deal's figures: groups started, complete and expired, members'
    answers and checkouts, orders."""
    d = ctx.data
    states: dict[str, str] = {}
    for ev in d.social_events:
        group = ev.data.get("group") if ev.kind == "group_update" else None
        if isinstance(group, dict) and group.get("deal_id") == deal.deal_id:
            gid = str(group.get("group_id"))
            if states.get(gid) in (None, "open"):
                states[gid] = str(group.get("state"))
    answers = [a for a in d.group_answers if a.deal_id == deal.deal_id]
    orders = d.orders_store if d.orders_store is not None else d.orders_api
    final = deal.final or {}
    return {
        "deal_id": deal.deal_id, "group_size": deal.group_size,
        "group_price": deal.group_price, "units": deal.units,
        "groups_started": len(states),
        "groups_complete": sum(1 for s in states.values() if s == "complete"),
        "groups_expired": sum(1 for s in states.values() if s == "expired"),
        "groups_open_at_the_end": sum(1 for s in states.values() if s == "open"),
        "starts": dict(Counter(a.outcome for a in answers if a.kind == "start")),
        "joins": dict(Counter(a.outcome for a in answers if a.kind == "join")),
        "checkouts": dict(Counter(f"{c.group_state}: {c.outcome}"
                                  for c in d.group_checkouts)),
        "orders": sum(1 for o in orders if o["sale_id"] == deal.deal_id),
        "final_held": final.get("held"), "final_sold": final.get("sold"),
        "events_received": sum(ev.receipts for ev in d.social_events
                               if ev.kind in ("group_deal", "group_update")),
        "read_back_error": deal.error or None,
    }


def _poll(ctx: RunContext, poll: PollRecord) -> dict[str, Any]:
    """One poll's figures: votes by kind and answer, the final counts."""
    votes = [v for v in ctx.data.votes if v.poll_id == poll.poll_id]
    final = poll.final or {}
    return {
        "poll_id": poll.poll_id, "state": final.get("state"),
        "votes_sent": len(votes),
        "answers": dict(Counter(f"{v.kind}: {v.outcome}" for v in votes)),
        "final_votes": final.get("votes"), "final_total": final.get("total"),
        "events_received": sum(ev.receipts for ev in ctx.data.social_events
                               if ev.kind.startswith("poll_")),
        "read_back_error": poll.error or None,
    }


def _server(target: Target, sampler: Sampler, show_deliveries: int,
            joined: int) -> dict[str, Any]:
    server, samples = target.server, sampler.cpu_samples
    if server is None or not samples:
        return {"measured": False,
                "why": "server CPU and memory are read from /proc of a spawned server"}
    first, last = samples[0], samples[-1]
    wall = last[0] - first[0]
    out: dict[str, Any] = {
        "measured": True, "pid": server.pid if server.proc else None,
        "cpu_s": round(last[1] - first[1], 3),
        "avg_core_util": round((last[1] - first[1]) / wall, 3) if wall else None,
        "redis_cpu_s": round(last[2] - first[2], 3),
        "rss_peak_mb": round(max(x[3] for x in samples) / 2**20, 1),
        "redis_rss_peak_mb": round(max(x[4] for x in samples) / 2**20, 1),
    }
    if sampler.cpu_show is not None and sampler.cpu_show[1]:
        cpu = sampler.cpu_show[1] - sampler.cpu_show[0]
        out["cpu_s_during_show"] = round(cpu, 3)
        out["cpu_us_per_delivery"] = round(cpu * 1e6 / show_deliveries, 2) \
            if show_deliveries else None
    if joined and sampler.rss_after_join:
        out["rss_kb_per_viewer"] = round(
            (sampler.rss_after_join - sampler.rss_before_join) / 1024 / joined, 2)
        out["cpu_ms_per_viewer"] = round(out["cpu_s"] * 1000 / joined, 3)
    return out
