"""The Redis Cluster slot audit of the test run.

On Redis Cluster every Lua script call, every MULTI/EXEC transaction and every
multi-key command must touch keys of ONE hash slot. This audit watches every
command the redis-py asyncio clients of the test process send (the tests start the
livesell server in-process, tests/support.py LiveServer, so that is the server's
own traffic) and records each operation that would fail there:

- "script": EVAL/EVALSHA(_RO)/FCALL(_RO) whose `numkeys` keys span slots (a plain
  command or one in a pipeline; the ledger's batch form included);
- "script-call": a call of `Ledger.run` (server/state/ledger.py) whose KEYS, or the
  `ls:…{tag}…` key prefixes it passes in ARGV for the script to build keys from,
  span slots. Its stack names the caller, which the batched EVALSHA (sent later
  from the ledger's own task) cannot;
- "command": a multi-key command (DEL, UNLINK, EXISTS, MGET, SUNIONSTORE, RENAME,
  BLPOP, ... the table KEY_SPECS) whose keys span slots;
- "transaction": a MULTI/EXEC pipeline (with the keys WATCHed for it and the
  commands sent while watching) whose keys span slots: every command's key(s)
  count, a PUBLISH's channel too (redis-py's cluster pipeline routes it by it);
- "transaction-keyless": a command without a key inside MULTI/EXEC (PING, TIME,
  ...): redis-py's cluster pipeline cannot route it and refuses the transaction.

A non-transactional pipeline may mix slots (redis-py's cluster pipeline splits it
by node): only each of its commands is checked by itself. The audit never changes
what a command does: it reads the arguments, then calls redis-py's own method.

Hooks (installed by `install()`, removed by `uninstall()`):
`redis.asyncio.client.Redis.execute_command` (plain commands),
`Pipeline.execute` (a pipeline's queued commands, when it is sent),
`Pipeline.immediate_execute_command` (WATCH and the commands sent while watching)
and `server.state.ledger.Ledger.run` (script calls, before they are batched).

Each violation carries the command, its keys grouped by slot and a short stack:
the first frames inside server/ or loadtest/ (else the test's own frames).

Switches (environment variables):

- LIVESELL_SLOT_AUDIT: unset or "1": on; a test during which a violation happened
  fails at its teardown with the list. "0": off (nothing is patched). "record":
  on, but tests do not fail: violations are written to the JSON lines file
  LIVESELL_SLOT_AUDIT_FILE (default ./slot_audit.jsonl), once per test, kind,
  command and call site, and summed up at the end of the run.
- LIVESELL_SLOT_AUDIT_FILE: in "1" mode too, the file the violations are also
  written to (one line per test, kind, command and call site; appended to).
- LIVESELL_SLOT_AUDIT_SUBPROCESSES=1: also audit the Python processes the tests
  start (servers of tests/loadtest and the supervision tests, `--workers`
  processes): a `sitecustomize` put first on PYTHONPATH installs the audit there;
  their violations are charged to the test running when they are read (its
  teardown). Off by default: it changes the environment of every subprocess.

Cost: a plain command of one key pays one set lookup of its name; a multi-key
command, script call or MULTI the slots of its keys (cached per key, lru_cache).
Not seen: keys a Lua script builds itself other than from an `ls:…{tag}…` ARGV
prefix of a ledger call, and SSUBSCRIBE's channels (sharded pub/sub).

`python -m tests.slot_audit FILE` prints the distinct violations of a record file
(by kind, command and call site, with the tests that met them).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.abc
import json
import os
import re
import sys
import tempfile
import threading
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import importlib.machinery
    import types

    import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_PROJECT = (os.path.join(ROOT, "server") + os.sep, os.path.join(ROOT, "loadtest") + os.sep)
_OWN = (os.path.join(ROOT, ".venv") + os.sep, os.path.abspath(__file__))
STACK_FRAMES = 6
KEYS_SHOWN = 8  # keys per slot in a report (a batch call carries hundreds)

ENV_MODE = "LIVESELL_SLOT_AUDIT"
ENV_FILE = "LIVESELL_SLOT_AUDIT_FILE"
ENV_SUBPROCESSES = "LIVESELL_SLOT_AUDIT_SUBPROCESSES"
DEFAULT_FILE = "slot_audit.jsonl"

# ============================================================== keys of a command

Args = Sequence[Any]


def _from(i: int) -> Callable[[Args], Args]:
    return lambda a: a[i:]


def _span(i: int, j: int) -> Callable[[Args], Args]:
    return lambda a: a[i:j]


def _numkeys(pos: int, extra_before: int = 0) -> Callable[[Args], Args]:
    """numkeys at `pos`, the keys after it; `extra_before` keys before it (a
    destination)."""
    def keys(a: Args) -> Args:
        try:
            n = int(a[pos])
        except (IndexError, TypeError, ValueError):
            return ()
        return a[pos + 1:pos + 1 + n]

    def with_destination(a: Args) -> Args:
        return (*a[pos - extra_before:pos], *keys(a))

    return with_destination if extra_before else keys


def _token(a: Any) -> str:
    if isinstance(a, bytes | bytearray | memoryview):
        return bytes(a).decode("latin-1").upper()
    return str(a).upper()


def _after(token: str) -> Callable[[Args], Args]:
    """The key plus the argument after `token` (SORT ... STORE dest)."""
    def keys(a: Args) -> Args:
        found = list(a[1:2])
        for i in range(2, len(a) - 1):
            if isinstance(a[i], str | bytes) and _token(a[i]) == token:
                found.append(a[i + 1])
        return found
    return keys


def _streams(a: Args) -> Args:
    for i, arg in enumerate(a):
        if isinstance(arg, str | bytes) and _token(arg) == "STREAMS":
            rest = a[i + 1:]
            return rest[:len(rest) // 2]
    return ()


def _georadius(a: Args) -> Args:
    found = list(a[1:2])
    for i in range(2, len(a) - 1):
        if isinstance(a[i], str | bytes) and _token(a[i]) in ("STORE", "STOREDIST"):
            found.append(a[i + 1])
    return found


def _migrate(a: Args) -> Args:
    for i, arg in enumerate(a):
        if isinstance(arg, str | bytes) and _token(arg) == "KEYS":
            return a[i + 1:]
    return a[3:4] if len(a) > 3 and a[3] not in ("", b"") else ()


# Every command that takes more than one key (or takes them at a place other than
# the first argument), as redis-py sends it: name -> its keys. The commands of one
# key need no entry (their key is args[1]).
KEY_SPECS: dict[str, Callable[[Args], Args]] = {
    **dict.fromkeys(("DEL", "UNLINK", "EXISTS", "MGET", "TOUCH", "WATCH", "SUNION",
                     "SINTER", "SDIFF", "SUNIONSTORE", "SINTERSTORE", "SDIFFSTORE",
                     "PFCOUNT", "PFMERGE"), _from(1)),
    **dict.fromkeys(("MSET", "MSETNX"), lambda a: a[1::2]),
    **dict.fromkeys(("SMOVE", "RENAME", "RENAMENX", "LMOVE", "BLMOVE", "RPOPLPUSH",
                     "BRPOPLPUSH", "COPY", "ZRANGESTORE", "GEOSEARCHSTORE", "LCS"),
                    _span(1, 3)),
    **dict.fromkeys(("BLPOP", "BRPOP", "BZPOPMIN", "BZPOPMAX"), lambda a: a[1:-1]),
    **dict.fromkeys(("ZUNIONSTORE", "ZINTERSTORE", "ZDIFFSTORE"), _numkeys(2, 1)),
    **dict.fromkeys(("ZUNION", "ZINTER", "ZDIFF", "ZINTERCARD", "SINTERCARD", "LMPOP",
                     "ZMPOP"), _numkeys(1)),
    **dict.fromkeys(("BLMPOP", "BZMPOP"), _numkeys(2)),
    **dict.fromkeys(("EVAL", "EVALSHA", "EVAL_RO", "EVALSHA_RO", "FCALL", "FCALL_RO"),
                    _numkeys(2)),
    "BITOP": _from(2),
    "SORT": _after("STORE"),
    "SORT_RO": _span(1, 2),
    **dict.fromkeys(("XREAD", "XREADGROUP"), _streams),
    **dict.fromkeys(("GEORADIUS", "GEORADIUSBYMEMBER"), _georadius),
    "MIGRATE": _migrate,
}
SCRIPT_COMMANDS = frozenset({"EVAL", "EVALSHA", "EVAL_RO", "EVALSHA_RO", "FCALL", "FCALL_RO"})
# Commands of one key that take it elsewhere than args[1] (redis-py sends a
# two-word command as one string: "MEMORY USAGE", "XINFO STREAM").
_KEY_AT = {"OBJECT": 2}
# First words of the commands that name no key. In a MULTI they cannot be routed
# by redis-py's cluster pipeline. (PUBLISH/SPUBLISH are routed by their channel.)
KEYLESS = frozenset({
    "PING", "ECHO", "TIME", "INFO", "DBSIZE", "FLUSHALL", "FLUSHDB", "SELECT", "SWAPDB",
    "MULTI", "EXEC", "DISCARD", "UNWATCH", "SCRIPT", "FUNCTION", "CLIENT", "CONFIG",
    "COMMAND", "KEYS", "SCAN", "RANDOMKEY", "WAIT", "WAITAOF", "LASTSAVE", "SAVE",
    "BGSAVE", "BGREWRITEAOF", "SHUTDOWN", "SLOWLOG", "ACL", "AUTH", "HELLO", "QUIT",
    "RESET", "READONLY", "READWRITE", "CLUSTER", "LATENCY", "MODULE", "DEBUG", "ROLE",
    "REPLICAOF", "SLAVEOF", "SYNC", "PSYNC", "LOLWUT", "FAILOVER", "MONITOR", "SUBSCRIBE",
    "UNSUBSCRIBE", "PSUBSCRIBE", "PUNSUBSCRIBE", "SSUBSCRIBE", "SUNSUBSCRIBE", "PUBSUB",
})


def _variants(names: frozenset[str] | set[str]) -> frozenset[Any]:
    out: set[Any] = set()
    for n in names:
        out.update((n, n.lower(), n.encode(), n.lower().encode()))
    return frozenset(out)


# The quick test of the hot path: names as redis-py (or a caller) may spell them.
MULTI_KEY: frozenset[Any] = _variants(set(KEY_SPECS))
# The same names -> (the name, its keys).
_SPEC_OF: dict[Any, tuple[str, Callable[[Args], Args]]] = {
    spelt: (name, spec) for name, spec in KEY_SPECS.items() for spelt in _variants({name})}


def command_name(arg: Any) -> str:
    return _token(arg)


def command_keys(args: Args) -> tuple[Any, ...] | None:
    """The keys of one command, as a cluster routes it; None for a command that
    names no key (a script of 0 keys names none but is not keyless: ())."""
    if not args:
        return None
    name = command_name(args[0])
    spec = KEY_SPECS.get(name)
    if spec is not None:
        return tuple(spec(args))
    first = name.split(" ", 1)[0]
    if first in KEYLESS or (first == "MEMORY" and name != "MEMORY USAGE"):
        return None
    at = _KEY_AT.get(first, 1)
    return tuple(args[at:at + 1]) if len(args) > at else None


def _encoded(key: Any) -> bytes:
    """A key as redis-py's encoder puts it on the wire (UTF-8)."""
    if isinstance(key, bytes):
        return key
    if isinstance(key, str):
        return key.encode("utf-8", "surrogateescape")
    if isinstance(key, bytearray | memoryview):
        return bytes(key)
    if isinstance(key, float):
        return repr(key).encode()
    return str(key).encode()


