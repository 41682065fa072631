"""Browser hardening (server/web/security.py, server/core/text.py, identity): the security
headers on every kind of response, the WebSocket Origin rule with real clients,
and nickname and chat text cleaning, against a real server."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from server.core.identity import clean_nickname, is_reserved_nickname
from server.core.settings import SettingsError, load_settings
from server.core.text import clean_text
from server.web.security import normalize_origin, origin_allowed
from tests.support import LiveServer, create_room, join, make_settings

CLIENT_DIR = Path(__file__).resolve().parent.parent / "client_demo"


async def boom(request: Request) -> Response:
    raise RuntimeError("an unexpected fault, on purpose")


@pytest.fixture
async def hardened(redis_url: str, data_dir: Path) -> AsyncIterator[LiveServer]:
    """The default server plus one route that fails unexpectedly (a 500 answer)."""
    live = LiveServer(make_settings(redis_url, data_dir))
    live.app.router.routes.append(Route("/test-boom", boom))
    await live.start()
    try:
        yield live
    finally:
        await live.stop()


def assert_hardened(response: httpx.Response, port: int) -> None:
    what = f"{response.request.method} {response.request.url.path} ({response.status_code})"
    csp = response.headers.get("content-security-policy")
    assert csp is not None, what
    directives = {d.split()[0]: d.split()[1:] for d in csp.split("; ")}
    assert directives["default-src"] == ["'self'"], what
    assert directives["script-src"] == ["'self'"], what
    assert directives["style-src"] == ["'self'"], what
    assert directives["object-src"] == ["'none'"], what
    assert directives["frame-ancestors"] == ["'none'"], what
    # The stream's sources for hls.js's fetches (client_demo/js/video.js), then this host.
    assert directives["connect-src"] == ["'self'", "https:", "http:", f"ws://127.0.0.1:{port}",
                                         f"wss://127.0.0.1:{port}"], what
    # blob: is the MediaSource hls.js plays through.
    assert directives["media-src"] == ["'self'", "blob:", "https:", "http:"], what
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp, what
    assert response.headers.get("x-frame-options") == "DENY", what
    assert response.headers.get("x-content-type-options") == "nosniff", what
    assert response.headers.get("referrer-policy") == "same-origin", what


async def test_every_kind_of_response_carries_the_headers(hardened: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=hardened.base, timeout=30) as http:
        host = await create_room(http)
        checks = [
            ("GET", "/", None, 200),
            ("GET", f"/r/{host.room_id}", None, 200),
            ("GET", "/host", None, 200),
            ("GET", "/static/js/viewer.js", None, 200),
            ("GET", "/static/css/base.css", None, 200),
            ("GET", "/api/time", None, 200),
            ("GET", f"/api/rooms/{host.room_id}", None, 200),
            ("GET", "/api/rooms/nosuchroom", None, 404),  # a refusal (LivesellError)
            ("GET", "/no/such/path", None, 404),  # Starlette's HTTPException
            ("GET", "/static/missing.js", None, 404),
            ("DELETE", "/api/time", None, 405),
            ("POST", "/api/session", b"{not json", 400),
            ("GET", "/test-boom", None, 500),  # answered by ServerErrorMiddleware
        ]
        for method, path, body, status in checks:
            response = await http.request(method, path, content=body)
            assert response.status_code == status, (path, response.text)
            assert_hardened(response, hardened.port)
        page = await http.get("/")
        assert page.headers["content-type"].startswith("text/html")


async def test_embedding_shops_and_media_sources_are_configurable(
        redis_url: str, data_dir: Path) -> None:
    settings = make_settings(redis_url, data_dir, security={
        "frame_ancestors": "https://shop.example https://WWW.shop.example:443",
        "media_sources": "https://cdn.example", "referrer_policy": "no-referrer"})
    live = await LiveServer(settings).start()
    try:
        async with httpx.AsyncClient(base_url=live.base, timeout=30) as http:
            response = await http.get("/")
        csp = response.headers["content-security-policy"]
        assert "frame-ancestors https://shop.example https://www.shop.example;" in csp
        assert "media-src 'self' blob: https://cdn.example;" in csp
        assert "connect-src 'self' https://cdn.example ws://" in csp
        assert "img-src 'self' data: https://cdn.example;" in csp
        assert "x-frame-options" not in response.headers
        assert response.headers["referrer-policy"] == "no-referrer"
    finally:
        await live.stop()


async def test_a_host_header_cannot_add_policy_directives(hardened: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=hardened.base, timeout=30) as http:
        response = await http.get("/", headers={"Host": "evil; script-src *"})
    csp = response.headers["content-security-policy"]
    assert "evil" not in csp and "script-src *" not in csp
    assert csp.endswith("connect-src 'self' https: http:")


def test_security_settings_are_checked() -> None:
    for key, value in [("frame_ancestors", "shop.example"),
                       ("frame_ancestors", "https://shop.example/path"),
                       ("websocket_origins", "javascript:alert(1)"),
                       ("media_sources", "https: 'unsafe-inline'"),
                       ("media_sources", "https://cdn.example;script-src"),
                       ("referrer_policy", "sometimes")]:
        with pytest.raises(SettingsError, match=f"security.{key}"):
            load_settings(None, env={}, overrides={"security": {key: value}})


# ---------------------------------------------------------------- WebSocket Origin


def test_origin_rule() -> None:
    assert origin_allowed(None, "127.0.0.1:8000")  # not a browser
    assert origin_allowed("http://127.0.0.1:8000", "127.0.0.1:8000")
    assert origin_allowed("https://Shop.Example", "shop.example")
    assert origin_allowed("https://shop.example", "shop.example:443")
    assert origin_allowed("http://shop.example:80", "shop.example")
    assert not origin_allowed("http://shop.example", "shop.example:443")
    assert not origin_allowed("http://127.0.0.1:8001", "127.0.0.1:8000")
    assert not origin_allowed("https://evil.example", "shop.example")
    assert not origin_allowed("null", "shop.example")
    assert not origin_allowed("https://evil.example", None)
    assert origin_allowed("https://www.shop.example", "api.shop.example",
                          "https://shop.example https://www.shop.example")
    assert normalize_origin("HTTPS://Shop.Example:443/") == "https://shop.example"
    assert normalize_origin("ftp://shop.example") is None


async def test_a_foreign_origin_is_refused_at_the_handshake(hardened: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=hardened.base, timeout=30) as http:
        host = await create_room(http)
    url = hardened.ws_url(host.room_id)
    for origin in ("https://evil.example", f"http://127.0.0.1:{hardened.port + 1}", "null"):
        with pytest.raises(InvalidStatus) as refused:
            async with connect(url, origin=origin, open_timeout=30):  # type: ignore[arg-type]
                pass
        assert refused.value.response.status_code == 403, origin
    # Same origin (what the viewer page sends) and no Origin (the load tester) join.
    async with connect(url, origin=f"http://127.0.0.1:{hardened.port}",  # type: ignore[arg-type]
                       open_timeout=30) as ws:
        assert '"welcome"' in str(await asyncio.wait_for(ws.recv(), 30))
    viewer = await join(hardened, host.room_id)
    await viewer.close()


async def test_listed_origins_may_open_the_socket(redis_url: str, data_dir: Path) -> None:
    settings = make_settings(redis_url, data_dir,
                             security={"websocket_origins": "https://shop.example"})
    live = await LiveServer(settings).start()
    try:
        async with httpx.AsyncClient(base_url=live.base, timeout=30) as http:
            host = await create_room(http)
        url = live.ws_url(host.room_id)
        async with connect(url, origin="https://shop.example",  # type: ignore[arg-type]
                           open_timeout=30) as ws:
            assert '"welcome"' in str(await asyncio.wait_for(ws.recv(), 30))
        with pytest.raises(InvalidStatus) as refused:
            async with connect(url, origin="https://other.example",  # type: ignore[arg-type]
                               open_timeout=30):
                pass
        assert refused.value.response.status_code == 403
    finally:
        await live.stop()


# ---------------------------------------------------------------- pages


def test_pages_have_no_inline_script_style_or_handler() -> None:
    for page in CLIENT_DIR.glob("*.html"):
        html = page.read_text(encoding="utf-8")
        for script in re.findall(r"<script\b[^>]*>", html, re.IGNORECASE):
            assert "src=" in script, f"{page.name}: inline script {script}"
        assert not re.search(r"<style\b", html, re.IGNORECASE), page.name
        assert not re.search(r"\sstyle\s*=", html, re.IGNORECASE), page.name
        assert not re.search(r"\son[a-z]+\s*=", html, re.IGNORECASE), page.name
        assert "javascript:" not in html.lower(), page.name


# ---------------------------------------------------------------- nicknames and chat


def test_text_cleaning() -> None:
    assert clean_text("\uff33\uff41\uff4c\uff45 \uff15\uff10\uff05") == "Sale 50%"
    assert clean_text("a\u202eb\u2066c\u2069\u200ed\u200f") == "abcd"
    assert clean_text("z\u200bw\u200cj\u200dn\u2060x\ufeff") == "zwjnx"
    assert clean_text("plain ascii") == "plain ascii"
    for name in ("Host", "HOST", "\uff48\uff4f\uff53\uff54", "H.O.S.T", "h o s t",
                 "Ho\u200bst", "Admin", "the host", "Moderator 1", "LiveSell", "Official"):
        assert is_reserved_nickname(name), name
    for name in ("Hostess", "Ann", "Moderna", "ghost", "Adminton"):
        assert not is_reserved_nickname(name), name
    assert clean_nickname("Ann\u202e\u200f", 32) == "Ann"
    assert clean_nickname("\uff2d\uff49\uff41", 32) == "Mia"


async def test_reserved_and_invisible_nicknames(server: LiveServer,
                                                http: httpx.AsyncClient) -> None:
    for name in ("Host", "\uff21\uff24\uff2d\uff29\uff2e", "h.o.s.t", "Mod\u200b"):
        response = await http.post("/api/session", json={"nickname": name})
        assert response.status_code == 400, name
        error = response.json()["error"]
        assert error["code"] == "nickname_reserved" and "reserved" in error["message"], name
    for sent, kept in (("Ann\u202etxt", "Anntxt"), ("Z\u200bed", "Zed"),
                       ("\uff2d\uff49\uff41", "Mia")):
        response = await http.post("/api/session", json={"nickname": sent})
        assert response.status_code == 201 and response.json()["nickname"] == kept, sent
    response = await http.post("/api/session", json={"nickname": "\u200b\u202e"})
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "nickname: required"
    # On the socket, a refused nickname gets a guest name, as any invalid one does.
    host = await create_room(http)
    viewer = await join(server, host.room_id, nickname=quote("Host"))
    welcome = next(f for f in viewer.frames if f.get("type") == "welcome")
    assert re.fullmatch(r"guest-[0-9a-f]{4}", welcome["viewer"]["nickname"])
    await viewer.close()


async def test_chat_text_is_cleaned_and_only_the_host_is_marked(
        server: LiveServer, http: httpx.AsyncClient) -> None:
    host = await create_room(http)
    console = await join(server, host.room_id, host_key=host.key)
    viewer = await join(server, host.room_id, nickname="Ann")
    await viewer.send({"type": "chat", "text": "\u202egnp.exe \u200b\uff28\uff49"})
    chat = await viewer.next_event("chat")
    assert chat["text"] == "gnp.exe Hi" and "host" not in chat
    reply = await viewer.request("chat", text="\u200b\u2066\u2069")
    assert reply["type"] == "error" and reply["code"] == "bad_request"
    await console.send({"type": "chat", "text": "Welcome"})
    chat = await viewer.next_event("chat", where=lambda f: f["text"] == "Welcome")
    assert chat["host"] is True
    await asyncio.gather(console.close(), viewer.close())
