"""Plan a formulation: from a requested composition to stock volumes and flows."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from asab.config.models import BenchConfig
from asab.errors import NotMakeableError, RequestError
from asab.formulation.composition import (
    by_name,
    composition_distance,
    parse_composition,
)
from asab.formulation.mixes import DEFAULT_MIN_DOSE, MixOption, choose_mix, near_mix
from asab.formulation.stocks import StockModel

logger = logging.getLogger(__name__)

Policy = Literal["reject", "closest"]


class FormulationPlan(BaseModel):
    """What to mix for one request (JSON-serialisable; compositions keyed by InChIKey).

    ``stock_volumes``, ``flows``, ``pumps`` and ``weights`` list only the stocks used.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    requested: dict[str, float] = Field(description="the request, InChIKey → mole fraction")
    target: dict[str, float] = Field(
        description="the request if makeable, else the closest makeable composition")
    achieved: dict[str, float] = Field(
        description="composition the planned stock volumes make (bookkeeping)")
    distance: float = Field(description="Euclidean distance requested ↔ achieved")
    closest_distance: float = Field(description="distance from the request to the makeable region")
    makeable: bool = Field(description="request within `tolerance` of the makeable region")
    flagged: bool = Field(description="made as the closest composition instead of the request")
    stock_volumes: dict[str, float] = Field(description="stock name → mL; sums to total_volume")
    flows: dict[str, float] = Field(description="stock name → mL/s; sums to total_flow")
    pumps: dict[str, str] = Field(description="stock name → pump")
    weights: dict[str, float] = Field(description="stock name → share of the moles")
    deliverable: bool = Field(description="all flows within pump limits, volumes ≥ min dose")
    notes: tuple[str, ...] = ()
    total_volume: float = Field(description="mL")
    total_flow: float = Field(description="mL/s")
    tolerance: float = Field(description="mole-fraction distance counted as makeable")
    policy: Policy


def plan_formulation(
    config: BenchConfig,
    request: str | Mapping[str, object],
    total_volume: float,
    *,
    total_flow: float | None = None,
    tolerance: float | None = None,
    policy: Policy | None = None,
    min_dose: float = DEFAULT_MIN_DOSE,
    model: StockModel | None = None,
    available: Sequence[str] | None = None,
) -> FormulationPlan:
    """Plan the stock volumes and flows that make ``request``.

    Steps: parse the request; project it onto the makeable region (exact,
    :mod:`asab.formulation.hull`); if it is farther than ``tolerance``, reject (policy
    ``"reject"``) or aim at the closest makeable composition and flag the plan (``"closest"``);
    choose the stock mix by the rule of :mod:`asab.formulation.mixes`; compute what those volumes
    really make (``achieved``) and its distance from the request.

    Args:
        config: the bench configuration.
        request: composition text or mapping (see :func:`parse_composition`).
        total_volume: mL of electrolyte to make, in (0, :data:`MAX_TOTAL_VOLUME`].
        total_flow: mL/s through the mixer; default ``config.settings.total_flow``.
        tolerance: makeable tolerance (mole fraction); default
            ``config.settings.makeable_tolerance``.
        policy: ``"reject"`` or ``"closest"``; default ``config.settings.not_makeable_policy``.
        min_dose: smallest volume of a used stock in mL (default
            :data:`~asab.formulation.mixes.DEFAULT_MIN_DOSE`).
        model: a prebuilt :class:`StockModel` of ``config`` (saves rebuilding it).
        available: names of the stocks the bench ledger can supply; mixes of these come first
            (rule 5 of :mod:`asab.formulation.mixes`). Default: every stock.

    Returns:
        The :class:`FormulationPlan`; ``deliverable`` is False (with the reasons in ``notes``)
        when no mix keeps every pump within its limits.

    Raises:
        RequestError: a malformed request or a bad volume, flow, tolerance, policy or dose.
        NotMakeableError: policy ``"reject"`` and the request is not makeable; its
            ``requested``/``closest`` dicts are keyed by chemical *name*.
    """
    settings = config.settings
    flow = _positive(settings.total_flow if total_flow is None else total_flow, "total flow")
    volume = _positive(total_volume, "total volume")
    if volume > MAX_TOTAL_VOLUME:
        raise RequestError(f"total volume {volume:g} mL is more than the {MAX_TOTAL_VOLUME:g} mL "
                           "one formulation may have")
    tol = settings.makeable_tolerance if tolerance is None else tolerance
    pol = settings.not_makeable_policy if policy is None else policy
    _check_options(tol, pol, min_dose)
    requested = parse_composition(request, config)
    model = StockModel.from_config(config) if model is None else model
    weights, closest, closest_distance = model.closest_makeable(requested)
    makeable = closest_distance <= tol
    if not makeable and pol == "reject":
        raise NotMakeableError(by_name(requested, config), by_name(closest, config),
                               closest_distance)
    target = dict(requested) if makeable else closest
    xc, rest = model.vector(target)
    mask = None if available is None else [name in set(available) for name in model.names]
    option = choose_mix(model, xc, volume, flow, min_dose, mask, start=weights)
    near_note = None
    if not option.deliverable and makeable:
        # chemicals no stock contains count in the distance too: leave them their share of tol
        near = (near_mix(model, xc, volume, flow, min_dose, math.sqrt(tol**2 - rest**2), mask)
                if rest < tol else None)
        if near is not None:
            option = near
            near_note = (f"no exact mix is deliverable; made a deliverable mix within the "
                         f"makeable tolerance (distance {near.distance:.3g})")
    if mask is not None and not all(mask[j] for j in option.support):
        short = [model.names[j] for j in option.support if not mask[j]]
        near_note = "; ".join(filter(None, [near_note, "uses stocks the ledger does not list "
                                            "as available: " + ", ".join(short)]))
    achieved = dict(zip(model.components, (float(v) for v in model.mix(option.volumes))))
    plan = FormulationPlan(
        requested=requested, target=target, achieved=achieved,
        distance=composition_distance(requested, achieved),
        closest_distance=closest_distance, makeable=makeable, flagged=not makeable,
        **_stock_fields(model, option),
        deliverable=option.deliverable,
        notes=tuple(([near_note] if near_note else [])
                    + _notes(config, model, requested, makeable, closest_distance, option)),
        total_volume=volume, total_flow=flow, tolerance=tol, policy=pol,
    )
    logger.info("formulation plan: makeable=%s flagged=%s deliverable=%s volumes=%s",
                plan.makeable, plan.flagged, plan.deliverable, plan.stock_volumes)
    return plan


