"""Density/viscosity models of simulators/physics.py against the 2023 bench's measured stocks
and the reference values of shared/docs/electrolyte_models.md."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asab.config.loader import load_bench
from asab.config.models import BenchConfig, Chemical
from simulators import physics

BENCH_DIR = Path(__file__).resolve().parents[1] / "hardware_configs" / "hiu_2023"
LIPF6 = "AXPLOJNSKRXQPA-UHFFFAOYSA-N"
EC = "KMTRUDSVKNLOMY-UHFFFAOYSA-N"
EMC = "JBTWLSYIZRCDFO-UHFFFAOYSA-N"
DMC = "IEJIGPNLZYLLBP-UHFFFAOYSA-N"


# --------------------------------------------------------------------------- bench data
@pytest.fixture(scope="module")
def config() -> BenchConfig:
    return load_bench(BENCH_DIR)


@pytest.fixture(scope="module")
def chems(config: BenchConfig) -> dict[str, Chemical]:
    return {c.inchikey: c for c in config.chemicals}


def stock_moles(config: BenchConfig, name: str) -> dict[str, float]:
    stock = config.stock(name)
    return {k: m.mass / config.chemical(k).molar_mass for k, m in stock.components.items() if m.mass > 0}


def one_molar(w_ec: float, linear: str, chems: dict[str, Chemical], temperature: float = 298.15) -> dict[str, float]:
    return physics.moles_per_litre({EC: w_ec, linear: 1.0 - w_ec}, LIPF6, 1.0, temperature, chems)


# --------------------------------------------------------------------------- measured stocks
@pytest.mark.parametrize(
    "stock", ["1.5M-LiPF6-EC-EMC", "1.5M-LiPF6-EMC", "EC-EMC", "EMC"],
)
def test_reproduces_measured_2023_stock_densities(config: BenchConfig, chems, stock: str) -> None:
    measured = config.stock(stock)
    rho = physics.density(stock_moles(config, stock), measured.density_temperature, chems)
    assert rho == pytest.approx(measured.density, abs=0.003)


def test_stock_molarity_is_about_1p5(config: BenchConfig, chems) -> None:
    for name in ("1.5M-LiPF6-EC-EMC", "1.5M-LiPF6-EMC"):
        state = physics.solution_state(stock_moles(config, name), 299.8, chems)
        assert state.molarity[LIPF6] == pytest.approx(1.5, abs=0.02)


def test_model_density_takes_mole_fractions_names_or_keys(config: BenchConfig) -> None:
    moles = stock_moles(config, "1.5M-LiPF6-EC-EMC")
    total = sum(moles.values())
    by_key = physics.model_density({k: n / total for k, n in moles.items()}, 299.8, config)
    by_name = physics.model_density({config.chemical(k).name: n for k, n in moles.items()}, 299.8, config)
    assert by_key == pytest.approx(1.288, abs=0.003)
    assert by_name == pytest.approx(by_key, rel=1e-12)
    eta = physics.model_viscosity({k: n / total for k, n in moles.items()}, 299.8, config)
    assert eta == pytest.approx(physics.viscosity(moles, 299.8, config.chemicals), rel=1e-12)


# --------------------------------------------------------------------------- reference electrolytes
def test_lp57_like_density_and_viscosity(chems) -> None:
    """1 M LiPF6 in EC:EMC 3:7 (w/w) at 25 °C: ≈ 1.19 g/cm³ and 3–3.5 mPa·s (electrolyte_models.md)."""
    moles = one_molar(0.3, EMC, chems)
    assert physics.solution_state(moles, 298.15, chems).molarity[LIPF6] == pytest.approx(1.0, rel=1e-9)
    assert physics.density(moles, 298.15, chems) == pytest.approx(1.19, abs=0.005)
    assert 3.0 <= physics.viscosity(moles, 298.15, chems) <= 3.5


def test_lp30_like_density(chems) -> None:
    """1 M LiPF6 in EC:DMC 1:1 (w/w) at 25 °C: ≈ 1.29 g/cm³ (electrolyte_models.md)."""
    assert physics.density(one_molar(0.5, DMC, chems), 298.15, chems) == pytest.approx(1.29, abs=0.01)


def test_ec_density_is_corrected_from_313_to_299_k(chems) -> None:
    # 1.321 g/cm³ at 313.15 K, α = 0.9e-3 K⁻¹ -> 1.321·(1 + 0.9e-3·13.35)
    assert physics.pure_density(chems[EC], 299.8) == pytest.approx(1.33687, abs=1e-5)
    assert physics.pure_viscosity(chems[EC], 313.15) == pytest.approx(1.90)
    assert physics.pure_viscosity(chems[EC], 298.15) > 1.90


def test_rolling_ball_round_trip() -> None:
    t = physics.rolling_time(3.3, 1.19)
    assert t > 0
    assert physics.rolling_viscosity(t, 1.19) == pytest.approx(3.3)
    with pytest.raises(ValueError):
        physics.rolling_time(3.3, 8.0)


def test_bad_compositions_raise(chems) -> None:
    with pytest.raises(ValueError, match="no solvent"):
        physics.density({LIPF6: 1.0}, 298.15, chems)
    with pytest.raises(ValueError, match="unknown chemical"):
        physics.density({"NOT-A-KEY": 1.0, EMC: 1.0}, 298.15, chems)
    with pytest.raises(ValueError):
        physics.density({EMC: -1.0}, 298.15, chems)


# --------------------------------------------------------------------------- trends
fractions = st.floats(min_value=0.0, max_value=0.6)
temperatures = st.floats(min_value=283.15, max_value=333.15)


@settings(max_examples=40, deadline=None)
@given(w_ec=fractions, c=st.floats(min_value=0.0, max_value=1.8), t=temperatures, dt=st.floats(1.0, 30.0))
def test_density_and_viscosity_decrease_with_temperature(chems, w_ec, c, t, dt) -> None:
    moles = physics.moles_per_litre({EC: w_ec, EMC: 1.0 - w_ec}, LIPF6, c, 298.15, chems)
    assert physics.density(moles, t + dt, chems) < physics.density(moles, t, chems)
    assert physics.viscosity(moles, t + dt, chems) < physics.viscosity(moles, t, chems)


@settings(max_examples=40, deadline=None)
@given(w_ec=fractions, n=st.floats(min_value=0.0, max_value=2.0), dn=st.floats(0.01, 0.5), t=temperatures)
def test_density_and_viscosity_increase_with_salt(chems, w_ec, n, dn, t) -> None:
    solvent = {EC: w_ec * 1000.0 / 88.062, EMC: (1.0 - w_ec) * 1000.0 / 104.105}  # 1 kg of solvent
    low, high = {**solvent, LIPF6: n}, {**solvent, LIPF6: n + dn}
    assert physics.density(high, t, chems) > physics.density(low, t, chems)
    assert physics.viscosity(high, t, chems) > physics.viscosity(low, t, chems)


@settings(max_examples=30, deadline=None)
@given(scale=st.floats(min_value=1e-6, max_value=1e3))
def test_results_are_intensive(chems, scale) -> None:
    moles = one_molar(0.3, EMC, chems)
    scaled = {k: n * scale for k, n in moles.items()}
    assert physics.density(scaled, 298.15, chems) == pytest.approx(physics.density(moles, 298.15, chems))
    assert physics.viscosity(scaled, 298.15, chems) == pytest.approx(physics.viscosity(moles, 298.15, chems))
