"""The main job end to end on the simulated 2023 bench (real drivers, simulated devices)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from asab.actions.bench import open_bench
from asab.config import BenchConfig
from asab.requests import load_jobs
from asab.runner import run_jobs
from simulators.bench import start_simulation
from simulators.physics import model_density

from conftest import HIU_2023

DEMO = HIU_2023 / "demo_requests.json"


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory, bench_config):
    """Run the bundled demo requests once; yield (summary, records by job id, simulation)."""
    from asab.cli.wiring import simulated_bench

    run_dir = tmp_path_factory.mktemp("run")
    with simulated_bench(bench_config, run_dir / "instruments") as bench:
        summary = run_jobs(bench, load_jobs(DEMO), run_dir)
        world = bench.simulation.world
        pumps_idle = all(not world.pump_status(p.name).pumping for p in bench_config.pumps)
    records = {}
    for path in sorted((run_dir / "records").glob("*.json")):
        rec = json.loads(path.read_text())
        records[rec["job_id"]] = rec
    return summary, records, run_dir, pumps_idle


def test_every_job_leaves_a_record_and_the_run_continues(demo_run):
    summary, records, _, pumps_idle = demo_run
    assert summary.jobs == len(load_jobs(DEMO)) == len(records) == 9
    assert summary.failed == 0
    assert summary.succeeded == 6 and summary.rejected == 3
    assert pumps_idle


def test_accuracy_density_matches_model_of_requested_composition(demo_run, bench_config):
    """Holds only if the liquid was really routed, dosed and flushed as planned."""
    _, records, _, _ = demo_run
    checked = 0
    for rec in records.values():
        if rec["status"] != "succeeded":
            continue
        m = rec["measurement"]
        assert m["density"]["n_valid"] == 3 and m["viscosity"]["n_valid"] == 3
        expected = model_density(rec["requested"], m["temperature"], bench_config)
        assert abs(m["density"]["mean"] - expected) < 0.002, rec["job_id"]
        checked += 1
    assert checked == 6


def test_record_content(demo_run):
    _, records, run_dir, _ = demo_run
    rec = records["job001"]
    assert rec["request_id"] == "0b6e2f4a-1c0e-4f0e-9d59-2a3c1e5b7d01"
    assert rec["requested"] == {"LiPF6": 0.07, "EC": 0.29, "EMC": 0.64}
    assert rec["distance"] < 1e-6 and not rec["flagged"]
    assert set(rec["achieved"]) == {"LiPF6", "EC", "EMC"}
    assert abs(sum(rec["stock_volumes"].values()) - sum(p["volume"] for p in rec["pushes"][:2])) < 1e-6
    assert rec["stock_drawn"] and all(v > 0 for v in rec["stock_drawn"].values())
    purposes = [p["purpose"] for p in rec["pushes"]]
    assert purposes[:3] == ["first portion to waste", "sample through cell", "drain with gas"]
    sample = rec["pushes"][1]
    assert sample["valve_settings"]["V8"] == 7  # V8.8 → densiViscoIN
    assert all(len(r["valve_settings"]) >= 1 for r in rec["routes"])
    m = rec["measurement"]
    assert len(m["density"]["values"]) == 3 and 1.0 < m["density"]["mean"] < 1.35
    assert 298.0 < m["temperature"] < 298.3
    with open(run_dir / "raw" / Path(m["raw_file"]).name, encoding="utf-8", newline="") as fh:
        assert fh.read() == m["raw_text"]
    assert abs(rec["weighing"]["relative_deviation"]) < 0.02
    assert rec["software_version"] and rec["bench"] == "hiu_2023"
    # the clean is left to the next job of the run (a pre-clean when its carry-over needs one)
    assert [s["step"] for s in rec["steps"]] == [
        "formulate", "prime", "mix", "deliver", "measure", "drain"]
    clean = next(z for z in rec["sizing"] if z["what"] == "clean")
    assert clean["rule"] == "skipped" and clean["volume"] == 0.0
    flush = next(z for z in rec["sizing"] if z["what"] == "sample flush")
    assert flush["rule"] == "predicted carry-over" and flush["contamination"] <= 1e-3
    assert rec["composition_predicted"] and rec["carryover_predicted"] is not None
    check = rec["density_check"]  # the measured density against the predicted content's
    assert check["agrees"] and check["expected"] == rec["density_expected"]
    assert abs(check["difference"]) <= 2 * check["uncertainty"] and not rec["quality_flags"]
    summary = demo_run[0]
    last = max((r for r in records.values() if r["status"] == "succeeded"),
               key=lambda r: r["job_id"])
    # the run ends clean: the last job cleans, or the run does after it
    assert [s["step"] for s in last["steps"]][-1] == "clean" or summary.final_clean == (
        "cell cleaned after the run")
    starts = [s["start"] for s in rec["steps"]]
    assert starts == sorted(starts) and starts[-1] < rec["bench_seconds"]
    reps = m["repetitions"]
    assert [r["repetition"] for r in reps] == [1, 2, 3]
    assert all(abs(r["density_temperature"] - 298.15) < 0.1 for r in reps)
    assert rec["bench_seconds"] > 60


def test_failure_records_say_why(demo_run):
    _, records, _, _ = demo_run
    unmakeable = records["job004"]
    assert unmakeable["status"] == "rejected"
    assert unmakeable["error"]["type"] == "NotMakeableError"
    assert abs(unmakeable["error"]["distance"] - 0.0435) < 5e-4
    assert abs(unmakeable["distance"] - 0.0435) < 5e-4
    assert abs(unmakeable["closest"]["LiPF6"] - 0.0583) < 1e-3 and unmakeable["achieved"] is None
    malformed = records["job005"]
    assert malformed["status"] == "rejected" and "fraction_type" in malformed["reason"]
    assert "formulation/0/fraction: '0.07' is not of type 'number'" in malformed["reason"]
    hot = records["job009"]
    assert hot["status"] == "rejected" and "313.15 K" in hot["reason"]


def test_summary_reports_costs_per_sample(demo_run):
    summary, _, run_dir, _ = demo_run
    assert summary.bench_minutes_per_sample and summary.bench_minutes_per_sample > 5
    assert summary.stock_per_sample and 3 < summary.stock_per_sample < 40
    saved = json.loads((run_dir / "summary.json").read_text())
    assert saved["succeeded"] == 6


def test_accuracy_check_catches_a_misplumbed_bench(bench_config: BenchConfig, tmp_path):
    """If the planner believes the wrong stock sits in a reservoir, densities are off: the
    accuracy check above is not vacuous."""
    sim = start_simulation(bench_config, tmp_path)
    stocks = list(bench_config.stocks)
    a, b = stocks[0], stocks[1]  # swap which pump draws which stock, in the planner's belief
    stocks[0] = a.model_copy(update={"reservoir": b.reservoir, "pump": b.pump})
    stocks[1] = b.model_copy(update={"reservoir": a.reservoir, "pump": a.pump})
    wrong = sim.config.model_copy(update={"stocks": tuple(stocks)})
    bench = open_bench(wrong, sim.clock, cetoni_sdk=sim.sdk)
    try:
        summary = run_jobs(bench, load_jobs(DEMO)[:1], tmp_path / "run")
    finally:
        bench.close()
        sim.close()
    row = summary.rows[0]
    assert row["status"] == "succeeded"
    expected = model_density(row["requested"], 298.15, bench_config)
    assert abs(row["density"] - expected) > 0.002
