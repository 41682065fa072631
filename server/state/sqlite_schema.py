"""The SQLite order store's tables, their migrations and the order row's columns
(server/state/sqlite_store.py runs them; the interface is server/state/store.py).

`SCHEMA` creates every table and index that is missing (IF NOT EXISTS), so a file
of an older schema gains the new tables when it is opened; `create_or_migrate`
then changes what an older schema has differently, inside the caller's
transaction, once and whole.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Final

import aiosqlite

# Re-exported: the SQLite store's modules import the shared rows from here.
from server.state.store_rows import (
    ORDER_COLUMNS,
    order_row,
    outbox_row,
    outbox_row_of_order,
)

__all__ = ["INSERT_ORDER", "INSERT_OUTBOX", "ORDER_COLUMNS", "SCHEMA", "SCHEMA_VERSION",
           "create_or_migrate", "order_row", "outbox_row", "outbox_row_of_order"]

SCHEMA_VERSION: Final = 3
SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS rooms (
    room_id TEXT PRIMARY KEY,
    title TEXT NOT NULL,
    stream_url TEXT NOT NULL,
    host_key_hash TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS products (
    room_id TEXT NOT NULL,
    product_id TEXT NOT NULL,
    data TEXT NOT NULL,
    stock INTEGER NOT NULL CHECK (stock >= 0),
    position INTEGER NOT NULL,
    PRIMARY KEY (room_id, product_id)
);
CREATE TABLE IF NOT EXISTS sales (
    sale_id TEXT PRIMARY KEY,
    room_id TEXT NOT NULL,
    product_id TEXT NOT NULL,
    data TEXT NOT NULL,
    stopped_at INTEGER,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS coupon_drops (
    coupon_id TEXT PRIMARY KEY,
    room_id TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS lotteries (
    lottery_id TEXT PRIMARY KEY,
    room_id TEXT NOT NULL,
    data TEXT NOT NULL,
    seed TEXT NOT NULL,
    result TEXT
);
CREATE TABLE IF NOT EXISTS orders (
    order_id TEXT PRIMARY KEY,
    hold_id TEXT NOT NULL UNIQUE,
    room_id TEXT NOT NULL,
    product_id TEXT NOT NULL,
    sale_id TEXT NOT NULL,
    buyer_id TEXT NOT NULL,
    quantity INTEGER NOT NULL CHECK (quantity > 0),
    unit_price INTEGER NOT NULL,
    subtotal INTEGER NOT NULL,
    discount INTEGER NOT NULL,
    total INTEGER NOT NULL,
    currency TEXT NOT NULL,
    coupon_id TEXT NOT NULL,
    payment_ref TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    request_id TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS orders_room ON orders (room_id, product_id);
CREATE INDEX IF NOT EXISTS orders_sale ON orders (sale_id, buyer_id);
-- Schema 2: the outcome arbiter. A hold given up by checkout recovery gets an
-- abort row; no order can be written for it afterwards (and no abort row is
-- written for a hold that has an order).
CREATE TABLE IF NOT EXISTS aborted_holds (
    hold_id TEXT PRIMARY KEY,
    room_id TEXT NOT NULL,
    reason TEXT NOT NULL,
    aborted_at INTEGER NOT NULL
);
-- Lottery entries, written before the entrant is told "entered": the draw and a
-- rebuild of Redis read them from here.
CREATE TABLE IF NOT EXISTS lottery_entries (
    lottery_id TEXT NOT NULL,
    viewer_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    entered_at INTEGER NOT NULL,
    PRIMARY KEY (lottery_id, viewer_id)
);
-- The room's Redis epoch: set when Redis is loaded for the room. An order whose
-- checkout began under another epoch is refused (fenced).
CREATE TABLE IF NOT EXISTS room_epochs (
    room_id TEXT PRIMARY KEY,
    epoch TEXT NOT NULL
);
-- Schema 3: a room's lifecycle (server/features/rooms.py). A room without a row is live
-- (rooms made before schema 3 were).
CREATE TABLE IF NOT EXISTS room_states (
    room_id TEXT PRIMARY KEY,
    state TEXT NOT NULL CHECK (state IN ('scheduled', 'live', 'ended', 'archived')),
    starts_at INTEGER,
    ended_at INTEGER,
    changed_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS rooms_newest ON rooms (created_at, room_id);
-- The host's room policy (server/core/policy.py) as JSON; no row: the defaults. A new
-- table rather than a column, so older stores gain it without a migration.
CREATE TABLE IF NOT EXISTS room_policies (
    room_id TEXT PRIMARY KEY,
    data TEXT NOT NULL
);
-- Buy-it-now (server/features/listings.py): a product's listing as the host set it.
-- No row: closed, at the default limit. A new table, so older stores gain it as is.
CREATE TABLE IF NOT EXISTS listings (
    room_id TEXT NOT NULL,
    product_id TEXT NOT NULL,
    open INTEGER NOT NULL CHECK (open IN (0, 1)),
    limit_per_buyer INTEGER NOT NULL CHECK (limit_per_buyer > 0),
    max_limit INTEGER NOT NULL CHECK (max_limit >= limit_per_buyer),
    changed_at INTEGER NOT NULL,
    PRIMARY KEY (room_id, product_id)
);
-- Comment-to-buy (server/features/claims.py): a product's claim keyword. No row, or
-- keyword NULL: off.
CREATE TABLE IF NOT EXISTS claim_words (
    room_id TEXT NOT NULL,
    product_id TEXT NOT NULL,
    keyword TEXT,
    quantities INTEGER NOT NULL CHECK (quantities IN (0, 1)),
    changed_at INTEGER NOT NULL,
    PRIMARY KEY (room_id, product_id)
);
-- One product per keyword in a room, in any case (keywords are ASCII letters and digits).
CREATE UNIQUE INDEX IF NOT EXISTS claim_words_keyword
    ON claim_words (room_id, keyword COLLATE NOCASE) WHERE keyword IS NOT NULL;
-- Polls (server/features/social.py): the poll as JSON, and once closed when; each
-- viewer's one vote. New tables: older stores gain them.
CREATE TABLE IF NOT EXISTS polls (
    poll_id TEXT PRIMARY KEY,
    room_id TEXT NOT NULL,
    data TEXT NOT NULL,
    closed_at INTEGER
);
CREATE INDEX IF NOT EXISTS polls_by_room ON polls (room_id);
CREATE TABLE IF NOT EXISTS poll_votes (
    poll_id TEXT NOT NULL,
    viewer_id TEXT NOT NULL,
    option INTEGER NOT NULL,
    at INTEGER NOT NULL,
    PRIMARY KEY (poll_id, viewer_id)
);
-- Questions (Q&A, server/features/social.py) as JSON, with when answered; each
-- viewer's one upvote of a question.
CREATE TABLE IF NOT EXISTS questions (
    question_id TEXT PRIMARY KEY,
    room_id TEXT NOT NULL,
    data TEXT NOT NULL,
    answered_at INTEGER
);
CREATE INDEX IF NOT EXISTS questions_by_room ON questions (room_id);
CREATE TABLE IF NOT EXISTS question_votes (
    question_id TEXT NOT NULL,
    viewer_id TEXT NOT NULL,
    PRIMARY KEY (question_id, viewer_id)
);
-- Group deals (server/features/group_buys.py) as JSON, with when the host closed
-- them. Groups live in Redis only, as holds do.
CREATE TABLE IF NOT EXISTS group_deals (
    deal_id TEXT PRIMARY KEY,
    room_id TEXT NOT NULL,
    data TEXT NOT NULL,
    closed_at INTEGER
);
-- The host's pinned message (server/features/social.py); no row: none.
CREATE TABLE IF NOT EXISTS pinned_messages (
    room_id TEXT PRIMARY KEY,
    data TEXT NOT NULL
);
-- Auctions (server/features/auctions.py): the terms as JSON, the pseudonym salt (never
-- published), and once over the result as JSON. New tables: older stores gain them.
CREATE TABLE IF NOT EXISTS auctions (
    auction_id TEXT PRIMARY KEY,
    room_id TEXT NOT NULL,
    data TEXT NOT NULL,
    salt TEXT NOT NULL,
    result TEXT
);
CREATE INDEX IF NOT EXISTS auctions_by_room ON auctions (room_id);
-- Each accepted bid: the chain entry as published, with the bidder behind the
-- pseudonym. Written before the bidder hears "accepted"; a rebuild of Redis replays them.
CREATE TABLE IF NOT EXISTS auction_bids (
    auction_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    viewer_id TEXT NOT NULL,
    name TEXT NOT NULL,
    entry TEXT NOT NULL,
    PRIMARY KEY (auction_id, seq)
);
-- The highest maximum (proxy) bid each bidder set, and when: the leader's proxy and the
-- runner-up of a second-chance offer come from these.
CREATE TABLE IF NOT EXISTS auction_maxima (
    auction_id TEXT NOT NULL,
    viewer_id TEXT NOT NULL,
    name TEXT NOT NULL,
    max_amount INTEGER NOT NULL,
    set_at INTEGER NOT NULL,
    PRIMARY KEY (auction_id, viewer_id)
);
-- Orders the host cancelled (server/features/orders.py): their units went back to stock,
-- their buyers' limits and coupons back to them. Every count of what was sold leaves
-- them out. `epoch`: the room's Redis epoch the cancellation was recorded under.
CREATE TABLE IF NOT EXISTS order_cancellations (
    order_id TEXT PRIMARY KEY,
    room_id TEXT NOT NULL,
    reason TEXT NOT NULL,
    cancelled_at INTEGER NOT NULL,
    epoch TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS order_cancellations_room ON order_cancellations (room_id);
-- The webhook outbox (server/features/webhooks.py): each event written in the same
-- transaction as what it tells (an order's placement or cancellation), once per id.
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE,
    room_id TEXT NOT NULL,
    type TEXT NOT NULL,
    data TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
-- Registered endpoints (room_id NULL: every room); `cursor`: the last outbox seq
-- handed to its deliveries.
CREATE TABLE IF NOT EXISTS webhook_endpoints (
    endpoint_id TEXT PRIMARY KEY,
    room_id TEXT,
    url TEXT NOT NULL,
    secret TEXT NOT NULL,
    events TEXT NOT NULL,
    description TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    cursor INTEGER NOT NULL,
    disabled_at INTEGER,
    lease_owner TEXT NOT NULL DEFAULT '',
    lease_until INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS webhook_deliveries (
    endpoint_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    next_at INTEGER NOT NULL,
    last_status INTEGER,
    last_error TEXT NOT NULL DEFAULT '',
    last_at INTEGER,
    delivered_at INTEGER,
    since INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (endpoint_id, seq)
);
CREATE INDEX IF NOT EXISTS webhook_pending ON webhook_deliveries (state, endpoint_id, seq);
-- Refunds of placed orders (server/features/orders.py): money back for some or all of
-- an order's units; `restock` 1: those units went back to stock (every count of what
-- was sold leaves them out), 0: money only. Once per (order, request id).
CREATE TABLE IF NOT EXISTS order_refunds (
    refund_id TEXT PRIMARY KEY,
    order_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    quantity INTEGER NOT NULL CHECK (quantity > 0),
    amount INTEGER NOT NULL,
    restock INTEGER NOT NULL,
    reason TEXT NOT NULL,
    refunded_at INTEGER NOT NULL,
    epoch TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS order_refunds_order ON order_refunds (order_id);
CREATE INDEX IF NOT EXISTS order_refunds_room ON order_refunds (room_id);
-- The channel (the room's owner) fan points accumulate in; no row: 'main'.
CREATE TABLE IF NOT EXISTS room_channels (
    room_id TEXT PRIMARY KEY,
    channel TEXT NOT NULL
);
-- Fan points per channel and viewer (server/features/fans.py), and each award once
-- under its id: the total is the sum of the awards.
CREATE TABLE IF NOT EXISTS fan_points (
    channel TEXT NOT NULL,
    viewer_id TEXT NOT NULL,
    nickname TEXT NOT NULL,
    points INTEGER NOT NULL,
    PRIMARY KEY (channel, viewer_id)
);
CREATE INDEX IF NOT EXISTS fan_points_top ON fan_points (channel, points DESC);
CREATE TABLE IF NOT EXISTS fan_awards (
    channel TEXT NOT NULL,
    award_id TEXT NOT NULL,
    viewer_id TEXT NOT NULL,
    points INTEGER NOT NULL,
    kind TEXT NOT NULL,
    room_id TEXT NOT NULL,
    at INTEGER NOT NULL,
    PRIMARY KEY (channel, award_id)
);
-- Referral invites (server/features/referrals.py): the host's program, the links each
-- inviter asked for, who joined through whose link (the first accepted counts), and
-- the reward decision of each invitee's first order.
CREATE TABLE IF NOT EXISTS referral_programs (
    room_id TEXT PRIMARY KEY,
    data TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS referral_invites (
    room_id TEXT NOT NULL,
    inviter TEXT NOT NULL,
    nickname TEXT NOT NULL,
    sent INTEGER NOT NULL,
    first_at INTEGER NOT NULL,
    PRIMARY KEY (room_id, inviter)
);
CREATE TABLE IF NOT EXISTS referrals (
    room_id TEXT NOT NULL,
    invitee TEXT NOT NULL,
    inviter TEXT NOT NULL,
    inviter_nickname TEXT NOT NULL,
    nickname TEXT NOT NULL,
    joined_at INTEGER NOT NULL,
    PRIMARY KEY (room_id, invitee)
);
CREATE TABLE IF NOT EXISTS referral_rewards (
    room_id TEXT NOT NULL,
    invitee TEXT NOT NULL,
    inviter TEXT NOT NULL,
    order_id TEXT NOT NULL,
    state TEXT NOT NULL,
    reward TEXT NOT NULL,
    at INTEGER NOT NULL,
    PRIMARY KEY (room_id, invitee)
);
"""

