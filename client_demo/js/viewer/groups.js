// Group deals on the viewer page (docs/protocol.md section 18): one card per deal
// with the product, the group price against the list price, the group size and the
// units left for new groups; "Start a group"; the open groups, each with its seats
// (filled and empty circles), seats and time left (the server's `deadline`, counted
// by the server clock) and "Join"; this viewer's own group ("waiting for N more",
// "Invite friends" with a link to this page with `?group=<id>`), its hold paid
// through the page's one checkout (./checkout.js) once the group is full, and why
// a group ended.
//
// Deals are not in the snapshot: the page keeps the ids of the deals it saw in
// `group_deal` events in sessionStorage and fetches each (`GET …/group-deals/{id}`,
// the deal with its open groups) on every snapshot (load, reconnect, resync) and
// when a `group_deal` event says it changed; `group_update` events keep the groups
// live in between. Which group is this viewer's is known from its own `group`
// reply (or the `details.group_id` of `already_in_group`), kept in sessionStorage
// by deal id for the current identity; the `holds` of a `group_update` that
// filled or ended a group name every member's hold.

import { api, clock, copyText, h, initials, money, plural, setText, toast } from "../util.js";
import { offerHold, openCheckout } from "./checkout.js";
import { scheduleClock } from "./clock.js";
import { showLevel } from "./fans.js";
import { S, live, mustSignIn, now, showEnded } from "./state.js";
import { explainGroup } from "./words.js";

const cards = new Map(); // deal_id -> card element refs
const ENDED_SHOWN = 3; // groups that ended (full or out of time) kept on a card
const MSG_MS = 9000;
// The hold of a full group expires sale.hold_seconds after it filled. The server
// names that moment only to the member whose join filled it (the `group` reply's
// `hold.expires_at`); the others learn their hold id from `group_update` and count
// from its `ts` with the server's hold lifetime: `limits.hold_seconds` when the
// server sends it, else its documented default (docs/protocol.md section 13).
const DEFAULT_HOLD_MS = 180_000;

// ------------------------------------------------------------------ storage

const dealsKey = () => `livesell.deals.${S.roomId}`;
const mineKey = (dealId) => `livesell.group.${dealId}`;

function session(key, fallback) {
  try {
    const raw = sessionStorage.getItem(key);
    return raw === null ? fallback : JSON.parse(raw);
  } catch { return fallback; }
}

function keep(key, value) {
  try {
    if (value === null) sessionStorage.removeItem(key);
    else sessionStorage.setItem(key, JSON.stringify(value));
  } catch { /* private mode: the page only forgets */ }
}

function rememberDeal(id) {
  if (!id) return;
  const ids = session(dealsKey(), []) || [];
  if (!ids.includes(id)) { ids.push(id); keep(dealsKey(), ids); }
}

/** This viewer's group in the deal: {viewer_id, group_id, state, hold, paid, why},
 *  for the current identity only. */
function mine(dealId) {
  const rec = session(mineKey(dealId), null);
  if (!rec || !S.me || rec.viewer_id !== S.me.viewer_id) return null;
  return rec;
}

function remember(dealId, changes) {
  const rec = { ...(mine(dealId) || {}), ...changes, viewer_id: S.me ? S.me.viewer_id : null };
  keep(mineKey(dealId), rec);
  return rec;
}

const holdMs = () => (S.limits && Number.isFinite(S.limits.hold_seconds) ? S.limits.hold_seconds * 1000
                                                                         : DEFAULT_HOLD_MS);

// ------------------------------------------------------------------ the shared link

/** The group named in the address (`?group=g_…`): a friend's invitation. */
export const sharedGroupId = () => new URLSearchParams(location.search).get("group") || "";

export function inviteLink(groupId) {
  const url = new URL(location.href);
  url.hash = "";
  url.search = "";
  url.searchParams.set("group", groupId);
  return url.toString();
}

// ------------------------------------------------------------------ server views

const fetching = new Map(); // deal_id -> {again}

/** GET the deal with its open groups; one request in flight per deal (a change
 *  announced meanwhile asks once more when it is back). */
