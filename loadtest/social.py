"""One generator process's group buyers, voters and askers (docs/protocol.md
sections 16-18).

Owns: who takes part and how (seeded by the viewer's index), the groups as the
process's viewers see them (from `group_update` events, or from `GET
.../group-deals/{id}`), every group answer, checkout and vote with what it was
told, and the group and poll events kept once per seq and content for the
checks (loadtest/checks.py `GROUP_CHECKS`, `POLL_CHECKS`).

- **Group buyers**: the first `group_buy.participants` viewers. A share
  (`start_share`, split exactly over them) start a group when the deal's
  `group_deal` event reaches them (at a random instant within `act_within_s`),
  retrying `deal_full` (units come back as groups expire or holds lapse); the
  others join an open group, the fullest first (then the first to expire), picked
  from the groups their events showed or, for `look_share` of them, from the
  deal's GET; a group that filled or expired meanwhile (`group_full`,
  `group_expired`) sends them to the next. A member learns its group's end from
  its own answer (the member who fills it) or from `group_update` (`complete`
  with `holds`, or `expired`). Members of a complete group check out
  (`checkout_share`) or let the hold lapse; members of an expired group try a
  checkout of their ended hold (`expired_checkout_share`), which must be refused
  `hold_expired`. A viewer sends a start or join only when it is in no group of
  the deal as its events show, so a second membership is the server's doing.
- **Voters** (`poll.voter_share`) vote once at a random instant within
  `vote_within_s` of `poll_open`; some send the same vote again
  (`retry_share`: answered `voted`), some another option (`change_share`: must
  be refused `already_voted`).
- **Askers** (`poll.ask_share`) ask the host a question; **upvoters**
  (`poll.upvote_share`) upvote the first question of another viewer they see.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any, Final

import httpx

from loadtest.actions import RETRYABLE, Actions
from loadtest.model import GroupAnswer, GroupCheckout, OrderAck, SocialEvent, VoteRecord
from loadtest.scenario import share_split
from loadtest.viewer import Viewer

GROUP_EVENTS: Final = frozenset({"group_deal", "group_update"})
POLL_EVENTS: Final = frozenset({"poll_open", "poll_votes", "poll_closed"})
QUESTION_EVENTS: Final = frozenset({"question", "question_votes", "question_answered"})
SOCIAL_EVENTS: Final = GROUP_EVENTS | POLL_EVENTS | QUESTION_EVENTS
KEPT_EVENTS: Final = GROUP_EVENTS | POLL_EVENTS  # recorded for the checks
MOVE_ON: Final = frozenset({"group_full", "group_expired", "group_not_found"})
END_WAIT_EXTRA_S = 30.0  # a member waits its group's fill_s plus this for its end
TRANSIENT_TRIES = 5  # a vote, checkout or group request retried on a transient error
DEADLINE_MARGIN_MS = 300  # a joiner skips a group this close to its deadline


class Social:
    """The group buyers, voters and askers of one generator process."""

    def __init__(self, actions: Actions, viewers: dict[int, Viewer], base_url: str,
                 room_id: str) -> None:
        self.actions = actions
        self.viewers = viewers
        self.base_url = base_url
        self.room_id = room_id
        scn = actions.scn
        self.g, self.p = scn.group_buy, scn.poll
        self.rngs: dict[int, random.Random] = {}
        self.starters: set[int] = set()
        self.participants: set[int] = set()
        self.lookers: set[int] = set()
        self.voters: dict[int, str] = {}  # index -> "once", "retry" or "change"
        self.askers: set[int] = set()
        self.upvoters: set[int] = set()
        for i in actions.plan.indices:
            rng = random.Random(scn.run.seed * 1_000_037 + i)
            self.rngs[i] = rng
            if self.g.enabled and i < self.g.participants:
                self.participants.add(i)
                if share_split(i, self.g.start_share):
                    self.starters.add(i)
                elif rng.random() < self.g.look_share:
                    self.lookers.add(i)
            if self.p.enabled:
                if rng.random() < self.p.voter_share:
                    r = rng.random()
                    self.voters[i] = ("change" if r < self.p.change_share else
                                      "retry" if r < self.p.change_share + self.p.retry_share
                                      else "once")
                if rng.random() < self.p.ask_share:
                    self.askers.add(i)
                elif rng.random() < self.p.upvote_share:
                    self.upvoters.add(i)
        self.deals_seen: set[tuple[int, str]] = set()
        self.polls_seen: set[tuple[int, str]] = set()
        self.upvoted: set[int] = set()
        self.asked = False
        # The groups as the process's viewers saw them: group id -> (seq, group)
        self.groups: dict[str, tuple[int, dict[str, Any]]] = {}
        # (viewer index, group id) -> ("complete" | "expired", hold id, event ts)
        self.ends: dict[tuple[int, str], tuple[str, str, int]] = {}
        self.end_signals: dict[tuple[int, str], asyncio.Event] = {}
        self.events: dict[int, list[SocialEvent]] = {}
        self.http: httpx.AsyncClient | None = None

    # ------------------------------------------------------------ events

    def on_event(self, viewer: Viewer, kind: str, msg: dict[str, Any]) -> None:
        """An event the viewer applied in seq order (or its snapshot)."""
        if kind == "snapshot":
            for poll in msg.get("polls") or []:
                if isinstance(poll, dict):
                    self._poll_seen(viewer, poll)
            return
        if kind in KEPT_EVENTS:
            self._record(kind, msg)
        if kind == "group_deal":
            deal = msg.get("deal")
            if isinstance(deal, dict):
                self._deal_seen(viewer, deal)
        elif kind == "group_update":
            self._group_update(viewer, msg)
        elif kind == "poll_open":
            poll = msg.get("poll")
            if isinstance(poll, dict):
                self._poll_seen(viewer, poll)
        elif kind == "question":
            self._question_seen(viewer, msg.get("question"))

    def _record(self, kind: str, msg: dict[str, Any]) -> None:
        seq = int(msg["seq"])
        variants = self.events.setdefault(seq, [])
        for ev in variants:
            if ev.data == msg:
                ev.receipts += 1
                return
        variants.append(SocialEvent(seq=seq, kind=kind, data=dict(msg)))

    def _group_update(self, viewer: Viewer, msg: dict[str, Any]) -> None:
        group = msg.get("group")
        if not isinstance(group, dict) or not group.get("group_id"):
            return
        gid, seq = str(group["group_id"]), int(msg["seq"])
        known = self.groups.get(gid)
        state = str(group.get("state"))
        # An event shows the group as it was read after its step; a later one may
        # carry an earlier read, and an ended group (complete, expired) never reopens.
        if known is None or (known[0] < seq and known[1].get("state") == "open"):
            self.groups[gid] = (seq, group)
        holds = msg.get("holds")
        if state in ("complete", "expired") and isinstance(holds, dict):
            mine = holds.get(viewer.rec.viewer_id)
            if mine:
                self._ended(viewer.index, gid, state, str(mine), int(msg.get("ts") or 0))

    def _ended(self, index: int, gid: str, state: str, hold_id: str, ts: int) -> None:
        self.ends.setdefault((index, gid), (state, hold_id, ts))
        self._signal(index, gid).set()

    def _signal(self, index: int, gid: str) -> asyncio.Event:
        sig = self.end_signals.get((index, gid))
        if sig is None:
            sig = self.end_signals[(index, gid)] = asyncio.Event()
        return sig

    def _deal_seen(self, viewer: Viewer, deal: dict[str, Any]) -> None:
        i = viewer.index
        did = str(deal.get("deal_id", ""))
        if i not in self.participants or deal.get("state") != "open" \
                or (i, did) in self.deals_seen or self.actions.finishing:
            return
        self.deals_seen.add((i, did))
        self.actions.spawn(self._take_part(viewer, deal))

    def _poll_seen(self, viewer: Viewer, poll: dict[str, Any]) -> None:
        i = viewer.index
        pid = str(poll.get("poll_id", ""))
        if poll.get("state") != "open" or (i, pid) in self.polls_seen or self.actions.finishing:
            return
        self.polls_seen.add((i, pid))
        if i in self.voters:
            self.actions.spawn(self._vote_flow(viewer, poll))
        if i in self.askers:
            self.actions.spawn(self._ask(viewer))

    def _question_seen(self, viewer: Viewer, question: Any) -> None:
        i = viewer.index
        if not isinstance(question, dict) or i not in self.upvoters or i in self.upvoted \
                or question.get("viewer_id") == viewer.rec.viewer_id or self.actions.finishing:
            return
        self.upvoted.add(i)
        self.actions.spawn(self._upvote(viewer, str(question.get("question_id"))))

    # ------------------------------------------------------------ group buyers

    async def _take_part(self, viewer: Viewer, deal: dict[str, Any]) -> None:
        g, rng = self.g, self.rngs[viewer.index]
        did = str(deal["deal_id"])
        await asyncio.sleep(rng.uniform(0.0, g.act_within_s))
        starter = viewer.index in self.starters
        for _ in range(g.tries):
            if self.actions.finishing:
                return
            if starter:
                answer = await self._group_request(viewer, did, "start", "")
                if answer.outcome in ("open", "complete"):
                    await self._member(viewer, deal, answer)
                    return
                if answer.outcome != "deal_full":
                    return
                await asyncio.sleep(g.retry_interval_s)
                continue
            gid = await self._pick(viewer, did)
            if gid is None:
                await asyncio.sleep(g.retry_interval_s)
                continue
            answer = await self._group_request(viewer, did, "join", gid)
            if answer.outcome in ("open", "complete"):
                await self._member(viewer, deal, answer)
                return
            if answer.outcome not in MOVE_ON:
                return
        self.actions.count("group", "gave_up")

    async def _pick(self, viewer: Viewer, deal_id: str) -> str | None:
        """An open group with a seat: the fullest, then the first to expire."""
        if viewer.index in self.lookers:
            groups = await self._look(deal_id)
        else:
            groups = [g for _, g in self.groups.values() if g.get("deal_id") == deal_id]
        soon = self.actions.server_now() + DEADLINE_MARGIN_MS
        open_ = [g for g in groups if g.get("state") == "open"
                 and int(g.get("seats_left") or 0) > 0 and int(g.get("deadline") or 0) > soon]
        if not open_:
            return None
        open_.sort(key=lambda g: (-int(g.get("members") or 0), int(g.get("deadline") or 0)))
        return str(open_[0]["group_id"])

    async def _look(self, deal_id: str) -> list[dict[str, Any]]:
        if self.http is None:
            self.http = httpx.AsyncClient(base_url=self.base_url, timeout=10.0)
        try:
            r = await self.http.get(f"/api/rooms/{self.room_id}/group-deals/{deal_id}")
        except httpx.HTTPError as exc:
            self.actions.count("group_look", type(exc).__name__)
            return []
        self.actions.count("group_look", str(r.status_code))
        if r.status_code != 200:
            return []
        groups = r.json().get("groups") or []
        return [g for g in groups if isinstance(g, dict)]

    async def _group_request(self, viewer: Viewer, deal_id: str, kind: str,
                             group_id: str) -> GroupAnswer:
        fields = {"deal_id": deal_id} if kind == "start" else {"group_id": group_id}
        rid = viewer.next_id(f"g{kind}")
        sent_seq = viewer.last or 0
        reply: dict[str, Any] = {}
        for _ in range(TRANSIENT_TRIES):
            reply = await viewer.request(f"{kind}_group", fields, request_id=rid)
            if reply.get("code") not in RETRYABLE or self.actions.finishing:
                break
            await asyncio.sleep(0.2)
        ok = reply.get("type") == "group"
        raw = reply.get("hold")
        hold: dict[str, Any] = raw if isinstance(raw, dict) else {}
        answer = GroupAnswer(
            viewer_id=viewer.rec.viewer_id, deal_id=deal_id, kind=kind, request_id=rid,
            group_id=str(reply.get("group_id") or group_id),
            outcome=str(reply.get("state") if ok else reply.get("code")),
            hold_id=str(hold.get("id") or ""), members=int(reply.get("members") or 0),
            size=int(reply.get("size") or 0), sent_seq=sent_seq,
            reply={k: v for k, v in reply.items() if k not in ("type", "re")})
        self.actions.result.group_answers.append(answer)
        self.actions.count(f"{kind}_group", answer.outcome)
        return answer

    async def _member(self, viewer: Viewer, deal: dict[str, Any], answer: GroupAnswer) -> None:
        """In a group: wait for its end, then check out (or let lapse) a complete
        group's hold, or try an expired one's."""
        key = (viewer.index, answer.group_id)
        if answer.outcome == "complete":
            self._ended(viewer.index, answer.group_id, "complete", answer.hold_id,
                        int(self.actions.server_now()))
        else:
            try:
                await asyncio.wait_for(self._signal(*key).wait(),
                                       self.g.fill_s + END_WAIT_EXTRA_S)
            except TimeoutError:
                self.actions.count("group", "end_not_seen")
                return
        state, hold_id, ts = self.ends[key]
        hold_id = hold_id or answer.hold_id
        rng = self.rngs[viewer.index]
        if state == "complete":
            hold = answer.reply.get("hold") if answer.outcome == "complete" else None
            expires = int(hold["expires_at"]) if isinstance(hold, dict) \
                and hold.get("expires_at") else ts + int(self.actions.scn.sale.hold_seconds
                                                         * 1000)
            self.actions.hold(viewer, {
                "id": hold_id, "sale_id": answer.deal_id, "product_id": deal["product_id"],
                "quantity": 1, "created_at": ts, "expires_at": expires})
            if rng.random() < self.g.checkout_share:
                await asyncio.sleep(rng.expovariate(1.0 / self.g.think_s)
                                    if self.g.think_s else 0.0)
                await self._checkout(viewer, answer.group_id, hold_id, state)
            else:
                self.actions.count("group_hold", "left_to_lapse")
                self.actions.result.abandoned_to_expire += 1
        elif rng.random() < self.g.expired_checkout_share:
            await self._checkout(viewer, answer.group_id, hold_id, state)

    async def _checkout(self, viewer: Viewer, group_id: str, hold_id: str, state: str) -> None:
        reply: dict[str, Any] = {}
        for _ in range(TRANSIENT_TRIES):
            reply = await viewer.request("checkout", {"hold_id": hold_id})
            if reply.get("code") not in RETRYABLE or self.actions.finishing:
                break
            await asyncio.sleep(0.2)
        outcome = str(reply.get("type") if reply.get("type") == "order_placed"
                      else reply.get("code"))
        self.actions.count(f"group_checkout_{state}", outcome)
        self.actions.result.group_checkouts.append(GroupCheckout(
            viewer.rec.viewer_id, group_id, hold_id, state, outcome))
        if outcome == "order_placed":
            order = reply["order"]
            self.actions.result.acks.append(OrderAck(
                order_id=order["order_id"], hold_id=order["hold_id"],
                viewer_id=viewer.rec.viewer_id, quantity=int(order["quantity"]),
                coupon_id=order.get("coupon_id") or ""))

    # ------------------------------------------------------------ voters and askers

    async def _vote_flow(self, viewer: Viewer, poll: dict[str, Any]) -> None:
        rng = self.rngs[viewer.index]
        options = len(poll.get("options") or [])
        if options < 2:
            return
        await asyncio.sleep(rng.uniform(0.0, self.p.vote_within_s))
        option = rng.randrange(options)
        pid = str(poll["poll_id"])
        first = await self._vote(viewer, pid, "first", option)
        if first.outcome != "voted" or self.actions.finishing:
            return
        role = self.voters[viewer.index]
        if role == "retry":
            await self._vote(viewer, pid, "retry", option)
        elif role == "change":
            other = (option + rng.randrange(1, options)) % options
            await self._vote(viewer, pid, "change", other)

    async def _vote(self, viewer: Viewer, poll_id: str, kind: str, option: int) -> VoteRecord:
        rid = viewer.next_id("vote")
        sent = self.actions.server_now()
        reply: dict[str, Any] = {}
        for _ in range(TRANSIENT_TRIES):
            # The same request id again: a retry of one vote, never a second one.
            reply = await viewer.request("vote", {"poll_id": poll_id, "option": option},
                                         request_id=rid)
            if reply.get("code") not in RETRYABLE or self.actions.finishing:
                break
            await asyncio.sleep(0.2)
        voted = reply.get("type") == "voted"
        raw = reply.get("details")
        details: dict[str, Any] = raw if isinstance(raw, dict) else {}
        answered = reply.get("option") if voted else details.get("option")
        record = VoteRecord(
            viewer_id=viewer.rec.viewer_id, poll_id=poll_id, kind=kind, option=option,
            outcome="voted" if voted else str(reply.get("code")),
            answered_option=int(answered) if isinstance(answered, int) else None,
            sent_at=sent)
        self.actions.result.votes.append(record)
        self.actions.count(f"vote_{kind}", record.outcome)
        return record

    async def _ask(self, viewer: Viewer) -> None:
        await asyncio.sleep(self.rngs[viewer.index].uniform(0.0, self.p.vote_within_s))
        reply = await viewer.request("ask", {"text": f"Does it come in blue? ({viewer.index})"})
        self.actions.count("ask", str(reply.get("code") or reply.get("type")))

    async def _upvote(self, viewer: Viewer, question_id: str) -> None:
        await asyncio.sleep(self.rngs[viewer.index].uniform(0.0, 1.0))
        reply = await viewer.request("upvote", {"question_id": question_id})
        self.actions.count("upvote", str(reply.get("code") or reply.get("type")))

    # ------------------------------------------------------------ reporting

    def collected(self) -> list[SocialEvent]:
        return [ev for seq in sorted(self.events) for ev in self.events[seq]]

    async def close(self) -> None:
        if self.http is not None:
            await self.http.aclose()
            self.http = None
