"""The viewer WebSocket endpoint: the handshake (origin, credentials as
subprotocols, identity, host key), joining the hub, and each frame of the
session: validated, rate-limited, answered at once (ping, like) or handed to
a task (chat and resync in order; requests to the feature registered for
their type, concurrently, each answered with its request id)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Callable, Coroutine
from functools import partial
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from server.core import events, logcontext
from server.core.domain import now_ms
from server.core.errors import (
    CLOSE_BAD_HANDSHAKE,
    CLOSE_IDENTITY_REFUSED,
    CLOSE_INTERNAL,
    CLOSE_POLICY,
    CLOSE_TOO_MANY_IDENTITIES,
    CLOSE_TRY_AGAIN,
    CLOSE_UNKNOWN_ROOM,
    CLOSE_UNSUPPORTED_DATA,
    CLOSE_WRONG_HOST_KEY,
    BadRequest,
    LivesellError,
    Unavailable,
    refusal,
)
from server.core.identity import Viewer
from server.core.protocol import (
    ID_PATTERN,
    Chat,
    Like,
    Ping,
    Resync,
    ViewerMessage,
    decode_viewer_message,
    encode,
    loads_object,
)
from server.features.context import Answer, error_answer
from server.features.registry import MessageRoute, ViewerCall
from server.features.show import Show
from server.realtime import handshake
from server.realtime.admission import client_bucket
from server.realtime.hub import Conn, TokenBucket
from server.state.faults import REDIS_FAULTS
from server.state.store import StoreClosed, StoreError, StoreOutcomeUnknown
from server.web import security
from server.web.services import Services

log = logging.getLogger("livesell.app")


SINCE_PATTERN = re.compile(r"^[0-9]{1,19}$")
RECORDED_FRAMES = frozenset({"buy", "checkout", "release", "claim_coupon", "enter_lottery",
                             "chat", "like"})


def ws_credentials(ws: WebSocket) -> handshake.WsCredentials:
    """The token and host key a viewer's handshake offered in `Sec-WebSocket-Protocol`
    (server/realtime/handshake.py); `refusal` is set when the URL carries one instead."""
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
    if not svc.ready or svc.hub is None or svc.signer is None:
        await ws.close(CLOSE_TRY_AGAIN, "server is starting or stopping")
        return
    show, hub = svc.show, svc.hub
    if not ID_PATTERN.fullmatch(room_id) or not await show.room.room_exists(room_id):
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
            await show.ctx.check_host(room_id, offered_key)
        except LivesellError:
            await ws.close(CLOSE_WRONG_HOST_KEY, "wrong host key")
            return
        is_host = True
    raw_since = ws.query_params.get("since")
    since = int(raw_since) if raw_since and SINCE_PATTERN.fullmatch(raw_since) else None
    conn = Conn(hub, room_id, viewer, ws, is_host)
    welcome = events.welcome(room_id, viewer.viewer_id, viewer.nickname, viewer.verified,
                             token)
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
    except REDIS_FAULTS as exc:
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
    except REDIS_FAULTS as exc:
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
    hub.max_inflight_requests at a time, each answered with its request id.
    """

    __slots__ = ("call", "conn", "inflight", "inline_tail", "patience", "svc")

    def __init__(self, svc: Services, conn: Conn) -> None:
        self.svc = svc
        self.conn = conn
        # Who asks, from where: the same for every request of the connection.
        self.call = ViewerCall(conn.viewer, conn.room_id,
                               client_bucket(conn.ws.client.host if conn.ws.client else None))
        self.inflight: set[asyncio.Future[Any]] = set()
        self.inline_tail: asyncio.Task[None] | None = None
        # Rejected frames (malformed, or over the rate) draw on a slowly refilling
        # allowance; a client that keeps sending them after being told is closed.
        self.patience = TokenBucket(1.0, svc.settings.hub.max_rejected_frames)

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
        assert hub is not None
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
            request_id = rid if isinstance(rid, str) and ID_PATTERN.fullmatch(rid) else None
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
            conn.send(encode(events.pong(now_ms(), msg.client_time, request_id)))
        elif isinstance(msg, Like):
            show.chat.like(conn.room_id, msg.count)
            show.fans.liked(conn.room_id, conn.viewer)
        elif isinstance(msg, Chat | Resync):
            self.inline_tail = self._start(
                _handle_inline(svc, conn, msg, request_id, self.call.client,
                               self.inline_tail))
        elif svc.draining:
            conn.send(error_answer(Unavailable(
                "the server is restarting: reconnect and send this again",
                details={"retry_after_s": 1})).frame(request_id))
        elif len(self.inflight) >= svc.settings.hub.max_inflight_requests:
            conn.send(error_answer(refusal("rate_limited")).frame(request_id))
        else:
            route = show.registry.messages.get(type(msg))
            if route is None:  # pragma: no cover - decode_viewer_message returns known kinds
                conn.send(error_answer(BadRequest("unsupported message")).frame(request_id))
                return True
            started = route.start(self.call, msg) if route.start is not None else None
            if started is None:
                self._request_task(route, msg)
            else:
                # The common request with no task: answered from the future's callback.
                self._track(started, partial(self._answer_started, route, msg))
        return True

    def _request_task(self, route: MessageRoute, msg: ViewerMessage) -> None:
        """The request on its feature's full path, in a task."""
        self._task(_handle_request(self.svc, self.conn, self.call, route, msg))

    def _task(self, coro: Coroutine[Any, Any, None]) -> None:
        """A task answering a request, counted in flight until it ends."""
        self._track(asyncio.get_running_loop().create_task(coro), self._request_done)

    def _track(self, request: asyncio.Future[Any],
               done: Callable[[asyncio.Future[Any]], None]) -> None:
        """Count a request in flight (the connection's, the drain's, the GC guard's)
        until `done`, its one done-callback (each is a loop callback per request),
        calls _request_done."""
        self.inflight.add(request)
        self.svc.requests.add(request)
        if self.svc.gc_guard is not None:
            self.svc.gc_guard.enter()
        request.add_done_callback(done)

    def _request_done(self, request: asyncio.Future[Any]) -> None:
        self.inflight.discard(request)
        self.svc.requests.discard(request)
        if self.svc.gc_guard is not None:
            self.svc.gc_guard.leave()

    def _answer_started(self, route: MessageRoute, msg: ViewerMessage,
                        started: asyncio.Future[Answer | None]) -> None:
        """A request a feature started without a task (MessageRoute.start) has its
        answer: send it, or hand the request to a task, to its full path when the
        feature could not finish it, or to `_send_answer` when the show's end may
        explain a refusal. A task that takes the request over is counted in flight
        before the started future stops being counted, so the counts never dip in
        between (the GC guard would end a hold on such a dip)."""
        if started.cancelled():
            self._request_done(started)
            return
        svc = self.svc
        request_id = getattr(msg, "request_id", None)
        exc = started.exception()
        answer = started.result() if exc is None else failure_answer(svc.show, exc,
                                                                     request_id)
        if answer is None:
            self._request_task(route, msg)
            svc.handoffs += 1
        elif needs_explaining(svc.show, route, answer):
            self._task(_send_answer(svc, self.conn, self.call.room_id, route, msg, answer,
                                    request_id))
            svc.handoffs += 1
        else:
            svc.count_answer(msg, answer)
            self.conn.send(answer.frame(request_id))
        self._request_done(started)

    def _start(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro)
        self.inflight.add(task)
        task.add_done_callback(self.inflight.discard)
        return task


