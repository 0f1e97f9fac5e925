"""The stock solutions of a bench as linear algebra: concentrations, mole fractions, hull.

Bookkeeping (shared/docs/electrolyte_models.md, "Composition bookkeeping"):
    c_ij = (m_ij / M_i) / (m_j / ρ_j)  [mol/mL]  — component i in stock j;
    ŝ_j = c_j / Σ_i c_ij                         — the stock's own mole-fraction vector;
    mixing volumes v gives amounts n = C v and mole fractions x = n / Σn = S w with
    w_j = v_j Σ_i c_ij / Σ_k v_k Σ_i c_ik (w on the simplex), and conversely v_j ∝ w_j / Σ_i c_ij.
So the makeable compositions are exactly conv(ŝ_1 … ŝ_n).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from asab.config.models import BenchConfig, StockSolution
from asab.errors import ConfigError, Problem, RequestError
from asab.formulation.hull import RANK_TOL, HullProjector

logger = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class StockModel:
    """Stock solutions of one bench in matrix form.

    Attributes:
        components: ordered InChIKeys (k), the union of the stocks' components in the order of
            ``config.chemicals``.
        names: stock names (n), in the order of ``config.stocks`` (or as selected).
        pumps: pump name per stock (n).
        concentrations: (k, n) amount concentrations C in mol/mL.
        min_flows: (n,) lowest deliverable flow of each stock's pump in mL/s.
        max_flows: (n,) highest deliverable flow of each stock's pump in mL/s.

    Raises:
        ConfigError: inconsistent shapes, negative or non-finite concentrations, or a stock
            without any amount of substance.
    """

    components: tuple[str, ...]
    names: tuple[str, ...]
    pumps: tuple[str, ...]
    concentrations: np.ndarray
    min_flows: np.ndarray
    max_flows: np.ndarray

    def __post_init__(self) -> None:
        c = np.array(self.concentrations, dtype=float)
        k, n = len(self.components), len(self.names)
        problems = []
        if c.shape != (k, n) or len(self.pumps) != n:
            problems.append(f"concentrations {c.shape} / pumps {len(self.pumps)} ≠ ({k}, {n})")
        elif not np.all(np.isfinite(c)) or np.any(c < 0):
            problems.append("concentrations must be finite and non-negative")
        elif np.any(c.sum(axis=0) <= 0):
            empty = [self.names[j] for j in np.flatnonzero(c.sum(axis=0) <= 0)]
            problems.append(f"stocks without any amount of substance: {empty}")
        if problems:
            raise ConfigError([Problem("stock solutions", None, p) for p in problems])
        for name, arr in (("concentrations", c), ("min_flows", self.min_flows),
                          ("max_flows", self.max_flows)):
            a = np.array(arr, dtype=float)
            a.setflags(write=False)
            object.__setattr__(self, name, a)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_config(cls, config: BenchConfig, stocks: Sequence[str] | None = None) -> StockModel:
        """Build the model of ``stocks`` (names; default: all of ``config.stocks``).

        Args:
            config: the bench configuration.
            stocks: stock names to use, in this order; ``None`` for all configured stocks.

        Raises:
            RequestError: an unknown or repeated stock name, or an empty selection.
            ConfigError: a component missing from ``config.chemicals`` or an unknown pump.
        """
        chosen = _select_stocks(config, stocks)
        keys = {key for s in chosen for key in s.components}
        known = {c.inchikey: c for c in config.chemicals}
        missing = sorted(keys - set(known))
        if missing:
            raise ConfigError([Problem("stock solutions", None,
                                       f"component {key} is not in the chemicals list")
                               for key in missing])
        components = tuple(c.inchikey for c in config.chemicals if c.inchikey in keys)
        conc = np.array([[stock_concentration(s, known[key].molar_mass, key) for s in chosen]
                         for key in components]).reshape(len(components), len(chosen))
        try:
            syringes = [config.syringe_of(s.pump) for s in chosen]
        except KeyError as exc:
            raise ConfigError(f"stock pump or syringe not configured: {exc}") from exc
        return cls(
            components=components,
            names=tuple(s.name for s in chosen),
            pumps=tuple(s.pump for s in chosen),
            concentrations=conc,
            min_flows=np.array([sy.min_flow for sy in syringes]),
            max_flows=np.array([sy.max_flow for sy in syringes]),
        )

    # ------------------------------------------------------------------ derived matrices
    @cached_property
    def totals(self) -> np.ndarray:
        """(n,) total amount concentration Σ_i c_ij of each stock in mol/mL."""
        t = self.concentrations.sum(axis=0)
        t.setflags(write=False)
        return t

    @cached_property
    def scratch(self) -> dict:
        """Per-model cache of derived systems (:mod:`asab.formulation.mixes`)."""
        return {}

    @cached_property
    def equalities(self) -> tuple[np.ndarray, int]:
        """``(a, r)``: the mix equalities S w = x of all stocks reduced to their r independent
        rows (a = U_rᵀ S from the SVD of S; (r, n), full row rank), for the mix search."""
        return reduced_equalities(self.fractions)

    @cached_property
    def fractions(self) -> np.ndarray:
        """(k, n) stock mole-fraction matrix S, column j = ŝ_j = c_j / Σ_i c_ij."""
        s = self.concentrations / self.totals
        s.setflags(write=False)
        return s

    @cached_property
    def projector(self) -> HullProjector:
        """The exact hull projector of :attr:`fractions` (built on first use)."""
        return HullProjector(self.fractions)

    # ------------------------------------------------------------------ compositions
    def vector(self, x: Mapping[str, float]) -> tuple[np.ndarray, float]:
        """Split a composition into the component space and the rest.

        Args:
            x: InChIKey → mole fraction.

        Returns:
            ``(x_c, r)``: (k,) fractions of :attr:`components` (0 where absent) and the
            Euclidean norm ``r`` of the fractions of chemicals no stock contains.

        Raises:
            RequestError: a non-finite fraction.
        """
        values = {key: float(v) for key, v in x.items()}
        if not all(math.isfinite(v) for v in values.values()):
            raise RequestError(f"non-finite mole fraction in {values}")
        xc = np.array([values.get(key, 0.0) for key in self.components])
        rest = [v for key, v in values.items() if key not in self.components]
        return xc, float(np.linalg.norm(rest)) if rest else 0.0

    def closest_makeable(
        self, x: Mapping[str, float]
    ) -> tuple[np.ndarray, dict[str, float], float]:
        """Closest makeable composition to ``x`` (exact; see :mod:`asab.formulation.hull`).

        Chemicals of ``x`` that no stock contains count fully in the distance
        (d² = ‖S w − x_c‖² + Σ x_other²).

        Args:
            x: InChIKey → mole fraction.

        Returns:
            ``(w, x_closest, distance)``: (n,) stock mole shares on the simplex; InChIKey →
            mole fraction of the closest makeable composition (over :attr:`components`);
            Euclidean distance in mole-fraction units.
        """
        xc, rest = self.vector(x)
        sol = self.projector.project(xc)
        closest = dict(zip(self.components, (float(v) for v in sol.point)))
        return sol.weights, closest, float(math.hypot(sol.distance, rest))

    def is_makeable(self, x: Mapping[str, float], tol: float) -> bool:
        """True when the distance from ``x`` to the makeable region is at most ``tol``."""
        return self.closest_makeable(x)[2] <= tol

    def reachable_ranges(self, total_flow: float | None = None) -> dict[str, tuple[float, float]]:
        """Per component, the (min, max) mole fraction over the makeable region.

        Without ``total_flow`` the region is the polytope conv(ŝ_1 … ŝ_n); a coordinate
        attains its extremes over a polytope at vertices, and every vertex is a stock, so the
        range is the min/max of the corresponding row of S.

        With ``total_flow`` (mL/s through the mixer) the region is what the pumps can also
        carry at that flow: stock j's volume fraction v_j is at most max_flow_j / total_flow.
        Each bound is then a linear-fractional programme, max (C v)_i / (Σ_l c_l · v) over
        {v ≥ 0, Σv = 1, v_j ≤ u_j}, made linear by the Charnes–Cooper substitution y = τ v,
        τ = 1 / (Σ_l c_l · v) (A. Charnes and W. W. Cooper, Naval Res. Logist. Q. 9 (1962)
        181): max (C y)_i s.t. Σ_l c_l · y = 1, Σy = τ, 0 ≤ y_j ≤ u_j τ — 2k LPs (SciPy's
        HiGHS) of n + 1 variables. When every pump carries the whole flow no cap binds and the
        vertex ranges above are the answer (exact, no LP). A pump's minimum flow is not a constraint here (a stock may
        be left out); a bound that needs a stock below its minimum is reported by the planner
        as not deliverable.

        Args:
            total_flow: mL/s, finite and > 0, or None.

        Returns:
            InChIKey → (min, max) mole fraction.

        Raises:
            RequestError: a bad ``total_flow``, or no stock mix the pumps carry at it.
        """
        if total_flow is not None and not (math.isfinite(total_flow) and total_flow > 0):
            raise RequestError(f"total flow must be finite and > 0, got {total_flow!r}")
        if total_flow is None or bool(np.all(self.max_flows >= total_flow)):
            s = self.fractions  # no cap binds: the hull's own (exact) vertex ranges
            return {key: (float(s[i].min()), float(s[i].max()))
                    for i, key in enumerate(self.components)}
        from scipy.optimize import linprog

        n = len(self.names)
        caps = np.minimum(1.0, self.max_flows / total_flow)
        a_eq = np.array([np.r_[self.totals, 0.0], np.r_[np.ones(n), -1.0]])
        a_ub = np.hstack([np.eye(n), -caps[:, None]])
        out = {}
        for i, key in enumerate(self.components):
            ends = []
            for sign in (1.0, -1.0):
                res = linprog(np.r_[sign * self.concentrations[i], 0.0], A_ub=a_ub,
                              b_ub=np.zeros(n), A_eq=a_eq, b_eq=[1.0, 0.0], method="highs")
                if res.status != 0:
                    raise RequestError(
                        f"no stock mix the pumps carry at a total flow of {total_flow:.6g} mL/s: "
                        f"the stocks' pumps reach {float(self.max_flows.sum()):.6g} mL/s "
                        f"together at most")
                ends.append(float(np.clip(sign * res.fun, 0.0, 1.0)))
            out[key] = (ends[0], ends[1])
        return out

    def volumes(self, weights: np.ndarray, total_volume: float) -> np.ndarray:
        """Stock volumes (n,) in mL for mole shares ``weights``: v_j ∝ w_j / Σ_i c_ij, Σv = total.

        Args:
            weights: (n,) mole shares on the simplex.
            total_volume: mL.
        """
        raw = np.asarray(weights, dtype=float) / self.totals
        return total_volume * raw / raw.sum()

    def mix(self, volumes: np.ndarray) -> np.ndarray:
        """Mole fractions (k,) of mixing ``volumes`` (n,) mL: x = C v / Σ(C v)."""
        amounts = self.concentrations @ np.asarray(volumes, dtype=float)
        return amounts / amounts.sum()


def reduced_equalities(s: np.ndarray) -> tuple[np.ndarray, int]:
    """``(U_rᵀ S, r)`` for a (k, m) matrix S of rank r (singular values above
    :data:`~asab.formulation.hull.RANK_TOL` relative)."""
    u, sv, _ = np.linalg.svd(s, full_matrices=False)
    rank = max(1, int((sv > RANK_TOL * max(1.0, float(sv[0]))).sum()))
    a = u[:, :rank].T @ s
    a.setflags(write=False)
    return a, rank


def stock_concentration(stock: StockSolution, molar_mass: float, key: str) -> float:
    """Amount concentration of component ``key`` in ``stock`` in mol/mL.

    c = (m_i / M_i) / (m_total / ρ) with m in g, M in g/mol, ρ in g/cm³ (= g/mL)
    (shared/docs/electrolyte_models.md). 0 when the stock does not list the component.
    """
    part = stock.components.get(key)
    if part is None:
        return 0.0
    return (part.mass / molar_mass) / (stock.total_mass / stock.density)


def _select_stocks(config: BenchConfig, stocks: Sequence[str] | None) -> list[StockSolution]:
    """The configured stocks named in ``stocks`` (all when None); RequestError otherwise."""
    if stocks is None:
        chosen = list(config.stocks)
    else:
        if isinstance(stocks, str):
            raise RequestError("stocks must be a sequence of stock names, not one string")
        if len(set(stocks)) != len(stocks):
            raise RequestError(f"stock names repeated in {list(stocks)}")
        try:
            chosen = [config.stock(name) for name in stocks]
        except KeyError as exc:
            raise RequestError(str(exc.args[0])) from exc
    if not chosen:
        raise RequestError("no stock solutions to formulate from")
    return chosen
