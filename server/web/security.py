"""Browser hardening at the HTTP edge: the security headers every HTTP response
carries (a pure ASGI middleware) and the Origin rule for the viewer WebSocket.

The Content-Security-Policy allows scripts, styles and fonts from the server
only (the pages have no inline script, handler or style), media and images from
`security.media_sources` (a room's stream and product images may live on a
CDN), fetches from the server and from `security.media_sources` too (hls.js
loads a stream's playlists and segments with fetch/XHR where the browser has no
HLS of its own), media from blob: URLs (hls.js hands the video element a
MediaSource through one), and WebSocket connections to the host the page was
loaded from: CSP 'self' does not cover ws:/wss: in every browser, so the
request's Host is written into connect-src. Workers fall back to script-src
'self': hls.js's worker is loaded from the server (/static/vendor/), never from
a blob:. Framing is refused unless `security.frame_ancestors`
lists origins. WebSocket scopes pass straight through: the fan-out path pays
nothing. Pure apart from the ASGI plumbing; the origin grammar and the Origin
rule live in server/core/netrules.py (settings check their values with it) and
are re-exported here for the app.
"""

from __future__ import annotations

from typing import Final

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.core.netrules import HOST_PATTERN, normalize_origin, origin_allowed, parse_origin_list
from server.core.settings import SecuritySettings

# Distinct Host headers whose policy is remembered; a client can send any Host,
# so the cache is bounded and simply starts over when full.
_POLICY_CACHE_SIZE: Final = 256


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
                      f"img-src 'self' data: {media}; media-src 'self' blob: {media}; "
                      "font-src 'self'; object-src 'none'; base-uri 'none'; "
                      f"form-action 'self'; frame-ancestors {frame_ancestors}; "
                      f"connect-src 'self' {media}".rstrip())
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
            if len(text) > 255 or not HOST_PATTERN.fullmatch(text):
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