@functools.lru_cache(maxsize=65536, typed=True)
def _cached_slot(key: str | bytes | int | float) -> int:
    from redis.crc import key_slot

    return int(key_slot(_encoded(key)))


def slot_of(key: Any) -> int:
    """The cluster hash slot of a key (str, bytes, or a number, as redis-py sends it)."""
    try:
        return _cached_slot(key)
    except TypeError:  # unhashable (bytearray, memoryview)
        from redis.crc import key_slot

        return int(key_slot(_encoded(key)))


def key_text(key: Any) -> str:
    if isinstance(key, bytes | bytearray | memoryview):
        return bytes(key).decode("utf-8", "backslashreplace")
    return str(key)


def _slots(keys: Sequence[Any]) -> dict[int, list[Any]]:
    by_slot: dict[int, list[Any]] = {}
    for k in keys:
        by_slot.setdefault(slot_of(k), []).append(k)
    return by_slot


def _spans_slots(keys: Sequence[Any]) -> bool:
    if len(keys) < 2:
        return False
    try:
        return len(set(map(_cached_slot, keys))) > 1
    except TypeError:  # an unhashable key (bytearray, memoryview)
        return len({slot_of(k) for k in keys}) > 1


# ====================================================================== violations

class Violation:
    """One operation that would fail on Redis Cluster."""

    __slots__ = ("command", "kind", "pid", "script", "slots", "stack", "test")

    def __init__(self, kind: str, command: str, slots: dict[int, list[str]],
                 stack: list[str], script: str | None = None, test: str | None = None,
                 pid: int | None = None) -> None:
        self.kind = kind
        self.command = command  # "DEL", "EVALSHA reserve@batch", "MULTI HSET SADD"
        self.slots = slots  # slot -> the keys in it (as text)
        self.stack = stack  # "server/state/x.py:12 in f", innermost first
        self.script = script
        self.test = test
        self.pid = os.getpid() if pid is None else pid

    @property
    def site(self) -> str:
        return self.stack[0] if self.stack else "?"

    @property
    def keys(self) -> list[str]:
        return [k for ks in self.slots.values() for k in ks]

    def dedupe_key(self) -> tuple[str, str, str]:
        return (self.kind, self.command, self.site)

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "command": self.command, "script": self.script,
                "slots": {str(s): ks for s, ks in self.slots.items()},
                "stack": self.stack, "site": self.site, "test": self.test, "pid": self.pid}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Violation:
        return cls(d["kind"], d["command"], {int(s): ks for s, ks in d["slots"].items()},
                   list(d["stack"]), d.get("script"), d.get("test"), d.get("pid"))

    def describe(self, count: int = 1) -> str:
        times = f" ({count} times)" if count > 1 else ""
        lines = [f"[{self.kind}] {self.command}{times}"]
        for slot, keys in self.slots.items():
            shown = ", ".join(keys[:KEYS_SHOWN])
            more = f", ... (+{len(keys) - KEYS_SHOWN} more)" if len(keys) > KEYS_SHOWN else ""
            label = "no key" if slot < 0 else f"slot {slot}"
            lines.append(f"    {label}: {shown}{more}")
        for i, frame in enumerate(self.stack or ["(no frame in server/, loadtest/ or tests/)"]):
            lines.append(f"    {'at' if i == 0 else '  '} {frame}")
        return "\n".join(lines)


