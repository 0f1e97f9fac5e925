"""Choosing which stocks to mix: among the mixes that make a composition, one the pumps deliver.

With more stocks than the composition space needs, many stock mixes make the same
composition x*: in mole shares w they form the polytope P = {w ≥ 0 : S w = x*, Σw = 1}. Its
vertices are the mixes of affinely independent stock subsets (≤ d + 1 stocks, Carathéodory),
the mixes no stock can be left out of. The rule (deterministic, polynomial):

1. Candidates are vertices of P. The search starts at the projection's own solution (the NNLS
   solution of :mod:`asab.formulation.hull`, reduced to a vertex by Carathéodory's reduction
   when rounding left it on more stocks than the rank) and walks along P's edges (simplex
   pivots: one stock enters, the ratio test names the one that leaves), each step to the best
   neighbour, for as long as that improves on the current vertex; at a degenerate vertex the
   other bases of the same point are looked through for a move. Each step costs one r × r
   solve and a ratio test per non-basic stock. The result is the best vertex of its
   neighbourhood. When it is not deliverable, the walk starts again from the vertex that
   maximises the share of each stock not yet seen (one LP each) until one is. On a bench with
   one stock more than the composition space needs (the 2023 bench: 4 stocks, 3 components)
   P is a segment and its two ends are every candidate. Every candidate is checked to make
   x* (to :data:`EXACT_TOL`); a vertex with a share of :data:`SNAP_SHARE` or less is replaced
   by the mix of its other stocks when that is within :data:`EXACT_TOL` (as the exhaustive
   rule accepted any face that close).
   Deciding whether *some* mix keeps every pump within its limits is a combinatorial problem
   (each stock either unused or above its pump's minimum); the walk, the restarts and the
   LP of rule 6 are polynomial but can miss a deliverable vertex that no walk reaches.
2. For each, volumes v_j ∝ w_j / Σ_i c_ij (scaled to the total volume) and flows
   flow_j = total_flow · v_j / Σv (all stocks run together into the mixer for the same time).
3. A mix is deliverable when every used stock's flow is within its pump's syringe limits
   (``Syringe.min_flow`` … ``Syringe.max_flow``) and every volume is at least ``min_dose``.
4. Rank by: deliverable first; fewer stocks (fewer lines to prime, fewer junctions); larger
   smallest relative margin (min over used stocks of flow/min_flow − 1, 1 − flow/max_flow and
   volume/min_dose − 1: the mix furthest from every limit); then stock order (indices).
   Mixes that are not deliverable rank by margin alone (the one least short of a limit
   first), so that the walk heads for deliverable mixes.
5. Stocks the ledger says are available come first: with ``available`` given, the walk runs
   on the available stocks when they make x* and yields a deliverable mix; else on all.
6. When no vertex is deliverable, the mix of all usable stocks with the widest margin, a
   linear programme (:func:`widest_mix`), is a candidate too.

:func:`near_mix` handles a makeable request whose exact mixes are all undeliverable: it
drops the stocks below their limits and aims at the closest composition of the rest, as long
as that stays within the makeable tolerance.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from asab.formulation.hull import RANK_TOL, HullProjector, caratheodory, distance_to
from asab.formulation.stocks import StockModel, reduced_equalities

logger = logging.getLogger(__name__)

#: Extra distance (mole fraction) a pool of stocks may have over all stocks and still count
#: as making the same composition: numerical noise only.
EXACT_TOL = 1e-9

#: Shares (mole) up to which a stock is tried without: a vertex that needs 1e-6 of a stock
#: is replaced by the mix of its other stocks when that is within EXACT_TOL (the old face
#: rule took any face that close).
SNAP_SHARE = 1e-6

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
        return (not self.deliverable, len(self.support) if self.deliverable else 0,
                -self.margin, self.support)


def mix_options(
    model: StockModel,
    target: np.ndarray,
    total_volume: float,
    total_flow: float,
    min_dose: float = DEFAULT_MIN_DOSE,
    available: Sequence[bool] | None = None,
    start: np.ndarray | None = None,
) -> list[MixOption]:
    """The candidate mixes for ``target`` the search visited, best first (rule in the module
    docstring).

    Args:
        model: the stocks.
        target: (k,) mole fractions over ``model.components``; a makeable point (the request,
            or its closest makeable composition).
        total_volume: mL to make (> 0).
        total_flow: mL/s through the mixer (> 0).
        min_dose: smallest volume of a used stock in mL (≥ 0).
        available: (n,) True for the stocks the ledger can supply (default: all).
        start: (n,) weights of ``target``'s projection when the caller has them (saves one
            projection).

    Returns:
        Non-empty list of :class:`MixOption`; mixes of available stocks first when they hold
        a deliverable one, then by :meth:`MixOption.rank_key`.

    Raises:
        FormulationError: a numerical failure of the projection (see
            :meth:`~asab.formulation.hull.HullProjector.project`).
    """
    return _options(model, np.asarray(target, dtype=float), total_volume, total_flow, min_dose,
                    available, start, None)


def _options(model: StockModel, x: np.ndarray, total_volume: float, total_flow: float,
             min_dose: float, available: Sequence[bool] | None, start: np.ndarray | None,
             count: int | None) -> list[MixOption]:
    """:func:`mix_options`, building only the first ``count`` options (all when None)."""
    n = len(model.names)
    pools = [np.arange(n)]
    if available is not None:
        mask = np.asarray(available, dtype=bool)
        if mask.shape != (n,):
            raise ValueError(f"available must have one entry per stock ({n})")
        if 0 < mask.sum() < n:
            pools.insert(0, np.flatnonzero(mask))
    full = model.projector.project(x).weights if start is None else np.asarray(start, float)
    for pool in pools:
        begin = (full if len(pool) == n
                 else _pool_start(model, pool, x, distance_to(model.fractions, full, x)))
        if begin is None:
            continue
        ranked = _vertex_walk(model, pool, begin, total_volume, total_flow, min_dose)
        if not ranked[0][0][0] or len(pool) == n:
            break
    options = [mix_option(model, w, distance_to(model.fractions, w, x), total_volume, total_flow,
                          min_dose) for _, w in ranked[:count]]
    if len(options) > 1:
        options.sort(key=MixOption.rank_key)  # the walk's keys agree up to rounding only
    if not options[0].deliverable:
        wide = widest_mix(model, model.fractions @ options[0].weights, total_volume, total_flow,
                          min_dose)
        if wide is not None:
            options.append(mix_option(model, wide, float(np.linalg.norm(
                model.fractions @ wide - x)), total_volume, total_flow, min_dose))
            options.sort(key=MixOption.rank_key)
    if logger.isEnabledFor(logging.DEBUG):
        logger.debug("mix options: %s", [(o.support, o.deliverable, o.margin) for o in options])
    return options


def near_mix(
    model: StockModel,
    target: np.ndarray,
    total_volume: float,
    total_flow: float,
    min_dose: float,
    tolerance: float,
    available: Sequence[bool] | None = None,
) -> MixOption | None:
    """A deliverable mix within ``tolerance`` of ``target`` when no exact one is deliverable.

    Support reduction: take the best exact mix, leave out every stock it has below its pump's
    minimum flow or the minimum dose, aim at the closest composition of the remaining stocks,
    and repeat while that composition stays within ``tolerance`` of ``target`` (at most one
    round per stock).

    Returns:
        The deliverable :class:`MixOption` (``distance`` from ``target``), or None.
    """
    x = np.asarray(target, dtype=float)
    pool = np.arange(len(model.names))
    option = choose_mix(model, x, total_volume, total_flow, min_dose, available)
    while not option.deliverable:
        low = {j for j in option.support if option.flows[j] < model.min_flows[j]
               or option.volumes[j] < min_dose}
        keep = np.array([j for j in pool if j not in low], dtype=int)
        if not low or keep.size == 0 or keep.size == pool.size:
            return None
        pool = keep
        sub = HullProjector(model.fractions[:, pool]).project(x)
        if sub.distance > tolerance:
            return None
        w = np.zeros(len(model.names))
        w[pool] = sub.weights
        _, best = _vertex_walk(model, pool, w, total_volume, total_flow, min_dose)[0]
        option = mix_option(model, best, float(np.linalg.norm(model.fractions @ best - x)),
                            total_volume, total_flow, min_dose)
    return option


#: Steps of the vertex walk at most, per stock (each step strictly improves the rank key, so
#: the walk ends long before; the bound only guards against rounding loops).
WALK_STEPS_PER_STOCK = 4

#: Smallest step (in mole share) along an edge of P that counts as reaching another vertex;
#: shorter steps are degenerate pivots (the same point under another basis).
STEP_TOL = 1e-12


def _pool_start(model: StockModel, pool: np.ndarray, x: np.ndarray,
                best: float) -> np.ndarray | None:
    """Weights (n,) of ``x``'s projection onto the stocks ``pool``, or None when those stocks
    do not make ``x`` as closely as all stocks do."""
    sub = HullProjector(model.fractions[:, pool]).project(x)
    if sub.distance > best + EXACT_TOL:
        return None
    w = np.zeros(len(model.names))
    w[pool] = sub.weights
    return w


def _vertex_walk(model: StockModel, pool: np.ndarray, start: np.ndarray, total_volume: float,
                 total_flow: float, min_dose: float) -> list[tuple[tuple, np.ndarray]]:
    """Rule 1 on the stocks ``pool``: ``(rank key, weights (n,))`` of the vertices visited
    from ``start``, best first; when the best is not deliverable, the walk is repeated from
    the vertex that maximises each further stock's share (one LP each).

    The equalities S w = x* (Σw = 1 follows: every column of S sums to 1) are reduced to
    their r independent rows once (an SVD), so that each basis is a square r × r system.
    Every candidate is checked to make x* (:data:`EXACT_TOL`); a vertex with a share of
    :data:`SNAP_SHARE` or less is replaced by the mix of its other stocks when that is within
    :data:`EXACT_TOL`.
    """
    system = _walk_system(model, pool, total_volume, total_flow, min_dose)
    w = start[pool]
    w = np.where(w > MIN_WEIGHT, w, 0.0)
    w /= w.sum()
    if np.count_nonzero(w) > system.rank:  # rounding left a dependent support (or a caller's w)
        w = caratheodory(system.a, w)
    if system.line is not None:  # P is a segment (or a point): its two ends are every candidate
        ends = _segment_ends(w, system.line)  # exact by construction (w plus a null vector)
        tiny = (ends > 0) & (ends <= SNAP_SHARE)
        if tiny.any():
            for i in np.flatnonzero(tiny.any(axis=1)).tolist():
                ends[i] = _snap(system, ends[i])
        found = sorted(zip(system.limits.key(ends), ends), key=lambda kw: kw[0])
        return [(key, _embed(model, pool, weights)) for key, weights in found]
    goal = system.a @ w  # what every candidate must make (reduced coordinates)
    found = _walk(system, goal, w)
    if found and found[0][0][0]:  # not deliverable: walk again from other vertices
        tried = {key[3] for key, _ in found}
        for j in range(len(pool)):
            if any(int(pool[j]) in support for support in tried):
                continue
            begin = _max_share_vertex(system.a, goal, j)
            if begin is None:
                continue
            more = _walk(system, goal, begin)
            tried |= {key[3] for key, _ in more}
            found = sorted(found + more, key=lambda kw: kw[0])
            if not found[0][0][0]:
                break
    if not found:  # rounding rejected every candidate: the start itself is exact
        found = [(system.limits.key(w[None, :])[0], w)]
    unique: dict[tuple, tuple] = {}
    for key, weights in found:  # restarts can reach a vertex again: keep its first visit
        unique.setdefault(key[3], (key, weights))
    return [(key, _embed(model, pool, weights)) for key, weights in unique.values()]


def _walk(system: _System, goal: np.ndarray, w: np.ndarray) -> list[tuple[tuple, np.ndarray]]:
    """The vertices visited from the vertex ``w``, best first (each step to the best
    neighbour while it improves the rank key; at a degenerate vertex the other bases of the
    same point are tried too, in Bland's order)."""
    a = system.a
    support = np.flatnonzero(w)
    basis = support if support.size == system.rank else _complete_basis(a, support)
    here = _checked(system, goal, w[None, :])
    if not here:
        return []
    key, w = here[0]
    visited = {key[3]: (key, w)}
    for _ in range(WALK_STEPS_PER_STOCK * a.shape[1]):
        step = _best_move(system, goal, basis, w, key)
        if step is None:
            break
        basis, w, key = step
        visited.setdefault(key[3], (key, w))
    return sorted(visited.values(), key=lambda kw: kw[0])


def _best_move(system: _System, goal: np.ndarray, basis: np.ndarray, w: np.ndarray,
               key: tuple) -> tuple[np.ndarray, np.ndarray, tuple] | None:
    """The best move from ``w`` that improves on ``key``: from ``basis`` first, then from the
    other bases of the same point reached by degenerate pivots (breadth first, at most
    :data:`DEGENERATE_BASES` bases), the first basis with an improving move giving it."""
    queue, seen = [basis], {frozenset(basis.tolist())}
    while queue and len(seen) <= DEGENERATE_BASES:
        current = queue.pop(0)
        move, same = _pivots(system, goal, current, w)
        if move is not None and move[2] < key:
            return move
        for other in same:
            tag = frozenset(other.tolist())
            if tag not in seen:
                seen.add(tag)
                queue.append(other)
    return None


def _pivots(system: _System, goal: np.ndarray, basis: np.ndarray,
            w: np.ndarray) -> tuple[tuple | None, list[np.ndarray]]:
    """From the vertex ``w`` with ``basis``: the best move to another vertex (its basis,
    weights, rank key; None when there is none) and the bases of degenerate pivots."""
    a = system.a
    m = a.shape[1]
    if basis.size < a.shape[0]:
        return None, []
    outside = np.ones(m, dtype=bool)
    outside[basis] = False
    others = np.flatnonzero(outside)
    if others.size == 0:
        return None, []
    try:
        direction = -np.linalg.solve(a[:, basis], a[:, others])  # (r, |N|): d w_B / d w_q
    except np.linalg.LinAlgError:
        return None, []
    wb = w[basis][:, None]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        ratios = np.where(direction < -STEP_TOL, wb / -direction, np.inf)
    leave = np.argmin(ratios, axis=0)  # the first basic stock to reach 0 (lowest position)
    theta = ratios[leave, np.arange(others.size)]
    finite = np.isfinite(theta)
    same = []
    for c in np.flatnonzero(finite & (theta <= STEP_TOL)).tolist():
        other = basis.copy()
        other[leave[c]] = others[c]
        same.append(other)
    moves = np.flatnonzero(finite & (theta > STEP_TOL))
    if moves.size == 0:
        return None, same
    new = np.tile(w, (moves.size, 1))
    new[:, basis] += (direction[:, moves] * theta[moves]).T
    rows = np.arange(moves.size)
    new[rows, others[moves]] += theta[moves]  # += : a non-basic stock may hold a share
    new[rows, basis[leave[moves]]] = 0.0
    new[new <= MIN_WEIGHT] = 0.0
    new /= new.sum(axis=1, keepdims=True)
    found = _checked(system, goal, new, rows=moves)
    if not found:
        return None, same
    key, weights, c = min(found, key=lambda kwc: kwc[0])
    new_basis = basis.copy()
    new_basis[leave[c]] = others[c]
    return (new_basis, weights, key), same


def _checked(system: _System, goal: np.ndarray, w: np.ndarray, rows: np.ndarray | None = None):
    """Rank keys of the rows of ``w`` (k, m) that make ``goal``, best first, each row with a
    share of :data:`SNAP_SHARE` or less first replaced by the mix of its other stocks when
    that is within :data:`EXACT_TOL`; ``(key, weights)`` pairs, or ``(key, weights, rows[i])`` when ``rows`` is
    given."""
    scale = 1.0 + float(np.abs(goal).max())
    err = np.abs(w @ system.a.T - goal).max(axis=1)
    keep = np.flatnonzero(err <= EXACT_TOL * scale)
    if keep.size == 0:
        return []
    w = w[keep]
    tiny = ((w > 0) & (w <= SNAP_SHARE)).any(axis=1)
    for i in np.flatnonzero(tiny).tolist():
        w[i] = _snap(system, w[i])
    keys = system.limits.key(w)
    if rows is None:
        return sorted(zip(keys, w), key=lambda kw: kw[0])
    return [(keys[i], w[i], int(rows[keep[i]])) for i in range(len(keys))]


def _snap(system: _System, w: np.ndarray) -> np.ndarray:
    """``w`` without its shares of :data:`SNAP_SHARE` or less when the least-squares mix of its
    other stocks is within :data:`EXACT_TOL` of ``w``'s composition (the old rule accepted
    any face that close), else ``w``."""
    rest = np.flatnonzero(w > SNAP_SHARE)
    if rest.size == 0:
        return w
    s = system.projector.points
    x = s @ w
    snapped = system.projector.face_weights(x, rest)
    if snapped is None or distance_to(s, snapped, x) > EXACT_TOL:
        return w
    return snapped


def _max_share_vertex(a: np.ndarray, goal: np.ndarray, j: int) -> np.ndarray | None:
    """The vertex of {w ≥ 0 : a w = goal} with the largest share of stock ``j`` (an LP, the
    dual simplex of SciPy's HiGHS, which ends on a vertex), or None when ``j`` has no share
    in any mix."""
    from scipy.optimize import linprog

    c = np.zeros(a.shape[1])
    c[j] = -1.0
    res = linprog(c, A_eq=a, b_eq=goal, bounds=(0, None), method="highs-ds")
    if res.status != 0 or not res.x[j] > MIN_WEIGHT:
        return None
    w = np.where(res.x > MIN_WEIGHT, res.x, 0.0)
    return caratheodory(a, w / w.sum())


def _embed(model: StockModel, pool: np.ndarray, weights: np.ndarray) -> np.ndarray:
    if len(pool) == len(model.names):  # the whole pool, in order
        return weights
    full = np.zeros(len(model.names))
    full[pool] = weights
    return full


def _segment_ends(w: np.ndarray, line: np.ndarray) -> np.ndarray:
    """The ends (2, m) of {w + t·line ≥ 0} (P when it is one-dimensional; ``line`` spans the
    null space of the equalities), or (1, m) ``w`` itself when ``line`` is 0 (P a point)."""
    if not line.any():
        return w[None, :]
    t_max, t_min = np.inf, -np.inf
    for wj, lj in zip(w.tolist(), line.tolist()):  # a few stocks: plain floats are quicker
        if lj < -STEP_TOL:
            t_max = min(t_max, wj / -lj)
        elif lj > STEP_TOL:
            t_min = max(t_min, -wj / lj)
    ends = w + np.array([[t_min if t_min > -np.inf else 0.0],
                         [t_max if t_max < np.inf else 0.0]]) * line
    ends[ends <= MIN_WEIGHT] = 0.0
    return ends / ends.sum(axis=1, keepdims=True)


#: Walk systems kept per stock model (pools × volume/flow/dose settings).
WALK_CACHE = 32

#: Bases of one degenerate vertex looked through for a move, at most.
DEGENERATE_BASES = 64


@dataclass(frozen=True, eq=False)
class _System:
    """What a walk over the stocks ``pool`` needs: the reduced equalities ``a`` (r × m, full
    row rank), their rank, the limits, the projector of the pool's stocks (for :func:`_snap`)
    and, when P is at most one-dimensional, the direction of its line (zeros for a point)."""

    a: np.ndarray
    rank: int
    limits: _Limits
    projector: HullProjector
    line: np.ndarray | None


def _walk_system(model: StockModel, pool: np.ndarray, total_volume: float, total_flow: float,
                 min_dose: float) -> _System:
    """The :class:`_System` of ``pool`` (cached on the model)."""
    whole = len(pool) == len(model.names)
    tag = (None if whole else tuple(pool.tolist()), total_volume, total_flow, min_dose)
    cache = model.scratch
    entry = cache.get(tag)
    if entry is None:
        a, rank = model.equalities if whole else reduced_equalities(model.fractions[:, pool])
        line = None
        if a.shape[1] - rank <= 1:
            line = (np.zeros(a.shape[1]) if a.shape[1] == rank
                    else np.linalg.svd(a, full_matrices=True)[2][-1])
        entry = _System(a, rank, _Limits(model, pool, total_volume, total_flow, min_dose),
                        model.projector if whole else HullProjector(model.fractions[:, pool]),
                        line)
        if len(cache) >= WALK_CACHE:
            cache.clear()
        cache[tag] = entry
    return entry


def _complete_basis(a: np.ndarray, support: np.ndarray) -> np.ndarray:
    """Column indices of ``a`` (r × m, rank r): ``support`` (independent columns), completed in
    index order by further columns to r independent ones (Gram–Schmidt)."""
    r = a.shape[0]
    q = np.zeros((r, 0))
    basis: list[int] = []
    for j in list(support) + [j for j in range(a.shape[1]) if j not in set(support)]:
        if len(basis) == r:
            break
        col = a[:, j]
        rest = col - q @ (q.T @ col)
        norm = float(np.sqrt(rest @ rest))
        if norm > RANK_TOL * max(1.0, float(np.sqrt(col @ col))):
            q = np.column_stack([q, rest / norm])
            basis.append(int(j))
    return np.array(basis, dtype=int)


class _Limits:
    """Rank keys (rule 4) of many weight vectors over the stocks ``pool`` at once.

    A mix is deliverable exactly when its margin is ≥ 0 (each margin term is a limit written
    as a ratio minus 1)."""

    def __init__(self, model: StockModel, pool: np.ndarray, total_volume: float,
                 total_flow: float, min_dose: float) -> None:
        self.pool = pool.tolist()
        per_volume = 1.0 / model.totals[pool]
        flow_share = total_flow * per_volume  # flow_j = flow_share_j · w_j / Σ(w/c)
        bounds = [flow_share / model.min_flows[pool], -flow_share / model.max_flows[pool]]
        offsets = [-1.0, 1.0]
        if min_dose > 0:
            bounds.append(total_volume * per_volume / min_dose)
            offsets.append(-1.0)
        self.per_volume = per_volume
        self.bounds = np.array(bounds)  # (terms, m): margin term = bound · w / Σ(w/c) + offset
        self.offsets = np.array(offsets)[:, None, None]

    def key(self, w: np.ndarray) -> list[tuple[bool, int, float, tuple[int, ...]]]:
        scale = 1.0 / (w @ self.per_volume)  # (rows,)
        terms = self.bounds[:, None, :] * (w * scale[:, None])[None] + self.offsets
        used = w > 0
        margin = np.where(used, terms.min(axis=0), np.inf).min(axis=1).tolist()
        out = []
        pool = self.pool
        for row, m in zip(used.tolist(), margin):
            support = tuple(pool[j] for j, u in enumerate(row) if u)
            ok = m >= 0.0  # undeliverable mixes: the least short of a limit first
            out.append((not ok, len(support) if ok else 0, -m, support))
        return out


def widest_mix(
    model: StockModel,
    composition: np.ndarray,
    total_volume: float,
    total_flow: float,
    min_dose: float = DEFAULT_MIN_DOSE,
) -> np.ndarray | None:
    """Mole shares (n,) of the mix of *all* stocks that makes ``composition`` with every flow
    furthest above its pump's minimum, or None when no such mix exists.

    The vertices of rule 1 use ≤ d + 1 stocks; when none of them is deliverable (one stock's
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
    available: Sequence[bool] | None = None,
    start: np.ndarray | None = None,
) -> MixOption:
    """The best mix for ``target`` (first of :func:`mix_options`; see the module docstring)."""
    return _options(model, np.asarray(target, dtype=float), total_volume, total_flow, min_dose,
                    available, start, 1)[0]


def mix_option(
    model: StockModel,
    weights: np.ndarray,
    distance: float,
    total_volume: float,
    total_flow: float,
    min_dose: float,
) -> MixOption:
    """The :class:`MixOption` of one weight vector (n,): volumes, flows and limit checks."""
    w = np.where(weights > 0, weights, 0.0)
    used = np.flatnonzero(w)
    volumes = model.volumes(w, total_volume)
    flows = total_flow * volumes / total_volume
    lo, hi = model.min_flows[used], model.max_flows[used]
    margin = np.minimum(flows[used] / lo - 1.0, 1.0 - flows[used] / hi)
    if min_dose > 0:
        margin = np.minimum(margin, volumes[used] / min_dose - 1.0)
    support = tuple(used.tolist())
    reasons = tuple(_reasons(model, support, volumes, flows, min_dose))
    return MixOption(support, w, volumes, flows, distance, not reasons, float(margin.min()),
                     reasons)


def _reasons(
    model: StockModel,
    support: tuple[int, ...],
    volumes: np.ndarray,
    flows: np.ndarray,
    min_dose: float,
) -> list[str]:
    """Human-readable limit violations of a mix (empty when deliverable)."""
    out = []
    low, high = model.min_flows.tolist(), model.max_flows.tolist()
    flow, volume = flows.tolist(), volumes.tolist()
    for j in support:
        name, pump = model.names[j], model.pumps[j]
        if flow[j] < low[j]:
            out.append(f"{name}: flow {flow[j]:.3g} mL/s below pump {pump}'s minimum "
                       f"{low[j]:.3g} mL/s")
        if flow[j] > high[j]:
            out.append(f"{name}: flow {flow[j]:.3g} mL/s above pump {pump}'s maximum "
                       f"{high[j]:.3g} mL/s")
        if volume[j] < min_dose:
            out.append(f"{name}: volume {volume[j]:.3g} mL below the minimum dose "
                       f"{min_dose:.3g} mL")
    return out
