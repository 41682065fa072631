"""Admission: who a viewer is when it joins a room or asks for a session.

A viewer presents one token (or none):
- a shop JWT (three dot-separated parts): verified with the shop key
  (server/core/shop_identity.py); the viewer gets a livesell session token for the
  same verified identity, expiring with the shop's token;
- a livesell session token: the identity it names, verified or guest;
- nothing, or a session token that is forged or expired: a new guest identity,
  at most `auth.guest_mints_per_ip_per_min` per client address in any sliding
  minute. The count lives in Redis (mint_guest.lua, keys.guest_mints, a zset per
  address with a one-minute TTL) rather than in each process, so the limit means
  the same with one worker or sixty-four, and a quiet address costs nothing.

An IPv6 client counts by its /64 prefix: one home or phone gets a whole /64,
so counting single addresses would count nothing.
"""

from __future__ import annotations

import ipaddress
import math
import secrets
import time
from functools import lru_cache
from typing import Final

from server.core.errors import LivesellError, refusal
from server.core.identity import TokenSigner, Viewer, clean_nickname
from server.core.settings import Settings
from server.core.shop_identity import ShopVerifier, load_shop_key, looks_like_shop_token
from server.state.scripts import Scripts

MINT_WINDOW_MS: Final = 60_000


@lru_cache(maxsize=65536)
def client_bucket(host: str | None) -> str:
    """The address a client's new identities and per-address limits count under."""
    if not host:
        return ""
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return host[:64]  # a proxy or test transport naming the client otherwise
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return str(addr.ipv4_mapped)
        return str(ipaddress.IPv6Network((addr, 64), strict=False))
    return str(addr)


class Admission:
    def __init__(self, settings: Settings, signer: TokenSigner, scripts: Scripts) -> None:
        auth = settings.auth
        self.signer = signer
        self.scripts = scripts
        self.mints_per_min = auth.guest_mints_per_ip_per_min
        self.nickname_max_len = settings.chat.nickname_max_length
        self.shop = ShopVerifier(load_shop_key(auth), auth.shop_issuer, auth.shop_audience,
                                 auth.shop_token_max_lifetime_s, self.nickname_max_len)

    def from_shop_token(self, shop_token: str, now_ms: int) -> tuple[Viewer, str]:
        """The verified viewer a shop JWT names, with a livesell session token for it;
        raises IdentityRefused."""
        identity = self.shop.verify(shop_token, time.time())
        return self.signer.issue(identity.nickname, now_ms, identity.viewer_id,
                                 verified=True, expires_at=identity.expires_at)

    async def mint_guest(self, nickname: str | None, client: str,
                         now_ms: int) -> tuple[Viewer, str]:
        """A new guest identity, counted against the client's address; raises
        `too_many_identities` (with details.retry_after_s) past the limit."""
        if self.mints_per_min > 0 and client:
            mint = await self.scripts.mint_guest(client, limit=self.mints_per_min,
                                                 window_ms=MINT_WINDOW_MS,
                                                 member=secrets.token_hex(8))
            if not mint.admitted:
                raise refusal("too_many_identities",
                              retry_after_s=max(1, math.ceil(mint.wait_ms / 1000)))
        nick = nickname or f"guest-{secrets.token_hex(2)}"
        try:
            nick = clean_nickname(nick, self.nickname_max_len)
        except LivesellError:
            nick = f"guest-{secrets.token_hex(2)}"
        return self.signer.issue(nick, now_ms)

    async def identify(self, token: str | None, nickname: str | None, client: str,
                       now_ms: int) -> tuple[Viewer, str]:
        """The viewer a join presents (see the module docstring)."""
        if token and looks_like_shop_token(token):
            return self.from_shop_token(token, now_ms)
        viewer = self.signer.verify(token, now_ms) if token else None
        if viewer is not None and token is not None:
            return viewer, token
        return await self.mint_guest(nickname, client, now_ms)
