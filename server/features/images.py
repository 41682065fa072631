"""Product images the host uploads: what an upload may be and where it is kept.

Owns the upload's checks (the declared media type, one of four; the bytes really
of that format, by their magic numbers; the pixel size the format's header
declares, within `images.max_pixels`), the per-room store on disk
(settings.data_path / "images" / <room_id> / <sha256>.<ext>, each file written
to a temporary name, fsynced and renamed into place, so a reader never sees half
an image), the per-room cap (`images.max_per_room`, counted under a file lock
that every server process takes) and the lookup of a stored image by its public
name for serving. An image is named by the SHA-256 of its bytes: the same image
uploaded twice is one file, and its URL never changes what it shows (served
immutable).

The web layer (server/web/routes.py) reads the body within `images.max_bytes`,
checks the host key and sends the stored file with its headers; nothing here
knows the framework. The product's `image_url` takes the paths made here
(server/core/domain.py IMAGE_URL)."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import os
import re
import struct
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from server.core.errors import BadRequest, Conflict, PayloadTooLarge, Unavailable, UnsupportedMedia
from server.core.protocol import ID_PATTERN
from server.core.settings import ImageSettings

# The media types an upload may declare, and the extension each is stored under.
EXTENSIONS: Final = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp",
                     "image/gif": "gif"}
MEDIA_TYPES: Final = {ext: media for media, ext in EXTENSIONS.items()}
# A stored image's public name: the hex SHA-256 of its bytes and its extension.
NAME_PATTERN: Final = re.compile(r"^[0-9a-f]{64}\.(?:png|jpg|webp|gif)$")
URL_PREFIX: Final = "/images"
NAMES: Final = {"image/png": "PNG", "image/jpeg": "JPEG", "image/webp": "WebP",
                "image/gif": "GIF"}
_LOCK_NAME: Final = ".lock"

PNG_SIGNATURE: Final = b"\x89PNG\r\n\x1a\n"
# JPEG frame headers (SOF0-SOF15 but DHT C4, JPG C8 and DAC CC): width and height.
_JPEG_SOF: Final = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Markers that may follow a JPEG's SOI: APPn, DQT, DHT, SOFn, DRI, COM.
_JPEG_AFTER_SOI: Final = (frozenset(range(0xE0, 0xF0)) | _JPEG_SOF
                          | {0xDB, 0xC4, 0xDD, 0xFE})
# Markers without a length (RSTn, TEM, SOI).
_JPEG_STANDALONE: Final = frozenset(range(0xD0, 0xD9)) | {0x01}


def media_type_of(content_type: str | None) -> str:
    """The upload's declared media type (parameters dropped), one of the four;
    else 415 unsupported_media."""
    media = (content_type or "").split(";")[0].strip().lower()
    if media not in EXTENSIONS:
        said = f"'{media}'" if media else "none"
        raise UnsupportedMedia(
            f"Content-Type must be image/png, image/jpeg, image/webp or image/gif "
            f"(got {said})", details={"types": list(EXTENSIONS)})
    return media


def dimensions(data: bytes, media_type: str) -> tuple[int, int]:
    """The width and height the image's header declares, after checking that the
    bytes are of `media_type` by their magic numbers; else 400 bad_request saying
    what is wrong."""
    name = NAMES[media_type]
    reader = {"image/png": _png, "image/gif": _gif, "image/webp": _webp,
              "image/jpeg": _jpeg}[media_type]
    found = reader(data)
    if isinstance(found, str):
        raise BadRequest(f"the body is not a {name} image: {found}",
                         details={"type": media_type})
    width, height = found
    if width <= 0 or height <= 0:
        raise BadRequest(f"the {name} image declares no pixels ({width}x{height})",
                         details={"type": media_type})
    return width, height


def _png(data: bytes) -> tuple[int, int] | str:
    if not data.startswith(PNG_SIGNATURE):
        return "it does not start with the PNG signature"
    if len(data) < 24 or data[12:16] != b"IHDR":
        return "its first chunk is not IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def _gif(data: bytes) -> tuple[int, int] | str:
    if data[:6] not in (b"GIF87a", b"GIF89a"):
        return "it does not start with GIF87a or GIF89a"
    if len(data) < 10:
        return "it ends before its logical screen descriptor"
    width, height = struct.unpack("<HH", data[6:10])
    return width, height


def _webp(data: bytes) -> tuple[int, int] | str:
    if len(data) < 16 or data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        return "it does not start with RIFF....WEBP"
    if struct.unpack("<I", data[4:8])[0] + 8 > len(data):
        return "it is shorter than its RIFF header says"
    chunk = data[12:16]
    if chunk == b"VP8 ":
        # A key frame: 3 bytes of frame tag, the start code, 14-bit sizes.
        if len(data) < 30 or data[23:26] != b"\x9d\x01\x2a":
            return "its VP8 frame has no start code"
        w, h = struct.unpack("<HH", data[26:30])
        return w & 0x3FFF, h & 0x3FFF
    if chunk == b"VP8L":
        if len(data) < 25 or data[20] != 0x2F:
            return "its VP8L bitstream has no signature"
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":
        if len(data) < 30:
            return "its VP8X header is cut short"
        return (int.from_bytes(data[24:27], "little") + 1,
                int.from_bytes(data[27:30], "little") + 1)
    return "its first chunk is not VP8, VP8L or VP8X"


def _jpeg(data: bytes) -> tuple[int, int] | str:
    if len(data) < 4 or data[:3] != b"\xff\xd8\xff" or data[3] not in _JPEG_AFTER_SOI:
        return "it does not start with a JPEG SOI marker and a segment"
    at = 2
    while at < len(data):
        if data[at] != 0xFF:
            return f"no marker where one is due (byte {at})"
        while at < len(data) and data[at] == 0xFF:  # fill bytes
            at += 1
        if at >= len(data):
            break
        marker = data[at]
        at += 1
        if marker in _JPEG_STANDALONE:
            continue
        if marker in (0xD9, 0xDA):  # EOI, or the scan: the frame header is due before
            break
        if at + 2 > len(data):
            break
        length = struct.unpack(">H", data[at:at + 2])[0]
        if length < 2:
            return f"a segment with a length of {length} (byte {at})"
        if marker in _JPEG_SOF:
            if length < 7 or at + 7 > len(data):
                return "its frame header is cut short"
            height, width = struct.unpack(">HH", data[at + 3:at + 7])
            return width, height
        at += length
    return "it has no frame header (SOF) before its scan"


@dataclass(frozen=True, slots=True)
class Stored:
    """An image as the upload's answer names it."""

    room_id: str
    name: str
    size: int
    media_type: str

    @property
    def url(self) -> str:
        return f"{URL_PREFIX}/{self.room_id}/{self.name}"

    def answer(self) -> dict[str, object]:
        return {"image_url": self.url, "bytes": self.size, "type": self.media_type}


