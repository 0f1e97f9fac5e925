"""The electrolyte/flow action on the simulated 2023 bench: a volume into a free vial."""

from __future__ import annotations

import json

import pytest

import asab.actions.vial as vial_mod
from asab.actions import executor
from asab.actions.job import context
from asab.errors import Cause
from asab.plan import Purpose
from asab.actions.vial import FlowJob, common_line_volume, run_flow_job
from asab.plan.planner import vial_routes
from asab.actions.vial_state import VialOccupant, VialRegistry
from asab.errors import ConfigError, DeviceError
from asab.formulation import parse_composition

LIPF6 = "AXPLOJNSKRXQPA-UHFFFAOYSA-N"


def job(config, rid: str, volume: float = 2.6, text: str = "LiPF6=0.07,EC=0.29,EMC=0.64"):
    return FlowJob(request_id=rid, formulation=parse_composition(text, config), volume=volume)


def fractions(liquid) -> dict[str, float]:
    return liquid.mole_fractions()


def assert_pumps_idle(bench):
    world = bench.simulation.world
    assert all(not world.pump_status(p.name).pumping for p in bench.config.pumps)


def test_delivers_requested_composition_and_volume_then_another_vial(sim_bench, tmp_path):
    cfg, world = sim_bench.config, sim_bench.simulation.world
    vials = VialRegistry(tmp_path / "vials.json")
    first = run_flow_job(sim_bench, job(cfg, "r1"), "job001", vials)
    assert first.status == "succeeded", first.reason
    assert first.vial == cfg.settings.vial_nodes[0]
    content = world.vessel_contents(first.vial)
    assert content.volume == pytest.approx(2.6, abs=1e-6)
    want = parse_composition("LiPF6=0.07,EC=0.29,EMC=0.64", cfg)
    for key, x in want.items():
        assert fractions(content)[key] == pytest.approx(x, abs=1e-6)
    assert first.volume_delivered == pytest.approx(2.6) and first.delivered
    assert first.requested == pytest.approx({"LiPF6": 0.07, "EC": 0.29, "EMC": 0.64})
    assert first.achieved == pytest.approx(first.requested, abs=1e-9)
    assert [p.purpose for p in first.pushes] == [
        "first portion to waste", "deliver into vial", "clean with solvent",
        "drain with gas"]
    assert first.stock_drawn and all(v > 0 for v in first.stock_drawn.values())

    second = run_flow_job(sim_bench, job(cfg, "r2", 1.5, "LiPF6=0.1,EC=0.2,EMC=0.7"), "job002", vials)
    assert second.status == "succeeded", second.reason
    assert second.vial == cfg.settings.vial_nodes[1]
    assert world.vessel_contents(second.vial).volume == pytest.approx(1.5, abs=1e-6)
    # the first sample's wall films carry over into the second: within the carry-over tolerance
    tol = cfg.carryover.tolerance
    assert fractions(world.vessel_contents(second.vial))[LIPF6] == pytest.approx(0.1, abs=tol)
    assert world.vessel_contents(first.vial).volume == pytest.approx(2.6, abs=1e-6)  # untouched
    state = json.loads((tmp_path / "vials.json").read_text())["vials"]
    assert state[first.vial]["request_id"] == "r1" and state[first.vial]["status"] == "filled"
    assert state[second.vial]["volume"] == pytest.approx(1.5)
    assert_pumps_idle(sim_bench)


def test_shared_line_is_clean_after_delivery(sim_bench, tmp_path):
    cfg, world = sim_bench.config, sim_bench.simulation.world
    rec = run_flow_job(sim_bench, job(cfg, "r1"), "job001", VialRegistry(tmp_path / "v.json"))
    assert rec.status == "succeeded", rec.reason
    to_vial, _waste, to_waste, shared_volume = vial_routes(context(sim_bench), rec.vial)
    shared = [e for e, f in zip(to_waste.edges, to_vial.edges) if e == f]
    assert shared and common_line_volume(cfg, to_waste, to_vial) == pytest.approx(shared_volume)
    salt = sum(world.segment_contents(e).moles.get(LIPF6, 0.0) for e in shared)
    delivered = world.vessel_contents(rec.vial).moles[LIPF6]
    assert 0 < salt < 1e-3 * delivered  # the rinse leaves a film, not a plug of sample


