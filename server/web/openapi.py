"""The OpenAPI 3.1 document of the HTTP API, built from the routes themselves:
each feature's registered route (server/features/registry.py) and the fixed
endpoints' table (server/web/routes.py `FIXED`), with their body and query
shapes (server/core/schema.py), which are the validators the web layer runs
before any handler. Nothing here is written twice: a field added to a shape, a
route registered, a bound changed in the settings (a coupon drop's largest
count) is in the next document the server serves.

Served at /api/openapi.json and drawn by Swagger UI at /api/docs. The errors
every route may answer share one schema (`Error`), the shape of every error the
server sends (server/web/app.py)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Final

from server import __version__
from server.core import wire
from server.core.errors import REFUSALS
from server.core.protocol import ID_PATTERN, encode
from server.core.schema import JSON, Query, Shape
from server.features.registry import Route

if TYPE_CHECKING:
    from server.web.routes import Fixed

ROOM_PREFIX: Final = "/api/rooms/{room_id}"

ERROR_SCHEMA: Final[JSON] = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {
        "type": "object",
        "required": ["code", "message"],
        "properties": {
            "code": {"type": "string", "description": "stable, for programs "
                     "(docs/protocol.md section 9 lists the refusals)"},
            "message": {"type": "string", "description": "for people"},
            "details": {"type": "object", "description": "the field at fault, limits, "
                        "retry_after_s ..."},
        },
    }},
}

# What an error status means here; every route may answer each that can apply.
ERRORS: Final = {
    "400": "The request is malformed: the field, type, size or range at fault is named.",
    "401": "A host or admin key is needed and was not given.",
    "403": "The key given is not this room's (or not the admin key).",
    "404": "No such room or thing (a path id that cannot exist is answered alike).",
    "409": "Refused by the room's state (sold out, show ended, limit reached ...).",
    "413": "The body is larger than server.max_body_bytes.",
    "415": "The body is not JSON.",
    "429": "Too many requests: wait Retry-After seconds.",
    "503": "Starting, stopping, rebuilding the room, or Redis or the store is "
           "unavailable for a moment: retry after Retry-After seconds.",
}
SECURITY_SCHEMES: Final[JSON] = {
    "hostKey": {"type": "apiKey", "in": "header", "name": "X-Host-Key",
                "description": "The room's host key, given once when the room is made."},
    "hostBearer": {"type": "http", "scheme": "bearer",
                   "description": "The host key (or, for /metrics, the admin key) as a "
                                  "bearer token."},
    "adminKey": {"type": "apiKey", "in": "header", "name": "X-Admin-Key",
                 "description": "The server's admin key (server.admin_key); a loopback "
                                "server without one needs none."},
}
PATH_PARAM: Final = re.compile(r"{([a-z_]+)}")
# The objects answers carry are the WebSocket's (server/core/wire.py): one definition
# of a product card or a sale for both documents.
SCHEMA_REF: Final = "#/components/schemas/{}"


def _summary(doc: str | None, fallback: str) -> str:
    first = (doc or "").strip().split("\n\n")[0]
    return " ".join(first.split()) or fallback


# A raw (not JSON) body's own words for its size and type refusals.
RAW_BODY_ERRORS: Final = {
    "413": "The body is larger than this route takes (an image: images.max_bytes, or "
           "images.max_pixels by the size its header declares).",
    "415": "The Content-Type is not one of the media types this route takes.",
}


def _responses(status: int, media_type: str | None, body: bool, answer: str | None,
               raw: bool = False) -> JSON:
    schema: JSON = {"$ref": SCHEMA_REF.format(answer)} if answer else {"type": "object"}
    content: JSON = {"application/json": {"schema": schema}} \
        if media_type is None or media_type == "application/json" \
        else {media_type: {"schema": {"type": "string"}}}
    out: JSON = {str(status): {"description": "Done.", "content": content}}
    for code, meaning in ERRORS.items():
        if code in ("413", "415") and not body:
            continue
        if raw:
            meaning = RAW_BODY_ERRORS.get(code, meaning)
        out[code] = {"description": meaning,
                     "content": {"application/json": {"schema": {
                         "$ref": "#/components/schemas/Error"}}}}
    return out


def _operation(method: str, path: str, *, summary: str, tag: str, access: str,
               body: Shape | None, query: Query | None, status: int,
               media_type: str | None, answer: str | None = None,
               raw_body: Sequence[str] = ()) -> JSON:
    op: JSON = {"summary": summary, "tags": [tag],
                "operationId": f"{method.lower()}_" + re.sub(r"[^A-Za-z0-9]+", "_",
                                                             path).strip("_")}
    params: list[JSON] = [
        {"name": name, "in": "path", "required": True,
         "schema": {"type": "string", "pattern": ID_PATTERN.pattern}}
        for name in PATH_PARAM.findall(path)]
    if query is not None:
        params += query.parameters()
    if params:
        op["parameters"] = params
    if body is not None:
        # Required when some field is: an empty body is read as {} (every field
        # absent), which a shape of optional fields takes.
        needed = any(f.required for f in body.fields.values()) or \
            body.non_empty is not None or bool(body.one_required)
        op["requestBody"] = {"required": needed, "content": {
            "application/json": {"schema": body.schema()}}}
    elif raw_body:
        # The body is the bytes themselves (an image), not JSON.
        op["requestBody"] = {"required": True, "content": {
            media: {"schema": {"type": "string", "format": "binary"}} for media in raw_body}}
    if access == "host":
        op["security"] = [{"hostKey": []}, {"hostBearer": []}]
    elif access == "admin":
        op["security"] = [{"adminKey": []}, {}]
    op["responses"] = _responses(status, media_type, body is not None or bool(raw_body),
                                 answer, raw=bool(raw_body))
    return op


def _tag(path: str) -> str:
    rest = path[len(ROOM_PREFIX):] if path.startswith(ROOM_PREFIX) else path
    parts = [p for p in rest.split("/") if p and not p.startswith("{") and p != "api"]
    word = parts[0].split(".")[0] if parts else "rooms"
    return "rooms" if path.startswith(ROOM_PREFIX) and not parts else word


def build(fixed: Iterable[Fixed], feature_routes: Sequence[Route]) -> JSON:
    paths: dict[str, JSON] = {}
    for f in fixed:
        if not f.doc:
            continue
        paths.setdefault(f.path, {})[f.method.lower()] = _operation(
            f.method, f.path, summary=_summary(f.endpoint.__doc__, f.path),
            tag=_tag(f.path), access=f.access, body=f.body, query=f.query, status=f.status,
            media_type=f.media_type, raw_body=f.raw_body)
    for r in feature_routes:
        path = ROOM_PREFIX + r.path
        paths.setdefault(path, {})[r.method.lower()] = _operation(
            r.method, path, summary=_summary(r.handler.__doc__,
                                                         f"{r.method} {r.path or '/'}"),
            tag=_tag(path), access=r.access, body=r.body, query=r.query, status=r.status,
            media_type=r.media_type, answer=r.answer)
    return {
        "openapi": "3.1.0",
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "info": {
            "title": "livesell",
            "version": __version__,
            "summary": "The HTTP API of a livestream-selling server",
            "description": "Hosts run a show through these routes; viewers buy over the "
                           "WebSocket at /ws/{room_id} (its frames: /api/asyncapi.json, "
                           "docs/protocol.md). Refusal codes: " + ", ".join(sorted(REFUSALS))
                           + ".",
            "license": {"name": "MIT", "identifier": "MIT"},
        },
        "paths": dict(sorted(paths.items())),
        "components": {"schemas": {"Error": ERROR_SCHEMA,
                                   **wire.definitions(SCHEMA_REF)},
                       "securitySchemes": SECURITY_SCHEMES},
    }


def document_bytes(fixed: Iterable[Fixed], feature_routes: Sequence[Route]) -> bytes:
    return encode(build(fixed, feature_routes))
