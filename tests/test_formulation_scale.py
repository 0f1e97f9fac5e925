"""Formulation at any size, tested from the outside (issue 12).

* the NNLS projector (asab.formulation.hull) against the face-enumeration oracle
  (asab.formulation.faces) on random and degenerate stock sets, and exact recovery of makeable
  compositions up to 10 components × 64 stocks;
* the vertex-walk mix choice (asab.formulation.mixes) against the old face rule on the 2023
  bench, and its properties (exactness, limits, sums, determinism, never worse than its start)
  on larger synthetic benches;
* ledger-available stocks first (``available``), in choose_mix and plan_formulation;
* ``StockModel.reachable_ranges`` with and without pumps that cannot carry the whole flow,
  against a brute force over the vertices of the capped volume-fraction simplex;
* bad input.
"""

from __future__ import annotations

import functools
import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from asab.config.loader import load_bench
from asab.config.models import Syringe
from asab.errors import FormulationError, RequestError
from asab.formulation import (
    StockModel,
    choose_mix,
    mix_options,
    near_mix,
    plan_formulation,
)
from asab.formulation.faces import FaceProjector, face_mix_options
from asab.formulation.hull import KKT_TOL, HullProjector
from asab.formulation.mixes import (
    DEFAULT_MIN_DOSE,
    EXACT_TOL,
    MixOption,
    mix_option,
    widest_mix,
)

ROOT = Path(__file__).resolve().parents[1]
HIU_2023 = ROOT / "hardware_configs" / "hiu_2023"
HIU_2023_DMC_FEC = ROOT / "hardware_configs" / "hiu_2023_dmc_fec"
SYRINGE = Syringe(name="10_mL", inner_diameter=14.5673, stroke=60.0)
VOLUMES = (2.5, 5.0)

SOME = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FEW = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ------------------------------------------------------------------------------ helpers
@functools.cache
def bench_2023():
    return load_bench(HIU_2023)


@functools.cache
def model_2023() -> StockModel:
    return StockModel.from_config(bench_2023())


@functools.cache
def oracle_2023() -> FaceProjector:
    return FaceProjector(model_2023().fractions)


def to_simplex(values) -> np.ndarray:
    """Non-negative draws → a point of the simplex (a unit vector when they are all ~0)."""
    v = np.asarray(values, dtype=float)
    if v.sum() <= 1e-6:
        v = np.zeros(len(v))
        v[0] = 1.0
    return v / v.sum()


def kkt_tolerance(s: np.ndarray, x: np.ndarray) -> float:
    return KKT_TOL * max(1.0, float(x @ x), float(np.max(np.sum(s**2, axis=0))))


def synthetic_model(fractions: np.ndarray, totals: np.ndarray, min_flows=None,
                    max_flows=None) -> StockModel:
    """A StockModel of stocks with mole fractions ``fractions`` (k, n) and total amount
    concentrations ``totals`` (n,) mol/mL, on 10 mL syringes unless flows are given."""
    k, n = fractions.shape
    return StockModel(
        components=tuple(f"C{i}" for i in range(k)),
        names=tuple(f"S{j}" for j in range(n)),
        pumps=tuple(f"P{j}" for j in range(n)),
        concentrations=fractions * totals,
        min_flows=np.full(n, SYRINGE.min_flow) if min_flows is None else np.asarray(min_flows),
        max_flows=np.full(n, SYRINGE.max_flow) if max_flows is None else np.asarray(max_flows),
    )


def sub_model(model: StockModel, pool) -> StockModel:
    pool = list(pool)
    return StockModel(components=model.components,
                      names=tuple(model.names[j] for j in pool),
                      pumps=tuple(model.pumps[j] for j in pool),
                      concentrations=model.concentrations[:, pool],
                      min_flows=model.min_flows[pool], max_flows=model.max_flows[pool])


def random_model(rng: np.random.Generator, k: int, n: int, limits: str = "syringe") -> StockModel:
    """n Dirichlet(0.3) stocks over k components, 0.01–0.015 mol/mL; pump limits either the
    10 mL syringe's, or ``tight`` ones (some minima up to 50× higher, some maxima below the
    2023 bench's total flow of 0.05 mL/s) so that undeliverable mixes are common."""
    fractions = rng.dirichlet(np.full(k, 0.3), size=n).T
    totals = rng.uniform(0.010, 0.015, size=n)
    lo = np.full(n, SYRINGE.min_flow)
    hi = np.full(n, SYRINGE.max_flow)
    if limits == "tight":
        lo = lo * rng.choice([1.0, 10.0, 50.0], size=n)
        hi = np.where(rng.random(n) < 0.3, rng.uniform(0.01, 0.04, size=n), hi)
    return synthetic_model(fractions, totals, lo, hi)


