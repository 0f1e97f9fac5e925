"""Euclidean projection onto the convex hull of the stock compositions, at any size.

Problem: given the stock mole-fraction matrix ``S`` (k components × n stocks, column j = ŝ_j)
and a composition ``x`` (k), find weights ``w`` on the simplex (w ≥ 0, Σw = 1) minimising
``‖S w − x‖₂``. The minimiser ``x* = S w*`` is unique (projection onto a convex set); ``w*`` need
not be (more stocks than dimensions).

Method — one non-negative least-squares problem (NNLS), exactly equivalent:
    Since Σw = 1, ``S w − x = B w`` with ``B = S − x 1ᵀ``. Put ``u = τ w`` (τ ≥ 0, w on the
    simplex) into the NNLS problem ``min_{u ≥ 0} ‖B u‖² + (1ᵀu − 1)²``: for fixed w the best τ
    is 1 / (1 + ‖B w‖²) and the value ‖B w‖² / (1 + ‖B w‖²), increasing in ‖B w‖. So the NNLS
    minimiser u* gives the projection's weights w* = u* / 1ᵀu* — no penalty weight, no
    approximation (the same reduction as least-distance programming, C. L. Lawson and
    R. J. Hanson, *Solving Least Squares Problems*, 1974, ch. 23). SciPy's
    :func:`scipy.optimize.nnls` is the Lawson–Hanson active-set method: finite, and in exact
    arithmetic its passive set is linearly independent, so the support of w* is affinely
    independent (≤ d + 1 stocks, Carathéodory). When rounding leaves more stocks than the
    rank (:data:`RANK_TOL`), Carathéodory's reduction (:func:`caratheodory`) removes the
    dependent ones without moving the point.

    Polishing: weights of 1e-12 or less are rounding residue and are dropped. When the point is
    then within 1e-9 of x but not within rounding (a makeable request), the equality-
    constrained least squares ``min ‖S_F w_F − x‖ s.t. Σ w_F = 1`` on the support is solved
    directly (affine coordinates, one SVD) and replaces the NNLS weights when they are
    non-negative and closer.

Certificate (bound in composition terms: with the relative tolerance of :data:`KKT_TOL`, a
mole-fraction point is within √(2·1e-10) ≈ 1.4e-5 of the exact projection; in practice the
gaps are ~1e-16, see benchmarks/bench_formulation.py): the Frank–Wolfe gap ``gap = gᵀw − minⱼ gⱼ`` with ``g = Sᵀ(S w − x)`` is ≥ 0, is 0
exactly at a KKT point, and bounds the sub-optimality: ``f(w) − f* ≤ gap`` for
``f = ½‖S w − x‖²``; by strong convexity in composition space ``‖S w − x*‖ ≤ √(2·gap)``. Every
solve checks it (:data:`KKT_TOL`) and carries it.

Cost: NNLS on a (k + 1) × n matrix, polynomial in k and n (measured in
benchmarks/bench_formulation.py: about 0.1 ms at 8 components × 32 stocks). The exhaustive
face enumeration it replaced is kept as the test oracle in :mod:`asab.formulation.faces`.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import nnls

from asab.errors import FormulationError

logger = logging.getLogger(__name__)

#: Relative singular-value threshold below which a set of stocks counts as affinely dependent.
RANK_TOL = 1e-10

#: Largest accepted Frank–Wolfe gap (relative to max(1, ‖x‖², max_j ‖ŝ_j‖²)); far above
#: rounding (~1e-16), far below any meaningful sub-optimality.
KKT_TOL = 1e-10

#: Weights above −FEASIBILITY_TOL count as non-negative (then clipped to 0 and renormalised).
FEASIBILITY_TOL = 1e-9

#: Weights at or below this (a share of 1e-12 of the moles) are rounding residue of the solve:
#: the polished solution leaves those stocks out.
SUPPORT_TOL = 1e-12

#: Distances within ROUNDING·(1 + max|x|) count as equal (8 units in the last place).
ROUNDING = 8 * float(np.finfo(float).eps)

#: Distance (mole fraction) below which a solution is polished by the direct solve on its
#: support (see the module docstring).
POLISH_BELOW = 1e-9

#: Lawson–Hanson iterations allowed per stock (SciPy's default is 3 per column; each iteration
#: moves one stock into or out of the passive set).
NNLS_ITERATIONS_PER_STOCK = 10


@dataclass(frozen=True, eq=False)
class HullSolution:
    """Result of one projection.

    Attributes:
        weights: (n,) mole shares of the stocks, w ≥ 0, Σw = 1.
        point: (k,) the closest composition ``S @ weights`` (mole fractions).
        distance: Euclidean distance ``‖point − x‖`` (mole-fraction units).
        support: indices of stocks with positive weight, ascending.
        kkt_gap: Frank–Wolfe gap ``gᵀw − min g`` (≥ 0 up to rounding; 0 at the optimum).
    """

    weights: np.ndarray
    point: np.ndarray
    distance: float
    support: tuple[int, ...]
    kkt_gap: float


def kkt_gap(points: np.ndarray, x: np.ndarray, weights: np.ndarray) -> float:
    """Frank–Wolfe (KKT) gap of ``weights`` for ``min ½‖S w − x‖²`` over the simplex.

    Args:
        points: (k, n) matrix S.
        x: (k,) composition.
        weights: (n,) weights on the simplex.

    Returns:
        ``gᵀw − minⱼ gⱼ`` with ``g = Sᵀ(S w − x)``; it bounds ``f(w) − f*`` from above and is 0
        iff the KKT conditions hold (g_j equal on the support, not smaller elsewhere).
    """
    g = points.T @ (points @ weights - x)
    return float(g @ weights - g.min())


def caratheodory(a: np.ndarray, w: np.ndarray) -> np.ndarray:
    """A vertex of {v ≥ 0 : a v = a w} from ``w`` ≥ 0 (Carathéodory's reduction): while the
    columns of ``a`` on the support of ``w`` are dependent (singular values below
    :data:`RANK_TOL` relative), step along their null space until a share reaches 0.

    Args:
        a: (r, m) equalities (for mixes: the reduced composition rows, Σ of a column's
            entries fixed, so that a v = a w keeps Σv).
        w: (m,) weights ≥ 0 summing to 1.

    Returns:
        (m,) weights ≥ 0 summing to 1 on affinely independent columns.
    """
    w = w.copy()
    for _ in range(w.size):
        support = np.flatnonzero(w)
        if support.size <= 1:
            return w
        _, sv, vt = np.linalg.svd(a[:, support], full_matrices=True)
        if int((sv > RANK_TOL * max(1.0, float(sv[0]))).sum()) == support.size:
            return w
        z = vt[-1]  # a[:, support] @ z ≈ 0
        if not (z < 0).any():
            z = -z
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            ratios = np.where(z < 0, w[support] / -z, np.inf)
        first = int(np.argmin(ratios))
        w[support] = np.maximum(w[support] + float(ratios[first]) * z, 0.0)
        w[support[first]] = 0.0
        w /= w.sum()
    return w


def stock_matrix(points: np.ndarray) -> np.ndarray:
    """``points`` as a read-only (k, n) float array.

    Raises:
        FormulationError: not 2-D and non-empty, or non-finite entries.
    """
    s = np.array(points, dtype=float)
    if s.ndim != 2 or s.shape[0] < 1 or s.shape[1] < 1:
        raise FormulationError(f"stock matrix must be 2-D and non-empty, got shape {s.shape}")
    if not np.all(np.isfinite(s)):
        raise FormulationError("stock matrix has non-finite entries")
    s.setflags(write=False)
    return s


def certified(points: np.ndarray, w: np.ndarray, point: np.ndarray, residual: np.ndarray,
              tolerance: float) -> HullSolution:
    """The :class:`HullSolution` of weights ``w`` (``point`` = S w, ``residual`` = S w − x),
    after checking its Frank–Wolfe gap against ``tolerance``.

    Raises:
        FormulationError: the gap exceeds ``tolerance`` (or is NaN).
    """
    g = points.T @ residual
    gap = float(g @ w - g.min())  # kkt_gap(points, x, w), from the residual at hand
    if not gap <= tolerance:
        raise FormulationError(
            f"closest-makeable solution failed its optimality certificate (KKT gap {gap:.3g})")
    return HullSolution(weights=w, point=point, distance=math.sqrt(float(residual @ residual)),
                        support=tuple(np.flatnonzero(w).tolist()), kkt_gap=gap)


class HullProjector:
    """Projector onto conv(columns of ``points``) (see the module docstring).

    Args:
        points: (k, n) array, column j = stock j's mole-fraction vector; finite, n ≥ 1.

    Raises:
        FormulationError: bad shape or non-finite entries.
    """

    def __init__(self, points: np.ndarray) -> None:
        s = stock_matrix(points)
        self.points = s
        self._scale = max(1.0, float(np.max(np.sum(s**2, axis=0))))  # for the KKT check
        self._system = np.vstack([s, np.ones((1, s.shape[1]))])  # rows: S, then 1ᵀ
        u, sv, _ = np.linalg.svd(self._system, full_matrices=False)
        self.rank = max(1, int((sv > RANK_TOL * max(1.0, float(sv[0]))).sum()))
        """Affine dimension + 1 of the stocks: the most stocks an independent support has."""
        self._reduced = u[:, :self.rank].T @ self._system
        self._rhs = np.zeros(s.shape[0] + 1)
        self._rhs[-1] = 1.0

    def project(self, x: np.ndarray) -> HullSolution:
        """Closest point of the hull to ``x`` (global optimum, see the module docstring).

        Args:
            x: (k,) composition in the projector's component order.

        Raises:
            FormulationError: ``x`` has the wrong shape or non-finite entries, or (a numerical
                failure that exact arithmetic excludes) the result fails its KKT certificate.
        """
        xv = np.asarray(x, dtype=float)
        k, n = self.points.shape
        norm2 = float(xv @ xv) if xv.shape == (k,) else math.nan
        if not math.isfinite(norm2):  # a NaN or an infinity anywhere makes x·x non-finite
            raise FormulationError(f"composition vector must be finite with shape ({k},)")
        system = self._system.copy()
        system[:k] -= xv[:, None]
        try:
            u, _ = nnls(system, self._rhs, maxiter=NNLS_ITERATIONS_PER_STOCK * max(n, 3))
        except RuntimeError as exc:  # iteration limit: exact arithmetic excludes it
            raise FormulationError(f"closest-makeable solver did not converge: {exc}") from exc
        total = float(u.sum())
        if not total > 0:
            raise FormulationError("closest-makeable solver returned no weights")
        w, point, residual = self._polish(xv, u / total)
        if np.count_nonzero(w) > self.rank:  # rounding kept a dependent support: reduce it
            w = caratheodory(self._reduced, w)
            point = self.points @ w
            residual = point - xv
        try:
            return certified(self.points, w, point, residual, KKT_TOL * max(self._scale, norm2))
        except FormulationError:
            return self._fallback(xv)

    def _fallback(self, x: np.ndarray) -> HullSolution:
        """Face enumeration when the NNLS solution failed its certificate (SciPy's ``nnls``
        had releases that returned suboptimal points silently, scipy/scipy#22884, #25389);
        only where the oracle is small enough (:data:`~asab.formulation.faces.MAX_FACES`).

        Raises:
            FormulationError: the problem is too large for the oracle, or it fails too.
        """
        from asab.formulation.faces import MAX_FACES, FaceProjector, face_count

        k, n = self.points.shape
        if face_count(k, n) > MAX_FACES:
            raise FormulationError("closest-makeable solution failed its optimality "
                                   "certificate and the problem is too large to enumerate")
        logger.warning("NNLS solution failed its certificate; solved by face enumeration")
        return FaceProjector(self.points).project(x)

    def face_weights(self, x: np.ndarray, face: tuple[int, ...] | np.ndarray) -> np.ndarray | None:
        """Weights (n,) of the least-squares point of aff(stocks ``face``) for ``x``, or None
        when they are not all ≥ −:data:`FEASIBILITY_TOL` or the stocks are affinely dependent.

        ``w_F = e₀ + [−1ᵀα; α]`` with ``α = D⁺(x − s₀)``, ``D = [s₁ − s₀, …]``; negative
        rounding is clipped and the weights renormalised.
        """
        idx = np.asarray(face, dtype=int)
        w = np.zeros(self.points.shape[1])
        if idx.size == 1:
            w[idx[0]] = 1.0
            return w
        origin = self.points[:, idx[0]]
        d = self.points[:, idx[1:]] - origin[:, None]
        u, sv, vt = np.linalg.svd(d, full_matrices=False)
        if not sv.min() > RANK_TOL * max(1.0, sv.max()):
            return None
        alpha = vt.T @ ((u.T @ (x - origin)) / sv)
        w[idx[1:]] = alpha
        w[idx[0]] = 1.0 - alpha.sum()
        if w[idx].min() < -FEASIBILITY_TOL:
            return None
        w = np.maximum(w, 0.0)
        return w / w.sum()

    def _polish(self, x: np.ndarray,
                w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(weights, point, residual)``: ``w`` without its rounding residue (weights at or
        below :data:`SUPPORT_TOL`, set to 0 and the rest renormalised) when that is no farther
        from ``x`` up to rounding; then, for a point closer than :data:`POLISH_BELOW` (a
        makeable request), the exact least-squares weights on that support when they are
        feasible and closer still."""
        point = self.points @ w
        residual = point - x
        here = math.sqrt(float(residual @ residual))
        rounding = ROUNDING * (1.0 + float(np.abs(x).max()))
        if np.count_nonzero(w) != np.count_nonzero(w > SUPPORT_TOL):
            clean = np.where(w > SUPPORT_TOL, w, 0.0)
            clean /= clean.sum()
            there = distance_to(self.points, clean, x)
            if there <= here + rounding:
                w = clean
                point = self.points @ w
                residual = point - x
                here = there
        if rounding < here < POLISH_BELOW:
            exact = self.face_weights(x, np.flatnonzero(w > 0))
            if exact is not None and distance_to(self.points, exact, x) < here:
                w = exact
                point = self.points @ w
                residual = point - x
        return w, point, residual


def distance_to(points: np.ndarray, w: np.ndarray, x: np.ndarray) -> float:
    """‖points @ w − x‖ (Euclidean), a plain float."""
    r = points @ w - x
    return math.sqrt(float(r @ r))
