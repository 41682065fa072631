// The show report in the host console (GET /api/rooms/{room}/report, host key): the
// totals, revenue per currency (one line each: amounts in different currencies are
// never added), the funnel from viewers to holds to buyers and orders, the top
// products, coupon cost, chat, the audit and the giveaway / auction proofs. It loads
// by itself when the show ends (`show_ended`, or a room opened after its end); before
// that "Show report" gives a live snapshot.
// The downloads (report as HTML, CSV or JSON, the orders as CSV) need the host key in
// a header, so each is fetched, made a Blob and saved through an object URL and an
// `<a download>` named as the server's Content-Disposition says (else
// `{room}-report.html` and so on); the URL is revoked afterwards.
// Everything from the server is drawn with textContent (util.js `h`), never as markup.

import { $, h, money, plural, saveBlob, setText } from "../util.js";
import { S, hostApi, report as outcome } from "./state.js";

const TOP_PRODUCTS = 10;

/** What each download button fetches, and the file name when the server gives none. */
const DOWNLOADS = {
  html: { path: "/report.html", label: "Report (HTML)", fallback: (room) => `${room}-report.html` },
  csv: { path: "/report.csv", label: "Report (CSV)", fallback: (room) => `${room}-report.csv` },
  orders: { path: "/orders.csv", label: "Orders (CSV)", fallback: (room) => `${room}-orders.csv` },
  json: { path: "/report", label: "Report (JSON)", fallback: (room) => `${room}-report.json` },
};

const STATE_WORDS = { scheduled: "upcoming", live: "live", ended: "ended" };

let loadToken = 0; // an answer for another room (or an older load) is dropped
let autoLoaded = false; // loaded once for the show's end in this room

const percent = (fraction) => `${((Number(fraction) || 0) * 100).toFixed(1)}%`;
const count = (n) => (Number(n) || 0).toLocaleString();
const time = (ms) => new Date(ms).toLocaleTimeString();

/** Amounts per currency, each formatted in its own currency, never added together. */
function perCurrency(amounts) {
  const entries = Object.entries(amounts || {}).filter(([, v]) => Number(v)).sort(([a], [b]) => a.localeCompare(b));
  return entries.map(([cur, minor]) => money(minor, cur)).join(", ");
}

// ------------------------------------------------------------------ lifecycle

export function resetReport() {
  loadToken += 1;
  autoLoaded = false;
  $("#rp-summary").hidden = true;
  $("#rp-intro").hidden = false;
  $("#rp").dataset.loaded = "";
  delete $("#rp").dataset.state;
  $("#rp-load").removeAttribute("aria-busy");
  for (const id of ["#rp-revenue", "#rp-funnel", "#rp-products", "#rp-coupons", "#rp-audit-failed", "#rp-proofs"]) {
    $(id).replaceChildren();
  }
  for (const id of ["#rp-result", "#rp-dl-result", "#rp-age"]) setText($(id), "");
}

/** The show ended (this console's End show, the `show_ended` event, or a room opened
 *  once ended): load the final report, once per room. The server answers POST /end
 *  once the show is wound down and its event sent, so the report loaded then is the
 *  final one already, and the event that follows loads nothing again. */
export function reportShowEnded() {
  if (autoLoaded) return;
  autoLoaded = true;
  loadReport();
}

/** GET …/report: resolves to whether this load's answer was shown. */
export async function loadReport() {
  if (!S.roomId) return false;
  const token = ++loadToken;
  const button = $("#rp-load");
  button.setAttribute("aria-busy", "true");
  setText($("#rp-age"), "Loading…");
  const res = await hostApi("GET", "/report");
  if (token !== loadToken) return false;
  button.removeAttribute("aria-busy");
  setText($("#rp-age"), "");
  if (!res.ok || !res.data) {
    outcome($("#rp-result"), res, "");
    return false;
  }
  if ($("#rp-result").dataset.outcome === "error") setText($("#rp-result"), "");
  renderReport(res.data);
  return true;
}

