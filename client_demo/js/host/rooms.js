// Which room the console runs: create one (the host key is shown once, kept on
// this device and offered to save: ./hostkey.js), open one by id and key, the
// recent rooms list (forgetting one asks first), switching rooms, the connection
// pill, the room's state badge, ending the show (its own confirmation, #end-dlg)
// and the ended state: a notice and the final report.

import { Live } from "../live.js";
import { $, api, h, setText, store, timeOfDay, toast } from "../util.js";
import { resetAuctions } from "./auctions.js";
import { resetCatalogue } from "./catalogue.js";
import { resetModeration } from "./chat_moderation.js";
import { confirmAction } from "./confirm.js";
import { resetCoupons } from "./coupons.js";
import { resetFans, startFans, stopFans } from "./fans.js";
import { resetGroups } from "./groups.js";
import { hideKeyNotice, keyNoticeDue, setKeyNotice, showKeyNotice } from "./hostkey.js";
import { resetLotteries } from "./lotteries.js";
import { resetOnNow } from "./onnow.js";
import { resetPolls } from "./polls.js";
import { resetQuestions } from "./questions.js";
import { resetReferrals, startReferrals, stopReferrals } from "./referrals.js";
import { resetReply } from "./reply.js";
import { reportShowEnded, resetReport } from "./report.js";
import { resetRoomEdit, setRoomEditable } from "./room_edit.js";
import { resetSales } from "./sale.js";
import { S, hostApi, live, report, setLive } from "./state.js";
import { pollStats, stopStats } from "./stats.js";
import { showTab } from "./tabs.js";

const ROOMS_KEY = "livesell.host.rooms";
const CURRENT_KEY = "livesell.host.current";

const rooms = () => store.get(ROOMS_KEY, {}) || {};

// The console's handlers for the room's state and events (../host.js).
let handlers = { applySnapshot: () => {}, onEvent: () => {}, onReply: () => {}, onStart: () => {}, onStop: () => {} };
export function whenRoomOpens(h) { handlers = h; }

// ------------------------------------------------------------------ setup

export function showSetup() {
  stopRoom();
  $("#setup").hidden = false;
  $("#console").hidden = true;
  $("#room-head").hidden = true;
  $("#conn").hidden = true;
  $("#switch-room").hidden = true;
  $("#keys-btn").hidden = true;
  $("#show-key").hidden = true;
  $("#end-show").hidden = true;
  $("#end-zone").hidden = true;
  hideKeyNotice();
  document.title = "livesell · Host console";
  renderRecent();
}

async function forgetRoom(id) {
  const info = rooms()[id] || {};
  const name = info.title || id;
  const sure = await confirmAction({
    title: `Forget “${name}” on this device?`,
    body: [`This browser deletes its copy of the host key of room ${id}. The room and its show stay as they are.`,
           "Without the key saved somewhere else you cannot open this room's console again."],
    confirm: "Forget room", cancel: "Keep it",
  });
  if (!sure) return;
  const all = rooms();
  delete all[id];
  store.set(ROOMS_KEY, all);
  renderRecent();
  // The row (and its focused button) is gone: focus goes on to the form.
  if (!$("#recent-list").contains(document.activeElement)) $("#open-room").focus();
}

/** The room's title as the console last heard it, for the recent rooms list. */
export function rememberTitle(id, title) {
  const all = rooms();
  if (!all[id]) return;
  all[id].title = title;
  store.set(ROOMS_KEY, all);
}

function renderRecent() {
  const list = $("#recent-list");
  const entries = Object.entries(rooms()).sort((a, b) => (b[1].opened_at || 0) - (a[1].opened_at || 0));
  list.replaceChildren(...entries.slice(0, 8).map(([id, info]) => h("li", {},
    h("span", { class: "grow", text: `${info.title || "Untitled"} · ${id}` }),
    h("button", { type: "button", class: "btn small", text: "Open",
                  attrs: { "aria-label": `Open ${info.title || id}` },
                  on: { click: () => openRoom(id, info.host_key) } }),
    h("button", { type: "button", class: "btn ghost small", text: "Forget",
                  attrs: { "aria-label": `Forget ${info.title || id} on this device` },
                  on: { click: () => forgetRoom(id) } }))));
  $("#recent").hidden = entries.length === 0;
}

