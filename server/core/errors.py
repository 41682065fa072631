"""The exception tree and the one mapping from a refusal to its wire form.

Every business refusal is a `LivesellError` with a stable `code`; the same
object knows its HTTP status. WebSocket close codes used by the server are
named here too. Pure: no I/O.
"""

from __future__ import annotations

from typing import Any, Final

# Close codes (RFC 6455 section 7.4 plus the private 4000-4999 range).
# 1007 (text frame that is not valid UTF-8) and 1009 (frame above hub.max_frame_bytes)
# are sent by the WebSocket parser itself; JSON faults get error frames instead.
CLOSE_GOING_AWAY: Final = 1001  # server shutting down
CLOSE_UNSUPPORTED_DATA: Final = 1003  # binary frame where JSON text was expected
CLOSE_POLICY: Final = 1008  # kept sending rejected frames after being told
CLOSE_INTERNAL: Final = 1011  # unexpected fault
CLOSE_SERVICE_RESTART: Final = 1012  # draining on SIGTERM: reconnect (to another process)
CLOSE_TRY_AGAIN: Final = 1013  # server starting or stopping
# A secret in the URL, or a Sec-WebSocket-Protocol list the server cannot read
# (server/realtime/handshake.py); the reason says which. Do not retry unchanged.
CLOSE_BAD_HANDSHAKE: Final = 4000
CLOSE_IDENTITY_REFUSED: Final = 4001  # a shop token that is invalid, expired or not HS256
CLOSE_WRONG_HOST_KEY: Final = 4003  # a host key offered on /ws but not this room's
CLOSE_UNKNOWN_ROOM: Final = 4004
CLOSE_TOO_SLOW: Final = 4008  # outbound buffer stayed full past hub.behind_timeout_s
CLOSE_TOO_MANY_IDENTITIES: Final = 4029  # auth.guest_mints_per_ip_per_min reached


class LivesellError(Exception):
    """A refusal the client should see, with a stable machine-readable code."""

    code: str = "error"
    status: int = 400

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None,
                 details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.details = details or {}

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            body["details"] = self.details
        return body


class BadRequest(LivesellError):
    """The request is malformed: wrong JSON, type, size or range."""

    code = "bad_request"
    status = 400


class Unauthorized(LivesellError):
    code = "unauthorized"
    status = 401


class Forbidden(LivesellError):
    code = "forbidden"
    status = 403


class NotFound(LivesellError):
    code = "not_found"
    status = 404


class Conflict(LivesellError):
    """A business rule refused the request (sold out, over limit, too early, ...)."""

    code = "conflict"
    status = 409


class RateLimited(LivesellError):
    code = "rate_limited"
    status = 429


class UnsupportedMedia(LivesellError):
    code = "unsupported_media"
    status = 415


class PayloadTooLarge(LivesellError):
    code = "payload_too_large"
    status = 413


class Unavailable(LivesellError):
    code = "unavailable"
    status = 503


