"""Gravimetric verification and pump calibration on the simulated 2023 bench, and the
masses → mole fractions computation (properties)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asab.actions.calibration import (
    apply_calibration,
    calibrate_pump,
    calibration_path,
    load_calibration,
)
from asab.actions.gravimetric import net_mass_uncertainty, verify_formulation
from asab.errors import ConfigError, DeviceError, RequestError
from asab.formulation import (
    StockModel,
    achieved_composition,
    achieved_from_masses,
    plan_formulation,
)

REQUEST = "LiPF6=0.07,EC=0.29,EMC=0.64"


def set_true_factor(bench, pump: str, factor: float) -> None:
    """Give the simulated pump a syringe that really displaces factor × the commanded volume."""
    ctx = bench.simulation.sdk.qmixpump.Pump._ctx
    ctx.pumps[bench.config.pump(pump).device].delivery_factor = factor


# ---------------------------------------------------------------- verification on the bench
def test_verified_formulation_agrees_with_plan_within_uncertainty(sim_bench):
    plan = plan_formulation(sim_bench.config, REQUEST, 2.0)
    rec = verify_formulation(sim_bench, plan)
    assert rec.ok and rec.short == []
    assert set(rec.achieved) == set(plan.achieved)
    assert math.isclose(sum(rec.achieved.values()), 1.0, abs_tol=1e-12)
    assert all(0 < u < 1e-3 for u in rec.uncertainty.values())
    assert rec.agrees(coverage=3.0), (rec.achieved, rec.planned, rec.uncertainty)
    assert rec.distance < 1e-4
    for dose in rec.doses:
        assert dose.volume == pytest.approx(plan.stock_volumes[dose.stock])
        # the balance sees what the ledger predicts arrives (the dose and the films it swapped)
        assert abs(dose.mass - dose.mass_expected) <= 4 * dose.mass_uncertainty
        assert dose.arrived[dose.stock] == pytest.approx(dose.volume, rel=0.1)
        assert dose.flush_volume > 0 and dose.prefill_volume > 0
    sinks = {r["nodes"][-1] for r in rec.routes}
    assert sinks >= {"waste_1", "waste_2"}
    # no instrument cell was wetted by verification
    inlets = {i.inlet for i in sim_bench.config.instruments}
    assert not any(inlets & set(r["nodes"]) for r in rec.routes)


def test_empty_reservoir_is_detected_by_weighing(sim_bench):
    plan = plan_formulation(sim_bench.config, REQUEST, 2.0)
    reservoir = sim_bench.config.stock("1.5M-LiPF6-EMC").reservoir
    sim_bench.simulation.world.inject(reservoir, "empty")  # the pump draws air
    rec = verify_formulation(sim_bench, plan)
    assert not rec.ok
    assert len(rec.short) == 1 and rec.short[0].startswith("1.5M-LiPF6-EMC")
    dose = next(d for d in rec.doses if d.stock == "1.5M-LiPF6-EMC")
    assert dose.relative_deviation < -0.9
    assert not rec.agrees()


def test_job_record_carries_the_weighed_composition(sim_bench):
    from asab.actions.job import JobRecord, new_record, record_weighing
    from asab.formulation import by_name

    plan = plan_formulation(sim_bench.config, REQUEST, 1.5)
    rec = new_record(sim_bench, "j1", "r1", None)
    assert rec.composition_source == "plan" and rec.achieved_uncertainty is None
    rec.requested = by_name(plan.requested, sim_bench.config)
    record_weighing(rec, verify_formulation(sim_bench, plan), sim_bench)
    assert rec.composition_source == "weighing"
    assert set(rec.achieved) == set(rec.achieved_uncertainty) == {"LiPF6", "EC", "EMC"}
    lipf6 = sim_bench.config.chemical("LiPF6").inchikey
    predicted = rec.gravimetric.predicted[lipf6]  # the plan and the lines' carry-over
    assert rec.achieved["LiPF6"] == pytest.approx(predicted, abs=5 * rec.achieved_uncertainty["LiPF6"])
    assert rec.gravimetric.agrees(coverage=3.0) and rec.gravimetric.distance < 2e-4
    again = JobRecord.model_validate_json(rec.model_dump_json())
    assert again.gravimetric.doses[0].mass == rec.gravimetric.doses[0].mass


def test_a_job_after_verification_still_weighs_right(sim_bench):
    """Verification leaves the balance line blown empty, as a job's drain does."""
    from asab.actions.job import run_density_job
    from asab.formulation import parse_composition
    from asab.requests import DensityJob

    form = parse_composition(REQUEST, sim_bench.config)
    verify_formulation(sim_bench, plan_formulation(sim_bench.config, form, 2.0))
    rec = run_density_job(sim_bench, DensityJob(request_id="r", formulation=form, raw={}), "j")
    assert rec.status == "succeeded", rec.reason
    assert abs(rec.weighing.relative_deviation) < 0.005


