"""Fan levels: the level a number of points reaches, the level table the
snapshot carries, a viewer's standing, and the ids awards are kept under (each
award counts once under its id). Pure."""

from __future__ import annotations

import bisect
import re
from typing import Any, Final

from server.core.settings import FansSettings

CHANNEL_PATTERN: Final = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
DEFAULT_CHANNEL: Final = "main"
# The longest an award id may be: ids are built from ids the server made.
MAX_AWARD_ID: Final = 200


def level_of(points: int, thresholds: tuple[int, ...]) -> int:
    """0 below the first threshold, n once `points` reach the n-th."""
    return bisect.bisect_right(thresholds, points)


def levels_view(fans: FansSettings) -> dict[str, Any]:
    """The snapshot's `fans` without the channel."""
    return {"enabled": fans.enabled,
            "levels": [{"level": i + 1, "points": p, "badge": b}
                       for i, (p, b) in enumerate(zip(fans.thresholds, fans.badges,
                                                      strict=True))]}


def standing(fans: FansSettings, channel: str, points: int, awarded: int) -> dict[str, Any]:
    """A viewer's points, level, badge and the points of the next level (the `fan`
    answer's body)."""
    thresholds = fans.thresholds
    level = level_of(points, thresholds)
    return {"channel": channel, "points": points, "level": level,
            "badge": fans.badges[level - 1] if level else None,
            "next_level_points": thresholds[level] if level < len(thresholds) else None,
            "awarded": awarded}


def minute_award(kind: str, room_id: str, viewer_id: str, now_ms: int) -> str:
    """The id of a once-a-minute award (watching, likes) in a room."""
    return f"{kind}:{room_id}:{viewer_id}:{now_ms // 60_000}"
