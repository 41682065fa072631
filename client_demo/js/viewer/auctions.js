// Auctions on the viewer page: one card per open auction (and the last few ended),
// with the leading bid, the clock counted down from the server's `ends_at`, a big
// bid button labelled with the next amount the server accepts (`min_next`), an
// optional max bid (the server bids for this viewer up to it), whether this viewer
// leads or was outbid, the reserve and buy-now, the winner's hold with its timer
// and pay button (the page's one checkout, ./checkout.js), and "Verify", which
// re-checks the published bid chain in this browser (../auction.js). The open
// auction that ends first (or one this viewer won and has to pay) rises over the
// video, wherever it is in the list, until the viewer hides it.
//
// The server decides every bid (docs/protocol.md section 15): the page sends
// `bid` and shows the answer. Which bidder in an auction is this viewer is known
// only from the `pseudonym` of its own `bid_placed` (or of an `outbid_by_proxy`
// refusal); it is kept in sessionStorage by auction id, so a reload keeps it.

import { api, clock, h, money, setText, toMinor, toast } from "../util.js";
import { applyBid, fetchChain, newerAuction, verifyAuction } from "../auction.js";
import { offerHold, openCheckout } from "./checkout.js";
import { S, live, mustSignIn, now, showEnded } from "./state.js";
import { explainBid } from "./words.js";

const cards = new Map(); // auction_id -> card element refs
const seenHeads = new Map(); // auction_id -> Map(seq -> hash) seen live in auction_bid events
const ENDED_SHOWN = 3; // ended auctions kept on the page, newest first
const LAST_SECONDS = 10_000; // the clock turns urgent from here
const MSG_MS = 8000;

// ------------------------------------------------------------------ this viewer's side

const mineKey = (id) => `livesell.bidder.${id}`;

/** What this viewer did in the auction: {viewer_id, pseudonym, max, tried, paid},
 *  for the current identity only (a new name is a new bidder). */
function mine(id) {
  let rec = null;
  try { rec = JSON.parse(sessionStorage.getItem(mineKey(id)) || "null"); } catch { rec = null; }
  if (!rec || !S.me || rec.viewer_id !== S.me.viewer_id) return null;
  return rec;
}

function remember(id, changes) {
  const rec = { ...(mine(id) || {}), ...changes, viewer_id: S.me ? S.me.viewer_id : null };
  try { sessionStorage.setItem(mineKey(id), JSON.stringify(rec)); } catch { /* private mode: only forgets */ }
  return rec;
}

/** This viewer's hold from the auction's result (as the winner, or as the
 *  runner-up offered a second chance), completed from the auction for checkout. */
function myHold(a, me) {
  const r = a.result;
  if (!r || !me || !me.pseudonym) return null;
  let hold = null;
  if (r.winner && r.winner === me.pseudonym && r.hold) hold = r.hold;
  const sc = r.second_chance;
  if (sc && sc.bidder === me.pseudonym && sc.hold) hold = sc.hold;
  if (!hold || !hold.id) return null;
  return { product_id: a.product_id, quantity: 1, currency: a.currency, unit_price: r.amount, ...hold };
}

// ------------------------------------------------------------------ server views

/** The snapshot's `auctions`: the open ones and those ended in the last hour. */
export function setAuctions(list) {
  const before = S.auctions;
  S.auctions = new Map((list || []).map((a) => [a.auction_id, newerAuction(before.get(a.auction_id), a)]));
}

/** auction_started, auction_ended, auction_cancelled, auction_second_chance. */
export function onAuction(auction) {
  if (!auction) return;
  const before = S.auctions.get(auction.auction_id);
  const a = newerAuction(before, auction);
  S.auctions.set(auction.auction_id, a);
  const me = mine(a.auction_id);
  const hold = myHold(a, me);
  const heldBefore = before ? myHold(before, me) : null;
  if (hold && (!heldBefore || heldBefore.id !== hold.id)) {
    const price = money(hold.unit_price, a.currency);
    const second = a.result.second_chance && a.result.second_chance.hold && a.result.second_chance.hold.id === hold.id;
    toast(second ? `Second chance: ${a.title} is yours at ${price}. Pay before the timer runs out.`
                 : `You won ${a.title} at ${price}! Pay before the timer runs out.`, "ok");
  }
  renderAuctions();
}

