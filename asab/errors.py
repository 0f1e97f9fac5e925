"""The asab exception taxonomy.

Every failure in library code is raised as one of these; servers and the command line map
them to HTTP statuses or exit codes in one place each.

    AsabError
    ├── ConfigError          bad or inconsistent configuration (carries every problem found)
    ├── TransportError       the byte/SDK channel failed
    │   └── TransportTimeout no (complete) answer within the timeout
    ├── DeviceError          the device rejected a command, is busy, or reports a fault
    │   ├── DeviceBusy
    │   └── DeviceFault
    ├── RoutingError         no physically possible route
    │   ├── NoRouteError     no path at all
    │   └── ValveConflictError  only paths that need two positions of one valve
    ├── FormulationError
    │   ├── NotMakeableError     request outside the makeable region (carries the closest)
    │   ├── BelowResolutionError a volume or flow below what a pump can deliver
    │   └── InsufficientStockError
    ├── RequestError         a job/request that is malformed
    └── BrokerError          FINALES2 client failures
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class AsabError(Exception):
    """Base class of every error raised by asab."""


@dataclass(frozen=True)
class Problem:
    """One configuration problem: where it is and why it is wrong.

    Attributes:
        file: file name (or logical source such as ``bench.toml``).
        row: line number in the file as an editor shows it (header = line 1), or ``None``
            when the problem is not bound to a line (e.g. a field of ``bench.toml``).
        reason: human-readable explanation.
    """

    file: str
    row: int | None
    reason: str

    def __str__(self) -> str:
        where = f"{self.file}" + (f", line {self.row}" if self.row is not None else "")
        return f"{where}: {self.reason}"


class ConfigError(AsabError):
    """Invalid configuration. ``problems`` lists every problem found, not just the first."""

    def __init__(self, problems: list[Problem] | str):
        if isinstance(problems, str):
            problems = [Problem("config", None, problems)]
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{len(self.problems)} configuration problem(s):\n{lines}")


class TransportError(AsabError):
    """The channel to a device failed (closed port, framing error, SDK call failed)."""

    def __init__(self, device: str, message: str):
        self.device = device
        super().__init__(f"{device}: {message}")


class TransportTimeout(TransportError):
    """No complete answer from ``device`` within the timeout."""


class DeviceError(AsabError):
    """A device rejected a command or reported a fault.

    Attributes:
        device: configured device name.
        cause: short machine-friendly cause (e.g. ``"overload"``, ``"invalid method"``).
    """

    def __init__(self, device: str, cause: str, message: str | None = None):
        self.device = device
        self.cause = cause
        super().__init__(f"{device}: {message or cause}")


class DeviceBusy(DeviceError):
    """The device is busy with another operation."""


class DeviceFault(DeviceError):
    """The device reports a fault state (overload, position not reached, ...)."""


class RoutingError(AsabError):
    """No physically possible route between two nodes."""


class NoRouteError(RoutingError):
    """There is no path at all from source to target (with the given via/avoid)."""


class ValveConflictError(RoutingError):
    """Paths exist, but every one needs two positions of at least one valve at once."""

    def __init__(self, message: str, valves: tuple[str, ...] = ()):
        self.valves = valves
        super().__init__(message)


class FormulationError(AsabError):
    """A composition cannot be formulated as asked."""


class NotMakeableError(FormulationError):
    """The requested composition lies outside the makeable region.

    Attributes:
        requested: requested mole fractions by chemical name.
        closest: the closest makeable mole fractions by chemical name.
        distance: Euclidean distance between the two in mole-fraction space.
    """

    def __init__(self, requested: dict[str, float], closest: dict[str, float], distance: float):
        self.requested = dict(requested)
        self.closest = dict(closest)
        self.distance = float(distance)
        fmt = ", ".join(f"{k}={v:.4f}" for k, v in self.closest.items())
        super().__init__(
            f"composition not makeable: closest makeable is {fmt} (distance {self.distance:.4g})"
        )


class BelowResolutionError(FormulationError):
    """A volume or flow is below what the pump can deliver."""


class InsufficientStockError(FormulationError):
    """A reservoir does not hold enough stock solution for the plan."""


class RequestError(AsabError):
    """A job or broker request is malformed (missing field, unknown chemical, bad number)."""


class BrokerError(AsabError):
    """The FINALES2 broker call failed."""

    def __init__(self, message: str, status: int | None = None, permanent: bool = False):
        self.status = status
        self.permanent = permanent
        super().__init__(message)


def describe(exc: BaseException) -> dict[str, Any]:
    """Return a JSON-ready description of an exception (type, message, device, cause)."""
    out: dict[str, Any] = {"type": type(exc).__name__, "message": str(exc)}
    for attr in ("device", "cause", "closest", "distance", "valves", "nodes"):
        if hasattr(exc, attr):
            out[attr] = getattr(exc, attr)
    return out
