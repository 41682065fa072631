// The stage above the shop: the video (or a poster saying why there is none) with
// minimal controls of its own (play/pause, mute, full screen: a live stream has
// nothing to seek), the viewer count, likes with their floating hearts, the banners
// over the video (the host's announcement, a giveaway's winners: each goes a
// bounded time after the server's timestamp on it) and a countdown on the video for
// the next flash sale starting within a minute.

import { $, clock, compact, h, setText } from "../util.js";
import { playStream } from "../video.js";
import { addSystemLine } from "./chat.js";
import { S, limit, live, now } from "./state.js";

// ------------------------------------------------------------------ video

let videoUrl = null;
let stopVideo = null; // ends the current stream's playback (client_demo/js/video.js)

export function setupVideo(url) {
  if (url === videoUrl) return;
  videoUrl = url;
  const video = $("#video");
  const poster = $("#poster");
  const text = $("#poster-text");
  const box = $(".video-box");
  const controls = $("#video-controls");
  const showPoster = (msg) => {
    video.hidden = true;
    box.classList.remove("has-video");
    controls.hidden = true;
    poster.hidden = false;
    setText(text, msg);
  };
  if (stopVideo) {
    stopVideo(); // the old stream stops loading, not only showing
    stopVideo = null;
  }
  if (!url) {
    showPoster("The host has not started a video stream. Products, sales and chat are live below.");
    return;
  }
  video.hidden = false;
  box.classList.add("has-video");
  controls.hidden = false;
  poster.hidden = false;
  setText(text, "Starting the stream…");
  renderVideoControls();
  // video.js picks the player (the file itself, the browser's HLS or hls.js) and
  // keeps native controls off: a live stream has nothing to seek, ours only.
  stopVideo = playStream(video, url, {
    onState(state, message) {
      if (state === "playing") {
        poster.hidden = true;
      } else if (state === "loading") {
        // Starting, reconnecting, or autoplay refused (the play button, above the
        // poster, starts it): the poster says which.
        poster.hidden = false;
        setText(text, message);
      } else if (state === "ended") {
        // The stream is over: the poster says so until it plays again.
        poster.hidden = false;
        setText(text, "The stream has stopped. Shopping and chat still work.");
      } else if (state === "unsupported") {
        showPoster(`${message} Open the show in Safari or on a phone — shopping and chat work here.`);
      } else {
        showPoster("The video stream could not be played right now. Shopping and chat still work.");
      }
    },
  });
}

// The controls: play/pause, mute, full screen (of the whole stage, so the banners
// and the like button come along; an iPhone's own player where only it can).

const fullscreenElement = () => document.fullscreenElement || document.webkitFullscreenElement || null;

function canFullscreen() {
  const video = $("#video");
  return !!(document.fullscreenEnabled || document.webkitFullscreenEnabled || video.webkitEnterFullscreen);
}

function toggleFullscreen() {
  const box = $(".video-box");
  const video = $("#video");
  if (fullscreenElement()) {
    const exit = document.exitFullscreen || document.webkitExitFullscreen;
    if (exit) Promise.resolve(exit.call(document)).catch(() => {});
    return;
  }
  if (box.requestFullscreen) box.requestFullscreen().catch(() => {});
  else if (box.webkitRequestFullscreen) box.webkitRequestFullscreen();
  else if (video.webkitEnterFullscreen) video.webkitEnterFullscreen();
}

function togglePlay() {
  const video = $("#video");
  if (!video.paused) { video.pause(); return; }
  const p = video.play();
  if (p && p.catch) p.catch(() => {});
}

/** One control button: its label, and which of its icons shows. */
function showControl(btn, label, icon) {
  btn.setAttribute("aria-label", label);
  btn.title = label;
  for (const svg of btn.querySelectorAll("svg[data-icon]")) svg.hidden = svg.dataset.icon !== icon;
}

export function renderVideoControls() {
  const video = $("#video");
  showControl($("#vc-play"), video.paused ? "Play the stream" : "Pause the stream", video.paused ? "play" : "pause");
  showControl($("#vc-mute"), video.muted ? "Unmute" : "Mute", video.muted ? "muted" : "sound");
  const full = !!fullscreenElement();
  showControl($("#vc-full"), full ? "Exit full screen" : "Full screen", full ? "exit" : "enter");
  $("#vc-full").hidden = !canFullscreen();
}

export function bindVideoControls() {
  const video = $("#video");
  $("#vc-play").addEventListener("click", togglePlay);
  $("#vc-mute").addEventListener("click", () => { video.muted = !video.muted; renderVideoControls(); });
  $("#vc-full").addEventListener("click", toggleFullscreen);
  for (const type of ["play", "pause", "playing", "volumechange"]) video.addEventListener(type, renderVideoControls);
  document.addEventListener("fullscreenchange", renderVideoControls);
  document.addEventListener("webkitfullscreenchange", renderVideoControls);
  renderVideoControls();
}

