"""Command-line numbers for the load tester's bench commands: one parser factory, so
every flag says what was wrong the same way and none takes an unbounded value."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import TypeVar

N = TypeVar("N", int, float)


def bounded(low: N, high: N, kind: Callable[[str], N]) -> Callable[[str], N]:
    """An argparse `type` taking a `kind` (int or float) from `low` to `high`."""
    noun = "whole number" if kind is int else "number"

    def parse(text: str) -> N:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {noun}, got {text!r}") from None
        if not low <= value <= high or (isinstance(value, float) and math.isnan(value)):
            raise argparse.ArgumentTypeError(f"must be between {low} and {high}, got {text}")
        return value
    return parse