export function onAuctionBid(ev) {
  const a = S.auctions.get(ev.auction_id);
  if (ev.entry && ev.entry.hash) {
    if (!seenHeads.has(ev.auction_id)) seenHeads.set(ev.auction_id, new Map());
    seenHeads.get(ev.auction_id).set(ev.entry.seq, ev.entry.hash);
  }
  if (a && applyBid(a, ev)) updateCard(ev.auction_id);
}

/** `bid_placed`: this viewer's pseudonym in the auction, and where it stands. */
export function onBidPlaced(reply, request) {
  const id = reply.auction_id || (request && request.auction_id);
  const a = S.auctions.get(id);
  remember(id, { pseudonym: reply.pseudonym || (mine(id) || {}).pseudonym || null, tried: true,
                 max: reply.max_amount ?? reply.amount });
  // The answer can come before the room's event for the same bid: show it now when
  // it is newer than what the page has (the event then fills in the rest).
  if (a && a.state === "open" && reply.outcome === "leading" && reply.min_next > a.min_next) {
    a.leader = reply.pseudonym;
    a.leader_name = S.me ? S.me.nickname : a.leader_name;
    a.amount = reply.amount;
    a.min_next = reply.min_next;
    if (reply.ends_at) a.ends_at = reply.ends_at;
  }
  const r = cards.get(id);
  if (r) {
    r.max.value = "";
    if (reply.outcome === "max_raised") showMsg(id, `Your max bid is now ${money(reply.max_amount, a ? a.currency : undefined)}.`, "ok");
    else if (reply.outcome === "won") showMsg(id, "You bought it at the buy-now price.", "ok");
    else r.msg.hidden = true;
  }
  updateCard(id);
}

/** A refused bid, in plain words next to its button. */
export function onBidRefused(err, request) {
  const id = request.auction_id;
  const a = S.auctions.get(id);
  const d = err.details || {};
  if (a && a.state === "open") {
    // The refusal names the current amounts: the button shows them at once.
    if (Number.isFinite(d.min_next) && d.min_next > a.min_next) a.min_next = d.min_next;
    if (err.code === "outbid_by_proxy" && Number.isFinite(d.amount) && d.amount > (a.amount || 0)) a.amount = d.amount;
  }
  // The refusal names this viewer's pseudonym too: a runner-up who never led still
  // knows a second-chance offer to that pseudonym is theirs.
  if (err.code === "outbid_by_proxy") {
    remember(id, d.pseudonym ? { tried: true, pseudonym: d.pseudonym } : { tried: true });
  }
  if (err.code === "self_outbid" && Number.isFinite(d.max_amount)) remember(id, { max: d.max_amount, tried: true });
  showMsg(id, explainBid(err, a ? a.currency : undefined));
  updateCard(id);
}

/** `order_placed`: an auction hold checked out is paid. */
export function onAuctionOrder(order) {
  for (const a of S.auctions.values()) {
    const hold = myHold(a, mine(a.auction_id));
    if (hold && hold.id === order.hold_id) remember(a.auction_id, { paid: order.hold_id });
  }
  renderAuctions();
}

/** Server timestamps the clock counts down to: open auctions' ends, my holds. */
export function auctionDeadlines() {
  const out = [];
  for (const a of S.auctions.values()) {
    if (a.state === "open") out.push(a.ends_at);
    const hold = myHold(a, mine(a.auction_id));
    if (hold) out.push(hold.expires_at);
  }
  return out;
}

// ------------------------------------------------------------------ rendering

function shown() {
  const all = [...S.auctions.values()];
  const open = all.filter((a) => a.state === "open").sort((x, y) => x.ends_at - y.ends_at);
  const over = all.filter((a) => a.state !== "open")
    .sort((x, y) => ((y.result && y.result.ended_at) || 0) - ((x.result && x.result.ended_at) || 0))
    .slice(0, ENDED_SHOWN);
  return [...open, ...over];
}

// One auction rises over the video (viewer.html #auction-rise), wherever it is in
// the list: the open one that ends first, or, once none is open, one this viewer
// won and has still to pay. Hidden by the viewer, it stays in the list only.
const hiddenKey = () => `livesell.auctionhidden.${S.roomId}`;
let hiddenRise = null;

function risingHidden() {
  if (!hiddenRise) {
    try { hiddenRise = new Set(JSON.parse(sessionStorage.getItem(hiddenKey()) || "[]")); } catch { hiddenRise = new Set(); }
  }
  return hiddenRise;
}

