// Chat moderation in the host console: the room's chat as it arrives (and the
// recent chat the room state carries, kept by message_id in seq order), delete a
// message for everyone, mute a viewer for a while (each after a confirmation), the
// viewers muted now (GET …/moderation/mutes when the console opens and after every
// snapshot, then `viewer_muted` events; "Unmute" mutes for one second, as the
// server offers no unmute), pin a message (a viewer's, or the host's own note)
// above every viewer's chat and unpin it, announce to every viewer, and system
// lines for mutes, announcements and the end of the show.

import { $, clock, h, setText, timeOfDay } from "../util.js";
import { confirmAction } from "./confirm.js";
import { S, hostApi, now, report } from "./state.js";

const MAX_LINES = 300; // messages kept on screen

export function resetModeration() {
  $("#mod-chat").replaceChildren(h("li", { class: "chat-empty", id: "mod-empty", text: "Chat messages appear here as viewers write them." }));
  setText($("#pin-result"), "");
  setPinned(null);
  mutesLoad += 1;
  buffered = null;
  S.mutes = new Map();
  for (const r of muteEls.values()) r.li.remove();
  muteEls.clear();
  setText($("#mutes-result"), "");
  renderMutes();
}

function appendChat(li, before = null) {
  const list = $("#mod-chat");
  const stick = list.scrollHeight - list.scrollTop - list.clientHeight < 60;
  const empty = document.getElementById("mod-empty");
  if (empty) empty.remove();
  list.insertBefore(li, before);
  while (list.children.length > MAX_LINES) list.firstElementChild.remove();
  if (stick) list.scrollTop = list.scrollHeight;
}

const shown = (id) => $("#mod-chat").querySelector(`[data-message-id="${CSS.escape(id)}"]`);

/** Where a message with this seq goes: before the first message on screen that
 *  came after it (null: at the end, the live case). */
function placeFor(seq) {
  if (!Number.isFinite(seq)) return null;
  let before = null;
  for (let li = $("#mod-chat").lastElementChild; li; li = li.previousElementSibling) {
    if (!li.dataset.seq) continue; // system lines have no seq
    if (Number(li.dataset.seq) > seq) before = li;
    else break;
  }
  return before;
}

/** The room state's `chat`: the recent messages, oldest first, without those the
 *  host deleted (docs/protocol.md section 16). Messages not shown yet take their
 *  place by seq; one shown here that the history covers but no longer holds was
 *  deleted meanwhile, and is marked so. */
export function setChatHistory(history, stateSeq) {
  if (!Array.isArray(history)) return;
  const kept = new Set(history.map((ev) => ev && ev.message_id).filter(Boolean));
  const seqs = history.map((ev) => ev && ev.seq).filter(Number.isFinite);
  if (kept.size && seqs.length) {
    const oldest = Math.min(...seqs);
    for (const li of $("#mod-chat").querySelectorAll("[data-message-id]")) {
      const seq = Number(li.dataset.seq);
      if (!kept.has(li.dataset.messageId) && Number.isFinite(seq) && seq >= oldest &&
          (!Number.isFinite(stateSeq) || seq <= stateSeq)) markDeleted(li.dataset.messageId);
    }
  }
  for (const ev of history) addChat(ev);
}

/** A `chat` event, live or from the history: shown once per message_id. */
export function addChat(ev) {
  if (!ev || !ev.message_id) return;
  S.nicknames.set(ev.viewer_id, ev.nickname);
  if (shown(ev.message_id)) return;
  const del = h("button", { type: "button", class: "btn danger small", text: "Delete",
                            attrs: { "aria-label": `Delete message from ${ev.nickname}: ${ev.text.slice(0, 40)}` },
                            on: { click: () => deleteMessage(ev.message_id, ev.nickname, ev.text) } });
  const mute = h("button", { type: "button", class: "btn small", text: "Mute",
                             attrs: { "aria-label": `Mute ${ev.nickname}` },
                             on: { click: () => muteViewer(ev.viewer_id, ev.nickname) } });
  const pin = h("button", { type: "button", class: "btn small pin-msg", text: "Pin",
                            attrs: { "aria-label": `Pin message from ${ev.nickname}: ${ev.text.slice(0, 40)}` },
                            on: { click: () => pinMessage(ev.message_id) } });
  const who = ev.host === true ? h("span", { class: "who host-badge", text: "Host" })
                               : h("span", { class: "who", text: ev.nickname });
  const data = { messageId: ev.message_id, viewerId: ev.viewer_id };
  if (Number.isFinite(ev.seq)) data.seq = ev.seq;
  // The name and message across the line; the viewer's id and the buttons under them.
  const li = h("li", { class: "mod-msg", data },
    h("div", { class: "msg-line" }, who, h("span", { class: "txt", text: ev.text })),
    h("span", { class: "vid", text: ev.viewer_id }),
    h("div", { class: "acts" }, pin, del, mute));
  appendChat(li, placeFor(ev.seq));
  markPinned(li);
}

