// The shop: one card per pinned product (in pin order, at most the server's
// `max_pins`), with the price, the honest stock bar (left / in carts / sold from
// the server's counters), the sale line and the buy button. The sale's state is
// the server's (`sale.state`); this page's clock only draws the countdowns.
// What a buy gets is the server's rule (docs/protocol.md "Listing"): the flash
// sale while it is open, else the product's listing (buy-it-now at the list
// price) if the host has it open; `offerOf` shows the same.
//
// `buyView` is what any view of a pinned product says about buying it now (these
// cards, and the card over the video and the sheets of viewer/spotlight.js and
// viewer/shopsheet.js), and `buy` what any of their buy buttons does, so the views
// never disagree: they redraw together (`onCardsChanged`), and a refusal is worded
// in the view the buy came from (`onCardMsg`).

import { $, clock, h, initials, money, setText, tileColor, toast } from "../util.js";
import { newerSale, saleActive, saleState } from "../sales.js";
import { openCheckout, renderHold } from "./checkout.js";
import { scheduleClock } from "./clock.js";
import { renderStageCountdown } from "./stage.js";
import { mineOf, offerIdOf } from "./orders.js";
import { S, limit, live, mustSignIn, now, showEnded } from "./state.js";
import { joinWaitlist, leaveWaitlist, myPlace } from "./waitlist.js";

const cards = new Map(); // product_id -> card element refs

export function renderShop() {
  const box = $("#cards");
  const pins = shownPins();
  for (const [id, refs] of cards) {
    if (!pins.includes(id)) { refs.root.remove(); cards.delete(id); }
  }
  pins.forEach((id, i) => {
    let refs = cards.get(id);
    if (!refs) { refs = buildCard(id); cards.set(id, refs); }
    if (box.children[i] !== refs.root) box.insertBefore(refs.root, box.children[i] || null);
    updateCard(id);
  });
  $("#cards-empty").hidden = pins.length > 0;
  renderStageCountdown();
  setText($("#shop-count"), pins.length ? `${pins.length} pinned` : "");
  scheduleClock();
  viewsChanged();
}

export function renderAllCards() {
  for (const id of cards.keys()) updateCard(id);
}

/** A `stock` event: the product's counters and its current sale view. */
export function onStock(ev) {
  const p = S.products.get(ev.product_id);
  if (!p) return;
  p.stock = ev.stock;
  p.waiting = ev.waiting || 0;
  if (ev.sale) p.sale = newerSale(p.sale, ev.sale);
  updateCard(ev.product_id);
}

/** sale_scheduled, sale_open (also from the server's timer at starts_at) and
 *  sale_closed (at ends_at, or a host stop): the only way a sale's state moves. */
export function onSale(sale) {
  const p = S.products.get(sale.product_id);
  if (!p) return;
  p.sale = newerSale(p.sale, sale);
  updateCard(sale.product_id);
  renderStageCountdown();
  renderHold();
}

export function onCountdown(ev) {
  const p = S.products.get(ev.product_id);
  if (p && p.sale && p.sale.sale_id === ev.sale_id) p.sale.starts_at = ev.starts_at;
}

function buildCard(id) {
  const r = {};
  r.img = h("div", { class: "pimg" });
  r.title = h("h3", { class: "ptitle", attrs: { id: `pt-${id}` } });
  r.now = h("span", { class: "price-now num" });
  r.was = h("s", { class: "price-was num" });
  r.off = h("span", { class: "price-off" });
  r.badge = h("span", { class: "badge" });
  r.when = h("span", { class: "when num" });
  r.segSold = h("span", { class: "seg-sold" });
  r.segHeld = h("span", { class: "seg-held" });
  r.segLeft = h("span", { class: "seg-left" });
  r.bar = h("div", { class: "stock-bar", attrs: { role: "img" } }, r.segSold, r.segHeld, r.segLeft);
  r.left = h("b", { class: "num", attrs: { "data-k": "left" } });
  r.held = h("b", { class: "num", attrs: { "data-k": "held" } });
  r.sold = h("b", { class: "num", attrs: { "data-k": "sold" } });
  r.scope = h("span", { class: "muted" });
  r.waiting = h("li", { class: "waiting num", hidden: true });
  r.qty = h("select", { class: "qty", attrs: { "aria-label": "Quantity" } });
  r.buy = h("button", { type: "button", class: "btn primary buy-btn", on: { click: () => buy(id) } });
  r.leave = h("button", { type: "button", class: "btn small leave-wait", text: "Leave waitlist", hidden: true,
                          on: { click: () => leaveWaitlist(id) } });
  r.msg = h("p", { class: "notice error card-msg", attrs: { role: "alert" }, hidden: true });
  r.desc = h("p", { class: "pdesc" });
  r.claim = h("p", { class: "claim-hint", hidden: true });
  r.root = h("article", { class: "pcard", data: { productId: id }, attrs: { "aria-labelledby": `pt-${id}` } },
    r.img,
    h("div", { class: "pbody" },
      r.title,
      h("div", { class: "price-row" }, r.now, r.was, r.off),
      h("div", { class: "sale-line" }, r.badge, r.when),
      h("div", { class: "stock" }, r.bar,
        h("ul", { class: "stock-legend" },
          h("li", {}, h("span", { class: "sw left", attrs: { "aria-hidden": "true" } }), r.left, " left"),
          h("li", {}, h("span", { class: "sw held", attrs: { "aria-hidden": "true" } }), r.held, " in carts"),
          h("li", {}, h("span", { class: "sw sold", attrs: { "aria-hidden": "true" } }), r.sold, " sold"),
          h("li", { class: "scope" }, r.scope), r.waiting)),
      r.claim, r.desc),
    h("div", { class: "buy-row" }, r.qty, r.buy, r.leave),
    r.msg);
  return r;
}

