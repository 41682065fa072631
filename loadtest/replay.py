"""The show of a trace run, on the host's side: the recorded host actions at
their (scaled) instants, with the recorded room's ids mapped to the objects
this replay created; the generators replay the viewers' actions themselves
(loadtest/crowd_trace.py) and learn each new id from a `bind` command.
"""

from __future__ import annotations

import time
from typing import Any

import httpx

from loadtest.context import RunContext
from loadtest.host import Host, HostError
from loadtest.model import CouponInfo, SaleInfo
from loadtest.pool import GeneratorPool
from loadtest.sampling import Sampler
from loadtest.show import chaos_injected, start_chaos
from loadtest.target import Target
from loadtest.trace import HostStep


class Replay:
    def __init__(self, ctx: RunContext, target: Target, pool: GeneratorPool,
                 sampler: Sampler) -> None:
        self.ctx = ctx
        self.target = target
        self.pool = pool
        self.sampler = sampler
        self.bound: dict[tuple[str, str], str] = {}

    async def run(self, host: Host) -> None:
        ctx = self.ctx
        plan = ctx.plan
        assert plan is not None
        ctx.progress.update(phase="replaying the trace", viewers=plan.viewer_count)
        for pid in plan.implicit_products:
            await host.product({"product_id": pid, "title": f"Product {pid}", "price": 1000,
                                "stock": 1000})
            ctx.data.products[pid] = 1000
            self._bind("product", pid, pid)
        for what in plan.unresolved:
            ctx.warnings.append(f"trace: {what} is referenced but never created; actions "
                                "on it are skipped")
        ctx.t_show = time.monotonic()
        ctx.show_wall = time.time() + 0.5
        self.sampler.mark_show_start()
        self.pool.tell("replay", ctx.show_wall)
        start_chaos(ctx, self.target, self.pool)
        await ctx.sleep(ctx.show_wall - time.time())
        for step in plan.host:
            if ctx.interrupted.is_set():
                break
            await ctx.sleep(ctx.show_wall + step.t_ms / 1000.0 - time.time())
            if ctx.interrupted.is_set():
                break
            await self._host_step(host, step)
        await ctx.sleep(ctx.show_wall + plan.duration_ms / 1000.0 + 0.5 - time.time())
        await chaos_injected(ctx)
        self.pool.tell("quiet")
        self.sampler.mark_show_end()
        ctx.join_s = None

    def _bind(self, kind: str, original: str, real: str) -> None:
        self.bound[(kind, original)] = real
        self.pool.tell("bind", kind, original, real)

    def _real(self, kind: str, original: Any) -> str:
        return self.bound.get((kind, str(original)), str(original))

    async def _host_step(self, host: Host, step: HostStep) -> None:
        d = dict(step.data)
        speed = self.ctx.scn.trace.speed
        act = step.action
        started = time.perf_counter()
        try:
            if act == "product":
                card = await host.product(d)
                self.ctx.data.products[card["product_id"]] = int(d.get("stock", 0))
                if step.creates:
                    self._bind("product", step.creates[1], card["product_id"])
                else:
                    self._bind("product", card["product_id"], card["product_id"])
            elif act == "pin":
                d["product_id"] = self._real("product", d["product_id"])
                await host.call("POST", "/pins", d)
            elif act == "unpin":
                await host.call("DELETE", f"/pins/{self._real('product', d['product_id'])}")
            elif act in ("listing", "claims"):
                real = self._real("product", d.pop("product_id"))
                await host.call("PUT", f"/products/{real}/{act}", d)
            elif act == "update_product":
                real = self._real("product", d.pop("product_id"))
                await host.call("PATCH", f"/products/{real}", d)
                if "stock" in d:
                    self.ctx.data.products[real] = int(d["stock"])
            elif act == "sale":
                d["product_id"] = self._real("product", d["product_id"])
                now = (await host.http.get("/api/time")).json()["server_time"]
                if "starts_in_s" in d:
                    d["starts_at"] = int(now + float(d.pop("starts_in_s")) * 1000 / speed)
                elif "starts_at" in d:
                    recorded_now = self.ctx.opts.trace.started_at + step.t_ms * speed \
                        if self.ctx.opts.trace else now
                    d["starts_at"] = int(now + (int(d["starts_at"]) - recorded_now) / speed)
                if "duration_s" in d:
                    d["duration_s"] = max(1, round(int(d["duration_s"]) / speed))
                sale = await host.call("POST", "/sales", d)
                self.ctx.data.sales.append(SaleInfo(sale["sale_id"], sale["product_id"],
                                                sale["units"], sale["limit_per_buyer"],
                                                sale["starts_at"]))
                if step.creates:
                    self._bind("sale", step.creates[1], sale["sale_id"])
            elif act == "stop_sale":
                await host.call("POST", f"/sales/{self._real('sale', d['sale_id'])}/stop")
            elif act == "coupon":
                coupon = await host.call("POST", "/coupons", d)
                self.ctx.data.coupons.append(CouponInfo(coupon["coupon_id"], coupon["count"]))
                if step.creates:
                    self._bind("coupon", step.creates[1], coupon["coupon_id"])
            elif act == "end_coupon":
                await host.call("POST", f"/coupons/{self._real('coupon', d['coupon_id'])}/end")
            elif act == "lottery":
                if "duration_s" in d:
                    d["duration_s"] = max(1, round(int(d["duration_s"]) / speed))
                lot = await host.call("POST", "/lotteries", d)
                self.ctx.lottery_ids.append(lot["lottery_id"])
                if step.creates:
                    self._bind("lottery", step.creates[1], lot["lottery_id"])
            elif act == "draw":
                await host.call("POST", f"/lotteries/{self._real('lottery', d['lottery_id'])}"
                                "/draw")
            elif act == "announce":
                await host.call("POST", "/announcements", d)
            elif act == "referrals":
                await host.call("PUT", "/referrals", d)
            elif act == "update_room":
                await host.call("PATCH", "", d)
            self.ctx.host_actions[f"{act}: ok"] += 1
            self.ctx.host_events += 1
        except HostError as exc:
            self.ctx.host_actions[f"{act}: {exc.code}"] += 1
            self.ctx.warnings.append(f"trace line {step.line}: host {act}: {exc}")
        except httpx.HTTPError as exc:  # the server is down (a chaos restart, or a crash)
            self.ctx.host_actions[f"{act}: {type(exc).__name__}"] += 1
            self.ctx.warnings.append(f"trace line {step.line}: host {act}: {exc}")
        self.ctx.host_ms.append((time.perf_counter() - started) * 1000.0)
