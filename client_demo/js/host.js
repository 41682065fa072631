// The host console: create or open a room, run the catalogue, pins, flash sales,
// coupon drops and giveaways, moderate chat and watch the live numbers.
// Host actions are HTTP calls with the room's host key; the console also joins
// the room's WebSocket as a viewer to see chat and live stock as viewers do.

import { Live } from "./live.js";
import { verifyLottery } from "./lottery.js";
import {
  $, api, clock, compact, copyText, h, money, setText, store, timeOfDay, toMajorText, toMinor, toast,
} from "./util.js";

const ROOMS_KEY = "livesell.host.rooms";
const CURRENT_KEY = "livesell.host.current";
const MAX_SAMPLES = 300;

const S = {
  roomId: null,
  hostKey: null,
  room: null,
  products: new Map(),
  pins: [],
  coupons: new Map(),
  lotteries: new Map(),
  nicknames: new Map(),
  stats: null,
  samples: [],
  editing: null,
  policy: { require_verified: false, limit_per_ip: false, slow_mode_s: 0 },
};

let live = null;
let statsTimer = null;
let statsBusy = false;
const rows = new Map();

const now = () => (live ? live.serverNow() : Date.now());
const rooms = () => store.get(ROOMS_KEY, {}) || {};

function saleState(sale, at = now()) {
  if (!sale) return null;
  if (sale.state === "stopped") return "stopped";
  if (at < sale.starts_at) return "scheduled";
  if (at < sale.ends_at) return "open";
  return "ended";
}

function hostApi(method, path, body) {
  return api(method, `/api/rooms/${encodeURIComponent(S.roomId)}${path}`, body, { "X-Host-Key": S.hostKey });
}

/** Show an action's outcome next to its form: the confirmation or the server's error. */
function report(el, res, okText) {
  if (res.ok) {
    el.className = "result ok";
    setText(el, `✓ ${okText}`);
  } else {
    el.className = "result error";
    const code = res.error && res.error.code ? ` (${res.error.code})` : "";
    setText(el, `✗ ${(res.error && res.error.message) || "Request failed"}${code}`);
  }
  el.dataset.outcome = res.ok ? "ok" : "error";
  return res.ok;
}

function currencyOf() {
  const counts = new Map();
  for (const p of S.products.values()) counts.set(p.currency, (counts.get(p.currency) || 0) + 1);
  let best = "USD", n = 0;
  for (const [c, k] of counts) if (k > n) { best = c; n = k; }
  return best;
}

// ------------------------------------------------------------------ setup

function showSetup() {
  stopRoom();
  $("#setup").hidden = false;
  $("#console").hidden = true;
  $("#room-head").hidden = true;
  $("#conn").hidden = true;
  $("#switch-room").hidden = true;
  $("#end-show").hidden = true;
  document.title = "livesell · Host console";
  renderRecent();
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
                  on: { click: () => { const all = rooms(); delete all[id]; store.set(ROOMS_KEY, all); renderRecent(); } } }))));
  $("#recent").hidden = entries.length === 0;
}

async function createRoom(e) {
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
  await openRoom(room.room_id, key);
  toast(`Room “${room.title}” created. Share the viewer link to go live.`, "ok");
}

