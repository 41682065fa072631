// Auctions as the server sends them, for both pages, and the check of a published
// auction's bid chain (docs/protocol.md section 15, "Verifying an auction").
//
// The server decides every bid, the end and the winner; the pages keep the latest
// view it sent. Views can reach a page in another order than the server made them
// (a host action's answer after the event it caused, a snapshot beside events), so
// an auction's view only moves forward: open before ended, more bids before fewer.
//
// The chain is SHA-1 because the server computes it inside Redis's atomic step
// (`redis.sha1hex`). SHA-1 comes from SubtleCrypto; on a plain-http page that is not
// localhost (a phone on the LAN) browsers hide SubtleCrypto, and a small SHA-1
// written for this page stands in (as js/lottery.js does for SHA-256).

const encoder = new TextEncoder();

// ------------------------------------------------------------------ views

const RANK = { open: 0, ended: 1, cancelled: 1 };

/** The auction view to keep when `incoming` arrives while `current` is shown. */
export function newerAuction(current, incoming) {
  if (!incoming) return current;
  if (!current || current.auction_id !== incoming.auction_id) return { ...incoming };
  const was = RANK[current.state] ?? 0;
  const now = RANK[incoming.state] ?? 0;
  if (now < was) return current;
  if (now === 0 && was === 0 && (incoming.bids ?? 0) < (current.bids ?? 0)) return current;
  if (now === 1 && was === 1 && current.result && current.result.second_chance &&
      !(incoming.result && incoming.result.second_chance)) return current;
  // What only events said (the last bid moved the end) stays while the bids are the same.
  const lastExtended = (incoming.bids ?? 0) === (current.bids ?? 0) ? current.lastExtended : false;
  return { ...incoming, lastExtended: !!lastExtended };
}

/** Apply an `auction_bid` event to the view; false when it is not newer than it. */
export function applyBid(a, ev) {
  if (!a || a.state !== "open") return false;
  if ((ev.bids ?? 0) <= (a.bids ?? 0)) return false;
  a.leader = ev.leader;
  a.leader_name = ev.leader_name;
  a.amount = ev.amount;
  a.min_next = ev.min_next;
  a.ends_at = ev.ends_at;
  a.bids = ev.bids;
  a.reserve_met = ev.reserve_met;
  a.buy_now_price = ev.buy_now_price ?? null;
  if (ev.entry && ev.entry.hash) a.head = ev.entry.hash;
  // `extensions` (the count so far) when the event carries it; else each bid that
  // moved the end is one more.
  if (Number.isInteger(ev.extensions)) a.extensions = ev.extensions;
  else if (ev.extended) a.extensions = (a.extensions || 0) + 1;
  a.lastExtended = !!ev.extended;
  return true;
}

/** The step of the band `amount` is in (the last band whose `from` is at most it). */
export function stepFor(increments, amount) {
  let step = null;
  for (const band of increments || []) if (band.from <= amount) step = band.step;
  return step;
}

// ------------------------------------------------------------------ SHA-1

/** SHA-1 of bytes, in plain JavaScript (FIPS 180-4). */
export function sha1Fallback(bytes) {
  const bitLen = bytes.length * 8;
  const padded = new Uint8Array(((bytes.length + 9 + 63) >> 6) << 6);
  padded.set(bytes);
  padded[bytes.length] = 0x80;
  const view = new DataView(padded.buffer);
  view.setUint32(padded.length - 8, Math.floor(bitLen / 2 ** 32));
  view.setUint32(padded.length - 4, bitLen >>> 0);
  const H = new Uint32Array([0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476, 0xc3d2e1f0]);
  const W = new Uint32Array(80);
  const rotl = (x, n) => (x << n) | (x >>> (32 - n));
  for (let off = 0; off < padded.length; off += 64) {
    for (let t = 0; t < 16; t++) W[t] = view.getUint32(off + t * 4);
    for (let t = 16; t < 80; t++) W[t] = rotl(W[t - 3] ^ W[t - 8] ^ W[t - 14] ^ W[t - 16], 1);
    let [a, b, c, d, e] = H;
    for (let t = 0; t < 80; t++) {
      let f, k;
      if (t < 20) { f = (b & c) | (~b & d); k = 0x5a827999; }
      else if (t < 40) { f = b ^ c ^ d; k = 0x6ed9eba1; }
      else if (t < 60) { f = (b & c) | (b & d) | (c & d); k = 0x8f1bbcdc; }
      else { f = b ^ c ^ d; k = 0xca62c1d6; }
      const temp = (rotl(a, 5) + f + e + k + W[t]) >>> 0;
      e = d; d = c; c = rotl(b, 30) >>> 0; b = a; a = temp;
    }
    H[0] += a; H[1] += b; H[2] += c; H[3] += d; H[4] += e;
  }
  const out = new Uint8Array(20);
  const outView = new DataView(out.buffer);
  for (let i = 0; i < 5; i++) outView.setUint32(i * 4, H[i]);
  return out;
}

