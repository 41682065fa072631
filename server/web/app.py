"""Wiring: the Starlette application, its lifespan (start and stop in order) and
the thin HTTP and WebSocket endpoints that call into `show` and `hub`.

Start: embedded redis-server (if no URL) -> store -> scripts -> hub -> pulse
(which rebuilds Redis from the store if Redis lost its data).
Drain (SIGTERM, before stop): refuse new work, answer the requests in flight,
flush the order store, then close viewers with 1012 so they reconnect elsewhere.
Stop: stop the clockwork, close viewers left with 1001, answer queued script
calls, flush and close the store, then Redis and its child process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

import orjson
from redis.asyncio import BlockingConnectionPool, Redis
from redis.exceptions import AuthenticationError, RedisError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket, WebSocketDisconnect

from server import __version__
from server.core import domain, gcpolicy
from server.core.domain import now_ms
from server.core.errors import (
    CLOSE_BAD_HANDSHAKE,
    CLOSE_IDENTITY_REFUSED,
    CLOSE_INTERNAL,
    CLOSE_POLICY,
    CLOSE_SERVICE_RESTART,
    CLOSE_TOO_MANY_IDENTITIES,
    CLOSE_TRY_AGAIN,
    CLOSE_UNKNOWN_ROOM,
    CLOSE_UNSUPPORTED_DATA,
    CLOSE_WRONG_HOST_KEY,
    BadRequest,
    LivesellError,
    PayloadTooLarge,
    Unavailable,
    UnsupportedMedia,
    refusal,
)
from server.core.identity import TokenSigner, Viewer, clean_nickname
from server.core.protocol import (
    ID_PATTERN,
    Buy,
    Chat,
    Checkout,
    ClaimCoupon,
    EnterLottery,
    FrameLimits,
    Like,
    Ping,
    Release,
    Resync,
    ViewerMessage,
    decode_viewer_message,
    encode,
    get_bool,
    get_str,
    loads_object,
    reject_unknown,
)
from server.core.settings import Settings, load_settings
from server.features import rooms
from server.features.pulse import Pulse
from server.features.recorder import Recorder
from server.features.show import Answer, Show, error_answer
from server.realtime import handshake
from server.realtime.admission import Admission, client_bucket
from server.realtime.hub import Conn, Hub, TokenBucket
from server.state.health import PING_TIMEOUT_S, Health
from server.state.ownership import RedisUse, private_data_dir, private_file, use_for_redis
from server.state.redis_supervisor import RedisSupervisor
from server.state.scripts import Scripts
from server.state.store import OrderStore
from server.web import logfilter, security

log = logging.getLogger("livesell.app")

# redis-py 8.1 skips its check that replaces pooled connections the server closed
# while "maintenance notifications" are on (their default, "auto", counts as on):
# after every Redis restart each pooled connection failed its next command once
# (redis/redis-py#4252). Switched off where the setting exists; older clients
# check their connections as before.
_POOL_FIXES: dict[str, Any] = {}
try:
    from redis.maint_notifications import MaintNotificationsConfig
except ImportError:  # pragma: no cover - redis-py before 7
    pass
else:
    _POOL_FIXES["maint_notifications_config"] = MaintNotificationsConfig(enabled=False)

CLIENT_DIR = Path(__file__).resolve().parents[2] / "client_demo"
MAX_INFLIGHT_PER_VIEWER = 16
MAX_BAD_FRAMES = 50


class Services:
    """Everything the endpoints need, built in the lifespan."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.embedded: RedisSupervisor | None = None
        self.data_use: RedisUse | None = None  # the embedded Redis's claim on data_dir
        self.redis: Redis | None = None
        self.redis_bytes: Redis | None = None
        self.store: OrderStore | None = None
        self.hub: Hub | None = None
        self.show: Show | None = None
        self.pulse: Pulse | None = None
        self.signer: TokenSigner | None = None
        self.admission: Admission | None = None
        self.recorder: Recorder | None = None
        self.limits = FrameLimits(settings.chat.max_length, settings.chat.max_likes_per_frame,
                                  settings.sale.max_quantity_per_buy)
        self.ready = False
        self.draining = False
        self.health = Health()
        # Every viewer request task in flight (buy, checkout, ...), for the drain.
        self.requests: set[asyncio.Task[None]] = set()
        self._drain_task: asyncio.Task[dict[str, int]] | None = None

    async def start(self) -> None:
        s = self.settings
        private_data_dir(s.data_path, s.trace_dir)  # orders, secrets: this user's only
        url = s.redis.url
        if not url:
            # The embedded Redis's files are the data directory's: own it first.
            self.data_use = use_for_redis(s.data_path)
            self.embedded = RedisSupervisor.from_settings(s.data_path / "redis", s.redis)
            # start() only waits here; the supervisor's own thread forks the child.
            url = await asyncio.to_thread(self.embedded.start)
        # Blocking pools: a burst of direct calls larger than the pool (every viewer
        # of a big room leaving at once) queues for a connection; redis-py's default
        # pool would fail the calls beyond its size with "Too many connections".
        self.redis = Redis.from_pool(BlockingConnectionPool.from_url(
            url, decode_responses=True, max_connections=s.redis.max_connections,
            timeout=s.redis.pool_timeout_s, **_POOL_FIXES))
        self.redis_bytes = Redis.from_pool(BlockingConnectionPool.from_url(
            url, decode_responses=False, max_connections=s.redis.max_connections,
            timeout=s.redis.pool_timeout_s, **_POOL_FIXES))
        redis = self.redis

        async def ping() -> None:
            await redis.ping()
        await self._while_redis_restarts(ping, url)
        # Its own connection: a ping that waits for a free slot in the shared pool
        # (busy in a big sale) would report Redis down when only the pool is full.
        self.health.redis = Redis.from_url(url, decode_responses=True,
                                           single_connection_client=True,
                                           socket_timeout=PING_TIMEOUT_S,
                                           socket_connect_timeout=PING_TIMEOUT_S)
        embedded = self.embedded
        if embedded is not None:
            self.health.supervisor_state = lambda: embedded.state
        private_file(s.store_path)  # mode 0600, which SQLite gives its -wal and -shm
        self.store = OrderStore(s.store_path, s.store.batch_max, s.store.busy_timeout_ms)
        await self.store.open()
        store = self.store
        self.health.store_busy_since = lambda: store.busy_since
        self.health.store_failed = lambda: store.last_failed
        scripts = Scripts(self.redis)
        await self._while_redis_restarts(scripts.load, url)
        self.hub = Hub(self.redis, self.redis_bytes, scripts, s.hub, s.chat.messages_per_s,
                       s.chat.burst)
        self.hub.on_redis_error = self.health.redis_failed
        await self.hub.start()
        self.show = Show(s, self.redis, scripts, self.hub, self.store, self.health)
        secret = self._secret()
        self.signer = TokenSigner(secret, s.auth.token_ttl_s)
        self.admission = Admission(s, self.signer, scripts)
        self.recorder = Recorder(s.trace_dir, s.record.enabled, s.record.max_bytes, secret)
        self.show.recorder = self.recorder
        self.recorder.keywords = self.show.keyword_lotteries
        self.pulse = Pulse(self.show)
        await self._while_redis_restarts(self.pulse.start, url)
        gcpolicy.apply(s.server.gc_young_threshold)
        exposed = rooms.exposure_warning(s.server)
        if exposed:
            log.warning(exposed)
        self.ready = True
        self.health.state = "serving"

    async def _while_redis_restarts(self, step: Callable[[], Awaitable[None]],
                                    url: str) -> None:
        """Run a start-up step that needs Redis, again while Redis is restarting (the
        supervisor brings a killed one back in a fraction of a second; a --workers
        process starting just then used to fail, and uvicorn stopped the whole
        server), for up to redis.start_timeout_s. A refused password is not retried."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.redis.start_timeout_s
        delay = 0.05
        while True:
            try:
                await step()
                return
            except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                if isinstance(exc, AuthenticationError) or loop.time() + delay >= deadline:
                    raise RuntimeError(
                        f"cannot reach Redis at {logfilter.redact(url)}: {exc}") from exc
                log.warning("start-up: Redis not answering (%s); trying again", exc)
            except RedisError as exc:
                raise RuntimeError(
                    f"cannot reach Redis at {logfilter.redact(url)}: {exc}") from exc
            await asyncio.sleep(delay)
            delay = min(1.0, delay * 2)

    def _secret(self) -> bytes:
        if self.settings.auth.secret:
            return self.settings.auth.secret.encode()
        path = self.settings.data_path / "secret.key"
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return path.read_bytes().strip()
        with os.fdopen(fd, "wb") as f:
            secret = secrets.token_hex(32).encode()
            f.write(secret)
        return secret

    def begin_drain(self) -> None:
        """Start the drain once (the server is shutting down; see `drain`)."""
        if self._drain_task is None and not self.draining:
            self._drain_task = asyncio.get_running_loop().create_task(self.drain())

    async def drain(self) -> dict[str, int]:
        """Leave gracefully (SIGTERM): take no new connections or requests, answer the
        requests in flight (checkouts wait for their order's commit), flush the order
        store, then close viewers with 1012 (service restart) so clients reconnect to
        another process. Bounded by server.shutdown_grace_s; what is still running then
        is cancelled and logged (a checkout cancelled mid-write stays 'confirming' and
        recovery decides it through the store). Returns counts for the log and tests."""
        if self.draining:
            return {}
        self.draining = True
        self.ready = False
        self.health.state = "draining"
        grace = self.settings.server.shutdown_grace_s
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        pending = set(self.requests)
        answered = len(pending)
        if pending:
            _, late = await asyncio.wait(pending, timeout=grace)
            if late:
                log.warning("drain: %d requests still running after %.1fs were cancelled; "
                            "checkouts among them are decided by recovery", len(late), grace)
                for task in late:
                    task.cancel()
                answered -= len(late)
        if self.store is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.store.wait_idle(),
                                       max(0.1, deadline - loop.time()))
        closed = 0
        if self.hub is not None:
            closed = self.hub.close_all(CLOSE_SERVICE_RESTART, "server restarting")
        log.info("drained: %d requests answered, %d viewers closed with 1012", answered,
                 closed)
        return {"answered": answered, "closed": closed}

    async def stop(self) -> None:
        """Stop in a fixed order; every step is bounded so shutdown always completes."""
        self.ready = False
        if self._drain_task is not None and not self._drain_task.done():
            await _bounded("drain", asyncio.shield(self._drain_task),
                           self.settings.server.shutdown_grace_s + 5.0)
        await self.health.stop()
        grace = self.settings.server.shutdown_grace_s + 5.0
        if self.pulse is not None:
            await _bounded("clockwork", self.pulse.stop(), 5.0)
        if self.show is not None:
            await _bounded("order counting", self.show.stop_background(), 6.0)
        if self.hub is not None:
            await _bounded("viewers", self.hub.stop(), 5.0)
            await _bounded("script calls", self.hub.scripts.drain(), grace)
        if self.store is not None:
            await _bounded("order store", self.store.close(), grace)
        for client in (self.redis, self.redis_bytes):
            if client is not None:
                await _bounded("redis client", client.aclose(), 2.0)
        if self.recorder is not None:
            self.recorder.close()
        if self.embedded is not None:
            await asyncio.to_thread(self.embedded.stop)
        if self.data_use is not None:
            self.data_use.release()
            self.data_use = None


async def _bounded(what: str, step: Awaitable[Any], limit_s: float) -> None:
    try:
        await asyncio.wait_for(step, limit_s)
    except TimeoutError:
        log.error("shutdown: %s did not finish within %.0fs; going on", what, limit_s)
    except (RedisError, OSError) as exc:
        log.warning("shutdown: %s: %s", what, exc)


# ---------------------------------------------------------------------- helpers


def services(request: Request | WebSocket) -> Services:
    svc: Services = request.app.state.services
    if not svc.ready:
        raise Unavailable("the server is starting or stopping")
    return svc


def show_of(request: Request) -> Show:
    svc = services(request)
    assert svc.show is not None
    return svc.show


def room_param(request: Request | WebSocket) -> str:
    room_id = str(request.path_params["room_id"])
    if not ID_PATTERN.match(room_id):
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
    declared = request.headers.get("content-length")
    if declared is not None:
        if not (declared.isascii() and declared.isdigit()):
            raise BadRequest("Content-Length is not a number")
        if int(declared) > limit:
            raise PayloadTooLarge(f"body is larger than {limit} bytes")
    ctype = request.headers.get("content-type", "")
    if ctype and not ctype.split(";")[0].strip().lower().endswith("json"):
        raise UnsupportedMedia("Content-Type must be application/json")
    chunks = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"body is larger than {limit} bytes")
            chunks.append(chunk)
    except ClientDisconnect:
        # The client went away mid-body: its fault, answered (if anyone still
        # listens) like any bad body, never logged as a server error.
        raise BadRequest("the body ended before its Content-Length: the client "
                         "disconnected") from None
    raw = b"".join(chunks)
    body = loads_object(raw) if raw.strip() else {}
    request.state.body = body
    return body


def ok(data: Any, status: int = 200) -> Response:
    return Response(encode(data), status_code=status, media_type="application/json")


Handler = Callable[[Request], Awaitable[Response]]
CREATED_ID = {"product": "product_id", "sale": "sale_id", "coupon": "coupon_id",
              "lottery": "lottery_id"}


def host_only(handler: Handler, record_as: str | None = None,
              needs_whole: bool = True, guard_ended: bool = True) -> Handler:
    """A host endpoint: the room's host key is required, and (unless `needs_whole`
    is off) the room must not be in the middle of a rebuild (503 meanwhile); a
    show change (a recorded action) is refused once the show ended (unless
    `guard_ended` is off). Moderation and reports stay open after the end."""
    async def wrapped(request: Request) -> Response:
        room_id = room_param(request)
        show = show_of(request)
        await show.check_host(room_id, host_key(request))
        if needs_whole:
            await show.ensure_whole(room_id)
        if guard_ended and record_as is not None:
            # Refused once the show ended; starting to sell takes a scheduled room live.
            await show.lifecycle.guard_host_change(
                room_id, goes_live=record_as in ("sale", "coupon", "lottery"))
        response = await handler(request)
        recorder = services(request).recorder
        if record_as is not None and recorder is not None and recorder.active(room_id):
            data = dict(getattr(request.state, "body", {}) or {})
            data.update({k: v for k, v in request.path_params.items() if k != "room_id"})
            created = CREATED_ID.get(record_as)
            # The id the server gave, so a replay can map it to its own.
            created_id = (str(orjson.loads(bytes(response.body))[created])
                          if created is not None else None)
            recorder.host(room_id, record_as, data, created_id)
        return response

    wrapped.__name__ = handler.__name__
    return wrapped


def recorded(action: str) -> Callable[[Handler], Handler]:
    """A host endpoint whose successful calls go into the room's trace."""
    def wrap(handler: Handler) -> Handler:
        return host_only(handler, action)

    return wrap


