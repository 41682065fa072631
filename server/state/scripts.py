"""The atomic Lua scripts (`lua/`): one typed method per script.

`Scripts` has one method per script: it builds the script's KEYS from
`server/core/keys.py` and its ARGV in one place, in the order the script's
header states, and turns the reply into a typed value. `CONTRACTS` names each
script's KEYS and ARGV; tests/test_scripts.py checks them against every
script's header and every method against its contract, so neither can drift.
Nothing else calls a script by name.

The engine that batches the calls is `Ledger` (server/state/ledger.py);
`Scripts` extends it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal, NamedTuple, TypeVar

from server.core import auction_chain
from server.core.auction_terms import Auction, hold_sale_id
from server.core.domain import listing_id, new_id
from server.core.keys import fan_keys, guest_mints, room_keys
from server.state.ledger import SCRIPT_NAMES, Arg, Ledger

if TYPE_CHECKING:
    from server.state.store import Order

T = TypeVar("T")

__all__ = ["CONTRACTS", "SCRIPT_NAMES", "Ledger", "Scripts"]

# ====================================================================== contracts

# How long a finished hold (checked out, released, expired, voided) stays readable,
# so a late checkout of it gets its clear refusal rather than hold_not_found.
KEEP_FINISHED_HOLD_MS: Final = 7 * 86400 * 1000


@dataclass(frozen=True, slots=True)
class Contract:
    """A script's KEYS and ARGV, in order, as its Lua header states them. `keys` of
    a variadic script (reschedule) are those `Scripts` passes."""

    keys: tuple[str, ...]
    args: tuple[str, ...]


CONTRACTS: Final[dict[str, Contract]] = {
    "publish": Contract(("seq", "log", "epoch", "chat_history"),
                        ("event", "log_size", "channel", "keep", "publish_command")),
    "reserve": Contract(
        ("answer", "product_sale", "sale", "stock", "bought", "hold", "holds", "epoch",
         "policy", "open_holds", "ip_bought", "listing", "listing_bought",
         "listing_ip_bought", "waitlist"),
        ("sale_id", "buyer", "quantity", "hold_id", "hold_ms", "answer_ttl_s", "product_id",
         "verified", "client", "max_open_holds", "listing_id")),
    "release": Contract(
        ("hold", "stock", "sale", "bought", "holds", "confirming", "claims", "epoch",
         "open_holds", "ip_bought"),
        ("hold_id", "mode", "buyer", "keep_ms", "key_prefix", "id_seed", "offer_ms",
         "max_open_holds", "keep_place_ms")),
    "begin_checkout": Contract(
        ("answer", "hold", "holds", "coupon", "claims", "confirming", "epoch", "policy"),
        ("hold_id", "buyer", "coupon_id", "verified")),
    "finish_checkout": Contract(
        ("hold", "stock", "sale", "claims", "answer", "confirming", "open_holds", "holds"),
        ("order_id", "answer", "answer_ttl_s", "keep_ms", "hold_id", "coupon_id")),
    "abort_checkout": Contract(("hold", "holds", "claims", "confirming"), ("hold_id",)),
    "stop_sale": Contract(
        ("sale", "stock", "bought", "holds", "timers", "open_holds", "ip_bought"),
        ("sale_id", "key_prefix", "keep_ms")),
    "claim_coupon": Contract(("answer", "coupon", "claims", "epoch", "policy"),
                             ("viewer", "answer_ttl_s", "coupon_id", "verified")),
    "enter_lottery": Contract(("answer", "lottery", "entrants", "present", "epoch", "policy"),
                              ("viewer", "entry_text", "answer_ttl_s", "lottery_id",
                               "verified")),
    "adjust_stock": Contract(("stock",), ("total",)),
    "close_lottery": Contract(("lottery",), ()),
    "viewers": Contract(("present", "uniq", "peak", "by_minute"), ("minute",)),
    "home": Contract(("epoch",), ("mode", "value", "only_if_absent")),
    "reschedule": Contract(
        ("timers", "holds", "confirming"),
        ("timers_add_ms", "timers_not_before", "holds_add_ms", "holds_not_before",
         "confirming_add_ms", "confirming_not_before")),
    "chat_gate": Contract(("policy", "chat_rate", "slow_mode"), ("room_messages_per_s",)),
    "mint_guest": Contract(("mints",), ("limit", "window_ms", "member")),
    "promote": Contract(("epoch",), ("key_prefix", "product_id", "id_seed", "offer_ms",
                                     "max_open_holds", "keep_place_ms")),
    "join_waitlist": Contract(("waitlist", "ticket", "epoch", "policy", "products", "room"),
                              ("viewer", "product_id", "max_waiting", "verified",
                               "key_prefix")),
    "leave_room": Contract(("present", "gone"), ("viewer", "keep_place_ms")),
    "claim_word": Contract(("claim_words", "listing"), ("product_id", "keyword", "quantities")),
    "start_auction": Contract(
        ("auction", "stock", "hold_sale", "product_auction", "auctions", "timers", "epoch"),
        ("auction_id", "product_id", "terms", "start_price", "increments", "anti_snipe",
         "extend_ms", "ends_at", "reserve", "buy_now", "signed_only", "pay_ms", "salt",
         "genesis", "currency", "started_at", "key_prefix")),
    "bid": Contract(
        ("answer", "auction", "chain", "maxima", "epoch", "policy", "unpaid"),
        ("bidder", "nickname", "amount", "max_amount", "verified", "answer_ttl_s",
         "auction_id")),
    "close_auction": Contract(
        ("auction", "stock", "hold_sale", "bought", "holds", "open_holds", "timers", "epoch",
         "product_auction", "hold"),
        ("auction_id", "mode", "hold_id")),
    "second_chance": Contract(
        ("auction", "hold_sale", "bought", "holds", "open_holds", "epoch", "hold"),
        ("auction_id", "hold_id")),
    "vote": Contract(("poll", "votes", "epoch", "policy"), ("viewer", "option", "verified")),
    "close_poll": Contract(("poll",), ("closed_at",)),
    "ask": Contract(("answer", "questions", "open_questions", "per_viewer", "epoch", "policy"),
                    ("question_id", "question", "viewer", "max_open", "answer_ttl_s",
                     "verified", "max_questions")),
    "upvote": Contract(("questions", "open_questions", "voters", "epoch", "policy"),
                       ("question_id", "viewer", "verified")),
    "answer_question": Contract(("questions", "open_questions", "per_viewer"),
                                ("question_id", "answered_at")),
    "start_group": Contract(
        ("answer", "deal", "stock", "group", "members", "deal_members", "deal_groups", "hold",
         "open_holds", "bought", "timers", "epoch", "policy"),
        ("viewer", "group_id", "hold_id", "verified", "max_open_holds", "answer_ttl_s",
         "product_id", "nickname")),
    "join_group": Contract(
        ("answer", "deal", "group", "members", "deal_members", "deal_groups", "hold",
         "open_holds", "bought", "holds", "timers", "epoch", "policy"),
        ("viewer", "group_id", "hold_id", "verified", "max_open_holds", "answer_ttl_s",
         "product_id", "hold_ms", "key_prefix", "nickname")),
    "expire_group": Contract(
        ("deal", "group", "members", "deal_members", "deal_groups", "stock", "open_holds",
         "bought", "timers"),
        ("group_id", "mode", "key_prefix", "keep_ms")),
    "award": Contract(("points", "award", "minute", "loaded"),
                      ("viewer", "points", "cap", "remember_s")),
    "referral_reward": Contract(("referrals", "decisions", "paid", "epoch"),
                                ("mode", "invitee", "order_id", "most")),
    "cancel_order": Contract(("hold", "stock", "sale", "bought", "ip_bought", "claims",
                              "cancelled", "epoch"),
                             ("change_id", "buyer", "quantity", "coupon_id", "epoch", "now",
                              "mode")),
}

# ====================================================================== replies


class Awarded(NamedTuple):
    """award.lua: 'ok' (given now), 'dup' (given before under the same id) or
    'unloaded' (the channel's points are not loaded into Redis yet)."""

    status: str
    points: int = 0
    total: int = 0


def _awarded(reply: Any) -> Awarded:
    status = str(reply[0])
    if status == "unloaded":
        return Awarded(status)
    return Awarded(status, int(reply[1]), int(reply[2]))


def _strings(reply: Any) -> list[str]:
    return [str(r) for r in reply]

# reserve, claim_coupon, enter_lottery: 'stale' only from reserve (the product's
# sale changed since the caller looked it up).
AnswerStatus = Literal["ok", "dup", "refused", "rebuilding", "stale"]


class Answered(NamedTuple):
    """The outcome of a remembered request (reserve, claim_coupon, enter_lottery)."""

    status: AnswerStatus
    answer: str  # the answer json ('ok', 'dup', 'refused'); '' otherwise


_new_tuple = tuple.__new__


def _answered(reply: list[Any]) -> Answered:
    # tuple.__new__ skips the NamedTuple's Python-level __new__: half the cost, and
    # this runs once per buy.
    return _new_tuple(Answered, (reply[0], reply[1]) if len(reply) > 1 else (reply[0], ""))


ReleaseMode = Literal["expire", "release", "void"]


class WaitlistMove(NamedTuple):
    """A viewer at the head of a waitlist served ('offer', with the hold made for
    them, as json) or taken off it ('dropped', with the reason) (lua/lib/waitlist.lua)."""

    kind: Literal["offer", "dropped"]
    viewer_id: str
    ticket: int
    detail: str  # the hold json ('offer') or the reason ('dropped')


def _moves(flat: list[Any]) -> tuple[WaitlistMove, ...]:
    return tuple(WaitlistMove(flat[i], str(flat[i + 1]), int(flat[i + 2]), str(flat[i + 3]))
                 for i in range(0, len(flat), 4))


class WaitlistTerms(NamedTuple):
    """How a unit goes to the head of a waitlist (settings `sale.waitlist_*`)."""

    offer_ms: int  # the hold's lifetime
    max_open_holds: int  # the room-wide cap on one viewer's open holds
    keep_place_ms: int  # how long a viewer who left keeps their place


class Released(NamedTuple):
    """release.lua: `outcome` is 'done' when units moved back to stock, else
    'not_due', 'missing', 'rebuilding' or the hold's unchanged state. `moves`: the
    units that went on to the product's waitlist in the same step; `more`: that step
    stopped at its bound with more to do (promote.lua finishes it)."""

    outcome: str
    quantity: int
    product_id: str
    state: str  # the hold's state now ('released', 'expired', 'aborted', or unchanged)
    moves: tuple[WaitlistMove, ...] = ()
    more: bool = False


def _released(reply: list[Any]) -> Released:
    if reply[0] == "done":
        return Released("done", int(reply[1]), str(reply[2]), str(reply[3]), _moves(reply[5:]),
                        reply[4] == 1)
    return Released(str(reply[0]), 0, "", str(reply[0]))


class Promoted(NamedTuple):
    """promote.lua: False `ok` while the room is rebuilt; `waiting` after it; `more`
    when it stopped at its bound with more to do (call it again)."""

    ok: bool
    waiting: int
    moves: tuple[WaitlistMove, ...]
    more: bool = False


def _promoted(reply: list[Any]) -> Promoted:
    if reply[0] != "ok":
        return Promoted(False, 0, ())
    return Promoted(True, int(reply[1]), _moves(reply[3:]), reply[2] == 1)


class Waiting(NamedTuple):
    """join_waitlist.lua: 'ok' with the viewer's place, 'refused' with the code
    (`detail`), or 'rebuilding'."""

    status: Literal["ok", "refused", "rebuilding"]
    position: int
    waiting: int
    ticket: int
    detail: str
    available: int = 0  # units a buyer could get now (reserve.lua's rule)


def _waiting(reply: list[Any]) -> Waiting:
    if reply[0] == "ok":
        return Waiting("ok", int(reply[1]), int(reply[2]), int(reply[3]), "", int(reply[4]))
    return Waiting(reply[0], 0, 0, 0, str(reply[1]) if len(reply) > 1 else "")


CheckoutStatus = Literal["ok", "confirming", "confirmed", "dup", "refused", "rebuilding"]


class CheckoutBegun(NamedTuple):
    """begin_checkout.lua. `payload`: the remembered answer ('dup'), the refusal
    code ('refused'), or the hold as json ('ok', 'confirming', 'confirmed')."""

    status: CheckoutStatus
    payload: str
    epoch: str  # the room's epoch the checkout began under ('' unless the hold is there)


def _checkout_begun(reply: list[Any]) -> CheckoutBegun:
    return CheckoutBegun(reply[0], reply[1] if len(reply) > 1 else "",
                         str(reply[2]) if len(reply) > 2 else "")


class CheckoutFinished(NamedTuple):
    """finish_checkout.lua: 'ok', 'already', 'missing' or 'bad_state' (with the state)."""

    status: str
    state: str


def _checkout_finished(reply: list[Any]) -> CheckoutFinished:
    return CheckoutFinished(str(reply[0]), str(reply[1]) if len(reply) > 1 else "")


class SaleStopped(NamedTuple):
    """stop_sale.lua: 'stopped' (with the units and holds voided), 'missing' or 'over'."""

    status: Literal["stopped", "missing", "over"]
    units: int
    voided: list[str]


def _sale_stopped(reply: list[Any]) -> SaleStopped:
    if reply[0] == "stopped":
        return SaleStopped("stopped", int(reply[1]), [str(h) for h in reply[2:]])
    return SaleStopped(reply[0], 0, [])


class StockAdjusted(NamedTuple):
    """adjust_stock.lua: refused when the new total is below the units held or sold."""

    ok: bool
    held_and_sold: int


def _stock_adjusted(reply: list[Any]) -> StockAdjusted:
    if reply[0] == "ok":
        return StockAdjusted(True, int(reply[3]) + int(reply[4]))
    return StockAdjusted(False, int(reply[1]))


class ViewerCounts(NamedTuple):
    now: int
    unique: int
    peak: int


def _viewer_counts(reply: list[Any]) -> ViewerCounts:
    return ViewerCounts(int(reply[0]), int(reply[1]), int(reply[2]))


class ChatGate(NamedTuple):
    """chat_gate.lua: 'ok', 'slow_mode' (wait, and the room's slow mode in s) or 'busy'."""

    status: Literal["ok", "slow_mode", "busy"]
    wait_ms: int
    slow_mode_s: int


def _chat_gate(reply: list[Any]) -> ChatGate:
    return ChatGate(reply[0], int(reply[1]) if len(reply) > 1 else 0,
                    int(reply[2]) if len(reply) > 2 else 0)


class GuestMint(NamedTuple):
    admitted: bool
    wait_ms: int  # until the next mint is admitted (0 when admitted)


def _guest_mint(reply: list[Any]) -> GuestMint:
    return GuestMint(bool(reply[0]), int(reply[1]))


def _due(reply: Any) -> int | None:
    return int(reply) if reply else None


class Home(NamedTuple):
    """home.lua: `state` 'ok', 'kept', 'changed', 'absent', 'home' or 'away'; for
    'away', the node the room's epoch names (`home`, '' for none), the node that
    serves the room now (`here`) and whether that node was ever promoted from
    replica (`promoted`: it may lack writes its old primary acknowledged)."""

    state: str
    home: str = ""
    here: str = ""
    promoted: bool = False
    epoch: str = ""  # for 'home': the room's epoch


def _home(reply: Any) -> Home:
    if reply[0] == "home":
        return Home("home", epoch=str(reply[1]))
    if reply[0] != "away":
        return Home(str(reply[0]))
    return Home("away", str(reply[1]), str(reply[2]), bool(int(reply[3])))


class BidDecided(NamedTuple):
    """bid.lua: 'ok' (accepted, or the leader's maximum raised) and 'outbid' (refused,
    but the leader's proxy bid rose) change the auction and are remembered; 'dup' is
    a remembered answer, 'refused' changed nothing. `event`: the auction_bid event's
    fields as JSON ('' when nothing public changed); `entry`: the new chain entry with
    the bidder's id ('' for none); `max_amount` and `at` for the store."""

    status: Literal["ok", "outbid", "dup", "refused", "rebuilding"]
    answer: str
    event: str
    entry: str
    max_amount: int
    at: int


def _bid_decided(reply: list[Any]) -> BidDecided:
    if reply[0] in ("ok", "outbid"):
        return BidDecided(reply[0], reply[1], reply[2], reply[3], int(reply[4]),
                          int(reply[5]))
    return BidDecided(reply[0], reply[1] if len(reply) > 1 else "", "", "", 0, 0)


class AuctionClosed(NamedTuple):
    """close_auction.lua: 'ended' (with `ended_by`, the winner's id and hold, or ''
    for no winner), 'not_due' (the end moved: `expires_at` holds the end in force),
    'returned' (a kept unit went back to stock), 'over' (`ended_by` holds the state),
    'missing' or 'rebuilding'."""

    status: Literal["ended", "not_due", "returned", "over", "missing", "rebuilding"]
    ended_by: str
    winner: str
    hold_id: str
    expires_at: int
    ended_at: int


def _auction_closed(reply: list[Any]) -> AuctionClosed:
    if reply[0] == "ended":
        return AuctionClosed("ended", reply[1], reply[2], reply[3], int(reply[4]),
                             int(reply[5]))
    if reply[0] == "not_due":
        return AuctionClosed("not_due", "", "", "", int(reply[1]), 0)
    if reply[0] == "over":
        return AuctionClosed("over", reply[1], "", "", 0, 0)
    return AuctionClosed(reply[0], "", "", "", 0, 0)


class SecondChance(NamedTuple):
    """second_chance.lua: 'offered' (to `bidder`, at `amount`, until `expires_at`), or
    'refused' with `bidder` holding the code, 'missing', 'rebuilding'."""

    status: Literal["offered", "refused", "missing", "rebuilding"]
    bidder: str
    pseudonym: str
    name: str
    amount: int
    expires_at: int
    hold_id: str


def _second_chance(reply: list[Any], hold_id: str) -> SecondChance:
    if reply[0] == "offered":
        return SecondChance("offered", reply[1], reply[2], reply[3], int(reply[4]),
                            int(reply[5]), hold_id)
    return SecondChance(reply[0], reply[1] if len(reply) > 1 else "", "", "", 0, 0, "")


class Voted(NamedTuple):
    """vote.lua: 'ok' (`new` for a first vote, else the same vote again), 'refused'
    with its code (already_voted: `option` is the vote counted), or 'rebuilding'."""

    status: Literal["ok", "refused", "rebuilding"]
    code: str
    option: int
    new: bool


def _voted(reply: list[Any]) -> Voted:
    if reply[0] == "ok":
        return Voted("ok", "", int(reply[1]), bool(reply[2]))
    if reply[0] == "refused":
        return Voted("refused", reply[1], int(reply[2]) if reply[2] != "" else -1, False)
    return Voted(reply[0], "", -1, False)


class Upvoted(NamedTuple):
    """upvote.lua: 'ok' with the question's votes (`new` for a first upvote), or
    'refused' with its code, or 'rebuilding'."""

    status: Literal["ok", "refused", "rebuilding"]
    code: str
    votes: int
    new: bool


def _upvoted(reply: list[Any]) -> Upvoted:
    if reply[0] == "ok":
        return Upvoted("ok", "", int(reply[1]), bool(reply[2]))
    return Upvoted(reply[0], reply[1] if len(reply) > 1 else "", 0, False)


class Grouped(NamedTuple):
    """start_group.lua and join_group.lua: 'ok' (a member, the group still open),
    'complete' (the last member: every member's hold is held now; `members` lists
    them as viewer:hold), 'dup' (a remembered answer), 'refused' (`answer` holds the
    code, `group_id` the viewer's group for already_in_group), 'rebuilding'."""

    status: Literal["ok", "complete", "dup", "refused", "rebuilding"]
    answer: str
    group_id: str
    members: tuple[str, ...]


def _grouped(reply: list[Any]) -> Grouped:
    if reply[0] == "refused":
        return Grouped("refused", reply[1], reply[2], ())
    if reply[0] == "complete":
        return Grouped("complete", reply[1], "", tuple(reply[2:]))
    return Grouped(reply[0], reply[1] if len(reply) > 1 else "", "", ())


class GroupExpired(NamedTuple):
    """expire_group.lua: 'expired' (`units` back to stock, the members as
    viewer:hold), 'not_due' or 'over'."""

    status: Literal["expired", "not_due", "over"]
    units: int
    members: tuple[str, ...]


def _group_expired(reply: list[Any]) -> GroupExpired:
    if reply[0] == "expired":
        return GroupExpired("expired", int(reply[1]), tuple(reply[2:]))
    return GroupExpired(reply[0], 0, ())


# ====================================================================== typed calls


def reserve_call(room_id: str, *, sale_id: str, product_id: str, buyer: str,
                 request_id: str, hold_id: str, quantity: int, hold_ms: int,
                 answer_ttl_s: int, verified: bool, client: str,
                 max_open_holds: int) -> tuple[list[str], list[Arg]]:
    """reserve.lua's KEYS and ARGV (its contract), for `Scripts.reserve` and for the
    benchmark's reference, which calls the same script through bare redis-py."""
    k = room_keys(room_id)
    lid = listing_id(product_id)
    # Without a flash sale ('') its three keys are never read: a placeholder stands in.
    sid = sale_id or "-"
    return ([k.request(buyer, "buy", request_id), k.product_sale(product_id),
             k.sale(sid), k.stock(product_id), k.bought(sid), k.hold(hold_id),
             k.holds, k.epoch, k.policy, k.open_holds, k.ip_bought(sid),
             k.sale(lid), k.bought(lid), k.ip_bought(lid), k.waitlist(product_id)],
            [sale_id, buyer, quantity, hold_id, hold_ms, answer_ttl_s, product_id,
             "1" if verified else "0", client, max_open_holds, lid])


def start_auction_call(room_id: str, *, auction: Auction, salt: str,
                       terms: str) -> tuple[list[str], list[Arg]]:
    """start_auction.lua's KEYS and ARGV, for `Scripts` and the auction bench's
    reference (which runs the scripts through bare redis-py)."""
    k = room_keys(room_id)
    aid, pid = auction.auction_id, auction.product_id
    return ([k.auction(aid), k.stock(pid), k.sale(hold_sale_id(aid)), k.product_auction(pid),
             k.auctions, k.timers, k.epoch],
            [aid, pid, terms, auction.start_price,
             auction_chain.increments_text(auction.bands()), auction.anti_snipe,
             auction.extend_s * 1000, auction.first_ends_at, auction.reserve_price or 0,
             auction.buy_now_price or 0, "1" if auction.signed_only else "0",
             auction.pay_s * 1000, salt, auction.genesis(), auction.currency,
             auction.started_at, k.base])


def bid_call(room_id: str, *, auction_id: str, bidder: str, nickname: str, request_id: str,
             amount: int, max_amount: int | None, verified: bool,
             answer_ttl_s: int) -> tuple[list[str], list[Arg]]:
    """bid.lua's KEYS and ARGV (as start_auction_call)."""
    k = room_keys(room_id)
    return ([k.request(bidder, "bid", request_id), k.auction(auction_id),
             k.auction_chain(auction_id), k.auction_maxima(auction_id), k.epoch, k.policy,
             k.unpaid],
            [bidder, nickname, amount, "" if max_amount is None else max_amount,
             "1" if verified else "0", answer_ttl_s, auction_id])


class Scripts(Ledger):
    """One method per script. Each builds its KEYS and ARGV in the order of
    `CONTRACTS` (and of the script's header) and returns a future of its typed
    reply, batched like every call (see `Ledger`)."""

    def publish(self, room_id: str, event: bytes, log_size: int,
                keep: int = 0) -> asyncio.Future[int]:
        """Append the encoded event `{...}` to the room's log under its next seq and
        publish it (and keep it in the chat history of `keep` messages, when above 0);
        resolves to the seq, or -1 while the room is being rebuilt."""
        k = room_keys(room_id)
        # No conversion: the reply is already an int, and this runs once per event.
        return self.run("publish", [k.seq, k.log, k.epoch, k.chat_history],
                        [event, log_size, k.channel, keep, self.publish_command])

    def reserve(self, room_id: str, *, sale_id: str, product_id: str, buyer: str,
                request_id: str, hold_id: str, quantity: int, hold_ms: int,
                answer_ttl_s: int, verified: bool, client: str, max_open_holds: int,
                into: Callable[[Answered], T]) -> asyncio.Future[T]:
        """reserve.lua; its reply, as `Answered`, is passed through `into` as the ledger
        resolves the future: a buy's answer is built there, with no task waiting on
        it (Buying)."""
        keys, args = reserve_call(room_id, sale_id=sale_id, product_id=product_id,
                                  buyer=buyer, request_id=request_id, hold_id=hold_id,
                                  quantity=quantity, hold_ms=hold_ms,
                                  answer_ttl_s=answer_ttl_s, verified=verified,
                                  client=client, max_open_holds=max_open_holds)
        return self.run("reserve", keys, args, lambda reply: into(_answered(reply)))

    def release(self, room_id: str, *, hold_id: str, product_id: str, sale_id: str,
                mode: ReleaseMode, waitlist: WaitlistTerms, buyer: str = "",
                coupon_id: str = "") -> asyncio.Future[Released]:
        """release.lua; the units go to the head of the product's waitlist, if anyone
        waits, in the same step (`Released.moves`)."""
        k = room_keys(room_id)
        return self.run("release", [
            k.hold(hold_id), k.stock(product_id), k.sale(sale_id), k.bought(sale_id),
            k.holds, k.confirming, k.claims(coupon_id or "-"), k.epoch, k.open_holds,
            k.ip_bought(sale_id),
        ], [hold_id, mode, buyer, KEEP_FINISHED_HOLD_MS, k.base, new_id("h"), *waitlist],
            _released)

    def promote(self, room_id: str, product_id: str,
                waitlist: WaitlistTerms) -> asyncio.Future[Promoted]:
        """Hand the units in the product's stock to the head of its waitlist."""
        k = room_keys(room_id)
        return self.run("promote", [k.epoch],
                        [k.base, product_id, new_id("h"), *waitlist], _promoted)

    def join_waitlist(self, room_id: str, *, viewer: str, product_id: str, max_waiting: int,
                      verified: bool) -> asyncio.Future[Waiting]:
        k = room_keys(room_id)
        return self.run("join_waitlist", [
            k.waitlist(product_id), k.wl_ticket, k.epoch, k.policy, k.products, k.room,
        ], [viewer, product_id, max_waiting, "1" if verified else "0", k.base], _waiting)

    def claim_word(self, room_id: str, product_id: str, keyword: str,
                   quantities: bool) -> asyncio.Future[int]:
        """Set the product's claim keyword ('' clears it) in the room's lookup and its
        card, in one step; resolves to the room's number of keywords."""
        k = room_keys(room_id)
        return self.run("claim_word", [k.claim_words, k.sale(listing_id(product_id))],
                        [product_id, keyword, "1" if quantities else "0"], int)

    def leave_room(self, room_id: str, viewer: str, keep_place_ms: int) -> asyncio.Future[int]:
        """One connection of the viewer closed: their count of open connections, and
        at none, the moment they left (a waitlist keeps their place a while), in one
        step; resolves to the connections left."""
        k = room_keys(room_id)
        return self.run("leave_room", [k.present, k.gone], [viewer, keep_place_ms], int)

    def begin_checkout(self, room_id: str, *, buyer: str, request_id: str, hold_id: str,
                       coupon_id: str, verified: bool) -> asyncio.Future[CheckoutBegun]:
        k = room_keys(room_id)
        return self.run("begin_checkout", [
            k.request(buyer, "checkout", request_id), k.hold(hold_id), k.holds,
            k.coupon(coupon_id or "-"), k.claims(coupon_id or "-"), k.confirming, k.epoch,
            k.policy,
        ], [hold_id, buyer, coupon_id, "1" if verified else "0"], _checkout_begun)

    def finish_checkout(self, order: Order, answer: bytes,
                        answer_ttl_s: int) -> asyncio.Future[CheckoutFinished]:
        """Count the durable `order` in Redis and remember `answer` for retries of
        its checkout request."""
        k = room_keys(order.room_id)
        return self.run("finish_checkout", [
            k.hold(order.hold_id), k.stock(order.product_id), k.sale(order.sale_id),
            k.claims(order.coupon_id or "-"),
            k.request(order.buyer_id, "checkout", order.request_id or "-"),
            k.confirming, k.open_holds, k.holds,
        ], [order.order_id, answer, answer_ttl_s, KEEP_FINISHED_HOLD_MS, order.hold_id,
            order.coupon_id], _checkout_finished)

    def abort_checkout(self, room_id: str, *, hold_id: str,
                       coupon_id: str) -> asyncio.Future[bool]:
        k = room_keys(room_id)
        return self.run("abort_checkout", [
            k.hold(hold_id), k.holds, k.claims(coupon_id or "-"), k.confirming,
        ], [hold_id], bool)

    def stop_sale(self, room_id: str, *, sale_id: str,
                  product_id: str) -> asyncio.Future[SaleStopped]:
        k = room_keys(room_id)
        return self.run("stop_sale", [
            k.sale(sale_id), k.stock(product_id), k.bought(sale_id), k.holds, k.timers,
            k.open_holds, k.ip_bought(sale_id),
        ], [sale_id, k.base, KEEP_FINISHED_HOLD_MS], _sale_stopped)

    def claim_coupon(self, room_id: str, *, viewer: str, request_id: str, coupon_id: str,
                     answer_ttl_s: int, verified: bool) -> asyncio.Future[Answered]:
        k = room_keys(room_id)
        return self.run("claim_coupon", [
            k.request(viewer, "claim_coupon", request_id), k.coupon(coupon_id),
            k.claims(coupon_id), k.epoch, k.policy,
        ], [viewer, answer_ttl_s, coupon_id, "1" if verified else "0"], _answered)

    def enter_lottery(self, room_id: str, *, viewer: str, request_id: str, lottery_id: str,
                      entry_text: str, answer_ttl_s: int,
                      verified: bool) -> asyncio.Future[Answered]:
        """`entry_text`: the normalized comment text ('' for a button entry)."""
        k = room_keys(room_id)
        return self.run("enter_lottery", [
            k.request(viewer, "enter_lottery", request_id), k.lottery(lottery_id),
            k.entrants(lottery_id), k.present, k.epoch, k.policy,
        ], [viewer, entry_text, answer_ttl_s, lottery_id, "1" if verified else "0"],
            _answered)

    def adjust_stock(self, room_id: str, product_id: str,
                     total: int) -> asyncio.Future[StockAdjusted]:
        return self.run("adjust_stock", [room_keys(room_id).stock(product_id)], [total],
                        _stock_adjusted)

    def close_lottery(self, room_id: str, lottery_id: str) -> asyncio.Future[bool]:
        """Close an open lottery for its draw; True for the one caller that did."""
        return self.run("close_lottery", [room_keys(room_id).lottery(lottery_id)], [], bool)

    def viewers(self, room_id: str) -> asyncio.Future[ViewerCounts]:
        k = room_keys(room_id)
        return self.run("viewers", [k.present, k.uniq, k.peak, k.viewers_by_minute],
                        [time.time_ns() // 60_000_000_000], _viewer_counts)

    def reschedule(self, room_id: str, *, recover_after_ms: int,
                   recovery_not_before: int) -> asyncio.Future[int | None]:
        """When the room's earliest timer, expiring hold, or checkout due for
        recovery falls due; None when it has nothing due (Context.reschedule puts
        it on the schedule, keys.DUE)."""
        k = room_keys(room_id)
        return self.run("reschedule", [k.timers, k.holds, k.confirming],
                        [0, 0, 0, 0, recover_after_ms, recovery_not_before], _due)

    def home(self, room_id: str, mode: str, value: str = "",
             only_if_absent: bool = False) -> asyncio.Future[Home]:
        """A room's home on a Redis Cluster (home.lua): `mode` 'mark' sets the epoch
        `value` with the serving node as home, 'check' says where its home is (and
        the epoch, when it is the serving node), 'rehome' moves the home to the
        serving node if it still is `value`."""
        return self.run("home", [room_keys(room_id).epoch],
                        [mode, value, "1" if only_if_absent else ""], _home)

    def chat_gate(self, room_id: str, viewer: str,
                  room_messages_per_s: float) -> asyncio.Future[ChatGate]:
        k = room_keys(room_id)
        return self.run("chat_gate", [k.policy, k.chat_rate, k.slow_mode(viewer)],
                        [room_messages_per_s], _chat_gate)

    def mint_guest(self, client: str, *, limit: int, window_ms: int,
                   member: str) -> asyncio.Future[GuestMint]:
        return self.run("mint_guest", [guest_mints(client)], [limit, window_ms, member],
                        _guest_mint)

    def start_auction(self, room_id: str, *, auction: Auction, salt: str,
                      terms: str) -> asyncio.Future[list[str]]:
        """Take a unit out of stock for the auction; ['ok'], ['sold_out'], ['active',
        id] or ['rebuilding']."""
        keys, args = start_auction_call(room_id, auction=auction, salt=salt, terms=terms)
        return self.run("start_auction", keys, args, lambda reply: [str(r) for r in reply])

    def bid(self, room_id: str, *, auction_id: str, bidder: str, nickname: str,
            request_id: str, amount: int, max_amount: int | None, verified: bool,
            answer_ttl_s: int) -> asyncio.Future[BidDecided]:
        keys, args = bid_call(room_id, auction_id=auction_id, bidder=bidder,
                              nickname=nickname, request_id=request_id, amount=amount,
                              max_amount=max_amount, verified=verified,
                              answer_ttl_s=answer_ttl_s)
        return self.run("bid", keys, args, _bid_decided)

    def close_auction(self, room_id: str, *, auction_id: str, product_id: str,
                      mode: Literal["due", "now", "cancel"]) -> asyncio.Future[AuctionClosed]:
        k = room_keys(room_id)
        sid, hold_id = hold_sale_id(auction_id), new_id("h")
        return self.run("close_auction", [
            k.auction(auction_id), k.stock(product_id), k.sale(sid), k.bought(sid), k.holds,
            k.open_holds, k.timers, k.epoch, k.product_auction(product_id), k.hold(hold_id),
        ], [auction_id, mode, hold_id], _auction_closed)

    def second_chance(self, room_id: str, auction_id: str) -> asyncio.Future[SecondChance]:
        k = room_keys(room_id)
        sid, hold_id = hold_sale_id(auction_id), new_id("h")
        return self.run("second_chance", [
            k.auction(auction_id), k.sale(sid), k.bought(sid), k.holds, k.open_holds,
            k.epoch, k.hold(hold_id),
        ], [auction_id, hold_id], lambda reply: _second_chance(reply, hold_id))

    def vote(self, room_id: str, *, poll_id: str, viewer: str, option: int,
             verified: bool) -> asyncio.Future[Voted]:
        k = room_keys(room_id)
        return self.run("vote", [k.poll(poll_id), k.poll_votes(poll_id), k.epoch, k.policy],
                        [viewer, option, "1" if verified else "0"], _voted)

    def close_poll(self, room_id: str, poll_id: str, closed_at: int) -> asyncio.Future[bool]:
        """Close an open poll; True for the one caller that did."""
        return self.run("close_poll", [room_keys(room_id).poll(poll_id)], [closed_at], bool)

    def ask(self, room_id: str, *, question_id: str, question: str, viewer: str,
            request_id: str, max_open: int, answer_ttl_s: int, verified: bool,
            max_questions: int) -> asyncio.Future[Answered]:
        k = room_keys(room_id)
        return self.run("ask", [
            k.request(viewer, "ask", request_id), k.questions, k.open_questions,
            k.questions_per_viewer, k.epoch, k.policy,
        ], [question_id, question, viewer, max_open, answer_ttl_s, "1" if verified else "0",
            max_questions], _answered)

    def upvote(self, room_id: str, *, question_id: str, viewer: str,
               verified: bool) -> asyncio.Future[Upvoted]:
        k = room_keys(room_id)
        return self.run("upvote", [k.questions, k.open_questions, k.question_voters(question_id),
                                   k.epoch, k.policy],
                        [question_id, viewer, "1" if verified else "0"], _upvoted)

    def answer_question(self, room_id: str, question_id: str,
                        answered_at: int) -> asyncio.Future[Answered]:
        """Mark it answered, once: 'ok' with the question's JSON, or 'refused'."""
        k = room_keys(room_id)
        return self.run("answer_question", [k.questions, k.open_questions,
                                            k.questions_per_viewer],
                        [question_id, answered_at], _answered)

    def start_group(self, room_id: str, *, deal_id: str, product_id: str, viewer: str,
                    nickname: str, request_id: str, max_open_holds: int, answer_ttl_s: int,
                    verified: bool) -> asyncio.Future[Grouped]:
        k = room_keys(room_id)
        gid, hold_id = new_id("g"), new_id("h")
        return self.run("start_group", [
            k.request(viewer, "start_group", request_id), k.sale(deal_id), k.stock(product_id),
            k.group(gid), k.group_members(gid), k.deal_members(deal_id),
            k.deal_groups(deal_id), k.hold(hold_id), k.open_holds, k.bought(deal_id),
            k.timers, k.epoch, k.policy,
        ], [viewer, gid, hold_id, "1" if verified else "0", max_open_holds, answer_ttl_s,
            product_id, nickname], _grouped)

    def join_group(self, room_id: str, *, deal_id: str, group_id: str, product_id: str,
                   viewer: str, request_id: str, max_open_holds: int, answer_ttl_s: int,
                   hold_ms: int, verified: bool, nickname: str) -> asyncio.Future[Grouped]:
        k = room_keys(room_id)
        hold_id = new_id("h")
        return self.run("join_group", [
            k.request(viewer, "join_group", request_id), k.sale(deal_id), k.group(group_id),
            k.group_members(group_id), k.deal_members(deal_id), k.deal_groups(deal_id),
            k.hold(hold_id), k.open_holds, k.bought(deal_id), k.holds, k.timers, k.epoch,
            k.policy,
        ], [viewer, group_id, hold_id, "1" if verified else "0", max_open_holds,
            answer_ttl_s, product_id, hold_ms, k.base, nickname], _grouped)

    def expire_group(self, room_id: str, *, deal_id: str, group_id: str, product_id: str,
                     mode: Literal["due", "now"]) -> asyncio.Future[GroupExpired]:
        k = room_keys(room_id)
        return self.run("expire_group", [
            k.sale(deal_id), k.group(group_id), k.group_members(group_id),
            k.deal_members(deal_id), k.deal_groups(deal_id), k.stock(product_id),
            k.open_holds, k.bought(deal_id), k.timers,
        ], [group_id, mode, k.base, KEEP_FINISHED_HOLD_MS], _group_expired)

    def award(self, channel: str, *, award_id: str, viewer: str, points: int, cap: int,
              remember_s: int, minute: int) -> asyncio.Future[Awarded]:
        """Award fan points once under `award_id` (lua/award.lua)."""
        k = fan_keys(channel)
        return self.run("award", [k.points, k.award(award_id), k.minute(viewer, minute),
                                  k.loaded],
                        [viewer, points, cap, remember_s], _awarded)

    def referral_reward(self, room_id: str, *, mode: Literal["decide", "undo", "reverse"],
                        invitee: str,
                        order_id: str, most: int) -> asyncio.Future[list[str]]:
        """Decide (or take back) the reward of an invitee's first order."""
        k = room_keys(room_id)
        return self.run("referral_reward", [k.referrals, k.referral_rewards, k.referral_paid,
                                            k.epoch],
                        [mode, invitee, order_id, most], _strings)

    def cancel_order(self, order: Order, epoch: str, now: int, *, change_id: str = "",
                     quantity: int = 0) -> asyncio.Future[str]:
        """Give back a cancelled order's units (lua/cancel_order.lua), or with
        `change_id` and `quantity` those of a refund into stock: 'ok', 'already' or
        'rebuilt'."""
        k = room_keys(order.room_id)
        sid = order.sale_id
        return self.run("cancel_order", [
            k.hold(order.hold_id), k.stock(order.product_id), k.sale(sid), k.bought(sid),
            k.ip_bought(sid), k.claims(order.coupon_id or "-"), k.cancelled, k.epoch,
        ], [change_id or order.order_id, order.buyer_id, quantity or order.quantity,
            order.coupon_id, epoch, now, "refund" if change_id else "cancel"],
            lambda reply: str(reply[0]))
