"""The demo (`asab run`, pipelined, the bundled 2023 bench and its demo requests) against the
carry-over tolerances of ``[carryover]``: bench minutes and stock per sample, and the largest
|ρ measured − ρ_model(composition made)| over the measured samples (g/cm³; the simulated
densimeter's model, electrolyte_models.md, so what remains is carry-over and noise).

Run:  python benchmarks/bench_tolerance.py

Each row runs the demo on a fresh simulated bench (virtual time) with the bench's
configuration copied and its ``[carryover]`` table set as the row says.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import tomllib
from pathlib import Path

import tomli_w

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from asab.actions.job import JobRecord  # noqa: E402
from asab.cli.wiring import simulated_bench  # noqa: E402
from asab.config.benches import bundled_bench  # noqa: E402
from asab.config.loader import load_bench  # noqa: E402
from asab.runner import run_jobs  # noqa: E402
from simulators import physics  # noqa: E402

ROWS = (  # (mole-fraction tolerance, density tolerance g/cm³ or None); the default: (1e-3, 2e-4)
    (1e-3, None), (1e-3, 2e-4), (1e-3, 1e-4), (4e-4, 1e-4), (1e-4, 1e-4), (1e-4, None))


def run(tolerance: float, density_tolerance: float | None, tmp: Path):
    folder = tmp / "bench"
    shutil.copytree(bundled_bench("hiu_2023"), folder)
    toml = folder / "bench.toml"
    data = tomllib.loads(toml.read_text())
    table = {"tolerance": tolerance}
    if density_tolerance is not None:
        table["density_tolerance"] = density_tolerance
    data["carryover"] = table
    toml.write_text(tomli_w.dumps(data))
    config = load_bench(toml)
    if density_tolerance is None:  # unset in the file would mean the default: switch it off
        config = config.model_copy(update={"carryover": config.carryover.model_copy(
            update={"density_tolerance": None})})
    import json
    requests = json.loads((folder / "demo_requests.json").read_text())
    with simulated_bench(config, tmp, state=tmp / "state") as bench:
        summary = run_jobs(bench, requests, tmp / "run", pipelined=True)
    chems = {c.inchikey: c for c in config.chemicals}
    key = {c.name: c.inchikey for c in config.chemicals}
    worst = 0.0
    for p in sorted((tmp / "run" / "records").glob("*.json")):
        r = JobRecord.model_validate_json(p.read_text())
        if r.status != "succeeded" or r.measurement is None:
            continue
        made = {key[k]: v for k, v in r.achieved.items() if v > 0}
        worst = max(worst, abs(r.measurement.density.mean
                               - physics.density(made, 298.15, chems)))
    return summary, worst


def main() -> None:
    print(f"{'tolerance':>10}{'density tol g/cm³':>19}{'bench min/sample':>18}"
          f"{'stock mL/sample':>17}{'max |Δρ| g/cm³':>16}")
    for tol, dtol in ROWS:
        with tempfile.TemporaryDirectory() as tmp:
            summary, worst = run(tol, dtol, Path(tmp))
        print(f"{tol:>10.0e}{'unset' if dtol is None else f'{dtol:.0e}':>19}"
              f"{summary.bench_minutes_per_sample:>18.1f}{summary.stock_per_sample:>17.2f}"
              f"{worst:>16.1e}")


if __name__ == "__main__":
    main()
