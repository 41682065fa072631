// The viewer's hold and checkout: the cart bar while a hold lasts, the checkout
// dialog (coupon, totals, place order, release), the order confirmation shown only
// on the server's `order_placed`, and holds the host's stop voided.
//
// The checkout never leads the buyer into a refusal the page could have seen
// coming. Its coupon choice follows the server's rules (viewer/coupons.js): a
// coupon that cannot apply to this hold is shown disabled with why, the best one
// that applies is preselected, and one that stops applying is never sent. A
// checkout asked for while the connection is down is kept here, not sent blind:
// when the connection is back and the server has said where everything stands (a
// snapshot), the hold and the coupon are checked again; if either changed, the
// buyer is shown what and asked again, else it goes out as it was asked.

import { $, clock, h, initials, money, newId, setText, store, tileColor, toast } from "../util.js";
import { renderAllCards } from "./cards.js";
import {
  COUPON_REFUSALS, bestCoupon, couponText, couponsFor, learnCouponRefusal, markUsed, subtotalOf, walletCoupons,
} from "./coupons.js";
import { renderPromos } from "./promos.js";
import { S, keys, live, now, showEnded } from "./state.js";
import { REFUSALS, couponWhy, explainCoupon, wordRefusalOf } from "./words.js";

export function setHold(hold) {
  S.hold = hold;
  store.set(keys.hold(), hold);
  renderHold();
  if (hold === null) nextQueued();
}

// Holds handed to this viewer while another is being checked out (a waitlist's unit,
// a comment's buy): the page checks out one hold at a time, so they wait here and
// come next, each until its own expiry.
const queued = [];

const liveHold = () => !!S.hold && !S.hold.dead && S.hold.expires_at > now();

/** A hold the server made for this viewer without a buy button press. */
export function offerHold(hold) {
  if (liveHold() && S.hold.id !== hold.id) {
    if (!queued.some((h) => h.id === hold.id)) queued.push(hold);
    const p = S.products.get(hold.product_id);
    toast(`${p ? p.title : "An item"} is held for you too: it comes next, after this checkout.`, "ok");
    return;
  }
  onHold(hold);
}

function nextQueued() {
  while (queued.length) {
    const hold = queued.shift();
    if (hold.expires_at > now()) { onHold(hold); return; }
  }
}

/** The hold is over (refused, voided or expired): keep it on screen with why. */
export function endHold(why) {
  S.hold.dead = why;
  store.set(keys.hold(), S.hold);
}

export function onHold(hold) {
  const p = S.products.get(hold.product_id);
  setHold({ ...hold, buyer: S.me ? S.me.viewer_id : null, title: p ? p.title : "Your item",
            image_url: p ? p.image_url : "" });
  renderAllCards();
  openCheckout();
}

export function onHoldReleased(reply) {
  if (S.hold && S.hold.id === reply.hold_id) setHold(null);
  $("#checkout").close();
  toast("Hold released: the item went back to stock.");
  renderAllCards();
}

export function onOrder(order) {
  S.lastOrder = order;
  if (order.coupon_id) markUsed(order.coupon_id);
  const title = (S.hold && S.hold.id === order.hold_id && S.hold.title) ||
                (S.products.get(order.product_id) || {}).title || "your item";
  if (S.hold && S.hold.id === order.hold_id) setHold(null);
  const dlg = $("#checkout");
  if (!dlg.open) dlg.showModal();
  $("#order-done").hidden = false;
  setText($("#order-text"), `${order.quantity} × ${title} · paid ${money(order.total, order.currency)}` +
          (order.discount ? ` (saved ${money(order.discount, order.currency)})` : "") +
          ` · order ${order.order_id}`);
  toast("Order placed!", "ok");
  renderHold();
  renderAllCards();
  renderPromos();
}

/** The host stopped a sale, or ended the show: holds taken in it are cancelled
 *  (the server refuses their checkout with sale_stopped); say so now rather than
 *  at "Place order". */