def old_rule(faces: FaceProjector, model: StockModel, x: np.ndarray, volume: float, flow: float,
             min_dose: float = DEFAULT_MIN_DOSE) -> MixOption:
    """The mix rule before issue 12: the best face (every face as close as the best within
    EXACT_TOL, all its weights positive), and when none is deliverable the all-stock LP."""
    options = face_mix_options(faces, model, x, volume, flow, min_dose)
    weights, dist = faces.face_candidates(np.asarray(x, dtype=float))
    if not options:
        row = int(np.argmin(dist))
        options = [mix_option(model, weights[row], float(dist[row]), volume, flow, min_dose)]
    if not any(o.deliverable for o in options):
        achieved = model.fractions @ weights[int(np.argmin(dist))]
        wide = widest_mix(model, achieved, volume, flow, min_dose)
        if wide is not None:
            options.append(mix_option(model, wide, float(dist.min()), volume, flow, min_dose))
    return min(options, key=MixOption.rank_key)


def old_candidates_are_exact(faces: FaceProjector, model: StockModel, x: np.ndarray,
                             volume: float, flow: float) -> bool:
    """True when every face the old rule would consider makes ``x`` to rounding (no face is
    merely within EXACT_TOL of it — see test_near_face_targets_follow_the_old_rule)."""
    options = face_mix_options(faces, model, x, volume, flow, DEFAULT_MIN_DOSE)
    return all(o.distance <= 1e-13 for o in options)


def demo_requests(folder: Path) -> list[dict[str, float]]:
    """InChIKey → mole fraction of every formulation in ``folder``/demo_requests.json."""
    out = []
    for job in json.loads((folder / "demo_requests.json").read_text(encoding="utf-8")):
        for params in job["request"]["parameters"].values():
            out.append({f["chemical"]["InChIKey"]: float(f["fraction"])
                        for f in params["formulation"]})
    return out


def same_option(a: MixOption, b: MixOption) -> bool:
    return (a.support == b.support and np.array_equal(a.weights, b.weights)
            and np.array_equal(a.volumes, b.volumes) and np.array_equal(a.flows, b.flows)
            and a.deliverable == b.deliverable and a.margin == b.margin
            and a.reasons == b.reasons)


# ------------------------------------------------------------------------------ strategies
unit = st.floats(0.0, 1.0)
weight = st.one_of(st.just(0.0), st.floats(1e-4, 1.0))  # zero, or well away from a face


@st.composite
def stock_sets(draw, max_k: int = 5, max_n: int = 10) -> np.ndarray:
    """(k, n) mole-fraction matrices, including degenerate ones."""
    k = draw(st.integers(1, max_k))
    n = draw(st.integers(1, max_n))
    cols = [to_simplex(c) for c in draw(st.lists(st.lists(unit, min_size=k, max_size=k),
                                                 min_size=n, max_size=n))]
    s = np.array(cols).T
    kind = draw(st.sampled_from(["generic", "duplicate", "collinear", "coplanar", "subspace",
                                 "single", "near-duplicate", "simplex face"]))
    if kind == "single":
        s = s[:, :1]
    elif kind == "duplicate" and n >= 2:
        src = draw(st.lists(st.integers(0, n - 1), min_size=n, max_size=n))
        s = s[:, src]
    elif kind == "collinear" and n >= 3:
        ts = draw(st.lists(unit, min_size=n - 2, max_size=n - 2))
        for j, t in enumerate(ts, start=2):
            s[:, j] = t * s[:, 0] + (1 - t) * s[:, 1]
    elif kind == "coplanar" and n >= 4:
        for j in range(3, n):
            s[:, j] = s[:, :3] @ to_simplex(draw(st.lists(unit, min_size=3, max_size=3)))
    elif kind == "subspace" and k >= 2:
        m = draw(st.integers(1, k - 1))  # every stock a mixture of m "parent" compositions
        parents = s[:, :m] if n >= m else s[:, :1]
        coef = [to_simplex(draw(st.lists(unit, min_size=parents.shape[1],
                                         max_size=parents.shape[1]))) for _ in range(n)]
        s = parents @ np.array(coef).T
    elif kind == "simplex face" and k >= 2:  # some components in no stock at all
        keep = draw(st.lists(st.booleans(), min_size=k, max_size=k))
        keep[0] = True
        s = np.array([to_simplex(c) for c in (s * np.array(keep)[:, None]).T]).T
    elif kind == "near-duplicate" and n >= 2:
        eps = 10.0 ** draw(st.floats(-14.0, -6.0))
        s[:, 1] = s[:, 0] + eps * np.cos(np.arange(k))
    return s


