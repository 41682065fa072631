// Questions (Q&A) on the viewer page: a field to ask the host, the unanswered
// questions sorted by votes (most first, the earlier on a tie), each with an
// upvote button showing its count, and the answered ones moved to an "Answered"
// list below.
//
// The server decides everything (docs/protocol.md section 17): a question is a
// chat message for the limits (muted, slow mode, a busy chat), a viewer has at most
// a few unanswered ones, one upvote per viewer and question and never one's own.
// The page sends `ask` and `upvote` as requests, re-sent under their request id
// until answered (a retry asks once and counts once), and shows the answer. The
// list comes from the snapshot's `questions` (the top ten) and the `question`,
// `question_votes` and `question_answered` events. Which questions this viewer
// upvoted is known from its `upvoted` replies and kept in sessionStorage by
// question id, so a reload keeps them; the answered questions this tab saw are kept
// there too (a snapshot carries only unanswered ones).

import { ago, clock, h, setText, timeOfDay } from "../util.js";
import { answered, applyCount, byAnswered, byVotes, missedAnswers, newerQuestion } from "../question.js";
import { chatWaitLeft, holdChat, renderChatGate, onMutedRefusal } from "./chat.js";
import { scheduleClock } from "./clock.js";
import { S, limit, live, mustSignIn, now } from "./state.js";
import { explainAsk, explainUpvote } from "./words.js";

const items = new Map(); // question_id -> list item refs
// question_id -> votes of the unanswered questions as the events and snapshots said
// (in seq order), without the replies' newer counts: what a snapshot can prove
// answered (question.js missedAnswers).
const ordered = new Map();
const SNAPSHOT_TOP = 10; // unanswered questions a snapshot carries
const OPEN_SHOWN = 10; // unanswered questions listed (plus this viewer's own)
const ANSWERED_SHOWN = 5; // answered questions listed, the latest first
const OPEN_KEPT = 200; // unanswered questions kept in memory
const ANSWERED_KEPT = 20;
let askNote = ""; // the outcome of the last question asked, until the next one

// ------------------------------------------------------------------ this viewer's side

const upvoteKey = (id) => `livesell.upvote.${id}`;
const answeredKey = () => `livesell.answered.${S.roomId}`;

const mine = (q) => !!(S.me && q && q.viewer_id === S.me.viewer_id);

/** Whether this viewer upvoted the question (for the current identity only: a
 *  new name is a new voter). */
export function myUpvote(id) {
  let rec = null;
  try { rec = JSON.parse(sessionStorage.getItem(upvoteKey(id)) || "null"); } catch { rec = null; }
  return !!(rec && S.me && rec.viewer_id === S.me.viewer_id);
}

function rememberUpvote(id) {
  if (!id || !S.me) return;
  try { sessionStorage.setItem(upvoteKey(id), JSON.stringify({ viewer_id: S.me.viewer_id })); } catch { /* private mode: only forgets */ }
}

/** The answered questions this tab saw (a snapshot has none), on loading the page. */
export function loadAnswered() {
  let list = [];
  try { list = JSON.parse(sessionStorage.getItem(answeredKey()) || "[]"); } catch { list = []; }
  if (!Array.isArray(list)) return;
  for (const q of list) if (q && q.question_id && answered(q)) put(q);
}

function saveAnswered() {
  const list = [...S.questions.values()].filter(answered).sort(byAnswered).slice(0, ANSWERED_KEPT);
  try { sessionStorage.setItem(answeredKey(), JSON.stringify(list)); } catch { /* only forgets */ }
}

// ------------------------------------------------------------------ server views

function put(q) {
  if (!q || !q.question_id) return null;
  const kept = newerQuestion(S.questions.get(q.question_id), q);
  S.questions.set(q.question_id, kept);
  return kept;
}

/** Keep memory bounded in a long show: the lowest-ranked unanswered questions
 *  (never this viewer's own) and the oldest answered ones go first. */
function trim() {
  const all = [...S.questions.values()];
  const open = all.filter((q) => !answered(q)).sort(byVotes);
  for (const q of open.slice(OPEN_KEPT)) if (!mine(q)) forget(q.question_id);
  const done = all.filter(answered).sort(byAnswered);
  for (const q of done.slice(ANSWERED_KEPT)) forget(q.question_id);
}