export function onHoldsVoided(ev) {
  if (S.hold && ev.hold_ids.includes(S.hold.id) && !S.hold.dead) {
    const words = REFUSALS[ev.reason] || REFUSALS.sale_stopped;
    endHold(words);
    showCheckoutMsg(words, "error");
    toast(words);
    renderHold();
    renderAllCards();
  }
}

export function showCheckoutMsg(text, kind) {
  const el = $("#checkout-msg");
  el.className = `notice ${kind}`;
  setText(el, text);
  el.hidden = false;
}

export function openCheckout() {
  const dlg = $("#checkout");
  if (S.hold) {
    $("#order-done").hidden = true;
    $("#checkout-msg").hidden = true;
  }
  renderHold();
  if (!dlg.open) dlg.showModal();
}

export function onCheckoutClosed() {
  if (S.hold && S.hold.dead) setHold(null);
  $("#order-done").hidden = true;
}

/** Why the hold can no longer be checked out, by the server's rules the page can
 *  see, or "": voided (`holds_voided`, or a snapshot whose card shows its sale
 *  stopped, or the show ended: every open hold is voided then), or past its
 *  `expires_at` by server time (begin_checkout.lua refuses `hold_expired`). */
function holdOver(hold, at) {
  if (hold.dead) return hold.dead;
  if (showEnded()) return REFUSALS.show_ended;
  const p = S.products.get(hold.product_id);
  if (p && p.sale && p.sale.sale_id === hold.sale_id && p.sale.state === "stopped") return REFUSALS.sale_stopped;
  if (hold.expires_at <= at) return REFUSALS.hold_expired;
  return "";
}

function renderItem(hold) {
  const item = $("#checkout-item");
  if (item.dataset.holdId === hold.id) return;
  item.dataset.holdId = hold.id;
  const img = h("div", { class: "pimg" });
  if (hold.image_url) img.append(h("img", { src: hold.image_url, alt: "" }));
  else { img.style.background = tileColor(hold.product_id); img.append(h("span", { text: initials(hold.title) })); }
  item.replaceChildren(img, h("div", {},
    h("div", { class: "ptitle", text: hold.title }),
    h("div", { class: "muted small num", text: `${hold.quantity} × ${money(hold.unit_price, hold.currency)}` })));
}

// ------------------------------------------------------------------ the coupon choice

// The coupon chosen for the hold shown: preselected (the best that applies) until
// the buyer picks one (`byUser`: kept while it applies, "No coupon" included).
const choice = { holdId: null, couponId: "", byUser: false };

/** The checkout of `hold` sent or kept, not answered yet: its frame, or null. */
function pendingCheckout(hold) {
  const kept = offlineCheckout();
  if (kept && kept.hold_id === hold.id) return kept.frame;
  if (!live) return null;
  for (const frame of live.pending.values()) {
    if (frame.type === "checkout" && frame.hold_id === hold.id) return frame;
  }
  return null;
}

const couponLabel = (c) => `${c.title} (${couponText(c)})${c.reward ? " · referral reward" : ""}`;

/** What changed about the chosen coupon, and what the checkout does now. */
function couponChangedText(was, best, hold) {
  return `${explainCoupon(was.refusal, was, hold)} It no longer applies` +
         (best ? `: “${best.title}” is applied instead.` : ".") + " Check the total before you place the order.";
}

/** The list under the select: each coupon that cannot apply, and why. */
function renderCouponNotes(list, hold) {
  const field = $("#coupon-field");
  let box = $("#coupon-notes");
  if (!box) {
    box = h("div", { id: "coupon-notes", class: "coupon-notes" },
      h("p", { class: "coupon-notes-head", text: "Can't be used on this order:" }), h("ul"));
    field.append(box);
  }
  const unusable = list.filter((c) => c.refusal);
  box.hidden = !unusable.length;
  const sig = unusable.map((c) => `${c.coupon_id}:${couponWhy(c.refusal, c, hold)}`).join("|");
  if (box.dataset.sig !== sig) {
    box.dataset.sig = sig;
    $("ul", box).replaceChildren(...unusable.map((c) => h("li", { data: { couponId: c.coupon_id, reason: c.refusal } },
      h("span", { class: "coupon-note-title", text: c.title }), ` — ${couponWhy(c.refusal, c, hold)}`)));
  }
  const select = $("#coupon-select");
  if (unusable.length) select.setAttribute("aria-describedby", "coupon-notes");
  else select.removeAttribute("aria-describedby");
}

