"""The data one run collects: what the crowd was told (holds, orders, claims,
entries, waitlist places and offers, bids and auction events, the sequence
numbers each viewer saw, invites and the referral rewards announced) and what
the host read back (audit samples, orders, the store, published lotteries and
auctions with their bid chains, the referral tree).

Plain picklable dataclasses: generator processes send their part to the parent
in these, and the checker is a pure function over `RunData`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class Gap:
    """A break in one viewer's sequence numbers and how it was repaired."""

    after: int  # the last seq the viewer had applied
    got: int  # the seq that revealed the gap; 0 when the cause is a disconnect
    cause: str  # "gap" (a seq skipped) or "disconnect"
    # "resume" (missed events replayed), "snapshot", "left" (a replayed trace's viewer
    # left while disconnected: nothing more to receive), "" = not recovered
    recovered: str = ""


@dataclass(slots=True)
class ViewerRecord:
    index: int
    viewer_id: str = ""
    first_seq: int = 0  # seq of the first snapshot or resume point (0: never live)
    last_seq: int = 0  # last seq applied
    applied: int = 0  # events applied in order
    duplicates: int = 0
    gaps: list[Gap] = field(default_factory=list)
    reconnects: int = 0
    close_codes: list[int] = field(default_factory=list)
    connected_at_end: bool = False
    chats_sent: int = 0
    chats_seen_own: int = 0  # own chat events seen: chats the server accepted
    chats_refused: int = 0
    chat_active_s: float = 0.0


@dataclass(slots=True)
class HoldRecord:
    hold_id: str
    viewer_id: str
    sale_id: str
    product_id: str
    quantity: int
    created_at: int
    expires_at: int
    # When its holder sent a release (server clock as the generator reads it, ms;
    # 0: never released). The release happened after this, so a unit freed by it is
    # never counted as freed too early.
    released_at: float = 0.0


@dataclass(slots=True)
class OrderAck:
    """An `order_placed` a viewer was told."""

    order_id: str
    hold_id: str
    viewer_id: str
    quantity: int
    coupon_id: str


@dataclass(slots=True)
class Claim:
    coupon_id: str
    viewer_id: str


@dataclass(slots=True)
class Entry:
    lottery_id: str
    viewer_id: str


@dataclass(slots=True)
class StockSample:
    t: float  # seconds since the show started
    product_id: str
    total: int
    left: int
    held: int
    sold: int


@dataclass(slots=True)
class SaleInfo:
    sale_id: str
    product_id: str
    units: int
    limit_per_buyer: int
    starts_at: int


@dataclass(slots=True)
class CouponInfo:
    coupon_id: str
    count: int


@dataclass(slots=True)
class WaitlistJoin:
    """A `waitlist` answer to a viewer's `join_waitlist`: its place in the line."""

    viewer_id: str
    product_id: str
    ticket: int
    position: int
    at: float  # when the answer came (server clock as the generator reads it, ms)


@dataclass(slots=True)
class WaitlistEvent:
    """One `waitlist_offer` event (one atomic step of the server: the units it
    offered, in line order, and the viewers it took off), kept once per seq."""

    seq: int
    product_id: str
    offers: list[dict[str, Any]]  # {"viewer_id", "ticket", "hold": {...}}
    dropped: list[dict[str, Any]]  # {"viewer_id", "ticket", "reason"}
    ts: int = 0


@dataclass(slots=True)
class BidRecord:
    """One `bid` a viewer sent and the answer it got."""

    auction_id: str
    viewer_id: str
    request_id: str
    kind: str  # "plain" (at min_next), "proxy" (with max_amount), "raise", "snipe"
    amount: int
    max_amount: int | None
    # Server clock as the generator reads it (ms): it trails the server's by the
    # one-way latency of the welcome, so a bid is never thought sent later than it was.
    sent_at: float
    answered_at: float
    # "leading", "max_raised", "won" (bid_placed) or the error's code
    outcome: str
    reply: dict[str, Any] = field(default_factory=dict)  # the answer without type and re


@dataclass(slots=True)
class AuctionEvent:
    """An auction event (`auction_started`, `auction_bid`, `auction_ended`,
    `auction_cancelled`, `auction_second_chance`) as the viewers received it:
    kept once per seq and content, with how many viewers received exactly that
    (two contents for one seq would mean viewers were told different things)."""

    seq: int
    kind: str
    auction_id: str
    data: dict[str, Any]
    receipts: int = 1
    viewers: list[str] = field(default_factory=list)  # the first few who received it


@dataclass(slots=True)
class AuctionRecord:
    """An auction of the run: the host's start answer and what the server
    published at the end (GET .../auctions/{id} and the chain from .../bids)."""

    auction_id: str
    started: dict[str, Any]  # the 201 answer to POST .../auctions
    published: dict[str, Any] | None = None
    entries: list[dict[str, Any]] = field(default_factory=list)
    chain_genesis: str = ""  # `genesis` and `head` of the bids pages
    chain_head: str = ""
    error: str = ""  # why the read-back failed


@dataclass(slots=True)
class GroupAnswer:
    """One `start_group` or `join_group` a viewer sent and the answer it got."""

    viewer_id: str
    deal_id: str
    kind: str  # "start" or "join"
    request_id: str
    group_id: str  # the group answered (or, for join, the group asked for)
    # "open" or "complete" (a `group` answer's state) or the error's code
    outcome: str
    hold_id: str = ""
    members: int = 0
    size: int = 0
    # The last seq the viewer had applied when it sent the request: the group it
    # was in before had ended (its `expired` event) by then, or it was in two.
    sent_seq: int = 0
    reply: dict[str, Any] = field(default_factory=dict)  # without type and re


