"""Making the bench safe after a failure: pumps confirmed stopped, reservoirs closed off.

The rule (used by :func:`asab.actions.job.recover` after every failed job):

1. every pump is stopped (``bus.stop_all`` and, if that fails, one by one) and each pump's
   ``is_pumping()`` and ``in_fault()`` are read back — a pump that still moves, whose drive
   has a fault latched, or that cannot be read leaves the bench unsafe. A latched drive fault
   (e.g. a plunger overload) usually means a blocked line or a closed route: the bench is
   taken out of service on purpose, so that an unattended bench does not push against it
   again; an operator checks the line and calls :func:`reset_faults`;
2. the valve positions are read back and every valve that connects a *source* (a stock
   reservoir or the solvent bottle) past its own port is turned to its parking position
   (:func:`asab.tubing.parking_positions`: a blind port where there is one);
3. the positions are read back again and :func:`asab.tubing.joins` must find no source joined
   to a *sink* (a waste node) through open channels; a valve without a driver or whose position
   cannot be read counts as open on every channel.

While the emergency stop is latched (``bench.estop``) step 2 moves nothing; step 3 still
checks the valves as they are.

Anything that fails in these steps is collected and raised together as one
:class:`SafetyError`; the caller marks the bench out of service. Only reads are repeated
(the drivers retry status queries a bounded number of times); moves are never retried.

:func:`reset_faults` is the operator's way back into service: it clears the latched drive
faults (SDK ``clear_fault`` + enable), runs the rule again and lifts ``out_of_service`` only
when every step passes.
"""

from __future__ import annotations

import logging

from asab.actions.bench import Bench, EmergencyStopped
from asab.errors import AsabError, Cause, DeviceBusy, DeviceError
from asab.tubing import joins, parking_positions

log = logging.getLogger(__name__)


class SafetyError(DeviceError):
    """The bench could not be brought into a safe state (cause ``"unsafe"``).

    Attributes:
        problems: one line per thing that failed.
    """

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("bench", Cause.UNSAFE, "; ".join(self.problems))


def sources(bench: Bench) -> list[str]:
    """Nodes whose liquid must stay put: every stock reservoir and the solvent bottle."""
    cfg = bench.config
    return sorted({s.reservoir for s in cfg.stocks} | {cfg.settings.solvent_node})


def sinks(bench: Bench) -> list[str]:
    """Nodes no source may be joined to: the waste nodes (the balance vessel among them)."""
    return sorted(bench.config.settings.waste_nodes)


def read_positions(bench: Bench, problems: list[str] | None = None) -> dict[str, int]:
    """Valve name → position read back from each valve driver.

    Valves whose position cannot be read are left out (then count as open on every channel)
    and noted in ``problems`` when given.
    """
    out: dict[str, int] = {}
    for name, valve in sorted(bench.valves.items()):
        try:
            out[name] = valve.position()
        except AsabError as exc:
            log.error("cannot read the position of valve %s: %s", name, exc)
            if problems is not None:
                problems.append(f"valve {name}: position unreadable ({exc})")
    return out


DRIVE_FAULT_ADVICE = "drive fault latched: check the line, then clear it"
"""Problem text for a pump whose drive reports a fault after the stop (see the module rule)."""


def confirm_stopped(bench: Bench) -> list[str]:
    """Stop every pump and read back that none moves and none has a drive fault latched.

    Returns:
        The problems found, one line each, e.g. ``"pump D0.0: drive fault latched: check the
        line, then clear it"``; ``[]`` when every pump is stopped and fault-free.
    """
    bench.stop_all()
    problems = []
    for name, pump in sorted(bench.pumps.items()):
        try:
            if pump.is_pumping():
                problems.append(f"pump {name} still moving after stop")
            if pump.in_fault():
                problems.append(f"pump {name}: {DRIVE_FAULT_ADVICE}")
        except AsabError as exc:
            problems.append(f"pump {name}: cannot confirm it stopped ({exc})")
    return problems


def park_valves(bench: Bench) -> dict[str, int]:
    """Turn every valve that connects a source past its port to its parking position.

    Returns:
        valve name → position for the valves moved.

    Raises:
        SafetyError: a valve has no driver, did not reach its parking position, or a source is
            still joined to a sink afterwards.
    """
    problems: list[str] = []
    positions = read_positions(bench, problems)
    moves = parking_positions(bench.graph, positions, sources(bench), sinks(bench))
    for name, position in sorted(moves.items()):
        valve = bench.valves.get(name)
        try:
            if valve is None:
                raise DeviceError(name, Cause.NO_DRIVER, f"valve {name} has no driver")
            valve.switch(position)
        except AsabError as exc:
            problems.append(f"valve {name}: cannot park at position {position} ({exc})")
    joined = joins(bench.graph, read_positions(bench), sources(bench), sinks(bench))
    problems += [f"{src} joined to {sink} through open valves" for src, sink in joined]
    if problems:
        raise SafetyError(problems)
    return moves