# ---------------------------------------------------------------------- HTTP endpoints


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


async def create_session(request: Request) -> Response:
    """A session token: for a new guest ({"nickname"}, counted against the client's
    address), or in exchange for a shop-signed JWT ({"shop_token"}, verified)."""
    svc = services(request)
    body = await json_body(request)
    reject_unknown(body, frozenset({"nickname", "shop_token"}), "session")
    assert svc.admission is not None
    if "shop_token" in body:
        if "nickname" in body:
            raise BadRequest("session: a shop identity's name comes from its token; "
                             "send shop_token or nickname, not both")
        shop_token = get_str(body, "shop_token", max_len=8192)
        viewer, token = svc.admission.from_shop_token(shop_token, now_ms())
    else:
        nickname = clean_nickname(get_str(body, "nickname", max_len=200),
                                  svc.settings.chat.nickname_max_length)
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
    return ok(await show_of(request).create_room(await json_body(request)), 201)


async def list_rooms(request: Request) -> Response:
    """Live and upcoming rooms, newest first, paged (server/features/rooms.py)."""
    limit, before = rooms.parse_list_query(request.query_params)
    return ok(await show_of(request).lifecycle.public_list(limit, before))


async def _go_live(request: Request) -> Response:
    return ok(await show_of(request).lifecycle.go_live(room_param(request)))


