"""Every Redis key and channel name, in one place.

A room's keys share the hash tag `{room_id}` so that every atomic script,
which touches only one room, works unchanged on Redis Cluster. Pure.
"""

from __future__ import annotations

from functools import lru_cache

ROOMS = "ls:rooms"  # set of room ids with live state
EPOCH = "ls:epoch"  # present while Redis holds state rebuilt from (or in step with) the store
REBUILD_LOCK = "ls:rebuild-lock"
# The pulse's schedule (server/features/pulse.py): zset room id -> ms when the room next has
# a timer, an expiring hold or a checkout that may need recovery due. Rooms with
# nothing due are absent: an idle room costs the pulse nothing.
DUE = "ls:due"
RECORDING_ROOMS = "ls:recording"  # set of rooms whose host switched recording on
KEYWORD_ROOMS = "ls:keyword-rooms"  # set of rooms that opened a keyword lottery
CLAIM_ROOMS = "ls:claim-rooms"  # set of rooms with a claim keyword (comment-to-buy) set


def guest_mints(client: str) -> str:
    """Recent guest identities minted for one client address (a zset of times, with
    a TTL): the per-IP mint limit, shared by every process."""
    return f"ls:mint:{{{client}}}"


class FanKeys:
    """Key names of one channel's fan points (server/features/fans.py), under the hash
    tag `{fan.<channel>}`: one award's script touches one channel only."""

    __slots__ = ("base", "loaded", "loading", "points")

    def __init__(self, channel: str) -> None:
        self.base = f"ls:fan:{{fan.{channel}}}"
        self.points = f"{self.base}:points"  # hash viewer -> points (the store's, cached)
        self.loaded = f"{self.base}:loaded"  # present once the store's points are loaded
        self.loading = f"{self.base}:loading"  # a process loads them now (TTL)

    def award(self, award_id: str) -> str:
        return f"{self.base}:award:{award_id}"

    def minute(self, viewer_id: str, minute: int) -> str:
        return f"{self.base}:min:{viewer_id}:{minute}"


@lru_cache(maxsize=1024)
def fan_keys(channel: str) -> FanKeys:
    return FanKeys(channel)


