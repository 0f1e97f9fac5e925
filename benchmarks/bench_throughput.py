"""Throughput of the bench, as it runs today (sequential), against bounds computed from the
jobs' own plans — the baseline for pipelined scheduling (issue 13).

Run:  python benchmarks/bench_throughput.py [--jobs 50] [--seed 1]

Two runs on the simulated 2023 bench, virtual time: the bundled demo (9 requests), and
``--jobs`` random makeable density requests on a copy of the bench whose stocks, solvent and
wastes are ×100, the vessel on the balance emptied whenever it is full, as the operator would
(benchmarks/bench_consumables.py is the benchmark for running out). Every executed plan and the bench
time at which each of its steps finished are recorded (a listener on the executor).

Per phase of the steady-state density jobs (every measured job but the first, which primes the
lines) the table gives the median of:
    bench s     bench time the phase took (from the executor's step-done events);
    planned s   the sum of the plan's expected step durations (the planner's estimate);
    moving s    the plan's dispense and measure steps only — each step moving once the volume
                it must at the commanded flows, no syringe refills (the issue's "bound");
    cell s      the steps that hold the instrument cell (``Claims.instrument``): the sample
                pushed through it, the measurement, the gas and solvent pushed through it.

Bounds printed below the table, per sample:
    sequential bound   Σ moving s: the protocol as it is, with every refill hidden;
    pipelined bound    Σ cell s: one densimeter cell, so while it is filled, measured,
                       drained and cleaned nothing else can use it — the floor of any schedule
                       that overlaps the next sample's preparation with this one's cell work
                       and hides every refill (F0.0's gas and solvent refills between the
                       cell's pushes are on this path today: hiding them needs a second
                       pump, e.g. the unused E0.0, or faster aspiration).
and the run's makespan per measured sample, bench minutes per sample, mL of stock per sample.
"""

from __future__ import annotations

import argparse
import collections
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Self

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_consumables import requests, scaled

import asab.actions.job as job_module
from asab.actions.executor import EventKind
from asab.cli.wiring import simulated_bench
from asab.config.benches import bundled_bench
from asab.config.loader import load_bench
from asab.ledger import operator
from asab.plan import JobKind
from asab.plan.steps import Dispense, Measure
from asab.runner import run_jobs


class Recorder:
    """Wraps the job module's ``execute_into``: keeps each plan and its step-done times."""

    def __init__(self) -> None:
        self.runs: list[tuple[object, float, dict[int, float]]] = []
        self._real = job_module.execute_into

    def __enter__(self) -> Self:
        def execute_into(bench, plan, execution, listener=None, **kw):
            done: dict[int, float] = {}
            start = bench.clock.now()

            def hear(event):
                if event.kind is EventKind.STEP_DONE:
                    done[event.step] = event.time
                if listener is not None:
                    listener(event)
            try:
                return self._real(bench, plan, execution, hear, **kw)
            finally:
                self.runs.append((plan, start, done))
        job_module.execute_into = execute_into
        return self

    def __exit__(self, *exc) -> None:
        job_module.execute_into = self._real


def phase_table(runs) -> dict[str, dict[str, float]]:
    """Per phase: bench, planned, moving and cell seconds of each steady-state density job."""
    density = [r for r in runs if r[0].kind is JobKind.DENSITY and r[2]]
    per: dict[str, dict[str, list[float]]] = collections.defaultdict(
        lambda: collections.defaultdict(list))
    for plan, start, done in density[1:]:  # the first job primes every line
        sums: dict[str, dict[str, float]] = collections.defaultdict(
            lambda: collections.defaultdict(float))
        previous = start
        for i, step in enumerate(plan.steps):
            if i not in done:
                break
            phase = str(step.phase)
            sums[phase]["bench"] += done[i] - previous
            previous = done[i]
            sums[phase]["planned"] += step.duration
            if isinstance(step, (Dispense, Measure)):
                sums[phase]["moving"] += step.duration
            if step.claims.instrument is not None:
                sums[phase]["cell"] += step.duration
        for phase, values in sums.items():
            for what, v in values.items():
                per[phase][what].append(v)
    return {phase: {what: statistics.median(v) for what, v in values.items()}
            for phase, values in per.items()}


