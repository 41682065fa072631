"""Recorded bursts: read a JSONL trace, check it line by line, and turn it into
a replay plan for any crowd size and speed.

Format (written by the server's recorder):

    {"kind": "livesell-trace", "version": 1, "room_id": "...", "started_at": <ms>}
    {"t": <ms since start>, "actor": "host" | "viewer", "viewer": "v1",
     "action": ..., "data": {...}}          (one object per line)

Host `data` is the HTTP request body, with the ids of the recorded room (for
`unpin`, `stop_sale`, `end_coupon` and `draw`, the id from the path: `product_id`,
`sale_id`, `coupon_id`, `lottery_id`). Viewer `data` is the frame without `request_id`; chat text is
replaced by `{"length": n}`.

Ids made by the server in the recorded room (sale, coupon, lottery, and
products created without a `product_id`) are matched to the objects the
replay creates: a host record may carry the created object's id as `"id"`;
otherwise an unknown id is bound, when first referenced, to the latest object
of its kind created before that moment and not yet bound (viewers react to
the newest drop). A recorded viewer's hold ids map to the synthetic viewer's
own holds in the order it got them. Scaling keeps the burst's shape: each
recorded viewer becomes k synthetic ones doing the same things at the same
instants (scaled up), or a seeded sample of recorded viewers is kept (scaled
down). Pure: no I/O except `load_trace`.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import orjson

from loadtest.messages import TraceStep

HOST_ACTIONS: Final = frozenset({"product", "update_product", "pin", "unpin", "listing",
                                 "claims", "sale", "stop_sale", "coupon", "end_coupon", "lottery",
                                 "draw",
                                 "announce", "referrals", "update_room"})
VIEWER_ACTIONS: Final = frozenset({"join", "leave", "buy", "checkout", "release",
                                   "claim_coupon", "enter_lottery", "chat", "like"})
# (kind of id, data key) that each action references.
REFERENCES: Final[dict[str, tuple[tuple[str, str], ...]]] = {
    "pin": (("product", "product_id"),), "unpin": (("product", "product_id"),),
    "update_product": (("product", "product_id"),), "listing": (("product", "product_id"),),
    "claims": (("product", "product_id"),),
    "sale": (("product", "product_id"),), "stop_sale": (("sale", "sale_id"),),
    "draw": (("lottery", "lottery_id"),), "buy": (("product", "product_id"),),
    "claim_coupon": (("coupon", "coupon_id"),), "checkout": (("coupon", "coupon_id"),),
    "end_coupon": (("coupon", "coupon_id"),),
    "enter_lottery": (("lottery", "lottery_id"),),
}
REQUIRED: Final[dict[str, tuple[str, ...]]] = {
    "pin": ("product_id",), "unpin": ("product_id",), "sale": ("product_id",),
    "update_product": ("product_id",), "listing": ("product_id",), "claims": ("product_id",),
    "stop_sale": ("sale_id",), "draw": ("lottery_id",), "buy": ("product_id",),
    "checkout": ("hold_id",), "release": ("hold_id",), "claim_coupon": ("coupon_id",),
    "enter_lottery": ("lottery_id",), "announce": ("text",), "end_coupon": ("coupon_id",),
}
# 1: before buy-it-now; 2: a pin without `open_for_sale` opens the product for sale.
VERSIONS: Final = (1, 2)
CREATES: Final = {"sale": "sale", "coupon": "coupon", "lottery": "lottery"}


class TraceError(ValueError):
    """A trace line is malformed, naming the line and the key."""


@dataclass(frozen=True, slots=True)
class Record:
    line: int
    t: float
    actor: str
    viewer: str
    action: str
    data: dict[str, Any]
    created_id: str = ""  # optional "id" of the object a host record created


@dataclass(slots=True)
class Trace:
    name: str
    room_id: str
    started_at: int
    records: list[Record]
    viewers: list[str]  # recorded viewer ids in order of first appearance

    @property
    def duration_ms(self) -> float:
        return self.records[-1].t if self.records else 0.0


def parse_trace(text: str, name: str) -> Trace:
    lines = text.splitlines()
    if not lines or not lines[0].strip():
        raise TraceError(f"{name}: empty trace (line 1 must be the header)")
    header = _object(lines[0], name, 1)
    if header.get("kind") != "livesell-trace":
        raise TraceError(f"{name} line 1: kind: expected 'livesell-trace', got "
                         f"{header.get('kind')!r}")
    version = header.get("version")
    if version not in VERSIONS:
        raise TraceError(f"{name} line 1: version: expected 1 or 2, got {version!r}")
    room_id = header.get("room_id")
    started = header.get("started_at")
    if not isinstance(room_id, str):
        raise TraceError(f"{name} line 1: room_id: expected a string, got {room_id!r}")
    if isinstance(started, bool) or not isinstance(started, int):
        raise TraceError(f"{name} line 1: started_at: expected an integer, got {started!r}")
    records: list[Record] = []
    seen: dict[str, None] = {}
    for n, raw in enumerate(lines[1:], start=2):
        if not raw.strip():
            continue
        rec = _record(_object(raw, name, n), name, n)
        if version == 1 and rec.action == "pin" and "open_for_sale" not in rec.data:
            # Recorded before pinning opened a product for sale (buy-it-now): replayed
            # as it happened then.
            rec.data["open_for_sale"] = False
        records.append(rec)
        if rec.actor == "viewer":
            seen.setdefault(rec.viewer, None)
    records.sort(key=lambda r: (r.t, r.line))
    return Trace(name, room_id, started, records, list(seen))


def _object(raw: str, name: str, n: int) -> dict[str, Any]:
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise TraceError(f"{name} line {n}: not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise TraceError(f"{name} line {n}: expected a JSON object")
    return value


def _record(obj: Mapping[str, Any], name: str, n: int) -> Record:
    where = f"{name} line {n}"
    unknown = sorted(set(obj) - {"t", "actor", "viewer", "action", "data", "id"})
    if unknown:
        raise TraceError(f"{where}: unknown key(s) {', '.join(unknown)}")
    t = obj.get("t")
    if isinstance(t, bool) or not isinstance(t, int | float) or t < 0:
        raise TraceError(f"{where}: t: expected milliseconds >= 0, got {t!r}")
    actor = obj.get("actor")
    action = obj.get("action")
    data = obj.get("data", {})
    if not isinstance(data, dict):
        raise TraceError(f"{where}: data: expected an object, got {data!r}")
    viewer = ""
    if actor == "host":
        if action not in HOST_ACTIONS:
            raise TraceError(f"{where}: action: {action!r} is not a host action "
                             f"({', '.join(sorted(HOST_ACTIONS))})")
        if "viewer" in obj:
            raise TraceError(f"{where}: viewer: host records have no viewer")
    elif actor == "viewer":
        if action not in VIEWER_ACTIONS:
            raise TraceError(f"{where}: action: {action!r} is not a viewer action "
                             f"({', '.join(sorted(VIEWER_ACTIONS))})")
        viewer = obj.get("viewer")  # type: ignore[assignment]
        if not isinstance(viewer, str) or not viewer:
            raise TraceError(f"{where}: viewer: expected a pseudonymous id, got {viewer!r}")
    else:
        raise TraceError(f"{where}: actor: expected 'host' or 'viewer', got {actor!r}")
    for key in REQUIRED.get(str(action), ()):
        if not isinstance(data.get(key), str) or not data[key]:
            raise TraceError(f"{where}: data.{key}: required string for {action}")
    created = obj.get("id", "")
    if not isinstance(created, str):
        raise TraceError(f"{where}: id: expected a string, got {created!r}")
    return Record(n, float(t), str(actor), viewer, str(action), dict(data), created)


def load_trace(path: Path) -> Trace:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise TraceError(f"trace {path} cannot be read: {exc}") from None
    return parse_trace(text, path.name)


# ------------------------------------------------------------------ replay plan


@dataclass(frozen=True, slots=True)
class HostStep:
    t_ms: float
    action: str
    data: dict[str, Any]
    creates: tuple[str, str] | None  # (kind, original id) of what this step makes
    line: int


@dataclass(slots=True)
class ReplayPlan:
    host: list[HostStep]
    viewers: list[TraceStep]
    viewer_count: int
    duration_ms: float
    implicit_products: list[str] = field(default_factory=list)  # referenced, never created
    unresolved: list[str] = field(default_factory=list)  # ids no created object matched


def bind_ids(trace: Trace) -> tuple[dict[int, tuple[str, str]], list[str], list[str]]:
    """Which created object each referenced recorded id stands for.

    Returns (creating line -> (kind, original id)), product ids referenced but
    never created, and ids of other kinds that match nothing."""
    created: dict[str, list[tuple[float, int]]] = {"product": [], "sale": [], "coupon": [],
                                                   "lottery": []}
    explicit: dict[tuple[str, str], int] = {}
    identity_products: set[str] = set()
    for r in trace.records:
        if r.actor != "host":
            continue
        kind = CREATES.get(r.action)
        if r.action == "product":
            if isinstance(r.data.get("product_id"), str):
                identity_products.add(r.data["product_id"])
                continue
            kind = "product"
        if kind is None:
            continue
        created[kind].append((r.t, r.line))
        if r.created_id:
            explicit[(kind, r.created_id)] = r.line
    line_binding: dict[int, tuple[str, str]] = {line: key for key, line in explicit.items()}
    bound_lines = set(line_binding)
    known: set[tuple[str, str]] = set(explicit)
    implicit: list[str] = []
    unresolved: list[str] = []
    for r in trace.records:
        for kind, key in REFERENCES.get(r.action, ()):
            original = r.data.get(key)
            if not isinstance(original, str) or not original or (kind, original) in known:
                continue
            if kind == "product" and original in identity_products:
                continue
            known.add((kind, original))
            before = [line for t, line in created[kind] if t <= r.t and line not in bound_lines]
            after = [line for t, line in created[kind] if t > r.t and line not in bound_lines]
            line = before[-1] if before else after[0] if after else None
            if line is None:
                if kind == "product":
                    implicit.append(original)
                else:
                    unresolved.append(f"{kind} {original}")
                continue
            bound_lines.add(line)
            line_binding[line] = (kind, original)
    return line_binding, implicit, unresolved


def scale_viewers(recorded: list[str], count: int, seed: int) -> dict[str, list[int]]:
    """Synthetic viewer indices for each recorded viewer: `count` in all."""
    if not recorded:
        return {}
    if count <= len(recorded):
        kept = sorted(random.Random(seed).sample(range(len(recorded)), count))
        return {recorded[i]: [n] for n, i in enumerate(kept)}
    out: dict[str, list[int]] = {}
    base, extra = divmod(count, len(recorded))
    index = 0
    for n, vid in enumerate(recorded):
        k = base + (1 if n < extra else 0)
        out[vid] = list(range(index, index + k))
        index += k
    return out


def replay_plan(trace: Trace, viewers: int | None, speed: float, seed: int) -> ReplayPlan:
    """Host steps and per-synthetic-viewer steps, times divided by `speed`."""
    count = viewers if viewers is not None else len(trace.viewers)
    binding, implicit, unresolved = bind_ids(trace)
    mapping = scale_viewers(trace.viewers, count, seed)
    host: list[HostStep] = []
    steps: list[TraceStep] = []
    for r in trace.records:
        t = r.t / speed
        if r.actor == "host":
            host.append(HostStep(t, r.action, r.data, binding.get(r.line), r.line))
            continue
        data = {k: v for k, v in r.data.items() if k != "type"}
        for index in mapping.get(r.viewer, []):
            steps.append(TraceStep(t, index, r.action, data))
    return ReplayPlan(host, steps, sum(len(v) for v in mapping.values()),
                      trace.duration_ms / speed, implicit, unresolved)
