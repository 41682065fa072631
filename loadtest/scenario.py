"""Scenario files: what a load test does, read from TOML and checked key by key.

A scenario is one engine's settings, not a program: every run joins a crowd of
viewers, and the sections switch features on (a host emitting events, a flash
sale with a coupon drop, a lottery and a waitlist, an auction with proxy bids
and last-second snipes, a group deal and a poll with questions, referral invites,
a reconnect storm, a chat storm). The
bundled scenarios in `loadtest/scenarios/` are such files; a bare name like
`flash_sale` resolves to one of them, or to the bundled sample trace.

Every key is typed and ranged (the typed TOML tables of server/core/tomlconfig.py,
shared with the server's settings). A bad file is refused with a `ScenarioError`
that names the file and the key (`flash_sale.toml: sale.units: expected an
integer, got 'lots'`), never a traceback. Pure: reads files only when asked.
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from server.core.tomlconfig import check_section, check_value, meta, section_table

PACKAGE_DIR: Final = Path(__file__).resolve().parent
SCENARIO_DIR: Final = PACKAGE_DIR / "scenarios"
TRACE_DIR: Final = PACKAGE_DIR / "traces"
BUNDLED_TRACES: Final = {"sample": TRACE_DIR / "sample.jsonl"}

HOST_ACTIONS: Final = ("announce", "pin", "unpin", "product")


class ScenarioError(ValueError):
    """A scenario file or option is unknown, of the wrong type or out of range."""


_r = meta


@dataclass(frozen=True, slots=True)
class ViewersSpec:
    count: int = field(default=200, metadata=_r(1, 100_000, doc="viewers in the crowd"))
    join_rate_per_s: float = field(default=500.0, metadata=_r(1.0, 100_000.0,
                                                               doc="viewers joining per second"))
    latency_sample: int = field(default=100, metadata=_r(
        0, 100_000, doc="connections, spread over the crowd, whose per-event latency is kept"))
    processes: int = field(default=0, metadata=_r(
        0, 64, doc="generator processes; 0: what the machine allows (cpu count - 1, >= 1)"))


@dataclass(frozen=True, slots=True)
class RunSpec:
    duration_s: float = field(default=15.0, metadata=_r(1.0, 3600.0, doc="length of the show"))
    seed: int = field(default=1, metadata=_r(0, 2**31 - 1, doc="seed of every random choice"))
    audit_interval_s: float = field(default=0.5, metadata=_r(
        0.05, 60.0, doc="how often the host samples the audit during the run"))
    settle_timeout_s: float = field(default=30.0, metadata=_r(
        1.0, 600.0, doc="most time to wait after the show for holds to end"))
    join_timeout_s: float = field(default=60.0, metadata=_r(
        1.0, 3600.0, doc="most time to wait for the whole crowd to join"))


@dataclass(frozen=True, slots=True)
class HostSpec:
    events_per_s: float = field(default=0.0, metadata=_r(
        0.0, 5000.0, doc="host events per second during the show (0: none)"))
    actions: tuple[str, ...] = field(default=("announce",), metadata=_r(
        choices=HOST_ACTIONS, doc="host actions to cycle through"))
    text_length: int = field(default=120, metadata=_r(
        1, 500, doc="announcement length in characters (sets the event size)"))


@dataclass(frozen=True, slots=True)
class SaleSpec:
    enabled: bool = field(default=False, metadata=_r(doc="run a flash sale"))
    units: int = field(default=50, metadata=_r(1, 10_000_000, doc="units on sale"))
    stock: int = field(default=0, metadata=_r(0, 1_000_000_000,
                                              doc="product stock; 0: the same as units"))
    limit_per_buyer: int = field(default=1, metadata=_r(1, 1000))
    quantity: int = field(default=1, metadata=_r(1, 10, doc="units per buy request"))
    price: int = field(default=1000, metadata=_r(0, 10**12, doc="sale price, minor units"))
    currency: str = field(default="USD", metadata=_r(doc="three upper-case letters"))
    countdown_s: float = field(default=3.0, metadata=_r(
        0.0, 3600.0, doc="seconds from the sale's announcement to its opening"))
    duration_s: int = field(default=0, metadata=_r(
        0, 604_800, doc="sale window in seconds; 0: until well after the show"))
    buyer_share: float = field(default=0.8, metadata=_r(0.0, 1.0, doc="viewers who buy"))
    buy_window_s: float = field(default=0.0, metadata=_r(
        0.0, 600.0, doc="buys spread over this window after the opening (0: at the instant)"))
    greedy_share: float = field(default=0.1, metadata=_r(
        0.0, 1.0, doc="buyers who try to buy past the per-buyer limit"))
    checkout_share: float = field(default=0.7, metadata=_r(0.0, 1.0,
                                                           doc="holders who check out"))
    coupon_checkout_share: float = field(default=0.5, metadata=_r(
        0.0, 1.0, doc="checkouts that use a claimed coupon"))
    abandon: str = field(default="auto", metadata=_r(
        choices=("auto", "expire", "release"),
        doc="what holders who do not check out do; auto: let the hold expire when the "
            "tool sets a short hold time (--spawn), otherwise release it"))
    hold_seconds: float = field(default=4.0, metadata=_r(
        0.0, 86400.0, doc="hold time set on a spawned server (0: the server's default)"))
    think_s: float = field(default=0.3, metadata=_r(
        0.0, 60.0, doc="mean time a holder takes before checkout or release, after "
                       "think_min_s"))
    think_min_s: float = field(default=0.0, metadata=_r(
        0.0, 600.0, doc="least time a holder takes before checkout or release (the "
                        "bench: checkouts after the buy burst, not inside it)"))
    sold_out_retries: int = field(default=3, metadata=_r(
        0, 1000, doc="buy retries after sold_out (stock may come back)"))
    retry_interval_s: float = field(default=1.0, metadata=_r(0.05, 60.0))
    waitlist_share: float = field(default=0.0, metadata=_r(
        0.0, 1.0, doc="buyers told sold_out who join the product's waitlist (instead of "
                      "retrying) and take the hold it offers them; 0: nobody waits"))


ANTI_SNIPE: Final = ("extend", "sudden_death")


@dataclass(frozen=True, slots=True)
class AuctionSpec:
    enabled: bool = field(default=False, metadata=_r(doc="run an auction"))
    start_price: int = field(default=1000, metadata=_r(1, 10**9,
                                                       doc="start price, minor units"))
    duration_s: int = field(default=20, metadata=_r(
        5, 86400, doc="seconds from the start to the first end"))
    anti_snipe: str = field(default="extend", metadata=_r(
        choices=ANTI_SNIPE, doc="extend: a bid in the last extend_s moves the end; "
                                "sudden_death: the end never moves"))
    extend_s: int = field(default=3, metadata=_r(1, 300, doc="the extend window, seconds"))
    reserve_price: int = field(default=0, metadata=_r(
        0, 10**9, doc="hidden reserve price, minor units (0: none; else >= start_price)"))
    pay_s: int = field(default=60, metadata=_r(10, 86400,
                                               doc="how long the winner's hold lasts"))
    bidders: int = field(default=300, metadata=_r(
        1, 100_000, doc="viewers who bid (the first of the crowd; at most viewers.count)"))
    proxy_share: float = field(default=0.3, metadata=_r(
        0.0, 1.0, doc="bidders (not snipers) who send proxy bids with a max_amount"))
    proxy_steps: int = field(default=20, metadata=_r(
        1, 10_000, doc="a proxy bid's max_amount: up to this many steps above min_next"))
    bid_interval_s: float = field(default=3.0, metadata=_r(
        0.05, 600.0, doc="mean time between one bidder's bids"))
    max_bids: int = field(default=8, metadata=_r(
        1, 1000, doc="most bids one bidder sends before the last seconds"))
    snipe_share: float = field(default=0.3, metadata=_r(
        0.0, 1.0, doc="bidders who bid only in the last snipe_window_s before the end"))
    snipe_window_s: float = field(default=1.0, metadata=_r(
        0.05, 60.0, doc="snipes go out this long before ends_at as the bidder sees it"))
    snipe_late_s: float = field(default=0.2, metadata=_r(
        0.0, 10.0, doc="some snipes go out up to this long after ends_at (they must be "
                       "refused: auction_ended)"))
    snipes: int = field(default=2, metadata=_r(
        1, 100, doc="most snipes per sniper (after an extension a sniper aims at the new "
                    "end)"))
    winner_pays: bool = field(default=True, metadata=_r(
        doc="the winner checks out the hold it wins"))


@dataclass(frozen=True, slots=True)
class GroupBuySpec:
    enabled: bool = field(default=False, metadata=_r(doc="open a group deal (lt-group)"))
    group_size: int = field(default=3, metadata=_r(2, 10, doc="members a group needs"))
    group_price: int = field(default=800, metadata=_r(0, 10**12,
                                                      doc="the group price, minor units"))
    fill_s: int = field(default=10, metadata=_r(
        10, 86400, doc="seconds a group has to fill before it expires (the server's least "
                       "is 10)"))
    units: int = field(default=30, metadata=_r(
        2, 10_000_000, doc="units of the deal (at least group_size; the product's stock)"))
    participants: int = field(default=60, metadata=_r(
        1, 100_000, doc="viewers who start or join a group (the first of the crowd; at "
                        "most viewers.count)"))
    start_share: float = field(default=0.4, metadata=_r(
        0.0, 1.0, doc="participants who start a group; the rest join open ones"))
    look_share: float = field(default=0.5, metadata=_r(
        0.0, 1.0, doc="joiners who pick a group from GET .../group-deals/{id}; the rest "
                      "from the group_update events they received"))
    act_within_s: float = field(default=3.0, metadata=_r(
        0.0, 600.0, doc="participants act at a random instant this long after the deal "
                        "opens"))
    tries: int = field(default=8, metadata=_r(
        1, 1000, doc="most starts (refused deal_full) or looks/joins per participant"))
    retry_interval_s: float = field(default=0.5, metadata=_r(
        0.05, 60.0, doc="wait before looking again or retrying a start"))
    checkout_share: float = field(default=0.7, metadata=_r(
        0.0, 1.0, doc="members of a complete group who check out (the rest let the hold "
                      "lapse)"))
    expired_checkout_share: float = field(default=0.5, metadata=_r(
        0.0, 1.0, doc="members of an expired group who try to check its hold out (must be "
                      "refused hold_expired)"))
    think_s: float = field(default=0.3, metadata=_r(
        0.0, 60.0, doc="mean wait before a member of a complete group checks out"))


@dataclass(frozen=True, slots=True)
class PollSpec:
    enabled: bool = field(default=False, metadata=_r(doc="open a poll (and questions)"))
    question: str = field(default="Which colour next?", metadata=_r(
        doc="the poll's question, 1..200 characters"))
    options: tuple[str, ...] = field(default=("Red", "Blue", "Green"), metadata=_r(
        doc="2..6 distinct options, 1..80 characters each"))
    duration_s: int = field(default=60, metadata=_r(5, 86400,
                                                    doc="the poll closes after this"))
    voter_share: float = field(default=0.7, metadata=_r(0.0, 1.0, doc="viewers who vote"))
    vote_within_s: float = field(default=5.0, metadata=_r(
        0.0, 3600.0, doc="voters vote at a random instant this long after the poll opens "
                         "(below duration_s)"))
    retry_share: float = field(default=0.2, metadata=_r(
        0.0, 1.0, doc="voters who send the same vote again (answered voted)"))
    change_share: float = field(default=0.2, metadata=_r(
        0.0, 1.0, doc="voters who then vote for another option (refused already_voted)"))
    ask_share: float = field(default=0.05, metadata=_r(
        0.0, 1.0, doc="viewers who ask the host a question"))
    upvote_share: float = field(default=0.2, metadata=_r(
        0.0, 1.0, doc="viewers who upvote the first question of another they see"))


# The server's own bounds on a referral program (server/core/referral_terms.py).
REFERRAL_MAX_POINTS: Final = 100_000
REFERRAL_MAX_REWARDS: Final = 1000


@dataclass(frozen=True, slots=True)
class ReferralSpec:
    enabled: bool = field(default=False, metadata=_r(
        doc="set a referral program; inviters share links, invitees accept and order"))
    points: int = field(default=50, metadata=_r(
        1, REFERRAL_MAX_POINTS, doc="fan points the inviter earns per paid reward"))
    max_rewards_per_inviter: int = field(default=3, metadata=_r(
        1, REFERRAL_MAX_REWARDS, doc="K: most rewards paid to one inviter"))
    inviter_share: float = field(default=0.04, metadata=_r(
        0.0, 1.0, doc="viewers who ask for an invite link (split exactly in each generator "
                      "process)"))
    invitee_share: float = field(default=0.2, metadata=_r(
        0.0, 1.0, doc="of the other viewers (not inviters, not group-deal participants), "
                      "those who accept an inviter's link and then buy in the flash sale"))
    duplicate_share: float = field(default=0.2, metadata=_r(
        0.0, 1.0, doc="invitees who then accept a second inviter's link (refused "
                      "already_invited)"))
    retry_share: float = field(default=0.2, metadata=_r(
        0.0, 1.0, doc="invitees who accept the same link again (answered invite_accepted)"))
    self_share: float = field(default=0.5, metadata=_r(
        0.0, 1.0, doc="inviters who try their own link (refused self_invite)"))
    accept_within_s: float = field(default=1.0, metadata=_r(
        0.0, 600.0, doc="invitees accept at a random instant this long after their "
                        "inviter's link is given (before the sale opens)"))


@dataclass(frozen=True, slots=True)
class CouponSpec:
    enabled: bool = False
    count: int = field(default=20, metadata=_r(1, 10_000_000))
    kind: str = field(default="percent", metadata=_r(choices=("percent", "amount")))
    value: int = field(default=10, metadata=_r(1, 10**12))
    min_spend: int = field(default=0, metadata=_r(0, 10**12))
    claim_share: float = field(default=0.5, metadata=_r(0.0, 1.0, doc="viewers who claim"))
    expires_in_s: int = field(default=3600, metadata=_r(1, 604_800))


@dataclass(frozen=True, slots=True)
class LotterySpec:
    enabled: bool = False
    prize: str = "Signed cap"
    winners: int = field(default=3, metadata=_r(1, 1000))
    duration_s: int = field(default=5, metadata=_r(1, 86400,
                                                   doc="open this long, then drawn"))
    enter_share: float = field(default=0.5, metadata=_r(0.0, 1.0, doc="viewers who enter"))


@dataclass(frozen=True, slots=True)
class ReconnectSpec:
    enabled: bool = False
    share: float = field(default=0.3, metadata=_r(0.0, 1.0, doc="viewers who drop"))
    at_s: float = field(default=1.0, metadata=_r(
        0.0, 3600.0, doc="seconds after the sale opens (or the show starts) when they drop"))
    within_s: float = field(default=2.0, metadata=_r(
        0.0, 60.0, doc="they reconnect within this many seconds"))


@dataclass(frozen=True, slots=True)
class ChatSpec:
    share: float = field(default=0.0, metadata=_r(0.0, 1.0, doc="viewers who chat and like"))
    messages_per_s: float = field(default=0.5, metadata=_r(0.0, 15.0,
                                                           doc="chat messages per chatter"))
    likes_per_s: float = field(default=0.0, metadata=_r(0.0, 15.0,
                                                        doc="like frames per chatter"))
    text_length: int = field(default=40, metadata=_r(1, 200))
    server_rate_per_s: float = field(default=1.0, metadata=_r(
        0.01, 1000.0, doc="the server's chat.messages_per_s (set on a spawned server)"))
    server_burst: int = field(default=5, metadata=_r(
        1, 10_000, doc="the server's chat.burst (set on a spawned server)"))


@dataclass(frozen=True, slots=True)
class ChecksSpec:
    max_buy_p99_ms: float = field(default=0.0, metadata=_r(
        0.0, 600_000.0, doc="fail when the buy p99 exceeds this (0: not checked)"))
    min_reach: float = field(default=0.0, metadata=_r(
        0.0, 1.0, doc="fail when fan-out reach is below this (0: not checked)"))


@dataclass(frozen=True, slots=True)
class TraceSpec:
    path: str = ""
    speed: float = field(default=1.0, metadata=_r(0.01, 1000.0,
                                                  doc="replay speed factor"))


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str = "custom"
    description: str = ""
    viewers: ViewersSpec = field(default_factory=ViewersSpec)
    run: RunSpec = field(default_factory=RunSpec)
    host: HostSpec = field(default_factory=HostSpec)
    sale: SaleSpec = field(default_factory=SaleSpec)
    coupon: CouponSpec = field(default_factory=CouponSpec)
    lottery: LotterySpec = field(default_factory=LotterySpec)
    reconnect: ReconnectSpec = field(default_factory=ReconnectSpec)
    auction: AuctionSpec = field(default_factory=AuctionSpec)
    group_buy: GroupBuySpec = field(default_factory=GroupBuySpec)
    poll: PollSpec = field(default_factory=PollSpec)
    referral: ReferralSpec = field(default_factory=ReferralSpec)
    chat: ChatSpec = field(default_factory=ChatSpec)
    checks: ChecksSpec = field(default_factory=ChecksSpec)
    trace: TraceSpec = field(default_factory=TraceSpec)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = dataclasses.asdict(self)
        out["host"]["actions"] = list(self.host.actions)
        out["poll"]["options"] = list(self.poll.options)
        return out


SECTIONS: Final[dict[str, type[Any]]] = section_table(Scenario, exclude=("name", "description"))


def build_scenario(data: Mapping[str, Any], where: str) -> Scenario:
    """A checked scenario from a parsed TOML document (`where` names it in errors)."""
    top: dict[str, Any] = {}
    for key, value in data.items():
        if key in ("name", "description"):
            if not isinstance(value, str):
                raise ScenarioError(f"{where}: {key}: expected a string, got {value!r}")
            top[key] = value
        elif key in SECTIONS:
            top[key] = SECTIONS[key](**check_section(SECTIONS[key], value, where, key,
                                                     ScenarioError))
        else:
            known = ", ".join(["name", "description", *SECTIONS])
            raise ScenarioError(f"{where}: unknown key {key!r} (known: {known})")
    scenario = Scenario(**top)
    validate(scenario, where)
    return scenario


def validate(s: Scenario, where: str) -> None:
    """Rules that join several keys."""
    if (s.sale.enabled or s.auction.enabled or s.group_buy.enabled) and (
            len(s.sale.currency) != 3 or not s.sale.currency.isalpha()
            or not s.sale.currency.isupper()):
            raise ScenarioError(f"{where}: sale.currency: expected three upper-case letters, "
                                f"got {s.sale.currency!r}")
    if s.sale.enabled:
        if s.sale.stock and s.sale.stock < s.sale.units:
            raise ScenarioError(f"{where}: sale.stock: {s.sale.stock} is below sale.units "
                                f"{s.sale.units}")
        if s.sale.quantity > s.sale.limit_per_buyer:
            raise ScenarioError(f"{where}: sale.quantity: {s.sale.quantity} is above "
                                f"sale.limit_per_buyer {s.sale.limit_per_buyer}")
        if s.sale.countdown_s + s.sale.buy_window_s >= s.run.duration_s:
            raise ScenarioError(
                f"{where}: run.duration_s: {s.run.duration_s} leaves no time to sell after "
                f"sale.countdown_s + sale.buy_window_s = "
                f"{s.sale.countdown_s + s.sale.buy_window_s}")
    if s.auction.enabled:
        validate_auction(s, where)
    if s.group_buy.enabled:
        validate_group_buy(s, where)
    if s.poll.enabled:
        validate_poll(s, where)
    if s.referral.enabled:
        validate_referral(s, where)
    if s.chat.messages_per_s + s.chat.likes_per_s > 18.0:
        raise ScenarioError(f"{where}: chat.messages_per_s: chat + likes per chatter is "
                            f"{s.chat.messages_per_s + s.chat.likes_per_s}/s, above the 18/s "
                            "that stays under the server's 20 frames/s per connection")
    if s.reconnect.enabled and s.reconnect.at_s >= s.run.duration_s:
        raise ScenarioError(f"{where}: reconnect.at_s: {s.reconnect.at_s} is not inside "
                            f"run.duration_s {s.run.duration_s}")


def validate_auction(s: Scenario, where: str) -> None:
    a = s.auction
    if a.bidders > s.viewers.count:
        raise ScenarioError(f"{where}: auction.bidders: {a.bidders} is above viewers.count "
                            f"{s.viewers.count}")
    if a.reserve_price and a.reserve_price < a.start_price:
        raise ScenarioError(f"{where}: auction.reserve_price: {a.reserve_price} is below "
                            f"auction.start_price {a.start_price} (0: no reserve)")
    if a.duration_s >= s.run.duration_s:
        raise ScenarioError(f"{where}: run.duration_s: {s.run.duration_s} leaves no time for "
                            f"the auction: auction.duration_s is {a.duration_s}")
    if a.snipe_window_s >= a.duration_s:
        raise ScenarioError(f"{where}: auction.snipe_window_s: {a.snipe_window_s} is not "
                            f"inside auction.duration_s {a.duration_s}")


def validate_group_buy(s: Scenario, where: str) -> None:
    g = s.group_buy
    if g.participants > s.viewers.count:
        raise ScenarioError(f"{where}: group_buy.participants: {g.participants} is above "
                            f"viewers.count {s.viewers.count}")
    if g.units < g.group_size:
        raise ScenarioError(f"{where}: group_buy.units: {g.units} is below "
                            f"group_buy.group_size {g.group_size} (no group could start)")
    if g.act_within_s >= s.run.duration_s:
        raise ScenarioError(f"{where}: group_buy.act_within_s: {g.act_within_s} is not "
                            f"inside run.duration_s {s.run.duration_s}")


def validate_poll(s: Scenario, where: str) -> None:
    p = s.poll
    if not 1 <= len(p.question) <= 200:
        raise ScenarioError(f"{where}: poll.question: expected 1..200 characters, got "
                            f"{len(p.question)}")
    if not 2 <= len(p.options) <= 6:
        raise ScenarioError(f"{where}: poll.options: expected 2..6 options, got "
                            f"{len(p.options)}")
    for option in p.options:
        if not 1 <= len(option) <= 80:
            raise ScenarioError(f"{where}: poll.options: {option!r}: expected 1..80 "
                                "characters")
    if len({o.casefold() for o in p.options}) != len(p.options):
        raise ScenarioError(f"{where}: poll.options: {list(p.options)} are not distinct "
                            "(case-insensitively)")
    if p.vote_within_s >= p.duration_s:
        raise ScenarioError(f"{where}: poll.vote_within_s: {p.vote_within_s} is not inside "
                            f"poll.duration_s {p.duration_s}")


def share_split(position: int, share: float) -> bool:
    """Exactly round-down(share x n) of positions 0..n-1 are chosen, spread evenly."""
    return int((position + 1) * share) > int(position * share)


def referral_roles(s: Scenario, indices: list[int]) -> tuple[list[int], list[int]]:
    """The inviters and the invitees among one generator process's viewers (their
    indices, in order): `inviter_share` of them, split exactly by position; then
    `invitee_share` of the others, group-deal participants left out (an invitee's
    orders are all in the flash sale, one after another, so its first is plain)."""
    r = s.referral
    participants = s.group_buy.participants if s.group_buy.enabled else 0
    inviters: list[int] = []
    others: list[int] = []
    for position, i in enumerate(indices):
        if share_split(position, r.inviter_share):
            inviters.append(i)
        elif i >= participants:
            others.append(i)
    invitees = [i for q, i in enumerate(others) if share_split(q, r.invitee_share)]
    return inviters, invitees


def validate_referral(s: Scenario, where: str) -> None:
    r = s.referral
    if not s.sale.enabled:
        raise ScenarioError(f"{where}: referral.enabled: invitees order in the flash sale; "
                            "set sale.enabled = true")
    # As one generator process holding the whole crowd picks them (several processes
    # each split their own share, so the counts may round a little lower).
    picked = referral_roles(s, list(range(s.viewers.count)))
    inviters, invitees = len(picked[0]), len(picked[1])
    if inviters < 1:
        raise ScenarioError(f"{where}: referral.inviter_share: {r.inviter_share} of "
                            f"viewers.count {s.viewers.count} makes no inviter")
    if invitees < 1:
        participants = s.group_buy.participants if s.group_buy.enabled else 0
        chosen = set(picked[0])
        others = sum(1 for i in range(participants, s.viewers.count) if i not in chosen)
        raise ScenarioError(f"{where}: referral.invitee_share: {r.invitee_share} of the "
                            f"{others} viewer(s) that are neither inviters nor group-deal "
                            "participants makes no invitee")
    if r.duplicate_share > 0 and inviters < 2:
        raise ScenarioError(f"{where}: referral.duplicate_share: {r.duplicate_share} needs "
                            f"a second inviter, and referral.inviter_share makes {inviters}")
    if r.accept_within_s >= s.sale.countdown_s:
        raise ScenarioError(f"{where}: referral.accept_within_s: {r.accept_within_s} is not "
                            f"before the sale opens (sale.countdown_s {s.sale.countdown_s})")


def load_scenario_file(path: Path) -> Scenario:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ScenarioError(f"scenario file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(f"scenario file {path} cannot be read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{path.name}: not valid TOML: {exc}") from None
    scenario = build_scenario(data, path.name)
    if "name" not in data:
        scenario = dataclasses.replace(scenario, name=path.stem)
    return scenario


def bundled_names() -> list[str]:
    names = sorted(p.stem for p in SCENARIO_DIR.glob("*.toml"))
    return [*names, *BUNDLED_TRACES]


def resolve(name: str) -> Path:
    """A path for SCENARIO: an existing file, or a bundled scenario or trace by name."""
    path = Path(name)
    if path.is_file():
        return path
    if path.suffix == "" and "/" not in name:
        bundled = SCENARIO_DIR / f"{name}.toml"
        if bundled.is_file():
            return bundled
        if name in BUNDLED_TRACES:
            return BUNDLED_TRACES[name]
    raise ScenarioError(f"scenario {name!r}: no such file and no bundled scenario of that "
                        f"name (bundled: {', '.join(bundled_names())})")


def with_overrides(s: Scenario, *, viewers: int | None = None, duration: float | None = None,
                   speed: float | None = None, seed: int | None = None,
                   processes: int | None = None) -> Scenario:
    """The scenario with command-line options in place of the file's values; the
    options go through the same checks as the file (named by their flag)."""
    def check(flag: str, section: str, key: str, value: Any) -> Any:
        return check_value(SECTIONS[section], section, key, value, f"{flag} ({section}.{key})",
                           ScenarioError)

    if viewers is not None:
        s = dataclasses.replace(s, viewers=dataclasses.replace(
            s.viewers, count=check("--viewers", "viewers", "count", viewers)))
    if processes is not None:
        s = dataclasses.replace(s, viewers=dataclasses.replace(
            s.viewers, processes=check("--processes", "viewers", "processes", processes)))
    if duration is not None:
        s = dataclasses.replace(s, run=dataclasses.replace(
            s.run, duration_s=check("--duration", "run", "duration_s", duration)))
    if seed is not None:
        s = dataclasses.replace(s, run=dataclasses.replace(
            s.run, seed=check("--seed", "run", "seed", seed)))
    if speed is not None:
        if not s.trace.path:
            raise ScenarioError("--speed: applies to a recorded trace only, and "
                                f"{s.name!r} is a scenario file")
        s = dataclasses.replace(s, trace=dataclasses.replace(
            s.trace, speed=check("--speed", "trace", "speed", speed)))
    validate(s, "command line")
    return s
