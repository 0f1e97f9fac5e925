"""The mix choice prefers the stocks the bench ledger says are available (issue 12, rule 5 of
asab.formulation.mixes): an empty reservoir makes the planner pick another exact mix, and a
mix that cannot avoid it says so."""

from __future__ import annotations

import numpy as np

from asab.formulation import StockModel, plan_formulation
from asab.ledger.model import initial_ledger
from asab.plan.planner import BenchContext, available_stocks, formulate


def _two_ways(model: StockModel) -> np.ndarray:
    """A composition made by two different 3-stock mixes of the 2023 bench (the centre of
    the four stocks lies in two of the four triangles)."""
    return model.fractions @ np.full(4, 0.25)


def test_an_empty_reservoir_makes_the_planner_choose_the_other_mix(bench_config) -> None:
    model = StockModel.from_config(bench_config)
    x = dict(zip(model.components, _two_ways(model).tolist()))
    ctx = BenchContext(bench_config)
    usual = formulate(ctx, initial_ledger(bench_config), x, 2.5)
    assert len(usual.stock_volumes) == 3
    avoided = 0
    for skipped in usual.stock_volumes:
        ledger = initial_ledger(bench_config)
        reservoir = bench_config.stock(skipped).reservoir
        ledger.vessels[reservoir] = ledger.vessels[reservoir].model_copy(update={"content": {}})
        assert skipped not in available_stocks(bench_config, ledger)
        rest = [n for n in model.names if n != skipped]
        without = StockModel.from_config(bench_config, rest).closest_makeable(x)[2]
        plan = formulate(ctx, ledger, x, 2.5)
        assert plan.deliverable and plan.distance <= 1e-9
        if without <= 1e-12:  # another exact mix exists: it is taken, silently
            assert skipped not in plan.stock_volumes
            assert not any("ledger" in n for n in plan.notes)
            avoided += 1
        else:  # the stock is needed: still used, and the plan says so
            assert skipped in plan.stock_volumes
            assert any("does not list as available" in n and skipped in n for n in plan.notes)
    assert avoided >= 1  # the stock off the shared diagonal can always be avoided


def test_a_mix_that_needs_an_unavailable_stock_names_it(bench_config) -> None:
    model = StockModel.from_config(bench_config)
    pure = dict(zip(model.components, model.fractions[:, 0].tolist()))  # the first stock alone
    plan = plan_formulation(bench_config, pure, 2.5, available=list(model.names[1:]))
    assert list(plan.stock_volumes) == [model.names[0]]
    assert any("does not list as available" in n and model.names[0] in n for n in plan.notes)


def test_every_stock_available_changes_nothing(bench_config) -> None:
    model = StockModel.from_config(bench_config)
    x = dict(zip(model.components, _two_ways(model).tolist()))
    plain = plan_formulation(bench_config, x, 2.5)
    listed = plan_formulation(bench_config, x, 2.5, available=list(model.names))
    assert plain == listed


def test_a_failed_certificate_falls_back_to_face_enumeration(monkeypatch, bench_config) -> None:
    """SciPy's nnls has had releases that returned suboptimal points silently: a solution
    that fails its certificate is solved again by face enumeration, not accepted."""
    from asab.formulation import hull
    from asab.formulation.faces import FaceProjector

    model = StockModel.from_config(bench_config)
    x = np.array([0.2, 0.1, 0.7])  # outside the hull (too much LiPF6 for the EC)
    monkeypatch.setattr(hull, "nnls", lambda a, b, maxiter: (np.eye(a.shape[1])[0], 0.0))
    sol = hull.HullProjector(model.fractions).project(x)
    assert abs(sol.distance - FaceProjector(model.fractions).project(x).distance) < 1e-12
