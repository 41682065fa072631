// The host console: create or open a room, run the catalogue, pins, flash sales,
// coupon drops, giveaways, auctions and polls, answer viewers' questions, moderate
// chat and reply in it, pin a message and watch the stream and the live numbers.
// From 1280 x 600 it is a cockpit on one screen: the live column (stream preview,
// numbers, "On now" with every end and stop button), the tools in tabs, the chat.
// Host actions are HTTP calls with the room's host key; the console also joins
// the room's WebSocket as a viewer to see chat and live stock as viewers do.
// Sale states and limits (max_pins, text lengths, the longest slow mode) are the
// server's, shown as it sends them.
//
// This module boots the console and holds the one dispatch table (event type ->
// handler); the panels live in ./host/:
//   state.js            the store `S`, the connection, server time, hostApi, outcome lines
//   rooms.js            create / open / switch rooms, connection pill, room state, end show
//   tabs.js             the workspace's tools, one tab at a time
//   onnow.js            "On now": pinned products, the panel's outcome line and focus
//   selection.js        the selected product (the one the P and S shortcuts act on)
//   shortcuts.js        the keyboard shortcuts and their help
//   reply.js            the host's reply in the chat
//   preview.js          the stream preview (../video.js), following the room's stream_url
//   confirm.js          the confirmation every irreversible action asks first
//   hostkey.js          "Save your host key": the notice, copy, download as a file
//   room_edit.js        the show's title and stream, editable during the show
//   limits.js           the server's limits on the console's inputs
//   policy.js           room policy (shop customers only, per-address limit, slow mode)
//   catalogue.js        products, pins, the product form
//   sale.js             flash sales: the form, the running sales with Stop, the sale cell of a row
//   coupons.js          coupon drops
//   lotteries.js        giveaways, draw, entrants, verification
//   auctions.js         auctions: the start form, live leading bid and end, end / cancel / second chance
//   polls.js            polls: the start form (2 to 6 options), live votes and shares, close now
//   questions.js        Q&A: the top unanswered questions by votes, mark answered, recently answered
//   groups.js           group deals: the start form, held / sold / left and open groups live, close
//   fans.js             top fans: the channel's leaderboard, refreshed every 10 s
//   referrals.js        referrals: the reward program's form and the inviter → invitee tree
//   chat_moderation.js  chat and its recent history, delete, mute, the muted viewers, the pinned
//                       message, announcements
//   stats.js            live numbers and charts
//   report.js           the show report (final once the show ended) and its downloads

import { mergeProduct } from "./sales.js";
import { $, copyText, toast } from "./util.js";
import {
  antiSnipeChanged, fillAuctionDefaults, onAuctionBid, putAuction, renderAuctions, setAuctions, startAuction,
} from "./host/auctions.js";
import {
  productCurrency, renderProducts, resetProductForm, submitProduct, updateAllRows, updateRow,
} from "./host/catalogue.js";
import {
  addChat, addSystem, announce, anyMute, loadMutes, markDeleted, onMuted, pinNote, renderMutes,
  setChatHistory, setPinned, unpin,
} from "./host/chat_moderation.js";
import {
  couponCurrency, couponKindChanged, dropCoupon, onCouponCount, putCoupon, renderCoupons,
} from "./host/coupons.js";
import { refreshFans } from "./host/fans.js";
import {
  anyOpenGroup, fillGroupDefaults, onGroupDeal, onGroupUpdate, onProductStock, refreshGroups, renderGroups, startDeal,
} from "./host/groups.js";
import { copyKey, dismissKeyNotice, downloadKey, toggleKeyNotice } from "./host/hostkey.js";
import { applyLimits } from "./host/limits.js";
import {
  entryKindChanged, onEntrants, openLottery, putLottery, renderLotteries,
} from "./host/lotteries.js";
import {
  addOption, anyOpenPoll, onPollVotes, putPoll, renderPolls, resetPollForm, setPolls, startPoll,
} from "./host/polls.js";
import {
  onPolicyEvent, perAddressChanged, renderPolicy, slowModeChanged, submitCustomSlowMode, verifiedChanged,
} from "./host/policy.js";
import {
  askEndShow, createRoom, endDialogClosed, endShow, goToReport, openForm, openRememberedRoom,
  rememberTitle, renderRoomState, showSetup, whenRoomOpens,
} from "./host/rooms.js";
import {
  applyRoomUpdate, renderRoomDetails, roomFieldChanged, saveRoomDetails,
} from "./host/room_edit.js";
import {
  onQuestionVotes, putQuestion, refreshQuestions, renderQuestions, setQuestions,
} from "./host/questions.js";
import {
  loadReferrals, referralCouponKindChanged, referralCurrency, referralKindChanged, refreshReferrals, saveReferrals,
} from "./host/referrals.js";
import { previewStream, stopPreview } from "./host/preview.js";
import { onReply, sendReply } from "./host/reply.js";
import { download, loadReport, reportShowEnded } from "./host/report.js";
import { fillSaleDefaults, putSale, startSale } from "./host/sale.js";
import { bindShortcuts } from "./host/shortcuts.js";
import { S, now } from "./host/state.js";
import { bindTabs } from "./host/tabs.js";

