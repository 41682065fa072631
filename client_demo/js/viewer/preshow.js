// The pre-show page: while the room is `scheduled` (snapshot `room.state`,
// `room.starts_at`) the viewer page shows a countdown to the start by the server
// clock, the products to expect (the snapshot's products), and "Remind me": the
// show as a calendar file (GET …/calendar.ics?page=<this page>) and, while the
// page stays open, a browser notification at the start if the viewer allows it.
// At the start, by the server clock, the page switches to the live page (the
// server's own `show_live` follows, from its due job, and also switches it); the
// `show_reminder` event is shown as a banner.

import { $, clock, h, initials, money, setText, tileColor, timeOfDay, toast } from "../util.js";
import { S, now } from "./state.js";

const remindKey = () => `livesell.remind.${S.roomId}`;
let shownPhase = null;
let productsSig = "";

function wantsNotice() {
  try { return sessionStorage.getItem(remindKey()) === "1"; } catch { return false; }
}

function setWantsNotice(on) {
  try {
    if (on) sessionStorage.setItem(remindKey(), "1");
    else sessionStorage.removeItem(remindKey());
  } catch { /* private mode: only this page load remembers */ }
}

/** The scheduled start still ahead by the server clock, or null. */
export function preshowStart() {
  if (!S.room || S.room.state !== "scheduled" || !S.room.starts_at) return null;
  return S.room.starts_at > now() ? S.room.starts_at : null;
}

/** Server timestamps the clock counts down to: the start, the reminder's start. */
export function preshowDeadlines() {
  const out = [];
  if (S.room && S.room.state === "scheduled" && S.room.starts_at) out.push(S.room.starts_at);
  if (S.reminder && S.reminder.starts_at) out.push(S.reminder.starts_at);
  return out;
}

/** `show_reminder`: the show starts soon (server.reminder_lead_s before it). */
export function onShowReminder(ev) {
  S.reminder = { title: ev.title, starts_at: ev.starts_at };
  if (S.room && S.room.state === "scheduled" && ev.starts_at) S.room.starts_at = ev.starts_at;
  renderPreshow();
}

/** `show_live`: the show started (by the clock, or the host went live early). */
export function onShowLive() {
  if (S.room) S.room.state = "live";
  renderPreshow();
}

export function renderPreshow() {
  const room = $("#room");
  if (!room || !S.room) return;
  const start = preshowStart();
  const phase = start ? "preshow" : "live";
  room.dataset.phase = phase;
  $("#preshow").hidden = phase !== "preshow";
  if (shownPhase === "preshow" && phase === "live") startedNow();
  shownPhase = phase;
  renderReminderBanner();
  if (phase !== "preshow") return;
  const at = now();
  setText($("#preshow-title"), S.room.title || "Live show");
  setText($("#preshow-time"), clock(start - at));
  $("#preshow-time").setAttribute("aria-label", `Starts in ${clock(start - at)}`);
  $("#preshow-time").dataset.startsAt = String(start);
  setText($("#preshow-when"), `Starts at ${timeOfDay(start)} · ${new Date(start).toLocaleDateString([], { dateStyle: "medium" })}`);
  const page = new URL(location.href);
  page.hash = "";
  $("#remind-ics").href = `/api/rooms/${encodeURIComponent(S.roomId)}/calendar.ics?page=${encodeURIComponent(page.toString())}`;
  renderProducts();
  renderNoticeState();
}

function renderProducts() {
  const list = $("#preshow-products");
  const products = [...S.products.values()];
  const sig = products.map((p) => `${p.product_id}|${p.title}|${p.price}|${p.currency}|${p.image_url}`).join(";");
  if (sig === productsSig) return;
  productsSig = sig;
  list.replaceChildren(...products.map((p) => {
    const img = h("span", { class: "preshow-img", attrs: { "aria-hidden": "true" } });
    if (p.image_url) img.append(h("img", { src: p.image_url, alt: "" }));
    else { img.style.background = tileColor(p.product_id); img.append(h("span", { text: initials(p.title) })); }
    return h("li", { class: "preshow-product", data: { productId: p.product_id } }, img,
      h("span", { class: "preshow-ptitle", text: p.title }),
      h("span", { class: "preshow-pprice num", text: money(p.price, p.currency) }));
  }));
  $("#preshow-products-empty").hidden = products.length > 0;
}

function renderReminderBanner() {
  const banner = $("#reminder-banner");
  const r = S.reminder;
  const start = r ? r.starts_at : 0;
  const live = !preshowStart();
  banner.hidden = !r || live;
  if (banner.hidden) return;
  setText($("#reminder-text"), `Starting soon: “${r.title || S.room.title}” goes live at ${timeOfDay(start)}` +
                               ` (in ${clock(start - now())}).`);
}

// ------------------------------------------------------------------ remind me

function noticeState() {
  if (!("Notification" in window)) return "unsupported";
  return Notification.permission; // "granted", "denied" or "default"
}

function renderNoticeState() {
  const out = $("#remind-status");
  const box = $("#remind-box");
  const btn = $("#remind-btn");
  const on = wantsNotice();
  btn.setAttribute("aria-expanded", String(!box.hidden));
  if (box.hidden) return;
  const state = noticeState();
  let text = "";
  out.dataset.state = on ? state : "off";
  if (state === "unsupported") text = "This browser can't show notifications: add the show to your calendar instead.";
  else if (state === "denied") text = "Notifications are blocked for this site, so this page can't alert you. Add the show to your calendar instead.";
  else if (state === "granted" && on) text = "✓ You'll get a notification here when the show starts (keep this page open).";
  else text = "Allow notifications to be alerted here when the show starts.";
  setText(out, text);
}

/** "Remind me": the calendar file, and a notification at the start if allowed. */
export async function remindMe() {
  $("#remind-box").hidden = false;
  setWantsNotice(true);
  renderNoticeState();
  if (noticeState() === "default") {
    try { await Notification.requestPermission(); } catch { /* an old browser: the state says */ }
  }
  renderNoticeState();
}

/** The start, by the server clock, on this page: the notification asked for. */
function startedNow() {
  const title = (S.room && S.room.title) || "The show";
  toast(`${title} is live now!`, "ok");
  if (!wantsNotice() || noticeState() !== "granted") return;
  setWantsNotice(false);
  try {
    const n = new Notification(`${title} is live`, { body: "The show has started: come and watch.", tag: `livesell-${S.roomId}` });
    n.onclick = () => { window.focus(); n.close(); };
  } catch { /* some mobile browsers only notify from a service worker */ }
}
