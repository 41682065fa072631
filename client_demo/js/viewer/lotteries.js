// Giveaways on the viewer page: the open lottery (enter by button or by keyword),
// the drawn one with its winners, the seed hash remembered when it opened, and
// the "Verify draw" dialog that recomputes the draw in this browser (../lottery.js).
//
// A draw's result names its winners by viewer id only (`lottery_drawn` and the
// snapshot's `lotteries` carry no names), so the page names them from what the
// server sent with viewer ids: chat lines (live and the snapshot's history) and
// questions. The names known when the draw came are kept per room, so a reload
// still says who won; a winner the page never saw named is "a viewer", never an id.
// The result shows over the video for WINNER_MS after the draw (by the server's
// `drawn_at`), on a reload too, and then goes; the giveaway's card keeps it.

import { $, api, clock, h, setText, store, toast } from "../util.js";
import { verifyLottery } from "../lottery.js";
import { showLevel } from "./fans.js";
import { renderPromos } from "./promos.js";
import { hideStageBanner, showStageBanner } from "./stage.js";
import { S, keys, live, mustSignIn, now, showEnded } from "./state.js";
import { explain } from "./words.js";

const WINNER_MS = 60_000;
const KEPT_DRAWS = 20;
const dismissed = new Set(); // lottery ids whose banner the viewer closed
let bannerLottery = null; // the lottery the winner banner shows
let savedNames = null; // lottery_id -> {viewer_id: nickname}, from localStorage

function namesKept() {
  if (!savedNames) savedNames = store.get(keys.winnerNames(), {}) || {};
  return savedNames;
}

/** Names the server sent beside viewer ids ([viewer_id, nickname] pairs). */
export function learnNames(pairs) {
  for (const [id, nick] of pairs) if (id && nick) S.nicknames.set(id, nick);
}

const winnersOf = (lottery) => (lottery.result && lottery.result.winners) || [];

/** Keep the names this page knows of a draw's winners, for after a reload. */
function keepNames(lottery) {
  const all = namesKept();
  const kept = all[lottery.lottery_id] || {};
  let changed = false;
  for (const id of winnersOf(lottery)) {
    const nick = S.nicknames.get(id);
    if (nick && kept[id] !== nick) { kept[id] = nick; changed = true; }
  }
  if (!changed) return;
  delete all[lottery.lottery_id];
  all[lottery.lottery_id] = kept;
  for (const id of Object.keys(all).slice(0, Math.max(0, Object.keys(all).length - KEPT_DRAWS))) delete all[id];
  store.set(keys.winnerNames(), all);
}

const listed = (parts) => (parts.length < 2 ? parts.join("")
  : `${parts.slice(0, -1).join(", ")} and ${parts[parts.length - 1]}`);

/** The winners in words: "you", their names, and those never named here counted. */
export function winnersText(lottery) {
  const winners = winnersOf(lottery);
  if (!winners.length) return "no entrants";
  keepNames(lottery);
  const kept = namesKept()[lottery.lottery_id] || {};
  const names = [];
  let unnamed = 0;
  for (const id of winners) {
    const name = S.me && id === S.me.viewer_id ? "you" : (S.nicknames.get(id) || kept[id]);
    if (name) names.push(name);
    else unnamed += 1;
  }
  if (unnamed) {
    names.push(names.length ? `${unnamed} other viewer${unnamed > 1 ? "s" : ""}`
                            : unnamed === 1 ? "a viewer" : `${unnamed} viewers`);
  }
  return listed(names);
}

export function rememberSeed(lottery) {
  if (!lottery || !lottery.seed_hash || S.seedHashes[lottery.lottery_id]) return;
  S.seedHashes[lottery.lottery_id] = lottery.seed_hash;
  store.set(keys.seeds(), S.seedHashes);
}

export function onLotteryOpen(lottery) {
  rememberSeed(lottery);
  S.lotteries.set(lottery.lottery_id, lottery);
  renderPromos();
}

export function onEntrants(ev) {
  const l = S.lotteries.get(ev.lottery_id);
  if (!l) return;
  l.entrants = Math.max(l.entrants || 0, ev.entrants);
  renderPromos();
}

/** When the draw was, by the server clock: its `drawn_at` (else the event's `ts`). */
function drawnAt(lottery, ts) {
  const at = now();
  const t = lottery.result && Number.isFinite(lottery.result.drawn_at) ? lottery.result.drawn_at
    : Number.isFinite(ts) ? ts : at;
  return Math.min(t, at);
}

export function onDrawn(lottery, ts) {
  S.lotteries.set(lottery.lottery_id, lottery);
  renderPromos();
  const until = drawnAt(lottery, ts) + WINNER_MS;
  // A late replay (a reconnect long after): the card says it, the stage does not.
  if (until <= now()) return;
  showWinners(lottery, until, true);
}

/** After a snapshot: the latest draw, if it is recent, is on show again (a reload
 *  or a late joiner sees "You won!" for what is left of its time, never after). */
