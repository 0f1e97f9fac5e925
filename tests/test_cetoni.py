"""The CETONI driver (asab.drivers.cetoni) against the stand-in qmixsdk (simulators.qmixsdk)."""

from __future__ import annotations

import functools
import logging
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asab.config.loader import load_bench
from asab.config.models import BenchConfig, CetoniSettings
from asab.drivers.base import PumpBus, SelectorValve, SyringePump
from asab.drivers.cetoni import CetoniBus
from asab.errors import (
    ConfigError,
    DeviceBusy,
    DeviceError,
    DeviceFault,
    TransportError,
    TransportTimeout,
)
from simulators.clock import VirtualClock
from simulators.qmixsdk import DEFAULT_SYRINGE, ErrorCode, make_qmixsdk, make_qmixsdk_for_bench
from simulators.world import World

REPO = Path(__file__).resolve().parents[1]
PUMP = "A0.0"  # with every valve at 0 its syringe reaches Reservoir6 (2023 tubing)
PUMP_DEVICE = "neMESYS_Low_Pressure_1_Pump"
ROUTED_PUMPS = ("A0.0", "B0.0", "C0.0", "D0.0")  # pumps with a route at valve position 0
WRONG_SYRINGE = (4.6, 30.0)  # stand-in default the driver must overwrite from the config


# --------------------------------------------------------------------------- fixtures
@functools.cache
def bench_config() -> BenchConfig:
    """The 2023 bench, loaded once (the model is frozen)."""
    return load_bench(REPO / "hardware_configs" / "hiu_2023")


@dataclass
class Bench:
    config: BenchConfig
    clock: VirtualClock
    world: Any
    sdk: Any

    def open(self) -> CetoniBus:
        return CetoniBus.open(self.config, self.clock, sdk=self.sdk)


def make_bench(config: BenchConfig | None = None, **sdk_kwargs: Any) -> Bench:
    config = config or bench_config()
    clock = VirtualClock(max_step=0.5)
    world = World(config, clock)
    pumps = {p.device: p.name for p in config.pumps}
    valves = {v.device: v.name for v in config.valves if v.driver == "cetoni"}
    sdk_kwargs.setdefault("syringe_defaults", WRONG_SYRINGE)
    return Bench(config, clock, world, make_qmixsdk(world, clock, pumps, valves, **sdk_kwargs))


def started_pump(bench: Bench, device: str = PUMP_DEVICE) -> Any:
    """A pump handle after bus open → lookup → bus start, with nothing else done."""
    bus = bench.sdk.qmixbus.Bus()
    bus.open("cfg", "")
    pump = bench.sdk.qmixpump.Pump()
    pump.lookup_by_name(device)
    bus.start()
    return pump


def ready_pump(bench: Bench) -> Any:
    """A started pump handle, fault cleared, enabled and calibrated (units mL, mL/min)."""
    pump = started_pump(bench)
    pump.clear_fault()
    pump.enable(True)
    pump.calibrate()
    bench.clock.sleep(5.0)
    return pump


def sdk_code(excinfo: pytest.ExceptionInfo[BaseException]) -> int:
    return excinfo.value.errorcode  # type: ignore[attr-defined]


@pytest.fixture
def bench() -> Bench:
    return make_bench()


@pytest.fixture
def opened(bench: Bench) -> tuple[Bench, CetoniBus]:
    return bench, bench.open()


