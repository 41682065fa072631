// Every refusal code the server can send, and why a shop sign-in was refused, in
// plain words for the viewer (the server's code decides; these only word it).

import { money } from "../util.js";

export const REFUSALS = {
  sold_out: "Sold out — every unit is sold or in someone's cart.",
  limit_reached: "You've reached the per-buyer limit for this sale.",
  not_started: "The sale hasn't started yet.",
  ended: "This sale has ended.",
  not_on_sale: "This product isn't on sale right now.",
  insufficient_stock: "Not enough left for that quantity — try fewer.",
  hold_expired: "Your hold expired, so the item went back to stock.",
  hold_not_found: "That reservation no longer exists.",
  hold_released: "That reservation was released.",
  checked_out: "This reservation is already checked out.",
  sale_stopped: "The host stopped this sale, so your reservation was cancelled and the item went back to stock.",
  checkout_cancelled: "Your order couldn't be recorded in time, so it was cancelled — nothing was placed. Try again if units are left.",
  show_ended: "This show has ended.",
  coupon_gone: "All coupons from this drop have been claimed.",
  coupon_expired: "This coupon has expired.",
  coupon_not_found: "That coupon doesn't exist.",
  coupon_not_claimed: "Claim the coupon before using it.",
  coupon_used: "You've already used this coupon.",
  coupon_min_spend: "This order doesn't reach the coupon's minimum spend.",
  coupon_currency: "This coupon is in a different currency from the product.",
  already_claimed: "You've already claimed this coupon.",
  lottery_not_found: "That giveaway doesn't exist.",
  lottery_closed: "This giveaway is closed.",
  not_eligible: "You can't enter this giveaway (be in the live room, and use the keyword if it needs one).",
  already_entered: "You're already entered.",
  product_not_found: "That product isn't in this show any more.",
  room_not_found: "This room doesn't exist.",
  muted: "You're muted in this chat for now.",
  rate_limited: "You're going a bit fast — wait a moment and try again.",
  request_in_progress: "Still working on your previous request…",
  store_unavailable: "The order couldn't be recorded just now. Your hold is kept — try again.",
  unavailable: "The shop is briefly unavailable. Try again in a moment.",
  internal: "Something went wrong on our side. Try again.",
  waitlist_ahead: "Others are waiting for this item — join the waitlist and you'll be served in turn.",
  not_sold_out: "This item isn't sold out — buy it now instead of waiting.",
  waitlist_full: "The waitlist for this item is full.",
  away: "You were away from the show too long, so you lost your place in line.",
  too_many_holds: "You already have the most reservations open at once — check out or release one first.",
  ip_limit_reached: "Buyers on your network have already reached this sale's per-buyer limit.",
  signed_identity_required: "Only customers signed in on the shop can buy here. Sign in on the shop and open the show from there.",
  slow_mode: "Slow mode is on — wait a moment before your next message.",
  chat_busy: "The chat is very busy — wait a moment and send again.",
  too_many_identities: "Too many new visitors from your network just now — try again shortly.",
  identity_refused: "The shop sign-in was refused.",
  poll_not_found: "This poll doesn't exist any more.",
  poll_closed: "This poll has closed: your vote came too late.",
  already_voted: "You've already voted in this poll: only your first vote counts.",
  too_many_questions: "You already have the most questions waiting for an answer. Ask this one once the host has answered one of yours.",
  own_question: "That's your own question: only others can upvote it.",
  question_answered: "The host has already answered this question.",
  question_not_found: "This question isn't in the show any more.",
  deal_not_found: "This group deal isn't in the show any more.",
  deal_closed: "The host has closed this group deal: no new groups or members.",
  deal_full: "No units are left for a new group. Join one of the open groups instead.",
  group_not_found: "That group doesn't exist: the link may be wrong or old.",
  group_full: "That group is already full. Join another group or start your own.",
  group_expired: "That group ran out of time before it filled. Start a new group or join another one.",
  already_in_group: "You're already in a group for this deal (one group per deal). Invite friends to fill it.",
  group_not_full: "Your group isn't full yet: you can pay once everyone has joined.",
  level_required: "This is for fans at a higher level: earn points by watching, chatting and inviting friends.",
  invite_invalid: "That invite link isn't valid for this show: it may be damaged or for another show.",
  self_invite: "That's your own invite link (or one shared on your own network): send it to friends instead.",
  already_invited: "You already joined through another friend's invite: only the first one counts.",
};

