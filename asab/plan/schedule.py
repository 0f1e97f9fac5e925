"""Which steps of a queue of plans may run at the same time, and when (pure).

Every step holds resources while it runs (:func:`resources`): its pumps, the valves its
routes set, every tube segment its liquid passes, the vessels at its routes' ends, the
instrument cell, and the balance (taring, weighing, and every move into the vessel on its
pan). The rule is *first come, first served per resource*: a step may start only when every
earlier step of the queue (earlier job, or earlier in the same job) that holds one of its
resources has finished. So each pump, valve, tube, vessel, cell and the balance sees the
steps in the same order as in the sequential protocol — what each holds when a step starts
is what the sequential run would have had there, and the plans (sized from the ledger as the
earlier jobs leave it) stay right — while steps that share nothing overlap. A step that
claims nothing (none in job plans today) waits for everything before it in its job.

:func:`dependencies` gives the graph, :func:`predict` the earliest start of each step from
the plans' expected durations (the schedule a pipelined run follows when every step takes
what the plan says). Both are deterministic for the same plans.

Units: s.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from pydantic import BaseModel, ConfigDict, Field

from asab.config import BenchConfig
from asab.plan.steps import Dispense, Fill, JobPlan, Step, Tare, Weigh

BALANCE = "balance"


def resources(step: Step, config: BenchConfig) -> frozenset[str]:
    """The resources ``step`` holds while it runs, as ``"kind:name"`` strings.

    Kinds: ``pump``, ``valve``, ``tube`` (a tubing edge a route passes), ``vessel``,
    ``cell`` (an instrument), and ``balance`` (Tare, Weigh, a move into or out of the
    balance's vessel).
    """
    c = step.claims
    out = {f"pump:{p}" for p in c.pumps} | {f"valve:{v}" for v in c.valves}
    out |= {f"vessel:{v}" for v in c.vessels}
    if c.instrument:
        out.add(f"cell:{c.instrument}")
    routes = ([step.route] if isinstance(step, Fill) else
              [m.route for m in step.moves] if isinstance(step, Dispense) else [])
    for route in routes:
        out |= {f"tube:{e}" for e in route.edges}
        out |= {f"valve:{v}" for v in route.valve_settings}
    if isinstance(step, Dispense):
        out.update(f"pump:{m.pump}" for m in step.moves)
        out |= {f"valve:{v}" for v in step.valve_settings}
    if isinstance(step, (Tare, Weigh)):
        out.add(BALANCE)
    if config.balance is not None and f"vessel:{config.balance.vessel}" in out:
        out.add(BALANCE)
    return frozenset(out)


LANE_KINDS = ("pump:", "valve:", "cell:", BALANCE)


def lanes(step: Step, config: BenchConfig) -> list[str]:
    """The resources of ``step`` a Gantt chart shows (pumps, valves, cells, the balance)."""
    return sorted(r for r in resources(step, config) if r.startswith(LANE_KINDS))


class Dependencies:
    """The dependency graph of a queue of plans, built one plan at a time (the queue feeds
    the pipeline: a plan is added when it is made).

    Attributes:
        deps: step → the steps it must wait for (the last earlier holder of each resource).
        held: step → its resources.
    """

    def __init__(self, config: BenchConfig) -> None:
        self.config = config
        self.deps: dict[tuple[int, int], tuple[tuple[int, int], ...]] = {}
        self.held: dict[tuple[int, int], frozenset[str]] = {}
        self._last: dict[str, tuple[int, int]] = {}
        self._jobs: dict[int, list[tuple[int, int]]] = {}

    def add(self, job: int, plan: JobPlan) -> None:
        """Add ``plan``'s steps as the ``job``-th plan (jobs added in increasing order)."""
        mine = self._jobs.setdefault(job, [])
        for i, step in enumerate(plan.steps):
            ref = (job, i)
            held = resources(step, self.config)
            if held:
                deps = {self._last[r] for r in held if r in self._last}
            else:
                deps = set(mine)
            self.deps[ref] = tuple(sorted(deps))
            self.held[ref] = held
            for r in held:
                self._last[r] = ref
            mine.append(ref)


def dependencies(plans: Sequence[JobPlan], config: BenchConfig) -> Dependencies:
    """The graph of ``plans`` queued in this order."""
    out = Dependencies(config)
    for job, plan in enumerate(plans):
        out.add(job, plan)
    return out


class Slot(BaseModel):
    """One step's place in a predicted schedule."""

    model_config = ConfigDict(extra="forbid")
    job: int
    step: int
    kind: str
    phase: str
    start: float = Field(description="s from the queue's start")
    end: float = Field(description="s")
    resources: list[str]


class Schedule(BaseModel):
    """Predicted start and end of every step (s from the queue's start)."""

    model_config = ConfigDict(extra="forbid")
    slots: list[Slot]
    makespan: float = Field(description="s, first start to last end")

    def job_span(self, job: int) -> tuple[float, float]:
        mine = [s for s in self.slots if s.job == job]
        return min(s.start for s in mine), max(s.end for s in mine)


def predict(plans: Sequence[JobPlan], config: BenchConfig, *, sequential: bool = False) -> Schedule:
    """Earliest start of every step of ``plans`` (queued in order) when each step takes its
    expected ``duration``; ``sequential``: one step at a time, in queue order (the
    comparator)."""
    graph = dependencies(plans, config)
    end: dict[tuple[int, int], float] = {}
    slots: list[Slot] = []
    clock = 0.0
    for job, plan in enumerate(plans):
        for i, step in enumerate(plan.steps):
            ref = (job, i)
            start = clock if sequential else max((end[d] for d in graph.deps[ref]), default=0.0)
            end[ref] = start + step.duration
            clock = end[ref]
            slots.append(Slot(job=job, step=i, kind=step.kind, phase=str(step.phase),
                              start=start, end=end[ref], resources=sorted(graph.held[ref])))
    makespan = max(end.values(), default=0.0)
    return Schedule(slots=slots, makespan=makespan)


def overlapping(schedule: Schedule) -> Iterable[tuple[Slot, Slot]]:
    """Pairs of slots that run at the same time and share a resource (none, by construction;
    for tests)."""
    slots = sorted(schedule.slots, key=lambda s: s.start)
    for a_i, a in enumerate(slots):
        for b in slots[a_i + 1:]:
            if b.start >= a.end - 1e-9:
                break
            if set(a.resources) & set(b.resources):
                yield a, b


def ledger_after(plan: JobPlan, ledger, config: BenchConfig):
    """A copy of ``ledger`` as ``plan`` leaves it when every step runs as planned (what the
    next plan of the queue is sized from)."""
    from asab.plan.effects import Edges, apply_step

    out = ledger.clone()
    edges = Edges.of(config)
    for step in plan.steps:
        apply_step(out, edges, step)
    return out
