"""A uvicorn WebSocket protocol that lets the app write pre-encoded frames.

Subclass of uvicorn's websockets-sansio protocol (uvicorn accepts a protocol
class as its `ws` setting). Through the ASGI scope's `extensions` it offers
the app itself as `livesell.raw`: a synchronous `write_frames(bytes)` that puts
already-framed server messages straight on the transport, and callbacks when
the transport's write buffer crosses its high and low water marks. The hub
builds each event's frame once per room and hands the same bytes to every
viewer; the transport's buffer, bounded by those marks, is the per-client
buffer (design.md section 6). Built on uvicorn 0.54: the version is pinned.
"""

from __future__ import annotations

import array
import contextlib
from collections.abc import Callable
from typing import Any

from uvicorn.protocols.utils import get_client_addr
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.frames import Frame
from websockets.http11 import Request
from websockets.protocol import State

from server.edges import LogLimiter, since_last_line

EXTENSION = "livesell.raw"
# One line per address per minute for upgrade requests websockets refuses itself.
_REFUSALS_LOG = LogLimiter()


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
    # Set by the HTTP protocol that upgraded this connection (server/edges.py):
    # gives the connection's place under the per-address cap back, once.
    edge_release: Callable[[], None] | None = None
    # True from the accepted handshake until anything starts closing: the one
    # check write_frames makes per delivery (it runs for every viewer of every
    # event). close_sent and disconnected are properties below so that every
    # place in uvicorn that sets them also clears it; a peer's close frame
    # clears it in handle_close.
    frames_ok = False
    _close_sent = False
    _disconnected = False

    @property
    def close_sent(self) -> bool:
        return self._close_sent

    @close_sent.setter
    def close_sent(self, value: bool) -> None:
        self._close_sent = value
        if value:
            self.frames_ok = False

    @property
    def disconnected(self) -> bool:
        return self._disconnected

    @disconnected.setter
    def disconnected(self, value: bool) -> None:
        self._disconnected = value
        if value:
            self.frames_ok = False

    def open_frames(self) -> None:
        """Called by the app once the handshake is accepted: frames may flow."""
        self.frames_ok = (self.handshake_complete and not self._close_sent
                          and not self._disconnected and self.conn.state is State.OPEN)

    def connection_lost(self, exc: Exception | None) -> None:
        release, self.edge_release = self.edge_release, None
        if release is not None:
            release()
        super().connection_lost(exc)

    def handle_close(self, event: Frame) -> None:
        self.frames_ok = False
        super().handle_close(event)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if (self.conn.handshake_exc is not None and not self.handshake_complete
                and not self.close_sent):
            self._refuse_unparsed_handshake()

    def _refuse_unparsed_handshake(self) -> None:
        """websockets refused the upgrade request itself (a header line over its
        8192 bytes, more than 128 headers, a request it cannot read) and queued
        its answer (431, 414 or nothing); uvicorn 0.54 only sends what follows a
        parsed request, so without this the client waited for an answer that
        never came, and shutdown later failed an assertion with a traceback."""
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.close_sent = True
        self.transport.close()
        host = self.client[0] if self.client else ""
        held_back = _REFUSALS_LOG.allow("handshake", host)
        if held_back is not None:
            self.logger.info("%s - WebSocket upgrade refused: %s%s", host,
                             self.conn.handshake_exc, since_last_line(held_back))

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        scope: Any = getattr(self, "scope", None)
        if scope is not None and not self.close_sent:
            scope["extensions"][EXTENSION] = self

    def set_buffer_limit(self, high: int) -> None:
        self.transport.set_write_buffer_limits(high=high, low=high // 4)

    def writable_now(self) -> bool:
        return self.frames_ok and not self.transport.is_closing()

    def write_frames(self, data: bytes) -> None:
        """Write one or more complete server frames, unless the connection is closing."""
        if self.frames_ok:
            self.transport.write(data)

    def send_receive_event_to_app(self) -> None:
        if self.curr_msg_data_type != "text" or self.close_sent:
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
        self.logger.info('%s - "WebSocket %s" 1007: invalid UTF-8 at byte %d of a text message',
                         get_client_addr(scope) if scope else "",
                         scope["path"] if scope else "", exc.start)
        if self.conn.state is not State.OPEN:
            return  # the peer's close frame came in the same read: the close is under way
        self.conn.send_close(1007, "invalid UTF-8 in a text message")
        self.handle_parser_exception()

    def buffered(self) -> int:
        return int(self.transport.get_write_buffer_size())

    def unacknowledged(self) -> int:
        """Bytes written to this connection that the peer has not acknowledged yet:
        the transport's buffer and the kernel's send queue (Linux SIOCOUTQ, whose
        request number termios calls TIOCOUTQ). A system call: for rare
        decisions, never per delivery."""
        n = self.buffered()
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
        connection if the peer does not finish the closing handshake in time."""
        if self.close_sent or self.disconnected:
            return
        self.frames_ok = False
        self.conn.send_close(code, reason)
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
        if self.handshake_complete and not self.close_sent and not self.disconnected:
            hook, self.on_shutdown = self.on_shutdown, None
            if hook is not None:
                hook()
                return
            self.stop_keepalive()
            self.close_now(1012, "server restarting")
            return
        super().shutdown()
