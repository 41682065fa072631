"""The `livesell` command: `serve` runs the server, `verify-lottery` recomputes a
drawn lottery from its published record."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from server import __version__
from server.settings import Settings, SettingsError, load_settings

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
                       "(redis.url; also LIVESELL_REDIS_URL)")
    serve.add_argument("--workers", type=_workers, help="server processes (server.workers)")
    serve.add_argument("--log-level", choices=["critical", "error", "warning", "info", "debug"])

    verify = sub.add_parser("verify-lottery",
                            help="recompute a lottery's winners from its published record")
    src = verify.add_mutually_exclusive_group(required=True)
    src.add_argument("--file", help="JSON as returned by GET /api/rooms/{room}/lotteries/{id}")
    src.add_argument("--url", help="the lottery's URL on a livesell server")
    return parser


def settings_from_args(args: argparse.Namespace) -> Settings:
    server: dict[str, Any] = {}
    for attr, key in (("host", "host"), ("port", "port"), ("data_dir", "data_dir"),
                      ("workers", "workers"), ("log_level", "log_level")):
        value = getattr(args, attr)
        if value is not None:
            server[key] = value
    overrides: dict[str, dict[str, Any]] = {"server": server}
    if args.redis_url is not None:
        overrides["redis"] = {"url": args.redis_url}
    return load_settings(args.config, overrides=overrides)


def serve(settings: Settings) -> int:
    import uvicorn

    from server.app import create_app
    from server.fastws import FastWebSocketProtocol
    from server.redis_supervisor import RedisServer

    logging.basicConfig(level=settings.server.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    common: dict[str, Any] = dict(
        host=settings.server.host, port=settings.server.port, lifespan="on",
        ws=FastWebSocketProtocol, ws_max_size=settings.hub.max_frame_bytes,
        ws_per_message_deflate=False,
        ws_ping_interval=settings.hub.ping_interval_s or None,
        ws_ping_timeout=settings.hub.ping_interval_s or None,
        log_level=settings.server.log_level, http="httptools",
        loop="uvloop" if sys.platform != "win32" else "asyncio",
        timeout_graceful_shutdown=settings.server.shutdown_grace_s,
        access_log=settings.server.log_level == "debug",
    )
    if settings.server.workers > 1:
        if settings.server.port == 0:
            print("livesell: --port 0 cannot be shared by several workers; give a port",
                  file=sys.stderr)
            return 2
        embedded = None
        if not settings.redis.url:
            embedded = RedisServer(settings.data_path / "redis", binary=settings.redis.binary,
                                   port=settings.redis.port,
                                   appendonly=settings.redis.appendonly,
                                   start_timeout_s=settings.redis.start_timeout_s)
            os.environ["LIVESELL_REDIS_URL"] = embedded.start()
        for section, values in (("server", {"data_dir": str(settings.data_path)}),):
            for key, value in values.items():
                os.environ[f"LIVESELL_{section.upper()}_{key.upper()}"] = value
        _print_urls(settings.server.host, settings.server.port)
        try:
            uvicorn.run("server.app:default_app", factory=True,
                        workers=settings.server.workers, **common)
        finally:
            if embedded is not None:
                embedded.stop()
        return 0

    config = uvicorn.Config(create_app(settings), **common)
    server = uvicorn.Server(config)

    async def run() -> None:
        task = asyncio.create_task(server.serve())
        while not server.started and not task.done():  # noqa: ASYNC110 - uvicorn sets a flag
            await asyncio.sleep(0.05)
        if server.started:
            sock = server.servers[0].sockets[0]
            host, port = sock.getsockname()[:2]
            _print_urls(settings.server.host if settings.server.host else host, port)
        await task

    asyncio.run(run()) if sys.platform == "win32" else _run_uvloop(run)
    return 0 if server.started else 1


def _run_uvloop(main: Any) -> None:
    import uvloop

    uvloop.run(main())


def _print_urls(host: str, port: int) -> None:
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else f"[{host}]" if ":" in host else host
    base = f"http://{shown}:{port}"
    print(f"livesell is running\n  viewer page:  {base}/\n  host console: {base}/host\n"
          f"  API:          {base}/api\nPress Ctrl-C to stop.", flush=True)


def verify_lottery(args: argparse.Namespace) -> int:
    from server.domain import verify_lottery as verify

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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "verify-lottery":
        return verify_lottery(args)
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