def _stock_fields(model: StockModel, option: MixOption) -> dict[str, dict[str, Any]]:
    """Per-stock fields of the plan, for the stocks the mix uses."""
    used = option.support
    return {
        "stock_volumes": {model.names[j]: float(option.volumes[j]) for j in used},
        "flows": {model.names[j]: float(option.flows[j]) for j in used},
        "pumps": {model.names[j]: model.pumps[j] for j in used},
        "weights": {model.names[j]: float(option.weights[j]) for j in used},
    }


def _notes(
    config: BenchConfig,
    model: StockModel,
    requested: Mapping[str, float],
    makeable: bool,
    closest_distance: float,
    option: MixOption,
) -> list[str]:
    notes = []
    absent = [config.chemical(k).name for k, v in requested.items()
              if v > 0 and k not in model.components]
    if absent:
        notes.append(f"no stock contains {', '.join(absent)}")
    if not makeable:
        notes.append(f"request not makeable: made the closest makeable composition "
                     f"(distance {closest_distance:.4g})")
    notes.extend(option.reasons)
    for j in option.support:
        held = config.stock(model.names[j]).volume
        if option.volumes[j] > held:
            notes.append(f"{model.names[j]}: needs {option.volumes[j]:.3g} mL, the reservoir "
                         f"was filled with {held:.3g} mL")
    return notes


MAX_TOTAL_VOLUME = 1000.0
"""mL one formulation may have (the servers' request bodies have the same bound)."""


def _positive(value: float, what: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError) as exc:
        raise RequestError(f"{what} must be a number, got {value!r}") from exc
    if not math.isfinite(v) or v <= 0:
        raise RequestError(f"{what} must be finite and > 0, got {value!r}")
    return v


def _check_options(tolerance: float, policy: str, min_dose: float) -> None:
    if not math.isfinite(tolerance) or tolerance < 0:
        raise RequestError(f"tolerance must be finite and ≥ 0, got {tolerance!r}")
    if policy not in ("reject", "closest"):
        raise RequestError(f"policy must be 'reject' or 'closest', got {policy!r}")
    if not math.isfinite(min_dose) or min_dose < 0:
        raise RequestError(f"min_dose must be finite and ≥ 0, got {min_dose!r}")
