"""Settings: one frozen object holding every limit, timeout and path.

Values come from `config/default.toml` (bundled defaults), then an optional
`--config FILE`, then `LIVESELL_<SECTION>_<KEY>` environment variables, then
explicit CLI overrides. Every value is checked for type and range (by the typed
TOML tables of server/core/tomlconfig.py); a bad one raises `SettingsError` naming
the key. Pure: reads files only when asked.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import itertools
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from server.core import gcpolicy
from server.core.netrules import (
    MEDIA_SOURCE_PATTERN,
    REFERRER_POLICIES,
    parse_networks,
    parse_origin_list,
)
from server.core.protocol import MAX_LEVELS
from server.core.tomlconfig import check_section, meta, section_table

DEFAULT_CONFIG_PATH = Path(__file__).resolve().parents[2] / "config" / "default.toml"


class SettingsError(ValueError):
    """A configuration value is missing, unknown, of the wrong type or out of range."""


def _range(lo: float | None = None, hi: float | None = None) -> dict[str, Any]:
    return meta(lo, hi)


@dataclass(frozen=True, slots=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = field(default=8000, metadata=_range(0, 65535))
    workers: int = field(default=1, metadata=_range(1, 64))
    data_dir: str = "./livesell-data"
    max_body_bytes: int = field(default=65536, metadata=_range(1024, 16 * 1024 * 1024))
    admin_key: str = ""
    log_level: str = "info"
    # "text" (a line for people) or "json" (one object per line, for log shippers).
    log_format: str = field(default="text", metadata=meta(choices=("text", "json")))
    shutdown_grace_s: float = field(default=5.0, metadata=_range(0.0, 120.0))
    # A scheduled show's reminder (the `show_reminder` event, for the shop's own
    # channels) goes out this many seconds before its start; 0: none.
    reminder_lead_s: int = field(default=300, metadata=_range(0, 86400))
    gc_young_threshold: int = field(default=gcpolicy.DEFAULT_YOUNG_THRESHOLD,
                                    metadata=_range(0, 10_000_000))
    # The HTTP edge (server/realtime/edges.py): request line plus headers, the time to
    # send them, the idle time between keep-alive requests, and open
    # connections per client address (0: no cap) unless it is in the space-
    # separated addresses/networks of connection_cap_exempt.
    max_header_bytes: int = field(default=16384, metadata=_range(8192, 65536))
    header_timeout_s: float = field(default=10.0, metadata=_range(0.5, 600.0))
    keep_alive_timeout_s: float = field(default=5.0, metadata=_range(0.5, 600.0))
    max_connections_per_ip: int = field(default=256, metadata=_range(0, 1_000_000))
    connection_cap_exempt: str = "127.0.0.0/8 ::1"
    # Peers whose X-Forwarded-For / X-Forwarded-Proto uvicorn believes (comma-
    # separated addresses or networks, "*" for any): the per-address limits of the
    # app (guest identities, limit_per_ip) then count the real client.
    forwarded_allow_ips: str = "127.0.0.1"


@dataclass(frozen=True, slots=True)
class RedisSettings:
    url: str = ""
    # The Redis at `url` is a Redis Cluster (7 or newer): a start-up node of it.
    cluster: bool = False
    binary: str = ""
    port: int = field(default=0, metadata=_range(0, 65535))
    appendonly: bool = True
    start_timeout_s: float = field(default=10.0, metadata=_range(0.5, 120.0))
    restart_attempts: int = field(default=10, metadata=_range(1, 1000))
    restart_backoff_max_s: float = field(default=5.0, metadata=_range(0.1, 300.0))
    max_connections: int = field(default=64, metadata=_range(4, 10000))
    pool_timeout_s: float = field(default=20.0, metadata=_range(0.1, 300.0))
    # The embedded redis-server's memory bound (its maxmemory, with an eviction
    # policy that only ever evicts keys with a TTL: server/state/redis_supervisor.py).
    maxmemory_mb: int = field(default=512, metadata=_range(16, 1024 * 1024))


@dataclass(frozen=True, slots=True)
class StoreSettings:
    path: str = ""
    # Empty: the SQLite file at `path`. A postgresql:// (or postgres://) URL: that
    # PostgreSQL database instead (server/state/pg_store.py).
    url: str = ""
    # PostgreSQL only: connections a process opens for reads, beside its writer's.
    pool_size: int = field(default=4, metadata=_range(1, 100))
    batch_max: int = field(default=500, metadata=_range(1, 10000))
    # A checkout left 'confirming' this long by a process that died or stalled is
    # decided by recovery (an abort row in the store unless the order is there).
    recover_after_s: float = field(default=30.0, metadata=_range(0.5, 3600.0))
    # Milliseconds a write waits for another process's lock on the SQLite file
    # before it fails (and the buyer is told to try again, hold kept).
    busy_timeout_ms: int = field(default=5000, metadata=_range(10, 600_000))


@dataclass(frozen=True, slots=True)
class SaleSettings:
    hold_seconds: float = field(default=180.0, metadata=_range(1.0, 86400.0))
    max_quantity_per_buy: int = field(default=10, metadata=_range(1, 1000))
    max_pins: int = field(default=3, metadata=_range(1, 10))
    max_products_per_room: int = field(default=500, metadata=_range(1, 100000))
    countdown_from_s: int = field(default=10, metadata=_range(0, 3600))
    # Only accepted buys, claims and entries are remembered (refusals are decided
    # afresh), for long enough to cover a reconnect and a hold's lifetime
    # (checked against hold_seconds in load_settings).
    request_id_ttl_s: int = field(default=600, metadata=_range(60, 86400))
    max_coupons_per_drop: int = field(default=100000, metadata=_range(1, 10_000_000))
    max_lottery_winners: int = field(default=1000, metadata=_range(1, 100000))
    # Holds one viewer may have open (held or in checkout) across a room's sales:
    # one identity cannot sit on a room's stock (reserve.lua, `too_many_holds`).
    max_holds_per_viewer: int = field(default=5, metadata=_range(1, 1000))
    # A product bought at its list price (buy-it-now): units per buyer unless the
    # host sets the product's own limit.
    listing_limit_per_buyer: int = field(default=5, metadata=_range(1, 1_000_000))
    # Waitlists (features/waitlist.py): how long a unit offered to the head of a
    # waitlist is held for them, how long a viewer who left the room keeps their
    # place, and how many may wait for one product.
    waitlist_offer_s: float = field(default=60.0, metadata=_range(5.0, 3600.0))
    waitlist_keep_place_s: float = field(default=300.0, metadata=_range(0.0, 86400.0))
    max_waitlist: int = field(default=10000, metadata=_range(1, 1_000_000))
    # Auctions in `extend` mode: a bid this close to the end moves it this far on,
    # unless the host's start request sets its own extend_s.
    auction_extend_s: int = field(default=10, metadata=_range(1, 300))


@dataclass(frozen=True, slots=True)
class HubSettings:
    max_frame_bytes: int = field(default=16384, metadata=_range(128, 16 * 1024 * 1024))
    client_buffer_bytes: int = field(default=262144, metadata=_range(4096, 64 * 1024 * 1024))
    behind_timeout_s: float = field(default=10.0, metadata=_range(0.1, 600.0))
    log_size: int = field(default=2000, metadata=_range(10, 1_000_000))
    stock_updates_per_s: float = field(default=10.0, metadata=_range(0.1, 100.0))
    coalesced_deliveries_per_s: int = field(default=30000, metadata=_range(100, 10_000_000))
    like_updates_per_s: float = field(default=4.0, metadata=_range(0.1, 100.0))
    viewer_updates_per_s: float = field(default=1.0, metadata=_range(0.1, 100.0))
    ping_interval_s: float = field(default=20.0, metadata=_range(0.0, 3600.0))
    messages_per_s: float = field(default=20.0, metadata=_range(1.0, 10000.0))
    message_burst: int = field(default=40, metadata=_range(1, 100000))
    # Requests (buy, checkout, ...) one connection may have in flight at once.
    max_inflight_requests: int = field(default=16, metadata=_range(1, 1000))
    # Rejected frames (malformed or over the rate) a connection may send: an
    # allowance refilling at one per second; past it the connection is closed (1008).
    max_rejected_frames: int = field(default=50, metadata=_range(1, 100000))
    # A viewer's `resync` builds at most one snapshot per this many seconds (0: no
    # limit); more are coalesced into one sent when the interval is up.
    resync_interval_s: float = field(default=2.0, metadata=_range(0.0, 60.0))


@dataclass(frozen=True, slots=True)
class ChatSettings:
    max_length: int = field(default=200, metadata=_range(1, 5000))
    messages_per_s: float = field(default=1.0, metadata=_range(0.01, 1000.0))
    burst: int = field(default=5, metadata=_range(1, 10000))
    nickname_max_length: int = field(default=32, metadata=_range(1, 200))
    max_likes_per_frame: int = field(default=50, metadata=_range(1, 100000))
    # Chat messages per second a whole room accepts (a token bucket in Redis shared
    # by every process, burst one second's worth); 0: no room-wide cap. The host's
    # messages are never limited by it.
    room_messages_per_s: float = field(default=20.0, metadata=_range(0.0, 100000.0))
    # Chat messages a snapshot carries (the room's recent chat, for late joiners).
    history_size: int = field(default=50, metadata=_range(0, 500))
    # Unanswered questions (Q&A) one viewer may have in a room at once.
    max_open_questions: int = field(default=3, metadata=_range(1, 100))
    # Questions a room keeps, answered ones included (further ones: questions_full).
    max_questions_per_room: int = field(default=1000, metadata=_range(10, 100000))


@dataclass(frozen=True, slots=True)
class FansSettings:
    """Fan points and levels (server/features/fans.py, docs/protocol.md section 19)."""

    enabled: bool = True
    # Points needed for levels 1, 2, ...: increasing positive integers, space-separated.
    levels: str = "10 50 200 500 1500"
    # A badge name per level, as many as `levels`.
    badges: tuple[str, ...] = ("Fan", "Regular", "Super fan", "VIP", "Legend")
    watch_points: int = field(default=1, metadata=_range(0, 10000))
    chat_points: int = field(default=1, metadata=_range(0, 10000))
    like_points: int = field(default=1, metadata=_range(0, 10000))
    share_points: int = field(default=5, metadata=_range(0, 10000))
    order_points: int = field(default=10, metadata=_range(0, 1_000_000))
    # Points a viewer may earn a minute in a channel from watching, chat, likes and
    # shares together (orders are not capped).
    cap_per_minute: int = field(default=10, metadata=_range(1, 1_000_000))

    @property
    def thresholds(self) -> tuple[int, ...]:
        return tuple(int(v) for v in self.levels.split())


MAX_BADGE = 24


@dataclass(frozen=True, slots=True)
class WebhookSettings:
    """Webhook delivery from the order store's outbox (server/features/webhooks.py)."""

    # Seconds one delivery may take (connect, send, answer).
    timeout_s: float = field(default=10.0, metadata=_range(0.5, 120.0))
    # The first retry waits this long; each next one twice as long, at most max_retry_s.
    first_retry_s: float = field(default=5.0, metadata=_range(0.05, 3600.0))
    max_retry_s: float = field(default=3600.0, metadata=_range(0.1, 86400.0))
    # A message not delivered this long after it was written goes to the dead letters
    # (replay brings it back).
    give_up_after_s: float = field(default=86400.0, metadata=_range(1.0, 30 * 86400.0))
    # Endpoints delivered to at once by one process (each endpoint in order).
    concurrency: int = field(default=8, metadata=_range(1, 256))
    # Let room hosts register endpoints on private, loopback or link-local addresses
    # (the admin's server-wide endpoints may always).
    allow_private_targets: bool = False
    max_endpoints_per_room: int = field(default=10, metadata=_range(1, 1000))


