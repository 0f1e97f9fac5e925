"""Exact Euclidean projection onto the convex hull of a few points (the stock compositions).

Problem: given the stock mole-fraction matrix ``S`` (k components × n stocks, column j = ŝ_j)
and a composition ``x`` (k), find weights ``w`` on the simplex (w ≥ 0, Σw = 1) minimising
``‖S w − x‖₂``. The minimiser ``x* = S w*`` is unique (projection onto a convex set); ``w*`` need
not be (more stocks than dimensions).

Method — face enumeration (exact, global):
    * Enumerate every *face* F: a subset of stocks whose points are affinely independent
      (so |F| ≤ d + 1, d = dimension of the stocks' affine hull; Carathéodory).
    * On each face the equality-constrained least squares
      ``min ‖S_F w_F − x‖ s.t. Σ w_F = 1`` has the unique solution
      ``w_F = e₀ + [−1ᵀα; α]`` with ``α = D⁺(x − s₀)``, ``D = [s₁ − s₀, …]`` — an affine map of
      ``x``; the thin SVD of every D is computed once per stock set (:class:`HullProjector`)
      and a solve applies all faces' maps in two batched products.
    * A face's candidate is feasible when ``w_F ≥ 0``; its objective is evaluated on the clipped,
      renormalised weights, so every candidate is an honest feasible point.
    * Completeness: ``x*`` lies in the relative interior of conv(S_F) for some affinely
      independent F (Carathéodory); there it is also the minimiser over aff(S_F), i.e. that
      face's candidate, with w_F > 0. Hence the minimum over feasible candidates *is* the global
      optimum — no iteration, no starting point, no convergence tolerance.
    * Certificate: the Frank–Wolfe gap ``gap = gᵀw − minⱼ gⱼ`` with ``g = Sᵀ(S w − x)`` is ≥ 0,
      is 0 exactly at a KKT point, and bounds the sub-optimality: ``f(w) − f* ≤ gap`` for
      ``f = ½‖S w − x‖²``; by strong convexity in composition space
      ``‖S w − x*‖ ≤ √(2·gap)``. Every solution carries it.

Numerical limits: stocks whose compositions differ by less than :data:`RANK_TOL` (relative)
are treated as one (faces containing both are skipped), which can cost a distance of that
order; the certificate is checked on every solve (:data:`KKT_TOL`).

Cost: at most Σ_{s ≤ d+1} C(n, s) faces (14 for the 2023 bench, 255 for 8 stocks); one solve is
a few batched products and vectorised reductions (~50 µs; see benchmarks/bench_formulation.py).
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass

import numpy as np

from asab.errors import FormulationError

logger = logging.getLogger(__name__)

#: Largest number of stocks the exhaustive face enumeration accepts (2¹² − 1 faces at most).
MAX_STOCKS = 12

#: Relative singular-value threshold below which a set of stocks counts as affinely dependent.
RANK_TOL = 1e-10

#: Largest accepted Frank–Wolfe gap (relative to max(1, ‖x‖², max_j ‖ŝ_j‖²)); far above
#: rounding (~1e-16), far below any meaningful sub-optimality.
KKT_TOL = 1e-10

#: Weights above −FEASIBILITY_TOL count as non-negative (then clipped to 0 and renormalised).
FEASIBILITY_TOL = 1e-9


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


class HullProjector:
    """Exact projector onto conv(columns of ``points``), precomputed for fast repeated solves.

    Per face F = (f₀, f₁, …) it stores ``s_f₀``, ``Uᵀ`` and ``V Σ⁻¹`` of the thin SVD of
    ``D = [s_f₁ − s_f₀, …]``; a solve evaluates ``α = V Σ⁻¹ (Uᵀ (x − s_f₀))`` for all faces at
    once (batched products, in this order so that nearly dependent stocks lose no accuracy in the
    composition) and ``w_f₀ = 1 − Σα``.

    Args:
        points: (k, n) array, column j = stock j's mole-fraction vector; finite, n ≥ 1.

    Raises:
        FormulationError: bad shape, non-finite entries, or more than :data:`MAX_STOCKS` stocks.
    """

    def __init__(self, points: np.ndarray) -> None:
        s = np.array(points, dtype=float)
        if s.ndim != 2 or s.shape[0] < 1 or s.shape[1] < 1:
            raise FormulationError(f"stock matrix must be 2-D and non-empty, got shape {s.shape}")
        if not np.all(np.isfinite(s)):
            raise FormulationError("stock matrix has non-finite entries")
        if s.shape[1] > MAX_STOCKS:
            raise FormulationError(
                f"{s.shape[1]} stocks: exact face enumeration supports at most {MAX_STOCKS}"
            )
        s.setflags(write=False)
        self.points = s
        self.faces, factors = _enumerate_faces(s)
        self._origin = np.array([s[:, f[0]] for f in self.faces])  # (m, k)
        self._project = np.array([u for u, _ in factors])  # (m, r, k)
        self._lift = np.array([v for _, v in factors])  # (m, n, r)
        self._base = np.zeros((len(self.faces), s.shape[1]))  # (m, n): e_f₀
        self._base[np.arange(len(self.faces)), [f[0] for f in self.faces]] = 1.0
        self._scale = max(1.0, float(np.max(np.sum(s**2, axis=0))))  # for the KKT check
        logger.debug("hull projector: %d stocks, %d faces", s.shape[1], len(self.faces))

    def _affine(self, x: np.ndarray, rows: slice | int = slice(None)) -> np.ndarray:
        """Unconstrained-sign weights of the faces ``rows`` for ``x`` ((m, n) or (n,))."""
        diff = (x - self._origin[rows])[..., None]
        coords = np.matmul(self._project[rows], diff)
        return np.matmul(self._lift[rows], coords)[..., 0] + self._base[rows]

    def face_candidates(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each face's least-squares candidate for composition ``x``.

        Args:
            x: (k,) composition.

        Returns:
            ``(weights, distances)``: (m, n) clipped and renormalised weights (row i = face
            ``self.faces[i]``) and (m,) distances ``‖S w − x‖``; ``inf`` for faces whose
            affine solution has a weight below −:data:`FEASIBILITY_TOL`.
        """
        raw = self._affine(x)
        feasible = raw.min(axis=1) >= -FEASIBILITY_TOL
        w = np.maximum(raw, 0.0)
        w /= w.sum(axis=1, keepdims=True)
        res = w @ self.points.T - x
        dist = np.sqrt((res * res).sum(axis=1))
        dist[~feasible] = np.inf
        return w, dist

    def project(self, x: np.ndarray) -> HullSolution:
        """Closest point of the hull to ``x`` (global optimum, see the module docstring).

        Args:
            x: (k,) composition in the projector's component order.

        Raises:
            FormulationError: ``x`` has the wrong shape or non-finite entries, or (a numerical
                failure that exact arithmetic excludes) the result fails its KKT certificate.
        """
        xv = np.asarray(x, dtype=float)
        if xv.shape != (self.points.shape[0],) or not np.all(np.isfinite(xv)):
            raise FormulationError(
                f"composition vector must be finite with shape ({self.points.shape[0]},)"
            )
        w_all, dist = self.face_candidates(xv)
        w = w_all[int(np.argmin(dist))]
        point = self.points @ w
        gap = kkt_gap(self.points, xv, w)
        if not gap <= KKT_TOL * max(self._scale, float(xv @ xv)):
            raise FormulationError(
                f"closest-makeable solution failed its optimality certificate (KKT gap {gap:.3g})"
            )
        return HullSolution(
            weights=w,
            point=point,
            distance=float(np.linalg.norm(point - xv)),
            support=tuple(j for j, v in enumerate(w.tolist()) if v > 0),
            kkt_gap=gap,
        )