// Why the server refused a shop sign-in (details.reason), in plain words.
const SIGNIN_REASONS = {
  not_configured: "this show does not accept shop sign-ins",
  expired: "the sign-in has expired",
  not_yet_valid: "the sign-in is not valid yet",
  signature: "the sign-in was not signed by this shop",
  algorithm: "the sign-in was not signed by this shop",
  malformed: "the sign-in link is damaged",
  too_large: "the sign-in link is damaged",
  lifetime: "the sign-in is valid for too long",
};

// How to word the refusal of one request, by its request_id (the error frame's
// `re`), where the page knows more than the code: viewer/checkout.js names the
// coupon and hold of each checkout it sends. A function that returns "" leaves the
// refusal to the table above.
const WORDERS_KEPT = 32;
const worders = new Map();

export function wordRefusalOf(requestId, fn) {
  if (!requestId) return;
  worders.delete(requestId);
  worders.set(requestId, fn);
  while (worders.size > WORDERS_KEPT) worders.delete(worders.keys().next().value);
}

export function explain(err) {
  if (!err) return "Something went wrong.";
  const worder = err.re !== undefined && err.re !== null ? worders.get(err.re) : null;
  const said = worder ? worder(err) : "";
  if (said) return said;
  return REFUSALS[err.code] || err.message || "Something went wrong.";
}

// Why a coupon cannot apply to a hold (docs/protocol.md §9 "Coupons at checkout"),
// by the refusal code the server answers (or would answer) for it, with the amounts
// the page knows: short, for the coupon's line in the checkout's choice ...
export function couponWhy(code, coupon, hold) {
  const c = coupon || {};
  switch (code) {
    case "coupon_currency":
      return `only for orders in ${c.currency || "another currency"}; this one is in ${hold.currency}`;
    case "coupon_min_spend": {
      const short = (c.min_spend || 0) - hold.unit_price * hold.quantity;
      return short > 0 ? `spend ${money(short, c.currency)} more to use it (minimum ${money(c.min_spend, c.currency)})`
                       : "this order doesn't reach its minimum spend";
    }
    case "coupon_expired":
      return "expired";
    case "coupon_used":
      return "already used";
    case "coupon_not_found":
      return "no longer offered in this show";
    case "coupon_not_claimed":
      return "not claimed by you";
    default:
      return "can't be used on this order";
  }
}

// ... and whole, for the checkout's message.
export function explainCoupon(code, coupon, hold) {
  const c = coupon || {};
  const name = c.title ? `“${c.title}”` : "The coupon";
  const subtotal = hold ? hold.unit_price * hold.quantity : 0;
  switch (code) {
    case "coupon_currency":
      return `${name} is only for orders in ${c.currency || "another currency"}, and this order is in ${hold.currency}.`;
    case "coupon_min_spend": {
      const short = (c.min_spend || 0) - subtotal;
      return short > 0
        ? `${name} needs an order of at least ${money(c.min_spend, c.currency)}: this one is ` +
          `${money(subtotal, hold.currency)}, ${money(short, c.currency)} short.`
        : REFUSALS.coupon_min_spend;
    }
    case "coupon_expired":
      return `${name} has expired.`;
    case "coupon_used":
      return `${name} is already used on another order.`;
    case "coupon_not_found":
      return `${name} is no longer offered in this show.`;
    case "coupon_not_claimed":
      return `${name} isn't claimed by you: claim a coupon before using it.`;
    default:
      return REFUSALS[code] || "The coupon can't be used on this order.";
  }
}

export function signinRefusedText(err) {
  const reason = err && err.details && err.details.reason ? String(err.details.reason) : "";
  const why = SIGNIN_REASONS[reason] || (reason ? `reason: ${reason}` : "");
  return `The shop sign-in was refused${why ? ` (${why})` : ""}.`;
}

// Why the server refused a bid (docs/protocol.md "WebSocket: bid"), with the
// amounts it named, in the auction's currency.
const NOT_ELIGIBLE = {
  signed_identity_required: "Only customers signed in on the shop can bid here. Sign in on the shop and open the show from there.",
  unpaid_win: "You won an earlier auction in this show and did not pay for it, so you can't bid again in this show.",
};

