// The viewer's side of the room WebSocket: connect, keep the identity token,
// reconnect with exponential backoff and resume from the last sequence number,
// detect sequence gaps and ask for a resync, measure the clock offset to the
// server, and re-send unanswered requests with their original request_id
// (the server answers a repeated request id with the first answer, so a buy or
// checkout is never submitted twice, whatever happens to the connection).
// Two refusals of the identity itself are not retried blindly: close 4029 (too
// many new guest identities from this network) waits the time the server named,
// and close 4001 (a shop sign-in the server cannot trust) is not retried at all.

import { newId, store } from "./util.js";

const BACKOFF_BASE_MS = 500;
const BACKOFF_MAX_MS = 15000;
const PING_EVERY_MS = 10000;
const PONG_TIMEOUT_MS = 8000;
const FIRST_PINGS = 4;
// Tokens and host keys are base64url (tokens with one "."): safe in a subprotocol.
const CREDENTIAL = /^[A-Za-z0-9._-]{1,4000}$/;
// Fire-and-forget frames (chat) whose refusal the page still wants to match.
const MAX_UNTRACKED = 32;
const THROTTLED_DEFAULT_S = 60;

export class Live {
  /**
   * @param {object} o
   * @param {string} o.roomId
   * @param {string} [o.tokenKey] localStorage key of the identity token
   * @param {string} [o.nickname] nickname for a first connection (no token yet)
   * @param {(frame: object) => void} o.onEvent every frame that is not a reply
   * @param {(reply: object, request: object|null) => void} [o.onReply] replies to requests
   * @param {(state: string, info: object) => void} [o.onState]
   * @param {() => void} [o.onClock] the estimate of server time moved
   */
  constructor(o) {
    this.roomId = o.roomId;
    this.tokenKey = o.tokenKey || "livesell.token";
    this.nickname = o.nickname || "";
    // The host console watches its room without counting as a viewer.
    this.hostKey = o.hostKey || "";
    // A shop-signed JWT to offer once, on the next connect only (the welcome gives
    // back a livesell token for the same verified identity, kept as usual).
    this.shopToken = o.shopToken || "";
    this.onEvent = o.onEvent;
    this.onReply = o.onReply || (() => {});
    this.onState = o.onState || (() => {});
    this.onClock = o.onClock || (() => {});
    this.pendingKey = `livesell.pending.${this.roomId}.${this.tokenKey}`;
    this.ws = null;
    this.state = "idle";
    this.lastSeq = null;
    this.resyncing = false;
    this.viewer = null;
    this.attempt = 0;
    this.retryTimer = null;
    this.retryAt = 0;
    this.pingTimer = null;
    this.pongDeadline = null;
    this.stopped = false;
    this.connectedOnce = false;
    // Clock: offset = server clock - local clock, in ms. Best sample = lowest round trip.
    this.offset = 0;
    this.offsetRtt = Infinity;
    this.samples = [];
    this.stats = { connects: 0, snapshots: 0, resyncs: 0, resumed: 0, resent: 0 };
    // Requests without an answer yet, by request_id. Kept across reconnects and reloads.
    this.pending = new Map();
    // Frames sent once with a request_id, never re-sent; only their refusal answers.
    this.untracked = new Map();
    // The error frame the server sends right before a 4029 or 4001 close.
    this.closeCause = null;
    for (const frame of store.get(this.pendingKey, []) || []) {
      if (frame && frame.request_id) this.pending.set(frame.request_id, frame);
    }
    this._online = () => { if (this.state === "reconnecting") this._connectNow(); };
    window.addEventListener("online", this._online);
  }

  /** Server time now, in ms, by the measured offset. It moves with the offset: a
   *  better sample can set it back by part of a round trip. A countdown of a wait
   *  the page itself started (slow mode) is kept on the page's own monotonic clock
   *  (viewer/chat.js), not on this one. */
  serverNow() {
    return Date.now() + this.offset;
  }

  get token() {
    return store.get(this.tokenKey, null);
  }

