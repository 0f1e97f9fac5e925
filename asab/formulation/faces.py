"""Face enumeration: the exact reference projector and mix rule, kept as a test oracle.

asab's solver is :mod:`asab.formulation.hull` (NNLS, polynomial cost). This module keeps the
first solver, exact by construction but combinatorial in cost, to check it against on small
stock sets (tests/test_formulation_scale.py, benchmarks/bench_formulation.py). Nothing in the
planner uses it.

Problem: given the stock mole-fraction matrix ``S`` (k components × n stocks, column j = ŝ_j)
and a composition ``x`` (k), find weights ``w`` on the simplex (w ≥ 0, Σw = 1) minimising
``‖S w − x‖₂``.

Method:
    * Enumerate every *face* F: a subset of stocks whose points are affinely independent
      (so |F| ≤ d + 1, d = dimension of the stocks' affine hull; Carathéodory).
    * On each face the equality-constrained least squares
      ``min ‖S_F w_F − x‖ s.t. Σ w_F = 1`` has the unique solution
      ``w_F = e₀ + [−1ᵀα; α]`` with ``α = D⁺(x − s₀)``, ``D = [s₁ − s₀, …]`` — an affine map of
      ``x``; the thin SVD of every D is computed once per stock set and a solve applies all
      faces' maps in two batched products.
    * A face's candidate is feasible when ``w_F ≥ 0``; its objective is evaluated on the clipped,
      renormalised weights, so every candidate is an honest feasible point.
    * Completeness: ``x*`` lies in the relative interior of conv(S_F) for some affinely
      independent F (Carathéodory); there it is also the minimiser over aff(S_F), i.e. that
      face's candidate, with w_F > 0. Hence the minimum over feasible candidates *is* the global
      optimum.

Cost: Σ_{s ≤ d+1} C(n, s) faces — 14 for the 2023 bench, 2,509 for 6 × 12, 263,949 for 8 × 20
(24.5 s and 1.4 GB to build); :data:`MAX_FACES` bounds what the oracle builds.

The old mix rule (:func:`face_mix_options`): every face whose candidate is as close as the best
(within :data:`~asab.formulation.mixes.EXACT_TOL`) with all its weights positive, ranked by
:meth:`~asab.formulation.mixes.MixOption.rank_key`.
"""

from __future__ import annotations

import itertools
import logging
import math

import numpy as np

from asab.errors import FormulationError
from asab.formulation.hull import (
    FEASIBILITY_TOL,
    KKT_TOL,
    RANK_TOL,
    HullSolution,
    certified,
    stock_matrix,
)

logger = logging.getLogger(__name__)

#: Most faces the oracle builds (about 1 GB beyond 200,000 faces at 8 components).
MAX_FACES = 100_000





class FaceProjector:
    """Exact projector onto conv(columns of ``points``) by face enumeration (the oracle).

    Per face F = (f₀, f₁, …) it stores ``s_f₀``, ``Uᵀ`` and ``V Σ⁻¹`` of the thin SVD of
    ``D = [s_f₁ − s_f₀, …]``; a solve evaluates ``α = V Σ⁻¹ (Uᵀ (x − s_f₀))`` for all faces at
    once (batched products, in this order so that nearly dependent stocks lose no accuracy in the
    composition) and ``w_f₀ = 1 − Σα``.

    Args:
        points: (k, n) array, column j = stock j's mole-fraction vector; finite, n ≥ 1.

    Raises:
        FormulationError: bad shape, non-finite entries, or more than :data:`MAX_FACES`
            candidate faces.
    """

    def __init__(self, points: np.ndarray) -> None:
        s = stock_matrix(points)
        count = face_count(*s.shape)
        if count > MAX_FACES:
            raise FormulationError(f"{s.shape[1]} stocks in {s.shape[0]} components: up to "
                                   f"{count} faces, the oracle builds at most {MAX_FACES}")
        self.points = s
        self.faces, factors = _enumerate_faces(s)
        self._origin = np.array([s[:, f[0]] for f in self.faces])  # (m, k)
        self._project = np.array([u for u, _ in factors])  # (m, r, k)
        self._lift = np.array([v for _, v in factors])  # (m, n, r)
        self._base = np.zeros((len(self.faces), s.shape[1]))  # (m, n): e_f₀
        self._base[np.arange(len(self.faces)), [f[0] for f in self.faces]] = 1.0
        self._scale = max(1.0, float(np.max(np.sum(s**2, axis=0))))  # for the KKT check
        logger.debug("face projector: %d stocks, %d faces", s.shape[1], len(self.faces))

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
        return certified(self.points, w, point, point - xv,
                         KKT_TOL * max(self._scale, float(xv @ xv)))


Factors = tuple[np.ndarray, np.ndarray]


def face_count(k: int, n: int) -> int:
    """Upper bound Σ_{s ≤ min(n, k)} C(n, s) on the faces of n stocks in k components (the
    affine dimension is at most k − 1, so faces have at most k stocks)."""
    return sum(math.comb(n, size) for size in range(1, min(n, k) + 1))


def face_mix_options(projector: FaceProjector, model, target: np.ndarray, total_volume: float,
                     total_flow: float, min_dose: float) -> list:
    """The old rule's candidate mixes for ``target``, best first (see the module docstring).

    Returns:
        list of :class:`~asab.formulation.mixes.MixOption` (faces only; the old rule's LP
        fallback over all stocks is :func:`~asab.formulation.mixes.widest_mix`).
    """
    from asab.formulation.mixes import EXACT_TOL, MIN_WEIGHT, MixOption, mix_option

    weights, dist = projector.face_candidates(np.asarray(target, dtype=float))
    best = float(dist.min())
    options = [mix_option(model, weights[row], float(dist[row]), total_volume, total_flow,
                          min_dose)
               for row, face in enumerate(projector.faces)
               if dist[row] <= best + EXACT_TOL and weights[row][list(face)].min() > MIN_WEIGHT]
    return sorted(options, key=MixOption.rank_key)


def _enumerate_faces(s: np.ndarray) -> tuple[list[tuple[int, ...]], list[Factors]]:
    """All affinely independent stock subsets, smallest first, with their SVD factors.

    Returns ``(faces, factors)``; factors[i] = (Uᵀ (r, k), lift (n, r)), zero-padded to
    r = d (the affine dimension of all stocks), with ``w = lift @ (Uᵀ (x − s_f₀)) + e_f₀``.
    """
    n = s.shape[1]
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