@st.composite
def targets_for(draw, s: np.ndarray) -> np.ndarray:
    k, n = s.shape
    kind = draw(st.sampled_from(["inside", "simplex", "box", "vertex", "stock"]))
    if kind == "inside":
        return s @ to_simplex(draw(st.lists(unit, min_size=n, max_size=n)))
    if kind == "simplex":
        return to_simplex(draw(st.lists(unit, min_size=k, max_size=k)))
    if kind == "box":  # off the composition plane too (chemicals no stock holds)
        return np.array(draw(st.lists(st.floats(-1.0, 2.0), min_size=k, max_size=k)))
    if kind == "vertex":
        return np.eye(k)[draw(st.integers(0, k - 1))]
    return s[:, draw(st.integers(0, n - 1))].copy()


# ------------------------------------------------------------------------------ 1. oracle
@SOME
@given(st.data())
def test_projection_agrees_with_face_enumeration(data: st.DataObject) -> None:
    s = data.draw(stock_sets())
    x = data.draw(targets_for(s))
    new = HullProjector(s).project(x)
    old = FaceProjector(s).project(x)
    tol = kkt_tolerance(s, x)
    assert abs(new.distance - old.distance) <= 1e-10
    assert 0.0 <= new.kkt_gap <= tol or abs(new.kkt_gap) <= 1e-15
    assert old.kkt_gap <= tol
    w = new.weights
    assert w.shape == (s.shape[1],) and np.all(w >= 0.0) and abs(w.sum() - 1.0) <= 1e-12
    assert new.point == pytest.approx(s @ w, abs=1e-14)
    assert new.distance == pytest.approx(float(np.linalg.norm(s @ w - x)), abs=1e-14)
    assert new.support == tuple(np.flatnonzero(w).tolist())


def test_projection_oracle_on_hand_made_degenerate_sets() -> None:
    """A few degenerate sets spelled out: one stock; two identical stocks; three collinear
    stocks; all stocks in the plane x₃ = 0 of a 4-component space; a target far outside."""
    cases = [
        (np.array([[0.2], [0.8]]), np.array([0.5, 0.5])),
        (np.array([[0.3, 0.3], [0.7, 0.7]]), np.array([0.0, 1.0])),
        (np.array([[1.0, 0.5, 0.0], [0.0, 0.5, 1.0]]), np.array([0.7, 0.7])),
        (np.array([[0.6, 0.1, 0.3, 0.2], [0.4, 0.9, 0.3, 0.5], [0, 0, 0.4, 0.3],
                   [0, 0, 0, 0]]), np.array([0.1, 0.1, 0.1, 0.7])),
        (np.eye(3), np.array([2.0, -1.0, 0.5])),
    ]
    for s, x in cases:
        new, old = HullProjector(s).project(x), FaceProjector(s).project(x)
        assert abs(new.distance - old.distance) <= 1e-12
        assert new.kkt_gap <= kkt_tolerance(s, x)
    # the single stock: the point is the stock whatever the target
    sol = HullProjector(cases[0][0]).project(np.array([1.0, 0.0]))
    assert sol.support == (0,) and sol.point == pytest.approx([0.2, 0.8], abs=1e-15)


# ------------------------------------------------------------------------------ 2. recovery
@SOME
@given(k=st.integers(1, 10), n=st.integers(1, 64), seed=st.integers(0, 2**32 - 1),
       alpha=st.sampled_from([0.05, 0.3, 1.0, 5.0]), sparse=st.booleans(),
       degenerate=st.sampled_from(["none", "duplicates", "subspace"]))
def test_makeable_compositions_are_recovered(k: int, n: int, seed: int, alpha: float,
                                             sparse: bool, degenerate: str) -> None:
    rng = np.random.default_rng(seed)
    s = rng.dirichlet(np.full(k, 0.3), size=n).T
    if degenerate == "duplicates":
        s = s[:, rng.integers(0, n, size=n)]
    elif degenerate == "subspace" and k >= 2:
        parents = rng.dirichlet(np.full(k, 0.3), size=int(rng.integers(1, k))).T
        s = parents @ rng.dirichlet(np.ones(parents.shape[1]), size=n).T
    w = rng.dirichlet(np.full(n, alpha))
    if sparse:
        w[rng.random(n) < 0.5] = 0.0
        if not w.any():
            w[int(rng.integers(n))] = 1.0
        w /= w.sum()
    x = s @ w
    sol = HullProjector(s).project(x)
    assert sol.distance <= 1e-12
    assert sol.kkt_gap <= kkt_tolerance(s, x)
    assert np.all(sol.weights >= 0) and abs(sol.weights.sum() - 1.0) <= 1e-12


# ------------------------------------------------------------------------------ 3. 2023 bench
def _compare_with_old_rule(x_point: np.ndarray, start: np.ndarray | None = None) -> None:
    model, faces = model_2023(), oracle_2023()
    flow = bench_2023().settings.total_flow
    for volume in VOLUMES:
        old = old_rule(faces, model, x_point, volume, flow)
        new = choose_mix(model, x_point, volume, flow, start=start)
        assert new.support == old.support, (volume, old.support, new.support)
        assert new.deliverable == old.deliverable
        assert np.max(np.abs(new.volumes - old.volumes)) <= 1e-9
        assert np.max(np.abs(new.flows - old.flows)) <= 1e-9


