// The viewer page: watch, shop the pinned products, race the flash sale, claim
// coupons, enter giveaways, chat. Every number shown comes from the server's
// counters; every countdown is rendered from server timestamps and the measured
// clock offset, so viewers with wrong clocks still see the same moment.

import { Live } from "./live.js";
import { verifyLottery } from "./lottery.js";
import {
  $, api, clock, compact, h, initials, money, setText, store, tileColor, timeOfDay, toast,
} from "./util.js";

// ------------------------------------------------------------------ plain words

const REFUSALS = {
  sold_out: "Sold out — every unit is sold or in someone's cart.",
  limit_reached: "You've reached the per-buyer limit for this sale.",
  not_started: "The sale hasn't started yet.",
  ended: "This sale has ended.",
  not_on_sale: "This product isn't on sale right now.",
  insufficient_stock: "Not enough left for that quantity — try fewer.",
  hold_expired: "Your hold expired, so the item went back to stock.",
  hold_not_found: "That reservation no longer exists.",
  hold_released: "That reservation was released.",
  checked_out: "This reservation is already checked out.",
  sale_stopped: "The host stopped this sale, so your reservation was cancelled and the item went back to stock.",
  checkout_cancelled: "Your order couldn't be recorded in time, so it was cancelled — nothing was placed. Try again if units are left.",
  store_unavailable: "Your order couldn't be recorded just now. Your reservation is kept — try again.",
  unavailable: "The shop is catching up after a hiccup — try again in a moment.",
  show_ended: "This show has ended.",
  coupon_gone: "All coupons from this drop have been claimed.",
  coupon_expired: "This coupon has expired.",
  coupon_not_found: "That coupon doesn't exist.",
  coupon_not_claimed: "Claim the coupon before using it.",
  coupon_used: "You've already used this coupon.",
  coupon_min_spend: "This order doesn't reach the coupon's minimum spend.",
  coupon_currency: "This coupon is in a different currency from the product.",
  already_claimed: "You've already claimed this coupon.",
  lottery_not_found: "That giveaway doesn't exist.",
  lottery_closed: "This giveaway is closed.",
  not_eligible: "You can't enter this giveaway (be in the live room, and use the keyword if it needs one).",
  already_entered: "You're already entered.",
  product_not_found: "That product isn't in this show any more.",
  room_not_found: "This room doesn't exist.",
  muted: "You're muted in this chat for now.",
  rate_limited: "You're going a bit fast — wait a moment and try again.",
  request_in_progress: "Still working on your previous request…",
  store_unavailable: "The order couldn't be recorded just now. Your hold is kept — try again.",
  unavailable: "The shop is briefly unavailable. Try again in a moment.",
  internal: "Something went wrong on our side. Try again.",
  too_many_holds: "You already have the most reservations open at once — check out or release one first.",
  ip_limit_reached: "Buyers on your network have already reached this sale's per-buyer limit.",
  signed_identity_required: "Only customers signed in on the shop can buy here. Sign in on the shop and open the show from there.",
  slow_mode: "Slow mode is on — wait a moment before your next message.",
  chat_busy: "The chat is very busy — wait a moment and send again.",
  too_many_identities: "Too many new visitors from your network just now — try again shortly.",
  identity_refused: "The shop sign-in was refused.",
};

// Why the server refused a shop sign-in (details.reason), in plain words.
const SIGNIN_REASONS = {
  not_configured: "this show does not accept shop sign-ins",
  expired: "the sign-in has expired",
  not_yet_valid: "the sign-in is not valid yet",
  signature: "the sign-in was not signed by this shop",
  algorithm: "the sign-in was not signed by this shop",
  malformed: "the sign-in link is damaged",
  too_large: "the sign-in link is damaged",
  lifetime: "the sign-in is valid for too long",
};

function explain(err) {
  if (!err) return "Something went wrong.";
  return REFUSALS[err.code] || err.message || "Something went wrong.";
}

// ------------------------------------------------------------------ state

const S = {
  roomId: null,
  roomsCursor: null,
  room: null,
  products: new Map(),
  pins: [],
  coupons: new Map(),
  lotteries: new Map(),
  likes: 0,
  viewers: { now: 0, unique: 0, peak: 0 },
  me: null,
  hold: null,
  lastOrder: null,
  claimed: new Set(),
  usedCoupons: new Set(),
  entered: new Set(),
  seedHashes: {},
  nicknames: new Map(),
  mutedUntil: 0,
  armedAt: {},
  connState: "connecting",
  connInfo: {},
  policy: { require_verified: false, limit_per_ip: false, slow_mode_s: 0 },
  chatReadyAt: 0, // server time before which slow mode holds the next message back
  chatWait: "", // why the send button is counting down
  signinNotice: "", // a refused shop sign-in, shown while the page carries on as a guest
};

let live = null;
const cards = new Map(); // product_id -> card element refs
const promoEls = new Map(); // coupon/lottery id -> refs

const keys = {
  hold: () => `livesell.hold.${S.roomId}`,
  claimed: () => `livesell.claimed.${S.roomId}.${S.me?.viewer_id}`,
  used: () => `livesell.used.${S.roomId}.${S.me?.viewer_id}`,
  entered: () => `livesell.entered.${S.roomId}.${S.me?.viewer_id}`,
  seeds: () => `livesell.seedhash.${S.roomId}`,
};

const now = () => (live ? live.serverNow() : Date.now());

function saleState(sale, at = now()) {
  if (!sale) return null;
  if (sale.state === "stopped") return "stopped";
  if (at < sale.starts_at) return "scheduled";
  if (at < sale.ends_at) return "open";
  return "ended";
}

/** When a countdown to `target` next changes its whole-second display. */
function nextFlip(target, at) {
  const remaining = target - at;
  if (remaining <= 0) return Infinity;
  const secs = Math.ceil(remaining / 1000);
  return remaining - (secs - 1) * 1000;
}

// ------------------------------------------------------------------ start

function roomFromAddress() {
  const m = location.pathname.match(/^\/r\/([^/]+)\/?$/);
  if (m) return decodeURIComponent(m[1]);
  return new URLSearchParams(location.search).get("room");
}

async function showPicker() {
  $("#picker").hidden = false;
  setConn("idle");
  $("#conn").hidden = true;
  $("#room-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const id = $("#room-id-input").value.trim();
    if (id) location.href = `/r/${encodeURIComponent(id)}`;
  });
  $("#room-list").replaceChildren();
  $("#room-more").addEventListener("click", () => loadRooms(S.roomsCursor));
  await loadRooms(null);
}