const hasSubtle = () => !!(globalThis.crypto && crypto.subtle && typeof crypto.subtle.digest === "function");

const hex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");

/** sha1_hex of a string's UTF-8 bytes. */
export async function sha1Hex(text, { forceFallback = false } = {}) {
  const bytes = encoder.encode(text);
  if (!forceFallback && hasSubtle()) return hex(new Uint8Array(await crypto.subtle.digest("SHA-1", bytes)));
  return hex(sha1Fallback(bytes));
}

// ------------------------------------------------------------------ the chain

/** The end in force before any bid: the start plus the duration. */
export const firstEnd = (a) => a.started_at + a.duration_s * 1000;

export function genesisText(a) {
  const bands = (a.increments || []).map((b) => `${b.from}:${b.step}`).join(",");
  return ["livesell-auction", a.auction_id, a.start_price, a.started_at, firstEnd(a), a.anti_snipe,
          a.extend_s * 1000, bands].join("|");
}

export function entryText(prev, e) {
  return [prev, e.seq, e.bidder, e.amount, e.at, e.ends_at, e.kind].join("|");
}

/**
 * Check an ended auction as `GET …/auctions/{id}` returns it, with its chain
 * (every entry of `GET …/bids`). `seen` maps seq -> hash for the entries this page
 * saw live in `auction_bid` events: the published chain must hold them.
 * Returns { ok, checks: [{ name, ok, detail }], failure: the first failed check }.
 */
