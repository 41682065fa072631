"""The viewer WebSocket's AsyncAPI 3.0.0 document, served at /api/asyncapi.json.

This module owns the document's structure only: its one channel (`/ws/{room_id}`,
the room id its parameter, the credentials offered as subprotocols and the query
parameters described in words), its two operations written from the viewer's side
(`send`: the messages a viewer sends; `receive`: the frames the server sends it),
one message per frame type, and `components`. Every payload is a JSON Schema (draft
2020-12, a Multi Format Schema Object saying so) from server/core/wire.py, whose
shapes and schemas tests/test_asyncapi.py holds to decode_viewer_message and to the
frames of a live show; the objects several frames carry are `components.schemas`,
referred to as `#/components/schemas/<Name>/schema`. The bounds that come from the
settings (chat length, likes per frame, quantity per buy) are this server's."""

from __future__ import annotations

from typing import Any, Final

from server import __version__
from server.core import events, wire
from server.core.errors import CLOSE_BAD_HANDSHAKE, CLOSE_UNKNOWN_ROOM, CLOSE_WRONG_HOST_KEY
from server.core.protocol import ID_PATTERN, encode
from server.core.schema import JSON
from server.core.settings import Settings
from server.realtime.handshake import HOST_PREFIX, PROTOCOL, TOKEN_PREFIX

CHANNEL: Final = "viewer"
# The payloads' format: JSON Schema draft 2020-12 (AsyncAPI's own Schema Object is a
# superset of draft-07, whose `$ref` ignores the keywords beside it).
SCHEMA_FORMAT: Final = "application/schema+json;version=draft-2020-12"
# Where a payload's `$ref` finds a shared definition: its Multi Format Schema Object's
# schema, in the same format as the payload.
COMPONENT_REF: Final = "#/components/schemas/{}/schema"

_AUTH: Final = (
    "Credentials never go in the URL (a `token` or `host_key` query parameter is refused: "
    f"close {CLOSE_BAD_HANDSHAKE}). They are offered as subprotocols, in "
    "`Sec-WebSocket-Protocol`, in any order: "
    f"`{PROTOCOL}` (this protocol; the server then selects exactly it, never an entry that "
    f"holds a secret), `{TOKEN_PREFIX}<token>` (optional: the token of an earlier "
    "`welcome`, which keeps the viewer's id, or a shop-signed JWT, which joins as that "
    "verified identity; without a valid one the viewer is a new guest) and "
    f"`{HOST_PREFIX}<host key>` (optional, the host console: the room's host key; a "
    f"wrong one closes with {CLOSE_WRONG_HOST_KEY}). A browser must offer `{PROTOCOL}` "
    "whenever it offers anything. docs/protocol.md section 4.")


def _message(direction: str, kind: str, schema: JSON) -> JSON:
    doc = schema.get("description", "")
    message: JSON = {
        "name": kind,
        "title": kind,
        "contentType": "application/json",
        "payload": {"schemaFormat": SCHEMA_FORMAT, "schema": schema},
    }
    if doc:
        message["summary"] = doc.split(". ")[0].rstrip(".") + "."
        message["description"] = doc
    if direction == "receive":
        message["tags"] = [{"name": "event" if kind in events.ROOM_EVENTS else
                            "direct" if kind in events.DIRECT_FRAMES else "reply"}]
    return message


def message_key(direction: str, kind: str) -> str:
    """The key of a frame type's message in the channel and in components.messages
    (`send.chat` and `receive.chat` are two messages)."""
    return f"{direction}.{kind}"


def build(settings: Settings) -> dict[str, Any]:
    sent = wire.message_schemas(wire.frame_limits(settings))
    received = wire.frame_schemas(COMPONENT_REF)
    messages: JSON = {}
    for direction, schemas in (("send", sent), ("receive", received)):
        for kind, schema in schemas.items():
            messages[message_key(direction, kind)] = _message(direction, kind, schema)
    channel_messages = {key: {"$ref": f"#/components/messages/{key}"} for key in messages}

    def operation(action: str, summary: str) -> JSON:
        return {"action": action, "channel": {"$ref": f"#/channels/{CHANNEL}"},
                "summary": summary,
                "messages": [{"$ref": f"#/channels/{CHANNEL}/messages/{key}"}
                             for key in messages if key.startswith(action + ".")]}

    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "livesell viewer WebSocket",
            "version": __version__,
            "description": (
                "The viewer's WebSocket of a livestream-selling server, written from the "
                "viewer's side: what it sends (operation `send`) and every frame the "
                "server sends it (operation `receive`): broadcast events, numbered by "
                "`seq` and stamped `ts`; frames for the one connection (`welcome`, "
                "`pong`, `snapshot`); replies to a request, carrying its request id as "
                "`re`; and `error`. Each payload is a JSON Schema (draft 2020-12). The "
                "HTTP API: /api/openapi.json. The rules in words: docs/protocol.md."),
            "license": {"name": "MIT"},
        },
        "defaultContentType": "application/json",
        "channels": {
            CHANNEL: {
                "address": "/ws/{room_id}",
                "title": "A room's viewer connection",
                "description": (
                    "Text frames of JSON objects, each with a string `type`. First the "
                    "`welcome`, then the missed events (`?since=<seq>`, when the log "
                    "still has them) or a `snapshot`, then live events and replies. "
                    + _AUTH + " Query parameters (not secret): `since` (1..19 digits, "
                    "the last seq applied: resume) and `nickname` (used when a new "
                    f"identity is made). An unknown room closes with {CLOSE_UNKNOWN_ROOM}."),
                "parameters": {"room_id": {
                    "description": f"The room's id ({ID_PATTERN.pattern})."}},
                "messages": channel_messages,
                "bindings": {"ws": {
                    "method": "GET",
                    "query": {"type": "object", "properties": {
                        "since": {"type": "string", "pattern": "^[0-9]{1,19}$",
                                  "description": "the last seq the client applied"},
                        "nickname": {"type": "string",
                                     "description": "for a new identity"}}},
                    "headers": {"type": "object", "properties": {
                        "Sec-WebSocket-Protocol": {
                            "type": "string",
                            "description": f"{PROTOCOL}, {TOKEN_PREFIX}<token>, "
                                           f"{HOST_PREFIX}<host key>"}}},
                    "bindingVersion": "0.1.0"}},
            },
        },
        "operations": {
            "send": operation("send", "A viewer's messages (unknown fields refused)."),
            "receive": operation("receive", "The frames the server sends a viewer."),
        },
        "components": {
            "schemas": {name: {"schemaFormat": SCHEMA_FORMAT, "schema": schema}
                        for name, schema in wire.definitions(COMPONENT_REF).items()},
            "messages": messages,
            "securitySchemes": {
                "viewerToken": {
                    "type": "httpApiKey", "in": "header", "name": "Sec-WebSocket-Protocol",
                    "description": f"Optional: `{TOKEN_PREFIX}<token>` among the offered "
                                   "subprotocols."},
                "hostKey": {
                    "type": "httpApiKey", "in": "header", "name": "Sec-WebSocket-Protocol",
                    "description": f"The host console: `{HOST_PREFIX}<host key>` among the "
                                   "offered subprotocols."},
            },
        },
    }


def document_bytes(settings: Settings) -> bytes:
    """The document, encoded (the route keeps it: it never changes while the server
    runs)."""
    return encode(build(settings))
