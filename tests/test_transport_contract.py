"""The uvicorn internals the transport hook relies on, named one by one.

server/realtime/fastws.py subclasses uvicorn's websockets-sansio protocol and
server/realtime/edges.py its httptools protocol. Neither is a public API, so
pyproject.toml allows a range of uvicorn versions rather than any: this module
lists every method (with its signature), attribute and behaviour the two files
use, and fails with the internal's name, the uvicorn version and what the hook
uses it for. Run it (with tests/test_hub.py) against a new uvicorn release
before widening the range.
"""

from __future__ import annotations

import asyncio
import inspect
import socket
import weakref
from collections.abc import Callable
from typing import Any

import pytest
import uvicorn
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn.server import ServerState
from websockets.frames import Close, Frame, Opcode
from websockets.protocol import State
from websockets.server import ServerProtocol

from server.realtime.edges import BoundedHttpToolsProtocol
from server.realtime.fastws import EXTENSION, FastWebSocketProtocol

WS = "server/realtime/fastws.py"
EDGE = "server/realtime/edges.py"
HANDSHAKE = (b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
             b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
             b"Sec-WebSocket-Version: 13\r\n\r\n")


def changed(owner: type[Any] | str, name: str, user: str, why: str) -> str:
    where = owner if isinstance(owner, str) else owner.__name__
    return (f"uvicorn {uvicorn.__version__} changed {where}.{name}; {user} relies on it "
            f"for {why}")


# (method, its parameters after self, who uses it, for what)
WS_METHODS: list[tuple[str, list[str], str]] = [
    ("__init__", ["config", "server_state", "app_state", "_loop"],
     "the class being built by uvicorn's httptools protocol with these keywords"),
    ("connection_lost", ["exc"], "giving the per-address connection slot back"),
    ("data_received", ["data"], "answering an upgrade request websockets refused itself"),
    ("handle_connect", ["event"], "putting the livesell.raw extension into the scope"),
    ("send_receive_event_to_app", [],
     "the on_text fast route (complete text messages, read from `frames` and "
     "`curr_msg_data_type`)"),
    ("handle_parser_exception", [], "closing with 1007 after invalid UTF-8"),
    ("send", ["message"], "on_closing before the app's close frame (the hub's flush asks "
     "only the transport)"),
    ("stop_keepalive", [], "stopping pings before closing with 1012 at shutdown"),
    ("handle_pong", ["event"], "the keepalive ping's pong, read without websockets' parser"),
    ("shutdown", [], "the on_shutdown drain hook (falls back to uvicorn's own shutdown)"),
    ("pause_writing", [], "the on_pause callback (a viewer fell behind)"),
    ("resume_writing", [], "the on_resume callback (a viewer's buffer drained)"),
]

# (attribute on a new instance, its type, for what)
WS_ATTRIBUTES: list[tuple[str, type[Any] | tuple[type[Any], ...], str]] = [
    ("conn", ServerProtocol, "write_frames' per-write check of the websockets state, "
     "close frames (send_close, data_to_send)"),
    ("loop", asyncio.AbstractEventLoop, "close_now's abort timer"),
    ("queue", asyncio.Queue, "close_now telling the app it is disconnected"),
    ("read_paused", bool, "close_now resuming reading so the peer's close frame is seen"),
    ("close_sent", bool, "close_now and the refused handshake telling uvicorn's handlers "
     "that a close is under way"),
    ("close_timer", type(None), "close_now's abort timer, which uvicorn's handle_close "
     "cancels (closing the transport) when the peer answers the close frame"),
    ("frames", list, "the on_text fast route (a message's frame payloads)"),
    ("curr_msg_data_type", str, "the on_text fast route (text or bytes)"),
    ("client", type(None), "log lines naming the client (set on connection_made)"),
    ("transport", type(None), "writes (set on connection_made)"),
    ("handshake_complete", bool, "uvicorn's own shutdown and close paths this hook defers to"),
]

