"""FINALES2 result bodies: schema-valid for success and failure, honest, finite, rated."""

from __future__ import annotations

import math

import jsonschema
import pytest

from asab.actions.job import JobRecord, Measurement
from asab.actions.sample import summarize
from asab.actions.vial import FlowRecord
from asab.broker.results import (
    ResultError,
    assert_finite,
    density_result,
    distance_band,
    flow_result,
    internal_reference,
    rating,
)
from asab.drivers.base import RepetitionResult
from asab.requests import capability_schema

TOL = 1e-4
MADE = {"LiPF6": 0.07, "EC": 0.29, "EMC": 0.64}


def schema_check(body: dict) -> None:
    """Independent check of a body against the vendored schemas."""
    quantity, method = body["quantity"], body["method"][0]
    doc = capability_schema(quantity, method)
    jsonschema.Draft202012Validator(doc["json_schema_result_output"]).validate(body["data"])
    jsonschema.Draft202012Validator(doc["json_schema_specifications"]).validate(
        body["parameters"][method])
    assert set(body) == {"data", "quantity", "method", "parameters", "tenant_uuid", "request_uuid"}


def reps(densities, valid, viscosities=None):
    viscosities = viscosities or [2.5] * len(densities)
    return [RepetitionResult(repetition=i + 1, density=d, density_valid=ok,
                             density_condition="valid" if ok else "unstable",
                             density_temperature=298.15, viscosity=v, viscosity_valid=v is not None,
                             viscosity_condition="valid", viscosity_temperature=298.16)
            for i, (d, ok, v) in enumerate(zip(densities, valid, viscosities))]


def density_record(status="succeeded", repetitions=None, achieved=None, requested=None,
                   distance=0.0) -> JobRecord:
    rec = JobRecord(job_id="job001", request_id="req-1", status=status, bench="hiu_2023",
                    started="2026-11-21T10:00:00.000+00:00", requested=requested or dict(MADE),
                    achieved=achieved if achieved is not None else dict(MADE), distance=distance,
                    stock_drawn={"EMC": 1.0, "1.5M-LiPF6-EC-EMC": 0.5})
    if repetitions is not None:
        rec.measurement = Measurement(
            sample="s", method="Density_Viscosity", temperature=298.15,
            density=summarize([r.density for r in repetitions], [r.density_valid for r in repetitions]),
            viscosity=summarize([r.viscosity for r in repetitions],
                                [r.viscosity_valid for r in repetitions]),
            repetitions=repetitions, raw_file="x", raw_text="")
    return rec


def body(rec, config, attempt=1):
    return density_result(rec, config, tenant_uuid="tenant-asab",
                          reference=internal_reference("run1", rec.request_id, attempt))


def test_successful_density_result_validates(bench_config):
    b = body(density_record(repetitions=reps([1.1641, 1.1642, 1.1641], [True] * 3)), bench_config)
    schema_check(b)
    data = b["data"]
    assert data["density"]["values"] == [1.1641, 1.1642, 1.1641]
    assert data["density"]["temperature"] == pytest.approx(298.15)
    assert data["density"]["meta"] == {"success": True, "rating": 5}
    assert data["viscosity"]["values"] == [2.5, 2.5, 2.5]  # mPa·s, as measured
    assert b["method"] == ["vibrating_tube_densimetry"] and b["request_uuid"] == "req-1"
    assert set(data["run_info"]["chemicals_info"]) == {
        "AXPLOJNSKRXQPA-UHFFFAOYSA-N", "KMTRUDSVKNLOMY-UHFFFAOYSA-N", "JBTWLSYIZRCDFO-UHFFFAOYSA-N"}


def test_invalid_repetitions_are_left_out_and_cost_rating(bench_config):
    b = body(density_record(repetitions=reps([1.1641, 9.9, 1.1643], [True, False, True])),
             bench_config)
    schema_check(b)
    assert b["data"]["density"]["values"] == [1.1641, 1.1643]
    assert b["data"]["density"]["meta"] == {"success": True, "rating": 4}


