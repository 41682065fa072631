// "Save your host key": the notice shown after this device created a room (until
// the host dismisses it), and again from the "Host key" button. The key is the
// only way back into the console on another device (the server keeps only its
// SHA-256), so the notice offers to copy it and to download it as a small text
// file with the room's id and the console's address.

import { $, copyText, saveBlob, setText, store } from "../util.js";
import { S, report } from "./state.js";

// Rooms created on this device whose notice has not been dismissed yet.
const PENDING_KEY = "livesell.host.keyNotice";

const pending = () => store.get(PENDING_KEY, []) || [];

function setPending(roomId, on) {
  const ids = pending().filter((id) => id !== roomId);
  if (on) ids.push(roomId);
  store.set(PENDING_KEY, ids.slice(-20));
}

/** A room was just created here: its notice shows until dismissed (a reload too). */
export function keyNoticeDue(roomId) {
  setPending(roomId, true);
}

/** The console opened a room: the key in the notice, shown if still due. */
export function setKeyNotice(roomId, key) {
  $("#host-key-view").value = key;
  setText($("#key-room"), roomId);
  setText($("#key-result"), "");
  if (pending().includes(roomId)) showKeyNotice();
  else hideKeyNotice();
}

export function showKeyNotice({ focus = false } = {}) {
  const notice = $("#key-notice");
  notice.hidden = false;
  $("#show-key").setAttribute("aria-expanded", "true");
  if (focus) {
    notice.scrollIntoView({ block: "nearest" });
    notice.focus({ preventScroll: true });
  }
}

export function hideKeyNotice() {
  $("#key-notice").hidden = true;
  $("#show-key").setAttribute("aria-expanded", "false");
}

/** "Dismiss": hidden, and not shown by itself again for this room. */
export function dismissKeyNotice() {
  const hadFocus = $("#key-notice").contains(document.activeElement);
  if (S.roomId) setPending(S.roomId, false);
  hideKeyNotice();
  if (hadFocus) $("#show-key").focus();
}

/** The "Host key" button: show the notice (and go to it), or hide it again. */
export function toggleKeyNotice() {
  if ($("#key-notice").hidden) showKeyNotice({ focus: true });
  else hideKeyNotice();
}

export async function copyKey() {
  const ok = await copyText(S.hostKey || "", $("#host-key-view"));
  report($("#key-result"), ok ? { ok: true }
    : { ok: false, error: { code: "copy_refused", message: "This browser did not let the page copy: the key is selected, copy it with Ctrl+C or ⌘C" } },
  "Host key copied. Keep it secret.");
}

/** The key as a text file: the room, its id, the key and where to use it. */
export function keyFileText(roomId, key, title) {
  return [
    "livesell host key",
    "",
    `Show:      ${title || "(untitled)"}`,
    `Room id:   ${roomId}`,
    `Host key:  ${key}`,
    `Console:   ${location.origin}/host?room=${encodeURIComponent(roomId)}`,
    "",
    "To run this show from another device, open the console, choose \"Open a room\"",
    "and enter the room id and the host key above.",
    "Keep this file secret: anyone with the key can run the room.",
    "",
  ].join("\n");
}

export function downloadKey() {
  if (!S.roomId || !S.hostKey) return;
  const name = `livesell-host-key-${S.roomId}.txt`;
  const blob = new Blob([keyFileText(S.roomId, S.hostKey, S.room && S.room.title)],
                        { type: "text/plain;charset=utf-8" });
  saveBlob(blob, name);
  report($("#key-result"), { ok: true }, `Saved ${name}. Keep it somewhere safe.`);
}