export async function fetchDeal(id) {
  if (!id || !S.roomId) return;
  if (fetching.has(id)) { fetching.get(id).again = true; return; }
  const state = { again: false };
  fetching.set(id, state);
  try {
    const res = await api("GET", `/api/rooms/${encodeURIComponent(S.roomId)}/group-deals/${encodeURIComponent(id)}`);
    if (res.ok && res.data && res.data.deal_id) {
      const { groups, ...deal } = res.data;
      S.deals.set(id, deal);
      rememberDeal(id);
      const open = new Set();
      for (const g of groups || []) { putGroup(g); open.add(g.group_id); }
      // A group the page still shows as open that the deal no longer lists has ended
      // (the event was missed): ask for it once to learn how.
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

/** GET one group (a shared link's target, or this viewer's own). */
export async function fetchGroup(id) {
  if (!id || !S.roomId) return null;
  const res = await api("GET", `/api/rooms/${encodeURIComponent(S.roomId)}/groups/${encodeURIComponent(id)}`);
  if (!res.ok) {
    if (id === sharedGroupId() && res.error && res.error.code === "group_not_found" && !S.sharedMissing) {
      S.sharedMissing = true;
      toast(explainGroup(res.error), "error");
    }
    return null;
  }
  const g = res.data;
  putGroup(g);
  const m = mine(g.deal_id);
  if (m && m.group_id === g.group_id && g.state !== m.state) settleMine(g, null, null);
  if (!S.deals.has(g.deal_id)) await fetchDeal(g.deal_id);
  renderGroups();
  return g;
}

/** Every snapshot (load, reconnect, resync): deals are not in it, so load the ones
 *  this tab has seen, the shared link's group and this viewer's groups afresh. */
export function refreshGroups() {
  for (const id of session(dealsKey(), []) || []) fetchDeal(id);
  const shared = sharedGroupId();
  if (shared) fetchGroup(shared);
  for (const id of session(dealsKey(), []) || []) {
    const m = mine(id);
    if (m && m.group_id && (m.state === "open" || !m.state)) fetchGroup(m.group_id);
  }
  renderGroups();
}

function putGroup(g) {
  if (!g || !g.group_id) return;
  const before = S.groups.get(g.group_id);
  // A group only moves forward: open (more members) → complete or expired.
  if (before && before.state !== "open" && g.state === "open") return;
  if (before && before.state === "open" && g.state === "open" && (g.members || 0) < (before.members || 0)) return;
  S.groups.set(g.group_id, { ...(before || {}), ...g, seen_at: (before && before.seen_at) || now() });
}

/** `group_deal`: the deal's terms and units (its groups are fetched). */
export function onGroupDeal(ev) {
  const deal = ev.deal;
  if (!deal || !deal.deal_id) return;
  S.deals.set(deal.deal_id, { ...(S.deals.get(deal.deal_id) || {}), ...deal });
  rememberDeal(deal.deal_id);
  renderGroups();
  fetchDeal(deal.deal_id);
}

/** `group_update`: a group started, gained a member, filled or ended. */
export function onGroupUpdate(ev) {
  const g = ev.group;
  if (!g || !g.group_id) return;
  putGroup(g);
  if (g.state !== "open") S.groups.get(g.group_id).ended_at = ev.ts || now();
  if (!S.deals.has(g.deal_id)) fetchDeal(g.deal_id);
  settleMine(g, ev.holds || null, ev.ts || null);
  renderGroups();
}

/** This viewer's group filled or ended: its hold is payable now, or over. */
function settleMine(g, holds, ts) {
  const me = S.me ? S.me.viewer_id : null;
  let m = mine(g.deal_id);
  const holdId = holds && me ? holds[me] : null;
  if (!holdId && (!m || m.group_id !== g.group_id)) return;
  if (!m || m.group_id !== g.group_id) m = remember(g.deal_id, { group_id: g.group_id });
  const deal = S.deals.get(g.deal_id) || {};
  if (g.state === "complete" && m.state !== "complete") {
    const id = holdId || (m.hold && m.hold.id);
    if (!id) return;
    const hold = { unit_price: deal.group_price, currency: deal.currency, ...(m.hold || {}), id, state: "held",
                   expires_at: (ts || now()) + holdMs() };
    remember(g.deal_id, { state: "complete", hold });
    toast(`Your group for ${deal.title || "the deal"} is full! Pay ${money(hold.unit_price, hold.currency)} before the timer runs out.`, "ok");
  } else if (g.state === "expired" && m.state !== "expired") {
    remember(g.deal_id, { state: "expired", why: S.deals.get(g.deal_id)?.state === "closed" ? "closed" : "time" });
    toast("Your group ran out of time before it filled: your reservation was released, nothing was charged.");
  } else if (g.state === "open") {
    remember(g.deal_id, { state: "open" });
  }
}

/** The `group` reply to start_group / join_group: this viewer's group and hold. */
export function onGroupReply(reply, request) {
  const dealId = reply.deal_id || (request && request.deal_id);
  if (!dealId) return;
  rememberDeal(dealId);
  const before = mine(dealId);
  const hold = { ...(reply.hold || {}) };
  const rec = remember(dealId, { group_id: reply.group_id, state: reply.state, hold, paid: null, why: null });
  putGroup({ group_id: reply.group_id, deal_id: dealId, state: reply.state, size: reply.size,
             members: reply.members, seats_left: Math.max(0, reply.size - reply.members),
             deadline: reply.deadline });
  hideMsg(dealId);
  if (reply.state === "complete" && (!before || before.state !== "complete")) {
    const deal = S.deals.get(dealId) || {};
    toast(`You filled the group for ${deal.title || "the deal"}! Pay ${money(hold.unit_price, hold.currency)} before the timer runs out.`, "ok");
  } else if (request && request.type === "start_group") {
    toast("Your group is started: invite friends to fill it.", "ok");
  }
  if (!S.deals.has(dealId)) fetchDeal(dealId);
  renderGroups();
  return rec;
}

/** A refused start or join, in plain words on the deal's card. */
export function onGroupRefused(err, request) {
  const g = request.group_id ? S.groups.get(request.group_id) : null;
  const dealId = request.deal_id || (g && g.deal_id) || null;
  const d = err.details || {};
  if (err.code === "already_in_group" && d.group_id && dealId) {
    const m = mine(dealId);
    if (!m || m.group_id !== d.group_id) remember(dealId, { group_id: d.group_id, state: "open", hold: null });
    fetchGroup(d.group_id);
  }
  if (request.group_id && (err.code === "group_full" || err.code === "group_expired")) fetchGroup(request.group_id);
  if (dealId && (err.code === "deal_full" || err.code === "deal_closed")) fetchDeal(dealId);
  const text = explainGroup(err);
  if (dealId && cards.has(dealId)) showMsg(dealId, text);
  else toast(text, "error");
  renderGroups();
}

/** `order_placed`: a group's hold checked out is paid. */
export function onGroupOrder(order) {
  for (const id of S.deals.keys()) {
    const m = mine(id);
    if (m && m.hold && m.hold.id === order.hold_id) remember(id, { paid: order.order_id || true });
  }
  renderGroups();
}

/** Server timestamps the clock counts down to: open groups' deadlines, holds. */
export function groupDeadlines() {
  const out = [];
  for (const g of S.groups.values()) if (g.state === "open") out.push(g.deadline);
  for (const id of S.deals.keys()) {
    const m = mine(id);
    if (m && m.state === "complete" && m.hold && m.hold.expires_at) out.push(m.hold.expires_at);
  }
  return out;
}

// ------------------------------------------------------------------ rendering

export function renderGroups() {
  const box = document.getElementById("groups");
  if (!box) return;
  // Open deals first (the newest first), then the closed ones this viewer has a part in.
  const deals = [...S.deals.values()]
    .filter((d) => d.state === "open" || mine(d.deal_id) || groupsOf(d.deal_id).some((g) => g.group_id === sharedGroupId()))
    .sort((x, y) => (y.state === "open") - (x.state === "open") || (y.created_at || 0) - (x.created_at || 0));
  const ids = new Set(deals.map((d) => d.deal_id));
  for (const [id, r] of cards) if (!ids.has(id)) { r.root.remove(); cards.delete(id); }
  deals.forEach((d, i) => {
    let r = cards.get(d.deal_id);
    if (!r) { r = buildCard(d.deal_id); cards.set(d.deal_id, r); }
    if (box.children[i] !== r.root) box.insertBefore(r.root, box.children[i] || null);
    updateCard(d.deal_id);
  });
  box.hidden = deals.length === 0;
  scheduleClock();
}

function groupsOf(dealId) {
  return [...S.groups.values()].filter((g) => g.deal_id === dealId);
}

function buildCard(id) {
  const r = { items: new Map() };
  const titleId = `gt-${id}`;
  r.badge = h("span", { class: "badge gbadge" });
  r.title = h("h3", { class: "gcard-title", attrs: { id: titleId } });
  r.price = h("span", { class: "gprice-now num" });
  r.was = h("span", { class: "price-was num" });
  r.off = h("span", { class: "price-off" });
  r.terms = h("p", { class: "gterms num" });
  // A fan level the deal asks for (`min_level`, docs/protocol.md section 19).
  r.level = h("p", { class: "level-req glevel", hidden: true });
  r.shared = h("p", { class: "notice info gshared", attrs: { role: "status" }, hidden: true });
  r.mineText = h("p", { class: "gmine-text num", attrs: { role: "status", "aria-live": "polite" } });
  r.pay = h("button", { type: "button", class: "btn primary gpay", on: { click: () => pay(id) } });
  r.invite = h("button", { type: "button", class: "btn ginvite", text: "Invite friends",
                           attrs: { "aria-expanded": "false" }, on: { click: () => toggleInvite(id) } });
  r.link = h("input", { class: "ginvite-link mono", readOnly: true, id: `gl-${id}`,
                        attrs: { "aria-label": "Invitation link to your group" } });
  r.copy = h("button", { type: "button", class: "btn small accent", text: "Copy link",
                         on: { click: () => copyLink(id) } });
  // The link's QR code, drawn by the server (GET /api/qr.svg, the segno library), for a
  // friend beside you to scan.
  r.qr = h("img", { class: "ginvite-qr", attrs: { alt: "QR code of the invitation link",
                                                   width: "168", height: "168" } });
  r.inviteBox = h("div", { class: "ginvite-box", hidden: true },
    h("p", { class: "small muted", text: "Send this link: friends who open it can join your group." }),
    h("div", { class: "ginvite-row" }, r.link, r.copy), r.qr);
  r.mine = h("div", { class: "gmine", hidden: true }, r.mineText, h("div", { class: "gmine-acts" }, r.pay, r.invite),
    r.inviteBox);
  r.start = h("button", { type: "button", class: "btn primary gstart", on: { click: () => start(id) } });
  r.msg = h("p", { class: "notice error gmsg", attrs: { role: "alert" }, hidden: true });
  r.listHead = h("h4", { class: "glist-h", attrs: { id: `glh-${id}` } });
  r.list = h("ul", { class: "glist", attrs: { "aria-labelledby": `glh-${id}` } });
  r.empty = h("p", { class: "muted small gempty" });
  r.root = h("article", { class: "gcard", data: { dealId: id }, attrs: { "aria-labelledby": titleId } },
    h("div", { class: "gcard-head" }, r.badge, r.title),
    h("div", { class: "price-row gprice" }, r.price, r.was, r.off),
    r.terms, r.level, r.shared, r.mine, r.start, r.msg, r.listHead, r.list, r.empty);
  return r;
}

function showMsg(id, text) {
  const r = cards.get(id);
  if (!r) { toast(text, "error"); return; }
  setText(r.msg, text);
  r.msg.hidden = false;
  clearTimeout(r.msgTimer);
  r.msgTimer = setTimeout(() => { r.msg.hidden = true; }, MSG_MS);
}

function hideMsg(id) {
  const r = cards.get(id);
  if (r) r.msg.hidden = true;
}


function pendingFor(dealId) {
  if (!live) return null;
  for (const f of live.pending.values()) {
    if (f.type === "start_group" && f.deal_id === dealId) return f;
    if (f.type === "join_group" && (S.groups.get(f.group_id) || {}).deal_id === dealId) return f;
  }
  return null;
}

function updateCard(id) {
  const r = cards.get(id);
  const d = S.deals.get(id);
  if (!r || !d) return;
  const at = now();
  const m = (v) => money(v, d.currency);
  const product = S.products.get(d.product_id);
  const open = d.state === "open";
  const me = mine(id);
  const pending = pendingFor(id);
  const ended = showEnded();
  r.root.dataset.state = d.state;
  r.root.dataset.left = d.left;
  r.root.dataset.minLevel = showLevel(r.level, d.min_level);

  setText(r.badge, open ? "Group deal" : "Closed");
  r.badge.className = `badge gbadge ${open ? "open" : "ended"}`;
  setText(r.title, d.title || (product && product.title) || "Group deal");
  setText(r.price, m(d.group_price));
  const list = product ? product.price : null;
  r.was.hidden = !(list && list > d.group_price);
  r.off.hidden = r.was.hidden;
  if (list && list > d.group_price) {
    setText(r.was, m(list));
    r.was.setAttribute("aria-label", `list price ${m(list)}`);
    setText(r.off, `−${Math.round((1 - d.group_price / list) * 100)}%`);
  }
  const groupsLeft = Math.floor((d.left || 0) / (d.group_size || 1));
  setText(r.terms, `Groups of ${d.group_size} · ${plural(d.left, "unit")} left` +
                   (open ? ` (${plural(groupsLeft, "new group")})` : "") +
                   ` · fill within ${clock(d.fill_s * 1000)}`);

  // The shared link's group, highlighted (or why it can't be joined).
  const sharedId = sharedGroupId();
  const shared = sharedId ? S.groups.get(sharedId) : null;
  const sharedHere = shared && shared.deal_id === id;
  r.shared.hidden = !sharedHere;
  if (sharedHere) {
    const mineIsIt = me && me.group_id === sharedId;
    let text;
    if (mineIsIt) text = "You're in this group.";
    else if (shared.state === "open" && open) text = `You were invited to ${shared.starter || "a friend"}'s group: join it below.`;
    else if (shared.state === "complete") text = `The group you were invited to is already full. ${open ? "Start your own group or join another." : ""}`;
    else text = `The group you were invited to ${shared.state === "expired" ? "ran out of time" : "is closed"}. ${open ? "Start your own group or join another." : ""}`;
    setText(r.shared, text.trim());
  }

  renderMine(r, d, me, at);

  // Start a group: a button as long as the deal has units for one.
  const inDeal = !!(me && me.group_id && me.state !== "expired");
  let text = "Start a group";
  let label = `Start a group for ${d.title}: ${d.group_size} people at ${m(d.group_price)} each`;
  let can = open && !ended;
  if (!open) { text = "Deal closed"; label = `The group deal on ${d.title} is closed`; can = false; }
  else if (ended) { text = "Show ended"; label = text; can = false; }
  else if (inDeal) { text = "You're in a group"; label = `${text} for ${d.title}`; can = false; }
  else if (mustSignIn()) { text = "Sign in on the shop to join"; label = text; can = false; }
  else if ((d.left || 0) < d.group_size) { text = "No units left for a new group"; label = `${text}: join an open group`; can = false; }
  if (pending) { text = live.state === "live" ? (pending.type === "start_group" ? "Starting…" : "Joining…") : "Waiting for connection…"; label = text; can = false; }
  setText(r.start, text);
  r.start.disabled = !can;
  r.start.setAttribute("aria-label", label);

  // The open groups (the first to expire first), then the last few that ended.
  const all = groupsOf(id);
  const openGroups = all.filter((g) => g.state === "open").sort((x, y) => x.deadline - y.deadline);
  const over = all.filter((g) => g.state !== "open")
    .sort((x, y) => (y.ended_at || 0) - (x.ended_at || 0)).slice(0, ENDED_SHOWN);
  // The shared group first when it is open, so a friend's link lands on it.
  if (sharedHere && shared.state === "open") {
    const i = openGroups.findIndex((g) => g.group_id === sharedId);
    if (i > 0) openGroups.unshift(...openGroups.splice(i, 1));
  }
  const shown = [...openGroups, ...over];
  const keepIds = new Set(shown.map((g) => g.group_id));
  for (const [gid, it] of r.items) if (!keepIds.has(gid)) { it.li.remove(); r.items.delete(gid); }
  shown.forEach((g, i) => {
    let it = r.items.get(g.group_id);
    if (!it) { it = buildItem(g.group_id); r.items.set(g.group_id, it); }
    if (r.list.children[i] !== it.li) r.list.insertBefore(it.li, r.list.children[i] || null);
    updateItem(it, g, d, me, at, pending, sharedId);
  });
  setText(r.listHead, openGroups.length ? `Open groups (${openGroups.length})` : "Groups");
  r.listHead.hidden = shown.length === 0;
  r.empty.hidden = openGroups.length > 0 || !open;
  setText(r.empty, "No open group right now: start one and invite friends.");
}

function renderMine(r, d, me, at) {
  const m = (v) => money(v, d.currency);
  const g = me && me.group_id ? S.groups.get(me.group_id) : null;
  let state = "none";
  if (me && me.group_id) {
    if (me.paid) state = "paid";
    else if (me.state === "expired") state = "expired";
    else if (me.state === "complete") {
      const dead = S.hold && me.hold && S.hold.id === me.hold.id && S.hold.dead;
      state = dead ? "over" : (me.hold && me.hold.expires_at > at ? "payable" : "lapsed");
    } else state = "waiting";
  }
  r.root.dataset.mine = state;
  r.mine.hidden = state === "none";
  r.mine.className = `gmine ${state}`;
  r.pay.hidden = state !== "payable";
  r.invite.hidden = state !== "waiting";
  if (state !== "waiting") { r.inviteBox.hidden = true; r.invite.setAttribute("aria-expanded", "false"); }
  if (state === "none") return;
  if (state === "waiting") {
    const seats = g ? g.seats_left ?? Math.max(0, g.size - g.members) : null;
    const left = g ? g.deadline - at : 0;
    setText(r.mineText, seats === null ? "You're in a group: waiting for it to fill."
      : `You're in! Waiting for ${seats} more ${seats === 1 ? "person" : "people"}` +
        (g && g.state === "open" ? (left > 0 ? ` · ${clock(left)} left` : " · time's up…") : "") +
        `. You pay ${m(d.group_price)} only if the group fills.`);
    r.link.value = inviteLink(me.group_id);
  } else if (state === "payable") {
    setText(r.mineText, `Your group is full! Pay ${m(me.hold.unit_price ?? d.group_price)} within ${clock(me.hold.expires_at - at)}.`);
    setText(r.pay, `Pay ${m(me.hold.unit_price ?? d.group_price)}`);
    r.pay.setAttribute("aria-label", `Pay ${m(me.hold.unit_price ?? d.group_price)} for ${d.title}`);
  } else if (state === "paid") {
    setText(r.mineText, `Paid ✓ ${m(me.hold ? me.hold.unit_price ?? d.group_price : d.group_price)}: your order is placed.`);
  } else if (state === "expired") {
    setText(r.mineText, me.why === "closed"
      ? "The host closed the deal before your group filled: your reservation was released, nothing was charged."
      : "Your group ran out of time before it filled: your reservation was released, nothing was charged." +
        (d.state === "open" ? " You can start or join another group." : ""));
  } else if (state === "over") {
    setText(r.mineText, `Your reservation ended: ${S.hold.dead}`);
  } else {
    setText(r.mineText, "Your group's time to pay is over: the reservation went back to stock.");
  }
}

function buildItem(gid) {
  const it = {};
  it.seats = h("span", { class: "gseats", attrs: { "aria-hidden": "true" } });
  it.who = h("span", { class: "gwho" });
  it.meta = h("span", { class: "gmeta num" });
  it.join = h("button", { type: "button", class: "btn accent gjoin", text: "Join", on: { click: () => join(gid) } });
  it.li = h("li", { class: "gitem", data: { groupId: gid } },
    it.seats, h("span", { class: "gitem-main" }, it.who, it.meta), it.join);
  return it;
}

function updateItem(it, g, d, me, at, pending, sharedId) {
  const open = g.state === "open";
  const left = g.deadline - at;
  const seatsLeft = g.seats_left ?? Math.max(0, g.size - g.members);
  const isMine = !!(me && me.group_id === g.group_id);
  it.li.dataset.state = g.state;
  it.li.dataset.members = g.members;
  it.li.classList.toggle("mine", isMine);
  it.li.classList.toggle("shared", g.group_id === sharedId);
  // Seats: an avatar (initials, the nickname on hover) per member in the order they
  // came, empty circles for the seats left.
  const names = g.member_names || (g.starter ? [g.starter] : []);
  const sig = `${g.size}/${g.members}/${names.join("\u0000")}`;
  if (it.seats.dataset.sig !== sig) {
    it.seats.dataset.sig = sig;
    const dots = [];
    for (let i = 0; i < g.size; i++) {
      const filled = i < g.members;
      const name = filled ? names[i] || "" : "";
      const seat = h("span", { class: `gseat${filled ? " filled" : ""}`, text: name ? initials(name) : "" });
      if (name) seat.title = name;
      seat.setAttribute("aria-label", filled ? (name || "a member") : "a free seat");
      dots.push(seat);
    }
    it.seats.replaceChildren(...dots);
  }
  const who = isMine ? "Your group" : `${g.starter || "A viewer"}'s group`;
  setText(it.who, who);
  let meta;
  if (g.state === "complete") meta = `Full ✓ · ${g.members} of ${g.size}`;
  else if (g.state === "expired") meta = `Ran out of time · ${g.members} of ${g.size} joined`;
  else meta = `${g.members} of ${g.size} · ${plural(seatsLeft, "seat")} left · ` + (left > 0 ? `${clock(left)} left` : "time's up…");
  setText(it.meta, meta);
  const inDeal = !!(me && me.group_id && me.state !== "expired");
  it.join.hidden = !open || isMine;
  const can = open && left > 0 && d.state === "open" && !inDeal && !pending && !showEnded() && !mustSignIn();
  it.join.disabled = !can;
  const joining = pending && pending.type === "join_group" && pending.group_id === g.group_id;
  setText(it.join, joining ? "Joining…" : "Join");
  it.join.setAttribute("aria-label", `Join ${who.replace(/^Your/, "your")}: ${plural(seatsLeft, "seat")} left, ` +
                                     `${money(d.group_price, d.currency)} each`);
}

// ------------------------------------------------------------------ actions

function start(dealId) {
  const d = S.deals.get(dealId);
  if (!d || !live || d.state !== "open" || pendingFor(dealId)) return;
  hideMsg(dealId);
  // Re-sent under the same request id until answered: a retry is the same group.
  live.request({ type: "start_group", deal_id: dealId });
  renderGroups();
}

function join(groupId) {
  const g = S.groups.get(groupId);
  if (!g || !live || pendingFor(g.deal_id)) return;
  hideMsg(g.deal_id);
  live.request({ type: "join_group", group_id: groupId });
  renderGroups();
}

/** Check the full group's hold out through the page's one checkout. */
function pay(dealId) {
  const me = mine(dealId);
  const d = S.deals.get(dealId);
  if (!me || !me.hold || !d) return;
  if (S.hold && S.hold.id === me.hold.id && !S.hold.dead) { openCheckout(); return; }
  offerHold({ product_id: d.product_id, quantity: 1, currency: d.currency, unit_price: d.group_price,
              sale_id: d.deal_id, ...me.hold, state: "held" });
}

function toggleInvite(dealId) {
  const r = cards.get(dealId);
  if (!r) return;
  const open = r.inviteBox.hidden;
  r.inviteBox.hidden = !open;
  r.invite.setAttribute("aria-expanded", String(open));
  if (open) {
    const src = "/api/qr.svg?text=" + encodeURIComponent(r.link.value);
    if (r.qr.getAttribute("src") !== src) r.qr.src = src;
    r.link.select();
  }
}

async function copyLink(dealId) {
  const r = cards.get(dealId);
  if (!r) return;
  const ok = await copyText(r.link.value, r.link);
  toast(ok ? "Link copied: send it to friends." : "Select the link and copy it.", ok ? "ok" : "info");
}
