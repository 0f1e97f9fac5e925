"""The same drivers and simulators on a real-time (sped-up) clock, as in ``asab run --speed``."""

from __future__ import annotations

import time

from asab.actions.fluidics import MoveLog as Ledger, fill
from asab.cli.wiring import simulated_bench


def test_fill_a_syringe_in_sped_up_real_time(bench_config, tmp_path):
    with simulated_bench(bench_config, tmp_path, speed=200.0) as bench:
        t0 = time.monotonic()
        fill(bench, "A0.0", "Reservoir6", 1.0, Ledger(), flow=0.1)  # 10 s of bench time
        wall = time.monotonic() - t0
        assert abs(bench.pumps["A0.0"].fill_level() - 1.0) < 1e-6
        assert bench.simulation.world.syringe_contents("A0.0").volume > 0.9
        assert bench.clock.now() >= 10.0
    assert wall < 5.0
