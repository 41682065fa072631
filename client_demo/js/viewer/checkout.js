// The viewer's hold and checkout: the cart bar while a hold lasts, the checkout
// dialog (coupon, totals, place order, release), the order confirmation shown only
// on the server's `order_placed`, and holds the host's stop voided.

import { $, clock, h, initials, money, setText, store, tileColor, toast } from "../util.js";
import { renderAllCards } from "./cards.js";
import { couponText } from "./coupons.js";
import { renderPromos } from "./promos.js";
import { S, keys, live, now } from "./state.js";
import { REFUSALS } from "./words.js";

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
  if (order.coupon_id) {
    S.usedCoupons.add(order.coupon_id);
    store.set(keys.used(), [...S.usedCoupons]);
  }
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

/** A preview of the server's rule (begin_checkout.lua); the server decides and the
 *  order it confirms carries the discount it applied. */
function couponDiscount(coupon, subtotal, currency) {
  if (!coupon) return 0;
  if (coupon.currency !== currency) return 0;
  if (subtotal < coupon.min_spend) return 0;
  if (coupon.kind === "percent") return Math.floor((subtotal * coupon.value) / 100);
  return Math.min(coupon.value, subtotal);
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

/** A coupon this viewer may use: a drop it claimed, or a referral reward coupon
 *  (claimed for it by the server, viewer/invite.js). */
const couponById = (id) => S.coupons.get(id) || S.rewardCoupons.get(id);

/** Coupons this viewer claimed and has not used, in the select; the one chosen. */
function renderCouponChoice(at, checkoutPending) {
  const select = $("#coupon-select");
  const drops = [...S.claimed].filter((id) => !S.usedCoupons.has(id) && S.coupons.has(id))
    .map((id) => S.coupons.get(id));
  const rewards = [...S.rewardCoupons.values()].filter((c) => !S.usedCoupons.has(c.coupon_id) &&
                                                             !S.coupons.has(c.coupon_id));
  const usable = [...drops, ...rewards].filter((c) => !c.expires_at || c.expires_at > at);
  const sig = usable.map((c) => c.coupon_id).join(",");
  if (select.dataset.sig !== sig) {
    const keep = select.value;
    select.dataset.sig = sig;
    select.replaceChildren(h("option", { value: "", text: usable.length ? "No coupon" : "No coupons claimed" }),
      ...usable.map((c) => h("option", { value: c.coupon_id,
                                         text: `${c.title} (${couponText(c)})${c.reward ? " · referral reward" : ""}` })));
    select.value = usable.some((c) => c.coupon_id === keep) ? keep : (usable[0] ? usable[0].coupon_id : "");
  }
  $("#coupon-field").hidden = false;
  select.disabled = !usable.length || checkoutPending;
  return couponById(select.value);
}

export function renderHold() {
  const hold = S.hold;
  const bar = $("#cartbar");
  const dlg = $("#checkout");
  const at = now();
  // The hold's end is counted down from the server's expires_at. No event tells
  // the holder the moment it lapses, so reaching it is shown here (display only:
  // the server refuses a late checkout with hold_expired, never sells it twice).
  const alive = hold && !hold.dead && hold.expires_at > at;
  bar.hidden = !alive;
  const checkoutPending = hold && live && live.isPending((f) => f.type === "checkout" && f.hold_id === hold.id);
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

  const coupon = renderCouponChoice(at, checkoutPending);
  const subtotal = hold.unit_price * hold.quantity;
  const discount = couponDiscount(coupon, subtotal, hold.currency);
  setText($("#sum-subtotal"), money(subtotal, hold.currency));
  $("#sum-discount-row").hidden = !coupon;
  setText($("#sum-discount"), coupon ? (discount ? `−${money(discount, hold.currency)}` : "not applicable") : "");
  setText($("#sum-total"), money(subtotal - discount, hold.currency));

  const timer = $("#hold-timer");
  const pay = $("#pay-btn");
  if (hold.dead || hold.expires_at <= at) {
    timer.classList.add("expired");
    setText(timer.firstElementChild, hold.dead ? "Reservation ended" : "Hold expired");
    setText($("#hold-remaining"), "0:00");
    pay.disabled = true;
    setText(pay, "Hold ended");
    $("#release-btn").hidden = true;
    if (!hold.dead && !checkoutPending) {
      endHold(REFUSALS.hold_expired);
      showCheckoutMsg(REFUSALS.hold_expired, "error");
      renderAllCards();
    }
    bar.hidden = true;
  } else {
    timer.classList.remove("expired");
    setText(timer.firstElementChild, "Held for you for");
    setText($("#hold-remaining"), clock(hold.expires_at - at));
    pay.disabled = !!(checkoutPending || releasePending);
    setText(pay, checkoutPending ? (live.state === "live" ? "Placing order…" : "Waiting for connection…")
                                 : `Place order · ${money(subtotal - discount, hold.currency)}`);
    $("#release-btn").disabled = !!(checkoutPending || releasePending);
  }
}

export function checkout() {
  const hold = S.hold;
  if (!hold || hold.dead || !live) return;
  if (live.isPending((f) => f.type === "checkout" && f.hold_id === hold.id)) return;
  $("#checkout-msg").hidden = true;
  const coupon = $("#coupon-select").value;
  const frame = { type: "checkout", hold_id: hold.id };
  if (coupon) frame.coupon_id = coupon;
  live.request(frame);
  renderHold();
}

export function release() {
  const hold = S.hold;
  if (!hold || !live) return;
  live.request({ type: "release", hold_id: hold.id });
  renderHold();
}
