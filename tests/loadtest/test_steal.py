"""The machine's steal share beside each sale run's CPU per buy: how much of the
machine's CPU the hypervisor gave to other guests while the run was measured."""

from __future__ import annotations

from typing import Any

import pytest

from loadtest.sampling import burst_cpu_per_buy
from loadtest.stats import host_jiffies, steal_share


def test_steal_share_spans_the_window_from_the_samples_around_it() -> None:
    samples = [(99.0, 100, 1000), (100.0, 110, 1200), (101.0, 150, 1400),
               (102.0, 160, 1600)]
    # From the last sample at or before 100.2 (100.0) to the first at or after 101.5
    # (102.0): 50 ticks stolen of 400.
    assert steal_share(samples, 100.2, 101.5) == pytest.approx(0.125)
    assert steal_share(samples, 98.0, 101.0) is None  # nothing before the start
    assert steal_share(samples, 100.0, 103.0) is None  # nothing after the end
    assert steal_share([(1.0, 5, 10), (2.0, 5, 10)], 1.0, 2.0) is None  # no time passed


def test_cpu_per_buy_carries_the_steal_share_of_its_window() -> None:
    cpu = [(99.9, 99.9, 9.9, 0.95), (100.0, 100.0, 10.0, 1.0), (101.0, 101.0, 10.5, 1.25)]
    steal = [(99.95, 0, 0), (101.2, 20, 200)]
    got = burst_cpu_per_buy(cpu, 100.0, 0.0, [10.0, 500.0], 1000, steal)
    assert got["server_cpu_us_per_buy"] == pytest.approx(500.0)  # 10.0 -> 10.5 s
    assert got["steal_share"] == pytest.approx(0.1)
    assert "steal_share" not in burst_cpu_per_buy(cpu, 100.0, 0.0, [500.0], 1000)


def test_this_machine_reports_its_cpu_ticks() -> None:
    first = host_jiffies()
    if first is None:
        pytest.skip("no /proc/stat here")
    stolen, total = first
    assert 0 <= stolen <= total
    x = 0
    for i in range(200_000):  # let a few ticks pass
        x += i
    second = host_jiffies()
    assert second is not None and second[1] >= total and second[0] >= stolen


def test_each_livesell_run_is_paired_with_the_reference_run_after_it() -> None:
    from loadtest.bench_sale import paired_ratios
    from loadtest.stats import steal_between

    runs: list[dict[str, Any]] = [{"server_cpu_us_per_buy": 100.0, "buys_per_s": 6000.0},
            {"server_cpu_us_per_buy": 200.0, "buys_per_s": 3000.0},
            {"server_cpu_us_per_buy": None, "buys_per_s": 5000.0}]
    refs: list[dict[str, Any]] = [{"client_cpu_us_per_call": 250.0, "calls_per_s": 3000.0},
            {"client_cpu_us_per_call": 400.0, "calls_per_s": 2000.0},
            {"client_cpu_us_per_call": 300.0, "calls_per_s": 2500.0}]
    got = paired_ratios(runs, refs)
    # A slow stretch slowed both runs of the second pair: its ratios stay close.
    assert got["cpu_ratios"] == [0.4, 0.5]
    assert got["throughput_ratios"] == [2.0, 1.5, 2.0]
    assert got["cpu_ratio"] == pytest.approx(0.45)
    assert got["throughput_ratio"] == pytest.approx(2.0)
    assert got["spread"]["throughput_ratio"] == {"min": 1.5, "median": 2.0, "max": 2.0}
    assert steal_between((10, 100), (30, 300)) == pytest.approx(0.1)
    assert steal_between(None, (30, 300)) is None
    assert steal_between((10, 100), (10, 100)) is None