@SOME
@given(st.lists(weight, min_size=4, max_size=4).filter(lambda w: sum(w) > 0.05))
@example([0.1943, 0.3233, 0.3431, 0.1394])  # made only by the all-stock LP (widest_mix)
@example([0.25, 0.25, 0.25, 0.25])  # two 3-stock mixes make it
@example([0.5, 0.0, 0.0, 0.5])  # on the diagonal: a 2-stock mix
@example([0.0, 1.0, 0.0, 0.0])  # a stock alone
def test_2023_bench_makeable_targets_choose_as_before(draws: list[float]) -> None:
    model = model_2023()
    x = model.fractions @ to_simplex(draws)
    assume(all(old_candidates_are_exact(oracle_2023(), model, x, v,
                                        bench_2023().settings.total_flow) for v in VOLUMES))
    _compare_with_old_rule(x)


@SOME
@given(st.lists(unit, min_size=3, max_size=3).filter(lambda w: sum(w) > 0.05))
def test_2023_bench_projected_targets_choose_as_before(draws: list[float]) -> None:
    model = model_2023()
    sol = model.projector.project(to_simplex(draws))
    assume(all(old_candidates_are_exact(oracle_2023(), model, sol.point, v,
                                        bench_2023().settings.total_flow) for v in VOLUMES))
    _compare_with_old_rule(sol.point, start=sol.weights)
    _compare_with_old_rule(sol.point)


@pytest.mark.parametrize("request_index", range(len(demo_requests(HIU_2023))))
def test_2023_demo_requests_choose_as_before(request_index: int) -> None:
    model = model_2023()
    xc, rest = model.vector(demo_requests(HIU_2023)[request_index])
    assert rest == 0.0
    sol = model.projector.project(xc)
    _compare_with_old_rule(sol.point, start=sol.weights)


@pytest.mark.parametrize("weights", [
    [0.5, 1e-10, 1e-10, 0.5 - 2e-10],  # old: 2 stocks (0, 3) at 8.8e-13; new: 3 stocks
    [0.0, 2e-9, 0.73, 0.27 - 2e-9],  # old: (2, 3) deliverable at 3.5e-10; new: undeliverable
])
def test_near_face_targets_follow_the_old_rule(weights: list[float]) -> None:
    model = model_2023()
    x = model.fractions @ np.array(weights)
    _compare_with_old_rule(x)


def test_near_face_target_plan_is_still_deliverable() -> None:
    """What the divergence above means for a plan: the 2023 bench still gets a deliverable
    mix within tolerance (through near_mix) for the second near-face target."""
    model = model_2023()
    x = model.fractions @ np.array([0.0, 2e-9, 0.73, 0.27 - 2e-9])
    plan = plan_formulation(bench_2023(), dict(zip(model.components, x.tolist())), 2.5)
    assert plan.deliverable and plan.distance <= plan.tolerance
    assert set(plan.stock_volumes) == {"EC-EMC", "EMC"}


# ------------------------------------------------------------------------------ 4. properties
def _check_options(model: StockModel, x: np.ndarray, volume: float, flow: float,
                   options: list[MixOption]) -> None:
    assert options
    for o in options:
        assert np.max(np.abs(model.mix(o.volumes) - x)) <= 1e-9, o.support
        assert o.volumes.sum() == pytest.approx(volume, rel=1e-12)
        assert o.flows.sum() == pytest.approx(flow, rel=1e-12)
        assert np.all(o.volumes >= 0) and np.all(o.weights >= 0)
        assert o.support == tuple(np.flatnonzero(o.weights).tolist())
        outside = np.setdiff1d(np.arange(len(model.names)), o.support)
        assert np.all(o.volumes[outside] == 0) and np.all(o.flows[outside] == 0)
        if o.deliverable:
            used = list(o.support)
            assert np.all(o.flows[used] >= model.min_flows[used])
            assert np.all(o.flows[used] <= model.max_flows[used])
            assert np.all(o.volumes[used] >= DEFAULT_MIN_DOSE)
            assert o.margin >= 0 and not o.reasons
        else:
            assert o.reasons and o.margin < 0
    keys = [o.rank_key() for o in options]
    assert keys[0] == min(keys)  # the first option is the best by the documented rule


@FEW
@given(size=st.sampled_from([(6, 12), (8, 32), (5, 9)]), seed=st.integers(0, 2**32 - 1),
       limits=st.sampled_from(["syringe", "tight"]), volume=st.sampled_from([0.05, 2.5, 5.0]),
       alpha=st.sampled_from([0.1, 1.0]))
