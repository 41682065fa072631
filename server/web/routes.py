"""HTTP endpoints as thin adapters: each feature's registered routes
(server/features/registry.py) become Starlette routes here, behind the same
checks (host key, a whole room, the show not ended, body size and type), and
the few endpoints that belong to no room feature: health, readiness, the
clock, sessions, creating, listing and archiving rooms, trace downloads, the
pages, the browser libraries they load (hls.js) and the streams folder."""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import io
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

import anyio.to_thread
import segno
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.websockets import WebSocket

from server import __version__
from server.core import logcontext
from server.core import webhooks as webhook_terms
from server.core.domain import now_ms
from server.core.errors import BadRequest, PayloadTooLarge, Unavailable, UnsupportedMedia, refusal
from server.core.identity import clean_nickname
from server.core.protocol import (
    ID_PATTERN,
    encode,
    loads_object,
)
from server.core.schema import Query, QueryStr, Shape, Str, opt
from server.features import images, registry, rooms
from server.features import room as room_feature
from server.features import webhooks as webhook_feature
from server.features.show import Show
from server.features.streams import StreamFolder
from server.realtime.admission import client_bucket
from server.web import asyncapi, openapi
from server.web.filesend import OpenFileResponse
from server.web.metrics import CONTENT_TYPE as METRICS_TYPE
from server.web.services import Services

CLIENT_DIR = Path(__file__).resolve().parents[2] / "client_demo"
# Browser libraries as `npm ci` installs them from package.json, beside client_demo/.
NODE_MODULES = CLIENT_DIR.parent / "node_modules"
ROOM = "/api/rooms/{room_id}"
Handler = Callable[[Request], Awaitable[Response]]
# The field of a created thing's id in its answer, for the trace (a replay maps it).
CREATED_ID = {"product": "product_id", "sale": "sale_id", "coupon": "coupon_id",
              "lottery": "lottery_id"}


def services(request: Request | WebSocket) -> Services:
    svc: Services = request.app.state.services
    if not svc.ready:
        raise Unavailable("the server is starting or stopping")
    return svc


def show_of(request: Request | WebSocket) -> Show:
    return services(request).show


def room_param(request: Request | WebSocket) -> str:
    room_id = str(request.path_params["room_id"])
    if not ID_PATTERN.fullmatch(room_id):
        raise refusal("room_not_found")
    return room_id


def host_key(request: Request) -> str | None:
    key = request.headers.get("x-host-key")
    if key:
        return key
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return None


async def json_body(request: Request) -> dict[str, Any]:
    limit = services(request).settings.server.max_body_bytes
    declared_length(request, limit, "body")
    ctype = request.headers.get("content-type", "")
    if ctype and not ctype.split(";")[0].strip().lower().endswith("json"):
        raise UnsupportedMedia("Content-Type must be application/json")
    raw = await limited_body(request, limit, "body")
    body = loads_object(raw) if raw.strip() else {}
    request.state.body = body
    return body


