// Flash sales in the host console: the sale form (product, price, units, per-buyer
// limit, start now / in N s / at a time, duration), stopping a sale, and the sale
// cell of a catalogue row, which shows the state the server gives the sale.

import { $, clock, h, money, timeOfDay, toMajorText, toMinor, toast } from "../util.js";
import { newerSale } from "../sales.js";
import { updateRow } from "./catalogue.js";
import { confirmAction } from "./confirm.js";
import { S, hostApi, limit, live, now, report } from "./state.js";

/** A catalogue row's sale cell: the server's state, price and a countdown drawn
 *  from server timestamps (it rests at 0:00 until the server's event moves the
 *  state, a few ms after the deadline). */
export function renderSaleCell(cell, sale) {
  if (!sale) { cell.replaceChildren(h("span", { class: "muted", text: "—" })); return; }
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

export function prepareSale(id) {
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
  report($("#cat-result"), res, `Stopped the sale of “${p.title}”`);
}
