// "On now", the live column's list of what viewers have in front of them: the
// running flash sales first (the most pressing, each with Stop), then the pinned
// products (in pin order, with their stock and sale as the server last said), then
// the auctions, coupon drops, giveaways, polls and group deals. Each module renders
// its own list into this panel with its end and stop buttons (sale.js, auctions.js,
// coupons.js, lotteries.js, polls.js, groups.js); this one renders the pins.
// This module also owns the panel's one outcome line (what an end or stop button
// did: the host clicked it here, so it is said here) and where keyboard focus goes
// when the button it was on leaves with its item.

import { $, h, money, setText } from "../util.js";
import { saleActive } from "../sales.js";
import { markRow } from "./selection.js";
import { S, limit, report } from "./state.js";

const pinEls = new Map(); // product_id -> the pinned item's parts

export function resetOnNow() {
  pinEls.clear();
  $("#now-pins").replaceChildren();
  setText($("#now-result"), "");
  $("#now-result").className = "result";
}

/** An end or stop button's outcome, under the panel. */
export function nowReport(res, okText) {
  return report($("#now-result"), res, okText);
}

/** The focused button left with its item (or was hidden): focus stays in the panel,
 *  on the next button still there, else on the panel's heading. */
export function keepFocusInNow() {
  queueMicrotask(() => {
    const active = document.activeElement;
    if (active && active !== document.body && active.isConnected && !active.hidden && !active.disabled &&
        active.closest("#onnow")) return;
    const next = [...document.querySelectorAll("#now-scroll button")]
      .find((b) => !b.disabled && b.offsetParent !== null);
    if (next) next.focus();
    else $("#now-h").focus();
  });
}

function stockText(p) {
  const st = p.stock || { left: 0, held: 0, sold: 0 };
  return `${st.left} left · ${st.held} held · ${st.sold} sold`;
}

/** The pinned products as viewers see them, the selected one marked. */
export function renderPins() {
  const list = $("#now-pins");
  const ids = S.pins.filter((id) => S.products.has(id));
  for (const [id, r] of pinEls) if (!ids.includes(id)) { r.li.remove(); pinEls.delete(id); }
  ids.forEach((id, i) => {
    let r = pinEls.get(id);
    if (!r) {
      r = { title: h("span", { class: "now-pin-title" }), badge: h("span", { class: "badge" }),
            meta: h("span", { class: "now-pin-meta num" }) };
      r.li = h("li", { class: "now-pin", data: { productId: id } }, r.title, r.badge, r.meta);
      pinEls.set(id, r);
    }
    if (list.children[i] !== r.li) list.insertBefore(r.li, list.children[i] || null);
    const p = S.products.get(id);
    const sale = saleActive(p.sale) ? p.sale : null;
    setText(r.title, p.title);
    r.badge.className = `badge ${sale ? sale.state : "listing"}`;
    setText(r.badge, sale ? `sale ${sale.state}` : "pinned");
    setText(r.meta, `${money(sale ? sale.price : p.price, sale ? sale.currency : p.currency)} · ${stockText(p)}`);
    markRow(r.li, S.selected === id);
    r.li.dataset.saleState = sale ? sale.state : "none";
  });
  const max = limit("max_pins");
  setText($("#now-pins-count"), ids.length ? (max === null ? `(${ids.length})` : `(${ids.length} of ${max})`) : "");
  $("#now-pins-group").dataset.count = String(ids.length);
}