def declared_length(request: Request, limit: int, what: str) -> None:
    """413 before reading when the Content-Length says more than `limit`."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not (declared.isascii() and declared.isdigit()):
            raise BadRequest("Content-Length is not a number")
        # By its digits before int(), which refuses more than 4,300 with a ValueError.
        if len(declared) > len(str(limit)) or int(declared) > limit:
            raise PayloadTooLarge(f"{what} is larger than {limit} bytes",
                                  details={"max_bytes": limit})


async def limited_body(request: Request, limit: int, what: str) -> bytes:
    """The body's bytes, at most `limit` of them: past it 413, before anything more
    is read (the caller checked the Content-Length already: `declared_length`)."""
    chunks = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"{what} is larger than {limit} bytes",
                                      details={"max_bytes": limit})
            chunks.append(chunk)
    except ClientDisconnect:
        # The client went away mid-body: its fault, answered (if anyone still
        # listens) like any bad body, never logged as a server error.
        raise BadRequest("the body ended before its Content-Length: the client "
                         "disconnected") from None
    return b"".join(chunks)


def ok(data: Any, status: int = 200) -> Response:
    return Response(encode(data), status_code=status, media_type="application/json")


# The refusal for a path id that cannot exist (the same as for an unknown one).
UNKNOWN_ID = {"product_id": "product_not_found", "sale_id": "sale_not_found",
              "lottery_id": "lottery_not_found"}


def id_params(request: Request) -> dict[str, str]:
    """The path's ids other than the room's, each checked like every id the server
    makes (1-64 of A-Z a-z 0-9 _ -): a longer or stranger one is refused before it
    reaches a Redis key or the trace."""
    params = {}
    for name, value in request.path_params.items():
        if name == "room_id":
            continue
        text = str(value)
        if not ID_PATTERN.fullmatch(text):
            raise refusal(UNKNOWN_ID.get(name, "not_found"),
                          f"{name}: not an id (1-64 letters, digits, '_' or '-')",
                          field=name)
        params[name] = text
    return params


def feature_endpoint(spec: registry.Route) -> Handler:
    """A feature's route as an endpoint: a host route needs the room's host key; any
    route (unless `needs_whole` is off) a room not in the middle of a rebuild (503
    meanwhile, so nothing is read half restored); a recorded one (a show change) is
    refused once the show ended (unless `guard_ended` is off) and goes into the
    room's trace."""
    async def endpoint(request: Request) -> Response:
        room_id = room_param(request)
        logcontext.ROOM.set(room_id)  # this request's task: its log records name the room
        show = show_of(request)
        if spec.access == "host":
            await show.ctx.check_host(room_id, host_key(request))
            guard = spec.guard_ended and spec.record_as is not None
            # Refused once the show ended; starting to sell takes a scheduled room live.
            if spec.needs_whole:
                state = await show.ctx.ensure_whole(room_id)
                if guard:
                    await show.lifecycle.guard_state(room_id, state, spec.goes_live)
            elif guard:
                await show.lifecycle.guard_host_change(room_id, goes_live=spec.goes_live)
        elif spec.needs_whole:
            await show.ctx.ensure_whole(room_id)
        # The route's declared shapes check the request before its handler runs: what
        # the OpenAPI document promises is what is enforced.
        sent = await json_body(request) if spec.body is not None else {}
        body = spec.body.read(sent) if spec.body is not None else {}
        if spec.query is not None:
            spec.query.read(request.query_params)
        params = id_params(request)
        result = await spec.handler(registry.Call(room_id, params, body,
                                                  request.query_params))
        response = ok(result, spec.status) if spec.media_type is None else \
            Response(result, status_code=spec.status, media_type=spec.media_type)
        if spec.download is not None:
            # A file to keep (a report, an export), named after its room.
            name = spec.download.format(room=room_id)
            response.headers["Content-Disposition"] = f'attachment; filename="{name}"'
        recorder = services(request).recorder
        if spec.record_as is not None and recorder is not None and recorder.active(room_id):
            data = dict(sent)  # as the host sent it (no defaults filled in)
            data.update(params)
            created = CREATED_ID.get(spec.record_as)
            # The id the server gave, so a replay can map it to its own.
            created_id = str(result[created]) if created is not None else None
            recorder.host(room_id, spec.record_as, data, created_id)
        return response

    endpoint.__name__ = f"{spec.method.lower()}_{spec.path.strip('/').replace('/', '_')}"
    return endpoint


def host_only(handler: Handler) -> Handler:
    """An endpoint of no feature that needs the room's host key and a whole room."""
    async def wrapped(request: Request) -> Response:
        room_id = room_param(request)
        show = show_of(request)
        await show.ctx.check_host(room_id, host_key(request))
        await show.ctx.ensure_whole(room_id)
        return await handler(request)

    wrapped.__name__ = handler.__name__
    return wrapped


# ---------------------------------------------------------------------- endpoints


async def health(request: Request) -> Response:
    """Liveness: 200 while this process serves HTTP; the body says which part is down."""
    svc: Services = request.app.state.services
    return ok(await svc.health.report())


async def ready(request: Request) -> Response:
    """Readiness: 200 when this process can sell now, else 503 with Retry-After."""
    svc: Services = request.app.state.services
    report = await svc.health.report()
    response = ok(report, 200 if report["ready"] else 503)
    if not report["ready"]:
        response.headers["Retry-After"] = "1"
    return response


async def api_index(request: Request) -> Response:
    """What the start-up banner's API address shows: where to go from here."""
    return ok({"name": "livesell", "version": __version__,
               "links": {"health": "/api/health", "ready": "/api/ready",
                         "rooms": "/api/rooms", "time": "/api/time",
                         "session": "/api/session"},
               "docs": "docs/protocol.md"})


