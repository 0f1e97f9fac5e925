"""Tests of asab.formulation: bookkeeping, exact closest-makeable solver, mix choice, plans."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from asab.config.loader import load_bench
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.optimize import minimize

from asab.config.models import (
    BenchConfig,
    BenchSettings,
    Chemical,
    ComponentMass,
    Pump,
    StockSolution,
    Syringe,
    Tubing,
)
from asab.errors import ConfigError, NotMakeableError, RequestError
from asab.formulation import (
    FormulationPlan,
    HullProjector,
    StockModel,
    achieved_composition,
    achieved_from_masses,
    by_name,
    kkt_gap,
    mix_options,
    parse_composition,
    plan_formulation,
)

BENCH_DIR = Path(__file__).resolve().parents[1] / "hardware_configs" / "hiu_2023"
LIPF6, EC, EMC, DMC = (
    "AXPLOJNSKRXQPA-UHFFFAOYSA-N",
    "KMTRUDSVKNLOMY-UHFFFAOYSA-N",
    "JBTWLSYIZRCDFO-UHFFFAOYSA-N",
    "IEJIGPNLZYLLBP-UHFFFAOYSA-N",
)
SYRINGE_10ML = Syringe(name="10_mL", inner_diameter=14.5673, stroke=60.0)
PUMPS = tuple(Pump(name=f"{p}0.0", node=f"{p}0.0", syringe="10_mL") for p in "ABCDEF")
FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ------------------------------------------------------------------------------ fixtures
def _rows(name: str) -> list[dict[str, str]]:
    with open(BENCH_DIR / name, encoding="utf-8-sig", newline="") as fh:
        return list(csv.DictReader(fh, delimiter=";"))


def _bench_from_csv() -> BenchConfig:
    """The 2023 bench built from its CSV files (10 mL syringes, pumps A0.0–F0.0)."""
    chems = tuple(
        Chemical(name=r["name"], inchikey=r["InChIKey"], smiles=r["SMILES"],
                 molar_mass=float(r["molar_mass_g_per_mol"]))
        for r in _rows("chemicals.csv")
    )
    keys = {c.inchikey for c in chems}
    stocks = tuple(
        StockSolution(
            name=r["name"], uuid=r["ID"], reservoir=r["reservoir"], pump=r["pump"],
            total_mass=float(r["mass_total"]),
            total_mass_uncertainty=float(r["mass_total_uncertainty"]),
            density=float(r["density"]), density_uncertainty=float(r["density_uncertainty"]),
            density_temperature=float(r["density_temperature"]),
            components={k: ComponentMass(mass=float(r[k]), uncertainty=float(r[f"{k}_uncertainty"]))
                        for k in r if k in keys},
        )
        for r in _rows("stockSolutions.csv")
    )
    return BenchConfig(name="hiu_2023", chemicals=chems, stocks=stocks, syringes=(SYRINGE_10ML,),
                       pumps=PUMPS, valves=(), instruments=(), tubing=Tubing(nodes=(), edges=()))


def _bench_2023() -> BenchConfig:
    return load_bench(BENCH_DIR)


@pytest.fixture(scope="module")
def bench() -> BenchConfig:
    return _bench_2023()


@pytest.fixture(scope="module")
def model(bench: BenchConfig) -> StockModel:
    return StockModel.from_config(bench)


def synthetic_bench(masses: np.ndarray, molar: list[float], density: list[float],
                    total_flow: float = 0.05) -> BenchConfig:
    """A bench with chemicals X0… (molar masses ``molar``) and stocks S0… (masses (k, n) g)."""
    k, n = masses.shape
    chems = tuple(Chemical(name=f"X{i}", inchikey=f"XXXXXXXXXXXXX{chr(65 + i)}-UHFFFAOYSA-N",
                           smiles="C", molar_mass=molar[i]) for i in range(k))
    stocks = tuple(
        StockSolution(name=f"S{j}", reservoir=f"Reservoir{j}", pump=PUMPS[j % 6].name,
                      total_mass=float(masses[:, j].sum()), density=density[j],
                      components={chems[i].inchikey: ComponentMass(mass=float(masses[i, j]))
                                  for i in range(k)})
        for j in range(n)
    )
    return BenchConfig(name="synthetic", chemicals=chems, stocks=stocks, syringes=(SYRINGE_10ML,),
                       pumps=PUMPS, valves=(), instruments=(), tubing=Tubing(nodes=(), edges=()),
                       settings=BenchSettings(total_flow=total_flow))


def _simplex(draws: list[float]) -> np.ndarray:
    w = np.asarray(draws, dtype=float)
    return w / w.sum()


weights_st = st.lists(st.floats(0.0, 1.0), min_size=4, max_size=4).filter(lambda w: sum(w) > 0.05)


# ------------------------------------------------------------------------------ bookkeeping
def test_worked_concentrations_of_the_old_fixture() -> None:
    masses = np.array([[30.38], [63.086], [146.734], [0.0]])
    cfg = synthetic_bench(masses, [151.91, 88.06, 104.1, 90.08], [1.2])
    stock = cfg.stocks[0].model_copy(update={"total_mass": 240.203})
    cfg = cfg.model_copy(update={"stocks": (stock,)})
    m = StockModel.from_config(cfg)
    expected = [0.000999089, 0.003578962, 0.007041786, 0.0]
    assert m.concentrations[:, 0] == pytest.approx(expected, rel=0, abs=1e-9)  # 9 decimals given
    assert m.fractions[:, 0].sum() == pytest.approx(1.0)


def test_2023_model_and_reachable_ranges(model: StockModel) -> None:
    assert model.components == (LIPF6, EC, EMC)
    assert model.names[:2] == ("1.5M-LiPF6-EC-EMC", "1.5M-LiPF6-EMC")
    ranges = model.reachable_ranges()
    assert abs(ranges[LIPF6][1] - 0.143) < 1e-3 and ranges[LIPF6][0] == 0.0
    assert abs(ranges[EC][1] - 0.54) < 5e-3
    assert ranges[EMC][1] == pytest.approx(1.0)


def test_loaded_bench_agrees_with_the_csv_files(model: StockModel) -> None:
    from_csv = StockModel.from_config(_bench_from_csv())
    assert from_csv.names == model.names and from_csv.pumps == model.pumps
    assert from_csv.concentrations == pytest.approx(model.concentrations, rel=1e-12)
    assert from_csv.min_flows == pytest.approx(model.min_flows, rel=1e-12)


def test_stock_selection(bench: BenchConfig) -> None:
    m = StockModel.from_config(bench, ["EMC", "EC-EMC"])
    assert m.names == ("EMC", "EC-EMC")
    assert m.components == (LIPF6, EC, EMC)  # listed with 0 g, still a component
    with pytest.raises(RequestError):
        StockModel.from_config(bench, ["nope"])
    with pytest.raises(RequestError):
        StockModel.from_config(bench, [])
    with pytest.raises(ConfigError):
        StockModel.from_config(bench.model_copy(update={"chemicals": bench.chemicals[1:]}))


# ------------------------------------------------------------------------------ exact recovery
@FAST
@given(weights_st, st.floats(0.5, 20.0))
def test_convex_mixes_of_2023_stocks_are_recovered(bench: BenchConfig, model: StockModel,
                                                    draws: list[float], volume: float) -> None:
    x = model.fractions @ _simplex(draws)
    request = dict(zip(model.components, x.tolist()))
    assert model.closest_makeable(request)[2] <= 1e-9
    plan = plan_formulation(bench, request, volume)
    _assert_exact(plan, request, volume)


@FAST
@given(st.integers(2, 5), st.integers(1, 6), st.data())
def test_convex_mixes_of_synthetic_stocks_are_recovered(k: int, n: int,
                                                        data: st.DataObject) -> None:
    mass = st.floats(0.0, 50.0) | st.just(0.0)
    masses = np.array(data.draw(st.lists(st.lists(mass, min_size=k, max_size=k),
                                         min_size=n, max_size=n))).T
    masses[0, masses.sum(axis=0) <= 1e-3] = 1.0  # no empty stock
    molar = data.draw(st.lists(st.floats(20.0, 300.0), min_size=k, max_size=k))
    density = data.draw(st.lists(st.floats(0.7, 2.0), min_size=n, max_size=n))
    cfg = synthetic_bench(masses, molar, density)
    m = StockModel.from_config(cfg)
    w = _simplex(data.draw(st.lists(st.floats(0.0, 1.0), min_size=n, max_size=n)
                           .filter(lambda v: sum(v) > 0.05)))
    request = dict(zip(m.components, (m.fractions @ w).tolist()))
    plan = plan_formulation(cfg, request, 3.0, policy="reject")
    _assert_exact(plan, request, 3.0)


def _assert_exact(plan: FormulationPlan, request: dict[str, float], volume: float) -> None:
    """Recovered exactly — unless the exact mix needs a flow the pumps cannot deliver, in which
    case the plan must be a deliverable mix within the makeable tolerance, and say so."""
    assert plan.makeable and not plan.flagged
    assert plan.closest_distance <= 1e-9
    if any("no exact mix is deliverable" in n for n in plan.notes):
        assert plan.deliverable and plan.distance <= plan.tolerance
        return
    assert plan.distance <= 1e-9
    for key, value in request.items():
        assert abs(plan.achieved.get(key, 0.0) - value) <= 1e-9
    assert sum(plan.stock_volumes.values()) == pytest.approx(volume, rel=1e-12)
    assert all(v > 0 for v in plan.stock_volumes.values())
    assert sum(plan.flows.values()) == pytest.approx(plan.total_flow, rel=1e-12)


# ------------------------------------------------------------------------------ solver vs SLSQP
def _slsqp_best(s: np.ndarray, x: np.ndarray, starts: list[np.ndarray]) -> float:
    n = s.shape[1]

    def f(w: np.ndarray) -> float:
        r = s @ w - x
        return float(r @ r)

    best = math.inf
    for w0 in starts:
        res = minimize(f, w0, jac=lambda w: 2.0 * s.T @ (s @ w - x), method="SLSQP",
                       bounds=[(0.0, 1.0)] * n,
                       constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1.0,
                                     "jac": lambda w: np.ones(n)}],
                       options={"ftol": 1e-16, "maxiter": 500})
        w = np.clip(res.x, 0.0, None)
        w /= w.sum()
        best = min(best, float(np.linalg.norm(s @ w - x)))
    return best


@FAST
@given(st.integers(2, 5), st.integers(1, 7), st.data())
def test_solver_beats_slsqp_and_satisfies_kkt(k: int, n: int, data: st.DataObject) -> None:
    cols = data.draw(st.lists(st.lists(st.floats(0.0, 1.0), min_size=k, max_size=k)
                              .filter(lambda c: sum(c) > 0.05), min_size=n, max_size=n))
    s = np.array([_simplex(c) for c in cols]).T
    x = _simplex(data.draw(st.lists(st.floats(0.0, 1.0), min_size=k, max_size=k)
                           .filter(lambda c: sum(c) > 0.05)))
    sol = HullProjector(s).project(x)
    starts = [np.full(n, 1.0 / n)] + [np.eye(n)[j] for j in range(n)]
    reference = _slsqp_best(s, x, starts)
    assert sol.distance <= reference + 1e-12
    assert abs(sol.distance - reference) <= 1e-7
    _assert_kkt(s, x, sol.weights)


def _assert_kkt(s: np.ndarray, x: np.ndarray, w: np.ndarray) -> None:
    assert np.all(w >= 0) and abs(w.sum() - 1.0) <= 1e-12
    g = s.T @ (s @ w - x)
    support = w > 0
    mu = g[support].mean()
    assert np.all(np.abs(g[support] - mu) <= 1e-10)  # stationarity on the support
    assert np.all(g >= mu - 1e-10)  # dual feasibility off the support
    assert -1e-15 <= kkt_gap(s, x, w) <= 1e-12


def test_solver_handles_duplicate_and_collinear_stocks() -> None:
    s = np.array([[1.0, 1.0, 0.5, 0.0], [0.0, 0.0, 0.5, 1.0]])
    sol = HullProjector(s).project(np.array([0.8, 0.3]))
    assert sol.point == pytest.approx([0.75, 0.25], abs=1e-12)
    assert sol.distance == pytest.approx(math.hypot(0.05, 0.05), abs=1e-12)
    _assert_kkt(s, np.array([0.8, 0.3]), sol.weights)


@FAST
@given(st.floats(-9.0, -5.0), weights_st)
def test_solver_with_nearly_identical_stocks(log_eps: float, draws: list[float]) -> None:
    rng = np.random.default_rng(0)
    s = rng.dirichlet(np.ones(4), size=4).T
    s[:, 1] = s[:, 0] + 10**log_eps * np.array([1.0, -1.0, 0.5, -0.5])
    x = s @ _simplex(draws)
    sol = HullProjector(s).project(x)
    assert sol.distance <= 1e-9
    _assert_kkt(s, x, sol.weights)


# ------------------------------------------------------------------------------ not makeable
REQ_UNMAKEABLE = "LiPF6=0.06, EC=0.54, EMC=0.40"


def test_unmakeable_request_distance(model: StockModel, bench: BenchConfig) -> None:
    w, closest, d = model.closest_makeable(parse_composition(REQ_UNMAKEABLE, bench))
    assert abs(d - 0.0435) < 5e-4
    assert not model.is_makeable(parse_composition(REQ_UNMAKEABLE, bench), 1e-4)
    assert sum(closest.values()) == pytest.approx(1.0) and w.sum() == pytest.approx(1.0)


def test_reject_policy_raises_with_closest(bench: BenchConfig) -> None:
    with pytest.raises(NotMakeableError) as info:
        plan_formulation(bench, REQ_UNMAKEABLE, 5.0, policy="reject")
    err = info.value
    assert set(err.requested) == set(err.closest) == {"LiPF6", "EC", "EMC"}
    assert abs(err.distance - 0.0435) < 5e-4
    with pytest.raises(NotMakeableError):  # the 2023 bench's own default policy is "reject"
        plan_formulation(bench, REQ_UNMAKEABLE, 5.0)


def test_closest_policy_flags_and_makes_the_closest(bench: BenchConfig, model: StockModel) -> None:
    plan = plan_formulation(bench, REQ_UNMAKEABLE, 5.0, policy="closest")
    _, closest, d = model.closest_makeable(plan.requested)
    assert plan.flagged and not plan.makeable
    assert plan.target == pytest.approx(closest, abs=1e-12)
    assert plan.achieved == pytest.approx(closest, abs=1e-9)
    assert plan.distance == pytest.approx(d, abs=1e-9)
    assert any("not makeable" in note for note in plan.notes)


def test_within_tolerance_counts_as_makeable(bench: BenchConfig, model: StockModel) -> None:
    ranges = model.reachable_ranges()
    eps = 3e-5  # just beyond the LiPF6 maximum, inside the 1e-4 tolerance
    li = ranges[LIPF6][1] + eps
    request = {LIPF6: li, EMC: 1.0 - li}
    plan = plan_formulation(bench, request, 2.0)
    assert plan.makeable and not plan.flagged and plan.target == request
    assert 0 < plan.distance <= 1e-4
    strict = plan_formulation(bench, request, 2.0, tolerance=1e-6, policy="closest")
    assert strict.flagged


def test_chemical_in_no_stock(bench: BenchConfig) -> None:
    plan = plan_formulation(bench, "LiPF6=0.07,EC=0.29,EMC=0.64,DMC=0", 1.0)
    assert plan.makeable and plan.distance <= 1e-9
    with pytest.raises(NotMakeableError) as info:
        plan_formulation(bench, "LiPF6=0.07,EC=0.29,EMC=0.54,DMC=0.1", 1.0)
    assert info.value.distance >= 0.1
    plan = plan_formulation(bench, "EMC=0.9,DMC=0.1", 1.0, policy="closest")
    # closest: spread the missing 0.1 evenly over LiPF6, EC, EMC (that point is makeable)
    assert plan.achieved == pytest.approx({LIPF6: 0.1 / 3, EC: 0.1 / 3, EMC: 0.9 + 0.1 / 3})
    assert plan.distance == pytest.approx(math.sqrt(0.1**2 + 3 * (0.1 / 3) ** 2), abs=1e-9)
    assert any("DMC" in note for note in plan.notes)


# ------------------------------------------------------------------------------ choice rule
@pytest.mark.parametrize("pair", [("1.5M-LiPF6-EMC", "EC-EMC"), ("1.5M-LiPF6-EC-EMC", "EMC")])
@FAST
@given(t=st.floats(0.1, 0.9))
def test_segment_between_two_stocks_uses_two(bench: BenchConfig, model: StockModel,
                                             pair: tuple[str, str], t: float) -> None:
    a, b = (model.fractions[:, model.names.index(p)] for p in pair)
    request = dict(zip(model.components, (t * a + (1 - t) * b).tolist()))
    plan = plan_formulation(bench, request, 5.0)
    assert set(plan.stock_volumes) == set(pair)
    assert plan.deliverable and plan.distance <= 1e-9
    assert {bench.stock(p).pump for p in pair} == set(plan.pumps.values())


def test_pure_stock_uses_one(bench: BenchConfig, model: StockModel) -> None:
    request = dict(zip(model.components, model.fractions[:, 3].tolist()))
    plan = plan_formulation(bench, request, 1.0)
    assert plan.stock_volumes == {"EMC": pytest.approx(1.0)}
    assert plan.flows == {"EMC": pytest.approx(0.05)}


def _low_flow_bench() -> BenchConfig:
    # mole fractions (molar masses 100 g/mol, ρ 1): A, B far apart; D close to edge AB; C far.
    comps = np.array([[0.9, 0.05, 0.05], [0.05, 0.9, 0.05], [0.05, 0.05, 0.9], [0.45, 0.45, 0.10]])
    return synthetic_bench(comps.T * 100.0, [100.0] * 3, [1.0] * 4)


def test_mix_with_too_low_flow_is_avoided() -> None:
    cfg = _low_flow_bench()
    m = StockModel.from_config(cfg)
    target = np.array([0.47475, 0.47475, 0.0505])  # ABC needs ~0.06 % of C: below min flow
    options = mix_options(m, target, 5.0, 0.05)
    abc = next(o for o in options if o.support == (0, 1, 2))
    assert not abc.deliverable and any("below" in r for r in abc.reasons)
    plan = plan_formulation(cfg, dict(zip(m.components, target.tolist())), 5.0)
    assert set(plan.stock_volumes) == {"S0", "S1", "S3"} and plan.deliverable
    assert plan.distance <= 1e-9
    for name, flow in plan.flows.items():
        assert SYRINGE_10ML.min_flow <= flow <= SYRINGE_10ML.max_flow, name


def test_nothing_deliverable_returns_reasons(bench: BenchConfig) -> None:
    plan = plan_formulation(bench, "LiPF6=0.07,EC=0.29,EMC=0.64", 5.0, total_flow=5.0)
    assert not plan.deliverable and any("above pump" in n for n in plan.notes)
    assert plan.distance <= 1e-9
    small = plan_formulation(bench, "LiPF6=0.07,EC=0.29,EMC=0.64", 1e-3)
    assert not small.deliverable and any("minimum dose" in n for n in small.notes)


# ------------------------------------------------------------------------------ parsing
def test_parse_forms(bench: BenchConfig) -> None:
    expected = {LIPF6: 0.07, EC: 0.29, EMC: 0.64}
    assert parse_composition("LiPF6=0.07,EC=0.29,EMC=0.64", bench) == expected
    assert parse_composition(" emc : 0.64; lipf6=0.07 ; EC = 0.29;", bench) == expected
    assert parse_composition({EC: 0.29, "Emc": "0.64", LIPF6.lower(): 0.07}, bench) == expected
    assert list(parse_composition("EMC=0.64,EC=0.29,LiPF6=0.07", bench)) == [LIPF6, EC, EMC]
    assert by_name(expected, bench) == {"LiPF6": 0.07, "EC": 0.29, "EMC": 0.64}


@pytest.mark.parametrize("bad", [
    "", "   ", "LiPF6=0.07,EC=0.29,NaCl=0.64", "LiPF6=abc,EC=0.29,EMC=0.71",
    "LiPF6=-0.01,EC=0.37,EMC=0.64", "LiPF6=nan,EC=0.36,EMC=0.64", "LiPF6=inf,EMC=0",
    "EC=0.5,ec=0.5", f"EC=0.5,{EC}=0.5", "LiPF6=0.07,EC=0.29,EMC=0.63", "LiPF6 0.07,EMC=0.93",
    "=1", {"EC": True, "EMC": 0.0}, {"EC": None}, {"EC": [1.0]}, ["EC", 1.0],
    "EC=0.5,EMC=0.5000011",
])
def test_parse_errors(bench: BenchConfig, bad: object) -> None:
    with pytest.raises(RequestError):
        parse_composition(bad, bench)  # type: ignore[arg-type]


def test_parse_sum_tolerance(bench: BenchConfig) -> None:
    parse_composition("EC=0.5,EMC=0.5000009", bench)  # within 1e-6: accepted as given
    assert parse_composition("EC=0.5,EMC=0.5000009", bench)[EMC] == 0.5000009


@FAST
@given(weights_st)
def test_parse_roundtrip(bench: BenchConfig, draws: list[float]) -> None:
    w = _simplex(draws)
    names = ["LiPF6", "EC", "EMC", "DMC"]
    text = ",".join(f"{n}={v!r}" for n, v in zip(names, w.tolist()))
    parsed = parse_composition(text, bench)
    assert list(parsed.values()) == pytest.approx(w.tolist(), abs=0)


def test_bad_plan_arguments(bench: BenchConfig) -> None:
    req = "LiPF6=0.07,EC=0.29,EMC=0.64"
    for kwargs in ({"total_flow": 0.0}, {"tolerance": -1.0}, {"policy": "maybe"},
                   {"min_dose": float("nan")}):
        with pytest.raises(RequestError):
            plan_formulation(bench, req, 1.0, **kwargs)  # type: ignore[arg-type]
    for volume in (0.0, -1.0, float("inf")):
        with pytest.raises(RequestError):
            plan_formulation(bench, req, volume)


# ------------------------------------------------------------------------------ achieved
def test_achieved_composition_matches_bookkeeping(bench: BenchConfig, model: StockModel) -> None:
    volumes = {"1.5M-LiPF6-EC-EMC": 1.0, "EMC": 3.0}
    x = achieved_composition(bench, volumes)
    a, d = bench.stock("1.5M-LiPF6-EC-EMC"), bench.stock("EMC")
    moles = {key: 0.0 for key in (LIPF6, EC, EMC)}
    for stock, v in ((a, 1.0), (d, 3.0)):
        for key, part in stock.components.items():
            moles[key] += part.mass / bench.chemical(key).molar_mass * v / stock.volume
    total = sum(moles.values())
    assert x == pytest.approx({k: n / total for k, n in moles.items()}, abs=1e-14)
    for bad in ({"nope": 1.0}, {"EMC": -1.0}, {"EMC": 0.0}, {}, {"EMC": float("nan")}):
        with pytest.raises(RequestError):
            achieved_composition(bench, bad)


def test_plan_json_roundtrip(bench: BenchConfig) -> None:
    plan = plan_formulation(bench, "LiPF6=0.07,EC=0.29,EMC=0.64", 2.5)
    data = json.loads(plan.model_dump_json())
    assert FormulationPlan.model_validate(data) == plan
    assert plan.tolerance == bench.settings.makeable_tolerance
    assert plan.total_flow == bench.settings.total_flow
    assert achieved_composition(bench, plan.stock_volumes) == pytest.approx(plan.achieved)


def _masses_from_volumes(bench: BenchConfig, volumes: dict[str, float]) -> dict[str, float]:
    return {n: v * bench.stock(n).density for n, v in volumes.items()}


def test_achieved_from_masses_equals_volume_bookkeeping(bench: BenchConfig) -> None:
    volumes = {"1.5M-LiPF6-EMC": 0.7, "EC-EMC": 1.3, "EMC": 0.4}
    x, u = achieved_from_masses(bench, _masses_from_volumes(bench, volumes))
    assert x == pytest.approx(achieved_composition(bench, volumes), abs=1e-14)
    assert all(0 < v < 1e-3 for v in u.values())
    _, u_coarse = achieved_from_masses(bench, _masses_from_volumes(bench, volumes), 0.01)
    assert all(u_coarse[k] > u[k] for k in u)


def test_achieved_from_masses_uncertainty_by_finite_differences(bench: BenchConfig) -> None:
    doses = {"1.5M-LiPF6-EC-EMC": 0.9, "EMC": 1.7}
    readability = 1e-3
    _, u = achieved_from_masses(bench, doses, readability)
    keys = (LIPF6, EC, EMC)

    def frac(cfg: BenchConfig, masses: dict[str, float]) -> np.ndarray:
        x, _ = achieved_from_masses(cfg, masses, readability)
        return np.array([x.get(k, 0.0) for k in keys])

    var = np.zeros(3)
    h = 1e-6
    for name in doses:  # balance readings: u = δ/√6 per net mass
        up, dn = dict(doses), dict(doses)
        up[name] += h
        dn[name] -= h
        var += ((frac(bench, up) - frac(bench, dn)) / (2 * h) * readability / math.sqrt(6)) ** 2
        stock = bench.stock(name)
        for key, part in stock.components.items():  # component masses (some are 0 g)
            grads = []
            steps = (part.mass + h, max(part.mass - h, 0.0))
            for mass in steps:
                comps = dict(stock.components)
                comps[key] = part.model_copy(update={"mass": mass})
                cfg = _replace_stock(bench, stock.model_copy(update={"components": comps}))
                grads.append(frac(cfg, doses))
            var += ((grads[0] - grads[1]) / (steps[0] - steps[1]) * part.uncertainty) ** 2
        grads = [frac(_replace_stock(bench, stock.model_copy(
            update={"total_mass": stock.total_mass + s * h})), doses) for s in (1, -1)]
        var += ((grads[0] - grads[1]) / (2 * h) * stock.total_mass_uncertainty) ** 2
    assert np.array([u[k] for k in keys]) == pytest.approx(np.sqrt(var), rel=1e-4)


def _replace_stock(bench: BenchConfig, stock: StockSolution) -> BenchConfig:
    stocks = tuple(stock if s.name == stock.name else s for s in bench.stocks)
    return bench.model_copy(update={"stocks": stocks})


def test_achieved_from_masses_errors(bench: BenchConfig) -> None:
    with pytest.raises(RequestError):
        achieved_from_masses(bench, {"EMC": 1.0}, -1.0)
    with pytest.raises(RequestError):
        achieved_from_masses(bench, {"nope": 1.0})
    x, u = achieved_from_masses(bench, {"EMC": 2.0}, 0.0)
    assert x[EMC] == 1.0 and u[EMC] > 0  # the stock may hold up to ±1 mg of LiPF6 and EC
    exact = synthetic_bench(np.array([[10.0, 0.0], [5.0, 20.0]]), [50.0, 100.0], [1.0, 1.0])
    x, u = achieved_from_masses(exact, {"S0": 1.0, "S1": 1.0}, 0.0)
    assert sum(x.values()) == pytest.approx(1.0) and set(u.values()) == {0.0}
    _, u = achieved_from_masses(exact, {"S0": 1.0, "S1": 1.0})  # no balance: default 0.1 mg
    assert all(v > 0 for v in u.values())


def test_near_a_stock_an_undeliverable_exact_mix_gives_way_to_a_deliverable_one() -> None:
    """LiPF6 0.1429 / EMC 0.8571 sits 5e-5 from the pure 1.5 M LiPF6-in-EMC stock: the exact
    mix would need EMC at a flow below the pump's minimum, so the stock alone is used."""
    config = _bench_2023()
    plan = plan_formulation(config, "LiPF6=0.1429,EMC=0.8571", 2.5)
    assert plan.makeable and plan.deliverable and not plan.flagged
    assert list(plan.stock_volumes) == ["1.5M-LiPF6-EMC"]
    assert 1e-5 < plan.distance <= plan.tolerance
    assert any("within the makeable tolerance" in n for n in plan.notes)


def test_a_mix_of_all_stocks_when_no_face_is_deliverable(bench_config):
    """Regression (found by the accuracy property test): a makeable point whose every ≤ d+1
    stock face puts one stock below its pump's minimum flow is made from all four stocks."""
    import numpy as np

    from asab.formulation.mixes import mix_options, widest_mix

    model = StockModel.from_config(bench_config)
    w = np.array([0.1943, 0.3233, 0.3431, 0.1394])
    x = model.fractions @ (w / w.sum())
    flow = bench_config.settings.total_flow
    best = mix_options(model, x, 2.5, flow)[0]
    assert best.deliverable and best.support == (0, 1, 2, 3)
    assert np.all(best.flows >= model.min_flows) and abs(best.flows.sum() - flow) < 1e-12
    assert np.allclose(model.mix(best.volumes), x, atol=1e-9)
    assert widest_mix(model, np.array([1.0, 0.0, 0.0]), 2.5, flow) is None  # outside the hull