def test_verification_needs_a_balance(sim_bench):
    sim_bench.balance = None
    plan = plan_formulation(sim_bench.config, REQUEST, 1.0)
    with pytest.raises(DeviceError, match="balance"):
        verify_formulation(sim_bench, plan)


# ---------------------------------------------------------------- calibration
def test_calibration_finds_the_true_factor_and_applying_it_helps(sim_bench, tmp_path):
    pump = sim_bench.config.stock("1.5M-LiPF6-EMC").pump
    set_true_factor(sim_bench, pump, 0.97)
    plan = plan_formulation(sim_bench.config, REQUEST, 2.0)
    before = verify_formulation(sim_bench, plan)
    assert not before.agrees()  # 3 % too little LiPF6-EMC stock shows on the balance

    store = tmp_path / "calibration.json"
    cal = calibrate_pump(sim_bench, pump, volume=1.0, repeats=3, store=store)
    floor = net_mass_uncertainty([0.0] * 3, [0.0] * 3, cal.readability)  # readability only
    assert cal.mass_uncertainty >= floor
    readability_part = cal.factor * floor / (np.mean(cal.masses) * math.sqrt(len(cal.masses)))
    assert readability_part <= cal.uncertainty < 2e-3
    assert abs(cal.factor - 0.97) <= 3 * cal.uncertainty
    assert abs(cal.factor - 0.97) < 5e-4
    assert sim_bench.delivery_factors[pump] == cal.factor

    after = verify_formulation(sim_bench, plan)
    assert after.distance < before.distance / 10
    assert after.agrees(coverage=3.0)
    dose = next(d for d in after.doses if d.pump == pump)
    assert abs(dose.relative_deviation) < 1e-3

    saved = json.loads(store.read_text())
    assert saved["pumps"][pump]["factor"] == cal.factor
    sim_bench.delivery_factors.clear()
    assert apply_calibration(sim_bench, store) == {pump: cal.factor}


def test_recalibrating_a_corrected_pump_measures_the_bare_pump(sim_bench):
    pump = sim_bench.config.stock("EMC").pump
    set_true_factor(sim_bench, pump, 1.04)
    sim_bench.delivery_factors[pump] = 1.02  # an old, wrong calibration
    cal = calibrate_pump(sim_bench, pump, volume=0.8, repeats=2)
    assert cal.factor == pytest.approx(1.04, abs=1e-3)
    assert cal.commanded == pytest.approx(0.8 / 1.02)


def test_absurd_factor_is_rejected_and_not_applied(sim_bench, tmp_path):
    pump = sim_bench.config.stock("EC-EMC").pump
    set_true_factor(sim_bench, pump, 0.7)
    store = tmp_path / "cal.json"
    with pytest.raises(DeviceError, match="calibration out of range") as info:
        calibrate_pump(sim_bench, pump, volume=0.5, repeats=1, store=store)
    assert info.value.cause == "calibration out of range"
    assert pump not in sim_bench.delivery_factors and not store.exists()


def test_calibration_file_errors(tmp_path, bench_config):
    bad = tmp_path / "cal.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(ConfigError):
        load_calibration(bad)
    assert load_calibration(tmp_path / "missing.json").pumps == {}
    assert calibration_path(bench_config, tmp_path) == tmp_path / "calibration.json"
    entry = {"pump": "A0.0", "factor": 1.5, "uncertainty": 0.01, "liquid": "x", "density": 1.0,
             "density_uncertainty": 0.001, "commanded": 1.0, "masses": [1.5],
             "mass_uncertainty": 1e-4, "delivered": [1.5], "readability": 1e-4, "date": "now"}
    bad.write_text(json.dumps({"pumps": {"A0.0": entry}}), encoding="utf-8")
    with pytest.raises(ConfigError, match="out of range"):
        load_calibration(bad)


def test_calibration_arguments(sim_bench):
    with pytest.raises(ValueError):
        calibrate_pump(sim_bench, "A0.0", volume=0.0)
    with pytest.raises(DeviceError, match="nothing to weigh"):
        calibrate_pump(sim_bench, "E0.0")


# ---------------------------------------------------------------- masses → mole fractions
def _zero_stock_uncertainty(config):
    stocks = tuple(
        s.model_copy(update={
            "total_mass_uncertainty": 0.0,
            "components": {k: c.model_copy(update={"uncertainty": 0.0})
                           for k, c in s.components.items()}})
        for s in config.stocks)
    return config.model_copy(update={"stocks": stocks})


volumes = st.lists(st.floats(0.0, 5.0), min_size=4, max_size=4).filter(lambda v: sum(v) > 1e-3)