def report(title: str, summary, runs) -> None:
    table = phase_table(runs)
    print(f"\n{title}: {summary.succeeded} succeeded, {summary.rejected} rejected, "
          f"{summary.failed} failed")
    print(f"{'phase':<12}{'bench s':>10}{'planned s':>11}{'moving s':>10}{'cell s':>9}")
    totals = collections.Counter()
    for phase, v in table.items():
        print(f"{phase:<12}{v.get('bench', 0):>10.0f}{v.get('planned', 0):>11.0f}"
              f"{v.get('moving', 0):>10.0f}{v.get('cell', 0):>9.0f}")
        totals.update({k: v.get(k, 0.0) for k in ("bench", "planned", "moving", "cell")})
    print(f"{'total':<12}{totals['bench']:>10.0f}{totals['planned']:>11.0f}"
          f"{totals['moving']:>10.0f}{totals['cell']:>9.0f}")
    density = [r for r in runs if r[0].kind is JobKind.DENSITY and r[2]]
    first = min(start for _, start, _ in density)
    last = max(max(done.values()) for _, _, done in density)
    measured = summary.succeeded
    print(f"bench minutes per sample (summary): {summary.bench_minutes_per_sample:.2f}; "
          f"makespan / measured samples: {(last - first) / 60 / measured:.2f} min; "
          f"stock per sample {summary.stock_per_sample:.2f} mL")
    print(f"steady state: {totals['bench'] / 60:.1f} min per sample now; sequential bound "
          f"(moving steps only) {totals['moving'] / 60:.1f} min; pipelined bound (cell steps) "
          f"{totals['cell'] / 60:.1f} min; now / pipelined bound = "
          f"{totals['bench'] / max(totals['cell'], 1e-9):.2f}")


def roomy(config, factor: float = 100.0):
    """``config`` with the solvent bottle and the wastes ×``factor``, so that a long run
    measures throughput, not the operator's refills (bench_consumables.py is the benchmark for
    running out). The vessel on the balance keeps its size: the balance's weighing range is
    physical; :func:`run` empties it when the bench waits for that."""
    s = config.settings
    settings = s.model_copy(update={
        "solvent_volume": s.solvent_volume * factor, "waste_capacity": s.waste_capacity * factor,
        "waste_capacities": {k: v * factor for k, v in s.waste_capacities.items()}})
    return config.model_copy(update={"settings": settings})


def run(config, jobs, workdir: Path):
    """Run ``jobs``; when the bench waits for the balance vessel to be emptied, empty it as
    the operator would (ledger and simulated world; no bench time) and carry on."""
    with Recorder() as rec, simulated_bench(config, workdir / "inst") as bench:
        summary = run_jobs(bench, jobs, workdir / "run")
        for _ in range(len(jobs)):
            if summary.waiting is None or config.balance is None:
                break
            vessel = config.balance.vessel
            operator.empty(bench.ledger, vessel, "emptied by bench_throughput.py")
            world = bench.simulation.world
            world._vessels[vessel].content = type(world._vessels[vessel].content)()
            summary = run_jobs(bench, jobs, workdir / "run", resume=True)
    return summary, rec.runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=50)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    import json

    path = bundled_bench()
    config = load_bench(path)
    demo = json.loads((path / "demo_requests.json").read_text(encoding="utf-8"))
    with tempfile.TemporaryDirectory(prefix="asab-throughput-") as tmp:
        summary, runs = run(config, demo, Path(tmp) / "demo")
        report("demo (9 requests)", summary, runs)
        big = roomy(scaled(config, 100.0))
        summary, runs = run(big, requests(big, args.jobs, args.seed), Path(tmp) / "long")
        report(f"{args.jobs} requests, stocks, solvent and wastes ×100", summary, runs)


if __name__ == "__main__":
    main()