export function showRecentDraw() {
  renderPromos();
  let latest = null;
  for (const l of S.lotteries.values()) {
    if (l.state === "drawn" && l.result && Number.isFinite(l.result.drawn_at) &&
        (!latest || l.result.drawn_at > latest.result.drawn_at)) latest = l;
  }
  if (!latest || dismissed.has(latest.lottery_id)) return;
  const until = drawnAt(latest) + WINNER_MS;
  if (until <= now()) return;
  showWinners(latest, until, false);
}

/** The banner's names again (a winner named since, by a chat line). */
export function refreshWinnerBanner() {
  const banner = $("#winner-banner");
  if (!bannerLottery || banner.hidden) return;
  const names = $(".wb-names", banner);
  if (names) setText(names, winnersLine(bannerLottery));
}

function winnersLine(lottery) {
  const n = winnersOf(lottery).length;
  return n ? `winner${n > 1 ? "s" : ""}: ${winnersText(lottery)}` : "no entrants";
}

export function onLotteryEntered(reply) {
  markEntered(reply.lottery_id);
  onEntrants({ lottery_id: reply.lottery_id, entrants: reply.entrants });
  toast("You're in the giveaway. Good luck!", "ok");
}

export function markEntered(id) {
  S.entered.add(id);
  store.set(keys.entered(), [...S.entered]);
}

/** The result over the video until `until` (server time); `announce`: also a toast
 *  (seen wherever the page is scrolled, and read out). */
function showWinners(lottery, until, announce) {
  const banner = $("#winner-banner");
  const winners = winnersOf(lottery);
  const mine = S.me && winners.includes(S.me.viewer_id);
  bannerLottery = lottery;
  banner.replaceChildren(
    h("div", { class: "wb-text" },
      h("strong", { text: mine ? "You won! " : "Giveaway drawn: " }),
      h("span", { text: mine ? `${lottery.prize} is yours.` : `${lottery.prize} — ` }),
      mine ? null : h("span", { class: "wb-names", text: winnersLine(lottery) })),
    h("div", { class: "wb-actions" },
      h("button", { type: "button", class: "btn small", text: "Verify draw",
                    on: { click: () => openVerify(lottery.lottery_id) } }),
      h("button", { type: "button", class: "wb-close", text: "×",
                    attrs: { "aria-label": "Dismiss the giveaway result" },
                    on: { click: () => { dismissed.add(lottery.lottery_id); hideStageBanner(banner); } } })),
  );
  banner.classList.toggle("me", !!mine);
  banner.dataset.lotteryId = lottery.lottery_id;
  showStageBanner(banner, until);
  if (announce) {
    toast(mine ? `You won ${lottery.prize}!` : `Giveaway drawn: ${lottery.prize} — ${winnersLine(lottery)}`,
          mine ? "ok" : "info");
  }
}

export function buildLottery(id, open) {
  const r = { kind: "lottery" };
  r.title = h("span", { class: "promo-title" });
  r.meta = h("span", { class: "promo-meta num" });
  r.how = h("span", { class: "promo-meta" });
  r.seed = h("span", { class: "seed" });
  // A fan level the giveaway asks for (`min_level`, docs/protocol.md section 19).
  r.level = h("span", { class: "level-req", hidden: true });
  r.btn = h("button", { type: "button", class: open ? "btn accent small" : "btn small",
                        on: { click: () => (open ? enter(id) : openVerify(id)) } });
  // A refusal of this viewer's entry, in words on the card (level_required, ...).
  r.msg = h("p", { class: "notice error promo-msg", attrs: { role: "alert" }, hidden: true });
  r.root = h("div", { class: "promo lottery", data: { lotteryId: id, state: open ? "open" : "drawn" } },
    h("div", { class: "promo-icon", text: "WIN", attrs: { "aria-hidden": "true" } }),
    h("div", { class: "promo-main" }, r.title, r.level, r.how, r.meta, r.seed), r.btn, r.msg);
  return r;
}

