"""``asab simulate``: serve the simulated bench on loopback for ``asab run --hardware``.

The command line of :mod:`simulators.launcher` (also ``python -m simulators``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Optional

import typer

from asab.cli.app import ConfigOpt, app, fail


@app.command()
def simulate(
        workdir: Annotated[Path, typer.Option(
            "--workdir", "-w", help="folder for the LIMS exchange, the qmixsdk shim and bench/")],
        config: ConfigOpt = None,
        speed: Annotated[float, typer.Option(
            help="simulated seconds per wall-clock second")] = 1.0,
        seed: Annotated[int, typer.Option(help="seed of the instruments' noise")] = 0,
        host: Annotated[str, typer.Option(help="interface to bind")] = "127.0.0.1",
        fault: Annotated[Optional[list[str]], typer.Option(
            "--fault", metavar="DEVICE:KIND[:PARAM=VALUE,...]",
            help="inject a fault at start (repeatable), e.g. V3:stuck, "
                 "A0.0:overload:after=0.5, balance:busy:duration=10")] = None,
        ready_file: Annotated[Optional[Path], typer.Option(
            help="JSON written once everything listens (default WORKDIR/ready.json)")] = None,
) -> None:
    """Run the simulated bench as a separate process until Ctrl-C / SIGTERM.

    Serves the balance (and an RS-232 densimeter) on socket:// ports, the
    densimeter's LIMS folders and the CETONI pumps/valves (a qmixsdk shim over
    JSON RPC), and writes WORKDIR/bench, a configuration for the unchanged drivers.

    Faults: --fault DEVICE:KIND[:PARAM=VALUE,...] (repeatable), injected before
    the bench is served. DEVICE by its configured name; KIND (PARAMs, numbers):
    - pump (A0.0): overload (after mL), busy (duration s), no_reply (calls)
    - valve (V3): stuck, slow (delay s), no_reply (calls)
    - vessel (Reservoir3): empty (keep mL)
    - balance: no_reply, garbled (lines), truncated (lines), busy (duration s),
      overload (mass g)
    - densimeter, RS-232: no_reply, garbled, truncated, busy, heating,
      invalid_method, no_new_data (count each), fw_bw (deviation, count)
    - densimeter, LIMS: fw_bw (deviation, count), late_export (delay s),
      half_written, no_export, invalid_method
    e.g. --fault V3:stuck --fault A0.0:overload:after=0.5. An unknown device,
    kind or parameter is refused (exit 1) before anything starts. Catalogue:
    simulators/faults.py.

    Example: asab simulate --workdir /tmp/w --speed 300 &
             asab run --hardware --config /tmp/w/bench
    """
    from asab.config.benches import choose_bench, require_bench_file
    from asab.errors import ConfigError
    from simulators.faults import parse_fault_spec
    from simulators.launcher import LaunchOptions, serve

    logging.getLogger("simulators").setLevel(logging.INFO)
    if not logging.getLogger().handlers:
        logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
    try:
        faults = tuple(parse_fault_spec(f) for f in fault or ())
        choice = choose_bench(config)
        require_bench_file(choice)
        serve(LaunchOptions(choice.path, workdir, speed, seed, host, faults, ready_file))
    except (ConfigError, ValueError, KeyError, OSError) as exc:
        fail(f"cannot start the simulated bench: {exc}")