# --------------------------------------------------------------------------- the stand-in
def test_standin_enforces_start_up_order() -> None:
    bench = make_bench(syringe_defaults=DEFAULT_SYRINGE)
    DevErr = bench.sdk.qmixbus.DeviceError
    pump = bench.sdk.qmixpump.Pump()
    with pytest.raises(DevErr) as exc:
        pump.lookup_by_name(PUMP_DEVICE)
    assert sdk_code(exc) == ErrorCode.BUS_NOT_OPEN
    bus = bench.sdk.qmixbus.Bus()
    with pytest.raises(DevErr) as exc:
        bus.start()
    assert sdk_code(exc) == ErrorCode.BUS_NOT_OPEN
    bus.open("cfg", "")
    pump.lookup_by_name(PUMP_DEVICE)
    assert bench.sdk.qmixpump.Pump.get_no_of_pumps() == len(bench.config.pumps)
    for call in (lambda: pump.enable(True), lambda: pump.aspirate(1.0, 0.1), pump.get_fill_level):
        with pytest.raises(DevErr) as exc:
            call()
        assert sdk_code(exc) == ErrorCode.BUS_NOT_STARTED
    bus.start()
    with pytest.raises(DevErr) as exc:
        pump.aspirate(1.0, 1.0)
    assert sdk_code(exc) == ErrorCode.DISABLED
    pump.enable(True)
    with pytest.raises(DevErr) as exc:
        pump.aspirate(1.0, 1.0)
    assert sdk_code(exc) == ErrorCode.NOT_CALIBRATED
    pump.calibrate()
    assert not pump.is_calibration_finished()  # calibration takes clock time
    with pytest.raises(DevErr):
        pump.aspirate(1.0, 1.0)
    bench.clock.sleep(2.0)
    assert pump.is_calibration_finished()
    pump.aspirate(1.0, 1.0)
    assert pump.is_pumping()


def test_standin_refuses_faulted_and_too_fast() -> None:
    bench = make_bench(syringe_defaults=DEFAULT_SYRINGE)
    DevErr = bench.sdk.qmixbus.DeviceError
    pump = ready_pump(bench)
    with pytest.raises(DevErr) as exc:
        pump.aspirate(1.0, 1e6)
    assert sdk_code(exc) == ErrorCode.FLOW_OUT_OF_RANGE
    with pytest.raises(DevErr) as exc:
        pump.dispense(0.5, 0.1)  # empty syringe
    assert sdk_code(exc) == ErrorCode.VOLUME_OUT_OF_RANGE
    bench.world.faults[PUMP] = "overload"  # the world faults the pump when it starts
    pump.aspirate(1.0, 0.1)
    assert pump.is_in_fault_state() and not pump.is_pumping()
    with pytest.raises(DevErr) as exc:
        pump.aspirate(1.0, 0.1)
    assert sdk_code(exc) == ErrorCode.FAULT
    with pytest.raises(DevErr):
        pump.enable(True)
    del bench.world.faults[PUMP]
    pump.clear_fault()
    assert not pump.is_in_fault_state()
    pump.enable(True)
    pump.aspirate(1.0, 0.1)
    assert pump.is_pumping()
    pump.enable(False)  # disabling stops the drive and refuses moves
    assert not bench.world.pump_status(PUMP).pumping
    with pytest.raises(DevErr) as exc:
        pump.aspirate(1.0, 0.1)
    assert sdk_code(exc) == ErrorCode.DISABLED
    assert "fault" in bench.sdk.qmixbus.Bus.get_err_msg(ErrorCode.FAULT)
    event = bench.sdk.qmixbus.Bus().read_event()
    assert event.is_valid() and event.data == ErrorCode.FLOW_OUT_OF_RANGE


@settings(max_examples=25, deadline=None)
@given(
    vol_prefix=st.sampled_from(["unit", "milli", "micro"]),
    flow_prefix=st.sampled_from(["unit", "deci", "centi", "milli", "micro"]),
    time_unit=st.sampled_from(["per_second", "per_minute", "per_hour"]),
    volume_ml=st.floats(0.1, 5.0),
    flow_mls=st.floats(0.05, 0.5),
)
def test_standin_honours_units(vol_prefix: str, flow_prefix: str, time_unit: str, volume_ml: float,
                               flow_mls: float) -> None:
    bench = make_bench(syringe_defaults=DEFAULT_SYRINGE)
    pump = ready_pump(bench)
    qb, litres = bench.sdk.qmixbus, bench.sdk.qmixpump.VolumeUnit.litres
    pump.set_volume_unit(qb.UnitPrefix[vol_prefix], litres)
    pump.set_flow_unit(qb.UnitPrefix[flow_prefix], litres, qb.TimeUnit[time_unit])
    v_scale = 1e-3 / 10.0 ** qb.UnitPrefix[vol_prefix]  # mL → configured unit
    f_scale = 1e-3 / 10.0 ** qb.UnitPrefix[flow_prefix] * qb.TimeUnit[time_unit]  # mL/s → unit
    syringe = bench.config.syringe_of(PUMP)
    assert pump.get_volume_max() == pytest.approx(syringe.volume * v_scale)
    assert pump.get_flow_rate_max() == pytest.approx(syringe.max_flow * f_scale)
    pump.aspirate(volume_ml * v_scale, flow_mls * f_scale)
    assert bench.world.pump_status(PUMP).flow == pytest.approx(-flow_mls)
    assert pump.get_flow_is() == pytest.approx(-flow_mls * f_scale)
    assert pump.get_target_volume() == pytest.approx(volume_ml * v_scale)
    bench.clock.sleep(volume_ml / flow_mls + 1.0)
    assert bench.world.pump_status(PUMP).fill_level == pytest.approx(volume_ml)
    assert pump.get_fill_level() == pytest.approx(volume_ml * v_scale)
    assert pump.get_dosed_volume() == pytest.approx(volume_ml * v_scale)


