"""The instrument core shared by both simulated front ends of the DMA 4100 M + Lovis 2000 ME.

One core, two front ends: :mod:`simulators.antonpaar` (LIMS folder exchange) and
:mod:`simulators.antonpaar_serial` (RS-232 remote control) each parse their own protocol and
ask this core for the physics:

* **thermostat** — the cell temperature T (K) approaches the set point T_set first-order,
  dT/dt = (T_set − T)/τ, advanced on every clock tick; the cell counts as *settled* once
  |T − T_set| ≤ ``settled_band`` (the RS-232 front end answers ``heating`` before that);
* **repetitions** — one reading per repetition of what is in the cell (snapshot taken by the
  front end at measurement start): density from :mod:`simulators.physics` at the cell
  temperature plus Gaussian noise; the Lovis forward and backward rolling times
  t = η / (K·(ρ_ball − ρ)) each with relative noise, and the Lovis condition DERIVED from
  them: ``FW/BW dev. too high`` when |t_FW − t_BW| / mean > ``fw_bw_tolerance``;
* **filling check** — too much gas or too little liquid: every condition ``Filling error``;
* **faults shared by both front ends** — ``fw_bw``: the ball rolls unevenly (a bubble or
  particle in the capillary), the backward time is longer by ``deviation`` (relative).

Parameters: ``simulators/data/anton_paar_dma4100m.toml`` (sources and assumptions there).
"""

from __future__ import annotations

import logging
import math
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Protocol

import numpy as np

from asab.config.models import Chemical
from simulators import physics
from simulators.liquid import Liquid

log = logging.getLogger(__name__)

KELVIN = 273.15
"""0 °C in K (exact, SI)."""


class ListenerClock(Protocol):
    """A simulated clock that calls ``listener(now, dt)`` as time advances."""

    def now(self) -> float: ...

    def add_listener(self, listener: Callable[[float, float], None]) -> None: ...

    def remove_listener(self, listener: Callable[[float, float], None]) -> None: ...


@dataclass(frozen=True)
class MethodSpec:
    """An instrument method: temperature (K), repetitions, duration (s) of all repetitions,
    with Lovis or not, and its number for the RS-232 ``start [method_no]``."""

    name: str
    temperature: float
    repetitions: int
    duration: float
    viscosity: bool = True
    number: int | None = None

    @property
    def repetition_duration(self) -> float:
        """s one repetition takes (one RS-232 ``start`` … ``Measurement finished`` cycle)."""
        return self.duration / self.repetitions


@dataclass(frozen=True)
class SerialIdentity:
    """What the RS-232 front end reports and how fast it answers (see the data file)."""

    serial_number: str
    model: str
    firmware: str
    protocol: str
    response_delay: float
    default_method: str


@dataclass(frozen=True)
class DMA4100Params:
    """Instrument parameters (see ``anton_paar_dma4100m.toml`` for meaning and sources)."""

    methods: Mapping[str, MethodSpec]
    density_noise: float
    temperature_noise: float
    rolling_time_noise: float
    fw_bw_tolerance: float
    max_gas_fraction: float
    min_liquid_volume: float
    conditions: Mapping[str, str]
    epoch: datetime
    partial_write_gap: float
    initial_temperature: float = 298.15
    time_constant: float = 60.0
    settled_band: float = 0.02
    min_temperature: float = 273.15
    max_temperature: float = 373.15
    serial: SerialIdentity | None = None

    def method_by_number(self, number: int) -> MethodSpec | None:
        """The method with RS-232 number ``number`` (``None`` if there is none)."""
        return next((m for m in self.methods.values() if m.number == number), None)


def _method(name: str, m: Mapping) -> MethodSpec:
    number = m.get("number")
    return MethodSpec(name, float(m["temperature"]), int(m["repetitions"]), float(m["duration"]),
                      bool(m.get("viscosity", True)), None if number is None else int(number))


def load_params(path: str | Path | None = None) -> DMA4100Params:
    """Read instrument parameters (default: packaged ``data/anton_paar_dma4100m.toml``).

    Raises:
        OSError, KeyError, ValueError: unreadable file or missing/malformed entries.
    """
    if path is None:
        text = resources.files("simulators").joinpath("data/anton_paar_dma4100m.toml").read_text("utf-8")
    else:
        text = Path(path).read_text(encoding="utf-8")
    d = tomllib.loads(text)
    export, thermo, rs = d["export"], d["thermostat"], d["rs232"]
    return DMA4100Params(
        methods={name: _method(name, m) for name, m in d["methods"].items()},
        density_noise=float(d["noise"]["density"]),
        temperature_noise=float(d["noise"]["temperature"]),
        rolling_time_noise=float(d["noise"]["rolling_time"]),
        fw_bw_tolerance=float(d["lovis"]["fw_bw_tolerance"]),
        max_gas_fraction=float(d["filling"]["max_gas_fraction"]),
        min_liquid_volume=float(d["filling"]["min_liquid_volume"]),
        conditions={k: v for k, v in export.items() if isinstance(v, str) and k != "epoch"},
        epoch=datetime.fromisoformat(export["epoch"]),
        partial_write_gap=float(export["partial_write_gap"]),
        initial_temperature=float(thermo["initial_temperature"]),
        time_constant=float(thermo["time_constant"]),
        settled_band=float(thermo["settled_band"]),
        min_temperature=float(thermo["min_temperature"]),
        max_temperature=float(thermo["max_temperature"]),
        serial=SerialIdentity(str(rs["serial_number"]), str(rs["model"]), str(rs["firmware"]),
                              str(rs["protocol"]), float(rs["response_delay"]),
                              str(rs["default_method"])),
    )


