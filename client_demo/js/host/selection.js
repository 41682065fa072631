// The selected product: the one the keyboard shortcuts P (pin / unpin) and S (a
// flash sale of it) act on. J and K move it through the catalogue's order; a
// click in a catalogue row, or focus inside one, selects that row. It is shown in
// three places: the row (tinted, and aria-current for screen readers), the pinned
// list of "On now", and the line in On now's heading, so the host sees what a key
// will act on whichever tool is open. With no selection yet it is the first pinned product,
// else the first in the catalogue.

import { $, h } from "../util.js";
import { saleActive } from "../sales.js";
import { S } from "./state.js";

/** The selected product, or null (no products). */
export function selectedProduct() {
  return S.selected ? S.products.get(S.selected) || null : null;
}

/** After the catalogue or the pins changed: keep the selection if the product is
 *  still there, else fall back to the first pinned product, else the first one. */
export function ensureSelection() {
  if (S.selected && S.products.has(S.selected)) { renderSelection(); return; }
  const pinned = S.pins.find((id) => S.products.has(id));
  S.selected = pinned || S.products.keys().next().value || null;
  renderSelection();
}

/** Select `id` (a click or focus in its row, or J / K). */
export function selectProduct(id) {
  if (!S.products.has(id) || S.selected === id) return;
  S.selected = id;
  renderSelection();
}

/** J (+1) / K (-1): the next or previous product in the catalogue's order; the
 *  product now selected, or null when there is none. */
export function moveSelection(delta) {
  const ids = [...S.products.keys()];
  if (!ids.length) return null;
  const at = ids.indexOf(S.selected);
  const next = at < 0 ? 0 : Math.min(ids.length - 1, Math.max(0, at + delta));
  S.selected = ids[next];
  renderSelection();
  return S.products.get(S.selected);
}

/** How a product is said when a shortcut selects it. */
export function describeSelected(p) {
  const ids = [...S.products.keys()];
  const parts = [`${p.title}, ${ids.indexOf(p.product_id) + 1} of ${ids.length}`];
  if (S.pins.includes(p.product_id)) parts.push("pinned");
  if (saleActive(p.sale)) parts.push(`sale ${p.sale.state}`);
  return parts.join(", ");
}

/** A catalogue row (or a pinned item), selected or not: a tint that changes no size,
 *  and aria-current. */
export function markRow(tr, on) {
  tr.classList.toggle("selected", on);
  if (on) tr.setAttribute("aria-current", "true");
  else tr.removeAttribute("aria-current");
}

export function renderSelection() {
  for (const tr of document.querySelectorAll("#product-rows tr")) markRow(tr, tr.dataset.productId === S.selected);
  for (const li of document.querySelectorAll("#now-pins .now-pin")) markRow(li, li.dataset.productId === S.selected);
  const p = selectedProduct();
  const line = $("#now-selected");
  const text = p ? `Selected: ${p.title}` : "";
  if (line.textContent !== text) {
    line.replaceChildren(...(p ? ["Selected: ", h("b", { text: p.title })] : []));
    line.title = p ? `${text} (J / K to change; P pins, S starts a sale)` : "";
  }
  line.dataset.productId = p ? p.product_id : "";
}
