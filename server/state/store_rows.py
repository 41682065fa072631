"""The rows every order store writes the same way, whatever keeps them: an order's
columns in their order, and the webhook outbox's event of a fact (its id names the
fact, so the same fact is one event whoever writes it). The SQLite store
(server/state/sqlite_schema.py) and the PostgreSQL one (server/state/pg_store.py)
both build their rows here, so their events are byte for byte the same."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import orjson

from server.state.store import Order

ORDER_COLUMNS: Final = ("order_id", "hold_id", "room_id", "product_id", "sale_id", "buyer_id",
                        "quantity", "unit_price", "subtotal", "discount", "total", "currency",
                        "coupon_id", "payment_ref", "created_at", "request_id")


def outbox_row(room_id: str, kind: str, subject: str, data: dict[str, Any],
               at: int) -> tuple[Any, ...]:
    """An outbox row (event_id, room_id, type, data, created_at); the event's id
    names what it tells, so the same fact is one event whoever writes it."""
    return (f"evt_{subject}.{kind}", room_id, kind, orjson.dumps(data).decode(), at)


def outbox_row_of_order(row: Sequence[Any]) -> tuple[Any, ...]:
    """The `order.placed` event of an order row (ORDER_COLUMNS order)."""
    order = dict(zip(ORDER_COLUMNS, row, strict=True))
    return outbox_row(order["room_id"], "order.placed", order["order_id"], order,
                      order["created_at"])


def order_row(order: Order) -> tuple[Any, ...]:
    """The order's values in ORDER_COLUMNS order."""
    return tuple(getattr(order, c) for c in ORDER_COLUMNS)


def refund_record(order: Order, done: tuple[int, int], quantity: int | None,
                  fields: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The refund of `quantity` units (None: all that are left) of `order`, whose
    refunds so far are `done` (units, amount): ("new", the refund row's fields, with
    `fields` (refund_id, order_id, room_id, restock, reason, refunded_at, epoch) in
    their column order), or ("refunded", {}) when nothing is left, or ("too_many",
    {"left": n}). The amount is pro rata of what was paid, and the last refund takes
    what is left, so that an order's refunds add up to its total exactly. Both
    stores decide a refund by this, inside their write transaction."""
    done_qty, done_amount = done
    left = order.quantity - done_qty
    wanted = left if quantity is None else quantity
    if left <= 0:
        return "refunded", {}
    if wanted > left:
        return "too_many", {"left": left}
    amount = order.total - done_amount if wanted == left else \
        order.total * wanted // order.quantity
    return "new", {"refund_id": fields["refund_id"], "order_id": fields["order_id"],
                   "room_id": fields["room_id"], "quantity": wanted, "amount": amount,
                   "restock": int(fields["restock"]), "reason": fields["reason"],
                   "refunded_at": fields["refunded_at"], "epoch": fields["epoch"]}
