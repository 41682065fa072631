"""The invitation link's QR code (GET /api/qr.svg): an SVG drawn by segno for a
link to this server's own pages, refused for anything else, with a clear error."""

from __future__ import annotations

import httpx

from tests.support import LiveServer


async def test_a_link_to_this_server_gets_its_qr_code(server: LiveServer,
                                                      http: httpx.AsyncClient) -> None:
    link = f"{server.base}/r/r_abc?group=g_123"
    r = await http.get("/api/qr.svg", params={"text": link})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("image/svg+xml")
    assert r.text.startswith("<svg") and "QR code" in r.text
    # The same link draws the same code; another link another.
    again = await http.get("/api/qr.svg", params={"text": link})
    other = await http.get("/api/qr.svg", params={"text": link + "4"})
    assert again.text == r.text and other.text != r.text


async def test_other_texts_are_refused_saying_why(server: LiveServer,
                                                  http: httpx.AsyncClient) -> None:
    for text, why in (("", "required"), ("https://evil.example/phish", "link to this server"),
                      (f"{server.base}/" + "x" * 600, "at most 512"),
                      ("javascript:alert(1)", "link to this server")):
        r = await http.get("/api/qr.svg", params={"text": text})
        assert r.status_code == 400, (text, r.text)
        assert why in r.json()["error"]["message"], (text, r.json())
