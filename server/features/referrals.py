"""Referral invites (docs/protocol.md section 20): a viewer's signed invite
link, an invitee accepting it (the first inviter counts; never oneself, nor a
guest on the inviter's network address), the reward an invitee's first order
in the show pays the inviter (points or a coupon reserved for them, at most the
program's number per inviter: lua/referral_reward.lua decides), and the host's
referral tree.

The store is the record: a referral is written before the invitee hears
"accepted", a reward decision before the reward is given (when the write
fails, Redis takes the decision back). Redis holds the referrals and decisions
the reward script needs; a rebuild puts them back from the store."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from server.core import events
from server.core.domain import now_ms
from server.core.errors import refusal
from server.core.identity import Viewer
from server.core.protocol import AcceptInvite, Invite
from server.core.referral_terms import (
    PROGRAM_SHAPE,
    InviteSigner,
    Program,
    parse_program,
    program_from_stored,
)
from server.core.views import coupon_view
from server.features.context import Answer, Context
from server.features.fans import Fans
from server.features.registry import Call, Registry, Route, ViewerCall
from server.state.store import Order, StoreClosed, StoreError

log = logging.getLogger("livesell.referrals")

MAX_PENDING_INVITES = 10_000  # (room, inviter) counts kept before a flush is forced

class Referrals:
    def __init__(self, ctx: Context, fans: Fans) -> None:
        self.ctx = ctx
        self.fans = fans
        self._signer: InviteSigner | None = None
        # (room, inviter) -> (nickname, links asked for, first ask) not written yet.
        self._sent: dict[tuple[str, str], tuple[str, int, int]] = {}
        self._flushing: asyncio.Task[None] | None = None

    @property
    def signer(self) -> InviteSigner:
        if self._signer is None:
            self._signer = InviteSigner(self.ctx.secret)
        return self._signer

    def register(self, registry: Registry) -> None:
        registry.route(Route("PUT", "/referrals", self._set_program, body=PROGRAM_SHAPE,
                             record_as="referrals"))
        registry.route(Route("GET", "/referrals", self._tree, needs_whole=False))
        registry.message(Invite, self._invite)
        registry.message(AcceptInvite, self._accept)
        registry.on_restore(self.restore)
        registry.on_upkeep(self.flush_invites)
        self.ctx.order_listeners.append(self._ordered)
        self.ctx.cancel_listeners.append(self._cancelled)

    # ------------------------------------------------------------------ host

    async def _set_program(self, call: Call) -> Any:
        program = parse_program(call.body)
        await self.ctx.store.set_referral_program(call.room_id, program.public())
        await self.ctx.data.referrals.set_program(call.room_id, program.public())
        return program.public()

    async def program(self, room_id: str) -> Program | None:
        stored = await self.ctx.data.referrals.program(room_id)
        return program_from_stored(stored) if stored is not None else None

    async def _tree(self, call: Call) -> Any:
        await self.flush_invites()
        stored = await self.ctx.store.referral_program(call.room_id)
        return tree(stored, await self.ctx.store.referral_tree(call.room_id))

    # ------------------------------------------------------------------ viewers

    async def _invite(self, call: ViewerCall, msg: Invite) -> Answer:
        await self.ctx.ensure_whole(call.room_id)
        token = self.signer.issue(call.room_id, call.viewer.viewer_id, call.viewer.nickname,
                                  call.client)
        # Counted here and written once a second (flush_invites): a viewer asking for
        # links as fast as the frame limit lets them costs no store write each.
        key = (call.room_id, call.viewer.viewer_id)
        known = self._sent.get(key)
        self._sent[key] = (call.viewer.nickname, (known[1] if known else 0) + 1,
                           known[2] if known else now_ms())
        if len(self._sent) >= MAX_PENDING_INVITES and \
                (self._flushing is None or self._flushing.done()):
            # Written at once, but not in this viewer's request.
            self._flushing = asyncio.create_task(self._flush_quietly(), name="invites")
        return Answer("invite", {"invite": token, "path": f"/r/{call.room_id}?invite={token}"})

    async def _accept(self, call: ViewerCall, msg: AcceptInvite) -> Answer:
        await self.ctx.ensure_whole(call.room_id)
        invitation = self.signer.verify(msg.invite)
        if invitation is None or invitation.room_id != call.room_id:
            raise refusal("invite_invalid")
        viewer = call.viewer
        # An invitee already recorded answers from Redis: a repeated accept costs no
        # store write.
        known = await self.ctx.data.referrals.inviter_of(call.room_id, viewer.viewer_id)
        if known is not None:
            if known != invitation.inviter:
                raise refusal("already_invited")
            return Answer("invite_accepted", {"inviter": invitation.nickname})
        if invitation.inviter == viewer.viewer_id or (
                not viewer.verified
                and invitation.address_tag == self.signer.address_tag(call.client)):
            raise refusal("self_invite")
        inviter = await self.ctx.store.add_referral(
            call.room_id, viewer.viewer_id, invitation.inviter, invitation.nickname,
            viewer.nickname, now_ms())
        if inviter != invitation.inviter:
            raise refusal("already_invited")
        await self.ctx.data.referrals.set_inviter(call.room_id, viewer.viewer_id, inviter)
        # Someone who bought before accepting is no new customer: their first order
        # came before the link, so it pays nothing (decided now, once).
        earlier = await self.ctx.store.first_order_of(call.room_id, viewer.viewer_id)
        if earlier is not None:
            await self._decide(earlier, None)
        # A share that brought a join: the inviter's points, once per invitee.
        self.fans.award_later(call.room_id, Viewer(inviter, invitation.nickname, 0), "share",
                              f"share:{call.room_id}:{viewer.viewer_id}",
                              self.ctx.settings.fans.share_points)
        return Answer("invite_accepted", {"inviter": invitation.nickname})

    # ------------------------------------------------------------------ rewards

    async def _ordered(self, order: Order) -> None:
        """The invitee's first order in the show decides the inviter's reward."""
        await self._decide(order, await self.program(order.room_id))

    async def _decide(self, order: Order, program: Program | None) -> None:
        """Decide (once per invitee) what `order`, the invitee's first, pays the
        inviter under `program` (None: nothing)."""
        most = program.max_rewards_per_inviter if program is not None else 0
        decided = await self.ctx.scripts.referral_reward(
            order.room_id, mode="decide", invitee=order.buyer_id, order_id=order.order_id,
            most=most)
        if decided[0] not in ("paid", "capped", "none"):
            return  # not invited, decided by an earlier order, or being rebuilt
        state, inviter = decided[0], decided[1]
        now = now_ms()
        reward: dict[str, Any] = {}
        drop = None
        if state == "paid" and program is not None:
            if program.kind == "points":
                reward = {"kind": "points", "points": program.points}
            else:
                drop = program.coupon_for(inviter, now)
                # Claimed for the inviter as it is made: none of it is left for anyone.
                reward = {"kind": "coupon", "coupon": coupon_view(drop.public() | {"claimed": 1})}
        try:
            recorded = await self.ctx.store.add_referral_reward(
                order.room_id, order.buyer_id, inviter, order.order_id, state, reward, now,
                drop.public() if drop is not None else None)
        except Exception:
            await self.ctx.scripts.referral_reward(order.room_id, mode="undo",
                                                   invitee=order.buyer_id,
                                                   order_id=order.order_id, most=most)
            raise
        if not recorded or state != "paid":
            return
        nickname = await self._inviter_nickname(order.room_id, order.buyer_id, inviter)
        if drop is not None:
            await self.ctx.data.offers.load_coupon(order.room_id, drop, claimed=1, uses={})
        else:
            await self.fans.award(order.room_id, Viewer(inviter, nickname, 0), "referral",
                                  f"referral:{order.room_id}:{order.buyer_id}",
                                  program.points if program else 0, capped=False)
        await self.ctx.publish(order.room_id,
                               events.referral_reward(inviter, nickname, "paid", reward))

    async def _cancelled(self, order: Order) -> None:
        """The invitee's rewarded order was cancelled: the reward is taken back (the
        store first, then Redis's count), points taken back, an unused coupon
        withdrawn (it expires now; a coupon already spent stays spent)."""
        reversed_ = await self.ctx.store.reverse_referral_reward(order.room_id,
                                                                 order.buyer_id,
                                                                 order.order_id)
        if reversed_ is None:
            return
        await self.ctx.scripts.referral_reward(order.room_id, mode="reverse",
                                               invitee=order.buyer_id,
                                               order_id=order.order_id, most=0)
        inviter, reward = reversed_["inviter"], reversed_["reward"]
        if reward.get("kind") == "points":
            await self.fans.take_back(order.room_id,
                                      f"referral:{order.room_id}:{order.buyer_id}",
                                      f"referral-reversal:{order.room_id}:{order.buyer_id}")
        elif reward.get("kind") == "coupon":
            await self.ctx.data.offers.expire_coupon(order.room_id,
                                                     reward["coupon"]["coupon_id"], now_ms())
        nickname = await self._inviter_nickname(order.room_id, order.buyer_id, inviter)
        await self.ctx.publish(order.room_id,
                               events.referral_reward(inviter, nickname, "reversed", reward))

    async def _inviter_nickname(self, room_id: str, invitee: str, inviter: str) -> str:
        return await self.ctx.store.inviter_nickname(room_id, invitee) or inviter

    async def flush_invites(self) -> None:
        """Write the invite links counted here since the last flush (upkeep, once a
        second; and before the host reads the tree)."""
        taken, self._sent = self._sent, {}
        items = list(taken.items())
        # All at once: the store's group commit writes them in one transaction or few.
        results = await asyncio.gather(
            *(self.ctx.store.add_invite_sent(room_id, inviter, nickname, first_at, count)
              for (room_id, inviter), (nickname, count, first_at) in items),
            return_exceptions=True)
        failed: BaseException | None = None
        for (key, (nick, n, at)), result in zip(items, results, strict=True):
            if isinstance(result, BaseException):
                # The store stalled: keep what is not written for the next flush.
                failed = failed or result
                known = self._sent.get(key)
                self._sent[key] = (nick, n + (known[1] if known else 0),
                                   min(at, known[2]) if known else at)
        if failed is not None:
            raise failed

    async def _flush_quietly(self) -> None:
        """A flush nobody waits for (too many counts, or shutdown): a store that
        refuses keeps them for the next one, logged."""
        try:
            await self.flush_invites()
        except (StoreError, StoreClosed) as exc:
            log.warning("invite counts wait for the store: %s", exc)

    async def stop(self) -> None:
        """At shutdown, before the store closes: what is counted is written."""
        if self._flushing is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._flushing
        await self._flush_quietly()

    async def restore(self, room_id: str) -> None:
        """Put the room's program, referrals and reward decisions back into Redis."""
        stored = await self.ctx.store.referral_program(room_id)
        if stored is not None:
            await self.ctx.data.referrals.set_program(room_id, stored)
        rows = await self.ctx.store.referral_tree(room_id)
        await self.ctx.data.referrals.restore(
            room_id, [(r["invitee"], r["inviter"]) for r in rows["referrals"]],
            [(r["invitee"], f"{r['state']}:{r['order_id']}", r["inviter"])
             for r in rows["rewards"]])


