"""The fault matrix: every injectable device fault × what the bench must do about it.

Each cell injects one fault (``SimulatedBench.inject``; catalogue in ``simulators/faults.py``)
into the simulated 2023 bench — before the job, or when the job reaches a given step — runs a
one-stock job (pure EMC: pump D0.0, valve V3, Reservoir3) through the real drivers, clears the
fault and runs the same job again. For every cell:

* the record says ``failed`` with a reason, and its error names the device and the cause
  (exception type, and ``cause`` for device errors) — or, for a fault the bench legitimately
  rides out (a transient garble recovered by a safe re-read, a late export within the
  timeout), the job succeeds and the cell says so explicitly;
* every pump in the world is stopped and no reservoir or the solvent is joined to a waste
  through the valves' real (world) positions; when the bench stays in service the reservoirs
  are closed off (nothing left to park);
* the next job succeeds, or — where the bench cannot be made safe (a stuck valve, a pump that
  does not answer) — the bench is out of service and the next job is refused.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest

from asab.actions.safety import sinks, sources
from asab.requests import load_jobs
from asab.runner import run_jobs
from asab.tubing import joins, parking_positions

from conftest import HIU_2023

EMC = "JBTWLSYIZRCDFO-UHFFFAOYSA-N"
PUMP, VALVE, RESERVOIR = "D0.0", "V3", "Reservoir3"  # the EMC stock's pump, valve, bottle

Outcome = Literal["failed", "out_of_service", "succeeded"]


@dataclass(frozen=True)
class Cell:
    """One fault and the outcome the bench must reach.

    Attributes:
        device: name given to ``SimulatedBench.inject``.
        kind: fault kind.
        outcome: "failed" (next job runs), "out_of_service" (next job refused) or "succeeded".
        error: expected exception type name in the record (``None`` when the job succeeds).
        error_device: device the error must name.
        cause: expected ``cause`` of a DeviceError (``None`` for transport errors).
        at: job step at which the fault is injected ("" = before the job).
        params: fault parameters.
    """

    device: str
    kind: str
    outcome: Outcome
    error: str | None = None
    error_device: str | None = None
    cause: str | None = None
    at: str = ""
    params: dict[str, float] = field(default_factory=dict)

    @property
    def id(self) -> str:
        extra = ",".join(f"{k}={v:g}" for k, v in self.params.items())
        return f"{self.device}:{self.kind}" + (f":{extra}" if extra else "")


DRIVE = "DeviceFault"
CELLS = [
    # pumps
    Cell(PUMP, "overload", "failed", DRIVE, PUMP, "drive fault", params={"after": 0.5}),
    Cell(PUMP, "overload", "failed", DRIVE, PUMP, "drive fault", at="deliver"),
    Cell(PUMP, "busy", "failed", "DeviceBusy", PUMP, "busy"),
    Cell(PUMP, "no_reply", "out_of_service", "DeviceError", PUMP, "sdk error", at="prime"),
    Cell(PUMP, "no_reply", "succeeded", at="prime", params={"calls": 1}),  # re-read
    Cell(RESERVOIR, "empty", "failed", "DeviceError", "densiVisco", "no valid value"),
    # valves
    Cell(VALVE, "stuck", "out_of_service", DRIVE, VALVE, "valve did not reach position"),
    Cell("V8", "stuck", "out_of_service", DRIVE, "V8", "valve did not reach position"),
    Cell(VALVE, "slow", "failed", DRIVE, VALVE, "valve did not reach position"),
    Cell(VALVE, "no_reply", "out_of_service", "DeviceError", VALVE, "sdk error", at="mix"),
    # balance (read when the sample has been drained onto it)
    Cell("balance", "no_reply", "failed", "TransportTimeout", "balance", at="drain"),
    Cell("balance", "garbled", "failed", "FrameError", "balance", at="drain"),
    Cell("balance", "garbled", "succeeded", at="drain", params={"lines": 1}),
    Cell("balance", "truncated", "failed", "FrameError", "balance", at="drain"),
    Cell("balance", "truncated", "succeeded", at="drain", params={"lines": 1}),
    Cell("balance", "overload", "failed", DRIVE, "balance", "overload", at="deliver"),
    Cell("balance", "busy", "succeeded", at="drain", params={"duration": 5}),
    Cell("balance", "busy", "failed", "TransportTimeout", "balance", at="drain",
         params={"duration": 60}),
    # densimeter (LIMS front end)
    Cell("densiVisco", "invalid_method", "failed", "DeviceError", "densiVisco", "job rejected"),
    Cell("densiVisco", "fw_bw", "succeeded"),  # Lovis values invalid, density valid
    Cell("densiVisco", "late_export", "succeeded"),  # 200 s late, within the 900 s timeout
    Cell("densiVisco", "late_export", "failed", "TransportTimeout", "densiVisco",
         params={"delay": 2000}),
    Cell("densiVisco", "half_written", "succeeded"),  # read only once complete
    Cell("densiVisco", "no_export", "failed", "TransportTimeout", "densiVisco"),
    # densimeter (RS-232 front end): only on a bench whose densimeter speaks RS-232
    *(Cell("densiVisco", k, "failed", None, "densiVisco", at="measure")
      for k in ("heating", "no_new_data", "no_reply", "garbled")),
]
RS232_KINDS = {"heating", "no_new_data", "no_reply", "garbled", "truncated", "busy"}


FAST = {"gas_flow": 0.8, "aspirate_flow": 0.5, "poll_interval": 2.0}
"""Bench settings that keep the matrix quick: gas and aspiration near the 10 mL syringe's
drive limit (1.05 mL/s) and 2 s status polls (with 2 s virtual clock steps). A job then takes
about 14 bench minutes and 0.2 s of wall time instead of 28 minutes and 1.3 s."""


@pytest.fixture
def fast_bench(bench_config, tmp_path):
    """The simulated 2023 bench with :data:`FAST` settings, opened through the real drivers."""
    from asab.cli.wiring import simulated_bench

    settings = bench_config.settings.model_copy(update=FAST)
    config = bench_config.model_copy(update={"settings": settings})
    with simulated_bench(config, tmp_path / "instruments") as bench:
        bench.simulation.clock.max_step = FAST["poll_interval"]
        yield bench


def _pure_emc() -> dict[str, Any]:
    request = copy.deepcopy(load_jobs(HIU_2023 / "demo_requests.json")[0])
    request["uuid"] = "pure-emc"
    for item in request["request"]["parameters"]["vibrating_tube_densimetry"]["formulation"]:
        item["fraction"] = 1.0 if item["chemical"]["InChIKey"] == EMC else 0.0
    return request


def _run(bench, run_dir: Path, inject=None) -> dict[str, Any]:
    """Run the pure-EMC job; ``inject(step)`` is called at every step. Returns the record."""
    progress = (lambda _i, _n, _job, step, _t: inject(step)) if inject else None
    run_jobs(bench, [_pure_emc()], run_dir, progress=progress)
    return json.loads(next((run_dir / "records").glob("*.json")).read_text())


def _injector(sim, cell: Cell):
    """Inject ``cell`` when the job reaches ``cell.at`` (or at once); skip unsupported kinds."""
    done = []

    def at_step(step: str) -> None:
        if not done and step == (cell.at or "parse"):
            done.append(step)
            sim.inject(cell.device, cell.kind, **cell.params)

    try:
        if not cell.at:
            at_step("parse")
    except ValueError as exc:
        pytest.skip(f"{cell.id}: not offered by the simulated bench: {exc}")
    return at_step


def _check_safe(bench, recovered: bool) -> None:
    """Pumps stopped, no source joined to a waste (world positions); after a recovery that
    kept the bench in service, also nothing left to park."""
    world = bench.simulation.world
    assert not [p.name for p in bench.config.pumps if world.pump_status(p.name).pumping]
    positions = {v.name: world.valve_position(v.name) for v in bench.config.valves}
    assert joins(bench.graph, positions, sources(bench), sinks(bench)) == []
    if recovered and bench.out_of_service is None:
        assert parking_positions(bench.graph, positions, sources(bench), sinks(bench)) == {}


def _check_record(rec: dict[str, Any], cell: Cell) -> None:
    if cell.outcome == "succeeded":
        assert rec["status"] == "succeeded", rec["reason"]
        return
    assert rec["status"] == "failed" and rec["reason"]
    error = rec["error"]
    if cell.error is not None:
        assert error["type"] == cell.error, error
    assert error["device"] == cell.error_device, error
    if cell.cause is not None:
        assert error["cause"] == cell.cause, error
    assert rec["recovery"], "a failed job must say how the bench was recovered"


@pytest.mark.parametrize("cell", CELLS, ids=lambda c: c.id)
def test_fault_matrix(cell: Cell, fast_bench, tmp_path: Path) -> None:
    sim = fast_bench.simulation
    interface = fast_bench.config.densimeter.interface
    if cell.device == "densiVisco" and cell.kind in RS232_KINDS and interface == "lims":
        pytest.skip(f"{cell.id}: an RS-232 fault; the 2023 bench's densimeter is driven through "
                    "the LIMS folder exchange, so it cannot reach the job")
    t0 = sim.clock.now()
    rec = _run(fast_bench, tmp_path / "faulty", _injector(sim, cell))
    _check_record(rec, cell)
    _check_safe(fast_bench, recovered=cell.outcome != "succeeded")
    if cell.outcome == "out_of_service":
        assert fast_bench.out_of_service and "recovery failed" in fast_bench.out_of_service
    else:
        assert fast_bench.out_of_service is None, fast_bench.out_of_service

    sim.clear_faults()
    after = _run(fast_bench, tmp_path / "next")
    if cell.outcome == "out_of_service":
        assert after["status"] == "failed" and "out of service" in after["reason"]
        assert after["recovery"] is None  # an out-of-service bench is not touched
    else:
        assert after["status"] == "succeeded", after["reason"]
    _check_safe(fast_bench, recovered=False)
    assert sim.clock.now() - t0 < 4 * 3600  # bounded in bench time (virtual clock)


def test_fw_bw_marks_the_viscosity_invalid_but_keeps_the_density(fast_bench, tmp_path):
    fast_bench.simulation.inject("densiVisco", "fw_bw")
    rec = _run(fast_bench, tmp_path)
    assert rec["status"] == "succeeded"
    m = rec["measurement"]
    assert m["viscosity"]["n_valid"] == 0 and m["density"]["n_valid"] == 3
    assert {r["viscosity_condition"] for r in m["repetitions"]} == {"FW/BW dev. too high"}


def test_empty_reservoir_draws_air(fast_bench, tmp_path):
    """The world's answer to an empty bottle: the syringe draws air, the cell sees gas."""
    world = fast_bench.simulation.world
    full = world.vessel_contents(RESERVOIR).volume
    fast_bench.simulation.inject(RESERVOIR, "empty")
    assert world.vessel_contents(RESERVOIR).volume == 0.0
    drawn_before = world.gas_drawn
    rec = _run(fast_bench, tmp_path)
    assert rec["status"] == "failed"
    assert world.gas_drawn > drawn_before
    fast_bench.simulation.clear_faults()
    drawn = sum(rec["stock_drawn"].values())
    assert world.vessel_contents(RESERVOIR).volume == pytest.approx(full)  # put back, and the
    assert drawn > 0  # job's draw was air, taken from the emptied bottle


