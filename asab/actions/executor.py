"""The executor: runs any :class:`~asab.plan.steps.JobPlan` on the drivers, one step at a
time, and emits typed events; the bench ledger is updated from each finished step.

Every motion goes through :func:`asab.actions.fluidics.motion` (bench lock; the e-stop and
cancel token checked before and after; every pump stopped on any error). A step cut short by
a failure is charged to the ledger by what the syringe really moved (fill levels read back),
so the ledger keeps agreeing with the bench. The executor decides nothing: volumes, routes and
valve settings are the plan's.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from asab.actions.bench import Bench
from asab.actions.fluidics import motion, move_timeout, wait_done
from asab.drivers.base import DensityViscosityResult
from asab.errors import Cause, DeviceError
from asab.ledger.liquid import UNKNOWN, add, take_from_syringe
from asab.ledger.model import BenchLedger, LedgerChange
from asab.plan.effects import Edges, apply_dispense, apply_fill, apply_step
from asab.plan.steps import (
    Dispense,
    Fill,
    ForgetLines,
    JobPlan,
    MakeSafe,
    Measure,
    Phase,
    Purpose,
    Step,
    Tare,
    Weigh,
)

log = logging.getLogger(__name__)

SYNC_TOLERANCE = 1e-3
"""mL by which a syringe's fill level may differ from the ledger before it is corrected."""


class EventKind(StrEnum):
    """What the executor reports while it runs a plan."""

    PHASE = "phase"
    LIQUID_MOVED = "liquid moved"
    DELIVERY_BEGAN = "delivery began"
    STEP_DONE = "step done"
    STEP_FAILED = "step failed"


@dataclass(frozen=True)
class Event:
    """One executor event: its kind, the step index, the phase, and the bench time (s)."""

    kind: EventKind
    step: int
    phase: Phase
    time: float


@dataclass
class Execution:
    """What running a plan did.

    Attributes:
        done: indices of the steps finished.
        failed: index of the step that failed, or None.
        liquid_moved: some liquid or gas was moved (a fill or dispense started).
        delivery_began: a push towards a vial started.
        drawn: source node → mL aspirated.
        measurement: the densimeter's result, if a Measure step ran.
        blank: the result of a blank Measure step (solvent in the cell after a rinse).
        readings: g, every stable balance reading of the Weigh steps, in order.
        phases: (phase, bench time it began) in order.
        times: step index → (bench time it began, bench time it ended), s.
    """

    done: list[int] = field(default_factory=list)
    failed: int | None = None
    liquid_moved: bool = False
    delivery_began: bool = False
    drawn: dict[str, float] = field(default_factory=dict)
    measurement: DensityViscosityResult | None = None
    blank: DensityViscosityResult | None = None
    readings: list[float] = field(default_factory=list)
    phases: list[tuple[Phase, float]] = field(default_factory=list)
    problems: list[tuple[int, Exception]] = field(default_factory=list)
    safe: str | None = None
    times: dict[int, tuple[float, float]] = field(default_factory=dict)

    def finished(self, indices: list[int]) -> bool:
        """Whether every step of ``indices`` finished."""
        return set(indices) <= set(self.done)


Listener = Callable[[Event], None]


def _record(bench: Bench, change: Callable[[BenchLedger, Edges], None]) -> None:
    """Apply ``change`` to the bench ledger (when the bench has one)."""
    store = bench.ledger
    if store is None:
        return
    edges = Edges.of(bench.config)
    store.update(lambda ledger: change(ledger, edges))


def run_fill(bench: Bench, step: Fill) -> float:
    """Aspirate as ``step`` says; returns the mL drawn. The ledger is charged what the syringe
    really took, also when the move fails part-way, while the bench lock is still held."""
    drv = bench.pumps[step.pump]
    with bench.lock:
        before = drv.fill_level()
        try:
            with motion(bench):
                bench.set_valves(step.route.valve_settings)
                bench.checkpoint()  # the valve waits let other tasks run: stopped meanwhile?
                drv.aspirate(step.volume, step.flow)
                wait_done(bench, drv, move_timeout(step.volume, step.flow, bench))
        except BaseException:
            moved = min(step.volume, _moved(drv, before, sign=1.0))
            if moved > 0:
                _record(bench, lambda L, e: apply_fill(L, e, step, moved))
            raise
        _record(bench, lambda L, e: apply_fill(L, e, step))
    return step.volume


def run_dispense(bench: Bench, step: Dispense) -> None:
    """Dispense as ``step`` says (all pumps started together); a move cut short is charged
    to the ledger by what each pump really dispensed (fill levels read back), while the
    bench lock is still held."""
    drives = [(bench.pumps[m.pump], m) for m in step.moves]
    with bench.lock:
        before = [d.fill_level() for d, _ in drives]
        try:
            with motion(bench):
                bench.set_valves(step.valve_settings)
                bench.checkpoint()  # the valve waits let other tasks run: stopped meanwhile?
                for drv, move in drives:
                    drv.dispense(move.volume, move.flow)
                for drv, move in drives:
                    wait_done(bench, drv, move_timeout(move.volume, move.flow, bench))
        except BaseException:
            moved = {m.pump: min(m.volume, _moved(d, b, sign=-1.0))
                     for (d, m), b in zip(drives, before)}
            if any(v > 0 for v in moved.values()):
                _record(bench, lambda L, e: apply_dispense(L, e, step, moved))
            raise
        _record(bench, lambda L, e: apply_dispense(L, e, step))


def _moved(drv, before: float, sign: float) -> float:
    try:
        return max(0.0, sign * (drv.fill_level() - before))
    except Exception:
        log.exception("cannot read %s after a failed move", getattr(drv, "name", drv))
        return 0.0


