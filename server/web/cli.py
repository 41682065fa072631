"""The `livesell` command: `serve` runs the server, `verify-lottery` recomputes a
drawn lottery from its published record, `verify-auction` checks an ended
auction's bid chain (server/core/auction_chain.py), `webhooks verify` checks a
received webhook's signature (server/core/webhooks.py)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from server import __version__
from server.core import webhooks
from server.core.settings import STORE_URL_SCHEMES, Settings, SettingsError, load_settings
from server.web.serving import serve

log = logging.getLogger("livesell")


def _int_in(lo: int, hi: int, what: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"{value} is not {what} ({lo}..{hi})")
        return value

    return parse


def _store(text: str) -> tuple[str, str]:
    """--store: ("url", a postgresql:// URL) or ("path", a SQLite file's path)."""
    if text.startswith(STORE_URL_SCHEMES):
        return "url", text
    if "://" in text:
        # Never echo it: a URL may carry a password.
        raise argparse.ArgumentTypeError(
            f"{text.split('://', 1)[0]}:// is not a store: give a SQLite file's path or a "
            "postgresql:// URL")
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty path")
    return "path", text


_port = _int_in(0, 65535, "a port")
_workers = _int_in(1, 64, "a worker count")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="livesell", description=__doc__)
    parser.add_argument("--version", action="version", version=f"livesell {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the server (embedded Redis and SQLite by default)")
    serve.add_argument("--config", metavar="FILE", help="TOML file overriding config/default.toml")
    serve.add_argument("--host", help="address to listen on (server.host)")
    serve.add_argument("--port", type=_port, help="port, 0 for a free one (server.port)")
    serve.add_argument("--data-dir", help="data directory (server.data_dir)")
    serve.add_argument("--redis-url", help="external Redis instead of the embedded one "
                       "(redis.url; also LIVESELL_REDIS_URL, which keeps a password in "
                       "the URL out of the process list)")
    serve.add_argument("--redis-cluster", action="store_true", default=None,
                       help="the Redis at --redis-url is a node of a Redis Cluster (7 or "
                       "newer): route by hash slot (redis.cluster)")
    serve.add_argument("--store", type=_store, metavar="PATH_OR_URL",
                       help="the order store: a SQLite file's path (store.path), or a "
                       "postgresql://user@host:5432/db URL (store.url; also "
                       "LIVESELL_STORE_URL, which keeps a password in the URL out of the "
                       "process list)")
    serve.add_argument("--workers", type=_workers, help="server processes (server.workers)")
    serve.add_argument("--log-level", choices=["critical", "error", "warning", "info", "debug"])
    serve.add_argument("--log-format", choices=["text", "json"],
                       help="json: one object per line, for log shippers (server.log_format)")

    verify = sub.add_parser("verify-lottery",
                            help="recompute a lottery's winners from its published record")
    src = verify.add_mutually_exclusive_group(required=True)
    src.add_argument("--file", help="JSON as returned by GET /api/rooms/{room}/lotteries/{id}")
    src.add_argument("--url", help="the lottery's URL on a livesell server")

    auction = sub.add_parser("verify-auction",
                             help="check an ended auction's bid chain and winner")
    src = auction.add_mutually_exclusive_group(required=True)
    src.add_argument("--file", help="JSON of GET /api/rooms/{room}/auctions/{id}, with the "
                     "chain under \"entries\"")
    src.add_argument("--url", help="the auction's URL on a livesell server "
                     "(.../api/rooms/{room}/auctions/{id}); its chain is fetched from /bids")

    hooks = sub.add_parser("webhooks", help="tools for webhook receivers")
    hook_sub = hooks.add_subparsers(dest="webhooks_command", required=True)
    check = hook_sub.add_parser(
        "verify", help="check a received webhook's signature and timestamp (exit 0: "
        "genuine; 1: not, with the reason)")
    secret = check.add_mutually_exclusive_group(required=True)
    secret.add_argument("--secret-file", type=Path,
                        help="a file holding the endpoint's whsec_ secret")
    secret.add_argument("--secret-env", metavar="NAME",
                        help="an environment variable holding the secret (keeps it out "
                        "of the process list)")
    check.add_argument("--id", required=True, help="the webhook-id header")
    check.add_argument("--timestamp", required=True, help="the webhook-timestamp header")
    check.add_argument("--signature", required=True, help="the webhook-signature header")
    check.add_argument("--body-file", type=Path,
                       help="the raw request body (default: standard input)")
    check.add_argument("--tolerance-s", type=_int_in(0, 10**9, "--tolerance-s"),
                       default=webhooks.DEFAULT_TOLERANCE_S,
                       help="how far the timestamp may be from now (default 300)")
    check.add_argument("--now", type=_int_in(0, 10**12, "--now"),
                       help="check as at this Unix time (seconds) instead of now")
    return parser


