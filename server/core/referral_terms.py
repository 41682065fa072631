"""Referral invites, pure: the host's program (what a reward is, how many an
inviter may earn), and invite tokens: `base64url(payload).base64url(HMAC)`,
signed with a key derived from the server's secret, naming the room, the
inviter and a keyed tag of the inviter's network address (so a guest on the
same address can be told apart from a friend without the address itself
appearing in a link)."""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from typing import Any, Final

import orjson

from server.core.domain import CouponDrop, coupon_shape, parse_coupon
from server.core.protocol import INVITE_PATTERN
from server.core.schema import Field, Int, Obj, Shape, Str, Variants, req

MAX_POINTS: Final = 100_000
MAX_REWARDS: Final = 1000
# The program's coupon template is a drop's body without its count (each reward is a
# drop of one).
COUPON_TEMPLATE: Final = Shape("reward.coupon", {
    name: f for name, f in coupon_shape(1).fields.items() if name != "count"},
    doc="A coupon drop's fields without its count: each reward is a drop of one, its "
    "expiry counted from when it is paid.", rules=coupon_shape(1).rules)
PROGRAM_SHAPE: Final = Shape("referrals", {
    "reward": req(Variants("kind", {
        "points": Shape("reward", {"kind": req(Str(10, choices=("points",))),
                                   "points": req(Int(1, MAX_POINTS))}),
        "coupon": Shape("reward", {"kind": req(Str(10, choices=("coupon",))),
                                   "coupon": req(Obj(COUPON_TEMPLATE))}),
    }), "what an inviter earns for each invitee's first order"),
    "max_rewards_per_inviter": Field(Int(1, MAX_REWARDS), default=5),
})


@dataclass(frozen=True, slots=True)
class Program:
    kind: str  # 'points' or 'coupon'
    points: int
    coupon: dict[str, Any]  # the drop's body without its count ('coupon')
    max_rewards_per_inviter: int

    def public(self) -> dict[str, Any]:
        reward: dict[str, Any] = {"kind": self.kind}
        if self.kind == "points":
            reward["points"] = self.points
        else:
            reward["coupon"] = self.coupon
        return {"reward": reward, "max_rewards_per_inviter": self.max_rewards_per_inviter}

    def coupon_for(self, inviter: str, now: int) -> CouponDrop:
        """A drop of one, reserved for the inviter."""
        drop = parse_coupon(self.coupon | {"count": 1}, now, 1)
        return CouponDrop(**(drop.public() | {"reserved_for": inviter}))


def parse_program(body: Any) -> Program:
    v = PROGRAM_SHAPE.read(body)
    most, reward = v["max_rewards_per_inviter"], v["reward"]
    if reward["kind"] == "points":
        return Program("points", reward["points"], {}, most)
    coupon = reward["coupon"]
    # Checked as a drop would be (a percent's bound); its expiry counts from when
    # each reward is paid.
    parse_coupon(coupon | {"count": 1}, 0, 1)
    return Program("coupon", 0, dict(coupon), most)


def program_from_stored(data: dict[str, Any]) -> Program:
    return parse_program(data)


# ---------------------------------------------------------------------- tokens


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True, slots=True)
class Invitation:
    room_id: str
    inviter: str
    nickname: str
    address_tag: str


class InviteSigner:
    def __init__(self, secret: bytes) -> None:
        # Its own key: an invite can never pass as a viewer token, nor the reverse.
        self._key = hmac.new(secret, b"livesell invite links v1", hashlib.sha256).digest()

    def address_tag(self, client: str) -> str:
        return _b64(hmac.new(self._key, b"addr:" + client.encode(), hashlib.sha256)
                    .digest()[:9])

    def _sign(self, payload: str) -> str:
        return _b64(hmac.new(self._key, payload.encode("ascii"), hashlib.sha256).digest()[:18])

    def issue(self, room_id: str, inviter: str, nickname: str, client: str) -> str:
        payload = _b64(orjson.dumps({"r": room_id, "i": inviter, "n": nickname,
                                     "a": self.address_tag(client)}))
        return f"{payload}.{self._sign(payload)}"

    def verify(self, token: str) -> Invitation | None:
        if not INVITE_PATTERN.fullmatch(token):
            return None
        payload, _, signature = token.partition(".")
        if not hmac.compare_digest(self._sign(payload), signature):
            return None
        try:
            data = orjson.loads(_unb64(payload))
        except (ValueError, orjson.JSONDecodeError):
            return None
        if not isinstance(data, dict) or not all(isinstance(data.get(k), str)
                                                 for k in ("r", "i", "n", "a")):
            return None
        return Invitation(data["r"], data["i"], data["n"], data["a"])
