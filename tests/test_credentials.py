"""Credentials never in URLs or logs: the viewer token and the host key travel in
`Sec-WebSocket-Protocol` (server/realtime/handshake.py), the server answers `livesell.v1`
and nothing else, a secret put in the URL is refused with 4000, and no secret
reaches a captured log line on any of these paths (uvicorn's accept and access
lines, websockets' header lines at DEBUG).

Real server on port 0, real `websockets` clients, a handler on the real loggers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.typing import Subprotocol

from server.core.errors import CLOSE_BAD_HANDSHAKE, CLOSE_WRONG_HOST_KEY
from server.realtime import handshake
from tests.support import LiveServer, LogCapture, ViewerClient, create_room, eventually, join, offer


@pytest.fixture
def log_capture(server: LiveServer) -> Iterator[LogCapture]:
    """Attached after the server started (uvicorn's set-up replaces its loggers'
    handlers); uvicorn's loggers lowered to DEBUG, so its accept and access lines
    and websockets' request and header lines are all written."""
    handler = LogCapture()
    loggers = [logging.getLogger(n) for n in ("uvicorn.error", "uvicorn.access")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.DEBUG)
    owners = [logging.getLogger("uvicorn"), logging.getLogger("uvicorn.access"),
              logging.getLogger()]
    for owner in owners:
        owner.addHandler(handler)
    try:
        yield handler
    finally:
        for owner in owners:
            owner.removeHandler(handler)
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


async def closed_with(ws: ClientConnection) -> tuple[int | None, str | None]:
    """The close code and reason, after checking that no frame came first."""
    with pytest.raises(ConnectionClosed):
        frame = await asyncio.wait_for(ws.recv(), 30)
        raise AssertionError(f"expected a close, got {frame!r}")
    return ws.close_code, ws.close_reason


def accepted_protocols(ws: ClientConnection) -> list[str]:
    assert ws.response is not None
    return ws.response.headers.get_all("Sec-WebSocket-Protocol")


# ---------------------------------------------------------------- the handshake


async def test_token_in_the_subprotocol_keeps_the_viewer_across_reconnects(
        server: LiveServer, http: httpx.AsyncClient) -> None:
    host = await create_room(http)
    first = await join(server, host.room_id, nickname="Ann")  # a guest: token from welcome
    token, viewer_id = first.token, first.viewer_id
    assert accepted_protocols(first.ws) == ["livesell.v1"]
    assert first.ws.subprotocol == "livesell.v1"
    await first.close()
    seen = []
    for _ in range(3):
        again = await join(server, host.room_id, token=token)
        seen.append((again.viewer_id, again.welcome["viewer"]["nickname"], again.token))
        # Only the protocol comes back: the credential is never echoed.
        assert accepted_protocols(again.ws) == ["livesell.v1"]
        await again.close()
    assert seen == [(viewer_id, "Ann", token)] * 3
    # A token from POST /api/session works the same way, and a forged one does not.
    session = (await http.post("/api/session", json={"nickname": "Bo"})).json()
    bo = await join(server, host.room_id, token=session["token"])
    forged = await join(server, host.room_id, token=session["token"][:-2] + "xx")
    assert bo.viewer_id == session["viewer_id"]
    assert forged.viewer_id not in (session["viewer_id"], viewer_id)
    await asyncio.gather(bo.close(), forged.close())


async def test_host_key_in_the_subprotocol_gives_host_rights(
        server: LiveServer, http: httpx.AsyncClient) -> None:
    host = await create_room(http)
    other = await create_room(http)
    viewer = await join(server, host.room_id)
    console = await join(server, host.room_id, host_key=host.key)
    assert accepted_protocols(console.ws) == ["livesell.v1"]
    await console.send({"type": "chat", "text": "Welcome"})
    chat = await viewer.next_event("chat", where=lambda f: f["text"] == "Welcome")
    assert chat["host"] is True
    # The console is not counted as a viewer.
    stats = await host.call("GET", "/stats", expect=200)
    assert stats["viewers"]["now"] == 1
    await console.close()
    # Another room's key closes with 4003.
    async with connect(server.ws_url(host.room_id), open_timeout=30,
                       subprotocols=offer(host_key=other.key)) as ws:
        assert await closed_with(ws) == (CLOSE_WRONG_HOST_KEY, "wrong host key")
    # A viewer's chat carries no host flag (the key, not the socket, makes a host).
    await viewer.send({"type": "chat", "text": "hi"})
    mine = await viewer.next_event("chat", where=lambda f: f["text"] == "hi")
    assert "host" not in mine or mine["host"] is False
    await viewer.close()