async def server_time(request: Request) -> Response:
    return ok({"server_time": now_ms()})


# A QR code's text: a link into this server's pages, not a free QR service.
MAX_QR_TEXT = 512
QR_QUERY: Final = Query({"text": QueryStr(MAX_QR_TEXT, required=True,
                                          doc="a link to this server's own pages")})


async def qr_code(request: Request) -> Response:
    """The QR code (SVG) of a link to this server's own pages, such as a group's
    invitation (client_demo/js/viewer/groups.js), drawn by segno."""
    text = str(QR_QUERY.read(request.query_params)["text"])
    origin = str(request.base_url).rstrip("/")
    if not (text == origin or text.startswith(origin + "/")):
        raise BadRequest(f"text: must be a link to this server ({origin}/...)",
                         details={"field": "text"})
    return Response(_qr_svg(text), media_type="image/svg+xml",
                    headers={"Cache-Control": "public, max-age=3600"})


@functools.lru_cache(maxsize=256)
def _qr_svg(text: str) -> bytes:
    """The drawing, once per link (a few milliseconds of CPU each): a page's reloads
    and a room's many invitations to the same few groups draw nothing again."""
    buffer = io.BytesIO()
    segno.make(text, error="m", micro=False).save(buffer, kind="svg", scale=4, border=2,
                                                   xmldecl=False, title="QR code")
    return buffer.getvalue()


SESSION_SHAPE: Final = Shape("session", {
    "nickname": opt(Str(200), doc="a new guest's name (cleaned: server/core/identity.py)"),
    "shop_token": opt(Str(8192), doc="a JWT the shop signed (server/core/shop_identity.py)"),
}, exclusive=(("shop_token", "nickname"),),
    rules=("A new guest gives `nickname`; a shop-signed identity `shop_token`.",))


async def create_session(request: Request) -> Response:
    """A session token: for a new guest ({"nickname"}, counted against the client's
    address), or in exchange for a shop-signed JWT ({"shop_token"}, verified)."""
    svc = services(request)
    body = SESSION_SHAPE.read(await json_body(request))
    assert svc.admission is not None
    if "shop_token" in body:
        viewer, token = svc.admission.from_shop_token(body["shop_token"], now_ms())
    else:
        if "nickname" not in body:
            raise BadRequest("nickname: required", details={"field": "nickname"})
        nickname = clean_nickname(body["nickname"], svc.settings.chat.nickname_max_length)
        client = client_bucket(request.client.host if request.client else None)
        viewer, token = await svc.admission.mint_guest(nickname, client, now_ms())
    return ok({"viewer_id": viewer.viewer_id, "nickname": viewer.nickname, "token": token,
               "expires_at": viewer.expires_at, "verified": viewer.verified}, 201)


def offered_admin_key(request: Request) -> bytes:
    # As bytes: compare_digest refuses str with non-ASCII characters (a TypeError,
    # a 500). Header values arrive decoded as latin-1, so that gives their bytes back.
    return request.headers.get("x-admin-key", "").encode("latin-1")


async def create_room(request: Request) -> Response:
    svc = services(request)
    refused = rooms.room_creation_refusal(svc.settings.server, offered_admin_key(request))
    if refused is not None:
        raise refused
    return ok(await show_of(request).room.create_room(await json_body(request)), 201)


async def list_rooms(request: Request) -> Response:
    """Live and upcoming rooms, newest first, paged (server/features/rooms.py)."""
    limit, before = rooms.parse_list_query(request.query_params)
    return ok(await show_of(request).lifecycle.public_list(limit, before))


async def archive_room(request: Request) -> Response:
    """The admin key or the room's host key archives an ended room."""
    room_id = room_param(request)
    show = show_of(request)
    if not rooms.admin_key_matches(services(request).settings.server,
                                   offered_admin_key(request)):
        await show.ctx.check_host(room_id, host_key(request))
    return ok(await show.lifecycle.archive(room_id))


@host_only
async def download_trace(request: Request) -> Response:
    room_id = room_param(request)
    recorder = services(request).recorder
    assert recorder is not None
    path = recorder.path(room_id)
    if not path.is_file():
        raise HTTPException(404, "no trace recorded for this room")
    return FileResponse(path, media_type="application/x-ndjson",
                        filename=f"{room_id}.jsonl")


