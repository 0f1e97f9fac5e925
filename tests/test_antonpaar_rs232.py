"""Anton Paar DMA 4100 M + Lovis 2000 ME over RS-232: codec, golden traffic (driver codec AND
simulator parser), faults, the real driver against the simulator through ``simbench://``, the
configuration switch and one density job of the main job with ``interface = "rs232"``."""

from __future__ import annotations

import json
import re
import statistics
import uuid
from pathlib import Path

import pytest
from conftest import HIU_2023

from asab.config.models import DensimeterSettings, SerialSettings
from asab.drivers import antonpaar_rs232_codec as codec
from asab.drivers import open_densimeter
from asab.drivers.antonpaar import DMA4100LimsDriver
from asab.drivers.antonpaar_rs232 import MAX_REMEASURE, SAFE_TRIES, DMA4100Rs232Driver
from asab.drivers.antonpaar_rs232_codec import ReplyError
from asab.drivers.base import DensityViscosityMeter
from asab.errors import DeviceBusy, DeviceError, DeviceFault, TransportTimeout
from asab.requests import load_jobs
from asab.runner import run_jobs
from simulators import physics, urlhandler
from simulators.antonpaar_core import load_params
from simulators.antonpaar_serial import SERIAL_FAULTS, DMA4100SerialSimulator
from simulators.bench import start_simulation
from simulators.clock import VirtualClock
from simulators.liquid import Liquid

GOLDEN = Path(__file__).parent / "golden" / "antonpaar_rs232.jsonl"
METHOD_T = 298.15
REP_S = load_params().methods["Density_Viscosity"].repetition_duration


def golden() -> list[dict]:
    lines = GOLDEN.read_text(encoding="utf-8").splitlines()
    return [json.loads(ln) for ln in lines if ln.strip() and "_comment" not in json.loads(ln)]


@pytest.fixture(scope="module")
def cell(bench_config) -> tuple[dict, Liquid]:
    """Chemicals and 1.5 mL of the 2023 stock 1.5M-LiPF6-EC-EMC (a filled cell)."""
    chems = {c.inchikey: c for c in bench_config.chemicals}
    stock = bench_config.stock("1.5M-LiPF6-EC-EMC")
    scale = 1.5 * stock.density / stock.total_mass
    moles = {k: m.mass * scale / chems[k].molar_mass for k, m in stock.components.items() if m.mass > 0}
    return chems, Liquid(moles=moles, volume=1.5, mass=1.5 * stock.density)


class Rig:
    """The serial simulator registered on simbench:// and the real driver opened on it."""

    def __init__(self, chems: dict, content: Liquid, **settings) -> None:
        self.clock = VirtualClock()
        self.content = content
        self.sim = DMA4100SerialSimulator(lambda: self.content, chems, self.clock, seed=3)
        self.url_name = f"dma-{uuid.uuid4().hex[:8]}"
        urlhandler.install()
        urlhandler.register(self.url_name, self.sim, self.clock)
        self.settings = DensimeterSettings(
            instrument="densiVisco", interface="rs232",
            serial=SerialSettings(url=f"simbench://{self.url_name}"), **settings)
        self.driver = DMA4100Rs232Driver(self.settings, self.clock)

    def close(self) -> None:
        self.driver.close()
        urlhandler.unregister(self.url_name)
        self.sim.close()


@pytest.fixture
def rig(cell):
    r = Rig(cell[0], cell[1].copy())
    yield r
    r.close()


# ------------------------------------------------------------------------------- golden traffic
def test_golden_file_is_in_code_page_850_with_cr_frames() -> None:
    entries = golden()
    assert len(entries) >= 20
    for e in entries:
        assert bytes.fromhex(e["tx_hex"]) == e["tx"].encode("cp850") and e["tx"].endswith("\r")
        assert bytes.fromhex(e["rx_hex"]) == e["rx"].encode("cp850") and e["rx"].endswith("\r")
    units = next(e for e in entries if e["tx"] == "getdataunit\r")
    assert bytes.fromhex(units["rx_hex"]).startswith(b"g/cm\xfc;\xf8C;-;mPa\xfas")


