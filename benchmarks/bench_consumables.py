"""Consumables over a long run: the 2023 bench with every stock ×100 (so the solvent bottle,
the wastes and the balance run out first), 60 of 100 makeable density requests, on the
simulated bench with a bench ledger.

Prints: the run as a table (succeeded, refused by consumable, failed, stock wasted in failed
jobs), the largest ledger ↔ simulated-world disagreement over every vessel after every job,
then the same command again after the operator has emptied the wastes and the balance vessel
and refilled the solvent (``asab bench empty/refill``), which carries on.

Run: python benchmarks/bench_consumables.py [--jobs 60] [--requests 100] [--seed 1]
"""

from __future__ import annotations

import argparse
import collections
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from asab.cli.wiring import simulated_bench  # noqa: E402
from asab.config.benches import bundled_bench  # noqa: E402
from asab.config.loader import load_bench  # noqa: E402
from asab.formulation import StockModel  # noqa: E402
from asab.ledger import operator  # noqa: E402
from asab.runner import run_jobs  # noqa: E402


def scaled(config, factor: float):
    """``config`` with every stock's masses × ``factor`` (same composition, ×factor volume)."""
    stocks = tuple(st.model_copy(update={
        "total_mass": st.total_mass * factor,
        "components": {k: c.model_copy(update={"mass": c.mass * factor})
                       for k, c in st.components.items()}}) for st in config.stocks)
    return config.model_copy(update={"stocks": stocks})


def requests(config, n: int, seed: int) -> list[dict]:
    """``n`` makeable density requests: random mixes of the stocks (mole fractions rounded
    to 4 decimals, then projected back if rounding left the region)."""
    rng = random.Random(seed)
    model = StockModel.from_config(config)
    chems = {c.inchikey: c for c in config.chemicals}
    out = []
    while len(out) < n:
        weights = [rng.random() for _ in config.stocks]
        x = model.mix([w / sum(weights) for w in weights])
        comp = {k: round(float(v), 4) for k, v in zip(model.components, x) if v > 1e-4}
        top = max(comp, key=comp.get)  # the rounded fractions sum to exactly 1
        comp[top] = round(comp[top] + 1.0 - sum(comp.values()), 4)
        _, _, dist = model.closest_makeable(comp)
        if dist > config.settings.makeable_tolerance:
            continue
        items = [{"chemical": {"SMILES": chems[k].smiles, "InChIKey": k}, "fraction": v,
                  "fraction_type": "molPerMol"} for k, v in comp.items()]
        out.append({"uuid": f"req-{len(out):03d}", "request": {
            "quantity": "density", "methods": ["vibrating_tube_densimetry"],
            "parameters": {"vibrating_tube_densimetry": {"formulation": items,
                                                        "temperature": 298.15}}}})
    return out


def disagreement(bench) -> tuple[float, str]:
    """Largest |ledger − world| / max(world, 1 mL) over every vessel with liquid."""
    world = bench.simulation.world
    worst, where = 0.0, ""
    for node, v in bench.ledger.current().vessels.items():
        if v.kind == "gas" or node not in world.vessel_names():
            continue
        real = world.vessel_contents(node).volume
        off = abs(v.volume - real) / max(real, 1.0)
        if off > worst:
            worst, where = off, node
    return worst, where


def table(summary, records) -> str:
    refused = collections.Counter()
    for r in records:
        if r.consumables:
            refused[", ".join(sorted({c["consumable"] for c in r.consumables}))] += 1
    wasted = sum(sum(r.stock_drawn.values()) for r in records if r.status == "failed")
    lines = [f"| succeeded | {summary.succeeded} |", f"| failed | {summary.failed} |",
             f"| rejected (not makeable / other) | {summary.rejected - sum(refused.values())} |"]
    lines += [f"| refused before moving liquid: {k} | {n} |" for k, n in sorted(refused.items())]
    lines.append(f"| stock wasted in failed jobs (mL) | {wasted:.2f} |")
    return "\n".join(["| run | |", "|---|---|"] + lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=60)
    ap.add_argument("--requests", type=int, default=100)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    config = scaled(load_bench(bundled_bench()), 100.0)
    jobs = requests(config, args.requests, args.seed)[:args.jobs]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        worst = [0.0, ""]
        t0 = time.perf_counter()
        with simulated_bench(config, tmp / "inst", ledger_dir=tmp / "state") as bench:
            records = []
            import asab.runner as runner

            real_save = runner._save

            def save(rec, *a):  # after every job: ledger against the world
                real_save(rec, *a)
                records.append(rec)
                off, node = disagreement(bench)
                if off > worst[0]:
                    worst[:] = [off, node]
            runner._save = save
            try:
                first = run_jobs(bench, jobs, tmp / "run")
                print(f"first run: {args.jobs} jobs, {time.perf_counter() - t0:.1f} s wall")
                print(table(first, records))
                print(f"\nwaiting: {first.waiting}\n")
                print(f"largest ledger/world disagreement after a job: {worst[0]:.2e} ({worst[1]})")
                store = bench.ledger
                for node in config.settings.waste_nodes:
                    operator.empty(store, node, "benchmark: operator emptied it")
                    bench.simulation.world._vessels[node].content = type(
                        bench.simulation.world._vessels[node].content)()
                solvent = config.settings.solvent_node
                operator.refill(store, solvent, config.settings.solvent_volume,
                                "benchmark: new bottle")
                world = bench.simulation.world
                world._vessels[solvent].content = world._solvent(config.settings.solvent_volume)
                records.clear()
                second = run_jobs(bench, jobs, tmp / "run", resume=True)
            finally:
                runner._save = real_save
        print("\nafter `asab bench empty waste_1`, `empty waste_2`, `refill Solvent 500 mL`, "
              "the same command again:")
        print(table(second, records))
        print(f"\ntotal after both: succeeded {second.succeeded}, failed {second.failed}, "
              f"waiting: {second.waiting}")
        print(f"largest ledger/world disagreement after a job: {worst[0]:.2e} ({worst[1]})")


if __name__ == "__main__":
    main()