EDGE_METHODS: list[tuple[str, list[str], str]] = [
    ("__init__", ["config", "server_state", "app_state", "_loop"],
     "BoundedHttpToolsProtocol.__init__ calling it positionally"),
    ("connection_made", ["transport"], "the per-address connection cap"),
    ("connection_lost", ["exc"], "giving the connection slot back"),
    ("handle_websocket_upgrade", [], "moving the connection slot to the WebSocket protocol"),
    ("data_received", ["data"], "counting head bytes before the parser (re-implemented in "
     "BoundedHttpToolsProtocol.feed)"),
    ("_unset_keepalive_if_required", [], "feed(), which re-implements data_received"),
    ("_should_upgrade", [], "feed(), which re-implements data_received"),
    ("send_400_response", ["msg"], "feed() answering a malformed request"),
    ("on_headers_complete", [], "knowing where a request's head ends"),
    ("on_message_complete", [], "counting the next pipelined request's head from 0"),
]

EDGE_ATTRIBUTES: list[tuple[str, str]] = [
    ("parser", "feed() feeding httptools"),
    ("cycle", "head_too_large() not answering over a response in progress"),
    ("server_state", "the per-process connection gate and default headers of refusals"),
    ("loop", "the header-read timer and the linger after a refusal"),
    ("logger", "the rate-limited INFO lines"),
    ("client", "the per-address cap"),
    ("headers", "naming an unsupported upgrade"),
    ("ws_protocol_class", "the WebSocket protocol the upgrade hands the transport to"),
]


def _config() -> Config:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await receive()

    config = Config(app=app, ws=FastWebSocketProtocol, http=BoundedHttpToolsProtocol,
                    ws_ping_interval=None, lifespan="off", log_level="warning")
    config.load()
    return config


def _params(fn: Callable[..., Any]) -> list[str]:
    return [p for p in inspect.signature(fn).parameters if p != "self"]


def test_the_hook_subclasses_uvicorns_protocols() -> None:
    assert issubclass(FastWebSocketProtocol, WebSocketsSansIOProtocol), changed(
        "uvicorn.protocols.websockets.websockets_sansio_impl", "WebSocketsSansIOProtocol", WS,
        "the class it subclasses")
    assert issubclass(WebSocketsSansIOProtocol, asyncio.Protocol), changed(
        WebSocketsSansIOProtocol, "__bases__", WS, "being an asyncio.Protocol (its transport "
        "calls pause_writing and resume_writing)")
    assert issubclass(BoundedHttpToolsProtocol, HttpToolsProtocol), changed(
        "uvicorn.protocols.http.httptools_impl", "HttpToolsProtocol", EDGE,
        "the class it subclasses")


@pytest.mark.parametrize(("name", "params", "why"), WS_METHODS, ids=[m[0] for m in WS_METHODS])
def test_websocket_protocol_methods(name: str, params: list[str], why: str) -> None:
    fn = getattr(WebSocketsSansIOProtocol, name, None)
    assert callable(fn), changed(WebSocketsSansIOProtocol, name, WS, why) + " (it is gone)"
    assert _params(fn) == params, changed(WebSocketsSansIOProtocol, name, WS, why) + (
        f" (signature now {inspect.signature(fn)}, expected parameters {params})")


@pytest.mark.parametrize(("name", "params", "why"), EDGE_METHODS,
                         ids=[m[0] for m in EDGE_METHODS])
def test_http_protocol_methods(name: str, params: list[str], why: str) -> None:
    fn = getattr(HttpToolsProtocol, name, None)
    assert callable(fn), changed(HttpToolsProtocol, name, EDGE, why) + " (it is gone)"
    assert _params(fn) == params, changed(HttpToolsProtocol, name, EDGE, why) + (
        f" (signature now {inspect.signature(fn)}, expected parameters {params})")


@pytest.mark.parametrize(("name", "kind", "why"), WS_ATTRIBUTES,
                         ids=[a[0] for a in WS_ATTRIBUTES])
async def test_websocket_protocol_attributes(name: str, kind: type[Any], why: str) -> None:
    proto = FastWebSocketProtocol(config=_config(), server_state=ServerState(), app_state={})
    assert hasattr(proto, name), changed(WebSocketsSansIOProtocol, name, WS, why) + (
        " (no such attribute after __init__)")
    assert isinstance(getattr(proto, name), kind), changed(
        WebSocketsSansIOProtocol, name, WS, why) + (
        f" (now a {type(getattr(proto, name)).__name__}, expected {kind})")


