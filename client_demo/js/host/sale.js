// Flash sales in the host console: the sale form (product, price, units, per-buyer
// limit, start now / in N s / at a time, duration), the running sales in the live
// column's "On now" with their Stop button (stopping asks first), and the sale cell
// of a catalogue row, which shows the state the server gives the sale.

import { $, clock, h, money, setText, timeOfDay, toMajorText, toMinor, toast } from "../util.js";
import { newerSale, saleActive } from "../sales.js";
import { updateRow } from "./catalogue.js";
import { confirmAction } from "./confirm.js";
import { keepFocusInNow, nowReport, renderPins } from "./onnow.js";
import { S, hostApi, limit, live, now, report } from "./state.js";
import { showTab } from "./tabs.js";

const saleEls = new Map(); // product_id -> the running sale's item parts

/** A catalogue row's sale line (under its price): the server's state, price and a countdown drawn
 *  from server timestamps (it rests at 0:00 until the server's event moves the
 *  state, a few ms after the deadline). */
export function renderSaleCell(cell, sale) {
  if (!sale) { cell.replaceChildren(); return; }
  const at = now();
  let when = "";
  if (sale.state === "scheduled") when = `starts in ${clock(sale.starts_at - at)}`;
  else if (sale.state === "open") when = `${sale.left} of ${sale.units} left · ends in ${clock(sale.ends_at - at)}`;
  else when = `${sale.sold} of ${sale.units} sold`;
  cell.replaceChildren(h("span", { class: `badge ${sale.state}`, text: sale.state }),
                       h("span", { class: "num", text: `${money(sale.price, sale.currency)} · ${when}` }));
}

/** A sale view from the server (event, stats or an action's answer) for its product. */
export function putSale(sale) {
  const p = S.products.get(sale.product_id);
  if (!p) return;
  p.sale = newerSale(p.sale, sale);
  updateRow(p.product_id);
  renderSaleList();
  renderPins();
}

export function resetSales() {
  saleEls.clear();
  $("#sale-list").replaceChildren();
}

/** The sales running or about to (open first, by their end; then scheduled, by
 *  their start), each with Stop. Items are updated in place: no button is swapped
 *  under a click. */
export function renderSaleList() {
  const at = now();
  const list = $("#sale-list");
  const running = [...S.products.values()].filter((p) => saleActive(p.sale)).sort((a, b) =>
    (a.sale.state === "open" ? 0 : 1) - (b.sale.state === "open" ? 0 : 1) ||
    (a.sale.state === "open" ? a.sale.ends_at - b.sale.ends_at : a.sale.starts_at - b.sale.starts_at));
  const keep = new Set(running.map((p) => p.product_id));
  let lostFocus = false;
  for (const [id, r] of saleEls) {
    if (keep.has(id)) continue;
    if (r.li.contains(document.activeElement)) lostFocus = true;
    r.li.remove();
    saleEls.delete(id);
  }
  running.forEach((p, i) => {
    let r = saleEls.get(p.product_id);
    if (!r) {
      r = { title: h("span", { class: "item-title" }), meta: h("span", { class: "item-meta num" }),
            badge: h("span", { class: "badge" }) };
      const id = p.product_id;
      r.stop = h("button", { type: "button", class: "btn danger small", text: "Stop", on: { click: () => stopSale(id) } });
      // Two lines: the product and Stop; then the state, price, units and clock.
      r.li = h("li", { class: "item sale-item", data: { productId: id } },
        h("div", { class: "sale-head" }, r.title, r.stop), h("div", { class: "sale-line" }, r.badge, r.meta));
      saleEls.set(p.product_id, r);
    }
    if (list.children[i] !== r.li) list.insertBefore(r.li, list.children[i] || null);
    const sale = p.sale;
    r.li.dataset.saleId = sale.sale_id;
    r.li.dataset.state = sale.state;
    setText(r.title, p.title);
    setText(r.meta, `${money(sale.price, sale.currency)} · ` + (sale.state === "open"
      ? `${sale.left}/${sale.units} left · ends in ${clock(sale.ends_at - at)}`
      : `${sale.units} units · in ${clock(sale.starts_at - at)}`));
    r.badge.className = `badge ${sale.state}`;
    setText(r.badge, sale.state);
    r.stop.setAttribute("aria-label", `Stop the sale of ${p.title}`);
  });
  if (lostFocus) keepFocusInNow();
}

