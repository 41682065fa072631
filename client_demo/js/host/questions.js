// Questions (Q&A) in the host console: the top unanswered questions by votes (most
// first, the earlier on a tie), each with "Mark answered", and the recently
// answered ones. The list is loaded from `GET /api/rooms/{room}/questions?limit=20`
// when the console opens the room, after every reconnect and on Refresh, and kept
// live from the `question`, `question_votes` and `question_answered` events and each
// action's answer (docs/protocol.md section 17). The server decides; a refusal
// (e.g. `question_answered`, another console was quicker) is shown in its words.

import { $, ago, h, plural, setText, timeOfDay } from "../util.js";
import { answered, applyCount, byAnswered, byVotes, missedAnswers, newerQuestion } from "../question.js";
import { S, hostApi, now, report } from "./state.js";

const LIMIT = 20; // unanswered questions loaded and shown, and answered ones loaded
const SNAPSHOT_TOP = 10; // unanswered questions the room state carries
const ANSWERED_SHOWN = 10;
const OPEN_KEPT = 200;
const els = new Map(); // question_id -> list item refs
// question_id -> votes of the unanswered questions as the events and the room's
// snapshots said (in seq order), without the loads' counts, which can be newer than
// a snapshot: what a snapshot can prove answered (question.js missedAnswers).
const ordered = new Map();
let loadToken = 0; // a load answered after the room changed (or a newer load) is dropped

export function resetQuestions() {
  els.clear();
  ordered.clear();
  loadToken += 1;
  $("#qa-open-list").replaceChildren();
  $("#qa-answered-list").replaceChildren();
  setText($("#qa-result"), "");
  renderQuestions();
}

// ------------------------------------------------------------------ server views

function put(q) {
  if (!q || !q.question_id) return;
  S.questions.set(q.question_id, newerQuestion(S.questions.get(q.question_id), q));
}

