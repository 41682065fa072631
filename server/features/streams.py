"""Live video from the shop's own encoder: the streams folder served at /streams/.

A shop's encoder (ffmpeg, OBS, a hardware box) writes HLS, a `.m3u8` playlist and
its segments, into the folder `streams.dir` (default data_dir/streams), and a
room's `stream_url` names it as `/streams/<path>` (server/core/domain.py
STREAM_URL). This module owns which files of that folder a stranger may fetch and
opens them:

- the path is one the room rule takes (domain.STREAM_PATH_PATTERN: names of
  letters, digits, `_`, `-` and `.`, none starting with `.`, at most
  STREAM_DEPTH deep), so `..`, hidden files, empty parts and NULs never get this
  far, however they were spelled or escaped in the URL;
- its extension is one of the media types below (nothing else: no listing, no
  encoder's temporary `.tmp`, no key file);
- once every symlink is followed, the file still lies inside the folder (a link
  to a file elsewhere on the disk is refused; the folder itself may be a link, to
  the encoder's disk) and is a regular file, opened without following a last
  link and without blocking on a FIFO.

The caller opens the file in a thread (a stalled disk must not stop the room's
fan-out) and serves the open file: an encoder renames a new playlist over the old
one and deletes segments that left its live window, and an open file keeps the
bytes it was opened with, so a viewer never gets half of one playlist and half of
the next, nor a segment that vanished between a look and a read. Someone who can
write into the folder could still swap a directory for a link between the check
and the open; they already control the video, so the check guards against
mistakes and strangers' paths, not against the encoder's own account.

Nothing here knows the web framework: server/web/routes.py sends the open file
with the headers (server/web/filesend.py)."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Final

from server.core.domain import STREAM_PATH_PATTERN

# What an encoder writes for HLS, by extension, and the type each is sent as.
MEDIA_TYPES: Final = {
    "m3u8": "application/vnd.apple.mpegurl",  # playlists (master and media)
    "ts": "video/mp2t",                       # MPEG-TS segments
    "m4s": "video/mp4",                       # fragmented MP4 segments
    "mp4": "video/mp4",                       # an fMP4 init section, or a plain file
    "aac": "audio/aac",                       # packed audio segments
    "vtt": "text/vtt",                        # WebVTT subtitle segments
}
# Rewritten as the stream goes on: never kept by a browser or a cache.
PLAYLISTS: Final = frozenset({"m3u8"})


@dataclass(slots=True)
class StreamFile:
    """A file of the streams folder, open for reading; whoever serves it closes it."""

    file: BinaryIO
    size: int
    mtime: float
    media_type: str
    playlist: bool

    def close(self) -> None:
        self.file.close()


class StreamFolder:
    """The streams folder at `root` (settings.stream_dir); it need not exist yet."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @staticmethod
    def extension_of(path: str) -> str | None:
        """The extension of a path that may be served (a key of MEDIA_TYPES), else None."""
        if not STREAM_PATH_PATTERN.fullmatch(path):
            return None
        name = path.rsplit("/", 1)[-1]
        ext = name.rsplit(".", 1)[1] if "." in name else ""
        return ext if ext in MEDIA_TYPES else None

    def open(self, path: str) -> StreamFile | None:
        """The file at `path` (as the URL names it, after /streams/), open; None
        unless it may be served and exists. Blocks on the disk: call it in a thread."""
        ext = self.extension_of(path)
        if ext is None:
            return None
        root = os.path.realpath(self.root)
        real = os.path.realpath(os.path.join(root, path))
        if os.path.commonpath([root, real]) != root or real == root:
            return None  # a link that leads out of the folder
        try:
            # O_NONBLOCK: opening a FIFO must not wait for a writer (it is refused
            # below); reads of a regular file ignore the flag.
            fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            return None  # missing, a link swapped in since, no permission
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                os.close(fd)
                return None  # a folder (no listing), a FIFO, a device
            file = os.fdopen(fd, "rb")
        except BaseException:
            os.close(fd)
            raise
        return StreamFile(file, info.st_size, info.st_mtime, MEDIA_TYPES[ext],
                          ext in PLAYLISTS)
