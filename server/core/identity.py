"""Viewer identity: guest sessions as signed tokens.

A token is `base64url(json payload) + "." + base64url(HMAC-SHA256)`; the
payload holds the viewer id, nickname, expiry and whether the identity was
verified by the shop (server/core/shop_identity.py). Nothing is stored
server-side, so a viewer keeps its identity across reconnects and across
server processes that share the secret. Pure.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass
from typing import Final

import orjson

from server.core.domain import new_id
from server.core.errors import BadRequest
from server.core.text import clean_text

NICK_PATTERN: Final = re.compile(r"^[^\x00-\x1f\x7f<>&\"']+$")
# Names a viewer may not take because viewers would read them as the shop's
# staff; compared case-insensitively word by word and with the words joined
# (so "H.O.S.T" and "Host Team" count). Host messages are marked by the
# server's `host` flag, never by name.
RESERVED_NAMES: Final = frozenset({
    "host", "admin", "administrator", "moderator", "mod", "livesell", "system",
    "staff", "official", "support", "seller",
})
_WORD: Final = re.compile(r"[^\W_]+")


@dataclass(frozen=True, slots=True)
class Viewer:
    viewer_id: str
    nickname: str
    expires_at: int
    # Signed by the shop's login (a shop JWT), not a guest minted on request.
    verified: bool = False


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def is_reserved_nickname(nickname: str) -> bool:
    words = _WORD.findall(clean_text(nickname).casefold())
    return "".join(words) in RESERVED_NAMES or any(w in RESERVED_NAMES for w in words)


def clean_nickname(nickname: str, max_len: int) -> str:
    """Nicknames are shown to everyone: normalise them, refuse markup characters,
    control codes and names that pose as the shop (RESERVED_NAMES)."""
    nickname = " ".join(clean_text(nickname).split())
    if not nickname:
        raise BadRequest("nickname: required", details={"field": "nickname"})
    if len(nickname) > max_len:
        raise BadRequest(f"nickname: must be at most {max_len} characters",
                         details={"field": "nickname"})
    if not NICK_PATTERN.fullmatch(nickname):
        raise BadRequest("nickname: must not contain < > & \" ' or control characters",
                         details={"field": "nickname"})
    if is_reserved_nickname(nickname):
        raise BadRequest("nickname: names such as Host or Admin are reserved for the shop; "
                         "choose another",
                         code="nickname_reserved", details={"field": "nickname"})
    return nickname


class TokenSigner:
    def __init__(self, secret: bytes, ttl_s: int) -> None:
        self._secret = secret
        self._ttl_ms = ttl_s * 1000

    def issue(self, nickname: str, now_ms: int, viewer_id: str | None = None, *,
              verified: bool = False, expires_at: int | None = None) -> tuple[Viewer, str]:
        """A token for a new guest, or (`verified`) for a shop-signed identity, which
        expires with the shop's token (`expires_at`) rather than after the TTL."""
        expiry = now_ms + self._ttl_ms if expires_at is None else min(
            expires_at, now_ms + self._ttl_ms)
        viewer = Viewer(viewer_id or new_id("v"), nickname, expiry, verified)
        claims: dict[str, object] = {"v": viewer.viewer_id, "n": viewer.nickname,
                                     "e": viewer.expires_at}
        if verified:
            claims["s"] = 1
        payload = _b64(orjson.dumps(claims))
        return viewer, f"{payload}.{self._sign(payload)}"

    def _sign(self, payload: str) -> str:
        return _b64(hmac.new(self._secret, payload.encode("ascii"), hashlib.sha256).digest())

    def verify(self, token: str, now_ms: int) -> Viewer | None:
        """The viewer a token names, or None when it is forged, malformed or expired."""
        if len(token) > 1024 or token.count(".") != 1:
            return None
        payload, signature = token.split(".")
        try:
            if not hmac.compare_digest(self._sign(payload), signature):
                return None
            data = orjson.loads(_unb64(payload))
        except (ValueError, UnicodeError, orjson.JSONDecodeError):
            return None
        if not isinstance(data, dict):
            return None
        vid, nick, exp = data.get("v"), data.get("n"), data.get("e")
        if not isinstance(vid, str) or not isinstance(nick, str) or not isinstance(exp, int):
            return None
        if exp <= now_ms:
            return None
        return Viewer(vid, nick, exp, data.get("s") == 1)