def test_mix_choice_properties_at_larger_sizes(size: tuple[int, int], seed: int, limits: str,
                                               volume: float, alpha: float) -> None:
    rng = np.random.default_rng(seed)
    model = random_model(rng, *size, limits=limits)
    flow = 0.05
    x = model.fractions @ rng.dirichlet(np.full(size[1], alpha))
    options = mix_options(model, x, volume, flow)
    _check_options(model, x, volume, flow, options)
    best = choose_mix(model, x, volume, flow)
    assert same_option(best, options[0])
    # deterministic: again, with the projection given, and on a fresh model (no cache)
    sol = model.projector.project(x)
    fresh = synthetic_model(model.fractions, model.totals, model.min_flows, model.max_flows)
    for again in (choose_mix(model, x, volume, flow), choose_mix(model, x, volume, flow,
                                                                  start=sol.weights),
                  choose_mix(fresh, x, volume, flow)):
        assert again.support == best.support
        assert np.allclose(again.volumes, best.volumes, rtol=0, atol=1e-12)
    assert same_option(choose_mix(model, x, volume, flow), best)
    # never worse than the projection's own vertex (where the walk starts) by the rank key
    start = mix_option(model, sol.weights, sol.distance, volume, flow, DEFAULT_MIN_DOSE)
    assert not _worse(best.rank_key(), start.rank_key()), (best.rank_key(), start.rank_key())
    # near_mix: when it answers, it is deliverable and within the tolerance
    near = near_mix(model, x, volume, flow, DEFAULT_MIN_DOSE, 1e-4)
    if near is not None:
        assert near.deliverable and near.distance <= 1e-4
        if best.deliverable:
            assert near.support == best.support


def test_new_rule_versus_old_rule_at_6x12() -> None:
    """Where the oracle is cheap (6 × 12: 2,509 faces), compare with the old rule. Neither
    finds a deliverable mix whenever the other does (the walk is a local search; the old rule
    saw every face). Asserted: the choice is never worse than its start vertex, and it is the
    best of its neighbourhood — no exact vertex of P one pivot away (the oracle's exact faces
    sharing all stocks but one) has a better rank key. Counted and printed: how often each
    rule, and the plan's near_mix fallback, gives a deliverable mix."""
    rng = np.random.default_rng(20261207)
    counts = {"targets": 0, "old": 0, "new": 0, "new or near_mix": 0, "same support": 0}
    for limits in ("syringe", "tight"):
        for _ in range(2):
            model = random_model(rng, 6, 12, limits=limits)
            faces = FaceProjector(model.fractions)
            for _ in range(15):
                x = model.fractions @ rng.dirichlet(np.full(12, rng.choice([0.1, 1.0])))
                old = old_rule(faces, model, x, 5.0, 0.05)
                new = choose_mix(model, x, 5.0, 0.05)
                sol = model.projector.project(x)
                start = mix_option(model, sol.weights, sol.distance, 5.0, 0.05, DEFAULT_MIN_DOSE)
                assert not _worse(new.rank_key(), start.rank_key())
                if len(new.support) == 6:  # a vertex with a full basis (not the LP mix)
                    vertices = [o for o in face_mix_options(faces, model, x, 5.0, 0.05,
                                                            DEFAULT_MIN_DOSE)
                                if o.distance <= 1e-12]
                    assert new.support in {o.support for o in vertices}
                    for o in vertices:
                        if len(set(o.support) & set(new.support)) == 5:
                            assert not _worse(new.rank_key(), o.rank_key()), (new.support,
                                                                                o.support)
                near = None if new.deliverable else near_mix(model, x, 5.0, 0.05,
                                                             DEFAULT_MIN_DOSE, 1e-4)
                counts["targets"] += 1
                counts["old"] += old.deliverable
                counts["new"] += new.deliverable
                counts["new or near_mix"] += new.deliverable or near is not None
                counts["same support"] += old.support == new.support
    print(f"6 x 12 old vs new rule: {counts}")
    assert counts["new"] >= counts["targets"] // 2  # a sanity floor, not a guarantee


def _worse(key: tuple, than: tuple) -> bool:
    """``key`` ranks strictly worse than ``than`` (margins compared to 1e-9)."""
    if key[:2] != than[:2]:
        return key[:2] > than[:2]
    return key[2] > than[2] + 1e-9


# A stock set found by a randomised search (integer masses of 4 chemicals, molar masses
# 100 g/mol, density 1 g/mL; stocks S1 and S2 identical): the request, an exact mix of the
# stocks, is projected by NNLS onto 5 stocks in 4 components — more than the d + 1 = 4 of
# hull.py's Carathéodory claim, so the start of the vertex walk is not a vertex.
DEPENDENT_MASSES = np.array([[0, 7, 18, 0], [10, 6, 17, 18], [10, 6, 17, 18], [14, 5, 6, 1],
                             [0, 7, 19, 0], [8, 19, 2, 16], [9, 2, 10, 13]], dtype=float).T
