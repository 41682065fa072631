"""`python -m loadtest.bench_pool`: its flags are checked, and it times both pools
against a real redis-server."""

from __future__ import annotations

import re

import pytest

from loadtest import bench_pool


@pytest.mark.parametrize(("argv", "words"), [
    (["--calls", "0"], "must be between 1 and 10000000, got 0"),
    (["--runs", "1001"], "must be between 1 and 1000, got 1001"),
    (["--calls", "many"], "expected a whole number, got 'many'"),
])
def test_bad_flags_say_what_was_wrong(argv: list[str], words: str,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        bench_pool.parse_args(argv)
    assert exit_.value.code == 2
    assert words in capsys.readouterr().err


def test_it_times_both_pools(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench_pool.main(["--calls", "50", "--runs", "1"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^redis-py BlockingConnectionPool: median \d+ ns", out, re.M), out
    assert re.search(r"^livesell ClosingPool: median \d+ ns", out, re.M), out
    assert re.search(r"^ratio ClosingPool / BlockingConnectionPool: \d+\.\d{3} ", out, re.M), out
