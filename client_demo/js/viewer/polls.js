// Polls on the viewer page: one card per open poll (newest first) and the last
// few closed ones, with the question, one big button per option, the clock
// counted down from the server's `closes_at`, and, once this viewer voted or the
// poll closed, each option's share as a bar (the server's `percent`, from the
// snapshot's `polls` and every `poll_votes` event) with this viewer's choice
// marked.
//
// The server decides every vote (docs/protocol.md section 16): one per viewer and
// poll, the first counts. The page sends `vote` and shows the answer. Which option
// this viewer chose is known from its `voted` reply (or the `details.option` of an
// `already_voted` refusal); it is kept in sessionStorage by poll id, so a reload
// keeps it marked.

import { clock, h, setText } from "../util.js";
import { applyVotes, newerPoll } from "../poll.js";
import { S, live, mustSignIn, now } from "./state.js";
import { explainVote } from "./words.js";

const cards = new Map(); // poll_id -> card element refs
const CLOSED_SHOWN = 3; // closed polls kept on the page, newest first

// ------------------------------------------------------------------ this viewer's vote

const voteKey = (id) => `livesell.vote.${id}`;

/** The option this viewer voted for in the poll, or null (for the current
 *  identity only: a new name is a new voter). */
export function myVote(id) {
  let rec = null;
  try { rec = JSON.parse(sessionStorage.getItem(voteKey(id)) || "null"); } catch { rec = null; }
  if (!rec || !S.me || rec.viewer_id !== S.me.viewer_id || !Number.isInteger(rec.option)) return null;
  return rec.option;
}

function rememberVote(id, option) {
  if (!id || !Number.isInteger(option) || !S.me) return;
  const rec = { viewer_id: S.me.viewer_id, option };
  try { sessionStorage.setItem(voteKey(id), JSON.stringify(rec)); } catch { /* private mode: only forgets */ }
}

// ------------------------------------------------------------------ server views

/** The snapshot's `polls`: the open ones and those closed in the last hour. */
export function setPolls(list) {
  if (!Array.isArray(list)) return; // a server without polls: nothing to show
  const before = S.polls;
  S.polls = new Map(list.map((p) => [p.poll_id, newerPoll(before.get(p.poll_id), p)]));
}

/** `poll_open` and `poll_closed` (the final counts). */
export function onPoll(poll) {
  if (!poll || !poll.poll_id) return;
  S.polls.set(poll.poll_id, newerPoll(S.polls.get(poll.poll_id), poll));
  renderPolls();
}

/** `poll_votes`: the latest counts (coalesced). */
export function onPollVotes(ev) {
  if (applyVotes(S.polls.get(ev.poll_id), ev)) updateCard(ev.poll_id);
}

/** `voted`: the server counted this viewer's vote (or had counted it already, for
 *  the same option). */
export function onVoted(reply, request) {
  const id = reply.poll_id || (request && request.poll_id);
  const option = Number.isInteger(reply.option) ? reply.option : request && request.option;
  rememberVote(id, option);
  const r = cards.get(id);
  if (r) r.msg.hidden = true;
  updateCard(id);
}

/** A refused vote, in plain words next to the buttons. */
export function onVoteRefused(err, request) {
  const id = request.poll_id;
  const d = err.details || {};
  // The server names the option it counted: that is this viewer's vote.
  if (err.code === "already_voted" && Number.isInteger(d.option)) rememberVote(id, d.option);
  showMsg(id, explainVote(err, S.polls.get(id)));
  updateCard(id);
}

/** Server timestamps the clock counts down to: open polls' closes_at. */
export function pollDeadlines() {
  const out = [];
  for (const p of S.polls.values()) if (p.state === "open") out.push(p.closes_at);
  return out;
}

// ------------------------------------------------------------------ rendering

function shown() {
  const all = [...S.polls.values()];
  const open = all.filter((p) => p.state === "open").sort((x, y) => y.opens_at - x.opens_at);
  const closed = all.filter((p) => p.state !== "open")
    .sort((x, y) => (y.closed_at || y.closes_at) - (x.closed_at || x.closes_at)).slice(0, CLOSED_SHOWN);
  return [...open, ...closed];
}

export function renderPolls() {
  const box = document.getElementById("polls");
  if (!box) return;
  const list = shown();
  const keep = new Set(list.map((p) => p.poll_id));
  for (const [id, r] of cards) if (!keep.has(id)) { r.root.remove(); cards.delete(id); }
  list.forEach((p, i) => {
    let r = cards.get(p.poll_id);
    if (!r) { r = buildCard(p); cards.set(p.poll_id, r); }
    if (box.children[i] !== r.root) box.insertBefore(r.root, box.children[i] || null);
    updateCard(p.poll_id);
  });
  box.hidden = list.length === 0;
}

