// Auctions in the host console: the start form (product, start price, duration,
// bid increments, hidden reserve, buy-now, what a late bid does, shop customers
// only), the list (in the live column's "On now", ./onnow.js, where the actions say
// what they did) with each auction's live state (leading bid and bidder, the end
// counted down from the server's `ends_at`, extensions) and the host's actions:
// end now, cancel (or give an unpaid unit back to stock), second chance.
// The server decides every bid and the result (docs/protocol.md section 15); the
// panel shows what it sent: the snapshot, auction_* events and each action's answer.

import { $, clock, h, money, plural, setText, toMajorText, toMinor } from "../util.js";
import { applyBid, newerAuction } from "../auction.js";
import { confirmAction } from "./confirm.js";
import { nowReport } from "./onnow.js";
import { S, hostApi, now, report } from "./state.js";

const els = new Map(); // auction_id -> list item refs
const SHOWN = 8;

export function resetAuctions() {
  els.clear();
  $("#auction-list").replaceChildren();
}

/** The room state's `auctions` (open ones and those ended in the last hour). */
export function setAuctions(list) {
  const before = S.auctions;
  S.auctions = new Map((list || []).map((a) => [a.auction_id, newerAuction(before.get(a.auction_id), a)]));
  renderAuctions();
}

/** An auction from an event or an action's answer. */
export function putAuction(auction) {
  if (!auction) return;
  S.auctions.set(auction.auction_id, newerAuction(S.auctions.get(auction.auction_id), auction));
  renderAuctions();
}

export function onAuctionBid(ev) {
  const a = S.auctions.get(ev.auction_id);
  if (a && applyBid(a, ev)) renderAuctions();
}

// ------------------------------------------------------------------ the form

export function renderAuctionProducts() {
  const select = $("#af-product");
  const keep = select.value;
  const sig = [...S.products.values()].map((p) => p.product_id + p.title).join("|");
  if (select.dataset.sig === sig) return;
  select.dataset.sig = sig;
  select.replaceChildren(...[...S.products.values()].map((p) => h("option", { value: p.product_id, text: p.title })));
  if (S.products.has(keep)) select.value = keep;
  else fillAuctionDefaults();
}

/** A start price to begin from: the product's list price (the host edits it). */
export function fillAuctionDefaults() {
  const p = S.products.get($("#af-product").value);
  if (p) $("#af-start").value = toMajorText(p.price, p.currency);
}

export function antiSnipeChanged() {
  $("#af-extend-field").hidden = $("#af-mode").value !== "extend";
}

const fail = (out, message, code) => report(out, { ok: false, error: { message, code } }, "");

/** "0:1.00, 50.00:2.50" (major units, from:step) to the server's bands. */
function parseIncrements(text, currency) {
  const bands = [];
  for (const part of text.split(/[,;\n]+/).map((x) => x.trim()).filter(Boolean)) {
    const [from, step, extra] = part.split(":").map((x) => x.trim());
    if (extra !== undefined || !from || !step) return null;
    const band = { from: toMinor(from, currency), step: toMinor(step, currency) };
    if (Number.isNaN(band.from) || Number.isNaN(band.step)) return null;
    bands.push(band);
  }
  return bands;
}

export async function startAuction(e) {
  e.preventDefault();
  const out = $("#auction-result");
  const p = S.products.get($("#af-product").value);
  if (!p) { fail(out, "Add a product first", "no_product"); return; }
  const amount = (selector) => {
    const text = $(selector).value.trim();
    if (!text) return null;
    const v = toMinor(text, p.currency);
    return Number.isNaN(v) ? NaN : v;
  };
  const start = amount("#af-start");
  if (start === null || Number.isNaN(start)) { fail(out, "Start price: enter an amount like 10.00", "bad_price"); return; }
  const body = { product_id: p.product_id, start_price: start, duration_s: Number($("#af-duration").value),
                 anti_snipe: $("#af-mode").value, signed_only: $("#af-signed").checked };
  const reserve = amount("#af-reserve");
  if (Number.isNaN(reserve)) { fail(out, "Reserve price: enter an amount like 20.00, or leave it empty", "bad_price"); return; }
  if (reserve !== null) body.reserve_price = reserve;
  const buyNow = amount("#af-buynow");
  if (Number.isNaN(buyNow)) { fail(out, "Buy-now price: enter an amount like 90.00, or leave it empty", "bad_price"); return; }
  if (buyNow !== null) body.buy_now_price = buyNow;
  const extend = $("#af-extend").value.trim();
  if (body.anti_snipe === "extend" && extend) body.extend_s = Number(extend);
  // Left empty, the increments are the server's table (auction.increments).
  const incText = $("#af-increments").value.trim();
  if (incText) {
    const bands = parseIncrements(incText, p.currency);
    if (!bands) { fail(out, "Increments: write from:step pairs like 0:1.00, 50.00:2.50", "bad_increments"); return; }
    body.increments = bands;
  }
  const res = await hostApi("POST", "/auctions", body);
  if (!res.ok) { report(out, res, ""); return; }
  const a = res.data;
  putAuction(a);
  report(out, res, `Auction of “${a.title}” is open: from ${money(a.start_price, a.currency)}, ` +
                   `ends in ${clock(a.ends_at - now())}`);
}

