"""The one request validator (asab.requests.validate_request): it never raises, and
``asab run`` and the tenant reach the same verdict with the same reasons through it."""

from __future__ import annotations

import io
import json
import math
import re
import tokenize
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from conftest import HIU_2023, ROOT
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asab.actions.job import new_record
from asab.broker.capabilities import check_request
from asab.requests import (
    CAPABILITIES,
    DENSITY,
    MAX_REASON,
    TEMPERATURE_TOLERANCE,
    DensityJob,
    FlowJob,
    validate_request,
)
from asab.runner import run_jobs

DEMO = json.loads((HIU_2023 / "demo_requests.json").read_text())
GOOD = DEMO[0]  # makeable, at the densimeter's temperature (the demo measures it)
PARAMS = ("request", "parameters", "vibrating_tube_densimetry")
FLOW_GOOD = {"uuid": "f-1", "request": {
    "quantity": "electrolyte", "methods": ["flow"],
    "parameters": {"flow": {"electrolyte": {"formulation": GOOD["request"]["parameters"][
        "vibrating_tube_densimetry"]["formulation"]}, "volume": 2.0}}}}


def _copy(value: Any) -> Any:
    """A deep copy that keeps what JSON text cannot hold (NaN, huge integers)."""
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def _params(item: dict) -> dict:
    out = item
    for key in PARAMS:
        out = out[key]
    return out


def _with_fraction(value: Any, index: int = 0) -> dict:
    item = _copy(GOOD)
    _params(item)["formulation"][index]["fraction"] = value
    return item


def _with_temperature(value: Any) -> dict:
    item = _copy(GOOD)
    _params(item)["temperature"] = value
    return item


def _with_duplicate() -> dict:
    item = _copy(GOOD)
    items = _params(item)["formulation"]
    items.append(_copy(items[1]))
    return item


def _with_unknown_key() -> dict:
    item = _copy(GOOD)
    _params(item)["formulation"][0]["chemical"]["InChIKey"] = "XXXXXXXXXXXXXX-UHFFFAOYSA-N"
    return item


# ------------------------------------------------------------------------- strategies
_HUGE = "10**5000"  # made when drawn: hypothesis cannot print the integer itself
_odd_numbers = st.sampled_from([math.nan, math.inf, -math.inf, 10**400, -(10**400), _HUGE,
                                1e308, -0.0, 0, 1, -1, 0.5, 298.15, 298.19, 298.21, 1.5, -0.1]
                               ).map(lambda x: 10**5000 if x == _HUGE else x)
_odd_text = st.sampled_from(["", "\ud800", "x" * 400, "molPerMol", "gPerG", "density",
                             "vibrating_tube_densimetry", "AXPLOJNSKRXQPA-UHFFFAOYSA-N", "EC"])
_scalars = (st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
            | _odd_numbers | _odd_text)
json_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.text(max_size=8) | _odd_text, inner, max_size=4),
    max_leaves=20)
"""Any JSON value, and what a Python caller can make of one (NaN, ±inf, 10**5000, lone
surrogates)."""


@st.composite
def mutated(draw: st.DrawFn, base: Any = GOOD, start: tuple = ()) -> Any:
    """``base`` with one subtree below ``start`` (at any depth, often deep) replaced by an
    odd JSON value (sometimes the whole item, when ``start`` is empty)."""
    item = _copy(base)
    parent, key, node = None, None, item
    for step in start:
        parent, key, node = node, step, node[step]
    if not start and draw(st.integers(0, 9)) == 0:
        return draw(json_values)
    while isinstance(node, (dict, list)) and node and draw(st.integers(0, 5)) > 0:
        keys = list(node) if isinstance(node, dict) else list(range(len(node)))
        parent, key = node, draw(st.sampled_from(keys))
        node = node[key]
    if parent is None:
        return draw(json_values)
    parent[key] = draw(json_values)
    return item


requests = st.one_of(mutated(), mutated(start=PARAMS), mutated(start=PARAMS + ("formulation",)))
"""Density requests with one odd part: anywhere, in the parameters, in the formulation."""


