"""The order store's interface: the durable record of the show, whatever keeps it.

Features see only this module: the `OrderStore` protocol, the `Order` row, the
outcomes of an order write and the store's errors. `open_store(settings)` opens
the store the settings name: the SQLite file (server/state/sqlite_store.py, the
embedded default) or, with `store.url = "postgresql://…"`, a PostgreSQL database
(server/state/pg_store.py). Both implement `OrderStore` with the same guarantees;
features never know which one they have.

The guarantees every implementation gives (docs/faults.md):

- **Durable before return.** A write's coroutine returns only after the write is
  committed durably (SQLite: synchronous=FULL; PostgreSQL: synchronous_commit on);
  a buyer hears "placed" only then.
  A write that raises `StoreError` committed nothing and may be tried again.
- **Group commit.** Writes made while another transaction runs are committed
  together in the next one, in the order they were made, and each caller is
  answered when that transaction committed. Its outcome is as if the writes ran
  one by one in queue order.
- **The arbiter of a hold.** A hold ends in the store either as one order or as
  one abort, never both, decided inside a write transaction. Orders are unique
  per hold: a retried checkout never writes twice. An order is written only
  under the room's current epoch, which changes when Redis is rebuilt, fencing
  out orders promised under the Redis state the rebuild could not count.
- **The catalogue.** Rooms, products, sales, coupon drops, lotteries and their
  entries are kept here too, so Redis can be rebuilt from the store alone.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, Final, Protocol

if TYPE_CHECKING:
    from server.core.settings import Settings
    from server.state.pg_store import PgOrderStore
    from server.state.sqlite_store import SqliteOrderStore


@dataclass(frozen=True, slots=True)
class Order:
    order_id: str
    hold_id: str
    room_id: str
    product_id: str
    sale_id: str
    buyer_id: str
    quantity: int
    unit_price: int
    subtotal: int
    discount: int
    total: int
    currency: str
    coupon_id: str
    payment_ref: str
    created_at: int
    request_id: str = ""  # the checkout's request id, so a retry finds it after a loss

    def public(self) -> dict[str, Any]:
        # Every field is a str or an int: a flat dict is the whole copy.
        # (dataclasses.asdict deep-copies field by field: 7.7 % of a flash sale's
        # burst in a profile, for 1,000 orders.)
        return {name: getattr(self, name) for name in _ORDER_FIELDS}


_ORDER_FIELDS: Final = tuple(f.name for f in fields(Order))


class StoreClosed(RuntimeError):
    """The store is shutting down (a write) or closed (a read)."""


class StoreError(RuntimeError):
    """A write failed and nothing of it was committed (e.g. the file stayed locked
    past busy_timeout): the caller may safely try again."""


class StoreOutcomeUnknown(RuntimeError):
    """A write whose commit was neither confirmed nor denied within its bound (the
    connection broke while COMMIT was on its way, and the store did not say how the
    transaction ended): it may have committed. An order's hold is then left in
    'confirming' for recovery, which asks the store (the arbiter) and so never
    counts the hold's units twice."""


# What became of an order write: written (or already there for this hold), refused
# because the hold was aborted, or refused because its epoch is not the room's.
PLACED: Final = "placed"
ABORTED: Final = "aborted"
FENCED: Final = "fenced"
# What became of an abort: the abort row is there, or the hold has an order.
ORDERED: Final = "ordered"


