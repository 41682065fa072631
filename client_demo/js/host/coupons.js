// Coupon drops in the host console: the drop form (its currency the catalogue's
// until the host types another) and the list of drops (in the live column's "On
// now") with claimed / left counts (the server's), their expiry countdown and "End
// now" (POST /coupons/{id}/end, after a confirmation: nobody claims it any more,
// and coupons claimed from it stop applying, as at its own expiry).

import { $, clock, h, money, setText, toMinor } from "../util.js";
import { confirmAction } from "./confirm.js";
import { nowReport } from "./onnow.js";
import { S, followCatalogueCurrency, hostApi, now, report } from "./state.js";

const couponEls = new Map();

/** The drop's currency follows the catalogue (the currency of its products, the
 *  most common one when they differ) until the host types one of their own. */
export const couponCurrency = followCatalogueCurrency("#cf-currency");

export function resetCoupons() {
  couponEls.clear();
  $("#coupon-list").replaceChildren();
  couponCurrency.reset();
}

/** `coupon_drop` and `coupon_ended`: the drop as the server has it now. */
export function putCoupon(coupon) {
  S.coupons.set(coupon.coupon_id, coupon);
  renderCoupons();
}

async function endCoupon(id) {
  const c = S.coupons.get(id);
  if (!c) return;
  const sure = await confirmAction({
    title: `End the coupon drop “${c.title}” now?`,
    body: [`${c.count - c.remaining} of ${c.count} were claimed. Nobody can claim one from now on, ` +
           "and coupons already claimed from it no longer apply at checkout (orders placed with one stay as they are).",
           "An ended drop cannot be reopened; you can drop new coupons."],
    confirm: "End drop", cancel: "Keep it running",
  });
  if (!sure) return;
  const res = await hostApi("POST", `/coupons/${encodeURIComponent(id)}/end`);
  if (res.ok) putCoupon(res.data);
  nowReport(res, `Ended the coupon drop “${c.title}”`);
}

export function onCouponCount(ev) {
  const c = S.coupons.get(ev.coupon_id);
  if (c) { c.remaining = ev.remaining; renderCoupons(); }
}

export async function dropCoupon(e) {
  e.preventDefault();
  const out = $("#coupon-result");
  const kind = $("#cf-kind").value;
  const currency = $("#cf-currency").value.trim().toUpperCase();
  const value = kind === "percent" ? Number($("#cf-value").value) : toMinor($("#cf-value").value, currency);
  const minSpend = toMinor($("#cf-min").value || "0", currency);
  if (!Number.isFinite(value) || Number.isNaN(value) || Number.isNaN(minSpend)) {
    report(out, { ok: false, error: { message: "Enter the coupon value as a number", code: "bad_value" } });
    return;
  }
  const body = { kind, value, min_spend: minSpend, currency, count: Number($("#cf-count").value),
                 expires_in_s: Number($("#cf-expires").value) * 60 };
  const title = $("#cf-title").value.trim();
  if (title) body.title = title;
  const res = await hostApi("POST", "/coupons", body);
  if (report(out, res, res.ok ? `Dropped ${res.data.count} × “${res.data.title}”` : "")) {
    S.coupons.set(res.data.coupon_id, res.data);
    renderCoupons();
  }
}

export function couponKindChanged() {
  const pct = $("#cf-kind").value === "percent";
  setText($("#cf-value-label"), pct ? "Percent" : "Amount");
  $("#cf-value").placeholder = pct ? "10" : "5.00";
}

export function renderCoupons() {
  const at = now();
  const list = $("#coupon-list");
  const items = [...S.coupons.values()].sort((a, b) => b.expires_at - a.expires_at).slice(0, 6);
  const keep = new Set(items.map((c) => c.coupon_id));
  for (const [id, r] of couponEls) if (!keep.has(id)) { r.li.remove(); couponEls.delete(id); }
  items.forEach((c, i) => {
    let r = couponEls.get(c.coupon_id);
    if (!r) {
      r = { title: h("span", { class: "item-title" }), meta: h("span", { class: "item-meta num" }), badge: h("span", { class: "badge" }) };
      const id = c.coupon_id;
      r.end = h("button", { type: "button", class: "btn small danger", text: "End now",
                            attrs: { "aria-label": `End the coupon drop ${c.title} now` },
                            on: { click: () => endCoupon(id) } });
      r.li = h("li", { class: "item", data: { couponId: c.coupon_id } }, h("div", { class: "item-main" }, r.title, r.meta), r.badge,
               h("div", { class: "acts" }, r.end));
      couponEls.set(c.coupon_id, r);
    }
    if (list.children[i] !== r.li) list.insertBefore(r.li, list.children[i] || null);
    const value = c.kind === "percent" ? `${c.value}% off` : `${money(c.value, c.currency)} off`;
    // A drop expires without an event: past the server's expires_at it reads
    // "expired" (display only; the server refuses a late claim).
    const active = c.expires_at > at;
    setText(r.title, `${c.title} · ${value}`);
    setText(r.meta, `${c.count - c.remaining} claimed · ${c.remaining} of ${c.count} left · ` +
                    (active ? `expires in ${clock(c.expires_at - at)}` : "expired"));
    r.li.dataset.remaining = c.remaining;
    r.badge.className = `badge ${active ? "ok" : "ended"}`;
    setText(r.badge, active ? "active" : "expired");
    r.end.hidden = !active;
  });
}
