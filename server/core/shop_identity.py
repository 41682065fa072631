"""Shop-signed viewer identities: verifying the JWT a shop's own login issues.

The shop's site signs a short-lived JWT (HS256, with the key configured as
`auth.shop_key` or `auth.shop_key_file`) naming its user (`sub`), a display
name (`name`) and an expiry (`exp`), the way Centrifugo and Pusher authenticate
connections. A viewer presents it instead of a guest token and becomes
`shop_<sub>`: the same viewer on every device and every reconnect, so per-buyer
limits, mutes and bans hold for that person. Only HS256 is accepted, whatever
the token's header says (`alg: none`, HS512 and RS256 are refused), and the
token's size is bounded before it is decoded. Pure: no I/O except reading the
key file when asked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import jwt

from server.core.errors import LivesellError
from server.core.identity import clean_nickname
from server.core.settings import MIN_SHOP_KEY_BYTES, AuthSettings

ALGORITHM: Final = "HS256"
MAX_TOKEN_BYTES: Final = 4096
# Clock difference between the shop's servers and this one, seconds (exp, nbf, iat).
LEEWAY_S: Final = 30
# `sub` becomes part of the viewer id, which must be an id (protocol.ID_PATTERN):
# "shop_" plus at most 59 characters.
SUB_PATTERN: Final = re.compile(r"^[A-Za-z0-9_-]{1,59}$")
VIEWER_PREFIX: Final = "shop_"


class IdentityRefused(LivesellError):
    """A shop token that cannot be trusted; `details.reason` says why."""

    code = "identity_refused"
    status = 401


@dataclass(frozen=True, slots=True)
class ShopIdentity:
    viewer_id: str
    nickname: str
    expires_at: int  # ms, the token's exp


def looks_like_shop_token(token: str) -> bool:
    """A JWT has three dot-separated parts; a livesell session token has two."""
    return token.count(".") == 2


def shop_viewer_id(sub: str) -> str:
    return VIEWER_PREFIX + sub


def load_shop_key(auth: AuthSettings) -> bytes | None:
    """The configured shop key, or None when shop identities are off. A key file is
    read here (at start), stripped of surrounding whitespace."""
    if auth.shop_key:
        return auth.shop_key.encode()
    if not auth.shop_key_file:
        return None
    path = Path(auth.shop_key_file).expanduser()
    try:
        key = path.read_bytes().strip()
    except OSError as exc:
        raise RuntimeError(f"auth.shop_key_file: cannot read {path}: {exc}") from None
    if len(key) < MIN_SHOP_KEY_BYTES:
        raise RuntimeError(f"auth.shop_key_file: the key in {path} must be at least "
                           f"{MIN_SHOP_KEY_BYTES} bytes")
    return key


def _refuse(reason: str, message: str) -> IdentityRefused:
    return IdentityRefused(f"shop identity refused: {message}", details={"reason": reason})


class ShopVerifier:
    def __init__(self, key: bytes | None, issuer: str, audience: str, max_lifetime_s: int,
                 nickname_max_len: int) -> None:
        self._key = key
        self._issuer = issuer or None
        self._audience = audience or None
        self._max_lifetime_s = max_lifetime_s
        self._nickname_max_len = nickname_max_len
        required = ["exp", "sub"]
        if self._issuer:
            required.append("iss")
        if self._audience:
            required.append("aud")
        self._required = required

    @property
    def enabled(self) -> bool:
        return self._key is not None

    def verify(self, token: str, now_s: float) -> ShopIdentity:
        """The identity a shop token names; raises IdentityRefused with a reason."""
        if self._key is None:
            raise _refuse("not_configured", "this server accepts no shop identities "
                          "(auth.shop_key is not set)")
        if len(token) > MAX_TOKEN_BYTES:
            raise _refuse("too_large", f"the token is longer than {MAX_TOKEN_BYTES} bytes")
        try:
            claims = jwt.decode(
                token, self._key, algorithms=[ALGORITHM], audience=self._audience,
                issuer=self._issuer, leeway=LEEWAY_S,
                options={"require": self._required, "verify_aud": self._audience is not None,
                         "verify_iss": self._issuer is not None})
        except jwt.InvalidAlgorithmError:
            raise _refuse("algorithm", f"only {ALGORITHM} tokens are accepted") from None
        except jwt.ExpiredSignatureError:
            raise _refuse("expired", "the token has expired") from None
        except jwt.MissingRequiredClaimError as exc:
            raise _refuse("missing_claim", f"the token has no {exc.claim!r} claim") from None
        except jwt.InvalidSignatureError:
            raise _refuse("signature", "the signature does not match the shop key") from None
        except jwt.InvalidIssuerError:
            raise _refuse("issuer", "the token's issuer is not this shop") from None
        except jwt.InvalidAudienceError:
            raise _refuse("audience", "the token is meant for another audience") from None
        except jwt.ImmatureSignatureError:
            raise _refuse("not_yet_valid", "the token is not valid yet") from None
        except jwt.InvalidTokenError:
            raise _refuse("malformed", "the token is not a well-formed JWT") from None
        exp = claims["exp"]
        if exp > now_s + self._max_lifetime_s + LEEWAY_S:
            raise _refuse("lifetime", "the token lives longer than "
                          f"auth.shop_token_max_lifetime_s ({self._max_lifetime_s} s)")
        sub = claims["sub"]
        if not isinstance(sub, str) or not SUB_PATTERN.fullmatch(sub):
            raise _refuse("subject", "sub must be 1 to 59 letters, digits, '_' or '-'")
        return ShopIdentity(shop_viewer_id(sub), self._nickname(claims.get("name"), sub),
                            int(exp * 1000))

    def _nickname(self, name: object, sub: str) -> str:
        """The shop's display name when it is one livesell can show; otherwise a
        neutral one (a reserved or oversized name does not lock the buyer out)."""
        if isinstance(name, str) and len(name) <= 200:
            try:
                return clean_nickname(name, self._nickname_max_len)
            except LivesellError:
                pass
        return f"buyer-{sub[-4:]}"
