"""Polls and the pinned message: what the host may set, validated, and the
live percentages viewers see. Pure: no I/O. The votes themselves are decided in
Redis (server/state/lua/vote.lua)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from server.core.errors import BadRequest
from server.core.protocol import ID_PATTERN, get_int, get_str, reject_unknown

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


POLL_FIELDS: Final = frozenset({"question", "options", "duration_s"})


def parse_poll(body: Mapping[str, Any], poll_id: str, now: int) -> Poll:
    reject_unknown(body, POLL_FIELDS, "poll")
    question = get_str(body, "question", max_len=MAX_QUESTION, strip=True)
    raw = body.get("options")
    if not isinstance(raw, list) or not MIN_OPTIONS <= len(raw) <= MAX_OPTIONS:
        raise BadRequest(f"options: expected a list of {MIN_OPTIONS} to {MAX_OPTIONS} strings",
                         details={"field": "options"})
    options = tuple(get_str({f"options[{i}]": o}, f"options[{i}]", max_len=MAX_OPTION,
                            strip=True) for i, o in enumerate(raw))
    if len({o.casefold() for o in options}) != len(options):
        raise BadRequest("options: must be distinct", details={"field": "options"})
    duration = get_int(body, "duration_s", lo=5, hi=86400, default=60)
    return Poll(poll_id, question, options, now, now + duration * 1000)


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


PIN_FIELDS: Final = frozenset({"text", "message_id"})


def parse_pin_message(body: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """The host's `PUT .../pinned-message`: its own note (`text`) or a viewer's
    message (`message_id`), exactly one of the two."""
    reject_unknown(body, PIN_FIELDS, "pinned message")
    if ("text" in body) == ("message_id" in body):
        raise BadRequest("pinned message: give text or message_id, one of the two")
    if "text" in body:
        return get_str(body, "text", max_len=MAX_PINNED, strip=True), None
    return None, get_str(body, "message_id", max_len=64, pattern=ID_PATTERN)
