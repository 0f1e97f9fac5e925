"""Moving liquid: fill a syringe from a source, and push one or several pumps along routes.

These are the building blocks of the named actions (prime, mix, deliver, drain, clean).
Every motion is wrapped in :func:`motion`, which stops every pump if anything goes wrong.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from asab.actions.bench import Bench
from asab.clock import poll_until
from asab.drivers.base import SyringePump
from asab.errors import Cause, DeviceError, WaitTimeout
from asab.tubing import Route

log = logging.getLogger(__name__)

_MARGIN = 1e-6  # mL: float slack when comparing volumes


@contextlib.contextmanager
def motion(bench: Bench) -> Iterator[None]:
    """Hold the bench lock; on any exception stop every pump, then re-raise.

    ``bench.checkpoint()`` runs before and after the move, so a cancelled action or a latched
    emergency stop (both of which stop the pumps at once) ends here with the pumps stopped;
    a driver error caused by that stop (e.g. a dosed-volume mismatch) is re-raised as
    ``OperationCancelled``/``EmergencyStopped`` chained to it.
    """
    with bench.lock:
        try:
            bench.checkpoint()
            yield
            bench.checkpoint()
        except BaseException as exc:
            bench.stop_all()
            if isinstance(exc, Exception):
                bench.checkpoint()  # a move cut short by a cancel/e-stop is reported as such
            raise


def wait_done(bench: Bench, pump: SyringePump, timeout: float) -> None:
    """Wait for ``pump``'s move like ``pump.wait_until_done(timeout)``, checking
    ``bench.checkpoint()`` every ``settings.poll_interval`` s meanwhile, so a cancel or an
    emergency stop ends the wait (and, through :func:`motion`, the move) within one poll.

    Raises:
        OperationCancelled, EmergencyStopped: as :meth:`Bench.checkpoint`.
        TransportTimeout, DeviceFault: as ``wait_until_done``.
    """
    deadline = bench.clock.now() + timeout

    def stopped() -> bool:
        bench.checkpoint()
        return not pump.is_pumping()
    try:
        poll_until(bench.clock, stopped, timeout, "the end of the move",
                   bench.config.settings.poll_interval, device=pump.name)
    except WaitTimeout:
        pass  # wait_until_done below raises the pump's own timeout
    pump.wait_until_done(max(deadline - bench.clock.now(), 0.0))


def move_timeout(volume: float, flow: float, bench: Bench) -> float:
    """Time allowed for one move: 1.2 × nominal + 10 s, capped by ``settings.pump_timeout``.

    Raises:
        DeviceError: the move cannot finish within ``pump_timeout`` at this flow.
    """
    nominal = volume / flow
    if nominal > bench.config.settings.pump_timeout:
        raise DeviceError("bench", Cause.MOVE_TOO_LONG,
                          f"{volume:.3f} mL at {flow:.4g} mL/s exceeds pump_timeout")
    return min(1.2 * nominal + 10.0, bench.config.settings.pump_timeout)


@dataclass
class MoveLog:
    """What a sequence of moves drew and where: aspirated volume per source node (mL) and
    every route used (for records)."""

    drawn: dict[str, float] = field(default_factory=dict)
    routes: list[dict] = field(default_factory=list)

    def draw(self, source: str, volume: float) -> None:
        self.drawn[source] = self.drawn.get(source, 0.0) + volume

    def use(self, purpose: str, route: Route) -> None:
        self.routes.append({"purpose": purpose, **route.to_dict()})


def builder(bench: Bench):
    """A :class:`~asab.plan.builder.PlanBuilder` over the bench ledger, syringe levels
    synchronised with the pumps first."""
    from asab.actions.executor import sync_syringes
    from asab.plan.builder import PlanBuilder

    sync_syringes(bench)
    return PlanBuilder(bench.config, bench.graph, bench.ledger.current(), bench.delivery_factors)


def run_steps(bench: Bench, steps, log: MoveLog, purpose: str = "") -> None:
    """Run planned fill and dispense steps on the drivers (ledger updated per step)."""
    from asab.actions.executor import run_dispense, run_fill
    from asab.plan.steps import Fill

    for step in steps:
        if isinstance(step, Fill):
            log.draw(step.source, run_fill(bench, step))
            log.use(f"fill {step.pump} from {step.source}", step.route.to_route())
        else:
            run_dispense(bench, step)
            for move in step.moves:
                label = purpose or f"{step.purpose} {move.pump} to {step.sink}"
                log.use(f"{label}: {move.pump}" if purpose else label, move.route.to_route())


def fill(bench: Bench, pump: str, source: str, volume: float, log: MoveLog,
         flow: float | None = None) -> None:
    """Aspirate ``volume`` mL into ``pump`` from ``source`` along the least-dead-volume route.

    Raises:
        RoutingError, DeviceError, TransportTimeout: as raised by routing and drivers.
    """
    if volume <= _MARGIN:
        return
    b = builder(bench)
    b.fill(pump, source, volume, flow)
    run_steps(bench, b.steps, log)


def empty(bench: Bench, pump: str, target: str, log: MoveLog, flow: float | None = None) -> None:
    """Dispense the whole content of ``pump`` into ``target`` (e.g. a waste)."""
    b = builder(bench)
    b.empty(pump, target, flow)
    run_steps(bench, b.steps, log)


def dispense(bench: Bench, pump: str, target: str, volume: float, flow: float,
             log: MoveLog) -> None:
    """Dispense ``volume`` mL of ``pump`` into ``target`` in one move (no refill)."""
    from asab.actions.executor import run_dispense
    from asab.plan.steps import Dispense, Move, PlannedRoute, Purpose

    route = bench.graph.route(bench.config.pump(pump).node, target)
    step = Dispense(phase="deliver", purpose=Purpose.EMPTY, sink=target,
                    valve_settings=dict(route.valve_settings),
                    moves=[Move(pump=pump, volume=volume, flow=flow,
                                route=PlannedRoute.of(route))])
    run_dispense(bench, step)
    log.use(f"dispense {pump} to {target}", route)


def reserve(bench: Bench, pump: str) -> float:
    """Lowest usable fill level of ``pump`` in mL (``min_fill_fraction`` × V_max)."""
    return bench.config.syringe_of(pump).min_fill_fraction * bench.pumps[pump].volume_max


def push(bench: Bench, flows: Mapping[str, float], volume: float, routes: Mapping[str, Route],
         sources: Mapping[str, str], log: MoveLog, purpose) -> float:
    """Dispense ``volume`` mL in total from several pumps at once, each at its own flow,
    refilling low syringes between strokes (planned by
    :meth:`asab.plan.builder.PlanBuilder.push`, then run step by step).

    Args:
        purpose: a :class:`~asab.plan.steps.Purpose` (its text labels the routes).

    Returns:
        The volume pushed, mL.

    Raises:
        ValveConflictError: the routes need different positions of one valve.
        DeviceError, TransportTimeout: from the drivers (all pumps are stopped first).
    """
    b = builder(bench)
    sink = next(iter(routes.values())).target
    b.push(flows, volume, routes, sources, purpose, sink)
    run_steps(bench, b.steps, log, str(purpose))
    return volume
