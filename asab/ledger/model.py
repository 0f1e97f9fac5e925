"""The bench ledger: what the bench holds — every consumable and every line.

One :class:`BenchLedger` per bench (not per run): volume and origin of the liquid in each stock
reservoir, the solvent bottle, each waste container (its fill against its capacity), the vessel
on the balance (its load against the balance's capacity), each vial, each syringe, and what
fills each tubing segment (:mod:`asab.ledger.liquid`). Capacities come from ``bench.toml``
(``settings.solvent_volume``, ``settings.waste_capacity``/``waste_capacities``,
``settings.vial_capacity``, ``balance.capacity``; a stock reservoir's capacity is the stock's
configured volume). The planner reads a ledger and never a driver; the executor updates it
after every step (:func:`asab.ledger.apply.apply_step`); operators correct it
(``asab bench refill/empty/set-line``). Persistence: :mod:`asab.ledger.store`.
"""

from __future__ import annotations

import datetime as dt
import math
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

from asab.config import BenchConfig
from asab.ledger.liquid import GAS, SOLVENT, Parcel, volume_of
from asab.ledger.residue import Cohort

LEDGER_VERSION = 1
"""Format version of the ledger file."""

MAX_VOLUME = 1_000_000.0
"""mL no vessel, syringe or tube of a bench holds (a bound on numbers read from a ledger
file: anything larger, negative, NaN or infinite is refused)."""

Volume = Annotated[float, Field(ge=0, le=MAX_VOLUME, allow_inf_nan=False)]
Share = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]
Content = Annotated[dict[str, Volume], Field(max_length=256)]

MAX_LOG = 2000
"""Ledger events kept (oldest dropped first); the job records keep the full history."""


class VesselKind(StrEnum):
    """What a vessel node is on the bench."""

    STOCK = "stock"
    SOLVENT = "solvent"
    GAS = "gas"
    WASTE = "waste"
    VIAL = "vial"


class LedgerChange(StrEnum):
    """Why the ledger changed (see :class:`LedgerEvent`)."""

    CREATED = "created"
    STEP = "step"
    REFILL = "refill"
    EMPTY = "empty"
    SET_LINE = "set-line"
    LINES_UNKNOWN = "lines-unknown"
    SERVICE = "service"
    SYNC = "sync"


def now_iso() -> str:
    """Wall clock now, ISO 8601 UTC (milliseconds)."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


class ParcelState(BaseModel):
    """A parcel of a tube in JSON form: ``volume`` mL, ``content`` origin → volume fraction."""

    model_config = ConfigDict(extra="forbid")
    volume: float = Field(gt=0, le=MAX_VOLUME, allow_inf_nan=False)
    content: Annotated[dict[str, Share], Field(min_length=1, max_length=256)]

    @model_validator(mode="after")
    def _shares_sum_to_one(self) -> ParcelState:
        if abs(sum(self.content.values()) - 1.0) > 1e-6:
            raise ValueError(f"parcel shares sum to {sum(self.content.values())!r}, not 1")
        return self

    def to_parcel(self) -> Parcel:
        return Parcel(self.volume, tuple(sorted(self.content.items())))

    @classmethod
    def of(cls, parcel: Parcel) -> ParcelState:
        return cls(volume=parcel.volume, content=dict(parcel.shares))


class CohortState(BaseModel):
    """One stage of a tube's wall layer (asab.ledger.residue.Cohort) in JSON form: ``volume``
    mL, ``content`` origin → volume fraction, ``stage`` 0–2 (the layer's stages in series;
    liquid joins it in stage 0)."""

    model_config = ConfigDict(extra="forbid")
    volume: float = Field(gt=0, le=MAX_VOLUME, allow_inf_nan=False)
    content: Annotated[dict[str, Share], Field(min_length=1, max_length=256)]
    stage: int = Field(ge=0, le=2)

    def to_cohort(self) -> Cohort:
        return Cohort(self.volume, tuple(sorted(self.content.items())), self.stage)

    @classmethod
    def of(cls, cohort: Cohort) -> CohortState:
        return cls(volume=cohort.volume, content=dict(cohort.shares), stage=cohort.stage)


class VesselState(BaseModel):
    """One open vessel: its kind, capacity (mL; None = unlimited, e.g. a gas supply) and
    content (origin → mL of liquid; gas vents)."""

    model_config = ConfigDict(extra="forbid")
    node: str
    kind: VesselKind
    capacity: Volume | None = Field(default=None, description="mL")
    content: Content = Field(default_factory=dict, description="origin → mL")

    @property
    def volume(self) -> float:
        """mL of liquid in the vessel."""
        return volume_of(self.content, gas=False)


class SyringeState(BaseModel):
    """One syringe: capacity (mL) and content (origin → mL, gas included)."""

    model_config = ConfigDict(extra="forbid")
    pump: str
    capacity: Volume = Field(description="mL")
    content: Content = Field(default_factory=dict, description="origin → mL")

    @model_validator(mode="after")
    def _fits(self) -> SyringeState:
        if self.volume > self.capacity * (1 + 1e-6) + 1e-9:
            raise ValueError(f"syringe {self.pump} holds {self.volume:g} mL, more than its "
                             f"{self.capacity:g} mL")
        return self

    @property
    def volume(self) -> float:
        """mL in the syringe (liquid and gas): its fill level."""
        return volume_of(self.content)


class LedgerEvent(BaseModel):
    """One change of the ledger: when, why, what, and the operator's note if any."""

    model_config = ConfigDict(extra="forbid")
    time: str
    change: LedgerChange
    subject: str = Field(default="", description="node, pump, segment or job concerned")
    detail: str = ""
    note: str = ""


