"""The PostgreSQL order store's tables and their versioned migrations
(server/state/pg_store.py runs them; the interface is server/state/store.py).

`MIGRATIONS` is the schema's history, one step per version: a database at version
N gets every step after N, in order, inside one transaction taken under an
advisory lock (`migrate`), so two servers starting together migrate once and
whole, and a server refuses a database of a newer version than it knows.

Version 1 is SQLite's schema 3 (server/state/sqlite_schema.py) in PostgreSQL's
types: every integer is a BIGINT (times are milliseconds), JSON is kept as the
text orjson wrote (read back byte for byte as SQLite does), and the tables that
SQLite lists in `rowid` order gain `pos`, an identity column, for the same order.
Version 2 adds the indexes that PostgreSQL's readers (several processes, larger
stores) need beyond SQLite's: a room's orders page by page, a buyer's first
order, pending webhook deliveries and the outbox by time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from server.state.pg_driver import Connection

# Advisory lock keys (pg_advisory_xact_lock's one bigint): the migration, and every
# write transaction (the single-writer rule SQLite's BEGIN IMMEDIATE gives, across
# every process on the database: the arbiter's checks and inserts, the epoch fence
# and the outbox's commit order rest on it). Arbitrary, fixed constants ("livesell").
MIGRATION_LOCK: Final = 0x6C69766573656C6C
WRITER_LOCK: Final = 0x6C69766573656C6D

SCHEMA_V1: Final = """
CREATE TABLE rooms (
    room_id TEXT PRIMARY KEY,
    title TEXT NOT NULL,
    stream_url TEXT NOT NULL,
    host_key_hash TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX rooms_newest ON rooms (created_at, room_id);
CREATE TABLE products (
    room_id TEXT NOT NULL,
    product_id TEXT NOT NULL,
    data TEXT NOT NULL,
    stock BIGINT NOT NULL CHECK (stock >= 0),
    position BIGINT NOT NULL,
    PRIMARY KEY (room_id, product_id)
);
CREATE TABLE sales (
    sale_id TEXT PRIMARY KEY,
    room_id TEXT NOT NULL,
    product_id TEXT NOT NULL,
    data TEXT NOT NULL,
    stopped_at BIGINT,
    created_at BIGINT NOT NULL,
    pos BIGINT GENERATED ALWAYS AS IDENTITY
);
CREATE INDEX sales_by_room ON sales (room_id);
CREATE TABLE coupon_drops (
    coupon_id TEXT PRIMARY KEY,
    room_id TEXT NOT NULL,
    data TEXT NOT NULL,
    pos BIGINT GENERATED ALWAYS AS IDENTITY
);
CREATE INDEX coupon_drops_by_room ON coupon_drops (room_id);
CREATE TABLE lotteries (
    lottery_id TEXT PRIMARY KEY,
    room_id TEXT NOT NULL,
    data TEXT NOT NULL,
    seed TEXT NOT NULL,
    result TEXT,
    pos BIGINT GENERATED ALWAYS AS IDENTITY
);
CREATE INDEX lotteries_by_room ON lotteries (room_id);
CREATE TABLE orders (
    order_id TEXT PRIMARY KEY,
    hold_id TEXT NOT NULL UNIQUE,
    room_id TEXT NOT NULL,
    product_id TEXT NOT NULL,
    sale_id TEXT NOT NULL,
    buyer_id TEXT NOT NULL,
    quantity BIGINT NOT NULL CHECK (quantity > 0),
    unit_price BIGINT NOT NULL,
    subtotal BIGINT NOT NULL,
    discount BIGINT NOT NULL,
    total BIGINT NOT NULL,
    currency TEXT NOT NULL,
    coupon_id TEXT NOT NULL,
    payment_ref TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    request_id TEXT NOT NULL DEFAULT ''
);
CREATE INDEX orders_room ON orders (room_id, product_id);
CREATE INDEX orders_sale ON orders (sale_id, buyer_id);
CREATE TABLE aborted_holds (
    hold_id TEXT PRIMARY KEY,
    room_id TEXT NOT NULL,
    reason TEXT NOT NULL,
    aborted_at BIGINT NOT NULL
);
CREATE INDEX aborted_holds_room ON aborted_holds (room_id);
CREATE TABLE lottery_entries (
    lottery_id TEXT NOT NULL,
    viewer_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    entered_at BIGINT NOT NULL,
    PRIMARY KEY (lottery_id, viewer_id)
);
CREATE INDEX lottery_entries_room ON lottery_entries (room_id);
CREATE TABLE room_epochs (
    room_id TEXT PRIMARY KEY,
    epoch TEXT NOT NULL
);
CREATE TABLE room_states (
    room_id TEXT PRIMARY KEY,
    state TEXT NOT NULL CHECK (state IN ('scheduled', 'live', 'ended', 'archived')),
    starts_at BIGINT,
    ended_at BIGINT,
    changed_at BIGINT NOT NULL
);
CREATE TABLE room_policies (
    room_id TEXT PRIMARY KEY,
    data TEXT NOT NULL
);
CREATE TABLE listings (
    room_id TEXT NOT NULL,
    product_id TEXT NOT NULL,
    open INTEGER NOT NULL CHECK (open IN (0, 1)),
    limit_per_buyer BIGINT NOT NULL CHECK (limit_per_buyer > 0),
    max_limit BIGINT NOT NULL CHECK (max_limit >= limit_per_buyer),
    changed_at BIGINT NOT NULL,
    PRIMARY KEY (room_id, product_id)
);
CREATE TABLE claim_words (
    room_id TEXT NOT NULL,
    product_id TEXT NOT NULL,
    keyword TEXT,
    quantities INTEGER NOT NULL CHECK (quantities IN (0, 1)),
    changed_at BIGINT NOT NULL,
    PRIMARY KEY (room_id, product_id)
);
-- One product per keyword in a room, in any case (keywords are ASCII letters and
-- digits, so lower() folds them as SQLite's NOCASE does).
CREATE UNIQUE INDEX claim_words_keyword
    ON claim_words (room_id, lower(keyword)) WHERE keyword IS NOT NULL;
CREATE TABLE polls (
    poll_id TEXT PRIMARY KEY,
    room_id TEXT NOT NULL,
    data TEXT NOT NULL,
    closed_at BIGINT,
    pos BIGINT GENERATED ALWAYS AS IDENTITY
);
CREATE INDEX polls_by_room ON polls (room_id);
CREATE TABLE poll_votes (
    poll_id TEXT NOT NULL,
    viewer_id TEXT NOT NULL,
    option BIGINT NOT NULL,
    at BIGINT NOT NULL,
    PRIMARY KEY (poll_id, viewer_id)
);
CREATE TABLE questions (
    question_id TEXT PRIMARY KEY,
    room_id TEXT NOT NULL,
    data TEXT NOT NULL,
    answered_at BIGINT,
    pos BIGINT GENERATED ALWAYS AS IDENTITY
);
CREATE INDEX questions_by_room ON questions (room_id);
CREATE TABLE question_votes (
    question_id TEXT NOT NULL,
    viewer_id TEXT NOT NULL,
    PRIMARY KEY (question_id, viewer_id)
);
CREATE TABLE group_deals (
    deal_id TEXT PRIMARY KEY,
    room_id TEXT NOT NULL,
    data TEXT NOT NULL,
    closed_at BIGINT,
    pos BIGINT GENERATED ALWAYS AS IDENTITY
);
CREATE INDEX group_deals_by_room ON group_deals (room_id);
CREATE TABLE pinned_messages (
    room_id TEXT PRIMARY KEY,
    data TEXT NOT NULL
);
CREATE TABLE auctions (
    auction_id TEXT PRIMARY KEY,
    room_id TEXT NOT NULL,
    data TEXT NOT NULL,
    salt TEXT NOT NULL,
    result TEXT,
    pos BIGINT GENERATED ALWAYS AS IDENTITY
);
CREATE INDEX auctions_by_room ON auctions (room_id);
CREATE TABLE auction_bids (
    auction_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    viewer_id TEXT NOT NULL,
    name TEXT NOT NULL,
    entry TEXT NOT NULL,
    PRIMARY KEY (auction_id, seq)
);
CREATE TABLE auction_maxima (
    auction_id TEXT NOT NULL,
    viewer_id TEXT NOT NULL,
    name TEXT NOT NULL,
    max_amount BIGINT NOT NULL,
    set_at BIGINT NOT NULL,
    PRIMARY KEY (auction_id, viewer_id)
);
CREATE TABLE order_cancellations (
    order_id TEXT PRIMARY KEY,
    room_id TEXT NOT NULL,
    reason TEXT NOT NULL,
    cancelled_at BIGINT NOT NULL,
    epoch TEXT NOT NULL
);
CREATE INDEX order_cancellations_room ON order_cancellations (room_id);
-- The outbox's seq is its commit order: every write transaction holds WRITER_LOCK,
-- so no event of a lower seq can commit after one of a higher seq has (the
-- deliveries' cursors rely on it).
CREATE TABLE outbox (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id TEXT NOT NULL UNIQUE,
    room_id TEXT NOT NULL,
    type TEXT NOT NULL,
    data TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE TABLE webhook_endpoints (
    endpoint_id TEXT PRIMARY KEY,
    room_id TEXT,
    url TEXT NOT NULL,
    secret TEXT NOT NULL,
    events TEXT NOT NULL,
    description TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    cursor BIGINT NOT NULL,
    disabled_at BIGINT,
    lease_owner TEXT NOT NULL DEFAULT '',
    lease_until BIGINT NOT NULL DEFAULT 0
);
CREATE TABLE webhook_deliveries (
    endpoint_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    state TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    next_at BIGINT NOT NULL,
    last_status BIGINT,
    last_error TEXT NOT NULL DEFAULT '',
    last_at BIGINT,
    delivered_at BIGINT,
    since BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (endpoint_id, seq)
);
CREATE INDEX webhook_pending ON webhook_deliveries (state, endpoint_id, seq);
CREATE TABLE order_refunds (
    refund_id TEXT PRIMARY KEY,
    order_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    quantity BIGINT NOT NULL CHECK (quantity > 0),
    amount BIGINT NOT NULL,
    restock INTEGER NOT NULL,
    reason TEXT NOT NULL,
    refunded_at BIGINT NOT NULL,
    epoch TEXT NOT NULL
);
CREATE INDEX order_refunds_order ON order_refunds (order_id);
CREATE INDEX order_refunds_room ON order_refunds (room_id);
CREATE TABLE room_channels (
    room_id TEXT PRIMARY KEY,
    channel TEXT NOT NULL
);
CREATE TABLE fan_points (
    channel TEXT NOT NULL,
    viewer_id TEXT NOT NULL,
    nickname TEXT NOT NULL,
    points BIGINT NOT NULL,
    PRIMARY KEY (channel, viewer_id)
);
CREATE INDEX fan_points_top ON fan_points (channel, points DESC);
CREATE TABLE fan_awards (
    channel TEXT NOT NULL,
    award_id TEXT NOT NULL,
    viewer_id TEXT NOT NULL,
    points BIGINT NOT NULL,
    kind TEXT NOT NULL,
    room_id TEXT NOT NULL,
    at BIGINT NOT NULL,
    PRIMARY KEY (channel, award_id)
);
CREATE TABLE referral_programs (
    room_id TEXT PRIMARY KEY,
    data TEXT NOT NULL
);
CREATE TABLE referral_invites (
    room_id TEXT NOT NULL,
    inviter TEXT NOT NULL,
    nickname TEXT NOT NULL,
    sent BIGINT NOT NULL,
    first_at BIGINT NOT NULL,
    PRIMARY KEY (room_id, inviter)
);
CREATE TABLE referrals (
    room_id TEXT NOT NULL,
    invitee TEXT NOT NULL,
    inviter TEXT NOT NULL,
    inviter_nickname TEXT NOT NULL,
    nickname TEXT NOT NULL,
    joined_at BIGINT NOT NULL,
    PRIMARY KEY (room_id, invitee)
);
CREATE TABLE referral_rewards (
    room_id TEXT NOT NULL,
    invitee TEXT NOT NULL,
    inviter TEXT NOT NULL,
    order_id TEXT NOT NULL,
    state TEXT NOT NULL,
    reward TEXT NOT NULL,
    at BIGINT NOT NULL,
    PRIMARY KEY (room_id, invitee)
);
"""

SCHEMA_V2: Final = """
CREATE INDEX orders_room_time ON orders (room_id, created_at, order_id);
CREATE INDEX orders_room_buyer ON orders (room_id, buyer_id, created_at, order_id);
CREATE INDEX webhook_pending_due ON webhook_deliveries (endpoint_id, seq)
    WHERE state = 'pending';
CREATE INDEX outbox_time ON outbox (created_at);
"""

# (version, what it brings, its SQL). Append only: a released step never changes.
MIGRATIONS: Final[tuple[tuple[int, str, str], ...]] = (
    (1, "the tables (SQLite's schema 3)", SCHEMA_V1),
    (2, "indexes for the readers of several processes", SCHEMA_V2),
)
SCHEMA_VERSION: Final = MIGRATIONS[-1][0]


async def schema_version(conn: Connection) -> int:
    """The database's schema version, 0 for a database without livesell's tables."""
    exists = await conn.fetchval("SELECT to_regclass('schema_version') IS NOT NULL")
    if not exists:
        return 0
    version = await conn.fetchval("SELECT MAX(version) FROM schema_version")
    return int(version) if version is not None else 0


async def migrate(conn: Connection, where: str, upto: int = SCHEMA_VERSION) -> int:
    """Bring the database to version `upto` (tests stop early to make an older
    one) and give the version it was at. One transaction under MIGRATION_LOCK: a
    second server starting at the same moment waits, then finds the work done.
    Refuses a database of a newer schema than this server's."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
        await conn.execute("CREATE TABLE IF NOT EXISTS schema_version "
                           "(version INTEGER NOT NULL)")
        found = await schema_version(conn)
        if found > SCHEMA_VERSION:
            raise RuntimeError(f"order store {where} has schema {found}, newer than "
                               f"this server's {SCHEMA_VERSION}")
        for version, _what, sql in MIGRATIONS:
            if found < version <= upto:
                await conn.execute(sql)
        if found < upto:
            await conn.execute("DELETE FROM schema_version")
            await conn.execute("INSERT INTO schema_version VALUES ($1)", upto)
    return found
