"""The OpenAPI document (/api/openapi.json): it is valid OpenAPI 3.1, it names every
HTTP route the server serves with the shapes the server enforces, and schemathesis,
sending requests generated from it to a live server (a real redis-server and SQLite
file), finds no 500 and no answer outside the document: a status it does not list,
a content type it does not name, an error body not of the `Error` schema."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from openapi_spec_validator import validate
from starlette.routing import Route

from server.core.protocol import MAX_STOCK
from server.web import openapi
from server.web.routes import FIXED
from tests.support import LiveServer, create_room, eventually

# The run's bound: schemathesis stops generating when it is spent (about a minute
# on a loaded CI machine; the suite's other tests already cover behaviour).
MAX_TIME_S = int(os.environ.get("LIVESELL_SCHEMATHESIS_SECONDS", "60"))


async def _document(server: LiveServer) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=server.base, timeout=30) as http:
        r = await http.get("/api/openapi.json")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    doc: dict[str, Any] = r.json()
    return doc


async def test_the_document_is_valid_openapi_31(server: LiveServer) -> None:
    doc = await _document(server)
    assert doc["openapi"] == "3.1.0"
    validate(doc)  # raises on any violation of the OpenAPI 3.1 schema


async def test_every_served_route_is_in_the_document_with_its_shape(
        server: LiveServer) -> None:
    doc = await _document(server)
    pages = {f.path for f in FIXED if not f.doc}
    served = set()
    for route in server.app.routes:
        if isinstance(route, Route) and route.path not in pages:
            for method in route.methods or ():
                if method != "HEAD":
                    served.add((route.path, method.lower()))
    documented = {(path, method) for path, ops in doc["paths"].items() for method in ops}
    assert served == documented
    routes = server.services.show.registry.routes
    for spec in routes:
        op = doc["paths"][openapi.ROOM_PREFIX + spec.path][spec.method.lower()]
        if spec.body is None:
            assert "requestBody" not in op
        else:
            assert op["requestBody"]["content"]["application/json"]["schema"] == \
                spec.body.schema()
        if spec.access == "host":
            assert {"hostKey": []} in op["security"]
    # A bound from the settings is the live one: a coupon drop's largest count.
    coupon = doc["paths"]["/api/rooms/{room_id}/coupons"]["post"]["requestBody"]
    count = coupon["content"]["application/json"]["schema"]["properties"]["count"]
    assert count["maximum"] == server.settings.sale.max_coupons_per_drop
    stock = doc["paths"]["/api/rooms/{room_id}/products"]["post"]["requestBody"]
    assert stock["content"]["application/json"]["schema"]["properties"]["stock"][
        "maximum"] == MAX_STOCK


async def test_what_the_document_refuses_the_server_refuses(server: LiveServer) -> None:
    """The document is the validator: a body outside a shape is a 400 naming the
    field, before any handler; one inside it passes that check."""
    async with httpx.AsyncClient(base_url=server.base, timeout=30) as http:
        host = await create_room(http)
        product = await host.product(stock=5)
        bad = await host.http.post(f"/api/rooms/{host.room_id}/sales",
                                   json={"product_id": product["product_id"], "units": 0,
                                         "duration_s": 60},
                                   headers={"X-Host-Key": host.key})
        assert bad.status_code == 400
        assert bad.json()["error"]["details"] == {"field": "units"}
        both = await host.http.post(f"/api/rooms/{host.room_id}/sales",
                                    json={"product_id": product["product_id"], "units": 1,
                                          "duration_s": 60, "starts_at": 1, "starts_in_s": 1},
                                    headers={"X-Host-Key": host.key})
        assert both.status_code == 400
        assert "not both" in both.json()["error"]["message"]
        # An integer written 1000.0 is the integer 1000 (one number in JSON and in JSON
        # Schema); 2.5 is not an integer.
        whole = await host.call("POST", "/products", {"title": "Whole", "price": 1000.0,
                                                      "stock": 3.0}, expect=201)
        assert (whole["price"], whole["stock"]["total"]) == (1000, 3)
        assert isinstance(whole["price"], int)
        half = await host.http.post(f"/api/rooms/{host.room_id}/products",
                                    json={"title": "Half", "price": 1000, "stock": 2.5},
                                    headers={"X-Host-Key": host.key})
        assert half.status_code == 400
        assert half.json()["error"]["message"] == "stock: expected an integer, got number"
        query = await http.get(f"/api/rooms/{host.room_id}/questions?limit=0")
        assert query.status_code == 400
        assert query.json()["error"]["details"] == {"field": "limit"}


async def test_the_docs_page_and_its_files_are_served(server: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=server.base, timeout=30) as http:
        page = await http.get("/api/docs")
        assert page.status_code == 200
        assert "swagger-ui-bundle.js" in page.text
        bundle = await http.get("/api/docs/static/swagger-ui-bundle.js")
        assert bundle.status_code == 200 and len(bundle.content) > 100_000
        # Only the two files the page loads, none of the package's others.
        for other in ("oauth2-redirect.html", "swagger-editor-bundle.js",
                      "swagger-ui-bundle.js.map", "..%2f__init__.py"):
            assert (await http.get(f"/api/docs/static/{other}")).status_code == 404
        script = await http.get("/static/js/api-docs.js")
        assert script.status_code == 200 and "/api/openapi.json" in script.text


def _schemathesis() -> str:
    exe = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    assert exe is not None, "schemathesis is a test dependency (pyproject.toml [test])"
    return exe


async def test_schemathesis_finds_no_server_error_nor_undocumented_answer(
        server: LiveServer, tmp_path: Path) -> None:
    """Generated requests for every operation, with the host's key and a real room,
    product, sale and order, so the host routes are reached past their key check."""
    async with httpx.AsyncClient(base_url=server.base, timeout=30) as http:
        host = await create_room(http, "schemathesis")
        product = await host.product(stock=50)
        await host.sale(product["product_id"], units=5)
    # Path ids the run uses: the real ones (a random id is a plain 404, which says
    # little); other ids (orders, polls ...) stay generated.
    config = tmp_path / "schemathesis.toml"
    config.write_text(
        f'headers = {{ "X-Host-Key" = "{host.key}" }}\n'
        "[parameters]\n"
        f'"path.room_id" = "{host.room_id}"\n'
        f'"path.product_id" = "{product["product_id"]}"\n')
    proc = await asyncio.create_subprocess_exec(
        _schemathesis(), "--config-file", str(config), "run",
        f"{server.base}/api/openapi.json",
        "--checks", "not_a_server_error,status_code_conformance,content_type_conformance,"
                    "response_schema_conformance",
        # Ending the show or archiving the room early would leave the rest of the run
        # only "show_ended" answers; each is exercised by its own tests.
        "--exclude-path-regex", r".*/(end|archive)$",
        "--max-time", str(MAX_TIME_S), "--max-examples", "40", "--workers", "1",
        "--seed", "1", "--request-timeout", "30", "--suppress-health-check", "all",
        "--no-color",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=tmp_path)
    out, _ = await asyncio.wait_for(proc.communicate(), MAX_TIME_S * 5 + 120)
    text = out.decode(errors="replace")
    assert proc.returncode == 0, text[-12000:]
    # It did run: thousands of cases in a minute; a run that generated next to nothing
    # (the document unreadable, every operation skipped) must not pass.
    generated = re.search(r"(\d+) generated", text)
    assert generated is not None and int(generated.group(1)) >= 300, text[-4000:]
    # It did reach the server: the room's audit still balances after the run.
    async with httpx.AsyncClient(base_url=server.base, timeout=30) as http:
        async def audited() -> Any:
            r = await http.get(f"/api/rooms/{host.room_id}/audit",
                               headers={"X-Host-Key": host.key})
            return r.json() if r.status_code == 200 else None
        audit = await eventually(audited)
    assert audit["ok"], audit


def test_an_id_with_a_trailing_newline_is_refused() -> None:
    """`$` in a Python pattern also matches before a final newline; the server matches
    whole strings, as the document's JSON Schema patterns (ECMAScript) do."""
    from server.core.errors import BadRequest
    from server.core.protocol import FrameLimits, decode_viewer_message
    from server.core.schema import ID

    with pytest.raises(BadRequest):
        ID.read({"id": "abc\n"}, "id")
    limits = FrameLimits(200, 50, 5)
    with pytest.raises(BadRequest):
        decode_viewer_message({"type": "buy", "request_id": "r1", "product_id": "p1\n"},
                              limits)
    assert decode_viewer_message({"type": "buy", "request_id": "r1", "product_id": "p1"},
                                 limits)


async def test_a_number_of_thousands_of_digits_is_a_400_not_a_500(
        server: LiveServer) -> None:
    """int() refuses more than 4,300 digits with a ValueError: a query parameter or a
    Content-Length that long is answered like any number out of range."""
    from server.core import webhooks

    digits = "9" * 5000
    async with httpx.AsyncClient(base_url=server.base, timeout=30) as http:
        host = await create_room(http)
        for path in (f"/api/rooms?limit={digits}",
                     f"/api/rooms/{host.room_id}/questions?limit={digits}",
                     f"/api/rooms/{host.room_id}/orders?offset={digits}"):
            r = await http.get(path, headers={"X-Host-Key": host.key})
            assert r.status_code == 400, (path[:60], r.text)
            assert "must be an integer between" in r.json()["error"]["message"]
    assert webhooks.verify("whsec_" + "a" * 32, "m", digits, "v1,x", b"", 0) == \
        "webhook-timestamp is not a number of seconds"