@dataclass(frozen=True, slots=True)
class AuthSettings:
    secret: str = ""
    token_ttl_s: int = field(default=30 * 86400, metadata=_range(60, 365 * 86400))
    # Shop-signed viewer identities (docs/security.md "Identities"): the HS256 key the
    # shop's site signs its JWTs with, inline or in a file (one of the two), at least
    # 32 bytes. Empty: shop identities are refused and only guests exist.
    shop_key: str = ""
    shop_key_file: str = ""
    # When set, a shop JWT must carry exactly this `iss` / `aud`.
    shop_issuer: str = ""
    shop_audience: str = ""
    # Longest a shop JWT may live: its `exp` at most this many seconds ahead.
    shop_token_max_lifetime_s: int = field(default=86400, metadata=_range(60, 30 * 86400))
    # New guest identities one client address (IPv6: its /64) may get per sliding
    # minute, shared by every process through Redis; 0: unlimited.
    guest_mints_per_ip_per_min: int = field(default=20, metadata=_range(0, 1_000_000))


@dataclass(frozen=True, slots=True)
class RecordSettings:
    enabled: bool = False
    dir: str = ""
    max_bytes: int = field(default=256 * 1024 * 1024, metadata=_range(1024, 64 * 1024**3))


@dataclass(frozen=True, slots=True)
class SecuritySettings:
    # Space-separated origins (https://shop.example) allowed to put the pages in a
    # frame. Empty: none (CSP frame-ancestors 'none' plus X-Frame-Options DENY).
    frame_ancestors: str = ""
    # Space-separated origins, besides the server's own, whose pages may open /ws.
    websocket_origins: str = ""
    # CSP sources the pages may load video (room stream_url) and product images from.
    media_sources: str = "https: http:"
    referrer_policy: str = "same-origin"


