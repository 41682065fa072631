// Waitlists: "Join waitlist" on a sold-out card, this viewer's place in line (the
// server's answer, less the tickets it has served or taken off ahead of it since,
// and never past the count waiting), and a unit the line hands to this viewer,
// taken as their hold. The rules are the server's (docs/protocol.md "Waitlists"):
// the page only asks and shows. It does not ask for its place again on its own:
// asking is joining (`join_waitlist`), which would put back in line a viewer the
// server has just served or taken off.

import { toast } from "../util.js";
import { updateCard } from "./cards.js";
import { offerHold } from "./checkout.js";
import { noteHold } from "./orders.js";
import { S, live } from "./state.js";
import { REFUSALS } from "./words.js";

/** This viewer's place on the product's line: {position, ticket}, or null. */
export function myPlace(productId) {
  const place = S.waiting.get(productId);
  if (!place) return null;
  const p = S.products.get(productId);
  const waiting = p && p.waiting ? p.waiting : place.position;
  return { ...place, position: Math.max(1, Math.min(place.position, waiting)) };
}

export function joinWaitlist(productId) {
  if (!live || live.isPending((f) => f.type === "join_waitlist" && f.product_id === productId)) return;
  live.request({ type: "join_waitlist", product_id: productId });
  updateCard(productId);
}

/** Off the line at once: a late `waitlist` answer to a join sent before is ignored. */
export function leaveWaitlist(productId) {
  if (!live) return;
  S.waiting.delete(productId);
  S.leaving.add(productId);
  live.request({ type: "leave_waitlist", product_id: productId });
  updateCard(productId);
}

/** The `waitlist` reply: this viewer's place. */
export function onWaitlist(reply) {
  if (S.leaving.has(reply.product_id)) return;
  S.waiting.set(reply.product_id, { position: reply.position, ticket: reply.ticket });
  updateCard(reply.product_id);
}

export function onWaitlistLeft(reply) {
  S.leaving.delete(reply.product_id);
  S.waiting.delete(reply.product_id);
  updateCard(reply.product_id);
}

/** A refused join: whatever place the page showed is not the server's. */
export function onJoinRefused(productId) {
  S.waiting.delete(productId);
  updateCard(productId);
}

/** A `waitlist_offer` event: a hold made for this viewer is theirs to check out;
 *  everyone served or taken off ahead of this viewer moves them up one. */
export function onWaitlistOffer(ev) {
  const pid = ev.product_id;
  const me = S.me ? S.me.viewer_id : null;
  const mine = S.waiting.get(pid);
  let served = null;
  for (const o of ev.offers) {
    if (o.viewer_id === me) served = o.hold;
    else if (mine && o.ticket < mine.ticket) mine.position = Math.max(1, mine.position - 1);
  }
  for (const d of ev.dropped) {
    if (d.viewer_id === me) {
      S.waiting.delete(pid);
      toast(REFUSALS[d.reason] || "You were taken off the waitlist.", "error");
    } else if (mine && d.ticket < mine.ticket) {
      mine.position = Math.max(1, mine.position - 1);
    }
  }
  if (served) {
    S.waiting.delete(pid);
    toast("Your turn! One is held for you — check out before the timer runs out.", "ok");
    noteHold(served);
    offerHold(served);
  }
  updateCard(pid);
}

/** The show ended: nobody waits any more. */
export function forgetPlaces() {
  S.waiting.clear();
  S.leaving.clear();
}
