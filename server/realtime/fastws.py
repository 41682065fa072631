"""A uvicorn WebSocket protocol that lets the app write pre-encoded frames.

Subclass of uvicorn's websockets-sansio protocol (uvicorn accepts a protocol
class as its `ws` setting). Through the ASGI scope's `extensions` it offers
the app itself as `livesell.raw`: a synchronous `write_frames(bytes)` that puts
already-framed server messages straight on the transport, and callbacks when
the transport's write buffer crosses its high and low water marks. The hub
builds each event's frame once per room and hands the same bytes to every
viewer; the transport's buffer, bounded by those marks, is the per-client
buffer (design.md section 6).

Once a viewer has joined, a read made only of small complete text messages (a
browser's requests, one frame each) is unmasked and handed to the app here,
and a read that is one pong (the answer to uvicorn's keepalive ping, every
`hub.ping_interval_s` from every viewer) goes straight to uvicorn's
`handle_pong`; any other read, or any read while websockets' parser is inside a
frame, goes to websockets' parser as always (`simple_texts`, `simple_pong`,
`_between_frames`). websockets itself does nothing with a pong but hand it on.

Whether a frame may be written to one viewer (`write_frames`) is asked of
websockets' own connection state and of the transport, as websockets'
`broadcast()` does, so no uvicorn flag is shadowed. The hub's flush asks only
the transport, and is told through `on_closing` when a close frame is sent or
received while the transport stays open. The uvicorn internals still used (the close path
without waiting for a full buffer, the text fast route, the shutdown hook) are
listed, with why, in tests/test_transport_contract.py, which fails naming the
one a new uvicorn release changed; pyproject.toml allows the versions it passes.
"""

from __future__ import annotations

import array
import contextlib
from collections.abc import Callable
from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.protocol import State
from websockets.streams import StreamReader

from server.realtime.edges import LogLimiter, since_last_line

try:  # websockets' C speedup, as websockets.frames uses it
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover - a build without its C extension
    from websockets.utils import apply_mask

EXTENSION = "livesell.raw"
# Bound once: write_frames runs for every viewer of every event.
_OPEN = State.OPEN
# One line per address per minute for upgrade requests websockets refuses itself.
_REFUSALS_LOG = LogLimiter()
# Where websockets' parser waits between two frames (Protocol.parse: `yield from
# self.reader.at_eof()`); anywhere else it is inside a frame (or past a close).
_BETWEEN_FRAMES = StreamReader.at_eof.__code__
# A final pong frame's first byte (FIN, no extension bits, opcode 0xA).
_PONG_HEAD = b"\x8a"
# The largest payload read without websockets' parser: the 16-bit length form.
_SIMPLE_MAX = 65535


def simple_texts(data: bytes, limit: int) -> list[bytes] | None:
    """The payloads of `data` when it is nothing but complete text messages in one
    frame each (final, masked, no extension bits, at most `limit` bytes: what a
    browser sends for each small message), unmasked; None for anything else (a
    control frame, a fragment, a frame cut by the read), which websockets' parser
    then reads as always."""
    out = []
    end = len(data)
    i = 0
    while i < end:
        if end - i < 6 or data[i] != 0x81:
            return None
        length = data[i + 1] ^ 0x80  # the mask bit must be set (RFC 6455 section 5.1)
        i += 2
        if length == 126:
            if end - i < 6:
                return None
            length = (data[i] << 8) | data[i + 1]
            i += 2
        elif length > 126:
            return None  # unmasked, or the 64-bit length form
        if length > limit or end - i < 4 + length:
            return None
        out.append(apply_mask(data[i + 4:i + 4 + length], data[i:i + 4]))
        i += 4 + length
    return out


def simple_pong(data: bytes) -> bytes | None:
    """The payload of `data` when it is one whole masked pong frame and nothing else
    (a client's answer to the keepalive ping, read alone), unmasked; None otherwise."""
    length = len(data) - 6
    if 0 <= length <= 125 and data[0] == 0x8A and data[1] == 0x80 | length:
        return apply_mask(data[6:], data[2:6])
    return None