/** This viewer's coupons for the hold in the select (the ones that cannot apply
 *  disabled, with why), the choice kept or made; returns the chosen coupon (with
 *  its `refusal` and `discount`) and, when the chosen one stopped applying, what
 *  changed. */
function renderCouponChoice(hold, at, checkoutPending) {
  const select = $("#coupon-select");
  const list = couponsFor(hold, at);
  const best = bestCoupon(list);
  const entry = (id) => list.find((c) => c.coupon_id === id) || null;
  let changed = "";
  if (choice.holdId !== hold.id) {
    // A checkout of this hold already on its way (sent before a reload) shows its coupon.
    const asked = pendingCheckout(hold);
    Object.assign(choice, asked ? { holdId: hold.id, couponId: asked.coupon_id || "", byUser: true }
                                : { holdId: hold.id, couponId: best ? best.coupon_id : "", byUser: false });
  } else if (!checkoutPending) {
    // The buyer's own pick (the select's change event renders again): the select no
    // longer shows what this page last set.
    if (select.dataset.holdId === hold.id && select.value !== select.dataset.chosen) {
      Object.assign(choice, { couponId: select.value, byUser: true });
    }
    const chosen = entry(choice.couponId);
    if (choice.couponId && (!chosen || chosen.refusal)) {
      if (chosen) changed = couponChangedText(chosen, best, hold);
      Object.assign(choice, { couponId: best ? best.coupon_id : "", byUser: false });
    } else if (!choice.byUser) {
      choice.couponId = best ? best.coupon_id : "";
    }
  }
  const usable = list.filter((c) => !c.refusal).length;
  const sig = `${hold.id}|` + list.map((c) => `${c.coupon_id}:${c.refusal}:${c.discount}`).join(",");
  if (select.dataset.sig !== sig) {
    select.dataset.sig = sig;
    select.dataset.holdId = hold.id;
    const none = usable ? "No coupon" : list.length ? "No coupon applies to this order" : "No coupons claimed";
    select.replaceChildren(h("option", { value: "", text: none }),
      ...list.map((c) => h("option", {
        value: c.coupon_id, disabled: !!c.refusal,
        text: c.refusal ? `${couponLabel(c)} · not applicable: ${couponWhy(c.refusal, c, hold)}` : couponLabel(c),
        data: c.refusal ? { reason: c.refusal } : { discount: c.discount },
      })));
  }
  if (select.value !== choice.couponId) select.value = choice.couponId;
  select.dataset.chosen = choice.couponId;
  $("#coupon-field").hidden = false;
  select.disabled = !list.length || !!checkoutPending;
  renderCouponNotes(list, hold);
  return { coupon: entry(choice.couponId), changed };
}

// ------------------------------------------------------------------ the checkout kept offline

// A checkout asked for while the connection was down: {frame, hold_id, coupon_id,
// coupon_title}, kept by room (a reload keeps it, as the connection keeps its
// unanswered requests). Never sent until checked again on a fresh state.
let offline = null;
let offlineRoom = null;
// After a reconnect: the snapshot count then; the first snapshot after it says where
// the hold and the coupon stand.
let fresh = null;
let freshTimer = null;
// Snapshots applied in full on this page (onSnapshotApplied). The Live connection
// counts one as it starts applying it, before the room's state is in.
let applied = 0;
// Without a snapshot this long after a reconnect, the check goes on what the page has.
const FRESH_WAIT_MS = 5000;
// The server's request and hold ids (ID_PATTERN).
const ID = /^[A-Za-z0-9_-]{1,64}$/;

const offlineKey = () => `livesell.checkout.offline.${S.roomId}`;

