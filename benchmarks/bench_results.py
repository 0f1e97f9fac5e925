"""Time of ``asab results`` on 500 samples.

Run:  python benchmarks/bench_results.py [--samples 500] [--repeat 3]

The records are synthesized from one real run: the bundled demo is run once on the simulated
2023 bench (9 jobs: 6 measured, 3 rejected), then its records are copied round-robin into a
run folder of N records with new job ids and, for the measured ones, a new composition — a
random mix of the bench's 4 stock solutions (Dirichlet weights; the mole fractions
``S w`` of :class:`asab.formulation.StockModel`, so every composition is makeable), written as
requested, planned and predicted composition. The measured values are the copied ones (the
time does not depend on them). The table gives the median wall time over ``--repeat`` runs of

* ``asab results DIR --csv FILE`` as a new process (interpreter start and imports included);
* the same with ``--plots DIR`` (density, viscosity, ternary: PNG and SVG);
* in-process: :func:`asab.results.table.collect`, :func:`~asab.results.table.write_csv`,
  :func:`~asab.results.plots.write_plots` alone.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BENCH = ROOT / "hardware_configs" / "hiu_2023"
ASAB = [sys.executable, "-c", "from asab.cli.main import main; main()"]


def demo_run(base: Path) -> Path:
    run = base / "demo"
    subprocess.run([*ASAB, "run", "--config", str(BENCH), "--out", str(run), "--state",
                    str(base / "state"), "--json"], check=True, capture_output=True)
    return run


def synthesize(demo: Path, out: Path, n: int, seed: int = 15) -> Path:
    """``n`` records in ``out/records`` from the records of ``demo`` (module docstring)."""
    import numpy as np

    from asab.config.loader import load_bench
    from asab.formulation import StockModel

    cfg = load_bench(BENCH)
    model = StockModel.from_config(cfg)
    name = {c.inchikey: c.name for c in cfg.chemicals}
    comps = [name[k] for k in model.components]
    rng = np.random.default_rng(seed)
    sources = [json.loads(p.read_text()) for p in sorted((demo / "records").glob("*.json"))]
    (out / "records").mkdir(parents=True)
    shutil.copytree(demo / "raw", out / "raw")
    shutil.copy(demo / "summary.json", out / "summary.json")
    for i in range(n):
        rec = dict(sources[i % len(sources)])
        rec["job_id"] = f"job{i + 1:04d}"
        if rec["status"] == "succeeded":
            x = model.fractions @ rng.dirichlet(np.ones(len(model.names)))
            comp = {c: float(v) for c, v in zip(comps, x)}
            rec["requested"] = rec["achieved"] = rec["composition_predicted"] = comp
        (out / "records" / f"{i + 1:04d}_{rec['job_id']}.json").write_text(json.dumps(rec))
    return out


def timed(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=500)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        t = time.perf_counter()
        demo = demo_run(base)
        t_demo = time.perf_counter() - t
        run = synthesize(demo, base / "many", args.samples)
        n_ok = sum(json.loads(p.read_text())["status"] == "succeeded"
                   for p in (run / "records").glob("*.json"))

        def cli(*extra: str) -> None:
            subprocess.run([*ASAB, "results", str(run), "--csv", str(base / "r.csv"), *extra],
                           check=True, capture_output=True)

        from asab.config.loader import load_bench
        from asab.results.plots import write_plots
        from asab.results.table import collect, write_csv

        cfg = load_bench(BENCH)
        collect([run])  # imports (asab.actions.job) once, outside the timing
        table = collect([run])
        rows = [
            (f"asab results DIR --csv FILE (new process), {args.samples} records",
             timed(cli, args.repeat)),
            ("the same with --plots DIR", timed(lambda: cli("--plots", str(base / "p")),
                                                args.repeat)),
            ("collect (read and validate the records)", timed(lambda: collect([run]),
                                                              args.repeat)),
            ("write_csv", timed(lambda: write_csv(table, base / "t.csv"), args.repeat)),
            ("write_plots (6 files)", timed(lambda: write_plots(table, base / "q", cfg),
                                            args.repeat)),
        ]
    print(f"asab results on {args.samples} records ({n_ok} measured, the rest rejected), "
          f"synthesized from one demo run ({t_demo:.1f} s); median of {args.repeat}")
    print()
    print("| what | wall time |")
    print("|---|---|")
    for what, sec in rows:
        print(f"| {what} | {sec:.2f} s |")


if __name__ == "__main__":
    main()
