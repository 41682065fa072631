"""The PostgreSQL order store beyond the contract both stores share
(tests/test_store_contract.py): its versioned migrations, its choice by the
settings and the command line, its durability setting, and its faults — the
connection dropped, PostgreSQL stopped and started again, and a COMMIT whose
answer is lost. A real PostgreSQL throughout (loadtest/pg_cluster.py)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from loadtest.pg_cluster import PgCluster
from server.core.settings import SettingsError, load_settings
from server.state.pg_schema import MIGRATIONS, SCHEMA_VERSION, migrate
from server.state.pg_store import PgOrderStore, describe
from server.state.store import FENCED, PLACED, Order, OrderStore, StoreError, open_store
from server.web.cli import build_parser, settings_from_args
from server.web.logfilter import redact
from tests.support import eventually


def order(hold: str, room: str = "r_1") -> Order:
    return Order(order_id="o_" + hold, hold_id=hold, room_id=room, product_id="p1",
                 sale_id="s1", buyer_id="v1", quantity=1, unit_price=100, subtotal=100,
                 discount=0, total=100, currency="USD", coupon_id="", payment_ref="x",
                 created_at=1, request_id="rq")


async def _tables(url: str) -> set[str]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        return {r[0] for r in rows}
    finally:
        await conn.close()


async def _indexes(url: str) -> set[str]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch("SELECT indexname FROM pg_indexes WHERE schemaname = 'public'")
        return {r[0] for r in rows}
    finally:
        await conn.close()


async def _livesell_sessions(url: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        return int(await conn.fetchval(
            "SELECT COUNT(*) FROM pg_stat_activity WHERE application_name = 'livesell' "
            "AND datname = current_database()"))
    finally:
        await conn.close()


# ---------------------------------------------------------------- migrations


async def test_an_empty_database_gets_every_table_at_the_current_version(
        pg_url: str) -> None:
    # Two servers starting together on an empty database: the migration runs once.
    first, twin = PgOrderStore(pg_url), PgOrderStore(pg_url)
    await asyncio.gather(first.open(), twin.open())
    try:
        await first.set_room_epoch("r_1", "e1")
        assert await twin.place_order(order("h1"), "e1") == PLACED
        assert await first.order_for_hold("h1") == order("h1")
    finally:
        await asyncio.gather(first.close(), twin.close())
    conn = await asyncpg.connect(pg_url)
    try:
        assert [tuple(r) for r in await conn.fetch("SELECT version FROM schema_version")] \
            == [(SCHEMA_VERSION,)]
    finally:
        await conn.close()
    assert {"orders", "aborted_holds", "room_epochs", "outbox", "webhook_deliveries",
            "fan_points", "referral_rewards", "schema_version"} <= await _tables(pg_url)
    assert {"orders_room_time", "webhook_pending_due"} <= await _indexes(pg_url)


async def test_a_version_1_database_is_migrated_with_its_data(pg_url: str) -> None:
    assert SCHEMA_VERSION == 2 and [m[0] for m in MIGRATIONS] == [1, 2]
    conn = await asyncpg.connect(pg_url)
    try:
        assert await migrate(conn, "test", upto=1) == 0
        await conn.execute("INSERT INTO room_epochs VALUES ('r_1', 'e1')")
        await conn.execute(
            "INSERT INTO orders VALUES ('o_old', 'h_old', 'r_1', 'p1', 's1', 'v1', 2, 100, "
            "200, 0, 200, 'USD', '', 'x', 1, 'rq_old')")
        await conn.execute("INSERT INTO outbox (event_id, room_id, type, data, created_at) "
                           "VALUES ('evt_1', 'r_1', 'order.placed', '{}', 1)")
    finally:
        await conn.close()
    assert "orders_room_time" not in await _indexes(pg_url)
    store = PgOrderStore(pg_url)
    await store.open()
    try:
        old = await store.order_for_hold("h_old")
        assert old is not None and (old.quantity, old.request_id) == (2, "rq_old")
        assert await store.room_epoch("r_1") == "e1"
        assert await store.place_order(order("h_new"), "e1") == PLACED
        assert await store.place_order(order("h_fenced"), "e0") == FENCED
        assert [o.hold_id for o in await store.orders("r_1")] == ["h_new", "h_old"]
    finally:
        await store.close()
    assert {"orders_room_time", "orders_room_buyer", "webhook_pending_due",
            "outbox_time"} <= await _indexes(pg_url)
    conn = await asyncpg.connect(pg_url)
    try:
        assert await conn.fetchval("SELECT version FROM schema_version") == 2
        # The outbox's identity goes on after the rows it had.
        assert [r[0] for r in await conn.fetch("SELECT seq FROM outbox ORDER BY seq")] == \
            [1, 2]
    finally:
        await conn.close()


async def test_a_newer_schema_is_refused_and_leaves_no_session(pg_url: str,
                                                               tmp_path: Path) -> None:
    store = PgOrderStore(pg_url)
    await store.open()
    await store.close()
    conn = await asyncpg.connect(pg_url)
    try:
        await conn.execute("UPDATE schema_version SET version = 99")
    finally:
        await conn.close()
    settings = load_settings(None, env={}, overrides={
        "server": {"data_dir": str(tmp_path / "data")}, "store": {"url": pg_url}})
    with pytest.raises(RuntimeError, match="newer") as refused:
        await open_store(settings)
    assert settings.store.url.split(":")[2].split("@")[0] not in str(refused.value)

    async def no_sessions() -> bool:
        return await _livesell_sessions(pg_url) == 0
    await eventually(no_sessions)


# ---------------------------------------------------------------- settings and CLI


async def test_open_store_opens_the_database_the_settings_name(pg_url: str,
                                                               tmp_path: Path) -> None:
    settings = load_settings(None, env={"LIVESELL_STORE_URL": pg_url}, overrides={
        "server": {"data_dir": str(tmp_path / "data")},
        "store": {"batch_max": 7, "busy_timeout_ms": 250, "pool_size": 2}})
    store: OrderStore = await open_store(settings)
    assert isinstance(store, PgOrderStore)
    assert (store.batch_max, store.busy_timeout_ms, store.pool_size) == (7, 250, 2)
    assert "@" in store.where and ":" + pg_url.split(":")[2].split("@")[0] + "@" \
        not in store.where
    await store.set_room_epoch("r_1", "e1")
    assert await store.place_order(order("f1"), "e1") == PLACED
    await store.close()
    assert not (tmp_path / "data" / "orders.sqlite3").exists()
    again = await open_store(settings)
    try:
        assert await again.order_for_hold("f1") == order("f1")
    finally:
        await again.close()


def test_the_store_url_is_checked_without_repeating_it() -> None:
    for bad in ("mysql://u:hunter2@h/db", "hunter2", "postgresql://u:hunter2@h:99999/db",
                "postgresql://u:hunter2@h/d b"):
        with pytest.raises(SettingsError, match=r"store\.url") as refused:
            load_settings(None, env={}, overrides={"store": {"url": bad}})
        assert "hunter2" not in str(refused.value)
    for good in ("postgresql://u:p@h:5432/db", "postgres://h/db", "postgresql:///db",
                 "postgresql://u@[::1]:5433/db?sslmode=require"):
        assert load_settings(None, env={}, overrides={"store": {"url": good}}).store.url
    with pytest.raises(SettingsError, match="pool_size"):
        load_settings(None, env={}, overrides={"store": {"pool_size": 0}})


def test_serve_takes_a_sqlite_path_or_a_postgresql_url(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    args = parser.parse_args(["serve", "--store", "postgresql://u:pw@db:5432/shop",
                              "--redis-url", "redis://127.0.0.1:6379/0"])
    settings = settings_from_args(args)
    assert settings.store.url == "postgresql://u:pw@db:5432/shop"
    path = tmp_path / "o.sqlite3"
    settings = settings_from_args(parser.parse_args(["serve", "--store", str(path)]))
    assert (settings.store.url, settings.store_path) == ("", path)
    with pytest.raises(SystemExit):
        parser.parse_args(["serve", "--store", "mysql://u:hunter2@h/db"])
    err = capsys.readouterr().err
    assert "mysql:// is not a store" in err and "hunter2" not in err


def test_postgresql_passwords_never_reach_the_log() -> None:
    for text, secret in (("cannot reach postgresql://shop:s3cret@db:5432/live", "s3cret"),
                         ("postgres://shop:p@ss@db/live failed", "ss@db"),
                         ("postgresql://db/live?user=shop&password=hunter2", "hunter2")):
        assert secret not in redact(text)
    assert describe("postgresql://shop:s3cret@db:5432/live") == "postgresql://shop@db:5432/live"


# ---------------------------------------------------------------- durability


async def test_the_writer_commits_synchronously_even_where_it_was_turned_off(
        pg_url: str, caplog: pytest.LogCaptureFixture) -> None:
    conn = await asyncpg.connect(pg_url)
    try:
        database = await conn.fetchval("SELECT current_database()")
        await conn.execute(f'ALTER DATABASE "{database}" SET synchronous_commit = off')
    finally:
        await conn.close()
    store = PgOrderStore(pg_url)
    with caplog.at_level(logging.WARNING, logger="livesell.store"):
        await store.open()
    try:
        assert "synchronous_commit is off" in caplog.text
        writer = store._writes._conn
        assert writer is not None
        assert await writer.fetchval("SHOW synchronous_commit") == "on"
    finally:
        await store.close()


# ---------------------------------------------------------------- faults


@pytest.fixture
async def pg_store(pg_url: str) -> AsyncIterator[PgOrderStore]:
    store = PgOrderStore(pg_url, busy_timeout_ms=1000)
    await store.open()
    await store.set_room_epoch("r_1", "e1")
    yield store
    await store.close()


async def test_a_writer_connection_dropped_while_idle_is_replaced_unnoticed(
        pg_store: PgOrderStore, pg_url: str) -> None:
    conn = await asyncpg.connect(pg_url)
    try:
        ended = await conn.fetchval(
            "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE "
            "application_name = 'livesell' AND datname = current_database()")
        assert ended >= 1
    finally:
        await conn.close()
    # The writer's and the readers' connections are gone; the next write and read
    # find new ones, and nothing fails.
    assert await pg_store.place_order(order("d1"), "e1") == PLACED
    assert await pg_store.order_for_hold("d1") == order("d1")
    assert not pg_store.last_failed


async def test_postgresql_stopped_fails_writes_closed_and_they_go_through_after(
        tmp_path: Path) -> None:
    """Its own cluster, stopped (fast shutdown) and started again on the same port:
    while it is away every write raises StoreError (nothing committed, the caller
    keeps the hold) and reads too; once it is back the same writes go through."""
    cluster = PgCluster()
    try:
        await asyncio.to_thread(cluster.start)
        store = PgOrderStore(cluster.url(), busy_timeout_ms=500)
        await store.open()
        try:
            await store.set_room_epoch("r_1", "e1")
            assert await store.place_order(order("s1"), "e1") == PLACED
            await asyncio.to_thread(cluster.stop)
            with pytest.raises(StoreError):
                await store.place_order(order("s2"), "e1")
            with pytest.raises(StoreError):
                await store.abort_hold("s3", "r_1", "recovery", 1)
            assert store.last_failed
            with pytest.raises(StoreError):
                await store.orders("r_1")
            await asyncio.to_thread(cluster.start)
            assert await store.place_order(order("s2"), "e1") == PLACED
            assert not store.last_failed
            assert sorted(o.hold_id for o in await store.orders("r_1")) == ["s1", "s2"]
            assert await store.aborted("r_1") == []
        finally:
            await store.close()
    finally:
        await asyncio.to_thread(cluster.remove)


class _CommitCutter:
    """A TCP proxy in front of PostgreSQL that, once armed, cuts the client's
    connection at its next COMMIT: after PostgreSQL answered it (the answer is lost:
    committed, but the client cannot know) or before PostgreSQL got it (not
    committed). Every other byte, and every new connection, passes as it is."""

    COMMIT = b"Q\x00\x00\x00\x0bCOMMIT\x00"  # the simple-protocol Query message

    def __init__(self, port: int) -> None:
        self.port = port
        self.armed: str | None = None  # "after" or "before"
        self.cut = asyncio.Event()
        self.server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.server is not None:
            await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        up_r, up_w = await asyncio.open_connection("127.0.0.1", self.port)
        answered = asyncio.Event()

        async def down() -> None:
            with contextlib.suppress(ConnectionError, OSError):
                while data := await up_r.read(65536):
                    answered.set()
                    if writer.is_closing():
                        return
                    writer.write(data)
                    await writer.drain()
            writer.close()  # PostgreSQL closed its side: so does the proxy

        relay = asyncio.ensure_future(down())
        try:
            while data := await reader.read(65536):
                if self.armed and self.COMMIT in data:
                    mode, self.armed = self.armed, None
                    if mode == "after":
                        answered.clear()
                        up_w.write(data)
                        await up_w.drain()
                        await answered.wait()  # PostgreSQL answered the COMMIT
                    self.cut.set()
                    writer.transport.abort()
                    up_w.transport.abort()
                    return
                up_w.write(data)
                await up_w.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            relay.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await relay
            writer.close()
            up_w.close()
            self._tasks.discard(task)


@pytest.mark.parametrize("cut", ["after", "before"])
async def test_a_commit_whose_answer_is_lost_is_answered_as_it_ended(
        pg_url: str, pg_cluster: PgCluster, cut: str) -> None:
    """The connection breaks with COMMIT on its way. Cut after PostgreSQL committed:
    the writer asks PostgreSQL how the transaction ended and answers "placed" (the
    order is there; never "failed" for a write that committed). Cut before it got
    there: the write fails with StoreError and nothing is committed."""
    proxy = _CommitCutter(pg_cluster.port)
    port = await proxy.start()
    url = pg_url.replace(f":{pg_cluster.port}/", f":{port}/")
    store = PgOrderStore(url, busy_timeout_ms=1000)
    try:
        await store.open()
        await store.set_room_epoch("r_1", "e1")
        proxy.armed = cut
        if cut == "after":
            assert await store.place_order(order("x1"), "e1") == PLACED
            assert await store.order_for_hold("x1") == order("x1")
        else:
            with pytest.raises(StoreError):
                await store.place_order(order("x1"), "e1")
            assert await store.order_for_hold("x1") is None
        assert proxy.cut.is_set()
        # The writer carries on with a new connection.
        assert await store.place_order(order("x2"), "e1") == PLACED
    finally:
        await store.close()
        await proxy.stop()

