// The promotions column: coupon drops and giveaways, kept as one list of elements
// per id (built once, updated in place, removed when gone). The panels themselves
// are coupons.js and lotteries.js (whose winner banner is over the video).

import { $, setText, toast } from "../util.js";
import { renderHold } from "./checkout.js";
import { buildCoupon, updateCoupon } from "./coupons.js";
import { buildLottery, refreshWinnerBanner, updateDrawnLottery, updateOpenLottery } from "./lotteries.js";
import { S, now } from "./state.js";

const promoEls = new Map(); // coupon/lottery id -> refs
const MSG_MS = 9000;

/** A refusal on a coupon or giveaway: on its card when it has a message line
 *  (giveaways), else as a toast. */
export function showPromoMsg(id, text) {
  const refs = promoEls.get(id);
  if (refs) refs.error = text;
  if (refs && refs.msg) {
    setText(refs.msg, text);
    refs.msg.hidden = false;
    clearTimeout(refs.msgTimer);
    refs.msgTimer = setTimeout(() => { refs.msg.hidden = true; }, MSG_MS);
    return;
  }
  toast(text, "error");
}

export function renderPromos() {
  const at = now();
  // Coupon drops expire without an event: one whose server expires_at has passed
  // is taken off the list here (display only; the server refuses coupon_expired).
  const coupons = [...S.coupons.values()].filter((c) => c.expires_at > at)
    .sort((a, b) => b.expires_at - a.expires_at).slice(0, 3);
  const open = [...S.lotteries.values()].filter((l) => l.state === "open" || l.state === "drawing");
  const drawn = [...S.lotteries.values()].filter((l) => l.state === "drawn" && l.result)
    .sort((a, b) => (b.result.drawn_at || 0) - (a.result.drawn_at || 0)).slice(0, 1);
  const wanted = new Set([...coupons.map((c) => c.coupon_id), ...open.map((l) => l.lottery_id),
                          ...drawn.map((l) => "d:" + l.lottery_id)]);
  for (const [id, refs] of promoEls) {
    if (!wanted.has(id)) { refs.root.remove(); promoEls.delete(id); }
  }
  coupons.forEach((c, i) => place($("#coupons"), i, c.coupon_id, () => buildCoupon(c.coupon_id),
                                  (r) => updateCoupon(r, c, at)));
  [...open, ...drawn].forEach((l, i) => {
    const isOpen = l.state !== "drawn";
    const key = isOpen ? l.lottery_id : "d:" + l.lottery_id;
    place($("#lotteries"), i, key, () => buildLottery(l.lottery_id, isOpen),
          (r) => (isOpen ? updateOpenLottery(r, l, at) : updateDrawnLottery(r, l)));
  });
  $("#promos").hidden = !coupons.length && !open.length && !drawn.length;
  refreshWinnerBanner();
  if (S.hold) renderHold();
}

function place(box, index, key, build, update) {
  let refs = promoEls.get(key);
  if (!refs) { refs = build(); promoEls.set(key, refs); }
  if (box.children[index] !== refs.root) box.insertBefore(refs.root, box.children[index] || null);
  update(refs);
}