Factors = tuple[np.ndarray, np.ndarray]


def _enumerate_faces(s: np.ndarray) -> tuple[list[tuple[int, ...]], list[Factors]]:
    """All affinely independent stock subsets, smallest first, with their SVD factors.

    Returns ``(faces, factors)``; factors[i] = (Uᵀ (r, k), lift (n, r)), zero-padded to
    r = d (the affine dimension of all stocks), with ``w = lift @ (Uᵀ (x − s_f₀)) + e_f₀``.
    """
    k, n = s.shape
    dim = int(np.linalg.matrix_rank(s - s[:, :1], tol=RANK_TOL * max(1.0, np.abs(s).max())))
    faces: list[tuple[int, ...]] = []
    factors: list[Factors] = []
    for size in range(1, min(n, dim + 1) + 1):
        for face in itertools.combinations(range(n), size):
            pair = _face_factors(s, face, max(dim, 1))
            if pair is not None:
                faces.append(face)
                factors.append(pair)
    return faces, factors


def _face_factors(s: np.ndarray, face: tuple[int, ...], r: int) -> Factors | None:
    """(Uᵀ, lift) of one face, or None when its stocks are affinely dependent."""
    k, n = s.shape
    ut = np.zeros((r, k))
    lift = np.zeros((n, r))
    if len(face) == 1:
        return ut, lift
    d = s[:, face[1:]] - s[:, [face[0]]]
    u, sv, vt = np.linalg.svd(d, full_matrices=False)
    if not sv.min() > RANK_TOL * max(1.0, sv.max()):
        return None
    q = len(sv)
    ut[:q] = u.T
    vs = vt.T / sv  # (|F|−1, q): α = vs @ (Uᵀ (x − s₀))
    lift[list(face[1:]), :q] = vs
    lift[face[0], :q] = -vs.sum(axis=0)
    return ut, lift
