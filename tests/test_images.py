"""Product images the host uploads (server/features/images.py), against a real server
on port 0 with a real redis-server and SQLite file: each of the four formats is kept
and served back byte for byte with its headers; the same bytes are one file; what is
not an image of its declared type, too large (by Content-Length, while streaming, by
its pixels), or one too many for the room is refused; no name but a stored image's
reaches a file; and a product takes an uploaded image's path as its image_url."""

from __future__ import annotations

import asyncio
import base64
import fcntl
import hashlib
import re
import struct
import zlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from server.core import domain
from server.core.settings import SettingsError, load_settings
from server.features import images
from server.web.routes import IMAGE_HEADERS
from tests.support import LiveServer, create_room, eventually, server_with


def png(width: int = 1, height: int = 1, rgb: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    """A real PNG (RGB, 8 bits), built with zlib and struct."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))

    rows = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))
    return (images.PNG_SIGNATURE
            + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


# A 1x1 GIF89a (one white pixel, transparent index 0).
GIF = (b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00"
       b"\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;")
# A 1x1 lossless WebP (VP8L), the smallest there is.
WEBP = (b"RIFF\x1a\x00\x00\x00WEBPVP8L\x0d\x00\x00\x00\x2f\x00\x00\x00\x10\x07\x10\x11\x11"
        b"\x88\x88\xfe\x07\x00")
# A 3x2 lossy WebP (VP8) and the same with alpha (VP8X then ALPH, VP8).
WEBP_VP8 = base64.b64decode(
    "UklGRjoAAABXRUJQVlA4IC4AAADwAQCdASoDAAIAAsBMJaACdLoB+AAAYgAA7PMr+b/8KtwxDNV/87BsS7XgAAAA")
WEBP_VP8X = base64.b64decode(
    "UklGRlwAAABXRUJQVlA4WAoAAAAQAAAAAgAAAQAAQUxQSAcAAAAAZGRkZGRkAFZQOCAuAAAA8AEAnQEqAwACAALA"
    "TCWgAnS6AfgAAGIAAOzzK/m//CrcMQzVf/OwbEu14AAAAA==")
# A 2x2 baseline JPEG (JFIF, its own tables).
JPEG = base64.b64decode(
    "/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDABALDA4MChAODQ4SERATGCgaGBYWGDEjJR0oOjM9PDkzODdASFxOQERX"
    "RTc4UG1RV19iZ2hnPk1xeXBkeFxlZ2P/2wBDARESEhgVGC8aGi9jQjhCY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2Nj"
    "Y2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2P/wAARCAACAAIDASIAAhEBAxEB/8QAFQABAQAAAAAAAAAAAAAAAAAA"
    "AAX/xAAUEAEAAAAAAAAAAAAAAAAAAAAA/8QAFQEBAQAAAAAAAAAAAAAAAAAABAb/xAAUEQEAAAAAAAAAAAAAAAAA"
    "AAAA/9oADAMBAAIRAxEAPwCOACqH/9k=")

FORMATS = [("image/png", png(), "png"), ("image/gif", GIF, "gif"),
           ("image/webp", WEBP, "webp"), ("image/jpeg", JPEG, "jpg")]


async def upload(http: httpx.AsyncClient, room_id: str, key: str | None, data: bytes,
                 media_type: str | None = "image/png") -> httpx.Response:
    headers = {} if key is None else {"X-Host-Key": key}
    if media_type is not None:
        headers["Content-Type"] = media_type
    return await http.post(f"/api/rooms/{room_id}/images", content=data, headers=headers)


def stored_files(folder: Path) -> list[str]:
    """The images a room's folder holds (not its lock file, no temporary file left)."""
    names = sorted(p.name for p in folder.iterdir() if p.name != ".lock")
    assert all(images.NAME_PATTERN.fullmatch(n) for n in names), names
    return names


async def raw_request(server: LiveServer, head: str, body: bytes = b"") -> tuple[int, bytes]:
    """One request written as bytes (no client normalizes its path or its headers):
    the answer's status and head."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(head.encode("latin-1") + body)
        await writer.drain()
        answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
    finally:
        writer.close()
    return int(answer.split(b" ", 2)[1]), answer


# ---------------------------------------------------------------- kept and served


@pytest.mark.parametrize(("media_type", "data", "ext"), FORMATS,
                         ids=[f[2] for f in FORMATS])
async def test_each_format_is_kept_and_served_back_byte_for_byte(
        server: LiveServer, http: httpx.AsyncClient, media_type: str, data: bytes,
        ext: str) -> None:
    host = await create_room(http)
    r = await http.post(f"/api/rooms/{host.room_id}/images", content=data,
                        headers={"Authorization": f"Bearer {host.key}",
                                 "Content-Type": media_type})
    assert r.status_code == 201, r.text
    digest = hashlib.sha256(data).hexdigest()
    url = f"/images/{host.room_id}/{digest}.{ext}"
    assert r.json() == {"image_url": url, "bytes": len(data), "type": media_type}
    on_disk = server.settings.data_path / "images" / host.room_id / f"{digest}.{ext}"
    assert on_disk.read_bytes() == data

    got = await http.get(url)
    assert got.status_code == 200
    assert got.content == data
    assert got.headers["content-type"] == media_type
    assert got.headers["x-content-type-options"] == "nosniff"
    assert got.headers["content-security-policy"] == "default-src 'none'; sandbox"
    assert got.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert int(got.headers["content-length"]) == len(data)
    head = await http.head(url)
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-type"] == media_type


async def test_the_same_bytes_twice_are_one_file(server: LiveServer,
                                                 http: httpx.AsyncClient) -> None:
    host = await create_room(http)
    first = await upload(http, host.room_id, host.key, png(2, 2), "image/png")
    again = await upload(http, host.room_id, host.key, png(2, 2), "image/png; charset=x")
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json()
    folder = server.settings.data_path / "images" / host.room_id
    assert stored_files(folder) == [first.json()["image_url"].rsplit("/", 1)[1]]
    other = await upload(http, host.room_id, host.key, png(3, 2), "image/png")
    assert other.status_code == 201
    assert len(stored_files(folder)) == 2


# ---------------------------------------------------------------- refused uploads


async def test_only_the_rooms_host_uploads(server: LiveServer, http: httpx.AsyncClient) -> None:
    host = await create_room(http)
    other = await create_room(http, "Other show")
    none = await upload(http, host.room_id, None, png())
    assert none.status_code == 401
    assert "needs the room's host key" in none.json()["error"]["message"]
    wrong = await upload(http, host.room_id, other.key, png())
    assert wrong.status_code == 401
    assert wrong.json()["error"]["message"] == "wrong host key for this room"
    unknown = await upload(http, "r_missing", host.key, png())
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "room_not_found"
    assert not (server.settings.data_path / "images" / host.room_id).exists()


@pytest.mark.parametrize("media_type", [None, "", "text/plain", "image/svg+xml",
                                        "application/json", "image/jpg", "image/*",
                                        "application/octet-stream"])
async def test_a_type_not_of_the_four_is_unsupported(server: LiveServer,
                                                     http: httpx.AsyncClient,
                                                     media_type: str | None) -> None:
    host = await create_room(http)
    r = await upload(http, host.room_id, host.key, png(), media_type)
    assert r.status_code == 415, r.text
    error = r.json()["error"]
    assert error["code"] == "unsupported_media"
    assert "image/png, image/jpeg, image/webp or image/gif" in error["message"]


@pytest.mark.parametrize(("media_type", "data", "said"), [
    ("image/png", b"this is not an image, it is text\n", "not a PNG image: it does not "
                                                         "start with the PNG signature"),
    ("image/jpeg", png(), "not a JPEG image: it does not start with a JPEG SOI"),
    ("image/gif", WEBP, "not a GIF image: it does not start with GIF87a or GIF89a"),
    ("image/webp", GIF, "not a WebP image: it does not start with RIFF....WEBP"),
    ("image/png", images.PNG_SIGNATURE + b"\x00\x00\x00\x0dIDAT", "its first chunk is "
                                                                    "not IHDR"),
    ("image/png", png(1, 1)[:16] + b"\x00" * 8 + png(1, 1)[24:], "declares no pixels"),
    ("image/jpeg", b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 9 + b"\xff\xda\x00\x02",
     "no frame header (SOF)"),
    ("image/webp", WEBP[:-4], "shorter than its RIFF header says"),
    ("image/png", b"", "the body is empty"),
])
async def test_bytes_not_of_the_declared_type_are_refused_saying_why(
        server: LiveServer, http: httpx.AsyncClient, media_type: str, data: bytes,
        said: str) -> None:
    host = await create_room(http)
    r = await upload(http, host.room_id, host.key, data, media_type)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["code"] == "bad_request"
    assert said in error["message"], error
    assert not (server.settings.data_path / "images" / host.room_id).exists() or \
        stored_files(server.settings.data_path / "images" / host.room_id) == []


def test_each_formats_header_gives_its_size() -> None:
    """The sizes as each format's header declares them (what images.max_pixels bounds)."""
    assert images.dimensions(png(7, 3), "image/png") == (7, 3)
    assert images.dimensions(GIF, "image/gif") == (1, 1)
    assert images.dimensions(WEBP, "image/webp") == (1, 1)
    assert images.dimensions(WEBP_VP8, "image/webp") == (3, 2)
    assert images.dimensions(WEBP_VP8X, "image/webp") == (3, 2)
    assert images.dimensions(JPEG, "image/jpeg") == (2, 2)
    # A JPEG whose frame header comes after an APP segment and fill bytes.
    app1 = b"\xff\xe1\x00\x08Exif\x00\x00"
    assert images.dimensions(JPEG[:2] + app1 + b"\xff" + JPEG[2:], "image/jpeg") == (2, 2)


async def test_too_large_by_content_length_by_stream_or_by_pixels(
        redis_url: str, data_dir: Path) -> None:
    async with server_with(redis_url, data_dir, images={"max_bytes": 4096,
                                                         "max_pixels": 10_000}) as (live, http):
        host = await create_room(http)
        # A real PNG, just over the limit (noise does not compress).
        big = png(1, 1)[:33] + b"\x00\x00\x10\x00tEXt" + bytes(4096) + png(1, 1)[33:]
        assert len(big) > 4096
        r = await upload(http, host.room_id, host.key, big)
        assert r.status_code == 413, r.text
        assert r.json()["error"] == {"code": "payload_too_large",
                                     "message": "the image is larger than 4096 bytes",
                                     "details": {"max_bytes": 4096}}

        # Content-Length alone decides: the server answers before any byte of the body.
        status, head = await raw_request(
            live, f"POST /api/rooms/{host.room_id}/images HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                  f"X-Host-Key: {host.key}\r\nContent-Type: image/png\r\n"
                  "Content-Length: 100000000\r\n\r\n")
        assert status == 413, head

        # No Content-Length (chunked): counted as it streams in.
        async def chunks() -> AsyncIterator[bytes]:
            yield png(1, 1)
            for _ in range(5):
                yield bytes(1024)

        r = await http.post(f"/api/rooms/{host.room_id}/images", content=chunks(),
                            headers={"X-Host-Key": host.key, "Content-Type": "image/png"})
        assert r.request.headers.get("transfer-encoding") == "chunked"
        assert "content-length" not in r.request.headers
        assert r.status_code == 413, r.text
        assert r.json()["error"]["code"] == "payload_too_large"

        # Small in bytes, 200x100 pixels by its header: over images.max_pixels.
        wide = png(200, 100)
        assert len(wide) < 4096
        r = await upload(http, host.room_id, host.key, wide)
        assert r.status_code == 413, r.text
        assert r.json()["error"]["details"] == {"max_pixels": 10_000, "width": 200,
                                                "height": 100}
        # Within both bounds: kept.
        assert (await upload(http, host.room_id, host.key, png(100, 100))).status_code == 201
        assert stored_files(live.settings.data_path / "images" / host.room_id) == [
            f"{hashlib.sha256(png(100, 100)).hexdigest()}.png"]


async def test_a_room_keeps_at_most_max_per_room_images(redis_url: str,
                                                        data_dir: Path) -> None:
    async with server_with(redis_url, data_dir, images={"max_per_room": 3}) as (live, http):
        host = await create_room(http)
        other = await create_room(http, "Other show")
        # Ten different images at once: exactly three are kept, whatever the order.
        shots = [png(1 + i, 1) for i in range(10)]
        answers = await asyncio.gather(*(upload(http, host.room_id, host.key, data)
                                         for data in shots))
        statuses = sorted(a.status_code for a in answers)
        assert statuses == [201] * 3 + [409] * 7, statuses
        refused = next(a for a in answers if a.status_code == 409).json()["error"]
        assert refused["code"] == "too_many_images"
        assert refused["details"] == {"max_per_room": 3}
        assert "images.max_per_room" in refused["message"]
        folder = live.settings.data_path / "images" / host.room_id
        assert len(stored_files(folder)) == 3
        # One of the three again is the same image, not a fourth.
        kept = next(shots[i] for i, a in enumerate(answers) if a.status_code == 201)
        assert (await upload(http, host.room_id, host.key, kept)).status_code == 201
        # The cap is the room's: another room has its own.
        assert (await upload(http, other.room_id, other.key, shots[9])).status_code == 201


async def test_uploads_wait_in_a_bounded_line_while_the_disk_is_held(
        redis_url: str, data_dir: Path) -> None:
    """Another process holding the room's image lock (a stalled disk, say): uploads
    wait in this process's line, at most images.MAX_WAITING of them; one more is
    answered 503 with Retry-After at once, and the line goes through once the lock is
    free (within images.lock_wait_s, here a generous minute)."""
    async with server_with(redis_url, data_dir, images={"lock_wait_s": 60.0}) as (server,
                                                                                 http):
        await _held_line(server, http)


async def _held_line(server: LiveServer, http: httpx.AsyncClient) -> None:
    host = await create_room(http)
    assert (await upload(http, host.room_id, host.key, png(1, 1))).status_code == 201
    folder = server.settings.data_path / "images" / host.room_id
    store = server.services.images
    with open(folder / ".lock", "a") as lock:  # noqa: ASYNC230 (a lock, not file I/O)
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            line = [asyncio.create_task(upload(http, host.room_id, host.key, png(2 + i, 1)))
                    for i in range(images.MAX_WAITING)]

            async def full() -> bool:
                return bool(store._waiting == images.MAX_WAITING)
            await eventually(full)
            one_more = await upload(http, host.room_id, host.key, png(99, 1))
            assert one_more.status_code == 503, one_more.text
            assert one_more.headers["retry-after"] == "2"
            assert not any(t.done() for t in line)
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)
    answers = await asyncio.gather(*line)
    assert [a.status_code for a in answers] == [201] * images.MAX_WAITING
    assert len(stored_files(folder)) == 1 + images.MAX_WAITING


