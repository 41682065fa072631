// The live chat on the viewer page: messages (textContent only), the host's
// deletions and mutes, slow mode and busy-room refusals counted down on the send
// button, and the input's length taken from the server's `chat_max_length`.

import { $, clock, h, setText, timeOfDay, toast } from "../util.js";
import { scheduleClock } from "./clock.js";
import { enterByKeyword } from "./lotteries.js";
import { S, live, now } from "./state.js";
import { explain } from "./words.js";

const MAX_CHAT_LINES = 200; // messages kept on screen
const chatEls = new Map();

function chatNearBottom(list) {
  return list.scrollHeight - list.scrollTop - list.clientHeight < 60;
}

function appendChat(li) {
  const list = $("#chat-list");
  const stick = chatNearBottom(list);
  const empty = document.getElementById("chat-empty");
  if (empty) empty.remove();
  list.append(li);
  while (list.children.length > MAX_CHAT_LINES) {
    const first = list.firstElementChild;
    if (first.dataset.messageId) chatEls.delete(first.dataset.messageId);
    first.remove();
  }
  if (stick) list.scrollTop = list.scrollHeight;
}

export function addChat(ev) {
  S.nicknames.set(ev.viewer_id, ev.nickname);
  if (chatEls.has(ev.message_id)) return;
  const mine = S.me && ev.viewer_id === S.me.viewer_id;
  // Only the server's flag marks the host; a viewer's nickname never earns the badge.
  const who = ev.host === true
    ? h("span", { class: "nick host-badge", text: "Host" })
    : h("span", { class: "nick", text: ev.nickname });
  const li = h("li", { class: `msg${mine ? " me" : ""}${ev.host === true ? " host" : ""}`, data: { messageId: ev.message_id } },
    who,
    h("span", { class: "text", text: ev.text }));
  chatEls.set(ev.message_id, li);
  appendChat(li);
}

/** A `claimed` event: a comment bought units; the room sees who, in chat. */
export function onClaimed(ev) {
  const p = S.products.get(ev.product_id);
  addSystemLine("Sold", `to ${ev.nickname} · ${ev.quantity} × ${p ? p.title : "an item"}`, "claimed");
}

export function addSystemLine(who, text, kind = "") {
  appendChat(h("li", { class: `msg system${kind ? ` ${kind}` : ""}` },
    h("span", { class: "nick", text: who }), h("span", { text })));
}

export function removeChat(id) {
  const li = chatEls.get(id);
  if (li) { li.remove(); chatEls.delete(id); }
}

/** The server's text limits on the inputs (snapshot `limits`). */
export function applyTextLimits(limits) {
  if (!limits) return;
  if (Number.isFinite(limits.chat_max_length)) $("#chat-input").maxLength = limits.chat_max_length;
  if (Number.isFinite(limits.nickname_max_length)) $("#rename-input").maxLength = limits.nickname_max_length;
}

/** Slow mode from the room policy (snapshot or `room_policy`). */
export function applySlowMode(slow) {
  // Slow mode off: the server lets the next message through at once.
  if (!slow) { S.chatReadyAt = 0; S.chatWait = ""; }
  const line = $("#slow-mode");
  line.hidden = !slow;
  setText(line, slow ? `Slow mode: one message every ${slow} s` : "");
}

export function sendChat(e) {
  e.preventDefault();
  const input = $("#chat-input");
  const text = input.value.trim();
  if (!text || !live) return;
  if (S.mutedUntil > now()) { renderMuted(); return; }
  if (S.chatReadyAt > now()) { renderChatGate(); return; }
  if (!live.sendOnce({ type: "chat", text })) {
    toast("Not connected — your message was not sent. It will be here when you retry.", "error");
    return;
  }
  input.value = "";
  S.chatWait = "";
  if (S.policy.slow_mode_s) S.chatReadyAt = now() + S.policy.slow_mode_s * 1000;
  renderChatGate();
  scheduleClock();
  enterByKeyword(text);
}

export function onMuted(ev) {
  if (!S.me || ev.viewer_id !== S.me.viewer_id) return;
  S.mutedUntil = ev.until;
  renderMuted();
}

/** A `muted` refusal, as a reply or a stray error frame. */
export function onMutedRefusal(err) {
  if (err.details && err.details.until) S.mutedUntil = err.details.until;
  renderMuted();
}

export function renderMuted() {
  const at = now();
  const muted = S.mutedUntil > at;
  const notice = $("#chat-notice");
  notice.hidden = !muted;
  if (muted) setText(notice, `The host muted you. You can chat again at ${timeOfDay(S.mutedUntil)} (in ${clock(S.mutedUntil - at)}).`);
  $("#chat-input").disabled = muted;
  renderChatGate();
}

/** A chat message the server refused: put its text back (unless something new was
 *  typed meanwhile) and, for slow mode or a busy room, count down to the moment it
 *  may go. */
// Refusals of the chat message itself; any other error answering a chat is the
// refusal of the buy its text made (comment-to-buy): the message was posted.
const CHAT_REFUSALS = new Set(["slow_mode", "chat_busy", "muted", "rate_limited", "invalid_message",
                               "bad_request", "unavailable", "show_ended"]);

export function onChatRefused(err, request) {
  if (!CHAT_REFUSALS.has(err.code)) { toast(explain(err), "error"); return; }
  const input = $("#chat-input");
  if (request && request.text && !input.value.trim()) input.value = request.text;
  const wait = err.details && Number(err.details.retry_after_s);
  if (err.code === "slow_mode" || err.code === "chat_busy") {
    const seconds = Number.isFinite(wait) && wait > 0 ? Math.ceil(wait) : 1;
    S.chatReadyAt = now() + seconds * 1000;
    S.chatWait = err.code;
    renderChatGate();
    scheduleClock();
    return;
  }
  if (err.code === "muted") { onMutedRefusal(err); return; }
  toast(explain(err), "error");
}

/** The send button: "Wait N s" while slow mode (or a busy room) holds the next
 *  message back, with a line saying why when the server refused one. */
export function renderChatGate() {
  const at = now();
  const muted = S.mutedUntil > at;
  const left = S.chatReadyAt - at;
  const waiting = left > 0;
  const secs = Math.max(1, Math.ceil(left / 1000));
  const send = $("#chat-send");
  setText(send, waiting ? `Wait ${secs} s` : "Send");
  send.disabled = muted || waiting;
  send.setAttribute("aria-label", waiting ? `Send, available in ${secs} seconds` : "Send");
  const note = $("#chat-wait");
  let text = "";
  if (waiting && S.chatWait === "slow_mode") text = `Slow mode: wait ${secs} s. Your message is still in the box.`;
  else if (waiting && S.chatWait === "chat_busy") text = `The chat is busy: wait ${secs} s. Your message is still in the box.`;
  if (!waiting) S.chatWait = "";
  note.hidden = !text;
  setText(note, text);
}