# ------------------------------------------------------------------------- never raises
@settings(max_examples=300, deadline=None)
@given(st.one_of(json_values, requests, mutated(FLOW_GOOD, ("request", "parameters"))))
def test_any_json_value_gets_a_verdict_never_an_exception(bench_config, info) -> None:
    checked = validate_request(info, bench_config)
    assert all(isinstance(r, str) and 0 < len(r) <= MAX_REASON for r in checked.reasons)
    assert all(r.encode("utf-8") for r in checked.reasons)  # storable: no lone surrogate
    assert (checked.job is None) == bool(checked.reasons)
    if checked.job is not None:
        assert (checked.quantity, checked.method) in CAPABILITIES
        assert all(0 <= x <= 1 for x in checked.job.formulation.values())
        json.dumps(checked.job.model_dump(mode="json", exclude={"raw"}))
    acc = check_request(bench_config, info)  # the tenant's path: never raises either
    assert acc.accepted is False or checked.job is not None


# ------------------------------------------------------------------------- one verdict
@pytest.fixture(scope="module")
def bench(bench_config, tmp_path_factory):
    """One simulated bench for the module (the comparisons move no liquid)."""
    from asab.cli.wiring import simulated_bench

    with simulated_bench(bench_config, tmp_path_factory.mktemp("instruments")) as opened:
        yield opened


def _run_path(bench, item: Any, run_dir: Path) -> tuple[dict, list[DensityJob]]:
    """``asab run``'s path (run_jobs) for one item, with the density job itself replaced by a
    stub that only keeps the validated job it was given."""
    given_jobs: list[DensityJob] = []

    def ran(bench, job, job_id, progress=None, sample=None, **_options):
        given_jobs.append(job)
        rec = new_record(bench, job_id, job.request_id, job.raw)
        rec.status = "succeeded"
        return rec

    with mock.patch("asab.runner.run_density_job", ran):
        summary = run_jobs(bench, [item], run_dir)
    return summary.rows[0], given_jobs


def _same_verdict(bench, item: Any, run_dir: Path) -> None:
    row, given_jobs = _run_path(bench, item, run_dir)
    acc = check_request(bench, item)
    if acc.quantity == "electrolyte":
        return  # a flow request: the tenant serves it, asab run measures density only
    if row["status"] == "rejected":
        assert not acc.accepted and given_jobs == []
        if not any(r.startswith("not a capability") for r in acc.reasons):  # names what
            prefix = f"{acc.request_id}: " if acc.request_id else ""  # each one serves
            assert row["reason"] == prefix + "; ".join(acc.reasons)
    else:  # valid: both hand the same job on; the tenant may still refuse it for its plan
        assert validate_request(item, bench.config).reasons == []
        assert isinstance(acc.job, DensityJob)
        assert given_jobs[0].model_dump(exclude={"raw"}) == acc.job.model_dump(exclude={"raw"})


