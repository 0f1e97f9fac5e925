"""Typed job plans: a :class:`JobPlan` is an ordered list of typed steps computed before
anything moves (shared/docs/architecture.md, "The next shape").

Every step says what it moves (pumps, volumes, flows, routes with their valve settings), which
resources it claims (pumps, valves, instrument cell, vessels) and how long it is expected to
take on the bench. Logical pushes (a first portion, a sample, a drain…) are
:class:`PushSummary` values naming the steps they consist of, with a :class:`Purpose`; the
record of a job is written from them, never from list positions or strings.

Units: mL, mL/s, s.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from asab.plan.carryover import CellPrediction, Sizing
from asab.tubing import Route


class JobKind(StrEnum):
    """What a plan does."""

    DENSITY = "density"
    VIAL = "vial"
    PRIME = "prime"
    MIX = "mix"
    DELIVER = "deliver"
    DRAIN = "drain"
    CLEAN = "clean"
    RECOVER = "recover"


class Phase(StrEnum):
    """The named stages of a job; a record keeps when each began (``RunRecord.steps``)."""

    FORMULATE = "formulate"
    PRIME = "prime"
    MIX = "mix"
    TARE = "tare"
    DELIVER = "deliver"
    MEASURE = "measure"
    DRAIN = "drain"
    WEIGH = "weigh"
    CLEAN = "clean"
    RECOVER = "recover"
    PARK = "park"


class Purpose(StrEnum):
    """Why liquid or gas is pushed."""

    EMPTY = "empty"
    PRIME = "prime"
    REFILL = "refill"
    FIRST_PORTION = "first portion to waste"
    SAMPLE = "sample through cell"
    VIAL = "deliver into vial"
    DRAIN = "drain with gas"
    CLEAN = "clean with solvent"
    FLUSH = "flush to waste"
    PREFILL = "pre-fill balance branch"
    DOSE = "dose onto the balance"


class PlannedRoute(BaseModel):
    """A :class:`~asab.tubing.Route` in JSON form (nodes and edges in flow order, valve
    settings, dead volume mL)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    nodes: tuple[str, ...]
    edges: tuple[str, ...]
    valve_settings: dict[str, int]
    dead_volume: float

    @classmethod
    def of(cls, route: Route) -> PlannedRoute:
        return cls(nodes=route.nodes, edges=route.edges, valve_settings=dict(route.valve_settings),
                   dead_volume=route.dead_volume)

    def to_route(self) -> Route:
        return Route(nodes=tuple(self.nodes), edges=tuple(self.edges),
                     valve_settings=dict(self.valve_settings), dead_volume=self.dead_volume)