def report_text(violations: Sequence[Violation], title: str) -> str:
    """The distinct violations (by kind, command and call site), with their counts."""
    groups: dict[tuple[str, str, str], list[Violation]] = {}
    for v in violations:
        groups.setdefault(v.dedupe_key(), []).append(v)
    head = (f"{title}: {len(groups)} distinct operation(s) that Redis Cluster refuses "
            f"(keys of more than one hash slot), {len(violations)} in all")
    body = [vs[0].describe(len(vs)) for vs in groups.values()]
    return "\n".join([head, *body])


def _frame_text(f: types.FrameType) -> str:
    name = f.f_code.co_filename
    if name.startswith(ROOT + os.sep):
        name = os.path.relpath(name, ROOT)
    return f"{name}:{f.f_lineno} in {f.f_code.co_name}"


# Frames of no interest when no frame is in server/ or loadtest/: the audit's own,
# the virtualenv's and the standard library's.
_LIBRARY = tuple({*_OWN, sys.prefix + os.sep, sys.base_prefix + os.sep,
                  sys.exec_prefix + os.sep, "<"})


def _stack(skip: int = 1) -> list[str]:
    """The first frames inside server/ or loadtest/, innermost first; else the
    first frames of the caller's own code (a test)."""
    try:
        f: types.FrameType | None = sys._getframe(skip)
    except ValueError:
        return []
    project: list[str] = []
    other: list[str] = []
    while f is not None and len(project) < STACK_FRAMES:
        name = f.f_code.co_filename
        if name.startswith(_PROJECT):
            project.append(_frame_text(f))
        elif not project and len(other) < 3 and not name.startswith(_LIBRARY):
            other.append(_frame_text(f))
        f = f.f_back
    return project or other