function buildCard(poll) {
  const id = poll.poll_id;
  const r = { opts: [] };
  const qId = `pq-${id}`;
  r.badge = h("span", { class: "badge" });
  r.q = h("h3", { class: "poll-q", attrs: { id: qId } });
  r.clock = h("span", { class: "poll-clock num", attrs: { role: "timer", "aria-live": "off" } });
  r.list = h("ul", { class: "poll-options", attrs: { "aria-labelledby": qId } });
  (poll.options || []).forEach((_, i) => {
    const o = {};
    o.label = h("span", { class: "poll-label" });
    o.mine = h("span", { class: "poll-mine", text: "✓ Your vote", hidden: true });
    o.pct = h("span", { class: "poll-pct num", hidden: true });
    o.fill = h("span");
    o.bar = h("span", { class: "poll-bar", attrs: { "aria-hidden": "true" }, hidden: true }, o.fill);
    o.btn = h("button", { type: "button", class: "poll-opt", data: { option: i },
                          on: { click: () => vote(id, i) } },
      h("span", { class: "poll-row" }, o.label, o.mine, o.pct), o.bar);
    r.list.append(h("li", {}, o.btn));
    r.opts.push(o);
  });
  r.meta = h("p", { class: "poll-meta num" });
  // The results in words, for screen readers, as they change (the bars are hidden
  // from them): only once they are shown on screen, after a vote or the close.
  r.live = h("p", { class: "sr-only", attrs: { role: "status", "aria-live": "polite" } });
  r.msg = h("p", { class: "notice error poll-msg", attrs: { role: "alert" }, hidden: true });
  r.root = h("article", { class: "poll", data: { pollId: id }, attrs: { "aria-labelledby": qId } },
    h("div", { class: "poll-head" }, r.badge, r.q, r.clock), r.list, r.msg, r.meta, r.live);
  return r;
}

/** The option of this viewer's vote on its way to the server, or null. */
function votePending(id) {
  if (!live) return null;
  for (const f of live.pending.values()) if (f.type === "vote" && f.poll_id === id) return Number.isInteger(f.option) ? f.option : -1;
  return null;
}

function showMsg(id, text) {
  const r = cards.get(id);
  if (!r) return;
  setText(r.msg, text);
  r.msg.hidden = false;
}

const votesText = (n) => `${n} vote${n === 1 ? "" : "s"}`;

/** The server's percentages (whole numbers by largest remainders). */
function percents(p) {
  if (Array.isArray(p.percent) && p.percent.length === p.options.length) return p.percent;
  return p.options.map(() => 0);
}

export function updateCard(id) {
  const r = cards.get(id);
  const p = S.polls.get(id);
  if (!r || !p) return;
  const at = now();
  const open = p.state === "open";
  const left = p.closes_at - at;
  const mine = myVote(id);
  const pendingOption = votePending(id);
  const pending = pendingOption !== null;
  const signIn = open && mine === null && mustSignIn();
  const results = !open || mine !== null;
  const canVote = open && left > 0 && mine === null && !pending && !signIn;
  const votes = p.votes || p.options.map(() => 0);
  const pct = percents(p);
  const top = Math.max(0, ...votes);
  const total = p.total ?? 0;

  r.root.dataset.state = open ? "open" : "closed";
  r.root.dataset.voted = mine === null ? "" : String(mine);
  r.root.dataset.total = total;
  setText(r.q, p.question);
  r.badge.className = `badge ${open ? "open" : "ended"}`;
  setText(r.badge, open ? "Poll" : "Closed");
  // Drawn from the server's closes_at; between that moment and its poll_closed
  // event (a few ms) it rests at "Closing…".
  if (open) setText(r.clock, left > 0 ? clock(left) : "Closing…");
  else setText(r.clock, "Final");
  r.clock.setAttribute("aria-label", open ? (left > 0 ? `Closes in ${clock(left)}` : "Closing") : "Closed");

  p.options.forEach((text, i) => {
    const o = r.opts[i];
    if (!o) return;
    const isMine = mine === i;
    setText(o.label, text);
    o.mine.hidden = !isMine;
    o.pct.hidden = !results;
    o.bar.hidden = !results;
    setText(o.pct, `${pct[i] ?? 0}%`);
    o.fill.style.width = `${Math.max(0, Math.min(100, pct[i] ?? 0))}%`;
    o.btn.disabled = !canVote;
    o.btn.setAttribute("aria-pressed", String(isMine));
    o.btn.classList.toggle("mine", isMine);
    o.btn.classList.toggle("top", !open && total > 0 && votes[i] === top);
    o.btn.classList.toggle("pending", pending && pendingOption === i);
    const n = votes[i] ?? 0;
    let label = `Vote for ${text}`;
    if (results) label = `${text}: ${pct[i] ?? 0}%, ${votesText(n)}${isMine ? ", your vote" : ""}`;
    else if (pending && pendingOption === i) label = `Voting for ${text}…`;
    o.btn.setAttribute("aria-label", label);
  });

  let meta;
  if (!open) meta = `Final results · ${votesText(total)}`;
  else if (mine !== null) meta = `${votesText(total)} · you voted “${p.options[mine]}”`;
  else if (pending) meta = live.state === "live" ? "Voting…" : "Waiting for connection…";
  else if (signIn) meta = "Sign in on the shop to vote";
  else if (left <= 0) meta = "Voting is closing";
  else meta = `${votesText(total)} so far · tap an option to vote`;
  setText(r.meta, meta);
  setText(r.live, results
    ? `${open ? "Results so far" : "Final results"}: ` +
      p.options.map((text, i) => `${text} ${pct[i] ?? 0}%`).join(", ") + `. ${votesText(total)}.`
    : "");
}

// ------------------------------------------------------------------ actions

function vote(id, option) {
  const p = S.polls.get(id);
  if (!p || !live || p.state !== "open" || myVote(id) !== null) return;
  if (votePending(id) !== null) return;
  const r = cards.get(id);
  if (r) r.msg.hidden = true;
  // Re-sent under the same request id after a reconnect until answered; a repeat
  // for the same option is answered `voted` again, so a retry never counts twice.
  live.request({ type: "vote", poll_id: id, option });
  updateCard(id);
}
