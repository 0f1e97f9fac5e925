"""What this tenant serves: check a FINALES2 request against what the bench can really do.

The broker's pending list ignores tenant limitations (shared docs: finales2_api.md, quirk 7)
and answers schema-invalid bodies with a bare 500 (quirk 1), so every request is checked here
before it is reserved:

- ``density``/``vibrating_tube_densimetry``: parameters ``{"formulation": [...],
  "temperature": K | null}`` (null = the bench's densimeter temperature);
- ``electrolyte``/``flow``: parameters ``{"electrolyte": {"formulation": [...]},
  "volume": mL}`` delivered into a free vial.

:func:`check_request` lists *every* reason at once: first those of the one request validator,
:func:`asab.requests.validate_request` (schema errors, unsupported fraction types, fractions
that are not finite or outside [0, 1], chemicals unknown to the bench or given twice, a
temperature the bench does not offer, a volume beyond the vial, no densimeter or no vials),
then, for a valid request, a composition outside the makeable region by more than
``settings.makeable_tolerance`` (policy ``reject``; policy ``closest`` accepts it and says so),
a plan the pumps cannot deliver, too little stock, no free vial. Pure apart from reading the
bench's stock bookkeeping and the vial state: nothing moves.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from asab.actions.bench import Bench
from asab.actions.vial import vial_capacity
from asab.actions.vial_state import VialRegistry
from asab.config import BenchConfig
from asab.errors import AsabError
from asab.formulation import FormulationPlan, StockModel, by_name, plan_formulation
from asab.ledger import initial_ledger
from asab.plan import ConsumableError, JobPlan
from asab.plan.planner import BenchContext, plan_density, plan_first_vial, stock_aware
from asab.requests import (  # noqa: F401 - MAX_REASON, TEMPERATURE_TOLERANCE re-exported
    CAPABILITIES,
    DENSITY,
    FLOW,
    MAX_REASON,
    TEMPERATURE_TOLERANCE,
    DensityJob,
    FlowJob,
    clip,
    validate_request,
)

log = logging.getLogger(__name__)

DENSITY_PLAN_VOLUME = 1.0
"""mL: nominal volume of a density plan (only its volume fractions and flows are used)."""


class Acceptance(BaseModel):
    """The verdict on one request.

    Attributes:
        accepted: True when the bench can serve the request now.
        request_id: the broker's request uuid ("" when absent).
        quantity, method: the capability asked for (None when not recognisable).
        reasons: every reason against the request (empty when accepted).
        notes: remarks that do not refuse it, e.g. "it would be made as the closest makeable
            composition" (policy ``closest``).
        plan: the formulation plan (``plan.achieved`` is what would be made) when the
            composition could be planned.
        closest: chemical name → mole fraction of the closest makeable composition when the
            request is not makeable.
        job: the validated job (:class:`~asab.requests.DensityJob` or
            :class:`~asab.requests.FlowJob`) when the request passed
            :func:`~asab.requests.validate_request`.
        temperature: K the density would be measured at.
        vial: the vial a flow delivery would fill.
    """

    model_config = ConfigDict(extra="forbid")
    accepted: bool
    request_id: str = ""
    quantity: str | None = None
    method: str | None = None
    reasons: list[str] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    plan: FormulationPlan | None = None
    job_plan: JobPlan | None = Field(default=None, description=(
        "the whole job planned against the ledger (nothing moved)"))
    consumables: list[str] = Field(default_factory=list, description=(
        "consumables the job would run short of (a reason to wait for the operator)"))
    closest: dict[str, float] | None = None
    job: DensityJob | FlowJob | None = None
    temperature: float | None = Field(default=None, description="K")
    vial: str | None = None


def check_request(bench_or_config: Bench | BenchConfig, request_info: Any, *,
                  vials: VialRegistry | None = None,
                  policy: Literal["reject", "closest"] | None = None) -> Acceptance:
    """Can this bench serve ``request_info`` (a FINALES2 ``RequestInfo`` or bare ``Request``)?

    Args:
        bench_or_config: an opened :class:`Bench` (stock is then checked against what was
            drawn, the syringes' reserves and priming) or a :class:`BenchConfig` (stock checked
            against the full reservoirs only, no bench state needed).
        request_info: the request as received (any JSON value).
        vials: vial occupancy for ``electrolyte``/``flow``; ``None`` = every configured vial
            is taken as free.
        policy: not-makeable policy; default ``settings.not_makeable_policy``.

    Returns:
        :class:`Acceptance`; never raises for a bad request. Each reason is at most
        :data:`MAX_REASON` characters (a request's own text is cut, not echoed whole).
    """
    acc = _assess(bench_or_config, request_info, vials, policy)
    acc.reasons = [clip(r) for r in acc.reasons]
    acc.notes = [clip(n) for n in acc.notes]
    if not acc.accepted:
        log.info("request %s refused: %s", acc.request_id, "; ".join(acc.reasons))
    return acc


def _assess(bench_or_config: Bench | BenchConfig, request_info: Any,
            vials: VialRegistry | None, policy: Literal["reject", "closest"] | None
            ) -> Acceptance:
    """The request checks (:func:`asab.requests.validate_request`), then the plan, then
    stock and vials."""
    bench = bench_or_config if isinstance(bench_or_config, Bench) else None
    config = bench.config if bench is not None else bench_or_config
    checked = validate_request(request_info, config)
    acc = Acceptance(accepted=False, request_id=checked.request_id, quantity=checked.quantity,
                     method=checked.method, reasons=list(checked.reasons),
                     temperature=checked.temperature)
    job = checked.job
    if job is not None:
        volume = job.volume if isinstance(job, FlowJob) else DENSITY_PLAN_VOLUME
        _plan(config, job.formulation, volume, acc, policy)
        acc.job = job
    if not acc.reasons and acc.plan is not None:
        _check_supplies(bench, config, acc, vials)
    acc.accepted = not acc.reasons
    return acc


def _plan(config: BenchConfig, formulation: dict[str, float], volume: float,
          acc: Acceptance, policy) -> None:
    """Plan with policy ``closest`` (to know the closest composition), then apply ``policy``."""
    pol = policy or config.settings.not_makeable_policy
    try:
        plan = plan_formulation(config, formulation, volume, policy="closest")
    except (AsabError, ValueError) as exc:
        acc.reasons.append(f"composition cannot be planned: {exc}")
        return
    acc.plan = plan.model_copy(update={"policy": pol})
    if not plan.makeable:
        acc.closest = by_name(plan.target, config)
        text = ", ".join(f"{k}={v:.4f}" for k, v in acc.closest.items())
        verdict = (f"composition not makeable from the stocks: closest makeable is {text} "
                   f"(distance {plan.closest_distance:.4g} > tolerance {plan.tolerance:g})")
        (acc.reasons if pol == "reject" else acc.notes).append(
            verdict if pol == "reject" else f"{verdict}; it would be made instead (policy closest)")
    if not plan.deliverable:
        acc.reasons.append("the pumps cannot deliver this mix: " + "; ".join(plan.notes))


# ---------------------------------------------------------------------- stock, vials
def _check_supplies(bench: Bench | None, config: BenchConfig, acc: Acceptance,
                    vials: VialRegistry | None) -> None:
    """Plan the whole job against the ledger (the bench's, or a full bench's without one):
    a plan refused for a consumable, or that cannot be made, is a reason."""
    if acc.quantity == "electrolyte":
        free = vials.free(config) if vials is not None else list(config.settings.vial_nodes)
        if not free:
            acc.reasons.append(f"no free vial: all {len(config.settings.vial_nodes)} vials "
                               "are occupied")
            return
    if bench is not None:
        ctx, ledger = BenchContext(config, bench.graph, bench.delivery_factors), bench.ledger.current()
    else:
        ctx, ledger = BenchContext(config), initial_ledger(config)
    job = acc.job
    try:
        if acc.quantity == "electrolyte":
            acc.job_plan = plan_first_vial(ctx, ledger, job.formulation, job.volume, free,
                                           request_id=acc.request_id, policy=acc.plan.policy)
            acc.vial = acc.job_plan.vial
        else:
            acc.job_plan = stock_aware(lambda f: plan_density(
                ctx, ledger, f, request_id=acc.request_id),
                ctx, ledger, job.formulation, DENSITY_PLAN_VOLUME, acc.plan.policy)
    except ConsumableError as exc:
        acc.reasons.append(str(exc))
        acc.consumables = [str(k) for k in sorted(exc.kinds)]
    except (AsabError, KeyError) as exc:
        acc.reasons.append(str(exc))


def reachable_ranges(config: BenchConfig) -> dict[str, tuple[float, float]]:
    """InChIKey → (min, max) mole fraction over the makeable region that the pumps carry at
    the bench's ``settings.total_flow`` (LPs, see :meth:`StockModel.reachable_ranges`)."""
    return StockModel.from_config(config).reachable_ranges(config.settings.total_flow)


# ---------------------------------------------------------------------- limitations document
def _floor(x: float, decimals: int) -> float:
    return math.floor(x * 10**decimals + 1e-9) / 10**decimals


def _ceil(x: float, decimals: int) -> float:
    return math.ceil(x * 10**decimals - 1e-9) / 10**decimals


def formulation_limits(config: BenchConfig, decimals: int = 4) -> list[list[dict[str, Any]]]:
    """The ``formulation`` limitation: one list with, per chemical in the stocks, the reachable
    mole-fraction range, rounded inwards to ``decimals`` (every bound is really reachable).

    The makeable region is a polytope, not this box: a composition inside every range can
    still be unmakeable; :func:`check_request` decides exactly per request.
    """
    items = []
    for key, (lo, hi) in reachable_ranges(config).items():
        chem = config.chemical(key)
        items.append({"chemical": {"SMILES": chem.smiles, "InChIKey": chem.inchikey},
                      "fraction": [{"min": max(0.0, _ceil(lo, decimals)),
                                    "max": min(1.0, _floor(hi, decimals))}],
                      "fraction_type": ["molPerMol"]})
    return [items]


def capability_limitations(config: BenchConfig, quantity: str, method: str,
                           decimals: int = 4) -> dict[str, Any]:
    """``{"quantity", "method", "limitations": {...}}`` for one capability this tenant serves.

    density: ``formulation`` and ``temperature`` (the densimeter's method temperature, K);
    flow: ``formulation`` and ``volume`` (mL, from the smallest dose a pump meters,
    :data:`~asab.formulation.mixes.DEFAULT_MIN_DOSE`, to the vial capacity).

    Raises:
        KeyError: not a capability of this tenant, or density without a densimeter.
    """
    from asab.formulation.mixes import DEFAULT_MIN_DOSE

    limits: dict[str, Any] = {"formulation": formulation_limits(config, decimals)}
    if (quantity, method) == DENSITY:
        if config.densimeter is None:
            raise KeyError("this bench has no densimeter")
        t = config.densimeter.temperature
        limits["temperature"] = [{"min": t, "max": t}]
    elif (quantity, method) == FLOW:
        limits["volume"] = [{"min": DEFAULT_MIN_DOSE, "max": vial_capacity(config)}]
    else:
        raise KeyError(f"not a capability of this tenant: {quantity}/{method}")
    return {"quantity": quantity, "method": method, "limitations": limits}


def limitations_document(config: BenchConfig, *, name: str | None = None,
                         contact_person: str = "", decimals: int = 4) -> dict[str, Any]:
    """The tenant's limitations document for the broker's administrator, in the format of
    ``tenant_limitations_2023.json``: ``{"name", "limitations": [...], "contact_person"}``,
    one entry per capability the bench can serve (density only with a densimeter, flow only
    with vials)."""
    served = [c for c in CAPABILITIES
              if (c != DENSITY or config.densimeter is not None)
              and (c != FLOW or config.settings.vial_nodes)]
    return {"name": name or f"asab_{config.name}",
            "limitations": [capability_limitations(config, q, m, decimals) for q, m in served],
            "contact_person": contact_person}
