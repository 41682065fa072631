// Waitlists: "Join waitlist" on a sold-out card, this viewer's place in line (the
// server's answer, less the tickets it served ahead of it since), and a unit the
// line hands to this viewer taken as their hold. The rules are the server's
// (docs/protocol.md "Waitlists"): the page only asks and shows.

import { toast } from "../util.js";
import { updateCard } from "./cards.js";
import { onHold } from "./checkout.js";
import { S, live } from "./state.js";
import { REFUSALS } from "./words.js";

// While waiting, the place is asked again this often: others leaving the line
// move it without an event.
const REFRESH_MS = 10000;
let refreshTimer = null;

export const myPlace = (productId) => S.waiting.get(productId) || null;

export function joinWaitlist(productId) {
  if (!live || live.isPending((f) => f.type === "join_waitlist" && f.product_id === productId)) return;
  live.request({ type: "join_waitlist", product_id: productId });
  updateCard(productId);
}

export function leaveWaitlist(productId) {
  if (!live) return;
  live.request({ type: "leave_waitlist", product_id: productId });
}

/** The `waitlist` reply: this viewer's place. */
export function onWaitlist(reply) {
  S.waiting.set(reply.product_id, { position: reply.position, ticket: reply.ticket });
  const p = S.products.get(reply.product_id);
  if (p) p.waiting = Math.max(p.waiting || 0, reply.waiting);
  scheduleRefresh();
  updateCard(reply.product_id);
}

export function onWaitlistLeft(reply) {
  S.waiting.delete(reply.product_id);
  updateCard(reply.product_id);
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
    onHold(served);
  }
  updateCard(pid);
}

/** Ask again for every place this page holds (after a reconnect, and while waiting). */
export function refreshPlaces() {
  for (const pid of S.waiting.keys()) {
    if (live && live.state === "live") live.request({ type: "join_waitlist", product_id: pid });
  }
}

function scheduleRefresh() {
  if (refreshTimer !== null) return;
  refreshTimer = setInterval(() => {
    if (!S.waiting.size) { clearInterval(refreshTimer); refreshTimer = null; return; }
    refreshPlaces();
  }, REFRESH_MS);
}
