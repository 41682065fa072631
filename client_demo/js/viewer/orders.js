// This viewer's own holds and orders, as the server told this viewer about them:
// its `hold` replies (a buy, a comment's claim, a waitlist's unit), `order_placed`,
// `hold_released`, `holds_voided`, and the host's cancellation or refund of one of
// its orders (`order_cancelled`, `order_refunded`, docs/protocol.md section 21).
//
// Two things follow from them:
// - the units this viewer holds and bought of each offer (a flash sale, or a
//   product's listing `bn_<product_id>`), which the server's per-buyer limit counts
//   (`limit_per_buyer`: "most units one viewer may hold + buy"), so a card says
//   "Limit reached" instead of offering a buy the server would refuse;
// - the coupon each order used, which a cancellation gives back (cancel_order.lua
//   makes it the buyer's again) and a refund does not, even of every unit.
// Both are kept per room and identity in localStorage, so a reload remembers. The
// snapshot carries nothing of this viewer's own; the server still decides every buy.

import { money, store, toast } from "../util.js";
import { unmarkUsed } from "./coupons.js";
import { S, keys, limit, now } from "./state.js";

// hold id -> {sale_id, product_id, quantity, expires_at}; order id -> {sale_id,
// product_id, quantity, currency}.
let book = { holds: {}, orders: {} };
// order id -> coupon id, for this viewer's orders placed with a coupon.
let orderCoupons = {};
// offer id -> {units, until}: what a `limit_reached` refusal proved this viewer holds
// or bought at least (units from another tab or device), for a hold's lifetime.
const floors = new Map();

const DEFAULT_HOLD_S = 180; // docs/protocol.md, `sale.hold_seconds`

/** The offer a product's buy gets now (viewer/cards.js `offerOf`), by its id. */
export function offerIdOf(product, offer) {
  if (!product || !offer) return null;
  return offer.kind === "sale" && product.sale ? product.sale.sale_id : `bn_${product.product_id}`;
}

// What localStorage gives back is whatever was stored there (an older page, another
// tab, a person with the developer tools): every entry is checked as it is read, and
// one that is not what this page stores is left out.
const isObject = (v) => !!v && typeof v === "object" && !Array.isArray(v);
const isId = (v) => typeof v === "string" && v.length > 0;
const positive = (v) => Number.isFinite(v) && v > 0;

/** A stored hold {sale_id, product_id, quantity, expires_at}, or null. Its quantity
 *  is taken as a number (Number()); its expires_at must be one, a server timestamp. */
function storedHold(v) {
  if (!isObject(v) || !isId(v.sale_id) || !isId(v.product_id)) return null;
  const quantity = Number(v.quantity);
  if (!positive(quantity) || !positive(v.expires_at)) return null;
  return { sale_id: v.sale_id, product_id: v.product_id, quantity, expires_at: v.expires_at };
}

/** A stored order {sale_id, product_id, quantity, currency?}, or null. */
function storedOrder(v) {
  if (!isObject(v) || !isId(v.sale_id) || !isId(v.product_id)) return null;
  const quantity = Number(v.quantity);
  if (!positive(quantity)) return null;
  if (v.currency !== undefined && typeof v.currency !== "string") return null;
  const order = { sale_id: v.sale_id, product_id: v.product_id, quantity };
  if (v.currency !== undefined) order.currency = v.currency;
  return order;
}

/** The entries of a stored map that `check` accepts, as `check` gives them back. */
function storedEntries(map, check) {
  const out = {};
  if (!isObject(map)) return out;
  for (const [id, value] of Object.entries(map)) {
    const entry = id ? check(value) : null;
    if (entry !== null) out[id] = entry;
  }
  return out;
}

/** This identity's record (on a welcome that changed who the viewer is). */
export function loadOrders() {
  const saved = store.get(keys.bought(), null);
  book = {
    holds: storedEntries(isObject(saved) ? saved.holds : null, storedHold),
    orders: storedEntries(isObject(saved) ? saved.orders : null, storedOrder),
  };
  orderCoupons = storedEntries(store.get(keys.orderCoupons(), null), (v) => (isId(v) ? v : null));
  floors.clear();
  prune();
}

/** Another tab of the same identity changed the record. */
export function watchOtherTabs(render) {
  window.addEventListener("storage", (e) => {
    if (!S.me || !S.roomId) return;
    if (e.key === keys.bought() || e.key === keys.orderCoupons()) {
      loadOrders();
      render();
    }
  });
}

/** Holds past their expiry are over (the server gives their units back then). */
function prune() {
  const at = now();
  for (const [id, hold] of Object.entries(book.holds)) {
    if (!(hold.expires_at > at)) delete book.holds[id];
  }
}

function save() {
  prune();
  store.set(keys.bought(), book);
}

