// Fan levels on the viewer page (docs/protocol.md section 19): this viewer's
// points, level and badge in the channel, and the badge names chat lines wear.
//
// The server awards every point; the page only shows what it last answered. The
// configured levels come from the snapshot's `fans` ({enabled, channel, levels:
// [{level, points, badge}]}); with `enabled` false the panel stays hidden and the
// page sends nothing. The status comes from the `fan` answer to `fan_status` (sent
// on every snapshot, after this viewer's own chat message lands, after an order
// and after a referral reward) and to `watching`, which the page sends once a
// minute only while it is visible (the Page Visibility API): a hidden tab stops
// the minute's timer, a visible one starts it again from zero.

import { $, h, setText } from "../util.js";
import { S, live, showEnded } from "./state.js";

const WATCH_EVERY_MS = 60_000;
const REFRESH_AFTER_MS = 600; // a status asked shortly after an action, once for a burst
// The server awards a chat message's points just after posting it: a second look a
// little later catches an award that landed after the first.
const SETTLE_AFTER_MS = 2500;

let watchTimer = null;
let refreshTimer = null;
let settleTimer = null;

/** Whether the room's channel has fan levels switched on (snapshot `fans`). */
export const fansOn = () => !!(S.fans && S.fans.enabled === true);

/** A configured level ({level, points, badge}), or null. */
export function levelInfo(level) {
  const levels = S.fans && Array.isArray(S.fans.levels) ? S.fans.levels : [];
  return levels.find((l) => l && l.level === level) || null;
}

/** A level's badge in words: "Lv2 Regular" (or "Lv2" when its name is unknown). */
export function badgeText(level, name) {
  const badge = name || (levelInfo(level) || {}).badge || "";
  return badge ? `Lv${level} ${badge}` : `Lv${level}`;
}

// ------------------------------------------------------------------ server views

/** The snapshot's `fans`: the levels, and whether the page shows or sends anything. */
export function setFans(fans) {
  S.fans = fans && typeof fans === "object" ? fans : null;
  if (!fansOn()) {
    S.fan = null;
    clearTimeout(refreshTimer);
    clearTimeout(settleTimer);
  } else {
    askStatus();
  }
  syncWatching();
  renderFan();
}

/** The `fan` answer to `fan_status` or `watching`. */
export function onFan(reply) {
  if (!fansOn() || !reply) return;
  S.fan = {
    points: Number(reply.points) || 0,
    level: Number(reply.level) || 0,
    badge: reply.badge || "",
    next_level_points: Number.isFinite(reply.next_level_points) ? reply.next_level_points : null,
    channel: reply.channel || (S.fans && S.fans.channel) || "",
  };
  renderFan();
}

/** A new identity: what the page showed was the previous viewer's. */
export function resetFan() {
  S.fan = null;
  renderFan();
}

/** This viewer's own chat message came back: its points have moved (the message's
 *  `level` is the level the server saw when it was sent). */
export function onOwnChat(ev) {
  if (!fansOn()) return;
  if (S.fan && Number.isInteger(ev.level) && ev.level > S.fan.level) {
    S.fan = { ...S.fan, level: ev.level, badge: (levelInfo(ev.level) || {}).badge || "" };
    renderFan();
  }
  refreshFanSoon();
  clearTimeout(settleTimer);
  settleTimer = setTimeout(askStatus, SETTLE_AFTER_MS);
}

/** Ask for the status once, shortly (actions in a burst ask once). */
export function refreshFanSoon(ms = REFRESH_AFTER_MS) {
  if (!fansOn()) return;
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(askStatus, ms);
}

function askStatus() {
  if (!fansOn() || !live) return;
  // Not worth repeating after a reconnect: the next snapshot asks again.
  live.sendOnce({ type: "fan_status" });
}

/** A refused `watching` or `fan_status`: nothing to show (the next one asks again). */
export function onFanRefused() {
  renderFan();
}