  start() {
    this.stopped = false;
    this._connectNow();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    this._stopPings();
    window.removeEventListener("online", this._online);
    if (this.ws) {
      this.ws.onclose = null;
      try { this.ws.close(1000, "bye"); } catch { /* already closed */ }
    }
    this.ws = null;
    this._setState("idle");
  }

  /** Drop the connection (as if the network blipped) and reconnect with resume. */
  reconnect() {
    if (this.ws) {
      try { this.ws.close(4000, "client reconnect"); } catch { /* ignore */ }
    }
  }

  /** Whether a frame sent now goes out: the socket is open and welcomed. */
  get connected() {
    return !!(this.ws && this.ws.readyState === WebSocket.OPEN && this.state === "live");
  }

  /** Send a frame now if connected. Returns whether it went out. */
  send(frame) {
    if (this.connected) {
      this.ws.send(JSON.stringify(frame));
      return true;
    }
    return false;
  }

  /** Send a request that expects an answer; it is re-sent, with the same request_id,
   *  after every reconnect until an answer arrives. Returns the request_id. */
  request(frame) {
    const request = { ...frame, request_id: frame.request_id || newId(frame.type) };
    this.pending.set(request.request_id, request);
    this._savePending();
    this.send(request);
    return request.request_id;
  }

  /** Send a frame once, with a request_id so that a refusal names it; it is not
   *  kept or re-sent (a chat message is not worth repeating after a reconnect).
   *  Returns the request_id, or null when not connected. */
  sendOnce(frame) {
    const request = { ...frame, request_id: frame.request_id || newId(frame.type) };
    if (!this.send(request)) return null;
    this.untracked.set(request.request_id, request);
    while (this.untracked.size > MAX_UNTRACKED) this.untracked.delete(this.untracked.keys().next().value);
    return request.request_id;
  }

  /** Ask the server for a snapshot (it repairs the page's state), once at a time:
   *  while one is on its way (`resyncing`, cleared by the snapshot or a new welcome)
   *  asking again sends nothing. Returns whether a snapshot is on its way. */
  resync() {
    if (this.resyncing) return true;
    if (!this.send({ type: "resync" })) return false;
    this.resyncing = true;
    this.stats.resyncs += 1;
    return true;
  }

  isPending(predicate) {
    for (const frame of this.pending.values()) if (predicate(frame)) return true;
    return false;
  }

  /** Drop every unanswered request (the identity changed: they belong to the old one). */
  clearPending() {
    this.pending.clear();
    this._savePending();
  }

  forget(requestId) {
    this.pending.delete(requestId);
    this._savePending();
  }

  _savePending() {
    store.set(this.pendingKey, this.pending.size ? Array.from(this.pending.values()) : null);
  }

  _setState(state, info = {}) {
    this.state = state;
    this.onState(state, info);
  }

  // The URL carries nothing secret (it ends up in logs and history): the token and
  // the host key travel as subprotocols, which the server reads and never echoes
  // (it answers "livesell.v1"). Both are base64url, valid in a subprotocol as they are.
  _url() {
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    const params = new URLSearchParams();
    if (!this.token && this.nickname) params.set("nickname", this.nickname);
    if (this.lastSeq !== null) params.set("since", String(this.lastSeq));
    const query = params.toString();
    return `${proto}//${location.host}/ws/${encodeURIComponent(this.roomId)}${query ? "?" + query : ""}`;
  }

  _protocols() {
    const protocols = ["livesell.v1"];
    // A value the WebSocket constructor would refuse (a damaged stored token) is left
    // out rather than failing every attempt: the server then issues a new identity.
    const token = this.shopToken || this.token;
    if (typeof token === "string" && CREDENTIAL.test(token)) protocols.push(`livesell.token.${token}`);
    if (CREDENTIAL.test(this.hostKey)) protocols.push(`livesell.host.${this.hostKey}`);
    return protocols;
  }

