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
from asab.drivers.base import SyringePump
from asab.errors import DeviceError
from asab.tubing import Route, merge_settings

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
    while pump.is_pumping() and bench.clock.now() < deadline:
        bench.checkpoint()
        bench.clock.sleep(min(bench.config.settings.poll_interval, deadline - bench.clock.now()))
    pump.wait_until_done(max(deadline - bench.clock.now(), 0.0))


def move_timeout(volume: float, flow: float, bench: Bench) -> float:
    """Time allowed for one move: 1.2 × nominal + 10 s, capped by ``settings.pump_timeout``.

    Raises:
        DeviceError: the move cannot finish within ``pump_timeout`` at this flow.
    """
    nominal = volume / flow
    if nominal > bench.config.settings.pump_timeout:
        raise DeviceError("bench", "move too long",
                          f"{volume:.3f} mL at {flow:.4g} mL/s exceeds pump_timeout")
    return min(1.2 * nominal + 10.0, bench.config.settings.pump_timeout)


@dataclass
class Ledger:
    """What a sequence of moves drew and where: aspirated volume per source node (mL)."""

    drawn: dict[str, float] = field(default_factory=dict)
    routes: list[dict] = field(default_factory=list)

    def draw(self, source: str, volume: float) -> None:
        self.drawn[source] = self.drawn.get(source, 0.0) + volume

    def use(self, purpose: str, route: Route) -> None:
        self.routes.append({"purpose": purpose, **route.to_dict()})


def fill(bench: Bench, pump: str, source: str, volume: float, ledger: Ledger,
         flow: float | None = None) -> None:
    """Aspirate ``volume`` mL into ``pump`` from ``source`` along the least-dead-volume route.

    Raises:
        RoutingError, DeviceError, TransportTimeout: as raised by routing and drivers.
    """
    if volume <= _MARGIN:
        return
    drv = bench.pumps[pump]
    flow = min(flow or bench.config.settings.aspirate_flow, drv.flow_max)
    route = bench.graph.route(source, bench.config.pump(pump).node)
    with motion(bench):
        bench.set_valves(route.valve_settings)
        drv.aspirate(volume, flow)
        wait_done(bench, drv, move_timeout(volume, flow, bench))
    ledger.draw(source, volume)
    bench.drawn[source] = bench.drawn.get(source, 0.0) + volume
    ledger.use(f"fill {pump} from {source}", route)


def empty(bench: Bench, pump: str, target: str, ledger: Ledger, flow: float | None = None) -> None:
    """Dispense the whole content of ``pump`` into ``target`` (e.g. a waste)."""
    drv = bench.pumps[pump]
    volume = drv.fill_level()
    if volume <= _MARGIN:
        return
    flow = min(flow or bench.config.settings.gas_flow, drv.flow_max)
    route = bench.graph.route(bench.config.pump(pump).node, target)
    with motion(bench):
        bench.set_valves(route.valve_settings)
        drv.dispense(volume, flow)
        wait_done(bench, drv, move_timeout(volume, flow, bench))
    ledger.use(f"empty {pump} to {target}", route)


def reserve(bench: Bench, pump: str) -> float:
    """Lowest usable fill level of ``pump`` in mL (``min_fill_fraction`` × V_max)."""
    return bench.config.syringe_of(pump).min_fill_fraction * bench.pumps[pump].volume_max


def usable(bench: Bench, pump: str) -> float:
    """Volume ``pump`` can still dispense before reaching its reserve, mL."""
    return max(0.0, bench.pumps[pump].fill_level() - reserve(bench, pump))


def push(bench: Bench, flows: Mapping[str, float], volume: float, routes: Mapping[str, Route],
         sources: Mapping[str, str], ledger: Ledger, purpose: str) -> float:
    """Dispense ``volume`` mL in total from several pumps at once, each at its own flow.

    Pump ``p`` delivers ``volume × flows[p] / Σ flows`` along ``routes[p]`` (all routes are
    set together, so they must agree on every shared valve). When a syringe would drop
    below its reserve, all pumps stop, the low ones refill from ``sources[p]`` and the push
    resumes: the merged stream keeps its ratio across strokes.

    Volumes are the volumes wanted: each pump is commanded wanted / its calibrated delivery
    factor (:func:`commanded_flows`), so a calibrated pump delivers what was asked.

    Returns:
        The volume pushed, mL.

    Raises:
        ValveConflictError: the routes need different positions of one valve.
        DeviceError, TransportTimeout: from the drivers (all pumps are stopped first).
    """
    total_flow = sum(flows.values())
    drive = commanded_flows(bench, flows)
    settings = merge_settings(routes.values())
    for pump in flows:
        ledger.use(f"{purpose}: {pump}", routes[pump])
    remaining = volume
    while remaining > _MARGIN:
        _refill_low(bench, drive, remaining / total_flow, sources, ledger)
        stroke = min(remaining / total_flow,
                     min(usable(bench, p) / f for p, f in drive.items()))
        if stroke <= 1e-9:
            raise DeviceError("bench", "cannot refill", f"{purpose}: a syringe cannot be refilled")
        with motion(bench):
            bench.set_valves(settings)
            for pump, flow in drive.items():
                bench.pumps[pump].dispense(flow * stroke, flow)
            for pump, flow in drive.items():
                wait_done(bench, bench.pumps[pump], move_timeout(flow * stroke, flow, bench))
        remaining -= stroke * total_flow
    return volume


def commanded_flows(bench: Bench, flows: Mapping[str, float]) -> dict[str, float]:
    """Flows to command so that each pump really delivers ``flows[p]`` mL/s: flow / factor,
    with ``bench.delivery_factors[p]`` the calibrated delivered/commanded ratio (default 1;
    see :mod:`asab.actions.calibration`)."""
    return {p: f / bench.delivery_factors.get(p, 1.0) for p, f in flows.items()}


def _refill_low(bench: Bench, flows: Mapping[str, float], duration: float,
                sources: Mapping[str, str], ledger: Ledger) -> None:
    """Refill every pump that cannot run ``duration`` s more above its reserve: aspirate up
    to reserve + need + 2 % of V_max (or as much as fits)."""
    for pump, flow in sorted(flows.items()):
        need = flow * duration
        if usable(bench, pump) + _MARGIN >= need:
            continue
        drv = bench.pumps[pump]
        fill_level = drv.fill_level()
        wanted = reserve(bench, pump) + need + 0.02 * drv.volume_max - fill_level
        fill(bench, pump, sources[pump], min(drv.volume_max - fill_level, wanted), ledger)
