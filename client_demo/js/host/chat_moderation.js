// Chat moderation in the host console: the room's chat as it arrives, delete a
// message for everyone, mute a viewer for a while, announce to every viewer, and
// system lines for mutes, announcements and the end of the show.

import { $, h, timeOfDay } from "../util.js";
import { S, hostApi, report } from "./state.js";

const MAX_LINES = 300; // messages kept on screen

export function resetModeration() {
  $("#mod-chat").replaceChildren(h("li", { class: "chat-empty", id: "mod-empty", text: "Chat messages appear here as viewers write them." }));
}

function appendChat(li) {
  const list = $("#mod-chat");
  const stick = list.scrollHeight - list.scrollTop - list.clientHeight < 60;
  const empty = document.getElementById("mod-empty");
  if (empty) empty.remove();
  list.append(li);
  while (list.children.length > MAX_LINES) list.firstElementChild.remove();
  if (stick) list.scrollTop = list.scrollHeight;
}

export function addChat(ev) {
  S.nicknames.set(ev.viewer_id, ev.nickname);
  const del = h("button", { type: "button", class: "btn danger small", text: "Delete",
                            attrs: { "aria-label": `Delete message from ${ev.nickname}: ${ev.text.slice(0, 40)}` },
                            on: { click: () => deleteMessage(ev.message_id) } });
  const mute = h("button", { type: "button", class: "btn small", text: "Mute",
                             attrs: { "aria-label": `Mute ${ev.nickname}` },
                             on: { click: () => muteViewer(ev.viewer_id, ev.nickname) } });
  const who = ev.host === true ? h("span", { class: "who host-badge", text: "Host" })
                               : h("span", { class: "who", text: ev.nickname });
  appendChat(h("li", { class: "mod-msg", data: { messageId: ev.message_id, viewerId: ev.viewer_id } },
    h("div", {}, who, h("span", { class: "txt", text: ev.text }), h("span", { class: "vid", text: ev.viewer_id })),
    h("div", { class: "acts" }, del, mute)));
}

export function addSystem(text) {
  appendChat(h("li", { class: "mod-msg system" }, h("div", {}, h("span", { class: "txt", text })), h("div")));
}

export function onMuted(ev) {
  addSystem(`${S.nicknames.get(ev.viewer_id) || ev.viewer_id} is muted until ${timeOfDay(ev.until)}.`);
}

export function markDeleted(id) {
  const li = $("#mod-chat").querySelector(`[data-message-id="${CSS.escape(id)}"]`);
  if (!li) return;
  li.classList.add("deleted");
  const del = li.querySelector(".acts .danger");
  if (del) del.remove();
  const txt = li.querySelector(".txt");
  if (txt) txt.setAttribute("aria-label", "deleted message");
}

async function deleteMessage(id) {
  const res = await hostApi("POST", "/moderation/delete", { message_id: id });
  if (res.ok) markDeleted(id);
  report($("#mod-result"), res, "Message deleted for everyone");
}

async function muteViewer(viewerId, nickname) {
  const duration = Number($("#mute-duration").value);
  const res = await hostApi("POST", "/moderation/mute", { viewer_id: viewerId, duration_s: duration });
  report($("#mod-result"), res, res.ok ? `Muted ${nickname} until ${timeOfDay(res.data.until)}` : "");
}

export async function announce(e) {
  e.preventDefault();
  const input = $("#announce-text");
  const res = await hostApi("POST", "/announcements", { text: input.value.trim() });
  if (report($("#announce-result"), res, "Announced to every viewer")) input.value = "";
}
