// Group deals in the host console (docs/protocol.md section 18): the start form
// (product, group size, group price, time to fill, units) and the list of deals
// (in the live column's "On now", ./onnow.js, where "Close" says what it did),
// each with its units held / sold / left for new groups, its open groups (members
// of size, time left by the server's `deadline`) and the last ones that filled or
// ran out of time, and "Close". The server decides every group; the panel shows
// what it sent: each action's answer, `group_deal` and `group_update` events, and
// `GET …/group-deals/{id}` (the deal with its open groups).
//
// Deals are not in the room state: the console keeps the ids of the deals of this
// room it has seen in localStorage and fetches them when it opens the room and
// after every snapshot (reconnect, resync).

import { $, api, clock, h, money, plural, setText, store, toMajorText, toMinor } from "../util.js";
import { confirmAction } from "./confirm.js";
import { keepFocusInNow, nowReport } from "./onnow.js";
import { S, hostApi, minLevelOf, now, report } from "./state.js";

const els = new Map(); // deal_id -> list item refs
const SHOWN = 8;
const ENDED_SHOWN = 3;

const dealsKey = () => `livesell.host.deals.${S.roomId}`;

function rememberDeal(id) {
  const ids = store.get(dealsKey(), []) || [];
  if (!ids.includes(id)) { ids.push(id); store.set(dealsKey(), ids.slice(-50)); }
}

export function resetGroups() {
  els.clear();
  $("#deal-list").replaceChildren();
}

// ------------------------------------------------------------------ server views

const fetching = new Map();

async function fetchDeal(id) {
  if (fetching.has(id)) { fetching.get(id).again = true; return; }
  const state = { again: false };
  fetching.set(id, state);
  try {
    const res = await api("GET", `/api/rooms/${encodeURIComponent(S.roomId)}/group-deals/${encodeURIComponent(id)}`);
    if (res.ok && res.data && res.data.deal_id) {
      const { groups, ...deal } = res.data;
      S.deals.set(id, deal);
      rememberDeal(id);
      const open = new Set((groups || []).map((g) => g.group_id));
      for (const g of groups || []) putGroup(g);
      // Shown as open but no longer listed: it ended while the console was away.
      for (const g of S.groups.values()) {
        if (g.deal_id === id && g.state === "open" && !open.has(g.group_id)) fetchGroup(g.group_id);
      }
    }
  } finally {
    fetching.delete(id);
  }
  renderGroups();
  if (state.again) fetchDeal(id);
}

async function fetchGroup(id) {
  const res = await api("GET", `/api/rooms/${encodeURIComponent(S.roomId)}/groups/${encodeURIComponent(id)}`);
  if (res.ok && res.data) { putGroup(res.data, now()); renderGroups(); }
}

/** After the room state (opening the room, every snapshot): the deals seen here. */
export function refreshGroups() {
  for (const id of store.get(dealsKey(), []) || []) fetchDeal(id);
}

function putGroup(g, endedAt) {
  if (!g || !g.group_id) return;
  const before = S.groups.get(g.group_id);
  if (before && before.state !== "open" && g.state === "open") return;
  const next = { ...(before || {}), ...g };
  if (g.state !== "open" && !next.ended_at) next.ended_at = endedAt || now();
  S.groups.set(g.group_id, next);
}

export function onGroupDeal(ev) {
  if (!ev.deal || !ev.deal.deal_id) return;
  S.deals.set(ev.deal.deal_id, { ...(S.deals.get(ev.deal.deal_id) || {}), ...ev.deal });
  rememberDeal(ev.deal.deal_id);
  renderGroups();
  fetchDeal(ev.deal.deal_id);
}

export function onGroupUpdate(ev) {
  putGroup(ev.group, ev.ts);
  if (ev.group && !S.deals.has(ev.group.deal_id)) fetchDeal(ev.group.deal_id);
  renderGroups();
}

