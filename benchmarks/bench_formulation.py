"""Benchmark: the closest-makeable solver and the mix choice at every size, against face
enumeration (the exact oracle) and the original ASAB's SLSQP approach.

Run:  python benchmarks/bench_formulation.py [--targets 60] [--repeat 3] [--seed 1]
          [--sizes 3x4,5x10,6x12,8x16,8x32,10x64] [--slsqp 200] [--tight 200]

Sweep (one table): for each size k components × n stocks — 3 × 4 is the 2023 bench's own
stocks, the others are synthetic (seeded): each stock a Dirichlet(0.3) mixture of the k
components (sparse, like real stock solutions), 0.01–0.015 mol/mL in total, on 10 mL
syringes; ``--targets`` compositions, half random convex mixes of the stocks (makeable), half
uniform on the composition simplex and farther than 1e-4 from the makeable region.

Columns, per size:
    solve µs       median over targets of :meth:`HullProjector.project` (NNLS), each target
                   timed ``--repeat`` times and the fastest kept (the machine is shared);
    plan µs        the same for the solve plus the mix choice (:func:`choose_mix`, 5 mL at
                   3 mL/min) — what :func:`plan_formulation` spends beyond parsing;
    faces          the oracle's candidate faces (Σ_{s ≤ k} C(n, s) bound when not built);
    face solve µs, face plan µs
                   the same two for face enumeration and the old mix rule, where the oracle
                   is built (≤ :data:`~asab.formulation.faces.MAX_FACES` faces), with its
                   one-off build time;
    max gap        largest KKT certificate of the solver (relative tolerance 1e-10);
    max resid      largest ‖S w − x‖ on makeable targets (target ≤ 1e-12);
    max |Δd|       largest difference between the solver's and the oracle's distance;
    same mix       share of targets where the old and the new rule pick the same stocks;
    as good        share where the new mix is as deliverable and uses as many stocks as the
                   old one (the old rule is a global search over the faces, the new one a
                   walk to a locally best vertex);
    margin lost    the largest shortfall of the new mix's margin to the old one's among those.

Tight limits (third table, ``--tight`` benches per size): minimum flows up to 50× higher and
some maxima below the total flow, so that limits bind; how often each rule finds a
deliverable mix (the new rule can miss one the exhaustive rule finds: see the mixes module).

Floor of issue 12: 8 × 32 solve median ≤ 1 ms and plan median ≤ 5 ms; 3 × 4 no slower than
face enumeration. The script prints PASS/FAIL for each.

SLSQP (second table, 2023 bench, ``--slsqp`` requests per set): ``scipy.optimize.minimize``
with ``method="SLSQP"`` on ``‖S w − x‖`` from the uniform start, bounds 0 ≤ w ≤ 1, equality
Σw = 1 — the original ASAB's method, re-implemented here for comparison.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from scipy.optimize import minimize

from asab.config.loader import load_bench
from asab.config.models import Syringe
from asab.formulation import HullProjector, StockModel
from asab.formulation.faces import (
    MAX_FACES,
    FaceProjector,
    face_count,
    face_mix_options,
)
from asab.formulation.mixes import DEFAULT_MIN_DOSE, choose_mix, mix_option, widest_mix

BENCH = Path(__file__).resolve().parents[1] / "hardware_configs" / "hiu_2023"
SIZES = "3x4,5x10,6x12,8x16,8x32,10x64"
VOLUME, FLOW = 5.0, 0.05  # mL, mL/s (3 mL/min, the 2023 bench's total flow)
SYRINGE = Syringe(name="10_mL", inner_diameter=14.5673, stroke=60.0)


def synthetic_model(k: int, n: int, rng: np.random.Generator) -> StockModel:
    """n stocks over k components (see the module docstring)."""
    while True:
        fractions = rng.dirichlet(np.full(k, 0.3), size=n).T  # (k, n)
        if np.linalg.matrix_rank(np.vstack([fractions, np.ones(n)])) == min(k, n):
            break
    totals = rng.uniform(0.010, 0.015, size=n)
    return StockModel(components=tuple(f"C{i}" for i in range(k)),
                      names=tuple(f"S{j}" for j in range(n)),
                      pumps=tuple(f"P{j}" for j in range(n)),
                      concentrations=fractions * totals,
                      min_flows=np.full(n, SYRINGE.min_flow),
                      max_flows=np.full(n, SYRINGE.max_flow))


def targets(s: np.ndarray, count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(count/2, k) makeable and (count/2, k) unmakeable compositions."""
    half = max(1, count // 2)
    makeable = rng.dirichlet(np.ones(s.shape[1]), size=half) @ s.T
    projector = HullProjector(s)
    outside: list[np.ndarray] = []
    while len(outside) < half:
        x = rng.dirichlet(np.ones(s.shape[0]))
        if projector.project(x).distance > 1e-4:
            outside.append(x)
    return makeable, np.array(outside)


def fastest(fns: list[Callable[[], object]], repeat: int) -> list[float]:
    """The fastest of ``repeat`` timings of each of ``fns``, taken in turn (so that a slower
    spell of a shared machine hits all of them alike)."""
    best = [np.inf] * len(fns)
    for _ in range(repeat):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - t0)
    return best


