"""What the parent and a generator process send each other: the plan a
process starts with (`WorkerPlan`, with a `TraceStep` per viewer action of a
replayed trace) and everything it reports at the end (`WorkerResult`).

Plain picklable dataclasses; the commands and progress in between are tuples
(loadtest/pool.py sends and reads them, loadtest/worker.py answers).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from loadtest.model import (
    AuctionEvent,
    BidRecord,
    Claim,
    Entry,
    GroupAnswer,
    GroupCheckout,
    HoldRecord,
    OrderAck,
    ReferralAnswer,
    ReferralEvent,
    SocialEvent,
    ViewerRecord,
    VoteRecord,
    WaitlistEvent,
    WaitlistJoin,
)
from loadtest.scenario import Scenario


@dataclass(frozen=True, slots=True)
class TraceStep:
    """One viewer action of a replayed trace, for one synthetic viewer."""

    t_ms: float  # since the replay started, already divided by the speed
    viewer: int  # the synthetic viewer's index
    action: str
    data: dict[str, Any]


@dataclass(slots=True)
class WorkerPlan:
    worker_id: int
    host: str
    port: int
    room_id: str
    indices: list[int]
    sampled: set[int]
    scenario: Scenario
    abandon: str  # "expire" or "release"
    cpus: list[int] | None = None
    workers: int = 1  # generator processes in the run (each joins its share of the rate)
    latency_cap: int = 200_000
    steps: list[TraceStep] | None = None  # trace replay: what each viewer does
    # Chaos runs: keep every buy and checkout answer with its times, and retry a
    # transient error (unavailable, timeout, ...) for this long instead of a few
    # times, as a client told "try again" would, so buys go on through a fault and
    # show when the server recovered.
    record_answers: bool = False
    retry_for_s: float = 0.0


@dataclass(slots=True)
class WorkerResult:
    worker_id: int
    viewers: list[ViewerRecord] = field(default_factory=list)
    holds: list[HoldRecord] = field(default_factory=list)
    acks: list[OrderAck] = field(default_factory=list)
    claims: list[Claim] = field(default_factory=list)
    entries: list[Entry] = field(default_factory=list)
    waitlist_joins: list[WaitlistJoin] = field(default_factory=list)
    waitlist_events: list[WaitlistEvent] = field(default_factory=list)  # one per seq
    bids: list[BidRecord] = field(default_factory=list)
    auction_events: list[AuctionEvent] = field(default_factory=list)  # per seq and content
    group_answers: list[GroupAnswer] = field(default_factory=list)
    group_checkouts: list[GroupCheckout] = field(default_factory=list)
    votes: list[VoteRecord] = field(default_factory=list)
    social_events: list[SocialEvent] = field(default_factory=list)  # per seq and content
    referral_answers: list[ReferralAnswer] = field(default_factory=list)
    referral_events: list[ReferralEvent] = field(default_factory=list)  # per seq and content
    latency_ms: list[float] = field(default_factory=list)
    latency_seen: int = 0
    buy_ms: list[float] = field(default_factory=list)
    # Wall time (epoch s) of the latest buy reply: where a sale's burst ends, which
    # the opening plus the slowest latency says only if every buyer sent at once.
    last_buy_reply_at: float = 0.0
    checkout_ms: list[float] = field(default_factory=list)
    outcomes: dict[str, dict[str, int]] = field(default_factory=dict)
    join_ms: list[float] = field(default_factory=list)
    join_failures: list[str] = field(default_factory=list)
    frames: int = 0
    applied: int = 0
    cpu_s: float = 0.0
    wall_s: float = 0.0
    saturated_s: int = 0
    peak_util: float = 0.0
    util_timeline: list[tuple[float, float]] = field(default_factory=list)
    abandoned_to_expire: int = 0
    released: int = 0
    trace_skipped: dict[str, int] = field(default_factory=dict)
    # (sent, answered: epoch seconds; "buy" or "checkout"; "hold", "order_placed" or
    # the error code), with record_answers
    answers: list[tuple[float, float, str, str]] = field(default_factory=list)
    # "ExceptionType: message" of a viewer's task that failed -> how often
    task_errors: dict[str, int] = field(default_factory=dict)
