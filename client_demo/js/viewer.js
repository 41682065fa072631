// The viewer page: watch, shop the pinned products, race the flash sale, claim
// coupons, enter giveaways, vote in polls, ask the host and upvote questions, chat.
// Every number, state and limit shown comes from the server (snapshot and events);
// every countdown is drawn from server timestamps and the measured clock offset,
// so viewers with wrong clocks still see the same moment.
//
// This module boots the page and holds the one dispatch table (event type ->
// handler) and the reply table; the panels live in ./viewer/:
//   state.js       the store `S`, the connection, server time, storage keys
//   clock.js       re-renders when a displayed second changes (countdowns only)
//   words.js       refusal codes in plain words
//   connection.js  the connection pill and identity banners
//   identity.js    shop sign-in hand-off, welcome, change of name
//   rooms.js       the room picker at `/`
//   layout.js      phone first: the chat over the video or in its column, the lane
//                  (everything else) as a sheet over the stage, the sheets' focus
//   stage.js       video, viewer count, likes, announcement, stage countdown
//   spotlight.js   over the video: the rising card of an open sale, the featured
//                  product's compact card, the shop button
//   shopsheet.js   the shop sheet (every pinned product) and one product's sheet
//   cards.js       product cards, sale line, buy button (and what every view of a
//                  product says about buying it: `buyView`)
//   checkout.js    hold, cart bar, checkout dialog, orders
//   waitlist.js    joining a sold-out product's waitlist, the place, the unit served
//   auctions.js    auction cards: bid, max bid, leading / outbid, the won hold, verify
//   promos.js      the coupons-and-giveaways column
//   coupons.js     coupon drops and claims
//   lotteries.js   giveaways, winners, draw verification
//   polls.js       poll cards: vote, the viewer's choice, live percentages, final results
//   questions.js   Q&A: ask the host, upvote others' questions by votes, the answered list
//   groups.js      group deals: start or join a group, invite friends (?group=), pay when full
//   fans.js        this viewer's fan points, level and badge; `watching` while visible
//   invite.js      invite friends to the show (share sheet, ?invite=), referral rewards
//   preshow.js     the pre-show page of a scheduled show: countdown, products, remind me
//   chat.js        chat and its recent history, the pinned message, moderation effects,
//                  slow mode
//   orders.js      this viewer's holds and orders: the per-buyer limit, cancelled and
//                  refunded orders (a cancelled order's coupon given back)
//   toasts.js      where toasts go: live regions clear of the controls, above a dialog

import { Live } from "./live.js";
import { mergeProduct } from "./sales.js";
import { $, setText, store, toast } from "./util.js";
import {
  auctionDeadlines, hideRisenAuction, onAuction, onAuctionBid, onAuctionOrder, onBidPlaced, onBidRefused,
  renderAuctions, setAuctions,
} from "./viewer/auctions.js";
import {
  offerOf, onCountdown, onSale, onStock, renderAllCards, renderShop, showCardMsg,
} from "./viewer/cards.js";
import {
  addChat, applySlowMode, chatWaitLeft, onClaimed, applyTextLimits, onChatRefused, onMuted, onMutedRefusal, removeChat,
  renderChatGate, renderMuted, renderPinned, sendChat, setChatHistory, setPinned,
} from "./viewer/chat.js";
import {
  checkout, endHold, offerHold, onCheckoutClosed, onHoldReleased, onHoldsVoided, onOrder, onSnapshotApplied,
  openCheckout, release, renderHold, reviewOffline, showCheckoutMsg,
} from "./viewer/checkout.js";
import { countdownsFrom, onTick, redrawClock, scheduleClock } from "./viewer/clock.js";
import {
  onFan, onFanRefused, onOwnChat, refreshFanSoon, resetFan, setFans, syncWatching, watchVisibility,
} from "./viewer/fans.js";
import { renderConn, renderConnNotice, setConn } from "./viewer/connection.js";
import { bindLayout } from "./viewer/layout.js";
import { markClaimed, onCouponClaimed, onCouponCount, onCouponDrop, onCouponEnded } from "./viewer/coupons.js";
import {
  cancelRename, exchangeShopToken, onWelcome, openRename, rename, takeShopToken, watchAsGuest,
} from "./viewer/identity.js";
import {
  copyInvite, onInvite, onInviteAccepted, onInviteIdentity, onInviteRefused, onInviteSnapshot, onReferralReward,
  openInvite, shareInvite,
} from "./viewer/invite.js";
import {
  learnNames, markEntered, onDrawn, onEntrants, onLotteryEntered, onLotteryOpen, rememberSeed, showRecentDraw,
} from "./viewer/lotteries.js";
import {
  dropHold, dropHolds, holdCheckedOut, mineOf, noteHold, noteOrder, offerIdOf, onLimitRefused, onOrderCancelled, onOrderRefunded,
  watchOtherTabs,
} from "./viewer/orders.js";
import {
  onPoll, onPollVotes, onVoteRefused, onVoted, pollDeadlines, renderPolls, setPolls,
} from "./viewer/polls.js";
import {
  groupDeadlines, onGroupDeal, onGroupOrder, onGroupRefused, onGroupReply, onGroupUpdate,
  refreshGroups, renderGroups,
} from "./viewer/groups.js";
import {
  onShowLive, onShowReminder, preshowDeadlines, remindMe, renderPreshow,
} from "./viewer/preshow.js";
import { renderPromos, showPromoMsg } from "./viewer/promos.js";
import {
  ask, loadAnswered, onAskRefused, onAsked, onQuestion, onQuestionAnswered, onQuestionVotes, onUpvoteRefused,
  onUpvoted, renderAsk, renderQuestions, setQuestions,
} from "./viewer/questions.js";
import { roomFromAddress, showPicker } from "./viewer/rooms.js";
import { bindSheets } from "./viewer/shopsheet.js";
import { bindSpotlight } from "./viewer/spotlight.js";
import { S, keys, live, setLive, showEnded } from "./viewer/state.js";
import {
  bannerDeadlines, bindVideoControls, dismissAnnouncement, like, onAnnouncement, onLikes, renderLikes,
  renderStageBanners, renderStageCountdown, renderViewers, setupVideo,
} from "./viewer/stage.js";
import { placeToasts } from "./viewer/toasts.js";
import {
  forgetPlaces, onJoinRefused, onWaitlist, onWaitlistLeft, onWaitlistOffer,
} from "./viewer/waitlist.js";
import { explain, explainLevel } from "./viewer/words.js";

