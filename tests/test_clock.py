"""poll_until: the one wait-for-a-condition loop, on the injected clock."""

from __future__ import annotations

import time

import pytest

from asab.clock import RealClock, poll_until
from asab.errors import DeviceFault, TransportTimeout, WaitTimeout
from simulators.clock import VirtualClock


def test_returns_the_first_truthy_value_polled_on_virtual_time() -> None:
    clock, seen = VirtualClock(), []

    def ready() -> str | None:
        seen.append(clock.now())
        return "done" if clock.now() >= 3.0 else None

    wall = time.monotonic()
    assert poll_until(clock, ready, 10.0, "the pump to stop", interval=0.5) == "done"
    assert seen == pytest.approx([0.5 * i for i in range(7)])  # at once, then every 0.5 s
    assert time.monotonic() - wall < 0.5


def test_timeout_names_device_what_and_wait_and_polls_on_the_deadline() -> None:
    clock, seen = VirtualClock(), []
    with pytest.raises(WaitTimeout) as info:
        poll_until(clock, lambda: seen.append(clock.now()), 1.0, "position 3", interval=0.3,
                   device="V3")
    assert isinstance(info.value, TransportTimeout)
    assert str(info.value) == "V3: timed out after 1 s waiting for position 3"
    assert (info.value.device, info.value.what, info.value.timeout) == ("V3", "position 3", 1.0)
    assert seen == pytest.approx([0.0, 0.3, 0.6, 0.9, 1.0])  # the last look is at the deadline
    assert clock.now() == pytest.approx(1.0)


def test_zero_timeout_looks_once_and_errors_of_the_condition_pass_through() -> None:
    clock, calls = VirtualClock(), []
    with pytest.raises(WaitTimeout):
        poll_until(clock, lambda: calls.append(1), 0.0, "anything")
    assert calls == [1] and clock.now() == 0.0

    def faulty() -> bool:
        raise DeviceFault("A0.0", "drive fault")

    with pytest.raises(DeviceFault):
        poll_until(clock, faulty, 5.0, "the end of the move")
    assert clock.now() == 0.0


def test_negative_timeout_or_interval_is_refused() -> None:
    with pytest.raises(ValueError):
        poll_until(VirtualClock(), lambda: True, -1.0, "x")
    with pytest.raises(ValueError):
        poll_until(VirtualClock(), lambda: True, 1.0, "x", interval=-0.1)


def test_real_clock_waits_in_real_time() -> None:
    start = time.monotonic()
    with pytest.raises(WaitTimeout):
        poll_until(RealClock(), lambda: False, 0.05, "nothing", interval=0.01)
    assert 0.05 <= time.monotonic() - start < 1.0
