"""Pump calibration against the balance: delivered / commanded volume per pump.

A syringe whose real bore differs from its nominal size (glass syringes are made to about
±1 % of the nominal volume) delivers a fixed fraction of what the drive is told. The factor
f = delivered / commanded is measured by weighing: the pump's route to the balance is filled
with its liquid (:func:`asab.actions.gravimetric.wet_balance_route`), then ``repeats`` times
the balance is tared, ``volume`` mL commanded and the net mass read; delivered = mass / ρ.
The balance route is blown empty with gas afterwards.

Factors are stored per pump in a JSON file (``settings.calibration_file``, relative paths
relative to the bench folder; see :func:`calibration_path`) and applied through
``bench.delivery_factors``: :func:`asab.actions.fluidics.push` commands wanted / f.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import statistics
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from asab.actions.bench import Bench
from asab.actions.fluidics import MoveLog
from asab.actions.gravimetric import (
    dose_and_weigh,
    drain_balance_route,
    wet_balance_route,
)
from asab.config import BenchConfig
from asab.errors import Cause, ConfigError, DeviceError

log = logging.getLogger(__name__)

FACTOR_LIMITS = (0.8, 1.2)
"""Accepted delivered/commanded ratios. Outside them the syringe size is wrong or the line
leaks or draws gas: a fault to fix, not to calibrate away."""

DEFAULT_DENSITY_UNCERTAINTY = 0.001
"""g/cm³, assumed standard uncertainty of a pure chemical's handbook density (chemicals.csv
gives densities to 3 decimals and no uncertainty). Stock densities carry their own."""


class PumpCalibration(BaseModel):
    """One pump's measured delivery factor."""

    model_config = ConfigDict(extra="forbid")
    pump: str
    factor: float = Field(description="delivered / commanded volume")
    uncertainty: float = Field(description="standard uncertainty of the factor")
    liquid: str = Field(description="stock or solvent weighed")
    density: float = Field(description="g/cm³ used to turn masses into volumes")
    density_uncertainty: float = Field(description="g/cm³")
    commanded: float = Field(description="mL commanded per repeat")
    masses: list[float] = Field(description="g, net mass per repeat")
    mass_uncertainty: float = Field(description="g, u of one net mass (readability, repeatability)")
    delivered: list[float] = Field(description="mL = mass / density per repeat")
    readability: float = Field(description="g")
    date: str = Field(description="wall clock, ISO 8601 UTC")


class CalibrationFile(BaseModel):
    """The calibration file: pump → its latest calibration."""

    model_config = ConfigDict(extra="forbid")
    pumps: dict[str, PumpCalibration] = Field(default_factory=dict)


def calibration_path(config: BenchConfig, bench_dir: str | Path) -> Path:
    """``settings.calibration_file``, relative paths taken from ``bench_dir`` (bench.toml's folder)."""
    path = Path(config.settings.calibration_file)
    return path if path.is_absolute() else Path(bench_dir) / path


def calibrate_pump(bench: Bench, pump: str, volume: float = 1.0, repeats: int = 3, *,
                   reads: int = 3, store: str | Path | None = None,
                   limits: tuple[float, float] = FACTOR_LIMITS) -> PumpCalibration:
    """Measure ``pump``'s delivered/commanded volume ratio on the balance and apply it.

    Formula: f_i = m_i / (ρ V_c), f = mean f_i, with V_c the commanded volume (the wanted
    ``volume`` divided by the factor in force, so re-calibrating a corrected pump still
    measures the bare pump). Standard uncertainty (GUM, JCGM 100:2008, 5.1.2, inputs
    uncorrelated): u(f)² = s(f_i)²/n + f² [(u(W)/(m̄ √n))² + (u(ρ)/ρ)²], with u(W) the net-mass
    uncertainty of :func:`asab.actions.gravimetric.net_mass_uncertainty` (readability and
    repeatability) and u(ρ) the liquid's density uncertainty (fully correlated over repeats).

    Args:
        bench: the opened bench with its balance.
        pump: pump name; it must draw a configured stock or be the solvent pump.
        volume: mL dispensed per repeat (> 0).
        repeats: number of weighed doses (≥ 1).
        reads: stable balance readings before and after each dose.
        store: calibration file to update (``None``: not stored).
        limits: accepted (low, high) factor.

    Returns:
        The calibration; ``bench.delivery_factors[pump]`` is set to its factor.

    Raises:
        DeviceError: cause ``"calibration out of range"`` when f is outside ``limits`` (the
            factor in force is left unchanged), no balance, or a device problem.
        ValueError: ``volume`` ≤ 0 or ``repeats`` < 1.
    """
    if not volume > 0 or repeats < 1:
        raise ValueError(f"volume must be > 0 and repeats ≥ 1, got {volume} mL, {repeats}")
    liquid, source, rho, u_rho = _liquid_of(bench.config, pump)
    ledger = MoveLog()
    route, _, _ = wet_balance_route(bench, pump, source, ledger)
    in_force = bench.delivery_factors.get(pump, 1.0)
    commanded = volume / in_force
    masses, u_masses = [], []
    for _ in range(repeats):
        zero, loaded, u_mass = dose_and_weigh(bench, pump, source, route, volume, ledger, reads)
        masses.append(statistics.fmean(loaded) - statistics.fmean(zero))
        u_masses.append(u_mass)
    drain_balance_route(bench, ledger)
    result = _factor(pump, liquid, rho, u_rho, commanded, masses, max(u_masses),
                     bench.config.balance.readability)
    log.info("pump %s: delivery factor %.5f ± %.5f", pump, result.factor, result.uncertainty)
    check_factor(result, limits)
    bench.delivery_factors[pump] = result.factor
    if store is not None:
        save_calibration(store, result)
    return result