  _connectNow() {
    clearTimeout(this.retryTimer);
    if (this.stopped) return;
    if (this.ws && (this.ws.readyState === WebSocket.OPEN || this.ws.readyState === WebSocket.CONNECTING)) return;
    this._setState(this.connectedOnce ? "reconnecting" : "connecting", { attempt: this.attempt, inMs: 0 });
    let ws;
    try {
      ws = new WebSocket(this._url(), this._protocols());
    } catch {
      this._scheduleRetry();
      return;
    }
    this.ws = ws;
    ws.onmessage = (ev) => this._onMessage(ev.data);
    ws.onclose = (ev) => this._onClose(ev);
    ws.onerror = () => { /* onclose follows with the details */ };
  }

  _onClose(ev) {
    this.ws = null;
    this._stopPings();
    if (this.stopped) return;
    if (ev.code === 4004) {
      this._setState("gone", { reason: "This room does not exist (or was removed)." });
      return;
    }
    const cause = this.closeCause;
    this.closeCause = null;
    if (ev.code === 4001) {
      // The shop sign-in cannot be trusted: offering it again would only be refused
      // again. Forget it and wait for the page to decide (a fresh shop token, or guest).
      const offered = this.shopToken || this.token || "";
      this.shopToken = "";
      if (offered.split(".").length === 3 && this.token === offered) store.set(this.tokenKey, null);
      const reason = cause && cause.details && cause.details.reason ? String(cause.details.reason) : "";
      this._setState("refused", { reason, message: cause ? cause.message : "" });
      return;
    }
    if (ev.code === 4029) {
      // Too many new identities from this network: come back when the server said.
      const named = cause && cause.details ? Number(cause.details.retry_after_s) : NaN;
      const seconds = Number.isFinite(named) && named > 0 ? Math.ceil(named) : THROTTLED_DEFAULT_S;
      // A little jitter so a crowd behind one address does not return in lockstep.
      const delay = seconds * 1000 + Math.round(Math.random() * 1000);
      clearTimeout(this.retryTimer);
      this.retryAt = Date.now() + delay;
      this._setState("throttled", { inMs: delay, at: this.retryAt, code: ev.code, retryAfterS: seconds });
      this.retryTimer = setTimeout(() => this._connectNow(), delay);
      return;
    }
    this._scheduleRetry(ev.code);
  }

