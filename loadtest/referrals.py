"""Referral invites in a load test (docs/protocol.md section 20): one generator
process's inviters and invitees, and the host's side of the program.

Owns: who invites and who is invited (`scenario.referral_roles`, split over
each process's own viewers, so an invitee's inviter is always in its process
and its link never crosses processes), the loopback address each of them
connects from, every `invite` and `accept_invite` with what it was told
(`ReferralAnswer`), the `referral_reward` events kept once per seq and content
(`ReferralEvent`), the gate that holds an invitee's buy until its invites are
answered, and, for the parent: setting the program (`PUT .../referrals`),
waiting until every invitee's order has its reward decision, and the report's
figures. The checks over all of it are loadtest/checks.py `REFERRAL_CHECKS`.

- **Inviters** (`inviter_share`) ask for their link when the show starts;
  `self_share` of them then accept their own link, which must be refused
  `self_invite`.
- **Invitees** (`invitee_share` of the viewers that are neither inviters nor
  group-deal participants, so their orders are the flash sale's alone, one
  after another) accept the link of one inviter (round robin) at a random
  instant within `accept_within_s` of getting it; `retry_share` accept it
  again (answered `invite_accepted` again), `duplicate_share` then accept a
  second inviter's link (refused `already_invited`). Then every invitee buys in
  the flash sale as a buyer does (one press, checkout or abandon), never before
  its invites were answered, so its first order comes after it joined.
- **Addresses**: the server refuses a guest on the inviter's network address as
  a self-invite, and every viewer of a load test is on loopback. Inviters
  connect from 127.0.0.2, invitees from 127.0.0.3 to 127.0.0.250 in turn (Linux
  routes all of 127.0.0.0/8 to `lo`; `Viewer.connect_from` refuses any other
  address); everyone else keeps 127.0.0.1. Their guest identities are minted at
  those addresses too, which also spreads them under the server's per-address
  mint limit.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, Final

import httpx

from loadtest.actions import RETRYABLE, Actions
from loadtest.host import Host, HostError
from loadtest.model import ReferralAnswer, ReferralEvent, ReferralRecord, RunData
from loadtest.scenario import ReferralSpec, referral_roles
from loadtest.viewer import Viewer

REFERRAL_EVENTS: Final = frozenset({"referral_reward"})
INVITER_SOURCE: Final = "127.0.0.2"
INVITEE_SOURCES: Final = range(3, 251)  # 127.0.0.3 .. 127.0.0.250
TRANSIENT_TRIES = 5  # an invite or accept retried on a transient error
LINK_WAIT_S = 60.0  # an invitee waits this long at most for its inviter's link
GATE_WAIT_S = 90.0  # an invitee's buy waits this long at most for its invites' answers
SETTLE_POLL_S = 0.25


def invitee_source(n: int) -> str:
    """The loopback address of a process's n-th invitee (0-based)."""
    return f"127.0.0.{INVITEE_SOURCES[n % len(INVITEE_SOURCES)]}"


