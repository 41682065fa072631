"""The order store as the arbiter of a hold's outcome: an order row or an abort row,
never both, and no order under a superseded room epoch. Each on both stores (the
`store_url` fixture, BOTH_STORES): real SQLite files with real locks from another
process, and a real PostgreSQL with its writer lock held by another session."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from server.core.settings import load_settings
from server.state.sqlite_store import SqliteOrderStore
from server.state.store import (
    ABORTED,
    FENCED,
    ORDERED,
    PLACED,
    Order,
    OrderStore,
    StoreClosed,
    StoreError,
    open_store,
)
from tests.store_kinds import AnyStore, lock_of, open_store_at
from tests.support import BOTH_STORES, eventually


def order(hold: str, room: str = "r_1", qty: int = 1) -> Order:
    return Order(order_id="o_" + hold, hold_id=hold, room_id=room, product_id="p1",
                 sale_id="s1", buyer_id="v1", quantity=qty, unit_price=100, subtotal=100 * qty,
                 discount=0, total=100 * qty, currency="USD", coupon_id="", payment_ref="x",
                 created_at=1, request_id="rq")


@pytest.fixture
async def store(tmp_path: Path, store_url: str) -> AsyncIterator[AnyStore]:
    s = await open_store_at(store_url, tmp_path, busy_timeout_ms=200)
    await s.set_room_epoch("r_1", "e1")
    yield s
    await s.close()


@BOTH_STORES
async def test_abort_then_order_is_refused(store: AnyStore) -> None:
    assert await store.abort_hold("h1", "r_1", "recovery", 5) == ABORTED
    assert await store.place_order(order("h1"), "e1") == ABORTED
    assert await store.order_for_hold("h1") is None
    assert await store.outcome_conflicts("r_1") == 0


@BOTH_STORES
async def test_order_then_abort_keeps_the_order(store: AnyStore) -> None:
    assert await store.place_order(order("h2"), "e1") == PLACED
    assert await store.abort_hold("h2", "r_1", "recovery", 5) == ORDERED
    assert await store.aborted("r_1") == []
    assert (await store.order_for_hold("h2")) == order("h2")
    # A retried write of the same hold's order is the same order, written once.
    assert await store.place_order(order("h2"), "e1") == PLACED
    assert (await store.order_totals("r_1"))["orders"] == 1


@BOTH_STORES
async def test_order_under_an_old_epoch_is_fenced(store: AnyStore) -> None:
    assert await store.place_order(order("h3"), "e1") == PLACED
    await store.set_room_epoch("r_1", "e2")
    assert await store.place_order(order("h4"), "e1") == FENCED
    assert await store.place_order(order("h5"), "e2") == PLACED
    assert sorted(o.hold_id for o in await store.orders("r_1")) == ["h3", "h5"]


@BOTH_STORES
async def test_one_batch_decides_in_queue_order(store: AnyStore) -> None:
    # Queued in one tick, so written in one transaction: the abort queued first wins
    # over the order queued after it, and the epoch change fences what follows it.
    futs = [store.place_order(order("a1"), "e1"),
            store.abort_hold("a2", "r_1", "recovery", 1),
            store.place_order(order("a2"), "e1"),
            store.place_order(order("a3"), "e1"),
            store.set_room_epoch("r_1", "e9"),
            store.place_order(order("a4"), "e1"),
            store.abort_hold("a3", "r_1", "recovery", 1)]
    results = await asyncio.gather(*futs)
    assert results == [PLACED, ABORTED, ABORTED, PLACED, None, FENCED, ORDERED]
    assert sorted(o.hold_id for o in await store.orders("r_1")) == ["a1", "a3"]
    assert await store.aborted("r_1") == ["a2"]


@BOTH_STORES
async def test_a_locked_file_fails_the_write_and_commits_nothing(
        store: AnyStore) -> None:
    async with lock_of(store):
        with pytest.raises(StoreError):
            await store.place_order(order("l1"), "e1")
        with pytest.raises(StoreError):
            await store.abort_hold("l2", "r_1", "recovery", 1)
        assert store.last_failed
    assert await store.order_for_hold("l1") is None
    # After the lock: the same writes go through, and each is decided once.
    assert await store.place_order(order("l1"), "e1") == PLACED
    assert await store.abort_hold("l2", "r_1", "recovery", 1) == ABORTED
    assert not store.last_failed


@BOTH_STORES
async def test_a_write_queued_behind_a_lock_commits_after_it(tmp_path: Path,
                                                             store_url: str) -> None:
    s = await open_store_at(store_url, tmp_path, "o.sqlite3", busy_timeout_ms=120_000)
    try:
        await s.set_room_epoch("r_1", "e1")
        async with lock_of(s) as lock:
            pending = asyncio.ensure_future(s.place_order(order("q1"), "e1"))
            aborting = asyncio.ensure_future(s.abort_hold("q1", "r_1", "recovery", 1))
            await asyncio.sleep(0)
            assert not pending.done()
            await lock.release()
            assert await pending == PLACED
            assert await aborting == ORDERED
    finally:
        await s.close()


async def test_a_file_locked_by_another_writer_is_switched_to_wal_when_it_is_free(
        tmp_path: Path) -> None:
    """SQLite refuses the switch to WAL at once (no busy wait) while another
    connection holds the write lock of a file in rollback mode, as a second worker's
    store migrating the same file at start does; open tries again until it is free."""
    path = tmp_path / "old.sqlite3"
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("CREATE TABLE t (a INTEGER)")
    blocker.execute("BEGIN IMMEDIATE")
    blocker.execute("INSERT INTO t VALUES (1)")
    store = SqliteOrderStore(path)
    opening = asyncio.ensure_future(store.open())
    try:
        await asyncio.sleep(0.2)  # not a wait for a condition: open must not have failed
        assert not opening.done(), opening.exception()
        blocker.execute("COMMIT")
        await asyncio.wait_for(opening, 30)
        mode = sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0]
        assert mode == "wal"
    finally:
        blocker.close()
        if opening.done() and not opening.exception():
            await store.close()


async def test_a_file_locked_past_the_busy_timeout_fails_to_open_saying_why(
        tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("CREATE TABLE t (a INTEGER)")
    blocker.execute("BEGIN IMMEDIATE")
    try:
        store = SqliteOrderStore(path, busy_timeout_ms=100)
        with pytest.raises(sqlite3.OperationalError, match="still locked by another process"):
            await asyncio.wait_for(store.open(), 30)
        await store.close()
    finally:
        blocker.close()


async def test_schema_1_files_are_migrated(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    db = sqlite3.connect(path)
    db.executescript("""
        CREATE TABLE schema_version (version INTEGER NOT NULL);
        INSERT INTO schema_version VALUES (1);
        CREATE TABLE orders (order_id TEXT PRIMARY KEY, hold_id TEXT NOT NULL UNIQUE,
            room_id TEXT NOT NULL, product_id TEXT NOT NULL, sale_id TEXT NOT NULL,
            buyer_id TEXT NOT NULL, quantity INTEGER NOT NULL CHECK (quantity > 0),
            unit_price INTEGER NOT NULL, subtotal INTEGER NOT NULL, discount INTEGER NOT NULL,
            total INTEGER NOT NULL, currency TEXT NOT NULL, coupon_id TEXT NOT NULL,
            payment_ref TEXT NOT NULL, created_at INTEGER NOT NULL);
        INSERT INTO orders VALUES ('o_old', 'h_old', 'r_1', 'p1', 's1', 'v1', 2, 100, 200, 0,
            200, 'USD', '', 'x', 1);
    """)
    db.commit()
    db.close()
    # Two processes' stores opening the old file at once: the migration runs once.
    s, twin = SqliteOrderStore(path), SqliteOrderStore(path)
    await asyncio.gather(s.open(), twin.open())
    await twin.close()
    try:
        old = await s.order_for_hold("h_old")
        assert old is not None and old.request_id == "" and old.quantity == 2
        # Rooms from before epochs have none: orders checked out with none are written.
        assert await s.place_order(order("h_new"), "") == PLACED
        await s.set_room_epoch("r_1", "e1")
        assert await s.place_order(order("h_new2"), "") == FENCED
    finally:
        await s.close()
    db = sqlite3.connect(path)
    assert db.execute("SELECT version FROM schema_version").fetchall() == [(3,)]
    db.close()


async def test_open_store_opens_the_store_the_settings_name(tmp_path: Path) -> None:
    """The factory the app uses: the file, batch size and lock wait of [store], open,
    this user's only (mode 0600, also SQLite's companion files) and durable (a
    placed order is there after close and reopen); closed, it takes no writes."""
    settings = load_settings(None, env={}, overrides={
        "server": {"data_dir": str(tmp_path / "data")},
        "store": {"path": str(tmp_path / "shop.sqlite3"), "batch_max": 7,
                  "busy_timeout_ms": 250}})
    store: OrderStore = await open_store(settings)
    assert isinstance(store, SqliteOrderStore)
    assert (store.path, store.batch_max, store.busy_timeout_ms) == \
        (tmp_path / "shop.sqlite3", 7, 250)
    for name in ("shop.sqlite3", "shop.sqlite3-wal", "shop.sqlite3-shm"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o600, name
    await store.set_room_epoch("r_1", "e1")
    assert await store.place_order(order("f1"), "e1") == PLACED
    await store.close()
    with pytest.raises(StoreClosed):
        await store.place_order(order("f2"), "e1")
    again = await open_store(settings)
    try:
        assert await again.order_for_hold("f1") == order("f1")
        assert await again.room_epoch("r_1") == "e1"
    finally:
        await again.close()


async def test_a_store_that_cannot_open_leaves_nothing_running(tmp_path: Path) -> None:
    """A file of a newer schema is refused, and the half-open store's connections
    and threads are gone with the refusal (no caller holds it to close it)."""
    path = tmp_path / "orders.sqlite3"
    first = SqliteOrderStore(path)
    await first.open()
    await first.close()
    db = sqlite3.connect(path)
    db.execute("UPDATE schema_version SET version = 99")
    db.commit()
    db.close()
    baseline = threading.active_count()
    settings = load_settings(None, env={}, overrides={
        "server": {"data_dir": str(tmp_path / "data")}, "store": {"path": str(path)}})
    with pytest.raises(RuntimeError, match="newer"):
        await open_store(settings)

    async def threads_gone() -> bool:
        return threading.active_count() <= baseline
    await eventually(threads_gone)


@BOTH_STORES
async def test_a_close_behind_a_stalled_write_is_bounded(tmp_path: Path,
                                                         store_url: str) -> None:
    """Shutdown bounds the store's close (Services.stop): a close that runs out of
    time while a write waits on another process's lock hears its cancellation, and
    the write it leaves behind is refused, never left waiting or acknowledged."""
    s = await open_store_at(store_url, tmp_path, busy_timeout_ms=5000)
    await s.set_room_epoch("r_1", "e1")
    async with lock_of(s) as lock:
        pending = asyncio.ensure_future(s.place_order(order("h9"), "e1"))

        async def writing() -> bool:
            return s.busy_since is not None
        await eventually(writing)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(s.close(), 0.5)
        with pytest.raises(StoreClosed):
            await pending
        await lock.release()
    await s.close()
    again = await open_store_at(store_url, tmp_path)
    try:
        assert await again.order_for_hold("h9") is None
    finally:
        await again.close()


def test_an_orders_public_view_is_every_field_as_a_copy() -> None:
    """The buyer's reply and the orders listing read `Order.public()`: it must
    carry every field with its value, and changing it must not change the order."""
    placed = order("h_pub")
    view = placed.public()
    assert view == {f.name: getattr(placed, f.name) for f in dataclasses.fields(Order)}
    assert Order(**view) == placed
    view["total"] = -1
    assert placed.total == 100