def test_standin_signed_and_level_moves() -> None:
    bench = make_bench(syringe_defaults=DEFAULT_SYRINGE)
    pump = ready_pump(bench)  # default units of the stand-in: mL and mL/min
    pump.pump_volume(-2.0, 30.0)  # negative = aspirate
    assert bench.world.pump_status(PUMP).flow == pytest.approx(-0.5)  # 30 mL/min in mL/s
    bench.clock.sleep(5.0)
    assert pump.get_fill_level() == pytest.approx(2.0)
    pump.set_fill_level(0.5, 60.0)
    bench.clock.sleep(3.0)
    assert pump.get_fill_level() == pytest.approx(0.5)
    pump.generate_flow(-60.0)  # aspirate until full
    bench.clock.sleep(20.0)
    assert pump.get_fill_level() == pytest.approx(pump.get_volume_max())
    pump.generate_flow(60.0)
    bench.clock.sleep(1.0)
    bench.sdk.qmixpump.Pump.stop_all_pumps()
    assert not pump.is_pumping()
    assert pump.get_dosed_volume() == pytest.approx(1.0)
    assert not pump.has_valve()
    with pytest.raises(bench.sdk.qmixbus.DeviceError) as exc:
        pump.get_valve()
    assert sdk_code(exc) == ErrorCode.NO_VALVE


def test_standin_pump_valve_by_qmix_naming() -> None:
    config = bench_config()
    clock = VirtualClock()
    world = World(config, clock)
    sdk = make_qmixsdk(world, clock, {PUMP_DEVICE: PUMP}, {"neMESYS_Low_Pressure_1_Valve": "V6"})
    bus = sdk.qmixbus.Bus()
    bus.open("cfg", "")
    pump = sdk.qmixpump.Pump()
    pump.lookup_by_device_index(0)
    bus.start()
    assert pump.has_valve()
    valve = pump.get_valve()
    valve.switch_valve_to_position(3)
    clock.sleep(1.0)
    assert world.valve_position("V6") == 3 == valve.actual_valve_position()


def test_standin_valve_takes_time_and_stuck_never_arrives(bench: Bench) -> None:
    bus = bench.sdk.qmixbus.Bus()
    bus.open("cfg", "")
    valve = bench.sdk.qmixvalve.Valve()
    valve.lookup_by_name("Qmix_V_2")
    bus.start()
    assert valve.number_of_valve_positions() == 10
    valve.switch_valve_to_position(4)
    assert valve.actual_valve_position() == 0  # still moving
    bench.clock.sleep(0.5)
    assert valve.actual_valve_position() == 4 == bench.world.valve_position("V2")
    with pytest.raises(bench.sdk.qmixbus.DeviceError):
        valve.switch_valve_to_position(10)
    bench.world.faults["V2"] = "stuck"
    valve.switch_valve_to_position(7)
    bench.clock.sleep(5.0)
    assert valve.actual_valve_position() == 4


def test_standin_is_not_a_top_level_module(bench: Bench) -> None:
    assert "qmixsdk" not in sys.modules
    other = make_qmixsdk_for_bench(bench.world, bench.clock, bench.config)
    bus = other.qmixbus.Bus()
    bus.open("cfg", "")
    assert other.qmixvalve.Valve.get_no_of_valves() == 10
    with pytest.raises(bench.sdk.qmixbus.DeviceError):  # the first SDK's bus is still closed
        bench.sdk.qmixpump.Pump.get_no_of_pumps()


