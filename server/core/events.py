"""Every event the server sends to a room's viewers, built in one place.

Each builder returns the event as a dict for the hub to number and fan out
(docs/protocol.md, section 6, documents each type; tests/test_events.py checks
that every type here is documented). Features call these; none writes an
event's dict literal itself, so a field is renamed or added here once.
"""

from __future__ import annotations

from typing import Any, Final

Event = dict[str, Any]


def product(card: dict[str, Any]) -> Event:
    return {"type": "product", "product": card}


def pinned(card: dict[str, Any], pins: list[str]) -> Event:
    return {"type": "pinned", "product": card, "pins": pins}


def unpinned(product_id: str, pins: list[str]) -> Event:
    return {"type": "unpinned", "product_id": product_id, "pins": pins}


def sale_started(sale: dict[str, Any]) -> Event:
    """`sale_open` for a sale open now, `sale_scheduled` for one that starts later."""
    return {"type": "sale_open" if sale["state"] == "open" else "sale_scheduled",
            "sale": sale}


def sale_open(sale: dict[str, Any]) -> Event:
    return {"type": "sale_open", "sale": sale}


def sale_countdown(sale_id: str, product_id: str, starts_at: int, seconds_left: int) -> Event:
    return {"type": "sale_countdown", "sale_id": sale_id, "product_id": product_id,
            "starts_at": starts_at, "seconds_left": seconds_left}


def sale_closed(sale: dict[str, Any]) -> Event:
    return {"type": "sale_closed", "sale": sale}


def holds_voided(sale_id: str, product_id: str, reason: str, units: int,
                 hold_ids: list[str]) -> Event:
    return {"type": "holds_voided", "sale_id": sale_id, "product_id": product_id,
            "reason": reason, "units": units, "hold_ids": hold_ids}


def stock(product_id: str, stock_view: dict[str, int], sale: dict[str, Any] | None,
          waiting: int = 0) -> Event:
    """`waiting`: viewers on the product's waitlist."""
    return {"type": "stock", "product_id": product_id, "stock": stock_view, "sale": sale,
            "waiting": waiting}


def claimed(product_id: str, viewer_id: str, nickname: str, quantity: int,
            message_id: str) -> Event:
    """A comment bought units (comment-to-buy): the room sees who, in chat."""
    return {"type": "claimed", "product_id": product_id, "viewer_id": viewer_id,
            "nickname": nickname, "quantity": quantity, "message_id": message_id}


def waitlist_offer(product_id: str, offers: list[dict[str, Any]],
                   dropped: list[dict[str, Any]]) -> Event:
    """Units went to the head of a product's waitlist: `offers` (viewer_id, ticket,
    the hold made for them), and viewers taken off the list (`dropped`: viewer_id,
    ticket, reason)."""
    return {"type": "waitlist_offer", "product_id": product_id, "offers": offers,
            "dropped": dropped}


def coupon_drop(coupon: dict[str, Any]) -> Event:
    return {"type": "coupon_drop", "coupon": coupon}


def coupon_ended(coupon: dict[str, Any]) -> Event:
    """The host ended a drop early: the drop as it is now (`expires_at`: when it
    ended)."""
    return {"type": "coupon_ended", "coupon": coupon}


def coupon_count(coupon_id: str, remaining: int) -> Event:
    return {"type": "coupon_count", "coupon_id": coupon_id, "remaining": remaining}


def auction_started(view: dict[str, Any]) -> Event:
    """The auction as everyone sees it (views.auction_view), in each auction event."""
    return {"type": "auction_started", "auction": view}


def auction_ended(view: dict[str, Any]) -> Event:
    """By the clock, the host or a buy-now; `cancelled` ones are auction_cancelled."""
    if view["result"]["ended_by"] == "cancelled":
        return {"type": "auction_cancelled", "auction": view}
    return {"type": "auction_ended", "auction": view}


def auction_second_chance(view: dict[str, Any]) -> Event:
    return {"type": "auction_second_chance", "auction": view}


def auction_bid(fields: dict[str, Any]) -> Event:
    """An accepted bid: the fields bid.lua built (docs/protocol.md section 15)."""
    return {"type": "auction_bid", **fields}


def message_pinned(pinned: dict[str, Any] | None) -> Event:
    """The host pinned a message (None: unpinned)."""
    return {"type": "message_pinned", "pinned_message": pinned}


def poll_open(poll: dict[str, Any]) -> Event:
    return {"type": "poll_open", "poll": poll}


def poll_votes(poll: dict[str, Any]) -> Event:
    """A poll's latest counts (coalesced like stock)."""
    return {"type": "poll_votes", "poll_id": poll["poll_id"], "votes": poll["votes"],
            "total": poll["total"], "percent": poll["percent"]}


def poll_closed(poll: dict[str, Any]) -> Event:
    return {"type": "poll_closed", "poll": poll}


def question(q: dict[str, Any]) -> Event:
    """A viewer asked the host a question."""
    return {"type": "question", "question": q}


def question_votes(question_id: str, votes: int) -> Event:
    """A question's latest upvotes (coalesced like stock)."""
    return {"type": "question_votes", "question_id": question_id, "votes": votes}


def question_answered(q: dict[str, Any]) -> Event:
    return {"type": "question_answered", "question": q}


def group_deal(deal: dict[str, Any]) -> Event:
    """A group deal opened, closed, or its units changed."""
    return {"type": "group_deal", "deal": deal}