// ------------------------------------------------------------------ watching

/** Start listening to the page's visibility (once, at boot). */
export function watchVisibility() {
  document.addEventListener("visibilitychange", syncWatching);
  window.addEventListener("pagehide", () => stopWatching());
  window.addEventListener("pageshow", syncWatching);
}

/** A minute's timer runs only while the page is visible, fans are on and the show
 *  has not ended; it starts from zero each time the page becomes visible. */
export function syncWatching() {
  const want = fansOn() && document.visibilityState === "visible" && !showEnded();
  if (want && !watchTimer) {
    watchTimer = setInterval(sendWatching, WATCH_EVERY_MS);
  } else if (!want && watchTimer) {
    stopWatching();
  }
  const box = document.getElementById("fan");
  if (box) box.dataset.watching = watchTimer ? "on" : "off";
}

function stopWatching() {
  clearInterval(watchTimer);
  watchTimer = null;
  const box = document.getElementById("fan");
  if (box) box.dataset.watching = "off";
}

function sendWatching() {
  // Checked again at the moment of sending: a tab hidden without an event (some
  // browsers skip it while freezing) never counts a minute.
  if (!fansOn() || document.visibilityState !== "visible" || showEnded()) { syncWatching(); return; }
  if (live) live.sendOnce({ type: "watching" });
}

// ------------------------------------------------------------------ rendering

export function renderFan() {
  const box = $("#fan");
  if (!box) return;
  const on = fansOn();
  box.hidden = !on;
  if (!on) return;
  const f = S.fan;
  const level = f ? f.level : 0;
  box.dataset.level = f ? String(level) : "";
  box.dataset.points = f ? String(f.points) : "";
  const badge = $("#fan-badge");
  badge.dataset.level = String(level);
  badge.className = `fan-level lv${Math.min(level, 5)}`;
  setText(badge, !f ? "…" : (level > 0 ? badgeText(level, f.badge) : "No badge yet"));
  setText($("#fan-points"), f ? f.points.toLocaleString() : "–");
  setText($("#fan-points-unit"), f && f.points === 1 ? "point" : "points");
  const bar = $("#fan-bar");
  const next = $("#fan-next");
  if (!f) {
    setText(next, "Loading your points…");
    bar.hidden = true;
    return;
  }
  if (f.next_level_points === null) {
    setText(next, "Top level: thanks for being here!");
    bar.hidden = true;
    return;
  }
  const from = level > 0 ? ((levelInfo(level) || {}).points ?? 0) : 0;
  const span = Math.max(1, f.next_level_points - from);
  const pct = Math.max(0, Math.min(100, Math.round(((f.points - from) / span) * 100)));
  const left = Math.max(0, f.next_level_points - f.points);
  setText(next, `${left.toLocaleString()} ${left === 1 ? "point" : "points"} to ${badgeText(level + 1)}`);
  bar.hidden = false;
  bar.setAttribute("aria-valuenow", String(pct));
  bar.setAttribute("aria-valuetext", `${pct}% of the way to ${badgeText(level + 1)}`);
  bar.firstElementChild.style.width = `${pct}%`;
}

/** "Level N+ only" on a card whose giveaway or group deal asks for a fan level
 *  (`min_level`; the server checks it, the page only says so). Returns the level. */
export function showLevel(el, minLevel) {
  const min = Number(minLevel) || 0;
  el.hidden = min <= 0;
  if (min > 0) {
    setText(el, `Level ${min}+ only`);
    el.title = `Only fans at level ${min} or higher`;
  }
  return min;
}

/** The small badge a chat line wears next to its author's name, or null. */
export function chatBadge(level) {
  if (!fansOn() || !Number.isInteger(level) || level <= 0) return null;
  const text = badgeText(level);
  return h("span", { class: `fan-badge lv${Math.min(level, 5)}`, text, data: { level },
                     attrs: { title: `Fan level ${level}` } });
}