# --------------------------------------------------------------------------- driver: open/close
def test_open_brings_up_the_2023_bench(bench: Bench, caplog: pytest.LogCaptureFixture) -> None:
    import asab.drivers.cetoni as cetoni_module

    cetoni_module._warn_unchecked.cache_clear()  # said once per process: maybe said already
    with caplog.at_level(logging.WARNING, logger="asab.drivers.cetoni"):
        cetoni = bench.open()
    assert "not yet been checked on real" in caplog.text
    bus_protocol: PumpBus = cetoni  # static check only (PumpBus is not runtime-checkable)
    assert callable(bus_protocol.stop_all)
    assert sorted(cetoni.pumps) == sorted(p.name for p in bench.config.pumps)
    assert set(cetoni.valves) == {f"V{n}" for n in range(1, 11)}  # not the driver-less ArdV_0_1
    syringe = bench.config.syringe_of(PUMP)
    pump = cetoni.pumps[PUMP]
    assert isinstance(pump, SyringePump) and isinstance(cetoni.valves["V1"], SelectorValve)
    assert pump.volume_max == pytest.approx(syringe.volume)
    assert (pump.flow_min, pump.flow_max) == (syringe.min_flow, syringe.max_flow)
    handle = second_handle(bench)
    assert handle.is_enabled() and handle.is_calibration_finished()
    assert tuple(handle.get_syringe_param()) == (syringe.inner_diameter, syringe.stroke)
    assert handle.get_volume_max() == pytest.approx(syringe.volume)  # mL
    assert handle.get_flow_rate_max() == pytest.approx(syringe.max_flow)  # mL/s
    assert bench.clock.now() >= 2.0  # waited for the calibration on the clock


def second_handle(bench: Bench) -> Any:
    """A second SDK handle on PUMP_DEVICE (the bus is already open and started)."""
    handle = bench.sdk.qmixpump.Pump()
    handle.lookup_by_name(PUMP_DEVICE)
    return handle


def test_open_clears_a_stale_drive_fault(bench: Bench) -> None:
    bench.world.faults[PUMP] = "overload"
    bench.world.start_pump(PUMP, "aspirate", 1.0, 0.1)  # faults at once
    del bench.world.faults[PUMP]
    assert bench.world.pump_status(PUMP).fault == "overload"
    cetoni = bench.open()
    assert bench.world.pump_status(PUMP).fault is None
    cetoni.pumps[PUMP].aspirate(1.0, 0.1)
    cetoni.pumps[PUMP].wait_until_done(30.0)
    assert cetoni.pumps[PUMP].fill_level() == pytest.approx(1.0)


def test_open_reports_every_missing_device_and_closes_the_bus() -> None:
    config = bench_config()
    bench = make_bench(config)
    pumps = list(config.pumps)
    pumps[1] = pumps[1].model_copy(update={"device": "nope_Pump"})
    pumps[2] = pumps[2].model_copy(update={"device": ""})
    bad = config.model_copy(update={"pumps": tuple(pumps)})
    with pytest.raises(ConfigError) as exc:
        CetoniBus.open(bad, bench.clock, sdk=bench.sdk)
    assert len(exc.value.problems) == 2 and "nope_Pump" in str(exc.value)
    with pytest.raises(bench.sdk.qmixbus.DeviceError):
        bench.sdk.qmixpump.Pump.get_no_of_pumps()  # bus closed again
    bench.open().close()  # and can be opened afresh


def test_open_times_out_on_slow_calibration() -> None:
    config = bench_config()
    config = config.model_copy(update={"cetoni": CetoniSettings(calibration_timeout=5.0)})
    bench = make_bench(config, calibration_time=30.0)
    with pytest.raises(TransportTimeout, match="calibration"):
        bench.open()
    assert bench.clock.now() == pytest.approx(5.0)


def test_open_without_sdk_raises_transport_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "qmixsdk", None)  # makes the import fail
    with pytest.raises(TransportError, match="qmixsdk"):
        CetoniBus.open(bench_config(), VirtualClock())


