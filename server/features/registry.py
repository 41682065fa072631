"""The registry features plug into: HTTP routes, viewer message handlers, due
jobs, chat listeners and the rebuild of a room's state from the store.

A feature module exposes `register(registry)`; server/features/show.py calls
each in turn. The web layer turns the routes into endpoints (host key, body
limits, recording, errors: server/web/routes.py), the viewer session looks up
a message's handler by its type, the pulse hands each due job to the handler
of its kind. A new selling format is a new module that registers its own
(docs/architecture.md, "Adding a selling format")."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

from server.core.identity import Viewer
from server.core.schema import Query, Shape

if TYPE_CHECKING:
    from server.features.context import Answer


@dataclass(frozen=True, slots=True)
class Call:
    """An HTTP call as a feature sees it: no framework types."""

    room_id: str
    params: Mapping[str, str]  # path parameters other than room_id
    body: dict[str, Any]
    query: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class ViewerCall:
    """A viewer's request as a feature sees it."""

    viewer: Viewer
    room_id: str
    client: str  # the address bucket per-address limits count under


HttpHandler = Callable[[Call], Awaitable[Any]]
MessageHandler = Callable[[ViewerCall, Any], Awaitable["Answer"]]
# Starts a request without a task: a future of its answer, resolved when the one
# Redis step it needs is answered; the future's None, or None instead of a future,
# sends the request down its handler's full path (see MessageRoute).
MessageStarter = Callable[[ViewerCall, Any], "asyncio.Future[Answer | None] | None"]
JobHandler = Callable[[str, str], Awaitable[None]]  # (room id, item)
@dataclass(frozen=True, slots=True)
class ChatPost:
    """A chat message as its listeners see it, once published: who, where, the text,
    the message's id, the request id its sender gave (None without one) and the
    sender's address bucket (per-address limits)."""

    viewer: Viewer
    room_id: str
    text: str
    message_id: str
    request_id: str | None
    client: str
    from_host: bool


# A listener may answer the sender privately (a comment that bought: its hold).
ChatListener = Callable[[ChatPost], Awaitable["Answer | None"]]
Restorer = Callable[[str], Awaitable[None]]  # room id
Upkeep = Callable[[], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Route:
    """A room endpoint under /api/rooms/{room_id}. `access` "host" needs the room's
    host key; `record_as` names the action in the room's trace (and makes it a show
    change, refused once the show ended unless `guard_ended` is off); `needs_whole`
    (host and public routes alike) refuses with 503 while the room is rebuilt;
    `body` is the JSON body's shape, checked before the handler sees it (and the
    OpenAPI document's request body, server/web/openapi.py); `query` likewise for
    the query string; the handler's docstring titles the route in that document."""

    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"]
    path: str
    handler: HttpHandler
    access: Literal["public", "host"] = "host"
    status: int = 200
    body: Shape | None = None
    query: Query | None = None
    record_as: str | None = None
    needs_whole: bool = True
    guard_ended: bool = True
    goes_live: bool = False  # starting it takes a scheduled room live
    # The answer's media type when it is not JSON (the handler then returns the text).
    media_type: str | None = None
    # Sent as a file to save under this name ({room}: the room id).
    download: str | None = None
    # The answer's shape: a shared definition of server/core/wire.py ("ProductCard",
    # "Sale" ...), which the OpenAPI document refers to (None: an object).
    answer: str | None = None


@dataclass(frozen=True, slots=True)
class MessageRoute:
    """How a viewer request is answered. `handler` is the full path, a coroutine run
    in a task. `start`, when given, is the common case without that task (a buy
    whose sale id is in memory: one script call, answered from the ledger's
    reply), which hands the request to `handler` when it cannot finish it (the
    sale changed, say). Both must give the same answer to the same request."""

    handler: MessageHandler
    # A refusal of this request is explained as `show_ended` once the show ended.
    explain_end: bool = False
    start: MessageStarter | None = None


class Feature(Protocol):
    def register(self, registry: Registry) -> None: ...


@dataclass
class Registry:
    routes: list[Route] = field(default_factory=list)
    messages: dict[type, MessageRoute] = field(default_factory=dict)
    jobs: dict[str, JobHandler] = field(default_factory=dict)
    chat_listeners: list[ChatListener] = field(default_factory=list)
    restorers: list[Restorer] = field(default_factory=list)
    upkeep: list[Upkeep] = field(default_factory=list)

    def route(self, route: Route) -> None:
        if any(r.method == route.method and r.path == route.path for r in self.routes):
            raise ValueError(f"{route.method} {route.path} registered twice")
        self.routes.append(route)

    def message(self, kind: type, handler: MessageHandler, explain_end: bool = False,
                start: MessageStarter | None = None) -> None:
        if kind in self.messages:
            raise ValueError(f"{kind.__name__} has a handler already")
        self.messages[kind] = MessageRoute(handler, explain_end, start)

    def job(self, kind: str, handler: JobHandler) -> None:
        if kind in self.jobs or ":" in kind:
            raise ValueError(f"job kind {kind!r} taken or malformed")
        self.jobs[kind] = handler

    def on_chat(self, listener: ChatListener) -> None:
        self.chat_listeners.append(listener)

    def on_restore(self, restorer: Restorer) -> None:
        """Called for each room rebuilt from the store, in registration order."""
        self.restorers.append(restorer)

    def on_upkeep(self, task: Upkeep) -> None:
        """Called by the pulse once a second (learning what other processes changed)."""
        self.upkeep.append(task)
