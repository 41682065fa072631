"""The typed script methods (server/state/scripts.py) against their Lua scripts.

Each script's KEYS/ARGV contract is written three times, on purpose: in the Lua
header (for the reader of the script), in `CONTRACTS` (named), and in the method
that builds the lists. These tests fail when any two disagree: the header's
declared KEYS[n]/ARGV[n] against the contract, the script body against its
header (no KEYS or ARGV index beyond those declared), and each method, run
against a real redis-server, against the contract's counts. They also check that
every reply converts to its typed value and that typed calls still batch."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable, Sequence
from importlib import resources
from typing import Any

import pytest
from redis.asyncio import Redis

from server.core.auction_terms import Auction
from server.core.keys import RoomKeys
from server.state.scripts import (
    CONTRACTS,
    SCRIPT_NAMES,
    Answered,
    AuctionClosed,
    Awarded,
    BidDecided,
    ChatGate,
    CheckoutBegun,
    CheckoutFinished,
    Grouped,
    GroupExpired,
    GuestMint,
    Home,
    Promoted,
    Released,
    SaleStopped,
    Scripts,
    SecondChance,
    StockAdjusted,
    Upvoted,
    ViewerCounts,
    Voted,
    Waiting,
    WaitlistTerms,
)
from server.state.store import Order

LUA_DIR = resources.files("server.state") / "lua"
# reschedule.lua takes any number of item zsets, KEYS[1..n], and two arguments per
# item zset.
VARIADIC = {"reschedule"}
TERMS = WaitlistTerms(offer_ms=60_000, max_open_holds=5, keep_place_ms=300_000)


def _lua(name: str) -> tuple[str, str]:
    """A script's header (its leading comment lines) and its body."""
    lines = (LUA_DIR / f"{name}.lua").read_text(encoding="utf-8").splitlines()
    n = next(i for i, line in enumerate(lines) if not line.startswith("--"))
    return "\n".join(lines[:n]), "\n".join(lines[n:])


def _indices(what: str, text: str) -> set[int]:
    return {int(m) for m in re.findall(rf"\b{what}\[(\d+)\]", text)}


def test_every_script_file_has_a_contract_and_a_method() -> None:
    files = {p.name.removesuffix(".lua") for p in LUA_DIR.iterdir() if p.name.endswith(".lua")}
    assert files == set(SCRIPT_NAMES) == set(CONTRACTS)
    for name in CONTRACTS:
        assert callable(getattr(Scripts, name, None)), f"Scripts has no method {name}()"


@pytest.mark.parametrize("name", sorted(set(CONTRACTS) - VARIADIC))
def test_contract_matches_the_lua_header(name: str) -> None:
    header, body = _lua(name)
    contract = CONTRACTS[name]
    for what, declared in (("KEYS", contract.keys), ("ARGV", contract.args)):
        in_header = _indices(what, header)
        assert in_header == set(range(1, len(declared) + 1)), (
            f"{name}.lua: its header declares {what} {sorted(in_header)}, the contract "
            f"{len(declared)} ({', '.join(declared)})")
        beyond = _indices(what, body) - in_header
        assert not beyond, f"{name}.lua: its body uses {what} {sorted(beyond)} its header " \
                           "does not declare"


def test_libraries_take_their_keys_as_arguments_and_every_include_is_one() -> None:
    """A library (lua/lib/) is text the ledger puts into scripts: it must not read a
    script's KEYS or ARGV (their numbering is each script's own), each `#include`
    must name a library, and the waitlist's comes after the offer rule it calls."""
    lib = LUA_DIR / "lib"
    names = {p.name.removesuffix(".lua") for p in lib.iterdir() if p.name.endswith(".lua")}
    for name in names:
        text = (lib / f"{name}.lua").read_text(encoding="utf-8")
        assert not _indices("KEYS", text) and not _indices("ARGV", text), name
    for name in SCRIPT_NAMES:
        raw = (LUA_DIR / f"{name}.lua").read_text(encoding="utf-8")
        included = re.findall(r"^-- #include (\w+)$", raw, re.MULTILINE)
        assert set(included) <= names, (name, included)
        if "waitlist" in included:
            assert "offer" in included[:included.index("waitlist")], name


