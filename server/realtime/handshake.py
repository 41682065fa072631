"""What a viewer's WebSocket handshake may carry: the protocol version and the
credentials offered as subprotocols, and the query parameters that must never
hold a secret. Pure: it reads lists and mappings, the app does the I/O.

Credentials travel in `Sec-WebSocket-Protocol`, never in the URL (URLs end up
in access logs, proxy logs and browser history). A client offers, in any order,

    livesell.v1                 the protocol; the server accepts with exactly this
    livesell.token.<token>      optional: the viewer's signed identity token
    livesell.host.<host key>    optional: the room's host key (the host console)

as Kubernetes does with `base64url.bearer.authorization.k8s.io.<token>`. The
server selects `livesell.v1` when it was offered and never echoes an entry that
holds a secret. Tokens (base64url "." base64url) and host keys (base64url, from
`secrets.token_urlsafe`) only use characters RFC 6455 allows in a subprotocol,
so they are sent as they are; an entry with other characters never reaches the
app (the `websockets` parser under uvicorn answers such a handshake with HTTP 400).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

PROTOCOL: Final = "livesell.v1"
TOKEN_PREFIX: Final = "livesell.token."
HOST_PREFIX: Final = "livesell.host."
# Entries a client may offer in all (the three above plus room for a few of its
# own, which are ignored), and the longest entry: a token the signer accepts is
# at most 1024 characters, a shop-signed JWT at most 4096 (refused by its own
# check with its reason past that), and websockets reads header lines of at most
# 8192 bytes, so the bound sits between the two.
MAX_OFFERED: Final = 8
MAX_ENTRY_CHARS: Final = 6144
# Query parameters that would put a secret in the URL.
SECRET_PARAMS: Final = ("token", "host_key")
URL_REFUSAL: Final = "send credentials in Sec-WebSocket-Protocol, not the URL"


@dataclass(frozen=True, slots=True)
class WsCredentials:
    """What one handshake offered. `refusal` is the close reason when the handshake
    must be refused (the app closes with CLOSE_BAD_HANDSHAKE); `subprotocol` is the
    one to accept with (None when the client offered no `livesell.v1`)."""

    token: str | None = None
    host_key: str | None = None
    subprotocol: str | None = None
    refusal: str | None = None


def read_credentials(offered: Iterable[str], query: Mapping[str, str]) -> WsCredentials:
    """The credentials offered as subprotocols (`offered`: the entries of every
    `Sec-WebSocket-Protocol` header, in order), refusing any secret in `query`.

    Unknown entries are ignored; an empty credential (`livesell.token.`) counts as
    absent. Refused: a `token` or `host_key` query parameter (even empty: the
    client is built the old way), more than MAX_OFFERED entries, an entry over
    MAX_ENTRY_CHARS, and the same credential offered twice (which one was meant?).
    """
    entries = list(offered)
    subprotocol = PROTOCOL if PROTOCOL in entries else None
    if any(name in query for name in SECRET_PARAMS):
        return WsCredentials(subprotocol=subprotocol, refusal=URL_REFUSAL)
    if len(entries) > MAX_OFFERED:
        return WsCredentials(subprotocol=subprotocol,
                             refusal=f"Sec-WebSocket-Protocol: at most {MAX_OFFERED} entries")
    token: str | None = None
    host_key: str | None = None
    seen: set[str] = set()
    for entry in entries:
        if len(entry) > MAX_ENTRY_CHARS:
            return WsCredentials(
                subprotocol=subprotocol,
                refusal=f"Sec-WebSocket-Protocol: an entry is over {MAX_ENTRY_CHARS} characters")
        for prefix in (TOKEN_PREFIX, HOST_PREFIX):
            if not entry.startswith(prefix):
                continue
            if prefix in seen:
                return WsCredentials(
                    subprotocol=subprotocol,
                    refusal=f"Sec-WebSocket-Protocol: more than one {prefix}<value> entry")
            seen.add(prefix)
            value = entry[len(prefix):] or None
            if prefix is TOKEN_PREFIX:
                token = value
            else:
                host_key = value
    return WsCredentials(token=token, host_key=host_key, subprotocol=subprotocol)


def offer(token: str | None = None, host_key: str | None = None) -> list[str]:
    """The subprotocol list a client offers (the load tester and tests use it)."""
    entries = [PROTOCOL]
    if token:
        entries.append(TOKEN_PREFIX + token)
    if host_key:
        entries.append(HOST_PREFIX + host_key)
    return entries
