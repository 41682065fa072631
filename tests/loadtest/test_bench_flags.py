"""The bench commands' numeric flags (loadtest/args.py): a bad one stops the command
before it starts anything, saying which flag and what was wrong."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from loadtest import bench_auction, bench_cluster, bench_pool, bench_store


@pytest.mark.parametrize(("main", "argv", "words"), [
    (bench_store.main, ["--orders", "0"], "--orders: must be between 1 and 10000000, got 0"),
    (bench_store.main, ["--writers", "lots"], "--writers: expected a whole number, got 'lots'"),
    (bench_store.main, ["--batch-max", "10001"], "--batch-max: must be between 1 and 10000"),
    (bench_cluster.main, ["--viewers", "50001"], "--viewers: must be between 1 and 50000"),
    (bench_cluster.main, ["--rate", "nan"], "--rate: must be between 0.1 and 1000.0, got nan"),
    (bench_cluster.main, ["--units", "5", "--buyers", "2"], "--units 5 is more than --buyers 2"),
    (bench_auction.parse_args, ["--seconds", "0"], "--seconds: must be between 1 and 120, got 0"),
    (bench_pool.main, ["--runs", "1.5"], "--runs: expected a whole number, got '1.5'"),
])
def test_a_bad_flag_says_what_was_wrong(main: Callable[[list[str]], object], argv: list[str],
                                        words: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    assert words in capsys.readouterr().err
