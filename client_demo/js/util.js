// Small helpers shared by the viewer page and the host console.
// Everything that puts server or user text on the page goes through `h()`, which
// only ever sets textContent: no message, nickname or title can inject markup.

/** Build an element. `props` keys: class, text, attrs (object), data (object),
 *  on (object of listeners), hidden, and any other DOM property (value, disabled, ...). */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null) continue;
    if (key === "class") el.className = value;
    else if (key === "text") el.textContent = String(value);
    else if (key === "attrs") for (const [a, v] of Object.entries(value)) { if (v !== null && v !== undefined && v !== false) el.setAttribute(a, v === true ? "" : String(v)); }
    else if (key === "data") for (const [a, v] of Object.entries(value)) el.dataset[a] = String(v);
    else if (key === "on") for (const [ev, fn] of Object.entries(value)) el.addEventListener(ev, fn);
    else el[key] = value;
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export const $ = (sel, root = document) => root.querySelector(sel);
export const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));

/** Set text only when it changed (avoids needless layout and screen-reader chatter). */
export function setText(el, text) {
  const value = String(text);
  if (el && el.textContent !== value) el.textContent = value;
}

// ------------------------------------------------------------------ ids

/** A request id matching the server's ID_PATTERN ([A-Za-z0-9_-]{1,64}).
 *  getRandomValues works on plain-http LAN addresses too, unlike randomUUID. */
