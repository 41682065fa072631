"""Reply frames built from a script's remembered answer (features/context.py): a
refusal answered from the shared table is the same frame, byte for byte, as one
built afresh from the error."""

from __future__ import annotations

import orjson
import pytest

from server.core.errors import REFUSALS, refusal
from server.features.context import Answer, error_answer, from_cached


@pytest.mark.parametrize("code", [*sorted(REFUSALS), "a_code_no_one_knows"])
@pytest.mark.parametrize("request_id", [None, "b-1", 'q"\\é'])
def test_a_remembered_refusal_frames_exactly_like_a_fresh_one(code: str,
                                                               request_id: str | None) -> None:
    cached = orjson.dumps({"error": code}).decode()
    fresh = error_answer(refusal(code)).frame(request_id)
    first = from_cached("hold", cached)
    again = from_cached("hold", cached)
    assert first.frame(request_id) == fresh
    assert again.frame(request_id) == fresh
    assert first is again  # built once
    assert first.kind == "error" and first.body["code"] == code
    frame = orjson.loads(fresh)
    assert frame["type"] == "error" and frame.get("re") == request_id


def test_a_remembered_answer_is_spliced_into_the_frame() -> None:
    cached = '{"hold_id":"h_1","quantity":2}'
    got = from_cached("hold", cached)
    assert orjson.loads(got.frame("r-9")) == {"type": "hold", "re": "r-9", "hold_id": "h_1",
                                              "quantity": 2}
    assert got.frame(None) == Answer("hold", {"hold_id": "h_1", "quantity": 2}).frame(None)