// ------------------------------------------------------------------ the summary

function renderReport(r) {
  const room = r.room || {};
  const state = room.state || "live";
  const panel = $("#rp");
  panel.dataset.loaded = "true";
  panel.dataset.state = state;
  $("#rp-intro").hidden = true;
  $("#rp-summary").hidden = false;

  const stateEl = $("#rp-state");
  stateEl.dataset.state = state;
  setText(stateEl, state === "ended"
    ? `Room state: ended${room.ended_at ? ` at ${time(room.ended_at)}` : ""}. This is the final report.`
    : `Room state: ${STATE_WORDS[state] || state}. A live snapshot: the show is still running.`);
  setText($("#rp-age"), r.generated_at ? `made ${time(r.generated_at)}` : "");

  renderTotals(r.totals || {});
  renderFunnel(r.funnel || {});
  renderProducts(Array.isArray(r.products) ? r.products : []);
  renderCoupons(Array.isArray(r.coupons) ? r.coupons : []);
  const chat = r.chat || {};
  setText($("#rp-chat"), `${plural(chat.messages, "message")} (busiest minute: ${count(chat.busiest_minute)}) · ` +
    `${plural(chat.likes, "like")}`);
  renderAudit(r.audit || {});
  renderProofs(Array.isArray(r.lotteries) ? r.lotteries : [], Array.isArray(r.auctions) ? r.auctions : []);
}

function renderTotals(t) {
  for (const key of ["orders", "orders_cancelled", "units", "buyers"]) {
    const el = $(`#rp-t-${key}`);
    el.dataset.value = String(Number(t[key]) || 0);
    setText(el, count(t[key]));
  }
  const revenue = t.revenue || {};
  const discounts = t.discounts || {};
  const refunded = t.refunded || {}; // refunds already taken off the revenue
  const currencies = [...new Set([...Object.keys(revenue), ...Object.keys(discounts), ...Object.keys(refunded)])].sort();
  $("#rp-revenue").replaceChildren(...currencies.map((cur) => {
    const minor = Number(revenue[cur]) || 0;
    const notes = [];
    if (Number(discounts[cur])) notes.push(`after ${money(discounts[cur], cur)} of discounts`);
    if (Number(refunded[cur])) notes.push(`and ${money(refunded[cur], cur)} refunded`);
    return h("li", { class: "rp-money", data: { currency: cur, minor } },
      h("span", { class: "rp-amount num", text: money(minor, cur) }),
      h("span", { class: "rp-cur mono", text: cur }),
      notes.length ? h("span", { class: "rp-off muted small", text: notes.join(" ") }) : null);
  }));
  $("#rp-revenue-empty").hidden = currencies.length > 0;
}

function renderFunnel(f) {
  const step = (name, n, label, extra) => h("li", { class: "rp-step", data: { step: name, value: Number(n) || 0 } },
    h("span", { class: "rp-n num", text: count(n) }),
    h("span", { class: "rp-label", text: label }),
    extra ? h("span", { class: "rp-extra muted small", text: extra }) : null);
  $("#rp-funnel").replaceChildren(
    step("viewers", f.viewers, Number(f.viewers) === 1 ? "viewer" : "viewers", `peak ${count(f.peak_viewers)} at once`),
    step("holds", f.holds, Number(f.holds) === 1 ? "hold" : "holds",
         `${percent(f.hold_expiry_rate)} expired unpaid (${count(f.holds_expired)})`),
    step("buyers", f.buyers, Number(f.buyers) === 1 ? "buyer" : "buyers"),
    step("orders", f.orders, Number(f.orders) === 1 ? "order" : "orders"));
  const conv = $("#rp-conversion");
  conv.dataset.value = String(Number(f.conversion) || 0);
  setText(conv, `Conversion: ${percent(f.conversion)} of viewers bought.`);
}