class BenchLedger(BaseModel):
    """The consumable state of one bench (see the module docstring).

    Attributes:
        bench: the bench's name.
        vessels: vessel node → state.
        syringes: pump → state.
        lines: tubing edge label → parcels from the edge's ``start`` to its ``end`` (the
            plug-flow core: the dead volume less the wall layer and the pocket).
        films: edge label → the wall layer (film) of the tube, as cohorts.
        pockets: edge label → content (origin → mL) of the tube's unswept pocket.
        out_of_service: why the bench refuses wet work (None when fine).
        waiting: why no further job can be planned (a consumable is exhausted); set by the
            job queue, cleared by an operator's refill/empty.
        log: the latest changes, oldest first (at most :data:`MAX_LOG`).
    """

    model_config = ConfigDict(extra="forbid")
    version: int = LEDGER_VERSION
    bench: str
    updated: str = Field(default_factory=now_iso)
    vessels: dict[str, VesselState] = Field(default_factory=dict)
    syringes: dict[str, SyringeState] = Field(default_factory=dict)
    lines: dict[str, list[ParcelState]] = Field(default_factory=dict)
    films: dict[str, list[CohortState]] = Field(default_factory=dict)
    pockets: dict[str, Content] = Field(default_factory=dict)
    out_of_service: str | None = None
    waiting: str | None = None
    log: list[LedgerEvent] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _staged_films(cls, data):
        """Ledger files written before the layer had stages kept each film portion with its
        ``age`` (tube volumes washed since it joined): such a portion is split over the three
        stages in the shares a deposit of that age holds, 1 : x : x²/2 with x = k·age
        (k = 1.75, the default ``[carryover] wash_rate``)."""
        if not isinstance(data, dict) or not isinstance(data.get("films"), dict):
            return data
        films = {}
        for label, layer in data["films"].items():
            if not isinstance(layer, list):
                films[label] = layer
                continue
            out = []
            for c in layer:
                age, volume = (c.get("age"), c.get("volume")) if isinstance(c, dict) else (0, 0)
                if (isinstance(c, dict) and "stage" not in c and _real(age) and _real(volume)
                        and 0 <= age <= 1e9 and 0 < volume <= MAX_VOLUME):
                    x = 1.75 * age
                    weights = (1.0, x, 0.5 * x * x)
                    total = math.fsum(weights)
                    for i, w in enumerate(weights):
                        if w / total * volume > 0:
                            out.append({"volume": w / total * volume,
                                        "content": c.get("content"), "stage": i})
                else:  # current, or not a valid old one: validation says what is wrong
                    out.append(c)
            films[label] = out
        return {**data, "films": films}

    def note(self, change: LedgerChange, subject: str = "", detail: str = "",
             note: str = "") -> None:
        """Append an event (and drop the oldest beyond :data:`MAX_LOG`)."""
        self.updated = now_iso()
        self.log.append(LedgerEvent(time=self.updated, change=change, subject=subject,
                                    detail=detail, note=note))
        del self.log[:-MAX_LOG]

    def clone(self) -> BenchLedger:
        """A copy that can be changed without touching this ledger. Cheap: contents, parcel
        lists and events are treated as immutable values (every change assigns a new dict
        or list, never mutates one), so only the containers are copied."""
        out = self.model_copy()
        out.vessels = {k: v.model_copy() for k, v in self.vessels.items()}
        out.syringes = {k: v.model_copy() for k, v in self.syringes.items()}
        out.lines = dict(self.lines)
        out.films = dict(self.films)
        out.pockets = dict(self.pockets)
        out.log = list(self.log)
        return out

    def line(self, label: str) -> list[Parcel]:
        """The parcels of segment ``label`` (start → end)."""
        return [p.to_parcel() for p in self.lines.get(label, [])]

    def set_line(self, label: str, parcels: list[Parcel]) -> None:
        self.lines[label] = [ParcelState.of(p) for p in parcels]

    def film(self, label: str) -> list[Cohort]:
        """The wall layer of segment ``label`` (empty: a dry or never wetted tube)."""
        return [c.to_cohort() for c in self.films.get(label, [])]

    def set_film(self, label: str, layer: list[Cohort]) -> None:
        if layer:
            self.films[label] = [CohortState.of(c) for c in layer]
        else:
            self.films.pop(label, None)

    def held(self, label: str) -> float:
        """mL segment ``label`` holds: core, wall layer and pocket."""
        return (math.fsum(p.volume for p in self.lines.get(label, []))
                + math.fsum(c.volume for c in self.films.get(label, []))
                + volume_of(self.pockets.get(label, {})))

    def vessel(self, node: str) -> VesselState:
        """Raises KeyError naming the node when it is not a vessel of this bench."""
        try:
            return self.vessels[node]
        except KeyError:
            raise KeyError(f"{node!r} is not a vessel of bench {self.bench} "
                           f"(vessels: {', '.join(sorted(self.vessels))})") from None


