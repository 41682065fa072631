// The catalogue panel: one row per product with its price (and whether it is open
// for sale at that price: buy-it-now), stock bar (left / held / sold from the
// server's counters), sale cell and actions (pin, buy-now on/off, edit, sell,
// stop), the "N of max_pins pinned" count, and the add / edit product form.

import { $, h, money, setText, toMajorText, toMinor } from "../util.js";
import { saleActive } from "../sales.js";
import { renderAuctionProducts } from "./auctions.js";
import { renderGroupProducts } from "./groups.js";
import { prepareSale, renderSaleCell, renderSaleProducts, stopSale } from "./sale.js";
import { S, hostApi, limit, report } from "./state.js";

const rows = new Map();

export function resetCatalogue() {
  rows.clear();
  $("#product-rows").replaceChildren();
}

export function renderProducts() {
  const body = $("#product-rows");
  const ids = [...S.products.keys()];
  for (const [id, r] of rows) if (!S.products.has(id)) { r.tr.remove(); rows.delete(id); }
  ids.forEach((id, i) => {
    let r = rows.get(id);
    if (!r) { r = buildRow(id); rows.set(id, r); }
    if (body.children[i] !== r.tr) body.insertBefore(r.tr, body.children[i] || null);
    updateRow(id);
  });
  $("#no-products").hidden = ids.length > 0;
  renderPinCount();
  renderSaleProducts();
  renderAuctionProducts();
  renderGroupProducts();
}

/** "N of M pinned", M being the server's `max_pins`. */
function renderPinCount() {
  const max = limit("max_pins");
  const el = $("#pin-count");
  setText(el, max === null ? `${S.pins.length} pinned` : `${S.pins.length} of ${max} pinned`);
  el.dataset.full = String(max !== null && S.pins.length >= max);
}

export function updateAllRows() {
  for (const id of rows.keys()) updateRow(id);
}

function buildRow(id) {
  const r = {};
  r.name = h("div", { class: "p-name" });
  r.pid = h("div", { class: "p-id", text: id });
  r.priceText = h("div", { class: "num" });
  r.listingText = h("div", { class: "p-id listing-state" });
  r.price = h("td", { class: "r" }, r.priceText, r.listingText);
  r.bar = h("div", { class: "mini-bar", attrs: { "aria-hidden": "true" } },
    r.s = h("span", { class: "s" }), r.hh = h("span", { class: "h" }), r.l = h("span", { class: "l" }));
  r.legend = h("div", { class: "mini-legend num" });
  r.sale = h("td", { class: "sale-cell" });
  r.pin = h("button", { type: "button", class: "btn small", on: { click: () => togglePin(id) } });
  r.listing = h("button", { type: "button", class: "btn small listing-toggle", on: { click: () => toggleListing(id) } });
  r.claim = h("button", { type: "button", class: "btn small claim-toggle", on: { click: () => toggleClaims(id) } });
  r.edit = h("button", { type: "button", class: "btn small", text: "Edit", on: { click: () => editProduct(id) } });
  r.sell = h("button", { type: "button", class: "btn small", text: "Sell", on: { click: () => prepareSale(id) } });
  r.stop = h("button", { type: "button", class: "btn danger small", text: "Stop sale", on: { click: () => stopSale(id) } });
  r.tr = h("tr", { data: { productId: id } },
    h("td", {}, r.name, r.pid), r.price, h("td", {}, r.bar, r.legend), r.sale,
    h("td", {}, h("div", { class: "actions" }, r.pin, r.listing, r.claim, r.edit, r.sell, r.stop)));
  return r;
}

export function updateRow(id) {
  const r = rows.get(id);
  const p = S.products.get(id);
  if (!r || !p) return;
  const pinned = S.pins.includes(id);
  r.tr.classList.toggle("pinned", pinned);
  setText(r.name, p.title);
  setText(r.priceText, money(p.price, p.currency));
  const listing = p.listing || { open: false, limit_per_buyer: 0 };
  const claim = listing.claim || null;
  setText(r.listingText, (listing.open ? `buy-now on · max ${listing.limit_per_buyer}` : "buy-now off") +
                         (claim ? ` · comment ${claim.keyword}` : ""));
  r.tr.dataset.claim = claim ? claim.keyword : "";
  setText(r.claim, claim ? `Stop “${claim.keyword}”` : "Comment-to-buy");
  r.claim.setAttribute("aria-pressed", String(!!claim));
  r.claim.setAttribute("aria-label", claim ? `Stop comment-to-buy (${claim.keyword}) for ${p.title}`
                                           : `Switch on comment-to-buy for ${p.title}`);
  r.tr.dataset.listing = listing.open ? "open" : "closed";
  setText(r.listing, listing.open ? "Close buy-now" : "Open buy-now");
  r.listing.setAttribute("aria-pressed", String(listing.open));
  r.listing.setAttribute("aria-label", `${listing.open ? "Close" : "Open"} ${p.title} for sale at its list price`);
  const st = p.stock || { total: 0, left: 0, held: 0, sold: 0 };
  const denom = Math.max(1, st.total, st.left + st.held + st.sold);
  r.s.style.width = `${(st.sold / denom) * 100}%`;
  r.hh.style.width = `${(st.held / denom) * 100}%`;
  r.l.style.width = `${(st.left / denom) * 100}%`;
  const waiting = p.waiting || 0;
  r.legend.replaceChildren(h("b", { text: st.left }), " left · ", h("b", { text: st.held }), " held · ",
                           h("b", { text: st.sold }), ` sold of ${st.total}`,
                           ...(waiting ? [" · ", h("b", { text: waiting }), " waiting"] : []));
  r.tr.dataset.waiting = waiting;
  r.tr.dataset.left = st.left; r.tr.dataset.held = st.held; r.tr.dataset.sold = st.sold;
  r.tr.dataset.saleState = (p.sale && p.sale.state) || "none";
  renderSaleCell(r.sale, p.sale);
  setText(r.pin, pinned ? "Unpin" : "Pin");
  r.pin.setAttribute("aria-label", `${pinned ? "Unpin" : "Pin"} ${p.title}`);
  r.edit.setAttribute("aria-label", `Edit ${p.title}`);
  r.sell.setAttribute("aria-label", `Start a flash sale of ${p.title}`);
  r.stop.setAttribute("aria-label", `Stop the sale of ${p.title}`);
  r.stop.hidden = !saleActive(p.sale);
  r.sell.hidden = !r.stop.hidden;
}