def old_plan(faces: FaceProjector, model: StockModel, x: np.ndarray):
    """The old rule: face projection, then the best face mix (or the all-stock LP)."""
    point = faces.project(x).point
    options = face_mix_options(faces, model, point, VOLUME, FLOW, DEFAULT_MIN_DOSE)
    if options[0].deliverable:
        return options[0]
    wide = widest_mix(model, point, VOLUME, FLOW)
    if wide is None:
        return options[0]
    return mix_option(model, wide, 0.0, VOLUME, FLOW, DEFAULT_MIN_DOSE)


def new_plan(projector: HullProjector, model: StockModel, x: np.ndarray):
    sol = projector.project(x)
    return choose_mix(model, sol.point, VOLUME, FLOW, start=sol.weights)


def sweep_row(k: int, n: int, args, rng: np.random.Generator) -> dict:
    model = (StockModel.from_config(load_bench(BENCH)) if (k, n) == (3, 4)
             else synthetic_model(k, n, rng))
    s = np.array(model.fractions)
    projector = HullProjector(s)
    inside, outside = targets(s, args.targets, rng)
    xs = np.vstack([inside, outside])
    row = {"size": f"{k} × {n}", "faces": face_count(k, n)}
    faces = None
    row["face solve"] = row["face plan"] = row["build"] = row["dd"] = None
    row["same"] = row["equal"] = row["lost"] = None
    if row["faces"] <= MAX_FACES:
        t0 = time.perf_counter()
        faces = FaceProjector(s)
        row["build"] = time.perf_counter() - t0
        row["faces"] = len(faces.faces)
    timings = []
    for x in xs:
        fns = [lambda x=x: projector.project(x), lambda x=x: new_plan(projector, model, x)]
        if faces is not None:
            fns += [lambda x=x: faces.project(x), lambda x=x: old_plan(faces, model, x)]
        timings.append(fastest(fns, args.repeat))
    medians = np.median(np.array(timings), axis=0)
    row["solve"], row["plan"] = medians[0], medians[1]
    sols = [projector.project(x) for x in xs]
    row["gap"] = max(sol.kkt_gap for sol in sols)
    row["resid"] = max(sol.distance for sol in sols[:len(inside)])
    if faces is not None:
        row["face solve"], row["face plan"] = medians[2], medians[3]
        row["dd"] = max(abs(faces.project(x).distance - sol.distance) for x, sol in zip(xs, sols))
        same, equal, lost = 0, 0, 0.0
        for x in xs:
            old, new = old_plan(faces, model, x), new_plan(projector, model, x)
            same += old.support == new.support
            if old.rank_key()[:2] == new.rank_key()[:2]:  # as deliverable, as many stocks
                equal += 1
                lost = max(lost, old.margin - new.margin)
        row["same"], row["equal"], row["lost"] = same / len(xs), equal / len(xs), lost
    return row


def print_sweep(rows: list[dict]) -> None:
    def us(v):
        return "—" if v is None else f"{v * 1e6:,.0f}"
    print(f"{'size':<9}{'solve µs':>10}{'plan µs':>10}{'faces':>17}{'face solve µs':>15}"
          f"{'face plan µs':>14}{'build s':>9}{'max gap':>10}{'max resid':>11}"
          f"{'max |Δd|':>10}{'same mix':>10}{'as good':>9}{'margin lost':>13}")
    for r in rows:
        build = "—" if r["build"] is None else f"{r['build']:.2f}"
        dd = "—" if r["dd"] is None else f"{r['dd']:.1e}"
        same = "—" if r["same"] is None else f"{r['same']:.0%}"
        equal = "—" if r["equal"] is None else f"{r['equal']:.0%}"
        lost = "—" if r["lost"] is None else f"{r['lost']:.1e}"
        print(f"{r['size']:<9}{us(r['solve']):>10}{us(r['plan']):>10}{r['faces']:>17,}"
              f"{us(r['face solve']):>15}{us(r['face plan']):>14}{build:>9}"
              f"{r['gap']:>10.1e}{r['resid']:>11.1e}{dd:>10}{same:>10}{equal:>9}{lost:>13}")


