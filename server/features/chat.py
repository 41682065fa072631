"""Chat and what the host does about it: messages (muted viewers refused,
slow mode and the room's chat rate by chat_gate.lua), likes (summed here and
published coalesced), announcements, moderation (delete a message, mute a
viewer), the room policy, and the recording switch."""

from __future__ import annotations

from typing import Any

from server.core import domain, events, policy
from server.core.domain import now_ms
from server.core.errors import LivesellError, Unavailable, refusal
from server.core.fans import level_of
from server.core.identity import Viewer
from server.core.policy import RoomPolicy
from server.core.schema import Bool, Shape, opt
from server.features.context import Answer, Context, error_answer, rebuilding
from server.features.registry import Call, ChatListener, ChatPost, Registry, Route
from server.features.room_locks import RoomLocks
from server.state.chat_data import ChatData
from server.state.faults import REDIS_FAULTS

RECORDING_SHAPE = Shape("recording", {"enabled": opt(Bool(), True)})


class ChatRoom:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.listeners: list[ChatListener] = []  # set by register: features reading each message
        # Rooms with a policy patch running or waiting: the lock and how many use it.
        self._policies = RoomLocks()  # one policy patch of a room at a time

    @property
    def data(self) -> ChatData:
        return self.ctx.data.chat

    def register(self, registry: Registry) -> None:
        registry.route(Route("POST", "/announcements", self._announce, status=201,
                             body=domain.ANNOUNCEMENT_SHAPE,
                             record_as="announce"))
        registry.route(Route("POST", "/moderation/delete", self._delete,
                             body=domain.DELETE_SHAPE))
        registry.route(Route("POST", "/moderation/mute", self._mute, body=domain.MUTE_SHAPE))
        registry.route(Route("GET", "/moderation/mutes", self._mutes, answer="Mutes"))
        registry.route(Route("PATCH", "/policy", self._policy, body=policy.PATCH_SHAPE,
                             answer="Policy"))
        registry.route(Route("POST", "/recording", self._recording, body=RECORDING_SHAPE))
        registry.on_restore(self.restore_policy)
        registry.on_upkeep(self.refresh_recording)
        self.listeners = registry.chat_listeners

    async def _announce(self, call: Call) -> Any:
        return await self.announce(call.room_id, call.body)

    async def _delete(self, call: Call) -> Any:
        return await self.delete_message(call.room_id, call.body)

    async def _mute(self, call: Call) -> Any:
        return await self.mute(call.room_id, call.body)

    async def _mutes(self, call: Call) -> Any:
        """The viewers muted now (host): who, until when, and the name they last
        chatted under, so a console lists them again after a reload."""
        return await self.active_mutes(call.room_id)

    async def _policy(self, call: Call) -> Any:
        return await self.set_policy(call.room_id, call.body)

    async def _recording(self, call: Call) -> Any:
        """Start or stop recording the room's trace (docs/operations.md)."""
        enabled = bool(RECORDING_SHAPE.read(call.body)["enabled"])
        await self.set_recording(call.room_id, enabled)
        return {"room_id": call.room_id, "recording": enabled}

    async def chat(self, viewer: Viewer, room_id: str, text: str, from_host: bool = False,
                   request_id: str | None = None, client: str = "") -> list[Answer]:
        """Publish the message, then hand it to the listeners (keyword lotteries,
        comment-to-buy); what they answer goes to the sender only."""
        points = await self.check_sender(room_id, viewer, from_host)
        message_id = domain.new_id("m")
        event = events.chat(message_id, viewer.viewer_id, viewer.nickname, text, from_host,
                            level_of(points, self.ctx.settings.fans.thresholds)
                            if self.ctx.settings.fans.enabled and not from_host else 0)
        # Kept in the room's recent chat too, in the same step: the snapshot's history.
        if await self.ctx.publish(room_id, event,
                                  keep=self.ctx.settings.chat.history_size) < 0:
            raise rebuilding()
        post = ChatPost(viewer, room_id, text, message_id, request_id, client, from_host)
        answers = []
        for listener in self.listeners:
            # The message is out: one listener's failure (Redis lost mid-claim, say)
            # must not skip the others; it answers the sender in its place.
            try:
                answer = await listener(post)
            except LivesellError as exc:
                answer = error_answer(exc)
            except REDIS_FAULTS as exc:
                self.ctx.health.redis_failed(exc)
                answer = error_answer(Unavailable("temporarily unavailable, try again"))
            if answer is not None:
                answers.append(answer)
        return answers

    async def check_sender(self, room_id: str, viewer: Viewer, from_host: bool = False) -> int:
        """What a message to the room must pass, counted as one: the viewer is not
        muted, and (not for the host) slow mode and the room's chat rate. A question
        (features/social.py) passes the same. The sender's fan points, read in the
        same round trip (their level in chat)."""
        channel = await self.ctx.channel_of(room_id)
        muted_until, points = await self.data.count_message(room_id, viewer.viewer_id,
                                                            now_ms(), channel)
        if muted_until is not None and muted_until > now_ms():
            raise refusal("muted", until=muted_until)
        if not from_host:
            await self.admit(room_id, viewer)
        return points

    async def admit(self, room_id: str, viewer: Viewer) -> None:
        """Slow mode and the room-wide chat rate (chat_gate.lua); raises `slow_mode`
        or `chat_busy` with details.retry_after_s."""
        gate = await self.ctx.scripts.chat_gate(room_id, viewer.viewer_id,
                                                self.ctx.settings.chat.room_messages_per_s)
        if gate.status == "slow_mode":
            raise refusal("slow_mode", f"Slow mode: one message every {gate.slow_mode_s} s.",
                          retry_after_s=max(1, -(-gate.wait_ms // 1000)),
                          slow_mode_s=gate.slow_mode_s)
        if gate.status == "busy":
            raise refusal("chat_busy", retry_after_s=max(1, -(-gate.wait_ms // 1000)))

    def like(self, room_id: str, count: int) -> None:
        self.ctx.likes[room_id] = self.ctx.likes.get(room_id, 0) + count

    async def announce(self, room_id: str, body: dict[str, Any]) -> dict[str, Any]:
        event = events.announcement(domain.parse_announcement(body))
        seq = await self.ctx.publish(room_id, event)
        return {"seq": seq, **event}

    async def delete_message(self, room_id: str, body: dict[str, Any]) -> dict[str, Any]:
        message_id = domain.DELETE_SHAPE.read(body)["message_id"]
        await self.data.forget_message(room_id, message_id)
        event = events.chat_deleted(message_id)
        seq = await self.ctx.publish(room_id, event)
        return {"seq": seq, **event}

    async def mute(self, room_id: str, body: dict[str, Any]) -> dict[str, Any]:
        viewer_id, duration_s = domain.parse_mute(body)
        until = now_ms() + duration_s * 1000
        await self.data.mute(room_id, viewer_id, until)
        event = events.viewer_muted(viewer_id, until)
        seq = await self.ctx.publish(room_id, event)
        return {"seq": seq, **event}

    async def active_mutes(self, room_id: str) -> dict[str, Any]:
        """The mutes still running, the soonest to end first."""
        now = now_ms()
        muted, names = await self.data.mutes(room_id)
        active = sorted((until, viewer_id) for viewer_id, until in muted.items()
                        if until > now)
        return {"mutes": [{"viewer_id": viewer_id, "until": until,
                           "nickname": names.get(viewer_id)} for until, viewer_id in active],
                "server_time": now}

    # ------------------------------------------------------------------ room policy

    async def room_policy(self, room_id: str) -> RoomPolicy:
        return policy.from_redis(await self.data.policy(room_id))

    async def set_policy(self, room_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """The host changes the room policy: durable in the store first, then Redis,
        then every viewer hears it (`room_policy`). A patch names only the fields it
        changes, so the read, merge, writes and event of one room's patches run one at
        a time: two quick patches of different fields (a console's checkbox, then its
        slow-mode list) each keep the other's field, and viewers hear them in order.
        (Serialised per process: patches of one room through two --workers processes
        within the same moments could still merge from the same read.)"""
        async with self._policies.hold(room_id):
            updated = policy.apply_patch(await self.room_policy(room_id), body)
            await self.ctx.store.set_room_policy(room_id, updated.public())
            await self.data.set_policy(room_id, updated.redis_hash())
            view = updated.public()
            await self.ctx.publish(room_id, events.room_policy(view))
            return view

    async def restore_policy(self, room_id: str) -> None:
        """Put the stored policy back into Redis (a rebuild after Redis lost its data)."""
        stored = policy.from_stored(await self.ctx.store.room_policy(room_id))
        await self.data.set_policy(room_id, stored.redis_hash(), replace=True)

    # ------------------------------------------------------------------ recording

    async def set_recording(self, room_id: str, enabled: bool) -> None:
        await self.data.set_recording(room_id, enabled)
        recorder = self.ctx.recorder
        if recorder is not None:
            (recorder.rooms.add if enabled else recorder.rooms.discard)(room_id)

    async def refresh_recording(self) -> None:
        """Learn recording switched on or off through other processes."""
        if self.ctx.recorder is not None:
            self.ctx.recorder.rooms = await self.data.recording_rooms()
