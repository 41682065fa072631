"""The JSON log format (server.log_format = "json"): one object per line with
`ts` (UTC, ISO 8601, milliseconds), `level`, `logger`, `message`, `room_id` and
`request_id` when the record was made while serving a room's request
(server/core/logcontext.py), and `exc` with the traceback. Applied to
livesell's and uvicorn's records alike; the redaction filter
(server/web/logfilter.py) has run before a record is formatted."""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson

from server.core import logcontext


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(), "logger": record.name,
            "message": record.getMessage()}
        room, request = logcontext.ROOM.get(), logcontext.REQUEST.get()
        if room is not None:
            out["room_id"] = room
        if request is not None:
            out["request_id"] = request
        if record.exc_info:
            out["exc"] = record.exc_text or self.formatException(record.exc_info)
        return orjson.dumps(out).decode()


def uvicorn_log_config() -> dict[str, Any]:
    """uvicorn's logging configuration with every record as JSON on stderr."""
    formatter = {"()": "server.web.logjson.JsonFormatter"}
    return {
        "version": 1, "disable_existing_loggers": False,
        "formatters": {"json": formatter},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json",
                                "stream": "ext://sys.stderr"}},
        "loggers": {name: {"handlers": ["stderr"], "propagate": False}
                    for name in ("uvicorn", "uvicorn.error", "uvicorn.access")},
    }
