"""Browser hardening at the HTTP edge: the security headers every HTTP response
carries (a pure ASGI middleware) and the Origin rule for the viewer WebSocket.

The Content-Security-Policy allows scripts, styles and fonts from the server
only (the pages have no inline script, handler or style), media and images from
`security.media_sources` (a room's stream and product images may live on a
CDN), and WebSocket connections to the host the page was loaded from: CSP
'self' does not cover ws:/wss: in every browser, so the request's Host is
written into connect-src. Framing is refused unless `security.frame_ancestors`
lists origins. WebSocket scopes pass straight through: the fan-out path pays
nothing. Pure apart from the ASGI plumbing.
"""

from __future__ import annotations

import functools
import re
from typing import Final

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.core.settings import SecuritySettings

REFERRER_POLICIES: Final = frozenset({
    "no-referrer", "no-referrer-when-downgrade", "origin", "origin-when-cross-origin",
    "same-origin", "strict-origin", "strict-origin-when-cross-origin", "unsafe-url",
})
# A CSP source for media and images: a scheme, 'self', or an origin (with an
# optional leading wildcard label). No quotes other than 'self', no ';' or ','.
MEDIA_SOURCE_PATTERN: Final = re.compile(
    r"^(?:'self'|[a-z][a-z0-9+.-]*:|https?://(?:\*\.)?[a-z0-9.-]+(?::[0-9]{1,5})?)$",
    re.IGNORECASE)
_HOSTNAME = r"(?P<name>[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?|\[[0-9a-f:.]+\])"
_ORIGIN: Final = re.compile(rf"^(?P<scheme>https?)://{_HOSTNAME}(?::(?P<port>[0-9]{{1,5}}))?/?$")
_HOST: Final = re.compile(rf"^{_HOSTNAME}(?::(?P<port>[0-9]{{1,5}}))?$")
_DEFAULT_PORT: Final = {"http": 80, "https": 443}
# Distinct Host headers whose policy is remembered; a client can send any Host,
# so the cache is bounded and simply starts over when full.
_POLICY_CACHE_SIZE: Final = 256


def _split_origin(origin: str) -> tuple[str, str, int] | None:
    """(scheme, host name, port) of an http(s) origin, or None when it is not one."""
    m = _ORIGIN.match(origin.strip().lower())
    if m is None:
        return None
    scheme = m["scheme"]
    port = int(m["port"]) if m["port"] else _DEFAULT_PORT[scheme]
    if not 0 < port < 65536:
        return None
    return scheme, m["name"], port


def normalize_origin(origin: str) -> str | None:
    """`scheme://host[:port]` in lower case without a default port, or None."""
    parts = _split_origin(origin)
    if parts is None:
        return None
    scheme, name, port = parts
    return f"{scheme}://{name}" if port == _DEFAULT_PORT[scheme] else f"{scheme}://{name}:{port}"


@functools.lru_cache(maxsize=16)
def parse_origin_list(text: str) -> frozenset[str]:
    """Space- or comma-separated origins, normalised; ValueError names a bad one."""
    origins = set()
    for item in text.replace(",", " ").split():
        origin = normalize_origin(item)
        if origin is None:
            raise ValueError(f"{item!r} is not an origin like https://shop.example "
                             "or http://127.0.0.1:8000")
        origins.add(origin)
    return frozenset(origins)


def origin_allowed(origin: str | None, host: str | None, allowed: str = "") -> bool:
    """May a page from `origin` open the WebSocket whose handshake named `host`?

    No Origin header: not a browser (the load tester, scripts), allowed, since
    Origin only protects browser users from other sites' pages. Otherwise the
    origin must be the server's own (same host and port as the Host header) or
    listed in `allowed` (the `security.websocket_origins` text).
    """
    if origin is None:
        return True
    parts = _split_origin(origin)
    if parts is None:
        return False  # "null" (sandboxed frames, files) and anything malformed
    scheme, name, port = parts
    if host is not None:
        m = _HOST.match(host.strip().lower())
        if m is not None and m["name"] == name and (
                int(m["port"]) if m["port"] else _DEFAULT_PORT[scheme]) == port:
            return True
    return bool(allowed) and normalize_origin(origin) in parse_origin_list(allowed)


class SecurityHeaders:
    """ASGI middleware adding the browser security headers to every HTTP response.

    Headers a response sets itself are kept. Install it outside Starlette's
    ServerErrorMiddleware so that 500 answers carry the headers too.
    """

    def __init__(self, app: ASGIApp, settings: SecuritySettings) -> None:
        self.app = app
        ancestors = " ".join(sorted(parse_origin_list(settings.frame_ancestors)))
        frame_ancestors = ancestors or "'none'"
        media = " ".join(settings.media_sources.split())
        self._head = ("default-src 'self'; script-src 'self'; style-src 'self'; "
                      f"img-src 'self' data: {media}; media-src 'self' {media}; "
                      "font-src 'self'; object-src 'none'; base-uri 'none'; "
                      f"form-action 'self'; frame-ancestors {frame_ancestors}; "
                      "connect-src 'self'")
        fixed = [("x-content-type-options", b"nosniff"),
                 ("referrer-policy", settings.referrer_policy.encode("latin-1"))]
        if not ancestors:
            fixed.append(("x-frame-options", b"DENY"))
        self._fixed = tuple(fixed)
        self._policies: dict[bytes, bytes] = {}

    def policy_for(self, host: bytes) -> bytes:
        """The CSP for a page requested with this Host header."""
        policy = self._policies.get(host)
        if policy is None:
            text = host.decode("latin-1").strip().lower()
            # Only a well-formed host goes into the header: a ';' would add directives.
            if len(text) > 255 or not _HOST.match(text):
                # Not cached: a stranger's odd or huge Host must not pin memory.
                return self._head.encode("latin-1")
            policy = f"{self._head} ws://{text} wss://{text}".encode("latin-1")
            if len(self._policies) >= _POLICY_CACHE_SIZE:
                self._policies.clear()
            self._policies[host] = policy
        return policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        host = b""
        for name, value in scope["headers"]:
            if name == b"host":
                host = value
                break
        policy = self.policy_for(host)
        fixed = self._fixed

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                if "content-security-policy" not in headers:
                    headers.raw.append((b"content-security-policy", policy))
                for name, value in fixed:
                    if name not in headers:
                        headers.raw.append((name.encode("latin-1"), value))
            await send(message)

        await self.app(scope, receive, send_with_headers)


__all__ = ["SecurityHeaders", "normalize_origin", "origin_allowed", "parse_origin_list"]