export function renderSaleProducts() {
  const select = $("#sf-product");
  const keep = select.value;
  const sig = [...S.products.values()].map((p) => p.product_id + p.title).join("|");
  if (select.dataset.sig === sig) return;
  select.dataset.sig = sig;
  select.replaceChildren(...[...S.products.values()].map((p) => h("option", { value: p.product_id, text: p.title })));
  if (S.products.has(keep)) select.value = keep;
  fillSaleDefaults();
}

export function fillSaleDefaults() {
  const p = S.products.get($("#sf-product").value);
  if (!p) return;
  $("#sf-price").value = toMajorText(p.price, p.currency);
  const left = p.stock ? p.stock.left : 1;
  $("#sf-units").value = Math.max(1, Math.min(left, Number($("#sf-units").value) || left));
}

/** The sale form for this product, shown and filled in, its price focused (Enter
 *  starts the sale). The catalogue's Sell buttons and the S shortcut. */
export function prepareSale(id) {
  showTab("sale");
  $("#sf-product").value = id;
  fillSaleDefaults();
  $("#sf-price").focus();
  $("#sf-price").select();
}

export async function startSale(e) {
  e.preventDefault();
  const out = $("#sale-result");
  const p = S.products.get($("#sf-product").value);
  if (!p) { report(out, { ok: false, error: { message: "Add a product first", code: "no_product" } }); return; }
  const price = toMinor($("#sf-price").value, p.currency);
  if (Number.isNaN(price)) { report(out, { ok: false, error: { message: "Sale price: enter an amount like 19.99", code: "bad_price" } }); return; }
  const body = {
    product_id: p.product_id, price,
    units: Number($("#sf-units").value), limit_per_buyer: Number($("#sf-limit").value),
    duration_s: Number($("#sf-duration").value),
  };
  const mode = document.querySelector('input[name="sf-start"]:checked').value;
  if (mode === "in") body.starts_in_s = Number($("#sf-in").value);
  else if (mode === "at") {
    const local = new Date($("#sf-at").value).getTime();
    if (Number.isNaN(local)) { report(out, { ok: false, error: { message: "Pick a start time", code: "bad_time" } }); return; }
    // The picked wall-clock time, moved onto the server's clock.
    body.starts_at = Math.round(local + (live ? live.offset : 0));
  }
  const res = await hostApi("POST", "/sales", body);
  if (!res.ok) { report(out, res, ""); return; }
  const sale = res.data;
  putSale(sale);
  report(out, res, sale.state === "open"
    ? `Sale of “${p.title}” is live: ${sale.units} at ${money(sale.price, sale.currency)}`
    : `Sale of “${p.title}” scheduled: starts in ${clock(sale.starts_at - now())} (${timeOfDay(sale.starts_at)})`);
  const maxPins = limit("max_pins");
  if (!S.pins.includes(p.product_id) && (maxPins === null || S.pins.length < maxPins)) {
    toast(`Tip: pin “${p.title}” so viewers see the sale card.`);
  }
}

export async function stopSale(id) {
  const p = S.products.get(id);
  if (!p || !p.sale) return;
  const sale = p.sale;
  const sure = await confirmAction({
    title: `Stop the sale of “${p.title}”?`,
    body: [sale.state === "scheduled"
      ? `The sale at ${money(sale.price, sale.currency)} will not start; viewers see it called off.`
      : `The sale at ${money(sale.price, sale.currency)} ends now (${sale.sold} of ${sale.units} sold): ` +
        "units in viewers' carts that are not paid yet go back to stock, and checkouts already under way finish.",
           "A stopped sale cannot be restarted; you can start a new one."],
    confirm: "Stop sale", cancel: "Keep selling",
  });
  if (!sure) return;
  const res = await hostApi("POST", `/sales/${encodeURIComponent(sale.sale_id)}/stop`);
  if (res.ok) putSale(res.data);
  nowReport(res, `Stopped the sale of “${p.title}”`);
}
