"""Due jobs: what a feature asks the pulse to run at a time.

A job is (kind, room, item, due time). It is stored as the member
`kind:item` of the room's timer set, scored by its due time
(server/state/schedule.py); the pulse claims it when due and hands it to the
handler its feature registered for `kind` (server/features/registry.py).
Building and reading the member happen here only."""

from __future__ import annotations

from typing import NamedTuple


class Job(NamedTuple):
    kind: str
    item: str

    @property
    def member(self) -> str:
        return f"{self.kind}:{self.item}"

    @classmethod
    def parse(cls, member: str) -> Job:
        kind, _, item = member.partition(":")
        return cls(kind, item)
