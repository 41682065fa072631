// Who the viewer is: the shop sign-in hand-off (a JWT in the URL fragment traded
// for a livesell token), the `welcome` that names the viewer, and a change of name
// (a new guest identity).

import { $, api, setText, store, toast } from "../util.js";
import { renderHold, setHold } from "./checkout.js";
import { renderConnNotice } from "./connection.js";
import { loadOrders } from "./orders.js";
import { renderShop } from "./cards.js";
import { renderPromos } from "./promos.js";
import { S, keys, live, now } from "./state.js";
import { explain, signinRefusedText } from "./words.js";

/** A shop that links or embeds this page hands over its signed sign-in in the
 *  fragment (`/r/{room}#shop_token=<jwt>`), which browsers never send to a server.
 *  Read it once and take it out of the address bar and the history entry at once. */
export function takeShopToken() {
  const fragment = location.hash.startsWith("#") ? location.hash.slice(1) : "";
  if (!fragment.includes("shop_token=")) return "";
  const params = new URLSearchParams(fragment);
  const token = (params.get("shop_token") || "").trim();
  params.delete("shop_token");
  const rest = params.toString();
  history.replaceState(history.state, "", location.pathname + location.search + (rest ? `#${rest}` : ""));
  return token;
}

/** Trade the shop's token for a livesell session token, kept where the guest token
 *  is kept. Returns the shop token when it should be offered on the WebSocket
 *  instead (the exchange could not be reached), else "". */
export async function exchangeShopToken(shopToken) {
  const res = await api("POST", "/api/session", { shop_token: shopToken });
  if (res.ok && res.data && res.data.token) {
    store.set("livesell.token", res.data.token);
    return "";
  }
  if (res.status === 0 || res.status >= 500) return shopToken;
  S.signinNotice = `${signinRefusedText(res.error)} You're watching as a guest: sign in on the shop again to buy.`;
  return "";
}

export function onWelcome(ev) {
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
    // Its holds and orders (the per-buyer limits) and the coupons its orders used.
    loadOrders();
    renderShop();
    if (S.hold && S.hold.buyer && S.hold.buyer !== ev.viewer.viewer_id) setHold(null);
    renderPromos();
    renderHold();
  }
}

export function openRename() {
  $("#rename-form").hidden = false;
  $("#rename-input").value = S.me ? S.me.nickname : "";
  $("#rename-input").focus();
}

export function cancelRename() {
  $("#rename-form").hidden = true;
  $("#rename-btn").focus();
}

export async function rename(e) {
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

/** Carry on without a refused sign-in: the server issues (or keeps) a guest. */
export function watchAsGuest() {
  S.signinNotice = "";
  $("#guest-btn").hidden = true;
  if (live) live.start();
}