def make_safe(bench: Bench) -> str:
    """Steps 1–3 of the module rule.

    Returns:
        What was done, e.g. ``"pumps stopped; valves parked: V1→2, V6→2"``.

    Raises:
        SafetyError: listing every step that failed.
    """
    problems = confirm_stopped(bench)
    moved: dict[str, int] = {}
    estop = getattr(bench, "estop", None)
    if estop is not None:  # nothing may move: only check what the valves join
        joined = joins(bench.graph, read_positions(bench, problems), sources(bench), sinks(bench))
        problems += [f"{src} joined to {sink} through open valves" for src, sink in joined]
    else:
        try:
            moved = park_valves(bench)
        except SafetyError as exc:
            problems += exc.problems
    if problems:
        raise SafetyError(problems)
    if estop is not None:
        return "pumps stopped; emergency stop latched: valves not moved"
    parked = ", ".join(f"{k}→{v}" for k, v in sorted(moved.items())) or "none needed"
    return f"pumps stopped; valves parked: {parked}"


RESET_LOCK_TIMEOUT = 5.0
"""s :func:`reset_faults` waits for the bench lock (held by an action moving liquid) before it
gives up; a reset is an operator's action on an idle bench (design choice)."""


def reset_faults(bench: Bench) -> str:
    """Put the bench back in service after an operator has dealt with the cause.

    Clears the drive fault of every pump that reports one (``pump.clear_fault()``: SDK
    ``clear_fault`` then enable, nothing moves), then runs :func:`make_safe` again. Only when
    all of that passes is ``bench.out_of_service`` lifted. The lines' content is unknown after
    an intervention, so every pump counts as unprimed and every mixing line as dry.

    Returns:
        What was done, e.g. ``"drive faults cleared: D0.0; pumps stopped; valves parked:
        none needed"``.

    Raises:
        EmergencyStopped: the emergency stop is latched (reset it first); nothing was done.
        DeviceBusy: an action holds the bench for more than :data:`RESET_LOCK_TIMEOUT` s.
        SafetyError: a fault could not be cleared or the bench is still unsafe; the bench
            stays (or is put) out of service with these problems as the reason.
    """
    if bench.estop is not None:
        raise EmergencyStopped(bench.estop)
    if not bench.lock.acquire(timeout=RESET_LOCK_TIMEOUT):
        raise DeviceBusy("bench", Cause.BUSY, "an action holds the bench; reset refused")
    try:
        return _reset_locked(bench)
    finally:
        bench.lock.release()


def _reset_locked(bench: Bench) -> str:
    problems: list[str] = []
    cleared = []
    for name, pump in sorted(bench.pumps.items()):
        try:
            if pump.in_fault():
                pump.clear_fault()
                cleared.append(name)
        except AsabError as exc:
            problems.append(f"pump {name}: cannot clear its drive fault ({exc})")
    bench.forget_lines()
    done = f"drive faults cleared: {', '.join(cleared) or 'none'}"
    try:
        done += "; " + make_safe(bench)
    except SafetyError as exc:
        problems += exc.problems
    if problems:
        bench.out_of_service = "reset failed: " + "; ".join(problems)
        log.error("bench stays out of service: %s", bench.out_of_service)
        raise SafetyError(problems)
    if bench.out_of_service is not None:
        log.warning("bench back in service (was: %s): %s", bench.out_of_service, done)
    bench.out_of_service = None
    return done


def conclude_recovery(bench: Bench, done: str, problems: list[str]) -> str:
    """Last step of every recovery after a failed job: :func:`make_safe`, then — if it or any
    earlier step of the recovery (``problems``) failed — stop every pump and mark the bench
    out of service.

    Args:
        bench: the bench the job failed on.
        done: what the recovery did so far (e.g. "cell and lines drained and cleaned").
        problems: what went wrong so far (extended in place).

    Returns:
        ``done`` plus what :func:`make_safe` did, or the out-of-service reason.
    """
    try:
        done += "; " + make_safe(bench)
    except SafetyError as exc:
        problems += exc.problems
    except Exception as exc:  # noqa: BLE001 - an unexpected failure is unsafe too
        problems.append(f"making the bench safe: {exc!r}")
    return settle(bench, done, problems)


def settle(bench: Bench, done: str, problems: list[str]) -> str:
    """End of a recovery whose bench was made safe (or not): with no ``problems`` return
    ``done``; otherwise stop every pump, mark the bench out of service and return why."""
    if not problems:
        return done
    bench.stop_all()
    if bench.estop is not None:  # nothing could move: say so, not "recovery failed"
        bench.out_of_service = (
            f"emergency stop ({bench.estop}) during a job: the lines were not drained or "
            "cleaned; reset the e-stop, drain and clean them, then reset the bench")
        log.error("bench out of service: %s", bench.out_of_service)
        return bench.out_of_service
    bench.out_of_service = "recovery failed: " + "; ".join(problems)
    log.error("bench out of service: %s", bench.out_of_service)
    return bench.out_of_service
