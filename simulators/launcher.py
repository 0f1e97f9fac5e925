"""``python -m simulators`` / ``asab simulate``: the simulated bench as a separate process.

One world on a :class:`~simulators.clock.RealTimeClock` (``speed`` simulated s per wall s)
behind every device simulator, served on loopback so that the *unchanged* hardware drivers
reach it from another process (``asab run --hardware --config W/bench``):

* each serial device (the balance; the densimeter when its interface is ``rs232``) on its own
  TCP port (:class:`~simulators.netserial.SerialBridge`, pyserial ``socket://HOST:PORT``);
* the densimeter's LIMS folders under the work folder ``W`` (``W/lims_in``, ``W/lims_out``);
* the CETONI pumps and valves through a JSON-RPC server (:mod:`simulators.qmixsdk.remote`)
  and a ``qmixsdk`` shim package written to ``W/sdk/qmixsdk``;
* ``W/bench/``: the bench configuration with every endpoint rewritten and its poll interval
  and wait bounds scaled to the speed (:mod:`simulators.exported_config`).

The ready file (default ``W/ready.json``) is written atomically once everything listens and
removed at shutdown; SIGTERM or SIGINT stop everything (servers closed, pumps stopped).
Example::

    python -m simulators --config hardware_configs/hiu_2023 --workdir /tmp/w --speed 300
    asab run --hardware --config /tmp/w/bench --jobs jobs.json --out /tmp/w/run
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import secrets
import signal
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from asab.config.loader import load_bench
from simulators.bench import SimulatedBench, start_simulation
from simulators.exported_config import Endpoints, write_bench_config
from simulators.faults import check_fault, parse_fault_spec
from simulators.netserial import SerialBridge
from simulators.qmixsdk.remote import SdkServer, write_shim
from simulators.urlhandler import SerialDevice

log = logging.getLogger(__name__)

READY_FILE = "ready.json"
LOOPBACK = ("127.0.0.1", "::1", "localhost")
FAULT_HELP = ("inject a fault at start (repeatable): DEVICE:KIND[:PARAM=VALUE,...], e.g. "
              "V3:stuck, A0.0:overload:after=0.5, balance:busy:duration=10; DEVICE is a pump, "
              "valve, vessel, the balance or the densimeter by its configured name; kinds and "
              "parameters: simulators/faults.py")
"""``--fault`` help, shared by ``python -m simulators`` and ``asab simulate``."""

Fault = tuple[str, str] | tuple[str, str, Mapping[str, float]]
"""``(device, kind)`` or ``(device, kind, params)`` (:func:`simulators.faults.parse_fault_spec`)."""


@dataclass(frozen=True)
class LaunchOptions:
    """What ``python -m simulators`` was asked to do (times in s, speed dimensionless)."""

    config: Path
    workdir: Path
    speed: float = 1.0
    seed: int = 0
    host: str = "127.0.0.1"
    faults: tuple[Fault, ...] = ()
    ready_file: Path | None = None

    @property
    def ready_path(self) -> Path:
        return self.ready_file or self.workdir / READY_FILE


def _fault_parts(fault: Fault) -> tuple[str, str, dict[str, float]]:
    device, kind, *rest = fault
    return device, kind, dict(rest[0]) if rest else {}


@dataclass
class SimulatorHost:
    """The running services of one simulated bench (see :func:`launch`)."""

    options: LaunchOptions
    sim: SimulatedBench
    rpc: SdkServer
    bridges: dict[str, SerialBridge] = field(default_factory=dict)
    config_dir: Path = Path()
    ready: dict[str, Any] = field(default_factory=dict)
    _closed: bool = False

    def close(self) -> None:
        """Close the RPC server (buses its clients left open are closed), the serial ports,
        stop every pump and the clock, and remove the ready file (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self.rpc.close()
        for bridge in self.bridges.values():
            bridge.close()
        for pump in self.sim.config.pumps:
            try:
                self.sim.world.stop_pump(pump.name)
            except Exception as exc:  # noqa: BLE001 - try every pump
                log.error("could not stop pump %s: %s", pump.name, exc)
        self.sim.close()
        self.options.ready_path.unlink(missing_ok=True)
        log.info("simulated bench stopped")


def launch(options: LaunchOptions) -> SimulatorHost:
    """Start the simulated bench and its servers, write ``W/bench`` and the ready file.

    Raises:
        ConfigError: the source configuration (or the written one) does not load.
        ValueError: speed ≤ 0, or a fault naming no device of the bench or a kind or
            parameter the catalogue (:mod:`simulators.faults`) does not offer for it; checked
            before any server starts.
        OSError: a port cannot be bound or a file written.
    """
    if not options.speed > 0:
        raise ValueError(f"speed must be > 0 (simulated s per wall s), not {options.speed}")
    if options.host not in LOOPBACK:
        log.warning("binding %s: the serial ports have no authentication (pyserial socket:// "
                    "is raw bytes); anyone who reaches this interface can drive the balance",
                    options.host)
    workdir = options.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    config = load_bench(options.config)
    sim = start_simulation(config, workdir, speed=options.speed, seed=options.seed)
    rpc: SdkServer | None = None
    host: SimulatorHost | None = None
    try:
        faults = [_fault_parts(f) for f in options.faults]
        for device, kind, params in faults:
            check_fault(sim.config, sim.world.vessel_names(), device, kind, params)
        rpc = SdkServer(sim.sdk, secrets.token_hex(16), host=options.host).start()
        host = SimulatorHost(options, sim, rpc)
        for device, sim_device in _serial_devices(sim).items():
            host.bridges[device] = SerialBridge(sim_device, device, host=options.host).start()
        for device, kind, params in faults:
            sim.inject(device, kind, **params)
            log.warning("fault injected: %s %s %s", device, kind, params or "")
        host.config_dir = _write_config(options, sim, host, workdir)
        host.ready = _ready_info(options, host, workdir)
        _write_json_atomically(options.ready_path, host.ready)
    except BaseException:
        if host is not None:
            host.close()
        else:
            if rpc is not None:
                rpc.close()
            sim.close()
        raise
    log.info("simulated bench ready: %s", json.dumps(host.ready["ports"]))
    return host


def _serial_devices(sim: SimulatedBench) -> dict[str, SerialDevice]:
    """Configuration section → serial simulator: the balance, an ``rs232`` densimeter."""
    out: dict[str, SerialDevice] = {}
    if sim.balance is not None:
        out["balance"] = sim.balance
    dens = sim.config.densimeter
    if dens is not None and dens.interface == "rs232":
        if not isinstance(sim.densimeter, SerialDevice):
            raise ValueError("the simulated densimeter does not speak RS-232 (receive/transmit)")
        out["densimeter"] = sim.densimeter
    return out


def _write_config(options: LaunchOptions, sim: SimulatedBench, host: SimulatorHost,
                  workdir: Path) -> Path:
    """Write the ``qmixsdk`` shim and ``W/bench``; check that the written bench loads."""
    sdk_path = write_shim(workdir / "sdk", options.host, host.rpc.port, host.rpc.token)
    dens = sim.config.densimeter
    lims = None
    if dens is not None and dens.interface == "lims":
        lims = (str(dens.lims_input_dir), str(dens.lims_output_dir))
    endpoints = Endpoints(serial_urls={d: b.url for d, b in host.bridges.items()}, lims=lims,
                          sdk_path=str(sdk_path))
    target = workdir / "bench"
    note = (f"Written by the asab bench simulator (pid {os.getpid()}, speed {options.speed:g}) "
            f"from {options.config.resolve()}.\nEndpoints point at the simulators; poll interval "
            "and wait bounds are scaled to the speed (simulators/exported_config.py).")
    write_bench_config(options.config, target, sim.config, endpoints, options.speed, note)
    load_bench(target)  # the drivers will load it: fail here, not there
    return target


def _ready_info(options: LaunchOptions, host: SimulatorHost, workdir: Path) -> dict[str, Any]:
    dens = host.sim.config.densimeter
    lims = None
    if dens is not None and dens.interface == "lims":
        lims = {"input": dens.lims_input_dir, "output": dens.lims_output_dir}
    return {
        "pid": os.getpid(),
        "host": options.host,
        "speed": options.speed,
        "seed": options.seed,
        "config_dir": str(host.config_dir),
        "sdk_path": str(workdir / "sdk"),
        "ports": {"qmixsdk": host.rpc.port, **{d: b.port for d, b in host.bridges.items()}},
        "serial_urls": {d: b.url for d, b in host.bridges.items()},
        "lims": lims,
        "faults": [list(_fault_parts(f)) for f in options.faults],
        "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }


def _write_json_atomically(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2), encoding="utf-8")
    tmp.replace(path)


def serve(options: LaunchOptions, stop: threading.Event | None = None) -> SimulatorHost:
    """:func:`launch`, then block until SIGTERM/SIGINT (or ``stop`` is set), then close.

    Signal handlers are installed only when called from the main thread.
    """
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda signum, frame: stop.set())
    host = launch(options)
    try:
        while not stop.wait(0.2):
            pass
        log.info("shutting down")
    finally:
        host.close()
    return host


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m simulators",
        description="Serve a simulated bench on loopback for the unchanged hardware drivers.")
    parser.add_argument("--config", type=Path, required=True, help="bench folder or bench.toml")
    parser.add_argument("--workdir", type=Path, required=True,
                        help="folder for LIMS exchange, the qmixsdk shim and bench/")
    parser.add_argument("--speed", type=float, default=1.0,
                        help="simulated seconds per wall-clock second (default 1)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the instruments' noise")
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default loopback)")
    parser.add_argument("--fault", action="append", default=[],
                        metavar="DEVICE:KIND[:PARAM=VALUE,...]", help=FAULT_HELP)
    parser.add_argument("--ready-file", type=Path, default=None,
                        help=f"JSON written once everything listens (default W/{READY_FILE})")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m simulators``; returns the exit code (1: bad input)."""
    from asab.errors import ConfigError

    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        faults = tuple(parse_fault_spec(f) for f in args.fault)
        serve(LaunchOptions(args.config, args.workdir, args.speed, args.seed, args.host,
                            faults, args.ready_file))
    except (ConfigError, ValueError, KeyError, OSError) as exc:
        log.error("cannot start the simulated bench: %s", exc)
        return 1
    return 0
