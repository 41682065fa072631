// Where the viewer page's toasts go (util.js `toast`). Each is a short message in a
// live region that removes itself after a few seconds: errors in an assertive one
// (role="alert"), the rest in a polite one (role="status").
//
// They never sit on a control: on a phone under the top bar, over the top of the
// stage where only its chips are (its buttons start lower down, the cart bar is at
// the bottom), on a wide screen over the top of the video column, clear of the
// products and the chat (css/viewer.css); and they let taps through.
// While a modal dialog is open (a sheet, the checkout), the page behind it is inert
// and under the dialog's top layer: the dialog's own regions take the toasts, so
// they show above it and are read out. Of several open, the last in the page's
// order is the top one: viewer.html lists the dialogs in the order they can open
// over each other (the shop sheet, a product's sheet, the checkout).

import { setToastRegion } from "../util.js";

function regionIn(root, kind) {
  return root.querySelector(kind === "error" ? ".toast-region.assertive" : ".toast-region.polite");
}

function openModal() {
  const open = [...document.querySelectorAll("dialog[open]")].filter((d) => {
    try { return d.matches(":modal"); } catch { return true; }
  });
  return open.length ? open[open.length - 1] : null;
}

export function placeToasts() {
  setToastRegion((kind) => {
    const dialog = openModal();
    const page = document.getElementById("toasts");
    return (dialog && regionIn(dialog, kind)) || (page && regionIn(page, kind)) || null;
  });
}