_labels: dict[str, str] = {}
_labels_from: set[str] = set()


def _script_label(command: str, args: Args) -> str | None:
    """What a script command runs: the ledger's script name for its SHA (the batch
    form `name@batch`), a module's constant holding the source, else the SHA."""
    if command.startswith("FCALL"):
        return key_text(args[1]) if len(args) > 1 else None
    if len(args) < 2:
        return None
    if command.startswith("EVALSHA"):
        sha = key_text(args[1]).lower()
    else:
        sha = hashlib.sha1(_encoded(args[1])).hexdigest()
    if sha not in _labels:
        _learn_labels()
    if sha in _labels:
        return _labels[sha]
    return sha[:12] if command.startswith("EVALSHA") else key_text(args[1]).strip()[:40]


def _learn_labels() -> None:
    ledger = sys.modules.get("server.state.ledger")
    if ledger is not None and "ledger" not in _labels_from:
        _labels_from.add("ledger")
        with contextlib.suppress(Exception):
            for name in ledger.SCRIPT_NAMES:
                src = ledger.script_source(name)
                _labels[hashlib.sha1(src.encode()).hexdigest()] = name
                batch = ledger.batch_source(src)
                _labels[hashlib.sha1(batch.encode()).hexdigest()] = name + ledger.BATCH_SUFFIX
    for modname, module in list(sys.modules.items()):
        if modname in _labels_from or not modname.startswith(("server.", "loadtest.")):
            continue
        _labels_from.add(modname)
        for attr, value in list(vars(module).items()):
            if isinstance(value, str) and "redis.call" in value:
                _labels.setdefault(hashlib.sha1(value.encode()).hexdigest(),
                                   f"{modname}.{attr}")