function renderImage(r, p) { paintImage(r.img, p); }

/** A product's picture in `el`: its image, else a tile with its initials. */
export function paintImage(el, p) {
  const key = `${p.product_id}|${p.image_url || ""}|${p.title}`;
  if (el.dataset.img === key) return;
  el.dataset.img = key;
  el.replaceChildren();
  el.style.background = "";
  if (p.image_url) {
    el.append(h("img", { src: p.image_url, alt: "", loading: "lazy", attrs: { referrerpolicy: "no-referrer" } }));
  } else {
    el.style.background = tileColor(p.product_id);
    el.append(h("span", { text: initials(p.title), attrs: { "aria-hidden": "true" } }));
  }
}

/** What a buy of this product gets now, by the server's rule: the open sale, else
 *  the open listing, else nothing (and nothing once the show ended: the server
 *  closes every offer then, without a product event each). */
export function offerOf(p) {
  if (!p || showEnded()) return null;
  if (saleState(p.sale) === "open") {
    return { kind: "sale", price: p.sale.price, currency: p.sale.currency, limit: p.sale.limit_per_buyer };
  }
  if (p.listing && p.listing.open) {
    return { kind: "listing", price: p.listing.price, currency: p.listing.currency || p.currency, limit: p.listing.limit_per_buyer };
  }
  return null;
}

/** What a price shows: the sale price while a sale is on show (running, or
 *  scheduled and nothing else sells now), else the list price. */
export function priceView(p, active) {
  const sale = p.sale;
  const currency = (sale && sale.currency) || p.currency;
  if (active && sale.price !== p.price) {
    const pct = p.price > 0 ? Math.round((1 - sale.price / p.price) * 100) : 0;
    return { now: money(sale.price, currency), sale: true, was: money(p.price, p.currency),
             off: pct > 0 ? `−${pct}%` : "" };
  }
  return { now: money(active ? sale.price : p.price, currency), sale: false, was: "", off: "" };
}

function renderPrice(r, p, active) {
  const v = priceView(p, active);
  setText(r.now, v.now);
  r.now.classList.toggle("sale", v.sale);
  setText(r.was, v.was);
  r.was.hidden = !v.sale;
  setText(r.off, v.off);
  r.off.hidden = !v.off;
}

/** Stock: the sale's own units while it is on, else the product's stock, as the
 *  server's counters say. */
export function stockView(p, active) {
  const sale = p.sale;
  const st = active ? { total: sale.units, left: sale.left, held: sale.held, sold: sale.sold }
                    : (p.stock || { total: 0, left: 0, held: 0, sold: 0 });
  const scope = active ? `of ${sale.units} on sale` : `of ${st.total}`;
  return { ...st, scope, label: `${st.left} left, ${st.held} in carts, ${st.sold} sold, ${scope}` };
}

function renderStock(r, p, active) {
  const st = stockView(p, active);
  const denom = Math.max(1, st.total, st.left + st.held + st.sold);
  r.segSold.style.width = `${(st.sold / denom) * 100}%`;
  r.segHeld.style.width = `${(st.held / denom) * 100}%`;
  r.segLeft.style.width = `${(st.left / denom) * 100}%`;
  r.bar.setAttribute("aria-label", st.label);
  setText(r.left, st.left);
  setText(r.held, st.held);
  setText(r.sold, st.sold);
  setText(r.scope, st.scope);
  r.root.dataset.left = st.left;
  r.root.dataset.held = st.held;
  r.root.dataset.sold = st.sold;
  return st;
}

/** Everything a view of a pinned product shows about buying it now, by the
 *  server's sale state and counters (the card below, the card over the video, the
 *  sheets all draw from this): the price, the stock, the sale line, and the buy
 *  button's words, whether it acts and what it does ("buy", "wait", "waiting",
 *  "limit"). The countdowns are drawn from server timestamps; between a deadline
 *  and the server's event announcing it (a few ms) they rest at 0:00. */
