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
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_consumables import requests, scaled

from asab.actions.job import JobRecord
from asab.cli.wiring import simulated_bench
from asab.config.benches import bundled_bench
from asab.config.loader import load_bench
from asab.formulation import plan_formulation
from asab.ledger import operator
from asab.ledger.model import initial_ledger
from asab.plan.planner import BenchContext, plan_density
from asab.plan.schedule import ledger_after, resources
from asab.plan.steps import Purpose
from asab.runner import run_jobs


def steady_minutes(records) -> float | None:
    """Bench minutes per sample in steady state: the time between the ends of the second and
    the last measured job, per job (the first job primes every line)."""
    ends = sorted(max(st.end for st in r.step_times) for r in records
                  if r.status == "succeeded" and r.step_times)
    if len(ends) < 3:
        return None
    return (ends[-1] - ends[1]) / (len(ends) - 2) / 60


def phase_table(records) -> dict[str, float]:
    """Per phase: median bench s of the steady-state jobs, first step's start to last step's
    end of the phase (sequential runs; in a pipelined run phases of two jobs overlap)."""
    per: dict[str, list[float]] = collections.defaultdict(list)
    for r in [r for r in records if r.status == "succeeded" and r.step_times][1:]:
        spans: dict[str, list[float]] = collections.defaultdict(list)
        for st in r.step_times:
            spans[st.phase] += [st.start, st.end]
        for phase, ts in spans.items():
            per[phase].append(max(ts) - min(ts))
    return {phase: statistics.median(v) for phase, v in per.items()}


def bounds(config, plan) -> dict[str, tuple[float, str]]:
    """Lower bounds on bench s per sample from one steady-state ``plan`` (its steps'
    expected durations at the configured flows)."""
    held = [(step, resources(step, config)) for step in plan.steps]
    load: dict[str, float] = collections.Counter()
    for step, res in held:
        for r in res:
            load[r] += step.duration
    busiest = max(load, key=lambda r: (round(load[r], 6), r.startswith("pump:")))
    cell = f"cell:{plan.instrument}"
    first = plan.push(Purpose.FIRST_PORTION)
    on_cell = {r for _, res in held if cell in res for r in res if r.startswith("valve:")}
    line = {f"valve:{v}" for v in first.valve_settings} & on_cell
    chain = sum(step.duration for step, res in held if cell in res or res & line)
    names = ", ".join(sorted(v.split(":")[1] for v in line))
    resource_how = (f"the busiest resource ({busiest}): the sum of the durations of the steps "
                    "holding it; no schedule of these plans is faster")
    chain_how = (f"the steps holding the cell or the valves its line shares with the first "
                 f"portion ({names}): first portion, sample, measurement, drain and clean pushes "
                 "and the refills between their strokes are not counted; with each resource "
                 "used in queue order, the next first portion follows this job's last push "
                 "through that line")
    return {"resource": (load[busiest], resource_how), "chain": (chain, chain_how)}


def report(title: str, summary, records) -> float | None:
    print(f"\n{title}: {summary.succeeded} succeeded, {summary.rejected} rejected, "
          f"{summary.failed} failed")
    if not summary.pipelined:
        table = phase_table(records)
        print(f"{'phase':<12}{'bench s':>10}")
        for phase, v in table.items():
            print(f"{phase:<12}{v:>10.0f}")
        print(f"{'total':<12}{sum(table.values()):>10.0f}")
    steady = steady_minutes(records)
    print(f"bench minutes per sample (makespan / samples) {summary.bench_minutes_per_sample:.2f}; "
          f"steady state {steady:.2f}; one job start to end {summary.job_minutes:.2f}; "
          f"stock per sample {summary.stock_per_sample:.2f} mL")
    return steady


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


def run(config, jobs, workdir: Path, pipelined: bool):
    """Run ``jobs``; when the bench waits for the balance vessel to be emptied, empty it as
    the operator would (ledger and simulated world; no bench time) and carry on."""
    with simulated_bench(config, workdir / "inst") as bench:
        summary = run_jobs(bench, jobs, workdir / "run", pipelined=pipelined)
        for _ in range(len(jobs)):
            if summary.waiting is None or config.balance is None:
                break
            vessel = config.balance.vessel
            operator.empty(bench.ledger, vessel, "emptied by bench_throughput.py")
            world = bench.simulation.world
            world._vessels[vessel].content = type(world._vessels[vessel].content)()
            summary = run_jobs(bench, jobs, workdir / "run", resume=True, pipelined=pipelined)
    records = [JobRecord.model_validate_json(p.read_bytes())
               for p in sorted((workdir / "run" / "records").glob("*.json"))]
    return summary, records


