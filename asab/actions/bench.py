"""The :class:`Bench`: driver instances + tubing graph + clock + lock, passed to every action."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any, Self

from asab.clock import Clock
from asab.config import BenchConfig
from asab.drivers.base import (
    Balance,
    DensityViscosityMeter,
    PumpBus,
    SelectorValve,
    SyringePump,
)
from asab.drivers.interlock import EmergencyStopped, Interlock

__all__ = ["Bench", "EmergencyStopped", "OperationCancelled", "open_bench"]
from asab.errors import AsabError, Cause, DeviceError
from asab.ledger.model import LedgerChange, VesselKind
from asab.ledger.store import LedgerStore
from asab.tubing import TubingGraph

log = logging.getLogger(__name__)


class OperationCancelled(AsabError):
    """A long action was cancelled (``bench.cancel`` set); its pumps were stopped."""


_owner = threading.local()


class BenchLock:
    """The bench lock: reentrant, owned by one thread — or by one group of threads, the tasks
    of a pipelined run (:func:`owned_by`), which the scheduler keeps off each other's
    resources. Same interface as :class:`threading.RLock` (``acquire``, ``release``, ``with``)."""

    def __init__(self) -> None:
        self._cv = threading.Condition(threading.Lock())
        self._holder: object | None = None
        self._count = 0

    @staticmethod
    def _me() -> object:
        return getattr(_owner, "key", None) or threading.get_ident()

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        me = self._me()
        with self._cv:
            if self._holder is not None and self._holder != me:
                if not blocking:
                    return False
                wait = None if timeout is None or timeout < 0 else timeout
                if not self._cv.wait_for(lambda: self._holder is None, wait):
                    return False
            self._holder = me
            self._count += 1
            return True

    def release(self) -> None:
        with self._cv:
            if self._holder != self._me() or self._count == 0:
                raise RuntimeError("release of a bench lock not held")
            self._count -= 1
            if self._count == 0:
                self._holder = None
                self._cv.notify_all()

    def __enter__(self) -> Self:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def owned_by(key: object | None) -> None:
    """Make the calling thread hold the bench lock as ``key`` (a pipelined run's tasks share
    one key); ``None``: as itself again."""
    _owner.key = key


@dataclass
class Bench:
    """Everything an action needs, explicit (no globals).

    Attributes:
        config: the bench configuration.
        graph: tubing graph for routing.
        clock: every wait goes through it.
        bus: owner of pumps and valves (``stop_all``).
        pumps: pump name → driver.
        valves: valve name → driver (only valves that have a driver).
        balance: balance driver, if configured.
        densimeter: densimeter/viscometer driver, if configured.
        lock: held by an action while it moves liquid.
        ledger: the bench ledger's store (what every vessel, syringe and line holds); the
            planner reads it, the executor updates it after every step.
        cancel: cancel token of the action that holds the bench; set it (then call
            :meth:`stop_all`) to make that action stop at its next :meth:`checkpoint`.
        estop: reason of the latched emergency stop (``None`` when not latched); the latch
            is the bus's :class:`~asab.drivers.interlock.Interlock`, which every motion
            command passes atomically.
        delivery_factors: pump → calibrated delivered/commanded volume ratio (absent = 1);
            :func:`asab.actions.fluidics.push` commands wanted / factor
            (:mod:`asab.actions.calibration`).
        task_check: during a pipelined run, called by :meth:`checkpoint`; raises
            :class:`OperationCancelled` in a task the scheduler stopped
            (:mod:`asab.actions.pipeline`).
    """

    config: BenchConfig
    graph: TubingGraph
    clock: Clock
    bus: PumpBus
    pumps: dict[str, SyringePump]
    valves: dict[str, SelectorValve]
    balance: Balance | None = None
    densimeter: DensityViscosityMeter | None = None
    lock: BenchLock = field(default_factory=BenchLock)
    cancel: threading.Event = field(default_factory=threading.Event)
    delivery_factors: dict[str, float] = field(default_factory=dict)
    ledger: LedgerStore | None = None
    task_check: Any = None

    def __post_init__(self) -> None:
        if self.ledger is None:  # no state folder: a ledger in memory
            self.ledger = LedgerStore(None, self.config)

    @property
    def out_of_service(self) -> str | None:
        """Why the bench refuses further wet work (``None`` when fine); kept in the ledger,
        so a restarted process knows it too."""
        return self.ledger.current().out_of_service

    @out_of_service.setter
    def out_of_service(self, reason: str | None) -> None:
        if reason == self.out_of_service:
            return

        def change(ledger) -> None:
            ledger.out_of_service = reason
            ledger.note(LedgerChange.SERVICE, self.config.name,
                        f"out of service: {reason}" if reason else "back in service")
        self.ledger.update(change)

    @property
    def primed(self) -> set[str]:
        """Pumps whose reservoir (or solvent) line holds its liquid, from the ledger."""
        from asab.plan.builder import PlanBuilder

        b = PlanBuilder(self.config, self.graph, self.ledger.current())
        sources = {st.pump: st.reservoir for st in self.config.stocks}
        s = self.config.settings
        if s.solvent_pump:
            sources.setdefault(s.solvent_pump, s.solvent_node)
        return {p for p, src in sources.items() if p in self.pumps and b.primed(p, src)}

    @property
    def drawn(self) -> dict[str, float]:
        """Reservoir or solvent node → mL drawn since it was last full, from the ledger."""
        out = {}
        for node, v in self.ledger.current().vessels.items():
            if (v.kind in (VesselKind.STOCK, VesselKind.SOLVENT) and v.capacity
                    and v.capacity - v.volume > 1e-9):
                out[node] = v.capacity - v.volume
        return out

    def forget_lines(self) -> None:
        """Mark every line's content unknown in the ledger (after an intervention or a
        failure: every pump is primed again, every mixing line counts as dry)."""
        from asab.plan.effects import Edges, forget_lines

        self.ledger.update(lambda ledger: forget_lines(ledger, Edges.of(self.config)))

    @property
    def interlock(self) -> Interlock:
        """The e-stop latch of the bus (checked by the drivers with every motion command)."""
        return self.bus.interlock

    @property
    def estop(self) -> str | None:
        """Reason of the latched emergency stop, ``None`` when motion is allowed."""
        return self.interlock.reason

    @estop.setter
    def estop(self, reason: str | None) -> None:
        if reason is None:
            self.interlock.release()
        else:
            self.interlock.latch(reason)

    def checkpoint(self) -> None:
        """Cooperative cancel point, called by every motion before and after it moves.

        Raises:
            EmergencyStopped: the emergency stop is latched.
            OperationCancelled: ``cancel`` is set.
        """
        if self.estop is not None:
            raise EmergencyStopped(self.estop)
        if self.cancel.is_set():
            raise OperationCancelled("operation cancelled; pumps stopped")
        if self.task_check is not None:
            self.task_check()

    def emergency_stop(self, reason: str = "emergency stop") -> None:
        """Stop every pump, latch the emergency stop, stop every pump again.

        Never waits for the bench lock. The first stop is at once; latching waits at most for
        one motion command being sent (:class:`~asab.drivers.interlock.Interlock`); the second
        stop catches a move sent just before the latch. When this returns, no motion command
        is sent until :meth:`reset_estop`.
        """
        self.stop_all()
        self.interlock.latch(reason)
        log.warning("EMERGENCY STOP: %s", reason)
        self.stop_all()

    def reset_estop(self) -> None:
        """Release the emergency-stop latch (pumps stay stopped)."""
        self.interlock.release()

    def reset_faults(self) -> str:
        """Clear latched pump drive faults and put the bench back in service if it is safe.

        See :func:`asab.actions.safety.reset_faults` (returns what was done; raises
        ``EmergencyStopped``, ``DeviceBusy`` or ``SafetyError``, the bench then stays out of
        service).
        """
        from asab.actions.safety import reset_faults  # safety builds on this module

        return reset_faults(self)

    def stop_all(self) -> None:
        """Stop every pump now; never raises (logs instead), safe in ``finally`` blocks."""
        try:
            self.bus.stop_all()
        except Exception:
            log.exception("stop_all failed; stopping pumps one by one")
            for pump in self.pumps.values():
                try:
                    pump.stop()
                except Exception:
                    log.exception("could not stop pump %s", pump.name)

    def set_valves(self, settings: dict[str, int]) -> None:
        """Switch valves to ``settings`` (valve name → position), skipping those already there.

        Raises:
            DeviceError: a valve in ``settings`` has no driver (e.g. the solenoid valve).
            DeviceFault: a valve did not reach its position.
        """
        for name, position in sorted(settings.items()):
            valve = self.valves.get(name)
            if valve is None:
                raise DeviceError(name, Cause.NO_DRIVER, f"valve {name} has no driver; cannot set it")
            if valve.position() != position:
                valve.switch(position)

    def close(self) -> None:
        """Stop pumps, close the bus, then the balance's and densimeter's ports (if any)."""
        self.stop_all()
        try:
            self.bus.close()
        finally:
            for device in (self.balance, self.densimeter):
                close = getattr(device, "close", None)
                if close is None:
                    continue
                try:
                    close()
                except Exception:
                    log.exception("could not close %s", getattr(device, "name", device))


def open_bench(config: BenchConfig, clock: Clock, *, cetoni_sdk: Any = None,
               ledger: LedgerStore | None = None) -> Bench:
    """Open every configured device in the documented order and return the :class:`Bench`.

    Args:
        config: the bench configuration (device endpoints included).
        clock: the clock every wait uses.
        cetoni_sdk: an object with ``qmixbus``, ``qmixpump``, ``qmixvalve`` attributes; when
            ``None`` the vendor's ``qmixsdk`` package is imported.
        ledger: the bench ledger's store (default: one in memory).

    Raises:
        TransportError, DeviceError, ConfigError: a device could not be opened.
    """
    from asab.drivers import open_densimeter
    from asab.drivers.cetoni import CetoniBus
    from asab.drivers.sartorius import SartoriusEntrisII

    graph = TubingGraph.from_config(config)
    bus = CetoniBus.open(config, clock, sdk=cetoni_sdk)
    balance = SartoriusEntrisII(config.balance, clock) if config.balance else None
    densimeter = (open_densimeter(config.densimeter, clock,
                                  poll_interval=config.settings.poll_interval)
                  if config.densimeter else None)
    return Bench(
        config=config, graph=graph, clock=clock, bus=bus, pumps=dict(bus.pumps),
        valves=dict(bus.valves), balance=balance, densimeter=densimeter, ledger=ledger,
    )
