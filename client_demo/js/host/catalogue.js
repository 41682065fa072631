// The catalogue panel: one row per product with its image's thumbnail, price (and
// whether it is open for sale at that price: buy-it-now), stock bar (left / held /
// sold from the server's counters), sale cell and actions (pin, buy-now on/off,
// comment-to-buy, edit, sell; a running sale's Stop is in the live column's "On
// now"), the selected row (./selection.js: a click or focus in a row selects it),
// the "N of max_pins pinned" count, and the add / edit product
// form with its image upload (POST /api/rooms/{room}/images: the file's bytes as
// the body, its type as Content-Type; the answer's URL fills the image field). An
// upload with no answer in UPLOAD_TIMEOUT_MS is stopped and the button given back.

import { $, h, money, setText, toMajorText, toMinor } from "../util.js";
import { saleActive } from "../sales.js";
import { renderAuctionProducts } from "./auctions.js";
import { couponCurrency } from "./coupons.js";
import { renderGroupProducts } from "./groups.js";
import { referralCurrency } from "./referrals.js";
import { renderPins } from "./onnow.js";
import { prepareSale, renderSaleCell, renderSaleList, renderSaleProducts } from "./sale.js";
import { ensureSelection, markRow, selectProduct } from "./selection.js";
import { S, followCatalogueCurrency, hostApi, limit, report } from "./state.js";

const rows = new Map();

/** A new product's currency follows the catalogue's (the most common one) until the
 *  host types another, as the coupon drop's does. */
export const productCurrency = followCatalogueCurrency("#pf-currency");

// What the server takes (server/features/images.py); the size is the room state's
// `limits.image_max_bytes` when the server sends it, else the default of
// images.max_bytes. The server checks every upload whatever the page lets through.
const IMAGE_TYPES = ["image/png", "image/jpeg", "image/webp", "image/gif"];
const DEFAULT_IMAGE_MAX_BYTES = 2 * 1024 * 1024;
const imageMaxBytes = () => limit("image_max_bytes") ?? DEFAULT_IMAGE_MAX_BYTES;
const UPLOAD_TIMEOUT_MS = 60_000;

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
  renderPins();
  renderSaleList();
  ensureSelection();
  renderSaleProducts();
  renderAuctionProducts();
  renderGroupProducts();
  couponCurrency.fill();
  referralCurrency.fill();
  if (!S.editing) productCurrency.fill();
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
  renderPins();
  renderSaleList();
}

function buildRow(id) {
  const r = {};
  r.thumb = h("img", { class: "p-thumb", alt: "", loading: "lazy", attrs: { referrerpolicy: "no-referrer" },
                       on: { error: () => { r.thumb.hidden = true; } } });
  r.thumb.hidden = true;
  r.thumbUrl = "";
  r.name = h("div", { class: "p-name" });
  r.pid = h("div", { class: "p-id", text: id });
  r.priceText = h("div", { class: "num" });
  r.listingText = h("div", { class: "p-id listing-state" });
  // The sale (its state, price and countdown) under the list price: one column.
  r.sale = h("div", { class: "sale-cell" });
  r.price = h("td", { class: "r" }, r.priceText, r.listingText, r.sale);
  r.bar = h("div", { class: "mini-bar", attrs: { "aria-hidden": "true" } },
    r.s = h("span", { class: "s" }), r.hh = h("span", { class: "h" }), r.l = h("span", { class: "l" }));
  r.legend = h("div", { class: "mini-legend num" });
  r.pin = h("button", { type: "button", class: "btn small", on: { click: () => togglePin(id) } });
  r.listing = h("button", { type: "button", class: "btn small listing-toggle", on: { click: () => toggleListing(id) } });
  r.claim = h("button", { type: "button", class: "btn small claim-toggle", on: { click: () => toggleClaims(id) } });
  r.edit = h("button", { type: "button", class: "btn small", text: "Edit", on: { click: () => editProduct(id) } });
  r.sell = h("button", { type: "button", class: "btn small", text: "Sell", on: { click: () => prepareSale(id) } });
  // A click or focus anywhere in the row selects its product for the shortcuts.
  r.tr = h("tr", { data: { productId: id }, on: { click: () => selectProduct(id), focusin: () => selectProduct(id) } },
    h("td", {}, h("div", { class: "p-cell" }, r.thumb, h("div", { class: "p-text" }, r.name, r.pid))), r.price, h("td", {}, r.bar, r.legend),
    h("td", {}, h("div", { class: "actions" }, r.pin, r.listing, r.claim, r.edit, r.sell)));
  return r;
}

export function updateRow(id) {
  const r = rows.get(id);
  const p = S.products.get(id);
  if (!r || !p) return;
  const pinned = S.pins.includes(id);
  r.tr.classList.toggle("pinned", pinned);
  setText(r.name, p.title);
  const url = p.image_url || "";
  if (url !== r.thumbUrl) {
    r.thumbUrl = url;
    r.thumb.hidden = !url;
    if (url) r.thumb.src = url; else r.thumb.removeAttribute("src");
  }
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
  // A sale running or scheduled is stopped from On now; a new one starts after it.
  r.sell.hidden = saleActive(p.sale);
  markRow(r.tr, S.selected === id);
  if (pinned) renderPins();
}

