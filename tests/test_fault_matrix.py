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
  does not answer, a pump drive left in a fault state) — the bench is out of service and the
  next job is refused; once the fault is gone, an operator's reset
  (:meth:`~asab.actions.bench.Bench.reset_faults`) puts it back in service and a job runs.

Removing an injected fault (``clear_faults``) removes its cause only: a drive that faulted
stays latched until the SDK's ``clear_fault()``, as on a real bench.

The densimeter's faults depend on its front end: the LIMS cells run on the 2023 bench as
configured, the RS-232 cells on the same bench with ``[densimeter] interface = "rs232"``.
Every fault of the catalogue has at least one cell. A flow job (a volume into a vial) is held
to the same rules at the end of the module.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest
from conftest import HIU_2023

from asab.actions.bench import Bench
from asab.actions.safety import DRIVE_FAULT_ADVICE, sinks, sources
from asab.config import BenchConfig
from asab.config.models import SerialSettings
from asab.requests import load_jobs
from asab.runner import run_jobs
from asab.tubing import joins, parking_positions

EMC = "JBTWLSYIZRCDFO-UHFFFAOYSA-N"
PUMP, VALVE, RESERVOIR = "D0.0", "V3", "Reservoir3"  # the EMC stock's pump, valve, bottle

Outcome = Literal["failed", "out_of_service", "succeeded"]
Interface = Literal["lims", "rs232"]


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
        interface: the densimeter front end of the bench the cell runs on.
    """

    device: str
    kind: str
    outcome: Outcome
    error: str | None = None
    error_device: str | None = None
    cause: str | None = None
    at: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    interface: Interface = "lims"

    @property
    def id(self) -> str:
        extra = ",".join(f"{k}={_text(v)}" for k, v in self.params.items())
        spec = f"{self.device}:{self.kind}" + (f":{extra}" if extra else "")
        return f"rs232/{spec}" if self.interface == "rs232" else spec


def _text(value: Any) -> str:
    return "+".join(value) if isinstance(value, tuple) else f"{value:g}"


def _rs232(kind: str, outcome: Outcome, error: str | None = None, cause: str | None = None,
           **params: Any) -> Cell:
    """A cell on the RS-232 densimeter, injected when the job reaches the measurement."""
    return Cell("densiVisco", kind, outcome, error, "densiVisco" if error else None, cause,
                at="measure", params=params, interface="rs232")


DRIVE = "DeviceFault"
CELLS = [
    # pumps
    # an overload leaves the drive's fault latched: out of service until an operator resets it
    Cell(PUMP, "overload", "out_of_service", DRIVE, PUMP, "drive fault", params={"after": 0.5}),
    Cell(PUMP, "overload", "out_of_service", DRIVE, PUMP, "drive fault", at="deliver"),
    Cell(PUMP, "busy", "failed", "DeviceBusy", PUMP, "busy"),
    Cell(PUMP, "no_reply", "out_of_service", "DeviceError", PUMP, "sdk error", at="prime"),
    Cell(PUMP, "no_reply", "succeeded", at="prime", params={"calls": 1}),  # re-read
    Cell(RESERVOIR, "empty", "failed", DRIVE, "balance", "mass short"),  # weighed, not measured
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
    # densimeter (RS-232 front end; "count": only the next n replies / starts are hit)
    _rs232("heating", "failed", "DeviceBusy", "heating"),  # never settles before the deadline
    _rs232("heating", "succeeded", count=3),  # start is sent again while heating
    _rs232("no_new_data", "failed", "DeviceFault", "no new data available"),
    _rs232("no_new_data", "succeeded", count=1),  # the repetition is measured again
    _rs232("no_reply", "failed", "TransportTimeout"),
    _rs232("no_reply", "succeeded", count=1),  # an idempotent command is repeated
    _rs232("no_reply", "succeeded", count=1, commands=("getdata",)),  # probe, then re-measure
    _rs232("garbled", "failed", "ReplyError", "garbled reply"),
    _rs232("garbled", "failed", "DeviceFault", "data lost", commands=("getdata",)),
    _rs232("garbled", "succeeded", count=1, commands=("start",)),  # 'finished' says it started
    _rs232("truncated", "failed", "ReplyError", "truncated reply"),
    _rs232("truncated", "succeeded", count=1),
    _rs232("busy", "failed", "DeviceBusy", "measurement already started"),
    _rs232("invalid_method", "failed", "DeviceError", "invalid method"),
    _rs232("fw_bw", "succeeded"),  # Lovis values invalid, density valid
]


FAST = {"gas_flow": 0.8, "aspirate_flow": 0.5, "poll_interval": 2.0}
"""Bench settings that keep the matrix quick: gas and aspiration near the 10 mL syringe's
drive limit (1.05 mL/s) and 2 s status polls (with 2 s virtual clock steps). A job then takes
about 14 bench minutes and 0.2 s of wall time instead of 28 minutes and 1.3 s."""


@contextmanager
def _fast(config: BenchConfig, workdir: Path) -> Iterator[Bench]:
    """``config`` with :data:`FAST` settings, simulated and opened through the real drivers."""
    from asab.cli.wiring import simulated_bench

    settings = config.settings.model_copy(update=FAST)
    with simulated_bench(config.model_copy(update={"settings": settings}), workdir) as bench:
        bench.simulation.clock.max_step = FAST["poll_interval"]
        yield bench


def _rs232_config(config: BenchConfig) -> BenchConfig:
    """The bench with its densimeter driven over RS-232 (method 1) instead of LIMS folders."""
    dens = config.densimeter.model_copy(update={
        "interface": "rs232", "serial": SerialSettings(url="COM7", parity="N"), "method_number": 1})
    return config.model_copy(update={"densimeter": dens})


@pytest.fixture
def fast_bench(bench_config, tmp_path):
    """The simulated 2023 bench (LIMS densimeter) with :data:`FAST` settings."""
    with _fast(bench_config, tmp_path / "instruments") as bench:
        yield bench


@pytest.fixture
def fast_rs232_bench(bench_config, tmp_path):
    """The same bench with its densimeter on RS-232."""
    with _fast(_rs232_config(bench_config), tmp_path / "instruments") as bench:
        assert bench.config.densimeter.interface == "rs232"
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


def _injector(sim, cell: Cell) -> tuple[Callable[[str], None], list[str]]:
    """``(at_step, injected)``: ``at_step(step)`` injects ``cell`` when the job reaches
    ``cell.at`` (at once for ``at=""``); ``injected`` then holds the step."""
    injected: list[str] = []

    def at_step(step: str) -> None:
        if not injected and step == (cell.at or "parse"):
            injected.append(step)
            sim.inject(cell.device, cell.kind, **cell.params)

    if not cell.at:
        at_step("parse")
    return at_step, injected


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
        assert rec["measurement"]["density"]["n_valid"] == 3
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
def test_fault_matrix(cell: Cell, request, tmp_path: Path) -> None:
    bench = request.getfixturevalue("fast_rs232_bench" if cell.interface == "rs232"
                                    else "fast_bench")
    sim = bench.simulation
    t0 = sim.clock.now()
    inject, injected = _injector(sim, cell)
    rec = _run(bench, tmp_path / "faulty", inject)
    assert injected, f"{cell.id}: the job never reached step {cell.at!r}"
    _check_record(rec, cell)
    if "count" in cell.params:  # a bounded fault must really have been hit, and used up
        assert cell.kind not in sim.densimeter.faults, f"{cell.id}: fault not used up"
    _check_safe(bench, recovered=cell.outcome != "succeeded")
    if cell.outcome == "out_of_service":
        assert bench.out_of_service and "recovery failed" in bench.out_of_service
        if cell.kind == "overload":
            assert f"pump {cell.device}: {DRIVE_FAULT_ADVICE}" in bench.out_of_service
    else:
        assert bench.out_of_service is None, bench.out_of_service

    sim.clear_faults()
    after = _run(bench, tmp_path / "next")
    if cell.outcome == "out_of_service":
        assert after["status"] == "failed" and "out of service" in after["reason"]
        assert after["recovery"] is None  # an out-of-service bench is not touched
        assert bench.reset_faults().startswith("drive faults cleared: ")  # the operator's reset
        assert bench.out_of_service is None
        after = _run(bench, tmp_path / "after-reset")
    assert after["status"] == "succeeded", after["reason"]
    _check_safe(bench, recovered=False)
    assert sim.clock.now() - t0 < 4 * 3600  # bounded in bench time (virtual clock)


def test_every_catalogued_fault_has_a_cell(bench_config) -> None:
    from simulators.faults import CATALOGUE, device_class

    configs = {"lims": bench_config, "rs232": _rs232_config(bench_config)}
    covered = set()
    for c in CELLS:
        found = device_class(configs[c.interface], [RESERVOIR], c.device)
        assert found is not None, c.id
        covered.add((*found, c.kind))
    assert covered == {(f.device, f.interface, f.kind) for f in CATALOGUE}


@pytest.mark.parametrize("bench_fixture", ["fast_bench", "fast_rs232_bench"])
def test_fw_bw_marks_the_viscosity_invalid_but_keeps_the_density(bench_fixture, request,
                                                                 tmp_path):
    bench = request.getfixturevalue(bench_fixture)
    bench.simulation.inject("densiVisco", "fw_bw")
    rec = _run(bench, tmp_path)
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
    from simulators.antonpaar import LIMS_FAULTS
    from simulators.antonpaar_serial import SERIAL_FAULTS
    from simulators.faults import CATALOGUE, kinds_for, parse_fault_spec

    assert set(kinds_for("balance")) == {"no_reply", "garbled", "truncated", "busy", "overload"}
    assert {"overload", "busy", "no_reply"} <= set(kinds_for("pump"))
    assert {c.kind for c in CELLS if c.device == PUMP} <= set(kinds_for("pump"))
    assert {c.kind for c in CELLS if c.device == VALVE} <= set(kinds_for("valve"))
    assert parse_fault_spec("A0.0:overload:after=0.5") == ("A0.0", "overload", {"after": 0.5})
    assert parse_fault_spec("V3:stuck") == ("V3", "stuck", {})
    with pytest.raises(ValueError):
        parse_fault_spec("V3")
    assert set(kinds_for("densimeter", "rs232")) == set(SERIAL_FAULTS)
    assert set(kinds_for("densimeter", "lims")) == set(LIMS_FAULTS)
    assert len({(c.device, c.interface, c.kind) for c in CATALOGUE}) == len(CATALOGUE)


# --------------------------------------------------------------------------- flow job (vial)
VIAL_MIX = "LiPF6=0.07,EC=0.29,EMC=0.64"  # pumps A0.0, B0.0, C0.0 (B0.0 carries about half)


def _flow(bench, vials, rid: str, progress=None):
    from asab.actions.vial import FlowJob, run_flow_job
    from asab.formulation import parse_composition

    job = FlowJob(request_id=rid, formulation=parse_composition(VIAL_MIX, bench.config),
                  volume=2.6)
    return run_flow_job(bench, job, f"job-{rid}", vials, progress=progress)


def _when_dispensing(sim, pump: str, kind: str, **params: Any) -> Callable[[str], None]:
    """``at_step(step)`` that, from step ``deliver`` on, injects the fault as soon as ``pump``
    dispenses (the delivery's own refill is an aspiration: a fault there moves nothing)."""
    def watch(_now: float, _dt: float) -> None:
        if sim.world.pump_status(pump).flow > 0:
            sim.clock.remove_listener(watch)
            sim.inject(pump, kind, **params)

    return lambda step: sim.clock.add_listener(watch) if step == "deliver" else None


@pytest.mark.parametrize("device, kind, at, params, outcome, error, cause", [
    ("B0.0", "overload", "dispensing", {"after": 1.2}, "out_of_service", DRIVE, "drive fault"),
    ("C0.0", "overload", "mix", {}, "out_of_service", DRIVE, "drive fault"),
    ("B0.0", "no_reply", "deliver", {}, "out_of_service", "DeviceError", "sdk error"),
    ("B0.0", "busy", "deliver", {}, "failed", "DeviceBusy", "busy"),
], ids=["B0.0:overload-mid-delivery", "C0.0:overload-first-portion", "B0.0:no_reply",
        "B0.0:busy"])
def test_fault_in_a_vial_delivery(fast_bench, tmp_path, device, kind, at, params, outcome,
                                  error, cause) -> None:
    """A flow job held to the matrix's rules: typed error naming device and cause, pumps
    stopped, no reservoir joined to a waste (valves parked), the vial's state and volume
    known, and the next job runs (or the bench is out of service)."""
    from asab.actions.vial_state import VialRegistry

    sim, world = fast_bench.simulation, fast_bench.simulation.world
    vials = VialRegistry(tmp_path / "vials.json")
    if at == "dispensing":
        inject = _when_dispensing(sim, device, kind, **params)
    else:
        inject, _ = _injector(sim, Cell(device, kind, outcome, at=at, params=params))
    rec = _flow(fast_bench, vials, "r1", inject)
    assert rec.status == "failed" and rec.reason
    assert (rec.error["type"], rec.error["device"], rec.error["cause"]) == (error, device, cause)
    _check_safe(fast_bench, recovered=True)
    assert rec.recovery and [s.step for s in rec.steps][-1] == "recover"
    in_vial = world.vessel_contents(rec.vial).volume
    occupant = vials.occupied().get(rec.vial)
    if rec.volume_pushed is None:  # failed before the delivery: the vial is free again
        assert occupant is None and in_vial == 0.0 and rec.volume_delivered == 0.0
    else:
        assert occupant.status == "failed" and not rec.delivered
        if rec.volume_delivered is not None:  # None: a syringe could not be read
            assert rec.volume_delivered == pytest.approx(in_vial, rel=1e-2)  # ledger ↔ world, 1 %
    if at == "dispensing":
        assert 0.0 < in_vial < 2.6  # really mid-delivery
    if outcome == "failed":
        assert fast_bench.out_of_service is None
        assert rec.recovery.startswith("mixer and shared line rinsed and dried; pumps stopped")
    else:
        assert fast_bench.out_of_service and rec.recovery == fast_bench.out_of_service
    if kind == "overload":  # rinsed and parked: the latched drive is the only problem left
        assert rec.recovery == f"recovery failed: pump {device}: {DRIVE_FAULT_ADVICE}"

    sim.clear_faults()
    after = _flow(fast_bench, vials, "r2")
    if outcome == "out_of_service":
        assert after.status == "failed" and "out of service" in after.reason
        assert after.recovery is None and after.vial is None
        fast_bench.reset_faults()  # the operator's reset, once the cause is gone
        after = _flow(fast_bench, vials, "r3")
    assert after.status == "succeeded", after.reason
    assert world.vessel_contents(after.vial).volume == pytest.approx(2.6, abs=1e-6)
    _check_safe(fast_bench, recovered=False)


def _second_job() -> dict[str, Any]:
    """A mixture that uses neither the EMC stock's pump, valve nor bottle (A0.0–C0.0)."""
    request = copy.deepcopy(load_jobs(HIU_2023 / "demo_requests.json")[0])
    request["uuid"] = "mixture"
    return request


@pytest.mark.parametrize("cell", CELLS, ids=lambda c: c.id)
def test_fault_matrix_pipelined(cell: Cell, request, tmp_path: Path) -> None:
    """The same faults in a pipelined run of two jobs, the second prepared while the first
    (the pure-EMC job the fault hits) runs: the first job's record is as in the sequential
    matrix; the second is either run after it (it had not mixed when the fault stopped every
    task: back to the queue; then it may meet the same fault, which is not cleared), failed
    with the reason (it had mixed), or refused by a bench out of service; every pump is
    stopped and no source is joined to a waste."""
    bench = request.getfixturevalue("fast_rs232_bench" if cell.interface == "rs232"
                                    else "fast_bench")
    sim = bench.simulation
    inject, injected = _injector(sim, cell)
    run_dir = tmp_path / "faulty"
    progress = lambda _i, _n, _job, step, _t: inject(step)  # noqa: E731
    summary = run_jobs(bench, [_pure_emc(), _second_job()], run_dir, progress=progress,
                       pipelined=True)
    assert summary.pipelined and injected, f"{cell.id}: no job reached step {cell.at!r}"
    first, second = (json.loads(p.read_text()) for p in sorted((run_dir / "records").glob("*.json")))
    _check_record(first, cell)
    _check_safe(bench, recovered=cell.outcome != "succeeded")
    if cell.outcome == "succeeded":
        assert second["status"] == "succeeded", second["reason"]
    elif second["status"] != "succeeded":  # refused, stopped when mixed, or it met the
        assert second["status"] == "failed"  # same fault (not cleared) when run again
        assert ("out of service" in second["reason"]
                or second["reason"].startswith("stopped after its sample was mixed")
                or second["error"]["device"] == cell.error_device), second
    if cell.outcome == "out_of_service":
        assert bench.out_of_service and "recovery failed" in bench.out_of_service
    else:
        assert bench.out_of_service is None, bench.out_of_service