/** "Hide" on the risen auction card: it goes back to the list, for good. */
export function hideRisenAuction() {
  const rise = document.getElementById("auction-rise");
  const card = rise && rise.querySelector(".acard");
  if (!card) return;
  risingHidden().add(card.dataset.auctionId);
  try { sessionStorage.setItem(hiddenKey(), JSON.stringify([...risingHidden()])); } catch { /* only this page forgets */ }
  renderAuctions();
}

function risingOf(list) {
  const hidden = risingHidden();
  const open = list.find((a) => a.state === "open" && !hidden.has(a.auction_id));
  if (open) return open.auction_id;
  const won = list.find((a) => !hidden.has(a.auction_id) && cards.get(a.auction_id)?.root.dataset.hold === "held");
  return won ? won.auction_id : null;
}

/** Move a card, keeping the focus inside it (a bidder typing a max bid) where the
 *  browser can; a new card is inserted. */
function place(parent, node, before) {
  if (node.isConnected && typeof parent.moveBefore === "function") parent.moveBefore(node, before);
  else parent.insertBefore(node, before);
}

export function renderAuctions() {
  const box = document.getElementById("auctions");
  const rise = document.getElementById("auction-rise");
  if (!box || !rise) return;
  const list = shown();
  const keep = new Set(list.map((a) => a.auction_id));
  for (const [id, r] of cards) if (!keep.has(id)) { r.root.remove(); cards.delete(id); }
  for (const a of list) {
    if (!cards.has(a.auction_id)) cards.set(a.auction_id, buildCard(a.auction_id));
    updateCard(a.auction_id);
  }
  const rising = risingOf(list);
  let i = 0;
  for (const a of list) {
    const r = cards.get(a.auction_id);
    if (a.auction_id === rising) {
      if (r.root.parentElement !== rise) place(rise, r.root, null);
      continue;
    }
    if (box.children[i] !== r.root) place(box, r.root, box.children[i] || null);
    i += 1;
  }
  rise.hidden = !rising;
  box.hidden = i === 0;
}

function buildCard(id) {
  const r = {};
  const titleId = `at-${id}`;
  const maxId = `amax-${id}`;
  r.badge = h("span", { class: "badge" });
  r.title = h("h3", { class: "acard-title", attrs: { id: titleId } });
  r.clock = h("span", { class: "aclock num", attrs: { role: "timer", "aria-live": "off" } });
  r.priceLabel = h("span", { class: "aprice-label" });
  r.price = h("span", { class: "aprice-now num" });
  r.meta = h("span", { class: "aprice-meta num" });
  r.reserve = h("span", { class: "achip" });
  r.buyNowChip = h("span", { class: "achip" });
  r.extended = h("span", { class: "achip hot" });
  r.rule = h("span", { class: "achip" });
  r.signed = h("span", { class: "achip", text: "Shop customers only" });
  r.status = h("p", { class: "astatus", attrs: { role: "status", "aria-live": "polite" } });
  r.max = h("input", { id: maxId, class: "amax-input num", attrs: { inputmode: "decimal", autocomplete: "off",
                                                                    "aria-describedby": `amax-h-${id}` },
                       on: { input: () => updateCard(id) } });
  r.maxField = h("div", { class: "field amax" },
    h("label", { attrs: { for: maxId }, text: "Your max bid" }),
    r.max,
    h("span", { class: "sr-only", attrs: { id: `amax-h-${id}` },
                text: "Optional: the server bids for you, one step at a time, up to this amount." }));
  r.bid = h("button", { type: "button", class: "btn primary abid-btn", on: { click: () => bid(id) } });
  r.buyNow = h("button", { type: "button", class: "btn abuy-now", on: { click: () => bid(id, true) } });
  r.bidRow = h("div", { class: "abid-row" }, r.maxField, r.bid);
  r.msg = h("p", { class: "notice error amsg", attrs: { role: "alert" }, hidden: true });
  r.holdText = h("span", { class: "ahold-text num" });
  r.pay = h("button", { type: "button", class: "btn primary apay", on: { click: () => pay(id) } });
  r.hold = h("div", { class: "ahold", hidden: true }, r.holdText, r.pay);
  r.verify = h("button", { type: "button", class: "btn small averify", text: "Verify", on: { click: () => verify(id) } });
  r.verifyOut = h("p", { class: "averify-out", attrs: { role: "status", "aria-live": "polite" } });
  r.checks = h("ol", { class: "verify-checks" });
  r.details = h("details", { class: "averify-details", hidden: true }, h("summary", { text: "The checks" }), r.checks);
  r.verifyBox = h("div", { class: "averify", hidden: true }, h("div", { class: "averify-row" }, r.verify, r.verifyOut), r.details);
  r.root = h("article", { class: "acard", data: { auctionId: id }, attrs: { "aria-labelledby": titleId } },
    h("div", { class: "acard-head" }, r.badge, r.title, r.clock),
    h("div", { class: "aprice" }, r.priceLabel, r.price, r.meta),
    h("div", { class: "achips" }, r.extended, r.reserve, r.buyNowChip, r.rule, r.signed),
    r.status, r.bidRow, r.buyNow, r.msg, r.hold, r.verifyBox);
  return r;
}