/** The kept checkout as read back from storage, or null when it is not one this page
 *  wrote (another page's, or edited): its frame must be the checkout of the very hold
 *  and coupon that are checked. What is sent is built from those checked fields only,
 *  never the stored frame as it is. */
function keptFrom(saved) {
  if (!saved || typeof saved !== "object") return null;
  const { frame, hold_id: holdId } = saved;
  const couponId = saved.coupon_id === undefined || saved.coupon_id === null ? "" : saved.coupon_id;
  if (!frame || typeof frame !== "object" || frame.type !== "checkout") return null;
  if (typeof holdId !== "string" || !ID.test(holdId) || frame.hold_id !== holdId) return null;
  if (typeof frame.request_id !== "string" || !ID.test(frame.request_id)) return null;
  if (typeof couponId !== "string" || (couponId && !ID.test(couponId))) return null;
  if ((frame.coupon_id === undefined ? "" : frame.coupon_id) !== couponId) return null;
  const rebuilt = { type: "checkout", request_id: frame.request_id, hold_id: holdId };
  if (couponId) rebuilt.coupon_id = couponId;
  return { frame: rebuilt, hold_id: holdId, coupon_id: couponId,
           coupon_title: typeof saved.coupon_title === "string" ? saved.coupon_title : "" };
}

function offlineCheckout() {
  if (offlineRoom !== S.roomId) {
    offlineRoom = S.roomId;
    const saved = store.get(offlineKey(), null);
    offline = keptFrom(saved);
    if (saved && !offline) store.set(offlineKey(), null);
  }
  return offline;
}

function setOffline(value) {
  offlineCheckout();
  offline = value ? keptFrom(value) : null;
  store.set(offlineKey(), offline);
}

function stopWaitingFresh() {
  fresh = null;
  clearTimeout(freshTimer);
  freshTimer = null;
}

/** The connection's state (viewer/connection.js). Back live with a checkout kept:
 *  wait for a snapshot before checking it (a resumed connection gets none by
 *  itself, so ask for one), or FRESH_WAIT_MS at most. */
export function onConnection(state, info = {}) {
  stopWaitingFresh();
  if (state === "live" && live && offlineCheckout()) {
    fresh = { snapshots: applied };
    freshTimer = setTimeout(() => settleOffline(true), FRESH_WAIT_MS);
    if (info.resumed) live.resync();
  }
  reviewOffline();
  if (S.hold) renderHold();
}

/** A snapshot was applied (viewer.js): the state the kept checkout waits for. */
export function onSnapshotApplied() {
  applied += 1;
  settleOffline(false);
}

/** What would make the server refuse this checkout, by what the page knows now:
 *  {holdId, text, hold: true} for the hold, {holdId, text, code} for the coupon;
 *  or null. */
function checkoutProblem(holdId, couponId, couponTitle, at) {
  const hold = S.hold;
  if (!hold || hold.id !== holdId) return { holdId, hold: true, text: REFUSALS.hold_not_found };
  const over = holdOver(hold, at);
  if (over) return { holdId, hold: true, text: over };
  if (!couponId) return null;
  const c = couponsFor(hold, at).find((x) => x.coupon_id === couponId);
  // Not this viewer's any more: a referral reward coupon withdrawn.
  if (!c) {
    return { holdId, code: "coupon_not_found", text: explainCoupon("coupon_not_found", { title: couponTitle }, hold) };
  }
  if (c.refusal) return { holdId, code: c.refusal, text: explainCoupon(c.refusal, c, hold) };
  return null;
}

/** A checkout that could not go as asked: not sent; the sheet shows the new state
 *  and asks again. */
function askAgain(problem, when) {
  const text = `${when} ${problem.text}` +
               (problem.hold ? "" : " Your item is still held: check the new total and place the order again.");
  // The hold it was for is gone (or another is shown now): just say so.
  if (!S.hold || S.hold.id !== problem.holdId) { toast(text, "error"); return; }
  if (problem.hold && !S.hold.dead) endHold(problem.text);
  // A coupon that stopped applying is not chosen again: the best one that applies is.
  if (!problem.hold) Object.assign(choice, { couponId: "", byUser: false });
  openCheckout();
  showCheckoutMsg(text, problem.hold ? "error" : "warn");
  renderAllCards();
}

