"""Tests of the simulated physical world (simulators.world, simulators.fluidics).

The bench is the 2023 HIU build (hardware_configs/hiu_2023). Node names and valve positions
follow shared/data/README.md: pump A0.0 sits on V6, C0.0 on V4; port 1 = reservoir
(position 0), port 5 = mixer inlet (position 4), port 10 = waste_1 (position 9); V7 port 1
(position 0) takes the mixer outlet; V8 port 8 (position 7) feeds the densimeter cell, port 10
(position 9) the waste; V9 port 8 (position 7) collects the cell outlet; V10 port 10
(position 9) goes to waste_1.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asab.config.loader import load_bench
from asab.config.models import (
    BenchConfig,
    BenchSettings,
    Pump,
    StockSolution,
    Tubing,
    TubingEdge,
    TubingNode,
    Valve,
)
from simulators.clock import VirtualClock
from simulators.fluidics import Segment
from simulators.liquid import Liquid
from simulators.world import PumpStatus, World

HIU = Path(__file__).resolve().parents[1] / "hardware_configs" / "hiu_2023"
MIXER_TO_WASTE = ["V6.5", "M1.6", "M1.0", "V7.1", "V7.0", "V8.0", "V8.10", "waste_1"]
A_TO_WASTE = ["A0.0", "V6.0", *MIXER_TO_WASTE]
A_TO_CELL = ["A0.0", "V6.0", "V6.5", "M1.6", "M1.0", "V7.1", "V7.0", "V8.0", "V8.8", "densiViscoIN"]


# ----------------------------------------------------------------------------- bench fixture
@functools.lru_cache(maxsize=1)
def bench() -> BenchConfig:
    """The 2023 bench (frozen, shared by all tests)."""
    return load_bench(HIU)


# ----------------------------------------------------------------------------- helpers
def run(world: World, dt: float = 0.5, limit: float = 2000.0) -> None:
    """Advance until no pump is moving (at most ``limit`` s)."""
    t = 0.0
    while any(world.pump_status(p.name).pumping for p in world.config.pumps):
        assert t < limit, "pumps still moving"
        world.advance(dt)
        t += dt


def move(
    world: World, pump: str, direction: str, volume: float, flow: float = 0.1, dt: float = 0.5
) -> None:
    world.start_pump(pump, direction, volume, flow)  # type: ignore[arg-type]
    run(world, dt)
    assert world.pump_status(pump).fault is None


def prime(world: World, pump: str, valve: str, volume: float) -> None:
    """Fill ``pump`` from its reservoir and push the air out to waste_1."""
    world.set_valve(valve, 0)
    move(world, pump, "aspirate", volume)
    world.set_valve(valve, 9)
    move(world, pump, "dispense", 0.3)
    assert world.syringe_contents(pump).gas == 0.0


def path_segments(world: World, nodes: list[str]) -> list[str]:
    return [world.edge_between(a, b) for a, b in zip(nodes, nodes[1:])]


def concentrations(stock: StockSolution) -> dict[str, float]:
    """mol/mL of each component of a stock."""
    cfg = bench()
    return {
        k: c.mass / cfg.chemical(k).molar_mass / stock.volume for k, c in stock.components.items()
    }


def assert_fractions(actual: dict[str, float], expected: dict[str, float], tol: float) -> None:
    keys = {k for k, v in expected.items() if v > 0} | set(actual)
    for k in keys:
        assert actual.get(k, 0.0) == pytest.approx(expected.get(k, 0.0), abs=tol), k


def fractions_of(moles: dict[str, float]) -> dict[str, float]:
    s = sum(moles.values())
    return {k: v / s for k, v in moles.items() if v > 0}


# ----------------------------------------------------------------------------- segment
@settings(max_examples=60, deadline=None)
@given(
    capacity=st.floats(0.001, 1.0),
    volumes=st.lists(st.floats(1e-4, 0.5), min_size=1, max_size=25),
)
def test_segment_is_first_in_first_out(capacity: float, volumes: list[float]) -> None:
    """Parcels leave in the order they came: output = first V of [air, inputs], content = last C."""
    seg = Segment("s", "a", "b", capacity, merge_volume=0.0)
    out: list[Liquid] = []
    for i, v in enumerate(volumes):
        out += seg.push([Liquid({f"t{i}": v}, v, v)], True, (i, "p"))
    stream = [("air", capacity)] + [(f"t{i}", v) for i, v in enumerate(volumes)]
    pushed = sum(volumes)
    expected_out: dict[str, float] = {}
    expected_in: dict[str, float] = {}
    pos = 0.0
    for tag, v in stream:
        before = min(max(pushed - pos, 0.0), v)
        expected_out[tag] = before
        expected_in[tag] = v - before
        pos += v
    got_out, got_in = _by_tag(out), _by_tag(seg.parcels)
    for tag, _ in stream:
        assert got_out.get(tag, 0.0) == pytest.approx(expected_out[tag], abs=1e-9)
        assert got_in.get(tag, 0.0) == pytest.approx(expected_in[tag], abs=1e-9)
    order = [_tag_index(p) for p in out]
    assert order == sorted(order)


def _by_tag(parcels) -> dict[str, float]:
    acc: dict[str, float] = {}
    for p in parcels:
        acc["air"] = acc.get("air", 0.0) + p.gas
        for k, n in p.moles.items():
            acc[k] = acc.get(k, 0.0) + n
    return acc


def _tag_index(p: Liquid) -> int:
    tags = [int(k[1:]) for k, n in p.moles.items() if n > 0]
    return min(tags) if tags else -1


@settings(max_examples=60, deadline=None)
@given(
    capacity=st.floats(0.0, 0.5),
    pushes=st.lists(
        st.tuples(st.booleans(), st.floats(1e-5, 0.3), st.sampled_from("ab")), max_size=30
    ),
)
def test_segment_conserves_and_stays_full(
    capacity: float, pushes: list[tuple[bool, float, str]]
) -> None:
    seg = Segment("s", "a", "b", capacity)
    moved = Liquid()
    for tick, (at_start, v, source) in enumerate(pushes):
        out = seg.push([Liquid({"X": v}, v, 2 * v)], at_start, (tick // 2, source))
        for p in out:
            moved.add(p)
        assert sum(p.total_volume for p in out) == pytest.approx(v, abs=1e-12)
    assert seg.contents().total_volume == pytest.approx(capacity, abs=1e-12)
    put_in = sum(v for _, v, _ in pushes)
    held = seg.contents().moles.get("X", 0.0)
    assert moved.moles.get("X", 0.0) + held == pytest.approx(put_in, rel=1e-12)
    assert moved.gas + seg.contents().gas == pytest.approx(capacity, abs=1e-12)


# ----------------------------------------------------------------------------- initial state
def test_initial_state() -> None:
    cfg = bench()
    world = World(cfg)
    for e in cfg.tubing.edges:
        c = world.segment_contents(e.label)
        assert c.gas == pytest.approx(e.dead_volume) and c.volume == 0.0
    for p in cfg.pumps:
        assert world.pump_status(p.name) == PumpStatus(0.0, False, 0.0, 0.0, 0.0, None)
    for s in cfg.stocks:
        content = world.vessel_contents(s.reservoir)
        assert content.volume == pytest.approx(s.total_mass / s.density)
        assert world.vessel_mass(s.reservoir) == pytest.approx(s.total_mass)
        for k, n in concentrations(s).items():
            assert content.moles.get(k, 0.0) == pytest.approx(n * s.volume)
    solvent = world.vessel_contents("Solvent")
    assert solvent.volume == 500.0 and solvent.mass == pytest.approx(500.0 * 1.006)
    expected = {"waste_1", "waste_2", "vial_8", "ambient", "pressurizedGas"}
    assert expected <= set(world.vessel_names())
    assert "Reservoir1" not in world.vessel_names()
    assert world.valve_position("V6") == 0


# ----------------------------------------------------------------------------- aspirate
def test_aspirate_from_reservoir() -> None:
    cfg = bench()
    world = World(cfg, residues=False)  # plug flow exactly
    stock = cfg.stock("1.5M-LiPF6-EC-EMC")
    line = path_segments(world, ["A0.0", "V6.0", "V6.1", "Reservoir6"])
    tubing = sum(world.segment_contents(s).gas for s in line)
    before = world.vessel_contents("Reservoir6")
    move(world, "A0.0", "aspirate", 2.0, flow=0.05)
    after = world.vessel_contents("Reservoir6")
    # the reservoir gives exactly the volume; the tubing keeps `tubing` mL of it, air goes up
    assert before.volume - after.volume == pytest.approx(2.0, abs=1e-12)
    assert before.mass - after.mass == pytest.approx(2.0 * stock.density, rel=1e-9)
    assert sum(world.segment_contents(s).volume for s in line) == pytest.approx(tubing, abs=1e-12)
    syringe = world.syringe_contents("A0.0")
    assert syringe.gas == pytest.approx(tubing, abs=1e-12)
    assert syringe.volume == pytest.approx(2.0 - tubing, abs=1e-12)
    assert_fractions(syringe.mole_fractions(), fractions_of(concentrations(stock)), 1e-12)
    status = world.pump_status("A0.0")
    assert status.fill_level == pytest.approx(2.0) and status.dosed_volume == 2.0
    assert not status.pumping


def test_empty_reservoir_draws_air() -> None:
    cfg = bench()
    small = cfg.stock("EMC").model_copy(update={"total_mass": 1.005})  # 1 mL
    stocks = tuple(small if s.name == "EMC" else s for s in cfg.stocks)
    cfg = cfg.model_copy(update={"stocks": stocks})
    world = World(cfg, residues=False)  # plug flow exactly
    move(world, "D0.0", "aspirate", 3.0)  # D0.0 sits on V3, Reservoir3 holds EMC
    assert world.vessel_contents("Reservoir3").volume == 0.0
    syringe = world.syringe_contents("D0.0")
    assert syringe.volume == pytest.approx(1.0, abs=1e-12)
    assert syringe.gas == pytest.approx(2.0, abs=1e-12)
    line = path_segments(world, ["D0.0", "V3.0", "V3.1", "Reservoir3"])
    assert all(world.segment_contents(s).volume == 0.0 for s in line)  # air again
    assert world.gas_drawn == pytest.approx(2.0, abs=1e-12)


def test_aspirate_from_gas_supply_draws_only_air() -> None:
    world = World(bench())
    world.set_valve("V6", 8)  # port 9 = ambient
    move(world, "A0.0", "aspirate", 1.0)
    assert world.syringe_contents("A0.0").volume == 0.0
    assert world.gas_drawn == pytest.approx(1.0)


# ----------------------------------------------------------------------------- plug flow
def test_plug_flow_fills_segments_in_order_and_pushes_air_out_first() -> None:
    world = World(bench(), residues=False)
    prime(world, "A0.0", "V6", 6.0)
    for valve, pos in (("V6", 4), ("V7", 0), ("V8", 9)):
        world.set_valve(valve, pos)
    labels = path_segments(world, A_TO_WASTE)
    caps = [world.segment_contents(s).total_volume for s in labels]
    path_volume = sum(caps)
    waste0, vented0 = world.vessel_contents("waste_1"), world.gas_vented

    move(world, "A0.0", "dispense", 1.0, flow=0.02, dt=0.25)
    front, margin, start = caps[0] + 1.0, 0.02, 0.0
    for label, cap in zip(labels, caps):
        c = world.segment_contents(label)
        if start + cap <= front - margin:
            assert c.gas == pytest.approx(0.0, abs=1e-12), label
        elif start >= front + margin:
            assert c.volume == 0.0 and c.gas == pytest.approx(cap), label
        start += cap
    assert world.vessel_contents("waste_1").volume == waste0.volume  # only air came out
    assert world.gas_vented - vented0 == pytest.approx(1.0, abs=1e-12)

    second = path_volume - front + 0.3  # the front passes the open end by 0.3 mL
    move(world, "A0.0", "dispense", second, flow=0.02, dt=0.25)
    arrived = world.vessel_contents("waste_1").volume - waste0.volume
    assert arrived == pytest.approx(0.3, abs=margin)
    assert world.gas_vented - vented0 == pytest.approx(path_volume - caps[0], abs=1e-9)
    assert all(world.segment_contents(s).gas < 1e-12 for s in labels)


# ----------------------------------------------------------------------------- faults
def test_closed_route_faults_overpressure_and_nothing_moves() -> None:
    world = World(bench())
    prime(world, "A0.0", "V6", 5.0)
    for valve, pos in (("V6", 4), ("V7", 0), ("V8", 7), ("V9", 2)):  # V9 not at the cell outlet
        world.set_valve(valve, pos)
    before = world.totals()
    syringe = world.syringe_contents("A0.0")
    world.start_pump("A0.0", "dispense", 1.0, 0.05)
    world.advance(0.5)
    status = world.pump_status("A0.0")
    assert status.fault == "overpressure" and not status.pumping and status.flow == 0.0
    assert world.syringe_contents("A0.0") == syringe
    assert world.totals() == before
    world.set_valve("V9", 7)
    world.start_pump("A0.0", "dispense", 1.0, 0.05)  # refused while faulted
    assert not world.pump_status("A0.0").pumping
    world.clear_pump_fault("A0.0")
    world.start_pump("A0.0", "dispense", 1.0, 0.05)
    world.advance(0.5)
    assert world.pump_status("A0.0").fault is None
    assert world.pump_status("A0.0").dosed_volume == pytest.approx(0.025)


def test_valve_switched_mid_move_stops_the_pump() -> None:
    world = World(bench())
    prime(world, "A0.0", "V6", 5.0)
    world.set_valve("V6", 4)
    world.set_valve("V8", 9)
    world.start_pump("A0.0", "dispense", 2.0, 0.05)
    for _ in range(4):
        world.advance(0.5)
    world.set_valve("V8", 2)  # port 3 is not connected: dead end
    world.advance(0.5)
    status = world.pump_status("A0.0")
    assert status.fault == "overpressure" and not status.pumping
    assert status.dosed_volume == pytest.approx(0.1)
    assert status.fill_level == pytest.approx(5.0 - 0.3 - 0.1)


def test_aspirate_against_check_valve_faults() -> None:
    """The mixer channels are directed: pulling back through them is a closed route."""
    world = World(bench())
    world.set_valve("V6", 4)
    world.start_pump("A0.0", "aspirate", 0.5, 0.05)
    world.advance(0.5)
    assert world.pump_status("A0.0").fault == "overpressure"


def test_volume_faults() -> None:
    world = World(bench())
    world.start_pump("A0.0", "dispense", 0.1, 0.05)
    assert world.pump_status("A0.0").fault == "volume"
    world.clear_pump_fault("A0.0")
    capacity = bench().syringe_of("A0.0").volume
    world.start_pump("A0.0", "aspirate", capacity + 0.01, 0.05)
    status = world.pump_status("A0.0")
    assert status.fault == "volume" and not status.pumping and status.fill_level == 0.0
    with pytest.raises(ValueError):
        world.start_pump("A0.0", "aspirate", 0.0, 0.05)
    with pytest.raises(KeyError):
        world.start_pump("Z0.0", "aspirate", 1.0, 0.05)


def test_stuck_valve_and_injected_pump_fault() -> None:
    world = World(bench())
    world.faults["V3"] = "stuck"
    world.set_valve("V3", 4)
    assert world.valve_position("V3") == 0
    world.set_valve("V4", 4)
    assert world.valve_position("V4") == 4
    with pytest.raises(ValueError):
        world.set_valve("V4", 10)
    world.faults["B0.0"] = "overload"
    world.start_pump("B0.0", "aspirate", 1.0, 0.05)
    assert world.pump_status("B0.0").fault == "overload"


def _toy(edges: list[tuple[str, str, bool]]) -> BenchConfig:
    """Pump P on node ``p`` → ``t``, the common of valve V (0: ``air``, 1: ``x``), then ``edges``.

    Every tube is 0.1 mL; ``w1`` and ``w2`` are waste vessels.
    """
    edges = [("p", "t", False), ("t", "air", False), ("t", "x", False), *edges]
    nodes = sorted({n for a, b, _ in edges for n in (a, b)})
    return BenchConfig(
        name="toy", chemicals=bench().chemicals, stocks=(), syringes=bench().syringes,
        pumps=(Pump(name="P", node="p", syringe="10_mL"),),
        valves=(Valve(name="V", common="t", positions={"air": 0, "x": 1}),), instruments=(),
        tubing=Tubing(
            nodes=tuple(TubingNode(name=n) for n in nodes),
            edges=tuple(
                TubingEdge(label=f"{a}-{b}", start=a, end=b, length=1.0, inner_diameter=1.0,
                           dead_volume=0.1, directed=d)
                for a, b, d in edges
            ),
        ),
        settings=BenchSettings(waste_nodes=("w1", "w2"), gas_nodes=("air",), solvent_node="none"),
    )


@pytest.mark.parametrize(
    ("edges", "ok"),
    [
        ([("x", "w1", False)], True),
        ([("x", "w1", False), ("x", "w2", False)], False),
        ([("x", "w1", False), ("w2", "x", True)], True),
        ([("x", "y", True), ("y", "z", True), ("z", "x", True)], False),
        ([("x", "y", False)], False),
    ],
    ids=["path", "branch", "branch-closed-by-direction", "loop", "dead-end"],
)
def test_route_must_be_unambiguous(edges: list[tuple[str, str, bool]], ok: bool) -> None:
    world = World(_toy(edges))
    move(world, "P", "aspirate", 0.5)
    world.set_valve("V", 1)
    world.start_pump("P", "dispense", 0.5, 0.1)
    run(world)
    assert world.pump_status("P").fault == (None if ok else "overpressure")
    assert world.pump_status("P").fill_level == pytest.approx(0.0 if ok else 0.5)
    assert world.gas_vented == pytest.approx(0.5 if ok else 0.0)


# ----------------------------------------------------------------------------- mixing & cell
def test_mixer_gives_flow_weighted_composition() -> None:
    cfg = bench()
    world = World(cfg, residues=False)  # plug flow exactly
    prime(world, "A0.0", "V6", 8.0)
    prime(world, "C0.0", "V4", 8.0)
    for valve, pos in (("V6", 4), ("V4", 4), ("V7", 0), ("V8", 9)):
        world.set_valve(valve, pos)
    f1, f2, duration = 0.03, 0.017, 120.0
    world.start_pump("A0.0", "dispense", f1 * duration, f1)
    world.start_pump("C0.0", "dispense", f2 * duration, f2)
    run(world, 0.5)
    c1, c2 = concentrations(cfg.stock("1.5M-LiPF6-EC-EMC")), concentrations(cfg.stock("EC-EMC"))
    mix = {k: f1 * c1.get(k, 0.0) + f2 * c2.get(k, 0.0) for k in set(c1) | set(c2)}
    expected = fractions_of(mix)
    for label in path_segments(world, ["M1.0", "V7.1", "V7.0", "V8.0", "V8.10", "waste_1"]):
        content = world.segment_contents(label)
        assert content.gas < 1e-12
        assert_fractions(content.mole_fractions(), expected, 1e-6)
    assert_fractions(world.segment_contents(world.edge_between("M1.6", "M1.0")).mole_fractions(),
                     fractions_of(c1), 1e-12)


def test_cell_holds_the_sample_after_enough_volume() -> None:
    cfg = bench()
    world = World(cfg, residues=False)  # plug flow exactly
    prime(world, "A0.0", "V6", 9.5)
    for valve, pos in (("V6", 4), ("V7", 0), ("V8", 7), ("V9", 7), ("V10", 9)):
        world.set_valve(valve, pos)
    cell_volume = world.instrument_contents("densiVisco").total_volume
    line = sum(world.segment_contents(s).total_volume for s in path_segments(world, A_TO_CELL))
    world.start_pump("A0.0", "dispense", 3.0, 0.05)
    run(world)
    assert world.instrument_contents("densiVisco").volume < cell_volume  # not yet full
    world.start_pump("A0.0", "dispense", line + cell_volume - 3.0 + 0.2, 0.05)
    run(world)
    cell = world.instrument_contents("densiVisco")
    assert cell.gas < 1e-12 and cell.volume == pytest.approx(cell_volume, abs=1e-12)
    stock = cfg.stock("1.5M-LiPF6-EC-EMC")
    assert_fractions(cell.mole_fractions(), fractions_of(concentrations(stock)), 1e-12)
    assert cell.mass == pytest.approx(cell_volume * stock.density, rel=1e-9)


# ----------------------------------------------------------------------------- clock
def test_clock_drives_the_world() -> None:
    clock = VirtualClock(max_step=0.5)
    world = World(bench(), clock)
    world.start_pump("A0.0", "aspirate", 1.0, 0.01)
    clock.sleep(10.0)
    status = world.pump_status("A0.0")
    assert status.pumping and status.flow == -0.01 and status.target_volume == 1.0
    assert status.dosed_volume == pytest.approx(0.1) and status.fill_level == pytest.approx(0.1)
    world.stop_pump("A0.0")
    clock.sleep(5.0)
    status = world.pump_status("A0.0")
    assert not status.pumping and status.flow == 0.0 and status.dosed_volume == pytest.approx(0.1)


def test_lookups() -> None:
    world = World(bench())
    cell = world.edge_between("densiViscoIN", "densiViscoOUT")
    assert cell == world.edge_between("densiViscoOUT", "densiViscoIN")
    with pytest.raises(KeyError):
        world.edge_between("A0.0", "waste_1")
    with pytest.raises(KeyError):
        world.instrument_contents("nope")
    with pytest.raises(KeyError):
        world.vessel_contents("Reservoir1")


# ----------------------------------------------------------------------------- conservation
PUMP_VALVES = {"A0.0": "V6", "B0.0": "V5", "C0.0": "V4", "D0.0": "V3", "F0.0": "V1"}
_op = st.one_of(
    st.tuples(
        st.just("valve"), st.sampled_from(sorted(PUMP_VALVES.values())),
        st.sampled_from([0, 1, 3, 4, 8, 9]),
    ),
    st.tuples(st.just("valve"), st.just("V7"), st.sampled_from([0, 4])),
    st.tuples(st.just("valve"), st.just("V8"), st.integers(5, 9)),
    st.tuples(st.just("valve"), st.sampled_from(["V9", "V10"]), st.integers(0, 9)),
    st.tuples(
        st.sampled_from(["aspirate", "dispense"]), st.sampled_from(sorted(PUMP_VALVES)),
        st.floats(0.01, 3.0), st.floats(0.01, 0.5),
    ),
    st.tuples(st.just("wait"), st.floats(0.1, 20.0)),
)


def _apply(world: World, op: tuple) -> None:
    if op[0] == "valve":
        world.set_valve(op[1], op[2])
    elif op[0] == "wait":
        t = op[1]
        while t > 0:
            world.advance(min(0.5, t))
            t -= 0.5
    else:
        world.clear_pump_fault(op[1])
        world.start_pump(op[1], op[0], op[2], op[3])
        for _ in range(4):
            world.advance(0.5)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(_op, min_size=3, max_size=25))
def test_moles_mass_and_volume_are_conserved(ops: list[tuple]) -> None:
    world = World(bench())
    t0 = world.totals()
    world.set_valve("V8", 9)
    for pump in ("A0.0", "C0.0", "F0.0"):  # start with liquid in some syringes
        world.set_valve(PUMP_VALVES[pump], 1 if pump == "F0.0" else 0)
        world.start_pump(pump, "aspirate", 4.0, 1.0)
    world.advance(4.0)
    for op in ops:
        _apply(world, op)
    world.advance(5.0)
    assert world.vessel_contents("waste_1").volume + world.vessel_contents("Solvent").volume > 0
    t1, gone = world.totals(), world.evaporated  # films lose volatile solvent to the gas
    assert t1.volume + gone.volume == pytest.approx(t0.volume, rel=1e-12)
    assert t1.mass + gone.mass == pytest.approx(t0.mass, rel=1e-12)
    for k in t0.moles:
        assert t1.moles[k] + gone.moles.get(k, 0.0) == pytest.approx(t0.moles[k], rel=1e-12)
    # the room an evaporated film leaves fills with gas
    assert t1.gas - world.gas_drawn + world.gas_vented - gone.volume == pytest.approx(
        t0.gas, abs=1e-9)
    for p in bench().pumps:
        status = world.pump_status(p.name)
        assert -1e-9 <= status.fill_level <= bench().syringe_of(p.name).volume + 1e-7
        assert status.dosed_volume >= 0.0
        assert math.isfinite(status.flow)