// ------------------------------------------------------------------ the list

export function renderAuctions() {
  const list = $("#auction-list");
  const items = [...S.auctions.values()]
    .sort((x, y) => (x.state === "open") - (y.state === "open") || x.started_at - y.started_at)
    .reverse().slice(0, SHOWN);
  const keep = new Set(items.map((a) => a.auction_id));
  for (const [id, r] of els) if (!keep.has(id)) { r.li.remove(); els.delete(id); }
  items.forEach((a, i) => {
    let r = els.get(a.auction_id);
    if (!r) { r = buildItem(a.auction_id); els.set(a.auction_id, r); }
    if (list.children[i] !== r.li) list.insertBefore(r.li, list.children[i] || null);
    updateItem(r, a);
  });
}

function buildItem(id) {
  const r = {};
  r.title = h("span", { class: "item-title" });
  r.lead = h("span", { class: "item-meta num alead" });
  r.timing = h("span", { class: "item-meta num atiming" });
  r.terms = h("span", { class: "item-meta aterms" });
  r.result = h("span", { class: "winners aresult" });
  r.badge = h("span", { class: "badge" });
  r.end = h("button", { type: "button", class: "btn primary small", text: "End now", on: { click: () => act(id, "end") } });
  r.cancel = h("button", { type: "button", class: "btn danger small", on: { click: () => act(id, "cancel") } });
  r.second = h("button", { type: "button", class: "btn small", text: "Second chance",
                           on: { click: () => act(id, "second-chance") } });
  r.li = h("li", { class: "item auction-item", data: { auctionId: id } },
    h("div", { class: "item-main" }, r.title, r.lead, r.timing, r.terms, r.result),
    r.badge, h("div", { class: "acts" }, r.end, r.cancel, r.second));
  return r;
}


function updateItem(r, a) {
  const at = now();
  const m = (v) => money(v, a.currency);
  const open = a.state === "open";
  const res = a.result || null;
  r.li.dataset.state = a.state;
  r.li.dataset.bids = a.bids || 0;
  r.li.dataset.extensions = a.extensions || 0;
  r.li.dataset.leader = a.leader_name || "";
  setText(r.title, a.title);
  r.badge.className = `badge ${open ? "open" : "ended"}`;
  setText(r.badge, a.state);

  setText(r.lead, !a.bids ? (open ? `No bids yet · starts at ${m(a.start_price)}` : "No bids")
    : open ? `Leading ${m(a.amount)} · ${a.leader_name || a.leader} · next ${m(a.min_next)}`
      : `Last bid ${m(a.amount)} · ${a.leader_name || a.leader}`);
  // The end in force, counted down from the server's ends_at (it rests at 0:00
  // until the server's auction_ended, a few ms later).
  setText(r.timing, (open ? `ends in ${clock(a.ends_at - at)} · ` : "") +
                    `${plural(a.bids || 0, "bid")} · ${plural(a.extensions || 0, "extension")}`);
  const reserve = !a.has_reserve ? "no reserve"
    : (res && res.reserve_price != null ? `reserve ${m(res.reserve_price)} ` : "reserve ") +
      ((res ? res.reserve_met : a.reserve_met) ? "met" : "not met");
  setText(r.terms, [a.anti_snipe === "extend" ? `late bids add ${a.extend_s} s` : "sudden death", reserve,
                    a.buy_now_price ? `buy now ${m(a.buy_now_price)}` : null,
                    a.signed_only ? "shop customers only" : null].filter(Boolean).join(" · "));

  r.result.hidden = open || !res;
  if (res) setText(r.result, resultText(a, res, at));

  // Actions the result allows. After a win the unit stays with the auction while
  // the winner (or the runner-up) may pay: second chance and giving the unit back
  // are offered once that pay window is over by the clock (display only: the
  // server decides, and refuses in its own words, e.g. winner_paying once paid).
  r.end.disabled = !open;
  const sc = res && res.second_chance;
  const windowOver = (hold) => !!hold && hold.expires_at <= at;
  const lapsed = a.state === "ended" && !!(res && res.winner) && windowOver(res.hold);
  setText(r.cancel, open ? "Cancel" : "Return to stock");
  r.cancel.disabled = !(open || (lapsed && (!sc || windowOver(sc.hold))));
  r.second.disabled = !(lapsed && !sc);
  r.end.setAttribute("aria-label", `End the auction of ${a.title} now`);
  r.cancel.setAttribute("aria-label", open ? `Cancel the auction of ${a.title}`
                                           : `Return the unpaid unit of ${a.title} to stock`);
  r.second.setAttribute("aria-label", `Offer ${a.title} to the runner-up (second chance)`);
  // A button just disabled under the keyboard's focus: keep focus in the row.
  const active = document.activeElement;
  if (active && active.disabled && r.li.contains(active)) {
    const next = [r.end, r.cancel, r.second].find((btn) => !btn.disabled);
    if (next) next.focus();
  }
}

