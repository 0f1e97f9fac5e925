"""Property: any makeable composition, run through the whole job on the simulated bench,
measures within 0.002 g/cm³ of the model density of the requested composition."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asab.actions.job import run_density_job
from asab.cli.wiring import simulated_bench
from asab.formulation import StockModel
from asab.requests import DensityJob
from simulators.physics import model_density


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(weights=st.lists(st.floats(0.05, 1.0), min_size=4, max_size=4))
def test_random_makeable_compositions_measure_right(bench_config, weights):
    with tempfile.TemporaryDirectory() as tmp, simulated_bench(bench_config, Path(tmp)) as bench:
        _check_one(bench, weights)


def _check_one(sim_bench, weights) -> None:
    model = StockModel.from_config(sim_bench.config)
    w = np.array(weights) / sum(weights)
    x = model.fractions @ w  # a convex mix of the stocks' mole-fraction vectors: makeable
    request = {k: float(v) for k, v in zip(model.components, x)}
    request[model.components[-1]] = 1.0 - sum(list(request.values())[:-1])  # sum exactly 1
    job = DensityJob(request_id="prop", formulation=request, temperature=None, raw={})
    rec = run_density_job(sim_bench, job, "prop")
    assert rec.status == "succeeded", rec.reason
    expected = model_density(request, rec.measurement.temperature, sim_bench.config)
    assert abs(rec.measurement.density.mean - expected) < 0.002
    assert rec.distance is not None and rec.distance <= sim_bench.config.settings.makeable_tolerance
