// Polls in the host console: the start form (a question, 2 to 6 options added and
// removed as fields, how long it stays open), and the list of polls (in the live
// column's "On now", ./onnow.js, where "Close now" says what it did) with each
// option's votes and share (the server's counts and `percent`, from the room
// state, poll_* events and each action's answer), the close counted down from the
// server's `closes_at`, and "Close now". The server decides the rules (lengths,
// distinct options, the duration) and refuses in its own words
// (docs/protocol.md section 16).

import { $, $$, clock, h, plural, setText } from "../util.js";
import { applyVotes, newerPoll } from "../poll.js";
import { confirmAction } from "./confirm.js";
import { keepFocusInNow, nowReport } from "./onnow.js";
import { S, hostApi, now, report } from "./state.js";

const els = new Map(); // poll_id -> list item refs
const SHOWN = 8;
const MIN_OPTIONS = 2;
const MAX_OPTIONS = 6;

export function resetPolls() {
  els.clear();
  $("#poll-list").replaceChildren();
}

// ------------------------------------------------------------------ server views

/** The room state's `polls` (open ones and those closed in the last hour). */
export function setPolls(list) {
  if (!Array.isArray(list)) return;
  const before = S.polls;
  S.polls = new Map(list.map((p) => [p.poll_id, newerPoll(before.get(p.poll_id), p)]));
  renderPolls();
}

/** A poll from an event (poll_open, poll_closed) or an action's answer. */
export function putPoll(poll) {
  if (!poll || !poll.poll_id) return;
  S.polls.set(poll.poll_id, newerPoll(S.polls.get(poll.poll_id), poll));
  renderPolls();
}

/** `poll_votes`: the latest counts (coalesced). */
export function onPollVotes(ev) {
  const p = S.polls.get(ev.poll_id);
  const r = els.get(ev.poll_id);
  if (applyVotes(p, ev) && r) updateItem(r, p);
}

export const anyOpenPoll = () => [...S.polls.values()].some((p) => p.state === "open");

// ------------------------------------------------------------------ the form

/** The form as new: an empty question and two empty options. */
export function resetPollForm() {
  $("#pl-question").value = "";
  $("#pl-options").replaceChildren();
  for (let i = 0; i < MIN_OPTIONS; i++) addOption(false);
}

function optionInputs() {
  return $$("#pl-options input");
}

/** One more option field (at most six); focus it when the host asked for it. */
export function addOption(focus = true) {
  if (optionInputs().length >= MAX_OPTIONS) return;
  const input = h("input", { autocomplete: "off", class: "pl-option" });
  const label = h("label");
  const remove = h("button", { type: "button", class: "btn ghost small pl-remove", text: "Remove",
                               on: { click: () => removeOption(li) } });
  const li = h("li", { class: "pl-option-row" }, label, input, remove);
  $("#pl-options").append(li);
  numberOptions();
  if (focus) input.focus();
}

function removeOption(li) {
  if (optionInputs().length <= MIN_OPTIONS) return;
  const rows = [...$("#pl-options").children];
  const at = rows.indexOf(li);
  li.remove();
  numberOptions();
  // Keyboard focus stays in the list: on the option that took this one's place.
  const inputs = optionInputs();
  const next = inputs[Math.min(at, inputs.length - 1)];
  if (next) next.focus();
}

/** Labels "Option 1"…, ids, and which buttons apply at the current count. */
function numberOptions() {
  const rows = [...$("#pl-options").children];
  rows.forEach((li, i) => {
    const [label, input, remove] = li.children;
    input.id = `pl-option-${i + 1}`;
    label.htmlFor = input.id;
    setText(label, `Option ${i + 1}`);
    input.placeholder = i === 0 ? "e.g. Red" : i === 1 ? "e.g. Blue" : "";
    remove.hidden = rows.length <= MIN_OPTIONS;
    remove.setAttribute("aria-label", `Remove option ${i + 1}`);
  });
  const add = $("#pl-add");
  add.disabled = rows.length >= MAX_OPTIONS;
  setText($("#pl-count"), `${rows.length} of ${MAX_OPTIONS}`);
}

export async function startPoll(e) {
  e.preventDefault();
  const out = $("#poll-result");
  // Empty option fields are left out; the rest is sent as typed (trimmed), and the
  // server says what it refuses (too few, too long, the same option twice).
  const options = optionInputs().map((i) => i.value.trim()).filter(Boolean);
  const body = { question: $("#pl-question").value.trim(), options,
                 duration_s: Number($("#pl-duration").value) };
  const res = await hostApi("POST", "/polls", body);
  if (!res.ok) { report(out, res, ""); return; }
  const p = res.data;
  putPoll(p);
  report(out, res, `Poll “${p.question}” is open: ${p.options.length} options, closes in ${clock(p.closes_at - now())}`);
  resetPollForm();
}