function renderProducts(products) {
  // Most units first; money can't rank them (currencies differ).
  const ranked = products.slice().sort((a, b) => (b.units - a.units) || (b.orders - a.orders)
    || String(a.title).localeCompare(String(b.title)));
  const top = ranked.slice(0, TOP_PRODUCTS);
  $("#rp-products").replaceChildren(...top.map((p) => h("tr", { data: { productId: p.product_id } },
    h("th", { scope: "row", class: "rp-title", text: p.title || p.product_id }),
    h("td", { class: "r num", text: count(p.units) }),
    h("td", { class: "r num", text: count(p.units_cancelled) }),
    h("td", { class: "r num", text: count(p.buyers) }),
    h("td", { class: "r num rp-rev", text: perCurrency(p.revenue) || "—" }))));
  $("#rp-products-empty").hidden = top.length > 0;
  const more = $("#rp-products-more");
  more.hidden = ranked.length <= top.length;
  setText(more, `And ${plural(ranked.length - top.length, "more product")}: all of them are in the CSV.`);
}

function renderCoupons(coupons) {
  const total = {};
  for (const c of coupons) {
    for (const [cur, minor] of Object.entries(c.cost || {})) total[cur] = (total[cur] || 0) + (Number(minor) || 0);
  }
  const uses = coupons.reduce((n, c) => n + (Number(c.used) || 0), 0);
  setText($("#rp-coupon-cost"), coupons.length
    ? `Coupon cost: ${perCurrency(total) || "nothing"} (${plural(uses, "use")} of ${plural(coupons.length, "coupon")})`
    : "No coupons were dropped.");
  $("#rp-coupons").replaceChildren(...coupons.map((c) => {
    const off = c.kind === "percent" ? `${c.value}% off` : "";
    const meta = [off, `used ${count(c.used)}${Number.isFinite(c.count) ? ` of ${count(c.count)}` : ""}`,
                  `cost ${perCurrency(c.cost) || "nothing"}`, c.referral_reward ? "referral reward" : ""]
      .filter(Boolean).join(" · ");
    return h("li", { class: "rp-coupon", data: { couponId: c.coupon_id } },
      h("span", { class: "rp-ctitle", text: c.title || c.coupon_id }),
      h("span", { class: "muted small", text: meta }));
  }));
}

function renderAudit(a) {
  const el = $("#rp-audit");
  const failed = Array.isArray(a.failed) ? a.failed : [];
  el.dataset.ok = a.ok ? "true" : "false";
  el.className = `rp-audit ${a.ok ? "ok" : "bad"}`;
  if (a.ok) setText(el, "✓ Every check holds: the counters match the orders.");
  else if (a.state && a.state !== "whole") setText(el, `✗ Not checked: the room is ${a.state}. Load the report again shortly.`);
  else setText(el, `✗ ${plural(failed.length, "check")} failing:`);
  $("#rp-audit-failed").replaceChildren(...(a.ok ? [] : failed).map((name) => h("li", { class: "mono", text: name })));
}

