// Referrals in the host console (docs/protocol.md section 20): the referral
// program's form (`PUT /api/rooms/{room}/referrals`: a reward of fan points, or a
// coupon with its title, kind, value, currency, minimum spend and lifetime, and the
// most rewards one inviter may earn) and the referral tree from
// `GET /api/rooms/{room}/referrals`: the totals, then each inviter with the friends
// who joined through their link and each friend's reward state. The tree is loaded
// when the console opens the room, every 10 s while it is open and on Refresh. The
// server decides every reward; the panel shows what it answered.

import { $, h, money, plural, setText, timeOfDay, toMinor } from "../util.js";
import { S, followCatalogueCurrency, hostApi, report } from "./state.js";

const EVERY_MS = 10_000;

let timer = null;
let loadToken = 0;


/** The reward coupon's currency follows the catalogue's until the host types one. */
export const referralCurrency = followCatalogueCurrency("#rf-currency");

export function resetReferrals() {
  loadToken += 1;
  referralCurrency.reset();
  $("#ref-tree").replaceChildren();
  setText($("#ref-totals"), "");
  setText($("#ref-result"), "");
  setText($("#ref-load-result"), "");
  renderProgram(null);
  $("#ref-empty").hidden = false;
}

export function startReferrals() {
  stopReferrals();
  const tick = async () => {
    await loadReferrals();
    if (timer !== null) timer = setTimeout(tick, EVERY_MS);
  };
  timer = setTimeout(tick, 0);
}

export function stopReferrals() {
  clearTimeout(timer);
  timer = null;
}

// ------------------------------------------------------------------ the program

const rewardKind = () => ($("#rf-kind-coupon").checked ? "coupon" : "points");

export function referralKindChanged() {
  const coupon = rewardKind() === "coupon";
  $("#rf-points-fields").hidden = coupon;
  $("#rf-coupon-fields").hidden = !coupon;
}

export function referralCouponKindChanged() {
  const pct = $("#rf-ckind").value === "percent";
  setText($("#rf-value-label"), pct ? "Percent off" : "Amount off");
  $("#rf-value").placeholder = pct ? "10" : "5.00";
}

const fail = (out, message, code) => report(out, { ok: false, error: { message, code } }, "");

export async function saveReferrals(e) {
  e.preventDefault();
  const out = $("#ref-result");
  const body = { max_rewards_per_inviter: Number($("#rf-max").value) };
  if (rewardKind() === "points") {
    body.reward = { kind: "points", points: Number($("#rf-points").value) };
  } else {
    const kind = $("#rf-ckind").value;
    const currency = $("#rf-currency").value.trim().toUpperCase();
    const value = kind === "percent" ? Number($("#rf-value").value) : toMinor($("#rf-value").value, currency);
    const minSpend = toMinor($("#rf-min").value || "0", currency);
    if (!$("#rf-value").value.trim() || !Number.isFinite(value)) {
      fail(out, kind === "percent" ? "Percent off: enter a whole number like 10" : "Amount off: enter an amount like 5.00",
           "bad_value");
      return;
    }
    if (Number.isNaN(minSpend)) { fail(out, "Minimum spend: enter an amount like 20.00", "bad_value"); return; }
    body.reward = { kind: "coupon", coupon: {
      title: $("#rf-title").value.trim(), kind, value, currency, min_spend: minSpend,
      expires_in_s: Math.round(Number($("#rf-expires").value) * 60),
    } };
  }
  const res = await hostApi("PUT", "/referrals", body);
  if (report(out, res, res.ok ? `Referral program saved: ${describe(programOf(res.data))}` : "")) {
    renderProgram(programOf(res.data));
    loadReferrals();
  }
}

/** The program from an answer: the program itself, or an object carrying it. */
function programOf(data) {
  if (!data || typeof data !== "object") return null;
  if (data.reward) return data;
  return data.program && data.program.reward ? data.program : null;
}