// ------------------------------------------------------------------ the list

export function renderPolls() {
  const list = $("#poll-list");
  const items = [...S.polls.values()]
    .sort((x, y) => (y.state === "open") - (x.state === "open") || y.opens_at - x.opens_at)
    .slice(0, SHOWN);
  const keep = new Set(items.map((p) => p.poll_id));
  for (const [id, r] of els) if (!keep.has(id)) { r.li.remove(); els.delete(id); }
  items.forEach((p, i) => {
    let r = els.get(p.poll_id);
    if (!r) { r = buildItem(p); els.set(p.poll_id, r); }
    if (list.children[i] !== r.li) list.insertBefore(r.li, list.children[i] || null);
    updateItem(r, p);
  });
}

function buildItem(poll) {
  const id = poll.poll_id;
  const r = { opts: [] };
  r.title = h("span", { class: "item-title" });
  r.results = h("ol", { class: "poll-results", attrs: { "aria-label": "Votes per option" } });
  (poll.options || []).forEach(() => {
    const o = {};
    o.label = h("span", { class: "pr-label" });
    o.count = h("span", { class: "pr-count num" });
    o.fill = h("span");
    o.li = h("li", { class: "pr-row" },
      h("span", { class: "pr-head" }, o.label, o.count),
      h("span", { class: "pr-bar", attrs: { "aria-hidden": "true" } }, o.fill));
    r.results.append(o.li);
    r.opts.push(o);
  });
  r.meta = h("span", { class: "item-meta num" });
  r.badge = h("span", { class: "badge" });
  r.close = h("button", { type: "button", class: "btn primary small", text: "Close now",
                          on: { click: () => closePoll(id) } });
  r.li = h("li", { class: "item poll-item", data: { pollId: id } },
    h("div", { class: "item-main" }, r.title, r.results, r.meta),
    r.badge, h("div", { class: "acts" }, r.close));
  return r;
}


function updateItem(r, p) {
  const open = p.state === "open";
  const total = p.total ?? 0;
  const votes = p.votes || p.options.map(() => 0);
  const pct = Array.isArray(p.percent) ? p.percent : p.options.map(() => 0);
  const top = Math.max(0, ...votes);
  r.li.dataset.state = open ? "open" : "closed";
  r.li.dataset.total = total;
  setText(r.title, p.question);
  r.badge.className = `badge ${open ? "open" : "ended"}`;
  setText(r.badge, open ? "open" : "closed");
  p.options.forEach((text, i) => {
    const o = r.opts[i];
    if (!o) return;
    setText(o.label, text);
    setText(o.count, `${votes[i] ?? 0} · ${pct[i] ?? 0}%`);
    o.fill.style.width = `${Math.max(0, Math.min(100, pct[i] ?? 0))}%`;
    o.li.classList.toggle("top", !open && total > 0 && votes[i] === top);
    o.li.dataset.votes = votes[i] ?? 0;
    o.li.dataset.percent = pct[i] ?? 0;
  });
  // The close counted down from the server's closes_at; it rests at 0:00 until the
  // server's poll_closed, a few ms later.
  setText(r.meta, `${plural(total, "vote")} · ` + (open ? `closes in ${clock(p.closes_at - now())}` : "closed"));
  // Its Close left with the poll's end: keyboard focus stays in On now.
  if (!open && document.activeElement === r.close) keepFocusInNow();
  r.close.hidden = !open;
  r.close.setAttribute("aria-label", `Close the poll “${p.question}” now`);
}

async function closePoll(id) {
  const p = S.polls.get(id);
  if (!p) return;
  const sure = await confirmAction({
    title: `Close the poll “${p.question}” now?`,
    body: [`Voting stops ${p.state === "open" ? `${clock(p.closes_at - now())} early` : "now"} and the results ` +
           `(${plural(p.total ?? 0, "vote")} so far) are final for every viewer.`,
           "A closed poll cannot be reopened; you can start a new one."],
    confirm: "Close poll", cancel: "Keep voting open",
  });
  if (!sure) return;
  const res = await hostApi("POST", `/polls/${encodeURIComponent(id)}/close`);
  if (res.ok && res.data && res.data.poll_id) putPoll(res.data);
  const final = S.polls.get(id) || p;
  nowReport(res, res.ok ? `Closed “${final.question}”: ${plural(final.total ?? 0, "vote")}` : "");
}
