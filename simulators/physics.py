"""Density and viscosity of electrolyte solutions, for the simulated densimeter/viscometer.

The models are those of ``shared/docs/electrolyte_models.md``; every parameter lives in
``simulators/data/electrolyte_models.toml`` (loaded by :func:`load_model`), pure-component
data (molar mass, density, viscosity and their temperatures) come from
:class:`asab.config.Chemical`.

Density (canonical g/cm³):
    * pure liquid: ρ_i(T) = ρ_i(T0)·(1 − α_i (T − T0)), α by chemical class (cyclic/linear
      carbonate); EC's data at 313.15 K (supercooled below 36 °C) is extrapolated this way.
    * salt-free blend, mass fractions w_i: v = Σ w_i/ρ_i + Σ_{i<j} w_i w_j A_ij (cm³/g).
    * salt at molarity c (mol/L): ρ = [c·M_salt + (1000 − c·V_φ)/v]/1000, V_φ interpolated in the
      cyclic-carbonate mass fraction of the solvent.

    The molarity depends on the solution volume and so on the density. Because V_φ depends on the
    solvent composition only (not on c), the relation is solved exactly: 1 L of solution holds
    c mol of salt occupying c·V_φ cm³ and (1000 − c·V_φ)/v g of solvent, i.e. for amounts n_s of
    salt and a solvent mass m the volume is V = m·v + Σ_s n_s V_φ,s (mL), c_s = 1000·n_s/V and
    ρ = (m + Σ_s n_s M_s)/V. No iteration is needed.

Viscosity (canonical mPa·s):
    * pure liquid (Arrhenius): η_i(T) = η_i(T0)·exp[(E_a/R)(1/T − 1/T0)].
    * blend (Grunberg–Nissan), salt-free mole fractions x_i:
      ln η_solv = Σ x_i ln η_i + Σ_{i<j} x_i x_j G_ij.
    * salt: η = η_solv·exp(Σ_s b_s c_s).

Rolling ball (Lovis 2000 ME): η = K·(ρ_ball − ρ)·t.

Compositions are mappings InChIKey → amount in mol (any positive scale: mole fractions work the
same, the results are intensive). Temperatures are in K.
"""

from __future__ import annotations

import functools
import math
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from itertools import combinations
from pathlib import Path

import numpy as np

from asab.config.models import BenchConfig, Chemical


ChemicalData = Mapping[str, Chemical] | Iterable[Chemical]
"""Chemicals by InChIKey, or any iterable of :class:`Chemical` (keyed by their InChIKey)."""


@dataclass(frozen=True)
class SaltParameters:
    """Model parameters of one salt.

    Attributes:
        name: readable name (e.g. ``"LiPF6"``).
        apparent_molar_volume: points (cyclic-carbonate mass fraction of the solvent, V_φ in
            cm³/mol), ascending in the fraction; linear interpolation, constant outside.
        viscosity_b: b in η = η_solv·exp(b·c), L/mol.
    """

    name: str
    apparent_molar_volume: tuple[tuple[float, float], ...]
    viscosity_b: float


@dataclass(frozen=True)
class ElectrolyteModel:
    """All parameters of the density/viscosity models (see the module docstring).

    Attributes:
        alpha: thermal expansion coefficient (K⁻¹) by class ``cyclic``/``linear``/``other``.
        solvent_class: InChIKey → class; unlisted solvents are ``other``.
        excess_volume: A_ij in cm³/g by unordered InChIKey pair.
        excess_volume_by_class: default A_ij by class pair ``"<a>-<b>"`` (sorted), else 0.
        salts: InChIKey → :class:`SaltParameters`; every other chemical is a solvent.
        activation_energy: default E_a, J/mol.
        activation_energy_by_key: InChIKey → E_a override, J/mol.
        gas_constant: R, J/(mol·K).
        grunberg_nissan: G_ij (dimensionless) by unordered InChIKey pair, else 0.
        ball_density: ρ_ball of the rolling ball, g/cm³.
        ball_constant: K of the rolling-ball reading, mPa·s per (g/cm³·s).
    """

    alpha: Mapping[str, float]
    solvent_class: Mapping[str, str]
    excess_volume: Mapping[frozenset[str], float]
    excess_volume_by_class: Mapping[str, float]
    salts: Mapping[str, SaltParameters]
    activation_energy: float
    gas_constant: float
    ball_density: float
    ball_constant: float
    activation_energy_by_key: Mapping[str, float] = field(default_factory=dict)
    grunberg_nissan: Mapping[frozenset[str], float] = field(default_factory=dict)


