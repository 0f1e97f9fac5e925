"""Benchmark: exact closest-makeable solver vs the original ASAB's SLSQP approach.

Run:  python benchmarks/bench_formulation.py [--n 200] [--seed 1]

Requests on the 2023 stocks (hardware_configs/hiu_2023): ``n`` random makeable ones (random
convex mixes of the stocks, Dirichlet(1) weights) and ``n`` random unmakeable ones (uniform on
the composition simplex, kept when farther than 1e-4 from the makeable region).

Methods:
    exact  — :class:`asab.formulation.HullProjector` (face enumeration, one vectorised solve).
    api    — ``StockModel.closest_makeable`` (exact, plus dict in/out).
    slsqp  — the original ASAB's method, re-implemented here: ``scipy.optimize.minimize``
             with ``method="SLSQP"`` on the mole-fraction distance ``‖S w − x‖`` from the
             uniform start, bounds 0 ≤ w ≤ 1, equality Σw = 1, default options.

Reported per method and request set: median wall time per solve, the residual ``‖S w − x‖``
(makeable: should be 0) or the excess of the returned distance over the exact one
(unmakeable). Targets: exact ≥ 20× faster than SLSQP (median over all requests) and residual
≤ 1e-9 on makeable requests.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from scipy.optimize import minimize

from asab.config.loader import load_bench
from asab.formulation import HullProjector, StockModel

BENCH = Path(__file__).resolve().parents[1] / "hardware_configs" / "hiu_2023"
SPEEDUP_TARGET = 20.0
RESIDUAL_TARGET = 1e-9


def slsqp_weights(s: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The comparator: SLSQP on ‖S w − x‖ from a uniform start (original ASAB approach)."""
    n = s.shape[1]
    result = minimize(
        lambda w: np.linalg.norm(s @ w - x),
        np.full(n, 1.0 / n),
        method="SLSQP",
        bounds=[(0.0, 1.0)] * n,
        constraints=[{"type": "eq", "fun": lambda w: np.sum(w) - 1.0}],
    )
    return result.x


def requests(s: np.ndarray, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(n, k) makeable and (n, k) unmakeable compositions."""
    makeable = rng.dirichlet(np.ones(s.shape[1]), size=n) @ s.T
    projector = HullProjector(s)
    outside: list[np.ndarray] = []
    while len(outside) < n:
        x = rng.dirichlet(np.ones(s.shape[0]))
        if projector.project(x).distance > 1e-4:
            outside.append(x)
    return makeable, np.array(outside)


def run(solve: Callable[[np.ndarray], np.ndarray], xs: np.ndarray,
        s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-request wall times (s) and distances ‖S w − x‖."""
    solve(xs[0])  # warm-up
    times, dists = [], []
    for x in xs:
        t0 = time.perf_counter()
        w = solve(x)
        times.append(time.perf_counter() - t0)
        dists.append(float(np.linalg.norm(s @ w - x)))
    return np.array(times), np.array(dists)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="requests per set")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    model = StockModel.from_config(load_bench(BENCH))
    s = np.array(model.fractions)
    projector = model.projector
    makeable, unmakeable = requests(s, args.n, np.random.default_rng(args.seed))
    exact_d = np.array([projector.project(x).distance for x in unmakeable])
    methods: dict[str, Callable[[np.ndarray], np.ndarray]] = {
        "exact": lambda x: projector.project(x).weights,
        "api": lambda x: model.closest_makeable(dict(zip(model.components, x)))[0],
        "slsqp": lambda x: slsqp_weights(s, x),
    }
    print(f"{len(model.names)} stocks, {len(model.components)} components, "
          f"{len(projector.faces)} faces; {args.n} makeable + {args.n} unmakeable requests")
    print(f"{'method':<7}{'set':<11}{'median µs':>11}{'median resid':>14}{'max resid':>12}")
    medians: dict[str, float] = {}
    worst: dict[str, float] = {}
    for name, solve in methods.items():
        t_in, r_in = run(solve, makeable, s)
        t_out, d_out = run(solve, unmakeable, s)
        excess = d_out - exact_d
        for label, t, r in (("makeable", t_in, r_in), ("unmakeable", t_out, excess)):
            print(f"{name:<7}{label:<11}{np.median(t) * 1e6:>11.1f}"
                  f"{np.median(r):>14.2e}{np.max(r):>12.2e}")
        medians[name] = float(np.median(np.concatenate([t_in, t_out])))
        worst[name] = float(np.max(r_in))
    print("(unmakeable rows: distance returned minus the exact distance)")
    for name in ("exact", "api"):
        speedup = medians["slsqp"] / medians[name]
        ok = speedup >= SPEEDUP_TARGET and worst[name] <= RESIDUAL_TARGET
        print(f"{name}: speed-up {speedup:.0f}× (target ≥ {SPEEDUP_TARGET:.0f}×), max makeable "
              f"residual {worst[name]:.1e} (target ≤ {RESIDUAL_TARGET:.0e}): "
              f"{'PASS' if ok else 'FAIL'}")
    print(f"slsqp: max makeable residual {worst['slsqp']:.1e}: "
          f"{'PASS' if worst['slsqp'] <= RESIDUAL_TARGET else 'FAIL'} against the residual target")


if __name__ == "__main__":
    main()
