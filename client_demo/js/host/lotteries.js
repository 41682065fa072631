// Giveaways in the host console: the open form (prize, winners, duration, button
// or keyword entry), the list (in the live column's "On now", ./onnow.js, where
// "Draw now" says what it did) with each lottery's server state, draw now, the
// entrant list, and re-verifying a draw in this browser (../lottery.js).

import { $, api, clock, h, plural, setText } from "../util.js";
import { verifyLottery } from "../lottery.js";
import { confirmAction } from "./confirm.js";
import { nowReport } from "./onnow.js";
import { S, hostApi, minLevelOf, now, report } from "./state.js";

const lotteryEls = new Map();

export function resetLotteries() {
  lotteryEls.clear();
  $("#lottery-list").replaceChildren();
}

export function putLottery(lottery) {
  S.lotteries.set(lottery.lottery_id, lottery);
  renderLotteries();
}

export function onEntrants(ev) {
  const l = S.lotteries.get(ev.lottery_id);
  if (l) { l.entrants = Math.max(l.entrants || 0, ev.entrants); renderLotteries(); }
}

export async function openLottery(e) {
  e.preventDefault();
  const out = $("#lottery-result");
  const body = { prize: $("#lf-prize").value.trim(), winners: Number($("#lf-winners").value),
                 duration_s: Number($("#lf-duration").value), entry: $("#lf-entry").value };
  if (body.entry === "keyword") body.keyword = $("#lf-keyword").value.trim();
  const minLevel = minLevelOf($("#lf-min-level"));
  if (minLevel) body.min_level = minLevel;
  const res = await hostApi("POST", "/lotteries", body);
  const level = res.ok && res.data.min_level > 0 ? `, fans at level ${res.data.min_level}+ only` : "";
  if (report(out, res, res.ok ? `Giveaway “${res.data.prize}” is open${level} (seed hash ${res.data.seed_hash.slice(0, 12)}… published)` : "")) {
    putLottery(res.data);
  }
}

export function entryKindChanged() {
  const kw = $("#lf-entry").value === "keyword";
  $("#lf-keyword-field").hidden = !kw;
  $("#lf-keyword").required = kw;
}

export function renderLotteries() {
  const list = $("#lottery-list");
  const items = [...S.lotteries.values()].sort((a, b) => b.opens_at - a.opens_at).slice(0, 6);
  const keep = new Set(items.map((l) => l.lottery_id));
  for (const [id, r] of lotteryEls) if (!keep.has(id)) { r.li.remove(); lotteryEls.delete(id); }
  items.forEach((l, i) => {
    let r = lotteryEls.get(l.lottery_id);
    if (!r) { r = buildLottery(l.lottery_id); lotteryEls.set(l.lottery_id, r); }
    if (list.children[i] !== r.li) list.insertBefore(r.li, list.children[i] || null);
    updateLottery(r, l);
  });
}

function buildLottery(id) {
  const r = {};
  r.title = h("span", { class: "item-title" });
  r.meta = h("span", { class: "item-meta num" });
  r.winners = h("span", { class: "winners" });
  r.seed = h("span", { class: "item-meta mono" });
  r.verifyOut = h("span", { class: "result", data: { verify: id } });
  r.badge = h("span", { class: "badge" });
  r.entrants = h("button", { type: "button", class: "btn small", text: "Entrants", on: { click: () => showEntrants(id) } });
  r.draw = h("button", { type: "button", class: "btn primary small", text: "Draw now", on: { click: () => draw(id) } });
  r.verify = h("button", { type: "button", class: "btn small", text: "Verify", on: { click: () => verify(id) } });
  r.li = h("li", { class: "item", data: { lotteryId: id } },
    h("div", { class: "item-main" }, r.title, r.meta, r.winners, r.seed, r.verifyOut),
    r.badge, h("div", { class: "acts" }, r.entrants, r.draw, r.verify));
  return r;
}