def _real(value) -> bool:
    """A finite int or float (not a bool), as a ledger number must be."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def waste_capacity(config: BenchConfig, node: str) -> float:
    """mL waste container ``node`` takes: ``settings.waste_capacities[node]``, else
    ``settings.waste_capacity``."""
    s = config.settings
    return float(s.waste_capacities.get(node, s.waste_capacity))


def initial_ledger(config: BenchConfig) -> BenchLedger:
    """The ledger of a freshly set-up bench: every stock reservoir full (its configured volume),
    the solvent bottle full (``settings.solvent_volume``), wastes and vials empty, syringes
    empty, every line holding gas (the bench starts dry; an operator who knows otherwise says
    so with ``asab bench set-line``)."""
    s = config.settings
    vessels: dict[str, VesselState] = {}
    for stock in config.stocks:
        vessels.setdefault(stock.reservoir, VesselState(
            node=stock.reservoir, kind=VesselKind.STOCK, capacity=stock.volume,
            content={stock.name: stock.volume}))
    vessels.setdefault(s.solvent_node, VesselState(
        node=s.solvent_node, kind=VesselKind.SOLVENT, capacity=s.solvent_volume,
        content={SOLVENT: s.solvent_volume}))
    for node in s.gas_nodes:
        vessels.setdefault(node, VesselState(node=node, kind=VesselKind.GAS))
    for node in s.waste_nodes:
        vessels.setdefault(node, VesselState(node=node, kind=VesselKind.WASTE,
                                             capacity=waste_capacity(config, node)))
    for node in s.vial_nodes:
        vessels.setdefault(node, VesselState(node=node, kind=VesselKind.VIAL,
                                             capacity=s.vial_capacity))
    syringes = {p.name: SyringeState(pump=p.name, capacity=config.syringe_of(p.name).volume)
                for p in config.pumps}
    lines = {e.label: [ParcelState(volume=e.dead_volume, content={GAS: 1.0})]
             for e in config.tubing.edges if e.dead_volume > 0}
    ledger = BenchLedger(bench=config.name, vessels=vessels, syringes=syringes, lines=lines)
    ledger.note(LedgerChange.CREATED, config.name, "fresh bench: reservoirs and solvent full, "
                "wastes and vials empty, lines dry")
    return ledger


def reconcile(ledger: BenchLedger, config: BenchConfig) -> list[str]:
    """Bring a loaded ledger in line with the bench's configuration (changed in place):
    vessels, syringes and tubes the configuration has and the ledger lacks are added as a
    fresh bench has them; capacities are the configuration's; vessels, syringes and tubes the
    configuration no longer has are dropped. Returns one line per change (also noted in the
    ledger's log)."""
    fresh = initial_ledger(config)
    changes = []
    for node, v in fresh.vessels.items():
        have = ledger.vessels.get(node)
        if have is None or have.kind is not v.kind:
            ledger.vessels[node] = v
            changes.append(f"vessel {node} added as a fresh {v.kind}")
        elif have.capacity != v.capacity:
            changes.append(f"capacity of {node}: {have.capacity} → {v.capacity} mL")
            have.capacity = v.capacity
    for node in sorted(set(ledger.vessels) - set(fresh.vessels)):
        del ledger.vessels[node]
        changes.append(f"vessel {node} dropped (not in the configuration)")
    for pump, syr in fresh.syringes.items():
        have = ledger.syringes.get(pump)
        if have is None or have.capacity != syr.capacity:
            ledger.syringes[pump] = syr
            changes.append(f"syringe of {pump} taken as empty ({syr.capacity:g} mL)")
    for pump in sorted(set(ledger.syringes) - set(fresh.syringes)):
        del ledger.syringes[pump]
        changes.append(f"syringe of {pump} dropped (not in the configuration)")
    volumes = {e.label: e.dead_volume for e in config.tubing.edges if e.dead_volume > 0}
    for label, volume in volumes.items():
        have = ledger.lines.get(label)
        if have is None or abs(ledger.held(label) - volume) > 1e-9 * max(1.0, volume):
            ledger.lines[label] = fresh.lines[label]
            ledger.films.pop(label, None)
            ledger.pockets.pop(label, None)
            changes.append(f"tube {label} taken as holding gas")
    for label in sorted(set(ledger.films) - set(volumes)):
        del ledger.films[label]
    for label in sorted(set(ledger.pockets) - set(volumes)):
        del ledger.pockets[label]
    for label in sorted(set(ledger.lines) - set(volumes)):
        del ledger.lines[label]
        changes.append(f"tube {label} dropped (not in the configuration)")
    for line in changes:
        ledger.note(LedgerChange.SYNC, "configuration", line)
    return changes


def mass_of(config: BenchConfig, content: dict[str, float]) -> float:
    """g of the liquid in ``content`` (origin → mL): each stock at its configured density, the
    solvent at its chemical's density; liquid of unknown origin at the densest stock's
    density (an upper bound for a capacity check). Volumes add (ideal mixing)."""
    density = {st.name: st.density for st in config.stocks}
    solvent = config.chemical(config.settings.solvent_chemical).density
    density[SOLVENT] = solvent if solvent is not None else max(density.values(), default=1.0)
    top = max(density.values(), default=1.0)
    return math.fsum(v * density.get(k, top) for k, v in content.items() if k != GAS)