def execute(bench: Bench, plan: JobPlan, listener: Listener | None = None, *,
            best_effort: bool = False) -> Execution:
    """Run ``plan``'s steps in order.

    Args:
        bench: the opened bench.
        plan: the plan (computed from this bench's ledger).
        listener: called with every :class:`Event`.
        best_effort: a recovery: when a step fails, skip to the steps that move nothing
            (``ForgetLines``, ``MakeSafe``) and run them; every error is kept in
            ``Execution.problems`` instead of being raised.

    Returns:
        What was done.

    Raises:
        Whatever a step raised (pumps stopped); the returned record is then lost, so callers
        that need it pass an :class:`Execution` through :func:`execute_into`.
    """
    out = Execution()
    execute_into(bench, plan, out, listener, best_effort=best_effort)
    return out


def execute_into(bench: Bench, plan: JobPlan, out: Execution, listener: Listener | None = None,
                 *, best_effort: bool = False) -> None:
    """:func:`execute`, filling ``out`` as it goes (so a caller keeps it when a step raises).
    A pipelined run executes plans with :meth:`asab.actions.pipeline.Pipeline.execute`."""
    marks = {}
    for mark in plan.phases:
        marks.setdefault(mark.step, []).append(mark.phase)
    vial_steps = {i for p in plan.pushes_for(Purpose.VIAL) for i in p.steps}
    phase = Phase.FORMULATE

    def emit(kind: EventKind, index: int) -> None:
        if listener is not None:
            listener(Event(kind, index, phase, bench.clock.now()))

    for index, step in enumerate(plan.steps):
        for p in marks.get(index, []):
            phase = p
            out.phases.append((p, bench.clock.now()))
            emit(EventKind.PHASE, index)
        if out.problems and not isinstance(step, (ForgetLines, MakeSafe)):
            continue
        if isinstance(step, (Fill, Dispense)) and not out.liquid_moved:
            out.liquid_moved = True
            emit(EventKind.LIQUID_MOVED, index)
        if index in vial_steps and not out.delivery_began:
            out.delivery_began = True
            emit(EventKind.DELIVERY_BEGAN, index)
        began = bench.clock.now()
        try:
            run_step(bench, step, out)
        except BaseException as exc:
            out.times[index] = (began, bench.clock.now())
            out.failed = index
            emit(EventKind.STEP_FAILED, index)
            if not best_effort or not isinstance(exc, Exception):
                raise
            log.error("recovery step %d (%s) failed: %s", index, step.kind, exc)
            out.problems.append((index, exc))
            continue
        out.times[index] = (began, bench.clock.now())
        out.done.append(index)
        emit(EventKind.STEP_DONE, index)
    for p in marks.get(len(plan.steps), []):
        out.phases.append((p, bench.clock.now()))


def run_step(bench: Bench, step: Step, out: Execution) -> None:
    """Run one step on the drivers, keeping what it returns in ``out``."""
    if isinstance(step, Fill):
        out.drawn[step.source] = out.drawn.get(step.source, 0.0) + run_fill(bench, step)
    elif isinstance(step, Dispense):
        run_dispense(bench, step)
    elif isinstance(step, Tare):
        if bench.balance is None:
            raise DeviceError("balance", Cause.NOT_CONFIGURED, "this bench has no balance")
        with motion(bench):
            bench.balance.tare()
    elif isinstance(step, Weigh):
        if bench.balance is None:
            raise DeviceError("balance", Cause.NOT_CONFIGURED, "this bench has no balance")
        with motion(bench):
            out.readings.extend(bench.balance.read(stable=True).value for _ in range(step.reads))
    elif isinstance(step, Measure):
        if bench.densimeter is None:
            raise DeviceError("densimeter", Cause.NOT_CONFIGURED)
        with motion(bench):
            result = bench.densimeter.measure(step.sample)
        if step.blank:
            out.blank = result
        else:
            out.measurement = result
    elif isinstance(step, MakeSafe):
        from asab.actions.safety import make_safe

        out.safe = make_safe(bench)
    elif isinstance(step, ForgetLines):
        _record(bench, lambda L, e: apply_step(L, e, step))


def sync_syringes(bench: Bench) -> list[str]:
    """Correct the ledger's syringe contents to the fill levels the pumps report (before a
    plan is made: the plan is sized from them). More than the ledger knows is liquid of
    unknown origin; less is taken from the ledger's content, gas first. Skipped while a move
    holds the bench lock (that move's step charges the ledger when it ends).

    Returns:
        The pumps corrected.
    """
    if bench.ledger is None:
        return []
    if not bench.lock.acquire(blocking=False):  # a move is under way: its step charges it
        return []
    try:
        return _sync_locked(bench)
    finally:
        bench.lock.release()


def _sync_locked(bench: Bench) -> list[str]:
    levels = {name: pump.fill_level() for name, pump in bench.pumps.items()}
    ledger = bench.ledger.current()
    off = [p for p, level in levels.items()
           if p in ledger.syringes and abs(ledger.syringes[p].volume - level) > SYNC_TOLERANCE]
    if not off:
        return []

    def correct(L: BenchLedger, _e) -> None:
        for p in off:
            syringe = L.syringes[p]
            delta = levels[p] - syringe.volume
            if delta > 0:
                syringe.content = add(syringe.content, {UNKNOWN: delta})
            else:
                _, syringe.content = take_from_syringe(syringe.content, -delta)
            L.note(LedgerChange.SYNC, p, f"fill level {levels[p]:.4f} mL read from the pump")

    _record(bench, correct)
    log.warning("ledger syringe levels corrected from the pumps: %s", ", ".join(off))
    return off