function describe(program) {
  if (!program || !program.reward) return "no reward";
  const r = program.reward;
  const cap = Number.isFinite(program.max_rewards_per_inviter)
    ? `, at most ${plural(program.max_rewards_per_inviter, "reward")} per inviter` : "";
  if (r.kind === "points") return `${plural(r.points, "fan point")} per friend's first order${cap}`;
  const c = r.coupon || r;
  const off = c.kind === "percent" ? `${c.value}% off` : `${money(c.value, c.currency)} off`;
  const min = c.min_spend ? ` over ${money(c.min_spend, c.currency)}` : "";
  return `a coupon “${c.title || "Referral reward"}” (${off}${min}) per friend's first order${cap}`;
}

function renderProgram(program) {
  const el = $("#ref-program");
  el.dataset.kind = program && program.reward ? program.reward.kind : "";
  setText(el, program && program.reward ? `Now: ${describe(program)}.`
                                       : "No referral program yet: invites earn fan points only.");
}

// ------------------------------------------------------------------ the tree

/** GET …/referrals: resolves to whether this load's answer was shown. */
export async function loadReferrals() {
  if (!S.roomId) return false;
  const token = ++loadToken;
  const res = await hostApi("GET", "/referrals");
  if (token !== loadToken) return false;
  const out = $("#ref-load-result");
  if (!res.ok || !res.data) { report(out, res, ""); return false; }
  if (out.dataset.outcome === "error") setText(out, "");
  renderProgram(programOf(res.data.program));
  renderTree(res.data);
  return true;
}

export async function refreshReferrals() {
  if (!(await loadReferrals())) return;
  const n = $("#ref-tree").children.length;
  report($("#ref-load-result"), { ok: true }, `Referrals loaded: ${plural(n, "inviter")}`);
}

const REWARD_WORDS = {
  paid: "reward paid",
  capped: "no reward: inviter at the cap",
  none: "no reward: no program then",
  reversed: "reward reversed (order cancelled)",
};

function renderTree(data) {
  const t = data.totals || {};
  const n = (v) => Number(v) || 0;
  setText($("#ref-totals"), `${plural(n(t.inviters), "inviter")} · ${plural(n(t.invites_sent), "invite")} sent · ` +
    `${plural(n(t.joins), "join")} · ${plural(n(t.first_orders), "first order")} · ` +
    `${plural(n(t.rewards_paid), "reward")} paid · ${n(t.rewards_reversed)} reversed`);
  const inviters = Array.isArray(data.inviters) ? data.inviters : [];
  const active = document.activeElement;
  $("#ref-tree").replaceChildren(...inviters.map((inv) => {
    const invitees = Array.isArray(inv.invitees) ? inv.invitees : [];
    const name = inv.nickname || inv.viewer_id;
    const list = h("ul", { class: "ref-invitees", attrs: { "aria-label": `Friends invited by ${name}` } },
      ...invitees.map((f) => {
        const state = f.reward === null || f.reward === undefined ? "pending" : String(f.reward);
        const what = state === "pending" ? (f.order_id ? "first order placed" : "no order yet")
                                         : (REWARD_WORDS[state] || state);
        return h("li", { class: "ref-invitee", data: { viewerId: f.viewer_id, reward: state } },
          h("span", { class: "ref-who", text: f.nickname || f.viewer_id }),
          h("span", { class: "item-meta num",
                      text: (f.joined_at ? `joined ${timeOfDay(f.joined_at)}` : "joined") +
                            (f.order_id ? ` · first order ${f.order_id}` : "") }),
          h("span", { class: `badge ref-reward ${state}`, text: what }));
      }));
    if (!invitees.length) list.append(h("li", { class: "ref-invitee none muted", text: "Nobody has joined yet" }));
    return h("li", { class: "item ref-inviter", data: { viewerId: inv.viewer_id, joins: n(inv.joins) } },
      h("div", { class: "item-main" },
        h("span", { class: "item-title", text: name }),
        h("span", { class: "item-meta num ref-counts",
                    text: `${plural(n(inv.invites_sent), "invite")} sent · ${plural(n(inv.joins), "join")} · ` +
                          `${plural(n(inv.first_orders), "first order")} · ${plural(n(inv.rewards_paid), "reward")} paid` }),
        list));
  }));
  $("#ref-empty").hidden = inviters.length > 0;
  if (active && active !== document.activeElement && active.isConnected) active.focus({ preventScroll: true });
}
