"""Polls, questions and the pinned message in Redis, outside their atomic scripts
(vote.lua, close_poll.lua, ask.lua, upvote.lua, answer_question.lua): loading
polls and questions with their votes (from the store when Redis is rebuilt),
reading them and their counts, taking back a vote, question or upvote the store
could not record, and the room's pinned message."""

from __future__ import annotations

from typing import Any

import orjson

from server.core.jobs import Job
from server.core.keys import room_keys
from server.core.polls import Poll

CLOSE = "poll_close"


class SocialData:
    def __init__(self, redis: Any) -> None:
        self.redis = redis  # decode_responses=True

    async def load_poll(self, room_id: str, poll: Poll, votes: dict[str, int],
                        closed_at: int | None) -> None:
        """The poll's hash with its counts and votes; an open one gets its close
        timer; in one MULTI."""
        keys = room_keys(room_id)
        pid = poll.poll_id
        counts = [0] * len(poll.options)
        for option in votes.values():
            if 0 <= option < len(counts):
                counts[option] += 1
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(keys.poll(pid), keys.poll_votes(pid))
            pipe.hset(keys.poll(pid), mapping={
                "data": orjson.dumps(poll.public()).decode(), "options": len(poll.options),
                "closes_at": poll.closes_at, "state": "closed" if closed_at else "open",
                "closed_at": closed_at or "",
                **{f"v{i}": n for i, n in enumerate(counts)}})
            if votes:
                pipe.hset(keys.poll_votes(pid), mapping=votes)
            pipe.sadd(keys.polls, pid)
            if closed_at is None:
                pipe.zadd(keys.timers, {Job(CLOSE, pid).member: poll.closes_at})
            await pipe.execute()

    async def poll(self, room_id: str, poll_id: str) -> dict[str, str]:
        return dict(await self.redis.hgetall(room_keys(room_id).poll(poll_id)))

    async def polls(self, room_id: str) -> list[dict[str, str]]:
        keys = room_keys(room_id)
        ids = sorted(await self.redis.smembers(keys.polls))
        async with self.redis.pipeline(transaction=False) as pipe:
            for pid in ids:
                pipe.hgetall(keys.poll(pid))
            return [dict(h) for h in await pipe.execute() if h]

    async def undo_vote(self, room_id: str, poll_id: str, viewer_id: str, option: int) -> None:
        """Take back a vote the store could not record (the viewer was told to try
        again), unless it is already gone."""
        keys = room_keys(room_id)
        if await self.redis.hdel(keys.poll_votes(poll_id), viewer_id):
            await self.redis.hincrby(keys.poll(poll_id), f"v{option}", -1)

    async def set_pinned(self, room_id: str, pinned: dict[str, Any] | None) -> None:
        key = room_keys(room_id).room
        if pinned is None:
            await self.redis.hdel(key, "pinned")
        else:
            await self.redis.hset(key, "pinned", orjson.dumps(pinned).decode())

    # ------------------------------------------------------------------ questions

    async def undo_question(self, room_id: str, question_id: str, viewer_id: str,
                            answer_key_request: str) -> None:
        """Take back a question the store could not record (its asker was told to
        try again): off the ranking, their count down, the remembered answer gone."""
        keys = room_keys(room_id)
        if await self.redis.zrem(keys.open_questions, question_id):
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.hdel(keys.questions, question_id)
                pipe.hincrby(keys.questions_per_viewer, viewer_id, -1)
                pipe.delete(keys.request(viewer_id, "ask", answer_key_request))
                await pipe.execute()

    async def undo_upvote(self, room_id: str, question_id: str, viewer_id: str) -> None:
        keys = room_keys(room_id)
        if await self.redis.srem(keys.question_voters(question_id), viewer_id) and \
                await self.redis.zscore(keys.open_questions, question_id) is not None:
            await self.redis.zincrby(keys.open_questions, -1, question_id)

    async def questions(self, room_id: str, limit: int) -> tuple[list[dict[str, Any]],
                                                                 list[dict[str, Any]]]:
        """The unanswered questions by votes (most first, the earlier on a tie), at most
        `limit`, and the last `limit` answered, newest first."""
        keys = room_keys(room_id)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zrange(keys.open_questions, 0, -1, withscores=True)
            pipe.hvals(keys.questions)
            ranked, every = await pipe.execute()
        votes = {qid: int(score) for qid, score in ranked}
        all_q = [orjson.loads(q) for q in every]
        unanswered = [{**q, "votes": votes[q["question_id"]]} for q in all_q
                      if q["question_id"] in votes]
        unanswered.sort(key=lambda q: (-q["votes"], q["asked_at"], q["question_id"]))
        answered = [q for q in all_q if q["question_id"] not in votes and q.get("answered_at")]
        answered.sort(key=lambda q: -q["answered_at"])
        return unanswered[:limit], answered[:limit]

    async def question_votes(self, room_id: str, question_id: str) -> int | None:
        score = await self.redis.zscore(room_keys(room_id).open_questions, question_id)
        return None if score is None else int(score)

    async def load_questions(self, room_id: str,
                             stored: list[tuple[dict[str, Any], int | None, list[str]]]) -> None:
        """The room's questions and upvotes from the store, in one MULTI."""
        keys = room_keys(room_id)
        per_viewer: dict[str, int] = {}
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(keys.questions, keys.open_questions, keys.questions_per_viewer)
            for data, answered_at, voters in stored:
                qid = data["question_id"]
                pipe.delete(keys.question_voters(qid))
                if voters:
                    pipe.sadd(keys.question_voters(qid), *voters)
                if answered_at is None:
                    pipe.hset(keys.questions, qid, orjson.dumps(data).decode())
                    pipe.zadd(keys.open_questions, {qid: len(voters)})
                    per_viewer[data["viewer_id"]] = per_viewer.get(data["viewer_id"], 0) + 1
                else:
                    done = {**data, "votes": len(voters), "answered_at": answered_at}
                    pipe.hset(keys.questions, qid, orjson.dumps(done).decode())
            if per_viewer:
                pipe.hset(keys.questions_per_viewer, mapping=per_viewer)
            await pipe.execute()
