// The room picker: shown at `/` when no room is named in the address, it lists
// live and upcoming shows (GET /api/rooms, newest first, paged) and opens one by id.

import { $, api, h, toast } from "../util.js";
import { setConn } from "./connection.js";
import { S } from "./state.js";
import { explain } from "./words.js";

export function roomFromAddress() {
  const m = location.pathname.match(/^\/r\/([^/]+)\/?$/);
  if (m) return decodeURIComponent(m[1]);
  return new URLSearchParams(location.search).get("room");
}

export async function showPicker() {
  $("#picker").hidden = false;
  setConn("idle");
  $("#conn").hidden = true;
  $("#room-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const id = $("#room-id-input").value.trim();
    if (id) location.href = `/r/${encodeURIComponent(id)}`;
  });
  $("#room-list").replaceChildren();
  $("#room-more").addEventListener("click", () => loadRooms(S.roomsCursor));
  await loadRooms(null);
}

const when = (ms) => new Date(ms).toLocaleString([], { dateStyle: "medium", timeStyle: "short" });

/** One page of live and upcoming rooms. */
async function loadRooms(cursor) {
  const more = $("#room-more");
  more.disabled = true;
  const query = cursor ? `?cursor=${encodeURIComponent(cursor)}` : "";
  const res = await api("GET", `/api/rooms${query}`);
  const list = $("#room-list");
  const rooms = res.ok ? res.data.rooms : [];
  for (const room of rooms) {
    const upcoming = room.state === "scheduled";
    list.append(h("li", {},
      h("a", { class: "room-link", href: `/r/${encodeURIComponent(room.room_id)}`, data: { state: room.state } },
        h("span", { class: upcoming ? "room-dot upcoming" : "room-dot", attrs: { "aria-hidden": "true" } }),
        h("span", { class: "room-name", text: room.title }),
        h("span", { class: upcoming ? "badge scheduled" : "badge live", text: upcoming ? "Upcoming" : "Live" }),
        h("span", { class: "muted small", text: upcoming ? `starts ${when(room.starts_at)}` : `since ${when(room.created_at)}` }))));
  }
  S.roomsCursor = res.ok ? res.data.next_cursor : null;
  more.hidden = !S.roomsCursor;
  more.disabled = false;
  $("#room-list-empty").hidden = list.children.length > 0;
  if (!res.ok) toast(explain(res.error), "error");
}
