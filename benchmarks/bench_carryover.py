"""Carry-over: today's fixed-factor protocol against the protocol sized by the predicted
carry-over (issue 14), on the same alternating high-contrast sequences.

Run:  python benchmarks/bench_carryover.py [--samples 20] [--seed 1]

A sequence alternates between two corners of the 2023 bench's makeable region (the most
LiPF6 with the least EC, and the most EC with no LiPF6), each sample a random makeable
composition near its corner, so every neighbour differs by ≈ 0.1 LiPF6 and ≈ 0.3 EC.
Each protocol runs it on a fresh simulated bench (virtual time, sequential, stocks ×100), in
runs of at most 10 samples: between them the vessel on the balance is emptied, as the operator
would (``asab bench empty``; the Entris II takes 220 g, about 19 drained samples), and the
run cleans after its last sample (as ``asab run`` does), so one sample in ten follows the
cleaning solvent instead of the other corner.
For each measured sample the script compares three things:

    truth         the simulated world's cell content when the densimeter read it;
    predicted     the record's ``composition_predicted`` (the library's own model);
    requested     the request, and the simulated densimeter's model density of it.

Columns: stock mL per sample, bench minutes per sample, the largest |Δx| of the cell's true
composition from the requested one, the largest |Δx| predicted − true, and the largest
|ρ measured − ρ_model(requested)| (g/cm³).
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_consumables import scaled  # noqa: E402

from asab.cli.wiring import simulated_bench  # noqa: E402
from asab.config import SizingMode  # noqa: E402
from asab.config.benches import bundled_bench  # noqa: E402
from asab.config.loader import load_bench  # noqa: E402
from asab.formulation import plan_formulation  # noqa: E402
from asab.ledger import operator  # noqa: E402
from asab.runner import run_jobs  # noqa: E402
from simulators import physics  # noqa: E402

CORNERS = ({"LiPF6": 0.12, "EC": 0.05, "EMC": 0.83}, {"LiPF6": 0.0, "EC": 0.45, "EMC": 0.55})


def request(i: int, x: dict[str, float]) -> dict:
    keys = list(x)
    x = {k: round(x[k], 4) for k in keys[:-1]}  # four digits, the last one making the sum 1
    x[keys[-1]] = 1.0 - math.fsum(x.values())
    return {"uuid": f"carry-{i:03d}", "quantity": "density", "methods": ["vibrating_tube_densimetry"],
            "parameters": {"vibrating_tube_densimetry": {
                "formulation": [{"chemical": {"SMILES": smiles, "InChIKey": key},
                                 "fraction": v, "fraction_type": "molPerMol"}
                                for (smiles, key), v in x.items()],
                "temperature": 298.15}}}


def sequence(config, n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    chem = {c.name: c for c in config.chemicals}
    out = []
    for i in range(n):
        base = CORNERS[i % 2]
        while True:
            x = {k: max(0.0, v + rng.uniform(-0.02, 0.02)) for k, v in base.items()}
            x["EMC"] = 1.0 - x["LiPF6"] - x["EC"]
            try:
                plan = plan_formulation(config, {k: v for k, v in x.items()}, 10.0)
            except Exception:  # noqa: BLE001 - not makeable: draw again
                continue
            if plan.makeable and plan.deliverable:
                break
        out.append(request(i, {(chem[k].smiles, chem[k].inchikey): v for k, v in x.items()}))
    return out


def run(config, reqs, workdir: Path):
    truth: dict[str, dict[str, float]] = {}
    with simulated_bench(config, workdir, state=workdir / "state") as bench:
        world = bench.simulation.world
        meter = bench.densimeter
        inner = meter.measure
        cell = config.densimeter.instrument

        def spy(sample, *args, **kwargs):
            truth[sample] = world.instrument_contents(cell).mole_fractions()
            return inner(sample, *args, **kwargs)
        meter.measure = spy
        t0 = time.perf_counter()
        summaries = []
        for i in range(0, len(reqs), RUN_LENGTH):
            if i and config.balance is not None:  # the operator empties the balance vessel
                ledger = operator.empty(bench.ledger, config.balance.vessel, note="benchmark")
                bench.operator_hook(ledger, config.balance.vessel)
            summaries.append(run_jobs(bench, reqs[i:i + RUN_LENGTH],
                                      workdir / "run" / f"part{i // RUN_LENGTH + 1}"))
        wall = time.perf_counter() - t0
    return summaries, truth, wall


RUN_LENGTH = 10
"""Samples per run (the balance vessel is emptied between runs)."""


def per_sample(summaries) -> tuple[float, float]:
    """Stock mL and bench minutes per measured sample over the runs ``summaries``."""
    measured = sum(s.succeeded for s in summaries)
    stock = sum((s.stock_per_sample or 0.0) * s.succeeded for s in summaries)
    minutes = sum(s.makespan_minutes or 0.0 for s in summaries)
    return stock / measured, minutes / measured


def evaluate(config, summary, truth, workdir: Path):
    from asab.actions.job import JobRecord

    chems = {c.inchikey: c for c in config.chemicals}
    key = {c.name: c.inchikey for c in config.chemicals}
    recs = [JobRecord.model_validate_json(p.read_text())
            for p in sorted((workdir / "run").glob("part*/records/*.json"))]
    ok = [r for r in recs if r.status == "succeeded" and r.measurement is not None]
    for r in recs:
        if r not in ok:
            print(f"  {r.job_id}: {r.status}: {r.reason}")
    true_err = pred_err = rho_err = 0.0
    for r in ok:
        t = truth[r.sample]
        req = {key[k]: v for k, v in r.requested.items()}
        pred = {key[k]: v for k, v in (r.composition_predicted or {}).items()}
        ks = set(req) | set(t)
        true_err = max(true_err, max(abs(t.get(k, 0.0) - req.get(k, 0.0)) for k in ks))
        if pred:
            pred_err = max(pred_err, max(abs(pred.get(k, 0.0) - t.get(k, 0.0)) for k in ks))
        rho = physics.density({k: v for k, v in req.items() if v > 0}, 298.15, chems)
        rho_err = max(rho_err, abs(r.measurement.density.mean - rho))
    return len(ok), true_err, pred_err, rho_err


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=20)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    base = scaled(load_bench(bundled_bench("hiu_2023")), 100.0)
    reqs = sequence(base, args.samples, args.seed)
    print(f"{args.samples} samples alternating between {CORNERS[0]} and {CORNERS[1]} "
          f"(±0.02 each), seed {args.seed}")
    header = (f"{'protocol':<12}{'ok':>4}{'stock mL/sample':>17}{'bench min/sample':>18}"
              f"{'max |Δx| true':>15}{'max |Δx| pred−true':>20}{'max |Δρ| g/cm³':>16}{'wall s':>8}")
    print(header)
    for mode in (SizingMode.FIXED, SizingMode.PREDICTED):
        cfg = base.model_copy(update={"carryover": base.carryover.model_copy(
            update={"sizing": mode})})
        with tempfile.TemporaryDirectory() as tmp:
            summary, truth, wall = run(cfg, reqs, Path(tmp))
            n, true_err, pred_err, rho_err = evaluate(cfg, summary, truth, Path(tmp))
        stock, minutes = per_sample(summary)
        print(f"{mode.value:<12}{n:>4}{stock:>17.2f}"
              f"{minutes:>18.2f}{true_err:>15.1e}{pred_err:>20.1e}"
              f"{rho_err:>16.1e}{wall:>8.0f}")
    print("tolerances of the predicted sizing: "
          f"{base.carryover.tolerance:g} mole fraction ([carryover] tolerance), "
          f"{base.carryover.density_tolerance} g/cm³ ([carryover] density_tolerance)")


if __name__ == "__main__":
    main()