async def _end_show(request: Request) -> Response:
    return ok(await show_of(request).lifecycle.end_show(room_param(request)))


go_live = host_only(_go_live)
end_show = host_only(_end_show, guard_ended=False)  # ending again answers the state


async def archive_room(request: Request) -> Response:
    """The admin key or the room's host key archives an ended room."""
    room_id = room_param(request)
    show = show_of(request)
    if not rooms.admin_key_matches(services(request).settings.server,
                                   offered_admin_key(request)):
        await show.check_host(room_id, host_key(request))
    return ok(await show.lifecycle.archive(room_id))


async def room_state(request: Request) -> Response:
    return ok(await show_of(request).room_state(room_param(request)))


@recorded("product")
async def add_product(request: Request) -> Response:
    return ok(await show_of(request).add_product(room_param(request), await json_body(request)),
              201)


@recorded("update_product")
async def update_product(request: Request) -> Response:
    pid = str(request.path_params["product_id"])
    return ok(await show_of(request).update_product(room_param(request), pid,
                                                    await json_body(request)))


async def get_product(request: Request) -> Response:
    pid = str(request.path_params["product_id"])
    return ok(await show_of(request).product_card(room_param(request), pid))


@recorded("pin")
async def pin(request: Request) -> Response:
    return ok(await show_of(request).pin(room_param(request), await json_body(request)))


