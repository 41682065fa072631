// The console's one confirmation for actions that cannot be taken back (draw a
// giveaway now, delete a message, mute a viewer, stop a sale, end or cancel an
// auction, close a poll or a group deal, forget a room on this device): a modal
// <dialog> that says what will happen, with the safe choice focused first. Escape,
// the Cancel button or closing it any other way answers "no" and changes nothing.
// Focus goes back to the button that asked, so a panel that hides that button
// afterwards can hand focus on within its row as it does for a direct click.
// Ending the show has its own dialog (#end-dlg, ./rooms.js): it also shows the
// server's refusal inside it.

import { $, h, setText } from "../util.js";

let pending = null; // { resolve, opener } while the dialog is open

function settle(answer) {
  const current = pending;
  pending = null;
  const dlg = $("#confirm-dlg");
  if (dlg.open) dlg.close();
  if (!current) return;
  // Back to the button that asked (if it is still there to take focus).
  const { opener } = current;
  if (opener && opener.isConnected && !opener.disabled && !opener.hidden && typeof opener.focus === "function") {
    opener.focus();
  }
  current.resolve(answer);
}

/** Ask before an irreversible action. `body`: a sentence, or a list of them, saying
 *  what will happen. Resolves true only when the host chose `confirm`. */
export function confirmAction({ title, body, confirm, cancel = "Cancel", danger = true }) {
  const dlg = $("#confirm-dlg");
  if (pending) settle(false); // one question at a time: an older one is answered "no"
  const opener = document.activeElement;
  setText($("#confirm-h"), title);
  const lines = Array.isArray(body) ? body : [body];
  $("#confirm-body").replaceChildren(...lines.filter(Boolean).map((text) => h("p", { text })));
  const ok = $("#confirm-ok");
  setText(ok, confirm);
  ok.className = `btn ${danger ? "danger-solid" : "primary"}`;
  setText($("#confirm-cancel"), cancel);
  dlg.dataset.kind = danger ? "danger" : "confirm";
  return new Promise((resolve) => {
    pending = { resolve, opener };
    dlg.showModal();
    // The safe choice first: Enter or Space right away changes nothing.
    $("#confirm-cancel").focus();
  });
}

/** Wire the dialog's buttons once (module scripts run after the page is parsed). */
function wire() {
  const dlg = $("#confirm-dlg");
  if (!dlg) return;
  $("#confirm-ok").addEventListener("click", () => settle(true));
  $("#confirm-cancel").addEventListener("click", () => settle(false));
  // Escape (the dialog's own cancel), or any other close: "no". (A close event that
  // arrives once the dialog is open again belongs to the question before.)
  dlg.addEventListener("close", () => { if (pending && !dlg.open) settle(false); });
  // A click on the backdrop (outside the dialog's box) is a "no" too.
  dlg.addEventListener("click", (e) => {
    if (e.target !== dlg) return;
    const box = dlg.getBoundingClientRect();
    const inside = e.clientX >= box.left && e.clientX <= box.right && e.clientY >= box.top && e.clientY <= box.bottom;
    if (!inside) settle(false);
  });
}

wire();