def _make(kind: str, command: str, keys: Sequence[Any], script: str | None = None,
          keyless: Sequence[str] = ()) -> Violation:
    slots = {s: [key_text(k) for k in ks] for s, ks in _slots(keys).items()}
    if keyless:
        slots[-1] = list(keyless)
    return Violation(kind, command, slots, _stack(), script)


# ====================================================================== the audit

class Audit:
    """Where violations go: the current test's list (taken at its teardown), the
    record file, or a `capture()` of tests/test_slot_audit.py."""

    def __init__(self) -> None:
        self.mode = "off"  # "fail", "record", "off"
        self.path: str | None = None  # the JSON lines file, if any
        self.sidecar: str | None = None  # where audited subprocesses write
        self.sidecar_offset = 0
        self.test: str | None = None
        self.pending: list[Violation] = []
        self.captures: list[list[Violation]] = []
        self.written: set[tuple[str, str, str, str | None]] = set()
        self.session: dict[tuple[str, str, str], tuple[Violation, set[str]]] = {}
        self.internal_errors: list[str] = []
        self.lock = threading.Lock()

    def add(self, v: Violation) -> None:
        if self.captures:
            self.captures[-1].append(v)
            return
        if self.mode == "off":
            return
        v.test = self.test
        with self.lock:
            self.pending.append(v)
            seen = self.session.get(v.dedupe_key())
            if seen is None:
                self.session[v.dedupe_key()] = (v, {v.test or "?"})
            else:
                seen[1].add(v.test or "?")
            mark = (*v.dedupe_key(), v.test)
            if self.path is not None and mark not in self.written:
                self.written.add(mark)
                _append(self.path, v)

    def error(self, where: str, exc: BaseException) -> None:
        if len(self.internal_errors) < 20:
            self.internal_errors.append(f"{where}: {type(exc).__name__}: {exc}")

    def begin(self, test: str) -> None:
        self.test = test

    def take(self) -> list[Violation]:
        """The violations since the last take (a test's), with those the audited
        subprocesses wrote meanwhile."""
        for v in self._read_sidecar():
            self.add(v)
        with self.lock:
            taken, self.pending = self.pending, []
        return taken

    def _read_sidecar(self) -> list[Violation]:
        if self.sidecar is None:
            return []
        try:
            with open(self.sidecar, "rb") as f:
                f.seek(self.sidecar_offset)
                data = f.read()
        except OSError:
            return []
        end = data.rfind(b"\n") + 1
        self.sidecar_offset += end
        found = []
        for line in data[:end].splitlines():
            with contextlib.suppress(ValueError, KeyError, TypeError):
                found.append(Violation.from_json(json.loads(line)))
        return found


AUDIT = Audit()


def _append(path: str, v: Violation) -> None:
    line = json.dumps(v.to_json(), ensure_ascii=False) + "\n"
    with open(path, "a", encoding="utf-8") as f:
        f.write(line)


@contextlib.contextmanager
def capture() -> Iterator[list[Violation]]:
    """The violations of the block, kept from the test's own list and the record
    file (for the audit's own tests); installs the hooks for the block if the run
    has them off."""
    here = not _installed
    if here:
        install()
    got: list[Violation] = []
    AUDIT.captures.append(got)
    try:
        yield got
    finally:
        AUDIT.captures.remove(got)
        if here:
            uninstall()