DEPENDENT_WEIGHTS = np.array([4, 3, 5, 0, 9, 4, 0]) / 25


def _dependent_bench():
    from test_formulation import synthetic_bench  # tests/ is on sys.path

    config = synthetic_bench(DEPENDENT_MASSES * 10.0, [100.0] * 4, [1.0] * 7)
    model = StockModel.from_config(config)
    return config, model, model.fractions @ DEPENDENT_WEIGHTS


def test_projection_support_is_affinely_independent() -> None:
    _, model, x = _dependent_bench()
    sol = model.projector.project(x)
    assert sol.distance <= 1e-12
    lifted = np.vstack([model.fractions, np.ones(len(model.names))])
    assert len(sol.support) <= np.linalg.matrix_rank(model.fractions)  # 5 > 4 here
    assert np.linalg.matrix_rank(lifted[:, list(sol.support)]) == len(sol.support)


def test_plan_of_a_request_whose_projection_support_is_dependent() -> None:
    config, model, x = _dependent_bench()
    old = old_rule(FaceProjector(model.fractions), model, x, 2.5, config.settings.total_flow)
    assert old.deliverable and old.distance <= 1e-12
    plan = plan_formulation(config, dict(zip(model.components, x.tolist())), 2.5)
    assert plan.makeable and not plan.flagged
    assert plan.distance <= 1e-9  # was 0.102 before the fix
    assert plan.deliverable  # was False (S5, S6 below their pumps' minimum flow)


@pytest.mark.parametrize("bench", ["hiu_2023_dmc_fec", "synthetic 3x6"])
def test_choose_mix_from_a_non_vertex_start_stays_exact(bench: str) -> None:
    if bench == "hiu_2023_dmc_fec":
        config = load_bench(HIU_2023_DMC_FEC)
        model, flow = StockModel.from_config(config), config.settings.total_flow
    else:
        model, flow = random_model(np.random.default_rng(0), 3, 6), 0.05
    n = len(model.names)
    start = np.full(n, 1.0 / n)  # an optimal solution (distance 0): a valid projection weight
    x = model.fractions @ start
    assert HullProjector(model.fractions).project(x).distance <= 1e-12
    for volume in VOLUMES:
        options = mix_options(model, x, volume, flow, start=start)
        for o in options:
            assert np.max(np.abs(model.mix(o.volumes) - x)) <= 1e-9, (o.support, o.distance)


# ------------------------------------------------------------------------------ 5. available
@FEW
@given(k=st.integers(2, 5), n=st.integers(3, 10), seed=st.integers(0, 2**32 - 1),
       needs=st.booleans())
def test_unavailable_stock_is_avoided_when_possible(k: int, n: int, seed: int,
                                                    needs: bool) -> None:
    rng = np.random.default_rng(seed)
    model = random_model(rng, k, n)
    skipped = int(rng.integers(n))
    w = rng.dirichlet(np.ones(n))
    if not needs:
        w[skipped] = 0.0
        w /= w.sum()
    x = model.fractions @ w
    mask = np.ones(n, dtype=bool)
    mask[skipped] = False
    pool = np.flatnonzero(mask)
    chosen = choose_mix(model, x, 5.0, 0.05, available=mask)
    _check_options(model, x, 5.0, 0.05, [chosen])
    rest = sub_model(model, pool)
    full_distance = model.projector.project(x).distance
    if rest.projector.project(x).distance <= full_distance + EXACT_TOL:
        alone = choose_mix(rest, x, 5.0, 0.05)
        if alone.deliverable:  # the available stocks make it: the same mix, from them
            assert skipped not in chosen.support
            assert chosen.support == tuple(pool[list(alone.support)].tolist())
            assert np.allclose(chosen.volumes[pool], alone.volumes, rtol=0, atol=1e-12)
    else:  # every exact mix needs the stock
        assert skipped in chosen.support
    # all stocks available, or none: the same as no mask at all
    plain = choose_mix(model, x, 5.0, 0.05)
    assert same_option(choose_mix(model, x, 5.0, 0.05, available=[True] * n), plain)
    assert same_option(choose_mix(model, x, 5.0, 0.05, available=[False] * n), plain)


@FEW
@given(st.lists(weight, min_size=4, max_size=4).filter(lambda w: sum(w) > 0.05),
       st.integers(0, 3))
