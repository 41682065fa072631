// The room policy panel: require signed-in shop customers, the per-buyer limit
// also per network address, and slow mode. It shows the policy the server holds
// (snapshot, PATCH answer, or a `room_policy` event caused by any console) and
// sends only the field that changed.

import { $, setText } from "../util.js";
import { S, hostApi, report } from "./state.js";

const SLOW_PRESETS = ["0", "5", "10", "30", "60"];
// `room_policy` events seen. The server sends a change's event before its PATCH
// answer, and events arrive in order: an answer read after an event arrived is no
// newer than that event (it may be older: another console's change that followed),
// so it is not drawn over it.
let policyEvents = 0;

/** A `room_policy` event: the newest policy, whoever changed it. */
export function onPolicyEvent(policy) {
  policyEvents += 1;
  renderPolicy(policy);
}

export function renderPolicy(policy) {
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
  const seen = policyEvents;
  const res = await hostApi("PATCH", "/policy", change);
  form.removeAttribute("aria-busy");
  const ok = report(out, res, okText);
  if (ok && policyEvents === seen) renderPolicy(res.data);
  else renderPolicy(S.policy); // what the server holds, by the newest word of it
}

export function verifiedChanged(e) {
  const on = e.target.checked;
  applyPolicy({ require_verified: on }, on ? "Only signed-in shop customers can buy now" : "Guests can buy again");
}

export function perAddressChanged(e) {
  const on = e.target.checked;
  applyPolicy({ limit_per_ip: on }, on ? "The per-buyer limit also counts per network address" : "The per-buyer limit counts per buyer only");
}

export function slowModeChanged() {
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

export function submitCustomSlowMode(e) {
  e.preventDefault();
  const text = $("#pol-slow-custom").value.trim();
  // The range is the server's to check (its error is shown as it words it).
  if (!/^\d{1,9}$/.test(text)) {
    report($("#policy-result"), { ok: false, error: { message: "Slow mode: give a whole number of seconds", code: "bad_request" } }, "");
    return;
  }
  setSlowMode(Number(text));
}