// ------------------------------------------------------------------ room events

function putProduct(card) {
  S.products.set(card.product_id, mergeProduct(S.products.get(card.product_id), card));
}

/** Every event type the console acts on, and its handler: the one place to look. */
const EVENTS = {
  snapshot: onSnapshot,
  product: (ev) => { putProduct(ev.product); renderProducts(); },
  pinned: (ev) => { putProduct(ev.product); S.pins = ev.pins; renderProducts(); },
  unpinned: (ev) => { S.pins = ev.pins; renderProducts(); },
  stock: onStock,
  sale_scheduled: (ev) => putSale(ev.sale),
  sale_open: (ev) => putSale(ev.sale),
  sale_closed: (ev) => putSale(ev.sale),
  coupon_drop: (ev) => putCoupon(ev.coupon),
  // Ended early (this console or another): "expired", its End button gone.
  coupon_ended: (ev) => putCoupon(ev.coupon),
  coupon_count: onCouponCount,
  lottery_open: (ev) => putLottery(ev.lottery),
  lottery_drawn: (ev) => putLottery(ev.lottery),
  lottery_entrants: onEntrants,
  auction_started: (ev) => putAuction(ev.auction),
  auction_bid: onAuctionBid,
  auction_ended: (ev) => putAuction(ev.auction),
  auction_cancelled: (ev) => putAuction(ev.auction),
  auction_second_chance: (ev) => putAuction(ev.auction),
  chat: addChat,
  chat_deleted: (ev) => markDeleted(ev.message_id),
  message_pinned: (ev) => setPinned(ev.pinned_message),
  poll_open: (ev) => putPoll(ev.poll),
  poll_votes: onPollVotes,
  poll_closed: (ev) => putPoll(ev.poll),
  question: (ev) => putQuestion(ev.question),
  question_votes: onQuestionVotes,
  question_answered: (ev) => putQuestion(ev.question),
  group_deal: onGroupDeal,
  group_update: onGroupUpdate,
  viewer_muted: onMuted,
  announcement: (ev) => addSystem(`Announcement: ${ev.text}`),
  show_live: () => { if (S.room) S.room.state = "live"; renderRoomState("live"); },
  room_policy: (ev) => onPolicyEvent(ev.policy),
  // The title or stream changed (this console or another): header, form, recent rooms.
  room_updated: (ev) => { applyRoomUpdate(ev); rememberTitle(ev.room_id, ev.title); previewStream(ev.stream_url); },
  // The show's final numbers: the report loads by itself (once: not again when this
  // console's End show loaded it).
  show_ended: (ev) => {
    if (S.room) S.room.ended_at = ev.ended_at;
    addSystem("The show has ended.");
    renderRoomState("ended");
    reportShowEnded();
  },
  // A reward paid or reversed changes the referral tree: load it now, not in 10 s.
  referral_reward: () => loadReferrals(),
};

function onEvent(ev) {
  const handler = EVENTS[ev.type];
  if (handler) handler(ev);
}

/** The room's state: from GET /api/rooms/{room} when the console opens, then the
 *  WebSocket's snapshot after every (re)connect or gap. */
function applySnapshot(snap) {
  S.room = snap.room;
  if (snap.limits) S.limits = snap.limits;
  applyLimits(S.limits);
  renderRoomState(snap.room.state || "live");
  // A room opened (or a state resent) after its show ended: its report, once.
  if (snap.room.state === "ended") reportShowEnded();
  renderRoomDetails(snap.room);
  previewStream(snap.room.stream_url);
  const before = S.products;
  S.products = new Map(snap.products.map((p) => [p.product_id, mergeProduct(before.get(p.product_id), p)]));
  S.pins = snap.pins;
  S.coupons = new Map(snap.coupons.map((c) => [c.coupon_id, c]));
  S.lotteries = new Map(snap.lotteries.map((l) => [l.lottery_id, l]));
  if (snap.policy) renderPolicy(snap.policy);
  renderProducts();
  renderCoupons();
  renderLotteries();
  setAuctions(snap.auctions);
  setPolls(snap.polls);
  // The top questions, then the whole list (and the answered ones) loaded afresh.
  setQuestions(snap.questions);
  // The recent chat (kept by message_id) and the pinned message, when the state has them.
  setChatHistory(snap.chat, snap.seq);
  if (snap.pinned_message !== undefined) setPinned(snap.pinned_message);
  // Group deals are not in the room state: the ones seen here are fetched afresh.
  refreshGroups();
}

/** The WebSocket's snapshot (every (re)connect or gap): mutes may have been missed too.
 *  The first one, on opening the room, is also what first loads the list (after the
 *  socket is live, so no mute falls between the list and the events). */
function onSnapshot(snap) {
  applySnapshot(snap);
  loadMutes();
}

function onStock(ev) {
  onProductStock(ev.product_id);
  const p = S.products.get(ev.product_id);
  if (!p) return;
  p.stock = ev.stock;
  p.waiting = ev.waiting || 0;
  if (ev.sale) putSale(ev.sale);
  else updateRow(ev.product_id);
}

