// The viewer page's one state store `S` (every panel reads it, the event handlers
// in ../viewer.js write it), the live connection, the server clock and the
// per-room storage keys. The rules themselves (sale state, limits, policy) are the
// server's: `S` only keeps what it last said.

export const S = {
  roomId: null,
  roomsCursor: null,
  room: null,
  products: new Map(),
  pins: [],
  coupons: new Map(),
  lotteries: new Map(),
  // auction_id -> the auction as the server last sent it (snapshot `auctions`,
  // auction_* events); this viewer's own side of each is in sessionStorage
  // (viewer/auctions.js).
  auctions: new Map(),
  // poll_id -> the poll as the server last sent it (snapshot `polls`, poll_* events);
  // this viewer's own vote in each is in sessionStorage (viewer/polls.js).
  polls: new Map(),
  // question_id -> the question as the server last sent it (snapshot `questions`,
  // question* events, asked / upvoted replies), unanswered and answered; this
  // viewer's upvotes are in sessionStorage (viewer/questions.js).
  questions: new Map(),
  // deal_id -> the group deal as the server last sent it (GET …/group-deals/{id},
  // group_deal events); group_id -> the group (the deal's open groups, group_update
  // events, the shared link's). This viewer's own group is in sessionStorage
  // (viewer/groups.js).
  deals: new Map(),
  groups: new Map(),
  sharedMissing: false, // the shared link's group does not exist
  reminder: null, // the last show_reminder: {title, starts_at}
  // The snapshot's `fans` ({enabled, channel, levels: [{level, points, badge}]}) and
  // this viewer's status as the last `fan` answer said ({points, level, badge,
  // next_level_points}); viewer/fans.js.
  fans: null,
  fan: null,
  // coupon_id -> a referral reward coupon this viewer was given (already claimed for
  // it by the server, offered at checkout), kept in localStorage; viewer/invite.js.
  rewardCoupons: new Map(),
  pinned: null, // the host's pinned message, or null
  likes: 0,
  viewers: { now: 0, unique: 0, peak: 0 },
  me: null,
  hold: null,
  // product_id -> {position, ticket}: this viewer's places on waitlists, as the
  // server last answered them (less the tickets it has since served ahead).
  waiting: new Map(),
  leaving: new Set(), // product ids whose leave_waitlist is on its way
  lastOrder: null,
  claimed: new Set(),
  usedCoupons: new Set(),
  entered: new Set(),
  seedHashes: {},
  nicknames: new Map(),
  mutedUntil: 0,
  armedAt: {},
  connState: "connecting",
  connInfo: {},
  policy: { require_verified: false, limit_per_ip: false, slow_mode_s: 0 },
  // The server's limits (snapshot `limits`): max_pins, max_quantity_per_buy,
  // max_holds_per_viewer, chat_max_length, nickname_max_length,
  // max_likes_per_frame (and the host forms' lengths, unused here). Null until the
  // first snapshot; the server checks every request whatever the page shows.
  limits: null,
  // performance.now() before which slow mode (or a busy chat) holds the next message
  // back: a wait the page started itself, kept on the monotonic clock (viewer/chat.js).
  chatReadyAt: 0,
  chatWait: "", // why the send button is counting down
  askWait: "", // why the Ask button is counting down (slow_mode, chat_busy)
  signinNotice: "", // a refused shop sign-in, shown while the page carries on as a guest
};

/** The room's connection (live.js), once the page has a room. */
export let live = null;
export function setLive(connection) { live = connection; }

/** Server time now, in ms (the measured offset applied to this device's clock). */
export const now = () => (live ? live.serverNow() : Date.now());

/** One of the server's limits, or null before the first snapshot. */
export const limit = (name) => (S.limits && Number.isFinite(S.limits[name]) ? S.limits[name] : null);

export const keys = {
  hold: () => `livesell.hold.${S.roomId}`,
  claimed: () => `livesell.claimed.${S.roomId}.${S.me?.viewer_id}`,
  used: () => `livesell.used.${S.roomId}.${S.me?.viewer_id}`,
  entered: () => `livesell.entered.${S.roomId}.${S.me?.viewer_id}`,
  seeds: () => `livesell.seedhash.${S.roomId}`,
  rewards: () => `livesell.rewards.${S.roomId}.${S.me?.viewer_id}`,
  // This viewer's holds and orders by offer (the per-buyer limit), and the coupon
  // each of its orders used (given back when the host cancels it): viewer/orders.js.
  bought: () => `livesell.bought.${S.roomId}.${S.me?.viewer_id}`,
  orderCoupons: () => `livesell.ordercoupons.${S.roomId}.${S.me?.viewer_id}`,
  // Winners' names as this page learned them (chat, questions) when the draw came:
  // the server sends winners as viewer ids only (viewer/lotteries.js).
  winnerNames: () => `livesell.winnernames.${S.roomId}`,
};

export function showEnded() {
  return !!(S.room && S.room.state === "ended");
}

/** A guest in a room that sells to signed-in shop customers only. */
export function mustSignIn() {
  return !!(S.policy.require_verified && !(S.me && S.me.verified === true));
}
