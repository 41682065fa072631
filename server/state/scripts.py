"""The atomic Lua scripts (`lua/`): the engine that runs them and one typed
method per script.

`Scripts` has one method per script: it builds the script's KEYS from
`server/core/keys.py` and its ARGV in one place, in the order the script's
header states, and turns the reply into a typed value. `CONTRACTS` names each
script's KEYS and ARGV; tests/test_scripts.py checks them against every
script's header and every method against its contract, so neither can drift.
Nothing else calls a script by name.

The engine (`Ledger`): calls made in the same event-loop tick are gathered and
sent in one round trip (design.md section 6: the Python client, not Redis, is
the bottleneck). Calls of the same script for the same room go further: they
become one call of that script's batch form, which runs the unchanged script
body once per call inside one script invocation, so the client packs one
command and parses one reply instead of one per buyer. Each caller still gets
its own answer, in order, and an error in one call (a Lua error) reaches only
that caller. A typed method's reply is converted when its future is resolved,
so it costs no task and no extra await. Scripts are loaded by SHA at start and
reloaded transparently if Redis restarts and forgets them.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any, Final, Literal, NamedTuple, TypeVar, overload

from redis.asyncio import Redis
from redis.exceptions import NoScriptError, RedisError

from server.core.keys import DUE, guest_mints, room_keys

if TYPE_CHECKING:
    from server.state.store import Order

log = logging.getLogger("livesell.ledger")

SCRIPT_NAMES: Final = (
    "publish",
    "reserve",
    "release",
    "begin_checkout",
    "finish_checkout",
    "abort_checkout",
    "stop_sale",
    "claim_coupon",
    "enter_lottery",
    "adjust_stock",
    "close_lottery",
    "viewers",
    "reschedule",
    "chat_gate",
    "mint_guest",
)
MAX_BATCH: Final = 256
BATCH_SUFFIX: Final = "@batch"

Arg = str | int | float | bytes

# The batch form of a script: its body becomes a local function of KEYS and
# ARGV (the parameters shadow the globals, so the body runs unchanged), called
# once per packed call. ARGV[1] is the number of calls; then, per call, its
# key count, its argument count and its arguments. KEYS holds every call's keys
# in order. pcall keeps one call's Lua error (a table {err = ...} from
# redis.call, or a string) to that call's slot; a nil answer becomes false so
# the reply array keeps its length.
_BATCH_TEMPLATE = """local function one(KEYS, ARGV)
%s
end
local out, k, a = {}, 1, 2
for i = 1, tonumber(ARGV[1]) do
  local nk, na = tonumber(ARGV[a]), tonumber(ARGV[a + 1])
  local ks, as = {}, {}
  for j = 1, nk do ks[j] = KEYS[k + j - 1] end
  for j = 1, na do as[j] = ARGV[a + 1 + j] end
  k = k + nk
  a = a + 2 + na
  local ok, r = pcall(one, ks, as)
  if not ok then
    if type(r) == 'table' and r.err then r = {err = r.err} else r = {err = tostring(r)} end
  elseif r == nil then
    r = false
  end
  out[i] = r
