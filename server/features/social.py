"""The room as a late joiner finds it, and the show's interaction segments: the
host's pinned message, polls, and questions (Q&A). (The recent chat itself is
kept by lua/publish.lua as chat.py publishes each message; the snapshot reads
it.)

A poll: the host opens one (2-6 options, a close time); each viewer votes once
(vote.lua: the first vote decides, the same vote again is answered again), the
vote is in the store before "voted"; the counts go out coalesced like stock
(`poll_votes`); the clock (due job `poll_close`) or the host closes it. The
pinned message is the host's note or a viewer's message from the recent chat,
kept in the store so a rebuild of Redis keeps it. A question is asked under the
chat's limits (mute, slow mode, the room's rate; ask.lua caps a viewer's
unanswered ones), upvoted once per viewer (upvote.lua), marked answered by the
host (answer_question.lua); each is in the store before its answer."""

from __future__ import annotations

import logging
from typing import Any

import orjson

from server.core import events, polls
from server.core.domain import new_id, now_ms
from server.core.errors import Conflict, LivesellError, Unavailable, refusal
from server.core.polls import Poll
from server.core.protocol import Ask, Upvote, Vote
from server.core.schema import paged
from server.core.views import poll_view
from server.features.chat import ChatRoom
from server.features.context import Answer, Context, error_answer, rebuilding
from server.features.registry import Call, Registry, Route, ViewerCall
from server.state.social_data import CLOSE, SocialData
from server.state.store import StoreError

log = logging.getLogger("livesell.social")


QUESTIONS_QUERY = paged(20, 200)