def check_floor(rows: list[dict]) -> None:
    by = {r["size"]: r for r in rows}
    big, small = by.get("8 × 32"), by.get("3 × 4")
    if big is not None:
        for what, limit in (("solve", 1e-3), ("plan", 5e-3)):
            ok = big[what] <= limit
            print(f"8 × 32 {what} median {big[what] * 1e3:.3f} ms (floor ≤ {limit * 1e3:g} ms): "
                  f"{'PASS' if ok else 'FAIL'}")
    if small is not None and small["face solve"] is not None:
        for what in ("solve", "plan"):
            ok = small[what] <= small[f"face {what}"]
            print(f"3 × 4 {what} median {small[what] * 1e6:.0f} µs vs face enumeration "
                  f"{small[f'face {what}'] * 1e6:.0f} µs: {'PASS' if ok else 'FAIL'}")
    worst = max(r["resid"] for r in rows)
    print(f"max makeable residual {worst:.1e} (target ≤ 1e-12): "
          f"{'PASS' if worst <= 1e-12 else 'FAIL'}")


def tight_model(k: int, n: int, rng: np.random.Generator) -> StockModel:
    """:func:`synthetic_model` with tight pump limits: minimum flows 1, 10 or 50× the 10 mL
    syringe's, and 3 in 10 pumps with a maximum below the total flow (0.01–0.04 mL/s)."""
    base = synthetic_model(k, n, rng)
    lo = base.min_flows * rng.choice([1.0, 10.0, 50.0], size=n)
    hi = np.where(rng.random(n) < 0.3, rng.uniform(0.01, 0.04, size=n), base.max_flows)
    return StockModel(components=base.components, names=base.names, pumps=base.pumps,
                      concentrations=base.concentrations, min_flows=lo, max_flows=hi)


def tight_table(count: int, rng: np.random.Generator) -> None:
    """How often the new and the old rule find a deliverable mix when the pumps' limits bind
    (one random bench and one random makeable target per case)."""
    print(f"\ntight pump limits: {count} random benches per size, a makeable target each")
    print(f"{'size':<9}{'old deliverable':>17}{'new deliverable':>17}{'both':>7}{'new only':>10}")
    for k, n in ((4, 8), (6, 12)):
        old_ok = new_ok = both = new_only = 0
        for _ in range(count):
            model = tight_model(k, n, rng)
            x = model.fractions @ rng.dirichlet(np.ones(n))
            projector = HullProjector(model.fractions)
            old = old_plan(FaceProjector(model.fractions), model, x).deliverable
            new = new_plan(projector, model, x).deliverable
            old_ok, new_ok = old_ok + old, new_ok + new
            both, new_only = both + (old and new), new_only + (new and not old)
        print(f"{f'{k} × {n}':<9}{old_ok:>17}{new_ok:>17}{both:>7}{new_only:>10}")


def slsqp_weights(s: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The comparator: SLSQP on ‖S w − x‖ from a uniform start (original ASAB approach)."""
    n = s.shape[1]
    result = minimize(lambda w: np.linalg.norm(s @ w - x), np.full(n, 1.0 / n), method="SLSQP",
                      bounds=[(0.0, 1.0)] * n,
                      constraints=[{"type": "eq", "fun": lambda w: np.sum(w) - 1.0}])
    return result.x


def slsqp_table(count: int, rng: np.random.Generator) -> None:
    model = StockModel.from_config(load_bench(BENCH))
    s = np.array(model.fractions)
    projector = HullProjector(s)
    inside, outside = targets(s, 2 * count, rng)
    exact = np.array([projector.project(x).distance for x in outside])
    print(f"\n2023 bench: {count} makeable + {count} unmakeable requests")
    print(f"{'method':<7}{'set':<11}{'median µs':>11}{'median resid':>14}{'max resid':>12}")
    for name, solve in (("nnls", lambda x: projector.project(x).weights),
                        ("slsqp", lambda x: slsqp_weights(s, x))):
        for label, xs in (("makeable", inside), ("unmakeable", outside)):
            times, dists = [], []
            for x in xs:
                t0 = time.perf_counter()
                w = solve(x)
                times.append(time.perf_counter() - t0)
                dists.append(float(np.linalg.norm(s @ w - x)))
            resid = np.array(dists) - (exact if label == "unmakeable" else 0.0)
            print(f"{name:<7}{label:<11}{np.median(times) * 1e6:>11.1f}"
                  f"{np.median(resid):>14.2e}{np.max(resid):>12.2e}")
    print("(unmakeable rows: distance returned minus the exact distance)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", type=int, default=60, help="targets per size")
    parser.add_argument("--repeat", type=int, default=3, help="timings per target (fastest)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--sizes", default=SIZES, help="k×n list, e.g. 3x4,8x32")
    parser.add_argument("--slsqp", type=int, default=200, help="requests per set (0: skip)")
    parser.add_argument("--tight", type=int, default=200,
                        help="benches per size with tight pump limits (0: skip)")
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    sizes = [tuple(int(v) for v in item.split("x")) for item in args.sizes.split(",")]
    rows = [sweep_row(k, n, args, rng) for k, n in sizes]
    print_sweep(rows)
    check_floor(rows)
    if args.tight > 0:
        tight_table(args.tight, rng)
    if args.slsqp > 0:
        slsqp_table(args.slsqp, rng)


if __name__ == "__main__":
    main()
