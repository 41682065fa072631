"""Sending a file that is already open (a stream's playlist or segment,
server/features/streams.py): the response reads the bytes of the file it was
handed, not of whatever the path names by the time it is sent, so a playlist
renamed over or a segment deleted meanwhile cannot cut an answer short after its
headers went out.

Reads run in threads of their own (READS: a stalled disk must not stop the event
loop, nor take the threads other work needs), one at a time per answer, and a
client that goes away waits for its read in flight before the file is closed. One byte range
(`Range: bytes=a-b`, `a-`, `-n`) is answered 206, as players ask of an MP4 file;
several ranges, a malformed one or a stale If-Range get the whole file (RFC 9110
lets a server ignore Range), a range past the end 416. A client that goes away
stops the reading; the file is closed whatever happens."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from email.utils import formatdate
from typing import Final, Literal

from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from server.features.streams import StreamFile

CHUNK: Final = 64 * 1024
# The threads stream reads run in: bounded, and apart from anyio's (the opens, the
# images) and the loop's default executor (webhooks' name look-ups), so a stalled
# streams disk stalls only streams.
READS: Final = ThreadPoolExecutor(max_workers=8, thread_name_prefix="stream-read")
_RANGE: Final = re.compile(r"^bytes=(\d{0,19})-(\d{0,19})$")


def byte_range(header: str | None, size: int) -> tuple[int, int] | Literal[False] | None:
    """The one range (first, last byte) a Range header asks of `size` bytes: None
    for the whole file (no header, several ranges, not understood), False when the
    range lies past the end (416)."""
    if header is None:
        return None
    found = _RANGE.fullmatch(header.strip())
    if found is None or (not found.group(1) and not found.group(2)):
        return None
    first, last = found.group(1), found.group(2)
    if not first:  # the last n bytes
        suffix = int(last)
        return (max(0, size - suffix), size - 1) if suffix and size else False
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if last and int(last) < start:
        return None  # not a valid range: ignored
    return (start, end) if start < size else False


class OpenFileResponse(Response):
    """`opened` sent with `headers`; the response owns the file from here on."""

    def __init__(self, opened: StreamFile, headers: Mapping[str, str]) -> None:
        self.opened = opened
        self.status_code = 200
        self.media_type = opened.media_type
        self.background = None
        self.last_modified = formatdate(opened.mtime, usegmt=True)
        self.init_headers({**headers, "Accept-Ranges": "bytes",
                           "Last-Modified": self.last_modified,
                           "Content-Length": str(opened.size)})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self._answer(scope, receive, send)
        finally:
            self.opened.close()

    async def _answer(self, scope: Scope, receive: Receive, send: Send) -> None:
        size = self.opened.size
        request = Headers(scope=scope)
        if_range = request.get("if-range")
        wanted = byte_range(request.get("range"), size)
        if if_range is not None and if_range != self.last_modified:
            wanted = None  # the client's copy is of another file: all of this one
        start, end = 0, size - 1
        if wanted is False:
            await Response(status_code=416, headers={"Content-Range": f"bytes */{size}"})(
                scope, receive, send)
            return
        if isinstance(wanted, tuple):
            start, end = wanted
            self.status_code = 206
            self.headers["Content-Range"] = f"bytes {start}-{end}/{size}"
            self.headers["Content-Length"] = str(end - start + 1)
        await send({"type": "http.response.start", "status": self.status_code,
                    "headers": self.raw_headers})
        if scope["method"] == "HEAD" or end < start:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        sending = asyncio.ensure_future(self._send_bytes(send, start, end))
        gone = asyncio.ensure_future(_disconnected(receive))
        try:
            await asyncio.wait((sending, gone), return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
            if not sending.done():
                sending.cancel()  # the client went away: read no more
            with contextlib.suppress(asyncio.CancelledError):
                await sending  # its own errors are raised here
            with contextlib.suppress(asyncio.CancelledError):
                await gone

    async def _send_bytes(self, send: Send, start: int, end: int) -> None:
        fd = self.opened.file.fileno()
        at = start
        while at <= end:
            want = min(CHUNK, end + 1 - at)
            chunk = await _read(fd, want, at)
            if not chunk:
                # The file is shorter than when it was opened (truncated in place):
                # the answer cannot be completed, and the client sees it cut short.
                raise OSError(f"{self.opened.file.name}: ended {end + 1 - at} bytes early")
            at += len(chunk)
            await send({"type": "http.response.body", "body": chunk, "more_body": at <= end})


async def _read(fd: int, size: int, offset: int) -> bytes:
    """One read off the event loop, in READS' threads. A cancellation (the client went
    away) waits for the read in flight: the file is closed only after it, so its fd
    is never read once reused, and a client that comes and goes holds one thread at
    most instead of leaving reads behind it."""
    read = asyncio.get_running_loop().run_in_executor(READS, os.pread, fd, size, offset)
    try:
        return await asyncio.shield(read)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            await read
        raise


async def _disconnected(receive: Receive) -> None:
    """Returns once the client has gone (or the answer is complete)."""
    while (await receive())["type"] != "http.disconnect":
        pass
