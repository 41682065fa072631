"""Wiring: the Starlette application, its lifespan (start and stop in order:
server/web/services.py), its routes (server/web/routes.py: the features'
registered routes as thin adapters, and the few of no feature), the viewer
WebSocket (server/web/viewer_socket.py) and the error handlers."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, WebSocketRoute
from starlette.staticfiles import StaticFiles

from server.core import domain
from server.core.errors import LivesellError
from server.core.settings import Settings, load_settings
from server.state.faults import STATE_FAULTS
from server.state.store import StoreClosed, StoreError, StoreOutcomeUnknown
from server.web import logfilter, security
from server.web.routes import CLIENT_DIR, http_routes, ok
from server.web.services import Services
from server.web.viewer_socket import viewer_socket

log = logging.getLogger("livesell.app")


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


async def on_store_error(request: Request, exc: Exception) -> Response:
    """The order store stalled past its timeout or is closing: a fault of the moment,
    answered 503 like Redis's. Nothing of the request was committed, except for an
    outcome the store left unknown, where the write may stand (a retry of the host's
    writes finds it: they are idempotent or refused as duplicates)."""
    response = ok({"error": {"code": "store_unavailable",
                             "message": "the order store did not answer in time; try "
                                        "again"}}, 503)
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

    routes: list[BaseRoute] = [*http_routes(svc.show.registry),
                               WebSocketRoute("/ws/{room_id}", viewer_socket)]
    if CLIENT_DIR.is_dir():
        routes.append(Mount("/static", StaticFiles(directory=CLIENT_DIR), name="static"))
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={
            LivesellError: on_livesell_error,
            HTTPException: on_http_error,
            **dict.fromkeys(STATE_FAULTS, on_redis_error),
            StoreError: on_store_error,
            StoreClosed: on_store_error,
            StoreOutcomeUnknown: on_store_error,
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
