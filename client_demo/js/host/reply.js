// The host's reply in the chat: a `chat` frame on the console's own WebSocket, which
// the server marks `"host": true` for every viewer (docs/protocol.md, "Chat and
// keyword lotteries" and the host console connection). Sent once with a request_id
// (Live.sendOnce): a chat line is not worth repeating after a reconnect, and a
// refusal (too long, too fast, the show ended) names it, so its text goes back in
// the box with the server's words. Success has no answer of its own: the message
// comes back as the room's `chat` event and shows in the log with the Host badge.

import { $, setText } from "../util.js";
import { live, report } from "./state.js";

export function resetReply() {
  setText($("#reply-result"), "");
}

export function sendReply(e) {
  e.preventDefault();
  const input = $("#reply-text");
  const out = $("#reply-result");
  const text = input.value.trim();
  if (!text) { input.focus(); return; }
  if (!live || !live.sendOnce({ type: "chat", text })) {
    report(out, { ok: false, error: { message: "Not connected: your reply was not sent, it is still in the box", code: "offline" } }, "");
    return;
  }
  input.value = "";
  setText(out, "");
  out.className = "result";
}

/** An answer to a frame this console sent once (only chat replies are): a refusal. */
export function onReply(frame, request) {
  if (!request || request.type !== "chat" || frame.type !== "error") return;
  const input = $("#reply-text");
  // Back in the box, unless the host is already typing the next one.
  if (!input.value.trim()) input.value = request.text;
  report($("#reply-result"), { ok: false, error: { message: frame.message, code: frame.code } }, "");
}
