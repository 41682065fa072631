// The connection pill in the top bar; the outage banner under it while the
// connection is down or coming back (what still works, what waits); and the banner
// for an identity the server would not take: a network over its limit of new
// visitors (close 4029, retried when the server said), a refused shop sign-in
// (close 4001, never retried with the same token), or a refused hand-off.

import { $, setText } from "../util.js";
import { onConnection } from "./checkout.js";
import { S } from "./state.js";
import { signinRefusedText } from "./words.js";

// What still works without the connection, and what waits for it: said in the
// outage banner and to screen readers when the connection goes.
const OUTAGE_HELP = "You can keep watching the video. Buying, bids and chat wait until you're back online.";

const SPOKEN = {
  live: "Connected, live", connecting: "Connecting",
  reconnecting: `Connection lost, reconnecting. ${OUTAGE_HELP}`,
  offline: `Offline. ${OUTAGE_HELP}`, gone: "Room not found",
  throttled: "Too many new visitors from your network, waiting to retry",
  refused: "Shop sign-in refused",
};

const secondsUntil = (at) => Math.max(1, Math.ceil(((at || 0) - Date.now()) / 1000));

export function setConn(state, info = {}) {
  S.connState = state;
  S.connInfo = info;
  $("#conn").dataset.state = state;
  renderConn();
  // Screen readers hear state changes, not the retry countdown ticking.
  if (SPOKEN[state]) setText($("#conn-sr"), SPOKEN[state]);
  if (state === "gone") {
    $("#room").hidden = true;
    $("#gone").hidden = false;
    setText($("#gone-text"), info.reason || "This room does not exist.");
  }
  // A checkout asked for while offline is checked again once the page is back.
  onConnection(state, info);
}

export function renderConn() {
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
  renderOutage();
  renderConnNotice();
}

/** The outage banner: shown while the connection is down or reconnecting (not only
 *  the pill), gone the moment it is live again. Not a live region itself: its
 *  countdown would be read every second; #conn-sr says the change once. */
function renderOutage() {
  const box = $("#outage");
  if (!box) return;
  const state = S.connState;
  const down = state === "reconnecting" || state === "offline";
  box.hidden = !down;
  box.dataset.state = state;
  if (!down) return;
  let title = "Connection lost";
  let when = "Reconnecting…";
  if (state === "offline") {
    title = "You're offline";
    when = "Waiting for the network…";
  } else {
    const left = (S.connInfo.at || 0) - Date.now();
    if (left > 900) when = `Reconnecting in ${Math.ceil(left / 1000)} s…`;
  }
  setText($("#outage-title"), title);
  setText($("#outage-when"), when);
  setText($("#outage-help"), OUTAGE_HELP);
}

export function renderConnNotice() {
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