@dataclass(slots=True)
class GroupCheckout:
    """A member's checkout of a group hold and its answer (`order_placed` or the
    error's code)."""

    viewer_id: str
    group_id: str
    hold_id: str
    group_state: str  # the group's end as the member saw it: "complete" or "expired"
    outcome: str


@dataclass(slots=True)
class SocialEvent:
    """A `group_deal`, `group_update`, `poll_open`, `poll_votes` or `poll_closed`
    event as the viewers received it: kept once per seq and content, with how many
    viewers received exactly that."""

    seq: int
    kind: str
    data: dict[str, Any]
    receipts: int = 1


@dataclass(slots=True)
class GroupDealRecord:
    """The run's group deal: the host's open answer and the deal read back at the
    end (GET .../group-deals/{id})."""

    deal_id: str
    product_id: str
    group_size: int
    group_price: int
    units: int
    opened: dict[str, Any] = field(default_factory=dict)
    final: dict[str, Any] | None = None
    error: str = ""  # why the read-back failed


@dataclass(slots=True)
class VoteRecord:
    """One `vote` a viewer sent and the answer it got."""

    viewer_id: str
    poll_id: str
    kind: str  # "first", "retry" (the same option again) or "change" (another option)
    option: int
    outcome: str  # "voted" or the error's code
    answered_option: int | None = None  # `voted`'s option, or details.option of a refusal
    sent_at: float = 0.0  # server clock as the generator reads it, ms


@dataclass(slots=True)
class PollRecord:
    """The run's poll: the host's open answer and the poll read back at the end."""

    poll_id: str
    options: int
    opened: dict[str, Any] = field(default_factory=dict)
    final: dict[str, Any] | None = None
    error: str = ""


@dataclass(slots=True)
class ReferralAnswer:
    """One `invite` or `accept_invite` a viewer sent and the answer it got."""

    viewer_id: str  # who sent it
    # "invite" (asked for its own link), "accept" (its inviter's link, the first time),
    # "retry" (the same link again), "duplicate" (a second inviter's link, after the
    # first was accepted) or "self" (an inviter's own link)
    kind: str
    inviter_id: str  # whose link it is (for "invite": the sender's own)
    outcome: str  # "invite", "invite_accepted" or the error's code
    told_inviter: str = ""  # the nickname an `invite_accepted` named
    sent_at: float = 0.0  # server clock as the generator reads it, ms


@dataclass(slots=True)
class ReferralEvent:
    """A `referral_reward` event as the viewers received it: kept once per seq and
    content, with how many viewers received exactly that."""

    seq: int
    inviter: str
    state: str  # "paid" or "reversed"
    data: dict[str, Any]
    receipts: int = 1


@dataclass(slots=True)
class ReferralRecord:
    """The run's referral program: the host's PUT answer, and the referral tree read
    back at the end (GET .../referrals)."""

    program: dict[str, Any]
    tree: dict[str, Any] | None = None
    error: str = ""  # why the read-back failed


@dataclass(slots=True)
class RunData:
    """Everything the checker reads."""

    products: dict[str, int] = field(default_factory=dict)  # product id -> stock given
    sales: list[SaleInfo] = field(default_factory=list)
    coupons: list[CouponInfo] = field(default_factory=list)
    stock_samples: list[StockSample] = field(default_factory=list)
    final_stock: list[StockSample] = field(default_factory=list)
    server_audit_failed: list[dict[str, Any]] = field(default_factory=list)
    orders_api: list[dict[str, Any]] = field(default_factory=list)
    # Why a read-back failed (chaos runs go on without it, so every check still runs
    # and says what it could not see, instead of comparing against an empty list).
    audit_error: str = ""
    orders_api_error: str = ""
    orders_store: list[dict[str, Any]] | None = None  # read from SQLite when spawned
    holds: list[HoldRecord] = field(default_factory=list)
    acks: list[OrderAck] = field(default_factory=list)
    claims: list[Claim] = field(default_factory=list)
    entries: list[Entry] = field(default_factory=list)
    lotteries: list[dict[str, Any]] = field(default_factory=list)  # as GET .../lotteries/{id}
    waitlist_joins: list[WaitlistJoin] = field(default_factory=list)
    waitlist_events: list[WaitlistEvent] = field(default_factory=list)  # by seq
    bids: list[BidRecord] = field(default_factory=list)
    auction_events: list[AuctionEvent] = field(default_factory=list)  # by seq
    auctions: list[AuctionRecord] = field(default_factory=list)
    group_deals: list[GroupDealRecord] = field(default_factory=list)
    group_answers: list[GroupAnswer] = field(default_factory=list)
    group_checkouts: list[GroupCheckout] = field(default_factory=list)
    polls: list[PollRecord] = field(default_factory=list)
    votes: list[VoteRecord] = field(default_factory=list)
    social_events: list[SocialEvent] = field(default_factory=list)  # by seq
    referral: ReferralRecord | None = None
    referral_answers: list[ReferralAnswer] = field(default_factory=list)
    referral_events: list[ReferralEvent] = field(default_factory=list)  # by seq
    viewers: list[ViewerRecord] = field(default_factory=list)
    final_seq: int = 0  # seq of the end marker every connected viewer should reach
    chat_limit: tuple[float, int] | None = None  # the server's chat (rate/s, burst)
    holds_must_end: bool = True  # false when the run was cut short
    buy_p99_ms: float | None = None
    max_buy_p99_ms: float = 0.0
    reach: float | None = None
    min_reach: float = 0.0