INSERT_ORDER: Final = (
    f"INSERT INTO orders ({', '.join(ORDER_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in ORDER_COLUMNS)}) ON CONFLICT(hold_id) DO NOTHING"
)


# Its parameters: store_rows.outbox_row.
INSERT_OUTBOX: Final = ("INSERT INTO outbox (event_id, room_id, type, data, created_at) "
                        "VALUES (?, ?, ?, ?, ?) ON CONFLICT(event_id) DO NOTHING")


async def create_or_migrate(db: aiosqlite.Connection, path: Path) -> None:
    """Create the missing tables and bring an older file to SCHEMA_VERSION. Runs
    inside the caller's write transaction: several worker processes open the same
    file at start, and a migration must run once and whole. Refuses a file of a
    newer schema than this server's."""
    # Statement by statement (executescript would commit the transaction first).
    statement = ""
    for line in SCHEMA.splitlines(keepends=True):
        statement += line
        if sqlite3.complete_statement(statement):
            await db.execute(statement)
            statement = ""
    async with db.execute("SELECT version FROM schema_version") as cur:
        row = await cur.fetchone()
    if row is None:
        await db.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION,))
    elif row[0] > SCHEMA_VERSION:
        raise RuntimeError(f"order store {path} has schema {row[0]}, newer than "
                           f"this server's {SCHEMA_VERSION}")
    elif row[0] < SCHEMA_VERSION:
        # New tables and indexes come from SCHEMA above (IF NOT EXISTS).
        if row[0] < 2:
            # 1 -> 2: orders gain the checkout's request id.
            await db.execute(
                "ALTER TABLE orders ADD COLUMN request_id TEXT NOT NULL DEFAULT ''")
        # 2 -> 3: room_states; existing rooms have no row, so they stay live.
        await db.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION,))