@recorded("unpin")
async def unpin(request: Request) -> Response:
    pid = str(request.path_params["product_id"])
    return ok(await show_of(request).unpin(room_param(request), pid))


@recorded("sale")
async def start_sale(request: Request) -> Response:
    return ok(await show_of(request).start_sale(room_param(request), await json_body(request)),
              201)


@recorded("stop_sale")
async def stop_sale(request: Request) -> Response:
    sid = str(request.path_params["sale_id"])
    return ok(await show_of(request).stop_sale(room_param(request), sid))


@recorded("coupon")
async def drop_coupon(request: Request) -> Response:
    return ok(await show_of(request).drop_coupon(room_param(request),
                                                 await json_body(request)), 201)


@recorded("lottery")
async def open_lottery(request: Request) -> Response:
    return ok(await show_of(request).open_lottery(room_param(request),
                                                  await json_body(request)), 201)


@recorded("draw")
async def draw_lottery(request: Request) -> Response:
    lid = str(request.path_params["lottery_id"])
    return ok(await show_of(request).draw_lottery(room_param(request), lid))


async def get_lottery(request: Request) -> Response:
    lid = str(request.path_params["lottery_id"])
    return ok(await show_of(request).lottery(room_param(request), lid))


@host_only
async def lottery_entrants(request: Request) -> Response:
    lid = str(request.path_params["lottery_id"])
    show = show_of(request)
    await show.lottery(room_param(request), lid)
    return ok({"lottery_id": lid,
               "entrants": await show.lottery_entrants(room_param(request), lid)})