def check_admin(request: Request) -> None:
    """Server-wide settings need the admin key (a loopback server without one: none),
    as room creation does."""
    refused = rooms.room_creation_refusal(services(request).settings.server,
                                          offered_admin_key(request))
    if refused is not None:
        raise refused


def endpoint_param(request: Request) -> str:
    value = str(request.path_params["endpoint_id"])
    if not ID_PATTERN.fullmatch(value):
        raise HTTPException(404, "no such endpoint")
    return value


async def add_webhook(request: Request) -> Response:
    check_admin(request)
    body = webhook_terms.ENDPOINT_SHAPE.read(await json_body(request))
    return ok(await show_of(request).webhooks.add(None, body), 201)


async def list_webhooks(request: Request) -> Response:
    check_admin(request)
    return ok(await show_of(request).webhooks.listed(None))


async def remove_webhook(request: Request) -> Response:
    check_admin(request)
    return ok(await show_of(request).webhooks.remove(None, endpoint_param(request)))


async def webhook_deliveries(request: Request) -> Response:
    check_admin(request)
    limit = webhook_feature.DELIVERIES_QUERY.read(request.query_params)["limit"]
    return ok(await show_of(request).webhooks.delivery_log(None, endpoint_param(request),
                                                           limit))


async def replay_webhook(request: Request) -> Response:
    check_admin(request)
    return ok(await show_of(request).webhooks.replay(None, endpoint_param(request),
                                                     await json_body(request)))


async def metrics(request: Request) -> Response:
    """Prometheus text; the admin key (X-Admin-Key, or Authorization: Bearer, which
    Prometheus sends) when one is set, as the other server-wide routes."""
    svc = services(request)
    bearer = request.headers.get("authorization", "")
    offered = offered_admin_key(request) or (
        bearer[7:].encode("latin-1") if bearer.lower().startswith("bearer ") else b"")
    refused = rooms.room_creation_refusal(svc.settings.server, offered)
    if refused is not None:
        raise refused
    if svc.metrics is None:
        raise Unavailable("the server is starting", details={"retry_after_s": 1})
    return Response(svc.metrics_text(), media_type=METRICS_TYPE)


# The two files of the swagger-ui-py package the docs page loads (not the rest of
# the package: its editor bundles, source maps, an OAuth page with inline script).
SWAGGER_FILES: Final = {"swagger-ui.css": "text/css",
                        "swagger-ui-bundle.js": "text/javascript"}


@functools.cache
def swagger_ui_dir() -> Path | None:
    """Swagger UI's files as the swagger-ui-py package installs them (found without
    importing the package, whose framework handlers this server does not use)."""
    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        return None
    static = Path(next(iter(spec.submodule_search_locations))) / "static"
    return static if all((static / name).is_file() for name in SWAGGER_FILES) else None


async def swagger_file(request: Request) -> Response:
    """One of Swagger UI's two files, for /api/docs."""
    name = str(request.path_params["name"])
    folder = swagger_ui_dir()
    if name not in SWAGGER_FILES or folder is None:
        raise HTTPException(404, "no such file")
    return FileResponse(folder / name, media_type=SWAGGER_FILES[name],
                        headers={"Cache-Control": "public, max-age=86400"})


# hls.js (package.json) as the pages load it: its ES module build, which
# client_demo/js/video.js imports, and the worker it transmuxes segments in (loaded
# by URL from this server, so the pages' CSP needs no blob: workers). Nothing else
# of the package: not its other builds, demo, types or source maps.
VENDOR_FILES: Final = {"hls.mjs": "hls.js/dist/hls.min.mjs",
                       "hls.worker.js": "hls.js/dist/hls.worker.js"}
# Revalidated on every load (FileResponse's ETag and Last-Modified): after an upgrade
# the module and its worker are never of two versions.
VENDOR_HEADERS: Final = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}
HLS_MISSING: Final = ("hls.js is not installed on this server (run `npm ci --omit=dev` in "
                      "the livesell folder); HLS streams play only in browsers that play "
                      "HLS themselves")


def vendor_file(name: str, root: Path = NODE_MODULES) -> Path | None:
    """The installed file served as /static/vendor/{name}, or None when `name` is
    not one of VENDOR_FILES or its package is not installed under `root`."""
    relative = VENDOR_FILES.get(name)
    if relative is None:
        return None
    path = root / relative
    return path if path.is_file() else None