@settings(max_examples=60, deadline=None)
@given(v=volumes, delta=st.floats(1e-6, 1e-2), k=st.floats(1.0, 100.0))
def test_masses_to_fractions_properties(bench_config, v, delta, k):
    names = [s.name for s in bench_config.stocks]
    vols = {n: x for n, x in zip(names, v) if x > 0}
    masses = {n: x * bench_config.stock(n).density for n, x in vols.items()}
    x, u = achieved_from_masses(bench_config, masses, delta)
    assert math.isclose(math.fsum(x.values()), 1.0, abs_tol=1e-12)
    assert all(value >= 0 for value in x.values())
    planned = achieved_composition(bench_config, vols)  # exact inverse of the planned masses
    assert set(x) == set(planned)
    assert all(math.isclose(x[key], planned[key], abs_tol=1e-12) for key in x)
    assert all(value >= 0 and math.isfinite(value) for value in u.values())
    # u grows with the readability; with exact stock data it is proportional to it
    _, u_k = achieved_from_masses(bench_config, masses, k * delta)
    assert all(u_k[key] >= u[key] * (1 - 1e-12) for key in u)
    bare = _zero_stock_uncertainty(bench_config)
    _, u1 = achieved_from_masses(bare, masses, delta)
    _, u2 = achieved_from_masses(bare, masses, k * delta)
    assert all(math.isclose(u2[key], k * u1[key], rel_tol=1e-9, abs_tol=1e-300) for key in u1)


def test_given_mass_uncertainty_replaces_the_readability_term(bench_config):
    masses = {"1.5M-LiPF6-EMC": 1.0, "EC-EMC": 1.0}
    bare = _zero_stock_uncertainty(bench_config)
    _, u_default = achieved_from_masses(bare, masses, 1e-4)
    given_u = {n: 1e-4 / math.sqrt(6) for n in masses}
    _, u_same = achieved_from_masses(bare, masses, 1e-4, mass_uncertainty=given_u)
    assert u_same == pytest.approx(u_default)
    _, u_big = achieved_from_masses(bare, masses, 1e-4, mass_uncertainty={"EC-EMC": 1e-2})
    assert all(u_big[k] > u_default[k] for k in u_default if u_default[k] > 0)
    with pytest.raises(RequestError):
        achieved_from_masses(bare, masses, 1e-4, mass_uncertainty={"EC-EMC": -1.0})


def test_jacobian_uncertainty_matches_monte_carlo(bench_config):
    """The linear propagation agrees with sampling the masses (5 % on u, ≈ 5 σ of the
    estimate); the sampled model is x = P W / Σ(P W), P_ij = c_ij / ρ_j mol per g of stock j."""
    masses = {"1.5M-LiPF6-EC-EMC": 0.08, "1.5M-LiPF6-EMC": 1.16, "EC-EMC": 1.09}
    bare = _zero_stock_uncertainty(bench_config)
    u_w = {n: 2e-3 for n in masses}
    _, u = achieved_from_masses(bare, masses, 1e-4, mass_uncertainty=u_w)
    model = StockModel.from_config(bare, list(masses))
    per_gram = model.concentrations / np.array([bare.stock(n).density for n in masses])
    rng = np.random.default_rng(1)
    w = np.array(list(masses.values())) + rng.normal(0.0, 2e-3, size=(20000, len(masses)))
    amounts = w @ per_gram.T
    sd = (amounts / amounts.sum(axis=1, keepdims=True)).std(axis=0, ddof=1)
    for key, s in zip(model.components, sd):
        assert s == pytest.approx(u[key], rel=0.05)


def test_net_mass_uncertainty_pinned_values():
    """u(W)² = 2·δ²/12 + σ²(1/n0 + 1/n1), σ = max(pooled s, floor·δ): rounding does not
    average away over identical readings; the repeatability floor applies to them."""
    import math

    from asab.actions.gravimetric import REPEATABILITY_FLOOR, net_mass_uncertainty

    d = 1e-4
    same = net_mass_uncertainty([0.0] * 3, [1.0] * 3, d)
    sigma = REPEATABILITY_FLOOR * d
    assert same == pytest.approx(math.sqrt(2 * d**2 / 12 + sigma**2 * (2 / 3)), rel=1e-12)
    assert net_mass_uncertainty([0.0] * 3, [1.0] * 3, 10 * d) == pytest.approx(10 * same)
    noisy = net_mass_uncertainty([0.0, 0.002, -0.002], [1.0, 1.002, 0.998], d)
    assert noisy == pytest.approx(math.sqrt(2 * d**2 / 12 + 0.002**2 * (2 / 3)), rel=1e-12)
    assert net_mass_uncertainty([0.0] * 30, [1.0] * 30, d) > math.sqrt(2 * d**2 / 12) * 0.999
