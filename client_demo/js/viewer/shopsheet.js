// The sheets of the shop, over the stage: the shop sheet (every pinned product,
// each with its price, its sale or listing line, what is left and its buy button)
// and one product's sheet (what the compact card over the video opens: the
// picture, the price, the sale line, the honest stock bar, the description, the
// quantity and a big buy button). Both are native modal <dialog>s (Escape closes
// them, the focus goes back to their opener: viewer/layout.js), with their own
// toast regions, and draw from `buyView` (viewer/cards.js) like the cards do.

import { $, h, setText } from "../util.js";
import {
  buy, buyView, claimText, onCardMsg, onCardsChanged, paintImage, renderQuantity, shownPins,
} from "./cards.js";
import { bindSheet, openSheet } from "./layout.js";
import { now } from "./state.js";

const MSG_MS = 6000;
const rows = new Map(); // product_id -> the shop sheet's row refs
let sheetId = null; // the product in the product sheet
let msgTimer = null;

// ------------------------------------------------------------------ the shop sheet

export function openShopSheet(opener) {
  renderShopSheet(true);
  openSheet($("#shop-sheet"), opener);
}

function buildRow(id) {
  const r = {};
  r.img = h("span", { class: "pimg srow-img", attrs: { "aria-hidden": "true" } });
  r.title = h("button", { type: "button", class: "srow-title", attrs: { "aria-haspopup": "dialog", "aria-controls": "product-sheet" },
                          on: { click: (e) => openProductSheet(id, e.currentTarget) } });
  r.price = h("span", { class: "srow-price num" });
  r.was = h("s", { class: "price-was num" });
  r.badge = h("span", { class: "badge" });
  r.when = h("span", { class: "srow-when num" });
  r.left = h("span", { class: "srow-left num" });
  r.buy = h("button", { type: "button", class: "btn primary srow-buy",
                        on: { click: () => buy(id, { quantity: 1, from: "shop" }) } });
  r.msg = h("p", { class: "notice error srow-msg", attrs: { role: "alert" }, hidden: true });
  r.root = h("li", { class: "srow", data: { productId: id } },
    r.img,
    h("div", { class: "srow-main" },
      r.title,
      h("p", { class: "srow-line" }, r.price, " ", r.was),
      h("p", { class: "srow-line" }, r.badge, " ", r.when),
      r.left),
    r.buy, r.msg);
  return r;
}

/** The shop sheet's rows, while it is open (and as it opens). */
function renderShopSheet(opening = false) {
  if (!opening && !$("#shop-sheet").open) return;
  const at = now();
  const pins = shownPins();
  const list = $("#shop-sheet-list");
  for (const [id, r] of rows) if (!pins.includes(id)) { r.root.remove(); rows.delete(id); }
  pins.forEach((id, i) => {
    let r = rows.get(id);
    if (!r) { r = buildRow(id); rows.set(id, r); }
    if (list.children[i] !== r.root) list.insertBefore(r.root, list.children[i] || null);
    const v = buyView(id, at);
    if (!v) return;
    paintImage(r.img, v.p);
    setText(r.title, v.p.title);
    r.title.setAttribute("aria-label", `${v.p.title}: details`);
    setText(r.price, v.price.now);
    r.price.classList.toggle("sale", v.price.sale);
    setText(r.was, v.price.was);
    r.was.hidden = !v.price.sale;
    r.badge.className = v.badgeClass;
    r.badge.hidden = !v.badge;
    setText(r.badge, v.badge);
    setText(r.when, v.when);
    setText(r.left, `${v.stock.left} left ${v.stock.scope}`);
    setText(r.buy, v.buyText);
    r.buy.disabled = !v.canBuy;
    r.buy.setAttribute("aria-label", v.label);
    r.root.dataset.saleState = v.state || "none";
  });
  $("#shop-sheet-empty").hidden = pins.length > 0;
  setText($("#shop-sheet-count"), pins.length ? `${pins.length} pinned` : "");
}