  _scheduleRetry(code) {
    const exp = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** this.attempt);
    // Full jitter on the upper half keeps a room's viewers from reconnecting in lockstep.
    const delay = Math.round(exp / 2 + Math.random() * exp / 2);
    this.attempt += 1;
    this.retryAt = Date.now() + delay;
    this._setState(navigator.onLine === false ? "offline" : "reconnecting",
                   { attempt: this.attempt, inMs: delay, at: this.retryAt, code });
    this.retryTimer = setTimeout(() => this._connectNow(), delay);
  }

  _onMessage(data) {
    let frame;
    try { frame = JSON.parse(data); } catch { return; }
    if (!frame || typeof frame !== "object") return;
    const type = frame.type;
    if (type === "welcome") return this._onWelcome(frame);
    if (type === "pong") return this._onPong(frame);
    if (type === "error" && (frame.code === "too_many_identities" || frame.code === "identity_refused") &&
        (frame.re === undefined || frame.re === null)) {
      this.closeCause = frame; // the close that follows says what to do with it
      return;
    }
    if (frame.re !== undefined && frame.re !== null && this.untracked.has(frame.re)) {
      const request = this.untracked.get(frame.re);
      this.untracked.delete(frame.re);
      this.onReply(frame, request);
      return;
    }
    if (frame.re !== undefined && frame.re !== null) {
      const request = this.pending.get(frame.re) || null;
      if (request && type === "error" && frame.code === "request_in_progress") {
        // The same request is still being worked on (a checkout between its order
        // write and its answer). The server does not remember this answer, so ask
        // again, under the same request_id, until the real one comes.
        setTimeout(() => { if (this.pending.has(request.request_id)) this.send(request); }, 1000);
        return;
      }
      if (!request && type === "error") return; // a late duplicate of an answered request
      if (request) {
        this.pending.delete(frame.re);
        this._savePending();
      }
      this.onReply(frame, request);
      return;
    }
    if (type === "snapshot") {
      this.lastSeq = frame.seq;
      this.resyncing = false;
      this.stats.snapshots += 1;
      this._sampleClock(frame.server_time, null);
      this.onEvent(frame);
      return;
    }
    if (typeof frame.seq === "number") {
      if (this.lastSeq !== null) {
        if (frame.seq <= this.lastSeq) return; // already applied (overlap after a resync)
        // A gap: some events never reached us. Ask for a snapshot, which repairs state.
        if (frame.seq > this.lastSeq + 1) this.resync();
      }
      this.lastSeq = frame.seq;
    }
    this.onEvent(frame);
  }

  _onWelcome(frame) {
    if (frame.token) store.set(this.tokenKey, frame.token);
    this.shopToken = "";
    this.viewer = frame.viewer;
    this.resyncing = false; // a resync asked on a dropped connection is answered by this one
    this.connectedOnce = true;
    this.attempt = 0;
    this.stats.connects += 1;
    if (frame.resumed) this.stats.resumed += 1;
    this._sampleClock(frame.server_time, null);
    this._setState("live", { resumed: !!frame.resumed });
    this.onEvent(frame);
    // Anything that never got an answer goes out again under its original request_id.
    for (const request of this.pending.values()) {
      this.stats.resent += 1;
      this.send(request);
    }
    this._startPings();
  }

  // ---------------------------------------------------------------- clock

  _startPings() {
    this._stopPings();
    let sent = 0;
    const tick = () => {
      if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return;
      if (this.pongDeadline && Date.now() > this.pongDeadline) {
        // No pong for too long: the connection is dead even if the socket says open.
        this.pongDeadline = null;
        this.reconnect();
        return;
      }
      if (!this.pongDeadline) this.pongDeadline = Date.now() + PONG_TIMEOUT_MS;
      this.send({ type: "ping", t: Date.now() });
      sent += 1;
      this.pingTimer = setTimeout(tick, sent < FIRST_PINGS ? 400 : PING_EVERY_MS);
    };
    tick();
  }

  _stopPings() {
    clearTimeout(this.pingTimer);
    this.pingTimer = null;
    this.pongDeadline = null;
  }

  _onPong(frame) {
    this.pongDeadline = null;
    const now = Date.now();
    if (typeof frame.t === "number") {
      const rtt = Math.max(0, now - frame.t);
      this._sampleClock(frame.server_time + rtt / 2, rtt, now);
    }
  }

  /** Keep the sample with the smallest round trip among the recent ones: its error is
   *  at most half that round trip. Of samples with equal round trips (common on a fast
   *  link, where most measure 0 or 1 ms) the newest wins: its error bound is the same
   *  and it measures the clocks as they are now, after any drift or step of this
   *  device's wall clock (an NTP correction, a resume from sleep) that an older sample
   *  would keep hiding until it left the window. A server_time without a round trip
   *  (welcome, snapshot) is used only until a ping has been answered. */
  _sampleClock(serverTime, rtt, localNow = Date.now()) {
    if (typeof serverTime !== "number") return;
    const offset = serverTime - localNow;
    const before = this.offset;
    if (rtt === null) {
      if (this.samples.length === 0) this.offset = offset;
    } else {
      this.samples.push({ offset, rtt });
      if (this.samples.length > 8) this.samples.shift();
      let best = this.samples[0];
      for (const s of this.samples) if (s.rtt <= best.rtt) best = s; // oldest first: ties go to the newest
      this.offset = best.offset;
      this.offsetRtt = best.rtt;
    }
    // A countdown drawn with the old estimate would stay a second behind (or ahead)
    // until its next flip: the page redraws it now.
    if (this.offset !== before) this.onClock();
  }
}