def verify_webhook(args: argparse.Namespace) -> int:
    """`livesell webhooks verify`: the Standard Webhooks check a receiver makes."""
    if args.secret_file is not None:
        try:
            secret = args.secret_file.read_text().strip()
        except OSError as exc:
            print(f"livesell: cannot read {args.secret_file}: {exc}", file=sys.stderr)
            return 2
    else:
        secret = os.environ.get(args.secret_env, "").strip()
        if not secret:
            print(f"livesell: the environment variable {args.secret_env} is not set",
                  file=sys.stderr)
            return 2
    try:
        body = args.body_file.read_bytes() if args.body_file else sys.stdin.buffer.read()
    except OSError as exc:
        print(f"livesell: cannot read {args.body_file}: {exc}", file=sys.stderr)
        return 2
    now = args.now if args.now is not None else int(time.time())
    problem = webhooks.verify(secret, args.id, args.timestamp, args.signature, body, now,
                              args.tolerance_s)
    if problem is not None:
        print(f"not genuine: {problem}")
        return 1
    print(f"genuine: {args.id}")
    return 0


def settings_from_args(args: argparse.Namespace) -> Settings:
    server: dict[str, Any] = {}
    for attr, key in (("host", "host"), ("port", "port"), ("data_dir", "data_dir"),
                      ("workers", "workers"), ("log_level", "log_level"),
                      ("log_format", "log_format")):
        value = getattr(args, attr)
        if value is not None:
            server[key] = value
    overrides: dict[str, dict[str, Any]] = {"server": server}
    redis: dict[str, Any] = {}
    if args.redis_url is not None:
        redis["url"] = args.redis_url
    if args.redis_cluster:
        redis["cluster"] = True
    if redis:
        overrides["redis"] = redis
    if args.store is not None:
        kind, value = args.store
        # A path chooses SQLite even where a config file or the environment named a
        # PostgreSQL URL; a URL chooses PostgreSQL.
        overrides["store"] = {"url": value} if kind == "url" else {"url": "", "path": value}
    return load_settings(args.config, overrides=overrides)


def verify_lottery(args: argparse.Namespace) -> int:
    from server.core.domain import verify_lottery as verify

    try:
        if args.file:
            data = json.loads(Path(args.file).read_text(encoding="utf-8"))
        else:
            if not args.url.startswith(("http://", "https://")):
                print("livesell: --url must be an http:// or https:// URL", file=sys.stderr)
                return 2
            with urllib.request.urlopen(args.url, timeout=10) as resp:
                data = json.loads(resp.read())
    except (OSError, ValueError, urllib.error.URLError) as exc:
        print(f"livesell: cannot read the lottery record: {exc}", file=sys.stderr)
        return 2
    if not isinstance(data, dict):
        print("livesell: the lottery record must be a JSON object", file=sys.stderr)
        return 2
    result = data.get("result")
    if not isinstance(result, dict):
        print("livesell: the lottery has not been drawn yet (no result)", file=sys.stderr)
        return 2
    published = {"seed_hash": data.get("seed_hash"),
                 "winners_count": data.get("winners_count"), **result}
    outcome = verify(published)
    if outcome.ok:
        print(f"OK: {len(outcome.expected_winners)} winner(s) recomputed from the seed and "
              f"{len(result.get('entrants', []))} entrant(s): "
              + ", ".join(outcome.expected_winners))
        return 0
    print("FAILED:")
    for problem in outcome.problems:
        print(f"  - {problem}")
    return 1


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read())


# Pages of the chain fetched at most (1,000 entries each): a bound on what a
# hostile or broken server can make the command read.
MAX_CHAIN_PAGES = 1000


def verify_auction(args: argparse.Namespace) -> int:
    from server.core.auction_chain import verify

    try:
        if args.file:
            data = json.loads(Path(args.file).read_text(encoding="utf-8"))
            entries = data.get("entries") if isinstance(data, dict) else None
        else:
            if not args.url.startswith(("http://", "https://")):
                print("livesell: --url must be an http:// or https:// URL", file=sys.stderr)
                return 2
            data = _get_json(args.url)
            entries = []
            for _ in range(MAX_CHAIN_PAGES):
                page = _get_json(f"{args.url.rstrip('/')}/bids?after={len(entries)}"
                                 "&limit=1000")
                entries += page["bids"]
                if not page["more"]:
                    break
            else:
                print("livesell: the chain is longer than this command reads",
                      file=sys.stderr)
                return 2
    except (OSError, ValueError, KeyError, TypeError, urllib.error.URLError) as exc:
        print(f"livesell: cannot read the auction record: {exc}", file=sys.stderr)
        return 2
    if not isinstance(data, dict) or not isinstance(entries, list):
        print("livesell: the auction record must be a JSON object with its chain "
              "(\"entries\" in a --file)", file=sys.stderr)
        return 2
    if not isinstance(data.get("result"), dict):
        print("livesell: the auction has not ended yet (no result)", file=sys.stderr)
        return 2
    problems = verify(data, entries)
    if not problems:
        result = data["result"]
        who = (f"winner {result.get('winner_name') or ''} ({result['winner']}) at "
               f"{result['amount']}" if result.get("winner") else "no winner")
        print(f"OK: {len(entries)} accepted bid(s) chained from the terms to "
              f"{result.get('head')}; {who}")
        return 0
    print("FAILED:")
    for problem in problems:
        print(f"  - {problem}")
    return 1


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "verify-lottery":
        return verify_lottery(args)
    if args.command == "verify-auction":
        return verify_auction(args)
    if args.command == "webhooks":
        return verify_webhook(args)
    try:
        settings = settings_from_args(args)
    except SettingsError as exc:
        print(f"livesell: bad configuration: {exc}", file=sys.stderr)
        return 2
    try:
        return serve(settings)
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
