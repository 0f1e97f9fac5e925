"""Clocks for the simulated bench.

:class:`VirtualClock` makes every wait instant: ``sleep(dt)`` advances simulated time in steps
of at most ``max_step`` seconds and lets the world and the device simulators catch up after
each step. :class:`RealTimeClock` runs the same listeners from a background thread at a chosen
speed-up, for demos and for drivers that talk to simulators over real sockets and folders.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

Listener = Callable[[float, float], None]
"""Called as ``listener(now, dt)`` after simulated time advanced by ``dt`` s to ``now``."""


class _Listeners:
    """Registry of ``listener(now, dt)`` callables shared by both clocks."""

    def __init__(self) -> None:
        self._listeners: list[Listener] = []
        self._lock = threading.RLock()

    def add_listener(self, listener: Listener) -> None:
        """Register ``listener(now, dt)`` to run after every step."""
        with self._lock:
            self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        with self._lock:
            self._listeners.remove(listener)


class VirtualClock(_Listeners):
    """Simulated time that advances only when somebody sleeps.

    Args:
        max_step: longest single step in s; listeners see time advance in steps of at most
            this size, which bounds the integration step of the world.
    """

    def __init__(self, max_step: float = 0.5) -> None:
        if max_step <= 0:
            raise ValueError("max_step must be > 0")
        super().__init__()
        self.max_step = max_step
        self._now = 0.0

    def now(self) -> float:
        """Simulated seconds since the clock was made."""
        return self._now

    def sleep(self, seconds: float) -> None:
        """Advance simulated time by ``seconds`` (no wall-clock wait)."""
        with self._lock:
            remaining = max(0.0, float(seconds))
            while remaining > 1e-12:
                dt = min(self.max_step, remaining)
                self._now += dt
                remaining -= dt
                for listener in list(self._listeners):
                    listener(self._now, dt)


class RealTimeClock(_Listeners):
    """Scaled wall-clock time; a background thread steps the listeners.

    Args:
        speed: simulated seconds per wall-clock second (1.0 = real time).
        tick: wall-clock seconds between listener calls; default so that one tick is at most
            ``max_step`` simulated seconds (and at most 50 ms of wall time).
        max_step: longest simulated step handed to the listeners; a longer lag (a slow tick)
            is split into several steps so the world integrates as finely as on a
            :class:`VirtualClock`.
    """

    def __init__(self, speed: float = 1.0, tick: float | None = None, max_step: float = 0.5) -> None:
        if speed <= 0 or (tick is not None and tick <= 0) or max_step <= 0:
            raise ValueError("speed, tick and max_step must be > 0")
        self.speed = speed
        self.max_step = max_step
        self.tick = tick if tick is not None else min(0.05, max_step / speed)
        super().__init__()
        self._t0 = time.monotonic()
        self._last = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def now(self) -> float:
        return (time.monotonic() - self._t0) * self.speed

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds / self.speed)

    def step(self) -> None:
        """Advance the listeners to the current time (called by the thread, or by hand)."""
        with self._lock:
            now = self.now()
            while now - self._last > 1e-12:
                dt = min(self.max_step, now - self._last)
                self._last += dt
                for listener in list(self._listeners):
                    listener(self._last, dt)

    def start(self) -> None:
        """Start the background thread (idempotent)."""
        if self._thread and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="sim-clock", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=2.0)

    def _run(self) -> None:
        while not self._stop.wait(self.tick):
            self.step()