# The business refusal codes the ledger scripts return, mapped to their
# exception class and a plain-words message. Clients switch on the code.
REFUSALS: Final[dict[str, tuple[type[LivesellError], str]]] = {
    "sold_out": (Conflict, "Sold out: no units left."),
    "limit_reached": (Conflict, "You have reached the per-buyer limit for this sale."),
    "not_started": (Conflict, "The sale has not started yet."),
    "ended": (Conflict, "The sale has ended."),
    "not_on_sale": (Conflict, "This product is not open for sale, and no sale of it is "
                    "running."),
    "hold_expired": (Conflict, "The hold expired; its units went back to stock."),
    "hold_not_found": (NotFound, "No such hold for this buyer."),
    "hold_released": (Conflict, "The hold was released."),
    "coupon_gone": (Conflict, "No coupons of this drop are left."),
    "coupon_expired": (Conflict, "The coupon drop has expired."),
    "coupon_not_found": (NotFound, "No such coupon drop."),
    "coupon_not_claimed": (Conflict, "You have not claimed this coupon."),
    "coupon_used": (Conflict, "This coupon was already used."),
    "coupon_min_spend": (Conflict, "The order does not reach the coupon's minimum spend."),
    "coupon_currency": (Conflict, "The coupon is for another currency than this order."),
    "already_claimed": (Conflict, "You already claimed a coupon from this drop."),
    "lottery_not_found": (NotFound, "No such lottery."),
    "lottery_closed": (Conflict, "The lottery is closed."),
    "not_eligible": (Conflict, "You are not eligible to enter this lottery."),
    "already_entered": (Conflict, "You already entered this lottery."),
    "product_not_found": (NotFound, "No such product in this room."),
    "room_not_found": (NotFound, "No such room."),
    "sale_not_found": (NotFound, "No such sale."),
    "sale_active": (Conflict, "The product already has a sale scheduled or running."),
    "insufficient_stock": (Conflict, "Not enough stock left for that."),
    "waitlist_ahead": (Conflict, "Others are waiting for this product: join the waitlist."),
    "not_sold_out": (Conflict, "This product is not sold out: buy it instead of waiting."),
    "waitlist_full": (Conflict, "The waitlist for this product is full."),
    "pin_limit": (Conflict, "Too many products pinned."),
    "muted": (Forbidden, "You are muted in this room."),
    "rate_limited": (RateLimited, "Too many requests: slow down."),
    "request_in_progress": (Conflict, "A request with this id is still being processed."),
    "sale_stopped": (Conflict, "The host stopped the sale; this hold was cancelled and its "
                     "units went back to stock."),
    "signed_identity_required": (Forbidden, "This room sells only to signed-in shop "
                                 "customers: sign in on the shop's site to buy here."),
    "too_many_holds": (Conflict, "You have too many items in your cart: check out or "
                       "release one first."),
    "ip_limit_reached": (Conflict, "The per-buyer limit for this sale is reached for your "
                         "network address."),
    "slow_mode": (RateLimited, "Slow mode is on: wait before sending another message."),
    "chat_busy": (RateLimited, "The chat is busy: try again in a moment."),
    "too_many_identities": (RateLimited, "Too many new guest identities from your address: "
                            "try again later."),
    "checkout_cancelled": (Conflict, "The order could not be recorded in time and was "
                           "cancelled; nothing was placed and the units went back to stock."),
    "auction_not_found": (NotFound, "No such auction."),
    "poll_not_found": (NotFound, "No such poll."),
    "poll_closed": (Conflict, "The poll is closed."),
    "already_voted": (Conflict, "You already voted in this poll."),
    "message_not_found": (NotFound, "No such message in the recent chat."),
    "question_not_found": (NotFound, "No such question."),
    "deal_not_found": (NotFound, "No such group deal."),
    "deal_closed": (Conflict, "The group deal is closed."),
    "deal_full": (Conflict, "No units are left for a new group: join an open one."),
    "group_not_found": (NotFound, "No such group."),
    "group_full": (Conflict, "The group is already full."),
    "group_expired": (Conflict, "The group ran out of time."),
    "already_in_group": (Conflict, "You are already in a group of this deal."),
    "group_not_full": (Conflict, "Your group is not full yet: it can be paid once it is."),
    "own_question": (Conflict, "You cannot upvote your own question."),
    "question_answered": (Conflict, "The host already answered this question."),
    "too_many_questions": (Conflict, "You have too many questions waiting for an answer."),
    "questions_full": (Conflict, "This room takes no more questions."),
    "auction_ended": (Conflict, "The auction has ended."),
    "auction_active": (Conflict, "The product already has an auction running."),
    "below_minimum": (Conflict, "Your bid is below the minimum next bid."),
    "outbid_by_proxy": (Conflict, "A higher maximum bid leads: bid more."),
    "self_outbid": (Conflict, "You are already leading: raise your maximum instead."),
    "auction_open": (Conflict, "The auction is still open."),
    "winner_paying": (Conflict, "The winner's hold is still open or paid."),
    "no_runner_up": (Conflict, "Nobody else bid on this auction."),
    "second_chance_used": (Conflict, "The second-chance offer was already made."),
    "unit_returned": (Conflict, "The auction's unit already went back to stock."),
    "level_required": (Forbidden, "This needs a higher fan level: watch, chat and shop in "
                       "this channel to earn points."),
    "invite_invalid": (Conflict, "This invite link is not valid for this room."),
    "self_invite": (Conflict, "You cannot accept your own invite."),
    "too_many_images": (Conflict, "This room holds its most images "
                                  "(images.max_per_room)."),
    "already_invited": (Conflict, "You already joined through another invite link."),
}


def refusal(code: str, message: str | None = None, **details: Any) -> LivesellError:
    """Build the error for a refusal code (unknown codes become a generic conflict)."""
    cls, default_message = REFUSALS.get(code, (Conflict, code.replace("_", " ")))
    return cls(message or default_message, code=code, details=details or None)