/** A `stock` event: a group's hold paid (or ended at the end of the show) moves the
 *  deal's held and sold counts without a `group_deal` event, so the deals on that
 *  product are fetched again. */
export function onProductStock(productId) {
  for (const d of S.deals.values()) if (d.product_id === productId && (d.held || d.state === "open")) fetchDeal(d.deal_id);
}

export const anyOpenGroup = () => [...S.groups.values()].some((g) => g.state === "open");

// ------------------------------------------------------------------ the form

export function renderGroupProducts() {
  const select = $("#gf-product");
  const keep = select.value;
  const sig = [...S.products.values()].map((p) => p.product_id + p.title).join("|");
  if (select.dataset.sig === sig) return;
  select.dataset.sig = sig;
  select.replaceChildren(...[...S.products.values()].map((p) => h("option", { value: p.product_id, text: p.title })));
  if (S.products.has(keep)) select.value = keep;
  else fillGroupDefaults();
}

/** A group price to begin from: 20 % off the list price (the host edits it). */
export function fillGroupDefaults() {
  const p = S.products.get($("#gf-product").value);
  if (p) $("#gf-price").value = toMajorText(Math.round(p.price * 0.8), p.currency);
}

const fail = (out, message, code) => report(out, { ok: false, error: { message, code } }, "");

export async function startDeal(e) {
  e.preventDefault();
  const out = $("#group-result");
  const p = S.products.get($("#gf-product").value);
  if (!p) { fail(out, "Add a product first", "no_product"); return; }
  const price = toMinor($("#gf-price").value, p.currency);
  if (Number.isNaN(price)) { fail(out, "Group price: enter an amount like 12.00", "bad_price"); return; }
  const body = { product_id: p.product_id, group_size: Number($("#gf-size").value), group_price: price,
                 fill_s: Number($("#gf-fill").value), units: Number($("#gf-units").value) };
  const minLevel = minLevelOf($("#gf-min-level"));
  if (minLevel) body.min_level = minLevel;
  const res = await hostApi("POST", "/group-deals", body);
  if (!res.ok) { report(out, res, ""); return; }
  const { groups, ...deal } = res.data;
  S.deals.set(deal.deal_id, { ...(S.deals.get(deal.deal_id) || {}), ...deal });
  rememberDeal(deal.deal_id);
  for (const g of groups || []) putGroup(g);
  renderGroups();
  report(out, res, `Group deal on “${deal.title}” is open: groups of ${deal.group_size} at ` +
                   `${money(deal.group_price, deal.currency)}, ${deal.units} units` +
                   (deal.min_level > 0 ? `, fans at level ${deal.min_level}+ only` : ""));
}

// ------------------------------------------------------------------ the list

export function renderGroups() {
  const list = $("#deal-list");
  const items = [...S.deals.values()]
    .sort((x, y) => (y.state === "open") - (x.state === "open") || (y.created_at || 0) - (x.created_at || 0))
    .slice(0, SHOWN);
  const keep = new Set(items.map((d) => d.deal_id));
  for (const [id, r] of els) if (!keep.has(id)) { r.li.remove(); els.delete(id); }
  items.forEach((d, i) => {
    let r = els.get(d.deal_id);
    if (!r) { r = buildItem(d.deal_id); els.set(d.deal_id, r); }
    if (list.children[i] !== r.li) list.insertBefore(r.li, list.children[i] || null);
    updateItem(r, d);
  });
}

function buildItem(id) {
  const r = {};
  r.title = h("span", { class: "item-title" });
  r.terms = h("span", { class: "item-meta gterms" });
  r.units = h("span", { class: "item-meta num gunits" });
  r.groups = h("ul", { class: "deal-groups", attrs: { "aria-label": "Groups" } });
  r.badge = h("span", { class: "badge" });
  r.close = h("button", { type: "button", class: "btn danger small", text: "Close", on: { click: () => closeDeal(id) } });
  r.li = h("li", { class: "item deal-item", data: { dealId: id } },
    h("div", { class: "item-main" }, r.title, r.terms, r.units, r.groups),
    r.badge, h("div", { class: "acts" }, r.close));
  return r;
}