export function addSystem(text) {
  appendChat(h("li", { class: "mod-msg system" }, h("div", { class: "msg-line" }, h("span", { class: "txt", text }))));
}

export function onMuted(ev) {
  const name = nameOf(ev.viewer_id);
  // A mute of a second or so is how the console unmutes (the server has no unmute).
  const lifted = ev.until - (ev.ts || now()) <= UNMUTE_S * 1000 + 500;
  addSystem(lifted ? `${name} can chat again.` : `${name} is muted until ${timeOfDay(ev.until)}.`);
  if (buffered) buffered.push(ev);
  putMute(ev.viewer_id, ev.until);
  renderMutes();
}

export function markDeleted(id) {
  const li = shown(id);
  if (!li) return;
  li.classList.add("deleted");
  const del = li.querySelector(".acts .danger");
  if (del) del.remove();
  const pin = li.querySelector(".acts .pin-msg");
  if (pin) pin.remove();
  const txt = li.querySelector(".txt");
  if (txt) txt.setAttribute("aria-label", "deleted message");
}

const quote = (text) => (text.length > 120 ? `${text.slice(0, 119)}…` : text);

async function deleteMessage(id, nickname, text) {
  const sure = await confirmAction({
    title: `Delete ${nickname}'s message?`,
    body: [`“${quote(text)}” disappears from every viewer's chat and from the chat history new viewers get.`,
           "It cannot be brought back."],
    confirm: "Delete message", cancel: "Keep it",
  });
  if (!sure) return;
  const res = await hostApi("POST", "/moderation/delete", { message_id: id });
  if (res.ok) markDeleted(id);
  report($("#mod-result"), res, "Message deleted for everyone");
}

async function muteViewer(viewerId, nickname) {
  const select = $("#mute-duration");
  const duration = Number(select.value);
  const label = select.selectedOptions[0] ? select.selectedOptions[0].textContent : `${duration} s`;
  const sure = await confirmAction({
    title: `Mute ${nickname} for ${label}?`,
    body: [`${nickname} cannot send chat messages or ask questions until ${timeOfDay(now() + duration * 1000)}; ` +
           "everyone else keeps chatting. Their messages so far stay unless you delete them.",
           "You can unmute them from the list of muted viewers."],
    confirm: `Mute for ${label}`, cancel: "Don't mute",
  });
  if (!sure) return;
  const res = await hostApi("POST", "/moderation/mute", { viewer_id: viewerId, duration_s: duration });
  if (res.ok) { putMute(viewerId, res.data.until); renderMutes(); }
  report($("#mod-result"), res, res.ok ? `Muted ${nickname} until ${timeOfDay(res.data.until)}` : "");
}

// ------------------------------------------------------------------ muted viewers

const UNMUTE_S = 1; // "unmute" is a mute this short (docs/protocol.md 3.10)
let mutesLoad = 0; // an answer for another room (or an older load) is dropped
let buffered = null; // viewer_muted events that arrived while a load was on its way

const nameOf = (viewerId) => S.nicknames.get(viewerId) || (S.mutes.get(viewerId) || {}).nickname || viewerId;

function putMute(viewerId, until, nickname) {
  const before = S.mutes.get(viewerId) || {};
  S.mutes.set(viewerId, { until, nickname: nickname || before.nickname || null });
}

/** The mutes the server holds now (opening the console, after every snapshot). */
export async function loadMutes() {
  if (!S.roomId) return false;
  const token = ++mutesLoad;
  buffered = [];
  const res = await hostApi("GET", "/moderation/mutes");
  if (token !== mutesLoad) return false;
  const later = buffered || [];
  buffered = null;
  if (!res.ok || !res.data) { report($("#mutes-result"), res, ""); return false; }
  if ($("#mutes-result").dataset.outcome === "error") setText($("#mutes-result"), "");
  S.mutes = new Map();
  for (const m of res.data.mutes || []) putMute(m.viewer_id, m.until, m.nickname);
  for (const ev of later) putMute(ev.viewer_id, ev.until); // newer than the answer
  renderMutes();
  return true;
}

export const anyMute = () => S.mutes.size > 0;

const muteEls = new Map(); // viewer_id -> the list item's parts

/** The list, soonest to speak again first; a mute past its end by the clock leaves it.
 *  Items are kept and updated in place, so a button is never swapped under a click. */
