"""One load-test run, end to end: the order in which its parts act, and the
result they add up to. Each part owns one concern: target.py (the server and
the room), pool.py (the generator processes), sampling.py (CPU, memory, the
timeline), show.py / replay.py (a scenario's or a trace's show), verdict.py
(settling, the end marker, the read-back, the checks), measure.py (the
report's figures); context.py holds what they share.

Timeline of a scenario run:

1. target: spawn a server (pinned to its own core) or check --url, which must be
   on a loopback address and answer /api/health;
2. room: create one through POST /api/rooms (its host key comes back), or use
   --room with --host-key / LIVESELL_HOST_KEY; add the products;
3. crowd: start the generator processes and join every viewer at the rate;
4. show (run.duration_s): drop the coupon, open the lottery, announce the sale
   (it opens after its countdown), emit host events, let chatters chat and
   reconnectors drop; the audit is sampled all along;
5. settle: wait until the crowd's flows are done and no unit is held;
   draw the lottery if its timer has not;
6. end marker: an announcement whose seq every connected viewer must reach;
7. read back: final audit, orders, lotteries; stop the spawned server and
   read its SQLite store read-only; run the checker.

A trace run replaces 3-4 by the recorded host and viewer actions. Ctrl-C
(SIGINT) skips to the read-back, so the report still shows what ran.

With --chaos (loadtest/chaos.py) faults go into the spawned server during the
show, on the show's clock; the generators keep every buy and checkout answer
with its times and retry "try again" answers for a while, and the report gets
a `chaos` section and two more verdicts (every fault injected, the server
recovered after each) beside the unchanged correctness checks.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections import Counter

import httpx

from loadtest import measure
from loadtest.chaos_spec import check_chaos
from loadtest.context import RunContext, RunOptions, RunResult
from loadtest.host import Host, TargetError
from loadtest.pool import GeneratorPool
from loadtest.replay import Replay
from loadtest.sampling import Sampler
from loadtest.show import Show
from loadtest.spawn import SpawnError
from loadtest.stats import summary
from loadtest.target import SALE_PRODUCT, Target, server_processes
from loadtest.trace import replay_plan
from loadtest.verdict import Ending, gather_results, verdicts


class Engine:
    """One run: its parts, and the order they act in."""

    def __init__(self, opts: RunOptions) -> None:
        self.ctx = RunContext(opts)
        self.target = Target(self.ctx)
        self.pool = GeneratorPool(self.ctx)
        self.sampler = Sampler(self.ctx, self.target, self.pool)

    async def run(self) -> RunResult:
        ctx = self.ctx
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError, RuntimeError):  # no signals here
            loop.add_signal_handler(signal.SIGINT, self._on_sigint)
        try:
            with ctx.progress:
                await self._run()
        except (TargetError, SpawnError):
            raise
        except Exception as exc:  # the run broke off: still report what ran
            ctx.fault = f"{type(exc).__name__}: {exc}"
            if self.target.server is not None:
                ctx.fault += "\nserver log: " + self.target.server.log_tail(1500)
        finally:
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(signal.SIGINT)
            self.pool.stop()
            self.target.stop()
        return self._result()

    def _on_sigint(self) -> None:
        ctx = self.ctx
        if ctx.interrupted.is_set():
            raise KeyboardInterrupt
        ctx.interrupted.set()
        ctx.progress.note("interrupted: stopping the show and writing the report of what "
                          "ran (Ctrl-C again to abort)")

    async def _run(self) -> None:
        ctx, target, pool = self.ctx, self.target, self.pool
        await target.start()
        async with httpx.AsyncClient(base_url=target.base, timeout=30.0) as http:
            await Host.reach(http, target.base)
            host = await target.open_room(http)
            pool.start(target.ws_host, target.ws_port, target.room_id,
                       spawned=target.server is not None, gen_cpus=target.gen_cpus)
            tasks = [asyncio.ensure_future(pool.pump()),
                     asyncio.ensure_future(self.sampler.loop(host))]
            ending = Ending(ctx, pool)
            try:
                await pool.wait_ready()
                if ctx.opts.trace is not None:
                    await Replay(ctx, target, pool, self.sampler).run(host)
                else:
                    show = Show(ctx, target, pool, self.sampler)
                    await show.join()
                    await show.run(host)
                await ending.settle(host)
                if ctx.chaos is not None:
                    await ctx.chaos.finish()
                await ending.finish(host)
                await ending.read_back(host)
            finally:
                if ctx.chaos is not None:
                    await ctx.chaos.stop()
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

    def _result(self) -> RunResult:
        ctx, pool = self.ctx, self.pool
        results = [pool.results[k] for k in sorted(pool.results)]
        gather_results(ctx, results, spawned=self.target.server is not None)
        latency = [x for r in results for x in r.latency_ms]
        buy_ms = [x for r in results for x in r.buy_ms]
        checkout_ms = [x for r in results for x in r.checkout_ms]
        ctx.data.buy_p99_ms = summary(buy_ms)["p99"]
        checks, chaos_section = verdicts(ctx, results, pool.errors)
        outcomes: dict[str, Counter[str]] = {}
        for r in results:
            for action, codes in r.outcomes.items():
                outcomes.setdefault(action, Counter()).update(codes)
        measurements = measure.measurements(ctx, self.target, self.sampler, results,
                                            latency, buy_ms, checkout_ms, outcomes)
        if chaos_section is not None:
            measurements["chaos"] = chaos_section
        warnings = [*ctx.warnings, *self.sampler.warnings(), *pool.lost()]
        for r in results:
            if r.saturated_s:
                warnings.append(
                    f"generator {r.worker_id} saturated its core for {r.saturated_s}s "
                    f"(peak {r.peak_util:.0%}): latencies include the generator's own delay; "
                    "use more processes or fewer viewers")
            for error, times in r.task_errors.items():
                warnings.append(f"generator {r.worker_id}: a viewer's task failed {times} "
                                f"time(s): {error}")
        d = ctx.data
        charts = {
            "latency_ms": latency, "buy_ms": buy_ms, "checkout_ms": checkout_ms,
            "timeline": self.sampler.timeline,
            "stock": [(x.t, x.left, x.held, x.sold) for x in d.stock_samples
                      if x.product_id == SALE_PRODUCT or len(d.products) == 1],
            "generator_util": {r.worker_id: r.util_timeline for r in results},
        }
        return RunResult(settings=measure.settings(ctx, self.target, pool),
                         measurements=measurements, checks=checks, warnings=warnings,
                         interrupted=ctx.interrupted.is_set(), charts=charts)


def prepare(opts: RunOptions) -> Engine:
    """An engine for the options (a trace's replay plan is built here, so a bad
    trace fails before anything starts, and the chaos SPEC is checked against
    the run's length and target)."""
    engine = Engine(opts)
    s = opts.scenario
    plan = None
    if opts.trace is not None:
        plan = replay_plan(opts.trace, s.viewers.count if s.viewers.count else None,
                           s.trace.speed, s.run.seed)
        engine.ctx.plan = plan
    if opts.chaos:
        if plan is not None:
            length, name = plan.duration_ms / 1000.0, "the trace at --speed"
        else:
            length, name = s.run.duration_s, "run.duration_s"
        check_chaos(opts.chaos, spawned=opts.url is None, length_s=length, length_name=name,
                    server_processes=server_processes(opts) if opts.url is None else 0,
                    servers=opts.servers or 0)
    return engine