@settings(max_examples=120, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(item=requests)
def test_asab_run_and_the_tenant_agree_on_any_request(bench, tmp_path_factory, item) -> None:
    _same_verdict(bench, item, tmp_path_factory.mktemp("run"))


T0 = 298.15  # the 2023 bench's densimeter method temperature, K
CASES = {
    "fraction -0.1": (_with_fraction(-0.1), "fraction -0.1 is not a mole fraction"),
    "fraction 1.5": (_with_fraction(1.5), "fraction 1.5 is not a mole fraction"),
    "fraction NaN": (_with_fraction(math.nan),
                     "fraction nan is not a mole fraction (number out of range)"),
    "fraction 10**400": (_with_fraction(10**400),
                         "fraction ~1e400 is not a mole fraction (number out of range)"),
    "a chemical twice": (_with_duplicate(),
                         "formulation/3 (KMTRUDSVKNLOMY-UHFFFAOYSA-N): chemical given twice"),
    "an unknown InChIKey": (_with_unknown_key(), "chemical not known to this bench"),
    "0.06 K off": (_with_temperature(T0 + 0.06), "temperature 298.21 K is not available"),
    "10**400 K": (_with_temperature(10**400), "not a temperature (number out of range)"),
}


@pytest.mark.parametrize("name", CASES)
def test_asab_run_and_the_tenant_refuse_with_the_same_reasons(bench, tmp_path, name) -> None:
    item, words = CASES[name]
    result = run_jobs(bench, [item], tmp_path / "run")  # the real path: nothing is stubbed
    row, acc = result.rows[0], check_request(bench, item)
    assert row["status"] == "rejected" and not acc.accepted
    assert row["reason"] == f"{acc.request_id}: " + "; ".join(acc.reasons)
    assert any(words in r for r in acc.reasons), acc.reasons
    assert validate_request(item, bench.config).reasons == acc.reasons


def test_a_temperature_within_the_tolerance_is_served_by_both(bench, tmp_path) -> None:
    item = _with_temperature(T0 + 0.04)
    assert 0.04 < TEMPERATURE_TOLERANCE < 0.06
    acc = check_request(bench, item)
    assert acc.accepted and acc.temperature == pytest.approx(T0 + 0.04)
    summary = run_jobs(bench, [item], tmp_path / "run")  # a real density job
    assert summary.rows[0]["status"] == "succeeded", summary.rows[0]["reason"]


def test_the_demo_gets_the_same_verdicts_on_both_paths(bench, tmp_path) -> None:
    for i, item in enumerate(DEMO):
        _same_verdict(bench, item, tmp_path / f"run{i}")


def test_every_reason_at_once(bench_config) -> None:
    item = _with_fraction(1.5)
    items = _params(item)["formulation"]
    items[1]["fraction_type"] = "gPerG"
    items[2]["chemical"]["InChIKey"] = "XXXXXXXXXXXXXX-UHFFFAOYSA-N"
    _params(item)["temperature"] = 313.15
    _params(item)["extra"] = [math.inf]
    reasons = validate_request(item, bench_config).reasons
    assert len(reasons) == 5, reasons
    for words in ("fraction 1.5", "gPerG", "not known", "313.15 K", "extra/0"):
        assert any(words in r for r in reasons), (words, reasons)


def test_flow_volume_and_vials(bench_config) -> None:
    capacity = bench_config.settings.vial_capacity
    for volume, words in ((0, "not a volume > 0"), (-1.0, "not a volume > 0"),
                          (math.inf, "number out of range"), (capacity + 0.1, "more than a vial")):
        item = _copy(FLOW_GOOD)
        item["request"]["parameters"]["flow"]["volume"] = volume
        assert any(words in r for r in validate_request(item, bench_config).reasons)
    checked = validate_request(FLOW_GOOD, bench_config)
    assert isinstance(checked.job, FlowJob) and checked.job.volume == 2.0
    no_vials = bench_config.model_copy(update={"settings": bench_config.settings.model_copy(
        update={"vial_nodes": []})})
    assert "this bench has no vials configured (settings.vial_nodes)" in \
        validate_request(FLOW_GOOD, no_vials).reasons
    no_densimeter = bench_config.model_copy(update={"densimeter": None})
    assert validate_request(GOOD, no_densimeter).reasons == ["this bench has no densimeter"]


def test_asab_run_serves_density_only(bench_config) -> None:
    checked = validate_request(FLOW_GOOD, bench_config, capabilities=(DENSITY,))
    assert checked.job is None and "not a capability served here" in checked.reasons[0]


# ------------------------------------------------------------------------- one tolerance
ALLOWED = {"asab/requests.py", "asab/actions/job.py"}
"""Where a temperature tolerance may be written as a number: its home, and (until it imports
TEMPERATURE_TOLERANCE) the density job."""


def _bare_tolerances(path: Path) -> list[int]:
    """Lines of ``path`` with the number 0.05 in code (not in a string or comment) within two
    lines of the word temperature."""
    text = path.read_text(encoding="utf-8")
    lines = text.lower().splitlines()
    found = []
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        if tok.type == tokenize.NUMBER and tok.string.replace("_", "") in ("0.05", ".05", "5e-2"):
            row = tok.start[0] - 1
            if any("temperature" in line for line in lines[max(0, row - 2):row + 3]):
                found.append(tok.start[0])
    return found


def test_one_temperature_tolerance_constant() -> None:
    offenders = []
    for folder in ("asab", "simulators"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel in ALLOWED:
                continue
            text = path.read_text(encoding="utf-8")
            offenders += [f"{rel}:{n}" for n in _bare_tolerances(path)]
            offenders += [f"{rel}: defines TEMPERATURE_TOLERANCE" for line in text.splitlines()
                          if re.match(r"\s*TEMPERATURE_TOLERANCE\s*[:=]", line)]
    assert offenders == [], "use asab.requests.TEMPERATURE_TOLERANCE: " + ", ".join(offenders)
