// The host console's one state store `S` (panels read it, the event handlers in
// ../host.js write it), the room's connection, server time, the host-key API call
// and the outcome line every form shows. The rules (sale state, limits, policy)
// are the server's: `S` only keeps what it last said.

import { api, setText } from "../util.js";

export const S = {
  roomId: null,
  hostKey: null,
  room: null,
  products: new Map(),
  pins: [],
  coupons: new Map(),
  lotteries: new Map(),
  auctions: new Map(), // auction_id -> the auction as the server last sent it
  polls: new Map(), // poll_id -> the poll as the server last sent it
  questions: new Map(), // question_id -> the question as the server last sent it (Q&A)
  deals: new Map(), // deal_id -> the group deal as the server last sent it
  groups: new Map(), // group_id -> the group as the server last sent it
  pinned: null, // the pinned message above the viewers' chat, or null
  mutes: new Map(), // viewer_id -> { until, nickname }: the viewers muted now
  nicknames: new Map(),
  stats: null,
  samples: [],
  editing: null,
  selected: null, // product_id the P and S shortcuts act on (./selection.js)
  policy: { require_verified: false, limit_per_ip: false, slow_mode_s: 0 },
  // The server's limits (room state `limits`, docs/protocol.md "Room state"):
  // max_pins, max_quantity_per_buy, max_holds_per_viewer, the text lengths
  // (*_max_length) and max_slow_mode_s. Null until the room's state arrives; the
  // server checks every action whatever the page shows.
  limits: null,
};

/** The room's WebSocket (live.js), watched as a viewer that is not counted. */
export let live = null;
export function setLive(connection) { live = connection; }

/** Server time now, in ms. */
export const now = () => (live ? live.serverNow() : Date.now());

/** One of the server's limits, or null before the room's state arrived. */
export const limit = (name) => (S.limits && Number.isFinite(S.limits[name]) ? S.limits[name] : null);

/** `api` on this room's path, with the host key; `options` as `api`'s (timeoutMs). */
export function hostApi(method, path, body, options = {}) {
  return api(method, `/api/rooms/${encodeURIComponent(S.roomId)}${path}`, body, { "X-Host-Key": S.hostKey }, options);
}

/** Show an action's outcome next to its form: the confirmation or the server's error. */
export function report(el, res, okText) {
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

/** A "Minimum fan level" input (giveaways, group deals): its number, or 0 (left out
 *  of the request) when empty; anything else is sent as typed for the server to
 *  refuse in its words. */
export function minLevelOf(input) {
  const text = input.value.trim();
  if (!text) return 0;
  const n = Number(text);
  return Number.isFinite(n) ? n : text;
}

/** The currency most products are priced in (revenue is shown in it). */
export function currencyOf() {
  const counts = new Map();
  for (const p of S.products.values()) counts.set(p.currency, (counts.get(p.currency) || 0) + 1);
  let best = "USD", n = 0;
  for (const [c, k] of counts) if (k > n) { best = c; n = k; }
  return best;
}

/** A currency field that follows the catalogue's currency (`currencyOf`) until the
 *  host types one of their own; emptied and left, it follows again. The coupon
 *  drop's and the referral reward coupon's fields are two of these. `fill` when the
 *  catalogue changes, `reset` for another room, `listen` once to follow what the
 *  host types (`typed` and `left` are the field's input and blur listeners). */
export function followCatalogueCurrency(selector) {
  const field = () => document.querySelector(selector);
  const follower = {
    fill() {
      const f = field();
      if (f.dataset.typed || document.activeElement === f) return;
      const currency = currencyOf();
      if (f.value !== currency) f.value = currency;
    },
    reset() {
      const f = field();
      delete f.dataset.typed;
      f.value = currencyOf();
    },
    typed() {
      const f = field();
      if (f.value.trim()) f.dataset.typed = "1";
      else delete f.dataset.typed;
    },
    left() {
      const f = field();
      if (!f.value.trim()) { delete f.dataset.typed; f.value = currencyOf(); }
    },
    listen() {
      field().addEventListener("input", follower.typed);
      field().addEventListener("blur", follower.left);
    },
  };
  return follower;
}
