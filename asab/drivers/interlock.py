"""The emergency-stop latch, checked atomically with every motion command.

Every command that moves liquid or a valve (a pump's aspirate, dispense or continuous flow,
a drive's calibration, a valve switch) is issued through :meth:`Interlock.motion`: the latch
is checked and the command is sent while one lock is held. :meth:`Interlock.latch` takes the
same lock to set the latch. So the order of "latched" and every command is total: a command
either was sent before the latch (and the e-stop's ``stop_all`` after latching stops it) or
is refused with :class:`EmergencyStopped`. Once :meth:`Interlock.latch` has returned, no new
motion command reaches a device. Stopping is never gated: ``stop``/``stop_all`` go straight
to the devices, before and after the latch.

The lock is held only while a command is *sent* (one SDK call, milliseconds), never while a
move runs or a valve's position is polled, so latching waits at most for one command.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from asab.errors import Cause, DeviceError

log = logging.getLogger(__name__)


class EmergencyStopped(DeviceError):
    """The emergency stop is latched: every motion is refused until it is released."""

    def __init__(self, reason: str):
        super().__init__("bench", Cause.EMERGENCY_STOP,
                         f"emergency stop active ({reason}); reset it before moving liquid")


class Interlock:
    """The latch and the gate of every motion command of one bench (thread-safe)."""

    def __init__(self) -> None:
        self._gate = threading.Lock()
        self._reason: str | None = None

    @property
    def reason(self) -> str | None:
        """Why the latch is set, or ``None`` when motion is allowed."""
        return self._reason

    @contextmanager
    def motion(self, device: str) -> Iterator[None]:
        """Hold the gate while one motion command for ``device`` is sent.

        Raises:
            EmergencyStopped: the latch is set; the command must not be sent.
        """
        with self._gate:
            if self._reason is not None:
                log.warning("%s: motion refused, emergency stop latched (%s)", device,
                            self._reason)
                raise EmergencyStopped(self._reason)
            yield

    def latch(self, reason: str) -> None:
        """Set the latch; returns once no motion command can be sent any more."""
        with self._gate:
            self._reason = reason

    def release(self) -> None:
        """Allow motion again (the operator's reset)."""
        with self._gate:
            self._reason = None
