"""Wiring of a whole simulated bench: one world, one clock, every device simulator.

Used by the composition root (``asab.cli.wiring``) and test fixtures. The returned
:class:`SimulatedBench` carries a copy of the bench configuration whose device endpoints point
at the simulators (``simbench://`` serial URL, LIMS folders under ``workdir``), so the real
drivers open them unchanged.
"""

from __future__ import annotations

import dataclasses
import uuid
from datetime import datetime
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from asab.config import BenchConfig
from simulators import urlhandler
from simulators.antonpaar import DMA4100Simulator
from simulators.antonpaar import load_params as load_dma_params
from simulators.clock import RealTimeClock, VirtualClock
from simulators.qmixsdk import make_qmixsdk_for_bench
from simulators.sartorius import EntrisIISimulator
from simulators.world import World


@dataclass
class SimulatedBench:
    """The simulated devices of one bench and the configuration that reaches them.

    Attributes:
        config: bench configuration with endpoints rewritten to the simulators.
        clock: :class:`VirtualClock` (instant) or a started :class:`RealTimeClock`.
        world: the physical state behind every device.
        sdk: the ``qmixsdk`` stand-in namespace to inject into the CETONI driver.
        balance: the Entris II simulator (or ``None``).
        densimeter: the DMA 4100 M simulator (or ``None``).
    """

    config: BenchConfig
    clock: Any
    world: World
    sdk: SimpleNamespace
    balance: EntrisIISimulator | None = None
    densimeter: DMA4100Simulator | None = None
    serial_names: list[str] = field(default_factory=list)

    def inject(self, device: str, kind: str, **params: float) -> None:
        """Inject fault ``kind`` into ``device`` (catalogue: :mod:`simulators.faults`).

        Args:
            device: a pump or CETONI valve name (or its SDK device name), the balance's or the
                densimeter's configured name, or a vessel node (stock reservoir, solvent) for
                ``"empty"``.
            kind: fault kind, e.g. ``"overload"``, ``"stuck"``, ``"no_reply"``, ``"empty"``.
            **params: the kind's parameters (e.g. ``after=0.5`` mL, ``duration=10`` s).

        Raises:
            KeyError: no simulated device or vessel of that name.
            ValueError: the device does not know that fault kind or parameter.
        """
        target = self._fault_target(device)
        if target is None:
            raise KeyError(f"no simulated device or vessel named {device!r}")
        kind_of, sim = target
        if kind_of in ("sdk", "world"):  # simulators of several devices: name first
            sim.inject(device, kind, **params)
        elif not hasattr(sim, "inject"):
            raise ValueError(f"{device}: this simulator takes no injected faults")
        else:
            sim.inject(kind, **params)

    def clear_faults(self) -> None:
        """Remove every injected fault from every simulator (emptied vessels are refilled)."""
        self.sdk.clear_faults()
        self.world.clear_faults()
        for sim in (self.balance, self.densimeter):
            if sim is not None and hasattr(sim, "clear_faults"):
                sim.clear_faults()

    def _fault_target(self, device: str) -> tuple[str, Any] | None:
        cfg = self.config
        if cfg.balance is not None and device == cfg.balance.name and self.balance is not None:
            return "device", self.balance
        if (cfg.densimeter is not None and device == cfg.densimeter.name
                and self.densimeter is not None):
            return "device", self.densimeter
        cetoni = {p.name for p in cfg.pumps} | {p.device for p in cfg.pumps if p.device}
        cetoni |= {v.name for v in cfg.valves if v.driver == "cetoni"}
        cetoni |= {v.device for v in cfg.valves if v.driver == "cetoni" and v.device}
        if device in cetoni:
            return "sdk", self.sdk
        if device in self.world.vessel_names():
            return "world", self.world
        return None

    def close(self) -> None:
        """Detach serial simulators and stop a real-time clock (idempotent)."""
        for name in self.serial_names:
            urlhandler.unregister(name)
        self.serial_names.clear()
        if self.densimeter is not None:
            self.densimeter.close()
        if isinstance(self.clock, RealTimeClock):
            self.clock.stop()


def start_simulation(config: BenchConfig, workdir: str | Path, *, speed: float = 0.0,
                     seed: int = 0, ledger: Any = None) -> SimulatedBench:
    """Build the simulated bench for ``config``.

    Args:
        config: the bench as configured for hardware.
        workdir: folder for the densimeter's LIMS exchange folders.
        speed: 0 for a virtual clock (waits are instant), else simulated seconds per
            wall-clock second on a real-time clock.
        seed: seed of the instruments' noise.
        ledger: a bench ledger (:class:`asab.ledger.BenchLedger`) the world starts from
            (vessels, syringes, lines); None: a fresh bench.
    """
    clock: Any = VirtualClock() if speed <= 0 else RealTimeClock(speed=speed)
    world = World(config, clock, solvent_volume=config.settings.solvent_volume)
    if ledger is not None:
        world.load_ledger(ledger)
    sdk = make_qmixsdk_for_bench(world, clock, config)
    updates: dict[str, Any] = {}
    sim = SimulatedBench(config=config, clock=clock, world=world, sdk=sdk)
    if config.balance is not None:
        vessel = config.balance.vessel
        sim.balance = EntrisIISimulator(lambda: world.vessel_mass(vessel), clock)
        name = f"{config.balance.name}-{uuid.uuid4().hex[:8]}"
        urlhandler.install()
        urlhandler.register(name, sim.balance, clock)
        sim.serial_names.append(name)
        serial = config.balance.serial.model_copy(update={"url": f"simbench://{name}"})
        updates["balance"] = config.balance.model_copy(update={"serial": serial})
    if config.densimeter is not None:
        dens = config.densimeter
        chemicals = {c.inchikey: c for c in config.chemicals}
        # the instrument's own clock reads the wall-clock date at start plus bench time
        params = dataclasses.replace(load_dma_params(), epoch=datetime.now().replace(microsecond=0))
        cell = lambda: world.instrument_contents(dens.instrument)  # noqa: E731
        if dens.interface == "rs232":
            from simulators.antonpaar_serial import DMA4100SerialSimulator

            sim.densimeter = DMA4100SerialSimulator(cell, chemicals, clock, params=params, seed=seed)
            name = f"{dens.name}-{uuid.uuid4().hex[:8]}"
            urlhandler.install()
            urlhandler.register(name, sim.densimeter, clock)
            sim.serial_names.append(name)
            serial = dens.serial.model_copy(update={"url": f"simbench://{name}"})
            updates["densimeter"] = dens.model_copy(update={"serial": serial})
        else:
            lims_in, lims_out = Path(workdir) / "lims_in", Path(workdir) / "lims_out"
            lims_in.mkdir(parents=True, exist_ok=True)
            lims_out.mkdir(parents=True, exist_ok=True)
            sim.densimeter = DMA4100Simulator(cell, chemicals, clock, lims_in, lims_out,
                                              params=params, seed=seed)
            updates["densimeter"] = dens.model_copy(update={
                "lims_input_dir": str(lims_in), "lims_output_dir": str(lims_out)})
    sim.config = config.model_copy(update=updates)
    if isinstance(clock, RealTimeClock):
        clock.start()
    return sim