export function noteHold(hold) {
  if (!hold || !hold.id || !hold.sale_id || !S.me) return;
  book.holds[hold.id] = { sale_id: hold.sale_id, product_id: hold.product_id,
                          quantity: Number(hold.quantity) || 1, expires_at: hold.expires_at };
  save();
}

/** The hold is over without an order: released, voided, expired, refused. */
export function dropHold(holdId) {
  if (!holdId || !book.holds[holdId]) return;
  delete book.holds[holdId];
  save();
}

export function dropHolds(holdIds) {
  for (const id of holdIds || []) dropHold(id);
}

/** A release refused `checked_out`: the hold became an order this page has not
 *  seen (placed from another tab or device); its units count as bought. */
export function holdCheckedOut(holdId) {
  const hold = book.holds[holdId];
  if (!hold) return;
  delete book.holds[holdId];
  book.orders[`h:${holdId}`] = { sale_id: hold.sale_id, product_id: hold.product_id, quantity: hold.quantity };
  save();
}

/** `order_placed`: the hold became an order; its coupon, if any, is remembered. */
export function noteOrder(order) {
  if (!order || !order.order_id || !S.me) return;
  delete book.holds[order.hold_id];
  delete book.orders[`h:${order.hold_id}`];
  book.orders[order.order_id] = { sale_id: order.sale_id, product_id: order.product_id,
                                  quantity: Number(order.quantity) || 1, currency: order.currency };
  save();
  if (order.coupon_id) {
    orderCoupons[order.order_id] = order.coupon_id;
    store.set(keys.orderCoupons(), orderCoupons);
  }
}

/** Units of an offer this viewer holds (unexpired, by server time) and bought. */
export function mineOf(offerId, at = now()) {
  if (!offerId) return 0;
  let units = 0;
  for (const hold of Object.values(book.holds)) {
    if (hold.sale_id === offerId && hold.expires_at > at) units += hold.quantity;
  }
  for (const order of Object.values(book.orders)) if (order.sale_id === offerId) units += order.quantity;
  const floor = floors.get(offerId);
  if (floor && floor.until > at) units = Math.max(units, floor.units);
  return units;
}

/** A buy of `quantity` refused `limit_reached` under an offer with this limit: the
 *  server counts at least `limit - quantity + 1` units of this viewer already. */
export function onLimitRefused(offerId, perBuyer, quantity) {
  if (!offerId || !Number.isFinite(perBuyer)) return;
  const units = perBuyer - (Number(quantity) || 1) + 1;
  if (units <= 0) return;
  const holdMs = (limit("hold_seconds") || DEFAULT_HOLD_S) * 1000;
  floors.set(offerId, { units, until: now() + holdMs });
}

const mine = (ev) => !!(S.me && ev && ev.buyer_id === S.me.viewer_id);

function productTitle(id) {
  const p = S.products.get(id);
  return p ? p.title : "your item";
}

/** `order_cancelled`: for this viewer's own order, its units no longer count to the
 *  limit and its coupon is usable again. Returns whether it was this viewer's. The
 *  order may be known only by its hold (a release refused `checked_out`: placed from
 *  another tab), kept as `h:<hold_id>`: the event's `hold_id` names it. */
export function onOrderCancelled(ev) {
  if (!mine(ev)) return false;
  delete book.orders[ev.order_id];
  if (isId(ev.hold_id)) delete book.orders[`h:${ev.hold_id}`];
  save();
  const couponId = orderCoupons[ev.order_id];
  let back = "";
  if (couponId) {
    delete orderCoupons[ev.order_id];
    store.set(keys.orderCoupons(), orderCoupons);
    unmarkUsed(couponId);
    const c = S.coupons.get(couponId) || S.rewardCoupons.get(couponId);
    back = ` Your coupon${c ? ` “${c.title}”` : ""} can be used again.`;
  }
  toast(`The host cancelled your order of ${ev.quantity} × ${productTitle(ev.product_id)}` +
        `${ev.reason ? ` (${ev.reason})` : ""}.${back}`, "info", 8000);
  return true;
}

/** `order_refunded`: units refunded into stock no longer count to the limit (the
 *  server gives them back); the order's coupon stays used. */
export function onOrderRefunded(ev) {
  if (!mine(ev)) return false;
  const refund = ev.refund || {};
  const order = book.orders[ev.order_id];
  if (order && refund.restock) {
    order.quantity -= Number(refund.quantity) || 0;
    if (order.quantity <= 0) delete book.orders[ev.order_id];
    save();
  }
  const currency = (order && order.currency) || (S.products.get(ev.product_id) || {}).currency;
  const amount = Number.isFinite(refund.amount) ? ` ${money(refund.amount, currency)}` : "";
  toast(`The host refunded${amount} for ${refund.quantity || "some"} × ${productTitle(ev.product_id)} ` +
        "of your order.", "info", 8000);
  return true;
}
