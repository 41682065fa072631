// The room picker: shown at `/` when no room is named in the address, it lists
// live and upcoming shows (GET /api/rooms, newest first, paged) and opens one by id.

import { $, api, h, initials, tileColor, timeOfDay, toast } from "../util.js";
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

const dayTime = (ms) => new Date(ms).toLocaleString([], { weekday: "short", day: "numeric", month: "short",
                                                             hour: "2-digit", minute: "2-digit" });

const sameDay = (ms) => new Date(ms).toDateString() === new Date().toDateString();

/** How far away a start is, in words: "in 40 min", "in 3 h", "in 2 days". */
function fromNow(ms) {
  const diff = ms - Date.now();
  if (diff <= 60_000) return "any moment now";
  if (diff < 3_600_000) return `in ${Math.round(diff / 60_000)} min`;
  if (diff < 48 * 3_600_000) return `in ${Math.round(diff / 3_600_000)} h`;
  return `in ${Math.round(diff / 86_400_000)} days`;
}

// Shown already (a cursor never repeats a room, but a "More" after a reload of the
// list could): room ids.
const listedIds = new Set();

/** The show's picture: its first pinned product's image (the server's
 *  `thumbnail_url`), else a tile of the title's initials. Decorative: the link is
 *  named by its title. An image that fails to load gives way to the tile. */
function thumbnail(room) {
  const tile = h("span", { class: "room-thumb room-tile", text: initials(room.title),
                           attrs: { "aria-hidden": "true" } });
  tile.style.background = tileColor(room.room_id);
  const url = typeof room.thumbnail_url === "string" ? room.thumbnail_url : "";
  if (!/^(https?:\/\/|\/images\/)/.test(url)) return tile;
  const img = h("img", { class: "room-thumb", attrs: { src: url, alt: "", loading: "lazy",
                                                        decoding: "async", referrerpolicy: "no-referrer" } });
  img.addEventListener("error", () => img.replaceWith(tile), { once: true });
  return img;
}

function roomItem(room) {
  const upcoming = room.state === "scheduled";
  const at = upcoming ? room.starts_at : room.created_at;
  const iso = Number.isFinite(at) ? new Date(at).toISOString() : "";
  const when = upcoming
    ? h("span", { class: "room-when" }, "Starts ",
      h("time", { attrs: { datetime: iso }, text: Number.isFinite(at) ? dayTime(at) : "soon" }),
      Number.isFinite(at) ? ` · ${fromNow(at)}` : "")
    : h("span", { class: "room-when" }, "On air since ",
      h("time", { attrs: { datetime: iso }, text: sameDay(at) ? timeOfDay(at) : dayTime(at) }));
  return h("li", {},
    h("a", { class: "room-link", href: `/r/${encodeURIComponent(room.room_id)}`,
             data: { state: room.state, roomId: room.room_id } },
      thumbnail(room),
      h("span", { class: upcoming ? "room-dot upcoming" : "room-dot", attrs: { "aria-hidden": "true" } }),
      h("span", { class: "room-main" },
        // Clamped to two lines on screen (css/viewer.css); the whole title is the
        // link's name and its tooltip.
        h("span", { class: "room-name", text: room.title, title: room.title }),
        h("span", { class: "room-meta" },
          h("span", { class: upcoming ? "badge scheduled" : "badge live", text: upcoming ? "Upcoming" : "Live" }),
          when))));
}

/** One page of live and upcoming rooms (the server lists only those; a room that
 *  ended or was archived meanwhile is left out here too). */
async function loadRooms(cursor) {
  const more = $("#room-more");
  more.disabled = true;
  const query = cursor ? `?cursor=${encodeURIComponent(cursor)}` : "";
  const res = await api("GET", `/api/rooms${query}`);
  const list = $("#room-list");
  const rooms = res.ok ? res.data.rooms : [];
  for (const room of rooms) {
    if ((room.state !== "live" && room.state !== "scheduled") || listedIds.has(room.room_id)) continue;
    listedIds.add(room.room_id);
    list.append(roomItem(room));
  }
  S.roomsCursor = res.ok ? res.data.next_cursor : null;
  more.hidden = !S.roomsCursor;
  more.disabled = false;
  $("#room-list-empty").hidden = list.children.length > 0;
  if (!res.ok) toast(explain(res.error), "error");
}