@dataclass
class Reading:
    """One repetition's values: g/cm³, K (cell temperature as reported), mPa·s, s."""

    density: float | None
    density_condition: str
    temperature: float
    viscosity: float | None = None
    lovis_condition: str = ""
    time_fw: float | None = None
    time_bw: float | None = None


@dataclass
class FwBwFault:
    """Uneven rolling: t_BW = t_FW·(1 + deviation) for the next ``count`` repetitions (all if None)."""

    deviation: float
    count: int | None = None


class DMA4100Core:
    """Physical state and measurement model of the instrument (see module docstring).

    Args:
        cell: returns what is in the measuring cell now.
        chemicals: InChIKey → chemical data for the physics.
        clock: simulated clock; the core registers its :meth:`tick` (thermostat) as a listener.
        params: instrument parameters (default :func:`load_params`).
        seed: seed of the numpy Generator used for all noise.
        model: physics parameters (default :func:`simulators.physics.default_model`).
    """

    def __init__(
        self, cell: Callable[[], Liquid], chemicals: Mapping[str, Chemical], clock: ListenerClock,
        params: DMA4100Params | None = None, seed: int = 0, model: physics.ElectrolyteModel | None = None,
    ) -> None:
        self.cell = cell
        self.chemicals = chemicals
        self.clock = clock
        self.params = params or load_params()
        self.model = model or physics.default_model()
        self.set_point = self.params.initial_temperature
        self.temperature = self.params.initial_temperature
        self.fw_bw: FwBwFault | None = None
        self._rng = np.random.default_rng(seed)
        clock.add_listener(self.tick)

    def close(self) -> None:
        """Unregister from the clock."""
        self.clock.remove_listener(self.tick)

    # ----------------------------------------------------------------- thermostat
    def tick(self, now: float, dt: float) -> None:
        """Clock listener: T ← T_set + (T − T_set)·exp(−dt/τ) (exact first-order step)."""
        self.temperature = self.set_point + (self.temperature - self.set_point) * math.exp(
            -dt / self.params.time_constant)

    @property
    def settled(self) -> bool:
        """True once the cell is within ``settled_band`` K of the set point."""
        return abs(self.temperature - self.set_point) <= self.params.settled_band

    def in_range(self, temperature: float) -> bool:
        """True if ``temperature`` (K) is a set point the thermostat accepts."""
        return self.params.min_temperature <= temperature <= self.params.max_temperature

    # ----------------------------------------------------------------- measurement
    def filling_ok(self, content: Liquid) -> bool:
        """False with too little liquid or too much gas in the cell."""
        total = content.total_volume
        if content.volume < self.params.min_liquid_volume or total <= 0:
            return False
        return content.gas / total <= self.params.max_gas_fraction

    def measure(self, content: Liquid, temperature: float, repetitions: int,
                viscosity: bool = True) -> list[Reading]:
        """Readings of ``repetitions`` repetitions of ``content`` at cell temperature ``temperature`` K."""
        cond = self.params.conditions
        if not self.filling_ok(content):
            bad = cond["filling_error"]
            return [Reading(None, bad, temperature, None, bad) for _ in range(repetitions)]
        try:
            rho = physics.density(content.moles, temperature, self.chemicals, self.model)
            eta = physics.viscosity(content.moles, temperature, self.chemicals, self.model) if viscosity else None
        except (ValueError, KeyError) as exc:
            log.warning("physics model failed for the cell content: %s", exc)
            err = cond["model_error"]
            return [Reading(None, err, temperature, None, err) for _ in range(repetitions)]
        return [self._repetition(rho, eta, temperature) for _ in range(repetitions)]

    def _repetition(self, rho: float, eta: float | None, temp: float) -> Reading:
        p, cond = self.params, self.params.conditions
        measured = rho + self._rng.normal(0.0, p.density_noise)
        t_cell = temp + self._rng.normal(0.0, p.temperature_noise)
        rep = Reading(float(measured), cond["valid"], float(t_cell), None, cond["not_measured"])
        if eta is None:
            return rep
        t = physics.rolling_time(eta, rho, self.model)
        fw, bw = t * (1.0 + self._rng.normal(0.0, p.rolling_time_noise, size=2))
        bw *= 1.0 + self._uneven_rolling()
        rep.time_fw, rep.time_bw = float(fw), float(bw)
        if abs(fw - bw) / (0.5 * (fw + bw)) > p.fw_bw_tolerance:
            rep.lovis_condition = cond["fw_bw_error"]
        else:
            rep.lovis_condition = cond["valid"]
            rep.viscosity = physics.rolling_viscosity(0.5 * (fw + bw), measured, self.model)
        return rep

    def _uneven_rolling(self) -> float:
        """Relative extra backward time of the ``fw_bw`` fault (0 without it)."""
        fault = self.fw_bw
        if fault is None:
            return 0.0
        if fault.count is not None:
            fault.count -= 1
            if fault.count <= 0:
                self.fw_bw = None
        return fault.deviation
