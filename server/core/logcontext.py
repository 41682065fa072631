"""Which room and request a log record belongs to: context variables the web
layer sets for each host call and viewer request (each runs in a task of its
own, so the value stays with it), read by the JSON log format
(server/web/logjson.py). Pure."""

from __future__ import annotations

from contextvars import ContextVar
from typing import Final

ROOM: Final[ContextVar[str | None]] = ContextVar("livesell_room", default=None)
REQUEST: Final[ContextVar[str | None]] = ContextVar("livesell_request", default=None)