export function buyView(id, at = now()) {
  const p = S.products.get(id);
  if (!p) return null;
  const sale = p.sale;
  const state = saleState(sale);
  const offer = offerOf(p);
  // The sale's price and units are on show while it runs, and while it is
  // scheduled unless the product sells at its list price meanwhile.
  const active = state === "open" || (saleActive(sale) && !(offer && offer.kind === "listing"));
  const stock = stockView(p, active);
  const { left, sold } = stock;
  // What this viewer holds and bought of the offer, which its per-buyer limit counts.
  const mine = offer ? mineOf(offerIdOf(p, offer), at) : 0;
  const yours = mine > 0 ? ` · you have ${mine}` : "";
  let badge = "", badgeClass = "badge", when = "", buyText = "Not on sale", canBuy = false;
  if (offer && offer.kind === "listing") {
    if (state === "scheduled") {
      badge = "Flash sale"; badgeClass += " scheduled";
      when = `flash sale in ${clock(sale.starts_at - at)} · buy now at the list price`;
    } else {
      badge = "Buy it now"; badgeClass += " listing";
      when = `max ${offer.limit} per buyer${yours}`;
    }
    // Nothing left: the waitlist's button, below.
    if (left > 0) { buyText = `Buy now · ${money(offer.price, offer.currency)}`; canBuy = true; }
  } else if (state === "scheduled") {
    badge = "Flash sale"; badgeClass += " scheduled";
    when = `starts in ${clock(sale.starts_at - at)}`;
    buyText = `Starts in ${clock(sale.starts_at - at)}`;
  } else if (state === "open") {
    badge = "Live deal"; badgeClass += " open";
    when = `ends in ${clock(sale.ends_at - at)} · max ${sale.limit_per_buyer} per buyer${yours}`;
    if (left > 0) { buyText = "Buy now"; canBuy = true; }
  } else if (state === "ended" || state === "stopped") {
    badge = "Sale over"; badgeClass += " ended";
    when = `${sold} sold`;
    buyText = "Sale ended";
  } else {
    when = "Ask the host about a deal";
  }
  // Sold out, or units owed to those already waiting: the line is the way in.
  const place = myPlace(id);
  const waitable = offer && (left <= 0 || (p.waiting || 0) > 0);
  let action = "buy";
  if (place) {
    buyText = `Waiting · #${place.position} in line`; canBuy = false; action = "waiting";
  } else if (offer && mine >= offer.limit) {
    // The server would refuse `limit_reached` (and take this viewer off a waitlist).
    buyText = `Limit reached: ${offer.limit} per buyer`; canBuy = false; action = "limit";
  } else if (waitable) {
    buyText = "Join waitlist"; canBuy = true; action = "wait";
  }
  if ((active || offer) && mustSignIn()) { buyText = "Sign in on the shop to buy"; canBuy = false; }
  if (showEnded()) { buyText = "Show ended"; canBuy = false; }
  const pending = !!live && live.isPending((f) => (f.type === "buy" || f.type === "join_waitlist") &&
                                            f.product_id === id);
  if (pending) { buyText = live.state === "live" ? "Reserving…" : "Waiting for connection…"; canBuy = false; }
  const label = !canBuy ? `${buyText}: ${p.title}`
    : action === "wait" ? `Join the waitlist for ${p.title}`
      : `Buy ${p.title} for ${money(offer.price, offer.currency)}`;
  return { p, sale, state, offer, active, stock, mine, place, badge, badgeClass, when, buyText, canBuy,
           action, label, price: priceView(p, active) };
}

export function updateCard(id) {
  const r = cards.get(id);
  const v = buyView(id);
  if (!r || !v) return;
  const { p, state, offer, active, place, canBuy, action } = v;

  setText(r.title, p.title);
  setText(r.desc, p.description || "");
  r.desc.hidden = !p.description;
  renderImage(r, p);
  renderPrice(r, p, active);
  const { left } = renderStock(r, p, active);
  r.root.dataset.saleState = state || "none";

  // Sale line and buy button, by the server's sale state.
  r.root.classList.toggle("selling", state === "open");
  r.root.dataset.action = action;
  r.root.dataset.mine = v.mine;
  const claim = p.listing && p.listing.claim;
  r.claim.hidden = !(claim && offer) || showEnded();
  if (claim) setText(r.claim, claimText(claim));
  r.leave.hidden = !place || showEnded();
  const waiting = p.waiting || 0;
  r.waiting.hidden = waiting <= 0;
  setText(r.waiting, `${waiting} waiting`);
  r.root.dataset.waiting = waiting;
  r.badge.className = v.badgeClass;
  r.badge.hidden = !v.badge;
  setText(r.badge, v.badge);
  setText(r.when, v.when);
  setText(r.buy, v.buyText);
  const wasDisabled = r.buy.disabled;
  r.buy.disabled = !canBuy;
  if (canBuy && wasDisabled && offer && offer.kind === "sale" && !S.armedAt[id]) {
    // Wall-clock moment the button armed, independent of this device's Date.
    S.armedAt[id] = performance.timeOrigin + performance.now();
  }
  r.root.dataset.offer = offer ? offer.kind : "none";
  r.buy.setAttribute("aria-label", v.label);
  r.leave.setAttribute("aria-label", `Leave the waitlist for ${p.title}`);
  // A place in line is for one unit.
  renderQuantity(r.qty, p, action === "buy" ? offer : null, left, canBuy && action === "buy");
  viewsChanged();
}