def test_the_variadic_reschedule_contract() -> None:
    header, _ = _lua("reschedule")
    assert "KEYS[1..n]" in header
    assert "ARGV[2i-1]" in header and "ARGV[2i]" in header
    contract = CONTRACTS["reschedule"]
    assert len(contract.args) == 2 * len(contract.keys)


class RecordingScripts(Scripts):
    """The real scripts on a real Redis, remembering each call's key and arg counts."""

    def __init__(self, redis: Redis) -> None:
        super().__init__(redis)
        self.calls: list[tuple[str, int, int]] = []

    def run(self, name: str, keys: Sequence[str], args: Sequence[Any],
            decode: Callable[[Any], Any] | None = None) -> asyncio.Future[Any]:
        self.calls.append((name, len(keys), len(args)))
        return super().run(name, keys, args, decode) if decode else super().run(name, keys,
                                                                                args)


@pytest.fixture
async def scripts(redis_url: str) -> AsyncIterator[RecordingScripts]:
    client = Redis.from_url(redis_url, decode_responses=True)
    recording = RecordingScripts(client)
    await recording.load()
    try:
        yield recording
    finally:
        await client.aclose()


def _auction() -> Auction:
    return Auction("a_1", "p", "t", "USD", 100, ((0, 10),), 60, None, None, "extend", 10,
                   False, 60, 1)


def _order(room: str) -> Order:
    return Order(order_id="o_1", hold_id="h_1", room_id=room, product_id="p", sale_id="s_1",
                 buyer_id="v_1", quantity=1, unit_price=100, subtotal=100, discount=0,
                 total=100, currency="EUR", coupon_id="", payment_ref="", created_at=1,
                 request_id="c1")


