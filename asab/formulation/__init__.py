"""Formulation: stock concentrations, the makeable region, the closest makeable composition,
stock volumes and flows, and the composition achieved from dispensed volumes or masses.

Pure functions over typed data (shared/docs/electrolyte_models.md, "Composition bookkeeping").
Compositions are dicts InChIKey → mole fraction; volumes in mL, flows in mL/s, masses in g,
concentrations in mol/mL.
"""

from asab.formulation.composition import (
    achieved_composition,
    achieved_from_masses,
    by_name,
    composition_distance,
    parse_composition,
)
from asab.formulation.hull import HullProjector, HullSolution, kkt_gap
from asab.formulation.mixes import MixOption, choose_mix, mix_options, near_mix
from asab.formulation.plan import FormulationPlan, plan_formulation
from asab.formulation.stocks import StockModel, stock_concentration

__all__ = [
    "FormulationPlan", "HullProjector", "HullSolution", "MixOption", "StockModel",
    "achieved_composition", "achieved_from_masses", "by_name", "choose_mix",
    "composition_distance", "kkt_gap", "mix_options", "near_mix", "parse_composition",
    "plan_formulation",
    "stock_concentration",
]
