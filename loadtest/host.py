"""The host's side of a load test: the room's HTTP API with its host key.

Creates the room (or uses a given one), the products, the sale, the coupon
drop, the lottery and the auction, emits events at a rate, samples the audit,
and reads the orders, lotteries and auctions (with their bid chains) back for
the checks. Every non-2xx answer becomes a
`HostError` carrying the server's error code.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any
from urllib.parse import urlsplit

import httpx


class HostError(RuntimeError):
    def __init__(self, method: str, path: str, status: int, code: str, message: str) -> None:
        super().__init__(f"{method} {path}: {status} {code}: {message}")
        self.status = status
        self.code = code


class TargetError(ValueError):
    """The server address is not allowed or cannot be reached."""


def check_loopback(url: str) -> tuple[str, int]:
    """Host and port of `url`, which must be an http:// URL on a loopback address:
    a load test never sends traffic to another machine."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise TargetError(f"--url {url!r}: expected http://HOST:PORT")
    host = parts.hostname
    try:
        port = parts.port or 80
    except ValueError:
        raise TargetError(f"--url {url!r}: bad port") from None
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise TargetError(f"--url {url!r}: cannot resolve {host}: {exc}") from None
    for info in infos:
        if not ipaddress.ip_address(info[4][0]).is_loopback:
            raise TargetError(f"--url {url!r}: {host} is not a loopback address; load tests "
                              "only target this machine (127.0.0.0/8 or ::1)")
    return host, port


class Host:
    def __init__(self, http: httpx.AsyncClient, room_id: str, key: str) -> None:
        self.http = http
        self.room_id = room_id
        self.key = key

    @staticmethod
    async def reach(http: httpx.AsyncClient, base: str) -> None:
        try:
            r = await http.get("/api/health")
        except httpx.HTTPError as exc:
            raise TargetError(f"cannot reach the server at {base}: {exc}") from None
        if r.status_code != 200:
            raise TargetError(f"the server at {base} is not ready: GET /api/health answered "
                              f"{r.status_code}")

    @classmethod
    async def create_room(cls, http: httpx.AsyncClient, title: str,
                          admin_key: str | None) -> Host:
        headers = {"X-Admin-Key": admin_key} if admin_key else {}
        r = await http.post("/api/rooms", json={"title": title}, headers=headers)
        if r.status_code != 201:
            raise _error("POST", "/api/rooms", r)
        data = r.json()
        return cls(http, data["room"]["room_id"], data["host_key"])

    async def call(self, method: str, path: str, body: Any = None) -> Any:
        full = f"/api/rooms/{self.room_id}{path}"
        r = await self.http.request(method, full, json=body, headers={"X-Host-Key": self.key})
        if r.status_code >= 300:
            raise _error(method, full, r)
        return r.json()

    async def product(self, body: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = await self.call("POST", "/products", body)
        return out

    async def audit(self) -> dict[str, Any]:
        out: dict[str, Any] = await self.call("GET", "/audit")
        return out

    async def orders(self) -> list[dict[str, Any]]:
        """Every order of the room, page by page."""
        out: list[dict[str, Any]] = []
        for offset in range(0, 10**7, 1000):
            page = (await self.call("GET", f"/orders?limit=1000&offset={offset}"))["orders"]
            out.extend(page)
            if len(page) < 1000:
                break
        return out

    async def lottery(self, lottery_id: str) -> dict[str, Any]:
        r = await self.http.get(f"/api/rooms/{self.room_id}/lotteries/{lottery_id}")
        if r.status_code != 200:
            raise _error("GET", f"lotteries/{lottery_id}", r)
        out: dict[str, Any] = r.json()
        return out


    async def public(self, path: str) -> dict[str, Any]:
        """GET a public route of the room (no host key)."""
        full = f"/api/rooms/{self.room_id}{path}"
        r = await self.http.get(full)
        if r.status_code != 200:
            raise _error("GET", full, r)
        out: dict[str, Any] = r.json()
        return out

    async def auction(self, auction_id: str) -> dict[str, Any]:
        return await self.public(f"/auctions/{auction_id}")

    async def auction_chain(self, auction_id: str) -> dict[str, Any]:
        """The auction's whole bid chain, page by page: `{"genesis", "head",
        "bids": [entry...]}` (the last page's genesis and head)."""
        entries: list[dict[str, Any]] = []
        after = 0
        page: dict[str, Any] = {}
        for _ in range(10_000):  # 10 million entries: far above any auction's
            page = await self.public(f"/auctions/{auction_id}/bids?after={after}&limit=1000")
            bids = page.get("bids") or []
            entries.extend(bids)
            if not page.get("more") or not bids:
                break
            after = int(bids[-1]["seq"])
        return {"genesis": page.get("genesis", ""), "head": page.get("head", ""),
                "bids": entries}


def _error(method: str, path: str, r: httpx.Response) -> HostError:
    try:
        err = r.json().get("error", {})
    except ValueError:
        err = {}
    return HostError(method, path, r.status_code, str(err.get("code", "http_error")),
                     str(err.get("message", r.text[:200])))