def _pairs(rows: list[dict], key: str) -> dict[frozenset[str], float]:
    return {frozenset((r["a"], r["b"])): float(r[key]) for r in rows}


def load_model(path: str | Path | None = None) -> ElectrolyteModel:
    """Read model parameters from a TOML file (default: the packaged
    ``simulators/data/electrolyte_models.toml``).

    Raises:
        OSError: the file cannot be read.
        KeyError, ValueError: a required table or number is missing or malformed.
    """
    if path is None:
        text = resources.files("simulators").joinpath("data/electrolyte_models.toml").read_text("utf-8")
    else:
        text = Path(path).read_text(encoding="utf-8")
    data = tomllib.loads(text)
    visc = data["viscosity"]
    salts = {
        key: SaltParameters(
            name=s.get("name", key),
            apparent_molar_volume=tuple((float(w), float(v)) for w, v in s["apparent_molar_volume"]),
            viscosity_b=float(s["viscosity_b"]),
        )
        for key, s in data.get("salts", {}).items()
    }
    return ElectrolyteModel(
        alpha={k: float(v) for k, v in data["alpha"].items()},
        solvent_class={k: s["class"] for k, s in data.get("solvents", {}).items()},
        excess_volume=_pairs(data.get("excess_volume", []), "A"),
        excess_volume_by_class={k: float(v) for k, v in data.get("excess_volume_by_class", {}).items()},
        salts=salts,
        activation_energy=float(visc["activation_energy"]),
        gas_constant=float(visc["gas_constant"]),
        ball_density=float(data["rolling_ball"]["ball_density"]),
        ball_constant=float(data["rolling_ball"]["K"]),
        activation_energy_by_key={
            k: float(v) for k, v in visc.get("activation_energy_by_key", {}).items()
        },
        grunberg_nissan=_pairs(data.get("grunberg_nissan", []), "G"),
    )


@functools.cache
def default_model() -> ElectrolyteModel:
    """The packaged parameters, read once on first use."""
    return load_model()


# --------------------------------------------------------------------------- pure components
def _class_of(key: str, model: ElectrolyteModel) -> str:
    return model.solvent_class.get(key, "other")


def pure_density(chemical: Chemical, temperature: float, model: ElectrolyteModel | None = None) -> float:
    """Density of a pure liquid in g/cm³ at ``temperature`` K: ρ(T0)·(1 − α (T − T0)).

    Raises:
        ValueError: the chemical has no density or density temperature.
    """
    model = model or default_model()
    if chemical.density is None or chemical.density_temperature is None:
        raise ValueError(f"chemical {chemical.name} has no density (and temperature) in its data")
    alpha = model.alpha[_class_of(chemical.inchikey, model)]
    return chemical.density * (1.0 - alpha * (temperature - chemical.density_temperature))


def pure_viscosity(
    chemical: Chemical, temperature: float, model: ElectrolyteModel | None = None
) -> float:
    """Viscosity of a pure liquid in mPa·s at ``temperature`` K (Arrhenius, see module docstring).

    Raises:
        ValueError: the chemical has no viscosity (and temperature) in its data.
    """
    model = model or default_model()
    if chemical.viscosity is None or chemical.viscosity_temperature is None:
        raise ValueError(f"chemical {chemical.name} has no viscosity (and temperature) in its data")
    e_a = model.activation_energy_by_key.get(chemical.inchikey, model.activation_energy)
    exponent = e_a / model.gas_constant * (1.0 / temperature - 1.0 / chemical.viscosity_temperature)
    return chemical.viscosity * math.exp(exponent)


def excess_coefficient(key_a: str, key_b: str, model: ElectrolyteModel | None = None) -> float:
    """A_ij (cm³/g) of a solvent pair: the listed pair value, else the class-pair default, else 0."""
    model = model or default_model()
    pair = frozenset((key_a, key_b))
    if pair in model.excess_volume:
        return model.excess_volume[pair]
    classes = "-".join(sorted((_class_of(key_a, model), _class_of(key_b, model))))
    return model.excess_volume_by_class.get(classes, 0.0)


