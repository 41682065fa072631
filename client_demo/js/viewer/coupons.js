// Coupon drops on the viewer page: the card with what is left (the server's
// count), claiming one (a request re-sent under its id until answered), the
// claimed coupons this viewer keeps for checkout, and which of them can apply to a
// hold, by the server's rules (the checkout's choice, viewer/checkout.js).

import { clock, h, money, setText, store, toast } from "../util.js";
import { renderPromos } from "./promos.js";
import { S, keys, live, mustSignIn, showEnded } from "./state.js";

export function couponText(c) {
  const value = c.kind === "percent" ? `${c.value}% off` : `${money(c.value, c.currency)} off`;
  return c.min_spend ? `${value} orders over ${money(c.min_spend, c.currency)}` : value;
}

export function onCouponDrop(coupon) {
  S.coupons.set(coupon.coupon_id, coupon);
  toast(`Coupon drop: ${coupon.title}`, "ok");
  renderPromos();
}

/** `coupon_ended`: the host ended the drop early. Nobody claims it now, and one
 *  claimed from it no longer applies at checkout (its expires_at is the end). */
export function onCouponEnded(coupon) {
  const had = S.coupons.get(coupon.coupon_id);
  S.coupons.set(coupon.coupon_id, had ? { ...had, ...coupon } : coupon);
  toast(S.claimed.has(coupon.coupon_id)
    ? `The host ended the coupon drop “${coupon.title}”: your coupon from it no longer applies.`
    : `The host ended the coupon drop “${coupon.title}”.`);
  renderPromos();
}

export function onCouponCount(id, remaining) {
  const c = S.coupons.get(id);
  if (!c) return;
  c.remaining = remaining;
  renderPromos();
}

export function onCouponClaimed(reply) {
  markClaimed(reply.coupon_id);
  onCouponCount(reply.coupon_id, reply.remaining);
  toast("Coupon claimed — it's ready at checkout.", "ok");
}

export function markClaimed(id) {
  S.claimed.add(id);
  store.set(keys.claimed(), [...S.claimed]);
  renderPromos();
}

export function buildCoupon(id) {
  const r = { kind: "coupon" };
  r.title = h("span", { class: "promo-title" });
  r.meta = h("span", { class: "promo-meta num" });
  r.btn = h("button", { type: "button", class: "btn primary small", on: { click: () => claim(id) } });
  r.root = h("div", { class: "promo coupon", data: { couponId: id } },
    h("div", { class: "promo-icon", text: "%", attrs: { "aria-hidden": "true" } }),
    h("div", { class: "promo-main" }, r.title, r.meta), r.btn);
  return r;
}

export function updateCoupon(r, c, at) {
  const claimed = S.claimed.has(c.coupon_id);
  const used = S.usedCoupons.has(c.coupon_id);
  setText(r.title, `${c.title} · ${couponText(c)}`);
  setText(r.meta, `${c.remaining} of ${c.count} left · expires in ${clock(c.expires_at - at)}`);
  r.root.dataset.remaining = c.remaining;
  const pending = live && live.isPending((f) => f.type === "claim_coupon" && f.coupon_id === c.coupon_id);
  let text = "Claim", disabled = false;
  if (used) { text = "Used"; disabled = true; }
  else if (claimed) { text = "Claimed ✓"; disabled = true; }
  else if (pending) { text = "Claiming…"; disabled = true; }
  else if (c.remaining <= 0) { text = "All gone"; disabled = true; }
  else if (showEnded()) { text = "Show ended"; disabled = true; }
  else if (mustSignIn()) { text = "Sign in on the shop to claim"; disabled = true; }
  setText(r.btn, text);
  r.btn.disabled = disabled;
  r.btn.setAttribute("aria-label", `${text}: ${c.title}`);
}

function claim(id) {
  if (!live || S.claimed.has(id)) return;
  if (live.isPending((f) => f.type === "claim_coupon" && f.coupon_id === id)) return;
  live.request({ type: "claim_coupon", coupon_id: id });
  renderPromos();
}

// ------------------------------------------------------------------ at checkout
// Which of this viewer's coupons can apply to a hold, by the server's rules: the
// checks of begin_checkout.lua, in its order (docs/protocol.md §9 "Coupons at
// checkout"). The page applies the ones it can know, so that a coupon that cannot
// apply is shown as such and never sent; the server still decides every checkout.

/** The terms of the drops this viewer claimed, as last seen: a drop that expires
 *  leaves the snapshot's list, and the page still says why it can no longer apply. */
const seen = new Map();

/** What a refusal of a checkout taught about a coupon (coupon_id -> {code, holdId}),
 *  for what the page could not know itself: a coupon used from another tab. */
const learned = new Map();

// Refusals that hold for any order; the others (currency, minimum spend) are about
// the one hold they were given for.
const FOR_ANY_ORDER = ["coupon_not_found", "coupon_not_claimed", "coupon_used", "coupon_expired"];

