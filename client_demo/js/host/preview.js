// The stream preview at the top of the live column: the room's stream_url playing
// muted (../video.js: a plain file, native HLS or hls.js), so the host sees what
// viewers see without a second device. It follows the room: the room state when
// the console opens, every snapshot, and `room_updated` (this console's Settings or
// another's), and says in words what is going on: no stream yet, starting,
// playing, stopped, or why it cannot be played. Switching rooms stops it.

import { $, setText } from "../util.js";
import { playStream } from "../video.js";

const LABELS = {
  idle: "No stream", loading: "Starting…", playing: "Playing (muted)", ended: "Stopped",
  error: "Cannot play", unsupported: "Cannot play",
};
const IDLE_TEXT = "No stream URL yet. Add one in Settings.";

let stopPlayback = null;
let current = "";

function show(state, message) {
  const frame = $("#preview-frame");
  frame.dataset.state = state;
  setText($("#preview-idle"), message);
  setText($("#preview-state"), LABELS[state] || state);
  $("#preview-video").hidden = state === "idle";
}

/** Play `url` (the room's stream_url; empty: none). The same stream already
 *  playing is left alone: a snapshot after a reconnect does not restart it. */
export function previewStream(url) {
  const next = (url || "").trim();
  if (next === current && (stopPlayback || !next)) return;
  stopPreview();
  current = next;
  if (!next) return;
  stopPlayback = playStream($("#preview-video"), next, { onState: show });
}

/** No room open (or another one opening): nothing plays, nothing is fetched. */
export function stopPreview() {
  if (stopPlayback) stopPlayback();
  stopPlayback = null;
  current = "";
  show("idle", IDLE_TEXT);
}
