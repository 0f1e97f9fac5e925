"""Bench configuration: typed models and loaders."""

from asab.config.models import (
    BalanceSettings,
    BenchConfig,
    BenchSettings,
    CetoniSettings,
    Chemical,
    ComponentMass,
    DensimeterSettings,
    Instrument,
    Pump,
    SerialSettings,
    StockSolution,
    Syringe,
    Tubing,
    TubingEdge,
    TubingNode,
    Valve,
)

__all__ = [
    "BalanceSettings", "BenchConfig", "BenchSettings", "CetoniSettings", "Chemical",
    "ComponentMass", "DensimeterSettings", "Instrument", "Pump", "SerialSettings",
    "StockSolution", "Syringe", "Tubing", "TubingEdge", "TubingNode", "Valve",
]