function updateLottery(r, l) {
  const at = now();
  const open = l.state === "open";
  const drawing = l.state === "drawing";
  const winners = (l.result && l.result.winners) || [];
  r.li.dataset.state = l.state;
  setText(r.title, l.prize);
  setText(r.meta, `${l.entrants} entrant${l.entrants === 1 ? "" : "s"} · ${l.winners_count} winner${l.winners_count === 1 ? "" : "s"} · ` +
                  (l.entry === "keyword" ? `keyword “${l.keyword}”` : "button entry") +
                  (l.min_level > 0 ? ` · level ${l.min_level}+ only` : "") +
                  (open ? ` · draws in ${clock(l.closes_at - at)}` : ""));
  setText(r.winners, open || drawing ? "" : (winners.length
    ? `Winner${winners.length > 1 ? "s" : ""}: ${winners.map((w) => S.nicknames.get(w) || w).join(", ")}`
    : "No entrants: no winner"));
  r.winners.hidden = open || drawing;
  setText(r.seed, `seed hash ${l.seed_hash.slice(0, 20)}…`);
  r.badge.className = `badge ${open ? "open" : drawing ? "scheduled" : "ended"}`;
  setText(r.badge, open ? "open" : drawing ? "drawing" : "drawn");
  r.entrants.setAttribute("aria-label", `Show entrants of ${l.prize}`);
  r.draw.setAttribute("aria-label", `Draw ${l.prize} now`);
  r.verify.setAttribute("aria-label", `Verify the draw of ${l.prize}`);
  if (r.draw.hidden !== !open && document.activeElement === (open ? r.verify : r.draw)) {
    // The focused button is about to disappear: keep keyboard focus in the row.
    queueMicrotask(() => r.entrants.focus());
  }
  r.draw.hidden = !open;
  r.verify.hidden = open || drawing;
}


async function draw(id) {
  const l = S.lotteries.get(id);
  if (!l) return;
  const sure = await confirmAction({
    title: `Draw “${l.prize}” now?`,
    body: [`The giveaway closes to new entries at once${l.state === "open" ? ` (${clock(l.closes_at - now())} early)` : ""} ` +
           `and ${plural(l.winners_count, "winner")} ${l.winners_count === 1 ? "is" : "are"} drawn from the ` +
           `${plural(l.entrants || 0, "entrant")} so far, by the published seed.`,
           "The draw is final: it cannot be undone or run again."],
    confirm: "Draw now", cancel: "Keep it open",
  });
  if (!sure) return;
  const res = await hostApi("POST", `/lotteries/${encodeURIComponent(id)}/draw`);
  if (res.ok) putLottery(res.data);
  nowReport(res, res.ok ? `Drawn: ${(res.data.result.winners || []).length} winner(s) from ${res.data.result.entrants.length} entrants` : "");
}

async function showEntrants(id) {
  const dlg = $("#entrants-dlg");
  const list = $("#entrants-list");
  list.replaceChildren();
  setText($("#entrants-summary"), "Loading…");
  if (!dlg.open) dlg.showModal();
  const res = await hostApi("GET", `/lotteries/${encodeURIComponent(id)}/entrants`);
  if (!res.ok) { setText($("#entrants-summary"), `✗ ${res.error.message}`); return; }
  const ids = res.data.entrants;
  setText($("#entrants-summary"), `${ids.length} entrant${ids.length === 1 ? "" : "s"}`);
  list.replaceChildren(...ids.map((v) => h("li", { text: S.nicknames.has(v) ? `${S.nicknames.get(v)} (${v})` : v })));
}

async function verify(id) {
  const res = await api("GET", `/api/rooms/${encodeURIComponent(S.roomId)}/lotteries/${encodeURIComponent(id)}`);
  const r = lotteryEls.get(id);
  if (!r) return;
  if (!res.ok) { report(r.verifyOut, res, ""); return; }
  const outcome = await verifyLottery(res.data);
  const failed = outcome.checks.filter((c) => !c.ok).map((c) => c.name).join("; ");
  report(r.verifyOut, outcome.ok ? { ok: true } : { ok: false, error: { message: failed, code: "verify_failed" } },
         "Verified in this browser: the published seed and entrants reproduce the winners");
}