export function renderMutes() {
  const at = now();
  for (const [id, m] of S.mutes) if (m.until <= at) S.mutes.delete(id);
  const list = $("#mute-list");
  const entries = [...S.mutes.entries()].sort((a, b) => a[1].until - b[1].until || (a[0] < b[0] ? -1 : 1));
  const hadFocus = list.contains(document.activeElement);
  for (const [id, r] of muteEls) {
    if (!S.mutes.has(id)) { r.li.remove(); muteEls.delete(id); }
  }
  entries.forEach(([id, m], i) => {
    let r = muteEls.get(id);
    if (!r) {
      r = { who: h("span", { class: "who" }), when: h("span", { class: "mute-when num" }) };
      r.unmute = h("button", { type: "button", class: "btn small", text: "Unmute", on: { click: () => unmute(id) } });
      r.li = h("li", { class: "mute-item", data: { viewerId: id } },
        h("div", { class: "mute-main" }, r.who, h("span", { class: "vid", text: id }), r.when), r.unmute);
      muteEls.set(id, r);
    }
    if (list.children[i] !== r.li) list.insertBefore(r.li, list.children[i] || null);
    const name = nameOf(id);
    setText(r.who, name);
    setText(r.when, `until ${timeOfDay(m.until)} · ${clock(m.until - at)} left`);
    r.li.dataset.until = m.until;
    r.unmute.setAttribute("aria-label", `Unmute ${name}`);
  });
  // The focused row left with its mute: keyboard focus stays in the panel.
  if (hadFocus && !list.contains(document.activeElement)) $("#mute-duration").focus();
  $("#mutes-empty").hidden = entries.length > 0;
  setText($("#mutes-count"), entries.length ? `(${entries.length})` : "");
}

async function unmute(viewerId) {
  const name = nameOf(viewerId);
  const res = await hostApi("POST", "/moderation/mute", { viewer_id: viewerId, duration_s: UNMUTE_S });
  if (res.ok) { putMute(viewerId, res.data.until); renderMutes(); }
  report($("#mutes-result"), res, `${name} can chat again`);
}

export async function announce(e) {
  e.preventDefault();
  const input = $("#announce-text");
  const res = await hostApi("POST", "/announcements", { text: input.value.trim() });
  if (report($("#announce-result"), res, "Announced to every viewer")) input.value = "";
}

// ------------------------------------------------------------------ pinned message

/** The pinned message as the server last sent it (room state `pinned_message`,
 *  `message_pinned`, the answer to a pin or unpin), or null. */
export function setPinned(pinned) {
  S.pinned = pinned || null;
  renderPinned();
}

/** What is pinned, and which chat line it is. */
export function renderPinned() {
  const p = S.pinned;
  const now = $("#pin-current");
  if (now) {
    now.dataset.messageId = p && p.message_id ? p.message_id : "";
    setText(now, p ? `Pinned: “${p.text}” · ${p.nickname || "Host"}` : "Nothing is pinned.");
  }
  const unpin = $("#unpin-btn");
  if (unpin) unpin.disabled = !p;
  for (const li of $("#mod-chat").querySelectorAll("[data-message-id]")) markPinned(li);
}

/** A chat line says whether it is the pinned message (and then cannot be pinned again). */
function markPinned(li) {
  const p = S.pinned;
  const on = !!(p && p.message_id && li.dataset.messageId === p.message_id);
  li.classList.toggle("pinned", on);
  const btn = li.querySelector(".pin-msg");
  if (!btn) return;
  // The focused Pin button is about to be disabled: keep keyboard focus in the row.
  if (on && document.activeElement === btn) {
    const next = [...li.querySelectorAll(".acts button")].find((b) => b !== btn && !b.disabled);
    if (next) next.focus();
  }
  setText(btn, on ? "Pinned" : "Pin");
  btn.disabled = on;
}

/** The answer to a pin: the pinned message (or `{"pinned_message": …}`). */
const pinnedOf = (data) => (data && Object.hasOwn(data, "pinned_message") ? data.pinned_message : data);

/** Pin a viewer's message that is still in the room's chat history. */
async function pinMessage(id) {
  const res = await hostApi("PUT", "/pinned-message", { message_id: id });
  if (res.ok) setPinned(pinnedOf(res.data));
  report($("#mod-result"), res, "Pinned above every viewer's chat");
}

/** Pin the host's own note, typed in the pin form. */
export async function pinNote(e) {
  e.preventDefault();
  const input = $("#pin-text");
  const res = await hostApi("PUT", "/pinned-message", { text: input.value.trim() });
  if (res.ok) setPinned(pinnedOf(res.data));
  if (report($("#pin-result"), res, "Pinned above every viewer's chat")) input.value = "";
}

export async function unpin() {
  const res = await hostApi("DELETE", "/pinned-message");
  if (res.ok) setPinned(null);
  report($("#pin-result"), res, "Unpinned");
}