@dataclass(frozen=True, slots=True)
class ImageSettings:
    """Product images the host uploads (server/features/images.py), kept in
    data_dir/images/<room>/."""

    # Largest image one upload may carry, bytes (checked on Content-Length and
    # while the body streams in).
    max_bytes: int = field(default=2 * 1024 * 1024, metadata=_range(1024, 64 * 1024 * 1024))
    # Largest image by its header's width x height (a small file may decode huge).
    max_pixels: int = field(default=40_000_000, metadata=_range(1, 1_000_000_000))
    # Distinct images one room may keep (the same bytes again are the same image).
    max_per_room: int = field(default=200, metadata=_range(1, 100_000))
    # How long an upload waits for its room's folder lock (another process writing).
    lock_wait_s: float = field(default=10.0, metadata=_range(0.1, 300.0))


@dataclass(frozen=True, slots=True)
class StreamSettings:
    """Live video a shop's encoder writes as HLS into a folder that livesell serves
    at /streams/ (server/features/streams.py)."""

    # The folder. Empty: data_dir/streams.
    dir: str = ""
    # How long browsers and caches may keep a media segment (.ts, .m4s, .mp4, .aac),
    # seconds; playlists are never kept (they change with every segment).
    segment_max_age_s: int = field(default=3600, metadata=_range(0, 31_536_000))