@pytest.mark.parametrize("entry", golden(), ids=lambda e: e["step"])
def test_golden_against_driver_codec(entry: dict) -> None:
    """The driver's encoder produces tx byte for byte; its decoder reads rx as expected."""
    fn, *args = entry["call"]
    assert getattr(codec, fn)(*args) == bytes.fromhex(entry["tx_hex"])
    reply = codec.decode_reply(bytes.fromhex(entry["rx_hex"]), "dens")
    expect = entry["expect"]
    if "error" in expect:
        with pytest.raises(DeviceError) as info:
            codec.raise_for_reply("dens", entry["tx"].strip(), reply)
        assert type(info.value).__name__ == expect["error"] and info.value.cause == expect["cause"]
        assert info.value.device == "dens"
        return
    codec.raise_for_reply("dens", entry["tx"].strip(), reply)  # not a refusal
    if "status" in expect:
        assert codec.normalise(reply) == expect["status"]
    if "columns" in expect:
        assert len(codec.columns(reply)) == expect["columns"]
    if "data" in expect:
        layout = _golden_layout()
        rep = codec.parse_data(reply, layout, 1)
        for key, value in expect["data"].items():
            assert getattr(rep, key) == (pytest.approx(value) if isinstance(value, float) else value), key


def _golden_layout() -> codec.Layout:
    entries = golden()
    head = next(e for e in entries if e["tx"] == "getdatahead\r")
    units = next(e for e in entries if e["tx"] == "getdataunit\r")
    return codec.parse_layout(codec.decode_reply(bytes.fromhex(head["rx_hex"])),
                              codec.decode_reply(bytes.fromhex(units["rx_hex"])))


def test_golden_session_against_simulator(cell) -> None:
    """The simulator, driven through the golden session in order, answers every tx as recorded."""
    chems, liquid = cell
    clock = VirtualClock()
    sim = DMA4100SerialSimulator(lambda: liquid, chems, clock, seed=5)
    try:
        for e in golden():
            before = e.get("before", {})
            if "wait" in before:
                clock.sleep(before["wait"])
            if "inject" in before:
                kind, params = before["inject"]
                sim.inject(kind, **params)
            sim.receive(bytes.fromhex(e["tx_hex"]))
            clock.sleep(0.2)
            reply = sim.transmit()
            if e["sim"] == "exact":
                assert reply == bytes.fromhex(e["rx_hex"]), e["step"]
            else:
                assert re.fullmatch(e["rx_pattern"], reply.decode("cp850")), (e["step"], reply)
    finally:
        sim.close()


# ------------------------------------------------------------------------------- codec
@pytest.mark.parametrize("head, units, line, density, t_k, eta", [
    ("Density;Density Temperature;Density Condition", "kg/m³;K;-", "1211.20;298.151;valid",
     1.2112, 298.151, None),
    ("Density Condition;Density;Density Temperature;Lovis Dyn. Viscosity;Lovis Condition",
     "-;g/cm3;°F;Pa·s;-", "valid;1.21120;77.000;0.0034012;valid", 1.2112, 298.15, 3.4012),
])
def test_units_come_from_getdataunit(head, units, line, density, t_k, eta) -> None:
    rep = codec.parse_data(line, codec.parse_layout(head, units), 1)
    assert rep.density == pytest.approx(density) and rep.density_temperature == pytest.approx(t_k)
    assert rep.viscosity == (None if eta is None else pytest.approx(eta))
    assert rep.viscosity_condition == "---" and not rep.viscosity_valid if eta is None else rep.viscosity_valid


@pytest.mark.parametrize("head, units, cause", [
    ("Density;Density Temperature;Density Condition", "-;°C;-", "unknown unit"),
    ("Density;Density Temperature;Density Condition", "g/cm³;mPa·s;-", "unknown unit"),
    ("Density;Density Temperature;Density Condition", "g/cm³;°C", "unexpected data layout"),
    ("Density;Density Condition", "g/cm³;-", "unexpected data layout"),
])
def test_bad_layouts_are_typed_errors(head, units, cause) -> None:
    with pytest.raises(DeviceError) as info:
        codec.parse_layout(head, units, "dens")
    assert info.value.cause == cause and info.value.device == "dens"


