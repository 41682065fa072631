// The show's title and stream after the room was made: the form under the viewer
// link (PATCH /api/rooms/{room}, only the fields that changed), the title in the
// console's header, and `room_updated`, which every page of the room gets (this
// console and another one too). A value the host is typing is never overwritten
// under their fingers; once the show has ended the form is off (the server would
// refuse with show_ended).

import { $, setText } from "../util.js";
import { S, hostApi, report } from "./state.js";

// The fields the host changed since they were last filled or saved: each keeps
// what is typed in it, while the other follows the room.
const dirty = { title: false, stream: false };
const FIELDS = { title: ["#rm-title", "title"], stream: ["#rm-stream", "stream_url"] };

/** The header's title and the tab's. */
export function showRoomTitle(title) {
  setText($("#room-title"), title);
  document.title = `${title} · Host console · livesell`;
}

function fill(room) {
  if (!room) return;
  for (const [name, [selector, key]] of Object.entries(FIELDS)) {
    const input = $(selector);
    const value = room[key] || "";
    if (!dirty[name]) input.value = value;
    else if (input.value.trim() === value) dirty[name] = false; // what was typed is what the room has
  }
}

export function resetRoomEdit() {
  dirty.title = false;
  dirty.stream = false;
  setText($("#room-result"), "");
  $("#room-fields").disabled = false;
}

/** The room state's `room` (opening the console, every snapshot). */
export function renderRoomDetails(room) {
  showRoomTitle(room.title);
  fill(room);
}

/** `room_updated` (from any console), or the PATCH's answer. */
export function applyRoomUpdate(update) {
  if (!S.room) S.room = {};
  S.room.title = update.title;
  S.room.stream_url = update.stream_url;
  showRoomTitle(update.title);
  fill(S.room);
}

/** Off once the show has ended: nothing about it can change any more. */
export function setRoomEditable(editable) {
  $("#room-fields").disabled = !editable;
}

export function roomFieldChanged(e) {
  dirty[e.target.id === "rm-title" ? "title" : "stream"] = true;
}

export async function saveRoomDetails(e) {
  e.preventDefault();
  const out = $("#room-result");
  const room = S.room || {};
  const changes = {};
  const title = $("#rm-title").value.trim();
  const stream = $("#rm-stream").value.trim();
  if (title !== (room.title || "")) changes.title = title;
  if (stream !== (room.stream_url || "")) changes.stream_url = stream;
  if (!Object.keys(changes).length) {
    dirty.title = false;
    dirty.stream = false;
    report(out, { ok: true }, "Nothing changed");
    return;
  }
  const button = $("#room-save");
  button.disabled = true;
  button.setAttribute("aria-busy", "true");
  try {
    const res = await hostApi("PATCH", "", changes);
    if (!report(out, res, savedText(changes, res.data))) return;
    dirty.title = false;
    dirty.stream = false;
    applyRoomUpdate(res.data);
  } finally {
    button.disabled = false;
    button.removeAttribute("aria-busy");
  }
}

function savedText(changes, room) {
  const parts = [];
  if ("title" in changes) parts.push(`title “${room.title}”`);
  if ("stream_url" in changes) parts.push(room.stream_url ? "the new stream" : "no stream");
  return `Viewers now see ${parts.join(" and ")}`;
}
