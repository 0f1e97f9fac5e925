"""Composition root: the simulated bench behind the real drivers.

This module (with test fixtures) is the only asab code that imports ``simulators``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

from asab.actions.bench import Bench, open_bench
from asab.actions.local_estop import listening
from asab.config import BenchConfig
from asab.ledger.store import LedgerStore
from asab.tasks import CooperativeClock

log = logging.getLogger(__name__)


@contextlib.contextmanager
def simulated_bench(config: BenchConfig, workdir: Path, *, speed: float = 0.0,
                    seed: int = 0, state: Path | None = None,
                    ledger_dir: Path | None = None) -> Iterator[Bench]:
    """Start the simulators for ``config``, open the real drivers on them, yield the bench.

    The drivers wait on a :class:`~asab.tasks.CooperativeClock` over the simulation's clock,
    so a pipelined run (:func:`asab.runner.run_jobs`) can share the bench between tasks.

    With ``ledger_dir`` (the bench's state folder) the bench ledger is read from and written
    to ``ledger_dir/ledger.json``, and the simulated world starts from it: the physical bench
    did not change while the process was down. Without it the ledger lives in memory and the
    world starts as a fresh bench. ``bench.operator_hook(ledger, subject)`` applies an
    operator's correction made while the bench is open (the actions server's
    ``POST /bench/...``) to the simulated world as well.

    While it is open, ``asab estop`` reaches it (:mod:`asab.actions.local_estop`; ``state``
    is the run or tenant folder it is registered under). On exit every pump is stopped, the
    bus closed and the simulators detached.
    """
    from simulators.bench import start_simulation

    store = LedgerStore(ledger_dir, config)
    sim = start_simulation(config, workdir, speed=speed, seed=seed,
                           ledger=store.current() if store.exists else None)
    try:
        bench = open_bench(sim.config, CooperativeClock(sim.clock), cetoni_sdk=sim.sdk,
                           ledger=store)
        bench.simulation = sim  # type: ignore[attr-defined]  # for inspection in tests/demos
        bench.operator_hook = _mirror_into(sim.world)  # type: ignore[attr-defined]
        try:
            with listening(bench, name=config.name, state=state):
                yield bench
        finally:
            bench.close()
    finally:
        sim.close()


def _mirror_into(world):
    """``hook(ledger, subject)``: an operator's correction of vessel or segment ``subject``
    (``POST /bench/refill`` …) done in the simulated world too, as the operator's hands
    would on the real bench; the rest of the world is left as it is."""
    def hook(ledger, subject: str) -> None:
        world.load_ledger(SimpleNamespace(
            vessels={k: v for k, v in ledger.vessels.items() if k == subject}, syringes={},
            lines={k: v for k, v in ledger.lines.items() if k == subject},
            films={k: v for k, v in ledger.films.items() if k == subject},
            pockets={k: v for k, v in ledger.pockets.items() if k == subject}))
    return hook


@contextlib.contextmanager
def hardware_bench(config: BenchConfig, bench_dir: Path | None = None, *,
                   state: Path | None = None, ledger_dir: Path | None = None) -> Iterator[Bench]:
    """Open the real instruments named in ``config`` on the wall clock (vendor SDKs needed).

    With ``bench_dir`` (the folder of bench.toml), the pump calibration file
    (``settings.calibration_file``, written by the calibration action) is applied when present.
    While it is open, ``asab estop`` reaches it (``state``: as for :func:`simulated_bench`).
    ``ledger_dir``: the bench's state folder holding its ledger (None: in memory).

    Raises:
        TransportError: the vendor's ``qmixsdk`` is not installed, or a port does not open.
        ConfigError: the calibration file exists but is invalid.
    """
    from asab.actions.calibration import apply_calibration, calibration_path
    from asab.clock import RealClock

    bench = open_bench(config, CooperativeClock(RealClock()),
                       ledger=LedgerStore(ledger_dir, config))
    try:
        if bench_dir is not None and calibration_path(config, bench_dir).is_file():
            factors = apply_calibration(bench, calibration_path(config, bench_dir))
            log.info("pump calibration applied: %s", factors)
        with listening(bench, name=config.name, state=state):
            yield bench
    finally:
        bench.close()