export async function createRoom(e) {
  e.preventDefault();
  const out = $("#create-result");
  const body = { title: $("#create-title").value.trim() };
  const stream = $("#create-stream").value.trim();
  if (stream) body.stream_url = stream;
  const admin = $("#create-admin").value.trim();
  const res = await api("POST", "/api/rooms", body, admin ? { "X-Admin-Key": admin } : {});
  if (!report(out, res, "Room created")) return;
  const { room, host_key: key } = res.data;
  saveRoom(room.room_id, key, room.title);
  // Shown now, and after a reload, until the host dismisses it.
  keyNoticeDue(room.room_id);
  // The notice says the room is made, and what to keep of it (no toast over it).
  if (await openRoom(room.room_id, key)) showKeyNotice({ focus: true });
}

export async function openForm(e) {
  e.preventDefault();
  const id = $("#open-room").value.trim();
  const key = $("#open-key").value.trim();
  const ok = await openRoom(id, key, $("#open-result"));
  if (ok) $("#open-key").value = "";
}

function saveRoom(id, key, title) {
  const all = rooms();
  all[id] = { host_key: key, title: title || (all[id] && all[id].title) || "", opened_at: Date.now() };
  store.set(ROOMS_KEY, all);
  store.set(CURRENT_KEY, id);
}

async function openRoom(id, key, out = $("#open-result")) {
  // Checking the key against a host-only endpoint before showing the console.
  const res = await api("GET", `/api/rooms/${encodeURIComponent(id)}/stats`, undefined, { "X-Host-Key": key });
  if (!res.ok) {
    report(out, res, "");
    $("#setup").hidden = false;
    return false;
  }
  const state = await api("GET", `/api/rooms/${encodeURIComponent(id)}`);
  const title = state.ok ? state.data.room.title : "";
  saveRoom(id, key, title);
  startRoom(id, key, state.ok ? state.data : null);
  return true;
}

/** The room named in the address (or the last one opened), if this device has its key. */
export function openRememberedRoom() {
  const wanted = new URLSearchParams(location.search).get("room") || store.get(CURRENT_KEY, null);
  const known = wanted ? rooms()[wanted] : null;
  if (known && known.host_key) {
    openRoom(wanted, known.host_key).then((ok) => { if (!ok) showSetup(); });
  } else {
    if (wanted) $("#open-room").value = wanted;
    showSetup();
  }
}

// ------------------------------------------------------------------ console

function startRoom(id, key, state) {
  stopRoom();
  S.roomId = id;
  S.hostKey = key;
  S.samples = [];
  S.products = new Map();
  S.coupons = new Map();
  S.lotteries = new Map();
  S.auctions = new Map();
  S.polls = new Map();
  S.questions = new Map();
  S.deals = new Map();
  S.groups = new Map();
  S.selected = null;
  resetCatalogue();
  resetSales();
  resetOnNow();
  resetReply();
  resetGroups();
  resetCoupons();
  resetLotteries();
  resetAuctions();
  resetPolls();
  resetQuestions();
  resetFans();
  resetReferrals();
  resetReport();
  resetModeration();
  resetRoomEdit();
  $("#ended-notice").hidden = true;
  $("#setup").hidden = true;
  $("#console").hidden = false;
  $("#room-head").hidden = false;
  $("#conn").hidden = false;
  $("#switch-room").hidden = false;
  $("#keys-btn").hidden = false;
  $("#show-key").hidden = false;
  setText($("#room-id"), id);
  const link = `${location.origin}/r/${encodeURIComponent(id)}`;
  $("#share-link").value = link;
  $("#open-viewer").href = link;
  setKeyNotice(id, key);
  history.replaceState(null, "", `/host?room=${encodeURIComponent(id)}`);
  if (state) handlers.applySnapshot(state);
  // The viewers muted now (the list survives a reload or a switch of rooms) load with
  // the WebSocket's first snapshot (host.js onSnapshot), not here as well.
  setLive(new Live({ roomId: id, tokenKey: "livesell.hostToken", hostKey: key,
                     onEvent: handlers.onEvent, onReply: handlers.onReply, onState: setConn }));
  live.start();
  pollStats();
  startFans();
  startReferrals();
  handlers.onStart();
  window.livesell = { live, state: S, serverNow: () => live.serverNow() };
}