function forget(id) {
  S.questions.delete(id);
  ordered.delete(id);
}

/** What an event or a snapshot said of a question (seq-ordered knowledge). */
function heard(q) {
  if (answered(q)) ordered.delete(q.question_id);
  else ordered.set(q.question_id, Math.max(ordered.get(q.question_id) ?? 0, q.votes ?? 0));
}

/** The snapshot's `questions`: the top unanswered ones. A question the page shows
 *  as unanswered that the list proves answered (the page missed its event) moves
 *  to the answered list. */
export function setQuestions(list) {
  if (!Array.isArray(list)) return; // a server without questions: nothing to show
  const before = [];
  for (const [id, votes] of ordered) {
    const q = S.questions.get(id);
    if (q && !answered(q)) before.push({ ...q, votes });
  }
  for (const q of list) {
    const kept = put(q);
    if (kept) heard(kept);
  }
  const at = now();
  for (const id of missedAnswers(before, list, SNAPSHOT_TOP)) {
    const q = S.questions.get(id);
    if (q && !answered(q)) S.questions.set(id, { ...q, answered_at: at });
    ordered.delete(id);
  }
  trim();
  saveAnswered();
}

/** `question`: a new one. */
export function onQuestion(q) {
  const kept = put(q);
  if (!kept) return;
  heard(kept);
  trim();
  renderQuestions();
}

/** `question_votes`: the latest count (coalesced). A question the page does not
 *  know (below the snapshot's top ten) stays unknown: there is no text to show. */
export function onQuestionVotes(ev) {
  const q = S.questions.get(ev.question_id);
  if (!q || answered(q)) return;
  heard({ question_id: ev.question_id, votes: ev.votes });
  if (applyCount(q, ev.votes)) renderQuestions();
}

/** `question_answered`: the question with its final votes and answered time. */
export function onQuestionAnswered(q) {
  const kept = put(q);
  if (!kept) return;
  heard(kept);
  if (mine(kept) && answered(kept)) setText(document.getElementById("qa-live"), `The host answered your question “${kept.text}”.`);
  trim();
  saveAnswered();
  renderQuestions();
}

// ------------------------------------------------------------------ replies

/** `asked`: the server took this viewer's question (or had taken it, for a retry). */
export function onAsked(reply, request) {
  const q = put(reply.question);
  const input = document.getElementById("ask-input");
  if (input && request && input.value.trim() === String(request.text || "").trim()) input.value = "";
  hideAskMsg();
  askNote = q && answered(q) ? "Your question was asked and answered."
                             : "✓ Your question is in the list: others can upvote it.";
  renderQuestions();
}

/** A refused question, in plain words under the field (its text stays in the box). */
export function onAskRefused(err, request) {
  const input = document.getElementById("ask-input");
  if (input && request && request.text && !input.value.trim()) input.value = request.text;
  askNote = "";
  const wait = err.details && Number(err.details.retry_after_s);
  if (err.code === "slow_mode" || err.code === "chat_busy") {
    // The chat's gate: the Ask button (and the chat's Send) count down to it.
    const seconds = Number.isFinite(wait) && wait > 0 ? Math.ceil(wait) : 1;
    holdChat(seconds, true);
    S.askWait = err.code;
    hideAskMsg();
    renderChatGate();
    scheduleClock();
  } else {
    if (err.code === "muted") onMutedRefusal(err);
    showAskMsg(explainAsk(err));
  }
  renderQuestions();
}

/** `upvoted`: the server counted this viewer's upvote (or had counted it). */
export function onUpvoted(reply, request) {
  const id = reply.question_id || (request && request.question_id);
  rememberUpvote(id);
  const q = S.questions.get(id);
  applyCount(q, reply.votes);
  const r = items.get(id);
  if (r) r.msg.hidden = true;
  renderQuestions();
}

/** A refused upvote, in plain words on the question. */
export function onUpvoteRefused(err, request) {
  const id = request.question_id;
  const q = S.questions.get(id);
  if (err.code === "question_answered" && q && !answered(q)) {
    S.questions.set(id, { ...q, answered_at: now() });
    ordered.delete(id);
    saveAnswered();
  }
  if (err.code === "question_not_found") forget(id);
  renderQuestions();
  const r = items.get(id);
  if (r) { setText(r.msg, explainUpvote(err)); r.msg.hidden = false; }
  else showAskMsg(explainUpvote(err));
}

