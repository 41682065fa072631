// The shop over the video: the moment a flash sale opens, a card rises over the
// lower part of the video with its countdown (from the server's `ends_at`), the
// units left and a big buy button, whatever the product's place in the shop; it
// goes when the server says the sale ended or stopped, when no unit is left, or
// when the viewer hides it. Below it, the featured product (an open sale's, else
// the last pinned) as a compact card that opens its sheet, and the shop button
// (the sheet of every pinned product: viewer/shopsheet.js).
//
// Everything shown comes from `buyView` (viewer/cards.js), so the card over the
// video and the product's card in the shop never disagree; the buy button is the
// card's own `buy`.

import { $, clock, setText } from "../util.js";
import { saleState } from "../sales.js";
import { buy, buyView, onCardMsg, onCardsChanged, paintImage, shownPins } from "./cards.js";
import { openProductSheet, openShopSheet } from "./shopsheet.js";
import { S, now, showEnded } from "./state.js";

const MSG_MS = 6000;
const hiddenKey = () => `livesell.salehidden.${S.roomId}`;
let hidden = null; // sale ids the viewer hid from the video (kept for the tab's session)
let risen = null; // {productId, saleId} of the card over the video
let msgTimer = null;

function hiddenSales() {
  if (!hidden) {
    try { hidden = new Set(JSON.parse(sessionStorage.getItem(hiddenKey()) || "[]")); } catch { hidden = new Set(); }
  }
  return hidden;
}

/** The open sale that rises over the video: of the pinned products, the one whose
 *  sale (open, by the server) ends first, with units left and not hidden. */
function risingSale() {
  if (showEnded()) return null;
  let best = null;
  for (const id of shownPins()) {
    const p = S.products.get(id);
    const sale = p && p.sale;
    if (saleState(sale) !== "open" || !(sale.left > 0) || hiddenSales().has(sale.sale_id)) continue;
    if (!best || sale.ends_at < best.sale.ends_at) best = p;
  }
  return best;
}

/** The product the compact card features: an open sale's (ending first), else the
 *  next sale to start, else the last pinned (the one the host is showing). */
function featured() {
  const pins = shownPins().map((id) => S.products.get(id));
  const by = (state, key) => pins.filter((p) => saleState(p.sale) === state)
    .sort((x, y) => x.sale[key] - y.sale[key])[0];
  return by("open", "ends_at") || by("scheduled", "starts_at") || pins[pins.length - 1] || null;
}

export function renderSpotlight() {
  const at = now();
  renderRise(at);
  renderSpot(at);
}

// ------------------------------------------------------------------ the rising card

function renderRise(at) {
  const box = $("#sale-rise");
  const p = risingSale();
  const v = p ? buyView(p.product_id, at) : null;
  if (!v) {
    if (!box.hidden && box.contains(document.activeElement)) $("#shop-btn").focus({ preventScroll: true });
    box.hidden = true;
    risen = null;
    return;
  }
  const sale = p.sale;
  if (!risen || risen.saleId !== sale.sale_id) {
    // A new moment: it rises (the animation), and is said once to screen readers.
    box.hidden = true;
    void box.offsetWidth;
    $("#rise-msg").hidden = true;
    setText($("#stage-sr"), `Live deal: ${p.title}, ${v.price.now}. Ends in ${clock(sale.ends_at - at)}.`);
  }
  risen = { productId: p.product_id, saleId: sale.sale_id };
  box.dataset.productId = p.product_id;
  box.dataset.saleId = sale.sale_id;
  box.hidden = false;
  paintImage($("#rise-img"), p);
  setText($("#rise-title"), p.title);
  setText($("#rise-price"), v.price.now);
  setText($("#rise-was"), v.price.was);
  $("#rise-was").hidden = !v.price.sale;
  setText($("#rise-off"), v.price.off);
  $("#rise-off").hidden = !v.price.off;
  const time = $("#rise-time");
  setText(time, clock(sale.ends_at - at));
  time.dataset.endsAt = String(sale.ends_at);
  setText($("#rise-stock"), `${v.stock.left} left ${v.stock.scope}` + (v.mine > 0 ? ` · you have ${v.mine}` : ""));
  const btn = $("#rise-buy");
  setText(btn, v.canBuy && v.action === "buy" && v.offer ? `${v.buyText} · ${v.price.now}` : v.buyText);
  btn.disabled = !v.canBuy;
  btn.setAttribute("aria-label", v.label);
}

function buyRisen() {
  if (risen) buy(risen.productId, { quantity: 1, from: "rise" });
}

function hideRisen() {
  if (!risen) return;
  hiddenSales().add(risen.saleId);
  try { sessionStorage.setItem(hiddenKey(), JSON.stringify([...hiddenSales()])); } catch { /* only this page forgets */ }
  renderSpotlight();
}

function showRiseMsg(id, text) {
  if (!risen || risen.productId !== id) return false;
  const msg = $("#rise-msg");
  setText(msg, text);
  msg.hidden = false;
  clearTimeout(msgTimer);
  msgTimer = setTimeout(() => { msg.hidden = true; }, MSG_MS);
  return true;
}

// ------------------------------------------------------------------ the compact card

function renderSpot(at) {
  const pins = shownPins();
  const bar = $("#stage-shop");
  bar.hidden = pins.length === 0;
  setText($("#shop-btn-count"), pins.length);
  $("#shop-btn").setAttribute("aria-label", `Shop: ${pins.length} ${pins.length === 1 ? "product" : "products"}`);
  const p = featured();
  const card = $("#spot-card");
  // While a sale's card is risen over the video, the compact card makes way for it.
  card.hidden = !p || !!risen;
  if (!p) return;
  const v = buyView(p.product_id, at);
  card.dataset.productId = p.product_id;
  paintImage($("#spot-img"), p);
  setText($("#spot-title"), p.title);
  setText($("#spot-price"), v.price.now);
  const state = $("#spot-state");
  let text = "";
  if (v.state === "open") text = `Live deal · ${clock(p.sale.ends_at - at)}`;
  else if (v.state === "scheduled") text = `Flash sale in ${clock(p.sale.starts_at - at)}`;
  else if (v.offer && v.offer.kind === "listing") text = "Buy it now";
  else if (v.state === "ended" || v.state === "stopped") text = "Sale over";
  setText(state, text);
  state.dataset.state = v.state || "none";
  card.setAttribute("aria-label", `${p.title}, ${v.price.now}${text ? `, ${text}` : ""}: details and buy`);
}

// ------------------------------------------------------------------ start

export function bindSpotlight() {
  $("#rise-buy").addEventListener("click", buyRisen);
  $("#rise-hide").addEventListener("click", hideRisen);
  $("#shop-btn").addEventListener("click", (e) => openShopSheet(e.currentTarget));
  $("#spot-card").addEventListener("click", (e) => {
    const id = e.currentTarget.dataset.productId;
    if (id) openProductSheet(id, e.currentTarget);
  });
  onCardsChanged(renderSpotlight);
  onCardMsg("rise", showRiseMsg);
}