@pytest.mark.parametrize(("name", "why"), EDGE_ATTRIBUTES, ids=[a[0] for a in EDGE_ATTRIBUTES])
async def test_http_protocol_attributes(name: str, why: str) -> None:
    proto = BoundedHttpToolsProtocol(_config(), ServerState(), {})
    assert hasattr(proto, name), changed(HttpToolsProtocol, name, EDGE, why) + (
        " (no such attribute after __init__)")


def test_uvicorns_data_received_is_what_edges_feed_re_implements() -> None:
    source = inspect.getsource(HttpToolsProtocol.data_received)
    for step in ("_unset_keepalive_if_required", "parser.feed_data", "HttpParserError",
                 "send_400_response", "HttpParserUpgrade", "_should_upgrade",
                 "handle_websocket_upgrade"):
        assert step in source, changed(HttpToolsProtocol, "data_received", EDGE,
                                       f"BoundedHttpToolsProtocol.feed, a copy of its steps "
                                       f"(`{step}` is no longer one of them)")


def test_server_state_and_config_carry_what_edges_puts_on_them() -> None:
    state = ServerState()
    assert weakref.ref(state)() is state, changed(
        ServerState, "__weakref__", EDGE, "one connection gate per server in a WeakKeyDictionary")
    assert isinstance(state.default_headers, list), changed(
        ServerState, "default_headers", EDGE, "the headers of its 431 and 503 answers")
    config = Config(app=lambda: None)
    config.livesell_edges = 1  # type: ignore[attr-defined]
    assert config.livesell_edges == 1, changed(  # type: ignore[attr-defined]
        Config, "__setattr__", EDGE, "carrying the edge limits on the config")


async def _until(check: Callable[[], bool], timeout: float) -> None:
    """Poll `check` until true; the bound is generous because CI machines are loaded."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        if loop.time() > deadline:
            raise AssertionError(f"not within {timeout:.0f}s")
        await asyncio.sleep(0.01)


class _Peer(asyncio.Protocol):
    """The client end: keeps what it reads and can send masked frames."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.lost = False

    def data_received(self, data: bytes) -> None:
        self.data += data

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True


async def _connected(config: Config) -> tuple[FastWebSocketProtocol, _Peer, asyncio.Transport]:
    loop = asyncio.get_running_loop()
    server_sock, client_sock = socket.socketpair()
    proto = FastWebSocketProtocol(config=config, server_state=ServerState(), app_state={})
    await loop.connect_accepted_socket(lambda: proto, server_sock)
    peer = _Peer()
    client, _ = await loop.connect_accepted_socket(lambda: peer, client_sock)
    client.write(HANDSHAKE)
    await _until(lambda: proto.conn.state is State.OPEN, timeout=30)
    return proto, peer, client


def _state(proto: FastWebSocketProtocol) -> State:
    """websockets' state, read afresh (a name mypy does not narrow)."""
    return proto.conn.state


def _masked_close(code: int) -> bytes:
    frame = Frame(Opcode.CLOSE, Close(code, "").serialize())
    return frame.serialize(mask=True, extensions=[])


async def test_the_scope_carries_the_extension_and_writes_need_an_open_state() -> None:
    """handle_connect builds the scope the app gets, the websockets state turns OPEN
    with the 101, and a peer's close frame turns it CLOSING before the hook could
    write again: the per-write check in write_frames sees every close."""
    proto, peer, client = await _connected(_config())
    scope: Any = getattr(proto, "scope", None)
    assert scope is not None and scope["extensions"].get(EXTENSION) is proto, changed(
        WebSocketsSansIOProtocol, "handle_connect", WS,
        "the scope (with an `extensions` dict) it passes to the app")
    proto.write_frames(b"\x81\x02hi")
    await _until(lambda: peer.data.endswith(b"\x81\x02hi"), timeout=30)
    client.write(_masked_close(1000))
    await _until(lambda: proto.conn.state is not State.OPEN, timeout=30)
    before = len(peer.data)
    proto.write_frames(b"\x81\x02no")
    await _until(lambda: peer.lost, timeout=30)
    assert b"\x81\x02no" not in peer.data[before:]
    client.close()


