"""The steps of a density plan claim the instrument cell exactly when they use it: the
measurement, and every move whose route passes through the cell (the scheduler of issue 13
decides from these claims)."""

from __future__ import annotations

from asab.ledger.model import initial_ledger
from asab.plan.planner import BenchContext, formulate, plan_density
from asab.plan.steps import Dispense, Fill, Measure, Phase


def test_the_cell_is_claimed_by_the_steps_that_use_it(bench_config) -> None:
    ctx, ledger = BenchContext(bench_config), initial_ledger(bench_config)
    plan = plan_density(ctx, ledger, formulate(ctx, ledger, "LiPF6=0.07,EC=0.29,EMC=0.64", 2.5))
    cell = plan.instrument
    cells = {i.name: i for i in bench_config.instruments}
    through = {cells[cell].inlet, cells[cell].outlet}
    measure = [s for s in plan.steps if isinstance(s, Measure)]
    assert measure and all(s.claims.instrument == cell for s in measure)
    for step in plan.steps:
        if isinstance(step, Dispense):
            nodes = {n for m in step.moves for n in m.route.nodes}
            assert (step.claims.instrument == cell) == bool(nodes & through), step
        if isinstance(step, Fill):
            assert step.claims.instrument is None
    held = [s.phase for s in plan.steps if s.claims.instrument == cell]
    assert {Phase.DELIVER, Phase.MEASURE, Phase.DRAIN, Phase.CLEAN} <= set(held)
    assert Phase.PRIME not in held and Phase.MIX not in held