end
return out
"""


def batch_source(source: str) -> str:
    """The batch form of a script (see _BATCH_TEMPLATE)."""
    return _BATCH_TEMPLATE % source


def _load_sources() -> dict[str, str]:
    base = resources.files("server.state") / "lua"
    plain = {name: (base / f"{name}.lua").read_text(encoding="utf-8") for name in SCRIPT_NAMES}
    return plain | {name + BATCH_SUFFIX: batch_source(src) for name, src in plain.items()}


def _slot(keys: Sequence[str]) -> str:
    """The hash tag of a call's first key: calls batch together only within one
    room, so a batch never spans Redis Cluster slots (keys.py)."""
    first = keys[0] if keys else ""
    start = first.find("{")
    end = first.find("}", start + 1)
    return first[start:end + 1] if start >= 0 and end > start else first


T = TypeVar("T")
# A call: script name, keys, args, the caller's future, and the reply's conversion
# (None: the raw reply).
_Call = tuple[str, Sequence[str], Sequence[Arg], "asyncio.Future[Any]",
              "Callable[[Any], Any] | None"]


def _settle(answered: list[tuple[_Call, Any]]) -> None:
    """Hand each caller its reply (an exception reply is raised in the caller)."""
    for (_, _, _, fut, decode), result in answered:
        if fut.done():
            continue
        if isinstance(result, Exception):
            fut.set_exception(result)
        elif decode is None:
            fut.set_result(result)
        else:
            try:
                fut.set_result(decode(result))
            except Exception as exc:  # a reply of a shape the script never gives
                fut.set_exception(exc)


class Ledger:
    """Runs named scripts, batching the calls of one loop tick into one pipeline."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self.sources = _load_sources()
        self.shas = {name: hashlib.sha1(src.encode()).hexdigest()
                     for name, src in self.sources.items()}
        self._pending: list[_Call] = []
        self._scheduled = False
        self._inflight: set[asyncio.Task[None]] = set()

    async def load(self) -> None:
        for name, src in self.sources.items():
            sha = await self.redis.script_load(src)
            if sha != self.shas[name]:  # pragma: no cover - Redis computes the same SHA1
                self.shas[name] = sha

    @overload
    def run(self, name: str, keys: Sequence[str], args: Sequence[Arg]) -> asyncio.Future[Any]:
        ...

    @overload
    def run(self, name: str, keys: Sequence[str], args: Sequence[Arg],
            decode: Callable[[Any], T]) -> asyncio.Future[T]:
        ...

    def run(self, name: str, keys: Sequence[str], args: Sequence[Arg],
            decode: Callable[[Any], Any] | None = None) -> asyncio.Future[Any]:
        """Queue one script call; the future resolves with the script's reply, passed
        through `decode` if given. Use the typed methods of `Scripts` instead."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        self._pending.append((name, keys, args, fut, decode))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return fut

    def _flush(self) -> None:
        self._scheduled = False
        while self._pending:
            batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
            task = asyncio.get_running_loop().create_task(self._send(batch))
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)

    async def _send(
        self, batch: list[_Call]
    ) -> None:
        try:
            results = await self._execute(batch)
        except (RedisError, OSError) as exc:
            for _, _, _, fut, _ in batch:
                if not fut.done():
                    fut.set_exception(exc)
            return
        retry = [item for item, result in zip(batch, results, strict=True)
                 if isinstance(result, NoScriptError)]
        _settle([(item, result) for item, result in zip(batch, results, strict=True)
                 if not isinstance(result, NoScriptError)])
        if retry:
            # Redis restarted and forgot the scripts: load them again and resend.
            log.warning("redis lost the scripts; reloading them")
            try:
                await self.load()
                results = await self._execute(retry)
            except (RedisError, OSError) as exc:
                results = [exc] * len(retry)
            _settle(list(zip(retry, results, strict=True)))

    async def _execute(
        self, batch: list[_Call]
    ) -> list[Any]:
        """Send the calls in one pipeline, same-script same-room calls as one batch
        call; return one result per call, in the calls' order."""
        groups: dict[tuple[str, str], list[int]] = {}
        for i, (name, keys, _, _, _) in enumerate(batch):
            groups.setdefault((name, _slot(keys)), []).append(i)
        results: list[Any] = [None] * len(batch)
        async with self.redis.pipeline(transaction=False) as pipe:
            for (name, _), members in groups.items():
                if len(members) == 1:
                    _, keys, args, _, _ = batch[members[0]]
                    pipe.evalsha(self.shas[name], len(keys), *keys, *args)
                    continue
                all_keys: list[str] = []
                packed: list[Arg] = [len(members)]
                for i in members:
                    _, keys, args, _, _ = batch[i]
                    all_keys.extend(keys)
                    packed.append(len(keys))
                    packed.append(len(args))
                    packed.extend(args)
                pipe.evalsha(self.shas[name + BATCH_SUFFIX], len(all_keys), *all_keys, *packed)
            replies = await pipe.execute(raise_on_error=False)
        for members, reply in zip(groups.values(), replies, strict=True):
            if len(members) == 1:
                results[members[0]] = reply
            elif isinstance(reply, Exception):
                # The whole batch call failed (NOSCRIPT, connection): every call in it did.
                for i in members:
                    results[i] = reply
            else:
                for i, one in zip(members, reply, strict=True):
                    results[i] = one
        return results

    async def drain(self) -> None:
        """Wait for every queued call to be answered (used at shutdown)."""
        while self._pending or self._inflight:
            if self._pending and not self._scheduled:
                self._flush()
            if self._inflight:
                await asyncio.gather(*list(self._inflight), return_exceptions=True)
            else:
                await asyncio.sleep(0)


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
    "publish": Contract(("seq", "log", "epoch"), ("event", "log_size", "channel")),
    "reserve": Contract(
        ("answer", "product_sale", "sale", "stock", "bought", "hold", "holds", "epoch",
         "policy", "open_holds", "ip_bought"),
        ("sale_id", "buyer", "quantity", "hold_id", "hold_ms", "answer_ttl_s", "product_id",
         "verified", "client", "max_open_holds")),
    "release": Contract(
        ("hold", "stock", "sale", "bought", "holds", "confirming", "claims", "epoch",
         "open_holds", "ip_bought"),
        ("hold_id", "mode", "buyer", "keep_ms")),
    "begin_checkout": Contract(
        ("answer", "hold", "holds", "coupon", "claims", "confirming", "epoch"),
        ("hold_id", "buyer", "coupon_id")),
    "finish_checkout": Contract(
        ("hold", "stock", "sale", "claims", "answer", "confirming", "open_holds"),
        ("order_id", "answer", "answer_ttl_s", "keep_ms", "hold_id")),
    "abort_checkout": Contract(("hold", "holds", "claims", "confirming"), ("hold_id",)),
    "stop_sale": Contract(
        ("sale", "stock", "bought", "holds", "timers", "open_holds", "ip_bought"),
        ("sale_id", "key_prefix", "keep_ms")),
    "claim_coupon": Contract(("answer", "coupon", "claims", "epoch"),
                             ("viewer", "answer_ttl_s", "coupon_id")),
    "enter_lottery": Contract(("answer", "lottery", "entrants", "present", "epoch"),
                              ("viewer", "entry_text", "answer_ttl_s", "lottery_id")),
    "adjust_stock": Contract(("stock",), ("total",)),
    "close_lottery": Contract(("lottery",), ()),
    "viewers": Contract(("present", "uniq", "peak"), ()),
    "reschedule": Contract(
        ("timers", "holds", "confirming", "due"),
        ("room_id", "timers_add_ms", "timers_not_before", "holds_add_ms", "holds_not_before",
         "confirming_add_ms", "confirming_not_before")),
    "chat_gate": Contract(("policy", "chat_rate", "slow_mode"), ("room_messages_per_s",)),
    "mint_guest": Contract(("mints",), ("limit", "window_ms", "member")),
}