class Referrals:
    """The inviters and invitees of one generator process."""

    def __init__(self, actions: Actions, viewers: dict[int, Viewer]) -> None:
        self.actions = actions
        self.viewers = viewers
        scn = actions.scn
        self.r = scn.referral
        on = self.r.enabled and actions.plan.steps is None  # not in a trace replay
        inviters, invitees = referral_roles(scn, actions.plan.indices) if on else ([], [])
        self.inviters: list[int] = inviters
        self.invitees: frozenset[int] = frozenset(invitees)
        self.rngs = {i: random.Random(scn.run.seed * 1_000_039 + i)
                     for i in (*inviters, *invitees)}
        self.selfers = {i for i in inviters if self.rngs[i].random() < self.r.self_share}
        self.first_of: dict[int, int] = {}  # invitee -> the inviter whose link it accepts
        self.second_of: dict[int, int] = {}  # invitee -> the inviter it tries next
        self.retriers: set[int] = set()
        for n, i in enumerate(invitees):
            rng = self.rngs[i]
            self.first_of[i] = inviters[n % len(inviters)] if inviters else -1
            if rng.random() < self.r.retry_share:
                self.retriers.add(i)
            if len(inviters) > 1 and rng.random() < self.r.duplicate_share:
                self.second_of[i] = inviters[(n + 1) % len(inviters)]
            viewers[i].connect_from(invitee_source(n))
        for i in inviters:
            viewers[i].connect_from(INVITER_SOURCE)
        self.link_given: dict[int, asyncio.Event] = {i: asyncio.Event() for i in inviters}
        self.links: dict[int, tuple[str, str]] = {}  # inviter -> (its viewer id, token)
        self.answered: dict[int, asyncio.Event] = {i: asyncio.Event() for i in invitees}
        self.events: dict[int, list[ReferralEvent]] = {}
        self.started = False

    # ------------------------------------------------------------ the show

    def start(self) -> None:
        """The show began (the program is set): inviters ask for their links,
        invitees wait for theirs."""
        if self.started:
            return
        self.started = True
        for i in self.inviters:
            self.actions.spawn(self._inviter(self.viewers[i]))
        for i in sorted(self.invitees):
            self.actions.spawn(self._invitee(self.viewers[i]))

    def buy(self, viewer: Viewer, sale: dict[str, Any], delay_s: float) -> None:
        """An invitee saw the sale: it buys once its invites are answered."""
        self.actions.spawn(self._buy_when_answered(viewer, sale, delay_s))

    def on_event(self, viewer: Viewer, kind: str, msg: dict[str, Any]) -> None:
        """A `referral_reward` the viewer applied in seq order: kept once per seq and
        content."""
        if kind not in REFERRAL_EVENTS:
            return
        seq = int(msg["seq"])
        variants = self.events.setdefault(seq, [])
        for ev in variants:
            if ev.data == msg:
                ev.receipts += 1
                return
        variants.append(ReferralEvent(seq=seq, inviter=str(msg.get("inviter", "")),
                                      state=str(msg.get("state", "")), data=dict(msg)))

    async def _inviter(self, viewer: Viewer) -> None:
        i = viewer.index
        try:
            reply = await self._request(viewer, "invite", {})
            ok = reply.get("type") == "invite" and isinstance(reply.get("invite"), str)
            outcome = "invite" if ok else str(reply.get("code"))
            self._record(viewer, "invite", viewer.rec.viewer_id, outcome, reply)
            if ok:
                self.links[i] = (viewer.rec.viewer_id, str(reply["invite"]))
        finally:
            self.link_given[i].set()
        if i in self.selfers and i in self.links and not self.actions.finishing:
            await self._accept(viewer, "self", self.links[i])

    async def _invitee(self, viewer: Viewer) -> None:
        i = viewer.index
        try:
            link = await self._link(self.first_of[i])
            if link is None:
                self.actions.count("accept_invite", "no_link")
                return
            await asyncio.sleep(self.rngs[i].uniform(0.0, self.r.accept_within_s))
            first = await self._accept(viewer, "accept", link)
            if first.outcome != "invite_accepted" or self.actions.finishing:
                return
            if i in self.retriers:
                await self._accept(viewer, "retry", link)
            if i in self.second_of:
                other = await self._link(self.second_of[i])
                if other is not None and not self.actions.finishing:
                    await self._accept(viewer, "duplicate", other)
        finally:
            self.answered[i].set()

    async def _link(self, inviter: int) -> tuple[str, str] | None:
        given = self.link_given.get(inviter)
        if given is None:
            return None
        try:
            await asyncio.wait_for(given.wait(), LINK_WAIT_S)
        except TimeoutError:
            return None
        return self.links.get(inviter)

    async def _accept(self, viewer: Viewer, kind: str, link: tuple[str, str]) -> ReferralAnswer:
        """One accept_invite (a new request: a second acceptance is not a resend)."""
        inviter_id, token = link
        reply = await self._request(viewer, "accept_invite", {"invite": token})
        accepted = reply.get("type") == "invite_accepted"
        return self._record(viewer, kind, inviter_id,
                            "invite_accepted" if accepted else str(reply.get("code")), reply)

    async def _request(self, viewer: Viewer, kind: str, fields: dict[str, Any]
                       ) -> dict[str, Any]:
        rid = viewer.next_id(kind)
        reply: dict[str, Any] = {}
        for _ in range(TRANSIENT_TRIES):
            # The same request id again: a retry of one request, never a second one.
            reply = await viewer.request(kind, fields, request_id=rid)
            if reply.get("code") not in RETRYABLE or self.actions.finishing:
                break
            await asyncio.sleep(0.2)
        return reply

    def _record(self, viewer: Viewer, kind: str, inviter_id: str, outcome: str,
                reply: dict[str, Any]) -> ReferralAnswer:
        answer = ReferralAnswer(
            viewer_id=viewer.rec.viewer_id, kind=kind, inviter_id=inviter_id,
            outcome=outcome, told_inviter=str(reply.get("inviter") or ""),
            sent_at=self.actions.server_now())
        self.actions.result.referral_answers.append(answer)
        self.actions.count("invite" if kind == "invite" else f"accept_invite_{kind}", outcome)
        return answer

    async def _buy_when_answered(self, viewer: Viewer, sale: dict[str, Any],
                                 delay_s: float) -> None:
        # Wait for the opening from when the sale was seen, as every buyer does: the
        # buyers' timers fire in the order they were set, so an invitee that set its
        # own only once its invites were answered would always press after them all.
        opening = self.actions.server_to_local(float(sale["starts_at"]))
        await self.actions.sleep_until_local(opening + delay_s * 1000.0)
        answered = self.answered[viewer.index]
        if not answered.is_set():
            try:
                await asyncio.wait_for(answered.wait(), GATE_WAIT_S)
            except TimeoutError:
                self.actions.count("invitee_buy", "invites_unanswered")
                return
        if self.actions.finishing:
            return
        # One press, as a buyer who is not greedy: one hold at a time, so the
        # invitee's orders come one after another and its first is plain.
        before = len(self.actions.own_holds.get(viewer.index, []))
        await self.actions.buy_flow(viewer, sale, False, delay_s)
        got = len(self.actions.own_holds.get(viewer.index, [])) > before
        self.actions.count("invitee_buy", "hold" if got else "no_hold")

    # ------------------------------------------------------------ reporting

    def collected(self) -> list[ReferralEvent]:
        return [ev for seq in sorted(self.events) for ev in self.events[seq]]