def test_open_rejects_valve_with_too_few_positions() -> None:
    bench = make_bench(valve_positions={"Qmix_V_4": 6})
    with pytest.raises(ConfigError, match="V4"):
        bench.open()
    with pytest.raises(bench.sdk.qmixbus.DeviceError):
        bench.sdk.qmixpump.Pump.get_no_of_pumps()  # bus closed again


def test_context_manager_closes(bench: Bench) -> None:
    with bench.open() as cetoni:
        cetoni.pumps[PUMP].aspirate(1.0, 0.1)
    assert not bench.world.pump_status(PUMP).pumping
    with pytest.raises(bench.sdk.qmixbus.DeviceError):
        bench.sdk.qmixpump.Pump.get_no_of_pumps()


def test_close_stops_pumps_and_is_idempotent(opened: tuple[Bench, CetoniBus]) -> None:
    bench, cetoni = opened
    cetoni.pumps[PUMP].aspirate(2.0, 0.05)
    cetoni.close()
    cetoni.close()
    assert not bench.world.pump_status(PUMP).pumping
    with pytest.raises(DeviceError, match="bus is not open"):
        cetoni.pumps[PUMP].fill_level()


def test_stop_all_stops_everything(opened: tuple[Bench, CetoniBus]) -> None:
    bench, cetoni = opened
    for name in ROUTED_PUMPS:
        cetoni.pumps[name].aspirate(3.0, 0.05)
    bench.clock.sleep(1.0)
    assert all(bench.world.pump_status(n).pumping for n in ROUTED_PUMPS)
    cetoni.stop_all()
    bench.clock.sleep(1.0)
    assert not any(bench.world.pump_status(n).pumping for n in cetoni.pumps)
    assert all(cetoni.pumps[n].fill_level() == pytest.approx(0.05) for n in ROUTED_PUMPS)


# --------------------------------------------------------------------------- driver: pumps
def test_aspirate_then_dispense_move_the_volume(opened: tuple[Bench, CetoniBus]) -> None:
    bench, cetoni = opened
    pump = cetoni.pumps[PUMP]
    pump.aspirate(4.0, 0.1)
    assert bench.world.pump_status(PUMP).flow == pytest.approx(-0.1)  # mL/s reached the world
    pump.wait_until_done(timeout=60.0)
    assert pump.fill_level() == pytest.approx(4.0) == bench.world.pump_status(PUMP).fill_level
    assert bench.clock.now() == pytest.approx(2.0 + 40.0, abs=1.0)
    pump.dispense(1.5, 0.25)
    pump.wait_until_done(timeout=60.0)
    assert bench.world.pump_status(PUMP).fill_level == pytest.approx(2.5)
    assert bench.world.pump_status(PUMP).dosed_volume == pytest.approx(1.5)


BAD_FLOWS = [-1.0, 0.0, 1e-6, 2.0, math.inf, math.nan]  # mL/s; the 10 mL drive: 1.7e-4 … 1.05
BAD_VOLUMES = [-1.0, 0.0, 10.5, math.inf, math.nan]  # mL; dispense from empty: any > 0 too


@settings(max_examples=30, deadline=None)
@given(
    case=st.one_of(
        st.tuples(st.just("flow"), st.floats(0.1, 1.0), st.sampled_from(BAD_FLOWS)),
        st.tuples(st.just("volume"), st.sampled_from(BAD_VOLUMES), st.just(0.1)),
    ),
    direction=st.sampled_from(["aspirate", "dispense"]),
)
def test_rejections_happen_before_motion(case: tuple[str, float, float], direction: str) -> None:
    bench = make_bench()
    cetoni = bench.open()
    pump = cetoni.pumps[PUMP]
    kind, volume, flow = case
    with pytest.raises(DeviceError) as exc:
        getattr(pump, direction)(volume, flow)
    status = bench.world.pump_status(PUMP)
    assert not status.pumping and status.fill_level == 0.0
    if kind == "flow":
        assert exc.value.cause == "flow out of range"
    else:
        assert exc.value.cause == "volume out of range"
    assert status.target_volume == 0.0 and status.fault is None  # the world never saw a start


