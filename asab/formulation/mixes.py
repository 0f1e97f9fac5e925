"""Choosing which stocks to mix: among the mixes that make a composition, one the pumps deliver.

With more stocks than the composition space needs (4 stocks, 3 components → a one-parameter
family of mixes), many stock mixes make the same composition. The rule (deterministic):

1. Candidates are the *faces* of :class:`~asab.formulation.hull.HullProjector`: affinely
   independent stock subsets (Carathéodory: ≤ d + 1 stocks suffice) whose least-squares point
   is as close to the target as the whole makeable region allows (within
   :data:`EXACT_TOL`), with every weight of the subset positive (a zero weight means the
   smaller subset without it is the same mix). Accuracy is never traded for convenience: a
   subset that would only come within the makeable tolerance of the target is not a candidate.
2. For each, volumes v_j ∝ w_j / Σ_i c_ij (scaled to the total volume) and flows
   flow_j = total_flow · v_j / Σv (all stocks run together into the mixer for the same time).
3. A mix is deliverable when every used stock's flow is within its pump's syringe limits
   (``Syringe.min_flow`` … ``Syringe.max_flow``) and every volume is at least ``min_dose``.
4. Rank by: deliverable first; fewer stocks (fewer lines to prime, fewer junctions); larger
   smallest relative margin (min over used stocks of flow/min_flow − 1, 1 − flow/max_flow and
   volume/min_dose − 1: the mix furthest from every limit); then stock order (indices).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from asab.formulation.stocks import StockModel

logger = logging.getLogger(__name__)

#: Extra distance (mole fraction) a candidate subset may have over the best achievable one:
#: numerical noise only, so every candidate makes the same composition.
EXACT_TOL = 1e-9

#: Smallest weight counted as "uses the stock"; below it the smaller subset is the same mix.
MIN_WEIGHT = 1e-12

#: Default smallest volume of one stock in a mix, in mL (1 µL). asab's choice, not a vendor
#: figure: well below the 10 mL syringes' 15 % fill reserve and the mixer's dead volume, a dose
#: this small is dominated by carry-over (a 488 mm × 0.3 mm tube holds 34.5 µL).
DEFAULT_MIN_DOSE = 1e-3


@dataclass(frozen=True, eq=False)
class MixOption:
    """One way of making a composition.

    Attributes:
        support: indices of the stocks used (ascending).
        weights: (n,) mole shares of all stocks (0 outside ``support``).
        volumes: (n,) stock volumes in mL, summing to the total volume.
        flows: (n,) stock flows in mL/s, summing to the total flow.
        distance: distance from the target to this mix's composition (mole fraction).
        deliverable: every used flow within its pump's limits and every volume ≥ min dose.
        margin: smallest relative margin to a limit (negative when a limit is violated).
        reasons: what makes it undeliverable (empty when deliverable).
    """

    support: tuple[int, ...]
    weights: np.ndarray
    volumes: np.ndarray
    flows: np.ndarray
    distance: float
    deliverable: bool
    margin: float
    reasons: tuple[str, ...]

    def rank_key(self) -> tuple[bool, int, float, tuple[int, ...]]:
        """Sort key of the rule in the module docstring (smaller is better)."""
        return (not self.deliverable, len(self.support), -self.margin, self.support)


def mix_options(
    model: StockModel,
    target: np.ndarray,
    total_volume: float,
    total_flow: float,
    min_dose: float = DEFAULT_MIN_DOSE,
    slack: float = 0.0,
) -> list[MixOption]:
    """All candidate mixes for ``target``, best first (rule in the module docstring).

    Args:
        model: the stocks.
        target: (k,) mole fractions over ``model.components``.
        total_volume: mL to make (> 0).
        total_flow: mL/s through the mixer (> 0).
        min_dose: smallest volume of a used stock in mL (≥ 0).
        slack: also keep faces whose composition is up to this much farther (mole fraction)
            from ``target`` than the best one (default 0: only exact mixes).

    Returns:
        Non-empty list of :class:`MixOption`, sorted by :meth:`MixOption.rank_key`.
    """
    weights, dist = model.projector.face_candidates(np.asarray(target, dtype=float))
    best = float(dist.min())
    options = []
    for row, face in enumerate(model.projector.faces):
        w = weights[row]
        if dist[row] > best + max(EXACT_TOL, slack) or w[list(face)].min() <= MIN_WEIGHT:
            continue
        options.append(_option(model, w, float(dist[row]), total_volume, total_flow, min_dose))
    if not options:  # only faces with a negligible weight: keep the closest one as it is
        row = int(np.argmin(dist))
        options.append(_option(model, weights[row], best, total_volume, total_flow, min_dose))
    if not any(o.deliverable for o in options):
        achieved = model.fractions @ weights[int(np.argmin(dist))]
        wide = widest_mix(model, achieved, total_volume, total_flow, min_dose)
        if wide is not None:
            options.append(_option(model, wide, best, total_volume, total_flow, min_dose))
    options.sort(key=MixOption.rank_key)
    logger.debug("mix options: %s", [(o.support, o.deliverable, o.margin) for o in options])
    return options


def widest_mix(
    model: StockModel,
    composition: np.ndarray,
    total_volume: float,
    total_flow: float,
    min_dose: float = DEFAULT_MIN_DOSE,
) -> np.ndarray | None:
    """Mole shares (n,) of the mix of *all* stocks that makes ``composition`` with every flow
    furthest above its pump's minimum, or None when no such mix exists.

    The faces of rule 1 use ≤ d + 1 stocks; when none of them is deliverable (one stock's
    share falls below its pump's minimum flow), a mix of more stocks can still be. In volume
    fractions v (Σv = 1, flow_j = total_flow·v_j) the composition is the linear condition
    Σ_j (c_ij − x_i Σ_l c_lj) v_j = 0 for every component i, so the mix with the largest
    common relative margin t (flow_j ≥ (1 + t)·min_flow_j, flow_j ≤ max_flow_j,
    volume_j ≥ min_dose) is a linear programme (solved with SciPy's HiGHS).

    Args:
        model: the stocks.
        composition: (k,) mole fractions to make (a makeable point).
        total_volume: mL to make.
        total_flow: mL/s through the mixer.
        min_dose: smallest volume of a stock in mL.
    """
    from scipy.optimize import linprog

    c, x = model.concentrations, np.asarray(composition, dtype=float)
    n = c.shape[1]
    a_eq = np.vstack([np.hstack([c - np.outer(x, model.totals), np.zeros((len(x), 1))]),
                      np.hstack([np.ones(n), [0.0]])])
    b_eq = np.zeros(len(x) + 1)
    b_eq[-1] = 1.0
    lo = model.min_flows / total_flow  # v_j ≥ (1 + t) lo_j  ⇔  −v_j + lo_j t ≤ −lo_j
    a_ub = np.hstack([-np.eye(n), lo[:, None]])
    b_ub = -lo
    bounds = [(min_dose / total_volume, min(1.0, hi / total_flow)) for hi in model.max_flows]
    res = linprog(np.r_[np.zeros(n), -1.0], A_ub=a_ub, b_ub=b_ub, A_eq=a_eq, b_eq=b_eq,
                  bounds=bounds + [(-1.0, 1e6)], method="highs")
    if res.status != 0 or res.x[-1] < 0:
        return None
    w = res.x[:n] * model.totals
    return w / w.sum()


def choose_mix(
    model: StockModel,
    target: np.ndarray,
    total_volume: float,
    total_flow: float,
    min_dose: float = DEFAULT_MIN_DOSE,
) -> MixOption:
    """The best mix for ``target`` (first of :func:`mix_options`; see the module docstring)."""
    return mix_options(model, target, total_volume, total_flow, min_dose)[0]


def _option(
    model: StockModel,
    weights: np.ndarray,
    distance: float,
    total_volume: float,
    total_flow: float,
    min_dose: float,
) -> MixOption:
    """Volumes, flows and limit checks of one weight vector."""
    support = tuple(int(j) for j in np.flatnonzero(weights > 0))
    w = np.where(weights > 0, weights, 0.0)
    volumes = model.volumes(w, total_volume)
    flows = total_flow * volumes / total_volume
    used = np.array(support)
    lo, hi = model.min_flows[used], model.max_flows[used]
    margins = [flows[used] / lo - 1.0, 1.0 - flows[used] / hi]
    if min_dose > 0:
        margins.append(volumes[used] / min_dose - 1.0)
    margin = float(np.min(margins))
    reasons = tuple(_reasons(model, support, volumes, flows, min_dose))
    return MixOption(support, w, volumes, flows, distance, not reasons, margin, reasons)


def _reasons(
    model: StockModel,
    support: tuple[int, ...],
    volumes: np.ndarray,
    flows: np.ndarray,
    min_dose: float,
) -> list[str]:
    """Human-readable limit violations of a mix (empty when deliverable)."""
    out = []
    for j in support:
        name, pump = model.names[j], model.pumps[j]
        if flows[j] < model.min_flows[j]:
            out.append(f"{name}: flow {flows[j]:.3g} mL/s below pump {pump}'s minimum "
                       f"{model.min_flows[j]:.3g} mL/s")
        if flows[j] > model.max_flows[j]:
            out.append(f"{name}: flow {flows[j]:.3g} mL/s above pump {pump}'s maximum "
                       f"{model.max_flows[j]:.3g} mL/s")
        if volumes[j] < min_dose:
            out.append(f"{name}: volume {volumes[j]:.3g} mL below the minimum dose "
                       f"{min_dose:.3g} mL")
    return out