function stopRoom() {
  if (live) live.stop();
  setLive(null);
  stopStats();
  stopFans();
  stopReferrals();
  handlers.onStop();
}

function setConn(state, info = {}) {
  $("#conn").dataset.state = state;
  let text = "Connecting…";
  if (state === "live") text = "Live";
  else if (state === "reconnecting") text = "Reconnecting…";
  else if (state === "offline") text = "Offline";
  else if (state === "gone") text = "Room not found";
  else if (state === "throttled") text = "Waiting to reconnect";
  else if (state === "refused") text = "Sign-in refused";
  setText($("#conn-text"), text);
  if (state === "gone") toast(info.reason || "This room does not exist.", "error");
}

// ------------------------------------------------------------------ lifecycle

const STATE_LABELS = { scheduled: "Upcoming", live: "Live", ended: "Ended" };

/** The room's state (the server's) beside its title; ending is offered only while not ended. */
export function renderRoomState(state) {
  if (S.room) S.room.state = state;
  const badge = $("#room-state");
  badge.className = `badge ${state}`;
  badge.dataset.state = state;
  setText(badge, STATE_LABELS[state] || state);
  // An upcoming show names its start (the server's starts_at, shown in local time).
  const starts = $("#room-starts");
  const at = S.room && S.room.starts_at;
  starts.hidden = !(state === "scheduled" && at);
  if (!starts.hidden) {
    setText(starts, `starts ${new Date(at).toLocaleString([], { dateStyle: "medium", timeStyle: "short" })}`);
    starts.dataset.startsAt = String(at);
  }
  const ended = state === "ended";
  $("#end-show").hidden = ended || !S.roomId;
  $("#end-zone").hidden = ended || !S.roomId;
  setRoomEditable(!ended);
  // Ended: said at the top, with the way to the final report.
  const notice = $("#ended-notice");
  notice.hidden = !ended;
  if (ended) {
    const at = S.room && S.room.ended_at;
    setText($("#ended-h"), at ? `The show ended at ${timeOfDay(at)}` : "The show has ended");
  }
}

/** The report's tool, shown, its panel scrolled to and focused (after ending the
 *  show, or from the ended notice's button). */
export function goToReport() {
  showTab("report");
  const panel = $("#rp");
  panel.scrollIntoView({ block: "start" });
  $("#rp-h").focus({ preventScroll: true });
}

export function askEndShow() {
  setText($("#end-result"), "");
  $("#end-dlg").showModal();
  // The safe choice first.
  $("#end-cancel").focus();
}

/** The end dialog closed without ending (its button, Escape): back to End show. */
export function endDialogClosed() {
  if (!$("#end-show").hidden) $("#end-show").focus();
}

export async function endShow() {
  const out = $("#end-result");
  $("#end-confirm").disabled = true;
  const res = await hostApi("POST", "/end");
  $("#end-confirm").disabled = false;
  if (!report(out, res, "")) return;
  if (S.room) { S.room.state = "ended"; S.room.ended_at = res.data.ended_at; }
  renderRoomState("ended");
  $("#end-dlg").close();
  // The final report, at once (the show_ended event then loads nothing again).
  reportShowEnded();
  goToReport();
  toast("The show has ended. Its final report is in the Report tab.", "ok");
}