/** One page of live and upcoming rooms (GET /api/rooms is newest first, paged). */
async function loadRooms(cursor) {
  const more = $("#room-more");
  more.disabled = true;
  const query = cursor ? `?cursor=${encodeURIComponent(cursor)}` : "";
  const res = await api("GET", `/api/rooms${query}`);
  const list = $("#room-list");
  const rooms = res.ok ? res.data.rooms : [];
  const when = (ms) => new Date(ms).toLocaleString([], { dateStyle: "medium", timeStyle: "short" });
  for (const room of rooms) {
    const upcoming = room.state === "scheduled";
    list.append(h("li", {},
      h("a", { class: "room-link", href: `/r/${encodeURIComponent(room.room_id)}`, data: { state: room.state } },
        h("span", { class: upcoming ? "room-dot upcoming" : "room-dot", attrs: { "aria-hidden": "true" } }),
        h("span", { class: "room-name", text: room.title }),
        h("span", { class: upcoming ? "badge scheduled" : "badge live", text: upcoming ? "Upcoming" : "Live" }),
        h("span", { class: "muted small", text: upcoming ? `starts ${when(room.starts_at)}` : `since ${when(room.created_at)}` }))));
  }
  S.roomsCursor = res.ok ? res.data.next_cursor : null;
  more.hidden = !S.roomsCursor;
  more.disabled = false;
  $("#room-list-empty").hidden = list.children.length > 0;
  if (!res.ok) toast(explain(res.error), "error");
}

/** The show ended (event or snapshot): say so and take every selling button away. */
function onShowEnded() {
  if (S.room) S.room.state = "ended";
  $("#ended").hidden = false;
  renderShop();
  renderPromos();
}

function showEnded() {
  return !!(S.room && S.room.state === "ended");
}

/** A shop that links or embeds this page hands over its signed sign-in in the
 *  fragment (`/r/{room}#shop_token=<jwt>`), which browsers never send to a server.
 *  Read it once and take it out of the address bar and the history entry at once. */
function takeShopToken() {
  const fragment = location.hash.startsWith("#") ? location.hash.slice(1) : "";
  if (!fragment.includes("shop_token=")) return "";
  const params = new URLSearchParams(fragment);
  const token = (params.get("shop_token") || "").trim();
  params.delete("shop_token");
  const rest = params.toString();
  history.replaceState(history.state, "", location.pathname + location.search + (rest ? `#${rest}` : ""));
  return token;
}

function signinRefusedText(err) {
  const reason = err && err.details && err.details.reason ? String(err.details.reason) : "";
  const why = SIGNIN_REASONS[reason] || (reason ? `reason: ${reason}` : "");
  return `The shop sign-in was refused${why ? ` (${why})` : ""}.`;
}

/** Trade the shop's token for a livesell session token, kept where the guest token
 *  is kept. Returns the shop token when it should be offered on the WebSocket
 *  instead (the exchange could not be reached), else "". */
async function exchangeShopToken(shopToken) {
  const res = await api("POST", "/api/session", { shop_token: shopToken });
  if (res.ok && res.data && res.data.token) {
    store.set("livesell.token", res.data.token);
    return "";
  }
  if (res.status === 0 || res.status >= 500) return shopToken;
  S.signinNotice = `${signinRefusedText(res.error)} You're watching as a guest: sign in on the shop again to buy.`;
  return "";
}

async function start() {
  S.roomId = roomFromAddress();
  const shopToken = takeShopToken();
  if (!S.roomId) {
    showPicker();
    return;
  }
  $("#room").hidden = false;
  S.seedHashes = store.get(keys.seeds(), {}) || {};
  S.hold = store.get(keys.hold(), null);
  bindUi();
  const offer = shopToken ? await exchangeShopToken(shopToken) : "";
  live = new Live({
    roomId: S.roomId,
    tokenKey: "livesell.token",
    shopToken: offer,
    // Any frame may move a deadline (a sale scheduled, a hold taken): re-aim the clock.
    onEvent: (ev) => { onEvent(ev); scheduleClock(); },
    onReply: (reply, request) => { onReply(reply, request); scheduleClock(); },
    onState: setConn,
  });
  // A new identity: requests left unanswered by the previous one are not its own.
  if (shopToken && !S.signinNotice) live.clearPending();
  renderConnNotice();
  live.start();
  scheduleClock();
  window.livesell = {
    live,
    state: S,
    serverNow: () => live.serverNow(),
    get viewer() { return live.viewer; },
  };
}

// ------------------------------------------------------------------ connection state

function setConn(state, info = {}) {
  S.connState = state;
  S.connInfo = info;
  const pill = $("#conn");
  pill.dataset.state = state;
  renderConn();
  // Screen readers hear state changes, not the retry countdown ticking.
  const spoken = { live: "Connected, live", connecting: "Connecting", reconnecting: "Connection lost, reconnecting",
                   offline: "Offline", gone: "Room not found",
                   throttled: "Too many new visitors from your network, waiting to retry",
                   refused: "Shop sign-in refused" }[state];
  if (spoken) setText($("#conn-sr"), spoken);
  if (state === "gone") {
    $("#room").hidden = true;
    $("#gone").hidden = false;
    setText($("#gone-text"), info.reason || "This room does not exist.");
  }
}

function renderConn() {
  const state = S.connState;
  let text = "Connecting…";
  if (state === "live") text = "Live";
  else if (state === "reconnecting") {
    const left = (S.connInfo.at || 0) - Date.now();
    text = left > 900 ? `Reconnecting in ${Math.ceil(left / 1000)} s…` : "Reconnecting…";
  } else if (state === "offline") text = "Offline — waiting for network";
  else if (state === "gone") text = "Room not found";
  else if (state === "throttled") text = `Retrying in ${secondsUntil(S.connInfo.at)} s`;
  else if (state === "refused") text = "Sign-in refused";
  setText($("#conn-text"), text);
  renderConnNotice();
}

const secondsUntil = (at) => Math.max(1, Math.ceil(((at || 0) - Date.now()) / 1000));

/** The banner for an identity the server would not take: a network over its limit of
 *  new visitors (close 4029, retried when the server said), a refused shop sign-in
 *  (close 4001, never retried with the same token), or a refused hand-off. */
function renderConnNotice() {
  const box = $("#conn-notice");
  if (!box) return;
  let text = "";
  let guest = false;
  if (S.connState === "throttled") {
    text = `Too many new visitors from your network; retrying in ${secondsUntil(S.connInfo.at)} s.`;
  } else if (S.connState === "refused") {
    text = `${signinRefusedText({ details: { reason: S.connInfo.reason } })} Sign in on the shop again to buy, or watch as a guest.`;
    guest = true;
  } else if (S.signinNotice) {
    text = S.signinNotice;
  }
  box.hidden = !text;
  box.dataset.state = S.connState;
  setText($("#conn-notice-text"), text);
  $("#guest-btn").hidden = !guest;
}

// ------------------------------------------------------------------ events

function onEvent(ev) {
  switch (ev.type) {
    case "welcome": return onWelcome(ev);
    case "snapshot": return onSnapshot(ev);
    case "product": putProduct(ev.product); return renderShop();
    case "pinned": putProduct(ev.product); S.pins = ev.pins; return renderShop();
    case "unpinned": S.pins = ev.pins; return renderShop();
    case "stock": return onStock(ev);
    case "sale_open":
    case "sale_scheduled":
    case "sale_closed": return onSale(ev.sale);
    case "holds_voided": return onHoldsVoided(ev);
    case "sale_countdown": return onCountdown(ev);
    case "coupon_drop": S.coupons.set(ev.coupon.coupon_id, ev.coupon); toast(`Coupon drop: ${ev.coupon.title}`, "ok"); return renderPromos();
    case "coupon_count": return onCouponCount(ev.coupon_id, ev.remaining);
    case "lottery_open": rememberSeed(ev.lottery); S.lotteries.set(ev.lottery.lottery_id, ev.lottery); return renderPromos();
    case "lottery_entrants": return onEntrants(ev);
    case "lottery_drawn": return onDrawn(ev.lottery, true);
    case "likes": S.likes = ev.total; likesSent = 0; return renderLikes();
    case "viewers": S.viewers = ev; return setText($("#viewers-now"), compact(ev.now));
    case "chat": return addChat(ev);
    case "chat_deleted": return removeChat(ev.message_id);
    case "viewer_muted": return onMuted(ev);
    case "announcement": return onAnnouncement(ev);
    case "show_ended": return onShowEnded();
    case "show_live": if (S.room) S.room.state = "live"; return;
    case "room_policy": return applyPolicy(ev.policy);
    case "error": return onStrayError(ev);
    default: return undefined;
  }
}

