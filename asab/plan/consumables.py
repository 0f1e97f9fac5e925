"""Consumables checked at plan time: a plan that would need more stock, solvent, waste
capacity, balance capacity or vial volume than the ledger holds is refused before any liquid
moves, naming the consumable, the amount needed, the amount left and the operator's fix.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from enum import StrEnum
from typing import TYPE_CHECKING

from asab.config import BenchConfig
from asab.errors import InsufficientStockError
from asab.ledger.model import BenchLedger, VesselKind, mass_of
from asab.plan.steps import Consumption, Fill

if TYPE_CHECKING:
    from asab.plan.builder import PlanBuilder
    from asab.plan.steps import JobPlan

SLACK = 1e-6
"""mL (or g) of float slack on every comparison."""


class Consumable(StrEnum):
    """The kinds of consumable a plan can run short of."""

    STOCK = "stock solution"
    SOLVENT = "cleaning solvent"
    WASTE = "waste container"
    BALANCE = "balance capacity"
    VIAL = "vial"


class Shortage:
    """One consumable a plan runs short of: ``needed`` and ``left`` in ``unit``, and the
    operator's ``fix``."""

    def __init__(self, kind: Consumable, node: str, needed: float, left: float, unit: str,
                 fix: str, stock: str | None = None) -> None:
        self.kind, self.node, self.needed, self.left = kind, node, needed, left
        self.unit, self.fix, self.stock = unit, fix, stock

    def __str__(self) -> str:
        what = f"{self.kind} {self.stock or self.node}" + (
            f" ({self.node})" if self.stock else "")
        return (f"{what}: the job needs {self.needed:.2f} {self.unit}, "
                f"{max(self.left, 0.0):.2f} {self.unit} left; {self.fix}")

    def as_dict(self) -> dict:
        return {"consumable": str(self.kind), "node": self.node, "stock": self.stock,
                "needed": self.needed, "left": max(self.left, 0.0), "unit": self.unit,
                "fix": self.fix}


class ConsumableError(InsufficientStockError):
    """A plan needs more of a consumable than the ledger holds (nothing has moved).

    Attributes:
        shortages: every consumable short, with amounts and fixes.
        stocks: names of the stock solutions among them.
    """

    def __init__(self, shortages: list[Shortage]) -> None:
        self.shortages = shortages
        self.stocks = [s.stock for s in shortages if s.stock]
        label = "not enough stock solution" if all(s.stock for s in shortages) else \
            "not enough consumables"
        super().__init__(f"{label}: " + "; ".join(str(s) for s in shortages))

    @property
    def kinds(self) -> set[Consumable]:
        return {s.kind for s in self.shortages}


def consumption(config: BenchConfig, before: BenchLedger, after: BenchLedger) -> Consumption:
    """Vessel node → mL change between two ledgers, and the balance load afterwards (g)."""
    change = {}
    for node, v in after.vessels.items():
        old = before.vessels.get(node)
        delta = v.volume - (old.volume if old else 0.0)
        if abs(delta) > SLACK:
            change[node] = delta
    load = None
    if config.balance is not None and config.balance.vessel in after.vessels:
        load = mass_of(config, after.vessels[config.balance.vessel].content)
    return Consumption(change=change, balance_load=load)


def check_consumables(config: BenchConfig, start: BenchLedger, b: PlanBuilder,
                      plan: JobPlan, after: Mapping[str, float] | None = None) -> None:
    """Refuse ``plan`` (built by ``b`` from ``start``) if it needs more than ``start`` holds;
    ``after``: node → mL that must be left for what the plan leaves to be done (the solvent of
    a clean it defers to the next job).

    Raises:
        ConsumableError: listing every shortage.
    """
    short = _draws(config, start, b.steps, after) + _fills(config, start, b.ledger)
    if short:
        raise ConsumableError(short)


def _draws(config: BenchConfig, start: BenchLedger, steps,
           after: Mapping[str, float] | None = None) -> list[Shortage]:
    """Stock reservoirs and the solvent bottle: the plan's aspirations (and ``after``)
    against their level."""
    drawn: dict[str, float] = dict(after or {})
    for st in steps:
        if isinstance(st, Fill):
            drawn[st.source] = drawn.get(st.source, 0.0) + st.volume
    names = {s.reservoir: s.name for s in config.stocks}
    out = []
    for node, volume in sorted(drawn.items()):
        vessel = start.vessels.get(node)
        if vessel is None or vessel.kind not in (VesselKind.STOCK, VesselKind.SOLVENT):
            continue
        reserve = config.settings.reservoir_reserve if vessel.kind is VesselKind.STOCK else 0.0
        left = vessel.volume - reserve
        if not volume <= left + SLACK:  # NaN-safe: an unknown level is a shortage
            if vessel.kind is VesselKind.STOCK:
                out.append(Shortage(Consumable.STOCK, node, volume, left, "mL",
                                    f"refill the reservoir, then `asab bench refill {node} "
                                    "<mL now in it>`", stock=names.get(node)))
            else:
                out.append(Shortage(Consumable.SOLVENT, node, volume, left, "mL",
                                    f"refill the solvent bottle, then `asab bench refill "
                                    f"{node} <mL now in it>`"))
    return out


def _fills(config: BenchConfig, start: BenchLedger, end: BenchLedger) -> list[Shortage]:
    """Wastes, the balance vessel and vials: what the plan adds against their capacity."""
    out = []
    vessel_on_pan = config.balance.vessel if config.balance else None
    for node, after in sorted(end.vessels.items()):
        before = start.vessels.get(node)
        added = after.volume - (before.volume if before else 0.0)
        if after.capacity is None or (added <= SLACK and after.volume == after.volume):
            continue
        if after.kind not in (VesselKind.WASTE, VesselKind.VIAL):
            continue  # a reservoir filling back (e.g. a line emptied into it) is no shortage
        if not after.volume <= after.capacity + SLACK:
            kind = Consumable.VIAL if after.kind is VesselKind.VIAL else Consumable.WASTE
            fix = (f"empty the vial, then `asab bench empty {node}`" if kind is Consumable.VIAL
                   else f"empty the container, then `asab bench empty {node}`")
            out.append(Shortage(kind, node, added, after.capacity - after.volume + added,
                                "mL", fix))
        if node == vessel_on_pan:
            load = mass_of(config, after.content)
            capacity = config.balance.capacity
            if not load <= capacity + SLACK:
                added_mass = load - mass_of(config, before.content if before else {})
                out.append(Shortage(Consumable.BALANCE, node, added_mass,
                                    capacity - load + added_mass, "g",
                                    f"empty the vessel on the balance, then `asab bench empty "
                                    f"{node}`"))
    return out


def total_drawn(plan: JobPlan) -> dict[str, float]:
    """Source node → mL the plan aspirates."""
    out: dict[str, float] = {}
    for st in plan.steps:
        if isinstance(st, Fill):
            out[st.source] = math.fsum([out.get(st.source, 0.0), st.volume])
    return out