# --------------------------------------------------------------------------- solutions
@dataclass(frozen=True)
class SolutionState:
    """Mass, volume and salt molarities of an amount of solution.

    Attributes:
        mass: g.
        volume: mL.
        molarity: salt InChIKey → mol/L.
        solvent_mass_fractions: solvent InChIKey → salt-free mass fraction.
        solvent_mole_fractions: solvent InChIKey → salt-free mole fraction.
    """

    mass: float
    volume: float
    molarity: dict[str, float]
    solvent_mass_fractions: dict[str, float]
    solvent_mole_fractions: dict[str, float]

    @property
    def density(self) -> float:
        """g/cm³."""
        return self.mass / self.volume


def _by_key(chemicals: ChemicalData) -> Mapping[str, Chemical]:
    if isinstance(chemicals, Mapping):
        return chemicals
    return {c.inchikey: c for c in chemicals}


def _checked(moles: Mapping[str, float], chems: Mapping[str, Chemical]) -> dict[str, float]:
    for key, n in moles.items():
        if n < 0 or not math.isfinite(n):
            raise ValueError(f"amount of {key} must be finite and >= 0, got {n}")
        if n > 0 and key not in chems:
            raise ValueError(f"unknown chemical {key!r} in composition")
    return {k: float(n) for k, n in moles.items() if n > 0}


def _normalised(values: Mapping[str, float]) -> dict[str, float]:
    total = sum(values.values())
    return {k: v / total for k, v in values.items()} if total > 0 else {}


def solvent_specific_volume(
    mass_fractions: Mapping[str, float], temperature: float, chemicals: ChemicalData,
    model: ElectrolyteModel | None = None,
) -> float:
    """Specific volume v (cm³/g) of a salt-free blend: Σ w_i/ρ_i(T) + Σ_{i<j} w_i w_j A_ij.

    Args:
        mass_fractions: solvent InChIKey → mass fraction (summing to 1).
    """
    model = model or default_model()
    chems = _by_key(chemicals)
    v = sum(w / pure_density(chems[k], temperature, model) for k, w in mass_fractions.items())
    for (a, wa), (b, wb) in combinations(sorted(mass_fractions.items()), 2):
        v += wa * wb * excess_coefficient(a, b, model)
    return v


def apparent_molar_volume(salt: SaltParameters, cyclic_mass_fraction: float) -> float:
    """V_φ (cm³/mol) of a salt at a cyclic-carbonate mass fraction of the solvent (interpolated)."""
    points = np.asarray(salt.apparent_molar_volume, dtype=float)
    return float(np.interp(cyclic_mass_fraction, points[:, 0], points[:, 1]))


def solution_state(
    moles: Mapping[str, float], temperature: float, chemicals: ChemicalData,
    model: ElectrolyteModel | None = None,
) -> SolutionState:
    """Mass, volume and molarities of ``moles`` (InChIKey → mol) at ``temperature`` K.

    Raises:
        ValueError: no solvent, negative amount, unknown chemical or missing pure-component data.
    """
    model = model or default_model()
    chems = _by_key(chemicals)
    amounts = _checked(moles, chems)
    salts = {k: n for k, n in amounts.items() if k in model.salts}
    solvent_masses = {k: n * chems[k].molar_mass for k, n in amounts.items() if k not in model.salts}
    if not solvent_masses:
        raise ValueError("composition has no solvent")
    solvent_mass = sum(solvent_masses.values())
    w = _normalised(solvent_masses)
    cyclic = sum(f for k, f in w.items() if _class_of(k, model) == "cyclic")
    volume = solvent_mass * solvent_specific_volume(w, temperature, chems, model)
    volume += sum(n * apparent_molar_volume(model.salts[k], cyclic) for k, n in salts.items())
    mass = solvent_mass + sum(n * chems[k].molar_mass for k, n in salts.items())
    return SolutionState(
        mass=mass,
        volume=volume,
        molarity={k: 1000.0 * n / volume for k, n in salts.items()},
        solvent_mass_fractions=w,
        solvent_mole_fractions=_normalised({k: amounts[k] for k in solvent_masses}),
    )


def density(
    moles: Mapping[str, float], temperature: float, chemicals: ChemicalData,
    model: ElectrolyteModel | None = None,
) -> float:
    """Density in g/cm³ of a solution (InChIKey → mol) at ``temperature`` K.

    Raises:
        ValueError: see :func:`solution_state`.
    """
    return solution_state(moles, temperature, chemicals, model).density