async def test_every_close_frame_tells_the_hub_before_it_could_write_again() -> None:
    """The hub's flush asks only the transport before a write (hub.py), so every path
    that sends or receives a close frame while the transport stays open must call
    on_closing in the same step: the peer's close frame, close_now, and the app's
    ASGI close. A transport closed meanwhile says so itself. (It may be called again
    later, when the connection is lost: taking a viewer off the list twice is
    harmless.)"""
    calls: list[str] = []

    # The peer's close frame, read by websockets' parser inside data_received.
    proto, peer, client = await _connected(_config())
    proto.on_closing = lambda: calls.append("peer")
    proto.data_received(b"")  # an open connection: no call
    assert calls == []
    proto.data_received(_masked_close(1000))
    assert calls == ["peer"] and proto.conn.state is not State.OPEN
    client.close()

    # The same with the text fast route on (on_text set): the close frame is not text,
    # so it goes to the parser, and the call still comes.
    proto, peer, client = await _connected(_config())
    proto.on_text = lambda text: None
    proto.on_closing = lambda: calls.append("peer, fast route on")
    proto.data_received(_text(b"hi") + _masked_close(1000))
    assert calls[-1] == "peer, fast route on"
    client.close()

    # close_now, with the transport left open for the peer's answer.
    proto, peer, client = await _connected(_config())
    proto.on_closing = lambda: calls.append("close_now")
    proto.close_now(4008, "too slow", abort_after=600)
    assert calls[-1] == "close_now" and not proto.transport.is_closing()
    client.close()

    # Invalid UTF-8 read by the text fast route: closed with 1007 in that step.
    proto, peer, client = await _connected(_config())
    proto.on_text = lambda text: None
    proto.on_closing = lambda: calls.append("invalid text, fast route")
    proto.data_received(_text(b"\xff"))
    assert calls[-1] == "invalid text, fast route" and not proto.is_open()
    client.close()

    # The app's websocket.close through uvicorn's ASGI send.
    proto, peer, client = await _connected(_config())
    proto.on_closing = lambda: calls.append("app")
    await proto.send({"type": "websocket.close", "code": 1000, "reason": ""})
    assert calls[-1] == "app" and proto.conn.state is State.CLOSING
    await _until(lambda: b"\x88" in peer.data, timeout=30)
    client.close()

    # The same while uvicorn waits for room in a full buffer before the close frame:
    # the viewer is taken off the list at once (it is still open, and may be put
    # back meanwhile), and again once the close frame is out.
    proto, peer, client = await _connected(_config())
    app_calls: list[bool] = []
    proto.on_closing = lambda: app_calls.append(proto.is_open())
    proto.writable.clear()
    closing = asyncio.ensure_future(
        proto.send({"type": "websocket.close", "code": 1000, "reason": ""}))
    await _until(lambda: len(app_calls) == 1, timeout=30)
    assert app_calls == [True] and _state(proto) is State.OPEN
    proto.writable.set()
    await asyncio.wait_for(closing, 30)
    assert app_calls == [True, False] and _state(proto) is State.CLOSING, changed(
        WebSocketsSansIOProtocol, "send", WS,
        "sending the close frame in the same step as the end of its wait on `writable`")
    assert not proto.transport.is_closing()
    client.close()


async def test_close_now_is_finished_by_uvicorns_handle_close() -> None:
    """No frame follows close_now's close frame. close_now sets uvicorn's close_sent
    and close_timer as its own close does;
    uvicorn's handle_close must then close the transport when the peer answers,
    long before close_now's abort timer."""
    proto, peer, client = await _connected(_config())
    proto.close_now(4008, "too slow", abort_after=600)
    # Our close frame is out, the transport stays open for the answer: only the
    # websockets state (CLOSING) keeps write_frames from writing after it.
    assert proto.conn.state is State.CLOSING and not proto.transport.is_closing()
    proto.write_frames(b"\x81\x02no")
    await _until(lambda: b"\x88" in peer.data, timeout=30)
    assert b"\x81\x02no" not in peer.data
    client.write(_masked_close(4008))
    try:
        await _until(lambda: peer.lost, timeout=30)
    except AssertionError:
        raise AssertionError(changed(
            WebSocketsSansIOProtocol, "handle_close", WS,
            "closing the connection when the peer answers close_now's close frame "
            "(it reads close_sent and close_timer)")) from None
    finally:
        client.close()


