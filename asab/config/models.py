"""Typed configuration of a bench (pydantic, ``extra="forbid"``).

All numbers are plain floats in canonical units, stated in each field's description:
mL, mL/s, g, s, K, g/cm³, mPa·s, mm. Loaders (:mod:`asab.config.loader`) convert user input with
units at the edge.
"""

from __future__ import annotations

import math
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from asab.names import UnknownName, did_you_mean, known_names


class _Model(BaseModel):
    """Every number is finite (``allow_inf_nan=False``) and, field by field, within the
    physical range its ``Field`` gives (``gt``/``ge``/``le``): a bound keeps a mistyped value
    from reaching a driver or hanging a loop (e.g. ``drain_factor = inf``)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


# --------------------------------------------------------------------------- chemicals & stocks
class Chemical(_Model):
    """A pure chemical (see ``hardware_configs/*/chemicals.csv`` for sources)."""

    name: str = Field(description="short name used in configs and on the command line, e.g. 'EC'")
    inchikey: str = Field(description="standard InChIKey, the identifier used by FINALES2")
    smiles: str
    molar_mass: float = Field(gt=0, le=10_000, description="molar mass in g/mol")
    density: float | None = Field(default=None, gt=0, le=30, description="density in g/cm³")
    density_temperature: float | None = Field(default=None, gt=0, le=1000, description="K")
    viscosity: float | None = Field(default=None, gt=0, le=1e6, description="dynamic viscosity in mPa·s")
    viscosity_temperature: float | None = Field(default=None, gt=0, le=1000, description="K")
    notes: str = ""
    source: str = ""


class ComponentMass(_Model):
    """Mass of one component weighed into a stock solution."""

    mass: float = Field(ge=0, le=100_000, description="g")
    uncertainty: float = Field(default=0.0, ge=0, le=100_000, description="g (standard uncertainty)")


class StockSolution(_Model):
    """A stock solution in a reservoir, drawn by one pump.

    ``components`` maps InChIKey → weighed mass. Amount concentrations follow
    c_i = (m_i / M_i) / (m_total / ρ) in mol/mL (shared/docs/electrolyte_models.md).
    """

    name: str
    uuid: str = ""
    reservoir: str = Field(description="tubing node of the reservoir, e.g. 'Reservoir6'")
    pump: str = Field(description="name of the pump that draws this stock, e.g. 'A0.0'")
    total_mass: float = Field(gt=0, le=100_000, description="g")
    total_mass_uncertainty: float = Field(default=0.0, ge=0, le=100_000, description="g")
    density: float = Field(gt=0, le=30, description="g/cm³ at density_temperature")
    density_uncertainty: float = Field(default=0.0, ge=0, le=30, description="g/cm³")
    density_temperature: float = Field(default=298.15, gt=0, le=1000, description="K")
    components: dict[str, ComponentMass] = Field(description="InChIKey → component mass")
    batch: str = ""
    manufacturer: str = ""
    manufacturing_date: str = ""
    references: str = ""

    @property
    def volume(self) -> float:
        """Volume of the stock in mL (total mass / density)."""
        return self.total_mass / self.density


# --------------------------------------------------------------------------- fluidics hardware
class Syringe(_Model):
    """A syringe type. Limits follow the old ASAB/CETONI drive figures
    (shared/docs/device_protocols.md): min flow = A·1.042 µm/s, max flow = A·6.33 mm/s,
    lowest usable fill level 15 % of V_max."""

    name: str
    inner_diameter: float = Field(gt=0, le=100, description="mm")
    stroke: float = Field(gt=0, le=1000, description="maximum piston stroke in mm")
    min_fill_fraction: float = Field(default=0.15, ge=0, lt=1, description="fraction of V_max")

    @property
    def area(self) -> float:
        """Plunger cross-section in mm²: π(d/2)²."""
        return math.pi * (self.inner_diameter / 2.0) ** 2

    @property
    def volume(self) -> float:
        """Nominal volume V_max in mL (A·stroke, mm³ → mL)."""
        return self.area * self.stroke / 1000.0

    @property
    def min_flow(self) -> float:
        """Lowest drive flow in mL/s (A × 1.042 µm/s)."""
        return self.area * 1.042e-3 / 1000.0

    @property
    def max_flow(self) -> float:
        """Highest drive flow in mL/s (A × 6.33 mm/s)."""
        return self.area * 6.33 / 1000.0


class Pump(_Model):
    """A syringe pump whose syringe outlet is tubing node ``node``."""

    name: str = Field(description="bench name, e.g. 'A0.0'")
    node: str = Field(description="tubing node of the syringe outlet")
    syringe: str = Field(description="name of a configured Syringe")
    device: str = Field(default="", description="device name in the vendor configuration")
    driver: Literal["cetoni"] = "cetoni"


MAX_VALVE_PORTS = 64
"""Most outer ports a valve may have (CETONI Qmix valves have at most 12; 64 leaves room)."""


class Valve(_Model):
    """A valve: ``common`` is joined to exactly one of ``positions`` at a time.

    ``positions`` maps outer-port node → logical position index (0-based, as the SDK counts).
    Old ASAB convention for rotary valves: ``Vn.i`` → i − 1.
    """

    name: str
    kind: Literal["rotary", "solenoid", "pump_valve"] = "rotary"
    common: str = Field(description="tubing node of the common port")
    positions: dict[str, int] = Field(max_length=MAX_VALVE_PORTS,
                                      description="outer-port node → position index")
    device: str = Field(default="", description="device name in the vendor configuration")
    driver: Literal["cetoni", "none"] = Field(
        default="cetoni", description="'none' = no driver yet (routes through it are planned only)"
    )

    @model_validator(mode="after")
    def _distinct_positions(self) -> Valve:
        if any(not 0 <= i < MAX_VALVE_PORTS for i in self.positions.values()):
            raise ValueError(f"valve {self.name}: position indexes are 0 … {MAX_VALVE_PORTS - 1}")
        if len(set(self.positions.values())) != len(self.positions):
            raise ValueError(f"valve {self.name}: two ports share one position index")
        return self


class Instrument(_Model):
    """A flow-through measuring instrument, e.g. the densimeter/viscometer cell."""

    name: str
    kind: Literal["density_viscosity", "other"] = "density_viscosity"
    inlet: str = Field(description="tubing node where liquid enters the cell")
    outlet: str = Field(description="tubing node where liquid leaves the cell")
    measuring_volume: float = Field(default=1.0, gt=0, le=1000, description="mL needed to fill the cell")


# --------------------------------------------------------------------------- tubing
class TubingNode(_Model):
    name: str
    position: tuple[float, float] | None = Field(default=None, description="drawing only")


class TubingEdge(_Model):
    """A tube or an internal channel. ``directed`` edges let liquid flow start → end only."""

    label: str
    start: str
    end: str
    length: float = Field(ge=0, le=100_000, description="mm")
    inner_diameter: float = Field(gt=0, le=100, description="mm")
    dead_volume: float = Field(ge=0, le=1000, description="mL")
    directed: bool = False
    fixed: bool = Field(default=False, description="channel inside a component (not a drawer tube)")
    note: str = ""


class Tubing(_Model):
    """The tubing network as built: nodes and the edges that are actually connected."""

    nodes: tuple[TubingNode, ...]
    edges: tuple[TubingEdge, ...]


# --------------------------------------------------------------------------- devices
class SerialSettings(_Model):
    """pyserial settings. ``url`` may be a port (``/dev/ttyUSB0``), ``socket://127.0.0.1:PORT``
    or any pyserial URL handler."""

    url: str
    baudrate: int = Field(default=9600, ge=50, le=4_000_000)
    bytesize: Literal[5, 6, 7, 8] = 8
    parity: Literal["N", "E", "O", "M", "S"] = "O"
    stopbits: Literal[1, 2] = 1
    timeout: float = Field(default=1.0, gt=0, le=600, description="s, per read")
    record: str | None = Field(
        default=None, description="JSON-lines file to append every exchange to (golden traffic)")


class CetoniSettings(_Model):
    """QmixSDK bus settings."""

    device_config_path: str = Field(default="", description="Qmix device-configuration folder")
    plugin_search_path: str = Field(default="", description="QmixSDK plugin folder")
    calibration_timeout: float = Field(default=60.0, gt=0, le=3600, description="s")
    sdk_path: str = Field(
        default="", description="folder holding the vendor's 'qmixsdk' Python package, put on "
        "sys.path before it is imported (empty: it must already be importable)")


class BalanceSettings(_Model):
    """Sartorius balance on a serial line, with its pan under tubing node ``vessel``."""

    name: str = "balance"
    model: Literal["sartorius_entris_ii"] = "sartorius_entris_ii"
    serial: SerialSettings
    vessel: str = Field(description="tubing node whose content sits on the pan")
    stable_timeout: float = Field(default=30.0, gt=0, le=3600, description="s to wait for a stable value")
    readability: float = Field(default=0.0001, gt=0, le=1, description="g")
    capacity: float = Field(default=220.0, gt=0, le=100_000, description=(
        "g the balance weighs at most (gross load on the pan); default: the Entris II "
        "BCE224I-1S of the 2023 bench, 220 g (Sartorius Entris II data sheet)"))


class DensimeterSettings(_Model):
    """Anton Paar DMA 4100 M + Lovis 2000 ME, through the LIMS folder exchange or RS-232.

    ``interface = "lims"`` needs ``lims_input_dir`` and ``lims_output_dir``; ``"rs232"`` needs
    ``serial`` (line settings default to the instrument's fixed 9600 8-N-1: a parity not given
    explicitly is ``"N"`` here, not the balance's ``"O"``).
    """

    name: str = "densiVisco"
    instrument: str = Field(description="name of the Instrument (cell) it measures")
    interface: Literal["lims", "rs232"] = "lims"
    lims_input_dir: str | None = Field(
        default=None, description="folder the instrument watches for .lims files (lims)")
    lims_output_dir: str | None = Field(
        default=None, description="folder the instrument exports results into (lims)")
    serial: SerialSettings | None = Field(default=None, description="serial line (rs232)")
    method: str = Field(default="Density_Viscosity", min_length=1, max_length=64,
                        pattern=r"^[A-Za-z0-9_. -]+$", description="instrument method name")
    method_number: int | None = Field(
        default=None, ge=0, le=9999,
        description="rs232: number sent as `start <n>`; none: plain `start`")
    temperature: float = Field(default=298.15, ge=253.15, le=423.15, description=(
        "K, the method's temperature (-20 … 150 °C, wider than any DMA 4100 M method)"))
    temperature_tolerance: float = Field(
        default=0.1, gt=0, le=10, description=(
            "largest accepted |reported − set| cell temperature difference, kelvin (a plain "
            "number: a difference, not a temperature quantity)"))
    repetitions: int = Field(default=3, ge=1, le=100)
    result_timeout: float = Field(default=900.0, gt=0, le=86_400, description="s to wait for the export")

    @model_validator(mode="before")
    @classmethod
    def _no_parity_default(cls, data: object) -> object:
        """The instrument's line is 8-N-1: an unstated parity is ``"N"``."""
        serial = data.get("serial") if isinstance(data, dict) else None
        if isinstance(serial, dict) and "parity" not in serial:
            data = {**data, "serial": {**serial, "parity": "N"}}
        elif isinstance(serial, SerialSettings) and "parity" not in serial.model_fields_set:
            data = {**data, "serial": serial.model_copy(update={"parity": "N"})}
        return data

    @model_validator(mode="after")
    def _interface_endpoints(self) -> DensimeterSettings:
        if self.interface == "lims" and not (self.lims_input_dir and self.lims_output_dir):
            raise ValueError("interface 'lims' needs lims_input_dir and lims_output_dir")
        if self.interface == "rs232" and self.serial is None:
            raise ValueError("interface 'rs232' needs serial settings "
                             "(table densimeter.serial, with url)")
        return self


# --------------------------------------------------------------------------- bench
class BenchSettings(_Model):
    """What the CSV layout does not hold."""

    waste_nodes: tuple[str, ...] = Field(default=("waste_1",), min_length=1, description=(
        "waste nodes; the first takes first portions and rinses"))
    gas_nodes: tuple[str, ...] = Field(default=("ambient",), min_length=1, description=(
        "gas sources; the first is drawn to drain lines"))
    solvent_node: str = "Solvent"
    solvent_chemical: str = Field(default="EMC", description="name of the cleaning solvent")
    solvent_pump: str = Field(default="", description="pump used for cleaning solvent")
    mixer_outlet: str = Field(default="M1.0", description="node where the stocks have merged")
    vial_nodes: tuple[str, ...] = ()
    vial_capacity: float = Field(default=20.0, gt=0, le=1000, description="mL one vial takes")
    solvent_volume: float = Field(default=500.0, gt=0, le=100_000, description=(
        "mL of cleaning solvent in a full solvent bottle (its capacity; a fresh bench ledger "
        "starts full). Default: the 500 mL bottle of the 2023 bench"))
    waste_capacity: float = Field(default=1000.0, gt=0, le=100_000, description=(
        "mL one waste container takes before it must be emptied. The 2023 bench's waste "
        "bottle size is not in the source data: 1 L bottles assumed"))
    waste_capacities: dict[str, Annotated[float, Field(gt=0, le=100_000)]] = Field(
        default_factory=dict, max_length=64, description=(
            "waste node → mL, for containers whose size differs from waste_capacity"))
    reservoir_reserve: float = Field(default=0.0, ge=0, le=1000, description=(
        "mL a stock reservoir keeps that the pumps cannot draw (below the dip tube); a plan "
        "that would draw into it is refused"))
    total_flow: float = Field(default=0.05, gt=0, le=100, description="mL/s, total flow when mixing")
    first_portion_factor: float = Field(
        default=2.0, ge=1, le=100, description="first portion to waste = factor × mixing dead volume"
    )
    flush_factor: float = Field(
        default=1.5, ge=1, le=100, description="sample pushed = factor × (line + cell dead volume)"
    )
    aspirate_flow: float = Field(default=0.1, gt=0, le=100, description="mL/s when filling syringes")
    gas_pump: str = Field(default="", description="pump that pushes gas to drain lines")
    gas_flow: float = Field(default=0.2, gt=0, le=100, description="mL/s when pushing gas or solvent")
    drain_factor: float = Field(
        default=1.5, ge=1, le=100, description="gas pushed = factor × dead volume of the drained route"
    )
    clean_factor: float = Field(
        default=1.2, ge=0, le=100, description="solvent pushed = factor × dead volume of the cleaned route"
    )
    weighing_tolerance: float = Field(
        default=0.05, gt=0, le=1, description="largest relative deviation of the weighed sample volume")
    pump_timeout: float = Field(default=600.0, gt=0, le=86_400, description="s, longest single pump move")
    poll_interval: float = Field(default=0.5, ge=0.001, le=60, description="s between status polls")
    makeable_tolerance: float = Field(
        default=1e-4, ge=0, le=0.5, description="mole-fraction distance still counted as makeable"
    )
    not_makeable_policy: Literal["reject", "closest"] = "reject"
    calibration_file: str = Field(default="calibration.json", description=(
        "JSON file of per-pump delivery factors (asab.actions.calibration); a relative path "
        "is taken relative to the folder of bench.toml"))


class SizingMode(StrEnum):
    """How the planner sizes the first portion, the sample flush and the cleaning
    (``[carryover] sizing``)."""

    PREDICTED = "predicted"  # by the predicted carry-over (asab.ledger.residue)
    FIXED = "fixed"          # by the factors of [settings] (the first slice's protocol)


class CarryoverSettings(_Model):
    """``[carryover]``: residues left in the lines and the cell, and how the protocol is sized
    against them (asab.ledger.residue; physics in its module docstring).

    Defaults: surface tension ≈ 30 mN/m of carbonate electrolytes and the film/wash-out laws
    quoted there; the pocket in the densimeter cell (its filling adapter, ≈ 10 µL) and its
    exchange volume are assumptions (edges.csv notes that fitting volumes are not recorded).
    """

    sizing: SizingMode = Field(default=SizingMode.PREDICTED, description=(
        "'predicted': flush and cleaning sized so that the predicted contamination of the "
        "measured sample stays below `tolerance`; 'fixed': the [settings] factors"))
    tolerance: float = Field(default=1e-3, gt=0, le=0.5, description=(
        "largest predicted deviation of any mole fraction in the cell from the planned one"))
    density_tolerance: float | None = Field(default=2e-4, gt=0, le=0.5, description=(
        "g/cm³: largest predicted change of the measured density by the carry-over (the "
        "cell's predicted content against the planned mix, both by ideal mixing of the "
        "origins); a mole-fraction tolerance alone lets a solvent film of 1e-3 move a dense "
        "sample by ~8e-4 g/cm³, 16× the DMA 4100 M's repeatability. Default: issue 14's "
        "accuracy target (measured densities within 2e-4 of the requested composition's). "
        "Unset: mole fractions only"))
    surface_tension: float = Field(default=0.030, gt=0, le=1, description="N/m")
    wash_rate: float = Field(default=1.75, gt=0, le=100, description=(
        "k of the wash-out survival e^(-kθ)(1 + kθ + (kθ)²/2), θ in tube volumes"))
    cell_wetting: float = Field(default=1.0, ge=0, le=1, description=(
        "film factor of the instrument cells (glass wets: 1)"))
    tube_wetting: float = Field(default=0.5, ge=0, le=1, description=(
        "film factor of PTFE/PFA tubes and valve channels (partial wetting; assumed 0.5)"))
    pockets: dict[str, Annotated[float, Field(ge=0, le=10)]] = Field(
        default_factory=dict, max_length=256, description=(
            "edge label → mL of unswept pocket (a mixed tank); instruments' cells get "
            "`cell_pocket` unless listed here"))
    cell_pocket: float = Field(default=0.010, ge=0, le=10, description=(
        "mL of unswept pocket in a density/viscosity cell (filling adapter; assumed)"))
    pocket_exchange: float = Field(default=2.0, gt=0, le=1000, description=(
        "mL of liquid passing that renew a pocket's content by a factor e (assumed)"))
    salt_viscosity_b: float = Field(default=1.2, ge=0, le=10, description=(
        "L/mol, η = η_solvent·exp(b·c) for a dissolved salt (electrolyte_models.md)"))
    max_flush_factor: float = Field(default=4.0, ge=1, le=100, description=(
        "largest sample push the predicted sizing may choose, × (line + cell)"))
    min_flush_factor: float = Field(default=1.0, ge=0.5, le=100, description=(
        "smallest sample push, × (line + cell): the cell must be filled"))
    blank: bool = Field(default=False, description=(
        "read the cell full of cleaning solvent after each rinse (one repetition) and refuse "
        "further jobs (bench out of service) when it is off its reference density"))
    blank_tolerance: float = Field(default=5e-4, gt=0, le=1, description=(
        "g/cm³ a blank may differ from the solvent's density (chemicals.csv) and count as clean"))


class ServerPorts(_Model):
    """TCP port of each HTTP server of ``asab serve`` (one server per device group)."""

    pumps: int = Field(default=8101, ge=1, le=65535, description="pumps and valves server")
    balance: int = Field(default=8102, ge=1, le=65535, description="balance server")
    densimeter: int = Field(default=8103, ge=1, le=65535,
                            description="densimeter/viscometer server")
    actions: int = Field(default=8104, ge=1, le=65535,
                         description="actions server (formulate, deliver, measure, ...)")

    @model_validator(mode="after")
    def _distinct(self) -> ServerPorts:
        ports = [self.pumps, self.balance, self.densimeter, self.actions]
        if len(set(ports)) != len(ports):
            raise ValueError(f"server ports must differ, got {ports}")
        return self


class ServerSettings(_Model):
    """``[servers]``: where ``asab serve`` listens and the bearer token it requires.

    The token comes from ``token`` or, when that is empty, from the environment variable
    named by ``token_env``; ``asab serve`` refuses to start without one. It is never logged.
    """

    host: str = Field(default="127.0.0.1", description="bind address (loopback by default)")
    ports: ServerPorts = ServerPorts()
    token: SecretStr = Field(default=SecretStr(""),
                             description="bearer token; prefer the environment variable")
    token_env: str = Field(default="ASAB_SERVER_TOKEN",
                           description="environment variable holding the token")
    max_jobs: int = Field(default=200, ge=1, le=100_000, description="finished jobs kept in memory")
    head_timeout: float = Field(default=5.0, gt=0, le=600, description=(
        "s a client has to send a complete request head; slower connections are closed"))
    keep_alive: int = Field(default=5, ge=1, le=600, description=(
        "s an idle keep-alive connection is kept between requests"))
    max_connections: int = Field(default=1000, ge=16, le=100_000, description=(
        "connections each server holds at most (lowered to fit the open-file limit); "
        "beyond it the oldest idle connection is closed"))


class BenchConfig(_Model):
    """Everything asab knows about one bench."""

    name: str
    chemicals: tuple[Chemical, ...]
    stocks: tuple[StockSolution, ...]
    syringes: tuple[Syringe, ...] = ()
    pumps: tuple[Pump, ...] = Field(default=(), description=(
        "may be empty while a bench is being described (asab check-config reports it)"))
    valves: tuple[Valve, ...]
    instruments: tuple[Instrument, ...] = Field(default=(), description=(
        "may be empty while a bench is being described (asab check-config reports it)"))
    tubing: Tubing
    settings: BenchSettings = BenchSettings()
    cetoni: CetoniSettings = CetoniSettings()
    balance: BalanceSettings | None = None
    densimeter: DensimeterSettings | None = None
    servers: ServerSettings = ServerSettings()
    carryover: CarryoverSettings = CarryoverSettings()
    attribution: str = ""

    # -- look-ups (raise KeyError with a clear message) ------------------------------------
    def chemical(self, key: str) -> Chemical:
        """Find a chemical by name or InChIKey (case-insensitive name)."""
        for c in self.chemicals:
            if key == c.inchikey or key.lower() == c.name.lower():
                return c
        raise UnknownName(f"unknown chemical {key!r}{did_you_mean(key, [c.name for c in self.chemicals])}; "
                       + known_names([c.name for c in self.chemicals], "chemicals"))

    def pump(self, name: str) -> Pump:
        return _find(self.pumps, name, "pump")

    def valve(self, name: str) -> Valve:
        return _find(self.valves, name, "valve")

    def syringe(self, name: str) -> Syringe:
        return _find(self.syringes, name, "syringe")

    def stock(self, name: str) -> StockSolution:
        return _find(self.stocks, name, "stock solution")

    def instrument(self, name: str) -> Instrument:
        return _find(self.instruments, name, "instrument")

    def syringe_of(self, pump: str) -> Syringe:
        return self.syringe(self.pump(pump).syringe)


def _find(items, name: str, what: str):
    for item in items:
        if item.name == name:
            return item
    names = [item.name for item in items]
    raise UnknownName(f"unknown {what} {name!r}{did_you_mean(name, names)}; "
                   + known_names(names, f"{what}s"))