def test_a_quality_flag_costs_rating_and_keeps_the_values(bench_config):
    from asab.actions.job import QualityFlag

    rec = density_record(repetitions=reps([1.1641, 1.1642, 1.1641], [True] * 3))
    rec.quality_flags = [QualityFlag.DENSITY_DISAGREES]
    b = body(rec, bench_config)
    schema_check(b)
    assert b["data"]["density"]["values"] == [1.1641, 1.1642, 1.1641]
    assert b["data"]["density"]["meta"] == {"success": True, "rating": 4}
    rec.quality_flags.append(QualityFlag.CARRYOVER)
    assert body(rec, bench_config)["data"]["density"]["meta"]["rating"] == 3
    assert rating(True, 0, 0.0, TOL, flags=9) == 1  # a successful result never rates 0


@pytest.mark.parametrize("repetitions", [None, reps([1.1, 1.2, 1.3], [False] * 3)])
def test_failed_density_result_has_no_values(bench_config, repetitions):
    rec = density_record(status="failed", repetitions=repetitions)
    b = body(rec, bench_config)
    schema_check(b)
    for q in ("density", "viscosity"):
        if b["data"][q] is not None:
            assert b["data"][q]["values"] == []
            assert b["data"][q]["meta"] == {"success": False, "rating": 0}
    assert 0.0 not in b["data"]["density"]["values"]


def test_no_viscosity_measured_gives_null(bench_config):
    rec = density_record(repetitions=reps([1.16, 1.16], [True, True], [None, None]))
    b = body(rec, bench_config)
    schema_check(b)
    assert b["data"]["viscosity"] is None


def test_made_composition_is_reported_not_the_requested_one(bench_config):
    requested = {"LiPF6": 0.3, "EC": 0.3, "EMC": 0.4}
    made = {"LiPF6": 0.0583, "EC": 0.5102, "EMC": 0.4315}
    rec = density_record(repetitions=reps([1.2] * 3, [True] * 3), requested=requested,
                         achieved=made, distance=0.3)
    rec.flagged = True
    b = body(rec, bench_config)
    schema_check(b)
    reported = {c["chemical"]["InChIKey"]: c["fraction"] for c in b["data"]["run_info"]["formulation"]}
    want = {bench_config.chemical(n).inchikey: x for n, x in made.items()}
    assert reported == want
    params = b["parameters"]["vibrating_tube_densimetry"]["formulation"]
    assert {c["chemical"]["InChIKey"]: c["fraction"] for c in params} == want
    assert rec.requested == requested  # the request stays in the record (and on the broker)
    assert b["data"]["density"]["meta"]["rating"] == 2  # 5 − 3 for a distance > 0.01


def test_rejected_jobs_have_no_result(bench_config):
    with pytest.raises(ResultError):
        body(density_record(status="rejected"), bench_config)


@pytest.mark.parametrize("success, invalid, distance, expected", [
    (True, 0, 0.0, 5), (True, 0, TOL, 5), (True, 0, 5 * TOL, 4), (True, 0, 0.005, 3),
    (True, 0, 0.05, 2), (True, 1, 0.0, 4), (True, 2, 0.0, 3), (True, 2, 0.05, 1),
    (True, 5, 0.05, 1), (True, 0, None, 2), (False, 0, 0.0, 0), (False, 3, 0.5, 0),
])
def test_rating_rule(success, invalid, distance, expected):
    assert rating(success, invalid, distance, TOL) == expected


def test_distance_bands():
    assert [distance_band(d, TOL) for d in (0, TOL, 2 * TOL, 10 * TOL, 0.01, 0.02)] == [0, 0, 1, 1, 2, 3]
    assert distance_band(float("nan"), TOL) == 3


