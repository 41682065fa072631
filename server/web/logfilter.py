"""Redaction of credentials in log records: owns what counts as a secret in a
log line and the filter that replaces it with "[redacted]".

Viewers and hosts send credentials in `Sec-WebSocket-Protocol`
(`livesell.token.…`, `livesell.host.…`, server/realtime/handshake.py) and in headers; an
old or careless client may still put them in a URL (`?token=…&host_key=…`, which
the server refuses, but only after uvicorn has logged it). uvicorn logs every
WebSocket accept (logger `uvicorn.error`, INFO) and, with the access log on,
every HTTP request (`uvicorn.access`) with the whole query string, and
websockets logs the request line and every header at DEBUG. The
filter rewrites a record's message and its args (uvicorn passes the path as an
argument and its access formatter unpacks the args tuple, so each argument is
redacted in place and the tuple keeps its shape) and a traceback's text, before
any handler formats it. It is one line of defence wherever the credential
travels; it does not replace keeping credentials out of URLs.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Mapping
from typing import Any

REDACTED = "[redacted]"

# A parameter whose name contains one of these words is a secret: host_key,
# token, admin_key, api_key, secret, password, ticket, session, auth, ...
_SECRET_NAME = re.compile(r"(?i)key|token|secret|passw(?:or)?d|pwd|ticket|session|auth"
                          r"|credential|signature")
# A whole name, taken possessively (no backtracking into it: a long run of name
# characters from a stranger costs linear time), then checked with _SECRET_NAME.
_NAME = r"[A-Za-z0-9_.\-]++"
# name=value in a query string, a form or free text; "=" may be percent-encoded
# (a URL nested in another one's parameter).
_PAIR = re.compile(
    rf"(?<![A-Za-z0-9_.\-])({_NAME})(=|%3[Dd])((?:(?!%26)[^&\s\"'#;,<>])++)")
# "name": "value" (JSON) or 'name': 'value' (a dict's repr).
_QUOTED = re.compile(rf"([\"'])({_NAME})\1(\s*:\s*)([\"'])(?:(?!\4).)*+\4")
# A logging placeholder ("token=%s" in a format string) is not a value.
_PLACEHOLDER = re.compile(r"%(?:\([^)]*\))?[-#0 +]*[0-9*]*(?:\.[0-9*]+)?[diouxXeEfFgGcrsa%]")
# A credential offered as a WebSocket subprotocol (websockets logs the header at DEBUG).
_SUBPROTOCOL = re.compile(r"(livesell\.(?:token|host)\.)[^\s,;\"'<>]++")
# The password in a URL's user part (redis://:password@host, redis://user:pw@host,
# postgresql://user:pw@host/db): an external Redis's or the PostgreSQL order store's
# URL, or the embedded Redis's, in an error message. Up to the last "@" before the
# host, as URL parsers (and asyncpg) read it: a password may hold an "@" that was
# not percent-encoded.
_USERINFO = re.compile(r"(?i)(?<![a-z0-9+.\-])([a-z][a-z0-9+.\-]*+://[^\s/@:]*+:)"
                       r"(?:[^\s/@]*+@)++")
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=\-]+")
# Headers whose whole value is a credential (websockets logs "< %s: %s" per header).
SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie",
                            "x-admin-key", "x-host-key", "x-api-key"})
_HEADER_LINE = re.compile(
    r"(?im)^([<>]?\s*(?:" + "|".join(re.escape(h) for h in sorted(SECRET_HEADERS))
    + r")\s*:\s*).+$")

# The loggers that carry request lines: uvicorn's and the app's own.
LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi", "livesell")


def redact(text: str) -> str:
    """`text` with every credential value replaced by "[redacted]"."""
    if "=" in text or "%3" in text:
        text = _PAIR.sub(_redact_pair, text)
    if "://" in text and "@" in text:
        text = _USERINFO.sub(lambda m: f"{m.group(1)}{REDACTED}@", text)
    if ":" in text:
        text = _QUOTED.sub(_redact_quoted, text)
        text = _HEADER_LINE.sub(lambda m: f"{m.group(1)}{REDACTED}", text)
    if "livesell." in text:
        text = _SUBPROTOCOL.sub(lambda m: f"{m.group(1)}{REDACTED}", text)
    if " " in text:
        text = _BEARER.sub(lambda m: f"{m.group(1)} {REDACTED}", text)
    return text


def _redact_pair(m: re.Match[str]) -> str:
    name, eq, value = m.group(1), m.group(2), m.group(3)
    if not _SECRET_NAME.search(name) or _PLACEHOLDER.fullmatch(value):
        return m.group(0)
    return f"{name}{eq}{REDACTED}"


def _redact_quoted(m: re.Match[str]) -> str:
    if not _SECRET_NAME.search(m.group(2)):
        return m.group(0)
    return f"{m.group(1)}{m.group(2)}{m.group(1)}{m.group(3)}{m.group(4)}{REDACTED}{m.group(4)}"


def _secret_placeholder(msg: str) -> bool:
    return any(_SECRET_NAME.search(m.group(1)) and _PLACEHOLDER.fullmatch(m.group(3))
               for m in _PAIR.finditer(msg))


def _redact_arg(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if value is None or isinstance(value, int | float | bytes):
        return value  # numbers keep their type for %d; bytes are never formatted here
    # An object formatted with %s (a URL, an exception): its text, if that held a secret.
    try:
        text = str(value)
    except Exception:
        return value
    cleaned = redact(text)
    return value if cleaned == text else cleaned


class RedactSecrets(logging.Filter):
    """Rewrites records in place; never drops one."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and record.args and _secret_placeholder(record.msg):
            # "host_key=%s" with the key as an argument: only the formatted text shows
            # which argument is the secret, so the record carries that text instead.
            # (A malformed record keeps its parts: the per-argument pass below runs.)
            with contextlib.suppress(TypeError, ValueError):
                record.msg, record.args = redact(record.getMessage()), ()
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        else:
            record.msg = _redact_arg(record.msg)
        args = record.args
        if isinstance(args, tuple) and args:
            cleaned = [_redact_arg(a) for a in args]
            # "< %s: %s" with ("Authorization", "Bearer …"): the header's value.
            for i in range(len(cleaned) - 1):
                name = cleaned[i]
                if isinstance(name, str) and name.strip().lower() in SECRET_HEADERS:
                    cleaned[i + 1] = REDACTED
            record.args = tuple(cleaned)
        elif isinstance(args, Mapping):
            record.args = {k: _redact_arg(v) for k, v in args.items()}
        if record.exc_info and not record.exc_text:
            # Formatters reuse exc_text when set: the traceback is formatted once, here.
            record.exc_text = redact(_FORMATTER.formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


_FORMATTER = logging.Formatter()
FILTER = RedactSecrets("")


def _add(target: logging.Filterer) -> None:
    if not any(isinstance(f, RedactSecrets) for f in target.filters):
        target.addFilter(FILTER)


def install() -> None:
    """Put the filter on uvicorn's and livesell's loggers (and the livesell.*
    loggers that exist by now), and on the handlers of the root and uvicorn
    loggers, which also catch records of loggers created later. Idempotent:
    the CLI and every `create_app` call it."""
    manager = logging.Logger.manager
    names = set(LOGGERS)
    names.update(name for name in list(manager.loggerDict)
                 if name.startswith("livesell."))
    for name in sorted(names):
        _add(logging.getLogger(name))
    for owner in (logging.getLogger(), logging.getLogger("uvicorn"),
                  logging.getLogger("uvicorn.access")):
        for handler in owner.handlers:
            _add(handler)