def _factor(pump: str, liquid: str, rho: float, u_rho: float, commanded: float,
            masses: list[float], u_mass: float, readability: float) -> PumpCalibration:
    factors = [m / (rho * commanded) for m in masses]
    f, n, mean_mass = statistics.fmean(factors), len(factors), statistics.fmean(masses)
    u_a2 = statistics.variance(factors) / n if n > 1 else 0.0
    rel_mass = u_mass / (abs(mean_mass) * math.sqrt(n)) if mean_mass else math.inf
    u = math.sqrt(u_a2 + f * f * (rel_mass**2 + (u_rho / rho) ** 2))
    return PumpCalibration(
        pump=pump, factor=f, uncertainty=u, liquid=liquid, density=rho, density_uncertainty=u_rho,
        commanded=commanded, masses=masses, mass_uncertainty=u_mass,
        delivered=[m / rho for m in masses], readability=readability,
        date=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))


def check_factor(cal: PumpCalibration, limits: tuple[float, float] = FACTOR_LIMITS) -> None:
    """Raise DeviceError (cause ``"calibration out of range"``) unless low ≤ factor ≤ high."""
    low, high = limits
    if not low <= cal.factor <= high:
        raise DeviceError(cal.pump, Cause.CALIBRATION_OUT_OF_RANGE,
                          f"calibration out of range: pump {cal.pump} delivered "
                          f"{cal.factor:.3f} × the commanded volume "
                          f"(accepted {low}–{high}): check the syringe size, leaks and gas in "
                          "the line; the factor was not applied")


def _liquid_of(config: BenchConfig, pump: str) -> tuple[str, str, float, float]:
    """(name, source node, density g/cm³, its uncertainty) of the liquid ``pump`` draws."""
    for stock in config.stocks:
        if stock.pump == pump:
            u = stock.density_uncertainty or DEFAULT_DENSITY_UNCERTAINTY
            return stock.name, stock.reservoir, stock.density, u
    s = config.settings
    if pump == s.solvent_pump:
        chem = config.chemical(s.solvent_chemical)
        if chem.density is not None:
            return chem.name, s.solvent_node, chem.density, DEFAULT_DENSITY_UNCERTAINTY
    raise DeviceError(pump, Cause.NO_LIQUID, f"pump {pump} draws no stock and is not the solvent "
                      "pump with a known density: nothing to weigh")


def load_calibration(path: str | Path) -> CalibrationFile:
    """Read a calibration file (a missing file is an empty calibration).

    Raises:
        ConfigError: unreadable or invalid file, or a factor outside :data:`FACTOR_LIMITS`.
    """
    path = Path(path)
    if not path.exists():
        return CalibrationFile()
    try:
        data = CalibrationFile.model_validate_json(path.read_text(encoding="utf-8"))
    except (OSError, ValidationError) as exc:
        raise ConfigError(f"{path}: not a valid calibration file: {exc}") from exc
    for cal in data.pumps.values():
        try:
            check_factor(cal)
        except DeviceError as exc:
            raise ConfigError(f"{path}: {exc}") from exc
    return data


def save_calibration(path: str | Path, cal: PumpCalibration) -> None:
    """Store ``cal`` in the calibration file at ``path`` (other pumps' entries kept).

    Raises:
        ConfigError: the existing file is invalid. OSError: it cannot be written.
    """
    path = Path(path)
    data = load_calibration(path)
    data.pumps[cal.pump] = cal
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data.model_dump(mode="json"), indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)


def apply_calibration(bench: Bench, path: str | Path) -> dict[str, float]:
    """Load the calibration file into ``bench.delivery_factors`` (pumps of this bench only).

    Returns:
        The factors applied, pump → factor.

    Raises:
        ConfigError: invalid file or factor.
    """
    factors = {p: c.factor for p, c in load_calibration(path).pumps.items() if p in bench.pumps}
    bench.delivery_factors.update(factors)
    return factors