class OrderStore(Protocol):
    """What features, the pulse and the app call on an open order store.

    Every write below is durable before it returns and raises `StoreError` when
    nothing of it was committed (the caller may try again), `StoreClosed` once
    the store is shutting down. Writes are group-committed in the order they
    were made. Reads see every write that has returned."""

    # ------------------------------------------------------------- health

    @property
    def busy_since(self) -> float | None:
        """The event loop time at which the write transaction now running began
        (None: no write running); readiness reports a stall from it."""
        ...

    @property
    def last_failed(self) -> bool:
        """Whether the last write transaction failed (readiness: "failing")."""
        ...

    def writer_stats(self) -> tuple[list[tuple[int, float]], int]:
        """Take the write transactions made since the last call (writes, seconds),
        and how many failed so far (for the metrics)."""
        ...

    async def wait_idle(self) -> None:
        """Wait until every write made so far has been committed or has failed
        (the drain, and a lottery draw reading the entries answered "entered")."""
        ...

    async def close(self) -> None:
        """Stop taking writes, commit everything already made, release the store.
        Idempotent."""
        ...

    # ------------------------------------------------------------- the arbiter

    async def place_order(self, order: Order, epoch: str) -> str:
        """Write the order unless its hold was aborted or `epoch` is no longer the
        room's: PLACED (also when this hold's order is already there: unique per
        hold, a retry writes nothing), ABORTED or FENCED. Decided and written in
        one transaction."""
        ...

    async def abort_hold(self, hold_id: str, room_id: str, reason: str, at: int) -> str:
        """Decide a hold as aborted unless it already has an order: ABORTED (the
        abort is recorded; no order can follow) or ORDERED."""
        ...

    async def set_room_epoch(self, room_id: str, epoch: str) -> None:
        """Make `epoch` the room's: every order written after this one under another
        epoch is FENCED (orders made before it are decided before it, in order)."""
        ...

    # ------------------------------------------------------------- catalogue writes

    async def add_room(self, room_id: str, title: str, stream_url: str, host_key_hash: str,
                       created_at: int) -> None:
        """Record a new room (its id is new: a second add of it fails)."""
        ...

    async def update_room(self, room_id: str, title: str | None,
                          stream_url: str | None) -> None:
        """Replace the room's title or stream or both (the host edited them; None:
        kept as it is); nothing else of the room changes."""
        ...

    async def set_room_state(self, room_id: str, state: str, starts_at: int | None,
                             ended_at: int | None, changed_at: int) -> None:
        """Set the room's lifecycle (scheduled, live, ended, archived), replacing it."""
        ...

    async def put_product(self, room_id: str, product_id: str, data: dict[str, Any],
                          stock: int) -> None:
        """Add a product at the end of the room's list, or replace its data and
        stock in place (its position is kept)."""
        ...

    async def add_sale(self, room_id: str, sale: dict[str, Any], created_at: int) -> None:
        """Record a new sale (`sale["sale_id"]`, `sale["product_id"]`, `sale["units"]`)."""
        ...

    async def stop_sale(self, sale_id: str, stopped_at: int) -> None:
        """Mark the sale stopped at `stopped_at`."""
        ...

    async def put_listing(self, room_id: str, product_id: str, open_: bool, limit: int,
                          changed_at: int) -> None:
        """Set the product's listing (buy-it-now: open or not, units per buyer),
        replacing it; the highest limit it ever had is kept for the audit."""
        ...

    async def put_claim_word(self, room_id: str, product_id: str, keyword: str | None,
                             quantities: bool, changed_at: int) -> str | None:
        """Set the product's claim keyword (comment-to-buy); None switches it off. The
        store decides that a keyword claims one product of a room (in any case): it
        returns the product that has it already (nothing written), else None."""
        ...

    async def add_coupon_drop(self, room_id: str, drop: dict[str, Any]) -> None:
        """Record a coupon drop (`drop["coupon_id"]` is new)."""
        ...

    async def end_coupon_drop(self, room_id: str, coupon_id: str, at: int) -> int | None:
        """The room's drop expires at `at` unless it expires sooner (the host ended it
        early): its expiry now, None when the room has no such drop."""
        ...

    async def add_lottery(self, room_id: str, lottery: dict[str, Any], seed: str) -> None:
        """Record a lottery (`lottery["lottery_id"]` is new) with its draw's seed."""
        ...

    async def add_lottery_entry(self, room_id: str, lottery_id: str, viewer_id: str,
                                at: int) -> None:
        """Record the viewer's entry, once per lottery and viewer (again: no change).
        Written before the entrant is told "entered"."""
        ...

    async def set_lottery_result(self, lottery_id: str, result: dict[str, Any]) -> None:
        """Record the lottery's draw."""
        ...

    async def set_room_policy(self, room_id: str, policy: dict[str, Any]) -> None:
        """Set the host's room policy, replacing it."""
        ...

    async def add_poll(self, room_id: str, poll: dict[str, Any]) -> None:
        """Record a poll (`poll["poll_id"]` is new)."""
        ...

    async def add_poll_vote(self, poll_id: str, viewer_id: str, option: int, at: int) -> None:
        """Record a viewer's vote (again for the same viewer: no change)."""
        ...

    async def close_poll(self, poll_id: str, closed_at: int) -> None:
        """Record that the poll closed."""
        ...

    async def set_pinned_message(self, room_id: str, pinned: dict[str, Any] | None) -> None:
        """Set (None: clear) the room's pinned message."""
        ...

    async def add_group_deal(self, room_id: str, deal: dict[str, Any]) -> None:
        """Record a group deal (`deal["deal_id"]` is new)."""
        ...

    async def close_group_deal(self, deal_id: str, closed_at: int) -> None:
        """Record that the host closed the deal."""
        ...

    async def add_question(self, room_id: str, question: dict[str, Any]) -> None:
        """Record a question (`question["question_id"]` is new; again: no change)."""
        ...

    async def add_question_vote(self, question_id: str, viewer_id: str) -> None:
        """Record a viewer's upvote (again: no change)."""
        ...

    async def answer_question(self, question_id: str, answered_at: int) -> None:
        """Record that the host answered the question."""
        ...

    async def add_auction(self, room_id: str, terms: dict[str, Any], salt: str) -> None:
        """Record an auction (`terms["auction_id"]` is new) with its pseudonym salt."""
        ...

    async def add_auction_bid(self, auction_id: str, seq: int, viewer_id: str, name: str,
                              entry: dict[str, Any]) -> None:
        """Record an accepted bid's chain entry (again for the same seq: no change)."""
        ...

    async def set_auction_max(self, auction_id: str, viewer_id: str, name: str,
                              max_amount: int, at: int) -> None:
        """Record a bidder's maximum, kept only when higher than the one recorded."""
        ...

    async def set_auction_result(self, auction_id: str, result: dict[str, Any]) -> None:
        """Record (or update: a second-chance offer) the auction's result."""
        ...

    # ------------------------------------------------------------- reads

    async def rooms(self) -> list[dict[str, Any]]:
        """Every room (room_id, title, stream_url, host_key_hash, created_at),
        oldest first."""
        ...

    async def room(self, room_id: str) -> dict[str, Any] | None:
        """One room as `rooms` gives it, None when there is no such room."""
        ...

    async def room_state(self, room_id: str) -> dict[str, Any]:
        """The room's lifecycle: state ('live' when none was set), starts_at, ended_at."""
        ...

    async def room_states(self) -> dict[str, dict[str, Any]]:
        """room id -> its lifecycle, for rooms that have one set (the others are live)."""
        ...

    async def public_rooms(self, limit: int, before: tuple[int, str] | None,
                           stale_before: int) -> list[dict[str, Any]]:
        """Live and scheduled rooms, newest first, after the cursor `before`
        (created_at, room_id) of the last room of the previous page; at most
        `limit`. Scheduled rooms whose start is older than `stale_before` (never
        went live) are left out."""
        ...

    async def room_policy(self, room_id: str) -> dict[str, Any] | None:
        """The host's room policy, None when none was set (the defaults)."""
        ...

    async def room_epoch(self, room_id: str) -> str:
        """The room's epoch, "" when none was set."""
        ...

    async def products(self, room_id: str) -> list[tuple[dict[str, Any], int]]:
        """The room's products (data, stock) in the order they were added."""
        ...

    async def sales(self, room_id: str) -> list[tuple[dict[str, Any], int | None]]:
        """The room's sales (data, stopped_at or None) in the order they were made."""
        ...

    async def coupon_drops(self, room_id: str) -> list[dict[str, Any]]:
        """The room's coupon drops in the order they were made."""
        ...

    async def lotteries(self, room_id: str) -> list[tuple[dict[str, Any], str, Any]]:
        """The room's lotteries (data, seed, result or None) in the order they were made."""
        ...

    async def polls(self, room_id: str) -> list[tuple[dict[str, Any], int | None,
                                                      dict[str, int]]]:
        """The room's polls (data, closed at or None, votes by viewer), oldest first."""
        ...

    async def pinned_message(self, room_id: str) -> dict[str, Any] | None:
        """The room's pinned message, or None."""
        ...

    async def group_deals(self, room_id: str) -> list[tuple[dict[str, Any], int | None]]:
        """The room's group deals (data, closed at or None), oldest first."""
        ...

    async def questions(self, room_id: str) -> list[tuple[dict[str, Any], int | None,
                                                          list[str]]]:
        """The room's questions (data, answered at or None, upvoters), oldest first."""
        ...

    async def auctions(self, room_id: str) -> list[tuple[dict[str, Any], str, Any]]:
        """The room's auctions (terms, salt, result or None), in the order they started."""
        ...

    async def auction_bids(self, auction_id: str) -> list[tuple[str, str, dict[str, Any]]]:
        """The auction's recorded bids (bidder id, name, chain entry) in seq order."""
        ...

    async def auction_maxima(self, auction_id: str) -> list[tuple[str, str, int, int]]:
        """Each bidder's (id, name, highest maximum, when set), earliest first."""
        ...

    async def lottery_entrants(self, room_id: str,
                               lottery_id: str | None = None) -> dict[str, list[str]]:
        """lottery id -> its entrants (sorted), for one lottery or every one of the room."""
        ...

    async def orders(self, room_id: str, limit: int = 1000, offset: int = 0) -> list[Order]:
        """The room's orders by (created_at, order_id), a page of `limit` from `offset`."""
        ...

    async def order_for_hold(self, hold_id: str) -> Order | None:
        """The hold's order (at most one: unique per hold), None when it has none."""
        ...

    async def aborted(self, room_id: str) -> list[str]:
        """The room's holds decided as aborted (their ids, sorted)."""
        ...

    async def aborted_count(self, room_id: str) -> int:
        """How many of the room's holds were decided as aborted."""
        ...

    async def outcome_conflicts(self, room_id: str) -> int:
        """Holds with both an order and an abort: zero by construction; the audit
        proves it."""
        ...

    async def oversold_sales(self, room_id: str) -> dict[str, tuple[int, int]]:
        """Sales whose orders exceed their units: sale -> (sold, units). The record
        alone, without Redis, proves there was no oversell."""
        ...

    async def listings(self, room_id: str) -> dict[str, tuple[bool, int, int]]:
        """product id -> (open, limit per buyer, highest limit it ever had), for the
        products whose listing the host set (the others are closed, at the default)."""
        ...

    async def claim_words(self, room_id: str) -> dict[str, tuple[str, bool]]:
        """product id -> (claim keyword, quantities allowed), for those switched on."""
        ...

    async def oversold_products(self, room_id: str) -> dict[str, tuple[int, int]]:
        """Products whose orders exceed their stock: product -> (sold, stock). With
        `oversold_sales`, the record alone proves no oversell, also of units bought
        outside a flash sale."""
        ...

    async def sold_by_product(self, room_id: str) -> dict[str, int]:
        """product id -> units ordered (products with orders only)."""
        ...

    async def sold_by_sale_and_buyer(self, room_id: str) -> dict[str, dict[str, int]]:
        """sale id -> buyer id -> units ordered (the rebuild's per-buyer limits)."""
        ...

    async def coupon_uses(self, room_id: str) -> dict[str, dict[str, str]]:
        """coupon id -> buyer id -> the order that used it."""
        ...

    async def order_totals(self, room_id: str) -> dict[str, int]:
        """The room's totals of orders not cancelled: orders, units, revenue and
        distinct buyers; and `cancelled`, the orders cancelled."""
        ...

    async def cancel_order(self, room_id: str, order_id: str, reason: str, at: int,
                           epoch: str) -> tuple[str, Order, dict[str, Any]] | None:
        """Record the order's cancellation (again: the first one stands): ('ok', the
        order, its cancellation: reason, cancelled_at, epoch); ('refunded', order, {})
        for an order refunded in part, ('fenced', order, {}) when the room's Redis
        epoch is no longer `epoch` (a rebuild began: try again); None when the room
        has no such order. Every count of what was sold leaves it out."""
        ...

    async def refund_order(self, room_id: str, order_id: str, request_id: str,
                           quantity: int | None, restock: bool, reason: str, at: int,
                           epoch: str) -> tuple[str, Order, dict[str, Any]] | None:
        """Record a refund of `quantity` units (None: all not refunded yet), once per
        request id, with its `order.refunded` event: ('new', order, refund), ('again',
        order, the refund recorded before), or a refusal ('cancelled', 'refunded',
        'too_many' with `left`, 'fenced': the room's Redis epoch is no longer `epoch`);
        None when the room has no such order."""
        ...

    async def first_order_of(self, room_id: str, buyer_id: str) -> Order | None:
        """The buyer's first order in the room, None before any."""
        ...

    async def refunds(self, room_id: str) -> dict[str, list[dict[str, Any]]]:
        """order id -> its refunds, oldest first."""
        ...

    async def cancellations(self, room_id: str) -> dict[str, dict[str, Any]]:
        """order id -> reason and cancelled_at of the room's cancelled orders."""
        ...

    # ------------------------------------------------------------- fans and referrals

    async def set_room_channel(self, room_id: str, channel: str) -> None:
        """Record the channel (the room's owner) the room's fan points go to."""
        ...

    async def room_channel(self, room_id: str) -> str:
        """The room's channel ('main' when none was recorded)."""
        ...

    async def add_fan_award(self, channel: str, award_id: str, viewer_id: str, nickname: str,
                            points: int, kind: str, room_id: str, at: int) -> bool:
        """Record an award and add it to the viewer's points, once per id: False when
        the id was recorded before (nothing changes)."""
        ...

    async def reverse_fan_award(self, channel: str, award_id: str, reversal_id: str,
                                room_id: str, at: int) -> tuple[str, int] | None:
        """Take back a recorded award under `reversal_id` (once): (viewer, points taken
        back), None when the award was never recorded or was taken back before."""
        ...

    async def fan_totals(self, channel: str) -> list[tuple[str, int]]:
        """Every viewer's points in the channel."""
        ...

    async def top_fans(self, channel: str, limit: int) -> list[dict[str, Any]]:
        """The channel's viewers with the most points (viewer_id, nickname, points)."""
        ...

    async def set_referral_program(self, room_id: str, program: dict[str, Any]) -> None:
        """Set the room's referral program."""
        ...

    async def referral_program(self, room_id: str) -> dict[str, Any] | None:
        ...

    async def add_invite_sent(self, room_id: str, inviter: str, nickname: str,
                              at: int, count: int = 1) -> None:
        """Count `count` invite links asked for by the inviter."""
        ...

    async def inviter_nickname(self, room_id: str, invitee: str) -> str | None:
        """The nickname of the inviter whose link the invitee accepted, if any."""
        ...

    async def add_referral(self, room_id: str, invitee: str, inviter: str,
                           inviter_nickname: str, nickname: str, at: int) -> str:
        """Record that the invitee joined through the inviter's link, unless another
        link of the room was recorded for them first; the inviter that counts."""
        ...

    async def add_referral_reward(self, room_id: str, invitee: str, inviter: str,
                                  order_id: str, state: str, reward: dict[str, Any], at: int,
                                  coupon: dict[str, Any] | None) -> bool:
        """Record an invitee's reward decision, and the reward's coupon drop with it (one
        transaction); False when the invitee's decision was recorded before."""
        ...

    async def reverse_referral_reward(self, room_id: str, invitee: str,
                                      order_id: str) -> dict[str, Any] | None:
        """Mark the invitee's paid reward for `order_id` reversed (once): the reward row
        (inviter, reward) it was, None when there was no such paid reward. A coupon
        reward's drop is made to expire then, so that a rebuild does not hand it back."""
        ...

    async def referral_tree(self, room_id: str) -> dict[str, list[dict[str, Any]]]:
        """The room's `invites` (inviter, nickname, sent, first_at), `referrals`
        (invitee, inviter, inviter_nickname, nickname, joined_at) and `rewards` (invitee, inviter,
        order_id, state, reward, at) rows."""
        ...

    # ------------------------------------------------------------- webhooks

    async def add_outbox(self, room_id: str, kind: str, subject: str, data: dict[str, Any],
                         at: int) -> None:
        """Write an event to the outbox (once per kind and subject). Orders' events are
        written in their own transactions instead (place_order, cancel_order)."""
        ...

    async def add_endpoint(self, endpoint: dict[str, Any]) -> None:
        """Register an endpoint; it gets the events written from now on."""
        ...

    async def endpoints(self, room_id: str | None, everywhere: bool = False
                        ) -> list[dict[str, Any]]:
        """The room's endpoints (None: the server-wide ones; `everywhere`: all),
        secrets included."""
        ...

    async def disable_endpoint(self, endpoint_id: str, at: int) -> bool:
        ...

    async def has_endpoints(self) -> bool:
        """Whether any endpoint is registered (the dispatcher idles otherwise)."""
        ...

    async def fan_out(self, now: int, batch: int) -> int:
        """Hand each endpoint's new outbox events to its deliveries; how many."""
        ...

    async def due_heads(self, now: int, limit: int, owner: str) -> list[dict[str, Any]]:
        """Each endpoint's oldest pending delivery, when it is due and no other process
        than `owner` holds the endpoint's lease, with its event."""
        ...

    async def oldest_pending(self) -> int | None:
        """When the oldest event still pending for some endpoint was written (ms)."""
        ...

    async def next_due(self) -> int | None:
        """When the earliest endpoint's oldest pending delivery is due (ms)."""
        ...

    async def lease_endpoint(self, endpoint_id: str, owner: str, now: int,
                             until: int) -> bool:
        """Deliver to the endpoint alone until `until` (one process at a time keeps its
        order): True when `owner` holds the lease."""
        ...

    async def record_attempt(self, endpoint_id: str, seq: int, state: str,
                             status: int | None, error: str, at: int, next_at: int) -> None:
        """An attempt's outcome: `state` 'delivered', 'pending' (retry at `next_at`)
        or 'dead'."""
        ...

    async def deliveries(self, endpoint_id: str, limit: int) -> list[dict[str, Any]]:
        """The endpoint's delivery log, newest first."""
        ...

    async def replay(self, endpoint_id: str, from_event_id: str, now: int) -> int | None:
        """Deliver again every event of the endpoint from `from_event_id` on (the
        endpoint's own kinds and rooms); how many, None for an unknown event or
        endpoint."""
        ...


async def open_store(settings: Settings) -> OrderStore:
    """Open the order store the settings name and return it ready for writes: the
    PostgreSQL database at `store.url` when one is set (server/state/pg_store.py),
    else the SQLite file at `settings.store_path`; the caller closes it."""
    # Imported here: an implementation's driver is loaded only when it is chosen,
    # and the implementations import this module's types.
    store: SqliteOrderStore | PgOrderStore
    if settings.store.url:
        from server.state.pg_store import PgOrderStore

        store = PgOrderStore(settings.store.url, settings.store.batch_max,
                             settings.store.busy_timeout_ms, settings.store.pool_size)
    else:
        from server.state.sqlite_store import SqliteOrderStore

        store = SqliteOrderStore(settings.store_path, settings.store.batch_max,
                                 settings.store.busy_timeout_ms)
    try:
        await store.open()
    except BaseException:
        # Half open (a newer schema, a lock held past busy_timeout): its connections
        # and their threads go now, since no caller holds the store to close it.
        await store.close()
        raise
    return store
