"""Bench configuration: typed models and loaders."""

from asab.config.models import (
    BalanceSettings,
    BenchConfig,
    BenchSettings,
    CarryoverSettings,
    CetoniSettings,
    Chemical,
    ComponentMass,
    DensimeterSettings,
    Instrument,
    Pump,
    SerialSettings,
    SizingMode,
    StockSolution,
    Syringe,
    Tubing,
    TubingEdge,
    TubingNode,
    Valve,
)

__all__ = [
    "BalanceSettings", "BenchConfig", "BenchSettings", "CarryoverSettings", "CetoniSettings", "Chemical",
    "ComponentMass", "DensimeterSettings", "Instrument", "Pump", "SerialSettings",
    "SizingMode", "StockSolution", "Syringe", "Tubing", "TubingEdge", "TubingNode", "Valve",
]
