"""Clocks: every wait in asab goes through a :class:`Clock` so simulations can run on virtual time.

:func:`poll_until` is the one way to wait for something: drivers, servers and actions poll a
condition through it instead of writing their own deadline loops.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol, TypeVar, runtime_checkable

from asab.errors import WaitTimeout

T = TypeVar("T")

TIME_EPSILON = 1e-9
"""s; a remaining wait this short counts as expired (float round-off of clock arithmetic)."""


@runtime_checkable
class Clock(Protocol):
    """Time source and sleeper. ``now()`` is in seconds (monotonic, arbitrary origin)."""

    def now(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class RealClock:
    """Wall-clock time: ``time.monotonic`` and ``time.sleep``."""

    def now(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


def poll_until(clock: Clock, condition: Callable[[], T], timeout: float, what: str,
               interval: float = 0.1, *, device: str = "bench") -> T:
    """Call ``condition()`` until it returns a truthy value, waiting on ``clock`` in between.

    ``condition`` is called at once, then again after each ``clock.sleep(min(interval,
    remaining))``, so the last call falls on the deadline: a condition that comes true just
    then is still seen. Every wait goes through ``clock`` (a virtual clock makes it instant).
    An exception raised by ``condition`` (a drive fault, say) ends the wait unchanged.

    Args:
        clock: time source and sleeper; ``now()`` and ``sleep()`` in s.
        condition: returns a falsy value (``False``, ``None``, ...) for "not yet", anything
            else for "done"; it may block for a while itself (e.g. a serial read).
        timeout: s to keep trying from the call (≥ 0; 0 means one call).
        what: what is waited for, as a noun phrase for the error: ``"the end of the move"``,
            ``"position 3"``.
        interval: s between calls (≥ 0; 0 calls again at once, for a condition that blocks).
        device: who is waited on, for the error (a configured device name).

    Returns:
        The first truthy value ``condition()`` returned.

    Raises:
        WaitTimeout: still falsy after ``timeout`` s of clock time (a
            :class:`~asab.errors.TransportTimeout` naming ``device``, ``what`` and ``timeout``).
        ValueError: a negative ``timeout`` or ``interval``.
    """
    if timeout < 0 or interval < 0:
        raise ValueError(f"timeout ({timeout}) and interval ({interval}) must be >= 0")
    deadline = clock.now() + timeout
    while True:
        result = condition()
        if result:
            return result
        remaining = deadline - clock.now()
        if remaining <= TIME_EPSILON:
            raise WaitTimeout(device, what, timeout)
        clock.sleep(min(interval, remaining))
