// Top fans in the host console (docs/protocol.md section 19): the room's channel's
// leaderboard, most points first, from `GET /api/rooms/{room}/fans?limit=20` (host
// key). It is loaded when the console opens the room, every 10 s while the console
// is open and on Refresh; each row is a fan's nickname, level and badge, and points,
// as the server counted them.

import { $, h, setText } from "../util.js";
import { S, hostApi, report } from "./state.js";

const LIMIT = 20;
const EVERY_MS = 10_000;

let timer = null;
let loadToken = 0; // an answer for another room (or an older load) is dropped

export function resetFans() {
  loadToken += 1;
  $("#fans-rows").replaceChildren();
  $("#fans-empty").hidden = false;
  setText($("#fans-empty"), "Loading…");
  setText($("#fans-summary"), "");
  setText($("#fans-result"), "");
}

/** Load now, then every 10 s until the console leaves the room. */
export function startFans() {
  stopFans();
  const tick = async () => {
    await loadFans();
    if (timer !== null) timer = setTimeout(tick, EVERY_MS);
  };
  timer = setTimeout(tick, 0);
}

export function stopFans() {
  clearTimeout(timer);
  timer = null;
}

/** GET …/fans: resolves to whether this load's answer was shown. */
export async function loadFans() {
  if (!S.roomId) return false;
  const token = ++loadToken;
  const res = await hostApi("GET", `/fans?limit=${LIMIT}`);
  if (token !== loadToken) return false;
  if (!res.ok || !res.data) {
    report($("#fans-result"), res, "");
    if ($("#fans-rows").children.length === 0) setText($("#fans-empty"), "The leaderboard is unavailable.");
    return false;
  }
  // A failed load's message goes once a load succeeds.
  if ($("#fans-result").dataset.outcome === "error") setText($("#fans-result"), "");
  renderFans(res.data);
  return true;
}

/** The Refresh button: load again and say so. */
export async function refreshFans() {
  if (!(await loadFans())) return;
  const n = $("#fans-rows").children.length;
  report($("#fans-result"), { ok: true }, `Leaderboard loaded: ${n} fan${n === 1 ? "" : "s"}`);
}

function renderFans(data) {
  const fans = Array.isArray(data.fans) ? data.fans : [];
  const rows = fans.map((f, i) => h("tr", { data: { viewerId: f.viewer_id, level: f.level ?? 0, points: f.points ?? 0 } },
    h("td", { class: "r num", text: String(i + 1) }),
    h("th", { scope: "row", class: "fan-nick", text: f.nickname || f.viewer_id }),
    h("td", { class: "fan-lv" },
      (f.level || 0) > 0
        ? h("span", { class: `fan-level lv${Math.min(f.level, 5)}`, text: `Lv${f.level}${f.badge ? ` ${f.badge}` : ""}` })
        : h("span", { class: "muted", text: "no badge yet" })),
    h("td", { class: "r num fan-pts", text: Number(f.points || 0).toLocaleString() })));
  $("#fans-rows").replaceChildren(...rows);
  $("#fans-empty").hidden = rows.length > 0;
  setText($("#fans-empty"), "No fans with points yet: viewers earn them by watching, chatting, liking, inviting and buying.");
  setText($("#fans-summary"), data.channel ? `channel “${data.channel}”` : "");
}