def test_capacity_and_fill_level_limits(opened: tuple[Bench, CetoniBus]) -> None:
    bench, cetoni = opened
    pump = cetoni.pumps[PUMP]
    pump.aspirate(6.0, 0.5)
    pump.wait_until_done(60.0)
    with pytest.raises(DeviceError, match="exceeds") as exc:
        pump.aspirate(pump.volume_max - 5.9, 0.5)
    assert exc.value.cause == "volume out of range" and exc.value.device == PUMP
    with pytest.raises(DeviceError, match="cannot dispense"):
        pump.dispense(6.1, 0.5)
    pump.aspirate(pump.volume_max - 6.0, 0.5)  # exactly full is allowed
    with pytest.raises(DeviceBusy):
        pump.dispense(1.0, 0.5)
    pump.wait_until_done(60.0)
    assert pump.fill_level() == pytest.approx(pump.volume_max)


def test_wait_timeout_stops_the_pump(opened: tuple[Bench, CetoniBus]) -> None:
    bench, cetoni = opened
    pump = cetoni.pumps[PUMP]
    pump.aspirate(5.0, 0.01)
    start = bench.clock.now()
    with pytest.raises(TransportTimeout, match="still pumping") as exc:
        pump.wait_until_done(timeout=10.0)
    assert exc.value.device == PUMP
    assert bench.clock.now() - start == pytest.approx(10.0)
    assert not bench.world.pump_status(PUMP).pumping
    level = pump.fill_level()
    bench.clock.sleep(10.0)
    assert pump.fill_level() == level == pytest.approx(0.1, abs=0.01)


def test_fault_raises_device_fault_and_stops(opened: tuple[Bench, CetoniBus]) -> None:
    bench, cetoni = opened
    pump = cetoni.pumps[PUMP]
    bench.world.faults[PUMP] = "overload"  # the world faults the pump as it starts
    pump.aspirate(5.0, 0.1)
    with pytest.raises(DeviceFault) as exc:
        pump.wait_until_done(timeout=100.0)
    assert exc.value.device == PUMP and exc.value.cause == "drive fault"
    assert not bench.world.pump_status(PUMP).pumping
    bench.world.clear_faults()  # the cause is gone, the drive's fault stays latched
    assert pump.in_fault()
    for move in (pump.aspirate, pump.dispense):  # refused by the driver, not the SDK
        with pytest.raises(DeviceFault) as exc2:
            move(1.0, 0.1)
        assert (exc2.value.device, exc2.value.cause) == (PUMP, "drive fault")
        assert "clear the fault" in str(exc2.value)
    with pytest.raises(DeviceFault):
        pump.generate_flow(-0.1)
    status = bench.world.pump_status(PUMP)
    assert not status.pumping and status.target_volume == 5.0  # nothing was started again
    pump.clear_fault()  # SDK clear_fault + enable
    assert not pump.in_fault() and second_handle(bench).is_enabled()
    pump.aspirate(1.0, 0.1)
    pump.wait_until_done(timeout=100.0)
    assert pump.fill_level() == pytest.approx(1.0)


def test_clear_fault_reports_a_drive_that_stays_faulted(
        opened: tuple[Bench, CetoniBus], monkeypatch: pytest.MonkeyPatch) -> None:
    bench, cetoni = opened
    pump = cetoni.pumps[PUMP]
    bench.world.faults[PUMP] = "overload"
    pump.aspirate(1.0, 0.1)
    monkeypatch.setattr(bench.world, "clear_pump_fault", lambda name: None)  # a dead drive
    with pytest.raises(DeviceError) as exc:  # the drive refuses to be enabled while faulted
        pump.clear_fault()
    assert exc.value.device == PUMP and "fault state" in str(exc.value)
    assert pump.in_fault()


def test_route_closed_mid_move_is_a_fault(opened: tuple[Bench, CetoniBus]) -> None:
    bench, cetoni = opened
    pump = cetoni.pumps[PUMP]
    pump.aspirate(5.0, 0.1)
    bench.clock.sleep(3.0)
    for n in range(1, 11):  # someone turns every valve under the running pump
        bench.world.set_valve(f"V{n}", 5)
    t0 = bench.clock.now()
    with pytest.raises(DeviceFault):
        pump.wait_until_done(timeout=100.0)
    assert bench.clock.now() - t0 <= 1.0
    assert not bench.world.pump_status(PUMP).pumping
    assert pump.fill_level() == pytest.approx(0.3, abs=0.06)