def steady_plan(config):
    """The plan of a demo job in the middle of a run (the third job: lines primed, the clean
    left to the next job as `asab run` plans it), so that the bounds are those of the
    protocol the runs use."""
    ctx, ledger = BenchContext(config), initial_ledger(config)
    f = plan_formulation(config, {"LiPF6": 0.07, "EC": 0.29, "EMC": 0.64}, 1.0)
    for _ in range(2):
        job = plan_density(ctx, ledger, f, check=False, clean_after=False)
        ledger = ledger_after(job, ledger, config)
    return plan_density(ctx, ledger, f, check=False, clean_after=False)


def planning_seconds(config, repeats: int = 5) -> tuple[float, float]:
    """Median wall seconds to plan one demo density job on a fresh bench and in the middle of
    a run (the :func:`steady_plan` ledger: lines primed, films and pockets in them)."""
    import statistics

    ctx, ledger = BenchContext(config), initial_ledger(config)
    f = plan_formulation(config, {"LiPF6": 0.07, "EC": 0.29, "EMC": 0.64}, 1.0)
    mid = ledger
    for _ in range(2):
        mid = ledger_after(plan_density(ctx, mid, f, check=False, clean_after=False), mid,
                           config)
    out = []
    for start in (ledger, mid):
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            plan_density(ctx, start, f, check=False, clean_after=False)
            times.append(time.perf_counter() - t0)
        out.append(statistics.median(times))
    return out[0], out[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=50)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    import json

    path = bundled_bench()
    config = load_bench(path)
    demo = json.loads((path / "demo_requests.json").read_text(encoding="utf-8"))
    plan = steady_plan(config)
    found = bounds(config, plan)
    print("Bounds per sample, from a steady-state plan of the 2023 bench at its configured flows:")
    for name, (value, how) in found.items():
        print(f"  {name:<9}{value / 60:6.1f} min  ({how})")
    best = max(v for v, _ in found.values()) / 60
    fresh, mid = planning_seconds(config)
    print(f"Planning one demo density job (median of 5): {fresh:.2f} s on a fresh bench, "
          f"{mid:.2f} s mid-run")
    rows = []
    with tempfile.TemporaryDirectory(prefix="asab-throughput-") as tmp:
        big = roomy(scaled(config, 100.0))
        long = requests(big, args.jobs, args.seed)
        for label, cfg, jobs in (("demo (9 requests)", config, demo),
                                 (f"{args.jobs} requests, stocks, solvent, wastes x100", big, long)):
            for pipelined in (False, True):
                mode = "pipelined" if pipelined else "sequential"
                t0 = time.perf_counter()
                summary, records = run(cfg, jobs, Path(tmp) / f"{len(rows)}", pipelined)
                wall = time.perf_counter() - t0
                steady = report(f"{label}, {mode}", summary, records)
                rows.append((label, mode, summary, steady, wall))
    print(f"\n{'run':<44}{'mode':<12}{'min/sample':>11}{'steady':>8}{'mL/sample':>10}"
          f"{'/bound':>8}{'wall s':>8}")
    for label, mode, summary, steady, wall in rows:
        print(f"{label:<44}{mode:<12}{summary.bench_minutes_per_sample:>11.2f}{steady:>8.2f}"
              f"{summary.stock_per_sample:>10.2f}{steady / best:>8.2f}{wall:>8.1f}")
    floor = 14.0
    pipe = [r for r in rows if r[1] == "pipelined"]
    worst = max(r[3] for r in pipe)
    print(f"\nfloor (issue 13): <= {floor:.0f} bench min per sample in steady state: "
          f"{'PASS' if worst <= floor else 'FAIL'} ({worst:.2f}); the best bound of these "
          f"plans is {best:.1f} min")


if __name__ == "__main__":
    main()