async def test_an_upload_waits_for_a_held_lock_only_so_long(redis_url: str,
                                                             data_dir: Path) -> None:
    """Past images.lock_wait_s the upload is answered 503 with Retry-After (the image
    thread is free again for the next), and once the lock is free it goes through."""
    async with server_with(redis_url, data_dir, images={"lock_wait_s": 0.3}) as (server,
                                                                                http):
        host = await create_room(http)
        assert (await upload(http, host.room_id, host.key, png(1, 1))).status_code == 201
        folder = server.settings.data_path / "images" / host.room_id
        with open(folder / ".lock", "a") as lock:  # noqa: ASYNC230 (a lock, not file I/O)
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            try:
                refused = await upload(http, host.room_id, host.key, png(2, 1))
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"]["code"] == "unavailable"
        assert refused.headers["retry-after"] == "2"
        assert (await upload(http, host.room_id, host.key, png(2, 1))).status_code == 201
        assert len(stored_files(folder)) == 2


# ---------------------------------------------------------------- serving


async def test_no_name_but_a_stored_images_reaches_a_file(server: LiveServer,
                                                          http: httpx.AsyncClient) -> None:
    host = await create_room(http)
    other = await create_room(http, "Other show")
    r = await upload(http, host.room_id, host.key, png())
    url = r.json()["image_url"]
    name = url.rsplit("/", 1)[1]
    digest = name.split(".")[0]
    # Files that exist in the data directory, next to and above the images.
    data_path = server.settings.data_path
    assert (data_path / "images" / host.room_id / ".lock").is_file()
    (data_path / "images" / host.room_id / "notes.txt").write_text("private")
    room = host.room_id
    for path in [
        f"/images/{room}/{digest}.jpg",  # the right hash, the wrong type
        f"/images/{room}/{digest}.PNG",
        f"/images/{room}/{digest.upper()}.png",
        f"/images/{room}/{digest}.png.tmp",
        f"/images/{room}/{digest}",
        f"/images/{room}/.lock",
        f"/images/{room}/notes.txt",
        f"/images/{other.room_id}/{name}",  # another room's folder
        f"/images/{room}/{'0' * 64}.png",
        f"/images/{room}/..",
        f"/images/{room}/%2e%2e",
        f"/images/{room}/%2e%2e%2f%2e%2e%2forders.sqlite3",
        f"/images/{room}/..%2F..%2Fsecret.key",
        f"/images/{room}/../../orders.sqlite3",
        "/images/../secret.key",
        "/images/%2e%2e/secret.key",
        f"/images/%2e%2e/{room}%2f{name}",
        f"/images/{room}/{name}%00",
        f"/images/{room}",
        "/images/",
    ]:
        status, head = await raw_request(
            server, f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        assert status == 404, (path, head)
        assert b"content-type: application/json" in head.lower(), (path, head)
    # The name as stored still serves, through the same raw request; with a slash
    # after it, the router sends the client to it (as for every route).
    status, _ = await raw_request(
        server, f"GET {url} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    assert status == 200
    status, head = await raw_request(
        server, f"GET {url}/ HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    assert status == 307 and f"location: http://127.0.0.1{url}\r\n".encode() in head, head


async def test_the_pages_may_show_the_servers_own_images(server: LiveServer,
                                                         http: httpx.AsyncClient) -> None:
    page = await http.get("/host")
    assert re.search(r"img-src 'self'", page.headers["content-security-policy"])
    assert IMAGE_HEADERS["Content-Security-Policy"] == "default-src 'none'; sandbox"


# ---------------------------------------------------------------- a product's image


async def test_a_product_takes_an_uploaded_images_path(server: LiveServer,
                                                       http: httpx.AsyncClient) -> None:
    host = await create_room(http)
    url = (await upload(http, host.room_id, host.key, JPEG, "image/jpeg")).json()["image_url"]
    product = await host.product(image_url=url)
    assert product["image_url"] == url
    card = await host.call("GET", f"/products/{product['product_id']}", expect=200)
    assert card["image_url"] == url
    # Changed to a URL elsewhere, then back, then none.
    changed = await host.call("PATCH", f"/products/{product['product_id']}",
                              {"image_url": "https://cdn.example/lamp.jpg"}, expect=200)
    assert changed["image_url"] == "https://cdn.example/lamp.jpg"
    back = await host.call("PATCH", f"/products/{product['product_id']}",
                           {"image_url": f"  {url} "}, expect=200)
    assert back["image_url"] == url
    assert (await host.call("PATCH", f"/products/{product['product_id']}",
                            {"image_url": ""}, expect=200))["image_url"] == ""
    digest = url.rsplit("/", 1)[1].split(".")[0]
    for bad in ["/images/../x", "javascript:alert(1)", f"/images/{host.room_id}/abc.png",
                f"/images/{host.room_id}/{digest}.svg", f"/images/{host.room_id}/{digest}.jpg?x",
                f"/images/../{digest}.jpg", f"/images/{host.room_id}/../{digest}.jpg",
                f"//evil.example/{digest}.jpg", f"/images/{host.room_id}//{digest}.jpg",
                "data:image/png;base64,iVBORw0KGgo=", f"{url}x", f"{url}%00", "/etc/passwd",
                f"/static/{digest}.jpg", f"images/{host.room_id}/{digest}.jpg"]:
        r = await host.http.post(f"/api/rooms/{host.room_id}/products",
                                 json={"title": "Bad", "price": 100, "stock": 1,
                                       "image_url": bad}, headers={"X-Host-Key": host.key})
        assert r.status_code == 400, (bad, r.text)
        assert r.json()["error"]["details"] == {"field": "image_url"}, bad
        assert "uploaded image's path" in r.json()["error"]["message"]
    # A room's stream stays an http(s) URL only.
    room = await http.post("/api/rooms", json={"title": "Stream", "stream_url": url})
    assert room.status_code == 400
    assert room.json()["error"]["details"] == {"field": "stream_url"}


async def test_the_api_document_describes_the_upload(server: LiveServer,
                                                     http: httpx.AsyncClient) -> None:
    doc = (await http.get("/api/openapi.json")).json()
    op = doc["paths"]["/api/rooms/{room_id}/images"]["post"]
    assert op["requestBody"]["required"] is True
    assert op["requestBody"]["content"] == {
        media: {"schema": {"type": "string", "format": "binary"}}
        for media in ("image/png", "image/jpeg", "image/webp", "image/gif")}
    assert {"hostKey": []} in op["security"]
    assert {"201", "400", "401", "404", "409", "413", "415"} <= set(op["responses"])
    assert "images.max_bytes" in op["responses"]["413"]["description"]
    product = doc["paths"]["/api/rooms/{room_id}/products"]["post"]
    field = product["requestBody"]["content"]["application/json"]["schema"][
        "properties"]["image_url"]
    # The same whole-string pattern the server matches, as ECMAScript reads it.
    assert field["pattern"] == domain.IMAGE_URL.pattern.pattern  # type: ignore[union-attr]
    assert "/images/" in field["pattern"]
    assert not any(p.startswith("/images") for p in doc["paths"])


def test_image_settings_are_checked() -> None:
    s = load_settings(None, env={})
    assert (s.images.max_bytes, s.images.max_pixels, s.images.max_per_room) == (
        2 * 1024 * 1024, 40_000_000, 200)
    for key, value, said in [("max_bytes", 10, "images.max_bytes: 10 is below"),
                             ("max_bytes", "lots", "images.max_bytes: expected an integer"),
                             ("max_pixels", 0, "images.max_pixels: 0 is below"),
                             ("max_per_room", 10**9, "images.max_per_room: 1000000000 is "
                                                     "above")]:
        with pytest.raises(SettingsError, match=re.escape(said)):
            load_settings(None, env={}, overrides={"images": {key: value}})
    s = load_settings(None, env={"LIVESELL_IMAGES_MAX_BYTES": "65536"})
    assert s.images.max_bytes == 65536


async def test_a_dead_writers_temporary_file_is_swept_a_live_ones_kept(
        server: LiveServer, http: httpx.AsyncClient) -> None:
    """A process killed mid-write leaves `.<hash>.<ext>.<pid>.<rand>.tmp`: the next
    upload to the room removes it once no process has that pid, and never touches
    one whose writer still runs."""
    import os
    import sys

    host = await create_room(http)
    assert (await upload(http, host.room_id, host.key, png(1, 1))).status_code == 201
    folder = server.settings.data_path / "images" / host.room_id
    gone = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "import os; print(os.getpid())",
        stdout=asyncio.subprocess.PIPE)
    out, _ = await gone.communicate()  # it has exited: no process has its pid now
    dead_pid = int(out)
    dead = folder / f".{'a' * 64}.png.{dead_pid}.0123abcd.tmp"
    alive = folder / f".{'b' * 64}.png.{os.getpid()}.0123abcd.tmp"
    for path in (dead, alive):
        path.write_bytes(b"half an image")
    assert (await upload(http, host.room_id, host.key, png(2, 1))).status_code == 201
    assert not dead.exists() and alive.exists()
    alive.unlink()