# Uploads of one process waiting for (or in) the image thread; past it 503, so a
# stalled disk or a lock another process holds costs waiting uploads, not memory
# or the default executor's threads (the webhooks' name lookups use those).
MAX_WAITING: Final = 16
LOCK_POLL_S: Final = 0.05  # how often a held folder lock is tried again


class ImageStore:
    """The rooms' images in `root` (settings.data_path / "images")."""

    def __init__(self, root: Path, settings: ImageSettings) -> None:
        self.root = root
        self.settings = settings
        # One thread of its own: the hash, the checks, the lock and the fsyncs of an
        # upload run there, one upload at a time, off the event loop.
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="images")
        self._waiting = 0

    @property
    def max_bytes(self) -> int:
        return self.settings.max_bytes

    def check(self, data: bytes, media_type: str) -> tuple[int, int]:
        """The image's width and height once its bytes, format and pixel size pass."""
        if len(data) > self.settings.max_bytes:
            raise PayloadTooLarge(f"the image is larger than {self.settings.max_bytes} bytes",
                                  details={"max_bytes": self.settings.max_bytes})
        if not data:
            raise BadRequest("the body is empty: send the image's bytes")
        width, height = dimensions(data, media_type)
        if width * height > self.settings.max_pixels:
            raise PayloadTooLarge(
                f"the image is {width}x{height} pixels, more than "
                f"{self.settings.max_pixels} (images.max_pixels)",
                details={"max_pixels": self.settings.max_pixels, "width": width,
                         "height": height})
        return width, height

    async def save(self, room_id: str, data: bytes, media_type: str) -> Stored:
        """Check and keep the image (once: the same bytes are the same file) and
        name it; 409 too_many_images when the room has its most."""
        if not ID_PATTERN.fullmatch(room_id):
            raise BadRequest("not a room id")
        self.admit()
        self._waiting += 1
        try:
            name = await asyncio.get_running_loop().run_in_executor(
                self._thread, self._keep, room_id, data, media_type)
        finally:
            self._waiting -= 1
        return Stored(room_id, name, len(data), media_type)

    def admit(self) -> None:
        """503 while the line is full (asked before the body is read, and again as
        the upload joins the line)."""
        if self._waiting >= MAX_WAITING:
            raise Unavailable("image uploads are queued up; try again in a moment",
                              details={"retry_after_s": 2})

    def close(self) -> None:
        self._thread.shutdown(wait=False, cancel_futures=True)

    def _keep(self, room_id: str, data: bytes, media_type: str) -> str:
        """In the image thread: check, hash and write; the stored name."""
        self.check(data, media_type)
        name = f"{hashlib.sha256(data).hexdigest()}.{EXTENSIONS[media_type]}"
        self._write(room_id, name, data)
        return name

    def _write(self, room_id: str, name: str, data: bytes) -> None:
        folder = self.root / room_id
        folder.mkdir(parents=True, exist_ok=True)
        # The count and the write under one lock every process takes (a flock is
        # per open file: threads of one process exclude each other too).
        with open(folder / _LOCK_NAME, "a") as lock:
            self._lock(lock.fileno())
            try:
                target = folder / name
                if target.is_file():
                    return
                kept = 0
                for entry in os.scandir(folder):
                    if NAME_PATTERN.fullmatch(entry.name):
                        kept += 1
                    else:
                        _sweep(entry)
                if kept >= self.settings.max_per_room:
                    raise Conflict(
                        f"this room already has {kept} images, the most it may keep "
                        "(images.max_per_room)", code="too_many_images",
                        details={"max_per_room": self.settings.max_per_room})
                _write_atomically(folder, target, data)
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)

    def _lock(self, fd: int) -> None:
        """The room folder's lock, waited for at most images.lock_wait_s: a process
        stopped or stalled on its disk while holding it costs this upload a 503,
        not this process's image thread for ever."""
        deadline = time.monotonic() + self.settings.lock_wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise Unavailable("the room's images are being written by another "
                                      "process; try again in a moment",
                                      details={"retry_after_s": 2}) from None
                time.sleep(LOCK_POLL_S)

    def path_of(self, room_id: str, name: str) -> tuple[Path, str] | None:
        """A stored image's file and media type, for a room id and a name as a URL
        gives them: None unless both are well formed and the file exists."""
        if not ID_PATTERN.fullmatch(room_id) or not NAME_PATTERN.fullmatch(name):
            return None
        path = self.root / room_id / name
        if not path.is_file():
            return None
        return path, MEDIA_TYPES[name.rsplit(".", 1)[1]]


TEMP_PATTERN: Final = re.compile(r"^\.[0-9a-f]{64}\.[a-z]{3,4}\.(\d+)\.[0-9a-f]{8}\.tmp$")


def _sweep(entry: os.DirEntry[str]) -> None:
    """A temporary file a process left when it died mid-write (SIGKILL, power): its
    pid is in its name; gone while no such process runs (so never another live
    process's write in progress)."""
    found = TEMP_PATTERN.fullmatch(entry.name)
    if found is None:
        return
    try:
        os.kill(int(found.group(1)), 0)
    except ProcessLookupError:
        with contextlib.suppress(OSError):
            os.unlink(entry.path)
    except PermissionError:
        pass  # a process of another user has the pid: it lives


def _write_atomically(folder: Path, target: Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, fsync it, rename it over
    `target`, fsync the folder: the name points at the whole image or at nothing."""
    temp = folder / f".{target.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
