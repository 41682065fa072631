// The live chat on the viewer page: messages (textContent only), the recent chat
// a snapshot carries (kept by message_id, in seq order), the host's pinned message,
// the host's deletions and mutes, slow mode and busy-room refusals counted down on
// the send button, and the input's length taken from the server's `chat_max_length`.
// A message's `level` (the author's fan level when it was sent, 0 for none) puts
// a small badge beside the name, named from the snapshot's `fans.levels`.

import { $, clock, h, setText, timeOfDay, toast } from "../util.js";
import { scheduleClock } from "./clock.js";
import { chatBadge } from "./fans.js";
import { enterByKeyword } from "./lotteries.js";
import { S, live, now } from "./state.js";
import { explain } from "./words.js";

const MAX_CHAT_LINES = 200; // messages kept on screen
const chatEls = new Map();

function chatNearBottom(list) {
  return list.scrollHeight - list.scrollTop - list.clientHeight < 60;
}

/** Put a line in the chat: at the end, or, for a message of the history that is
 *  older than some already shown (`before`), in its place by seq. */
function appendChat(li, before = null) {
  const list = $("#chat-list");
  const stick = chatNearBottom(list);
  const empty = document.getElementById("chat-empty");
  if (empty) empty.remove();
  list.insertBefore(li, before);
  while (list.children.length > MAX_CHAT_LINES) {
    const first = list.firstElementChild;
    if (first.dataset.messageId) chatEls.delete(first.dataset.messageId);
    first.remove();
  }
  if (stick) list.scrollTop = list.scrollHeight;
}

/** Where a message with this seq goes: before the first of the messages on screen
 *  that came after it (null: at the end, the live case). */
function placeFor(seq) {
  if (!Number.isFinite(seq)) return null;
  let before = null;
  for (let li = $("#chat-list").lastElementChild; li; li = li.previousElementSibling) {
    if (!li.dataset.seq) continue; // a system line (sold, announcement) has no seq
    if (Number(li.dataset.seq) > seq) before = li;
    else break;
  }
  return before;
}

/** A `chat` event, live or from a snapshot's history: shown once per message_id. */
export function addChat(ev) {
  if (!ev || !ev.message_id) return;
  S.nicknames.set(ev.viewer_id, ev.nickname);
  if (chatEls.has(ev.message_id)) return;
  const mine = S.me && ev.viewer_id === S.me.viewer_id;
  // Only the server's flag marks the host; a viewer's nickname never earns the badge.
  const who = ev.host === true
    ? h("span", { class: "nick host-badge", text: "Host" })
    : h("span", { class: "nick", text: ev.nickname });
  const data = { messageId: ev.message_id };
  if (Number.isFinite(ev.seq)) data.seq = ev.seq;
  if (Number.isInteger(ev.level)) data.level = ev.level;
  // The fan badge (textContent only, like the name): never on the host's own notes.
  const badge = ev.host === true ? null : chatBadge(ev.level);
  const li = h("li", { class: `msg${mine ? " me" : ""}${ev.host === true ? " host" : ""}`, data },
    who,
    badge,
    h("span", { class: "text", text: ev.text }));
  chatEls.set(ev.message_id, li);
  appendChat(li, placeFor(ev.seq));
}

/** The snapshot's `chat`: the room's recent messages, oldest first, without those
 *  the host deleted (docs/protocol.md section 16). On joining they fill the empty
 *  chat; on a later snapshot (a reconnect that could not resume, a resync) the ones
 *  not shown yet take their place by seq, and a message shown here that the history
 *  covers but no longer holds was deleted meanwhile (its chat_deleted was missed). */
export function setChatHistory(history, snapshotSeq) {
  if (!Array.isArray(history)) return; // a server without chat history: nothing to add
  const kept = new Set();
  let oldest = Infinity;
  for (const ev of history) {
    if (!ev || !ev.message_id) continue;
    kept.add(ev.message_id);
    if (Number.isFinite(ev.seq)) oldest = Math.min(oldest, ev.seq);
  }
  if (kept.size && Number.isFinite(oldest)) {
    for (const [id, li] of [...chatEls]) {
      const seq = Number(li.dataset.seq);
      if (!kept.has(id) && Number.isFinite(seq) && seq >= oldest &&
          (!Number.isFinite(snapshotSeq) || seq <= snapshotSeq)) removeChat(id);
    }
  }
  for (const ev of history) addChat(ev);
}

// ------------------------------------------------------------------ pinned message

/** The host's pinned message (snapshot `pinned_message`, `message_pinned` event):
 *  a banner above the chat; null takes it away. */
export function setPinned(pinned) {
  S.pinned = pinned || null;
  renderPinned();
}

export function renderPinned() {
  const box = $("#pinned-msg");
  if (!box) return;
  const p = S.pinned;
  box.hidden = !p;
  box.dataset.messageId = p && p.message_id ? p.message_id : "";
  if (!p) { setText($("#pinned-text"), ""); setText($("#pinned-nick"), ""); return; }
  // The host's own note (no message_id), or a message the server sent with its
  // `host` flag, wears the host badge; a viewer's name never earns it.
  const shown = p.message_id ? chatEls.get(p.message_id) : null;
  const byHost = !p.message_id || !!(shown && shown.classList.contains("host"));
  const nick = $("#pinned-nick");
  nick.className = `pinned-nick${byHost ? " host-badge" : ""}`;
  setText(nick, p.nickname || (byHost ? "Host" : ""));
  setText($("#pinned-text"), p.text || "");
}

/** A `claimed` event: a comment bought units; the room sees who, in chat. */
export function onClaimed(ev) {
  if (ev.viewer_id && ev.nickname) S.nicknames.set(ev.viewer_id, ev.nickname);
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

// ------------------------------------------------------------------ the chat's wait
// Slow mode after a message, or the wait a refusal named (`retry_after_s`), is a wait
// the page starts itself: a duration from now, not a moment of the server's clock. It
// is kept on this device's monotonic clock (performance.now()), which neither a
// wrong wall clock nor a better estimate of the server-clock offset moves, so a 30 s
// wait counts down from 30 and never reads "Wait 31 s".

/** Milliseconds before the next message may go (0: now). */
export function chatWaitLeft() {
  return Math.max(0, S.chatReadyAt - performance.now());
}

/** Hold the next message back `seconds` from now; with `keepLonger`, a longer wait
 *  already running stays. */
export function holdChat(seconds, keepLonger = false) {
  const until = performance.now() + seconds * 1000;
  S.chatReadyAt = keepLonger ? Math.max(S.chatReadyAt, until) : until;
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
  if (chatWaitLeft() > 0) { renderChatGate(); return; }
  if (!live.sendOnce({ type: "chat", text })) {
    toast("Not connected — your message was not sent. It will be here when you retry.", "error");
    return;
  }
  input.value = "";
  S.chatWait = "";
  if (S.policy.slow_mode_s) holdChat(S.policy.slow_mode_s);
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
    holdChat(seconds);
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
  const muted = S.mutedUntil > now();
  const left = chatWaitLeft();
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
