"""Drivers: one class per instrument model, behind the protocols of :mod:`asab.drivers.base`."""

from __future__ import annotations

from typing import Any

from asab.clock import Clock
from asab.config.models import DensimeterSettings
from asab.drivers.base import DensityViscosityMeter


def open_densimeter(settings: DensimeterSettings, clock: Clock, **options: Any) -> DensityViscosityMeter:
    """Open the densimeter/viscometer driver ``settings.interface`` selects.

    Args:
        settings: the ``[densimeter]`` settings; ``interface = "lims"`` →
            :class:`~asab.drivers.antonpaar.DMA4100LimsDriver`, ``"rs232"`` →
            :class:`~asab.drivers.antonpaar_rs232.DMA4100Rs232Driver`.
        clock: every wait of the driver goes through it.
        **options: passed to the driver (``poll_interval``; ``port`` for RS-232).

    Raises:
        ConfigError: the interface's endpoints are missing.
        TransportError: the serial port cannot be opened.
    """
    if settings.interface == "rs232":
        from asab.drivers.antonpaar_rs232 import DMA4100Rs232Driver

        return DMA4100Rs232Driver(settings, clock, **options)
    from asab.drivers.antonpaar import DMA4100LimsDriver

    return DMA4100LimsDriver(settings, clock, **options)