@recorded("announce")
async def announce(request: Request) -> Response:
    return ok(await show_of(request).announce(room_param(request), await json_body(request)),
              201)


def _query_int(request: Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    # isascii too: str.isdigit() also accepts '²' (which int() refuses) and other
    # scripts' digits.
    if not (raw.isascii() and raw.isdigit()) or not lo <= int(raw) <= hi:
        raise BadRequest(f"{name}: must be an integer between {lo} and {hi}",
                         details={"field": name})
    return int(raw)


@host_only
async def list_orders(request: Request) -> Response:
    limit = _query_int(request, "limit", 100, 1, 1000)
    offset = _query_int(request, "offset", 0, 0, 10**9)
    return ok({"orders": await show_of(request).orders(room_param(request), limit, offset)})


@host_only
async def delete_message(request: Request) -> Response:
    return ok(await show_of(request).delete_message(room_param(request),
                                                    await json_body(request)))


@host_only
async def mute(request: Request) -> Response:
    return ok(await show_of(request).mute(room_param(request), await json_body(request)))


@host_only
async def stats(request: Request) -> Response:
    return ok(await show_of(request).stats(room_param(request)))


@host_only
async def set_recording(request: Request) -> Response:
    body = await json_body(request)
    reject_unknown(body, frozenset({"enabled"}), "recording")
    enabled = get_bool(body, "enabled", default=True)
    room_id = room_param(request)
    await show_of(request).set_recording(room_id, enabled)
    return ok({"room_id": room_id, "recording": enabled})


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


@host_only
async def set_policy(request: Request) -> Response:
    return ok(await show_of(request).set_policy(room_param(request), await json_body(request)))


async def _audit(request: Request) -> Response:
    return ok(await show_of(request).audit(room_param(request)))


audit = host_only(_audit, needs_whole=False)  # it reports 'rebuilding' itself


# ---------------------------------------------------------------------- pages


def page(name: str) -> Callable[[Request], Awaitable[Response]]:
    async def serve(request: Request) -> Response:
        path = CLIENT_DIR / name
        if not path.is_file():
            raise HTTPException(404, f"{name} is not installed")
        return FileResponse(path, headers={"Cache-Control": "no-cache"})

    return serve


# ---------------------------------------------------------------------- WebSocket

SINCE_PATTERN = re.compile(r"^[0-9]{1,19}$")
RECORDED_FRAMES = frozenset({"buy", "checkout", "release", "claim_coupon", "enter_lottery",
                             "chat", "like"})


def ws_credentials(ws: WebSocket) -> handshake.WsCredentials:
    """The token and host key a viewer's handshake offered in `Sec-WebSocket-Protocol`
    (server/handshake.py); `refusal` is set when the URL carries one instead."""
    return handshake.read_credentials(ws.scope.get("subprotocols", ()), ws.query_params)


async def viewer_socket(ws: WebSocket) -> None:
    svc: Services = ws.app.state.services
    # A page from another site must not act as its visitor: refuse a foreign
    # Origin before accepting (the handshake then answers HTTP 403).
    if not security.origin_allowed(ws.headers.get("origin"), ws.headers.get("host"),
                                   svc.settings.security.websocket_origins):
        await ws.close(CLOSE_POLICY, "origin not allowed")
        return
    room_id = str(ws.path_params["room_id"])
    creds = ws_credentials(ws)
    # Accepted first, then closed, so that a browser sees the code and the reason.
    await ws.accept(subprotocol=creds.subprotocol)
    if creds.refusal is not None:
        await ws.close(CLOSE_BAD_HANDSHAKE, creds.refusal)
        return
    if not svc.ready or svc.show is None or svc.hub is None or svc.signer is None:
        await ws.close(CLOSE_TRY_AGAIN, "server is starting or stopping")
        return
    show, hub = svc.show, svc.hub
    if not ID_PATTERN.match(room_id) or not await show.room_exists(room_id):
        await ws.close(CLOSE_UNKNOWN_ROOM, "unknown room")
        return
    now = now_ms()
    token = creds.token
    admitted = await _admit(svc, ws, token, ws.query_params.get("nickname"), now)
    if admitted is None:
        return
    viewer, token = admitted
    is_host = False
    offered_key = creds.host_key
    if offered_key:
        try:
            await show.check_host(room_id, offered_key)
        except LivesellError:
            await ws.close(CLOSE_WRONG_HOST_KEY, "wrong host key")
            return
        is_host = True
    raw_since = ws.query_params.get("since")
    since = int(raw_since) if raw_since and SINCE_PATTERN.match(raw_since) else None
    conn = Conn(hub, room_id, viewer, ws, is_host)
    welcome = {"type": "welcome", "room_id": room_id,
               "viewer": {"viewer_id": viewer.viewer_id, "nickname": viewer.nickname,
                          "verified": viewer.verified},
               "token": token}
    session = _ViewerSession(svc, conn)
    recorder = svc.recorder
    raw = conn.raw
    try:
        await hub.join(conn, since, welcome)
        if recorder is not None and recorder.active(room_id):
            recorder.viewer(room_id, viewer.viewer_id, "join")
        if raw is not None:
            # Fast route: text frames reach the session straight from the protocol;
            # the ASGI queue below then carries only the disconnect (or a binary frame).
            raw.on_text = session.on_text_fast
            raw.on_shutdown = svc.begin_drain
        while not conn.closed:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                break
            text = message.get("text")
            if text is None:
                hub.close(conn, CLOSE_UNSUPPORTED_DATA, "binary frames are not accepted")
                break
            if not session.on_text(text):
                break
    except WebSocketDisconnect:
        pass
    except (RedisError, OSError) as exc:
        # Only joining needs Redis here: the client tries again later.
        svc.health.redis_failed(exc)
        hub.close(conn, CLOSE_TRY_AGAIN, "temporarily unavailable")
    except Unavailable:
        hub.close(conn, CLOSE_TRY_AGAIN, "the room is being restored; try again")
    except Exception:
        log.exception("viewer %s in %s: unexpected fault", viewer.viewer_id, room_id)
        hub.close(conn, CLOSE_INTERNAL, "internal error")
    finally:
        if raw is not None:
            raw.on_text = None
            raw.on_shutdown = None
        hub.leave(conn)
        if recorder is not None and recorder.active(room_id):
            recorder.viewer(room_id, viewer.viewer_id, "leave")
        if session.inflight:
            await asyncio.gather(*session.inflight, return_exceptions=True)
        if conn.closing is not None:
            # Plain ASGI: the close frame (its code tells the client why) must be
            # sent before this returns and the server drops the connection.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(conn.closing), 5.0)


async def _admit(svc: Services, ws: WebSocket, token: str | None, nickname: str | None,
                 now: int) -> tuple[Viewer, str] | None:
    """The joining viewer's identity (server/realtime/admission.py), or None after closing the
    socket: a refused shop token gets an error frame and 4001, a guest over the
    address's mint limit an error frame (with retry_after_s) and 4029."""
    assert svc.admission is not None
    try:
        return await svc.admission.identify(token, nickname,
                                            client_bucket(ws.client.host if ws.client else None),
                                            now)
    except LivesellError as exc:
        code = CLOSE_TOO_MANY_IDENTITIES if exc.code == "too_many_identities" else (
            CLOSE_IDENTITY_REFUSED)
        with contextlib.suppress(Exception):
            await ws.send_text(error_answer(exc).frame(None).decode())
        await ws.close(code, exc.code)
    except (RedisError, OSError) as exc:
        svc.health.redis_failed(exc)
        await ws.close(CLOSE_TRY_AGAIN, "temporarily unavailable")
    return None


class _ViewerSession:
    """What one viewer connection does with each text frame, synchronously.

    Called for every frame, straight from the protocol on the fast route
    (fastws.py) or from the receive loop otherwise: validate, rate-limit,
    answer pings and likes at once, and start a task for anything that needs
    Redis. Chat and resync run one after another in arrival order (each waits
    for the one before); requests (buy, checkout, ...) run concurrently, at most
    MAX_INFLIGHT_PER_VIEWER at a time, each answered with its request id.
    """

    __slots__ = ("conn", "inflight", "inline_tail", "patience", "svc")

    def __init__(self, svc: Services, conn: Conn) -> None:
        self.svc = svc
        self.conn = conn
        self.inflight: set[asyncio.Task[None]] = set()
        self.inline_tail: asyncio.Task[None] | None = None
        # Rejected frames (malformed, or over the rate) draw on a slowly refilling
        # allowance; a client that keeps sending them after being told is closed.
        self.patience = TokenBucket(1.0, MAX_BAD_FRAMES)

    def on_text_fast(self, text: str) -> None:
        try:
            self.on_text(text)
        except Exception:
            # Called from the protocol's data_received: nothing above us would log it.
            log.exception("viewer %s in %s: unexpected fault", self.conn.viewer.viewer_id,
                          self.conn.room_id)
            self.svc.hub.close(self.conn, CLOSE_INTERNAL, "internal error")  # type: ignore[union-attr]

    def on_text(self, text: str) -> bool:
        """Handle one frame; False when the connection is being closed."""
        svc, conn = self.svc, self.conn
        hub, show, recorder = svc.hub, svc.show, svc.recorder
        assert hub is not None and show is not None
        if conn.closed:
            return False
        if not conn.frame_bucket.take():
            if not self.patience.take():
                hub.close(conn, CLOSE_POLICY, "too many rejected frames")
                return False
            conn.send(error_answer(refusal("rate_limited")).frame(None))
            return True
        request_id: str | None = None
        try:
            obj = loads_object(text, "frame")
            rid = obj.get("request_id")
            request_id = rid if isinstance(rid, str) and ID_PATTERN.match(rid) else None
            msg = decode_viewer_message(obj, svc.limits)
            if recorder is not None and obj["type"] in RECORDED_FRAMES and \
                    recorder.active(conn.room_id):
                recorder.viewer(conn.room_id, conn.viewer.viewer_id, obj["type"], obj)
        except BadRequest as exc:
            if not self.patience.take():
                hub.close(conn, CLOSE_POLICY, "too many rejected frames")
                return False
            conn.send(error_answer(exc).frame(request_id))
            return True
        if isinstance(msg, Ping):
            body: dict[str, Any] = {"type": "pong", "server_time": now_ms()}
            if msg.client_time is not None:
                body["t"] = msg.client_time
            if request_id is not None:
                body["re"] = request_id
            conn.send(encode(body))
        elif isinstance(msg, Like):
            show.like(conn.room_id, msg.count)
        elif isinstance(msg, Chat | Resync):
            self.inline_tail = self._start(
                _handle_inline(svc, conn, msg, request_id, self.inline_tail))
        elif svc.draining:
            conn.send(error_answer(Unavailable(
                "the server is restarting: reconnect and send this again",
                details={"retry_after_s": 1})).frame(request_id))
        elif len(self.inflight) >= MAX_INFLIGHT_PER_VIEWER:
            conn.send(error_answer(refusal("rate_limited")).frame(request_id))
        else:
            task = self._start(_handle_request(show, conn, conn.viewer, conn.room_id, msg))
            svc.requests.add(task)
            task.add_done_callback(svc.requests.discard)
        return True

    def _start(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro)
        self.inflight.add(task)
        task.add_done_callback(self.inflight.discard)
        return task


async def _handle_inline(svc: Services, conn: Conn, msg: Chat | Resync,
                         request_id: str | None, after: asyncio.Task[None] | None) -> None:
    """Chat and resync, in the order the viewer sent them: wait for the previous one."""
    assert svc.show is not None and svc.hub is not None
    if after is not None and not after.done():
        await asyncio.wait([after])
    if conn.closed:
        return
    try:
        if isinstance(msg, Resync):
            await svc.hub.resync(conn)
        elif not conn.chat_bucket.take():
            conn.send(error_answer(refusal("rate_limited", "Chatting too fast: slow down."))
                      .frame(request_id))
        else:
            await svc.show.chat(conn.viewer, conn.room_id, msg.text, conn.is_host)
    except LivesellError as exc:
        conn.send(error_answer(exc).frame(request_id))
    except (RedisError, OSError) as exc:
        # The viewer stays connected: events resume when Redis is back.
        svc.health.redis_failed(exc)
        conn.send(error_answer(Unavailable("temporarily unavailable, try again"))
                  .frame(request_id))
    except Exception:
        log.exception("viewer %s in %s: unexpected fault", conn.viewer.viewer_id, conn.room_id)
        svc.hub.close(conn, CLOSE_INTERNAL, "internal error")


async def _handle_request(show: Show, conn: Conn, viewer: Viewer, room_id: str,
                          msg: ViewerMessage) -> None:
    request_id = getattr(msg, "request_id", None)
    try:
        answer: Answer
        if isinstance(msg, Buy):
            answer = await show.buy(viewer, room_id, msg.request_id, msg.product_id,
                                    msg.quantity,
                                    client_bucket(conn.ws.client.host if conn.ws.client else None))
        elif isinstance(msg, Checkout):
            answer = await show.checkout(viewer, room_id, msg.request_id, msg.hold_id,
                                         msg.coupon_id)
        elif isinstance(msg, Release):
            answer = await show.release(viewer, room_id, msg.hold_id)
        elif isinstance(msg, ClaimCoupon):
            answer = await show.claim_coupon(viewer, room_id, msg.request_id, msg.coupon_id)
        elif isinstance(msg, EnterLottery):
            answer = await show.enter_lottery(viewer, room_id, msg.request_id, msg.lottery_id,
                                              msg.keyword or "")
        else:  # pragma: no cover - decode_viewer_message returns only known kinds
            raise BadRequest("unsupported message")
        if answer.kind == "error" and isinstance(msg, Buy | ClaimCoupon | EnterLottery):
            answer = await show.lifecycle.explain_refusal(room_id, answer)
    except LivesellError as exc:
        answer = error_answer(exc)
    except (RedisError, OSError) as exc:
        show.health.redis_failed(exc)  # one log line per outage, not one per request
        answer = error_answer(Unavailable("temporarily unavailable, try again"))
    except Exception:
        log.exception("request %s failed", request_id)
        answer = Answer("error", {"code": "internal", "message": "internal error"})
    conn.send(answer.frame(request_id))


# ---------------------------------------------------------------------- errors


async def on_livesell_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, LivesellError)
    response = ok({"error": exc.to_dict()}, exc.status)
    retry_after = exc.details.get("retry_after_s")
    if isinstance(retry_after, int):
        response.headers["Retry-After"] = str(retry_after)
    elif exc.status == 503:
        # Load balancers and clients back off for this long before trying again.
        response.headers["Retry-After"] = "1"
    return response


