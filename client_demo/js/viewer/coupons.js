// Coupon drops on the viewer page: the card with what is left (the server's
// count), claiming one (a request re-sent under its id until answered) and the
// claimed coupons this viewer keeps for checkout.

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