function resultText(a, res, at) {
  const m = (v) => money(v, a.currency);
  const by = { clock: "by the clock", host: "ended early", buy_now: "bought now", cancelled: "cancelled" }[res.ended_by] ||
             res.ended_by;
  let text;
  if (res.ended_by === "cancelled") text = "Cancelled: no winner";
  else if (res.winner) text = `Won by ${res.winner_name || res.winner} at ${m(res.amount)} (${by})`;
  else if (a.bids) text = `No winner: reserve${res.reserve_price != null ? ` ${m(res.reserve_price)}` : ""} not met`;
  else text = "No winner: no bids";
  if (res.winner && res.hold) {
    text += res.hold.expires_at > at ? ` · pays within ${clock(res.hold.expires_at - at)}` : " · pay window over";
  }
  const sc = res.second_chance;
  if (sc) {
    text += ` · second chance: ${sc.bidder_name || sc.bidder} at ${m(sc.amount)}`;
    if (sc.hold) text += sc.hold.expires_at > at ? `, pays within ${clock(sc.hold.expires_at - at)}` : ", pay window over";
  }
  return text;
}

const ACTION_WORDS = {
  end: (a) => `Ended the auction of “${a.title}”` +
              (a.result && a.result.winner ? `: ${a.result.winner_name || a.result.winner} wins at ${money(a.result.amount, a.currency)}` : ": no winner"),
  cancel: (a) => (a.state === "cancelled" ? `Cancelled the auction of “${a.title}”` : `The unit of “${a.title}” is back in stock`),
  "second-chance": (a) => {
    const sc = a.result && a.result.second_chance;
    return sc ? `Offered “${a.title}” to ${sc.bidder_name || sc.bidder} at ${money(sc.amount, a.currency)}`
              : `Second chance offered for “${a.title}”`;
  },
};

/** What each action will do, said before it is done (none of them can be undone). */
function question(a, action) {
  const m = (v) => money(v, a.currency);
  const leader = a.leader_name || a.leader;
  if (action === "end") {
    return {
      title: `End the auction of “${a.title}” now?`,
      body: [a.bids
        ? `Bidding stops at once${a.state === "open" ? `, ${clock(a.ends_at - now())} early` : ""}: ` +
          `${leader}'s ${m(a.amount)} wins, as at the clock's end` +
          (a.has_reserve ? " (if it meets the reserve)." : ".")
        : "Bidding stops at once. Nobody has bid, so there is no winner and the unit goes back to stock.",
             "The auction cannot be reopened."],
      confirm: "End now", cancel: "Keep bidding open",
    };
  }
  if (action === "cancel" && a.state === "open") {
    return {
      title: `Cancel the auction of “${a.title}”?`,
      body: [`The auction ends with no winner${a.bids ? `: ${plural(a.bids, "bid")} (leading ${m(a.amount)}) are void` : ""}, ` +
             "and the unit goes back to stock.",
             "It cannot be reopened; you can start a new auction."],
      confirm: "Cancel auction", cancel: "Keep the auction",
    };
  }
  if (action === "cancel") {
    return {
      title: `Return the unpaid unit of “${a.title}” to stock?`,
      body: ["The winner's claim to it lapses for good and the unit can be sold again. " +
             "A second chance offer is no longer possible afterwards."],
      confirm: "Return to stock", cancel: "Keep it aside",
    };
  }
  return {
    title: `Offer “${a.title}” to the runner-up?`,
    body: ["The runner-up gets the unit at their highest bid and a limited time to pay; " +
           "the winner who did not pay can no longer buy it. An auction has one second chance only."],
    confirm: "Offer second chance", cancel: "Not now", danger: false,
  };
}

async function act(id, action) {
  const a = S.auctions.get(id);
  if (!a) return;
  if (!(await confirmAction(question(a, action)))) return;
  const res = await hostApi("POST", `/auctions/${encodeURIComponent(id)}/${action}`);
  if (res.ok && res.data && res.data.auction_id) putAuction(res.data);
  nowReport(res, res.ok ? ACTION_WORDS[action](S.auctions.get(id) || a) : "");
}