class RoomKeys:
    """Key names for one room. Cheap to build; hold one per room."""

    __slots__ = (
        "auctions",
        "base",
        "cancelled",
        "channel",
        "chat_by_minute",
        "chat_history",
        "chat_rate",
        "claim_words",
        "confirming",
        "coupons",
        "deals",
        "epoch",
        "gone",
        "holds",
        "likes",
        "log",
        "lotteries",
        "muted",
        "open_holds",
        "open_questions",
        "peak",
        "pins",
        "policy",
        "polls",
        "present",
        "products",
        "questions",
        "questions_per_viewer",
        "referral_paid",
        "referral_rewards",
        "referrals",
        "report",
        "room",
        "room_id",
        "sales",
        "seq",
        "timers",
        "uniq",
        "unpaid",
        "viewers_by_minute",
        "wl_ticket",
    )

    def __init__(self, room_id: str) -> None:
        self.room_id = room_id
        b = self.base = f"ls:{{{room_id}}}:"
        self.room = b + "room"
        self.seq = b + "seq"
        # The room's Redis epoch, equal to the store's (room_epochs): set last when the
        # room is loaded into Redis, so its absence means "being rebuilt".
        self.epoch = b + "epoch"
        self.log = b + "log"
        self.channel = b + "events"
        self.products = b + "products"  # hash product_id -> product JSON
        self.sales = b + "sales"  # hash sale_id -> product_id (every sale ever made)
        self.coupons = b + "coupons"  # set of coupon drop ids
        self.lotteries = b + "lotteries"  # set of lottery ids
        self.pins = b + "pins"  # list of pinned product ids, in pin order
        self.holds = b + "holds"  # zset hold_id -> expires_at_ms (holds that can expire)
        self.confirming = b + "confirming"  # zset hold_id -> ms checkout began
        self.timers = b + "timers"  # zset "kind:id" -> due_at_ms
        self.present = b + "present"  # hash viewer_id -> open connections
        # zset viewer_id -> ms their last connection closed (waitlists keep their place
        # for a while; scripts trim it). Built as base .. 'gone' in lua/lib/waitlist.lua.
        self.gone = b + "gone"
        self.wl_ticket = b + "wlticket"  # counter: the order viewers joined waitlists in
        # hash lower-case keyword -> {"product_id", "quantities"} (comment-to-buy)
        self.claim_words = b + "claimwords"
        self.uniq = b + "uniq"  # set of viewer ids ever joined
        self.peak = b + "peak"
        self.likes = b + "likes"
        self.muted = b + "muted"  # hash viewer_id -> muted until (ms)
        self.policy = b + "policy"  # hash: the room policy (server/core/policy.py)
        self.open_holds = b + "openholds"  # hash viewer_id -> holds held or in checkout
        self.chat_rate = b + "chatrate"  # hash: the room-wide chat token bucket (TTL)
        self.auctions = b + "auctions"  # set of auction ids
        # Viewers who won an auction and let its hold lapse: not eligible to bid again
        # in this show (built as base .. 'unpaid' in lua/release.lua).
        self.unpaid = b + "unpaid"
        # The last chat.history_size chat events (lua/publish.lua); a message the host
        # deletes is taken out (ChatData.forget_message).
        self.chat_history = b + "chathist"
        self.polls = b + "polls"  # set of poll ids
        self.deals = b + "deals"  # set of group deal ids
        self.questions = b + "questions"  # hash question_id -> question JSON
        self.open_questions = b + "qopen"  # zset unanswered question_id -> votes
        self.questions_per_viewer = b + "qmine"  # hash viewer_id -> unanswered questions
        # Referral invites (server/features/referrals.py): invitee -> inviter, invitee ->
        # the reward decision ('paid:<order>', 'capped:<order>', 'none:<order>'), and
        # inviter -> rewards paid.
        self.referrals = b + "referrals"
        self.referral_rewards = b + "refrewards"
        self.referral_paid = b + "refpaid"
        self.cancelled = b + "cancelled"  # hash order_id -> ms the host cancelled it
        # The post-show report (features/reports.py): counts (holds, holds_expired),
        # each minute's peak viewers (zset minute -> viewers), chat messages a minute.
        self.report = b + "report"
        self.viewers_by_minute = b + "viewersmin"
        self.chat_by_minute = b + "chatmin"

    def chat_minute(self, minute: int) -> str:
        return f"{self.base}chatmin:{minute}"

    def stock(self, product_id: str) -> str:
        return f"{self.base}stock:{product_id}"

    def product_sale(self, product_id: str) -> str:
        return f"{self.base}psale:{product_id}"

    def sale(self, sale_id: str) -> str:
        return f"{self.base}sale:{sale_id}"

    def bought(self, sale_id: str) -> str:
        return f"{self.base}bought:{sale_id}"

    def ip_bought(self, sale_id: str) -> str:
        """Units held or sold in a sale per client address (room policy limit_per_ip)."""
        return f"{self.base}ipbought:{sale_id}"

    def waitlist(self, product_id: str) -> str:
        """zset viewer_id -> ticket: the product's waitlist, in the order they joined
        (built as base .. 'wl:' .. product in lua/lib/waitlist.lua)."""
        return f"{self.base}wl:{product_id}"

    def slow_mode(self, viewer_id: str) -> str:
        """Present (with a TTL) while a viewer must wait before chatting in slow mode."""
        return f"{self.base}slow:{viewer_id}"

    def hold(self, hold_id: str) -> str:
        return f"{self.base}hold:{hold_id}"

    def request(self, actor_id: str, kind: str, request_id: str) -> str:
        """The remembered answer to one request; ids are per viewer and per message type."""
        return f"{self.base}req:{actor_id}:{kind}:{request_id}"

    def coupon(self, coupon_id: str) -> str:
        return f"{self.base}coupon:{coupon_id}"

    def claims(self, coupon_id: str) -> str:
        return f"{self.base}claims:{coupon_id}"

    def lottery(self, lottery_id: str) -> str:
        return f"{self.base}lottery:{lottery_id}"

    def entrants(self, lottery_id: str) -> str:
        return f"{self.base}entrants:{lottery_id}"

    def auction(self, auction_id: str) -> str:
        """An auction's hash (built as base .. 'auction:' .. id in lua/release.lua)."""
        return f"{self.base}auction:{auction_id}"

    def auction_chain(self, auction_id: str) -> str:
        """list: the auction's chain entries, in order (with each bidder's id)."""
        return f"{self.base}achain:{auction_id}"

    def auction_maxima(self, auction_id: str) -> str:
        """hash viewer_id -> the highest maximum bid they set."""
        return f"{self.base}amax:{auction_id}"

    def poll(self, poll_id: str) -> str:
        return f"{self.base}poll:{poll_id}"

    def poll_votes(self, poll_id: str) -> str:
        """hash viewer_id -> the option they voted for."""
        return f"{self.base}pvotes:{poll_id}"

    def group(self, group_id: str) -> str:
        return f"{self.base}group:{group_id}"

    def group_members(self, group_id: str) -> str:
        """list of viewer:hold, in the order they joined."""
        return f"{self.base}gmembers:{group_id}"

    def deal_members(self, deal_id: str) -> str:
        """hash viewer -> the group they are in (one per deal)."""
        return f"{self.base}dmembers:{deal_id}"

    def deal_groups(self, deal_id: str) -> str:
        """zset: the deal's open groups by fill deadline."""
        return f"{self.base}dgroups:{deal_id}"

    def question_voters(self, question_id: str) -> str:
        return f"{self.base}qvoters:{question_id}"

    def product_auction(self, product_id: str) -> str:
        """The product's open (or last) auction id."""
        return f"{self.base}pauction:{product_id}"


@lru_cache(maxsize=4096)
def room_keys(room_id: str) -> RoomKeys:
    """The shared RoomKeys of a room: built once, not per request (a buy used to
    spend a few percent of its time formatting these names)."""
    return RoomKeys(room_id)