/** Pin or unpin (a row's button, or the P shortcut). A pin over the server's
 *  `max_pins` is sent all the same: the server refuses it (pin_limit) and its words
 *  are shown. Resolves to the outcome line's text and whether it succeeded. */
export async function togglePin(id) {
  const p = S.products.get(id);
  if (!p) return { ok: false, text: "" };
  const pinned = S.pins.includes(id);
  const res = pinned ? await hostApi("DELETE", `/pins/${encodeURIComponent(id)}`)
                     : await hostApi("POST", "/pins", { product_id: id });
  if (res.ok) { S.pins = res.data.pins; renderProducts(); }
  const ok = report($("#cat-result"), res, `${pinned ? "Unpinned" : "Pinned"} “${p.title}”`);
  return { ok, text: $("#cat-result").textContent };
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
  showPreview(p.image_url || "");
  clearUpload();
  $("#pf-desc").value = p.description || "";
  setText($("#pf-submit"), "Save changes");
  $("#pf-cancel").hidden = false;
  $("#product-result").textContent = "";
  $("#pf-title").focus();
}

export function resetProductForm() {
  S.editing = null;
  $("#product-form").reset();
  productCurrency.reset();
  showPreview("");
  clearUpload();
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

// ------------------------------------------------------------------ image upload

/** The thumbnail under the image field, of `url` (none when empty or unloadable). */
function showPreview(url) {
  const img = $("#pf-preview");
  if (!img) return;
  img.hidden = !url;
  if (url) img.src = url; else img.removeAttribute("src");
}

function clearUpload() {
  const out = $("#pf-upload-result");
  if (!out) return;
  out.textContent = "";
  out.className = "result";
  delete out.dataset.outcome;
}

function megabytes(bytes) {
  const mb = bytes / (1024 * 1024);
  return `${Number.isInteger(mb) ? mb : mb.toFixed(1)} MB`;
}

/** The image's size limit, said under the field: the room state's `limits` (until
 *  they arrive, the page says the default). */
export function applyImageLimit() {
  setText($("#pf-image-help"), `PNG, JPEG, WebP or GIF, up to ${megabytes(imageMaxBytes())}.`);
}

/** Check the chosen file as the server would (type, size), upload it and put its
 *  URL in the image field; a refusal is shown in the server's words. */
async function uploadImage(file) {
  const out = $("#pf-upload-result");
  const button = $("#pf-upload");
  const max = imageMaxBytes();
  if (!IMAGE_TYPES.includes(file.type)) {
    report(out, { ok: false, error: { code: "unsupported_media",
      message: `“${file.name}” is not a PNG, JPEG, WebP or GIF image` } });
    return;
  }
  if (file.size > max) {
    report(out, { ok: false, error: { code: "payload_too_large",
      message: `“${file.name}” is ${megabytes(file.size)}; the most is ${megabytes(max)}` } });
    return;
  }
  button.disabled = true;
  button.setAttribute("aria-busy", "true");
  setText(button, "Uploading…");
  try {
    // The file's bytes as the body, its type as Content-Type, with the host key.
    let res = await hostApi("POST", "/images", file, { timeoutMs: UPLOAD_TIMEOUT_MS });
    if (res.error && res.error.code === "timeout") {
      res = { ...res, error: { code: "timeout", message: `“${file.name}” was still uploading after ` +
        `${UPLOAD_TIMEOUT_MS / 1000} s, so the upload was stopped. Check the connection and try again` } };
    }
    if (report(out, res, `Uploaded “${file.name}”`)) {
      $("#pf-image").value = res.data.image_url;
      showPreview(res.data.image_url);
    }
  } finally {
    button.disabled = false;
    button.removeAttribute("aria-busy");
    setText(button, "Upload image");
  }
}

/** The upload button opens the (hidden) file input; a chosen file is uploaded; a URL
 *  typed in the field is previewed. Wired once, when the module loads (module scripts
 *  run after the page is parsed). */
function wireImageUpload() {
  const input = $("#pf-file");
  const button = $("#pf-upload");
  const field = $("#pf-image");
  if (!input || !button || !field) return;
  button.addEventListener("click", () => input.click());
  input.addEventListener("change", () => {
    const file = input.files && input.files[0];
    input.value = ""; // the same file again is a new choice
    if (file) uploadImage(file);
  });
  field.addEventListener("change", () => {
    const url = field.value.trim();
    showPreview(/^(https?:\/\/|\/images\/)/.test(url) ? url : "");
  });
  $("#pf-preview").addEventListener("error", () => { $("#pf-preview").hidden = true; });
}

wireImageUpload();