/** The kept checkout against what the page knows now: dropped the moment the page
 *  sees it could not go as asked (online or not), the buyer asked again. Never sends.
 *  Runs on the clock's tick and after every frame (viewer.js), not in rendering.
 *  Returns the kept checkout still standing, or null. */
export function reviewOffline() {
  const kept = offlineCheckout();
  if (!kept) return null;
  // A page (re)loaded knows nothing of the room's coupons and holds before its first
  // snapshot: what it lacks then is not a change, so nothing is judged yet.
  if (applied === 0) return kept;
  const problem = checkoutProblem(kept.hold_id, kept.coupon_id, kept.coupon_title, now());
  if (!problem) return kept;
  setOffline(null);
  stopWaitingFresh();
  askAgain(problem, "Your order wasn't sent:");
  return null;
}

/** The send decision: the kept checkout goes out, under its request id, once the
 *  connection is back and a fresh state (the snapshot after the reconnect, or
 *  FRESH_WAIT_MS without one: `waited`) says nothing changed. Called when a
 *  snapshot was applied and by onConnection's timer only. */
function settleOffline(waited) {
  const kept = reviewOffline();
  // Never on no state at all (a page loaded since): its first snapshot decides.
  if (!kept || !live || !live.connected || !fresh || applied === 0) return;
  if (!waited && applied <= fresh.snapshots) return;
  stopWaitingFresh();
  setOffline(null);
  $("#checkout-msg").hidden = true;
  sendCheckout(kept.frame);
  renderHold();
}

// ------------------------------------------------------------------ sending

const worded = new Set(); // request ids of checkouts whose refusal checkout words

/** A checkout refused for its coupon, said with the coupon and the amounts; and the
 *  refusal remembered, so that the coupon is not chosen again (the hold is kept:
 *  begin_checkout.lua refuses before it changes anything). */
function couponRefusalText(err, frame) {
  if (!frame.coupon_id || !COUPON_REFUSALS.includes(err.code)) return "";
  learnCouponRefusal(frame.coupon_id, err.code, frame.hold_id);
  if (choice.holdId === frame.hold_id && choice.couponId === frame.coupon_id) {
    Object.assign(choice, { couponId: "", byUser: false });
  }
  const hold = S.hold && S.hold.id === frame.hold_id ? S.hold : null;
  if (!hold) return `Coupon not applied: ${REFUSALS[err.code]}`;
  const c = walletCoupons().find((x) => x.coupon_id === frame.coupon_id);
  return `Coupon not applied: ${explainCoupon(err.code, c, hold)} ` +
         "Your item is still held: check the new total and place the order again.";
}

function wordRefusal(frame) {
  if (worded.has(frame.request_id)) return;
  worded.add(frame.request_id);
  wordRefusalOf(frame.request_id, (err) => couponRefusalText(err, frame));
}

function sendCheckout(frame) {
  wordRefusal(frame);
  live.request(frame);
}

/** Checkouts sent before a reload are still waiting for their answer: word theirs too. */
function wordPending() {
  if (!live) return;
  for (const frame of live.pending.values()) {
    if (frame.type === "checkout" && !worded.has(frame.request_id)) wordRefusal(frame);
  }
}

// ------------------------------------------------------------------ render