function onWelcome(ev) {
  const changed = !S.me || S.me.viewer_id !== ev.viewer.viewer_id;
  S.me = ev.viewer;
  setText($("#me-name"), ev.viewer.nickname);
  const verified = ev.viewer.verified === true;
  $("#me-verified").hidden = !verified;
  // A shop customer's name comes from the shop; a new name would start a guest.
  $("#rename-btn").hidden = verified;
  if (verified) S.signinNotice = "";
  renderConnNotice();
  renderShop();
  renderPromos();
  S.nicknames.set(ev.viewer.viewer_id, ev.viewer.nickname);
  if (changed) {
    S.claimed = new Set(store.get(keys.claimed(), []) || []);
    S.usedCoupons = new Set(store.get(keys.used(), []) || []);
    S.entered = new Set(store.get(keys.entered(), []) || []);
    if (S.hold && S.hold.buyer && S.hold.buyer !== ev.viewer.viewer_id) setHold(null);
    renderPromos();
    renderHold();
  }
}

function onSnapshot(snap) {
  S.room = snap.room;
  const title = snap.room.title || "Live shopping";
  setText($("#room-title"), title);
  setText($("#poster-title"), title);
  document.title = `${title} · livesell`;
  setupVideo(snap.room.stream_url);
  S.products = new Map(snap.products.map((p) => [p.product_id, p]));
  S.pins = snap.pins;
  S.coupons = new Map(snap.coupons.map((c) => [c.coupon_id, c]));
  S.lotteries = new Map(snap.lotteries.map((l) => [l.lottery_id, l]));
  for (const l of snap.lotteries) if (l.state === "open") rememberSeed(l);
  S.likes = snap.likes;
  S.viewers = snap.viewers;
  setText($("#viewers-now"), compact(snap.viewers.now));
  $("#ended").hidden = !showEnded();
  if (snap.policy) applyPolicy(snap.policy, false);
  renderLikes();
  renderShop();
  renderPromos();
  renderHold();
}

/** The room policy from a snapshot or a `room_policy` event. */
function applyPolicy(policy, render = true) {
  if (!policy) return;
  const before = S.policy.slow_mode_s;
  S.policy = { ...S.policy, ...policy };
  // Slow mode off: the server lets the next message through at once.
  if (!S.policy.slow_mode_s) { S.chatReadyAt = 0; S.chatWait = ""; }
  const slow = S.policy.slow_mode_s;
  const line = $("#slow-mode");
  line.hidden = !slow;
  setText(line, slow ? `Slow mode: one message every ${slow} s` : "");
  if (render) {
    if (before !== slow && slow) toast(`Slow mode is on: one message every ${slow} s.`);
    renderShop();
    renderPromos();
  }
  renderChatGate();
}

/** A guest in a room that sells to signed-in shop customers only. */
function mustSignIn() {
  return !!(S.policy.require_verified && !(S.me && S.me.verified === true));
}

function putProduct(card) {
  if (!card) return;
  S.products.set(card.product_id, card);
}

function onStock(ev) {
  const p = S.products.get(ev.product_id);
  if (!p) return;
  p.stock = ev.stock;
  if (ev.sale) p.sale = ev.sale;
  updateCard(ev.product_id);
}

function onSale(sale) {
  const p = S.products.get(sale.product_id);
  if (!p) return;
  p.sale = sale;
  updateCard(sale.product_id);
  renderStageCountdown();
  renderHold();
}

function onCountdown(ev) {
  const p = S.products.get(ev.product_id);
  if (p && p.sale && p.sale.sale_id === ev.sale_id) p.sale.starts_at = ev.starts_at;
}

function onCouponCount(id, remaining) {
  const c = S.coupons.get(id);
  if (!c) return;
  c.remaining = remaining;
  renderPromos();
}

function onEntrants(ev) {
  const l = S.lotteries.get(ev.lottery_id);
  if (!l) return;
  l.entrants = Math.max(l.entrants || 0, ev.entrants);
  renderPromos();
}

function rememberSeed(lottery) {
  if (!lottery || !lottery.seed_hash || S.seedHashes[lottery.lottery_id]) return;
  S.seedHashes[lottery.lottery_id] = lottery.seed_hash;
  store.set(keys.seeds(), S.seedHashes);
}