async def serve_vendor(request: Request) -> Response:
    """One of hls.js's two files (VENDOR_FILES); 404 with a JSON error saying so when
    hls.js is not installed."""
    name = str(request.path_params["name"])
    if name not in VENDOR_FILES:
        raise HTTPException(404, "no such file")
    # The stat off the event loop, as for images.
    path = await anyio.to_thread.run_sync(vendor_file, name)
    if path is None:
        raise HTTPException(404, HLS_MISSING)
    return FileResponse(path, media_type="text/javascript", headers=VENDOR_HEADERS)


async def openapi_document(request: Request) -> Response:
    """This server's OpenAPI 3.1 document, built from its routes and their shapes."""
    state = request.app.state
    if getattr(state, "openapi", None) is None:
        state.openapi = openapi.document_bytes(FIXED, services(request).show.registry.routes)
    return Response(state.openapi, media_type="application/json")


async def asyncapi_document(request: Request) -> Response:
    """The viewer WebSocket's AsyncAPI 3.0 document (every frame's JSON Schema)."""
    state = request.app.state
    if getattr(state, "asyncapi", None) is None:
        state.asyncapi = asyncapi.document_bytes(services(request).settings)
    return Response(state.asyncapi, media_type="application/json")


def page(name: str) -> Callable[[Request], Awaitable[Response]]:
    async def serve(request: Request) -> Response:
        path = CLIENT_DIR / name
        if not path.is_file():
            raise HTTPException(404, f"{name} is not installed")
        return FileResponse(path, headers={"Cache-Control": "no-cache"})

    return serve


# ---------------------------------------------------------------- product images

# An image is named by the hash of its bytes: what a URL shows never changes. Its own
# policy (no scripts, no loads, sandboxed) in place of the pages'.
IMAGE_HEADERS: Final = {"Cache-Control": "public, max-age=31536000, immutable",
                        "X-Content-Type-Options": "nosniff",
                        "Content-Security-Policy": "default-src 'none'; sandbox"}



async def upload_image(request: Request) -> Response:
    """Upload a product image: the raw bytes of a PNG, JPEG, WebP or GIF, its
    Content-Type saying which; the answer's image_url is the product's image_url.

    At most images.max_bytes (413), of one of the four types (415), really of that
    type by its magic numbers (400), at most images.max_pixels by its header (413),
    at most images.max_per_room distinct images a room (409 too_many_images). Kept
    under the SHA-256 of its bytes: the same image again is the same URL."""
    room_id = room_param(request)
    logcontext.ROOM.set(room_id)
    await show_of(request).ctx.check_host(room_id, host_key(request))
    store = services(request).images
    store.admit()  # a full line refuses before the body is read
    declared_length(request, store.max_bytes, "the image")
    media_type = images.media_type_of(request.headers.get("content-type"))
    data = await limited_body(request, store.max_bytes, "the image")
    stored = await store.save(room_id, data, media_type)
    return ok(stored.answer(), 201)


async def serve_image(request: Request) -> Response:
    """An uploaded product image (/images/{room_id}/{sha256}.{ext}); 404 for any
    other name."""
    # The stat off the event loop: a stalled disk must not stop the room's fan-out.
    found = await asyncio.to_thread(services(request).images.path_of,
                                    str(request.path_params["room_id"]),
                                    str(request.path_params["name"]))
    if found is None:
        raise HTTPException(404, "no such image")
    path, media_type = found
    return FileResponse(path, media_type=media_type, headers=IMAGE_HEADERS)


# ---------------------------------------------------------------- streams

# A stream file answers with its own policy (no scripts, no loads, sandboxed), as an
# image does: opened on its own, it is data, never a page.
STREAM_HEADERS: Final = {"X-Content-Type-Options": "nosniff",
                         "Content-Security-Policy": "default-src 'none'; sandbox"}


async def serve_stream(request: Request) -> Response:
    """A file of the streams folder (/streams/{path}): the HLS playlists and segments
    a shop's encoder writes there (server/features/streams.py says which files may
    be served); 404 for any other path. Playlists are never cached (they change with
    every segment), segments for streams.segment_max_age_s."""
    svc = services(request)
    settings = svc.settings
    path = str(request.path_params["path"])
    if StreamFolder.extension_of(path) is None:
        raise HTTPException(404, "no such stream file")  # no thread for a junk path
    # Opened off the event loop (a stalled disk must not stop the room's fan-out), in
    # the threads the file's reads use too (server/web/filesend.py).
    opened = await anyio.to_thread.run_sync(svc.streams.open, path)
    if opened is None:
        raise HTTPException(404, "no such stream file")
    age = settings.streams.segment_max_age_s
    cache = "no-cache" if opened.playlist or not age else f"public, max-age={age}"
    return OpenFileResponse(opened, {"Cache-Control": cache, **STREAM_HEADERS})