function showRowMsg(id, text) {
  const r = rows.get(id);
  if (!r || !$("#shop-sheet").open) return false;
  setText(r.msg, text);
  r.msg.hidden = false;
  clearTimeout(r.msgTimer);
  r.msgTimer = setTimeout(() => { r.msg.hidden = true; }, MSG_MS);
  return true;
}

// ------------------------------------------------------------------ one product's sheet

export function openProductSheet(id, opener) {
  sheetId = id;
  $("#psheet-msg").hidden = true;
  $("#psheet-qty").value = "1";
  renderProductSheet();
  openSheet($("#product-sheet"), opener);
}

function renderProductSheet() {
  const dialog = $("#product-sheet");
  if (!sheetId) return;
  const v = shownPins().includes(sheetId) ? buyView(sheetId) : null;
  if (!v) {
    // Unpinned while on show: the sheet has nothing left to sell.
    if (dialog.open) dialog.close();
    return;
  }
  const { p } = v;
  dialog.dataset.productId = p.product_id;
  dialog.dataset.saleState = v.state || "none";
  setText($("#psheet-title"), p.title);
  paintImage($("#psheet-img"), p);
  setText($("#psheet-price"), v.price.now);
  $("#psheet-price").classList.toggle("sale", v.price.sale);
  setText($("#psheet-was"), v.price.was);
  $("#psheet-was").hidden = !v.price.sale;
  setText($("#psheet-off"), v.price.off);
  $("#psheet-off").hidden = !v.price.off;
  const badge = $("#psheet-badge");
  badge.className = v.badgeClass;
  badge.hidden = !v.badge;
  setText(badge, v.badge);
  setText($("#psheet-when"), v.when);
  const st = v.stock;
  const denom = Math.max(1, st.total, st.left + st.held + st.sold);
  const [sold, held, left] = $("#psheet-bar").children;
  sold.style.width = `${(st.sold / denom) * 100}%`;
  held.style.width = `${(st.held / denom) * 100}%`;
  left.style.width = `${(st.left / denom) * 100}%`;
  $("#psheet-bar").setAttribute("aria-label", st.label);
  setText($("#psheet-left"), st.left);
  setText($("#psheet-held"), st.held);
  setText($("#psheet-sold"), st.sold);
  setText($("#psheet-scope"), st.scope);
  const claim = p.listing && p.listing.claim;
  $("#psheet-claim").hidden = !(claim && v.offer);
  if (claim) setText($("#psheet-claim"), claimText(claim));
  setText($("#psheet-desc"), p.description || "");
  $("#psheet-desc").hidden = !p.description;
  const btn = $("#psheet-buy");
  setText(btn, v.buyText);
  btn.disabled = !v.canBuy;
  btn.setAttribute("aria-label", v.label);
  renderQuantity($("#psheet-qty"), p, v.action === "buy" ? v.offer : null, st.left, v.canBuy && v.action === "buy");
}

function showSheetMsg(id, text) {
  if (sheetId !== id || !$("#product-sheet").open) return false;
  const msg = $("#psheet-msg");
  setText(msg, text);
  msg.hidden = false;
  clearTimeout(msgTimer);
  msgTimer = setTimeout(() => { msg.hidden = true; }, MSG_MS);
  return true;
}

/** "See every product": the shop sheet, over or instead of this one. */
function toShop() {
  const fromShop = $("#shop-sheet").open;
  $("#product-sheet").close(); // the focus goes back to what opened it
  if (!fromShop) openShopSheet(document.activeElement);
}

// ------------------------------------------------------------------ start

export function renderSheets() {
  renderShopSheet();
  if ($("#product-sheet").open) renderProductSheet();
}

export function bindSheets() {
  bindSheet($("#shop-sheet"), $("#shop-sheet-close"));
  bindSheet($("#product-sheet"), $("#psheet-close"), () => { sheetId = null; });
  $("#psheet-buy").addEventListener("click", () => {
    if (sheetId) buy(sheetId, { quantity: Number($("#psheet-qty").value) || 1, from: "sheet" });
  });
  $("#psheet-all").addEventListener("click", toShop);
  onCardsChanged(renderSheets);
  onCardMsg("sheet", showSheetMsg);
  onCardMsg("shop", showRowMsg);
}