function showMsg(id, text, kind = "error") {
  const r = cards.get(id);
  if (!r) { toast(text, kind); return; }
  r.msg.className = `notice ${kind} amsg`;
  setText(r.msg, text);
  r.msg.hidden = false;
  clearTimeout(r.msgTimer);
  r.msgTimer = setTimeout(() => { r.msg.hidden = true; }, MSG_MS);
}

/** Where this viewer stands: leading, outbid, won, lost or none (not bidding). */
function standingOf(a, me) {
  const mePseudo = me && me.pseudonym;
  if (a.state === "open") {
    if (mePseudo && a.leader === mePseudo) return "leading";
    if (me && me.tried) return "outbid";
    return "none";
  }
  if (myHold(a, me)) return "won";
  if (me && me.tried) return "lost";
  return "none";
}

function statusText(a, standing, me) {
  const m = (v) => money(v, a.currency);
  const r = a.result || {};
  if (a.state === "open") {
    if (standing === "leading") return `You are leading at ${m(a.amount)}` + (me && me.max ? ` · your max ${m(me.max)}` : "");
    if (standing === "outbid") return a.leader ? `Outbid: ${a.leader_name || "another bidder"} leads at ${m(a.amount)}. Bid again!`
                                               : "Outbid: bid again!";
    return a.leader ? `${a.leader_name || "A bidder"} leads` : "No bids yet: be the first";
  }
  if (standing === "won") {
    const sc = r.second_chance;
    return sc && me && sc.bidder === me.pseudonym ? `Second chance: it's yours at ${m(sc.amount)}`
                                                  : `You won at ${m(r.amount)}!`;
  }
  if (a.state === "cancelled" || r.ended_by === "cancelled") {
    return showEnded() ? "The show ended before this auction did: no winner."
                       : "The host cancelled this auction: no winner.";
  }
  const lead = r.winner ? `Won by ${r.winner_name || "a bidder"} at ${m(r.amount)}`
                        : (a.bids ? "Ended: the reserve was not met, no winner" : "Ended with no bids");
  return standing === "lost" ? `You didn't win. ${lead}.` : `${lead}.`;
}

export function updateCard(id) {
  const r = cards.get(id);
  const a = S.auctions.get(id);
  if (!r || !a) return;
  const at = now();
  const m = (v) => money(v, a.currency);
  const open = a.state === "open";
  const left = a.ends_at - at;
  const me = mine(id);
  const standing = standingOf(a, me);
  const result = a.result || {};

  r.root.dataset.state = a.state;
  r.root.dataset.standing = standing;
  r.root.dataset.bids = a.bids || 0;
  r.root.dataset.extensions = a.extensions || 0;
  r.root.dataset.extended = String(!!(open && a.lastExtended));
  r.root.dataset.minNext = a.min_next ?? "";
  setText(r.title, a.title);
  r.badge.className = `badge ${open ? "open" : "ended"}`;
  setText(r.badge, open ? "Auction" : a.state === "cancelled" ? "Cancelled" : result.winner ? "Sold" : "Ended");

  // The clock is drawn from the server's ends_at and the measured offset; between
  // that moment and the server's auction_ended (a few ms) it rests at "Ending…".
  if (open) setText(r.clock, left > 0 ? clock(left) : "Ending…");
  else setText(r.clock, a.state === "cancelled" ? "Cancelled" : "Ended");
  r.clock.classList.toggle("urgent", open && left > 0 && left <= LAST_SECONDS);
  r.clock.setAttribute("aria-label", open ? (left > 0 ? `Ends in ${clock(left)}` : "Ending") : "Ended");

  if (open) {
    setText(r.priceLabel, a.bids ? "Current bid" : "Starting bid");
    setText(r.price, m(a.bids ? a.amount : a.start_price));
    setText(r.meta, a.bids ? `${a.bids} bid${a.bids === 1 ? "" : "s"}` + (a.leader_name ? ` · ${a.leader_name}` : "") : "");
  } else {
    setText(r.priceLabel, result.winner ? "Winning bid" : "Final bid");
    setText(r.price, result.amount || a.amount ? m(result.amount || a.amount) : "—");
    setText(r.meta, `${a.bids || 0} bid${a.bids === 1 ? "" : "s"}`);
  }

  // What the terms say, as chips: extension, reserve, buy-now, the late-bid rule.
  r.extended.hidden = !(open && a.lastExtended);
  setText(r.extended, `Extended +${a.extend_s} s` + (a.extensions > 1 ? ` (${a.extensions}×)` : ""));
  r.reserve.hidden = !a.has_reserve;
  const reserveMet = open ? a.reserve_met : (result.reserve_met ?? a.reserve_met);
  r.reserve.className = `achip ${reserveMet ? "ok" : "warn"}`;
  setText(r.reserve, reserveMet ? "Reserve met" : "Reserve not met");
  r.buyNowChip.hidden = !(open && a.buy_now_price);
  setText(r.buyNowChip, a.buy_now_price ? `Buy now ${m(a.buy_now_price)}` : "");
  r.rule.hidden = !open;
  setText(r.rule, a.anti_snipe === "extend" ? `Late bids add ${a.extend_s} s` : "Sudden death: the end never moves");
  r.signed.hidden = !a.signed_only;

  r.status.dataset.standing = standing;
  setText(r.status, statusText(a, standing, me));

  renderBid(r, a, me, standing, left);
  renderHold(r, a, me, at);
  r.verifyBox.hidden = open;
  r.verify.setAttribute("aria-label", `Verify the auction of ${a.title}`);
}