def test_nan_and_infinity_are_refused(bench_config):
    with pytest.raises(ResultError, match="a/1"):
        assert_finite({"a": [1.0, math.nan]})
    with pytest.raises(ResultError):
        assert_finite({"x": {"y": -math.inf}})
    assert_finite({"ok": [1, 2.5, None, "nan"]})
    rec = density_record(repetitions=reps([1.16] * 3, [True] * 3))
    rec.measurement.repetitions[0].density_temperature = math.inf
    rec.achieved = {"LiPF6": math.nan, "EC": 0.29, "EMC": 0.64}
    with pytest.raises(ResultError, match="non-finite"):
        body(rec, bench_config)


def test_internal_reference_is_deterministic_and_unique():
    refs = {internal_reference(run, req, n) for run in ("run1", "run2")
            for req in ("a", "b") for n in (1, 2, 3)}
    assert len(refs) == 12
    assert internal_reference("run1", "a", 1) == internal_reference("run1", "a", 1)
    for bad in (("", "a", 1), ("r/1", "a", 1), ("r", "a/b", 1), ("r", "a", 0)):
        with pytest.raises(ValueError):
            internal_reference(*bad)


def test_formulation_uuid_follows_the_reference(bench_config):
    rec = density_record(repetitions=reps([1.16] * 3, [True] * 3))
    a, b = body(rec, bench_config, 1), body(rec, bench_config, 2)
    ia, ib = a["data"]["run_info"], b["data"]["run_info"]
    assert ia["internal_reference"] != ib["internal_reference"]
    assert ia["formulation_info"]["uuid"] != ib["formulation_info"]["uuid"]
    assert body(rec, bench_config, 1) == a


def flow_record(status="succeeded", delivered=2.6, vial="vial_1", pushed=3.4) -> FlowRecord:
    return FlowRecord(job_id="job002", request_id="req-2", status=status, bench="hiu_2023",
                      started="2026-11-21T10:00:00.000+00:00", requested=dict(MADE),
                      achieved=dict(MADE), distance=0.0, volume_requested=2.6,
                      volume_pushed=pushed, volume_delivered=delivered, vial=vial,
                      stock_drawn={"EMC": 1.0})


def flow_body(rec, config):
    return flow_result(rec, config, tenant_uuid="tenant-asab",
                       reference=internal_reference("run1", rec.request_id, 1),
                       address="Helmholtzstr. 11, 89081 Ulm")


def test_flow_result_validates(bench_config):
    b = flow_body(flow_record(), bench_config)
    schema_check(b)
    e = b["data"]["electrolyte"]
    assert e["volume"] == 2.6 and e["meta"] == {"success": True, "rating": 5}
    assert e["location"] == {"address": "Helmholtzstr. 11, 89081 Ulm",
                             "detail_1": "bench hiu_2023", "detail_2": "vial_1"}
    assert b["parameters"]["flow"]["volume"] == 2.6
    assert e["formulation"] == b["data"]["run_info"]["formulation"]


def test_flow_failure_before_delivery_reports_an_empty_vial(bench_config):
    b = flow_body(flow_record(status="failed", delivered=0.0, vial=None, pushed=None), bench_config)
    schema_check(b)
    assert b["data"]["electrolyte"]["meta"] == {"success": False, "rating": 0}
    assert b["data"]["electrolyte"]["volume"] == 0.0


def test_flow_failure_with_unknown_volume_has_no_result(bench_config):
    with pytest.raises(ResultError, match="unknown"):
        flow_body(flow_record(status="failed", delivered=None), bench_config)


def test_flow_volume_off_costs_a_point(bench_config):
    b = flow_body(flow_record(delivered=2.5), bench_config)
    assert b["data"]["electrolyte"]["meta"]["rating"] == 4


def test_flow_delivered_then_cleaning_failed_is_still_a_success(bench_config):
    rec = flow_record(status="failed")
    rec.delivered = True
    b = flow_body(rec, bench_config)
    assert b["data"]["electrolyte"]["meta"] == {"success": True, "rating": 5}
    rec.delivered = False
    assert flow_body(rec, bench_config)["data"]["electrolyte"]["meta"]["success"] is False