# ====================================================================== the checks

def check_command(args: Args) -> None:
    """A command sent by itself (or in a pipeline without MULTI): its own keys."""
    found = _SPEC_OF.get(args[0])
    if found is None:
        return
    name, spec = found
    keys = spec(args)
    if _spans_slots(keys):
        if name in SCRIPT_COMMANDS:
            label = _script_label(name, args)
            command = f"{name} {label}" if label else name
            AUDIT.add(_make("script", command, keys, label))
        else:
            AUDIT.add(_make("command", name, keys))


def check_transaction(commands: Sequence[Args], watched: Sequence[Any]) -> None:
    """A MULTI/EXEC: the keys WATCHed for it and every command's, one slot."""
    keys: list[Any] = list(watched)
    names: list[str] = ["WATCH"] if watched else []
    keyless: list[str] = []
    for args in commands:
        name = command_name(args[0])
        found = command_keys(args)
        if name in SCRIPT_COMMANDS:
            label = _script_label(name, args)
            name = f"{name}({label})" if label else name
        if name not in names:
            names.append(name)
        if found is None:
            keyless.append(name)
        else:
            keys.extend(found)
    if _spans_slots(keys):
        AUDIT.add(_make("transaction", "MULTI " + " ".join(names), keys,
                        keyless=keyless))
    elif keyless:
        AUDIT.add(_make("transaction-keyless", "MULTI " + " ".join(names), keys,
                        keyless=keyless))


_PREFIX = re.compile(r"^ls:[^{}]*\{[^}]+\}")


def check_script_call(name: Any, keys: Sequence[Any], args: Sequence[Any]) -> None:
    """A ledger call: its KEYS and the key prefixes its ARGV hands the script."""
    all_keys = list(keys)
    for a in args:
        if type(a) is str and a.startswith("ls:") and _PREFIX.match(a) is not None:
            all_keys.append(a)
    if _spans_slots(all_keys):
        AUDIT.add(_make("script-call", f"Ledger.run {name}", all_keys, str(name)))


# ====================================================================== the hooks

_WATCHED = "_slot_audit_watched"
_originals: list[tuple[type, str, Any]] = []
_installed = False
_hooks: dict[str, Callable[[types.ModuleType], None]] = {}


def _patch(cls: type, attr: str, make: Callable[[Any], Any]) -> None:
    original = cls.__dict__[attr]
    wrapper = make(original)
    functools.update_wrapper(wrapper, original)
    wrapper.__slot_audit__ = True
    _originals.append((cls, attr, original))
    setattr(cls, attr, wrapper)