// ------------------------------------------------------------------ events

/** Every event type the page acts on, and its handler: the one place to look. */
const EVENTS = {
  // A new identity is a new bidder, voter and asker: the auction and poll cards and
  // the questions follow who this viewer is.
  welcome: onWelcomeEvent,
  snapshot: onSnapshot,
  product: (ev) => { putProduct(ev.product); renderShop(); },
  pinned: (ev) => { putProduct(ev.product); S.pins = ev.pins; renderShop(); },
  unpinned: (ev) => { S.pins = ev.pins; renderShop(); },
  stock: onStock,
  sale_scheduled: (ev) => onSale(ev.sale),
  sale_open: (ev) => onSale(ev.sale),
  sale_closed: (ev) => onSale(ev.sale),
  sale_countdown: onCountdown,
  holds_voided: (ev) => { dropHolds(ev.hold_ids); onHoldsVoided(ev); renderAllCards(); },
  waitlist_offer: onWaitlistOffer,
  coupon_drop: (ev) => onCouponDrop(ev.coupon),
  // Ended early: its card says so; the checkout stops offering it (coupon rules).
  coupon_ended: (ev) => { onCouponEnded(ev.coupon); renderHold(); },
  coupon_count: (ev) => onCouponCount(ev.coupon_id, ev.remaining),
  lottery_open: (ev) => onLotteryOpen(ev.lottery),
  lottery_entrants: onEntrants,
  lottery_drawn: (ev) => onDrawn(ev.lottery, ev.ts),
  auction_started: (ev) => onAuction(ev.auction),
  auction_bid: onAuctionBid,
  auction_ended: (ev) => onAuction(ev.auction),
  auction_cancelled: (ev) => onAuction(ev.auction),
  auction_second_chance: (ev) => onAuction(ev.auction),
  likes: onLikes,
  viewers: (ev) => { S.viewers = ev; renderViewers(); },
  chat: (ev) => { addChat(ev); if (S.me && ev.viewer_id === S.me.viewer_id) onOwnChat(ev); },
  claimed: onClaimed,
  chat_deleted: (ev) => removeChat(ev.message_id),
  message_pinned: (ev) => setPinned(ev.pinned_message),
  poll_open: (ev) => onPoll(ev.poll),
  poll_votes: onPollVotes,
  poll_closed: (ev) => onPoll(ev.poll),
  question: (ev) => onQuestion(ev.question),
  question_votes: onQuestionVotes,
  question_answered: (ev) => onQuestionAnswered(ev.question),
  viewer_muted: (ev) => { onMuted(ev); renderAsk(); },
  announcement: onAnnouncement,
  group_deal: onGroupDeal,
  group_update: onGroupUpdate,
  show_live: onShowLive,
  show_reminder: onShowReminder,
  show_ended: onShowEnded,
  room_policy: (ev) => applyPolicy(ev.policy),
  room_updated: (ev) => {
    if (!S.room) return;
    S.room = { ...S.room, title: ev.title, stream_url: ev.stream_url };
    showRoom(S.room);
  },
  order_cancelled: (ev) => { if (onOrderCancelled(ev)) afterOwnOrderChange(); },
  order_refunded: (ev) => { if (onOrderRefunded(ev)) afterOwnOrderChange(); },
  referral_reward: onReferralReward,
  error: onStrayError,
};