function onDrawn(lottery, announce) {
  S.lotteries.set(lottery.lottery_id, lottery);
  renderPromos();
  if (announce) showWinners(lottery);
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

function onMuted(ev) {
  if (!S.me || ev.viewer_id !== S.me.viewer_id) return;
  S.mutedUntil = ev.until;
  renderMuted();
}

function onAnnouncement(ev) {
  setText($("#announce-text"), ev.text);
  $("#announce").hidden = false;
  addSystemLine("Host", ev.text);
}

function onStrayError(ev) {
  if (ev.code === "muted") {
    if (ev.details && ev.details.until) S.mutedUntil = ev.details.until;
    renderMuted();
    return;
  }
  toast(explain(ev), "error");
}

function onHoldsVoided(ev) {
  // The host stopped a sale: holds taken in it are cancelled (the server refuses
  // their checkout with sale_stopped); say so now rather than at "Place order".
  if (S.hold && ev.hold_ids.includes(S.hold.id) && !S.hold.dead) {
    S.hold.dead = REFUSALS.sale_stopped;
    store.set(keys.hold(), S.hold);
    showCheckoutMsg(REFUSALS.sale_stopped, "error");
    toast(REFUSALS.sale_stopped);
    renderHold();
    renderAllCards();
  }
}

// ------------------------------------------------------------------ replies

function onReply(reply, request) {
  const kind = request ? request.type : null;
  if (reply.type === "hold") return onHold(reply.hold);
  if (reply.type === "order_placed") return onOrder(reply.order);
  if (reply.type === "hold_released") {
    if (S.hold && S.hold.id === reply.hold_id) setHold(null);
    $("#checkout").close();
    toast("Hold released: the item went back to stock.");
    return renderAllCards();
  }
  if (reply.type === "coupon_claimed") {
    markClaimed(reply.coupon_id);
    onCouponCount(reply.coupon_id, reply.remaining);
    toast("Coupon claimed — it's ready at checkout.", "ok");
    return undefined;
  }
  if (reply.type === "lottery_entered") {
    markEntered(reply.lottery_id);
    onEntrants({ lottery_id: reply.lottery_id, entrants: reply.entrants });
    toast("You're in the giveaway. Good luck!", "ok");
    return undefined;
  }
  if (reply.type === "error" && kind === "chat") return onChatRefused(reply, request);
  if (reply.type === "error") return onRefusal(reply, request, kind);
  return undefined;
}

function onRefusal(err, request, kind) {
  const text = explain(err);
  if (kind === "buy") {
    showCardMsg(request.product_id, text);
    renderAllCards();
    return;
  }
  if (kind === "checkout" || kind === "release") {
    if (["hold_expired", "hold_not_found", "hold_released", "checked_out", "sale_stopped",
         "checkout_cancelled"].includes(err.code)) {
      if (S.hold && S.hold.id === request.hold_id) {
        S.hold.dead = text;
        store.set(keys.hold(), S.hold);
      }
    }
    showCheckoutMsg(text, "error");
    renderHold();
    return;
  }
  if (kind === "claim_coupon") {
    if (err.code === "already_claimed") markClaimed(request.coupon_id);
    if (err.code === "coupon_gone") onCouponCount(request.coupon_id, 0);
    showPromoMsg(request.coupon_id, text);
    renderPromos();
    return;
  }
  if (kind === "enter_lottery") {
    if (err.code === "already_entered") {
      markEntered(request.lottery_id);
      renderPromos();
      return;
    }
    showPromoMsg(request.lottery_id, text);
    renderPromos();
    return;
  }
  toast(text, "error");
}

function markClaimed(id) {
  S.claimed.add(id);
  store.set(keys.claimed(), [...S.claimed]);
  renderPromos();
}

function markEntered(id) {
  S.entered.add(id);
  store.set(keys.entered(), [...S.entered]);
}

// ------------------------------------------------------------------ shop

function renderShop() {
  const box = $("#cards");
  const pins = S.pins.filter((id) => S.products.has(id)).slice(0, 3);
  for (const [id, refs] of cards) {
    if (!pins.includes(id)) { refs.root.remove(); cards.delete(id); }
  }
  pins.forEach((id, i) => {
    let refs = cards.get(id);
    if (!refs) { refs = buildCard(id); cards.set(id, refs); }
    if (box.children[i] !== refs.root) box.insertBefore(refs.root, box.children[i] || null);
    updateCard(id);
  });
  $("#cards-empty").hidden = pins.length > 0;
  renderStageCountdown();
  setText($("#shop-count"), pins.length ? `${pins.length} pinned` : "");
  scheduleClock();
}

function renderAllCards() {
  for (const id of cards.keys()) updateCard(id);
}

function buildCard(id) {
  const r = {};
  r.img = h("div", { class: "pimg" });
  r.title = h("h3", { class: "ptitle", attrs: { id: `pt-${id}` } });
  r.now = h("span", { class: "price-now num" });
  r.was = h("s", { class: "price-was num" });
  r.off = h("span", { class: "price-off" });
  r.badge = h("span", { class: "badge" });
  r.when = h("span", { class: "when num" });
  r.segSold = h("span", { class: "seg-sold" });
  r.segHeld = h("span", { class: "seg-held" });
  r.segLeft = h("span", { class: "seg-left" });
  r.bar = h("div", { class: "stock-bar", attrs: { role: "img" } }, r.segSold, r.segHeld, r.segLeft);
  r.left = h("b", { class: "num", attrs: { "data-k": "left" } });
  r.held = h("b", { class: "num", attrs: { "data-k": "held" } });
  r.sold = h("b", { class: "num", attrs: { "data-k": "sold" } });
  r.scope = h("span", { class: "muted" });
  r.qty = h("select", { class: "qty", attrs: { "aria-label": "Quantity" } });
  r.buy = h("button", { type: "button", class: "btn primary buy-btn", on: { click: () => buy(id) } });
  r.msg = h("p", { class: "notice error card-msg", attrs: { role: "alert" }, hidden: true });
  r.desc = h("p", { class: "pdesc" });
  r.root = h("article", { class: "pcard", data: { productId: id }, attrs: { "aria-labelledby": `pt-${id}` } },
    r.img,
    h("div", { class: "pbody" },
      r.title,
      h("div", { class: "price-row" }, r.now, r.was, r.off),
      h("div", { class: "sale-line" }, r.badge, r.when),
      h("div", { class: "stock" }, r.bar,
        h("ul", { class: "stock-legend" },
          h("li", {}, h("span", { class: "sw left", attrs: { "aria-hidden": "true" } }), r.left, " left"),
          h("li", {}, h("span", { class: "sw held", attrs: { "aria-hidden": "true" } }), r.held, " in carts"),
          h("li", {}, h("span", { class: "sw sold", attrs: { "aria-hidden": "true" } }), r.sold, " sold"),
          h("li", { class: "scope" }, r.scope))),
      r.desc),
    h("div", { class: "buy-row" }, r.qty, r.buy),
    r.msg);
  r.imgUrl = null;
  return r;
}

function updateCard(id) {
  const r = cards.get(id);
  const p = S.products.get(id);
  if (!r || !p) return;
  const at = now();
  const sale = p.sale;
  const state = saleState(sale, at);
  const active = state === "scheduled" || state === "open";

  setText(r.title, p.title);
  setText(r.desc, p.description || "");
  r.desc.hidden = !p.description;
  if (r.imgUrl !== (p.image_url || "")) {
    r.imgUrl = p.image_url || "";
    r.img.replaceChildren();
    r.img.style.background = "";
    if (p.image_url) {
      r.img.append(h("img", { src: p.image_url, alt: "", loading: "lazy", attrs: { referrerpolicy: "no-referrer" } }));
    } else {
      r.img.style.background = tileColor(p.product_id);
      r.img.append(h("span", { text: initials(p.title), attrs: { "aria-hidden": "true" } }));
    }
  }

  // Prices: the sale price when a sale is scheduled or running, else the list price.
  const currency = (sale && sale.currency) || p.currency;
  if (active && sale.price !== p.price) {
    setText(r.now, money(sale.price, currency));
    r.now.classList.add("sale");
    setText(r.was, money(p.price, p.currency));
    r.was.hidden = false;
    const pct = p.price > 0 ? Math.round((1 - sale.price / p.price) * 100) : 0;
    setText(r.off, pct > 0 ? `−${pct}%` : "");
    r.off.hidden = pct <= 0;
  } else {
    setText(r.now, money(active ? sale.price : p.price, currency));
    r.now.classList.remove("sale");
    r.was.hidden = true;
    r.off.hidden = true;
  }

  // Stock: the sale's own units while it is on, else the product's stock.
  let total, left, held, sold, scope;
  if (active) {
    total = sale.units; held = sale.held; sold = sale.sold; left = sale.left;
    scope = `of ${sale.units} on sale`;
  } else {
    const st = p.stock || { total: 0, left: 0, held: 0, sold: 0 };
    total = st.total; held = st.held; sold = st.sold; left = st.left;
    scope = `of ${st.total}`;
  }
  const denom = Math.max(1, total, left + held + sold);
  r.segSold.style.width = `${(sold / denom) * 100}%`;
  r.segHeld.style.width = `${(held / denom) * 100}%`;
  r.segLeft.style.width = `${(left / denom) * 100}%`;
  r.bar.setAttribute("aria-label", `${left} left, ${held} in carts, ${sold} sold, ${scope}`);
  setText(r.left, left);
  setText(r.held, held);
  setText(r.sold, sold);
  setText(r.scope, scope);
  r.root.dataset.left = left;
  r.root.dataset.held = held;
  r.root.dataset.sold = sold;
  r.root.dataset.saleState = state || "none";

  // Sale line and buy button, by server time.
  r.root.classList.toggle("selling", state === "open");
  let badge = "", badgeClass = "badge", when = "", buyText = "Not on sale", canBuy = false;
  if (state === "scheduled") {
    badge = "Flash sale"; badgeClass += " scheduled";
    when = `starts in ${clock(sale.starts_at - at)}`;
    buyText = `Starts in ${clock(sale.starts_at - at)}`;
  } else if (state === "open") {
    badge = "Live deal"; badgeClass += " open";
    when = `ends in ${clock(sale.ends_at - at)} · max ${sale.limit_per_buyer} per buyer`;
    if (left > 0) { buyText = "Buy now"; canBuy = true; }
    else buyText = held > 0 ? "Sold out — carts may free up" : "Sold out";
  } else if (state === "ended" || state === "stopped") {
    badge = "Sale over"; badgeClass += " ended";
    when = `${sold} sold`;
    buyText = "Sale ended";
  } else {
    when = "Ask the host about a deal";
  }
  if (active && mustSignIn()) { buyText = "Sign in on the shop to buy"; canBuy = false; }
  if (showEnded()) { buyText = "Show ended"; canBuy = false; }
  const pending = live && live.isPending((f) => f.type === "buy" && f.product_id === id);
  if (pending) { buyText = live.state === "live" ? "Reserving…" : "Waiting for connection…"; canBuy = false; }
  r.badge.className = badgeClass;
  r.badge.hidden = !badge;
  setText(r.badge, badge);
  setText(r.when, when);
  setText(r.buy, buyText);
  const wasDisabled = r.buy.disabled;
  r.buy.disabled = !canBuy;
  if (canBuy && wasDisabled && state === "open" && !S.armedAt[id]) {
    // Wall-clock moment the button armed, independent of this device's Date.
    S.armedAt[id] = performance.timeOrigin + performance.now();
  }
  r.buy.setAttribute("aria-label", canBuy ? `Buy ${p.title} for ${money(sale.price, currency)}` : `${buyText}: ${p.title}`);

  // Quantity: up to the per-buyer limit and what is left (and the server's cap of 10).
  const maxQty = active ? Math.max(1, Math.min(sale.limit_per_buyer, Math.max(left, 1), 10)) : 1;
  if (r.qty.options.length !== maxQty) {
    const keep = Number(r.qty.value) || 1;
    r.qty.replaceChildren(...Array.from({ length: maxQty }, (_, i) => h("option", { value: String(i + 1), text: `× ${i + 1}` })));
    r.qty.value = String(Math.min(keep, maxQty));
  }
  r.qty.disabled = !canBuy || maxQty === 1;
  r.qty.setAttribute("aria-label", `Quantity of ${p.title}`);
}

function showCardMsg(id, text) {
  const r = cards.get(id);
  if (!r) { toast(text, "error"); return; }
  setText(r.msg, text);
  r.msg.hidden = false;
  clearTimeout(r.msgTimer);
  r.msgTimer = setTimeout(() => { r.msg.hidden = true; }, 6000);
}

function buy(id) {
  const r = cards.get(id);
  const p = S.products.get(id);
  if (!r || !p || !live) return;
  if (S.hold && !S.hold.dead && saleState(p.sale) === "open" && S.hold.expires_at > now()) {
    // One hold at a time keeps the checkout simple; open the one we have.
    openCheckout();
    return;
  }
  if (live.isPending((f) => f.type === "buy" && f.product_id === id)) return;
  r.msg.hidden = true;
  live.request({ type: "buy", product_id: id, quantity: Number(r.qty.value) || 1 });
  updateCard(id);
}

// ------------------------------------------------------------------ hold and checkout

function setHold(hold) {
  S.hold = hold;
  store.set(keys.hold(), hold);
  renderHold();
}

function onHold(hold) {
  const p = S.products.get(hold.product_id);
  setHold({ ...hold, buyer: S.me ? S.me.viewer_id : null, title: p ? p.title : "Your item",
            image_url: p ? p.image_url : "" });
  renderAllCards();
  openCheckout();
}

function onOrder(order) {
  S.lastOrder = order;
  if (order.coupon_id) {
    S.usedCoupons.add(order.coupon_id);
    store.set(keys.used(), [...S.usedCoupons]);
  }
  const title = (S.hold && S.hold.id === order.hold_id && S.hold.title) ||
                (S.products.get(order.product_id) || {}).title || "your item";
  if (S.hold && S.hold.id === order.hold_id) setHold(null);
  const dlg = $("#checkout");
  if (!dlg.open) dlg.showModal();
  $("#order-done").hidden = false;
  setText($("#order-text"), `${order.quantity} × ${title} · paid ${money(order.total, order.currency)}` +
          (order.discount ? ` (saved ${money(order.discount, order.currency)})` : "") +
          ` · order ${order.order_id}`);
  toast("Order placed!", "ok");
  renderHold();
  renderAllCards();
  renderPromos();
}

function showCheckoutMsg(text, kind) {
  const el = $("#checkout-msg");
  el.className = `notice ${kind}`;
  setText(el, text);
  el.hidden = false;
}

function openCheckout() {
  const dlg = $("#checkout");
  if (S.hold) {
    $("#order-done").hidden = true;
    $("#checkout-msg").hidden = true;
  }
  renderHold();
  if (!dlg.open) dlg.showModal();
}

/** A preview of the server's rule (begin_checkout.lua); the server decides. */
function couponDiscount(coupon, subtotal, currency) {
  if (!coupon) return 0;
  if (coupon.currency !== currency) return 0;
  if (subtotal < coupon.min_spend) return 0;
  if (coupon.kind === "percent") return Math.floor((subtotal * coupon.value) / 100);
  return Math.min(coupon.value, subtotal);
}

function renderHold() {
  const hold = S.hold;
  const bar = $("#cartbar");
  const dlg = $("#checkout");
  const at = now();
  const alive = hold && !hold.dead && hold.expires_at > at;
  bar.hidden = !alive;
  const checkoutPending = hold && live && live.isPending((f) => f.type === "checkout" && f.hold_id === hold.id);
  const releasePending = hold && live && live.isPending((f) => f.type === "release" && f.hold_id === hold.id);
  if (!hold) {
    $("#checkout-item").hidden = true;
    $("#hold-timer").hidden = true;
    $("#coupon-field").hidden = true;
    $(".totals", dlg).hidden = true;
    $("#pay-btn").hidden = true;
    $("#release-btn").hidden = true;
    return;
  }
  $("#checkout-item").hidden = false;
  $("#hold-timer").hidden = false;
  $(".totals", dlg).hidden = false;
  $("#pay-btn").hidden = false;
  $("#release-btn").hidden = false;
  setText($("#cartbar-title"), `${hold.quantity} × ${hold.title} held for you`);
  setText($("#cartbar-timer"), clock(hold.expires_at - at));

  const item = $("#checkout-item");
  if (item.dataset.holdId !== hold.id) {
    item.dataset.holdId = hold.id;
    const img = h("div", { class: "pimg" });
    if (hold.image_url) img.append(h("img", { src: hold.image_url, alt: "" }));
    else { img.style.background = tileColor(hold.product_id); img.append(h("span", { text: initials(hold.title) })); }
    item.replaceChildren(img, h("div", {},
      h("div", { class: "ptitle", text: hold.title }),
      h("div", { class: "muted small num", text: `${hold.quantity} × ${money(hold.unit_price, hold.currency)}` })));
  }

  // Coupons this viewer claimed and has not used.
  const select = $("#coupon-select");
  const usable = [...S.claimed].filter((id) => !S.usedCoupons.has(id) && S.coupons.has(id))
    .map((id) => S.coupons.get(id)).filter((c) => c.expires_at > at);
  const sig = usable.map((c) => c.coupon_id).join(",");
  if (select.dataset.sig !== sig) {
    const keep = select.value;
    select.dataset.sig = sig;
    select.replaceChildren(h("option", { value: "", text: usable.length ? "No coupon" : "No coupons claimed" }),
      ...usable.map((c) => h("option", { value: c.coupon_id, text: `${c.title} (${couponText(c)})` })));
    select.value = usable.some((c) => c.coupon_id === keep) ? keep : (usable[0] ? usable[0].coupon_id : "");
  }
  $("#coupon-field").hidden = false;
  select.disabled = !usable.length || checkoutPending;
  const subtotal = hold.unit_price * hold.quantity;
  const coupon = S.coupons.get(select.value);
  const discount = couponDiscount(coupon, subtotal, hold.currency);
  setText($("#sum-subtotal"), money(subtotal, hold.currency));
  $("#sum-discount-row").hidden = !coupon;
  setText($("#sum-discount"), coupon ? (discount ? `−${money(discount, hold.currency)}` : "not applicable") : "");
  setText($("#sum-total"), money(subtotal - discount, hold.currency));

  const timer = $("#hold-timer");
  const pay = $("#pay-btn");
  if (hold.dead || hold.expires_at <= at) {
    timer.classList.add("expired");
    setText(timer.firstElementChild, hold.dead ? "Reservation ended" : "Hold expired");
    setText($("#hold-remaining"), "0:00");
    pay.disabled = true;
    setText(pay, "Hold ended");
    $("#release-btn").hidden = true;
    if (!hold.dead && !checkoutPending) {
      hold.dead = REFUSALS.hold_expired;
      store.set(keys.hold(), hold);
      showCheckoutMsg(REFUSALS.hold_expired, "error");
      renderAllCards();
    }
    bar.hidden = true;
  } else {
    timer.classList.remove("expired");
    setText(timer.firstElementChild, "Held for you for");
    setText($("#hold-remaining"), clock(hold.expires_at - at));
    pay.disabled = !!(checkoutPending || releasePending);
    setText(pay, checkoutPending ? (live.state === "live" ? "Placing order…" : "Waiting for connection…")
                                 : `Place order · ${money(subtotal - discount, hold.currency)}`);
    $("#release-btn").disabled = !!(checkoutPending || releasePending);
  }
}

function checkout() {
  const hold = S.hold;
  if (!hold || hold.dead || !live) return;
  if (live.isPending((f) => f.type === "checkout" && f.hold_id === hold.id)) return;
  $("#checkout-msg").hidden = true;
  const coupon = $("#coupon-select").value;
  const frame = { type: "checkout", hold_id: hold.id };
  if (coupon) frame.coupon_id = coupon;
  live.request(frame);
  renderHold();
}

function release() {
  const hold = S.hold;
  if (!hold || !live) return;
  live.request({ type: "release", hold_id: hold.id });
  renderHold();
}

// ------------------------------------------------------------------ coupons and giveaways

function couponText(c) {
  const value = c.kind === "percent" ? `${c.value}% off` : `${money(c.value, c.currency)} off`;
  return c.min_spend ? `${value} orders over ${money(c.min_spend, c.currency)}` : value;
}

function showPromoMsg(id, text) {
  const refs = promoEls.get(id);
  if (refs) refs.error = text;
  toast(text, "error");
}

function renderPromos() {
  const at = now();
  const couponBox = $("#coupons");
  const lotteryBox = $("#lotteries");
  const coupons = [...S.coupons.values()].filter((c) => c.expires_at > at)
    .sort((a, b) => b.expires_at - a.expires_at).slice(0, 3);
  const open = [...S.lotteries.values()].filter((l) => l.state === "open" || l.state === "drawing");
  const drawn = [...S.lotteries.values()].filter((l) => l.state === "drawn" && l.result)
    .sort((a, b) => (b.result.drawn_at || 0) - (a.result.drawn_at || 0)).slice(0, 1);
  const wanted = new Set([...coupons.map((c) => c.coupon_id), ...open.map((l) => l.lottery_id),
                          ...drawn.map((l) => "d:" + l.lottery_id)]);
  for (const [id, refs] of promoEls) {
    if (!wanted.has(id)) { refs.root.remove(); promoEls.delete(id); }
  }
  coupons.forEach((c, i) => place(couponBox, i, c.coupon_id, () => buildCoupon(c.coupon_id), (r) => updateCoupon(r, c, at)));
  [...open, ...drawn].forEach((l, i) => {
    const isOpen = l.state !== "drawn";
    const key = isOpen ? l.lottery_id : "d:" + l.lottery_id;
    place(lotteryBox, i, key, () => buildLottery(l.lottery_id, isOpen),
          (r) => (isOpen ? updateOpenLottery(r, l, at) : updateDrawnLottery(r, l)));
  });
  $("#promos").hidden = !coupons.length && !open.length && !drawn.length && $("#winner-banner").hidden;
  if (S.hold) renderHold();
}

function place(box, index, key, build, update) {
  let refs = promoEls.get(key);
  if (!refs) { refs = build(); promoEls.set(key, refs); }
  if (box.children[index] !== refs.root) box.insertBefore(refs.root, box.children[index] || null);
  update(refs);
}

function buildCoupon(id) {
  const r = { kind: "coupon" };
  r.title = h("span", { class: "promo-title" });
  r.meta = h("span", { class: "promo-meta num" });
  r.btn = h("button", { type: "button", class: "btn primary small", on: { click: () => claim(id) } });
  r.root = h("div", { class: "promo coupon", data: { couponId: id } },
    h("div", { class: "promo-icon", text: "%", attrs: { "aria-hidden": "true" } }),
    h("div", { class: "promo-main" }, r.title, r.meta), r.btn);
  return r;
}

function updateCoupon(r, c, at) {
  const claimed = S.claimed.has(c.coupon_id);
  const used = S.usedCoupons.has(c.coupon_id);
  setText(r.title, `${c.title} · ${couponText(c)}`);
  setText(r.meta, `${c.remaining} of ${c.count} left · expires in ${clock(c.expires_at - at)}`);
  r.root.dataset.remaining = c.remaining;
  const pending = live && live.isPending((f) => f.type === "claim_coupon" && f.coupon_id === c.coupon_id);
  let text = "Claim", disabled = false;
  if (used) { text = "Used"; disabled = true; }
  else if (claimed) { text = "Claimed ✓"; disabled = true; }
  else if (pending) { text = "Claiming…"; disabled = true; }
  else if (c.remaining <= 0) { text = "All gone"; disabled = true; }
  else if (showEnded()) { text = "Show ended"; disabled = true; }
  else if (mustSignIn()) { text = "Sign in on the shop to claim"; disabled = true; }
  setText(r.btn, text);
  r.btn.disabled = disabled;
  r.btn.setAttribute("aria-label", `${text}: ${c.title}`);
}

function claim(id) {
  if (!live || S.claimed.has(id)) return;
  if (live.isPending((f) => f.type === "claim_coupon" && f.coupon_id === id)) return;
  live.request({ type: "claim_coupon", coupon_id: id });
  renderPromos();
}

function buildLottery(id, open) {
  const r = { kind: "lottery" };
  r.title = h("span", { class: "promo-title" });
  r.meta = h("span", { class: "promo-meta num" });
  r.how = h("span", { class: "promo-meta" });
  r.seed = h("span", { class: "seed" });
  r.btn = h("button", { type: "button", class: open ? "btn accent small" : "btn small",
                        on: { click: () => (open ? enter(id) : openVerify(id)) } });
  r.root = h("div", { class: "promo lottery", data: { lotteryId: id, state: open ? "open" : "drawn" } },
    h("div", { class: "promo-icon", text: "WIN", attrs: { "aria-hidden": "true" } }),
    h("div", { class: "promo-main" }, r.title, r.how, r.meta, r.seed), r.btn);
  return r;
}

function updateOpenLottery(r, l, at) {
  setText(r.title, `Giveaway: ${l.prize}`);
  setText(r.how, l.entry === "keyword" ? `Comment “${l.keyword}” in chat to enter` : "Tap Enter to join the draw");
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
  r.btn.setAttribute("aria-label", entered ? `Entered: ${l.prize}` : `Enter the giveaway for ${l.prize}`);
}

function updateDrawnLottery(r, l) {
  const winners = l.result.winners || [];
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

async function openVerify(id) {
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
  setText(summary, outcome.ok
    ? `Verified: the winner${outcome.expected.length === 1 ? " was" : "s were"} drawn fairly from ${lottery.result.entrants.length} entrant${lottery.result.entrants.length === 1 ? "" : "s"}.`
    : "Verification failed: the published draw does not add up.");
  const r = lottery.result || {};
  const rows = [
    ["Prize", lottery.prize], ["Seed hash (published at opening)", lottery.seed_hash],
    ["Seed (revealed at the draw)", r.seed], ["Entrants digest", r.entrants_digest],
    ["Entrants", (r.entrants || []).join(", ") || "none"], ["Winners", (r.winners || []).join(", ") || "none"],
  ];
  for (const [k, v] of rows) data.append(h("dt", { text: k }), h("dd", { text: v ?? "" }));
}

// ------------------------------------------------------------------ chat

const MAX_CHAT = 200;
const chatEls = new Map();

function chatNearBottom(list) {
  return list.scrollHeight - list.scrollTop - list.clientHeight < 60;
}

function appendChat(li) {
  const list = $("#chat-list");
  const stick = chatNearBottom(list);
  const empty = document.getElementById("chat-empty");
  if (empty) empty.remove();
  list.append(li);
  while (list.children.length > MAX_CHAT) {
    const first = list.firstElementChild;
    if (first.dataset.messageId) chatEls.delete(first.dataset.messageId);
    first.remove();
  }
  if (stick) list.scrollTop = list.scrollHeight;
}

function addChat(ev) {
  S.nicknames.set(ev.viewer_id, ev.nickname);
  if (chatEls.has(ev.message_id)) return;
  const mine = S.me && ev.viewer_id === S.me.viewer_id;
  // Only the server's flag marks the host; a viewer's nickname never earns the badge.
  const who = ev.host === true
    ? h("span", { class: "nick host-badge", text: "Host" })
    : h("span", { class: "nick", text: ev.nickname });
  const li = h("li", { class: `msg${mine ? " me" : ""}${ev.host === true ? " host" : ""}`, data: { messageId: ev.message_id } },
    who,
    h("span", { class: "text", text: ev.text }));
  chatEls.set(ev.message_id, li);
  appendChat(li);
}

function addSystemLine(who, text) {
  appendChat(h("li", { class: "msg system" }, h("span", { class: "nick", text: who }), h("span", { text })));
}

function removeChat(id) {
  const li = chatEls.get(id);
  if (li) { li.remove(); chatEls.delete(id); }
}

function sendChat(e) {
  e.preventDefault();
  const input = $("#chat-input");
  const text = input.value.trim();
  if (!text || !live) return;
  if (S.mutedUntil > now()) { renderMuted(); return; }
  if (S.chatReadyAt > now()) { renderChatGate(); return; }
  if (!live.sendOnce({ type: "chat", text })) {
    toast("Not connected — your message was not sent. It will be here when you retry.", "error");
    return;
  }
  input.value = "";
  S.chatWait = "";
  if (S.policy.slow_mode_s) S.chatReadyAt = now() + S.policy.slow_mode_s * 1000;
  renderChatGate();
  scheduleClock();
  // Commenting a giveaway's keyword enters it on the server; asking once more by
  // request tells this page for sure ("entered" or "already entered").
  const norm = normalize(text);
  for (const l of S.lotteries.values()) {
    if (l.state === "open" && l.entry === "keyword" && l.keyword && norm.includes(l.keyword) &&
        !S.entered.has(l.lottery_id) && !mustSignIn()) {
      enter(l.lottery_id, norm);
    }
  }
}

function renderMuted() {
  const at = now();
  const muted = S.mutedUntil > at;
  const notice = $("#chat-notice");
  notice.hidden = !muted;
  if (muted) setText(notice, `The host muted you. You can chat again at ${timeOfDay(S.mutedUntil)} (in ${clock(S.mutedUntil - at)}).`);
  $("#chat-input").disabled = muted;
  renderChatGate();
}

/** A chat message the server refused: put its text back (unless something new was
 *  typed meanwhile) and, for slow mode or a busy room, count down to the moment it
 *  may go. */
function onChatRefused(err, request) {
  const input = $("#chat-input");
  if (request && request.text && !input.value.trim()) input.value = request.text;
  const wait = err.details && Number(err.details.retry_after_s);
  if (err.code === "slow_mode" || err.code === "chat_busy") {
    const seconds = Number.isFinite(wait) && wait > 0 ? Math.ceil(wait) : 1;
    S.chatReadyAt = now() + seconds * 1000;
    S.chatWait = err.code;
    renderChatGate();
    scheduleClock();
    return;
  }
  if (err.code === "muted") {
    if (err.details && err.details.until) S.mutedUntil = err.details.until;
    renderMuted();
    return;
  }
  toast(explain(err), "error");
}

/** The send button: "Wait N s" while slow mode (or a busy room) holds the next
 *  message back, with a line saying why when the server refused one. */
function renderChatGate() {
  const at = now();
  const muted = S.mutedUntil > at;
  const left = S.chatReadyAt - at;
  const waiting = left > 0;
  const secs = Math.max(1, Math.ceil(left / 1000));
  const send = $("#chat-send");
  setText(send, waiting ? `Wait ${secs} s` : "Send");
  send.disabled = muted || waiting;
  send.setAttribute("aria-label", waiting ? `Send, available in ${secs} seconds` : "Send");
  const note = $("#chat-wait");
  let text = "";
  if (waiting && S.chatWait === "slow_mode") text = `Slow mode: wait ${secs} s. Your message is still in the box.`;
  else if (waiting && S.chatWait === "chat_busy") text = `The chat is busy: wait ${secs} s. Your message is still in the box.`;
  if (!waiting) S.chatWait = "";
  note.hidden = !text;
  setText(note, text);
}

// ------------------------------------------------------------------ likes

let likesUnsent = 0;
let likesSent = 0;
let likeTimer = null;

function renderLikes() {
  setText($("#likes-total"), compact(S.likes + likesUnsent + likesSent));
}

function like() {
  likesUnsent += 1;
  renderLikes();
  const btn = $("#like-btn");
  btn.classList.remove("pop");
  void btn.offsetWidth; // restart the animation
  btn.classList.add("pop");
  setTimeout(() => btn.classList.remove("pop"), 140);
  const heart = h("span", { class: "heart" });
  heart.style.setProperty("--dx", `${Math.round((Math.random() - 0.5) * 50)}px`);
  heart.innerHTML = '<svg viewBox="0 0 24 24" width="22" height="22"><path fill="currentColor" d="M12 20.6s-7.4-4.5-9.4-9C1.2 8.3 3.1 4.6 6.8 4.6c2.1 0 3.5 1.1 5.2 3 1.7-1.9 3.1-3 5.2-3 3.7 0 5.6 3.7 4.2 7-2 4.5-9.4 9-9.4 9z"/></svg>';
  $("#hearts").append(heart);
  setTimeout(() => heart.remove(), 1500);
  if (!likeTimer) likeTimer = setTimeout(flushLikes, 300);
}

function flushLikes() {
  likeTimer = null;
  if (!likesUnsent || !live) return;
  const count = Math.min(likesUnsent, 50);
  if (live.send({ type: "like", count })) {
    likesUnsent -= count;
    likesSent += count;
  }
  if (likesUnsent) likeTimer = setTimeout(flushLikes, 300);
}

// ------------------------------------------------------------------ video

let videoUrl = null;

function setupVideo(url) {
  if (url === videoUrl) return;
  videoUrl = url;
  const video = $("#video");
  const poster = $("#poster");
  const text = $("#poster-text");
  const box = $(".video-box");
  const showPoster = (msg) => {
    video.hidden = true;
    box.classList.remove("has-video");
    poster.hidden = false;
    setText(text, msg);
  };
  if (!url) {
    video.removeAttribute("src");
    showPoster("The host has not started a video stream. Products, sales and chat are live below.");
    return;
  }
  const hls = /\.m3u8($|[?#])/i.test(url);
  if (hls && !video.canPlayType("application/vnd.apple.mpegurl")) {
    showPoster("This stream uses HLS, which this browser cannot play on its own. Open the show in Safari or on a phone — shopping and chat work here.");
    return;
  }
  video.onerror = () => showPoster("The video stream could not be played right now. Shopping and chat still work.");
  video.onplaying = () => { poster.hidden = true; };
  video.controls = true;
  video.src = url;
  video.hidden = false;
  box.classList.add("has-video");
  poster.hidden = false;
  setText(text, "Starting the stream…");
  const p = video.play();
  if (p && p.catch) {
    p.catch((err) => {
      // Autoplay refused: uncover the player so its controls can start it.
      if (err && err.name === "NotAllowedError") poster.hidden = true;
    });
  }
}

// ------------------------------------------------------------------ clock

let clockTimer = null;

/** Re-render the time-dependent parts exactly when a displayed second changes
 *  or a sale opens or closes, by server time. */
function scheduleClock() {
  clearTimeout(clockTimer);
  const at = now();
  const targets = [];
  for (const id of S.pins) {
    const p = S.products.get(id);
    if (p && p.sale && p.sale.state !== "stopped") targets.push(p.sale.starts_at, p.sale.ends_at);
  }
  if (S.hold) targets.push(S.hold.expires_at);
  for (const c of S.coupons.values()) targets.push(c.expires_at);
  for (const l of S.lotteries.values()) if (l.state === "open") targets.push(l.closes_at);
  if (S.mutedUntil) targets.push(S.mutedUntil);
  if (S.chatReadyAt > at) targets.push(S.chatReadyAt);
  let wait = 1000;
  for (const t of targets) wait = Math.min(wait, nextFlip(t, at));
  clockTimer = setTimeout(tick, Math.max(1, Math.ceil(wait) + 1));
}

/** A countdown on the video itself for the next flash sale starting within a minute. */
function renderStageCountdown() {
  const at = now();
  let next = null;
  for (const id of S.pins) {
    const p = S.products.get(id);
    if (p && saleState(p.sale, at) === "scheduled" && p.sale.starts_at - at <= 60000 &&
        (!next || p.sale.starts_at < next.sale.starts_at)) next = p;
  }
  const box = $("#stage-countdown");
  box.hidden = !next;
  if (!next) return;
  setText($("#sc-title"), next.title);
  setText($("#sc-time"), clock(next.sale.starts_at - at));
}

function tick() {
  renderAllCards();
  renderStageCountdown();
  renderHold();
  renderPromos();
  renderConn();
  if (S.mutedUntil) renderMuted();
  renderChatGate();
  scheduleClock();
}

// ------------------------------------------------------------------ UI wiring

function bindUi() {
  $("#chat-form").addEventListener("submit", sendChat);
  $("#like-btn").addEventListener("click", like);
  $("#announce-close").addEventListener("click", () => { $("#announce").hidden = true; });
  $("#cartbar-open").addEventListener("click", openCheckout);
  $("#checkout-close").addEventListener("click", () => $("#checkout").close());
  $("#verify-close").addEventListener("click", () => $("#verify").close());
  $("#pay-btn").addEventListener("click", checkout);
  $("#release-btn").addEventListener("click", release);
  $("#coupon-select").addEventListener("change", renderHold);
  $("#checkout").addEventListener("close", () => {
    if (S.hold && S.hold.dead) setHold(null);
    $("#order-done").hidden = true;
  });
  $("#rename-btn").addEventListener("click", () => {
    $("#rename-form").hidden = false;
    $("#rename-input").value = S.me ? S.me.nickname : "";
    $("#rename-input").focus();
  });
  $("#rename-cancel").addEventListener("click", () => { $("#rename-form").hidden = true; $("#rename-btn").focus(); });
  $("#rename-form").addEventListener("submit", rename);
  $("#guest-btn").addEventListener("click", () => {
    // Carry on without the refused sign-in: the server issues (or keeps) a guest.
    S.signinNotice = "";
    $("#guest-btn").hidden = true;
    if (live) live.start();
  });
}

async function rename(e) {
  e.preventDefault();
  const nickname = $("#rename-input").value.trim();
  if (!nickname) return;
  if (S.hold && !S.hold.dead && S.hold.expires_at > now()) {
    toast("Finish or release your hold before changing your name.", "error");
    return;
  }
  const res = await api("POST", "/api/session", { nickname });
  if (!res.ok) {
    toast(res.error.message || explain(res.error), "error");
    return;
  }
  live.clearPending();
  store.set("livesell.token", res.data.token);
  $("#rename-form").hidden = true;
  toast(`You're now chatting as ${res.data.nickname}.`, "ok");
  live.reconnect();
}

start();