async def _handle_inline(svc: Services, conn: Conn, msg: Chat | Resync,
                         request_id: str | None, client: str,
                         after: asyncio.Task[None] | None) -> None:
    """Chat and resync, in the order the viewer sent them: wait for the previous one."""
    assert svc.hub is not None
    logcontext.ROOM.set(conn.room_id)  # in this message's task only
    logcontext.REQUEST.set(request_id)
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
            show = svc.show
            for answer in await show.chat.chat(conn.viewer, conn.room_id, msg.text,
                                               conn.is_host, request_id, client):
                # A comment's buy refused because the show ended says so, as a buy's.
                if show.lifecycle.may_explain(answer):
                    answer = await show.lifecycle.explain_refusal(conn.room_id, answer)
                conn.send(answer.frame(request_id))
    except LivesellError as exc:
        conn.send(error_answer(exc).frame(request_id))
    except REDIS_FAULTS as exc:
        # The viewer stays connected: events resume when Redis is back.
        svc.health.redis_failed(exc)
        conn.send(error_answer(Unavailable("temporarily unavailable, try again"))
                  .frame(request_id))
    except Exception:
        log.exception("viewer %s in %s: unexpected fault", conn.viewer.viewer_id, conn.room_id)
        svc.hub.close(conn, CLOSE_INTERNAL, "internal error")


async def _handle_request(svc: Services, conn: Conn, call: ViewerCall, route: MessageRoute,
                          msg: ViewerMessage) -> None:
    """A request (buy, checkout, ...) on its feature's full path."""
    show = svc.show
    request_id = getattr(msg, "request_id", None)
    logcontext.ROOM.set(call.room_id)  # in this request's task only
    logcontext.REQUEST.set(request_id)
    try:
        answer = await route.handler(call, msg)
    except Exception as exc:
        answer = failure_answer(show, exc, request_id)
    await _send_answer(svc, conn, call.room_id, route, msg, answer, request_id)


def needs_explaining(show: Show, route: MessageRoute, answer: Answer) -> bool:
    """A refusal the show's end may explain, for a request whose route asks for it."""
    return route.explain_end and show.lifecycle.may_explain(answer)


async def _send_answer(svc: Services, conn: Conn, room_id: str, route: MessageRoute,
                       msg: ViewerMessage, answer: Answer, request_id: str | None) -> None:
    """Send a request's answer, a refusal as `show_ended` once the show ended
    (Lifecycle.explain_refusal, for routes with explain_end)."""
    show = svc.show
    if needs_explaining(show, route, answer):
        try:
            answer = await show.lifecycle.explain_refusal(room_id, answer)
        except Exception as exc:
            answer = failure_answer(show, exc, request_id)
    svc.count_answer(msg, answer)
    conn.send(answer.frame(request_id))


def failure_answer(show: Show, exc: BaseException, request_id: str | None) -> Answer:
    """What a viewer is told when its request raised `exc`."""
    if isinstance(exc, LivesellError):
        return error_answer(exc)
    if isinstance(exc, REDIS_FAULTS):
        show.ctx.health.redis_failed(exc)  # one log line per outage, not one per request
        return error_answer(Unavailable("temporarily unavailable, try again"))
    if isinstance(exc, StoreError | StoreClosed | StoreOutcomeUnknown):
        # The store stalled or is closing: a fault of the moment, not of the request
        # (a feature that must undo something on it catches it itself first).
        return error_answer(Unavailable("the order store did not answer in time; try "
                                        "again", code="store_unavailable"))
    log.error("request %s failed", request_id, exc_info=exc)
    return Answer("error", {"code": "internal", "message": "internal error"})