// ------------------------------------------------------------------ rendering

function showAskMsg(text) {
  const msg = document.getElementById("ask-msg");
  if (!msg) return;
  setText(msg, text);
  msg.hidden = false;
}

function hideAskMsg() {
  const msg = document.getElementById("ask-msg");
  if (msg) msg.hidden = true;
}

/** This viewer's question on its way to the server, or null. */
function askPending() {
  if (!live) return null;
  for (const f of live.pending.values()) if (f.type === "ask") return f;
  return null;
}

function upvotePending(id) {
  return !!live && live.isPending((f) => f.type === "upvote" && f.question_id === id);
}

const votesText = (n) => `${n} vote${n === 1 ? "" : "s"}`;

function shown() {
  const all = [...S.questions.values()];
  const open = all.filter((q) => !answered(q)).sort(byVotes);
  // The top ones, and this viewer's own wherever they rank.
  const list = open.filter((q, i) => i < OPEN_SHOWN || mine(q));
  const done = all.filter(answered).sort(byAnswered).slice(0, ANSWERED_SHOWN);
  return { open: list, more: open.length - list.length, done };
}

/** Put each item at its place in its list (moving as few as needed), keeping the
 *  keyboard focus where it was. */
function place(box, list) {
  const active = document.activeElement;
  list.forEach((q, i) => {
    const r = items.get(q.question_id);
    if (box.children[i] !== r.li) box.insertBefore(r.li, box.children[i] || null);
  });
  while (box.children.length > list.length) box.lastElementChild.remove();
  if (active && active !== document.activeElement && active.isConnected && !active.disabled) {
    active.focus({ preventScroll: true });
  }
}

export function renderQuestions() {
  const box = document.getElementById("qa-open");
  if (!box) return;
  const { open, more, done } = shown();
  const keep = new Set([...open, ...done].map((q) => q.question_id));
  for (const [id, r] of items) if (!keep.has(id)) { r.li.remove(); items.delete(id); }
  for (const q of [...open, ...done]) {
    if (!items.has(q.question_id)) items.set(q.question_id, buildItem(q.question_id));
    updateItem(q.question_id);
  }
  place(box, open);
  place(document.getElementById("qa-answered"), done);
  document.getElementById("qa-empty").hidden = open.length > 0;
  const moreLine = document.getElementById("qa-more");
  moreLine.hidden = more <= 0;
  setText(moreLine, more > 0 ? `and ${more} more waiting with fewer votes` : "");
  document.getElementById("qa-done").hidden = done.length === 0;
  const waiting = [...S.questions.values()].filter((q) => !answered(q)).length;
  setText(document.getElementById("qa-count"), waiting ? `${waiting} waiting` : "");
  renderAsk();
}

function buildItem(id) {
  const r = {};
  r.text = h("p", { class: "qa-text" });
  r.badge = h("span", { class: "badge ok qa-badge", text: "Answered", hidden: true });
  r.meta = h("p", { class: "qa-meta" });
  r.msg = h("p", { class: "notice error qa-msg", attrs: { role: "alert" }, hidden: true });
  r.count = h("span", { class: "qa-votes num" });
  r.btn = h("button", { type: "button", class: "qa-up", on: { click: () => upvote(id) } },
    h("span", { class: "qa-arrow", attrs: { "aria-hidden": "true" }, text: "▲" }), r.count);
  r.li = h("li", { class: "qa-item", data: { questionId: id } },
    h("div", { class: "qa-main" }, h("div", { class: "qa-top" }, r.badge, r.text), r.meta, r.msg), r.btn);
  return r;
}