# ---------------------------------------------------------------- small text messages
# FastWebSocketProtocol.data_received reads a read made only of small complete text
# frames itself (simple_texts) when websockets' parser waits between two frames, and
# hands everything else to the parser. The chunks below are fed to data_received
# directly, so their shape is the test's, not the kernel's.


def _text(payload: bytes, *, fin: bool = True, opcode: Opcode = Opcode.TEXT,
          mask: bool = True) -> bytes:
    return Frame(opcode, payload, fin=fin).serialize(mask=mask, extensions=[])


def _close_code(data: bytes) -> int | None:
    """The code of the first close frame the server sent after its 101 (server frames
    are unmasked)."""
    i = data.index(b"\r\n\r\n") + 4
    while i + 2 <= len(data):
        opcode, length = data[i] & 0x0F, data[i + 1] & 0x7F
        head = 2 + (2 if length == 126 else 0)
        if length == 126:
            length = int.from_bytes(data[i + 2:i + 4], "big")
        if opcode == Opcode.CLOSE.value:
            return int.from_bytes(data[i + head:i + head + 2], "big")
        i += head + length
    return None


async def _reading(max_size: int = 4096) -> tuple[FastWebSocketProtocol, _Peer,
                                                   asyncio.Transport, list[str]]:
    config = _config()
    config.ws_max_size = max_size
    proto, peer, client = await _connected(config)
    got: list[str] = []
    proto.on_text = got.append
    return proto, peer, client, got


def test_simple_texts_reads_only_complete_final_masked_text_frames() -> None:
    from server.realtime.fastws import simple_texts

    one, two = _text(b"hello"), _text("héllo".encode())
    assert simple_texts(one + two, 4096) == [b"hello", "héllo".encode()]
    long = _text(b"x" * 300)  # the 16-bit length form
    assert simple_texts(long, 4096) == [b"x" * 300]
    assert simple_texts(b"", 4096) == []
    for other in (one[:-1],                                  # cut by the read
                  one + one[:3],                             # a second frame cut
                  _text(b"hi", fin=False),                   # a fragment
                  _text(b"hi", opcode=Opcode.BINARY),
                  _text(b"hi", opcode=Opcode.PING),
                  _text(b"hi", mask=False),                  # clients must mask
                  _text(b"x" * 70_000)):                     # the 64-bit length form
        assert simple_texts(other, 100_000) is None, other[:8]
    assert simple_texts(long, 299) is None  # over the limit: the parser refuses it
    assert simple_texts(bytes([0xC1]) + one[1:], 4096) is None  # an extension bit


async def test_the_parser_waits_between_frames_where_the_hook_looks_for_it() -> None:
    """The hook reads a frame itself only where websockets' parser waits for the first
    byte of the next frame (`yield from reader.at_eof()` in Protocol.parse); if a
    release moves that wait, every message goes through the parser (slower, not
    wrong) and this test says so."""
    proto, _peer, client, got = await _reading()
    try:
        assert proto._between_frames(), changed(
            "websockets.protocol.Protocol", "parse", WS,
            "knowing that its parser waits between two frames (gi_yieldfrom at "
            "StreamReader.at_eof): small text messages skip the parser")
        cut = _text(b"hello")
        proto.data_received(cut[:3])  # the parser holds part of a header
        assert not proto._between_frames()
        proto.data_received(cut[3:])
        assert got == ["hello"] and proto._between_frames()
    finally:
        client.close()


def test_simple_pong_reads_only_one_whole_masked_pong() -> None:
    from server.realtime.fastws import simple_pong

    assert simple_pong(_text(b"\x01\x02\x03\x04", opcode=Opcode.PONG)) == b"\x01\x02\x03\x04"
    assert simple_pong(_text(b"", opcode=Opcode.PONG)) == b""
    for other in (
        _text(b"abcd", opcode=Opcode.PONG, mask=False),  # a client must mask
        _text(b"abcd", opcode=Opcode.PONG)[:-1],  # cut by the read
        _text(b"abcd", opcode=Opcode.PONG) + _text(b"hi"),  # more than the pong
        _text(b"abcd", opcode=Opcode.PING),
        _text(b"abcd"),
    ):
        assert simple_pong(other) is None, other


