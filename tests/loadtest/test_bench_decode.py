"""`python -m loadtest.bench_decode`: its flags are checked, and it times the tree
it is pointed at."""

from __future__ import annotations

from pathlib import Path

import pytest

from loadtest import bench_decode

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("argv", "words"), [
    (["--runs", "0"], "must be between 1 and 10000000, got 0"),
    (["--number", "lots"], "expected a whole number, got 'lots'"),
    (["--root", "/nonexistent-tree"], "no server/core/protocol.py under it"),
])
def test_bad_flags_say_what_was_wrong(argv: list[str], words: str,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        bench_decode.parse_args(argv)
    assert exit_.value.code == 2
    assert words in capsys.readouterr().err


def test_it_times_the_tree_it_is_given(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench_decode.main(["--root", str(ROOT), "--number", "50", "--runs", "1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{ROOT}: ") and " ns per decode " in out