@example([0.25, 0.25, 0.25, 0.25], 0)
@example([0.25, 0.25, 0.25, 0.25], 3)
@example([0.0, 1.0, 0.0, 0.0], 1)
def test_2023_plan_with_an_unavailable_stock(draws: list[float], skipped: int) -> None:
    config, model = bench_2023(), model_2023()
    x = model.fractions @ to_simplex(draws)
    request = dict(zip(model.components, x.tolist()))
    name = model.names[skipped]
    available = [s for s in model.names if s != name]
    plan = plan_formulation(config, request, 2.5, available=available)
    plain = plan_formulation(config, request, 2.5)
    named = [n for n in plan.notes if "does not list as available" in n]
    used = name in plan.stock_volumes
    assert used == bool(named) and all(name in n for n in named)
    assert not any("does not list as available" in n for n in plain.notes)
    rest = StockModel.from_config(config, available)
    alone = choose_mix(rest, x, 2.5, config.settings.total_flow)
    if rest.closest_makeable(request)[2] <= EXACT_TOL and alone.deliverable:
        assert not used and plan.deliverable and plan.distance <= 1e-9
        assert set(plan.stock_volumes) == {rest.names[j] for j in alone.support}
    elif rest.closest_makeable(request)[2] > plan.tolerance:
        assert used  # no mix within tolerance avoids it
    if not used:
        assert plan.distance <= plan.tolerance


def test_needed_unavailable_stock_is_used_and_named() -> None:
    config, model = bench_2023(), model_2023()
    for j, name in enumerate(model.names):
        request = dict(zip(model.components, model.fractions[:, j].tolist()))
        others = [s for s in model.names if s != name]
        rest = StockModel.from_config(config, others)
        plan = plan_formulation(config, request, 5.0, available=others)
        if rest.closest_makeable(request)[2] > plan.tolerance:
            assert list(plan.stock_volumes) == [name]
            assert any("does not list as available" in n and name in n for n in plan.notes)


def test_available_on_the_dmc_fec_bench() -> None:
    """The 9-stock example bench: every demo request, each stock marked unavailable in turn:
    the plan avoids it whenever the rest make the request deliverably, names it otherwise."""
    config = load_bench(HIU_2023_DMC_FEC)
    model = StockModel.from_config(config)
    flow = config.settings.total_flow
    assert len(model.names) == 9 and len(model.components) == 5
    for request in demo_requests(HIU_2023_DMC_FEC):
        xc, rest_norm = model.vector(request)
        if rest_norm > 0 or model.projector.project(xc).distance > config.settings.makeable_tolerance:
            continue
        plain = choose_mix(model, xc, 2.5, flow)
        for j in plain.support:
            mask = np.ones(len(model.names), dtype=bool)
            mask[j] = False
            chosen = choose_mix(model, xc, 2.5, flow, available=mask)
            _check_options(model, xc, 2.5, flow, [chosen])
            rest = sub_model(model, np.flatnonzero(mask))
            alone = choose_mix(rest, xc, 2.5, flow)
            if (rest.projector.project(xc).distance
                    <= model.projector.project(xc).distance + EXACT_TOL and alone.deliverable):
                assert j not in chosen.support
            others = [s for i, s in enumerate(model.names) if i != j]
            plan = plan_formulation(config, request, 2.5, available=others)
            named = any("does not list as available" in n and model.names[j] in n
                        for n in plan.notes)
            assert named == (model.names[j] in plan.stock_volumes)


# ------------------------------------------------------------------------------ 6. ranges
def capped_vertices(u: np.ndarray) -> list[np.ndarray]:
    """Vertices of {v : 0 ≤ v ≤ u, Σv = 1}: all coordinates but one at 0 or u_j."""
    n = len(u)
    out = []
    for free in range(n):
        others = [j for j in range(n) if j != free]
        for bits in itertools.product((0.0, 1.0), repeat=n - 1):
            v = np.zeros(n)
            v[others] = u[others] * np.array(bits)
            v[free] = 1.0 - v.sum()
            if -1e-12 <= v[free] <= u[free] + 1e-12:
                v[free] = min(max(v[free], 0.0), u[free])
                out.append(v)
    return out


def test_ranges_without_a_binding_cap_are_the_stock_extremes() -> None:
    for model in (model_2023(), StockModel.from_config(load_bench(HIU_2023_DMC_FEC)),
                  random_model(np.random.default_rng(3), 8, 32)):
        s = model.fractions
        expected = {key: (float(s[i].min()), float(s[i].max()))
                    for i, key in enumerate(model.components)}
        assert model.reachable_ranges() == expected
        assert model.reachable_ranges(float(model.max_flows.min())) == expected
        assert model.reachable_ranges(0.05) == expected