class FastWebSocketProtocol(WebSocketsSansIOProtocol):
    on_pause: Callable[[], None] | None = None
    on_resume: Callable[[], None] | None = None
    # Set by the app once a viewer has joined: complete text messages go straight
    # to it instead of through the ASGI receive queue, which costs a queued dict,
    # a task wake-up and a pause/resume of reading per message. The app bounds
    # its own work per message (rate limits, at most a few requests in flight).
    on_text: Callable[[str], None] | None = None
    # Set by the app once a viewer has joined: called (once) when the server shuts
    # down, so the app drains before this connection closes (Services.drain).
    on_shutdown: Callable[[], None] | None = None
    # Set by the HTTP protocol that upgraded this connection (server/realtime/edges.py):
    # gives the connection's place under the per-address cap back, once.
    edge_release: Callable[[], None] | None = None

    # Set by the hub while the viewer is on its room's live list, whose flush asks
    # only the transport before each write (server/realtime/hub.py): called when
    # the connection stops being open while its transport is not closing, that is
    # when a close frame is sent or received, so the hub takes the viewer off the
    # list before it could write a frame after the close frame. Every such path
    # goes through websockets' parser in data_received (the peer's close frame, a
    # protocol error), reject_invalid_text, close_now or send (the app's close);
    # uvicorn's other closes close the transport in the same step. It may be called
    # more than once.
    on_closing: Callable[[], None] | None = None

    # True once websockets' parser was seen between frames and has been given no
    # byte since (every read went the text fast route): it is still between frames,
    # and the walk down its generators (_between_frames) is skipped.
    _parser_idle: bool = False

    def is_open(self) -> bool:
        """Frames may be written: the handshake was accepted (websockets' state turns
        OPEN when the 101 is sent) and nothing has started closing, neither side's
        close frame (CLOSING) nor the TCP connection (the transport)."""
        return self.conn.state is _OPEN and not self.transport.is_closing()

    def write_frames(self, data: bytes) -> None:
        """Write one or more complete server frames, unless the connection is closing.

        The same check as websockets' `broadcast()`: its sans-I/O state and the
        transport, per write. uvicorn moves that state to CLOSING in every close
        path it has (the app's close, a keepalive timeout, a protocol error,
        server shutdown, the peer's close frame) and closes the transport when
        the connection is lost."""
        if self.conn.state is _OPEN and not self.transport.is_closing():
            self.transport.write(data)

    def _left_open(self) -> None:
        hook = self.on_closing
        if hook is not None and not self.is_open():
            hook()

    def connection_lost(self, exc: Exception | None) -> None:
        release, self.edge_release = self.edge_release, None
        if release is not None:
            release()
        super().connection_lost(exc)
        self._left_open()

    def data_received(self, data: bytes) -> None:
        handler = self.on_text
        if handler is not None and ((self._parser_idle and self.conn.state is _OPEN)
                                    or self._between_frames()):
            if data[:1] == _PONG_HEAD:
                pong = simple_pong(data)
                if pong is not None:
                    self._parser_idle = True
                    self.handle_pong(Frame(Opcode.PONG, pong))
                    return
            else:
                texts = simple_texts(data, self._simple_limit())
                if texts is not None:
                    self._parser_idle = True
                    self._texts_received(texts, handler)
                    return
        self._parser_idle = False
        super().data_received(data)
        if self.conn.handshake_exc is not None and not self.transport.is_closing():
            self._refuse_unparsed_handshake()
        self._left_open()

    async def send(self, message: Any) -> None:
        """The app's ASGI messages. A close (the fallback path's, or a session that
        ends) takes the viewer off the hub's live list before uvicorn waits for room
        in the buffer, and again once its close frame is out: while uvicorn waited,
        the viewer may have gone back on the list (it was still open then)."""
        closing = message.get("type") == "websocket.close"
        if closing and self.on_closing is not None:
            self.on_closing()  # taking a viewer off the list twice is harmless
        await super().send(message)
        if closing:
            self._left_open()

    def _refuse_unparsed_handshake(self) -> None:
        """websockets refused the upgrade request itself (a header line over its
        8192 bytes, more than 128 headers, a request it cannot read) and queued
        its answer (431, 414 or nothing); uvicorn before 0.55 only sends what
        follows a parsed request, so without this the client waited for an answer
        that never came, and shutdown later failed an assertion with a traceback.
        (uvicorn 0.55 answers such a request itself and closes the transport, so
        this is not reached there.)"""
        self.transport.write(b"".join(self.conn.data_to_send()))
        # uvicorn's shutdown() then only closes the transport.
        self.close_sent = True
        self.transport.close()
        host = self.client[0] if self.client else ""
        held_back = _REFUSALS_LOG.allow("handshake", host)
        if held_back is not None:
            self.logger.info("%s - WebSocket upgrade refused: %s%s", host,
                             self.conn.handshake_exc, since_last_line(held_back))

    def _between_frames(self) -> bool:
        """websockets' parser is waiting for the first byte of a frame, between two
        messages: what arrives next may be read without it. If a websockets release
        parses differently, this is False and every frame goes through its parser
        (tests/test_transport_contract.py names the change)."""
        conn = self.conn
        if conn.state is not _OPEN or conn.reader.buffer or conn.current_size is not None:
            return False
        # The innermost generator the parser waits in (ServerProtocol.parse delegates
        # to Protocol.parse, which delegates to the reader).
        waiting: object = conn.parser
        while (inner := getattr(waiting, "gi_yieldfrom", None)) is not None:
            waiting = inner
        return getattr(waiting, "gi_code", None) is _BETWEEN_FRAMES

    def _simple_limit(self) -> int:
        limit = self.conn.max_message_size
        return _SIMPLE_MAX if limit is None else min(limit, _SIMPLE_MAX)

    def _texts_received(self, texts: list[bytes], handler: Callable[[str], None]) -> None:
        """Small complete text messages read without websockets' parser (about a tenth
        of a flash sale's CPU per buy went to it): each goes to the app as it would
        from the parser, in order, until one is not UTF-8 or the app closes."""
        for payload in texts:
            try:
                text = payload.decode()
            except UnicodeDecodeError as exc:
                self.reject_invalid_text(exc)
                return
            handler(text)
            if self.conn.state is not _OPEN or self.transport.is_closing():
                return  # the app closed the connection: the rest is not read

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        # uvicorn builds the scope only for a request it accepts, and starts the
        # app in a task: the extension is in place before the app reads it.
        scope: Any = getattr(self, "scope", None)
        if scope is not None and not self.transport.is_closing():
            scope["extensions"][EXTENSION] = self

    def set_buffer_limit(self, high: int) -> None:
        self.transport.set_write_buffer_limits(high=high, low=high // 4)

    def send_receive_event_to_app(self) -> None:
        if self.curr_msg_data_type != "text" or self.conn.state is not _OPEN:
            super().send_receive_event_to_app()
            return
        data = self.frames[0] if len(self.frames) == 1 else b"".join(self.frames)
        try:
            text = data.decode()
        except UnicodeDecodeError as exc:
            self.frames = []
            self.reject_invalid_text(exc)
            return
        handler = self.on_text
        if handler is None:
            super().send_receive_event_to_app()  # uvicorn's queue (decodes again: rare)
            return
        self.frames = []
        handler(text)

    def reject_invalid_text(self, exc: UnicodeDecodeError) -> None:
        """A text message that is not UTF-8: the client's fault, so one line at INFO
        (uvicorn logs an ERROR with a traceback per message) and close with 1007."""
        scope: Any = getattr(self, "scope", None)
        client = f"{self.client[0]}:{self.client[1]}" if self.client else ""
        self.logger.info('%s - "WebSocket %s" 1007: invalid UTF-8 at byte %d of a text message',
                         client,
                         scope["path"] if scope else "", exc.start)
        if self.conn.state is not _OPEN:
            return  # the peer's close frame came in the same read: the close is under way
        self.conn.send_close(1007, "invalid UTF-8 in a text message")
        self.handle_parser_exception()
        # The only close on the text fast route besides the app's own (close_now):
        # told here, not after every read of that route, which every buy takes.
        self._left_open()

    def unacknowledged(self) -> int:
        """Bytes written to this connection that the peer has not acknowledged yet:
        the transport's buffer and the kernel's send queue (Linux SIOCOUTQ, whose
        request number termios calls TIOCOUTQ). A system call: for rare
        decisions, never per delivery."""
        n = int(self.transport.get_write_buffer_size())
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            queued = array.array("i", [0])
            with contextlib.suppress(OSError, ValueError):  # closed meanwhile
                import fcntl  # POSIX only, and only here: the module loads elsewhere too
                import termios

                fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, queued, True)
                n += queued[0]
        return n

    def pause_writing(self) -> None:
        super().pause_writing()
        if self.on_pause is not None:
            self.on_pause()

    def resume_writing(self) -> None:
        super().resume_writing()
        if self.on_resume is not None:
            self.on_resume()

    def close_now(self, code: int, reason: str, abort_after: float = 2.0) -> None:
        """Send a close frame without waiting for the (full) buffer, then drop the
        connection if the peer does not finish the closing handshake in time.

        uvicorn's own close (the app's `websocket.close`) first awaits room in the
        buffer, which a viewer that stopped reading never makes. This is that close
        path without the wait, leaving uvicorn's state as its own would: the close
        flag its handlers read, the disconnect message for the app, reading resumed
        so the peer's answering close frame is seen, and the timer uvicorn cancels
        when that frame arrives or the connection is lost."""
        if not self.is_open():
            return
        self.conn.send_close(code, reason)
        self._left_open()
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.close_sent = True
        self.queue.put_nowait({"type": "websocket.disconnect", "code": code, "reason": reason})
        if self.read_paused:
            self.read_paused = False
            self.transport.resume_reading()
        self.close_timer = self.loop.call_later(abort_after, self.transport.abort)

    def shutdown(self) -> None:
        """Server shutdown (uvicorn calls this on every connection once it stopped
        accepting): a joined viewer's app drains first (answers what it is running,
        flushes orders, then closes with 1012 itself); otherwise close with 1012
        (service restart: reconnect, to another process) at once."""
        if self.is_open():
            hook, self.on_shutdown = self.on_shutdown, None
            if hook is not None:
                hook()
                return
            self.stop_keepalive()
            self.close_now(1012, "server restarting")
            return
        super().shutdown()