function onEvent(ev) {
  const handler = EVENTS[ev.type];
  if (handler) handler(ev);
}

// A new identity is a new bidder, voter, asker, fan and inviter: the auction and poll
// cards, the questions and the fan status follow who this viewer is.
function onWelcomeEvent(ev) {
  const changed = !S.me || S.me.viewer_id !== ev.viewer.viewer_id;
  onWelcome(ev);
  if (changed) { resetFan(); onInviteIdentity(); }
  renderAuctions();
  renderPolls();
  renderQuestions();
  renderGroups();
}

function putProduct(card) {
  if (!card) return;
  S.products.set(card.product_id, mergeProduct(S.products.get(card.product_id), card));
}

/** The room's title and stream, from a snapshot or the host's edit (`room_updated`). */
function showRoom(room) {
  const title = room.title || "Live shopping";
  setText($("#room-title"), title);
  setText($("#poster-title"), title);
  document.title = `${title} · livesell`;
  setupVideo(room.stream_url);
}

function onSnapshot(snap) {
  S.room = snap.room;
  showRoom(snap.room);
  const before = S.products;
  S.products = new Map(snap.products.map((p) => [p.product_id, mergeProduct(before.get(p.product_id), p)]));
  S.pins = snap.pins;
  S.coupons = new Map(snap.coupons.map((c) => [c.coupon_id, c]));
  S.lotteries = new Map(snap.lotteries.map((l) => [l.lottery_id, l]));
  for (const l of snap.lotteries) if (l.state === "open") rememberSeed(l);
  setAuctions(snap.auctions);
  setPolls(snap.polls);
  setQuestions(snap.questions);
  S.likes = snap.likes;
  S.viewers = snap.viewers;
  if (snap.limits) S.limits = snap.limits;
  applyTextLimits(S.limits);
  renderViewers();
  $("#ended").hidden = !showEnded();
  if (snap.policy) applyPolicy(snap.policy, false);
  renderLikes();
  renderShop();
  renderPromos();
  renderAuctions();
  renderPolls();
  renderQuestions();
  renderHold();
  renderPreshow();
  // Deals are not in the snapshot: the ones this tab has seen are fetched afresh.
  refreshGroups();
  // The channel's fan levels (before the chat: its lines wear their badges), and
  // this viewer's status asked afresh.
  setFans(snap.fans);
  // The recent chat (oldest first, kept by message_id) and the pinned message.
  setChatHistory(snap.chat, snap.seq);
  if (snap.pinned_message !== undefined) setPinned(snap.pinned_message);
  else renderPinned();
  // The names the snapshot carries (chat above, questions here) name the winners of
  // a draw still on show: its banner comes back over the video until it expires.
  learnNames((snap.questions || []).map((q) => [q.viewer_id, q.nickname]));
  showRecentDraw();
  // A page opened from a friend's invite link accepts it once.
  onInviteSnapshot();
  // A checkout kept while offline was waiting for this state: checked, then sent or not.
  onSnapshotApplied();
}

/** The room policy from a snapshot or a `room_policy` event. */
function applyPolicy(policy, render = true) {
  if (!policy) return;
  const before = S.policy.slow_mode_s;
  S.policy = { ...S.policy, ...policy };
  const slow = S.policy.slow_mode_s;
  applySlowMode(slow);
  if (render) {
    if (before !== slow && slow) toast(`Slow mode is on: one message every ${slow} s.`);
    renderShop();
    renderPromos();
    renderAuctions();
    renderPolls();
    renderQuestions();
  }
  renderChatGate();
}

/** This viewer's order was cancelled or refunded: its units and coupon may be back. */
function afterOwnOrderChange() {
  renderAllCards();
  renderPromos();
  renderHold();
}

/** The show ended (event or snapshot): say so and take every selling button away. */
function onShowEnded() {
  if (S.room) S.room.state = "ended";
  forgetPlaces();
  $("#ended").hidden = false;
  renderShop();
  renderPromos();
  renderAuctions();
  renderGroups();
  renderPreshow();
  syncWatching();
}

