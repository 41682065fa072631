"""Every outgoing event is built in server/core/events.py and documented in
docs/protocol.md; no server module writes an event's dict literal itself."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

from server.core import events

ROOT = Path(__file__).resolve().parent.parent


def _built_types() -> set[str]:
    """The "type" values the builders in core/events.py put in their dicts."""
    tree = ast.parse(inspect.getsource(events))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values, strict=True):
                if isinstance(key, ast.Constant) and key.value == "type":
                    # A literal, or one of two (`a if ... else b`).
                    options = [value.body, value.orelse] if isinstance(value, ast.IfExp) \
                        else [value]
                    found.update(o.value for o in options
                                 if isinstance(o, ast.Constant) and isinstance(o.value, str))
    return found


def test_the_event_lists_name_exactly_what_the_builders_build() -> None:
    assert _built_types() == set(events.ROOM_EVENTS) | set(events.DIRECT_FRAMES)


def test_every_event_is_documented_in_the_protocol() -> None:
    protocol = (ROOT / "docs" / "protocol.md").read_text(encoding="utf-8")
    # Room events each have a row in the events table; frames sent to one
    # connection each have an example.
    missing = [t for t in events.ROOM_EVENTS if f"| `{t}` |" not in protocol] + \
        [t for t in events.DIRECT_FRAMES if f'"type":"{t}"' not in protocol]
    assert not missing, f"events not documented in docs/protocol.md: {missing}"


def test_no_server_module_builds_an_event_of_its_own() -> None:
    names = set(events.ROOM_EVENTS) | set(events.DIRECT_FRAMES)
    offenders = []
    for path in sorted((ROOT / "server").rglob("*.py")):
        if path == ROOT / "server" / "core" / "events.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Dict):
                for key, value in zip(node.keys, node.values, strict=True):
                    if isinstance(key, ast.Constant) and key.value == "type" and \
                            isinstance(value, ast.Constant) and value.value in names:
                        offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} "
                                         f"{value.value}")
    assert not offenders, "build these with server/core/events.py:\n" + "\n".join(offenders)
