"""The streams folder (server/features/streams.py, served by server/web/routes.py and
server/web/filesend.py) and the browser libraries the pages load (hls.js at
/static/vendor/), against a real server on port 0: each HLS file type is sent
with its media type and cache rule, byte ranges are honoured, nothing but a file
inside the folder is ever sent however the path is spelled (dot segments raw and
escaped, absolute paths, NULs, backslashes, links out of the folder, FIFOs, folders),
an open file keeps the bytes it was opened with, and a room's stream_url takes a
/streams/ path and nothing looser."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import httpx
import pytest

from server.core import domain
from server.features.streams import MEDIA_TYPES, StreamFolder
from server.web import routes
from server.web.filesend import byte_range
from tests.support import LiveServer, create_room, server_with

PLAYLIST = b"#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.0,\nseg0.ts\n#EXT-X-ENDLIST\n"
# Bytes enough to tell files apart and to ask ranges of (not real media: the browser
# test plays real segments, tests/browser/test_hls.py).
FILES = {
    "show/index.m3u8": PLAYLIST,
    "show/seg0.ts": b"\x47" + bytes(range(256)) * 4,
    "show/seg0.m4s": b"moof" + bytes(300),
    "show/init.mp4": b"ftypiso6" + bytes(100),
    "show/seg0.aac": b"\xff\xf1" + bytes(50),
    "show/sub0.vtt": b"WEBVTT\n\n00:00.000 --> 00:01.000\nhello\n",
    "a/b/c/d/e/f/g/deep.ts": b"deep",
}
SECRET = b"SECRET-OUTSIDE-THE-STREAMS-FOLDER"


def lay_out(server: LiveServer) -> Path:
    """The files an encoder would leave, plus a secret beside (not in) the folder."""
    folder = server.settings.stream_dir
    for name, data in FILES.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    (folder.parent / "secret.ts").write_bytes(SECRET)
    (folder.parent / "secret.m3u8").write_bytes(SECRET)
    return folder


def raw_get(port: int, target: bytes) -> tuple[int, bytes]:
    """GET `target` exactly as written (clients resolve `..` before sending)."""
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Connection: close\r\n\r\n")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return int(answer.split(b" ", 2)[1]), answer


async def test_each_file_type_is_served_with_its_type_and_cache_rule(
        server: LiveServer, http: httpx.AsyncClient) -> None:
    lay_out(server)
    for name, data in FILES.items():
        r = await http.get(f"/streams/{name}")
        assert r.status_code == 200, (name, r.text)
        assert r.content == data, name
        ext = name.rsplit(".", 1)[1]
        assert r.headers["content-type"].split(";")[0] == MEDIA_TYPES[ext], name
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["content-security-policy"] == "default-src 'none'; sandbox"
        assert r.headers["accept-ranges"] == "bytes"
        assert r.headers["content-length"] == str(len(data))
        assert "last-modified" in r.headers
        # Playlists change with every segment; segments do not.
        expected = "no-cache" if ext == "m3u8" else "public, max-age=3600"
        assert r.headers["cache-control"] == expected, name
    assert {n.rsplit(".", 1)[1] for n in FILES} == set(MEDIA_TYPES)
    assert MEDIA_TYPES["m3u8"] == "application/vnd.apple.mpegurl"
    assert MEDIA_TYPES["ts"] == "video/mp2t"
    head = await http.head("/streams/show/seg0.ts")
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == str(len(FILES["show/seg0.ts"]))


async def test_byte_ranges(server: LiveServer, http: httpx.AsyncClient) -> None:
    lay_out(server)
    data = FILES["show/seg0.ts"]
    size = len(data)
    for header, first, last in [("bytes=2-5", 2, 5), ("bytes=10-", 10, size - 1),
                                ("bytes=-7", size - 7, size - 1),
                                (f"bytes=3-{size * 2}", 3, size - 1)]:
        r = await http.get("/streams/show/seg0.ts", headers={"Range": header})
        assert r.status_code == 206, header
        assert r.content == data[first:last + 1], header
        assert r.headers["content-range"] == f"bytes {first}-{last}/{size}", header
        assert r.headers["content-length"] == str(last - first + 1), header
    # Past the end: 416 with the size.
    r = await http.get("/streams/show/seg0.ts", headers={"Range": f"bytes={size}-"})
    assert r.status_code == 416 and r.headers["content-range"] == f"bytes */{size}"
    # Several ranges, nonsense, or a stale If-Range: the whole file.
    for headers in [{"Range": "bytes=0-1,5-6"}, {"Range": "bytes=5-2"}, {"Range": "lines=1-2"},
                    {"Range": "bytes=0-1", "If-Range": "Wed, 21 Oct 2015 07:28:00 GMT"}]:
        r = await http.get("/streams/show/seg0.ts", headers=headers)
        assert (r.status_code, r.content) == (200, data), headers


def test_the_range_rule() -> None:
    assert byte_range(None, 10) is None
    assert byte_range("bytes=0-0", 10) == (0, 0)
    assert byte_range("bytes=-20", 10) == (0, 9)
    assert byte_range("bytes=-0", 10) is False
    assert byte_range("bytes=0-", 0) is False
    assert byte_range("bytes=-", 10) is None
    assert byte_range("bytes=" + "9" * 30 + "-", 10) is None  # not a number we take


async def test_what_is_not_a_served_file_is_404(server: LiveServer,
                                                http: httpx.AsyncClient) -> None:
    folder = lay_out(server)
    (folder / "show" / ".hidden.ts").write_bytes(SECRET)
    (folder / "show" / "index.m3u8.tmp").write_bytes(SECRET)  # an encoder's temporary
    (folder / "show" / "notes.txt").write_bytes(SECRET)
    (folder / "show" / "noext").write_bytes(SECRET)
    (folder / "show" / "folder.ts").mkdir()
    os.mkfifo(folder / "show" / "pipe.ts")  # opened without waiting for a writer
    for path in ["show/missing.ts", "show", "show/", "", "show/.hidden.ts",
                 "show/index.m3u8.tmp", "show/notes.txt", "show/noext", "show/folder.ts",
                 "show/pipe.ts", "show/INDEX.M3U8", "a/b/c/d/e/f/g/h/deep.ts",
                 "show//index.m3u8"]:
        r = await http.get(f"/streams/{path}")
        assert r.status_code == 404, path
        assert r.json()["error"]["code"] == "not_found", path
        assert SECRET not in r.content
    # (Starlette sends /streams on to /streams/, which is no file either.)
    assert (await http.get("/streams", follow_redirects=True)).status_code == 404


async def test_no_path_leads_out_of_the_folder(server: LiveServer,
                                               http: httpx.AsyncClient) -> None:
    folder = lay_out(server)
    outside = folder.parent
    # Links out of the folder, to a file and to a folder; a link inside it is fine.
    (folder / "show" / "out.ts").symlink_to(outside / "secret.ts")
    (folder / "show" / "out.m3u8").symlink_to("../../secret.m3u8")
    (folder / "away").symlink_to(outside)
    (folder / "show" / "same.ts").symlink_to(folder / "show" / "seg0.ts")
    for path in ["show/out.ts", "show/out.m3u8", "away/secret.ts", "away/secret.m3u8"]:
        r = await http.get(f"/streams/{path}")
        assert r.status_code == 404 and SECRET not in r.content, path
    assert (await http.get("/streams/show/same.ts")).content == FILES["show/seg0.ts"]
    # Dot segments, raw (as a client that does not resolve them sends them) and
    # escaped, absolute paths, NULs, backslashes.
    targets = [b"/streams/../secret.ts", b"/streams/show/../../secret.ts",
               b"/streams/%2e%2e/secret.ts", b"/streams/%2E%2E%2Fsecret.ts",
               b"/streams/show/%2e%2e/%2e%2e/secret.ts", b"/streams/..%2fsecret.m3u8",
               b"/streams/.%2e/secret.ts", b"/streams//" + str(outside).encode() + b"/secret.ts",
               b"/streams/%2f" + str(outside).encode().lstrip(b"/") + b"/secret.ts",
               b"/streams/show/seg0.ts%00", b"/streams/show/%00/../../secret.ts",
               b"/streams/..%5csecret.ts", b"/streams/show%5c..%5c..%5csecret.ts",
               b"/streams/show/./seg0.ts", b"/streams/%2e/show/seg0.ts"]
    for target in targets:
        status, answer = await asyncio.to_thread(raw_get, server.port, target)
        assert status == 404, (target, answer[:200])
        assert b'"no such stream file"' in answer, target  # refused by the folder's rule
        assert SECRET not in answer, target
    # The same file by its plain path is served (the refusals above are of the path).
    status, answer = await asyncio.to_thread(raw_get, server.port, b"/streams/show/seg0.ts")
    assert status == 200 and answer.endswith(FILES["show/seg0.ts"])


def test_an_open_file_keeps_its_bytes(tmp_path: Path) -> None:
    """An encoder renames a new playlist over the old one and deletes old segments:
    what was opened is what is sent."""
    folder = StreamFolder(tmp_path)
    (tmp_path / "show").mkdir()
    playlist = tmp_path / "show" / "index.m3u8"
    playlist.write_bytes(PLAYLIST)
    segment = tmp_path / "show" / "seg0.ts"
    segment.write_bytes(b"segment bytes")
    opened = folder.open("show/index.m3u8")
    old_segment = folder.open("show/seg0.ts")
    assert opened is not None and old_segment is not None
    try:
        assert opened.playlist and not old_segment.playlist
        newer = tmp_path / "show" / "index.m3u8.tmp"
        newer.write_bytes(PLAYLIST + b"#EXTINF:2.0,\nseg1.ts\n")
        os.replace(newer, playlist)
        segment.unlink()
        assert os.pread(opened.file.fileno(), 4096, 0) == PLAYLIST
        assert os.pread(old_segment.file.fileno(), 4096, 0) == b"segment bytes"
    finally:
        opened.close()
        old_segment.close()
    # The folder need not exist (no encoder has written yet).
    assert StreamFolder(tmp_path / "none").open("show/index.m3u8") is None


async def test_the_folder_and_the_segment_lifetime_are_settings(redis_url: str,
                                                                data_dir: Path,
                                                                tmp_path: Path) -> None:
    encoder_dir = tmp_path / "encoder-out"
    (encoder_dir / "live").mkdir(parents=True)
    (encoder_dir / "live" / "seg1.m4s").write_bytes(b"seg")
    async with server_with(redis_url, data_dir, streams={
            "dir": str(encoder_dir), "segment_max_age_s": 0}) as (live, http):
        assert live.settings.stream_dir == encoder_dir.resolve()
        r = await http.get("/streams/live/seg1.m4s")
        assert (r.status_code, r.content) == (200, b"seg")
        assert r.headers["cache-control"] == "no-cache"


async def test_a_room_streams_from_the_folder(server: LiveServer,
                                              http: httpx.AsyncClient) -> None:
    local = "/streams/show/index.m3u8"
    made = await http.post("/api/rooms", json={"title": "Local", "stream_url": local})
    assert made.status_code == 201, made.text
    assert made.json()["room"]["stream_url"] == local
    host = await create_room(http)
    for good in [local, "/streams/a", "/streams/" + "/".join(["d"] * domain.STREAM_DEPTH),
                 "https://cdn.example/live.m3u8", ""]:
        r = await host.call("PATCH", "", {"stream_url": good})
        assert r["stream_url"] == good, r
    for bad in ["/streams/", "/streams", "/streams/../x.m3u8", "/streams/a/../b.m3u8",
                "/streams/.a.m3u8", "/streams//a.m3u8", "/streams/a/", "/streams/a?x=1",
                "/streams/a#x", "/streams/a%2e%2e", "/streams/a\\b", "/streams/a b",
                "/static/x.m3u8", "streams/a.m3u8", "//cdn.example/a.m3u8", "/streams/a\x00",
                "/streams/" + "/".join(["d"] * (domain.STREAM_DEPTH + 1)),
                "/streams/" + "x" * 129, "javascript:alert(1)", "file:///etc/passwd"]:
        r = await http.patch(f"/api/rooms/{host.room_id}", json={"stream_url": bad},
                             headers={"X-Host-Key": host.key})
        assert r.status_code == 400, (bad, r.text)
        assert r.json()["error"]["details"] == {"field": "stream_url"}, bad


# ---------------------------------------------------------------- hls.js


def installed() -> bool:
    return routes.vendor_file("hls.mjs") is not None


async def test_hls_js_is_served_from_the_installed_package(http: httpx.AsyncClient) -> None:
    if not installed() and not os.environ.get("CI"):
        pytest.skip("hls.js is not installed (npm ci --omit=dev)")
    for name in routes.VENDOR_FILES:
        r = await http.get(f"/static/vendor/{name}")
        assert r.status_code == 200, (name, r.text)
        assert r.headers["content-type"].split(";")[0] == "text/javascript"
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["cache-control"] == "no-cache"
        assert r.content == (routes.NODE_MODULES / routes.VENDOR_FILES[name]).read_bytes()
    module = (await http.get("/static/vendor/hls.mjs")).text
    assert "export{" in module.replace(" ", "")  # the ES module build the pages import
    # Only those files: not the package's other builds, maps or anything by path.
    for other in ["hls.min.mjs", "hls.js", "hls.min.mjs.map", "package.json",
                  "..%2fpackage.json", "%2e%2e", "dist%2fhls.js"]:
        r = await http.get(f"/static/vendor/{other}")
        assert r.status_code == 404, other
        assert r.json()["error"]["code"] == "not_found", other
    r = await http.get("/static/vendor/")
    assert r.status_code == 404


def test_without_hls_js_the_route_says_it_is_not_installed(tmp_path: Path) -> None:
    assert routes.vendor_file("hls.mjs", tmp_path) is None
    assert routes.vendor_file("nope.js", tmp_path) is None
    dist = tmp_path / "hls.js" / "dist"
    dist.mkdir(parents=True)
    (dist / "hls.min.mjs").write_text("export default 1;")
    assert routes.vendor_file("hls.mjs", tmp_path) == dist / "hls.min.mjs"
    assert routes.vendor_file("hls.worker.js", tmp_path) is None
    assert "npm ci" in routes.HLS_MISSING and "not installed" in routes.HLS_MISSING