@pytest.mark.parametrize("device, kind, error", [
    ("nowhere", "overload", KeyError), ("D0.0", "melted", ValueError),
    ("balance", "stuck", ValueError), ("V3", "overload", ValueError),
    ("Reservoir3", "stuck", ValueError), ("densiVisco", "melted", ValueError),
    ("D0.0", "busy", ValueError),
])
def test_inject_rejects_unknown_devices_and_kinds(fast_bench, device, kind, error):
    params = {"speed": 1.0} if (device, kind) == ("D0.0", "busy") else {}
    with pytest.raises(error):
        fast_bench.simulation.inject(device, kind, **params)


def test_catalogue_lists_every_kind_the_simulators_take():
    from simulators.faults import CATALOGUE, kinds_for, parse_fault_spec

    assert set(kinds_for("balance")) == {"no_reply", "garbled", "truncated", "busy", "overload"}
    assert {"overload", "busy", "no_reply"} <= set(kinds_for("pump"))
    assert {c.kind for c in CELLS if c.device == PUMP} <= set(kinds_for("pump"))
    assert {c.kind for c in CELLS if c.device == VALVE} <= set(kinds_for("valve"))
    assert parse_fault_spec("A0.0:overload:after=0.5") == ("A0.0", "overload", {"after": 0.5})
    assert parse_fault_spec("V3:stuck") == ("V3", "stuck", {})
    with pytest.raises(ValueError):
        parse_fault_spec("V3")
    assert len({(c.device, c.kind) for c in CATALOGUE}) == len(CATALOGUE)
