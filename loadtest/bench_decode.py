"""Micro-benchmark of the first step of every buy: `decode_viewer_message` on one
`buy` frame, timed in this process with `timeit`, for the code under `--root`
(a checkout or an export of another commit, put first on `sys.path`), so two
commits can be alternated on one machine and compared as a ratio
(docs/benchmarks.md, "Decoding a viewer's buy").

    python -m loadtest.bench_decode --root /tmp/old
    python -m loadtest.bench_decode --root .
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import sys
import timeit
from pathlib import Path
from typing import Any

BUY: dict[str, Any] = {"type": "buy", "request_id": "r_123456", "product_id": "sneaker-42",
                       "quantity": 2}


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if not 1 <= value <= 10_000_000:
        raise argparse.ArgumentTypeError(f"must be between 1 and 10000000, got {value}")
    return value


def _root(text: str) -> Path:
    path = Path(text).resolve()
    if not (path / "server" / "core" / "protocol.py").is_file():
        raise argparse.ArgumentTypeError(f"{text}: no server/core/protocol.py under it")
    return path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m loadtest.bench_decode",
                                     description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("--root", type=_root, default=Path.cwd(),
                        help="the source tree whose server/ is timed (default: here)")
    parser.add_argument("--number", type=_positive, default=100_000,
                        help="calls per timing (default 100000)")
    parser.add_argument("--runs", type=_positive, default=3,
                        help="timings whose median is reported, each the best of 5")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sys.path.insert(0, str(args.root))
    loaded = sys.modules.get("server")
    where = getattr(loaded, "__file__", None)
    if loaded is not None and (where is None or
                               not Path(where).resolve().is_relative_to(args.root)):
        # Another tree's server is loaded (the installed copy): time the one asked for.
        for name in [m for m in sys.modules if m == "server" or m.startswith("server.")]:
            del sys.modules[name]
    protocol = importlib.import_module("server.core.protocol")
    limits = protocol.FrameLimits(200, 50, 5)
    decode = protocol.decode_viewer_message
    runs = [min(timeit.repeat(lambda: decode(BUY, limits), number=args.number, repeat=5))
            / args.number * 1e9 for _ in range(args.runs)]
    print(f"{args.root}: {statistics.median(runs):.1f} ns per decode "
          f"(runs: {', '.join(f'{r:.1f}' for r in runs)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
