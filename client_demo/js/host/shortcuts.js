// The console's keyboard shortcuts, for a host whose hands are on the keyboard
// while they talk to the camera:
//   J / K  select the next / previous product (./selection.js)
//   P      pin the selected product, or unpin it
//   S      a flash sale of the selected product: the sale form, filled in, its
//          price focused (Enter starts it: the host sees price and units first)
//   A      the announcement box (Enter sends)
//   R      the chat reply box (Enter sends)
//   ?      the list of shortcuts (also the "Shortcuts" button in the top bar)
// Single letters without Ctrl, Alt or Cmd, so none of the browser's own shortcuts
// is taken. They never fire while the host types in a field, while a dialog is
// open, or on a held-down key's repeats; Escape in a text field leaves it (what was
// typed stays), so the keys work again without reaching for the mouse. What each one did is said in a polite
// live region (#kbd-status), and shown where it acted. None of them ends or stops
// anything: those buttons keep asking first (./confirm.js).

import { $, setText, toast } from "../util.js";
import { togglePin } from "./catalogue.js";
import { prepareSale } from "./sale.js";
import { describeSelected, moveSelection, selectedProduct } from "./selection.js";
import { S } from "./state.js";

/** Say what a shortcut did to screen readers (the same words twice in a row are
 *  said again: the region is emptied first). */
function sayKey(text) {
  const region = $("#kbd-status");
  region.textContent = "";
  requestAnimationFrame(() => setText(region, text));
}

/** Whether the key went to something the host is typing in or choosing with. */
function typing(target) {
  if (!(target instanceof Element)) return false;
  if (target.isContentEditable) return true;
  const tag = target.tagName;
  if (tag === "TEXTAREA" || tag === "SELECT") return true;
  if (tag !== "INPUT") return false;
  // Keys on these do not type: a shortcut may act.
  return !["button", "checkbox", "radio", "submit", "reset", "file", "image", "color", "range"]
    .includes((target.type || "").toLowerCase());
}

function focusField(selector, said) {
  const field = $(selector);
  if (!field || field.disabled) return;
  field.focus();
  field.select();
  sayKey(said);
}

async function pinSelected() {
  const p = selectedProduct();
  if (!p) { sayKey("No product to pin: add one in the catalogue."); return; }
  const { ok, text } = await togglePin(p.product_id);
  // Said by the catalogue's outcome line (a live region) when its tool is showing;
  // otherwise by a toast (one too), so it is heard and seen once either way.
  if ($("#cat-result").offsetParent === null) toast(text.replace(/^[✓✗]\s*/, ""), ok ? "ok" : "error");
}

function saleOfSelected() {
  const p = selectedProduct();
  if (!p) { sayKey("No product to sell: add one in the catalogue."); return; }
  prepareSale(p.product_id);
  sayKey(`Flash sale of ${p.title}: check the price and units, then press Enter to start it.`);
}

function select(delta) {
  const p = moveSelection(delta);
  sayKey(p ? `Selected ${describeSelected(p)}` : "No products yet.");
}

const KEYS = {
  j: () => select(1),
  k: () => select(-1),
  p: pinSelected,
  s: saleOfSelected,
  a: () => focusField("#announce-text", "Announcement to every viewer: type it and press Enter."),
  r: () => focusField("#reply-text", "Reply in chat as the host: type it and press Enter."),
  "?": () => openKeys(),
};

function openKeys() {
  const dlg = $("#keys-dlg");
  if (!dlg.open) dlg.showModal();
  $("#keys-close").focus();
}

function onKeyDown(e) {
  if (e.defaultPrevented || e.repeat || e.ctrlKey || e.metaKey || e.altKey || e.isComposing) return;
  if (!S.roomId || $("#console").hidden) return;
  if (document.querySelector("dialog[open]")) return;
  if (typing(e.target)) {
    // Escape leaves a text field (a select keeps Escape for its own list).
    if (e.key === "Escape" && e.target.tagName !== "SELECT" && !e.shiftKey) e.target.blur();
    return;
  }
  const key = e.key.length === 1 ? e.key.toLowerCase() : e.key;
  // Shift only for "?" (Shift+/ on most layouts): Shift+P and the like do nothing.
  if (e.shiftKey && key !== "?") return;
  const action = KEYS[key];
  if (!action) return;
  e.preventDefault();
  action();
}

export function bindShortcuts() {
  document.addEventListener("keydown", onKeyDown);
  $("#keys-btn").addEventListener("click", openKeys);
  $("#keys-close").addEventListener("click", () => $("#keys-dlg").close());
  // Focus back to the button that opened the list (or to the page).
  $("#keys-dlg").addEventListener("close", () => {
    if (!$("#keys-btn").hidden) $("#keys-btn").focus();
  });
}