export const COUPON_REFUSALS = [...FOR_ANY_ORDER, "coupon_currency", "coupon_min_spend"];

/** An order used the coupon (`order_placed`): it is used, in memory and in storage,
 *  read afresh (another tab of this identity may have added to the stored list). */
export function markUsed(couponId) {
  if (!couponId) return;
  S.usedCoupons.add(couponId);
  const stored = new Set(store.get(keys.used(), []) || []);
  stored.add(couponId);
  store.set(keys.used(), [...stored]);
}

/** The coupon is this viewer's to use again (its order was cancelled: cancel_order.lua
 *  gives it back): out of the used list, memory and storage, and a `coupon_used` a
 *  refusal taught this page is forgotten too, so the checkout offers it again. */
export function unmarkUsed(couponId) {
  if (!couponId) return;
  S.usedCoupons.delete(couponId);
  const stored = new Set(store.get(keys.used(), []) || []);
  stored.delete(couponId);
  store.set(keys.used(), [...stored]);
  const told = learned.get(couponId);
  if (told && told.code === "coupon_used") learned.delete(couponId);
}

/** The server refused a checkout with this coupon: remember why (this page load). */
export function learnCouponRefusal(couponId, code, holdId) {
  if (couponId && COUPON_REFUSALS.includes(code)) learned.set(couponId, { code, holdId });
}

/** Every coupon this viewer holds for checkout: the drops it claimed (with `listed`
 *  false for one the server no longer lists) and its referral reward coupons, which
 *  the server claimed for it (viewer/invite.js). */
export function walletCoupons() {
  const out = [];
  const ids = new Set();
  for (const id of S.claimed) {
    const c = S.coupons.get(id);
    if (c) seen.set(id, c);
    const known = c || seen.get(id);
    if (!known || S.rewardCoupons.has(id)) continue;
    ids.add(id);
    out.push({ ...known, listed: !!c });
  }
  for (const c of S.rewardCoupons.values()) {
    if (!ids.has(c.coupon_id)) out.push({ ...c, listed: true, reward: true });
  }
  return out;
}

export const subtotalOf = (hold) => hold.unit_price * hold.quantity;

/** The refusal code the server would answer for coupon `c` on `hold` at server time
 *  `at`, or "" when it applies. */
export function couponRefusal(c, hold, at) {
  const id = c.coupon_id;
  // (Not found, not claimed: only drops this viewer claimed are here.) Used by an
  // order, or reserved by a checkout of another hold still on its way.
  if (S.usedCoupons.has(id)) return "coupon_used";
  if (live && live.isPending((f) => f.type === "checkout" && f.coupon_id === id && f.hold_id !== hold.id)) {
    return "coupon_used";
  }
  // Snapshots list the drops that have not expired: a claimed drop missing from the
  // last one has expired (early, when the show ended).
  if (!c.listed) return "coupon_expired";
  if (Number.isFinite(c.expires_at) && at >= c.expires_at) return "coupon_expired";
  // Minimum spend and amounts are in the coupon's currency: it must be the order's.
  if (c.currency !== hold.currency) return "coupon_currency";
  if (subtotalOf(hold) < (c.min_spend || 0)) return "coupon_min_spend";
  const told = learned.get(id);
  if (told && (FOR_ANY_ORDER.includes(told.code) || told.holdId === hold.id)) return told.code;
  return "";
}

/** The discount begin_checkout.lua gives: `amount` → min(value, subtotal); `percent`
 *  → floor(subtotal × value / 100). Only for a coupon that applies. */
export function couponDiscount(c, hold) {
  const subtotal = subtotalOf(hold);
  if (c.kind === "percent") return Math.floor((subtotal * c.value) / 100);
  return Math.min(c.value, subtotal);
}

/** This viewer's coupons for `hold`, each with `refusal` ("" when it applies) and
 *  `discount`: the ones that apply first, best first (the largest discount; on a
 *  tie, the one expiring soonest), then the others. */
export function couponsFor(hold, at) {
  const soonest = (c) => (Number.isFinite(c.expires_at) ? c.expires_at : Infinity);
  const all = walletCoupons().map((c) => {
    const refusal = couponRefusal(c, hold, at);
    return { ...c, refusal, discount: refusal ? 0 : couponDiscount(c, hold) };
  });
  const byBest = (a, b) => b.discount - a.discount || soonest(a) - soonest(b) ||
                           String(a.coupon_id).localeCompare(String(b.coupon_id));
  const byTitle = (a, b) => String(a.title).localeCompare(String(b.title)) ||
                            String(a.coupon_id).localeCompare(String(b.coupon_id));
  return [...all.filter((c) => !c.refusal).sort(byBest), ...all.filter((c) => c.refusal).sort(byTitle)];
}

/** The coupon to preselect: the best that applies, if it takes anything off. */
export function bestCoupon(list) {
  const best = list[0];
  return best && !best.refusal && best.discount > 0 ? best : null;
}
