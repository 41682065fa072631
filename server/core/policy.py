"""Room policy: the rules a host sets for who may do what in the room.

- `require_verified`: buying, checkout, coupons and lotteries need a shop-signed
  identity (server/core/shop_identity.py); guests may still watch, chat and like.
- `limit_per_ip`: a sale's per-buyer limit also counts per client address, so
  many guest identities from one address share one buyer's allowance.
- `slow_mode_s`: each viewer may send one chat message every N seconds (0: off);
  the host is never limited.

The policy is durable in the order store (room_policies) and mirrored in the
room's Redis hash `policy`, which the Lua scripts read. Pure: parsing and the
Redis hash form.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any, Final

from server.core.schema import Bool, Int, Shape, opt

MAX_SLOW_MODE_S: Final = 3600
FIELDS: Final = frozenset({"require_verified", "limit_per_ip", "slow_mode_s"})
PATCH_SHAPE: Final = Shape("policy", {
    "require_verified": opt(Bool(), doc="buying needs a shop-signed identity"),
    "limit_per_ip": opt(Bool(), doc="per-buyer limits also count per client address"),
    "slow_mode_s": opt(Int(0, MAX_SLOW_MODE_S), doc="seconds between a viewer's chat "
                       "messages (0: off)"),
}, doc="The fields to change.",
    non_empty="policy: name at least one of " + ", ".join(sorted(FIELDS)))


@dataclass(frozen=True, slots=True)
class RoomPolicy:
    require_verified: bool = False
    limit_per_ip: bool = False
    slow_mode_s: int = 0

    def public(self) -> dict[str, Any]:
        return asdict(self)

    def redis_hash(self) -> dict[str, str | int]:
        """The form the Lua scripts read: flags as '1'/'0'."""
        return {"require_verified": "1" if self.require_verified else "0",
                "limit_per_ip": "1" if self.limit_per_ip else "0",
                "slow_mode_s": self.slow_mode_s}


def apply_patch(current: RoomPolicy, body: Mapping[str, Any]) -> RoomPolicy:
    """The policy with the fields `body` names changed; every field is checked."""
    return replace(current, **PATCH_SHAPE.read(body))


def from_stored(data: Mapping[str, Any] | None) -> RoomPolicy:
    """The policy from the store's JSON (None: the defaults)."""
    if not data:
        return RoomPolicy()
    return RoomPolicy(bool(data.get("require_verified")), bool(data.get("limit_per_ip")),
                      int(data.get("slow_mode_s") or 0))


def from_redis(data: Mapping[str, str]) -> RoomPolicy:
    """The policy from the room's Redis hash (empty: the defaults)."""
    return RoomPolicy(data.get("require_verified") == "1", data.get("limit_per_ip") == "1",
                      int(data.get("slow_mode_s") or 0))
