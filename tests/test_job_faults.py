"""A device fault mid-job: typed reason in the record, every pump stopped, the run goes on."""

from __future__ import annotations

import copy
import json

import pytest

from asab.formulation import plan_formulation
from asab.requests import load_jobs, parse_density_request
from asab.runner import run_jobs

from conftest import HIU_2023

EMC_ONLY = "JBTWLSYIZRCDFO-UHFFFAOYSA-N"


def _requests():
    jobs = load_jobs(HIU_2023 / "demo_requests.json")
    first = copy.deepcopy(jobs[0])  # LiPF6/EC/EMC: needs pump A0.0 (or B0.0)
    pure = copy.deepcopy(jobs[0])
    pure["uuid"] = "pure-emc"
    form = pure["request"]["parameters"]["vibrating_tube_densimetry"]["formulation"]
    for item in form:
        item["fraction"] = 1.0 if item["chemical"]["InChIKey"] == EMC_ONLY else 0.0
    return [first, pure]


def test_pump_fault_fails_the_job_stops_pumps_and_the_next_job_runs(sim_bench, tmp_path):
    world = sim_bench.simulation.world
    requests = _requests()
    job = parse_density_request(requests[0], sim_bench.config)
    plan = plan_formulation(sim_bench.config, job.formulation, 1.0)
    faulty = sorted(plan.pumps.values())[0]
    world.faults[faulty] = "overload"
    seen_pumping = []
    orig = sim_bench.stop_all

    def spy():
        orig()
        seen_pumping.append([p for p in sim_bench.pumps if world.pump_status(p).pumping])

    sim_bench.stop_all = spy
    summary = run_jobs(sim_bench, requests[:1], tmp_path / "a")
    rec = json.loads(next((tmp_path / "a" / "records").glob("*.json")).read_text())
    assert rec["status"] == "failed"
    assert rec["error"]["device"] == faulty and rec["error"]["type"] in ("DeviceFault", "DeviceError")
    assert seen_pumping and seen_pumping[0] == []
    assert rec["recovery"].startswith("cell and lines drained and cleaned; pumps stopped; valves parked")
    assert all(not world.pump_status(p.name).pumping for p in sim_bench.config.pumps)
    assert summary.failed == 1

    summary = run_jobs(sim_bench, requests[1:], tmp_path / "b")
    assert summary.succeeded == 1, summary.rows


def test_job_refused_when_a_reservoir_would_run_dry(bench_config, tmp_path):
    """A stock with only a few mL left: the job is rejected before any liquid moves."""
    from asab.cli.wiring import simulated_bench

    stocks = tuple(s.model_copy(update={"total_mass": 3.0 * s.density,
                                        "components": {k: c.model_copy(update={"mass": c.mass * 3.0 * s.density / s.total_mass})
                                                       for k, c in s.components.items()}})
                   for s in bench_config.stocks)
    low = bench_config.model_copy(update={"stocks": stocks})
    with simulated_bench(low, tmp_path / "inst") as bench:
        summary = run_jobs(bench, _requests()[:1], tmp_path / "run")
        moved = bench.drawn
    row = summary.rows[0]
    assert row["status"] == "rejected" and "not enough stock solution" in row["reason"]
    assert moved == {}


def test_no_valid_density_fails_the_job_and_the_cell_is_recovered(sim_bench, tmp_path):
    """Too little sample pushed (flush 0.7 × line): the cell holds gas, every repetition is
    invalid, and the job fails instead of posting invented values; the lines are cleaned."""
    settings = sim_bench.config.settings.model_copy(update={"flush_factor": 0.7})
    sim_bench.config = sim_bench.config.model_copy(update={"settings": settings})
    summary = run_jobs(sim_bench, _requests()[1:], tmp_path / "run")
    rec = json.loads(next((tmp_path / "run" / "records").glob("*.json")).read_text())
    assert rec["status"] == "failed" and "no valid density" in rec["reason"]
    assert rec["measurement"]["density"]["n_valid"] == 0
    assert rec["recovery"].startswith("cell and lines drained and cleaned; pumps stopped; valves parked")
    cell = sim_bench.simulation.world.instrument_contents("densiVisco")
    assert cell.volume < 1e-6  # drained: only gas left
    assert summary.failed == 1


def test_stuck_valve_puts_the_bench_out_of_service(sim_bench, tmp_path):
    world = sim_bench.simulation.world
    world.faults["V8"] = "stuck"
    summary = run_jobs(sim_bench, _requests(), tmp_path / "run")
    first, second = summary.rows
    assert first["status"] == "failed" and "V8" in first["reason"]
    assert sim_bench.out_of_service and "recovery failed" in sim_bench.out_of_service
    assert second["status"] == "failed" and "out of service" in second["reason"]
    assert all(not world.pump_status(p.name).pumping for p in sim_bench.config.pumps)


def test_closest_policy_makes_and_flags_the_closest_composition(sim_bench, tmp_path):
    settings = sim_bench.config.settings.model_copy(update={"not_makeable_policy": "closest"})
    sim_bench.config = sim_bench.config.model_copy(update={"settings": settings})
    request = copy.deepcopy(load_jobs(HIU_2023 / "demo_requests.json")[3])  # 0.06/0.54/0.40
    summary = run_jobs(sim_bench, [request], tmp_path / "run")
    row = summary.rows[0]
    assert row["status"] == "succeeded"
    assert abs(row["distance"] - 0.0435) < 5e-4
    assert abs(row["achieved"]["LiPF6"] - 0.0583) < 1e-3
    rec = json.loads(next((tmp_path / "run" / "records").glob("*.json")).read_text())
    assert rec["flagged"] and rec["requested"]["EC"] == 0.54


def test_a_failed_job_keeps_its_routes_and_stock_bookkeeping(sim_bench, tmp_path):
    settings = sim_bench.config.settings.model_copy(update={"flush_factor": 0.7})
    sim_bench.config = sim_bench.config.model_copy(update={"settings": settings})
    run_jobs(sim_bench, _requests()[1:], tmp_path / "run")
    rec = json.loads(next((tmp_path / "run" / "records").glob("*.json")).read_text())
    assert rec["status"] == "failed"
    assert rec["routes"] and rec["stock_drawn"] and rec["stock_volumes"]


def test_make_safe_parks_every_valve_open_to_a_reservoir(sim_bench):
    from asab.actions.safety import SafetyError, make_safe

    world = sim_bench.simulation.world
    sim_bench.valves["V1"].switch(1)  # F0.0 open to the solvent bottle
    assert [world.valve_position(v) for v in ("V1", "V3", "V7")] == [1, 0, 0]
    done = make_safe(sim_bench)
    assert done == "pumps stopped; valves parked: V1→2, V3→2, V4→2, V5→2, V6→2"
    assert [world.valve_position(v) for v in ("V1", "V3", "V7")] == [2, 2, 0]
    assert make_safe(sim_bench).endswith("valves parked: none needed")

    sim_bench.valves["V3"].switch(0)
    sim_bench.simulation.inject("V3", "stuck")
    sim_bench.valves["V6"].switch(0)
    sim_bench.estop = "test"  # latched: nothing moves, the check still runs
    assert "valves not moved" in make_safe(sim_bench)
    assert world.valve_position("V6") == 0
    sim_bench.estop = None
    with pytest.raises(SafetyError) as info:
        make_safe(sim_bench)
    assert info.value.device == "bench" and info.value.cause == "unsafe"
    assert [p.split(":")[0] for p in info.value.problems] == ["valve V3"]
    assert world.valve_position("V6") == 2  # the others were still parked