export function explainBid(err, currency) {
  const d = (err && err.details) || {};
  const m = (v) => money(v, currency);
  switch (err && err.code) {
    case "below_minimum":
      return Number.isFinite(d.min_next) ? `Too low: the next bid must be at least ${m(d.min_next)}.`
                                         : "Too low: bid at least the amount on the button.";
    case "outbid_by_proxy":
      return "Another bidder's max bid is higher" +
             (Number.isFinite(d.amount) ? `: the bid is now ${m(d.amount)}` : "") +
             (Number.isFinite(d.min_next) ? `. Bid ${m(d.min_next)} or more to lead.` : ".");
    case "self_outbid":
      return "You're already leading" + (Number.isFinite(d.max_amount) ? ` (your max bid is ${m(d.max_amount)})` : "") +
             ". To go higher, enter a bigger max bid.";
    case "auction_ended":
      return "This auction has ended: the bid came too late.";
    case "not_eligible":
      return NOT_ELIGIBLE[d.reason] || "You can't bid in this auction.";
    default:
      return explain(err);
  }
}

// Why the server refused a vote (docs/protocol.md section 16), naming the option
// it counted when it says which.
export function explainVote(err, poll) {
  const d = (err && err.details) || {};
  switch (err && err.code) {
    case "already_voted": {
      const counted = poll && Number.isInteger(d.option) ? poll.options[d.option] : undefined;
      return counted !== undefined
        ? `You've already voted in this poll: your vote for “${counted}” is the one that counts.`
        : REFUSALS.already_voted;
    }
    case "signed_identity_required":
      return "Only customers signed in on the shop can vote here. Sign in on the shop and open the show from there.";
    case "store_unavailable":
      return "Your vote couldn't be recorded just now — try again.";
    default:
      return explain(err);
  }
}

// Why the server refused a question (docs/protocol.md section 17). A question is a
// chat message for the limits, so the chat's refusals apply; slow mode and a busy
// chat name the wait (details.retry_after_s), counted down on the Ask button.
export function explainAsk(err) {
  const d = (err && err.details) || {};
  const wait = Number(d.retry_after_s);
  const secs = Number.isFinite(wait) && wait > 0 ? ` ${Math.ceil(wait)} s` : " a moment";
  switch (err && err.code) {
    case "too_many_questions":
      return REFUSALS.too_many_questions;
    case "muted":
      return "The host muted you in this chat, so you can't ask questions for now.";
    case "slow_mode":
      return `Slow mode is on: wait${secs} before asking. Your question is still in the box.`;
    case "chat_busy":
      return `The chat is very busy: wait${secs} and ask again. Your question is still in the box.`;
    case "rate_limited":
      return "You're asking a bit fast: wait a moment and ask again.";
    case "signed_identity_required":
      return "Only customers signed in on the shop can ask questions here. Sign in on the shop and open the show from there.";
    case "store_unavailable":
      return "Your question couldn't be recorded just now: ask again.";
    case "bad_request":
      return "The question can't be sent as it is: it's empty or too long.";
    default:
      return explain(err);
  }
}

// Why the server refused an upvote (docs/protocol.md section 17).
export function explainUpvote(err) {
  switch (err && err.code) {
    case "signed_identity_required":
      return "Only customers signed in on the shop can upvote here. Sign in on the shop and open the show from there.";
    case "store_unavailable":
      return "Your upvote couldn't be recorded just now: try again.";
    default:
      return explain(err);
  }
}

// A fan level the viewer hasn't reached (docs/protocol.md section 19), naming the
// level asked and the viewer's own: `details.min_level`, `details.level`.
export function explainLevel(err, what = "take part") {
  const d = (err && err.details) || {};
  if (!Number.isInteger(d.min_level)) return REFUSALS.level_required;
  const earn = "earn points by watching, chatting and inviting friends.";
  const mine = Number.isInteger(d.level) ? ` You're level ${d.level}: ${earn}` : ` You can ${earn}`;
  return `Only fans at level ${d.min_level} or higher can ${what}.${mine}`;
}

// Why the server refused to start or join a group (docs/protocol.md section 18).
export function explainGroup(err) {
  switch (err && err.code) {
    case "level_required":
      return explainLevel(err, "join this group deal");
    case "signed_identity_required":
      return "Only customers signed in on the shop can join group deals here. Sign in on the shop and open the show from there.";
    case "too_many_holds":
      return "You already have the most reservations open at once: pay for or release one first, then join.";
    case "store_unavailable":
      return "That couldn't be recorded just now: try again.";
    default:
      return explain(err);
  }
}