# --------------------------------------------------------------------------- driver: valves
def test_valve_switch_is_verified(opened: tuple[Bench, CetoniBus]) -> None:
    bench, cetoni = opened
    valve = cetoni.valves["V3"]
    assert valve.position_count == 10
    t0 = bench.clock.now()
    valve.switch(6)
    assert valve.position() == 6 == bench.world.valve_position("V3")
    assert bench.clock.now() - t0 >= 0.5
    with pytest.raises(DeviceError) as exc:
        valve.switch(10)
    assert exc.value.cause == "position out of range"
    assert bench.world.valve_position("V3") == 6


def test_stuck_valve_raises_device_fault(opened: tuple[Bench, CetoniBus]) -> None:
    bench, cetoni = opened
    bench.world.faults["V3"] = "stuck"
    t0 = bench.clock.now()
    with pytest.raises(DeviceFault) as exc:
        cetoni.valves["V3"].switch(2)
    assert exc.value.cause == "valve did not reach position" and exc.value.device == "V3"
    assert bench.clock.now() - t0 == pytest.approx(10.0)
    assert bench.world.valve_position("V3") == 0


# --------------------------------------------------------------------------- read-back checks
def test_open_reads_the_syringe_parameters_back(opened: tuple[Bench, CetoniBus]) -> None:
    bench, _ = opened
    handle = bench.sdk.qmixpump.Pump()
    handle.lookup_by_name(PUMP_DEVICE)
    param = handle.get_syringe_param()
    syringe = bench.config.syringe_of(PUMP)
    assert (param.inner_diameter_mm, param.max_piston_stroke_mm) == (
        syringe.inner_diameter, syringe.stroke)


@pytest.mark.parametrize("getter, value, cause", [
    ("get_syringe_param", None, "syringe mismatch"),  # the drive kept another syringe
    ("get_flow_rate_max", 63.0, "unit mismatch"),  # the SDK still counts per minute
])
def test_open_refuses_a_drive_that_reads_back_wrong(monkeypatch: pytest.MonkeyPatch, getter: str,
                                                    value: Any, cause: str) -> None:
    bench = make_bench()
    pump_cls = bench.sdk.qmixpump.Pump
    wrong = bench.sdk.qmixpump.SyringeParam(*WRONG_SYRINGE) if value is None else value
    monkeypatch.setattr(pump_cls, getter, lambda self: wrong)
    with pytest.raises(DeviceError) as exc:
        bench.open()
    assert exc.value.cause == cause and exc.value.device in {p.name for p in bench.config.pumps}


def test_a_move_stopped_behind_the_drivers_back_is_a_dose_mismatch(
        opened: tuple[Bench, CetoniBus]) -> None:
    bench, cetoni = opened
    pump = cetoni.pumps[PUMP]
    pump.aspirate(5.0, 0.1)
    bench.clock.sleep(10.0)
    bench.world.stop_pump(PUMP)  # e.g. the stop key on the device
    with pytest.raises(DeviceFault, match="dosed 1.0") as exc:
        pump.wait_until_done(timeout=100.0)
    assert exc.value.cause == "dosed volume mismatch" and exc.value.device == PUMP
    pump.dispense(0.5, 0.1)  # a fresh move is checked against its own command
    pump.wait_until_done(timeout=100.0)
    assert pump.fill_level() == pytest.approx(0.5) and pump.dosed_volume() == pytest.approx(0.5)


def test_overload_part_way_through_a_move(opened: tuple[Bench, CetoniBus]) -> None:
    bench, cetoni = opened
    bench.sdk.inject(PUMP, "overload", after=1.0)
    pump = cetoni.pumps[PUMP]
    pump.aspirate(5.0, 0.1)
    with pytest.raises(DeviceFault) as exc:
        pump.wait_until_done(timeout=100.0)
    assert exc.value.cause == "drive fault"
    assert bench.world.pump_status(PUMP).fill_level == pytest.approx(1.0)
    assert bench.clock.now() - 2.0 == pytest.approx(10.0, abs=1.0)  # after calibration