# ====================================================================== replies

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


class Released(NamedTuple):
    """release.lua: `outcome` is 'done' when units moved back to stock, else
    'not_due', 'missing', 'rebuilding' or the hold's unchanged state."""

    outcome: str
    quantity: int
    product_id: str
    state: str  # the hold's state now ('released', 'expired', 'aborted', or unchanged)


def _released(reply: list[Any]) -> Released:
    if reply[0] == "done":
        return Released("done", int(reply[1]), str(reply[2]), str(reply[3]))
    return Released(str(reply[0]), 0, "", str(reply[0]))


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


# ====================================================================== typed calls


class Scripts(Ledger):
    """One method per script. Each builds its KEYS and ARGV in the order of
    `CONTRACTS` (and of the script's header) and returns a future of its typed
    reply, batched like every call (see `Ledger`)."""

    def publish(self, room_id: str, event: bytes, log_size: int) -> asyncio.Future[int]:
        """Append the encoded event `{...}` to the room's log under its next seq and
        publish it; resolves to the seq, or -1 while the room is being rebuilt."""
        k = room_keys(room_id)
        # No conversion: the reply is already an int, and this runs once per event.
        return self.run("publish", [k.seq, k.log, k.epoch], [event, log_size, k.channel])

    def reserve(self, room_id: str, *, sale_id: str, product_id: str, buyer: str,
                request_id: str, hold_id: str, quantity: int, hold_ms: int,
                answer_ttl_s: int, verified: bool, client: str,
                max_open_holds: int) -> asyncio.Future[Answered]:
        k = room_keys(room_id)
        return self.run("reserve", [
            k.request(buyer, "buy", request_id), k.product_sale(product_id), k.sale(sale_id),
            k.stock(product_id), k.bought(sale_id), k.hold(hold_id), k.holds, k.epoch,
            k.policy, k.open_holds, k.ip_bought(sale_id),
        ], [sale_id, buyer, quantity, hold_id, hold_ms, answer_ttl_s, product_id,
            "1" if verified else "0", client, max_open_holds], _answered)

    def release(self, room_id: str, *, hold_id: str, product_id: str, sale_id: str,
                mode: ReleaseMode, buyer: str = "",
                coupon_id: str = "") -> asyncio.Future[Released]:
        k = room_keys(room_id)
        return self.run("release", [
            k.hold(hold_id), k.stock(product_id), k.sale(sale_id), k.bought(sale_id),
            k.holds, k.confirming, k.claims(coupon_id or "-"), k.epoch, k.open_holds,
            k.ip_bought(sale_id),
        ], [hold_id, mode, buyer, KEEP_FINISHED_HOLD_MS], _released)

    def begin_checkout(self, room_id: str, *, buyer: str, request_id: str, hold_id: str,
                       coupon_id: str) -> asyncio.Future[CheckoutBegun]:
        k = room_keys(room_id)
        return self.run("begin_checkout", [
            k.request(buyer, "checkout", request_id), k.hold(hold_id), k.holds,
            k.coupon(coupon_id or "-"), k.claims(coupon_id or "-"), k.confirming, k.epoch,
        ], [hold_id, buyer, coupon_id], _checkout_begun)

    def finish_checkout(self, order: Order, answer: bytes,
                        answer_ttl_s: int) -> asyncio.Future[CheckoutFinished]:
        """Count the durable `order` in Redis and remember `answer` for retries of
        its checkout request."""
        k = room_keys(order.room_id)
        return self.run("finish_checkout", [
            k.hold(order.hold_id), k.stock(order.product_id), k.sale(order.sale_id),
            k.claims(order.coupon_id or "-"),
            k.request(order.buyer_id, "checkout", order.request_id or "-"),
            k.confirming, k.open_holds,
        ], [order.order_id, answer, answer_ttl_s, KEEP_FINISHED_HOLD_MS, order.hold_id],
            _checkout_finished)

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
                     answer_ttl_s: int) -> asyncio.Future[Answered]:
        k = room_keys(room_id)
        return self.run("claim_coupon", [
            k.request(viewer, "claim_coupon", request_id), k.coupon(coupon_id),
            k.claims(coupon_id), k.epoch,
        ], [viewer, answer_ttl_s, coupon_id], _answered)

    def enter_lottery(self, room_id: str, *, viewer: str, request_id: str, lottery_id: str,
                      entry_text: str, answer_ttl_s: int) -> asyncio.Future[Answered]:
        """`entry_text`: the normalized comment text ('' for a button entry)."""
        k = room_keys(room_id)
        return self.run("enter_lottery", [
            k.request(viewer, "enter_lottery", request_id), k.lottery(lottery_id),
            k.entrants(lottery_id), k.present, k.epoch,
        ], [viewer, entry_text, answer_ttl_s, lottery_id], _answered)

    def adjust_stock(self, room_id: str, product_id: str,
                     total: int) -> asyncio.Future[StockAdjusted]:
        return self.run("adjust_stock", [room_keys(room_id).stock(product_id)], [total],
                        _stock_adjusted)

    def close_lottery(self, room_id: str, lottery_id: str) -> asyncio.Future[bool]:
        """Close an open lottery for its draw; True for the one caller that did."""
        return self.run("close_lottery", [room_keys(room_id).lottery(lottery_id)], [], bool)

    def viewers(self, room_id: str) -> asyncio.Future[ViewerCounts]:
        k = room_keys(room_id)
        return self.run("viewers", [k.present, k.uniq, k.peak], [], _viewer_counts)

    def reschedule(self, room_id: str, *, recover_after_ms: int,
                   recovery_not_before: int) -> asyncio.Future[int | None]:
        """Put the room on the schedule (keys.DUE) at its earliest timer, expiring
        hold, or checkout due for recovery; None when it has nothing due."""
        k = room_keys(room_id)
        return self.run("reschedule", [k.timers, k.holds, k.confirming, DUE],
                        [room_id, 0, 0, 0, 0, recover_after_ms, recovery_not_before], _due)

    def chat_gate(self, room_id: str, viewer: str,
                  room_messages_per_s: float) -> asyncio.Future[ChatGate]:
        k = room_keys(room_id)
        return self.run("chat_gate", [k.policy, k.chat_rate, k.slow_mode(viewer)],
                        [room_messages_per_s], _chat_gate)

    def mint_guest(self, client: str, *, limit: int, window_ms: int,
                   member: str) -> asyncio.Future[GuestMint]:
        return self.run("mint_guest", [guest_mints(client)], [limit, window_ms, member],
                        _guest_mint)