/** Pin or unpin. A pin over the server's `max_pins` is sent all the same: the
 *  server refuses it (pin_limit) and its words are shown. */
async function togglePin(id) {
  const p = S.products.get(id);
  const pinned = S.pins.includes(id);
  const res = pinned ? await hostApi("DELETE", `/pins/${encodeURIComponent(id)}`)
                     : await hostApi("POST", "/pins", { product_id: id });
  if (res.ok) { S.pins = res.data.pins; renderProducts(); }
  report($("#cat-result"), res, `${pinned ? "Unpinned" : "Pinned"} “${p.title}”`);
}

/** Buy-it-now on or off: whether viewers can buy the product at its list price
 *  outside a flash sale. Closing keeps the holds already taken. */
async function toggleListing(id) {
  const p = S.products.get(id);
  if (!p) return;
  const open = !(p.listing && p.listing.open);
  // The row follows the `product` event every viewer gets (the answer's card may be
  // older than a stock event already applied).
  const res = await hostApi("PUT", `/products/${encodeURIComponent(id)}/listing`, { open });
  report($("#cat-result"), res, open ? `“${p.title}” can be bought at its list price`
                                     : `“${p.title}” is no longer for sale at its list price (holds kept)`);
}

/** Comment-to-buy on (with the panel's keyword) or off. A keyword another product
 *  has is refused by the server (keyword_in_use), in its words. */
async function toggleClaims(id) {
  const p = S.products.get(id);
  if (!p) return;
  const on = !(p.listing && p.listing.claim);
  const field = $("#claim-keyword");
  if (on && !field.reportValidity()) return;
  const keyword = field.value.trim() || "SOLD";
  const res = await hostApi("PUT", `/products/${encodeURIComponent(id)}/claims`,
                            on ? { enabled: true, keyword } : { enabled: false });
  report($("#cat-result"), res, on ? `Viewers who comment ${keyword} buy “${p.title}”`
                                   : `Comments no longer buy “${p.title}”`);
}

function editProduct(id) {
  const p = S.products.get(id);
  if (!p) return;
  S.editing = id;
  setText($("#product-form-h"), `Edit “${p.title}”`);
  $("#pf-title").value = p.title;
  $("#pf-price").value = toMajorText(p.price, p.currency);
  $("#pf-currency").value = p.currency;
  $("#pf-stock").value = p.stock ? p.stock.total : 0;
  $("#pf-image").value = p.image_url || "";
  $("#pf-desc").value = p.description || "";
  setText($("#pf-submit"), "Save changes");
  $("#pf-cancel").hidden = false;
  $("#product-result").textContent = "";
  $("#pf-title").focus();
}

export function resetProductForm() {
  S.editing = null;
  $("#product-form").reset();
  setText($("#product-form-h"), "Add a product");
  setText($("#pf-submit"), "Add product");
  $("#pf-cancel").hidden = true;
}

export async function submitProduct(e) {
  e.preventDefault();
  const out = $("#product-result");
  const currency = $("#pf-currency").value.trim().toUpperCase();
  const price = toMinor($("#pf-price").value, currency);
  if (Number.isNaN(price)) {
    report(out, { ok: false, error: { message: "Price: enter an amount like 19.99", code: "bad_price" } });
    return;
  }
  const body = {
    title: $("#pf-title").value.trim(), price, currency,
    stock: Number($("#pf-stock").value),
    image_url: $("#pf-image").value.trim(),
    description: $("#pf-desc").value.trim(),
  };
  if (S.editing) {
    const id = S.editing;
    const p = S.products.get(id) || {};
    const changes = {};
    for (const [k, v] of Object.entries(body)) {
      const old = k === "stock" ? (p.stock ? p.stock.total : undefined) : p[k];
      if (v !== old && !(k === "image_url" && !v && !old) && !(k === "description" && !v && !old)) changes[k] = v;
    }
    if (!Object.keys(changes).length) { report(out, { ok: true }, "Nothing changed"); return; }
    const res = await hostApi("PATCH", `/products/${encodeURIComponent(id)}`, changes);
    if (report(out, res, `Saved “${body.title}”`)) {
      S.products.set(id, res.data);
      renderProducts();
      resetProductForm();
    }
    return;
  }
  if (!body.image_url) delete body.image_url;
  if (!body.description) delete body.description;
  const res = await hostApi("POST", "/products", body);
  if (report(out, res, `Added “${body.title}”`)) {
    S.products.set(res.data.product_id, res.data);
    renderProducts();
    resetProductForm();
    $("#pf-title").focus();
  }
}