async def test_a_pong_read_alone_reaches_uvicorns_keepalive_without_the_parser() -> None:
    """Every viewer answers uvicorn's keepalive ping every hub.ping_interval_s; with the
    text fast route on, a read that is one pong goes straight to handle_pong, which
    ends the pong deadline and schedules the next ping, as when websockets' parser
    reads it. A pong in the same read as other frames goes to the parser."""
    config = _config()
    config.ws_ping_interval = config.ws_ping_timeout = 3600.0
    proto, peer, client = await _connected(config)
    try:
        got: list[str] = []
        proto.on_text = got.append

        async def pinged() -> bytes:
            """The payload of the next keepalive ping the peer reads."""
            proto.stop_keepalive()
            start = len(peer.data)
            proto.send_keepalive_ping()
            await _until(lambda: b"\x89\x04" in peer.data[start:], timeout=30)
            at = peer.data.index(b"\x89\x04", start) + 2
            payload = bytes(peer.data[at:at + 4])
            assert proto.pending_ping_payload == payload and proto.pong_timer is not None
            return payload

        proto.data_received(_text(await pinged(), opcode=Opcode.PONG))
        assert proto.pending_ping_payload is None and proto.pong_timer is None, changed(
            WebSocketsSansIOProtocol, "handle_pong", WS,
            "ending the keepalive's pong deadline for a pong it read itself")
        assert proto.ping_timer is not None  # the next ping is on its way
        assert proto._parser_idle  # read without websockets' parser
        proto.data_received(_text(b"after"))
        assert got == ["after"]
        # With a text in the same read, the parser reads both, in order.
        proto.data_received(_text(await pinged(), opcode=Opcode.PONG) + _text(b"more"))
        assert proto.pending_ping_payload is None and proto.pong_timer is None
        assert got == ["after", "more"]
        assert proto.conn.state is State.OPEN
    finally:
        client.close()


async def test_every_shape_of_read_gives_the_same_messages_in_order() -> None:
    proto, peer, client, got = await _reading()
    try:
        frames = [_text(f"m{i}".encode()) for i in range(5)]
        proto.data_received(b"".join(frames))  # several in one read
        proto.data_received(_text(b"a") + _text(b"", opcode=Opcode.PING) + _text(b"b"))
        stream = _text(b"c" * 300) + _text(b"d")
        for i in range(len(stream)):  # a byte per read
            proto.data_received(stream[i:i + 1])
        proto.data_received(_text(b"frag", fin=False) +
                            _text(b"mented", fin=True, opcode=Opcode.CONT))
        proto.data_received(_text(b"e"))  # back between frames after all of that
        assert got == [f"m{i}" for i in range(5)] + ["a", "b", "c" * 300, "d",
                                                      "fragmented", "e"]
        await _until(lambda: b"\x8a\x00" in peer.data, timeout=30)  # the ping's pong
        assert proto.conn.state is State.OPEN
    finally:
        client.close()


async def test_a_message_that_is_not_utf8_closes_with_1007_after_the_ones_before() -> None:
    proto, peer, client, got = await _reading()
    try:
        proto.data_received(_text(b"ok") + _text(b"\xff\xfe") + _text(b"never"))
        assert got == ["ok"]
        await _until(lambda: _close_code(bytes(peer.data)) is not None, timeout=30)
        assert _close_code(bytes(peer.data)) == 1007
    finally:
        client.close()


@pytest.mark.parametrize(("frame", "code"), [(_text(b"x" * 2000), 1009),
                                           (_text(b"hi", mask=False), 1002)],
                         ids=["oversized", "unmasked"])
async def test_a_frame_websockets_refuses_is_refused_as_before(frame: bytes, code: int) -> None:
    proto, peer, client, got = await _reading(max_size=1000)
    try:
        proto.data_received(frame)
        assert got == []
        await _until(lambda: _close_code(bytes(peer.data)) is not None, timeout=30)
        assert _close_code(bytes(peer.data)) == code
    finally:
        client.close()


async def test_messages_after_the_app_closes_the_connection_are_not_read() -> None:
    proto, _peer, client, got = await _reading()

    def first_then_close(text: str) -> None:
        got.append(text)
        proto.close_now(1008, "policy", abort_after=600)

    proto.on_text = first_then_close
    try:
        proto.data_received(_text(b"one") + _text(b"two") + _text(b"three"))
        assert got == ["one"]
    finally:
        client.close()