def test_no_value_and_garbled_data() -> None:
    layout = _golden_layout()
    rep = codec.parse_data("---;25.000;Filling error;---;25.000;Filling error;---;---", layout, 2)
    assert rep.density is None and not rep.density_valid and rep.density_condition == "Filling error"
    for bad in ("1.21120;25.001;valid", "1.2\xb1120;25.001;valid;3.4;25.0;valid;1.0;1.0"):
        with pytest.raises(ValueError):
            codec.parse_data(bad, layout, 1)
    with pytest.raises(ReplyError) as info:
        codec.decode_reply(b"Measurement fin", "dens")
    assert info.value.cause == "truncated reply"
    with pytest.raises(ValueError):
        codec.encode_command("getdata;abort")


# ------------------------------------------------------------------------------- driver + simulator
def test_measurement_through_simbench_matches_the_model(rig: Rig, cell) -> None:
    chems, liquid = cell
    assert isinstance(rig.driver, DensityViscosityMeter)
    assert rig.driver.identify().startswith("83456789;DMA 4100 M")
    start = rig.clock.now()
    result = rig.driver.measure("S_001")
    assert 3 * REP_S <= rig.clock.now() - start <= 3 * REP_S + 10
    reps = result.repetitions
    assert [r.repetition for r in reps] == [1, 2, 3]
    assert all(r.density_valid and r.viscosity_valid for r in reps)
    rho = physics.density(liquid.moles, METHOD_T, chems)
    eta = physics.viscosity(liquid.moles, METHOD_T, chems)
    assert statistics.fmean(r.density for r in reps) == pytest.approx(rho, abs=3e-4)
    assert all(r.viscosity == pytest.approx(eta, rel=0.01) for r in reps)
    assert all(abs(r.density_temperature - METHOD_T) < 0.02 for r in reps)
    lines = result.raw_text.split("\r\n")
    assert lines[1] == "g/cm³;°C;-;mPa·s;°C;-;s;s" and len(lines) == 6 and result.raw_file == "S_001_Density_Viscosity_rs232.csv"


def test_new_set_point_is_waited_for_and_confirmed(cell) -> None:
    """Set to 40 °C: start answers `heating` until the cell settles; values are at 40 °C."""
    rig = Rig(cell[0], cell[1].copy(), temperature=313.15, method_number=3)
    try:
        start = rig.clock.now()
        result = rig.driver.measure("hot")
        elapsed = rig.clock.now() - start
        settle = load_params().time_constant * 5  # 15 K → 0.02 K takes ln(750) ≈ 6.6 τ
        assert settle < elapsed < 900
        assert all(abs(r.density_temperature - 313.15) < 0.1 and r.density_valid for r in result.repetitions)
        rho = physics.density(rig.content.moles, 313.15, cell[0])
        assert statistics.fmean(r.density for r in result.repetitions) == pytest.approx(rho, abs=3e-4)
    finally:
        rig.close()


def test_temperature_not_confirmed_invalidates_repetitions(cell) -> None:
    """The cell sits 0.018 K off its set point (inside the instrument's 0.02 K settled band, so
    it measures) but outside the driver's 0.005 K tolerance (the noise is 0.002 K)."""
    rig = Rig(cell[0], cell[1].copy(), temperature_tolerance=0.005)
    core = rig.sim.core
    rig.clock.add_listener(lambda now, dt: setattr(core, "temperature", core.set_point + 0.018))
    try:
        result = rig.driver.measure("tight")
        assert not any(r.density_valid or r.viscosity_valid for r in result.repetitions)
        assert all("not confirmed" in r.density_condition for r in result.repetitions)
    finally:
        rig.close()


# ------------------------------------------------------------------------------- faults
@pytest.mark.parametrize("kind, error, cause", [
    ("busy", DeviceBusy, "measurement already started"),
    ("invalid_method", DeviceError, "invalid method"),
])
def test_start_refusals_are_typed_errors(rig: Rig, kind, error, cause) -> None:
    rig.sim.inject(kind)
    start = rig.clock.now()
    with pytest.raises(error) as info:
        rig.driver.measure("refused")
    assert info.value.device == "densiVisco" and info.value.cause == cause
    assert rig.clock.now() - start < 5