class Claims(BaseModel):
    """Resources a step holds while it runs."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    pumps: tuple[str, ...] = ()
    valves: tuple[str, ...] = ()
    instrument: str | None = None
    vessels: tuple[str, ...] = ()


class _Step(BaseModel):
    model_config = ConfigDict(extra="forbid")
    phase: Phase
    purpose: Purpose | None = None
    claims: Claims = Field(default_factory=Claims)
    duration: float = Field(default=0.0, ge=0, description="expected bench seconds")


class Fill(_Step):
    """Aspirate ``volume`` mL into ``pump`` from ``source`` at ``flow`` along ``route``."""

    kind: Literal["fill"] = "fill"
    pump: str
    source: str
    volume: float = Field(gt=0, allow_inf_nan=False, description="mL")
    flow: float = Field(gt=0, allow_inf_nan=False, description="mL/s")
    route: PlannedRoute


class Move(BaseModel):
    """One pump's part of a dispense: ``volume`` mL commanded at ``flow`` mL/s along ``route``
    (commanded = wanted / the pump's delivery factor)."""

    model_config = ConfigDict(extra="forbid")
    pump: str
    volume: float = Field(gt=0, allow_inf_nan=False, description="mL commanded")
    flow: float = Field(gt=0, allow_inf_nan=False, description="mL/s commanded")
    route: PlannedRoute
    factor: float = Field(default=1.0, gt=0, le=10, allow_inf_nan=False, description=(
        "the pump's calibrated delivery factor: the liquid really moved is factor × volume"))


class Dispense(_Step):
    """Dispense from one or several pumps at once (valves set together, then all pumps
    started, then waited for); ``sink`` is where the stream ends."""

    kind: Literal["dispense"] = "dispense"
    moves: list[Move] = Field(min_length=1)
    valve_settings: dict[str, int]
    sink: str


class Tare(_Step):
    """Tare the balance."""

    kind: Literal["tare"] = "tare"


class Weigh(_Step):
    """Read ``reads`` stable values of the balance (g)."""

    kind: Literal["weigh"] = "weigh"
    reads: int = Field(default=1, ge=1, le=100)


class Measure(_Step):
    """Measure the content of the densimeter's cell under ``sample`` (``blank``: the cell
    full of cleaning solvent after a rinse, read against its reference density)."""

    kind: Literal["measure"] = "measure"
    sample: str
    blank: bool = False


class MakeSafe(_Step):
    """Confirm every pump stopped and park the valves that join a source (see
    :func:`asab.actions.safety.make_safe`); values read back, nothing else moves."""

    kind: Literal["make_safe"] = "make_safe"


class ForgetLines(_Step):
    """Mark what the lines (and syringes) hold as unknown in the ledger (after a failure:
    every pump is primed again and every mixing line counts as dry)."""

    kind: Literal["forget_lines"] = "forget_lines"


Step = Annotated[Fill | Dispense | Tare | Weigh | Measure | MakeSafe | ForgetLines,
                 Field(discriminator="kind")]


class PushSummary(BaseModel):
    """One logical push: ``volume`` mL wanted in total at ``flows`` (pump → mL/s wanted) into
    ``sink``, carried out by the dispense steps ``steps`` (indices into ``JobPlan.steps``,
    refills between strokes included)."""

    model_config = ConfigDict(extra="forbid")
    purpose: Purpose
    flows: dict[str, float]
    volume: float = Field(description="mL")
    sink: str
    valve_settings: dict[str, int]
    routes: dict[str, PlannedRoute] = Field(description="pump → route")
    steps: list[int]
    shared_line: float = Field(default=0.0, description=(
        "mL of line from the mixer outlet shared with the sample route"))


class PhaseMark(BaseModel):
    """Phase ``phase`` begins before step ``step`` (``len(steps)``: after the last step)."""

    model_config = ConfigDict(extra="forbid")
    phase: Phase
    step: int = Field(ge=0)


class Consumption(BaseModel):
    """What a plan takes and leaves: vessel node → mL change (negative: drawn), and the
    balance load afterwards (g)."""

    model_config = ConfigDict(extra="forbid")
    change: dict[str, float] = Field(default_factory=dict, description="node → mL")
    balance_load: float | None = Field(default=None, description="g on the pan afterwards")


class JobPlan(BaseModel):
    """What the bench will do for one job, computed before anything moves.

    Attributes:
        kind: what the plan does.
        request_id: the request it serves ("" for a single action).
        formulation: the formulation plan (density and vial jobs, mix/deliver).
        steps: the steps in order.
        pushes: the logical pushes, each naming its steps.
        phases: where each phase begins, in execution order.
        sample: the densimeter's sample name (density jobs).
        instrument: the instrument cell used, if any.
        sink: where the sample goes (density: the balance vessel or a waste).
        vial, waste: the vial and the waste of its first portion (vial jobs).
        vial_branch: mL of the vial's own branch (vial jobs).
        volume_requested: mL to deliver into the vial (vial jobs).
        consumption: predicted vessel changes.
        duration: expected bench seconds (sum of the steps).
        notes: remarks (e.g. a stock avoided because it runs low).
        sizing: how the first portion, the sample flush and the cleaning were sized.
        cell_prediction: what the cell is predicted to hold when it measures (density jobs).
    """

    model_config = ConfigDict(extra="forbid")
    kind: JobKind
    bench: str
    request_id: str = ""
    formulation: Any = None
    steps: list[Step] = Field(default_factory=list)
    pushes: list[PushSummary] = Field(default_factory=list)
    phases: list[PhaseMark] = Field(default_factory=list)
    sample: str | None = None
    instrument: str | None = None
    sink: str | None = None
    vial: str | None = None
    waste: str | None = None
    vial_branch: float | None = None
    volume_requested: float | None = None
    consumption: Consumption = Field(default_factory=Consumption)
    duration: float = 0.0
    notes: list[str] = Field(default_factory=list)
    sizing: list[Sizing] = Field(default_factory=list)
    cell_prediction: CellPrediction | None = None

    def push(self, purpose: Purpose) -> PushSummary | None:
        """The first logical push with ``purpose``, or None."""
        return next((p for p in self.pushes if p.purpose is purpose), None)

    def pushes_for(self, *purposes: Purpose) -> list[PushSummary]:
        return [p for p in self.pushes if p.purpose in purposes]
