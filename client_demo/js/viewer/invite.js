// Referral invites on the viewer page (docs/protocol.md section 20): "Invite
// friends" opens a share sheet with this viewer's signed invite link (the `invite`
// answer's `path` on this page's origin), a Copy button (the Clipboard API, or the
// link selected for copying by hand), the system share sheet where the browser has
// one (`navigator.share`) and the link's QR code, drawn by the server
// (`GET /api/qr.svg`) for a friend beside you to scan.
//
// A page opened from someone's link (`?invite=<token>`) accepts it once, after its
// first snapshot: "Invited by <nickname>", or the refusal (`self_invite`,
// `already_invited`, `invite_invalid`) as a short notice that blocks nothing.
//
// `referral_reward` events name the inviter: when it is this viewer, the reward is
// said (fan points, or a coupon with its value). A paid reward coupon is already
// claimed for this viewer by the server, so it is never claimed again: it goes
// straight into the checkout's coupon choice (kept in localStorage by room and
// identity); a reversed one is taken away.

import { $, copyText, setText, store, toast } from "../util.js";
import { renderHold } from "./checkout.js";
import { couponText } from "./coupons.js";
import { refreshFanSoon } from "./fans.js";
import { S, keys, live } from "./state.js";
import { explain } from "./words.js";

const NOTE_MS = 12_000; // a refusal's notice stays this long

let link = null; // {viewer_id, url}: this viewer's link, once the server gave it
let acceptSent = false; // the address's invite was accepted (or asked) on this page load
let noteTimer = null;

/** The invite token named in the address (`?invite=<token>`), or "". */
export const inviteToken = () => new URLSearchParams(location.search).get("invite") || "";

// ------------------------------------------------------------------ identity

/** `welcome`: a new identity has its own link and its own reward coupons. */
export function onInviteIdentity() {
  if (link && S.me && link.viewer_id !== S.me.viewer_id) link = null;
  const saved = store.get(keys.rewards(), {}) || {};
  S.rewardCoupons = new Map(Object.entries(saved).filter(([, c]) => c && c.coupon_id));
  renderHold();
}

function saveRewards() {
  store.set(keys.rewards(), S.rewardCoupons.size ? Object.fromEntries(S.rewardCoupons) : null);
}

// ------------------------------------------------------------------ accepting a link

/** Every snapshot: the first one of the page accepts the address's invite, once. */
export function onInviteSnapshot() {
  const token = inviteToken();
  if (!token || acceptSent || !live) return;
  acceptSent = true;
  // An accept left unanswered by a reload is re-sent by the connection itself.
  if (live.isPending((f) => f.type === "accept_invite" && f.invite === token)) return;
  live.request({ type: "accept_invite", invite: token });
}

/** `invite_accepted`: who invited this viewer. */
export function onInviteAccepted(reply) {
  const who = reply.inviter || "a friend";
  showNote(`Invited by ${who}`, "ok", 0);
  const box = $("#invite-note");
  box.dataset.state = "accepted";
}

/** A refused `accept_invite` or `invite`, in plain words, blocking nothing. */
export function onInviteRefused(err, request) {
  if (request && request.type === "invite") {
    setStatus(`Couldn't get your link: ${explain(err)}`, "error");
    renderSheet();
    return;
  }
  // A link too damaged to be read as an invite at all is refused as a bad request:
  // to the person holding it, it is just as invalid.
  const code = err.code === "bad_request" ? "invite_invalid" : err.code;
  showNote(explain({ ...err, code }), "warn", NOTE_MS);
  $("#invite-note").dataset.state = code || "refused";
}

function showNote(text, kind, ms) {
  const box = $("#invite-note");
  clearTimeout(noteTimer);
  box.className = `notice ${kind} invite-note`;
  setText(box, text);
  box.hidden = false;
  if (ms) noteTimer = setTimeout(() => { box.hidden = true; }, ms);
}

// ------------------------------------------------------------------ the share sheet

export function openInvite() {
  const dlg = $("#invite-dlg");
  if (!dlg.open) dlg.showModal();
  if (link && S.me && link.viewer_id === S.me.viewer_id) {
    renderSheet();
    return;
  }
  if (!live) return;
  // One request at a time: a sheet opened again while one is on its way waits for it.
  if (!live.isPending((f) => f.type === "invite")) live.request({ type: "invite" });
  setStatus(live.state === "live" ? "Getting your invite link…" : "Waiting for connection…", "info");
  renderSheet();
}

