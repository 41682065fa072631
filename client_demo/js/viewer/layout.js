// The viewer page's layout, phone first. On a phone the stage is the whole screen
// under the top bar (css/viewer.css): the video fills it, the chat sits over its
// lower part, and everything else (the shop's cards, deals, coupons, giveaways,
// polls, questions, fan level) is the "lane", a sheet under the stage that comes up
// as the page scrolls. From 1000 px the page has three columns: the lane (products)
// left, the video centre, the chat right.
//
// This module owns what CSS alone cannot do there:
// - where the chat is: over the video on a phone while the show is live, in its
//   own column otherwise (a wide screen, or the pre-show, whose panel replaces
//   the stage);
// - the lane as a sheet on a phone: "More" brings it up and focuses its heading;
//   "Back to the video" or Escape takes it down and gives the focus back;
// - the sheets (native modal <dialog>s): a click on the backdrop closes them, and
//   the focus goes back to the control that opened them;
// - what is over the video stays anchored at its foot when more rises than fits;
// - the video's fit: a portrait stream fills the phone's screen (cropped at the
//   edges), a landscape one is shown whole.

import { $ } from "../util.js";

export const wide = window.matchMedia("(min-width: 1000px)");

const reduceMotion = () => window.matchMedia("(prefers-reduced-motion: reduce)").matches;

// ------------------------------------------------------------------ the chat's place

/** Move the chat where the layout wants it, keeping the focus (and what is typed)
 *  where the browser can, and the newest messages in view. */
export function placeChat() {
  const chat = $("#chat");
  const room = $("#room");
  if (!chat || !room) return;
  const overVideo = !wide.matches && room.dataset.phase !== "preshow";
  const target = overVideo ? $("#stage-chat") : $("#chat-col");
  room.dataset.chat = overVideo ? "stage" : "column";
  if (chat.parentElement === target) return;
  const focused = chat.contains(document.activeElement) ? document.activeElement : null;
  if (typeof target.moveBefore === "function") target.moveBefore(chat, null);
  else target.append(chat);
  if (focused && document.activeElement !== focused) focused.focus({ preventScroll: true });
  const list = $("#chat-list");
  list.scrollTop = list.scrollHeight;
}

/** Over the video the older messages fade out at the top, once there are more
 *  than the room they have (a fade over a few lines would only dim them). */
function watchChatFade() {
  const list = $("#chat-list");
  const sync = () => list.classList.toggle("overflows", list.scrollHeight > list.clientHeight + 1);
  new ResizeObserver(sync).observe(list);
  new MutationObserver(sync).observe(list, { childList: true });
}

/** What is over the video is anchored at its foot: when more rises than the room
 *  there is (a sale's card and an auction's on a small phone), the foot (the chat's
 *  input, the newest moment) stays in view and the rest scrolls up out of it. */
function anchorStageFoot() {
  const left = $(".stage-left");
  const toFoot = () => {
    // A card rising moves in from below the foot: measured once it is in place.
    const moving = (a) => a.playState === "running" && Number.isFinite(a.effect?.getComputedTiming().endTime);
    if (left.getAnimations({ subtree: true }).some(moving)) return;
    const over = left.scrollHeight > left.clientHeight + 1;
    left.classList.toggle("overflows", over);
    if (over) left.scrollTop = left.scrollHeight;
  };
  const sizes = new ResizeObserver(toFoot);
  sizes.observe(left);
  for (const part of left.children) sizes.observe(part);
  left.addEventListener("animationend", toFoot);
  left.addEventListener("animationcancel", toFoot);
}

// ------------------------------------------------------------------ the lane (a phone)

let laneOpener = null;

function openLane(opener) {
  laneOpener = opener || null;
  const lane = $("#lane");
  lane.scrollIntoView({ block: "start", behavior: reduceMotion() ? "auto" : "smooth" });
  $("#lane-h").focus({ preventScroll: true });
}

/** Back to the video: the lane slides down, the focus goes back to what opened it. */
function closeLane() {
  window.scrollTo({ top: 0, behavior: reduceMotion() ? "auto" : "smooth" });
  const back = laneOpener && laneOpener.isConnected ? laneOpener : $("#more-btn");
  laneOpener = null;
  back.focus({ preventScroll: true });
}

function bindLane() {
  $("#more-btn").addEventListener("click", (e) => openLane(e.currentTarget));
  $("#lane-back").addEventListener("click", closeLane);
  // Escape takes a phone back to the video from anywhere in the lane (an open
  // dialog has the keyboard first and closes itself).
  $("#lane").addEventListener("keydown", (e) => {
    if (e.key !== "Escape" || wide.matches || e.defaultPrevented) return;
    e.preventDefault();
    closeLane();
  });
  // The lane's links to the polls only while there are polls to go to.
  const polls = $("#polls");
  const link = $("#lane-polls");
  const sync = () => { link.hidden = polls.hidden; };
  new MutationObserver(sync).observe(polls, { attributes: true, attributeFilter: ["hidden"] });
  sync();
}

// ------------------------------------------------------------------ sheets

const openers = new WeakMap(); // dialog -> the control that opened it

/** Open a sheet (a modal <dialog>) from `opener`, which gets the focus back. */
export function openSheet(dialog, opener = document.activeElement) {
  if (dialog.open) return;
  openers.set(dialog, opener instanceof HTMLElement ? opener : null);
  dialog.showModal();
}

/** A sheet's behaviour: its close button, a click on the backdrop, the focus back. */
export function bindSheet(dialog, closeButton, onClose = () => {}) {
  closeButton.addEventListener("click", () => dialog.close());
  // The backdrop is the dialog element itself (its content fills its box).
  dialog.addEventListener("click", (e) => { if (e.target === dialog) dialog.close(); });
  dialog.addEventListener("close", () => {
    onClose();
    const opener = openers.get(dialog);
    openers.delete(dialog);
    if (opener && opener.isConnected && !opener.closest("[hidden]") && !opener.disabled) {
      opener.focus({ preventScroll: true });
    }
  });
}

// ------------------------------------------------------------------ the video's fit

function watchVideoShape() {
  const video = $("#video");
  const box = $(".video-box");
  const shape = () => {
    const { videoWidth: w, videoHeight: h } = video;
    if (w && h) box.dataset.shape = w > h ? "landscape" : "portrait";
    else delete box.dataset.shape;
  };
  for (const type of ["loadedmetadata", "resize", "emptied"]) video.addEventListener(type, shape);
}

// ------------------------------------------------------------------ start

export function bindLayout() {
  bindLane();
  watchVideoShape();
  watchChatFade();
  anchorStageFoot();
  wide.addEventListener("change", placeChat);
  // The pre-show's panel replaces the stage: the chat waits in its column then.
  new MutationObserver(placeChat).observe($("#room"), { attributes: true, attributeFilter: ["data-phase"] });
  placeChat();
}