// ------------------------------------------------------------------ ticking

// Countdowns (sales, coupons, giveaways, auctions, polls) and the questions' "asked … ago"
// redrawn on every second of server time.
let tickTimer = null;
function scheduleTick() {
  clearTimeout(tickTimer);
  tickTimer = setTimeout(() => {
    updateAllRows();
    renderCoupons();
    if ([...S.lotteries.values()].some((l) => l.state !== "drawn")) renderLotteries();
    if (S.auctions.size) renderAuctions();
    if (anyOpenPoll()) renderPolls();
    if (S.questions.size) renderQuestions();
    if (anyOpenGroup()) renderGroups();
    if (anyMute()) renderMutes();
    scheduleTick();
  }, 1000 - (now() % 1000) + 2);
}

// ------------------------------------------------------------------ wiring

function checkStart(value) {
  return () => { document.querySelector(`input[name="sf-start"][value="${value}"]`).checked = true; };
}

async function copyField(input, okText, failText) {
  const ok = await copyText(input.value, input);
  toast(ok ? okText : failText, ok ? "ok" : "info");
}

function bind() {
  $("#create-form").addEventListener("submit", createRoom);
  $("#open-form").addEventListener("submit", openForm);
  $("#switch-room").addEventListener("click", showSetup);
  $("#end-show").addEventListener("click", askEndShow);
  $("#end-cancel").addEventListener("click", () => $("#end-dlg").close());
  $("#end-confirm").addEventListener("click", endShow);
  $("#end-dlg").addEventListener("close", endDialogClosed);
  $("#ended-report").addEventListener("click", goToReport);
  $("#show-key").addEventListener("click", toggleKeyNotice);
  $("#key-dismiss").addEventListener("click", dismissKeyNotice);
  $("#copy-key").addEventListener("click", copyKey);
  $("#download-key").addEventListener("click", downloadKey);
  $("#room-form").addEventListener("submit", saveRoomDetails);
  $("#rm-title").addEventListener("input", roomFieldChanged);
  $("#rm-stream").addEventListener("input", roomFieldChanged);
  $("#product-form").addEventListener("submit", submitProduct);
  $("#pf-cancel").addEventListener("click", () => { resetProductForm(); $("#product-result").textContent = ""; });
  $("#sale-form").addEventListener("submit", startSale);
  $("#sf-product").addEventListener("change", fillSaleDefaults);
  $("#sf-in").addEventListener("focus", checkStart("in"));
  $("#sf-at").addEventListener("focus", checkStart("at"));
  $("#coupon-form").addEventListener("submit", dropCoupon);
  couponCurrency.listen();
  productCurrency.listen();
  referralCurrency.listen();
  $("#cf-kind").addEventListener("change", couponKindChanged);
  $("#lottery-form").addEventListener("submit", openLottery);
  $("#lf-entry").addEventListener("change", entryKindChanged);
  $("#auction-form").addEventListener("submit", startAuction);
  $("#af-product").addEventListener("change", fillAuctionDefaults);
  $("#af-mode").addEventListener("change", antiSnipeChanged);
  $("#group-form").addEventListener("submit", startDeal);
  $("#gf-product").addEventListener("change", fillGroupDefaults);
  $("#announce-form").addEventListener("submit", announce);
  $("#reply-form").addEventListener("submit", sendReply);
  $("#pin-form").addEventListener("submit", pinNote);
  $("#unpin-btn").addEventListener("click", unpin);
  $("#poll-form").addEventListener("submit", startPoll);
  $("#pl-add").addEventListener("click", () => addOption());
  $("#qa-refresh").addEventListener("click", refreshQuestions);
  $("#fans-refresh").addEventListener("click", refreshFans);
  $("#ref-refresh").addEventListener("click", refreshReferrals);
  $("#rp-load").addEventListener("click", () => loadReport());
  for (const button of document.querySelectorAll("[data-download]")) button.addEventListener("click", download);
  $("#ref-form").addEventListener("submit", saveReferrals);
  $("#rf-kind-points").addEventListener("change", referralKindChanged);
  $("#rf-kind-coupon").addEventListener("change", referralKindChanged);
  $("#rf-ckind").addEventListener("change", referralCouponKindChanged);
  $("#pol-verified").addEventListener("change", verifiedChanged);
  $("#pol-ip").addEventListener("change", perAddressChanged);
  $("#pol-slow").addEventListener("change", slowModeChanged);
  $("#policy-form").addEventListener("submit", submitCustomSlowMode);
  $("#entrants-close").addEventListener("click", () => $("#entrants-dlg").close());
  $("#copy-link").addEventListener("click", () => copyField($("#share-link"),
    "Viewer link copied.", "Select the link and copy it."));
  bindTabs();
  bindShortcuts();
}

whenRoomOpens({ applySnapshot, onEvent, onReply, onStart: scheduleTick, onStop: stopPreview });
bind();
resetPollForm();
openRememberedRoom();