function renderProofs(lotteries, auctions) {
  const nick = (id) => S.nicknames.get(id) || id;
  const line = (label, value, mono = true) => h("div", { class: "rp-kv" },
    h("span", { class: "rp-k muted small", text: label }),
    h("span", { class: mono ? "rp-v mono" : "rp-v", text: value }));
  const items = lotteries.map((l) => {
    const winners = Array.isArray(l.winners) ? l.winners : [];
    const drawn = Boolean(l.seed);
    return h("li", { class: "item rp-proof", data: { kind: "lottery", lotteryId: l.lottery_id, drawn } },
      h("div", { class: "item-main" },
        h("span", { class: "item-title", text: `Giveaway: ${l.prize || l.lottery_id}` }),
        line("Seed hash", l.seed_hash || "—"),
        line("Seed", drawn ? l.seed : "not drawn yet (published at the draw)"),
        line("Entrants", `${count(l.entrants)}${l.entrants_digest ? ` · digest ${l.entrants_digest}` : ""}`),
        line("Winners", drawn ? (winners.map(nick).join(", ") || "none") : "—", false),
        l.verify ? line("Check it", String(l.verify).replace("<server>", location.origin)) : null));
  });
  for (const a of auctions) {
    const res = a.result || {};
    const winner = res.winner ? (res.winner_name || res.winner) : null;
    items.push(h("li", { class: "item rp-proof", data: { kind: "auction", auctionId: a.auction_id, chainOk: Boolean(a.chain_ok) } },
      h("div", { class: "item-main" },
        h("span", { class: "item-title", text: `Auction: ${a.title || a.auction_id}` }),
        h("span", { class: "item-meta", text: `${a.state} · ${plural(a.bids, "bid")}` +
          (a.state === "open" ? "" : ` · ${winner ? `won by ${winner}` : "no winner"}`) }),
        h("span", { class: `rp-chain ${a.chain_ok ? "ok" : "bad"}`,
                    text: a.chain_ok ? "✓ The bid chain verifies" : "✗ The bid chain does not verify" }))));
  }
  $("#rp-proofs").replaceChildren(...items);
  $("#rp-proofs-empty").hidden = items.length > 0;
}

// ------------------------------------------------------------------ downloads

/** The file name in a Content-Disposition header (filename*=UTF-8'' first), with no
 *  path or control characters; `fallback` when there is none. */
export function filenameOf(disposition, fallback) {
  let name = "";
  if (disposition) {
    const star = /filename\*\s*=\s*utf-8''([^;]+)/i.exec(disposition);
    if (star) {
      try { name = decodeURIComponent(star[1].trim()); } catch { name = ""; }
    }
    if (!name) {
      const plain = /filename\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;\s]+))/i.exec(disposition);
      if (plain) name = plain[1] !== undefined ? plain[1].replace(/\\(.)/g, "$1") : plain[2];
    }
  }
  name = name.replace(/[/\\\u0000-\u001f\u007f]/g, "_").trim();
  return name && !/^\.+$/.test(name) ? name : fallback;
}


async function errorOf(res) {
  let data = null;
  try { data = await res.json(); } catch { data = null; }
  return (data && data.error) || { code: `http_${res.status}`, message: res.statusText || "Request failed" };
}

/** One download button: fetch with the host key, then save what came back. */
export async function download(e) {
  const button = e.currentTarget;
  const kind = DOWNLOADS[button.dataset.download];
  const out = $("#rp-dl-result");
  if (!kind || !S.roomId) return;
  const roomId = S.roomId;
  button.disabled = true;
  button.setAttribute("aria-busy", "true");
  out.className = "result";
  out.dataset.outcome = "";
  setText(out, `Preparing ${kind.label}…`);
  try {
    let res;
    try {
      res = await fetch(`/api/rooms/${encodeURIComponent(roomId)}${kind.path}`,
                        { headers: { "X-Host-Key": S.hostKey }, cache: "no-store" });
    } catch {
      outcome(out, { ok: false, error: { code: "network", message: "Cannot reach the server. Check the connection." } }, "");
      return;
    }
    if (roomId !== S.roomId) return;
    if (!res.ok) {
      outcome(out, { ok: false, error: await errorOf(res) }, "");
      return;
    }
    let blob;
    try { blob = await res.blob(); } catch {
      outcome(out, { ok: false, error: { code: "network", message: "The download was cut off. Try again." } }, "");
      return;
    }
    if (roomId !== S.roomId) return;
    const name = filenameOf(res.headers.get("Content-Disposition"), kind.fallback(roomId));
    saveBlob(blob, name);
    outcome(out, { ok: true }, `Downloaded ${name}`);
    out.dataset.file = name;
  } finally {
    button.disabled = false;
    button.removeAttribute("aria-busy");
  }
}