@dataclass(frozen=True, slots=True)
class Settings:
    server: ServerSettings = field(default_factory=ServerSettings)
    redis: RedisSettings = field(default_factory=RedisSettings)
    store: StoreSettings = field(default_factory=StoreSettings)
    sale: SaleSettings = field(default_factory=SaleSettings)
    hub: HubSettings = field(default_factory=HubSettings)
    chat: ChatSettings = field(default_factory=ChatSettings)
    fans: FansSettings = field(default_factory=FansSettings)
    webhooks: WebhookSettings = field(default_factory=WebhookSettings)
    auth: AuthSettings = field(default_factory=AuthSettings)
    record: RecordSettings = field(default_factory=RecordSettings)
    security: SecuritySettings = field(default_factory=SecuritySettings)
    images: ImageSettings = field(default_factory=ImageSettings)
    streams: StreamSettings = field(default_factory=StreamSettings)

    @property
    def data_path(self) -> Path:
        return Path(self.server.data_dir).expanduser().resolve()

    @property
    def trace_dir(self) -> Path:
        return Path(self.record.dir).expanduser().resolve() if self.record.dir else (
            self.data_path / "traces"
        )

    @property
    def image_dir(self) -> Path:
        return self.data_path / "images"

    @property
    def stream_dir(self) -> Path:
        return Path(self.streams.dir).expanduser().resolve() if self.streams.dir else (
            self.data_path / "streams"
        )

    @property
    def store_path(self) -> Path:
        return Path(self.store.path).expanduser().resolve() if self.store.path else (
            self.data_path / "orders.sqlite3"
        )