function updateItem(r, d) {
  const at = now();
  const m = (v) => money(v, d.currency);
  const open = d.state === "open";
  const p = S.products.get(d.product_id);
  r.li.dataset.state = d.state;
  r.li.dataset.held = d.held;
  r.li.dataset.sold = d.sold;
  r.li.dataset.left = d.left;
  setText(r.title, d.title);
  r.badge.className = `badge ${open ? "open" : "ended"}`;
  setText(r.badge, open ? "open" : "closed");
  setText(r.terms, `Groups of ${d.group_size} at ${m(d.group_price)}` + (p ? ` (list ${m(p.price)})` : "") +
                   ` · fill within ${clock(d.fill_s * 1000)}` + (d.min_level > 0 ? ` · level ${d.min_level}+ only` : ""));
  setText(r.units, `held ${d.held} · sold ${d.sold} · left ${d.left} of ${d.units}`);
  const groups = [...S.groups.values()].filter((g) => g.deal_id === d.deal_id);
  const openGroups = groups.filter((g) => g.state === "open").sort((x, y) => x.deadline - y.deadline);
  const over = groups.filter((g) => g.state !== "open").sort((x, y) => (y.ended_at || 0) - (x.ended_at || 0))
    .slice(0, ENDED_SHOWN);
  r.groups.replaceChildren(...[...openGroups, ...over].map((g) => {
    const left = g.deadline - at;
    const text = g.state === "open"
      ? `${g.starter || "A viewer"}'s group: ${g.members} of ${g.size} · ${left > 0 ? `${clock(left)} left` : "time's up…"}`
      : g.state === "complete" ? `${g.starter || "A viewer"}'s group: full ✓ (${g.members} of ${g.size})`
        : `${g.starter || "A viewer"}'s group: ran out of time (${g.members} of ${g.size})`;
    return h("li", { class: `deal-group ${g.state}`, data: { groupId: g.group_id, state: g.state }, text });
  }));
  if (!openGroups.length && !over.length) r.groups.append(h("li", { class: "deal-group none muted", text: "No groups yet" }));
  r.close.hidden = !open;
  r.close.setAttribute("aria-label", `Close the group deal on ${d.title}`);
  // Its Close left with the deal's end: keyboard focus stays in On now.
  if (!open && document.activeElement === r.close) keepFocusInNow();
}

async function closeDeal(id) {
  const d = S.deals.get(id);
  if (!d) return;
  const open = [...S.groups.values()].filter((g) => g.deal_id === id && g.state === "open").length;
  const sure = await confirmAction({
    title: `Close the group deal on “${d.title}”?`,
    body: ["No new group can start and nobody can join one. " +
           (open ? `The ${plural(open, "group")} still filling end${open === 1 ? "s" : ""} now and ${open === 1 ? "its" : "their"} units go back to stock; `
                 : "") +
           "full groups keep their price and can still pay.",
           "A closed deal cannot be reopened; you can start a new one."],
    confirm: "Close deal", cancel: "Keep it open",
  });
  if (!sure) return;
  const res = await hostApi("POST", `/group-deals/${encodeURIComponent(id)}/close`);
  if (res.ok && res.data && res.data.deal_id) {
    const { groups, ...deal } = res.data;
    S.deals.set(id, { ...d, ...deal });
    for (const g of groups || []) putGroup(g);
  }
  renderGroups();
  const after = S.deals.get(id) || d;
  nowReport(res, res.ok ? `Closed the group deal on “${after.title}”: ${after.sold} sold, ` +
                                           `${after.held} in full groups waiting for payment` : "");
  if (res.ok) fetchDeal(id);
}