async def test_plain_clients_and_unknown_entries(server: LiveServer,
                                                 http: httpx.AsyncClient) -> None:
    host = await create_room(http)
    # No subprotocol offered: a guest joins and none is selected (the client would
    # fail the handshake on a subprotocol it did not offer).
    async with connect(server.ws_url(host.room_id), open_timeout=30) as ws:
        assert ws.subprotocol is None and accepted_protocols(ws) == []
        guest = ViewerClient(ws)
        await guest.next_event("welcome")
        token = guest.token
        await guest.close()
    # Unknown entries are ignored; livesell.v1 is still the answer.
    unknown = [Subprotocol(p) for p in ("chat", "livesell.v2", "livesell.tokens.x",
                                        "livesell.v1", f"livesell.token.{token}")]
    async with connect(server.ws_url(host.room_id), open_timeout=30,
                       subprotocols=unknown) as ws:
        assert accepted_protocols(ws) == ["livesell.v1"]
        back = ViewerClient(ws)
        await back.next_event("welcome")
        assert back.token == token
        await back.close()
    # Credentials without livesell.v1 are still read; nothing is selected.
    bare = [Subprotocol(f"livesell.token.{token}")]
    async with connect(server.ws_url(host.room_id), open_timeout=30,
                       subprotocols=bare) as ws:
        assert ws.subprotocol is None and accepted_protocols(ws) == []
        bare_client = ViewerClient(ws)
        await bare_client.next_event("welcome")
        assert bare_client.token == token
        await bare_client.close()


@pytest.mark.parametrize(("entries", "reason"), [
    ([*handshake.offer()] + [f"x{i}" for i in range(handshake.MAX_OFFERED)],
     f"Sec-WebSocket-Protocol: at most {handshake.MAX_OFFERED} entries"),
    (["livesell.v1", "livesell.token.a.b", "livesell.token.c.d"],
     "Sec-WebSocket-Protocol: more than one livesell.token.<value> entry"),
    (["livesell.v1", "livesell.host.k1", "livesell.host.k2"],
     "Sec-WebSocket-Protocol: more than one livesell.host.<value> entry"),
    (["livesell.v1", "livesell.token." + "a" * handshake.MAX_ENTRY_CHARS],
     f"Sec-WebSocket-Protocol: an entry is over {handshake.MAX_ENTRY_CHARS} characters"),
])
async def test_an_unreadable_protocol_list_is_refused(
        server: LiveServer, http: httpx.AsyncClient, entries: list[str], reason: str) -> None:
    host = await create_room(http)
    async with connect(server.ws_url(host.room_id), open_timeout=30,
                       subprotocols=[Subprotocol(e) for e in entries]) as ws:
        assert await closed_with(ws) == (CLOSE_BAD_HANDSHAKE, reason)
        assert accepted_protocols(ws) == ["livesell.v1"]


# ---------------------------------------------------------------- secrets in the URL


async def test_secrets_in_the_url_are_refused_and_never_logged(
        server: LiveServer, http: httpx.AsyncClient, log_capture: LogCapture) -> None:
    host = await create_room(http)
    other = await create_room(http)
    session = (await http.post("/api/session", json={"nickname": "Cy"})).json()
    token = session["token"]
    base = f"ws://127.0.0.1:{server.port}/ws/{host.room_id}"
    refused = []
    for query in (f"token={token}", f"host_key={host.key}",
                  f"since=1&host_key={host.key}&token={token}", "host_key=", "token="):
        async with connect(f"{base}?{query}", open_timeout=30) as ws:
            refused.append(await closed_with(ws))
        # Also offered as a subprotocol: the URL still decides.
        async with connect(f"{base}?{query}", open_timeout=30,
                           subprotocols=offer(token, host.key)) as ws:
            refused.append(await closed_with(ws))
    assert refused == [(CLOSE_BAD_HANDSHAKE, handshake.URL_REFUSAL)] * 10
    # The right way, with both, and a wrong host key: joined, joined, refused.
    both = await join(server, host.room_id, token=token, host_key=host.key)
    assert both.viewer_id == session["viewer_id"]
    await both.close()
    async with connect(base, open_timeout=30, subprotocols=offer(token, other.key)) as ws:
        assert (await closed_with(ws))[0] == CLOSE_WRONG_HOST_KEY
    # A foreign Origin is answered 403 before the app reads anything: logged too.
    with pytest.raises(InvalidStatus) as forbidden:
        async with connect(f"{base}?token={token}", open_timeout=30,
                           origin="https://evil.example",  # type: ignore[arg-type]
                           subprotocols=offer(token, host.key)):
            pass
    assert forbidden.value.response.status_code == 403
    # HTTP requests never read a secret from the query, but one put there by a
    # careless client is on the access line.
    r = await http.get(f"/api/rooms/{host.room_id}/orders",
                       params={"token": token, "host_key": host.key},
                       headers={"X-Host-Key": host.key})
    assert r.status_code == 200

    # The lines that would carry the secrets were written (so the capture works)...
    async def written() -> bool:
        text = log_capture.everything()
        return (text.count(f"/ws/{host.room_id}?") >= 11
                and f'"GET /api/rooms/{host.room_id}/orders?token=[redacted]' in text
                and "livesell.token.[redacted]" in text
                and "livesell.host.[redacted]" in text)

    assert await eventually(written, timeout=30)
    # ...and none of them shows one.
    text = log_capture.everything()
    for secret in (token, host.key, other.key, token.split(".")[1]):
        assert secret not in text, secret
