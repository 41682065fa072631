"""Show recording: a room's timeline of host and viewer actions as a JSONL trace.

Switched on for every room by `record.enabled`, or per room by the host. A
trace holds no secrets: viewers appear under pseudonyms (a keyed hash of their
id, stable across processes), tokens and host keys never appear, and chat
text is reduced to its length. Lines are appended with one `write` each on an
O_APPEND descriptor, so several server processes can record the same room
into one file. The load tester replays these traces (`loadtest/`).

Descriptors are bounded: a trace is opened on its first write and kept in a
least-recently-written set of at most `max_open` open files (the oldest is
closed when another is needed), so thousands of recording rooms never need
thousands of descriptors. An ended room's trace is closed and written no more.

Format: line 1 `{"kind": "livesell-trace", "version": 1, "room_id", "started_at"}`,
then `{"t": ms since start, "actor": "host"|"viewer", "viewer"?, "action", "data", "id"?}`
where `id` is the id of the object a host action created (product, sale, coupon, lottery).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import os
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import orjson

from server.core.domain import normalize_entry_text, now_ms

log = logging.getLogger("livesell.recorder")

# 2: a pin without `open_for_sale` opens the product for sale (buy-it-now); a trace of
# version 1 was recorded before that (loadtest/trace.py replays it as it was).
VERSION: Final = 2
HOST_ACTIONS: Final = frozenset({"product", "update_product", "pin", "unpin", "listing",
                                 "claims", "sale", "stop_sale", "coupon", "end_coupon", "lottery",
                                 "draw",
                                 "announce", "referrals", "update_room"})
MAX_OPEN_TRACES: Final = 64
VIEWER_ACTIONS: Final = frozenset({"join", "leave", "buy", "checkout", "release",
                                   "claim_coupon", "enter_lottery", "chat", "like"})


class Recorder:
    def __init__(self, directory: Path, record_all: bool, max_bytes: int,
                 salt: bytes, max_open: int = MAX_OPEN_TRACES) -> None:
        self.directory = directory
        self.record_all = record_all
        self.max_bytes = max_bytes
        self.max_open = max_open
        self._salt = salt
        self.rooms: set[str] = set()  # rooms switched on by their host
        # room -> (fd, started_at), least recently written first
        self._files: OrderedDict[str, tuple[int, int]] = OrderedDict()
        self._started: dict[str, int] = {}  # room -> its trace's started_at, once read
        self._full: set[str] = set()
        self._finished: set[str] = set()  # ended rooms: never written again
        # room -> lottery id -> keyword of the open keyword lotteries this process
        # knows (the show's own map): whether a viewer's entry text matched.
        self.keywords: Mapping[str, Mapping[str, str]] = {}

    @property
    def open_files(self) -> int:
        return len(self._files)

    def path(self, room_id: str) -> Path:
        return self.directory / f"{room_id}.jsonl"

    def active(self, room_id: str) -> bool:
        return (self.record_all or room_id in self.rooms) and room_id not in self._finished

    def finish(self, room_id: str) -> None:
        """The show ended: close its trace and record nothing more of it."""
        self._finished.add(room_id)
        self.rooms.discard(room_id)
        self._started.pop(room_id, None)
        opened = self._files.pop(room_id, None)
        if opened is not None:
            with contextlib.suppress(OSError):
                os.close(opened[0])

    def pseudonym(self, viewer_id: str) -> str:
        return "v" + hashlib.sha256(self._salt + viewer_id.encode()).hexdigest()[:12]

    def keyword_stand_in(self, text: str) -> str:
        """A keyed hash in place of a keyword: the same keyword always gives the same
        stand-in, which is itself a valid keyword (so a replay opens its lottery with
        it and sends it to enter), and without the secret it reveals nothing."""
        digest = hmac.new(self._salt, b"keyword:" + normalize_entry_text(text).encode(),
                          hashlib.sha256).hexdigest()
        return "kw-" + digest[:20]

    def host(self, room_id: str, action: str, data: dict[str, Any],
             created_id: str | None = None) -> None:
        if self.active(room_id):
            if action == "lottery" and isinstance(data.get("keyword"), str):
                data = {**data, "keyword": self.keyword_stand_in(data["keyword"])}
            entry: dict[str, Any] = {"actor": "host", "action": action, "data": data}
            if created_id is not None:
                entry["id"] = created_id
            self._write(room_id, entry)

    def viewer(self, room_id: str, viewer_id: str, action: str,
               data: dict[str, Any] | None = None) -> None:
        if not self.active(room_id):
            return
        data = {k: v for k, v in (data or {}).items() if k not in ("type", "request_id")}
        if action == "chat" and isinstance(data.get("text"), str):
            data = {"length": len(data["text"])}
        elif action == "enter_lottery" and isinstance(data.get("keyword"), str):
            data = {**data, "keyword": self._entry_stand_in(room_id, data)}
        self._write(room_id, {"actor": "viewer", "viewer": self.pseudonym(viewer_id),
                              "action": action, "data": data})

    def _entry_stand_in(self, room_id: str, data: Mapping[str, Any]) -> str:
        """What a viewer typed to enter, as it replays: the stand-in of the lottery's
        keyword when the text matched it (as enter_lottery.lua decides: the normalized
        text contains the keyword), else the stand-in of the text itself, which does
        not contain the lottery's stand-in and so is refused on replay too."""
        text = normalize_entry_text(str(data["keyword"]))
        keyword = self.keywords.get(room_id, {}).get(str(data.get("lottery_id")))
        if keyword and keyword in text:
            return self.keyword_stand_in(keyword)
        return self.keyword_stand_in(text)

    def _open(self, room_id: str) -> tuple[int, int]:
        opened = self._files.get(room_id)
        if opened is not None:
            self._files.move_to_end(room_id)
            return opened
        while len(self._files) >= self.max_open:
            _, (old_fd, _) = self._files.popitem(last=False)
            with contextlib.suppress(OSError):
                os.close(old_fd)
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = self.path(room_id)
        started = now_ms()
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL, 0o600)
            os.write(fd, orjson.dumps({"kind": "livesell-trace", "version": VERSION,
                                       "room_id": room_id, "started_at": started}) + b"\n")
        except FileExistsError:
            known = self._started.get(room_id)
            if known is None:
                with path.open("rb") as f:
                    known = int(orjson.loads(f.readline())["started_at"])
            started = known
            fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        self._started[room_id] = started
        self._files[room_id] = (fd, started)
        return fd, started

    def _write(self, room_id: str, entry: dict[str, Any]) -> None:
        if room_id in self._full:
            return
        try:
            fd, started = self._open(room_id)
            if os.fstat(fd).st_size > self.max_bytes:
                log.warning("trace of %s reached record.max_bytes; recording stopped", room_id)
                self._full.add(room_id)
                return
            os.write(fd, orjson.dumps({"t": now_ms() - started, **entry}) + b"\n")
        except (OSError, ValueError) as exc:
            log.warning("cannot record %s: %s", room_id, exc)

    def close(self) -> None:
        for fd, _ in self._files.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        self._files.clear()
        self._started.clear()