@FEW
@given(k=st.integers(1, 5), n=st.integers(1, 6), seed=st.integers(0, 2**32 - 1))
def test_capped_ranges_match_a_brute_force_over_vertices(k: int, n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    flow = 0.05
    capped = rng.random(n) < 0.6
    capped[int(rng.integers(n))] = True  # at least one pump below the total flow
    max_flows = np.where(capped, rng.uniform(0.002, 0.049, size=n), SYRINGE.max_flow)
    model = synthetic_model(rng.dirichlet(np.full(k, 0.5), size=n).T,
                            rng.uniform(0.005, 0.02, size=n), max_flows=max_flows)
    u = np.minimum(1.0, max_flows / flow)
    assume(abs(u.sum() - 1.0) > 1e-6)  # not on the edge of feasibility (LP tolerances)
    vertices = capped_vertices(u)
    if not vertices:
        with pytest.raises(RequestError):
            model.reachable_ranges(flow)
        return
    ranges = model.reachable_ranges(flow)
    xs = np.array([model.mix(v) for v in vertices])  # x(v) = C v / Σ(C v)
    for i, key in enumerate(model.components):
        lo, hi = ranges[key]
        assert lo == pytest.approx(xs[:, i].min(), abs=1e-9)
        assert hi == pytest.approx(xs[:, i].max(), abs=1e-9)
        # attained by a feasible mix (a vertex: 0 ≤ v ≤ u, Σv = 1)
        for bound in (lo, hi):
            v = vertices[int(np.argmin(np.abs(xs[:, i] - bound)))]
            assert np.all(v >= 0) and np.all(v <= u + 1e-12) and abs(v.sum() - 1) <= 1e-12
            assert abs(model.mix(v)[i] - bound) <= 1e-9
    # capping can only shrink the ranges
    free = model.reachable_ranges()
    for key, (lo, hi) in ranges.items():
        assert free[key][0] - 1e-12 <= lo <= hi + 1e-12 and hi <= free[key][1] + 1e-12


def test_capped_ranges_worked_example() -> None:
    """Two stocks A (pure C0) and B (pure C1), equal total concentration, A's pump capped at
    0.01 mL/s of a 0.05 mL/s flow: C0 is at most 20 %, C1 at least 80 %."""
    model = synthetic_model(np.eye(2), np.array([0.01, 0.01]),
                            max_flows=np.array([0.01, SYRINGE.max_flow]))
    ranges = model.reachable_ranges(0.05)
    assert ranges["C0"] == pytest.approx((0.0, 0.2), abs=1e-12)
    assert ranges["C1"] == pytest.approx((0.8, 1.0), abs=1e-12)
    with pytest.raises(RequestError):  # both capped below half: no mix carries 0.05 mL/s
        synthetic_model(np.eye(2), np.array([0.01, 0.01]),
                        max_flows=np.array([0.02, 0.02])).reachable_ranges(0.05)


# ------------------------------------------------------------------------------ 7. bad input
BAD_TARGETS = [
    [math.nan, 0.5, 0.5], [math.inf, 0.0, 0.0], [-math.inf, 0.5, 0.5], [0.5, 0.5],
    [0.2, 0.3, 0.3, 0.2], [[0.2, 0.3, 0.5]], [[0.2], [0.3], [0.5]], 0.5, [], None,
]


@pytest.mark.parametrize("target", BAD_TARGETS, ids=repr)
def test_bad_targets_raise_formulation_error(target) -> None:
    model = model_2023()
    with pytest.raises(FormulationError):
        HullProjector(model.fractions).project(target)
    with pytest.raises(FormulationError):
        FaceProjector(model.fractions).project(target)
    with pytest.raises(FormulationError):
        choose_mix(model, target, 2.5, 0.05)
    with pytest.raises(FormulationError):
        mix_options(model, target, 2.5, 0.05)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_a_target_whose_square_overflows_is_refused() -> None:
    """x·x = inf: the solver refuses it (the oracle does not check this; it is a test tool)."""
    model = model_2023()
    for call in (lambda x: model.projector.project(x), lambda x: choose_mix(model, x, 2.5, 0.05)):
        with pytest.raises(FormulationError):
            call(np.array([1e200, 0.0, 0.0]))


@pytest.mark.parametrize("points", [
    np.array([[0.5, math.nan], [0.5, 0.5]]), np.array([[math.inf], [0.0]]), np.zeros((0, 3)),
    np.zeros((3, 0)), np.array([0.2, 0.8]), np.zeros((2, 2, 2)),
], ids=["nan", "inf", "no components", "no stocks", "1-D", "3-D"])
def test_bad_stock_matrices_raise_formulation_error(points: np.ndarray) -> None:
    with pytest.raises(FormulationError):
        HullProjector(points)
    with pytest.raises(FormulationError):
        FaceProjector(points)


@pytest.mark.parametrize("available", [[True] * 3, [True] * 5, [], [[True] * 4]])
def test_available_of_the_wrong_length_raises(available) -> None:
    model = model_2023()
    x = model.fractions @ np.full(4, 0.25)
    with pytest.raises(ValueError):
        choose_mix(model, x, 2.5, 0.05, available=available)
    with pytest.raises(ValueError):
        mix_options(model, x, 2.5, 0.05, available=available)


@pytest.mark.parametrize("flow", [math.nan, 0.0, -1.0, math.inf, -math.inf])
def test_reachable_ranges_bad_total_flow(flow: float) -> None:
    with pytest.raises(RequestError):
        model_2023().reachable_ranges(total_flow=flow)
