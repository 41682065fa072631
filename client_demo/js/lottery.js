// Recompute a drawn lottery from its published record, in the page.
//
// The algorithm is the server's (server/core/domain.py draw_winners / verify_lottery):
//   seed_hash       = sha256(seed), published when the lottery opened
//   entrants_digest = sha256("\n".join(sorted entrant ids))
//   a partial Fisher-Yates shuffle of the sorted list: step i swaps position i with
//   i + (int(sha256(f"{seed}:{digest}:{i}"), big-endian) mod (n - i));
//   the winners are the first min(k, n) entries.
//
// SHA-256 comes from SubtleCrypto. Browsers hide SubtleCrypto on plain-http pages
// that are not localhost (a phone on the LAN, say), so a small SHA-256 written
// for this page stands in there; the browser tests check both agree.

const encoder = new TextEncoder();

// ------------------------------------------------------------------ SHA-256

const K = new Uint32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
]);

/** SHA-256 of bytes, in plain JavaScript (FIPS 180-4). */
export function sha256Fallback(bytes) {
  const bitLen = bytes.length * 8;
  const padded = new Uint8Array(((bytes.length + 9 + 63) >> 6) << 6);
  padded.set(bytes);
  padded[bytes.length] = 0x80;
  const view = new DataView(padded.buffer);
  view.setUint32(padded.length - 8, Math.floor(bitLen / 2 ** 32));
  view.setUint32(padded.length - 4, bitLen >>> 0);
  const H = new Uint32Array([0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                             0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]);
  const W = new Uint32Array(64);
  const rotr = (x, n) => (x >>> n) | (x << (32 - n));
  for (let off = 0; off < padded.length; off += 64) {
    for (let t = 0; t < 16; t++) W[t] = view.getUint32(off + t * 4);
    for (let t = 16; t < 64; t++) {
      const s0 = rotr(W[t - 15], 7) ^ rotr(W[t - 15], 18) ^ (W[t - 15] >>> 3);
      const s1 = rotr(W[t - 2], 17) ^ rotr(W[t - 2], 19) ^ (W[t - 2] >>> 10);
      W[t] = (W[t - 16] + s0 + W[t - 7] + s1) >>> 0;
    }
    let [a, b, c, d, e, f, g, hh] = H;
    for (let t = 0; t < 64; t++) {
      const S1 = rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25);
      const ch = (e & f) ^ (~e & g);
      const t1 = (hh + S1 + ch + K[t] + W[t]) >>> 0;
      const S0 = rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22);
      const maj = (a & b) ^ (a & c) ^ (b & c);
      const t2 = (S0 + maj) >>> 0;
      hh = g; g = f; f = e; e = (d + t1) >>> 0;
      d = c; c = b; b = a; a = (t1 + t2) >>> 0;
    }
    H[0] += a; H[1] += b; H[2] += c; H[3] += d; H[4] += e; H[5] += f; H[6] += g; H[7] += hh;
  }
  const out = new Uint8Array(32);
  const outView = new DataView(out.buffer);
  for (let i = 0; i < 8; i++) outView.setUint32(i * 4, H[i]);
  return out;
}

export function hasSubtle() {
  return !!(globalThis.crypto && crypto.subtle && typeof crypto.subtle.digest === "function");
}

/** SHA-256 of a string's UTF-8 bytes, as bytes. */
export async function sha256(text, { forceFallback = false } = {}) {
  const bytes = encoder.encode(text);
  if (!forceFallback && hasSubtle()) {
    return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  }
  return sha256Fallback(bytes);
}

export function hex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

export async function sha256Hex(text, opts) {
  return hex(await sha256(text, opts));
}

// ------------------------------------------------------------------ the draw

/** Python's sorted() on str: by code point (JS's default sort compares UTF-16 units). */
export function codePointCompare(a, b) {
  const x = Array.from(a, (c) => c.codePointAt(0));
  const y = Array.from(b, (c) => c.codePointAt(0));
  for (let i = 0; i < Math.min(x.length, y.length); i++) {
    if (x[i] !== y[i]) return x[i] < y[i] ? -1 : 1;
  }
  return x.length - y.length;
}

export async function entrantsDigest(entrants, opts) {
  return sha256Hex([...entrants].sort(codePointCompare).join("\n"), opts);
}

export async function drawWinners(seed, entrants, count, opts) {
  const pool = [...entrants].sort(codePointCompare);
  const digest = await sha256Hex(pool.join("\n"), opts);
  const n = pool.length;
  const k = Math.min(count, n);
  for (let i = 0; i < k; i++) {
    const h = BigInt("0x" + (await sha256Hex(`${seed}:${digest}:${i}`, opts)));
    const j = i + Number(h % BigInt(n - i));
    [pool[i], pool[j]] = [pool[j], pool[i]];
  }
  return pool.slice(0, k);
}

/**
 * Check a drawn lottery as `GET /api/rooms/{room}/lotteries/{id}` returns it.
 * `seenSeedHash` is the seed hash this page saw when the lottery opened, if any:
 * it must be the one the record still shows (the host cannot swap seeds later).
 * Returns { ok, checks: [{ name, ok, detail }], expected }.
 */
export async function verifyLottery(lottery, seenSeedHash = null, opts = {}) {
  const checks = [];
  const result = lottery && lottery.result;
  if (!result || typeof result.seed !== "string" || !Array.isArray(result.entrants)
      || !Array.isArray(result.winners)) {
    return { ok: false, checks: [{ name: "The draw is published", ok: false,
                                   detail: "The lottery has no published result yet." }],
             expected: [] };
  }
  const entrants = result.entrants.map(String);
  const winners = result.winners.map(String);
  const count = Number.isInteger(lottery.winners_count) ? lottery.winners_count : winners.length;

  if (seenSeedHash) {
    checks.push({ name: "Seed hash matches the one announced at opening",
                  ok: seenSeedHash === lottery.seed_hash,
                  detail: `announced ${short(seenSeedHash)}, record ${short(lottery.seed_hash)}` });
  }
  const seedHash = await sha256Hex(result.seed, opts);
  checks.push({ name: "The revealed seed hashes to the published seed hash",
                ok: seedHash === lottery.seed_hash,
                detail: `sha256(seed) = ${short(seedHash)}` });
  checks.push({ name: "No entrant appears twice",
                ok: new Set(entrants).size === entrants.length,
                detail: `${entrants.length} entrant${entrants.length === 1 ? "" : "s"}` });
  const digest = await entrantsDigest(entrants, opts);
  checks.push({ name: "The entrant list matches its published digest",
                ok: digest === result.entrants_digest,
                detail: `sha256(entrants) = ${short(digest)}` });
  const expected = await drawWinners(result.seed, entrants, count, opts);
  const same = expected.length === winners.length && expected.every((w, i) => w === winners[i]);
  checks.push({ name: "Recomputed winners equal the published winners",
                ok: same,
                detail: same ? `${expected.length} winner${expected.length === 1 ? "" : "s"} recomputed`
                             : `recomputed ${expected.join(", ") || "none"}` });
  return { ok: checks.every((c) => c.ok), checks, expected };
}

function short(hexText) {
  const s = String(hexText || "");
  return s.length > 16 ? `${s.slice(0, 10)}…${s.slice(-6)}` : s;
}
