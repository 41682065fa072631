// The stage above the shop: the video (or a poster saying why there is none),
// the viewer count, likes with their floating hearts, the host's announcement and
// a countdown on the video for the next flash sale starting within a minute.

import { $, clock, compact, h, setText } from "../util.js";
import { addSystemLine } from "./chat.js";
import { S, limit, live, now } from "./state.js";

// ------------------------------------------------------------------ video

let videoUrl = null;

export function setupVideo(url) {
  if (url === videoUrl) return;
  videoUrl = url;
  const video = $("#video");
  const poster = $("#poster");
  const text = $("#poster-text");
  const box = $(".video-box");
  const showPoster = (msg) => {
    video.hidden = true;
    box.classList.remove("has-video");
    poster.hidden = false;
    setText(text, msg);
  };
  if (!url) {
    video.removeAttribute("src");
    showPoster("The host has not started a video stream. Products, sales and chat are live below.");
    return;
  }
  const hls = /\.m3u8($|[?#])/i.test(url);
  if (hls && !video.canPlayType("application/vnd.apple.mpegurl")) {
    showPoster("This stream uses HLS, which this browser cannot play on its own. Open the show in Safari or on a phone — shopping and chat work here.");
    return;
  }
  video.onerror = () => showPoster("The video stream could not be played right now. Shopping and chat still work.");
  video.onplaying = () => { poster.hidden = true; };
  video.controls = true;
  video.src = url;
  video.hidden = false;
  box.classList.add("has-video");
  poster.hidden = false;
  setText(text, "Starting the stream…");
  const p = video.play();
  if (p && p.catch) {
    p.catch((err) => {
      // Autoplay refused: uncover the player so its controls can start it.
      if (err && err.name === "NotAllowedError") poster.hidden = true;
    });
  }
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

// ------------------------------------------------------------------ announcement

export function onAnnouncement(ev) {
  setText($("#announce-text"), ev.text);
  $("#announce").hidden = false;
  addSystemLine("Host", ev.text);
}

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