def group_update(group: dict[str, Any], hold_ids: dict[str, str] | None = None,
                 expires_at: int | None = None) -> Event:
    """A group started, gained a member, filled (`state` complete: `holds`, viewer ->
    hold id, are now checkout-able until `expires_at`) or expired (its holds ended)."""
    body: Event = {"type": "group_update", "group": group}
    if hold_ids is not None:
        body["holds"] = hold_ids
    if expires_at is not None:
        body["expires_at"] = expires_at
    return body


def lottery_open(lottery: dict[str, Any]) -> Event:
    return {"type": "lottery_open", "lottery": lottery}


def lottery_drawn(lottery: dict[str, Any]) -> Event:
    """The drawn lottery without its entrant list (the count and digest stay)."""
    slim = {**lottery, "result": {k: v for k, v in lottery["result"].items()
                                  if k != "entrants"}}
    return {"type": "lottery_drawn", "lottery": slim}


def lottery_entrants(lottery_id: str, entrants: int) -> Event:
    return {"type": "lottery_entrants", "lottery_id": lottery_id, "entrants": entrants}


def chat(message_id: str, viewer_id: str, nickname: str, text: str,
         from_host: bool = False, level: int = 0) -> Event:
    """`level`: the sender's fan level then (0: none; docs/protocol.md section 19)."""
    event: Event = {"type": "chat", "message_id": message_id, "viewer_id": viewer_id,
                    "nickname": nickname, "text": text, "level": level}
    if from_host:
        event["host"] = True
    return event


def referral_reward(inviter: str, nickname: str, state: str,
                    reward: dict[str, Any]) -> Event:
    """An inviter earned (`state` 'paid') or lost ('reversed') a referral reward."""
    return {"type": "referral_reward", "inviter": inviter, "nickname": nickname,
            "state": state, "reward": reward}


def order_cancelled(order_id: str, hold_id: str, buyer_id: str, product_id: str,
                    quantity: int, reason: str, cancelled_at: int) -> Event:
    """The host cancelled an order: its units are back in stock. `hold_id` names
    the hold it was placed from (a page that knew only the hold finds it)."""
    return {"type": "order_cancelled", "order_id": order_id, "hold_id": hold_id,
            "buyer_id": buyer_id, "product_id": product_id, "quantity": quantity,
            "reason": reason, "cancelled_at": cancelled_at}


def order_refunded(order_id: str, buyer_id: str, product_id: str,
                   refund: dict[str, Any]) -> Event:
    """The host refunded units of an order (`refund`: quantity, amount, restock...)."""
    return {"type": "order_refunded", "order_id": order_id, "buyer_id": buyer_id,
            "product_id": product_id, "refund": refund}


def chat_deleted(message_id: str) -> Event:
    return {"type": "chat_deleted", "message_id": message_id}


def viewer_muted(viewer_id: str, until: int) -> Event:
    return {"type": "viewer_muted", "viewer_id": viewer_id, "until": until}


def announcement(text: str) -> Event:
    return {"type": "announcement", "text": text}


def likes(total: int) -> Event:
    return {"type": "likes", "total": total}


def viewers(now: int, unique: int, peak: int) -> Event:
    return {"type": "viewers", "now": now, "unique": unique, "peak": peak}


def room_policy(policy: dict[str, Any]) -> Event:
    return {"type": "room_policy", "policy": policy}


def room_updated(room_id: str, title: str, stream_url: str) -> Event:
    """The host changed the show's title or stream: both, as they are now ("" for
    no stream), so a page sets its title and player from this event alone."""
    return {"type": "room_updated", "room_id": room_id, "title": title,
            "stream_url": stream_url}


def show_live(room_id: str) -> Event:
    return {"type": "show_live", "room_id": room_id}


def show_reminder(room_id: str, title: str, starts_at: int) -> Event:
    """A scheduled show starts soon (server.reminder_lead_s before it): for the pages
    and, through webhooks, the shop's own reminder channels."""
    return {"type": "show_reminder", "room_id": room_id, "title": title,
            "starts_at": starts_at}


def show_ended(room_id: str, ended_at: int) -> Event:
    return {"type": "show_ended", "room_id": room_id, "ended_at": ended_at}


# Frames sent to one connection only (not numbered, not in the room's log).
def welcome(room_id: str, viewer_id: str, nickname: str, verified: bool,
            token: str) -> Event:
    return {"type": "welcome", "room_id": room_id,
            "viewer": {"viewer_id": viewer_id, "nickname": nickname, "verified": verified},
            "token": token}


def pong(server_time: int, client_time: Any | None, request_id: str | None) -> Event:
    body: Event = {"type": "pong", "server_time": server_time}
    if client_time is not None:
        body["t"] = client_time
    if request_id is not None:
        body["re"] = request_id
    return body


def snapshot(state: dict[str, Any]) -> Event:
    return {"type": "snapshot", **state}


ROOM_EVENTS: Final = (
    "product", "pinned", "unpinned", "sale_open", "sale_scheduled", "sale_countdown",
    "sale_closed", "holds_voided", "stock", "waitlist_offer", "claimed", "coupon_drop",
    "coupon_ended", "coupon_count",
    "lottery_open", "lottery_drawn", "lottery_entrants", "auction_started", "auction_bid",
    "auction_ended", "auction_cancelled", "auction_second_chance", "message_pinned",
    "poll_open", "poll_votes", "poll_closed", "question", "question_votes",
    "question_answered", "group_deal", "group_update", "referral_reward", "order_cancelled",
    "order_refunded",
    "chat", "chat_deleted",
    "viewer_muted",
    "announcement", "likes", "viewers", "room_policy", "room_updated", "show_live",
    "show_reminder", "show_ended")
DIRECT_FRAMES: Final = ("welcome", "pong", "snapshot")