async function openForm(e) {
  e.preventDefault();
  const id = $("#open-room").value.trim();
  const key = $("#open-key").value.trim();
  const out = $("#open-result");
  const ok = await openRoom(id, key, out);
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

// ------------------------------------------------------------------ console

function startRoom(id, key, state) {
  stopRoom();
  S.roomId = id;
  S.hostKey = key;
  S.samples = [];
  S.products = new Map();
  S.coupons = new Map();
  S.lotteries = new Map();
  rows.clear();
  lotteryEls.clear();
  couponEls.clear();
  $("#lottery-list").replaceChildren();
  $("#coupon-list").replaceChildren();
  $("#product-rows").replaceChildren();
  $("#mod-chat").replaceChildren(h("li", { class: "chat-empty", id: "mod-empty", text: "Chat messages appear here as viewers write them." }));
  $("#setup").hidden = true;
  $("#console").hidden = false;
  $("#room-head").hidden = false;
  $("#conn").hidden = false;
  $("#switch-room").hidden = false;
  setText($("#room-id"), id);
  const link = `${location.origin}/r/${encodeURIComponent(id)}`;
  $("#share-link").value = link;
  $("#open-viewer").href = link;
  $("#host-key-view").value = key;
  history.replaceState(null, "", `/host?room=${encodeURIComponent(id)}`);
  if (state) applySnapshot(state);
  live = new Live({ roomId: id, tokenKey: "livesell.hostToken", hostKey: key, onEvent, onState: setConn });
  live.start();
  pollStats();
  scheduleTick();
  window.livesell = { live, state: S, serverNow: () => live.serverNow() };
}

function stopRoom() {
  if (live) live.stop();
  live = null;
  clearTimeout(statsTimer);
  statsTimer = null;
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

// ------------------------------------------------------------------ room events

function applySnapshot(snap) {
  S.room = snap.room;
  renderRoomState(snap.room.state || "live");
  setText($("#room-title"), snap.room.title);
  document.title = `${snap.room.title} · Host console · livesell`;
  S.products = new Map(snap.products.map((p) => [p.product_id, p]));
  S.pins = snap.pins;
  S.coupons = new Map(snap.coupons.map((c) => [c.coupon_id, c]));
  S.lotteries = new Map(snap.lotteries.map((l) => [l.lottery_id, l]));
  if (snap.policy) renderPolicy(snap.policy);
  renderProducts();
  renderCoupons();
  renderLotteries();
}

function onEvent(ev) {
  switch (ev.type) {
    case "snapshot": return applySnapshot(ev);
    case "product": S.products.set(ev.product.product_id, ev.product); return renderProducts();
    case "pinned": S.products.set(ev.product.product_id, ev.product); S.pins = ev.pins; return renderProducts();
    case "unpinned": S.pins = ev.pins; return renderProducts();
    case "stock": {
      const p = S.products.get(ev.product_id);
      if (p) { p.stock = ev.stock; if (ev.sale) p.sale = ev.sale; updateRow(ev.product_id); }
      return undefined;
    }
    case "sale_open": case "sale_scheduled": case "sale_closed": {
      const p = S.products.get(ev.sale.product_id);
      if (p) { p.sale = ev.sale; updateRow(p.product_id); }
      return undefined;
    }
    case "coupon_drop": S.coupons.set(ev.coupon.coupon_id, ev.coupon); return renderCoupons();
    case "coupon_count": {
      const c = S.coupons.get(ev.coupon_id);
      if (c) { c.remaining = ev.remaining; renderCoupons(); }
      return undefined;
    }
    case "lottery_open": case "lottery_drawn": S.lotteries.set(ev.lottery.lottery_id, ev.lottery); return renderLotteries();
    case "lottery_entrants": {
      const l = S.lotteries.get(ev.lottery_id);
      if (l) { l.entrants = Math.max(l.entrants || 0, ev.entrants); renderLotteries(); }
      return undefined;
    }
    case "chat": return addChat(ev);
    case "chat_deleted": return markDeleted(ev.message_id);
    case "viewer_muted": return addSystem(`${S.nicknames.get(ev.viewer_id) || ev.viewer_id} is muted until ${timeOfDay(ev.until)}.`);
    case "announcement": return addSystem(`Announcement: ${ev.text}`);
    case "show_live": return renderRoomState("live");
    case "room_policy": return renderPolicy(ev.policy);
    case "show_ended": addSystem("The show has ended."); return renderRoomState("ended");
    default: return undefined;
  }
}

// ------------------------------------------------------------------ lifecycle

const STATE_LABELS = { scheduled: "Upcoming", live: "Live", ended: "Ended" };

/** The room's state beside its title; ending is offered only while not ended. */
function renderRoomState(state) {
  if (S.room) S.room.state = state;
  const badge = $("#room-state");
  badge.className = `badge ${state}`;
  badge.dataset.state = state;
  setText(badge, STATE_LABELS[state] || state);
  $("#end-show").hidden = state === "ended" || !S.roomId;
}

async function endShow() {
  const out = $("#end-result");
  $("#end-confirm").disabled = true;
  const res = await hostApi("POST", "/end");
  $("#end-confirm").disabled = false;
  if (!report(out, res, "")) return;
  $("#end-dlg").close();
  renderRoomState("ended");
  toast("The show has ended.", "ok");
}

// ------------------------------------------------------------------ room policy

const SLOW_PRESETS = ["0", "5", "10", "30", "60"];

/** Show the policy the server holds (snapshot, PATCH answer or a `room_policy`
 *  event, also one caused by another console). */
function renderPolicy(policy) {
  if (!policy) return;
  S.policy = { ...S.policy, ...policy };
  const p = S.policy;
  $("#pol-verified").checked = !!p.require_verified;
  $("#pol-ip").checked = !!p.limit_per_ip;
  const slow = String(p.slow_mode_s || 0);
  const preset = SLOW_PRESETS.includes(slow);
  const select = $("#pol-slow");
  const custom = $("#pol-slow-custom");
  // A value being typed is not overwritten under the host's fingers.
  if (document.activeElement !== custom) {
    select.value = preset ? slow : "custom";
    custom.value = slow;
    $("#pol-slow-custom-field").hidden = preset;
  }
  const form = $("#policy-form");
  form.dataset.requireVerified = String(!!p.require_verified);
  form.dataset.limitPerIp = String(!!p.limit_per_ip);
  form.dataset.slowModeS = slow;
  const parts = [p.require_verified ? "shop customers only" : "guests can buy",
                 p.limit_per_ip ? "limit per address" : null,
                 p.slow_mode_s ? `slow mode ${p.slow_mode_s} s` : "slow mode off"];
  setText($("#policy-summary"), parts.filter(Boolean).join(" · "));
}

/** PATCH only the field that changed: another console's change to another field
 *  is kept, not overwritten with this page's older view of it. */
async function applyPolicy(change, okText) {
  const out = $("#policy-result");
  const form = $("#policy-form");
  form.setAttribute("aria-busy", "true");
  const res = await hostApi("PATCH", "/policy", change);
  form.removeAttribute("aria-busy");
  if (report(out, res, okText)) renderPolicy(res.data);
  else renderPolicy(S.policy); // put the controls back to what the server holds
}

function slowModeChanged() {
  const value = $("#pol-slow").value;
  if (value === "custom") {
    $("#pol-slow-custom-field").hidden = false;
    $("#pol-slow-custom").focus();
    return;
  }
  $("#pol-slow-custom-field").hidden = true;
  setSlowMode(Number(value));
}

function setSlowMode(seconds) {
  applyPolicy({ slow_mode_s: seconds },
              seconds ? `Slow mode on: one message every ${seconds} s per viewer` : "Slow mode off");
}

function submitCustomSlowMode(e) {
  e.preventDefault();
  const text = $("#pol-slow-custom").value.trim();
  // The range is the server's to check (its error is shown as it words it).
  if (!/^\d{1,9}$/.test(text)) {
    report($("#policy-result"), { ok: false, error: { message: "Slow mode: give a whole number of seconds", code: "bad_request" } }, "");
    return;
  }
  setSlowMode(Number(text));
}

// ------------------------------------------------------------------ catalogue

function renderProducts() {
  const body = $("#product-rows");
  const ids = [...S.products.keys()];
  for (const [id, r] of rows) if (!S.products.has(id)) { r.tr.remove(); rows.delete(id); }
  ids.forEach((id, i) => {
    let r = rows.get(id);
    if (!r) { r = buildRow(id); rows.set(id, r); }
    if (body.children[i] !== r.tr) body.insertBefore(r.tr, body.children[i] || null);
    updateRow(id);
  });
  $("#no-products").hidden = ids.length > 0;
  setText($("#pin-count"), `${S.pins.length} of 3 pinned`);
  renderSaleProducts();
}

function buildRow(id) {
  const r = {};
  r.name = h("div", { class: "p-name" });
  r.pid = h("div", { class: "p-id", text: id });
  r.price = h("td", { class: "r num" });
  r.bar = h("div", { class: "mini-bar", attrs: { "aria-hidden": "true" } },
    r.s = h("span", { class: "s" }), r.hh = h("span", { class: "h" }), r.l = h("span", { class: "l" }));
  r.legend = h("div", { class: "mini-legend num" });
  r.sale = h("td", { class: "sale-cell" });
  r.pin = h("button", { type: "button", class: "btn small", on: { click: () => togglePin(id) } });
  r.edit = h("button", { type: "button", class: "btn small", text: "Edit", on: { click: () => editProduct(id) } });
  r.sell = h("button", { type: "button", class: "btn small", text: "Sell", on: { click: () => prepareSale(id) } });
  r.stop = h("button", { type: "button", class: "btn danger small", text: "Stop sale", on: { click: () => stopSale(id) } });
  r.tr = h("tr", { data: { productId: id } },
    h("td", {}, r.name, r.pid), r.price, h("td", {}, r.bar, r.legend), r.sale,
    h("td", {}, h("div", { class: "actions" }, r.pin, r.edit, r.sell, r.stop)));
  return r;
}

function updateRow(id) {
  const r = rows.get(id);
  const p = S.products.get(id);
  if (!r || !p) return;
  const pinned = S.pins.includes(id);
  r.tr.classList.toggle("pinned", pinned);
  setText(r.name, p.title);
  setText(r.price, money(p.price, p.currency));
  const st = p.stock || { total: 0, left: 0, held: 0, sold: 0 };
  const denom = Math.max(1, st.total, st.left + st.held + st.sold);
  r.s.style.width = `${(st.sold / denom) * 100}%`;
  r.hh.style.width = `${(st.held / denom) * 100}%`;
  r.l.style.width = `${(st.left / denom) * 100}%`;
  r.legend.replaceChildren(h("b", { text: st.left }), " left · ", h("b", { text: st.held }), " held · ",
                           h("b", { text: st.sold }), ` sold of ${st.total}`);
  r.tr.dataset.left = st.left; r.tr.dataset.held = st.held; r.tr.dataset.sold = st.sold;
  const sale = p.sale;
  const state = saleState(sale);
  r.tr.dataset.saleState = state || "none";
  const at = now();
  if (!sale) r.sale.replaceChildren(h("span", { class: "muted", text: "—" }));
  else {
    let when = "";
    if (state === "scheduled") when = `starts in ${clock(sale.starts_at - at)}`;
    else if (state === "open") when = `${sale.left} of ${sale.units} left · ends in ${clock(sale.ends_at - at)}`;
    else when = `${sale.sold} of ${sale.units} sold`;
    r.sale.replaceChildren(h("span", { class: `badge ${state}`, text: state }),
                           h("span", { class: "num", text: `${money(sale.price, sale.currency)} · ${when}` }));
  }
  setText(r.pin, pinned ? "Unpin" : "Pin");
  r.pin.setAttribute("aria-label", `${pinned ? "Unpin" : "Pin"} ${p.title}`);
  r.edit.setAttribute("aria-label", `Edit ${p.title}`);
  r.sell.setAttribute("aria-label", `Start a flash sale of ${p.title}`);
  r.stop.setAttribute("aria-label", `Stop the sale of ${p.title}`);
  r.stop.hidden = !(state === "scheduled" || state === "open");
  r.sell.hidden = !r.stop.hidden;
}

async function togglePin(id) {
  const p = S.products.get(id);
  const pinned = S.pins.includes(id);
  const res = pinned ? await hostApi("DELETE", `/pins/${encodeURIComponent(id)}`)
                     : await hostApi("POST", "/pins", { product_id: id });
  if (res.ok) { S.pins = res.data.pins; renderProducts(); }
  report($("#cat-result"), res, `${pinned ? "Unpinned" : "Pinned"} “${p.title}”`);
}

function editProduct(id) {
  const p = S.products.get(id);
  if (!p) return;
  S.editing = id;
  setText($("#product-form-h"), `Edit “${p.title}”`);
  $("#pf-title").value = p.title;
  $("#pf-price").value = toMajorText(p.price, p.currency);
  $("#pf-currency").value = p.currency;
  $("#pf-stock").value = p.stock ? p.stock.total : 0;
  $("#pf-image").value = p.image_url || "";
  $("#pf-desc").value = p.description || "";
  setText($("#pf-submit"), "Save changes");
  $("#pf-cancel").hidden = false;
  $("#product-result").textContent = "";
  $("#pf-title").focus();
}

function resetProductForm() {
  S.editing = null;
  $("#product-form").reset();
  setText($("#product-form-h"), "Add a product");
  setText($("#pf-submit"), "Add product");
  $("#pf-cancel").hidden = true;
}

async function submitProduct(e) {
  e.preventDefault();
  const out = $("#product-result");
  const currency = $("#pf-currency").value.trim().toUpperCase();
  const price = toMinor($("#pf-price").value, currency);
  if (Number.isNaN(price)) {
    report(out, { ok: false, error: { message: "Price: enter an amount like 19.99", code: "bad_price" } });
    return;
  }
  const body = {
    title: $("#pf-title").value.trim(), price, currency,
    stock: Number($("#pf-stock").value),
    image_url: $("#pf-image").value.trim(),
    description: $("#pf-desc").value.trim(),
  };
  if (S.editing) {
    const id = S.editing;
    const p = S.products.get(id) || {};
    const changes = {};
    for (const [k, v] of Object.entries(body)) {
      const old = k === "stock" ? (p.stock ? p.stock.total : undefined) : p[k];
      if (v !== old && !(k === "image_url" && !v && !old) && !(k === "description" && !v && !old)) changes[k] = v;
    }
    if (!Object.keys(changes).length) { report(out, { ok: true }, "Nothing changed"); return; }
    const res = await hostApi("PATCH", `/products/${encodeURIComponent(id)}`, changes);
    if (report(out, res, `Saved “${body.title}”`)) {
      S.products.set(id, res.data);
      renderProducts();
      resetProductForm();
    }
    return;
  }
  if (!body.image_url) delete body.image_url;
  if (!body.description) delete body.description;
  const res = await hostApi("POST", "/products", body);
  if (report(out, res, `Added “${body.title}”`)) {
    S.products.set(res.data.product_id, res.data);
    renderProducts();
    resetProductForm();
    $("#pf-title").focus();
  }
}

// ------------------------------------------------------------------ sales

function renderSaleProducts() {
  const select = $("#sf-product");
  const keep = select.value;
  const sig = [...S.products.values()].map((p) => p.product_id + p.title).join("|");
  if (select.dataset.sig === sig) return;
  select.dataset.sig = sig;
  select.replaceChildren(...[...S.products.values()].map((p) => h("option", { value: p.product_id, text: p.title })));
  if (S.products.has(keep)) select.value = keep;
  fillSaleDefaults();
}

function fillSaleDefaults() {
  const p = S.products.get($("#sf-product").value);
  if (!p) return;
  $("#sf-price").value = toMajorText(p.price, p.currency);
  const left = p.stock ? p.stock.left : 1;
  $("#sf-units").value = Math.max(1, Math.min(left, Number($("#sf-units").value) || left));
}

function prepareSale(id) {
  $("#sf-product").value = id;
  fillSaleDefaults();
  $("#sf-price").focus();
  $("#sf-price").select();
}

async function startSale(e) {
  e.preventDefault();
  const out = $("#sale-result");
  const p = S.products.get($("#sf-product").value);
  if (!p) { report(out, { ok: false, error: { message: "Add a product first", code: "no_product" } }); return; }
  const price = toMinor($("#sf-price").value, p.currency);
  if (Number.isNaN(price)) { report(out, { ok: false, error: { message: "Sale price: enter an amount like 19.99", code: "bad_price" } }); return; }
  const body = {
    product_id: p.product_id, price,
    units: Number($("#sf-units").value), limit_per_buyer: Number($("#sf-limit").value),
    duration_s: Number($("#sf-duration").value),
  };
  const mode = document.querySelector('input[name="sf-start"]:checked').value;
  if (mode === "in") body.starts_in_s = Number($("#sf-in").value);
  else if (mode === "at") {
    const local = new Date($("#sf-at").value).getTime();
    if (Number.isNaN(local)) { report(out, { ok: false, error: { message: "Pick a start time", code: "bad_time" } }); return; }
    // The picked wall-clock time, moved onto the server's clock.
    body.starts_at = Math.round(local + (live ? live.offset : 0));
  }
  const res = await hostApi("POST", "/sales", body);
  if (!res.ok) { report(out, res, ""); return; }
  const sale = res.data;
  p.sale = sale;
  updateRow(p.product_id);
  const at = now();
  report(out, res, sale.state === "open"
    ? `Sale of “${p.title}” is live: ${sale.units} at ${money(sale.price, sale.currency)}`
    : `Sale of “${p.title}” scheduled: starts in ${clock(sale.starts_at - at)} (${timeOfDay(sale.starts_at)})`);
  if (!S.pins.includes(p.product_id) && S.pins.length < 3) {
    toast(`Tip: pin “${p.title}” so viewers see the sale card.`);
  }
}

async function stopSale(id) {
  const p = S.products.get(id);
  if (!p || !p.sale) return;
  const res = await hostApi("POST", `/sales/${encodeURIComponent(p.sale.sale_id)}/stop`);
  if (res.ok) { p.sale = res.data; updateRow(id); }
  report($("#cat-result"), res, `Stopped the sale of “${p.title}”`);
}

// ------------------------------------------------------------------ coupons

async function dropCoupon(e) {
  e.preventDefault();
  const out = $("#coupon-result");
  const kind = $("#cf-kind").value;
  const currency = $("#cf-currency").value.trim().toUpperCase();
  const value = kind === "percent" ? Number($("#cf-value").value) : toMinor($("#cf-value").value, currency);
  const minSpend = toMinor($("#cf-min").value || "0", currency);
  if (!Number.isFinite(value) || Number.isNaN(value) || Number.isNaN(minSpend)) {
    report(out, { ok: false, error: { message: "Enter the coupon value as a number", code: "bad_value" } });
    return;
  }
  const body = { kind, value, min_spend: minSpend, currency, count: Number($("#cf-count").value),
                 expires_in_s: Number($("#cf-expires").value) * 60 };
  const title = $("#cf-title").value.trim();
  if (title) body.title = title;
  const res = await hostApi("POST", "/coupons", body);
  if (report(out, res, res.ok ? `Dropped ${res.data.count} × “${res.data.title}”` : "")) {
    S.coupons.set(res.data.coupon_id, res.data);
    renderCoupons();
  }
}

const couponEls = new Map();

function renderCoupons() {
  const at = now();
  const list = $("#coupon-list");
  const items = [...S.coupons.values()].sort((a, b) => b.expires_at - a.expires_at).slice(0, 6);
  const keep = new Set(items.map((c) => c.coupon_id));
  for (const [id, r] of couponEls) if (!keep.has(id)) { r.li.remove(); couponEls.delete(id); }
  items.forEach((c, i) => {
    let r = couponEls.get(c.coupon_id);
    if (!r) {
      r = { title: h("span", { class: "item-title" }), meta: h("span", { class: "item-meta num" }), badge: h("span", { class: "badge" }) };
      r.li = h("li", { class: "item", data: { couponId: c.coupon_id } }, h("div", { class: "item-main" }, r.title, r.meta), r.badge);
      couponEls.set(c.coupon_id, r);
    }
    if (list.children[i] !== r.li) list.insertBefore(r.li, list.children[i] || null);
    const value = c.kind === "percent" ? `${c.value}% off` : `${money(c.value, c.currency)} off`;
    const active = c.expires_at > at;
    setText(r.title, `${c.title} · ${value}`);
    setText(r.meta, `${c.count - c.remaining} claimed · ${c.remaining} of ${c.count} left · ` +
                    (active ? `expires in ${clock(c.expires_at - at)}` : "expired"));
    r.li.dataset.remaining = c.remaining;
    r.badge.className = `badge ${active ? "ok" : "ended"}`;
    setText(r.badge, active ? "active" : "expired");
  });
}

// ------------------------------------------------------------------ lotteries

async function openLottery(e) {
  e.preventDefault();
  const out = $("#lottery-result");
  const body = { prize: $("#lf-prize").value.trim(), winners: Number($("#lf-winners").value),
                 duration_s: Number($("#lf-duration").value), entry: $("#lf-entry").value };
  if (body.entry === "keyword") body.keyword = $("#lf-keyword").value.trim();
  const res = await hostApi("POST", "/lotteries", body);
  if (report(out, res, res.ok ? `Giveaway “${res.data.prize}” is open (seed hash ${res.data.seed_hash.slice(0, 12)}… published)` : "")) {
    S.lotteries.set(res.data.lottery_id, res.data);
    renderLotteries();
  }
}

const lotteryEls = new Map();

function renderLotteries() {
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
  const res = await hostApi("POST", `/lotteries/${encodeURIComponent(id)}/draw`);
  if (res.ok) { S.lotteries.set(id, res.data); renderLotteries(); }
  report($("#lottery-result"), res, res.ok ? `Drawn: ${(res.data.result.winners || []).length} winner(s) from ${res.data.result.entrants.length} entrants` : "");
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
  report(r.verifyOut, outcome.ok ? { ok: true } : { ok: false, error: { message: outcome.checks.filter((c) => !c.ok).map((c) => c.name).join("; "), code: "verify_failed" } },
                 "Verified in this browser: the published seed and entrants reproduce the winners");
}

// ------------------------------------------------------------------ chat moderation

function chatList() { return $("#mod-chat"); }

function appendChat(li) {
  const list = chatList();
  const stick = list.scrollHeight - list.scrollTop - list.clientHeight < 60;
  const empty = document.getElementById("mod-empty");
  if (empty) empty.remove();
  list.append(li);
  while (list.children.length > 300) list.firstElementChild.remove();
  if (stick) list.scrollTop = list.scrollHeight;
}

function addChat(ev) {
  S.nicknames.set(ev.viewer_id, ev.nickname);
  const del = h("button", { type: "button", class: "btn danger small", text: "Delete",
                            attrs: { "aria-label": `Delete message from ${ev.nickname}: ${ev.text.slice(0, 40)}` },
                            on: { click: () => deleteMessage(ev.message_id) } });
  const mute = h("button", { type: "button", class: "btn small", text: "Mute",
                             attrs: { "aria-label": `Mute ${ev.nickname}` },
                             on: { click: () => muteViewer(ev.viewer_id, ev.nickname) } });
  appendChat(h("li", { class: "mod-msg", data: { messageId: ev.message_id, viewerId: ev.viewer_id } },
    h("div", {}, ev.host === true ? h("span", { class: "who host-badge", text: "Host" }) : h("span", { class: "who", text: ev.nickname }), h("span", { class: "txt", text: ev.text }),
      h("span", { class: "vid", text: ev.viewer_id })),
    h("div", { class: "acts" }, del, mute)));
}

function addSystem(text) {
  appendChat(h("li", { class: "mod-msg system" }, h("div", {}, h("span", { class: "txt", text })), h("div")));
}

function markDeleted(id) {
  const li = chatList().querySelector(`[data-message-id="${CSS.escape(id)}"]`);
  if (!li) return;
  li.classList.add("deleted");
  const del = li.querySelector(".acts .danger");
  if (del) del.remove();
  const txt = li.querySelector(".txt");
  if (txt) txt.setAttribute("aria-label", "deleted message");
}

async function deleteMessage(id) {
  const res = await hostApi("POST", "/moderation/delete", { message_id: id });
  if (res.ok) markDeleted(id);
  report($("#mod-result"), res, "Message deleted for everyone");
}

async function muteViewer(viewerId, nickname) {
  const duration = Number($("#mute-duration").value);
  const res = await hostApi("POST", "/moderation/mute", { viewer_id: viewerId, duration_s: duration });
  report($("#mod-result"), res, res.ok ? `Muted ${nickname} until ${timeOfDay(res.data.until)}` : "");
}

async function announce(e) {
  e.preventDefault();
  const input = $("#announce-text");
  const res = await hostApi("POST", "/announcements", { text: input.value.trim() });
  if (report($("#announce-result"), res, "Announced to every viewer")) input.value = "";
}

// ------------------------------------------------------------------ live numbers

async function pollStats() {
  clearTimeout(statsTimer);
  if (!S.roomId) return;
  if (!statsBusy) {
    statsBusy = true;
    const roomAtStart = S.roomId;
    const res = await hostApi("GET", "/stats");
    statsBusy = false;
    if (roomAtStart !== S.roomId) return;
    if (res.ok) {
      S.stats = res.data;
      S.statsAt = Date.now();
      S.samples.push({ t: res.data.server_time, viewers: res.data.viewers.now, orders: res.data.orders });
      if (S.samples.length > MAX_SAMPLES) S.samples.shift();
      renderStats();
    } else {
      setText($("#stats-age"), `Numbers unavailable: ${res.error.message}`);
    }
  }
  statsTimer = setTimeout(pollStats, 1000);
}

function renderStats() {
  const st = S.stats;
  if (!st) return;
  const cur = currencyOf();
  setText($("#st-viewers"), compact(st.viewers.now));
  setText($("#st-peak"), `peak ${compact(st.viewers.peak)}`);
  setText($("#st-likes"), compact(st.likes));
  setText($("#st-unique"), `${compact(st.viewers.unique)} unique viewers`);
  setText($("#st-chat"), compact(st.chat_per_minute));
  setText($("#st-chat-now"), `${compact(st.chat_this_minute)} this minute`);
  setText($("#st-holds"), compact(st.holds_units));
  setText($("#st-orders"), compact(st.orders));
  setText($("#st-units"), `${compact(st.units_sold)} unit${st.units_sold === 1 ? "" : "s"} sold`);
  setText($("#st-revenue"), money(st.revenue, cur));
  setText($("#st-buyers"), `${compact(st.buyers)} buyer${st.buyers === 1 ? "" : "s"}`);
  setText($("#st-conversion"), `${(st.conversion * 100).toFixed(1)}%`);
  setText($("#stats-age"), `Updated ${new Date().toLocaleTimeString()}`);
  // The per-product numbers of the stats call are the freshest: fold them in.
  for (const sp of st.products) {
    const p = S.products.get(sp.product_id);
    if (p) {
      p.stock = { total: sp.total, left: sp.left, held: sp.held, sold: sp.sold };
      if (sp.sale) p.sale = sp.sale;
      updateRow(sp.product_id);
    }
  }
  const spanText = S.samples.length > 60 ? `last ${Math.ceil(S.samples.length / 60)} minutes` : "last minute";
  setText($("#chart-viewers-span"), spanText);
  setText($("#chart-orders-span"), `cumulative, ${spanText}`);
  drawChart($("#chart-viewers"), S.samples.map((s) => s.viewers), "viewers");
  drawChart($("#chart-orders"), S.samples.map((s) => s.orders), "orders");
}

const SVG = "http://www.w3.org/2000/svg";

/** A small line chart drawn as inline SVG: grid, filled area, line, last point. */
function drawChart(svg, values, kind) {
  const W = 400, H = 110, pad = 8;
  svg.classList.add(kind);
  const max = Math.max(1, ...values);
  // The newest sample sits at the right edge; the window grows from one minute to five.
  const span = Math.min(MAX_SAMPLES, Math.max(60, values.length));
  const offset = span - values.length;
  const px = (i) => ((i + offset) / (span - 1)) * W;
  const py = (v) => H - pad - (v / max) * (H - 2 * pad);
  const parts = [];
  for (let g = 0; g <= 3; g++) {
    const y = pad + (g / 3) * (H - 2 * pad);
    parts.push(`<line class="grid" x1="0" x2="${W}" y1="${y.toFixed(1)}" y2="${y.toFixed(1)}"/>`);
  }
  if (values.length) {
    const pts = values.map((v, i) => `${px(i).toFixed(1)},${py(v).toFixed(1)}`);
    const first = px(0).toFixed(1);
    parts.push(`<path class="area" d="M${first},${H} L${pts.join(" L")} L${W},${H} Z"/>`);
    parts.push(`<polyline class="line" points="${pts.join(" ")}"/>`);
  }
  // Only numbers go into this markup; nothing from users or the server's text fields.
  svg.innerHTML = parts.join("");
  const last = values.length ? values[values.length - 1] : 0;
  svg.setAttribute("aria-label", `${kind === "viewers" ? "Viewers" : "Orders"} over the last ${Math.round(values.length)} seconds: now ${last}, highest ${Math.max(0, ...values)}`);
  svg.dataset.points = String(values.length);
}

// ------------------------------------------------------------------ ticking

let tickTimer = null;
function scheduleTick() {
  clearTimeout(tickTimer);
  tickTimer = setTimeout(() => {
    for (const id of rows.keys()) updateRow(id);
    renderCoupons();
    if ([...S.lotteries.values()].some((l) => l.state !== "drawn")) renderLotteries();
    scheduleTick();
  }, 1000 - (now() % 1000) + 2);
}

// ------------------------------------------------------------------ wiring

function bind() {
  $("#create-form").addEventListener("submit", createRoom);
  $("#open-form").addEventListener("submit", openForm);
  $("#switch-room").addEventListener("click", showSetup);
  $("#end-show").addEventListener("click", () => { setText($("#end-result"), ""); $("#end-dlg").showModal(); });
  $("#end-cancel").addEventListener("click", () => $("#end-dlg").close());
  $("#end-confirm").addEventListener("click", endShow);
  $("#product-form").addEventListener("submit", submitProduct);
  $("#pf-cancel").addEventListener("click", () => { resetProductForm(); $("#product-result").textContent = ""; });
  $("#sale-form").addEventListener("submit", startSale);
  $("#sf-product").addEventListener("change", fillSaleDefaults);
  $("#sf-in").addEventListener("focus", () => { document.querySelector('input[name="sf-start"][value="in"]').checked = true; });
  $("#sf-at").addEventListener("focus", () => { document.querySelector('input[name="sf-start"][value="at"]').checked = true; });
  $("#coupon-form").addEventListener("submit", dropCoupon);
  $("#cf-kind").addEventListener("change", () => {
    const pct = $("#cf-kind").value === "percent";
    setText($("#cf-value-label"), pct ? "Percent" : "Amount");
    $("#cf-value").placeholder = pct ? "10" : "5.00";
  });
  $("#lottery-form").addEventListener("submit", openLottery);
  $("#lf-entry").addEventListener("change", () => {
    const kw = $("#lf-entry").value === "keyword";
    $("#lf-keyword-field").hidden = !kw;
    $("#lf-keyword").required = kw;
  });
  $("#announce-form").addEventListener("submit", announce);
  $("#pol-verified").addEventListener("change", (e) => {
    const on = e.target.checked;
    applyPolicy({ require_verified: on }, on ? "Only signed-in shop customers can buy now" : "Guests can buy again");
  });
  $("#pol-ip").addEventListener("change", (e) => {
    const on = e.target.checked;
    applyPolicy({ limit_per_ip: on }, on ? "The per-buyer limit also counts per network address" : "The per-buyer limit counts per buyer only");
  });
  $("#pol-slow").addEventListener("change", slowModeChanged);
  $("#policy-form").addEventListener("submit", submitCustomSlowMode);
  $("#entrants-close").addEventListener("click", () => $("#entrants-dlg").close());
  $("#copy-link").addEventListener("click", async () => {
    const ok = await copyText($("#share-link").value, $("#share-link"));
    toast(ok ? "Viewer link copied." : "Select the link and copy it.", ok ? "ok" : "info");
  });
  $("#copy-key").addEventListener("click", async () => {
    const ok = await copyText($("#host-key-view").value, $("#host-key-view"));
    toast(ok ? "Host key copied. Keep it secret." : "Select the key and copy it.", ok ? "ok" : "info");
  });
}

function start() {
  bind();
  const wanted = new URLSearchParams(location.search).get("room") || store.get(CURRENT_KEY, null);
  const known = wanted ? rooms()[wanted] : null;
  if (known && known.host_key) {
    openRoom(wanted, known.host_key).then((ok) => { if (!ok) showSetup(); });
  } else {
    if (wanted) $("#open-room").value = wanted;
    showSetup();
  }
}

start();
