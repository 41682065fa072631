"""Polls and the pinned message: what the host may set, validated, and the
live percentages viewers see. Pure: no I/O. The votes themselves are decided in
Redis (server/state/lua/vote.lua)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from server.core.errors import BadRequest
from server.core.schema import ID, Int, ListOf, Shape, Str, opt, req

MAX_QUESTION: Final = 200
MAX_OPTION: Final = 80
MIN_OPTIONS: Final = 2
MAX_OPTIONS: Final = 6
MAX_PINNED: Final = 500


@dataclass(frozen=True, slots=True)
class Poll:
    poll_id: str
    question: str
    options: tuple[str, ...]
    opens_at: int
    closes_at: int

    def public(self) -> dict[str, Any]:
        return {"poll_id": self.poll_id, "question": self.question,
                "options": list(self.options), "opens_at": self.opens_at,
                "closes_at": self.closes_at}

    @classmethod
    def from_public(cls, d: Mapping[str, Any]) -> Poll:
        return cls(str(d["poll_id"]), str(d["question"]), tuple(str(o) for o in d["options"]),
                   int(d["opens_at"]), int(d["closes_at"]))


POLL_SHAPE: Final = Shape("poll", {
    "question": req(Str(MAX_QUESTION, strip=True)),
    "options": req(ListOf(Str(MAX_OPTION, strip=True), MIN_OPTIONS, MAX_OPTIONS,
                          what="strings")),
    "duration_s": opt(Int(5, 86400), 60),
}, rules=("Options must differ (ignoring case).",))


def parse_poll(body: Mapping[str, Any], poll_id: str, now: int) -> Poll:
    v = POLL_SHAPE.read(body)
    options = tuple(v["options"])
    if len({o.casefold() for o in options}) != len(options):
        raise BadRequest("options: must be distinct", details={"field": "options"})
    return Poll(poll_id, v["question"], options, now, now + v["duration_s"] * 1000)


def percentages(votes: Sequence[int]) -> list[int]:
    """Whole percentages adding up to 100 (all 0 with no votes): each share rounded
    down, the points left over going to the largest remainders (earlier first)."""
    total = sum(votes)
    if total == 0:
        return [0] * len(votes)
    exact = [v * 100 / total for v in votes]
    out = [int(x) for x in exact]
    order = sorted(range(len(votes)), key=lambda i: (-(exact[i] - out[i]), i))
    for i in order[:100 - sum(out)]:
        out[i] += 1
    return out


PIN_SHAPE: Final = Shape("pinned message", {
    "text": opt(Str(MAX_PINNED, strip=True), doc="the host's own note"),
    "message_id": opt(ID, doc="a chat message to pin"),
}, one_required=(("text", "message_id"),))


def parse_pin_message(body: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """The host's `PUT .../pinned-message`: its own note (`text`) or a viewer's
    message (`message_id`), exactly one of the two."""
    v = PIN_SHAPE.read(body)
    return v.get("text"), v.get("message_id")
