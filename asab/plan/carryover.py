"""What the cell holds when it measures: the predicted composition, from the ledger's line
contents (with films and pockets, :mod:`asab.ledger.residue`) and the plan's volumes; and the
sizing of the sample flush by that prediction.

Mole fractions of a content (origin → mL): each stock contributes its components' amounts per
mL (weighed masses / molar masses / the stock's volume, ``stockSolutions.csv``), the cleaning
solvent its chemical's density / molar mass; liquid of unknown origin is left out and counted
in the uncertainty. Expected density: the origins' densities mixed by volume (ideal mixing of
the stock solutions; its model uncertainty :data:`DENSITY_MODEL_UNCERTAINTY`).

Units: mL, g/cm³, mole fractions.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from asab.config import BenchConfig, CarryoverSettings, Instrument
from asab.ledger.liquid import GAS, SOLVENT, UNKNOWN, Content, add, total, volume_of
from asab.ledger.model import BenchLedger
from asab.ledger.residue import layer_content

RESIDUE_MODEL_SHARE = 0.5
"""Relative standard uncertainty of the predicted carry-over (the deviation of the cell's
composition from the planned one): film thickness, wetting and wash-out constants are known
to within about a factor 1.5, and evaporation from films is not modelled by the library."""

DENSITY_MODEL_UNCERTAINTY = 4.5e-3
"""g/cm³, standard uncertainty of the ideal mixing of stock solutions by volume (the excess
volume of mixing EC-rich and EC-poor stocks, which asab has no model of): measured against the
simulated densimeter's model (electrolyte_models.md) on 288 random makeable compositions of the
2023 stocks, at most 7.8e-3 g/cm³; taken as a rectangular bound, 7.8e-3/√3. The density check
therefore catches gross errors (gas in the cell, a wrong or empty stock), not carry-over."""

REPEATABILITY = 5e-5
"""g/cm³, repeatability of a DMA 4100 M (shared/docs/electrolyte_models.md)."""


class SizingRule(StrEnum):
    """Which rule sized a volume of a plan (``JobPlan.sizing``)."""

    FIXED_FACTOR = "fixed factor"           # a [settings] factor × a dead volume
    PREDICTED = "predicted carry-over"      # smallest volume whose predicted contamination ≤ tolerance
    NOT_REACHED = "tolerance not reached"   # the largest volume allowed, still above tolerance
    TRANSIT = "transit of the inlet lines"  # first portion: the inlet lines and shared line
    SKIPPED = "skipped"                     # not done (why: in the note)


class Sizing(BaseModel):
    """How one volume of a plan was chosen."""

    model_config = ConfigDict(extra="forbid")
    what: str = Field(description="first portion, sample flush, pre-clean, clean")
    volume: float = Field(description="mL (0 when skipped)")
    rule: SizingRule
    contamination: float | None = Field(default=None, description=(
        "predicted largest |Δx| of the measured sample from the planned composition"))
    density_shift: float | None = Field(default=None, description=(
        "g/cm³, the predicted change of the measured density by the carry-over "
        "(CellPrediction.density_shift; bounded by [carryover] density_tolerance)"))
    note: str = ""


class CellPrediction(BaseModel):
    """The predicted content of the instrument cell when it measures.

    Attributes:
        composition: InChIKey → mole fraction (liquid of known origin).
        uncertainty: InChIKey → standard uncertainty of that mole fraction.
        planned: InChIKey → the planned (steady-state mix) mole fraction.
        contamination: largest |composition − planned| over the components.
        origins: origin (stock name, ``solvent``, ``unknown``) → mL in the cell.
        density_expected: g/cm³ of that content (ideal mixing of the origins), or None.
        density_uncertainty: its standard uncertainty, g/cm³.
        density_shift: g/cm³, ``density_expected`` minus the ideal-mixing density of the
            planned mix (what the carry-over changes; the mixing model's own error largely
            cancels in the difference), or None when the planned mix was not given.
    """

    model_config = ConfigDict(extra="forbid")
    composition: dict[str, float]
    uncertainty: dict[str, float]
    planned: dict[str, float]
    contamination: float
    origins: dict[str, float]
    density_expected: float | None = None
    density_uncertainty: float | None = None
    density_shift: float | None = None

    def excess(self, settings: CarryoverSettings) -> float:
        """The predicted carry-over as a share of what ``settings`` allow: the largest of
        contamination / ``tolerance`` and |density_shift| / ``density_tolerance`` (≤ 1:
        within tolerance)."""
        out = self.contamination / settings.tolerance
        if settings.density_tolerance is not None and self.density_shift is not None:
            out = max(out, abs(self.density_shift) / settings.density_tolerance)
        return out


def cell_edge(config: BenchConfig, instrument: Instrument) -> str:
    """Label of the tubing edge that is ``instrument``'s cell (inlet → outlet).

    Raises:
        KeyError: no edge joins its inlet and outlet.
    """
    for e in config.tubing.edges:
        if {e.start, e.end} == {instrument.inlet, instrument.outlet}:
            return e.label
    raise KeyError(f"no tubing edge joins {instrument.inlet} and {instrument.outlet}")


def cell_content(ledger: BenchLedger, label: str) -> Content:
    """origin → mL of liquid in segment ``label``: its core, wall layer and pocket."""
    content = add(add(total(ledger.line(label)), layer_content(ledger.film(label))),
                  ledger.pockets.get(label, {}))
    return {k: v for k, v in content.items() if k != GAS and v > 0}


def moles_per_ml(config: BenchConfig) -> dict[str, dict[str, float]]:
    """origin → InChIKey → mol/mL, for every stock and the cleaning solvent."""
    out: dict[str, dict[str, float]] = {}
    for st in config.stocks:
        out[st.name] = {k: c.mass / config.chemical(k).molar_mass / st.volume
                        for k, c in st.components.items() if c.mass > 0}
    chem = config.chemical(config.settings.solvent_chemical)
    if chem.density is not None:
        out[SOLVENT] = {chem.inchikey: chem.density / chem.molar_mass}
    return out


def mole_fractions(content: Mapping[str, float], table: Mapping[str, Mapping[str, float]]
                   ) -> dict[str, float]:
    """InChIKey → mole fraction of ``content`` (origin → mL); unknown origins left out."""
    moles: dict[str, float] = {}
    for origin, v in content.items():
        for key, c in table.get(origin, {}).items():
            moles[key] = moles.get(key, 0.0) + c * v
    n = math.fsum(moles.values())
    return {k: m / n for k, m in moles.items()} if n > 0 else {}


def origin_densities(config: BenchConfig) -> dict[str, float]:
    out = {st.name: st.density for st in config.stocks}
    chem = config.chemical(config.settings.solvent_chemical)
    if chem.density is not None:
        out[SOLVENT] = chem.density
    return out


def predict_cell(config: BenchConfig, ledger: BenchLedger, instrument: Instrument,
                 planned: Mapping[str, float], planned_origins: Mapping[str, float] | None = None
                 ) -> CellPrediction:
    """The predicted cell content of ``instrument`` from ``ledger`` (as the plan leaves it
    just before it measures), against the ``planned`` mole fractions (InChIKey → x) and,
    when given, the planned mix ``planned_origins`` (stock name → volume share or flow; its
    ideal-mixing density is what ``density_shift`` is measured against)."""
    content = cell_content(ledger, cell_edge(config, instrument))
    table = moles_per_ml(config)
    x = mole_fractions(content, table)
    keys = sorted(set(x) | set(planned))
    liquid = volume_of(content)
    unknown = content.get(UNKNOWN, 0.0) / liquid if liquid > 0 else 0.0
    dev = {k: x.get(k, 0.0) - planned.get(k, 0.0) for k in keys}
    unc = {k: math.hypot(RESIDUE_MODEL_SHARE * abs(dev[k]), unknown) for k in keys}
    rho = origin_densities(config)
    known = {k: v for k, v in content.items() if k in rho}
    vol = math.fsum(known.values())
    density = math.fsum(v * rho[k] for k, v in known.items()) / vol if vol > 0 else None
    shift = None
    if planned_origins and density is not None and all(k in rho for k in planned_origins):
        mix = math.fsum(planned_origins.values())
        if mix > 0:
            shift = density - math.fsum(v * rho[k] for k, v in planned_origins.items()) / mix
    return CellPrediction(
        composition={k: x.get(k, 0.0) for k in keys}, uncertainty=unc,
        planned={k: planned.get(k, 0.0) for k in keys},
        contamination=max((abs(d) for d in dev.values()), default=0.0),
        origins=dict(sorted(content.items())), density_expected=density,
        density_uncertainty=DENSITY_MODEL_UNCERTAINTY if density is not None else None,
        density_shift=shift)


def foreign_in_cell(config: BenchConfig, ledger: BenchLedger, instrument: Instrument) -> float:
    """mL of liquid other than the cleaning solvent the cell's core, film and pocket hold."""
    content = cell_content(ledger, cell_edge(config, instrument))
    return math.fsum(v for k, v in content.items() if k != SOLVENT)