/** The `invite` answer: this viewer's link (the same each time). */
export function onInvite(reply) {
  if (!reply || !reply.path) return;
  link = { viewer_id: S.me ? S.me.viewer_id : null, url: location.origin + reply.path };
  setStatus("", "info");
  renderSheet();
  const input = $("#invite-link");
  if ($("#invite-dlg").open && document.activeElement !== $("#invite-copy")) input.select();
}

function setStatus(text, kind) {
  const el = $("#invite-status");
  el.className = `notice ${kind} invite-status`;
  setText(el, text);
  el.hidden = !text;
}

function renderSheet() {
  const has = !!link;
  const input = $("#invite-link");
  input.value = has ? link.url : "";
  $("#invite-linkbox").hidden = !has;
  $("#invite-copy").disabled = !has;
  // The system share sheet, only where the browser has one.
  $("#invite-share").hidden = !(has && typeof navigator.share === "function");
  const qr = $("#invite-qr");
  qr.hidden = !has;
  if (has) {
    const src = "/api/qr.svg?text=" + encodeURIComponent(link.url);
    if (qr.getAttribute("src") !== src) qr.src = src;
  }
  $("#invite-dlg").dataset.ready = has ? "1" : "";
}

export async function copyInvite() {
  if (!link) return;
  const input = $("#invite-link");
  const ok = await copyText(link.url, input);
  if (!ok) { input.focus(); input.select(); }
  setStatus(ok ? "Link copied: paste it to friends." : "Your link is selected: copy it and send it to friends.",
            ok ? "ok" : "info");
}

export async function shareInvite() {
  if (!link || typeof navigator.share !== "function") return;
  const title = S.room && S.room.title ? S.room.title : "Live shopping";
  try {
    await navigator.share({ title, text: `Join me at ${title}, live now:`, url: link.url });
  } catch { /* dismissed, or not allowed here: the link and Copy are still there */ }
}

// ------------------------------------------------------------------ rewards

/** The reward coupon of a `referral_reward` event, in the shape checkout reads. The
 *  coupon's own terms may come nested (`reward.coupon`) or beside `kind: "coupon"`. */
function rewardCoupon(reward) {
  const c = reward.coupon && typeof reward.coupon === "object" ? { ...reward, ...reward.coupon } : { ...reward };
  const kind = ["amount", "percent"].includes(c.coupon_kind) ? c.coupon_kind
    : ["amount", "percent"].includes(c.kind) ? c.kind : "amount";
  return {
    coupon_id: c.coupon_id || reward.coupon_id,
    title: c.title || "Referral reward",
    kind,
    value: Number(c.value) || 0,
    currency: c.currency || "USD",
    min_spend: Number(c.min_spend) || 0,
    expires_at: Number.isFinite(c.expires_at) ? c.expires_at : null,
    reward: true,
  };
}

/** `referral_reward`: the host paid (or took back) an inviter's reward. */
export function onReferralReward(ev) {
  if (!S.me || !ev || ev.inviter !== S.me.viewer_id) return;
  const r = ev.reward || {};
  const friend = "A friend you invited";
  let text = "";
  if (r.kind === "points") {
    const pts = `${Number(r.points) || 0} fan point${Number(r.points) === 1 ? "" : "s"}`;
    text = ev.state === "reversed" ? `${friend} cancelled their first order, so the ${pts} were taken back.`
                                   : `${friend} placed their first order: you earned ${pts}!`;
    refreshFanSoon();
  } else if (r.kind === "coupon") {
    const c = rewardCoupon(r);
    if (!c.coupon_id) return;
    if (ev.state === "reversed") {
      const had = S.rewardCoupons.has(c.coupon_id) && !S.usedCoupons.has(c.coupon_id);
      S.rewardCoupons.delete(c.coupon_id);
      text = had ? `${friend} cancelled their first order, so your reward coupon was withdrawn.`
                 : `${friend} cancelled their first order: the reward was reversed.`;
    } else if (ev.state === "paid") {
      S.rewardCoupons.set(c.coupon_id, c);
      text = `${friend} placed their first order: you got a coupon, ${c.title} (${couponText(c)}). ` +
             "It's ready at checkout.";
    }
    saveRewards();
    renderHold();
  }
  if (!text) return;
  const note = $("#reward-note");
  note.className = `notice ${ev.state === "reversed" ? "warn" : "ok"} reward-note`;
  note.dataset.state = ev.state || "";
  setText(note, text);
  note.hidden = false;
  toast(text, ev.state === "reversed" ? "info" : "ok");
}