async def test_each_method_passes_its_contract_and_converts_its_reply(
        scripts: RecordingScripts) -> None:
    room = "r1"
    # A room that does not exist in Redis: every script answers without a Lua error,
    # with the reply for an absent room (no epoch: 'rebuilding').
    replies = await asyncio.gather(
        scripts.publish(room, b'{"type":"x"}', 10, 5),
        scripts.reserve(room, sale_id="s_1", product_id="p", buyer="v_1", request_id="b1",
                        hold_id="h_1", quantity=1, hold_ms=1000, answer_ttl_s=60,
                        verified=False, client="", max_open_holds=5,
                        into=lambda answered: answered),
        scripts.release(room, hold_id="h_1", product_id="p", sale_id="s_1", mode="expire",
                        waitlist=TERMS),
        scripts.begin_checkout(room, buyer="v_1", request_id="c1", hold_id="h_1",
                               coupon_id="", verified=False),
        scripts.finish_checkout(_order(room), b'{"order":{}}', 60),
        scripts.abort_checkout(room, hold_id="h_1", coupon_id=""),
        scripts.stop_sale(room, sale_id="s_1", product_id="p"),
        scripts.claim_coupon(room, viewer="v_1", request_id="k1", coupon_id="c_1",
                             answer_ttl_s=60, verified=False),
        scripts.enter_lottery(room, viewer="v_1", request_id="e1", lottery_id="l_1",
                              entry_text="", answer_ttl_s=60, verified=False),
        scripts.adjust_stock(room, "p", 7),
        scripts.close_lottery(room, "l_1"),
        scripts.viewers(room),
        scripts.reschedule(room, recover_after_ms=1000, recovery_not_before=0),
        scripts.chat_gate(room, "v_1", 0),
        scripts.mint_guest("127.0.0.1", limit=3, window_ms=60_000, member="m1"),
        scripts.promote(room, "p", TERMS),
        scripts.join_waitlist(room, viewer="v_1", product_id="p", max_waiting=10,
                              verified=False),
        scripts.leave_room(room, "v_1", 1000),
        scripts.claim_word(room, "p", "SOLD", True),
        scripts.start_auction(room, auction=_auction(), salt="s", terms="{}"),
        scripts.bid(room, auction_id="a_1", bidder="v_1", nickname="n", request_id="b1",
                    amount=100, max_amount=None, verified=False, answer_ttl_s=60),
        scripts.close_auction(room, auction_id="a_1", product_id="p", mode="due"),
        scripts.second_chance(room, "a_1"),
        scripts.vote(room, poll_id="p_1", viewer="v_1", option=0, verified=False),
        scripts.close_poll(room, "p_1", 1),
        scripts.ask(room, question_id="q_1", question="{}", viewer="v_1", request_id="a1",
                    max_open=3, answer_ttl_s=60, verified=False, max_questions=10),
        scripts.upvote(room, question_id="q_1", viewer="v_1", verified=False),
        scripts.answer_question(room, "q_1", 1),
        scripts.start_group(room, deal_id="gb_1", product_id="p", viewer="v_1", nickname="n",
                            request_id="g1", max_open_holds=5, answer_ttl_s=60,
                            verified=False),
        scripts.join_group(room, deal_id="gb_1", group_id="g_1", product_id="p", nickname="n",
                           viewer="v_1", request_id="j1", max_open_holds=5, answer_ttl_s=60,
                           hold_ms=1000, verified=False),
        scripts.expire_group(room, deal_id="gb_1", group_id="g_1", product_id="p",
                             mode="due"),
        scripts.award("main", award_id="x:1", viewer="v_1", points=1, cap=10,
                      remember_s=60, minute=1),
        scripts.referral_reward(room, mode="decide", invitee="v_1", order_id="o_1", most=5),
        scripts.cancel_order(_order(room), "e1", 1),
        scripts.home(room, "check"),
    )
    assert replies == [
        -1,
        Answered("rebuilding", ""),
        Released("rebuilding", 0, "", "rebuilding"),
        CheckoutBegun("rebuilding", "", ""),
        CheckoutFinished("missing", ""),
        False,
        SaleStopped("missing", 0, []),
        Answered("rebuilding", ""),
        Answered("rebuilding", ""),
        StockAdjusted(True, 0),
        False,
        ViewerCounts(0, 0, 0),
        None,
        ChatGate("ok", 0, 0),
        GuestMint(True, 0),
        Promoted(False, 0, ()),
        Waiting("rebuilding", 0, 0, 0, ""),
        0,
        1,  # claim_word needs no epoch: the store decided before it runs
        ["rebuilding"],
        BidDecided("rebuilding", "", "", "", 0, 0),
        AuctionClosed("rebuilding", "", "", "", 0, 0),
        SecondChance("rebuilding", "", "", "", 0, 0, ""),
        Voted("rebuilding", "", -1, False),
        False,
        Answered("rebuilding", ""),
        Upvoted("rebuilding", "", 0, False),
        Answered("refused", "question_not_found"),  # the host's step needs no epoch
        Grouped("rebuilding", "", "", ()),
        Grouped("rebuilding", "", "", ()),
        GroupExpired("over", 0, ()),  # the clock's step needs no epoch: nothing to end
        Awarded("unloaded"),  # a channel whose points are not loaded yet
        ["rebuilding"],
        "rebuilt",  # no epoch: Redis no longer holds what the cancellation was made under
        Home("absent"),  # no epoch key (on a single node too: no node is named)
    ]
    assert sorted(name for name, _, _ in scripts.calls) == sorted(CONTRACTS)
    for name, keys, args in scripts.calls:
        contract = CONTRACTS[name]
        assert (keys, args) == (len(contract.keys), len(contract.args)), name


async def test_typed_calls_of_one_tick_batch_and_each_gets_its_own_reply(
        scripts: RecordingScripts) -> None:
    redis: Any = scripts.redis
    stock = RoomKeys("r1").stock("p")
    await redis.hset(stock, mapping={"left": 0, "held": 2, "sold": 3})
    replies = await asyncio.gather(*(scripts.adjust_stock("r1", "p", n) for n in range(10)))
    # Below held + sold (5) is refused; from 5 up each call sets its own total.
    assert replies == [StockAdjusted(n >= 5, 5) for n in range(10)]
    assert int(await redis.hget(stock, "total")) == 9