def test_heating_that_never_ends_is_bounded(rig: Rig) -> None:
    rig.sim.inject("heating")
    start = rig.clock.now()
    with pytest.raises(DeviceBusy) as info:
        rig.driver.measure("cold", timeout=120.0)
    assert info.value.device == "densiVisco" and info.value.cause == "heating"
    assert 118 <= rig.clock.now() - start <= 125


@pytest.mark.parametrize("kind, error, cause", [
    ("no_reply", TransportTimeout, "no reply"),
    ("garbled", ReplyError, "garbled reply"),
    ("truncated", ReplyError, "truncated reply"),
])
def test_a_dead_or_noisy_line_fails_after_bounded_retries(rig: Rig, kind, error, cause) -> None:
    rig.sim.inject(kind)
    start = rig.clock.now()
    with pytest.raises(error, match=cause) as info:
        rig.driver.measure("line")
    assert info.value.device == "densiVisco"
    assert rig.clock.now() - start <= SAFE_TRIES * rig.settings.serial.timeout + 1


@pytest.mark.parametrize("kind", ["no_reply", "garbled", "truncated", "no_new_data"])
def test_one_lost_getdata_is_measured_again(rig: Rig, kind) -> None:
    params = {"count": 1} | ({"commands": ["getdata"]} if kind != "no_new_data" else {})
    rig.sim.inject(kind, **params)
    start = rig.clock.now()
    result = rig.driver.measure("again")
    assert len(result.repetitions) == 3 and all(r.density_valid for r in result.repetitions)
    assert 4 * REP_S <= rig.clock.now() - start <= 4 * REP_S + 15, "exactly one extra repetition"


def test_data_lost_every_time_is_a_device_fault(rig: Rig) -> None:
    rig.sim.inject("no_new_data")
    start = rig.clock.now()
    with pytest.raises(DeviceFault) as info:
        rig.driver.measure("lost")
    assert info.value.device == "densiVisco" and info.value.cause == "no new data available"
    assert rig.clock.now() - start <= (MAX_REMEASURE + 1) * REP_S + 15


@pytest.mark.parametrize("count", [None, 1])
def test_lost_start_reply_is_resolved_without_a_second_measurement(rig: Rig, count) -> None:
    rig.sim.inject("no_reply", commands=["start"], count=count)
    start = rig.clock.now()
    result = rig.driver.measure("quiet_start")
    assert len(result.repetitions) == 3 and 3 * REP_S <= rig.clock.now() - start <= 3 * REP_S + 15


def test_fw_bw_derived_from_rolling_times_invalidates_viscosity_only(rig: Rig) -> None:
    rig.sim.inject("fw_bw", count=2)
    result = rig.driver.measure("rolling")
    first, second, third = result.repetitions
    for rep in (first, second):
        assert rep.density_valid and rep.viscosity is None and not rep.viscosity_valid
        assert rep.viscosity_condition == "FW/BW dev. too high"
    assert third.viscosity_valid
    fw, bw = (float(x) for x in result.raw_text.split("\r\n")[2].split(";")[-2:])
    assert abs(fw - bw) / (0.5 * (fw + bw)) > load_params().fw_bw_tolerance


def test_measurement_that_never_finishes_is_aborted(rig: Rig) -> None:
    start = rig.clock.now()
    with pytest.raises(TransportTimeout, match="not finished"):
        rig.driver.measure("slow", timeout=30.0)
    assert rig.clock.now() - start <= 35
    assert rig.driver.status() == codec.NOT_STARTED, "the driver aborted the measurement"


def test_fault_api_is_uniform_and_clearable(rig: Rig) -> None:
    assert set(SERIAL_FAULTS) == {"no_reply", "garbled", "truncated", "busy", "heating",
                                  "invalid_method", "fw_bw", "no_new_data"}
    with pytest.raises(ValueError, match="half_written"):
        rig.sim.inject("half_written")
    with pytest.raises(ValueError):
        rig.sim.inject("busy", delay=3)
    rig.sim.inject("no_reply")
    rig.sim.inject("fw_bw")
    rig.sim.clear_faults()
    assert all(r.viscosity_valid for r in rig.driver.measure("clean").repetitions)