def test_all_vials_full_is_refused_before_any_liquid_moves(sim_bench, tmp_path):
    cfg, world = sim_bench.config, sim_bench.simulation.world
    vials = VialRegistry(tmp_path / "vials.json")
    for i, v in enumerate(cfg.settings.vial_nodes):
        vials.claim(VialOccupant(vial=v, request_id=f"old{i}", job_id="x", status="filled",
                                 time="2026-01-01T00:00:00+00:00"))
    before = {p.name: world.pump_status(p.name).fill_level for p in cfg.pumps}
    rec = run_flow_job(sim_bench, job(cfg, "r9"), "job009", vials)
    assert rec.status == "rejected" and "no free vial" in rec.reason
    assert rec.vial is None and rec.pushes == [] and sim_bench.drawn == {}
    assert {p.name: world.pump_status(p.name).fill_level for p in cfg.pumps} == before
    assert [s.step for s in rec.steps] == ["formulate"]


def test_restart_does_not_reuse_an_occupied_vial(sim_bench, tmp_path):
    cfg = sim_bench.config
    path = tmp_path / "state" / "vials.json"
    rec = run_flow_job(sim_bench, job(cfg, "r1", 1.0), "job001", VialRegistry(path))
    assert rec.status == "succeeded", rec.reason
    reopened = VialRegistry(path)  # a restarted tenant
    assert rec.vial not in reopened.free(cfg)
    assert reopened.occupied()[rec.vial].request_id == "r1"
    reopened.release(rec.vial)
    assert VialRegistry(path).free(cfg)[0] == rec.vial


def test_unreadable_state_is_an_error_not_a_reset(tmp_path):
    path = tmp_path / "vials.json"
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(ConfigError):
        VialRegistry(path)


def test_too_much_volume_and_unmakeable_are_rejected_dry(sim_bench, tmp_path):
    cfg = sim_bench.config
    vials = VialRegistry(tmp_path / "vials.json")
    big = run_flow_job(sim_bench, job(cfg, "big", 500.0), "job001", vials)
    assert big.status == "rejected" and "vial capacity" in big.reason
    bad = run_flow_job(sim_bench, job(cfg, "bad", 1.0, "LiPF6=0.3,EC=0.3,EMC=0.4"), "job002", vials)
    assert bad.status == "rejected" and bad.closest is not None
    assert vials.occupied() == {} and sim_bench.drawn == {}


def test_failure_before_delivery_frees_the_vial_and_stops_pumps(sim_bench, tmp_path):
    cfg, world = sim_bench.config, sim_bench.simulation.world
    world.faults["A0.0"] = "overload"
    vials = VialRegistry(tmp_path / "vials.json")
    rec = run_flow_job(sim_bench, job(cfg, "r1"), "job001", vials)
    assert rec.status == "failed" and rec.error is not None
    assert rec.volume_delivered == 0.0 and vials.occupied() == {}
    assert_pumps_idle(sim_bench)


def test_failure_during_delivery_keeps_the_vial_with_the_volume_known(sim_bench, tmp_path,
                                                                      monkeypatch):
    """A pump stops part-way: the record's volume is what the ledger says reached the vial."""
    cfg, world = sim_bench.config, sim_bench.simulation.world
    real = executor.run_dispense

    def failing(bench, step):
        if step.purpose is Purpose.VIAL:  # the pumps stop after 60 % of the stroke
            part = step.model_copy(update={"moves": [m.model_copy(update={"volume": 0.6 * m.volume})
                                                     for m in step.moves]})
            real(bench, part)
            raise DeviceError("A0.0", Cause.OVERLOAD, "pump stopped")
        return real(bench, step)

    monkeypatch.setattr(executor, "run_dispense", failing)
    vials = VialRegistry(tmp_path / "vials.json")
    rec = run_flow_job(sim_bench, job(cfg, "r1"), "job001", vials)
    assert rec.status == "failed"
    in_vial = world.vessel_contents(rec.vial).volume
    assert in_vial > 0 and rec.volume_delivered == pytest.approx(in_vial, rel=1e-2)  # ledger ↔ world
    assert vials.occupied()[rec.vial].status == "failed" and not rec.delivered
    assert rec.recovery.startswith("mixer and shared line rinsed and dried; pumps stopped")
    assert_pumps_idle(sim_bench)