class Social:
    def __init__(self, ctx: Context, chat: ChatRoom) -> None:
        self.ctx = ctx
        self.chat = chat
        ctx.count_readers["poll"] = self._counts
        ctx.count_readers["question"] = self._question_counts
        ctx.show_end_listeners.append(self.close_polls)

    @property
    def data(self) -> SocialData:
        return self.ctx.data.social

    def register(self, registry: Registry) -> None:
        registry.route(Route("PUT", "/pinned-message", self._pin, body=polls.PIN_SHAPE))
        registry.route(Route("DELETE", "/pinned-message", self._unpin))
        registry.route(Route("POST", "/polls", self._open, status=201,
                             body=polls.POLL_SHAPE))
        registry.route(Route("GET", "/polls/{poll_id}", self._get, access="public",
                             answer="Poll"))
        registry.route(Route("POST", "/polls/{poll_id}/close", self._close))
        registry.message(Vote, self._vote, explain_end=True)
        registry.route(Route("GET", "/questions", self._questions, access="public",
                             query=QUESTIONS_QUERY))
        registry.route(Route("POST", "/questions/{question_id}/answered", self._answered))
        registry.message(Ask, self._ask, explain_end=True)
        registry.message(Upvote, self._upvote, explain_end=True)
        registry.job(CLOSE, self._closes)
        registry.on_restore(self.restore)

    # ------------------------------------------------------------------ pinned message

    async def _pin(self, call: Call) -> Any:
        text, message_id = polls.parse_pin_message(call.body)
        nickname = "Host"
        if message_id is not None:
            found = next((m for m in await self.ctx.data.chat.history(call.room_id)
                          if m.get("message_id") == message_id), None)
            if found is None:
                raise refusal("message_not_found")
            text, nickname = str(found["text"]), str(found["nickname"])
        pinned = {"text": text, "nickname": nickname, "message_id": message_id,
                  "pinned_at": now_ms()}
        await self.set_pinned(call.room_id, pinned)
        return pinned

    async def _unpin(self, call: Call) -> Any:
        await self.set_pinned(call.room_id, None)
        return {"pinned_message": None}

    async def set_pinned(self, room_id: str, pinned: dict[str, Any] | None) -> None:
        await self.ctx.store.set_pinned_message(room_id, pinned)
        await self.data.set_pinned(room_id, pinned)
        await self.ctx.publish(room_id, events.message_pinned(pinned))

    # ------------------------------------------------------------------ polls

    async def _open(self, call: Call) -> Any:
        poll = polls.parse_poll(call.body, new_id("p"), now_ms())
        await self.ctx.store.add_poll(call.room_id, poll.public())
        await self.data.load_poll(call.room_id, poll, {}, None)
        self.ctx.note_due(call.room_id, poll.closes_at)
        self.ctx.timers_changed.set()
        view = await self.poll(call.room_id, poll.poll_id)
        await self.ctx.publish(call.room_id, events.poll_open(view))
        return view

    async def _get(self, call: Call) -> Any:
        return await self.poll(call.room_id, call.params["poll_id"])

    async def poll(self, room_id: str, poll_id: str) -> dict[str, Any]:
        h = await self.data.poll(room_id, poll_id)
        if not h:
            raise refusal("poll_not_found")
        return poll_view(h)

    async def _close(self, call: Call) -> Any:
        view = await self.poll(call.room_id, call.params["poll_id"])
        if not await self.close(call.room_id, view["poll_id"]):
            raise Conflict("the poll is already closed", code="poll_closed")
        return await self.poll(call.room_id, view["poll_id"])

    async def close(self, room_id: str, poll_id: str) -> bool:
        """Close the poll (the one caller that does publishes its final counts)."""
        at = now_ms()
        if not await self.ctx.scripts.close_poll(room_id, poll_id, at):
            return False
        try:
            await self.ctx.store.close_poll(poll_id, at)
        except StoreError:
            # Closed in Redis: a rebuild before the store answers reopens it, and its
            # due job (or the host) closes it again.
            log.warning("room %s: poll %s closed but not recorded yet", room_id, poll_id)
        view = await self.poll(room_id, poll_id)
        await self.ctx.publish(room_id, events.poll_closed(view))
        return True

    async def close_polls(self, room_id: str) -> None:
        """The show ended: every open poll closes."""
        for h in await self.data.polls(room_id):
            if h.get("state") == "open":
                await self.close(room_id, orjson.loads(h["data"])["poll_id"])

    async def _closes(self, room_id: str, poll_id: str) -> None:
        h = await self.data.poll(room_id, poll_id)
        if h and h.get("state") == "open":
            await self.close(room_id, poll_id)

    async def _vote(self, call: ViewerCall, msg: Vote) -> Answer:
        voted = await self.ctx.scripts.vote(call.room_id, poll_id=msg.poll_id,
                                            viewer=call.viewer.viewer_id, option=msg.option,
                                            verified=call.viewer.verified)
        if voted.status == "rebuilding":
            return error_answer(rebuilding())
        if voted.status == "refused":
            if voted.code == "bad_option":
                return error_answer(refusal("bad_request", "option: not one of the poll's",
                                            field="option"))
            if voted.code == "already_voted":
                return error_answer(refusal("already_voted", option=voted.option))
            return error_answer(refusal(voted.code))
        if voted.new:
            # Durable before "voted", like a lottery entry.
            try:
                await self.ctx.store.add_poll_vote(msg.poll_id, call.viewer.viewer_id,
                                                   voted.option, now_ms())
            except StoreError:
                await self.data.undo_vote(call.room_id, msg.poll_id, call.viewer.viewer_id,
                                          voted.option)
                return error_answer(Unavailable("your vote could not be recorded; try again",
                                                code="store_unavailable"))
            self.ctx.dirty_counts.add((call.room_id, "poll", msg.poll_id))
        return Answer("voted", {"poll_id": msg.poll_id, "option": voted.option})

    async def _counts(self, items: list[tuple[str, str]]) -> list[tuple[str, dict[str, Any]]]:
        """The coalesced `poll_votes` events of (room, poll) pairs, with their rooms."""
        out = []
        for room_id, poll_id in items:
            h = await self.data.poll(room_id, poll_id)
            if h:
                out.append((room_id, events.poll_votes(poll_view(h))))
        return out

    # ------------------------------------------------------------------ questions

    async def _ask(self, call: ViewerCall, msg: Ask) -> Answer:
        viewer = call.viewer
        # A question is a chat message for the limits: muted, slow mode, the room's rate.
        try:
            await self.chat.check_sender(call.room_id, viewer)
        except LivesellError as exc:
            return error_answer(exc)
        qid = new_id("q")
        q: dict[str, Any] = {"question_id": qid, "viewer_id": viewer.viewer_id,
             "nickname": viewer.nickname, "text": msg.text, "votes": 0,
             "asked_at": now_ms(), "answered_at": None}
        raw = orjson.dumps(q).decode()
        asked = await self.ctx.scripts.ask(
            call.room_id, question_id=qid, question=raw,
            viewer=viewer.viewer_id, request_id=msg.request_id,
            max_open=self.ctx.settings.chat.max_open_questions,
            answer_ttl_s=self.ctx.settings.sale.request_id_ttl_s, verified=viewer.verified,
            max_questions=self.ctx.settings.chat.max_questions_per_room)
        if asked.status == "rebuilding":
            return error_answer(rebuilding())
        if asked.status == "refused":
            if asked.answer == "too_many_questions":
                return error_answer(refusal(asked.answer,
                                            limit=self.ctx.settings.chat.max_open_questions))
            return error_answer(refusal(asked.answer))
        if asked.status == "ok":
            try:
                await self.ctx.store.add_question(call.room_id, q)
            except StoreError:
                await self.data.undo_question(call.room_id, qid,
                                              viewer.viewer_id, msg.request_id)
                return error_answer(Unavailable("your question could not be recorded; try "
                                                "again", code="store_unavailable"))
            await self.ctx.publish(call.room_id, events.question(q))
        return Answer("asked", {"question": orjson.loads(asked.answer)})

    async def _upvote(self, call: ViewerCall, msg: Upvote) -> Answer:
        viewer = call.viewer
        up = await self.ctx.scripts.upvote(call.room_id, question_id=msg.question_id,
                                           viewer=viewer.viewer_id, verified=viewer.verified)
        if up.status == "rebuilding":
            return error_answer(rebuilding())
        if up.status == "refused":
            return error_answer(refusal(up.code))
        if up.new:
            try:
                await self.ctx.store.add_question_vote(msg.question_id, viewer.viewer_id)
            except StoreError:
                await self.data.undo_upvote(call.room_id, msg.question_id, viewer.viewer_id)
                return error_answer(Unavailable("your upvote could not be recorded; try "
                                                "again", code="store_unavailable"))
            self.ctx.dirty_counts.add((call.room_id, "question", msg.question_id))
        return Answer("upvoted", {"question_id": msg.question_id, "votes": up.votes})

    async def _questions(self, call: Call) -> Any:
        limit = QUESTIONS_QUERY.read(call.query)["limit"]
        unanswered, answered = await self.data.questions(call.room_id, limit)
        return {"open": unanswered, "answered": answered}

    async def _answered(self, call: Call) -> Any:
        qid = call.params["question_id"]
        at = now_ms()
        done = await self.ctx.scripts.answer_question(call.room_id, qid, at)
        if done.status == "refused":
            raise refusal(done.answer)
        q = orjson.loads(done.answer)
        await self.ctx.store.answer_question(qid, at)
        await self.ctx.publish(call.room_id, events.question_answered(q))
        return q

    async def _question_counts(self, items: list[tuple[str, str]]
                               ) -> list[tuple[str, dict[str, Any]]]:
        out = []
        for room_id, qid in items:
            votes = await self.data.question_votes(room_id, qid)
            if votes is not None:
                out.append((room_id, events.question_votes(qid, votes)))
        return out

    # ------------------------------------------------------------------ rebuild

    async def restore(self, room_id: str) -> None:
        """The room's polls with their votes, and its pinned message, from the store."""
        for data, closed_at, votes in await self.ctx.store.polls(room_id):
            await self.data.load_poll(room_id, Poll.from_public(data), votes, closed_at)
            if closed_at is None:
                self.ctx.timers_changed.set()
        await self.data.load_questions(room_id, await self.ctx.store.questions(room_id))
        pinned = await self.ctx.store.pinned_message(room_id)
        if pinned is not None:
            await self.data.set_pinned(room_id, pinned)