function trim() {
  const all = [...S.questions.values()];
  for (const q of all.filter((x) => !answered(x)).sort(byVotes).slice(OPEN_KEPT)) forget(q.question_id);
  for (const q of all.filter(answered).sort(byAnswered).slice(LIMIT)) forget(q.question_id);
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

/** Unanswered questions a fresh list proves answered (the console missed the
 *  event): off the unanswered list; the answered list comes from the next load. */
function dropMissed(before, list, top) {
  for (const id of missedAnswers(before, list, top)) {
    if (!answered(S.questions.get(id))) forget(id);
    else ordered.delete(id);
  }
}

/** The room state's `questions` (the top ten unanswered), then a fresh load for the
 *  whole list and the answered ones. */
export function setQuestions(list) {
  if (Array.isArray(list)) {
    const before = [];
    for (const [id, votes] of ordered) {
      const q = S.questions.get(id);
      if (q && !answered(q)) before.push({ ...q, votes });
    }
    for (const q of list) {
      if (!q || !q.question_id) continue;
      put(q);
      heard(S.questions.get(q.question_id));
    }
    dropMissed(before, list, SNAPSHOT_TOP);
    renderQuestions();
  }
  loadQuestions();
}

/** `question` and `question_answered` events, and the answer to Mark answered
 *  (answered: as final as the event). */
export function putQuestion(q) {
  if (!q || !q.question_id) return;
  put(q);
  heard(S.questions.get(q.question_id));
  trim();
  renderQuestions();
}

/** `question_votes`: the latest count (coalesced). */
export function onQuestionVotes(ev) {
  const q = S.questions.get(ev.question_id);
  if (!q || answered(q)) return;
  heard({ question_id: ev.question_id, votes: ev.votes });
  if (applyCount(q, ev.votes)) renderQuestions();
}

/** GET …/questions: the top unanswered ones by votes and the last answered ones.
 *  A newer load (or another room) supersedes one still on its way. Resolves to
 *  whether this load's answer was applied. */
export async function loadQuestions() {
  if (!S.roomId) return false;
  const token = ++loadToken;
  // Only questions known before the request can be proven answered by its answer:
  // one that arrived by event meanwhile may be newer than the server's read.
  const before = [...S.questions.values()];
  const res = await hostApi("GET", `/questions?limit=${LIMIT}`);
  if (token !== loadToken) return false;
  if (!res.ok || !res.data) { report($("#qa-result"), res, ""); return false; }
  const open = Array.isArray(res.data.open) ? res.data.open : [];
  const done = Array.isArray(res.data.answered) ? res.data.answered : [];
  for (const q of [...open, ...done]) put(q);
  dropMissed(before.filter((q) => !answered(S.questions.get(q.question_id))), open, LIMIT);
  trim();
  renderQuestions();
  return true;
}

/** The Refresh button: load again and say so. */
export async function refreshQuestions() {
  if (!(await loadQuestions())) return;
  const waiting = [...S.questions.values()].filter((q) => !answered(q)).length;
  report($("#qa-result"), { ok: true }, `Questions loaded: ${plural(waiting, "question")} waiting`);
}

// ------------------------------------------------------------------ rendering


function place(list, qs) {
  const active = document.activeElement;
  qs.forEach((q, i) => {
    const r = els.get(q.question_id);
    if (list.children[i] !== r.li) list.insertBefore(r.li, list.children[i] || null);
  });
  while (list.children.length > qs.length) list.lastElementChild.remove();
  if (active && active !== document.activeElement && active.isConnected && !active.disabled) {
    active.focus({ preventScroll: true });
  }
}

export function renderQuestions() {
  const all = [...S.questions.values()];
  const open = all.filter((q) => !answered(q)).sort(byVotes);
  const top = open.slice(0, LIMIT);
  const done = all.filter(answered).sort(byAnswered).slice(0, ANSWERED_SHOWN);
  const keep = new Set([...top, ...done].map((q) => q.question_id));
  for (const [id, r] of els) if (!keep.has(id)) { r.li.remove(); els.delete(id); }
  for (const q of [...top, ...done]) {
    let r = els.get(q.question_id);
    if (!r) { r = buildItem(q.question_id); els.set(q.question_id, r); }
    updateItem(r, q);
  }
  place($("#qa-open-list"), top);
  place($("#qa-answered-list"), done);
  $("#qa-open-empty").hidden = top.length > 0;
  $("#qa-answered-empty").hidden = done.length > 0;
  setText($("#qa-summary"), `${plural(open.length, "question")} waiting` +
    (open.length > top.length ? ` (top ${top.length} shown)` : ""));
  // On the Questions tab too, so a question is seen whichever tool is open.
  const count = $("#qa-tab-count");
  count.hidden = open.length === 0;
  setText(count, open.length > 99 ? "99+" : String(open.length));
}

function buildItem(id) {
  const r = {};
  r.votes = h("span", { class: "qa-votes num" });
  r.text = h("span", { class: "item-title qa-text" });
  r.meta = h("span", { class: "item-meta" });
  r.badge = h("span", { class: "badge ok", text: "answered", hidden: true });
  r.mark = h("button", { type: "button", class: "btn primary small", text: "Mark answered",
                         on: { click: () => markAnswered(id) } });
  r.li = h("li", { class: "item qa-item", data: { questionId: id } },
    r.votes, h("div", { class: "item-main" }, r.text, r.meta), r.badge, h("div", { class: "acts" }, r.mark));
  return r;
}

function updateItem(r, q) {
  const done = answered(q);
  const votes = q.votes ?? 0;
  r.li.dataset.state = done ? "answered" : "open";
  r.li.dataset.votes = votes;
  setText(r.votes, plural(votes, "vote"));
  setText(r.text, q.text);
  setText(r.meta, done ? `${q.nickname} · answered at ${timeOfDay(q.answered_at)}`
                       : `${q.nickname} · asked ${ago(q.asked_at, now())}`);
  r.badge.hidden = !done;
  r.mark.hidden = done;
  r.mark.setAttribute("aria-label", `Mark “${q.text}” answered`);
}

// ------------------------------------------------------------------ actions

async function markAnswered(id) {
  const q = S.questions.get(id);
  const r = els.get(id);
  if (!q || !r) return;
  const hadFocus = document.activeElement === r.mark;
  r.mark.disabled = true;
  const res = await hostApi("POST", `/questions/${encodeURIComponent(id)}/answered`);
  r.mark.disabled = false;
  if (res.ok && res.data && res.data.question_id) putQuestion(res.data);
  report($("#qa-result"), res, `Marked “${q.text}” answered`);
  // Answered (by this console or another): the list changed under the button.
  if (!res.ok && res.error && res.error.code === "question_answered") loadQuestions();
  // The button left with its question: keyboard focus goes to the next one waiting.
  if (hadFocus && (r.mark.hidden || !r.mark.isConnected)) {
    const next = $("#qa-open-list .qa-item button:not([hidden])");
    (next || $("#qa-refresh")).focus();
  }
}