def viscosity(
    moles: Mapping[str, float], temperature: float, chemicals: ChemicalData,
    model: ElectrolyteModel | None = None,
) -> float:
    """Dynamic viscosity in mPa·s of a solution (InChIKey → mol) at ``temperature`` K.

    Raises:
        ValueError: see :func:`solution_state`; a solvent without viscosity data.
    """
    model = model or default_model()
    chems = _by_key(chemicals)
    state = solution_state(moles, temperature, chems, model)
    x = state.solvent_mole_fractions
    ln_eta = sum(xi * math.log(pure_viscosity(chems[k], temperature, model)) for k, xi in x.items())
    for (a, xa), (b, xb) in combinations(sorted(x.items()), 2):
        ln_eta += xa * xb * model.grunberg_nissan.get(frozenset((a, b)), 0.0)
    ln_eta += sum(model.salts[k].viscosity_b * c for k, c in state.molarity.items())
    return math.exp(ln_eta)


def moles_per_litre(
    solvent_mass_fractions: Mapping[str, float], salt: str, molarity: float, temperature: float,
    chemicals: ChemicalData, model: ElectrolyteModel | None = None,
) -> dict[str, float]:
    """Amounts (InChIKey → mol) in 1 L of a solution of ``molarity`` mol/L of ``salt`` in a
    solvent blend of the given salt-free mass fractions, at ``temperature`` K.

    Exact inverse of the salt term: the litre holds c mol of salt and (1000 − c·V_φ)/v g of solvent.

    Raises:
        ValueError: ``salt`` is not a modelled salt, or the salt alone would fill the litre.
    """
    model = model or default_model()
    if salt not in model.salts:
        raise ValueError(f"{salt!r} is not a salt of the model")
    chems = _by_key(chemicals)
    w = _normalised(dict(solvent_mass_fractions))
    cyclic = sum(f for k, f in w.items() if _class_of(k, model) == "cyclic")
    solvent_volume = 1000.0 - molarity * apparent_molar_volume(model.salts[salt], cyclic)
    if solvent_volume <= 0:
        raise ValueError(f"{molarity} mol/L of {salt} leaves no room for solvent")
    solvent_mass = solvent_volume / solvent_specific_volume(w, temperature, chems, model)
    out = {k: f * solvent_mass / chems[k].molar_mass for k, f in w.items()}
    out[salt] = out.get(salt, 0.0) + molarity
    return out


# --------------------------------------------------------------------------- conveniences
def _keyed(composition: Mapping[str, float], config: BenchConfig) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, amount in composition.items():
        try:
            inchikey = config.chemical(key).inchikey
        except KeyError as exc:
            raise ValueError(str(exc)) from exc
        out[inchikey] = out.get(inchikey, 0.0) + float(amount)
    return out


def model_density(
    composition: Mapping[str, float], temperature: float, config: BenchConfig,
    model: ElectrolyteModel | None = None,
) -> float:
    """Density (g/cm³) of mole fractions or moles keyed by InChIKey or chemical name, using the
    bench's chemical data.

    Raises:
        ValueError: unknown chemical, no solvent, negative amount, missing data.
    """
    keyed = _keyed(composition, config)
    return density(keyed, temperature, config.chemicals, model)


def model_viscosity(
    composition: Mapping[str, float], temperature: float, config: BenchConfig,
    model: ElectrolyteModel | None = None,
) -> float:
    """Viscosity (mPa·s) of mole fractions or moles keyed by InChIKey or name (see
    :func:`model_density`)."""
    keyed = _keyed(composition, config)
    return viscosity(keyed, temperature, config.chemicals, model)


def rolling_time(eta: float, rho: float, model: ElectrolyteModel | None = None) -> float:
    """Rolling time t (s) of the Lovis ball for viscosity ``eta`` (mPa·s) and sample density
    ``rho`` (g/cm³): t = η / (K·(ρ_ball − ρ)).

    Raises:
        ValueError: ρ ≥ ρ_ball (the ball would not roll).
    """
    model = model or default_model()
    if rho >= model.ball_density:
        raise ValueError(f"sample density {rho} g/cm³ is not below the ball's {model.ball_density}")
    return eta / (model.ball_constant * (model.ball_density - rho))


def rolling_viscosity(time: float, rho: float, model: ElectrolyteModel | None = None) -> float:
    """Viscosity (mPa·s) read from rolling time ``time`` (s) and density ``rho`` (g/cm³):
    η = K·(ρ_ball − ρ)·t."""
    model = model or default_model()
    return model.ball_constant * (model.ball_density - rho) * time