function onStrayError(ev) {
  if (ev.code === "muted") { onMutedRefusal(ev); return; }
  toast(explain(ev), "error");
}

// ------------------------------------------------------------------ replies

/** Every reply to a request, by its type. */
const REPLIES = {
  // A buy button's hold, or a comment's (which may come while another is open).
  hold: (reply) => { noteHold(reply.hold); offerHold(reply.hold); },
  order_placed: (reply) => {
    noteOrder(reply.order);
    onOrder(reply.order); onAuctionOrder(reply.order); onGroupOrder(reply.order); refreshFanSoon();
  },
  hold_released: (reply) => { dropHold(reply.hold_id); onHoldReleased(reply); },
  coupon_claimed: onCouponClaimed,
  lottery_entered: onLotteryEntered,
  waitlist: onWaitlist,
  waitlist_left: onWaitlistLeft,
  bid_placed: onBidPlaced,
  voted: onVoted,
  asked: onAsked,
  upvoted: onUpvoted,
  group: onGroupReply,
  fan: onFan,
  invite: onInvite,
  invite_accepted: onInviteAccepted,
  error: (reply, request) => (request && request.type === "chat" ? onChatRefused(reply, request)
                                                                : onRefusal(reply, request)),
};

function onReply(reply, request) {
  const handler = REPLIES[reply.type];
  if (handler) handler(reply, request);
}

const HOLD_OVER = ["hold_expired", "hold_not_found", "hold_released", "checked_out", "sale_stopped",
                   "checkout_cancelled"];

/** A refusal, shown where the request was made. */
function onRefusal(err, request) {
  const kind = request ? request.type : null;
  const text = err.code === "level_required" && kind === "enter_lottery" ? explainLevel(err, "enter this giveaway")
                                                                         : explain(err);
  if (kind === "join_waitlist") onJoinRefused(request.product_id);
  if (kind === "bid") {
    onBidRefused(err, request);
  } else if (kind === "vote") {
    onVoteRefused(err, request);
  } else if (kind === "ask") {
    onAskRefused(err, request);
  } else if (kind === "upvote") {
    onUpvoteRefused(err, request);
  } else if (kind === "start_group" || kind === "join_group") {
    onGroupRefused(err, request);
  } else if (kind === "invite" || kind === "accept_invite") {
    onInviteRefused(err, request);
  } else if (kind === "watching" || kind === "fan_status") {
    onFanRefused(err, request);
  } else if (kind === "buy" || kind === "join_waitlist") {
    if (kind === "buy" && err.code === "limit_reached") limitRefused(request);
    showCardMsg(request.product_id, text);
    renderAllCards();
  } else if (kind === "checkout" || kind === "release") {
    // Over without an order: its units no longer count to the per-buyer limit.
    if (err.code === "checked_out") holdCheckedOut(request.hold_id);
    else if (HOLD_OVER.includes(err.code)) dropHold(request.hold_id);
    if (HOLD_OVER.includes(err.code) && S.hold && S.hold.id === request.hold_id) endHold(text);
    // A group's hold whose group has not filled: the group's card says where it stands.
    if (err.code === "group_not_full") renderGroups();
    showCheckoutMsg(text, "error");
    renderHold();
  } else if (kind === "claim_coupon") {
    if (err.code === "already_claimed") markClaimed(request.coupon_id);
    if (err.code === "coupon_gone") onCouponCount(request.coupon_id, 0);
    showPromoMsg(request.coupon_id, text);
    renderPromos();
  } else if (kind === "enter_lottery") {
    if (err.code === "already_entered") markEntered(request.lottery_id);
    else showPromoMsg(request.lottery_id, text);
    renderPromos();
  } else {
    toast(text, "error");
  }
}

/** A buy refused `limit_reached`: the server counts more of this viewer's units than
 *  this page knew of (another tab or device); the card says so for a while. */
function limitRefused(request) {
  const p = S.products.get(request.product_id);
  const offer = offerOf(p);
  if (!offer) return;
  const id = offerIdOf(p, offer);
  onLimitRefused(id, offer.limit, request.quantity);
  if (mineOf(id) >= offer.limit) renderAllCards();
}

// ------------------------------------------------------------------ clock

// What the clock redraws each displayed second, and the server timestamps it
// counts down to (sale starts and ends, the hold, coupons, giveaways, auctions, polls,
// mute, slow mode); the questions' "asked … ago" and the Ask button's wait.
// A checkout kept while offline is checked again first (a hold can lapse meanwhile).
onTick(reviewOffline, renderAllCards, renderAuctions, renderPolls, renderQuestions, renderStageCountdown, renderHold,
       renderPromos, renderGroups, renderPreshow, renderConn, () => { if (S.mutedUntil) renderMuted(); }, renderChatGate,
       renderStageBanners);