# ---------------------------------------------------------------- the host's side


def program_body(spec: ReferralSpec) -> dict[str, Any]:
    return {"reward": {"kind": "points", "points": spec.points},
            "max_rewards_per_inviter": spec.max_rewards_per_inviter}


async def set_program(host: Host, spec: ReferralSpec) -> ReferralRecord:
    """The room's referral program, set before anyone can order."""
    program: dict[str, Any] = await host.call("PUT", "/referrals", program_body(spec))
    return ReferralRecord(program=program)


async def read_tree(host: Host) -> dict[str, Any]:
    tree: dict[str, Any] = await host.call("GET", "/referrals")
    return tree


def undecided(tree: dict[str, Any], orders: list[dict[str, Any]]) -> list[str]:
    """Invitees of the tree with an order placed since they joined and no reward
    decision yet (the server decides just after the order: this is still to come)."""
    joined: dict[str, tuple[int, Any]] = {}
    for node in tree.get("inviters") or []:
        for inv in node.get("invitees") or []:
            joined[str(inv["viewer_id"])] = (int(inv.get("joined_at") or 0), inv.get("reward"))
    waiting = set()
    for o in orders:
        known = joined.get(str(o.get("buyer_id")))
        if known is not None and known[1] is None and o.get("status", "placed") == "placed" \
                and int(o.get("created_at") or 0) >= known[0]:
            waiting.add(str(o["buyer_id"]))
    return sorted(waiting)


async def settle(host: Host, within_s: float,
                 sleep: Callable[[float], Awaitable[bool]]) -> str:
    """Wait (bounded) until every invitee's order since joining has its reward
    decision, so the rewards are announced before the end marker. "" when settled,
    else why not."""
    deadline = time.monotonic() + within_s
    why = ""
    while True:
        try:
            waiting = undecided(await read_tree(host), await host.orders())
        except (HostError, httpx.HTTPError) as exc:
            why = f"the referral tree could not be read: {exc}"
        else:
            if not waiting:
                return ""
            why = (f"{len(waiting)} invitee(s) with an order and no reward decision, e.g. "
                   f"{waiting[0]}")
        if time.monotonic() > deadline or not await sleep(SETTLE_POLL_S):
            return why


def merge_events(parts: list[list[ReferralEvent]]) -> list[ReferralEvent]:
    """The generators' referral_reward events, one per seq and content (receipts
    added), in seq order."""
    by_seq: dict[int, list[ReferralEvent]] = {}
    for part in parts:
        for ev in part:
            variants = by_seq.setdefault(ev.seq, [])
            same = next((v for v in variants if v.data == ev.data), None)
            if same is None:
                variants.append(ReferralEvent(ev.seq, ev.inviter, ev.state, ev.data,
                                              ev.receipts))
            else:
                same.receipts += ev.receipts
    return [ev for k in sorted(by_seq) for ev in by_seq[k]]


def figures(d: RunData) -> dict[str, Any]:
    """The report's referral figures: the program, the answers by kind, the tree's
    totals and reward states, the events."""
    rec = d.referral
    if rec is None:
        return {}
    tree = rec.tree or {}
    nodes = [n for n in tree.get("inviters") or [] if isinstance(n, dict)]
    program = tree.get("program") or rec.program
    most = int(program.get("max_rewards_per_inviter") or 0) if program else 0
    paid = [int(n.get("rewards_paid") or 0) for n in nodes]
    events = Counter(ev.state for ev in d.referral_events)
    return {
        "program": rec.program,
        "inviters_with_a_link": len({a.viewer_id for a in d.referral_answers
                                     if a.kind == "invite" and a.outcome == "invite"}),
        "invitees_told_accepted": len({a.viewer_id for a in d.referral_answers
                                       if a.kind == "accept" and
                                       a.outcome == "invite_accepted"}),
        "answers": dict(sorted(Counter(f"{a.kind}: {a.outcome}"
                                       for a in d.referral_answers).items())),
        "totals": tree.get("totals"),
        "rewards": dict(sorted(Counter(str(inv.get("reward") or "undecided")
                                       for n in nodes for inv in n.get("invitees") or [])
                               .items())),
        "most_paid_to_one_inviter": max(paid, default=0),
        "inviters_at_the_cap": sum(1 for p in paid if most and p >= most),
        "reward_events": dict(events),
        "events_received": sum(ev.receipts for ev in d.referral_events),
        "read_back_error": rec.error or None,
    }