SECTIONS: dict[str, type[Any]] = section_table(Settings)


def _apply(
    current: dict[str, dict[str, Any]],
    source: Mapping[str, Any],
    origin: str,
    from_env: bool = False,
) -> None:
    for section, values in source.items():
        if section not in SECTIONS:
            raise SettingsError(f"{origin}: unknown section [{section}]")
        current[section].update(check_section(SECTIONS[section], values, origin, section,
                                              SettingsError, from_env=from_env))


def env_name(section: str, key: str) -> str:
    return f"LIVESELL_{section.upper()}_{key.upper()}"


def load_settings(
    config_file: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    defaults_file: Path | None = DEFAULT_CONFIG_PATH,
) -> Settings:
    """Build the settings from defaults, a config file, the environment and overrides."""
    current: dict[str, dict[str, Any]] = {name: {} for name in SECTIONS}
    for path in (defaults_file, config_file):
        if path is None:
            continue
        p = Path(path)
        if path is defaults_file and not p.exists():
            # Installed without the repo's config/ directory: the dataclass
            # defaults are the same values (a test keeps them in step).
            continue
        try:
            data = tomllib.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise SettingsError(f"config file {p} does not exist") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise SettingsError(f"config file {p} cannot be read: {exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(f"config file {p} is not valid TOML: {exc}") from None
        _apply(current, data, str(p))
    environ = os.environ if env is None else env
    from_env: dict[str, dict[str, Any]] = {}
    for section, cls in SECTIONS.items():
        for f in dataclasses.fields(cls):
            name = env_name(section, f.name)
            if name in environ:
                from_env.setdefault(section, {})[f.name] = environ[name]
    _apply(current, from_env, "environment", from_env=True)
    if overrides:
        _apply(current, overrides, "command line")
    built = {name: SECTIONS[name](**values) for name, values in current.items()}
    settings = Settings(**built)
    if settings.server.log_level not in ("critical", "error", "warning", "info", "debug"):
        raise SettingsError(
            f"server.log_level: {settings.server.log_level!r} is not one of "
            "critical, error, warning, info, debug"
        )
    if settings.redis.url and not settings.redis.url.startswith(("redis://", "rediss://", "unix://")):
        raise SettingsError(
            f"redis.url: {settings.redis.url!r} must start with redis://, rediss:// or unix://"
        )
    if settings.redis.cluster and not settings.redis.url.startswith(("redis://", "rediss://")):
        raise SettingsError(
            "redis.cluster: needs redis.url, a redis:// or rediss:// address of one node "
            "of the cluster (the embedded redis-server is a single node)"
        )
    _check_store_url(settings.store.url)
    if settings.sale.request_id_ttl_s < settings.sale.hold_seconds:
        # A retried buy must find its hold's answer for as long as the hold lives.
        raise SettingsError(
            f"sale.request_id_ttl_s: {settings.sale.request_id_ttl_s} is below "
            f"sale.hold_seconds ({settings.sale.hold_seconds:g}); a retried buy must get "
            "its hold back while the hold lives"
        )
    _check_security(settings.security)
    _check_auth(settings.auth)
    _check_fans(settings.fans)
    try:
        _networks(settings.server.connection_cap_exempt)
    except ValueError as exc:
        raise SettingsError(f"server.connection_cap_exempt: {exc}") from None
    for entry in settings.server.forwarded_allow_ips.split(","):
        entry = entry.strip()
        try:
            if entry not in ("*", ""):
                ipaddress.ip_network(entry, strict=False)
        except ValueError:
            raise SettingsError(f"server.forwarded_allow_ips: {entry!r} is not an address, "
                                "a network or '*'") from None
    return settings


STORE_URL_SCHEMES = ("postgresql://", "postgres://")


def _check_store_url(url: str) -> None:
    """Empty (SQLite) or a PostgreSQL URL with a host part. The URL is never repeated
    in the message: it may hold a password."""
    if not url:
        return
    if not url.startswith(STORE_URL_SCHEMES):
        scheme = url.split("://", 1)[0] + "://" if "://" in url else "no scheme"
        raise SettingsError(
            f"store.url: must be empty (the SQLite file at store.path) or a "
            f"postgresql:// URL (postgresql://user:password@host:port/database), "
            f"not {scheme}")
    if any(c.isspace() for c in url):
        raise SettingsError("store.url: a URL has no spaces (percent-encode them)")
    rest = url.split("://", 1)[1]
    authority = rest.split("/", 1)[0].split("?", 1)[0]
    hostport = authority.rpartition("@")[2]
    port = hostport.rpartition("]")[2].partition(":")[2] if hostport.startswith("[") \
        else hostport.partition(":")[2]
    if port and not all(p.isdigit() and 0 < int(p) < 65536 for p in port.split(",")):
        raise SettingsError("store.url: the port must be a number in 1..65535")


MIN_SHOP_KEY_BYTES = 32  # RFC 7518 3.2: an HS256 key at least as long as the hash


def _check_auth(auth: AuthSettings) -> None:
    if auth.shop_key and auth.shop_key_file:
        raise SettingsError("auth.shop_key and auth.shop_key_file: set one of them, not both")
    if auth.shop_key and len(auth.shop_key.encode()) < MIN_SHOP_KEY_BYTES:
        raise SettingsError(f"auth.shop_key: must be at least {MIN_SHOP_KEY_BYTES} bytes "
                            "(HS256 needs a key as long as its hash)")


def _check_fans(fans: FansSettings) -> None:
    words = fans.levels.split()
    if not 1 <= len(words) <= MAX_LEVELS or not all(w.isascii() and w.isdigit()
                                                    for w in words):
        raise SettingsError(f"fans.levels: 1 to {MAX_LEVELS} positive integers separated by "
                            f"spaces, got {fans.levels!r}")
    points = [int(w) for w in words]
    if points[0] < 1 or any(b <= a for a, b in itertools.pairwise(points)) \
            or points[-1] > 10**12:
        raise SettingsError("fans.levels: each level must need more points than the one "
                            "before, the first at least 1, the last at most 10^12: "
                            f"{fans.levels!r}")
    if len(fans.badges) != len(points):
        raise SettingsError(f"fans.badges: one name per level: {len(points)} levels, "
                            f"{len(fans.badges)} badges")
    for badge in fans.badges:
        if not 1 <= len(badge) <= MAX_BADGE or not badge.isprintable() or \
                any(c in badge for c in "<>&\"'"):
            raise SettingsError(f"fans.badges: {badge!r} must be 1..{MAX_BADGE} printable "
                                "characters without < > & \" '")


def _networks(text: str) -> None:
    parse_networks(text)


def _check_security(sec: SecuritySettings) -> None:
    for key in ("frame_ancestors", "websocket_origins"):
        try:
            parse_origin_list(getattr(sec, key))
        except ValueError as exc:
            raise SettingsError(f"security.{key}: {exc}") from None
    for source in sec.media_sources.split():
        if not MEDIA_SOURCE_PATTERN.fullmatch(source):
            raise SettingsError(
                f"security.media_sources: {source!r} is not a scheme (https:), 'self' "
                "or an origin (https://cdn.example)")
    if sec.referrer_policy not in REFERRER_POLICIES:
        raise SettingsError(
            f"security.referrer_policy: {sec.referrer_policy!r} is not one of "
            + ", ".join(sorted(REFERRER_POLICIES)))