async def on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return ok({"error": {"code": code, "message": str(exc.detail)}}, exc.status_code)


async def on_redis_error(request: Request, exc: Exception) -> Response:
    request.app.state.services.health.redis_failed(exc)
    response = ok({"error": {"code": "unavailable", "message": "temporarily unavailable"}},
                  503)
    response.headers["Retry-After"] = "1"
    return response


async def on_unexpected(request: Request, exc: Exception) -> Response:
    log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
    return ok({"error": {"code": "internal", "message": "internal error"}}, 500)


# ---------------------------------------------------------------------- app


def create_app(settings: Settings | None = None) -> Starlette:
    svc = Services(settings or load_settings(os.environ.get("LIVESELL_CONFIG") or None))
    logfilter.install()  # in-process servers too; idempotent

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            await svc.start()
        except BaseException:
            await svc.stop()
            raise
        try:
            yield
        finally:
            await svc.stop()

    room = "/api/rooms/{room_id}"
    routes = [
        Route("/", page("viewer.html")),
        Route("/r/{room_id}", page("viewer.html")),
        Route("/host", page("host.html")),
        Route("/api", api_index, methods=["GET"]),
        Route("/api/health", health),
        Route("/api/ready", ready),
        Route("/api/time", server_time),
        Route("/api/session", create_session, methods=["POST"]),
        Route("/api/rooms", create_room, methods=["POST"]),
        Route("/api/rooms", list_rooms, methods=["GET"]),
        Route(room, room_state, methods=["GET"]),
        Route(room + "/products", add_product, methods=["POST"]),
        Route(room + "/products/{product_id}", update_product, methods=["PATCH"]),
        Route(room + "/products/{product_id}", get_product, methods=["GET"]),
        Route(room + "/pins", pin, methods=["POST"]),
        Route(room + "/pins/{product_id}", unpin, methods=["DELETE"]),
        Route(room + "/sales", start_sale, methods=["POST"]),
        Route(room + "/sales/{sale_id}/stop", stop_sale, methods=["POST"]),
        Route(room + "/coupons", drop_coupon, methods=["POST"]),
        Route(room + "/lotteries", open_lottery, methods=["POST"]),
        Route(room + "/lotteries/{lottery_id}", get_lottery, methods=["GET"]),
        Route(room + "/lotteries/{lottery_id}/draw", draw_lottery, methods=["POST"]),
        Route(room + "/lotteries/{lottery_id}/entrants", lottery_entrants, methods=["GET"]),
        Route(room + "/announcements", announce, methods=["POST"]),
        Route(room + "/orders", list_orders, methods=["GET"]),
        Route(room + "/audit", audit, methods=["GET"]),
        Route(room + "/stats", stats, methods=["GET"]),
        Route(room + "/recording", set_recording, methods=["POST"]),
        Route(room + "/trace", download_trace, methods=["GET"]),
        Route(room + "/moderation/delete", delete_message, methods=["POST"]),
        Route(room + "/moderation/mute", mute, methods=["POST"]),
        Route(room + "/live", go_live, methods=["POST"]),
        Route(room + "/end", end_show, methods=["POST"]),
        Route(room + "/archive", archive_room, methods=["POST"]),
        Route(room + "/policy", set_policy, methods=["PATCH"]),
        WebSocketRoute("/ws/{room_id}", viewer_socket),
    ]
    if CLIENT_DIR.is_dir():
        routes.append(Mount("/static", StaticFiles(directory=CLIENT_DIR), name="static"))
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={
            LivesellError: on_livesell_error,
            HTTPException: on_http_error,
            RedisError: on_redis_error,
            Exception: on_unexpected,
        },
    )
    app.state.services = svc
    # Outermost, around Starlette's ServerErrorMiddleware, so that 500 answers carry
    # the security headers too (user middleware sits inside it).
    app.middleware_stack = security.SecurityHeaders(app.build_middleware_stack(),
                                                    svc.settings.security)
    return app


def default_app() -> Starlette:
    """Factory for `uvicorn --factory server.web.app:default_app` and worker processes."""
    return create_app()


__all__ = ["Services", "create_app", "default_app", "domain"]
