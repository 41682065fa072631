"""Money as people read it: an integer of minor units shown in major units with
its currency's number of decimals (ISO 4217: most have 2, some none, a few 3). Pure."""

from __future__ import annotations

from typing import Final

# ISO 4217 currencies whose minor unit is not a hundredth.
NO_DECIMALS: Final = frozenset({"BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW",
                                "PYG", "RWF", "UGX", "UYI", "VND", "VUV", "XAF", "XOF",
                                "XPF"})
THREE_DECIMALS: Final = frozenset({"BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"})


def decimals(currency: str) -> int:
    return 0 if currency in NO_DECIMALS else 3 if currency in THREE_DECIMALS else 2


def major(amount: int, currency: str) -> float:
    return float(amount / 10 ** decimals(currency))


def show(amount: int, currency: str) -> str:
    """`USD 1,234.50`, `JPY 1,200`."""
    return f"{currency} {major(amount, currency):,.{decimals(currency)}f}"