countdownsFrom((at) => {
  const targets = [];
  for (const id of S.pins) {
    const p = S.products.get(id);
    if (p && p.sale && (p.sale.state === "scheduled" || p.sale.state === "open")) {
      targets.push(p.sale.starts_at, p.sale.ends_at);
    }
  }
  if (S.hold) targets.push(S.hold.expires_at);
  for (const c of S.coupons.values()) targets.push(c.expires_at);
  for (const l of S.lotteries.values()) if (l.state === "open") targets.push(l.closes_at);
  targets.push(...auctionDeadlines());
  targets.push(...pollDeadlines());
  targets.push(...groupDeadlines());
  targets.push(...preshowDeadlines());
  if (S.mutedUntil) targets.push(S.mutedUntil);
  // The chat's wait is on the monotonic clock: its end, as a server moment from now.
  const chatLeft = chatWaitLeft();
  if (chatLeft > 0) targets.push(at + chatLeft);
  // The announcement and winner banners fade and go at times of their own.
  targets.push(...bannerDeadlines());
  return targets;
});

// ------------------------------------------------------------------ start

function bindUi() {
  $("#chat-form").addEventListener("submit", sendChat);
  $("#ask-form").addEventListener("submit", ask);
  $("#like-btn").addEventListener("click", like);
  $("#announce-close").addEventListener("click", dismissAnnouncement);
  $("#cartbar-open").addEventListener("click", openCheckout);
  $("#checkout-close").addEventListener("click", () => $("#checkout").close());
  $("#verify-close").addEventListener("click", () => $("#verify").close());
  $("#pay-btn").addEventListener("click", checkout);
  $("#release-btn").addEventListener("click", release);
  $("#coupon-select").addEventListener("change", renderHold);
  $("#checkout").addEventListener("close", onCheckoutClosed);
  $("#rename-btn").addEventListener("click", openRename);
  $("#rename-cancel").addEventListener("click", cancelRename);
  $("#rename-form").addEventListener("submit", rename);
  $("#guest-btn").addEventListener("click", watchAsGuest);
  $("#remind-btn").addEventListener("click", remindMe);
  $("#invite-btn").addEventListener("click", openInvite);
  $("#invite-close").addEventListener("click", () => $("#invite-dlg").close());
  $("#invite-copy").addEventListener("click", copyInvite);
  $("#invite-share").addEventListener("click", shareInvite);
  $("#auction-rise-hide").addEventListener("click", hideRisenAuction);
  bindLayout();
  bindSpotlight();
  bindSheets();
  bindVideoControls();
  watchVisibility();
  watchOtherTabs(() => { renderAllCards(); renderPromos(); renderHold(); });
}

/** The top bar's height (it grows with the outage banner), for what sits under it. */
function trackTopBar() {
  const bar = $(".topbar");
  if (!bar || typeof ResizeObserver !== "function") return;
  new ResizeObserver(() => {
    document.documentElement.style.setProperty("--top-h", `${Math.round(bar.getBoundingClientRect().height)}px`);
  }).observe(bar);
}

async function start() {
  placeToasts();
  trackTopBar();
  S.roomId = roomFromAddress();
  const shopToken = takeShopToken();
  if (!S.roomId) {
    showPicker();
    return;
  }
  $("#room").hidden = false;
  S.seedHashes = store.get(keys.seeds(), {}) || {};
  S.hold = store.get(keys.hold(), null);
  loadAnswered();
  bindUi();
  const offer = shopToken ? await exchangeShopToken(shopToken) : "";
  setLive(new Live({
    roomId: S.roomId,
    tokenKey: "livesell.token",
    shopToken: offer,
    // Any frame may move a deadline (a sale scheduled, a hold taken): re-aim the clock;
    // and may change where a checkout kept while offline stands: check it again.
    onEvent: (ev) => { onEvent(ev); reviewOffline(); scheduleClock(); },
    onReply: (reply, request) => { onReply(reply, request); reviewOffline(); scheduleClock(); },
    onState: setConn,
    onClock: redrawClock,
  }));
  // A new identity: requests left unanswered by the previous one are not its own.
  if (shopToken && !S.signinNotice) live.clearPending();
  renderConnNotice();
  live.start();
  scheduleClock();
  window.livesell = {
    live,
    state: S,
    serverNow: () => live.serverNow(),
    get viewer() { return live.viewer; },
  };
}

start();