export function renderHold() {
  const at = now();
  wordPending();
  const hold = S.hold;
  const bar = $("#cartbar");
  const dlg = $("#checkout");
  // The hold's end is counted down from the server's expires_at. No event tells
  // the holder the moment it lapses, so reaching it is shown here (display only:
  // the server refuses a late checkout with hold_expired, never sells it twice).
  const over = hold ? holdOver(hold, at) : "";
  bar.hidden = !hold || !!over;
  const sent = hold && live && live.isPending((f) => f.type === "checkout" && f.hold_id === hold.id);
  const keptCheckout = hold ? offlineCheckout() : null;
  const kept = !!keptCheckout && keptCheckout.hold_id === hold.id;
  const checkoutPending = sent || kept;
  const releasePending = hold && live && live.isPending((f) => f.type === "release" && f.hold_id === hold.id);
  for (const el of [$("#checkout-item"), $("#hold-timer"), $(".totals", dlg), $("#pay-btn"), $("#release-btn")]) {
    el.hidden = !hold;
  }
  if (!hold) {
    $("#coupon-field").hidden = true;
    return;
  }
  setText($("#cartbar-title"), `${hold.quantity} × ${hold.title} held for you`);
  setText($("#cartbar-timer"), clock(hold.expires_at - at));
  renderItem(hold);

  const { coupon, changed } = renderCouponChoice(hold, at, checkoutPending);
  const subtotal = subtotalOf(hold);
  const discount = coupon && !coupon.refusal ? coupon.discount : 0;
  setText($("#sum-subtotal"), money(subtotal, hold.currency));
  $("#sum-discount-row").hidden = !coupon;
  setText($("#sum-discount"), !coupon ? ""
    : coupon.refusal ? `not applicable: ${couponWhy(coupon.refusal, coupon, hold)}`
      : `−${money(discount, hold.currency)}`);
  setText($("#sum-total"), money(subtotal - discount, hold.currency));
  if (changed && !over) showCheckoutMsg(changed, "warn");

  const timer = $("#hold-timer");
  const pay = $("#pay-btn");
  if (over) {
    timer.classList.add("expired");
    setText(timer.firstElementChild, hold.dead || hold.expires_at > at ? "Reservation ended" : "Hold expired");
    setText($("#hold-remaining"), "0:00");
    pay.disabled = true;
    setText(pay, "Hold ended");
    $("#release-btn").hidden = true;
    // (A checkout already sent may still be placed: "checkouts already confirming
    // at the stop finish". Its answer says.)
    if (!hold.dead && !sent) {
      endHold(over);
      showCheckoutMsg(over, "error");
      renderAllCards();
    }
  } else {
    timer.classList.remove("expired");
    setText(timer.firstElementChild, "Held for you for");
    setText($("#hold-remaining"), clock(hold.expires_at - at));
    pay.disabled = !!(checkoutPending || releasePending);
    let label = `Place order · ${money(subtotal - discount, hold.currency)}`;
    if (sent) label = live.state === "live" ? "Placing order…" : "Waiting for connection…";
    else if (kept) label = live && live.connected ? "Checking your order…" : "Waiting for connection…";
    setText(pay, label);
    $("#release-btn").disabled = !!(checkoutPending || releasePending);
  }
}

export function checkout() {
  const hold = S.hold;
  if (!hold || hold.dead || !live) return;
  if (pendingCheckout(hold)) return;
  // What the buyer saw: the coupon shown chosen. Rendering again picks up a change
  // (the buyer's pick, or a coupon that stopped applying this very moment, which is
  // then shown and not sent).
  const shown = $("#coupon-select").value;
  renderHold();
  if (choice.couponId !== shown) return;
  const at = now();
  const problem = checkoutProblem(hold.id, choice.couponId, "", at);
  if (problem) {
    askAgain(problem, "Your order wasn't sent:");
    return;
  }
  $("#checkout-msg").hidden = true;
  const frame = { type: "checkout", hold_id: hold.id, request_id: newId("checkout") };
  if (choice.couponId) frame.coupon_id = choice.couponId;
  if (live.connected) {
    sendCheckout(frame);
  } else {
    const c = choice.couponId ? walletCoupons().find((x) => x.coupon_id === choice.couponId) : null;
    setOffline({ frame, hold_id: hold.id, coupon_id: choice.couponId, coupon_title: c ? c.title : "" });
    showCheckoutMsg("You're offline, so your order isn't sent yet. When the connection is back, your hold " +
                    "and coupon are checked again before it goes.", "info");
  }
  renderHold();
}

export function release() {
  const hold = S.hold;
  if (!hold || !live) return;
  live.request({ type: "release", hold_id: hold.id });
  renderHold();
}
