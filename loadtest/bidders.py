"""One generator process's bidders in an auction (docs/protocol.md section 15).

Owns: the auction as each viewer sees it (built from `auction_started`,
`auction_bid`, `auction_ended` and snapshots, applied in seq order by the
viewer), who bids and how (seeded by the viewer's index: the first
`auction.bidders` viewers of the crowd bid; a share of them snipe, a share of
the rest send proxy bids), when each bid goes out, the winner paying for the
unit, and every auction event kept once per seq and content for the checks.

- Plain bidders bid `min_next` as their view shows it, at exponential intervals
  (mean `auction.bid_interval_s`), up to `auction.max_bids` bids, until
  `auction.snipe_window_s` before the auction's first end (the last second is
  the snipers'); a leader does not bid against itself.
- Proxy bidders bid `min_next` with a `max_amount` some steps higher; leading,
  they sometimes raise their maximum (`max_raised`).
- Snipers wait for the end: each shot goes out at a random instant between
  `auction.snipe_window_s` before `ends_at` as the sniper sees it and
  `auction.snipe_late_s` after it (a shot after the end must be refused:
  `auction_ended`). An extension seen before the last `snipe_window_s` moves
  the aim to the new end; inside it the sniper is committed, so the snipes
  land as one burst even while they extend the end (in `extend` mode each
  burst moves the end once more, and a sniper has `auction.snipes` shots, so
  the extensions are bounded).

The requests and their records are loadtest/actions.py's (`Actions.bid`,
`Actions.checkout`); the crowd (loadtest/crowd.py) hands this class the events.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from typing import Any, Final

from loadtest.actions import Actions
from loadtest.model import AuctionEvent
from loadtest.viewer import Viewer, now_ms
from server.core.auction_terms import hold_sale_id

AUCTION_EVENTS: Final = frozenset({"auction_started", "auction_bid", "auction_ended",
                                   "auction_cancelled", "auction_second_chance"})
RECEIVERS_KEPT = 3  # viewer ids kept per event content (the rest are counted)
AIM_TICK_S = 0.25  # a sniper looks at the end in force this often while it waits
MAX_AIM_TICKS = 400_000  # a sniper's wait is bounded (over a day at AIM_TICK_S)
RAISE_SHARE = 0.3  # a leading proxy bidder's turns that raise its maximum


@dataclass(slots=True)
class AuctionView:
    """An auction as one viewer knows it from the events it applied."""

    auction_id: str
    product_id: str
    state: str
    ends_at: int
    first_end: int  # the end before any extension (the first end this viewer saw)
    amount: int | None
    min_next: int
    leader: str | None
    bids: int
    increments: tuple[tuple[int, int], ...]

    def step(self, amount: int) -> int:
        """The step of the band `amount` is in (the increment table's)."""
        step = 0
        for lo, band_step in self.increments:
            if amount >= lo:
                step = band_step
        if step:
            return step
        return max(1, self.min_next - self.amount) if self.amount else 100


def _increments(auction: dict[str, Any]) -> tuple[tuple[int, int], ...]:
    bands = auction.get("increments") or []
    return tuple((int(b["from"]), int(b["step"])) for b in bands if isinstance(b, dict))


class Bidders:
    """The bidders of one generator process and what they were told."""

    def __init__(self, actions: Actions, viewers: dict[int, Viewer]) -> None:
        self.actions = actions
        self.viewers = viewers
        self.spec = actions.scn.auction
        self.roles: dict[int, str] = {}  # viewer index -> "plain", "proxy" or "sniper"
        self.rngs: dict[int, random.Random] = {}
        seed = actions.scn.run.seed
        if self.spec.enabled:
            for i in actions.plan.indices:
                if i >= self.spec.bidders:
                    continue
                rng = random.Random(seed * 1_000_033 + i)
                self.rngs[i] = rng
                if rng.random() < self.spec.snipe_share:
                    self.roles[i] = "sniper"
                else:
                    self.roles[i] = "proxy" if rng.random() < self.spec.proxy_share \
                        else "plain"
        self.views: dict[int, dict[str, AuctionView]] = {}
        self.pseudonyms: dict[tuple[int, str], str] = {}  # (viewer, auction) -> pseudonym
        self.maxima: dict[tuple[int, str], int] = {}  # the viewer's own maximum
        self.bidding: set[tuple[int, str]] = set()  # bid loops started
        self.paid: set[str] = set()  # hold ids of won auctions taken to checkout
        self.events: dict[int, list[AuctionEvent]] = {}

    # ------------------------------------------------------------ events

    def on_event(self, viewer: Viewer, kind: str, msg: dict[str, Any]) -> None:
        """An event the viewer applied in seq order (or its snapshot)."""
        if kind == "snapshot":
            for auction in msg.get("auctions") or []:
                if isinstance(auction, dict):
                    self._apply(viewer, auction)
            return
        if kind not in AUCTION_EVENTS:
            return
        self._record(viewer, kind, msg)
        if kind == "auction_bid":
            self._apply_bid(viewer, msg)
            return
        auction = msg.get("auction")
        if isinstance(auction, dict):
            self._apply(viewer, auction)
            if kind == "auction_ended":
                self._pay(viewer, auction)

    def _record(self, viewer: Viewer, kind: str, msg: dict[str, Any]) -> None:
        seq = int(msg["seq"])
        variants = self.events.setdefault(seq, [])
        for ev in variants:
            if ev.data == msg:
                ev.receipts += 1
                if len(ev.viewers) < RECEIVERS_KEPT:
                    ev.viewers.append(viewer.rec.viewer_id)
                return
        auction = msg.get("auction")
        aid = msg.get("auction_id") or (auction.get("auction_id")
                                        if isinstance(auction, dict) else "")
        variants.append(AuctionEvent(seq=seq, kind=kind, auction_id=str(aid or ""),
                                     data=dict(msg), viewers=[viewer.rec.viewer_id]))

    def _apply(self, viewer: Viewer, auction: dict[str, Any]) -> None:
        aid = str(auction["auction_id"])
        views = self.views.setdefault(viewer.index, {})
        amount = auction.get("amount")
        known = views.get(aid)
        first = auction.get("first_ends_at") or (known.first_end if known is not None
                                                 else auction["ends_at"])
        views[aid] = AuctionView(
            auction_id=aid, product_id=str(auction.get("product_id", "")),
            state=str(auction.get("state", "open")), ends_at=int(auction["ends_at"]),
            first_end=int(first), amount=int(amount) if amount is not None else None,
            min_next=int(auction["min_next"]), leader=auction.get("leader"),
            bids=int(auction.get("bids", 0)), increments=_increments(auction))
        if views[aid].state == "open":
            self._start(viewer, aid)

    def _apply_bid(self, viewer: Viewer, msg: dict[str, Any]) -> None:
        aid = str(msg["auction_id"])
        view = self.views.setdefault(viewer.index, {}).get(aid)
        if view is None:  # joined after the start and before a snapshot listed it
            view = AuctionView(aid, str(msg.get("product_id", "")), "open",
                               int(msg["ends_at"]), int(msg["ends_at"]), None,
                               int(msg["min_next"]), None, 0, ())
            self.views[viewer.index][aid] = view
            self._start(viewer, aid)
        view.amount = int(msg["amount"])
        view.min_next = int(msg["min_next"])
        view.ends_at = int(msg["ends_at"])
        view.leader = msg.get("leader")
        view.bids = int(msg.get("bids", view.bids + 1))

    def _view(self, viewer: Viewer, aid: str) -> AuctionView | None:
        return self.views.get(viewer.index, {}).get(aid)

    def _pay(self, viewer: Viewer, auction: dict[str, Any]) -> None:
        """The winner checks out the hold it won (`auction.winner_pays`)."""
        result = auction.get("result")
        aid = str(auction["auction_id"])
        if not isinstance(result, dict) or not self.spec.winner_pays:
            return
        mine = self.pseudonyms.get((viewer.index, aid))
        hold = result.get("hold")
        if not mine or result.get("winner") != mine or not isinstance(hold, dict) \
                or not hold.get("id") or hold["id"] in self.paid:
            return
        self.paid.add(hold["id"])
        record = self.actions.hold(viewer, {
            "id": hold["id"], "sale_id": hold.get("sale_id") or hold_sale_id(aid),
            "product_id": hold.get("product_id") or auction.get("product_id", ""),
            "quantity": hold.get("quantity", 1),
            "created_at": hold.get("created_at") or result.get("ended_at") or 0,
            "expires_at": hold["expires_at"]})
        self.actions.count("auction", "won")
        self.actions.spawn(self.actions.checkout(viewer, record["id"], None))

    # ------------------------------------------------------------ bidding

    def _start(self, viewer: Viewer, aid: str) -> None:
        role = self.roles.get(viewer.index)
        if role is None or (viewer.index, aid) in self.bidding or self.actions.finishing:
            return
        self.bidding.add((viewer.index, aid))
        if role == "sniper":
            self.actions.spawn(self._snipe(viewer, aid))
        else:
            self.actions.spawn(self._bid_along(viewer, aid, proxy=role == "proxy"))

    def _learn(self, viewer: Viewer, aid: str, reply: dict[str, Any], amount: int) -> None:
        key = (viewer.index, aid)
        if reply.get("type") == "bid_placed":
            if reply.get("pseudonym"):
                self.pseudonyms[key] = str(reply["pseudonym"])
            top = reply.get("max_amount") or reply.get("amount") or amount
            self.maxima[key] = max(self.maxima.get(key, 0), int(top))
            return
        details = reply.get("details")
        view = self._view(viewer, aid)
        if isinstance(details, dict) and view is not None \
                and isinstance(details.get("min_next"), int):
            view.min_next = max(view.min_next, int(details["min_next"]))

    def _done(self, view: AuctionView | None) -> bool:
        """A plain or proxy bidder stops: the auction is over as it sees it, or its
        last seconds (before the first end) have come, which are the snipers'."""
        if view is None or self.actions.finishing or view.state != "open":
            return True
        last = min(view.ends_at, view.first_end - int(self.spec.snipe_window_s * 1000))
        return now_ms() >= self.actions.server_to_local(last)

    async def _bid_along(self, viewer: Viewer, aid: str, proxy: bool) -> None:
        """Bids at min_next (with a maximum, for a proxy bidder) while it is open."""
        spec, rng = self.spec, self.rngs[viewer.index]
        key = (viewer.index, aid)
        for _ in range(spec.max_bids):
            await asyncio.sleep(rng.expovariate(1.0 / spec.bid_interval_s))
            view = self._view(viewer, aid)
            if view is None or self._done(view):
                return
            amount = view.min_next
            mine = self.pseudonyms.get(key)
            if mine is not None and view.leader == mine:
                if not proxy or rng.random() >= RAISE_SHARE:
                    continue  # leading: no bid against itself
                top = self.maxima.get(key, amount)
                reply = await self.actions.bid(
                    viewer, aid, "raise", amount,
                    max(top, amount) + rng.randint(1, spec.proxy_steps) * view.step(top))
            elif proxy:
                reply = await self.actions.bid(
                    viewer, aid, "proxy", amount,
                    amount + rng.randint(1, spec.proxy_steps) * view.step(amount))
            else:
                reply = await self.actions.bid(viewer, aid, "plain", amount)
            self._learn(viewer, aid, reply, amount)
            if reply.get("code") == "auction_ended":
                return

    async def _aim(self, viewer: Viewer, aid: str, lead_s: float) -> bool:
        """Wait until `lead_s` before the end in force as the viewer sees it (a
        negative lead: after it), following extensions until the last
        `snipe_window_s` before that end, and committed to it from then on. False
        when there is nothing to aim at: the auction ended before a shot meant for
        before its end."""
        window_ms = self.spec.snipe_window_s * 1000.0
        committed: int | None = None  # the end aimed at, once inside its window
        for _ in range(MAX_AIM_TICKS):
            view = self._view(viewer, aid)
            if view is None or self.actions.finishing:
                return False
            if view.state != "open" and lead_s >= 0:
                return False
            end = committed if committed is not None else view.ends_at
            end_local = self.actions.server_to_local(end)
            now = now_ms()
            if committed is None:
                # Every sniper that sees this end wakes at the same instant, its
                # window's start, and commits to it there: one burst, not a relay.
                commit_at = end_local - window_ms
                if now < commit_at:
                    await asyncio.sleep(min((commit_at - now) / 1000.0, AIM_TICK_S))
                    continue
                committed = end
            delay = (end_local - lead_s * 1000.0 - now) / 1000.0
            if delay <= 0:
                return True
            await asyncio.sleep(delay)
        return False

    async def _snipe(self, viewer: Viewer, aid: str) -> None:
        """Shots in the last seconds before the end (some just after it)."""
        spec, rng = self.spec, self.rngs[viewer.index]
        for _ in range(spec.snipes):
            lead = rng.uniform(-spec.snipe_late_s, spec.snipe_window_s)
            if not await self._aim(viewer, aid, lead):
                return
            view = self._view(viewer, aid)
            if view is None:
                return
            mine = self.pseudonyms.get((viewer.index, aid))
            if mine is not None and view.leader == mine and view.state == "open":
                continue  # leading already: this shot is not needed
            amount = view.min_next
            reply = await self.actions.bid(viewer, aid, "snipe", amount)
            self._learn(viewer, aid, reply, amount)
            if reply.get("code") == "auction_ended":
                return

    # ------------------------------------------------------------ reporting

    def collected(self) -> list[AuctionEvent]:
        return [ev for seq in sorted(self.events) for ev in self.events[seq]]