function renderBid(r, a, me, standing, left) {
  const m = (v) => money(v, a.currency);
  const open = a.state === "open";
  r.bidRow.hidden = !open;
  r.buyNow.hidden = !(open && a.buy_now_price);
  if (!open) return;
  const pending = live && live.isPending((f) => f.type === "bid" && f.auction_id === a.auction_id);
  const typed = r.max.value.trim();
  const max = typed ? toMinor(typed, a.currency) : NaN;
  let text = `Bid ${m(a.min_next)}`;
  let label = `Bid ${m(a.min_next)} on ${a.title}`;
  let can = true;
  if (standing === "leading") {
    // A leader's bid only raises their max (the server refuses any other: self_outbid).
    if (typed && Number.isFinite(max)) { text = `Raise max to ${m(max)}`; label = `Raise your max bid on ${a.title} to ${m(max)}`; }
    else { text = "You're leading"; label = `You are leading on ${a.title}`; can = false; }
  } else if (typed && Number.isFinite(max) && max > a.min_next) {
    label = `Bid ${m(a.min_next)} on ${a.title}, up to ${m(max)}`;
  }
  const signIn = mustSignIn() || (a.signed_only && !(S.me && S.me.verified === true));
  if (signIn) { text = "Sign in on the shop to bid"; label = `${text}: ${a.title}`; can = false; }
  if (left <= 0) { text = "Ending…"; label = `Bidding on ${a.title} is closing`; can = false; }
  if (showEnded()) { text = "Show ended"; label = `${text}: ${a.title}`; can = false; }
  if (pending) { text = live.state === "live" ? "Bidding…" : "Waiting for connection…"; label = `${text} ${a.title}`; can = false; }
  setText(r.bid, text);
  r.bid.disabled = !can;
  r.bid.setAttribute("aria-label", label);
  r.max.disabled = !!(signIn || pending || left <= 0 || showEnded());
  r.max.placeholder = `e.g. ${stripCurrency(m(a.min_next * 2))}`;
  if (a.buy_now_price) {
    setText(r.buyNow, `Buy now · ${m(a.buy_now_price)}`);
    r.buyNow.disabled = !can || standing === "leading";
    r.buyNow.setAttribute("aria-label", `Buy ${a.title} now for ${m(a.buy_now_price)}`);
  }
}

const stripCurrency = (text) => text.replace(/[^\d.,]/g, "");

