"""The bench ledger over a long run (issue 11): consumables refused at plan time, the ledger
agreeing with the simulated world after every job, the same command carrying on after the
operator's fix, and a restarted bench starting from the ledger."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from asab.cli.wiring import simulated_bench
from asab.ledger import operator
from asab.runner import run_jobs

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from bench_consumables import disagreement, requests, scaled  # noqa: E402


@pytest.fixture(scope="module")
def big_bench(bench_config):
    return scaled(bench_config, 100.0)


def test_balance_full_refuses_before_moving_then_the_same_run_carries_on(big_bench, tmp_path,
                                                                         monkeypatch):
    import asab.runner as runner

    jobs = requests(big_bench, 22, seed=3)
    seen, worst = [], [0.0]
    real_save = runner._save
    with simulated_bench(big_bench, tmp_path / "inst", ledger_dir=tmp_path / "state") as bench:
        def save(rec, *args):
            real_save(rec, *args)
            seen.append(rec)
            worst[0] = max(worst[0], disagreement(bench)[0])
        monkeypatch.setattr(runner, "_save", save)
        # the balance vessel already holds 90 mL: some 11–20 samples fit (≈ 8–12 g of each
        # reaches the pan, by how long the flush its carry-over needs is), the last ones do not
        from asab.ledger.liquid import SOLVENT

        bench.ledger.update(lambda L: setattr(L.vessels["waste_2"], "content", {SOLVENT: 90.0}))
        world = bench.simulation.world
        world._vessels["waste_2"].content = world._liquid_of({SOLVENT: 90.0})
        first = run_jobs(bench, jobs, tmp_path / "run")
        assert first.failed == 0 and first.succeeded >= 10
        refused = [r for r in seen if r.consumables]
        assert refused and first.succeeded + len(refused) == 22
        for rec in refused:  # refused before any liquid moved, with the consumable named
            assert rec.status == "rejected" and not rec.liquid_moved and not rec.stock_drawn
            assert rec.consumables[0]["consumable"] == "balance capacity"
            assert "asab bench empty waste_2" in rec.reason
        assert "waste_2" in first.waiting and bench.ledger.current().waiting == first.waiting
        # ledger ↔ world within 2 % for every vessel after every job (the wall films of the
        # two residue models differ by some 10 %, and the wastes collect their difference)
        assert worst[0] < 0.02
        operator.empty(bench.ledger, "waste_2", "emptied by the test")
        world = bench.simulation.world
        world._vessels["waste_2"].content = type(world._vessels["waste_2"].content)()
        assert bench.ledger.current().waiting is None
        seen.clear()
        again = run_jobs(bench, jobs, tmp_path / "run", resume=True)
    assert [r.job_id for r in seen] == [r.job_id for r in refused]  # only those ran
    assert again.succeeded == 22 and again.failed == 0 and again.waiting is None
    assert worst[0] < 0.02


def test_a_restarted_bench_starts_from_its_ledger(bench_config, tmp_path):
    jobs = requests(bench_config, 1, seed=5)
    state = tmp_path / "state"
    with simulated_bench(bench_config, tmp_path / "a", ledger_dir=state) as bench:
        run_jobs(bench, jobs, tmp_path / "run1")
        before = {n: v.volume for n, v in bench.ledger.current().vessels.items()}
        primed = bench.primed
    assert (state / "ledger.json").is_file() and primed
    with simulated_bench(bench_config, tmp_path / "b", ledger_dir=state) as bench:
        world = bench.simulation.world
        for node, volume in before.items():
            if node in world.vessel_names() and bench.ledger.current().vessels[node].kind != "gas":
                assert world.vessel_contents(node).volume == pytest.approx(volume, abs=1e-9)
        assert bench.primed == primed  # the lines are still primed: no new priming
        second = run_jobs(bench, jobs, tmp_path / "run2")
        assert second.succeeded == 1
        assert disagreement(bench)[0] < 0.01
