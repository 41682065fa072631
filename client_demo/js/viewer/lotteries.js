// Giveaways on the viewer page: the open lottery (enter by button or by keyword),
// the drawn one with its winners, the seed hash remembered when it opened, and
// the "Verify draw" dialog that recomputes the draw in this browser (../lottery.js).

import { $, api, clock, h, setText, store, toast } from "../util.js";
import { verifyLottery } from "../lottery.js";
import { showLevel } from "./fans.js";
import { renderPromos } from "./promos.js";
import { S, keys, live, mustSignIn, showEnded } from "./state.js";
import { explain } from "./words.js";

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

export function onDrawn(lottery) {
  S.lotteries.set(lottery.lottery_id, lottery);
  renderPromos();
  showWinners(lottery);
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

function winnerNames(lottery) {
  const winners = (lottery.result && lottery.result.winners) || [];
  return winners.map((id) => (S.me && id === S.me.viewer_id ? "you" : (S.nicknames.get(id) || id)));
}

function showWinners(lottery) {
  const banner = $("#winner-banner");
  const winners = (lottery.result && lottery.result.winners) || [];
  const mine = S.me && winners.includes(S.me.viewer_id);
  banner.replaceChildren(
    h("div", { class: "wb-text" },
      h("strong", { text: mine ? "You won! " : "Giveaway drawn: " }),
      h("span", { text: mine ? `${lottery.prize} is yours.` : `${lottery.prize} — ` }),
      mine ? null : h("span", { text: winners.length ? `winner${winners.length > 1 ? "s" : ""}: ${winnerNames(lottery).join(", ")}` : "no entrants" })),
    h("button", { type: "button", class: "btn small", text: "Verify draw",
                  on: { click: () => openVerify(lottery.lottery_id) } }),
  );
  banner.classList.toggle("me", !!mine);
  banner.dataset.lotteryId = lottery.lottery_id;
  banner.hidden = false;
  $("#promos").hidden = false;
  toast(mine ? `You won ${lottery.prize}!` : `Giveaway drawn: ${lottery.prize}`, mine ? "ok" : "info");
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
  setText(r.how, winners.length ? `Winner${winners.length > 1 ? "s" : ""}: ${winnerNames(l).join(", ")}` : "No entrants");
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