export function updateOpenLottery(r, l, at) {
  setText(r.title, `Giveaway: ${l.prize}`);
  r.root.dataset.minLevel = showLevel(r.level, l.min_level);
  setText(r.how, l.entry === "keyword" ? `Comment “${l.keyword}” in chat to enter` : "Tap Enter to join the draw");
  // The server draws at closes_at and says so with lottery_drawn; until that event
  // arrives (a few ms) the countdown rests at "drawing…" (display only).
  const closes = l.state === "drawing" ? 0 : l.closes_at - at;
  setText(r.meta, `${l.entrants} entered · ${l.winners_count} winner${l.winners_count === 1 ? "" : "s"} · ` +
                  (closes > 0 ? `draws in ${clock(closes)}` : "drawing…"));
  r.root.dataset.entrants = l.entrants;
  setText(r.seed, `Seed hash ${l.seed_hash.slice(0, 16)}…`);
  r.seed.title = `Committed seed hash: ${l.seed_hash}`;
  const entered = S.entered.has(l.lottery_id);
  const pending = live && live.isPending((f) => f.type === "enter_lottery" && f.lottery_id === l.lottery_id);
  let text = l.entry === "keyword" ? `Enter with “${l.keyword}”` : "Enter";
  const signIn = !entered && !pending && mustSignIn();
  if (entered) text = "You're in ✓";
  else if (pending) text = "Entering…";
  else if (signIn) text = "Sign in on the shop to enter";
  setText(r.btn, text);
  r.btn.disabled = entered || pending || signIn || closes <= 0 || showEnded();
  const min = Number(l.min_level) || 0;
  r.btn.setAttribute("aria-label", entered ? `Entered: ${l.prize}`
    : `Enter the giveaway for ${l.prize}${min > 0 ? ` (level ${min}+ only)` : ""}`);
}

export function updateDrawnLottery(r, l) {
  const winners = l.result.winners || [];
  r.root.dataset.minLevel = showLevel(r.level, l.min_level);
  const mine = S.me && winners.includes(S.me.viewer_id);
  setText(r.title, `${mine ? "You won: " : "Drawn: "}${l.prize}`);
  setText(r.how, winners.length ? `Winner${winners.length > 1 ? "s" : ""}: ${winnersText(l)}` : "No entrants");
  setText(r.meta, `${l.entrants} entered`);
  setText(r.seed, `Seed ${String(l.result.seed).slice(0, 16)}…`);
  setText(r.btn, "Verify");
  r.btn.setAttribute("aria-label", `Verify the draw for ${l.prize}`);
}

function enter(id, text) {
  const l = S.lotteries.get(id);
  if (!live || !l || S.entered.has(id)) return;
  if (live.isPending((f) => f.type === "enter_lottery" && f.lottery_id === id)) return;
  const frame = { type: "enter_lottery", lottery_id: id };
  if (l.entry === "keyword") frame.keyword = text || l.keyword;
  live.request(frame);
  renderPromos();
}

const normalize = (text) => text.toLowerCase().split(/\s+/).filter(Boolean).join(" ");

/** Commenting a giveaway's keyword enters it on the server; asking once more by
 *  request tells this page for sure ("entered" or "already entered"). */
export function enterByKeyword(text) {
  const norm = normalize(text);
  for (const l of S.lotteries.values()) {
    if (l.state === "open" && l.entry === "keyword" && l.keyword && norm.includes(l.keyword) &&
        !S.entered.has(l.lottery_id) && !mustSignIn()) {
      enter(l.lottery_id, norm);
    }
  }
}

export async function openVerify(id) {
  const dlg = $("#verify");
  const summary = $("#verify-summary");
  const list = $("#verify-checks");
  const data = $("#verify-data");
  summary.className = "notice info";
  setText(summary, "Fetching the published draw…");
  list.replaceChildren();
  data.replaceChildren();
  dlg.dataset.lotteryId = id;
  if (!dlg.open) dlg.showModal();
  const res = await api("GET", `/api/rooms/${encodeURIComponent(S.roomId)}/lotteries/${encodeURIComponent(id)}`);
  if (!res.ok) {
    summary.className = "notice error";
    setText(summary, `Could not fetch the draw: ${explain(res.error)}`);
    return;
  }
  const lottery = res.data;
  setText(summary, "Recomputing in your browser…");
  const outcome = await verifyLottery(lottery, S.seedHashes[id] || null);
  for (const c of outcome.checks) {
    list.append(h("li", { class: c.ok ? "good" : "bad" },
      h("span", { class: "mark", text: c.ok ? "✓" : "✗", attrs: { "aria-hidden": "true" } }),
      h("span", {}, h("span", { class: "sr-only", text: c.ok ? "Passed: " : "Failed: " }), c.name,
        h("span", { class: "detail", text: c.detail }))));
  }
  summary.className = outcome.ok ? "notice ok" : "notice error";
  summary.dataset.result = outcome.ok ? "pass" : "fail";
  const n = ((lottery.result || {}).entrants || []).length;
  setText(summary, outcome.ok
    ? `Verified: the winner${outcome.expected.length === 1 ? " was" : "s were"} drawn fairly from ${n} entrant${n === 1 ? "" : "s"}.`
    : "Verification failed: the published draw does not add up.");
  const r = lottery.result || {};
  const rows = [
    ["Prize", lottery.prize], ["Seed hash (published at opening)", lottery.seed_hash],
    ["Seed (revealed at the draw)", r.seed], ["Entrants digest", r.entrants_digest],
    ["Entrants", (r.entrants || []).join(", ") || "none"], ["Winners", (r.winners || []).join(", ") || "none"],
  ];
  for (const [k, v] of rows) data.append(h("dt", { text: k }), h("dd", { text: v ?? "" }));
}