// ------------------------------------------------------------------ viewers, likes

export function renderViewers() {
  setText($("#viewers-now"), compact(S.viewers.now));
}

let likesUnsent = 0;
let likesSent = 0;
let likeTimer = null;

export function onLikes(ev) {
  S.likes = ev.total;
  likesSent = 0;
  renderLikes();
}

export function renderLikes() {
  setText($("#likes-total"), compact(S.likes + likesUnsent + likesSent));
}

export function like() {
  likesUnsent += 1;
  renderLikes();
  const btn = $("#like-btn");
  btn.classList.remove("pop");
  void btn.offsetWidth; // restart the animation
  btn.classList.add("pop");
  setTimeout(() => btn.classList.remove("pop"), 140);
  const heart = h("span", { class: "heart" });
  heart.style.setProperty("--dx", `${Math.round((Math.random() - 0.5) * 50)}px`);
  heart.innerHTML = '<svg viewBox="0 0 24 24" width="22" height="22"><path fill="currentColor" d="M12 20.6s-7.4-4.5-9.4-9C1.2 8.3 3.1 4.6 6.8 4.6c2.1 0 3.5 1.1 5.2 3 1.7-1.9 3.1-3 5.2-3 3.7 0 5.6 3.7 4.2 7-2 4.5-9.4 9-9.4 9z"/></svg>';
  $("#hearts").append(heart);
  setTimeout(() => heart.remove(), 1500);
  if (!likeTimer) likeTimer = setTimeout(flushLikes, 300);
}

function flushLikes() {
  likeTimer = null;
  if (!likesUnsent || !live) return;
  // A frame counts at most the server's max_likes_per_frame; before the first
  // snapshot says how many, the taps wait (they are still shown).
  const most = limit("max_likes_per_frame");
  const count = most ? Math.min(likesUnsent, most) : 0;
  if (count && live.send({ type: "like", count })) {
    likesUnsent -= count;
    likesSent += count;
  }
  if (likesUnsent) likeTimer = setTimeout(flushLikes, 300);
}

// ------------------------------------------------------------------ banners

// A banner over the video shows until a server time, fading over its last moment:
// element id -> {el, until}. The clock (viewer/clock.js) wakes at both moments.
const banners = new Map();
const FADE_MS = 600;

export function showStageBanner(el, until) {
  banners.set(el.id, { el, until });
  el.classList.remove("fading");
  el.hidden = false;
  renderStageBanners();
}

export function hideStageBanner(el) {
  banners.delete(el.id);
  el.classList.remove("fading");
  el.hidden = true;
}

/** Each displayed second and at each banner's moments: fade, then go. A banner that
 *  went stays gone, even should a new estimate of the server clock move it back. */
export function renderStageBanners() {
  const at = now();
  for (const { el, until } of [...banners.values()]) {
    if (at >= until) hideStageBanner(el);
    else el.classList.toggle("fading", at >= until - FADE_MS);
  }
}

export function bannerDeadlines() {
  const out = [];
  for (const { until } of banners.values()) out.push(until - FADE_MS, until);
  return out;
}

/** How long an announcement stays over the video: long enough to read, never long
 *  enough to go stale ("draws in 15 seconds!"): 10 s and 60 ms a character, 30 s at most. */
export const announceMs = (text) => Math.min(30_000, 10_000 + 60 * String(text || "").length);

/** The host's `announcement`: in the chat as a line, and over the video until its
 *  time is up, counted from the server's `ts` (a late replay, after a reconnect,
 *  arrives with its time already up and is not shown there). */
export function onAnnouncement(ev) {
  addSystemLine("Host", ev.text);
  const at = now();
  const from = Number.isFinite(ev.ts) ? Math.min(ev.ts, at) : at;
  const until = from + announceMs(ev.text);
  if (until <= at) return;
  setText($("#announce-text"), ev.text);
  showStageBanner($("#announce"), until);
}

export function dismissAnnouncement() { hideStageBanner($("#announce")); }

// ------------------------------------------------------------------ countdown

/** The next pinned flash sale the server calls scheduled, if it starts within a minute. */
export function renderStageCountdown() {
  const at = now();
  let next = null;
  for (const id of S.pins) {
    const p = S.products.get(id);
    if (p && p.sale && p.sale.state === "scheduled" && p.sale.starts_at - at <= 60000 &&
        (!next || p.sale.starts_at < next.sale.starts_at)) next = p;
  }
  const box = $("#stage-countdown");
  box.hidden = !next;
  if (!next) return;
  setText($("#sc-title"), next.title);
  setText($("#sc-time"), clock(next.sale.starts_at - at));
}
