"""The grammar of the network and origin settings: pure parsers, no I/O.

`parse_networks` reads the space-separated addresses and CIDR networks of
`server.connection_cap_exempt` (the edge's per-address cap, server/realtime/edges.py).
The origin grammar reads the origins of `security.frame_ancestors` and
`security.websocket_origins`, the CSP sources of `security.media_sources` and
the referrer policies, and decides the WebSocket Origin rule
(server/web/security.py applies it). Settings check their values with these
same parsers at load time, so a value the server starts with is one the edge
and the security headers can read.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from typing import Final

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(text: str) -> tuple[IPNetwork, ...]:
    """Space-separated addresses or CIDR networks; ValueError names a bad one."""
    networks = []
    for item in text.split():
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(f"{item!r} is not an IP address or network") from None
    return tuple(networks)


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
# A Host header's value (lower case): a host name or bracketed IPv6 address, and a port.
HOST_PATTERN: Final = re.compile(rf"^{_HOSTNAME}(?::(?P<port>[0-9]{{1,5}}))?$")
_DEFAULT_PORT: Final = {"http": 80, "https": 443}


def _split_origin(origin: str) -> tuple[str, str, int] | None:
    """(scheme, host name, port) of an http(s) origin, or None when it is not one."""
    m = _ORIGIN.fullmatch(origin.strip().lower())
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
        m = HOST_PATTERN.fullmatch(host.strip().lower())
        if m is not None and m["name"] == name and (
                int(m["port"]) if m["port"] else _DEFAULT_PORT[scheme]) == port:
            return True
    return bool(allowed) and normalize_origin(origin) in parse_origin_list(allowed)