@dataclass(frozen=True, slots=True)
class Fixed:
    """An endpoint of no room feature, as served and as the OpenAPI document
    describes it (server/web/openapi.py). `access`: who may call it ("admin": the
    server's admin key when one is set; "host": the room's host key); `doc` False
    keeps a page out of the API document; `raw_body`: the media types of a body
    that is bytes, not JSON (an image upload), as the document describes it."""

    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"]
    path: str
    endpoint: Handler
    access: Literal["public", "admin", "host"] = "public"
    status: int = 200
    body: Shape | None = None
    query: Query | None = None
    media_type: str = "application/json"
    doc: bool = True
    raw_body: tuple[str, ...] = ()


FIXED: Final = (
    Fixed("GET", "/", page("viewer.html"), media_type="text/html", doc=False),
    Fixed("GET", "/r/{room_id}", page("viewer.html"), media_type="text/html", doc=False),
    Fixed("GET", "/host", page("host.html"), media_type="text/html", doc=False),
    Fixed("GET", "/api/docs", page("api-docs.html"), media_type="text/html", doc=False),
    Fixed("GET", "/api/docs/static/{name}", swagger_file, media_type="text/javascript",
          doc=False),
    Fixed("GET", "/api", api_index),
    Fixed("GET", "/api/openapi.json", openapi_document),
    Fixed("GET", "/api/asyncapi.json", asyncapi_document),
    Fixed("GET", "/api/health", health),
    Fixed("GET", "/metrics", metrics, access="admin", media_type=METRICS_TYPE),
    Fixed("GET", "/api/ready", ready),
    Fixed("GET", "/api/time", server_time),
    Fixed("GET", "/api/qr.svg", qr_code, query=QR_QUERY, media_type="image/svg+xml"),
    Fixed("POST", "/api/session", create_session, status=201, body=SESSION_SHAPE),
    Fixed("POST", "/api/rooms", create_room, access="admin", status=201,
          body=room_feature.CREATE_SHAPE),
    Fixed("GET", "/api/rooms", list_rooms, query=rooms.LIST_QUERY),
    Fixed("POST", "/api/webhooks", add_webhook, access="admin", status=201,
          body=webhook_terms.ENDPOINT_SHAPE),
    Fixed("GET", "/api/webhooks", list_webhooks, access="admin"),
    Fixed("DELETE", "/api/webhooks/{endpoint_id}", remove_webhook, access="admin"),
    Fixed("GET", "/api/webhooks/{endpoint_id}/deliveries", webhook_deliveries,
          access="admin", query=webhook_feature.DELIVERIES_QUERY),
    Fixed("POST", "/api/webhooks/{endpoint_id}/replay", replay_webhook, access="admin",
          body=webhook_terms.REPLAY_SHAPE),
    Fixed("GET", ROOM + "/trace", download_trace, access="host",
          media_type="application/x-ndjson"),
    Fixed("POST", ROOM + "/archive", archive_room, access="host"),
    Fixed("POST", ROOM + "/images", upload_image, access="host", status=201,
          raw_body=tuple(images.EXTENSIONS)),
    Fixed("GET", "/images/{room_id}/{name}", serve_image, media_type="image/*", doc=False),
    Fixed("GET", "/static/vendor/{name}", serve_vendor, media_type="text/javascript",
          doc=False),
    Fixed("GET", "/streams/{path:path}", serve_stream,
          media_type="application/vnd.apple.mpegurl", doc=False),
)


def http_routes(show_registry: registry.Registry) -> list[BaseRoute]:
    """Every HTTP route: the fixed ones, then each feature's under its room."""
    fixed: list[BaseRoute] = [Route(f.path, f.endpoint, methods=[f.method]) for f in FIXED]
    return fixed + [Route(ROOM + spec.path, feature_endpoint(spec), methods=[spec.method])
                    for spec in show_registry.routes]
