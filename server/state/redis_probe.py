"""Asking whatever listens on a loopback port whether it is a Redis, and which one,
over a plain socket (no client library, no pool): the embedded Redis's start uses
this before it trusts a port, and tests use it to tell who answers.

Whatever listens on the port may be a stranger: every read is bounded in bytes
(INFO_MAX_BYTES) and in time (INFO_DEADLINE_S), whatever length it claims or
however slowly it sends. The password goes as one RESP bulk string, never inline.
"""

from __future__ import annotations

import re
import socket
import time
from typing import NamedTuple

INFO_MAX_BYTES = 16384
INFO_DEADLINE_S = 2.0


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def _auth_command(password: str | None) -> bytes:
    """AUTH as a RESP array (never an inline command: the password is sent as one
    bulk string whatever it holds), or nothing without a password."""
    if not password:
        return b""
    secret = password.encode()
    return b"*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n" % (len(secret), secret)


def _read_line(s: socket.socket, data: bytes, deadline: float) -> tuple[bytes, bytes]:
    """The first CRLF-terminated line from `data` plus what `s` sends, and the rest.
    Raises ValueError past INFO_MAX_BYTES or the deadline, OSError when it closes."""
    while b"\r\n" not in data:
        left = deadline - time.monotonic()
        if left <= 0 or len(data) > INFO_MAX_BYTES:
            raise ValueError("no reply line")
        s.settimeout(left)
        chunk = s.recv(4096)
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    line, rest = data.split(b"\r\n", 1)
    return line, rest


def ping(port: int, password: str | None = None) -> bool:
    deadline = time.monotonic() + INFO_DEADLINE_S
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(_auth_command(password) + b"PING\r\n")
            data = b""
            if password:
                _, data = _read_line(s, data, deadline)  # +OK, or an error PING repeats
            line, _ = _read_line(s, data, deadline)
            return line == b"+PONG"
    except (OSError, ValueError):
        return False


def _info_length(data: bytes) -> int:
    """The whole reply's length once its `$N` header line is in: header + N + CRLF.
    Raises ValueError for anything but a bulk string of 0..INFO_MAX_BYTES bytes."""
    head = data.split(b"\r\n", 1)[0]
    if not head.startswith(b"$") or not head[1:].isdigit():
        raise ValueError("not a Redis bulk reply")
    n = int(head[1:])
    if n > INFO_MAX_BYTES:
        raise ValueError("reply too long")
    return len(head) + 2 + n + 2


class Answer(NamedTuple):
    """Who answers on a port: the Redis's process id (None when unknown), and
    whether a Redis there refused the password (it has another one)."""

    pid: int | None
    refused: bool = False


def probe(port: int, password: str | None = None) -> Answer:
    """Ask whatever listens on 127.0.0.1:`port` for its process id (INFO server,
    which works while Redis loads its data), after AUTH when `password` is given.
    A Redis with no password answers INFO all the same (and so is recognised as a
    stranger); one with another password answers neither, and says so."""
    # Whatever listens on the port answers here: read at most INFO_MAX_BYTES, within
    # INFO_DEADLINE_S in all, whatever length it claims or however slowly it sends.
    deadline = time.monotonic() + INFO_DEADLINE_S
    data = b""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(_auth_command(password) + b"INFO server\r\n")
            if password:
                _, data = _read_line(s, data, deadline)  # AUTH's answer, whatever it is
            while b"\r\n" not in data or len(data) < _info_length(data):
                left = deadline - time.monotonic()
                if left <= 0 or len(data) > INFO_MAX_BYTES:
                    return Answer(None)
                s.settimeout(left)
                chunk = s.recv(4096)
                if not chunk:
                    return Answer(None)
                data += chunk
    except ValueError:
        # Not a bulk reply: a Redis that wants a password (or another one) says so.
        return Answer(None, refused=data.startswith((b"-NOAUTH", b"-WRONGPASS")))
    except OSError:
        return Answer(None)
    body = data.split(b"\r\n", 1)[1]
    found = re.search(rb"^process_id:(\d+)\r?$", body, re.MULTILINE)
    return Answer(int(found.group(1)) if found else None)


def answering_pid(port: int, password: str | None = None) -> int | None:
    """The process id of the Redis answering on 127.0.0.1:`port`, or None when
    nothing answers like Redis or it refuses `password` (see `probe`)."""
    return probe(port, password).pid
