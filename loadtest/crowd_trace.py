"""A trace's viewer actions in one generator process (`livesell-loadtest
replay`): the recorded room's ids bound to this room's as the parent learns
them (a `bind` command per id), each recorded step replayed at its time by its
viewer (join, leave, chat, like, buy, checkout, release, claim, enter), a
recorded viewer's hold ids mapped to the synthetic viewer's own holds in the
order it got them, and what could not be replayed counted by action and
reason. The process's `Crowd` (loadtest/crowd.py) owns one and hands it its
requests (loadtest/actions.py), its viewers and its task set; the parent's
side of a trace is loadtest/replay.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from loadtest.actions import Actions
from loadtest.messages import TraceStep
from loadtest.viewer import Viewer


class TraceSteps:
    """The recorded steps of this process's viewers, replayed against this room."""

    def __init__(self, actions: Actions, viewers: dict[int, Viewer],
                 join: Callable[[Viewer], Awaitable[None]],
                 spawn: Callable[[Coroutine[Any, Any, Any]], None]) -> None:
        self.actions = actions
        self.viewers = viewers
        self.join = join  # connect one viewer, retrying as the crowd's join does
        self.spawn = spawn  # a task the crowd tracks and counts if it fails
        self.bindings: dict[tuple[str, str], str] = {}
        self.bound = asyncio.Event()
        self.hold_map: dict[tuple[int, str], str] = {}

    def bind(self, kind: str, original: str, real: str) -> None:
        self.bindings[(kind, original)] = real
        self.bound.set()

    async def resolve(self, kind: str, original: str) -> str | None:
        """The id in this room for an id of the recorded room (waits up to 5 s)."""
        deadline = time.monotonic() + 5.0
        while (kind, original) not in self.bindings:
            if time.monotonic() > deadline or self.actions.finishing:
                return None
            self.bound.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.bound.wait(), 0.5)
        return self.bindings[(kind, original)]

    async def replay(self, t0_epoch: float) -> None:
        steps = self.actions.plan.steps or []
        start = t0_epoch * 1000.0
        first: dict[int, str] = {}
        for st in steps:
            first.setdefault(st.viewer, st.action)
        # Viewers whose first recorded action is not a join are in the room from the start.
        early = [self.viewers[i] for i in self.actions.plan.indices if first.get(i) != "join"]
        await asyncio.gather(*(self.join(v) for v in early))
        for st in steps:
            if self.actions.finishing:
                return
            await self.actions.sleep_until_local(start + st.t_ms)
            self.spawn(self.replay_step(st))

    async def replay_step(self, st: TraceStep) -> None:
        v = self.viewers[st.viewer]
        d = st.data
        act = st.action
        if act == "join":
            if v.link is None:
                v.leaving = False
                await self.join(v)
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
                self.actions.count("chat", "sent")
        elif act == "like":
            v.send_frame({"type": "like", "count": int(d.get("count") or 1)})
            self.actions.count("like", "sent")
        elif act == "buy":
            pid = await self.resolve("product", str(d.get("product_id")))
            if pid is None:
                self._skip(act, "unknown product")
                return
            started = time.perf_counter()
            sent = time.time()
            reply = await v.request("buy", {"product_id": pid,
                                            "quantity": int(d.get("quantity") or 1)})
            self.actions.buy_replied(started)
            if reply.get("type") == "hold":
                self.actions.count("buy", "hold")
                self.actions.answered(sent, "buy", "hold")
                self.actions.hold(v, reply["hold"])
            else:
                self.actions.count("buy", str(reply.get("code")))
                self.actions.answered(sent, "buy", str(reply.get("code")))
        elif act in ("checkout", "release"):
            hold = await self._own_hold(v, str(d.get("hold_id")))
            if hold is None:
                self._skip(act, "no hold")
                return
            if act == "release":
                await self.actions.release(v, hold)
                return
            coupon = None
            if d.get("coupon_id"):
                coupon = await self.resolve("coupon", str(d["coupon_id"]))
            await self.actions.checkout(v, hold, coupon)
        elif act == "claim_coupon":
            cid = await self.resolve("coupon", str(d.get("coupon_id")))
            if cid is None:
                self._skip(act, "unknown coupon")
                return
            await self.actions.claim(v, cid)
        elif act == "enter_lottery":
            lid = await self.resolve("lottery", str(d.get("lottery_id")))
            if lid is None:
                self._skip(act, "unknown lottery")
                return
            await self.actions.enter(v, lid, d.get("keyword"))

    async def _own_hold(self, v: Viewer, original: str) -> str | None:
        """Recorded hold ids map to this viewer's own holds in the order it got them."""
        key = (v.index, original)
        deadline = time.monotonic() + 2.0
        while key not in self.hold_map:
            mapped = set(h for (i, _), h in self.hold_map.items() if i == v.index)
            free = [h for h in self.actions.own_holds.get(v.index, []) if h not in mapped]
            if free:
                self.hold_map[key] = free[0]
                break
            if time.monotonic() > deadline or self.actions.finishing:
                return None
            await asyncio.sleep(0.05)
        return self.hold_map[key]

    def _skip(self, action: str, why: str) -> None:
        key = f"{action}: {why}"
        skipped = self.actions.result.trace_skipped
        skipped[key] = skipped.get(key, 0) + 1