def _patch_redis(client: types.ModuleType) -> None:
    redis_cls, pipeline_cls = client.Redis, client.Pipeline
    if getattr(redis_cls.execute_command, "__slot_audit__", False):
        return
    quick = MULTI_KEY

    def plain(original: Any) -> Any:
        async def execute_command(self: Any, *args: Any, **options: Any) -> Any:
            if args and args[0] in quick:
                try:
                    check_command(args)
                except Exception as exc:
                    AUDIT.error("execute_command", exc)
            return await original(self, *args, **options)
        return execute_command

    def immediate(original: Any) -> Any:
        def immediate_execute_command(self: Any, *args: Any, **options: Any) -> Any:
            try:
                _watching(self, args)
            except Exception as exc:
                AUDIT.error("immediate_execute_command", exc)
            return original(self, *args, **options)
        return immediate_execute_command

    def execute(original: Any) -> Any:
        async def execute(self: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                _pipeline(self)
            except Exception as exc:
                AUDIT.error("Pipeline.execute", exc)
            return await original(self, *args, **kwargs)
        return execute

    _patch(redis_cls, "execute_command", plain)
    _patch(pipeline_cls, "immediate_execute_command", immediate)
    _patch(pipeline_cls, "execute", execute)


def _watching(pipe: Any, args: Args) -> None:
    """WATCH, and each command sent while watching: their keys join the
    transaction's (the first WATCH starts them afresh)."""
    if not args:
        return
    is_watch = command_name(args[0]) == "WATCH"
    if not (is_watch or pipe.watching):
        return
    keys = command_keys(args) or ()
    if is_watch and not pipe.watching:
        setattr(pipe, _WATCHED, list(keys))
    else:
        getattr(pipe, _WATCHED, []).extend(keys)
    if args[0] in MULTI_KEY:
        check_command(args)


def _pipeline(pipe: Any) -> None:
    stack = pipe.command_stack
    if pipe.is_transaction or pipe.explicit_transaction:
        watched = getattr(pipe, _WATCHED, ()) if pipe.watching else ()
        if stack or watched:
            check_transaction([args for args, _ in stack], watched)
        return
    quick = MULTI_KEY
    for args, _ in stack:
        if args and args[0] in quick:
            check_command(args)


def _patch_ledger(module: types.ModuleType) -> None:
    ledger_cls = getattr(module, "Ledger", None)
    if ledger_cls is None or "run" not in ledger_cls.__dict__:
        return
    if getattr(ledger_cls.run, "__slot_audit__", False):
        return

    def run(original: Any) -> Any:
        def run(self: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                name = args[0] if args else kwargs.get("name")
                keys = args[1] if len(args) > 1 else kwargs.get("keys", ())
                argv = args[2] if len(args) > 2 else kwargs.get("args", ())
                check_script_call(name, keys, argv)
            except Exception as exc:
                AUDIT.error("Ledger.run", exc)
            return original(self, *args, **kwargs)
        return run

    _patch(ledger_cls, "run", run)


class _AfterImport(importlib.abc.MetaPathFinder):
    """Runs a hook once a module is imported (in a subprocess, without importing
    redis or the server early)."""

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: types.ModuleType | None = None
                  ) -> importlib.machinery.ModuleSpec | None:
        hook = _hooks.get(fullname)
        if hook is None:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        exec_module = loader.exec_module

        def exec_then_hook(module: types.ModuleType) -> None:
            exec_module(module)
            if _hooks.pop(fullname, None) is not None:
                try:
                    hook(module)
                except Exception as exc:
                    AUDIT.error(f"hook {fullname}", exc)

        loader.exec_module = exec_then_hook  # type: ignore[method-assign]
        return spec


_finder = _AfterImport()


def _when_imported(name: str, hook: Callable[[types.ModuleType], None]) -> None:
    module = sys.modules.get(name)
    if module is not None:
        hook(module)
        return
    _hooks[name] = hook
    if _finder not in sys.meta_path:
        sys.meta_path.insert(0, _finder)


def install(lazy: bool = False) -> None:
    """Patch redis-py's asyncio client and the ledger (now, or when imported)."""
    global _installed
    if _installed:
        return
    _installed = True
    if not lazy:
        import redis.asyncio.client  # noqa: F401

        with contextlib.suppress(ImportError):
            import server.state.ledger  # noqa: F401
    _when_imported("redis.asyncio.client", _patch_redis)
    _when_imported("server.state.ledger", _patch_ledger)


def uninstall() -> None:
    global _installed
    _hooks.clear()
    if _finder in sys.meta_path:
        sys.meta_path.remove(_finder)
    while _originals:
        cls, attr, original = _originals.pop()
        setattr(cls, attr, original)
    _installed = False


def install_in_subprocess(sidecar: str) -> None:
    """For the sitecustomize of audited subprocesses: record to `sidecar`, which
    the test process reads at each test's teardown."""
    AUDIT.mode = "record"
    AUDIT.path = sidecar
    install(lazy=True)


_SITECUSTOMIZE = """\
# Written by tests/slot_audit.py (LIVESELL_SLOT_AUDIT_SUBPROCESSES=1).
try:
    import importlib.util as _u
    import sys as _s
    _spec = _u.spec_from_file_location("_livesell_slot_audit", {module!r})
    _m = _u.module_from_spec(_spec)
    _s.modules["_livesell_slot_audit"] = _m
    _spec.loader.exec_module(_m)
    _m.install_in_subprocess({sidecar!r})
except Exception:
    pass
"""


# ====================================================================== pytest

def mode_from_env(env: Mapping[str, str] = os.environ) -> str:
    value = env.get(ENV_MODE, "1").strip().lower()
    if value in ("0", "off", "false", "no"):
        return "off"
    if value == "record":
        return "record"
    return "fail"


def configure(config: pytest.Config) -> None:
    """Switch the audit on for a pytest run (tests/conftest.py pytest_configure)."""
    mode = mode_from_env()
    if mode == "off" or config.pluginmanager.has_plugin("livesell-slot-audit"):
        return
    AUDIT.mode = mode
    path = os.environ.get(ENV_FILE) or (DEFAULT_FILE if mode == "record" else None)
    AUDIT.path = os.path.abspath(path) if path else None
    install()
    config.pluginmanager.register(_plugin(config), "livesell-slot-audit")


def _plugin(config: pytest.Config) -> object:
    import pytest

    class SlotAuditPlugin:
        def __init__(self) -> None:
            self.tmp: tempfile.TemporaryDirectory[str] | None = None
            self.pythonpath: str | None = None
            if os.environ.get(ENV_SUBPROCESSES, "") not in ("", "0"):
                self._audit_subprocesses()

        def _audit_subprocesses(self) -> None:
            self.tmp = tempfile.TemporaryDirectory(prefix="slot-audit-")
            sidecar = os.path.join(self.tmp.name, "subprocesses.jsonl")
            open(sidecar, "w").close()
            AUDIT.sidecar = sidecar
            with open(os.path.join(self.tmp.name, "sitecustomize.py"), "w") as f:
                f.write(_SITECUSTOMIZE.format(module=os.path.abspath(__file__),
                                              sidecar=sidecar))
            self.pythonpath = os.environ.get("PYTHONPATH")
            os.environ["PYTHONPATH"] = os.pathsep.join(
                p for p in (self.tmp.name, self.pythonpath) if p)

        def pytest_runtest_logstart(self, nodeid: str) -> None:
            # Anything sent between two tests goes in the next one's report.
            AUDIT.begin(nodeid)

        @pytest.hookimpl(wrapper=True)
        def pytest_runtest_makereport(
            self, item: pytest.Item, call: pytest.CallInfo[None]
        ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
            report = yield
            if call.when != "teardown":
                return report
            found = AUDIT.take()
            if found and AUDIT.mode == "fail":
                text = report_text(found, "Redis Cluster slot audit (tests/slot_audit.py; "
                                   f"{ENV_MODE}=0 switches it off)")
                if report.outcome == "failed":  # a teardown error of its own: keep it
                    report.sections.append(("Redis Cluster slot audit", text))
                else:
                    report.outcome = "failed"
                    report.longrepr = text
            return report

        def pytest_terminal_summary(self, terminalreporter: Any) -> None:
            AUDIT.take()
            tr = terminalreporter
            if AUDIT.internal_errors:
                tr.write_sep("-", "slot audit: errors of the audit itself")
                for line in AUDIT.internal_errors:
                    tr.write_line(line)
            if not AUDIT.session:
                return
            tr.write_sep("-", "Redis Cluster slot audit")
            for v, tests in AUDIT.session.values():
                tr.write_line(v.describe())
                tr.write_line(f"    in {len(tests)} test(s), e.g. {sorted(tests)[0]}")
            where = f"; written to {AUDIT.path}" if AUDIT.path else ""
            tr.write_line(f"{len(AUDIT.session)} distinct violation(s){where}")

        def pytest_unconfigure(self) -> None:
            if self.tmp is not None:
                if self.pythonpath is None:
                    os.environ.pop("PYTHONPATH", None)
                else:
                    os.environ["PYTHONPATH"] = self.pythonpath
                AUDIT.sidecar = None
                self.tmp.cleanup()
            uninstall()

    return SlotAuditPlugin()


# ====================================================================== summary

def summarize(lines: Sequence[str]) -> str:
    """The distinct violations of a record file, with the tests that met them."""
    groups: dict[tuple[str, str, str], tuple[Violation, set[str], int]] = {}
    for line in lines:
        if not line.strip():
            continue
        v = Violation.from_json(json.loads(line))
        first, tests, n = groups.get(v.dedupe_key(), (v, set(), 0))
        tests.add(v.test or "?")
        groups[v.dedupe_key()] = (first, tests, n + 1)
    out = []
    for v, tests, _ in sorted(groups.values(), key=lambda g: (g[0].kind, g[0].site)):
        out.append(v.describe())
        shown = sorted(tests)
        out.append(f"    in {len(shown)} test(s): {', '.join(shown[:3])}"
                   + (" ..." if len(shown) > 3 else ""))
    out.append(f"{len(groups)} distinct violation(s)")
    return "\n".join(out)


if __name__ == "__main__":
    with open(sys.argv[1] if len(sys.argv) > 1 else DEFAULT_FILE, encoding="utf-8") as f:
        print(summarize(f.read().splitlines()))