# --------------------------------------------------------------------------- continuous flow
def test_generate_flow_runs_until_stopped(opened: tuple[Bench, CetoniBus]) -> None:
    bench, cetoni = opened
    pump = cetoni.pumps[PUMP]
    pump.generate_flow(-0.2)  # aspirate continuously
    bench.clock.sleep(10.0)
    assert pump.is_pumping() and pump.fill_level() == pytest.approx(2.0, abs=0.11)
    with pytest.raises(DeviceBusy):
        pump.generate_flow(0.2)
    pump.stop()
    level = pump.fill_level()
    bench.clock.sleep(5.0)
    assert not pump.is_pumping() and pump.fill_level() == level
    pump.wait_until_done(1.0)  # nothing commanded by volume, nothing to compare
    for bad in (2.0, -2.0, 0.0):
        with pytest.raises(DeviceError) as exc:
            pump.generate_flow(bad)
        assert exc.value.cause == "flow out of range"


def test_generate_flow_stops_when_the_syringe_is_empty(opened: tuple[Bench, CetoniBus]) -> None:
    bench, cetoni = opened
    pump = cetoni.pumps[PUMP]
    with pytest.raises(DeviceError, match="empty"):
        pump.generate_flow(0.1)
    pump.aspirate(1.0, 0.5)
    pump.wait_until_done(10.0)
    pump.generate_flow(0.5)
    bench.clock.sleep(5.0)
    assert not pump.is_pumping() and pump.fill_level() == pytest.approx(0.0, abs=1e-9)


# --------------------------------------------------------------------------- injected faults
def test_busy_drive_refuses_moves_until_stopped(opened: tuple[Bench, CetoniBus]) -> None:
    bench, cetoni = opened
    pump = cetoni.pumps[PUMP]
    bench.sdk.inject(PUMP_DEVICE, "busy", duration=30.0)
    with pytest.raises(DeviceBusy) as exc:
        pump.aspirate(1.0, 0.1)
    assert exc.value.device == PUMP and bench.world.pump_status(PUMP).target_volume == 0.0
    cetoni.stop_all()
    pump.aspirate(1.0, 0.1)
    pump.wait_until_done(30.0)


def test_status_queries_are_retried_commands_are_not(opened: tuple[Bench, CetoniBus]) -> None:
    bench, cetoni = opened
    pump = cetoni.pumps[PUMP]
    bench.sdk.inject(PUMP, "no_reply", calls=2)
    assert pump.fill_level() == 0.0  # third attempt answers
    bench.sdk.inject(PUMP, "no_reply", calls=3)
    with pytest.raises(DeviceError, match="did not reply") as exc:
        pump.is_pumping()
    assert exc.value.cause == "sdk error" and exc.value.device == PUMP
    bench.sdk.inject(PUMP, "no_reply", calls=1)
    with pytest.raises(DeviceError):
        pump.stop()  # a command: never repeated
    bench.sdk.inject("V3", "no_reply")
    with pytest.raises(DeviceError):
        cetoni.valves["V3"].position()
    bench.sdk.clear_faults()
    assert cetoni.valves["V3"].position() == 0


def test_slow_valve_is_reported_then_arrives(opened: tuple[Bench, CetoniBus]) -> None:
    bench, cetoni = opened
    valve = cetoni.valves["V3"]
    bench.sdk.inject("V3", "slow", delay=30.0)
    with pytest.raises(DeviceFault) as exc:
        valve.switch(4)
    assert exc.value.cause == "valve did not reach position"
    bench.clock.sleep(25.0)
    assert bench.world.valve_position("V3") == 4  # late, but it got there
    bench.sdk.inject("V3", "slow", delay=5.0)
    t0 = bench.clock.now()
    valve.switch(6)
    assert bench.clock.now() - t0 == pytest.approx(5.5, abs=0.5)


@pytest.mark.parametrize("name, kind, params, error", [
    ("nowhere", "busy", {}, KeyError), (PUMP, "stuck", {}, ValueError),
    ("V3", "busy", {}, ValueError), (PUMP, "busy", {"delay": 1.0}, ValueError),
])
def test_inject_rejects_unknown_targets_and_kinds(bench: Bench, name: str, kind: str,
                                                 params: dict[str, float], error: type) -> None:
    with pytest.raises(error):
        bench.sdk.inject(name, kind, **params)