def tree(program: dict[str, Any] | None, rows: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """The host's referral tree: each inviter with their invitees and what their
    first orders paid, and the totals."""
    rewards = {r["invitee"]: r for r in rows["rewards"]}
    inviters: dict[str, dict[str, Any]] = {}

    def inviter(viewer_id: str, nickname: str) -> dict[str, Any]:
        return inviters.setdefault(viewer_id, {
            "viewer_id": viewer_id, "nickname": nickname, "invites_sent": 0, "joins": 0,
            "first_orders": 0, "rewards_paid": 0, "invitees": []})

    for row in rows["invites"]:
        inviter(row["inviter"], row["nickname"])["invites_sent"] = int(row["sent"])
    for row in rows["referrals"]:
        node = inviter(row["inviter"], row["inviter_nickname"])
        node["joins"] += 1
        decision = rewards.get(row["invitee"])
        if decision is not None:
            node["first_orders"] += 1
            node["rewards_paid"] += decision["state"] == "paid"
        node["invitees"].append({
            "viewer_id": row["invitee"], "nickname": row["nickname"],
            "joined_at": row["joined_at"],
            "order_id": decision["order_id"] if decision else None,
            "reward": decision["state"] if decision else None})
    nodes = list(inviters.values())
    return {"program": program,
            "totals": {"inviters": len(nodes),
                       "invites_sent": sum(n["invites_sent"] for n in nodes),
                       "joins": sum(n["joins"] for n in nodes),
                       "first_orders": sum(n["first_orders"] for n in nodes),
                       "rewards_paid": sum(n["rewards_paid"] for n in nodes),
                       "rewards_reversed": sum(1 for r in rows["rewards"]
                                               if r["state"] == "reversed")},
            "inviters": nodes}
