"""The bounded fuzz suite (tests/fuzzing.py): no traceback, hang, 5xx or lost data for any
input of any category. CI runs a short pass; ``pytest -m fuzz_long`` a long one."""

from __future__ import annotations

import pytest

from tests.fuzzing import FOUND, FUZZERS

SHORT = {"config (bench.toml values, CSV cells)": 60, "command line (odd arguments)": 150,
         "jobs files (odd request items)": 400, "HTTP (odd bodies and paths, every POST route)": 120,
         "journal (random or zeroed bytes, empty file)": 60}
BUGS = ("traceback", "hang", "5xx", "lost")


@pytest.mark.parametrize("category", list(FUZZERS))
def test_fuzz_short(category: str) -> None:
    counts = FUZZERS[category](SHORT[category], 1)
    assert sum(counts.values()) == SHORT[category]
    assert {k: counts[k] for k in BUGS if counts[k]} == {}, (counts, FOUND[-1:])
    assert counts["clean"] > 0  # the odd inputs were refused, not silently taken


@pytest.mark.fuzz_long
@pytest.mark.parametrize("category", list(FUZZERS))
def test_fuzz_long(category: str) -> None:
    counts = FUZZERS[category](SHORT[category] * 20, 2)
    assert {k: counts[k] for k in BUGS if counts[k]} == {}, counts
