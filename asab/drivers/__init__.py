"""Drivers: one class per instrument model, behind the protocols of :mod:`asab.drivers.base`."""
