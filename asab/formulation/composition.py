"""Compositions: parsing requests, naming, and what mixing volumes or masses really makes.

All compositions are dicts InChIKey → mole fraction (plain floats).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping
from numbers import Real

import numpy as np

from asab.config.models import BenchConfig, StockSolution
from asab.errors import RequestError
from asab.formulation.stocks import StockModel
from asab.names import did_you_mean, known_names
from asab.units import ascii_float

logger = logging.getLogger(__name__)

#: Largest |Σx − 1| a request may have; requests are never renormalised silently.
SUM_TOLERANCE = 1e-6

#: Balance readability used when neither the caller nor the configuration gives one, in g
#: (the Sartorius Entris II analytical models read to 0.1 mg; BalanceSettings default).
DEFAULT_READABILITY = 1e-4


def parse_composition(request: str | Mapping[str, object], config: BenchConfig) -> dict[str, float]:
    """Read a requested composition.

    Args:
        request: text ``"LiPF6=0.07, EC=0.29, EMC=0.64"`` (items separated by ``,`` or ``;``,
            ``name=value`` or ``name:value``; trailing separators ignored) or a mapping
            chemical → fraction. Chemicals by name (case-insensitive) or InChIKey.
        config: the bench configuration (its ``chemicals`` list).

    Returns:
        InChIKey → mole fraction, in the order of ``config.chemicals``.

    Raises:
        RequestError: empty request, malformed item, unknown chemical, non-numeric, negative,
            NaN or infinite fraction, a chemical given twice (also as name and InChIKey), or
            fractions whose sum differs from 1 by more than :data:`SUM_TOLERANCE`.
    """
    items = _items_of_text(request) if isinstance(request, str) else _items_of_mapping(request)
    if not items:
        raise RequestError("empty composition request")
    out: dict[str, float] = {}
    for label, raw in items:
        key = _inchikey(label, config)
        if key in out:
            raise RequestError(f"chemical {label!r} is given more than once")
        out[key] = _fraction(label, raw)
    total = math.fsum(out.values())
    if abs(total - 1.0) > SUM_TOLERANCE:
        raise RequestError(
            f"mole fractions sum to {total:.9g}, not 1 (tolerance {SUM_TOLERANCE:g}); "
            "give fractions that sum to 1 — requests are not renormalised"
        )
    order = {c.inchikey: i for i, c in enumerate(config.chemicals)}
    return dict(sorted(out.items(), key=lambda kv: order[kv[0]]))


def by_name(fractions: Mapping[str, float], config: BenchConfig) -> dict[str, float]:
    """Re-key a composition by chemical name for display.

    Args:
        fractions: InChIKey (or name) → mole fraction.
        config: the bench configuration.

    Raises:
        RequestError: a key that is not a configured chemical.
    """
    return {_chemical_name(key, config): float(v) for key, v in fractions.items()}


def composition_distance(a: Mapping[str, float], b: Mapping[str, float]) -> float:
    """Euclidean distance between two compositions over the union of their keys (absent = 0)."""
    keys = set(a) | set(b)
    return float(np.linalg.norm([a.get(k, 0.0) - b.get(k, 0.0) for k in keys])) if keys else 0.0


def achieved_composition(
    config: BenchConfig, stock_volumes: Mapping[str, float]
) -> dict[str, float]:
    """Mole fractions made by mixing the given stock volumes.

    x = C v / Σ(C v) with C the stocks' amount concentrations (mol/mL)
    (shared/docs/electrolyte_models.md).

    Args:
        config: the bench configuration.
        stock_volumes: stock name → volume in mL (≥ 0, not all 0).

    Returns:
        InChIKey → mole fraction over the components of the named stocks.

    Raises:
        RequestError: unknown stock, negative or non-finite volume, or nothing mixed.
    """
    names, volumes = _amounts_by_stock(stock_volumes, "volume")
    model = StockModel.from_config(config, names)
    return dict(zip(model.components, (float(v) for v in model.mix(volumes))))


def achieved_from_masses(
    config: BenchConfig,
    stock_masses_g: Mapping[str, float],
    balance_readability: float | None = None,
    mass_uncertainty: Mapping[str, float] | None = None,
) -> tuple[dict[str, float], dict[str, float]]:
    """Composition and its standard uncertainty from gravimetric dosing.

    Each dosed stock j is weighed (net mass W_j, g). Its component masses are W_j·m_ij/m_j
    (the stock's weighed mass fractions), so n_i = Σ_j W_j m_ij / (m_j M_i) and x = n / Σn.

    Uncertainty (GUM, JCGM 100:2008, first-order law of propagation, inputs uncorrelated):
        * W_j: a net mass is the difference of two readings, each rounded to the readability δ
          (rectangular, u = δ/√12, GUM F.2.2.1), so u(W_j) = δ/√6 — unless the caller gives
          u(W_j) itself in ``mass_uncertainty`` (e.g. with the balance's repeatability);
        * m_ij and m_j: the stock's component and total mass uncertainties from the config
          (``ComponentMass.uncertainty``, ``StockSolution.total_mass_uncertainty``).
        Molar masses are taken as exact. Sensitivities: ∂x_k/∂n_i = (δ_ki − x_k)/N,
        ∂n_i/∂W_j = m_ij/(m_j M_i), ∂n_i/∂m_ij = W_j/(m_j M_i), ∂n_i/∂m_j = −n_ij/m_j.

    Args:
        config: the bench configuration.
        stock_masses_g: stock name → dosed mass in g (≥ 0, not all 0).
        balance_readability: δ in g; default ``config.balance.readability`` or
            :data:`DEFAULT_READABILITY`.
        mass_uncertainty: stock name → standard uncertainty u(W_j) in g, replacing δ/√6 for
            the stocks it names.

    Returns:
        ``(fractions, uncertainties)``: InChIKey → mole fraction and → standard uncertainty.

    Raises:
        RequestError: unknown stock, negative/non-finite mass, nothing dosed, or a negative
            readability.
    """
    names, w = _amounts_by_stock(stock_masses_g, "mass")
    delta = _readability(config, balance_readability)
    model = StockModel.from_config(config, names)
    stocks = [config.stock(n) for n in names]
    molar = np.array([config.chemical(key).molar_mass for key in model.components])
    m = np.array([[_part(s, key)[0] for s in stocks] for key in model.components])
    u_m = np.array([[_part(s, key)[1] for s in stocks] for key in model.components])
    mt = np.array([s.total_mass for s in stocks])
    u_mt = np.array([s.total_mass_uncertainty for s in stocks])
    per_gram = m / (mt * molar[:, None])  # mol of i per g of stock j
    a = per_gram * w  # (k, n) mol from each stock
    total = a.sum()
    x = a.sum(axis=1) / total
    jac = (np.eye(len(x)) - x[:, None]) / total  # ∂x_k/∂n_i
    u_w2 = np.array([_mass_variance(n, delta, mass_uncertainty) for n in names])
    var = (jac @ per_gram) ** 2 @ u_w2
    var += (jac @ (a / mt)) ** 2 @ (u_mt**2)
    var += np.einsum("ki,ij->k", jac**2, (w / (mt * molar[:, None])) ** 2 * u_m**2)
    keys = model.components
    return (dict(zip(keys, (float(v) for v in x))),
            dict(zip(keys, (float(v) for v in np.sqrt(var)))))


# ---------------------------------------------------------------------- helpers
def _items_of_text(text: str) -> list[tuple[str, object]]:
    body = text.strip().rstrip(",;").strip()
    if not body:
        return []
    items: list[tuple[str, object]] = []
    for part in re.split(r"[,;]", body):
        match = re.fullmatch(r"\s*([^=:]*?)\s*[=:]\s*(.*?)\s*", part)
        if match is None or not match.group(1):
            raise RequestError(f"malformed composition item {part.strip()!r}: use name=fraction")
        items.append((match.group(1), match.group(2)))
    return items


def _items_of_mapping(mapping: Mapping[str, object]) -> list[tuple[str, object]]:
    if not isinstance(mapping, Mapping):
        raise RequestError(f"composition must be text or a mapping, got {type(mapping).__name__}")
    return [(str(k), v) for k, v in mapping.items()]


def _inchikey(label: str, config: BenchConfig) -> str:
    for chem in config.chemicals:
        if label.lower() == chem.name.lower() or label.upper() == chem.inchikey.upper():
            return chem.inchikey
    names = [c.name for c in config.chemicals]
    raise RequestError(f"unknown chemical {label!r}{did_you_mean(label, names)}; "
                       + known_names(names, "chemicals (name or InChIKey)"))


def _chemical_name(key: str, config: BenchConfig) -> str:
    try:
        return config.chemical(key).name
    except KeyError as exc:
        raise RequestError(exc.args[0]) from exc


def _fraction(label: str, raw: object) -> float:
    if isinstance(raw, bool) or not isinstance(raw, (Real, str)):
        raise RequestError(f"fraction of {label!r} is not a number: {raw!r}")
    try:
        value = ascii_float(raw) if isinstance(raw, str) else float(raw)
    except (ValueError, OverflowError) as exc:
        raise RequestError(f"fraction of {label!r} is not a number: {raw!r}") from exc
    if not math.isfinite(value):
        raise RequestError(f"fraction of {label!r} is not finite: {raw!r}")
    if value < 0:
        raise RequestError(f"fraction of {label!r} is negative: {value}")
    return value


def _amounts_by_stock(amounts: Mapping[str, float], what: str) -> tuple[list[str], np.ndarray]:
    names = list(amounts)
    try:
        values = np.array([float(amounts[n]) for n in names])
    except (TypeError, ValueError) as exc:
        raise RequestError(f"stock {what}s must be numbers: {dict(amounts)}") from exc
    if not names or not np.all(np.isfinite(values)) or np.any(values < 0) or values.sum() <= 0:
        raise RequestError(f"stock {what}s must be finite, ≥ 0 and not all 0: {dict(amounts)}")
    return names, values


def _readability(config: BenchConfig, given: float | None) -> float:
    if given is None:
        return config.balance.readability if config.balance is not None else DEFAULT_READABILITY
    if not math.isfinite(given) or given < 0:
        raise RequestError(f"balance readability must be finite and ≥ 0, got {given}")
    return float(given)


def _mass_variance(stock: str, delta: float, given: Mapping[str, float] | None) -> float:
    """u(W)² in g²: the caller's value for ``stock`` or δ²/6 (two readings, see above)."""
    if given is None or stock not in given:
        return delta**2 / 6.0
    u = float(given[stock])
    if not math.isfinite(u) or u < 0:
        raise RequestError(f"mass uncertainty of {stock} must be finite and ≥ 0, got {u}")
    return u * u


def _part(stock: StockSolution, key: str) -> tuple[float, float]:
    part = stock.components.get(key)
    return (0.0, 0.0) if part is None else (part.mass, part.uncertainty)