export async function verifyAuction(a, entries, { seen = new Map(), forceFallback = false } = {}) {
  const checks = [];
  const add = (name, ok, detail = "") => { checks.push({ name, ok: !!ok, detail }); return !!ok; };
  const opts = { forceFallback };
  const r = a && a.result;
  if (!a || a.state === "open" || !r) {
    add("The auction has ended", false, "An open auction has no result to check yet.");
    return done(checks);
  }
  const extendMs = a.extend_s * 1000;

  // 1. The genesis from the terms, every link and every hash.
  const genesis = await sha1Hex(genesisText(a), opts);
  add("The chain's start commits to the published terms", genesis === a.genesis,
      `sha1(terms) = ${short(genesis)}, published ${short(a.genesis)}`);
  let prev = genesis;
  let linksOk = true, hashesOk = true, seqOk = true, where = "";
  for (const [i, e] of entries.entries()) {
    if (e.seq !== i + 1 && seqOk) { seqOk = false; where = where || `entry ${i + 1} has seq ${e.seq}`; }
    if (e.prev !== prev && linksOk) { linksOk = false; where = where || `entry ${e.seq}: prev is not the previous hash`; }
    const hash = await sha1Hex(entryText(e.prev, e), opts);
    if (hash !== e.hash && hashesOk) { hashesOk = false; where = where || `entry ${e.seq}: hash does not recompute`; }
    prev = e.hash;
  }
  add("Every bid links to the one before it and its hash recomputes", linksOk && hashesOk && seqOk,
      where || `${entries.length} entr${entries.length === 1 ? "y" : "ies"} checked`);

  // 2. Amounts rise by at least the step of the band the previous one is in.
  let amountsOk = true, why = "";
  entries.forEach((e, i) => {
    if (!amountsOk) return;
    if (i === 0) {
      if (!(e.amount >= a.start_price)) { amountsOk = false; why = `the first bid ${e.amount} is below the start price ${a.start_price}`; }
      return;
    }
    const before = entries[i - 1].amount;
    const step = stepFor(a.increments, before);
    if (step === null || !(e.amount >= before + step)) {
      amountsOk = false;
      why = `bid ${e.seq}: ${e.amount} after ${before} (step ${step})`;
    }
  });
  add("Each bid rises by at least the increment", amountsOk, why || "amounts strictly rise");

  // 3. Times before the end in force, and the end moved by the anti-snipe rule.
  let end = firstEnd(a);
  let timesOk = true, endsOk = true;
  why = "";
  for (const e of entries) {
    if (!(e.at < end) && timesOk) { timesOk = false; why = why || `bid ${e.seq} at ${e.at} is not before the end ${end}`; }
    let expected;
    if (e.kind === "buy_now") expected = e.at;
    else if (a.anti_snipe === "extend") expected = Math.max(end, e.at + extendMs);
    else expected = end;
    if (e.ends_at !== expected && endsOk) { endsOk = false; why = why || `bid ${e.seq} ends at ${e.ends_at}, the rule gives ${expected}`; }
    end = e.ends_at;
  }
  add("Every bid came before the end in force", timesOk, timesOk ? "" : why);
  add(a.anti_snipe === "extend" ? `The end moved only by the ${a.extend_s} s extension rule`
                                : "The end never moved (sudden death)", endsOk, endsOk ? "" : why);

  // 4. The winner is the last bid, unless nobody bid, the reserve was not met or
  //    the host cancelled it.
  const last = entries.length ? entries[entries.length - 1] : null;
  const reserve = r.reserve_price ?? null;
  const noWinner = !last || r.ended_by === "cancelled" || (reserve !== null && last.amount < reserve);
  const expected = noWinner ? null : last.bidder;
  const winnerOk = r.winner === expected && (expected === null || r.amount === last.amount);
  add("The winner is the last bid", winnerOk,
      expected === null ? `expected no winner, published ${r.winner ?? "none"}`
                        : `expected ${expected} at ${last.amount}, published ${r.winner ?? "none"} at ${r.amount}`);

  // 5. The published head is the last hash; the end came no earlier than the clock's.
  const head = last ? last.hash : genesis;
  add("The published head is the last bid's hash", r.head === head && (a.head === undefined || a.head === head),
      `last hash ${short(head)}, result head ${short(r.head)}`);
  if (!["host", "buy_now", "cancelled"].includes(r.ended_by)) {
    add("The auction ended no earlier than its end in force", r.ended_at >= end,
        `ended at ${r.ended_at}, end in force ${end}`);
  }
  add("The bid count matches the chain", (r.bids ?? entries.length) === entries.length,
      `${entries.length} entries, ${r.bids} published`);

  // What this page saw live must be in the published chain.
  if (seen.size) {
    const missing = [...seen].filter(([seq, hash]) => !entries[seq - 1] || entries[seq - 1].hash !== hash);
    add("The bids this page saw live are in the published chain", missing.length === 0,
        missing.length ? `bid ${missing[0][0]} differs` : `${seen.size} seen`);
  }
  return done(checks);
}

function done(checks) {
  const failure = checks.find((c) => !c.ok) || null;
  return { ok: !failure, checks, failure };
}

function short(text) {
  const s = String(text ?? "");
  return s.length > 16 ? `${s.slice(0, 10)}…${s.slice(-6)}` : s;
}

/** Fetch an auction and its whole chain (pages of up to 1000 entries). Resolves to
 *  { ok, auction, entries, error } and never throws. `get` is util.js `api`-like. */
export async function fetchChain(get, base) {
  const res = await get("GET", base);
  if (!res.ok) return { ok: false, error: res.error };
  const entries = [];
  let after = 0;
  for (let page = 0; page < 10000; page++) {
    const chunk = await get("GET", `${base}/bids?after=${after}&limit=1000`);
    if (!chunk.ok) return { ok: false, error: chunk.error };
    const bids = chunk.data.bids || [];
    entries.push(...bids);
    if (!chunk.data.more || !bids.length) break;
    after = bids[bids.length - 1].seq;
  }
  return { ok: true, auction: res.data, entries };
}
