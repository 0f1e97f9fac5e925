"""The e-stop is linearizable with motion: once it has latched, no pump or valve command
reaches a device. Every motion command the simulated SDK receives is recorded in order with
the moment the latch returned; the race is repeated at random instants of running actions
(in-process ≥ 1000 times, over HTTP ≥ 50 times) and must show 0 commands after the latch.
Also: the local e-stop (``asab estop``) reaches a bench with no HTTP at all."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from asab.actions.bench import Bench, EmergencyStopped, OperationCancelled
from asab.actions.fluidics import MoveLog as Ledger, empty, fill
from asab.actions.local_estop import LocalEstopError, listening, stop_all
from asab.errors import AsabError
from tests._servers_support import AUTH, MAKEABLE, served_bench

PUMP_COMMANDS = ("aspirate", "dispense", "generate_flow", "calibrate")
VALVE_COMMANDS = ("switch_valve_to_position",)


class MotionLog:
    """Every motion command sent to the SDK stand-in, and the latch, in one total order."""

    def __init__(self, bench: Bench) -> None:
        self.events: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        for name, drv in bench.pumps.items():
            self._wrap(drv._handle, name, PUMP_COMMANDS)
        for name, drv in bench.valves.items():
            self._wrap(drv._handle, name, VALVE_COMMANDS)
        interlock = bench.interlock
        original = interlock.latch

        def latch(reason: str) -> None:
            original(reason)
            self.record("LATCHED", reason)  # after latch() returned
        interlock.latch = latch  # type: ignore[method-assign]

    def _wrap(self, handle, device: str, commands: tuple[str, ...]) -> None:
        for command in commands:
            original = getattr(handle, command, None)
            if original is None:
                continue

            def recorded(*args, _original=original, _what=f"{device}.{command}"):
                # widen the window between the latch check and the command reaching the
                # device: a check that is not atomic with sending now loses the race
                time.sleep(0.0005)
                self.record("COMMAND", _what)
                return _original(*args)
            setattr(handle, command, recorded)

    def record(self, kind: str, what: str) -> None:
        with self._lock:
            self.events.append((kind, what))

    def after_latch(self) -> list[str]:
        """Commands recorded after the most recent latch."""
        kinds = [k for k, _ in self.events]
        if "LATCHED" not in kinds:
            return []
        last = len(kinds) - 1 - kinds[::-1].index("LATCHED")
        return [w for k, w in self.events[last + 1:] if k == "COMMAND"]

    def clear(self) -> None:
        with self._lock:
            self.events.clear()


def _moves(bench: Bench, stop: threading.Event) -> None:
    """Fill and empty pumps (valves switch for every route) until told to stop or refused."""
    ledger = Ledger()
    pumps = ["A0.0", "B0.0", "F0.0"]
    sources = {"A0.0": "Reservoir6", "B0.0": "Reservoir5", "F0.0": "Solvent"}
    try:
        while not stop.is_set():
            for p in pumps:
                fill(bench, p, sources[p], 0.05, ledger)
                empty(bench, p, "waste_1", ledger)
    except (EmergencyStopped, OperationCancelled):
        return
    except AsabError:
        return


def test_no_motion_command_after_the_latch_in_process(sim_bench: Bench) -> None:
    log = MotionLog(sim_bench)
    rng = random.Random(20261206)
    trials, commanded, violations = 1000, 0, []
    for trial in range(trials):
        sim_bench.reset_estop()
        sim_bench.cancel.clear()
        log.clear()
        stop = threading.Event()
        mover = threading.Thread(target=_moves, args=(sim_bench, stop))
        mover.start()
        time.sleep(rng.uniform(0, 0.01))  # planning a move (with its residues) takes ms
        sim_bench.emergency_stop(f"trial {trial}")
        assert not any(p.is_pumping() for p in sim_bench.pumps.values())  # stopped on return
        stop.set()
        mover.join(10)
        assert not mover.is_alive()
        late = log.after_latch()
        commanded += sum(1 for k, _ in log.events if k == "COMMAND")
        if late:
            violations.append((trial, late))
        assert not any(p.is_pumping() for p in sim_bench.pumps.values())
    assert violations == []
    assert commanded > trials  # the race really ran: motion was under way at most instants


def test_no_motion_command_after_the_latch_over_http() -> None:
    """One trial in five stops a deliver job (prime, mix, push: many valve and pump commands
    over time; more would run the simulated stocks dry), the others a single aspirate, at a
    random instant; the e-stop goes to another server than the job's."""
    rng = random.Random(7)
    with served_bench() as (ctx, apps):
        log = MotionLog(ctx.bench)
        pumps = TestClient(apps["pumps"], headers=AUTH)
        actions = TestClient(apps["actions"], headers=AUTH)
        violations, started, refused = [], 0, []
        for trial in range(50):
            assert pumps.post("/estop/reset").status_code == 200
            if ctx.bench.out_of_service:
                ctx.bench.out_of_service = None  # the operator's reset, without its cleaning
            _wait_idle(pumps)
            log.clear()
            deliver = trial % 5 == 1
            if deliver:
                r = actions.post("/deliver", json={"composition": MAKEABLE})
            else:
                r = pumps.post("/pumps/A0.0/aspirate", json={"source": "Reservoir6", "volume": 0.2})
            started += r.status_code == 202
            if r.status_code != 202:
                refused.append((trial, r.status_code, r.text[:200]))
            time.sleep(rng.uniform(0, 0.03))
            target = pumps if deliver else actions
            assert target.post("/estop", json={"reason": f"trial {trial}"}).status_code == 200
            _wait_idle(pumps)
            if log.after_latch():
                violations.append((trial, log.after_latch()))
            ctx.bench.reset_estop()
            for drv in ctx.bench.pumps.values():  # empty the syringes for the next trial
                if drv.fill_level() > 0:
                    ctx.bench.set_valves(ctx.bench.graph.route(drv_node(ctx, drv.name),
                                                               "waste_1").valve_settings)
                    drv.dispense(drv.fill_level(), drv.flow_max)
                    drv.wait_until_done(60)
        assert violations == []
        assert started >= 35, refused  # most trials really started a job