function updateItem(id) {
  const r = items.get(id);
  const q = S.questions.get(id);
  if (!r || !q) return;
  const at = now();
  const isMine = mine(q);
  const done = answered(q);
  const upvoted = myUpvote(id);
  const pending = upvotePending(id);
  const signIn = mustSignIn();
  const votes = q.votes ?? 0;
  r.li.dataset.state = done ? "answered" : "open";
  r.li.dataset.votes = votes;
  r.li.dataset.mine = isMine ? "true" : "";
  r.li.dataset.upvoted = upvoted ? "true" : "";
  r.li.classList.toggle("mine", isMine);
  setText(r.text, q.text);
  r.badge.hidden = !done;
  const who = isMine ? "you" : q.nickname;
  setText(r.meta, done
    ? `Asked by ${who} · ${votesText(votes)} · answered ${ago(q.answered_at, at)}`
    : `Asked by ${who} · ${ago(q.asked_at, at)}`);
  setText(r.count, String(votes));
  r.btn.hidden = done;
  r.btn.disabled = done || isMine || upvoted || pending || signIn || !live;
  r.btn.setAttribute("aria-pressed", String(upvoted));
  r.btn.classList.toggle("pending", pending);
  let label = `Upvote “${q.text}”, ${votesText(votes)}`;
  if (isMine) label = `Your question “${q.text}”, ${votesText(votes)}`;
  else if (upvoted) label = `You upvoted “${q.text}”, ${votesText(votes)}`;
  else if (pending) label = `Upvoting “${q.text}”…`;
  else if (signIn) label = `Upvote “${q.text}”, ${votesText(votes)} (sign in on the shop to upvote)`;
  r.btn.setAttribute("aria-label", label);
}

/** The Ask field and button: "Asking…" while the question is on its way, the
 *  chat's slow-mode or busy wait counted down, muted, or sign-in needed. Drawn
 *  from the server clock on every displayed second. */
export function renderAsk() {
  const send = document.getElementById("ask-send");
  if (!send) return;
  const input = document.getElementById("ask-input");
  const note = document.getElementById("ask-note");
  const at = now();
  const pending = askPending();
  const muted = S.mutedUntil > at;
  const left = chatWaitLeft();
  const waiting = left > 0;
  const secs = Math.max(1, Math.ceil(left / 1000));
  const signIn = mustSignIn();
  if (!waiting) S.askWait = "";
  // A question left on its way by a reload is shown in the box until answered.
  if (pending && !input.value.trim()) input.value = pending.text || "";
  input.readOnly = !!pending;
  input.disabled = muted || signIn;
  const max = limit("chat_max_length");
  if (max) input.maxLength = max;
  send.disabled = !!pending || muted || waiting || signIn;
  setText(send, pending ? "Asking…" : waiting ? `Wait ${secs} s` : "Ask");
  send.setAttribute("aria-label", pending ? "Asking your question"
    : waiting ? `Ask, available in ${secs} seconds` : "Ask");
  let text = askNote;
  if (pending) text = live && live.state === "live" ? "Asking…" : "Waiting for the connection: your question goes out when it is back.";
  else if (muted) text = `The host muted you: you can ask again at ${timeOfDay(S.mutedUntil)} (in ${clock(S.mutedUntil - at)}).`;
  else if (signIn) text = "Only customers signed in on the shop can ask questions here.";
  else if (waiting && S.askWait === "slow_mode") text = `Slow mode is on: wait ${secs} s before asking. Your question is still in the box.`;
  else if (waiting && S.askWait === "chat_busy") text = `The chat is very busy: wait ${secs} s and ask again. Your question is still in the box.`;
  else if (waiting) text = `Slow mode: you can ask in ${secs} s.`;
  setText(note, text);
  note.hidden = !text;
}

// ------------------------------------------------------------------ actions

/** The Ask form: the question goes out as a request, re-sent under the same
 *  request id after a reconnect until answered (a retry asks once). */
export function ask(e) {
  e.preventDefault();
  const input = document.getElementById("ask-input");
  const text = input.value.trim();
  if (!text || !live || askPending()) return;
  if (S.mutedUntil > now() || chatWaitLeft() > 0 || mustSignIn()) { renderAsk(); return; }
  hideAskMsg();
  askNote = "";
  live.request({ type: "ask", text });
  // The chat's slow mode counts the question as a message.
  if (S.policy.slow_mode_s) holdChat(S.policy.slow_mode_s);
  renderChatGate();
  scheduleClock();
  renderAsk();
}

function upvote(id) {
  const q = S.questions.get(id);
  if (!q || !live || answered(q) || mine(q) || myUpvote(id) || upvotePending(id)) return;
  const r = items.get(id);
  if (r) r.msg.hidden = true;
  // A repeat is answered `upvoted` again with the count, so a retry never counts twice.
  live.request({ type: "upvote", question_id: id });
  renderQuestions();
}
