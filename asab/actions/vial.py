"""The ``electrolyte``/``flow`` action: formulate an electrolyte and deliver a volume into a vial.

Steps (:func:`run_flow_job`): plan the stock flows for the requested composition; pick the
first free vial of ``settings.vial_nodes`` (:class:`~asab.actions.vial_state.VialRegistry`)
and check the stocks — all before any liquid moves; claim the vial; prime; send a first
portion of the mixture to the waste whose route from the mixer outlet shares the longest line
with the vial route (so that line holds only mixture); push ``volume + U`` into the vial, where
U is the dead volume of the vial's own branch (it holds gas, vented in the vial, and keeps U of
mixture afterwards); then rinse the mixer and the shared line to that waste with solvent and
blow them dry with gas. The vial's branch is never rinsed (solvent would end up in the vial).

Pumps are stopped on every error (:func:`~asab.actions.fluidics.motion`). After a failure
(:func:`asab.actions.job.recover`, kind ``vial``) the shared line is rinsed and dried once liquid has moved, and the bench
is made safe as after a density job (:func:`asab.actions.safety.make_safe`: pumps confirmed
stopped, every reservoir closed off by parking valves); if any of that fails the bench is
marked out of service.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Literal

from pydantic import Field

from asab.actions.bench import Bench
from asab.actions.executor import EventKind
from asab.actions.job import JobRun, RunRecord, check_in_service
from asab.actions.vial_state import VialOccupant, VialRegistry
from asab.config import BenchConfig
from asab.errors import RequestError
from asab.formulation import by_name
from asab.plan import Phase, Purpose
from asab.plan.planner import common_line_volume, plan_first_vial
from asab.requests import FlowJob

__all__ = ["DEFAULT_VIAL_CAPACITY", "FlowJob", "FlowRecord", "NoFreeVialError",
           "common_line_volume", "run_flow_job", "vial_capacity"]

log = logging.getLogger(__name__)

DEFAULT_VIAL_CAPACITY = 20.0
"""mL a vial takes when the configuration gives no ``settings.vial_capacity``: a 20 mL
vial assumed (the 2023 bench's vial size is not recorded in the source data)."""


def _now() -> str:
    """Wall-clock now, ISO 8601 UTC (milliseconds)."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


class NoFreeVialError(RequestError):
    """Every configured vial holds an electrolyte: the request cannot be served now."""


class FlowRecord(RunRecord):
    """Everything about one delivery into a vial (the fields of
    :class:`~asab.actions.job.RunRecord` plus the volumes and the vial). Compositions by
    chemical name."""

    volume_requested: float = Field(description="mL")
    volume_pushed: float | None = Field(default=None, description="mL pushed towards the vial")
    volume_delivered: float | None = Field(
        default=None, description="mL in the vial (None: unknown after a failure)")
    delivered: bool = Field(default=False, description="the whole volume reached the vial")
    delivery_began: bool = Field(default=False, description="liquid was sent towards the vial")
    vial: str | None = Field(default=None, description="vial node")
    waste: str | None = Field(default=None, description="waste node of the first portion")
    vial_branch: float | None = Field(default=None, description="mL of the vial's own branch")


def vial_capacity(config: BenchConfig) -> float:
    """mL one vial takes: ``settings.vial_capacity`` if configured, else
    :data:`DEFAULT_VIAL_CAPACITY`."""
    return float(getattr(config.settings, "vial_capacity", None) or DEFAULT_VIAL_CAPACITY)


def new_flow_record(bench: Bench, job: FlowJob, job_id: str) -> FlowRecord:
    """An empty record (status ``failed`` until the job says otherwise)."""
    return FlowRecord(job_id=job_id, request_id=job.request_id, bench=bench.config.name,
                      started=_now(), volume_requested=job.volume, request=job.raw)


def run_flow_job(bench: Bench, job: FlowJob, job_id: str, vials: VialRegistry, *,
                 policy: Literal["reject", "closest"] | None = None,
                 progress=None) -> FlowRecord:
    """Formulate ``job`` and deliver its volume into a free vial; never raises for job-level
    problems (they end up in the record).

    Args:
        bench: the opened bench.
        job: the validated request.
        job_id: id of this job within the run.
        vials: the vial occupancy (updated: claimed before liquid moves, ``delivering`` set
            when the delivery begins, ``filled`` after).
        policy: not-makeable policy; default ``settings.not_makeable_policy``.
        progress: optional ``progress(step: str)``.

    Returns:
        The record: ``succeeded``; ``rejected`` (not makeable, not deliverable, too much
        volume, not enough of a consumable, no free vial — nothing moved); or ``failed``
        (device or routing trouble; the vial marked ``failed`` if liquid may have reached it,
        and the bench recovered unless it was out of service already).
    """
    rec = new_flow_record(bench, job, job_id)
    rec.requested = by_name(job.formulation, bench.config)
    run = JobRun(bench, rec, "vial", progress)
    run.failed = lambda: _settle_vial(run, rec, vials)  # type: ignore[method-assign]
    return run.run(lambda: _deliver(run, job, rec, vials, policy))


def _deliver(run: JobRun, job: FlowJob, rec: FlowRecord, vials: VialRegistry, policy) -> None:
    bench = run.bench
    cfg = bench.config
    check_in_service(bench)
    run.step(Phase.FORMULATE)
    capacity = vial_capacity(cfg)
    if job.volume > capacity:
        raise RequestError(f"volume {job.volume:.3f} mL exceeds the vial capacity "
                           f"{capacity:.3f} mL")
    free = vials.free(cfg)
    if not free:
        raise NoFreeVialError(f"no free vial: all {len(cfg.settings.vial_nodes)} vials "
                              "of this bench are occupied")
    plan = run.plan_with(lambda ctx, ledger: plan_first_vial(
        ctx, ledger, job.formulation, job.volume, free, request_id=job.request_id,
        policy=policy))
    rec.vial, rec.waste, rec.vial_branch = plan.vial, plan.waste, plan.vial_branch
    run.vial = plan.vial
    vials.claim(VialOccupant(vial=plan.vial, request_id=job.request_id, job_id=rec.job_id,
                             composition=dict(rec.achieved), time=_now()))

    last = plan.push(Purpose.VIAL).steps[-1]

    def track(event) -> None:
        if event.kind is EventKind.DELIVERY_BEGAN:  # before liquid is sent towards the vial
            rec.delivery_began = True
            rec.volume_pushed = job.volume + plan.vial_branch
            vials.update(plan.vial, delivering=True, time=_now())
        elif event.kind is EventKind.STEP_DONE and event.step == last:
            rec.volume_delivered, rec.delivered = rec.volume_requested, True
            vials.update(plan.vial, status="filled", volume=rec.volume_delivered, time=_now())
    run.listeners.append(track)
    before = bench.ledger.current().vessels[plan.vial].volume
    try:
        run.execute()
    finally:
        if rec.delivery_began and not rec.delivered:  # what reached it, from the ledger
            got = bench.ledger.current().vessels[plan.vial].volume - before
            rec.volume_delivered = max(0.0, got)


def _settle_vial(run: JobRun, rec: FlowRecord, vials: VialRegistry) -> None:
    """After a failure: free a claimed vial nothing was pushed towards, else mark it failed."""
    occupant = vials.occupied().get(rec.vial or "")
    if occupant is not None and occupant.job_id == rec.job_id and occupant.status == "filling":
        if not rec.delivery_began:  # nothing was pushed towards the vial
            vials.release(rec.vial)
            rec.volume_delivered = 0.0
        else:
            vials.update(rec.vial, status="failed", volume=rec.volume_delivered, time=_now())