function renderHold(r, a, me, at) {
  const hold = myHold(a, me);
  r.hold.hidden = !hold;
  if (!hold) { r.root.dataset.hold = "none"; return; }
  const m = (v) => money(v, a.currency);
  const paid = (me && me.paid === hold.id) || (S.lastOrder && S.lastOrder.hold_id === hold.id);
  const dead = S.hold && S.hold.id === hold.id && S.hold.dead;
  let state = "held";
  if (paid) state = "paid";
  else if (dead) state = "over";
  else if (hold.expires_at <= at) state = "expired";
  r.root.dataset.hold = state;
  r.hold.className = `ahold ${state}`;
  if (state === "paid") setText(r.holdText, `Paid ✓ ${m(hold.unit_price)}: your order is placed.`);
  else if (state === "over") setText(r.holdText, `Your hold ended: ${S.hold.dead}`);
  else if (state === "expired") setText(r.holdText, "Your hold expired before it was paid.");
  else setText(r.holdText, `Held for you for ${clock(hold.expires_at - at)}`);
  r.pay.hidden = state !== "held";
  setText(r.pay, `Pay ${m(hold.unit_price)}`);
  r.pay.setAttribute("aria-label", `Pay ${m(hold.unit_price)} for ${a.title}`);
}

// ------------------------------------------------------------------ actions

function bid(id, buyNow = false) {
  const a = S.auctions.get(id);
  const r = cards.get(id);
  if (!a || !r || !live || a.state !== "open") return;
  if (live.isPending((f) => f.type === "bid" && f.auction_id === id)) return;
  const amount = buyNow ? a.buy_now_price : a.min_next;
  const frame = { type: "bid", auction_id: id, amount };
  const typed = r.max.value.trim();
  if (!buyNow && typed) {
    const max = toMinor(typed, a.currency);
    if (Number.isNaN(max)) { showMsg(id, "Enter your max bid as an amount, like 25.00."); return; }
    if (max < amount) { showMsg(id, `Your max bid must be at least the next bid, ${money(amount, a.currency)}.`); return; }
    frame.max_amount = max;
  }
  r.msg.hidden = true;
  // A new request id per click: the server remembers an accepted bid under its id
  // (a re-send after a reconnect gets the same answer) and decides refusals afresh.
  live.request(frame);
  updateCard(id);
}

/** Check out the won hold through the page's one checkout. */
function pay(id) {
  const a = S.auctions.get(id);
  const hold = a ? myHold(a, mine(id)) : null;
  if (!hold) return;
  if (S.hold && S.hold.id === hold.id && !S.hold.dead) { openCheckout(); return; }
  offerHold(hold);
}

async function verify(id) {
  const r = cards.get(id);
  const a = S.auctions.get(id);
  if (!r || !a) return;
  r.verify.disabled = true;
  r.verifyOut.className = "averify-out";
  r.verifyOut.dataset.result = "";
  setText(r.verifyOut, "Fetching the published bids…");
  r.details.hidden = true;
  const base = `/api/rooms/${encodeURIComponent(S.roomId)}/auctions/${encodeURIComponent(id)}`;
  const chain = await fetchChain(api, base);
  if (!chain.ok) {
    r.verify.disabled = false;
    r.verifyOut.className = "averify-out bad";
    r.verifyOut.dataset.result = "error";
    setText(r.verifyOut, `Could not fetch the auction: ${chain.error ? chain.error.message : "unknown error"}`);
    return;
  }
  setText(r.verifyOut, "Recomputing in your browser…");
  const outcome = await verifyAuction(chain.auction, chain.entries, { seen: seenHeads.get(id) || new Map() });
  r.verify.disabled = false;
  r.checks.replaceChildren(...outcome.checks.map((c) => h("li", { class: c.ok ? "good" : "bad" },
    h("span", { class: "mark", text: c.ok ? "✓" : "✗", attrs: { "aria-hidden": "true" } }),
    h("span", {}, h("span", { class: "sr-only", text: c.ok ? "Passed: " : "Failed: " }), c.name,
      h("span", { class: "detail", text: c.detail })))));
  r.details.hidden = false;
  r.verifyOut.className = `averify-out ${outcome.ok ? "good" : "bad"}`;
  r.verifyOut.dataset.result = outcome.ok ? "pass" : "fail";
  const n = chain.entries.length;
  const res = chain.auction.result || {};
  const me = mine(id);
  const who = res.winner && me && me.pseudonym === res.winner ? "you" : (res.winner_name || res.winner);
  setText(r.verifyOut, outcome.ok
    ? `Verified: ${n} bid${n === 1 ? "" : "s"}, ` +
      (res.winner ? `winner ${who} at ${money(res.amount, chain.auction.currency)}` : "no winner")
    : `Not verified: ${outcome.failure.name}${outcome.failure.detail ? ` (${outcome.failure.detail})` : ""}`);
}