# ------------------------------------------------------------------------------- configuration
def test_settings_select_the_driver(tmp_path: Path, rig: Rig) -> None:
    with pytest.raises(ValueError, match="needs serial settings"):
        DensimeterSettings(instrument="x", interface="rs232")
    with pytest.raises(ValueError, match="lims_input_dir"):
        DensimeterSettings(instrument="x")
    assert rig.settings.serial.parity == "N" and rig.settings.serial.baudrate == 9600
    assert isinstance(open_densimeter(rig.settings, rig.clock), DMA4100Rs232Driver)
    lims = DensimeterSettings(instrument="x", lims_input_dir=str(tmp_path), lims_output_dir=str(tmp_path))
    assert isinstance(open_densimeter(lims, rig.clock), DMA4100LimsDriver)


def _rs232_config(bench_config):
    dens = bench_config.densimeter.model_copy(update={
        "interface": "rs232", "serial": SerialSettings(url="COM7", parity="N"), "method_number": 1})
    return bench_config.model_copy(update={"densimeter": dens})


def test_simulated_bench_attaches_the_serial_densimeter(bench_config, tmp_path: Path) -> None:
    sim = start_simulation(_rs232_config(bench_config), tmp_path)
    try:
        assert isinstance(sim.densimeter, DMA4100SerialSimulator)
        assert sim.config.densimeter.serial.url.startswith("simbench://densiVisco-")
        assert not (tmp_path / "lims_in").exists()
    finally:
        sim.close()


def test_main_job_runs_with_the_rs232_densimeter(bench_config, tmp_path: Path) -> None:
    """One density job of the demo, end to end, with the densimeter on RS-232."""
    from asab.cli.wiring import simulated_bench

    config = _rs232_config(bench_config)
    with simulated_bench(config, tmp_path / "instruments") as bench:
        assert isinstance(bench.densimeter, DMA4100Rs232Driver)
        summary = run_jobs(bench, load_jobs(HIU_2023 / "demo_requests.json")[:1], tmp_path / "run")
    assert summary.succeeded == 1 and summary.failed == 0
    record = json.loads(next((tmp_path / "run" / "records").glob("*.json")).read_text())
    m = record["measurement"]
    assert m["density"]["n_valid"] == 3 and m["viscosity"]["n_valid"] == 3
    assert m["raw_file"].endswith("_rs232.csv") and m["raw_text"].startswith("Density;")
    expected = physics.model_density(record["requested"], m["temperature"], bench_config)
    assert abs(m["density"]["mean"] - expected) < 0.002


def test_getdata_reply_lost_every_time_is_data_lost(rig: Rig) -> None:
    """The reply to getdata never arrives, the probe says no new data: the data were consumed
    and lost on the way back (cause "data lost", not the instrument's "no new data")."""
    rig.sim.inject("no_reply", commands=["getdata"])
    with pytest.raises(DeviceFault) as info:
        rig.driver.measure("silent")
    assert info.value.device == "densiVisco" and info.value.cause == "data lost"


def test_garbled_data_every_time_is_a_device_fault(rig: Rig) -> None:
    rig.sim.inject("garbled", commands=["getdata"])
    with pytest.raises(DeviceFault) as info:
        rig.driver.measure("noisy")
    assert info.value.device == "densiVisco" and info.value.cause == "data lost"


def test_recorded_traffic_uses_only_golden_frames(cell, tmp_path: Path) -> None:
    """With ``serial.record`` set, a measurement's traffic is recorded; every frame the driver
    sent is one of the golden requests, and every reply has the golden shape (CR-terminated)."""
    from asab.drivers.transport import read_records

    record = tmp_path / "dens.jsonl"
    rig = Rig(cell[0], cell[1].copy())
    try:
        serial = rig.settings.serial.model_copy(update={"record": str(record)})
        driver = DMA4100Rs232Driver(rig.settings.model_copy(update={"serial": serial}), rig.clock)
        driver.measure("recorded")
        driver.close()
    finally:
        rig.close()
    sent = {bytes.fromhex(e["tx_hex"]) for e in golden()}
    records = read_records(record)
    assert {r["data"] for r in records if r["dir"] == "tx"} <= sent
    assert all(r["data"].endswith(b"\r") for r in records if r["dir"] == "rx")
    assert sum(r["data"] == b"getdata\r" for r in records) == 3
