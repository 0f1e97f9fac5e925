"""Checks on a real bench. Deselected by default (``-m 'not hardware'`` in pyproject);
run with ``ASAB_HARDWARE_CONFIG=path/to/bench python -m pytest -m hardware``."""

from __future__ import annotations

import os

import pytest

from asab.config.loader import load_bench

pytestmark = pytest.mark.hardware


@pytest.fixture(scope="module")
def hw_bench():
    path = os.environ.get("ASAB_HARDWARE_CONFIG")
    if not path:
        pytest.skip("ASAB_HARDWARE_CONFIG not set")
    from asab.cli.wiring import hardware_bench

    with hardware_bench(load_bench(path)) as bench:
        yield bench


def test_valves_report_a_position(hw_bench):
    for valve in hw_bench.valves.values():
        assert 0 <= valve.position() < valve.position_count


def test_balance_reads_a_stable_value(hw_bench):
    assert hw_bench.balance is not None
    reading = hw_bench.balance.read(stable=True)
    assert reading.stable and reading.unit
