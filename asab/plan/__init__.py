"""Job plans: typed steps computed before anything moves (:mod:`asab.plan.steps`), built over
the bench ledger (:mod:`asab.plan.builder`, :mod:`asab.plan.planner`), checked against its
consumables (:mod:`asab.plan.consumables`)."""

from asab.plan.consumables import Consumable, ConsumableError
from asab.plan.steps import JobKind, JobPlan, Phase, Purpose

__all__ = ["Consumable", "ConsumableError", "JobKind", "JobPlan", "Phase", "Purpose"]
