"""Capability protocols per device kind and the records drivers return.

Actions depend on these protocols only; one class per instrument model implements them
(``asab.drivers.cetoni``, ``asab.drivers.sartorius``, ``asab.drivers.antonpaar``).
Canonical units: mL, mL/s, g, s, K, g/cm³, mPa·s.
"""

from __future__ import annotations

import logging

from typing import Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from asab.drivers.interlock import Interlock


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


@runtime_checkable
class SyringePump(Protocol):
    """A syringe pump. Motion calls start the move and return; use :meth:`wait_until_done`."""

    name: str

    @property
    def volume_max(self) -> float:
        """Syringe volume in mL."""

    @property
    def flow_min(self) -> float:
        """Lowest flow the drive can deliver, mL/s."""

    @property
    def flow_max(self) -> float:
        """Highest flow the drive can deliver, mL/s."""

    def fill_level(self) -> float:
        """Current syringe content in mL."""

    def is_pumping(self) -> bool: ...

    def aspirate(self, volume: float, flow: float) -> None:
        """Start drawing ``volume`` mL at ``flow`` mL/s.

        Raises:
            DeviceError: volume beyond capacity or flow outside the drive limits (nothing moves).
        """

    def dispense(self, volume: float, flow: float) -> None:
        """Start pushing ``volume`` mL at ``flow`` mL/s (same checks as :meth:`aspirate`)."""

    def stop(self) -> None:
        """Stop the plunger now (idempotent)."""

    def in_fault(self) -> bool:
        """True while the drive has a fault latched (a safe status read)."""

    def clear_fault(self) -> None:
        """Clear a latched drive fault and re-enable the drive (operator action).

        Raises:
            DeviceFault: the drive still reports a fault afterwards.
        """

    def wait_until_done(self, timeout: float) -> None:
        """Poll until the move has finished.

        Raises:
            TransportTimeout: still pumping after ``timeout`` s (the pump is stopped first).
            DeviceFault: the drive reports a fault (the pump is stopped).
        """


@runtime_checkable
class SelectorValve(Protocol):
    """A valve joining its common port to one position at a time (0-based positions)."""

    name: str

    @property
    def position_count(self) -> int: ...

    def position(self) -> int: ...

    def switch(self, position: int) -> None:
        """Switch and verify by reading the position back.

        Raises:
            DeviceError: position out of range.
            DeviceFault: the read-back position differs (valve did not reach it).
        """


class PumpBus(Protocol):
    """The bus that owns a set of pumps and valves (CETONI: the Qmix bus).

    ``interlock`` is the e-stop latch its drivers check atomically with every motion command
    (:class:`asab.drivers.interlock.Interlock`).
    """

    interlock: Interlock

    def stop_all(self) -> None:
        """Stop every pump on the bus at once."""

    def close(self) -> None: ...


class BalanceReading(_Record):
    """One value read from a balance."""

    value: float = Field(description="mass in g")
    unit: str = Field(description="unit as printed by the balance, e.g. 'g'")
    stable: bool
    raw: str = Field(default="", description="the line as received")


@runtime_checkable
class Balance(Protocol):
    name: str

    def read(self, stable: bool = True, timeout: float | None = None) -> BalanceReading:
        """Read one value (in g); with ``stable`` wait for a stable one.

        Raises:
            TransportTimeout: no (stable) value within ``timeout`` s.
            DeviceFault: the balance reports a status (overload, underload, error).
        """

    def tare(self) -> None: ...

    def zero(self) -> None: ...


class RepetitionResult(_Record):
    """Values of one measuring repetition. ``None`` means no value (``---``)."""

    repetition: int = Field(ge=1)
    density: float | None = Field(description="g/cm³")
    density_valid: bool
    density_condition: str
    density_temperature: float | None = Field(description="K")
    viscosity: float | None = Field(description="dynamic viscosity in mPa·s")
    viscosity_valid: bool
    viscosity_condition: str
    viscosity_temperature: float | None = Field(description="K")


class DensityViscosityResult(_Record):
    """What the densimeter/viscometer exported for one sample."""

    sample: str
    method: str
    repetitions: list[RepetitionResult]
    raw_file: str = Field(description="path of the instrument's export file")
    raw_text: str = Field(description="the export file's content, verbatim")


@runtime_checkable
class DensityViscosityMeter(Protocol):
    name: str

    def measure(self, sample: str, timeout: float | None = None) -> DensityViscosityResult:
        """Start a measurement of what is in the cell and return its parsed results.

        Raises:
            TransportTimeout: no complete export within ``timeout`` s.
            DeviceError: the instrument refused the job.
        """


def confirm_temperature(rep: RepetitionResult, set_point: float, tolerance: float,
                        device: str = "densimeter") -> RepetitionResult:
    """``rep`` unchanged when its cell temperature is within ``tolerance`` K of ``set_point``
    K; otherwise a copy with both values invalid and the reason appended to the conditions.

    Used by every density/viscosity driver: a value measured off the set point (or without a
    reported cell temperature) is not a value at the requested temperature.
    """
    t = rep.density_temperature
    if t is not None and abs(t - set_point) <= tolerance:
        return rep
    note = (f"cell at {t:.3f} K" if t is not None else "no cell temperature") + \
        f", set point {set_point:.3f} K ± {tolerance:g} K not confirmed"
    logging.getLogger(__name__).warning("%s: repetition %d: %s", device, rep.repetition, note)
    return rep.model_copy(update={
        "density_valid": False, "viscosity_valid": False,
        "density_condition": f"{rep.density_condition} ({note})",
        "viscosity_condition": f"{rep.viscosity_condition} ({note})"})