def drv_node(ctx, pump: str) -> str:
    return ctx.bench.config.pump(pump).node


def _wait_idle(client: TestClient, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(j["state"] != "running" for j in client.get("/jobs").json()):
            return
        time.sleep(0.01)
    raise AssertionError("job still running")


@pytest.fixture
def runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "run"
    monkeypatch.setenv("ASAB_RUNTIME_DIR", str(folder))
    return folder


def test_the_local_estop_stops_a_moving_pump_without_http(sim_bench: Bench, runtime: Path,
                                                         tmp_path: Path) -> None:
    drv = sim_bench.pumps["A0.0"]
    with listening(sim_bench, name="hiu_2023", state=tmp_path / "state") as path:
        assert path is not None and oct(path.stat().st_mode & 0o777) == "0o600"
        sim_bench.set_valves(sim_bench.graph.route("Reservoir6", "A0.0").valve_settings)
        drv.aspirate(1.0, drv.flow_min * 10)  # a slow move: still running when we stop it
        assert drv.is_pumping()
        stopped = stop_all("leak at V3", state=tmp_path / "state")
        assert [s.bench for s in stopped] == ["hiu_2023"]
        assert not drv.is_pumping()
        assert sim_bench.estop == "local e-stop (asab estop): leak at V3"
        with pytest.raises(EmergencyStopped):
            drv.aspirate(0.1, drv.flow_min * 10)
        with pytest.raises(LocalEstopError, match="no running asab process on state folder"):
            stop_all(state=tmp_path / "other")
    assert not list(runtime.glob("estop-*"))  # unregistered when the bench closes


def test_asab_estop_command_reports_nothing_to_stop(runtime: Path) -> None:
    from typer.testing import CliRunner

    from asab.cli.main import app
    result = CliRunner().invoke(app, ["estop"])
    assert result.exit_code == 1
    assert "no running asab process is registered" in " ".join(result.stderr.split())


def test_an_unsafe_runtime_folder_is_refused(runtime: Path) -> None:
    runtime.mkdir(mode=0o777)
    runtime.chmod(0o777)
    with pytest.raises(LocalEstopError, match="not a private folder"):
        stop_all()