/** The "comment to buy" hint of a listing's claim keyword. */
export function claimText(claim) {
  return claim.quantities ? `Comment ${claim.keyword} to buy (${claim.keyword} 2 for two)`
                          : `Comment ${claim.keyword} to buy`;
}

/** Quantity: up to the offer's per-buyer limit, what is left and the server's
 *  `max_quantity_per_buy`. */
export function renderQuantity(select, p, offer, left, canBuy) {
  let maxQty = 1;
  if (offer) {
    const cap = limit("max_quantity_per_buy");
    maxQty = Math.max(1, Math.min(offer.limit, Math.max(left, 1), cap ?? Infinity));
  }
  if (select.options.length !== maxQty) {
    const keep = Number(select.value) || 1;
    select.replaceChildren(...Array.from({ length: maxQty }, (_, i) => h("option", { value: String(i + 1), text: `× ${i + 1}` })));
    select.value = String(Math.min(keep, maxQty));
  }
  select.disabled = !canBuy || maxQty === 1;
  select.setAttribute("aria-label", `Quantity of ${p.title}`);
}

// ------------------------------------------------------------------ other views

// The views of the pinned products besides these cards (over the video, in the
// sheets: viewer/spotlight.js, viewer/shopsheet.js) redraw from `buyView` whenever
// a card does, once per task however many cards changed.
const viewRenders = [];
let viewsQueued = false;

/** A view of the pinned products to redraw whenever the cards change. */
export function onCardsChanged(fn) { viewRenders.push(fn); }

function viewsChanged() {
  if (viewsQueued) return;
  viewsQueued = true;
  queueMicrotask(() => {
    viewsQueued = false;
    for (const fn of viewRenders) fn();
  });
}

// A refusal is said where the buyer asked: the view that sent the buy (its name,
// e.g. "rise" or "sheet", and how it shows a message), else the product's card.
const msgViews = new Map(); // view name -> (product_id, text) => shown?
const askedFrom = new Map(); // product_id -> the view name its last buy came from

/** A view that shows refusals of the buys it sends: `show(id, text)` returns
 *  whether it could (it shows that product now). */
export function onCardMsg(name, show) { msgViews.set(name, show); }

export function showCardMsg(id, text) {
  const from = askedFrom.get(id);
  const view = from && msgViews.get(from);
  if (view && view(id, text)) return;
  const r = cards.get(id);
  if (!r) { toast(text, "error"); return; }
  setText(r.msg, text);
  r.msg.hidden = false;
  clearTimeout(r.msgTimer);
  r.msgTimer = setTimeout(() => { r.msg.hidden = true; }, 6000);
}

/** The buy button of any view of the product: join its waitlist, open the hold
 *  this viewer has, or ask the server for a hold of `quantity` (the card's own
 *  quantity menu when none is given). `from` names the view, for its refusal. */
export function buy(id, { quantity = null, from = "card" } = {}) {
  const r = cards.get(id);
  const v = buyView(id);
  if (!v || !live) return;
  if (r) r.msg.hidden = true;
  askedFrom.set(id, from);
  if (v.action === "wait") { joinWaitlist(id); return; }
  if (v.action === "limit" || v.action === "waiting") return;
  if (S.hold && !S.hold.dead && v.offer && S.hold.expires_at > now()) {
    // One hold at a time keeps the checkout simple; open the one we have.
    openCheckout();
    return;
  }
  if (live.isPending((f) => f.type === "buy" && f.product_id === id)) return;
  const qty = quantity ?? (r ? Number(r.qty.value) : 1);
  live.request({ type: "buy", product_id: id, quantity: qty || 1 });
  updateCard(id);
}

/** The pinned products on show, in pin order (at most the server's `max_pins`). */
export function shownPins() {
  const maxPins = limit("max_pins");
  const pins = S.pins.filter((id) => S.products.has(id));
  return maxPins !== null ? pins.slice(0, maxPins) : pins;
}
