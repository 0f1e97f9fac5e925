"""CETONI neMESYS pump and Qmix V valve drivers (one device each) over the QmixSDK.

Opened by :class:`asab.drivers.cetoni.CetoniBus`, which owns the bus and the start-up order.
Not yet checked on real hardware.
"""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any, TypeVar

from asab.clock import Clock, poll_until
from asab.config.models import Syringe
from asab.drivers.interlock import Interlock
from asab.retry import retrying
from asab.errors import (
    Cause,
    DeviceBusy,
    DeviceError,
    DeviceFault,
    TransportError,
    TransportTimeout,
    WaitTimeout,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")

BUS_DEVICE = "cetoni"
"""Device name used in errors about the bus itself."""

VOLUME_TOLERANCE = 1e-6
"""mL (1 nL) of slack on the capacity and fill-level checks, for float round-off."""

FLOW_TOLERANCE = 1e-9
"""Relative slack on the flow-range check, for float round-off."""

UNIT_CHECK_TOLERANCE = 1e-3
"""Relative agreement required between the SDK's V_max and the configured syringe volume."""

DOSE_TOLERANCE = 1e-4
"""mL (0.1 µL) of absolute slack when a dosed volume or fill level read back after a move is
compared with what was commanded; plus :data:`DOSE_RELATIVE_TOLERANCE` of the volume. The
neMESYS resolves nanolitres, so a larger difference means the plunger did not do what it was
told (design choice)."""

DOSE_RELATIVE_TOLERANCE = 1e-3
"""Relative slack (0.1 % of the commanded volume) on the dosed-volume check."""

QUERY_ATTEMPTS = 3
"""Attempts of a status query (fill level, pumping, fault state, valve position) before its
SDK failure is raised: reads change nothing, so repeating them is safe. Commands that move
something are never repeated."""

VALVE_SWITCH_TIMEOUT = 10.0
"""s to wait for a valve to reach a position. A Qmix V switch takes well under a second
(the stand-in uses 0.5 s); 10 s is asab's generous bound."""


def load_vendor_sdk(sdk_path: str = "") -> SimpleNamespace:
    """Import the vendor's wrapper: ``from qmixsdk import qmixbus, qmixpump, qmixvalve``.

    The wrapper ships inside the QmixSDK install folder, not on PyPI, so ``sdk_path`` (the
    folder that holds the ``qmixsdk`` package, ``CetoniSettings.sdk_path``) is put first on
    ``sys.path``. A ``qmixsdk`` already imported from another folder is dropped first, so the
    package imported is always the one in ``sdk_path``.

    Args:
        sdk_path: folder containing the ``qmixsdk`` package; empty: use ``sys.path`` as is.

    Returns:
        ``SimpleNamespace(qmixbus=..., qmixpump=..., qmixvalve=...)``.

    Raises:
        TransportError: ``sdk_path`` is not a folder, or the ``qmixsdk`` package (or its
            shared libraries) is not available.
    """
    if sdk_path:
        _use_sdk_folder(Path(sdk_path))
    try:
        from qmixsdk import qmixbus, qmixpump, qmixvalve  # type: ignore[import-not-found]
    except ImportError as exc:
        where = f" in {sdk_path}" if sdk_path else ""
        raise TransportError(
            BUS_DEVICE,
            f"the CETONI QmixSDK Python wrapper 'qmixsdk' is not installed{where} (it ships "
            "with the vendor's SDK, not on PyPI; set [cetoni] sdk_path to the folder that "
            f"holds it) or run a simulated bench ({exc})",
        ) from exc
    return SimpleNamespace(qmixbus=qmixbus, qmixpump=qmixpump, qmixvalve=qmixvalve)


def _use_sdk_folder(folder: Path) -> None:
    """Put ``folder`` first on ``sys.path``; forget a ``qmixsdk`` imported from elsewhere."""
    if not folder.is_dir():
        raise TransportError(BUS_DEVICE, f"[cetoni] sdk_path {folder} is not a folder")
    folder = folder.resolve()
    if str(folder) in sys.path:
        sys.path.remove(str(folder))
    sys.path.insert(0, str(folder))
    loaded = sys.modules.get("qmixsdk")
    origin = getattr(loaded, "__file__", None)
    if loaded is not None and (origin is None or folder not in Path(origin).resolve().parents):
        for name in [n for n in sys.modules if n == "qmixsdk" or n.startswith("qmixsdk.")]:
            del sys.modules[name]
        importlib.invalidate_caches()


class SdkGuard:
    """Calls into the SDK and turns its ``qmixbus.DeviceError`` into asab errors; motion
    commands pass the bench's :class:`~asab.drivers.interlock.Interlock` (:meth:`motion`)."""

    def __init__(self, sdk: Any, bus: Any, interlock: Interlock | None = None) -> None:
        self._error: type[BaseException] = sdk.qmixbus.DeviceError
        self._bus = bus
        self.interlock = interlock if interlock is not None else Interlock()

    def motion(self, device: str, fn: Callable[..., T], *args: Any) -> T:
        """Send a command that moves liquid or a valve: refused once the e-stop is latched,
        checked atomically with sending it.

        Raises:
            EmergencyStopped: the latch is set (nothing is sent).
            DeviceError: cause "sdk error".
        """
        with self.interlock.motion(device):
            return self.device(device, fn, *args)

    def device(self, device: str, fn: Callable[..., T], *args: Any) -> T:
        """Call ``fn(*args)``; an SDK failure becomes :class:`DeviceError` (cause "sdk error")."""
        try:
            return fn(*args)
        except self._error as exc:
            raise DeviceError(device, Cause.SDK_ERROR, self.describe(exc)) from exc

    def query(self, device: str, fn: Callable[..., T], *args: Any) -> T:
        """A read-only ``fn(*args)``, tried up to :data:`QUERY_ATTEMPTS` times.

        Raises:
            DeviceError: cause "sdk error" when every attempt failed.
        """
        def log_retry(attempt: int, exc: BaseException, _: float = 0.0) -> None:
            logger.warning("%s: status query failed (attempt %d): %s", device, attempt, exc)

        try:  # first try without the retry machinery (~40 µs a call): queries run every poll
            return fn(*args)
        except self._error as exc:
            log_retry(1, exc)
        policy = retrying(QUERY_ATTEMPTS - 1, lambda exc: isinstance(exc, self._error),
                          on_retry=lambda n, exc, _: log_retry(n + 1, exc))
        try:
            return policy(fn, *args)
        except self._error as exc:
            raise DeviceError(device, Cause.SDK_ERROR, self.describe(exc)) from exc

    def transport(self, fn: Callable[..., T], *args: Any) -> T:
        """Call a bus-level ``fn(*args)``; an SDK failure becomes :class:`TransportError`."""
        try:
            return fn(*args)
        except self._error as exc:
            raise TransportError(BUS_DEVICE, self.describe(exc)) from exc

    def describe(self, exc: BaseException) -> str:
        """The SDK's message, plus ``get_err_msg(code)`` when the error carries a code."""
        code = getattr(exc, "errorcode", None)
        if code is None:
            return str(exc)
        try:
            text = str(self._bus.get_err_msg(code))
        except Exception:  # noqa: BLE001 - the message is best effort
            text = ""
        if text and text not in str(exc):
            return f"{exc} (SDK error {code}: {text})"
        return f"{exc} (SDK error {code})"


class CetoniPump:
    """A neMESYS pump (implements :class:`asab.drivers.base.SyringePump`); mL, mL/s, s.

    Limits come from the configured :class:`~asab.config.models.Syringe`: V_max = A·stroke,
    drive flows A × 1.042 µm/s … A × 6.33 mm/s (device_protocols.md). The bus sets the SDK's
    units to :attr:`volume_unit` and :attr:`flow_unit` at open and checks them by reading
    V_max and the maximum flow back, so every number crossing the SDK is in mL or mL/s.

    After every move, :meth:`wait_until_done` reads the dosed volume and the fill level back
    and compares them with what was commanded.
    """

    volume_unit = "mL"
    """Unit of every volume this driver takes or returns (SDK: milli-litres)."""
    flow_unit = "mL/s"
    """Unit of every flow this driver takes or returns (SDK: milli-litres per second)."""

    def __init__(
        self,
        name: str,
        handle: Any,
        syringe: Syringe,
        clock: Clock,
        guard: SdkGuard,
        poll_interval: float,
    ) -> None:
        self.name = name
        self._handle = handle
        self._syringe = syringe
        self._clock = clock
        self._guard = guard
        self._poll = poll_interval
        self._move: tuple[float, float] | None = None  # (commanded mL, expected fill mL)

    @property
    def volume_max(self) -> float:
        """Syringe volume in mL."""
        return self._syringe.volume

    @property
    def flow_min(self) -> float:
        """Lowest drive flow in mL/s."""
        return self._syringe.min_flow

    @property
    def flow_max(self) -> float:
        """Highest drive flow in mL/s."""
        return self._syringe.max_flow

    def fill_level(self) -> float:
        """Syringe content in mL. Raises DeviceError if the SDK call fails (after retries)."""
        return float(self._guard.query(self.name, self._handle.get_fill_level))

    def dosed_volume(self) -> float:
        """mL moved by the current or last move (SDK ``get_dosed_volume``)."""
        return float(self._guard.query(self.name, self._handle.get_dosed_volume))

    def is_pumping(self) -> bool:
        return bool(self._guard.query(self.name, self._handle.is_pumping))

    def in_fault(self) -> bool:
        """True if the drive reports a fault state (a safe read, retried)."""
        return bool(self._guard.query(self.name, self._handle.is_in_fault_state))

    def clear_fault(self) -> None:
        """Clear a latched drive fault and enable the drive again; nothing moves.

        SDK ``clear_fault()`` then ``enable(True)``, as at bus start-up (device_protocols.md,
        CETONI start-up order); the fault state is read back afterwards.

        Raises:
            DeviceError: cause "sdk error" if the SDK refuses.
            DeviceFault: cause "drive fault" if the drive still reports a fault.
        """
        logger.warning("%s: clearing the drive fault and enabling the drive", self.name)
        self._move = None
        self._guard.device(self.name, self._handle.clear_fault)
        self._guard.device(self.name, self._handle.enable, True)
        if self.in_fault():
            raise DeviceFault(self.name, Cause.DRIVE_FAULT, "the drive still reports a fault "
                              "after clear_fault; check the drive and the line")

    def aspirate(self, volume: float, flow: float) -> None:
        """Start drawing ``volume`` mL at ``flow`` mL/s.

        Raises:
            DeviceError: cause "flow out of range" (outside [flow_min, flow_max]) or
                "volume out of range" (≤ 0, or fill + volume > volume_max); nothing moves.
            DeviceBusy: the pump is still moving.
            DeviceFault: cause "drive fault": the drive has a fault latched (clear it first).
        """
        self._check_flow(flow)
        self._check_positive(volume)
        fill = self._check_idle_fill()
        if fill + volume > self.volume_max + VOLUME_TOLERANCE:
            raise DeviceError(
                self.name,
                Cause.VOLUME_OUT_OF_RANGE,
                f"aspirating {volume:g} mL onto {fill:g} mL exceeds the "
                f"{self.volume_max:g} mL syringe",
            )
        logger.debug("%s: aspirate %g mL at %g mL/s", self.name, volume, flow)
        self._move = None
        self._guard.motion(self.name, self._handle.aspirate, volume, flow)
        self._move = (volume, fill + volume)

    def dispense(self, volume: float, flow: float) -> None:
        """Start pushing ``volume`` mL at ``flow`` mL/s.

        Raises:
            DeviceError: cause "flow out of range" or "volume out of range" (≤ 0, or more
                than the fill level); nothing moves.
            DeviceBusy: the pump is still moving.
            DeviceFault: cause "drive fault": the drive has a fault latched (clear it first).
        """
        self._check_flow(flow)
        self._check_positive(volume)
        fill = self._check_idle_fill()
        if volume > fill + VOLUME_TOLERANCE:
            raise DeviceError(
                self.name, Cause.VOLUME_OUT_OF_RANGE, f"cannot dispense {volume:g} mL from {fill:g} mL"
            )
        logger.debug("%s: dispense %g mL at %g mL/s", self.name, volume, flow)
        self._move = None
        self._guard.motion(self.name, self._handle.dispense, volume, flow)
        self._move = (volume, fill - volume)

    def generate_flow(self, flow: float) -> None:
        """Start a continuous flow of ``flow`` mL/s (negative = aspirate) until :meth:`stop`.

        The drive stops by itself when the syringe is full or empty.

        Raises:
            DeviceError: cause "flow out of range" (``|flow|`` outside the drive limits) or
                "volume out of range" (nothing left to dispense or no room to aspirate).
            DeviceBusy: the pump is still moving.
            DeviceFault: cause "drive fault": the drive has a fault latched (clear it first).
        """
        self._check_flow(abs(flow))
        fill = self._check_idle_fill()
        room = self.volume_max - fill if flow < 0 else fill
        if room <= VOLUME_TOLERANCE:
            what = "full" if flow < 0 else "empty"
            raise DeviceError(self.name, Cause.VOLUME_OUT_OF_RANGE, f"syringe is {what}")
        logger.debug("%s: continuous flow %g mL/s", self.name, flow)
        self._move = None
        self._guard.motion(self.name, self._handle.generate_flow, flow)

    def stop(self) -> None:
        """Stop the plunger now (idempotent). Raises DeviceError if the SDK call fails."""
        self._move = None
        self._guard.device(self.name, self._handle.stop_pumping)

    def wait_until_done(self, timeout: float) -> None:
        """Poll ``is_pumping()`` every ``poll_interval`` s of clock time until the move ends.

        Raises:
            TransportTimeout: still pumping after ``timeout`` s (the pump is stopped first).
            DeviceFault: the drive reports a fault (the pump is stopped first); cause
                "dosed volume mismatch" or "fill level mismatch" when the volume read back
                after the move differs from the commanded one by more than
                :data:`DOSE_TOLERANCE` + :data:`DOSE_RELATIVE_TOLERANCE` × volume.
        """
        try:
            poll_until(self._clock, self._move_ended, timeout, "the end of the move",
                       self._poll, device=self.name)
        except WaitTimeout as exc:
            self.stop()
            raise TransportTimeout(
                self.name, f"still pumping after {timeout:g} s; pump stopped"
            ) from exc
        self._verify_move()

    def _move_ended(self) -> bool:
        """True once the plunger stands; a drive fault stops the pump and raises DeviceFault."""
        if self.in_fault():
            self._stop_quietly()
            raise DeviceFault(self.name, Cause.DRIVE_FAULT, "pump drive reports a fault state")
        return not self.is_pumping()

    # -- checks -----------------------------------------------------------------------
    def _verify_move(self) -> None:
        """Compare dosed volume and fill level read back with the last commanded move."""
        if self._move is None:
            return
        volume, expected_fill = self._move
        self._move = None
        tolerance = DOSE_TOLERANCE + DOSE_RELATIVE_TOLERANCE * volume
        dosed, fill = self.dosed_volume(), self.fill_level()
        if abs(dosed - volume) > tolerance:
            raise DeviceFault(self.name, Cause.DOSED_VOLUME_MISMATCH,
                              f"commanded {volume:.4f} mL, the pump dosed {dosed:.4f} mL")
        if abs(fill - expected_fill) > tolerance:
            raise DeviceFault(self.name, Cause.FILL_LEVEL_MISMATCH,
                              f"expected {expected_fill:.4f} mL in the syringe, read {fill:.4f} mL")

    def _check_flow(self, flow: float) -> None:
        lo, hi = self.flow_min * (1 - FLOW_TOLERANCE), self.flow_max * (1 + FLOW_TOLERANCE)
        if not lo <= flow <= hi:
            raise DeviceError(
                self.name,
                Cause.FLOW_OUT_OF_RANGE,
                f"flow {flow:g} mL/s outside [{self.flow_min:g}, {self.flow_max:g}] mL/s",
            )

    def _check_positive(self, volume: float) -> None:
        if not volume > 0:
            raise DeviceError(self.name, Cause.VOLUME_OUT_OF_RANGE, f"volume {volume:g} mL must be > 0")

    def _check_idle_fill(self) -> float:
        """Before a move: no drive fault latched, not moving; returns the fill level (mL)."""
        if self.in_fault():
            raise DeviceFault(self.name, Cause.DRIVE_FAULT, "the drive has a fault latched; "
                              "check the line, then clear the fault before moving")
        if self.is_pumping():
            raise DeviceBusy(self.name, Cause.BUSY, "pump is still moving")
        return self.fill_level()

    def _stop_quietly(self) -> None:
        try:
            self.stop()
        except DeviceError as exc:
            logger.error("%s: could not stop the pump: %s", self.name, exc)


class CetoniValve:
    """A Qmix V valve (implements :class:`asab.drivers.base.SelectorValve`); 0-based positions."""

    def __init__(
        self,
        name: str,
        handle: Any,
        position_count: int,
        clock: Clock,
        guard: SdkGuard,
        poll_interval: float,
        switch_timeout: float = VALVE_SWITCH_TIMEOUT,
    ) -> None:
        self.name = name
        self._handle = handle
        self._count = position_count
        self._clock = clock
        self._guard = guard
        self._poll = poll_interval
        self._timeout = switch_timeout

    @property
    def position_count(self) -> int:
        """Number of logical positions (0 … n−1), as the SDK reported at open."""
        return self._count

    def position(self) -> int:
        """Current logical position. Raises DeviceError if the SDK call fails (after retries)."""
        return int(self._guard.query(self.name, self._handle.actual_valve_position))

    def switch(self, position: int) -> None:
        """Switch to ``position`` and wait (polled on the clock) until the valve reports it.

        Raises:
            DeviceError: cause "position out of range" (nothing switched).
            DeviceFault: cause "valve did not reach position" within the switch timeout.
        """
        if not 0 <= position < self._count:
            raise DeviceError(
                self.name,
                Cause.POSITION_OUT_OF_RANGE,
                f"position {position} not in 0…{self._count - 1}",
            )
        logger.debug("%s: switch to %d", self.name, position)
        self._guard.motion(self.name, self._handle.switch_valve_to_position, position)
        actual = [position]

        def reached() -> bool:
            actual[0] = self.position()
            return actual[0] == position

        try:
            poll_until(self._clock, reached, self._timeout, f"position {position}", self._poll,
                       device=self.name)
        except WaitTimeout as exc:
            raise DeviceFault(
                self.name,
                Cause.VALVE_NOT_IN_POSITION,
                f"asked for {position}, still at {actual[0]} after {self._timeout:g} s",
            ) from exc