export function newId(prefix = "rq") {
  const bytes = new Uint8Array(12);
  crypto.getRandomValues(bytes);
  return prefix + "_" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

// ------------------------------------------------------------------ money

const fractionCache = new Map();

/** Digits after the decimal point for a currency (2 for USD, 0 for JPY, ...). */
export function currencyDigits(currency) {
  const code = currency || "USD";
  if (!fractionCache.has(code)) {
    let digits = 2;
    try {
      digits = new Intl.NumberFormat("en", { style: "currency", currency: code })
        .resolvedOptions().maximumFractionDigits;
    } catch { digits = 2; }
    fractionCache.set(code, digits);
  }
  return fractionCache.get(code);
}

/** Format integer minor units (cents) as money. */
export function money(minor, currency = "USD") {
  const code = currency || "USD";
  const digits = currencyDigits(code);
  const major = Number(minor || 0) / 10 ** digits;
  try {
    return new Intl.NumberFormat(undefined, { style: "currency", currency: code }).format(major);
  } catch {
    return `${major.toFixed(digits)} ${code}`;
  }
}

/** Parse a major-unit amount typed by a person ("19.99") into integer minor units. */
export function toMinor(text, currency = "USD") {
  const digits = currencyDigits(currency);
  const clean = String(text).trim().replace(/,/g, "");
  if (!/^\d+(\.\d+)?$/.test(clean)) return NaN;
  const [whole, frac = ""] = clean.split(".");
  if (frac.length > digits) return NaN;
  return Number(whole) * 10 ** digits + Number((frac + "0".repeat(digits)).slice(0, digits) || 0);
}

/** Integer minor units to the major-unit text an input shows ("1999" -> "19.99"). */
export function toMajorText(minor, currency = "USD") {
  const digits = currencyDigits(currency);
  if (!digits) return String(minor);
  const s = String(Math.abs(Math.trunc(minor))).padStart(digits + 1, "0");
  return `${minor < 0 ? "-" : ""}${s.slice(0, -digits)}.${s.slice(-digits)}`;
}

/** "1 vote", "3 votes", "2 first orders": a count and its noun, singular for one
 *  (`many` for an irregular plural). A missing count reads 0. */
export function plural(n, one, many = `${one}s`) {
  const count = Number(n) || 0;
  return `${count} ${count === 1 ? one : many}`;
}

// ------------------------------------------------------------------ time

/** "m:ss" (or "h:mm:ss") for a duration in ms, rounded up to whole seconds. */
export function clock(ms) {
  const total = Math.max(0, Math.ceil(ms / 1000));
  const hours = Math.floor(total / 3600);
  const mins = Math.floor((total % 3600) / 60);
  const secs = total % 60;
  const ss = String(secs).padStart(2, "0");
  return hours ? `${hours}:${String(mins).padStart(2, "0")}:${ss}` : `${mins}:${ss}`;
}

/** How long ago `ms` was at `at` (both server time), in words: "just now",
 *  "4 min ago", "2 h ago". */
export function ago(ms, at) {
  const diff = Math.max(0, (at || 0) - (ms || 0));
  if (diff < 60_000) return "just now";
  if (diff < 3_600_000) return `${Math.floor(diff / 60_000)} min ago`;
  return `${Math.floor(diff / 3_600_000)} h ago`;
}

export function timeOfDay(ms) {
  return new Date(ms).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

export function compact(n) {
  const v = Number(n || 0);
  if (v < 10000) return v.toLocaleString();
  return new Intl.NumberFormat(undefined, { notation: "compact", maximumFractionDigits: 1 }).format(v);
}

// ------------------------------------------------------------------ storage

export const store = {
  get(key, fallback = null) {
    try {
      const raw = localStorage.getItem(key);
      return raw === null ? fallback : JSON.parse(raw);
    } catch { return fallback; }
  },
  set(key, value) {
    try {
      if (value === null || value === undefined) localStorage.removeItem(key);
      else localStorage.setItem(key, JSON.stringify(value));
    } catch { /* private mode or full: the page still works, it only forgets */ }
  },
};

// ------------------------------------------------------------------ HTTP

/** A request over fetch, answered in JSON. `body`: a value sent as JSON, or a Blob
 *  (a File) sent as its bytes with its own type as Content-Type (unless `headers`
 *  names one). `timeoutMs`: past it the request (or the reading of its answer) is
 *  aborted and answered `timeout`. Resolves to { ok, status, data, error } and never
 *  throws. */
export async function api(method, path, body, headers = {}, { timeoutMs = 0 } = {}) {
  const init = { method, headers: { Accept: "application/json", ...headers }, cache: "no-store" };
  if (body instanceof Blob) {
    if (!init.headers["Content-Type"]) init.headers["Content-Type"] = body.type || "application/octet-stream";
    init.body = body;
  } else if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let timer = null;
  let timedOut = false;
  if (timeoutMs > 0) {
    const controller = new AbortController();
    init.signal = controller.signal;
    timer = setTimeout(() => { timedOut = true; controller.abort(); }, timeoutMs);
  }
  const late = () => ({ ok: false, status: 0, data: null,
                        error: { code: "timeout", message: `No answer from the server in ${Math.round(timeoutMs / 1000)} s.` } });
  try {
    let res;
    try {
      res = await fetch(path, init);
    } catch {
      if (timedOut) return late();
      return { ok: false, status: 0, data: null,
               error: { code: "network", message: "Cannot reach the server. Check the connection." } };
    }
    let data = null;
    try { data = await res.json(); } catch { data = null; }
    if (timedOut) return late();
    if (res.ok) return { ok: true, status: res.status, data, error: null };
    const error = (data && data.error) || { code: `http_${res.status}`, message: res.statusText || "Request failed" };
    return { ok: false, status: res.status, data, error };
  } finally {
    clearTimeout(timer);
  }
}

// ------------------------------------------------------------------ toasts

// Where a page wants its toasts: `(kind) => element or null`. Unset (the host
// console), every toast goes in #toasts; the viewer page picks a polite or an
// assertive live region, inside an open modal dialog when there is one.
let toastRegion = null;
export function setToastRegion(fn) { toastRegion = fn; }

export function toast(text, kind = "info", ms = 4200) {
  let box = (toastRegion && toastRegion(kind)) || document.getElementById("toasts");
  if (!box) {
    box = h("div", { id: "toasts", class: "toasts", attrs: { role: "status", "aria-live": "polite" } });
    document.body.append(box);
  }
  const item = h("div", { class: `toast ${kind}`, text });
  box.append(item);
  setTimeout(() => item.remove(), ms);
  while (box.children.length > 4) box.firstElementChild.remove();
  return item;
}

/** Copy text; falls back to a selected input on plain-http pages without the Clipboard API. */
export async function copyText(text, input) {
  try {
    if (navigator.clipboard && window.isSecureContext) {
      await navigator.clipboard.writeText(text);
      return true;
    }
  } catch { /* fall through */ }
  if (input) {
    input.focus();
    input.select();
    try { return document.execCommand("copy"); } catch { return false; }
  }
  return false;
}

/** A stable soft colour for a placeholder tile, from a string. Dark enough for white text. */
export function tileColor(seed) {
  let hash = 0;
  for (const ch of String(seed)) hash = (hash * 31 + ch.codePointAt(0)) >>> 0;
  const hues = [345, 262, 222, 198, 160, 28, 300];
  return `hsl(${hues[hash % hues.length]} 55% 30%)`;
}

export function initials(title) {
  const words = String(title || "?").trim().split(/\s+/).filter(Boolean);
  return (words.slice(0, 2).map((w) => [...w][0]).join("") || "?").toUpperCase();
}

const REVOKE_AFTER_MS = 1000; // the download has taken the Blob by then

/** Save a Blob as a file: an object URL on a hidden `<a download>`, revoked afterwards. */
export function saveBlob(blob, name) {
  const url = URL.createObjectURL(blob);
  const link = h("a", { href: url, hidden: true, attrs: { download: name } });
  document.body.append(link);
  try {
    link.click();
  } finally {
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), REVOKE_AFTER_MS);
  }
}
