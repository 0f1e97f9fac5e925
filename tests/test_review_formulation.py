"""Regression tests from the review of issue 12 (NNLS projection, vertex-walk mix choice).

Each test is a defect found in review: it failed on the reviewed code (0409eaa) and passes
since the fix (Carathéodory reduction of the start, += for a non-basic stock's share,
degenerate pivots, restarts from other vertices when the walk ends undeliverable).
The face-enumeration oracle (:mod:`asab.formulation.faces`) is the reference where it applies.
"""

from __future__ import annotations

import shutil

import numpy as np
from conftest import ROOT

from asab.config.loader import load_bench
from asab.formulation import StockModel, choose_mix, near_mix, plan_formulation
from asab.formulation.faces import FaceProjector, face_mix_options

DMC_FEC = ROOT / "hardware_configs" / "hiu_2023_dmc_fec"
PC_KEY = "RUOJZAUFBMNUDX-UHFFFAOYSA-N"  # in the bench's chemicals.csv, in no stock


def synthetic(fractions, totals, min_flows, max_flows) -> StockModel:
    s = np.asarray(fractions, dtype=float)
    n = s.shape[1]
    return StockModel(components=tuple(f"C{i}" for i in range(s.shape[0])),
                      names=tuple(f"S{j}" for j in range(n)),
                      pumps=tuple(f"P{j}" for j in range(n)),
                      concentrations=s * np.asarray(totals, dtype=float),
                      min_flows=np.asarray(min_flows, dtype=float),
                      max_flows=np.asarray(max_flows, dtype=float))


def test_walk_reaches_a_deliverable_vertex_two_pivots_away():
    # 3 components, 5 stocks (one stock more than the 2023 bench): P is a quadrilateral
    model = synthetic(
        [[0.0241, 0.6304, 0.1595, 0.0028, 0.3372],
         [0.8743, 0.3696, 0.2571, 0.2319, 0.6556],
         [0.1016, 0.0, 0.5834, 0.7653, 0.0071]],
        [0.0093, 0.0114, 0.0103, 0.0109, 0.0141],
        [0.0042, 0.0093, 0.0061, 0.0047, 0.0078],
        [0.0204, 0.042, 0.0336, 0.0406, 0.1265])
    x = np.array([0.1787, 0.483, 0.3383])
    volume, flow = 5.0, 0.058
    assert model.projector.project(x).distance < 1e-12  # makeable
    oracle = face_mix_options(FaceProjector(model.fractions), model, x, volume, flow, 1e-3)[0]
    assert oracle.deliverable and oracle.support == (0, 2, 4)
    chosen = choose_mix(model, x, volume, flow)
    near = near_mix(model, x, volume, flow, 1e-3, 1e-4)
    assert chosen.deliverable or near is not None


def test_walk_leaves_a_degenerate_start():
    s = np.array([[0.10, 0.50, 0.20, 0.05, 0.10],
                  [0.20, 0.10, 0.60, 0.75, 0.15],
                  [0.70, 0.40, 0.20, 0.20, 0.75]])
    s[:, 0] = 0.65 * s[:, 3] + 0.35 * s[:, 4]  # stock 0: the 65:35 mole mix of stocks 3 and 4
    max_flows = np.full(5, 0.1)
    max_flows[0] = 0.03  # stock 0 alone would run at the whole 0.05 mL/s
    model = synthetic(s, np.full(5, 0.01), np.full(5, 1e-3), max_flows)
    x = model.fractions[:, 0].copy()
    oracle = face_mix_options(FaceProjector(model.fractions), model, x, 5.0, 0.05, 1e-3)[0]
    assert oracle.deliverable and oracle.support == (3, 4)
    assert choose_mix(model, x, 5.0, 0.05).deliverable


def test_chosen_mix_makes_the_target_with_a_trace_component():
    trace = 1e-11  # stock 3 holds a trace of component C: S is numerically rank 2
    s = np.array([[0.8, 0.2, 0.5, 0.3, 0.6], [0.2, 0.8, 0.5, 0.7, 0.4], [0, 0, 0, trace, 0]])
    s[:, 3] /= s[:, 3].sum()
    mins = np.array([2e-3, 1e-3, 3e-3, 1e-3, 2.5e-3])
    model = synthetic(s, np.full(5, 0.01), mins, mins * 20)
    x = model.fractions @ np.full(5, 0.2)
    chosen = choose_mix(model, x, 5.0, 0.02)
    assert np.linalg.norm(model.fractions @ chosen.weights - x) <= 1e-9
    assert np.linalg.norm(model.mix(chosen.volumes) - x) <= 1e-9


def test_plan_on_example_bench_with_a_trace_component(tmp_path):
    bench = tmp_path / "bench"
    shutil.copytree(DMC_FEC, bench)
    path = bench / "stockSolutions.csv"
    rows = [line.split(";") for line in path.read_text().splitlines()]
    at = rows[0].index("batch")
    rows[0][at:at] = [PC_KEY, PC_KEY + "_uncertainty"]
    for row in rows[1:]:
        row[at:at] = ["1e-9" if row[0] == "EMC" else "0.0", "0.001"]
    path.write_text("\n".join(";".join(r) for r in rows) + "\n")
    config = load_bench(bench)
    model = StockModel.from_config(config)
    names = {c.inchikey: c.name for c in config.chemicals}
    worst = 0.0
    for seed in range(5):
        x = model.fractions @ np.random.default_rng(seed).dirichlet(np.ones(len(model.names)))
        request = {names[k]: float(v) for k, v in zip(model.components, x) if k != PC_KEY}
        plan = plan_formulation(config, request, 5.0)
        assert plan.makeable
        if plan.deliverable:
            worst = max(worst, plan.distance)
    assert worst <= config.settings.makeable_tolerance
