"""The pieces of ``asab simulate``: TCP serial bridge, qmixsdk JSON RPC + shim, written config."""

from __future__ import annotations

import json
import shutil
import socket
import sys
import time
import tomllib
from pathlib import Path

import pytest
import serial
import tomli_w

from asab.clock import RealClock
from asab.config.loader import load_bench
from asab.config.models import BalanceSettings, SerialSettings
from asab.drivers.cetoni import CetoniBus
from asab.drivers.cetoni_devices import load_vendor_sdk
from asab.drivers.sartorius import SartoriusEntrisII
from asab.errors import DeviceError as AsabDeviceError
from asab.errors import TransportError
from simulators.clock import RealTimeClock, VirtualClock
from simulators.exported_config import MIN_WAIT_BOUND, Endpoints, shrink, write_bench_config
from simulators.faults import CATALOGUE, parse_fault_spec
from simulators.launcher import LaunchOptions, launch, main
from simulators.netserial import SerialBridge
from simulators.qmixsdk import ErrorCode, make_qmixsdk_for_bench
from simulators.qmixsdk.remote import (
    RPC_CONNECTION_ERROR, SdkServer, client_namespace, write_shim,
)
from simulators.sartorius import EntrisIISimulator
from simulators.world import World

HIU_2023 = Path(__file__).resolve().parents[1] / "hardware_configs" / "hiu_2023"
TOKEN = "test-token"


# --------------------------------------------------------------------------- serial bridge
@pytest.fixture
def balance_on_tcp():
    """An Entris II simulator (load settable) on a TCP port, its clock 20× real time."""
    load = {"g": 0.0}
    clock = RealTimeClock(speed=20.0)
    sim = EntrisIISimulator(lambda: load["g"], clock)
    clock.start()
    bridge = SerialBridge(sim, "balance").start()
    try:
        yield bridge, load
    finally:
        bridge.close()
        sim.close()
        clock.stop()


def test_pyserial_socket_url_reaches_the_simulated_balance(balance_on_tcp) -> None:
    bridge, load = balance_on_tcp
    load["g"] = 12.3456
    time.sleep(0.2)  # 4 s simulated: past the 2 s settle time
    port = serial.serial_for_url(bridge.url, timeout=2.0)
    try:
        port.write(b"\x1bP\r\n")
        line = port.read_until(b"\n")
    finally:
        port.close()
    assert len(line) == 16 and line.endswith(b"\r\n")
    assert line[-5:-2].strip() == b"g"  # stable: unit field filled
    assert float(line[1:11].replace(b" ", b"")) == pytest.approx(12.3456, abs=5e-4)


def test_real_driver_reads_and_tares_over_tcp(balance_on_tcp) -> None:
    bridge, load = balance_on_tcp
    settings = BalanceSettings(serial=SerialSettings(url=bridge.url, timeout=1.0), vessel="pan",
                               stable_timeout=10.0)
    balance = SartoriusEntrisII(settings, RealClock())
    try:
        load["g"] = 50.0
        assert balance.read(stable=True).value == pytest.approx(50.0, abs=5e-4)
        balance.tare()
        assert balance.read(stable=True).value == pytest.approx(0.0, abs=5e-4)  # tare arrived
        load["g"] = 52.5
        assert balance.read(stable=True).value == pytest.approx(2.5, abs=5e-4)
    finally:
        balance.close()


def test_a_second_host_is_refused_and_the_port_is_freed(balance_on_tcp) -> None:
    bridge, _ = balance_on_tcp
    first = socket.create_connection((bridge.host, bridge.port), timeout=2.0)
    try:
        time.sleep(0.1)
        second = socket.create_connection((bridge.host, bridge.port), timeout=2.0)
        assert second.recv(16) == b""  # closed by the bridge at once
        second.close()
        first.sendall(b"\x1bP\r\n")
        assert first.recv(64).endswith(b"\r\n")  # the first host still talks to the balance
    finally:
        first.close()
    port = bridge.port
    bridge.close()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1.0).close()


# --------------------------------------------------------------------------- qmixsdk RPC
@pytest.fixture
def remote_sdk(bench_config):
    """A stand-in SDK over a world on a virtual clock, served on loopback; a client for it."""
    clock = VirtualClock()
    world = World(bench_config, clock)
    server = SdkServer(make_qmixsdk_for_bench(world, clock, bench_config), TOKEN).start()
    client = client_namespace(server.host, server.port, TOKEN, timeout=5.0)
    try:
        yield client, world, clock, server
    finally:
        client.connection.close()
        server.close()


def test_driver_moves_a_pump_and_switches_a_valve_through_the_proxy(remote_sdk, bench_config) -> None:
    client, world, clock, _ = remote_sdk
    bus = CetoniBus.open(bench_config, clock, sdk=client)
    try:
        pump, valve = bus.pumps["A0.0"], bus.valves["V3"]
        pump.aspirate(1.0, 0.1)
        assert pump.is_pumping()
        pump.wait_until_done(timeout=30.0)
        assert pump.fill_level() == pytest.approx(1.0, abs=1e-9)
        assert world.syringe_contents("A0.0").volume > 0.9  # liquid really moved
        pump.dispense(0.4, 0.1)
        pump.wait_until_done(timeout=30.0)
        assert world.pump_status("A0.0").fill_level == pytest.approx(0.6, abs=1e-9)
        valve.switch(3)
        assert valve.position() == 3 == world.valve_position("V3")
    finally:
        bus.close()
    assert not world.pump_status("A0.0").pumping
    with pytest.raises(AsabDeviceError, match=f"SDK error {int(ErrorCode.BUS_NOT_OPEN)}") as info:
        pump.fill_level()  # the SDK refuses (bus closed): its error reaches the driver
    assert info.value.cause == "sdk error"


def test_sdk_error_crosses_the_wire_with_its_code(remote_sdk) -> None:
    client, _, _, _ = remote_sdk
    bus = client.qmixbus.Bus()
    bus.open("cfg", "")
    pump = client.qmixpump.Pump()
    with pytest.raises(client.qmixbus.DeviceError) as info:
        pump.lookup_by_name("no_such_pump")
    assert info.value.errorcode == ErrorCode.NO_SUCH_DEVICE
    pump.lookup_by_name("neMESYS_Low_Pressure_1_Pump")
    with pytest.raises(client.qmixbus.DeviceError) as info:
        pump.aspirate(1.0, 0.1)  # bus not started
    assert info.value.errorcode == ErrorCode.BUS_NOT_STARTED
    bus.start()
    valve = pump.get_valve() if pump.has_valve() else None
    assert valve is None  # the 2023 bench has no pump-mounted valves
    assert client.qmixpump.Pump.get_no_of_pumps() == 6
    assert isinstance(bus.get_err_msg(int(ErrorCode.FAULT)), str)
    bus.close()


def test_a_client_that_leaves_with_pumps_running_gets_them_stopped(remote_sdk, bench_config) -> None:
    client, world, clock, _ = remote_sdk
    bus = CetoniBus.open(bench_config, clock, sdk=client)
    bus.pumps["A0.0"].aspirate(2.0, 0.01)  # 200 s of bench time
    assert world.pump_status("A0.0").pumping
    client.connection.close()  # the process dies without closing the bus
    deadline = time.monotonic() + 5.0
    while world.pump_status("A0.0").pumping and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not world.pump_status("A0.0").pumping
    fresh = client_namespace(*client.connection.address, TOKEN, timeout=5.0)
    again = CetoniBus.open(bench_config, clock, sdk=fresh)  # the bus was closed: it reopens
    again.close()
    fresh.connection.close()


def test_bad_token_or_no_server_is_a_transport_error(remote_sdk, bench_config) -> None:
    _, _, clock, server = remote_sdk
    intruder = client_namespace(server.host, server.port, "wrong", timeout=5.0)
    bus = intruder.qmixbus.Bus()  # no I/O yet, as with the vendor's classes
    with pytest.raises(intruder.qmixbus.DeviceError) as info:
        bus.open("cfg", "")
    assert info.value.errorcode == RPC_CONNECTION_ERROR
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free_port = s.getsockname()[1]
    nobody = client_namespace("127.0.0.1", free_port, TOKEN, timeout=2.0)
    with pytest.raises(TransportError, match="unreachable"):
        CetoniBus.open(bench_config, clock, sdk=nobody)


def test_shim_is_imported_fresh_from_sdk_path(remote_sdk, tmp_path, monkeypatch) -> None:
    _, _, _, server = remote_sdk
    monkeypatch.setattr(sys, "path", list(sys.path))
    for name in [n for n in sys.modules if n == "qmixsdk" or n.startswith("qmixsdk.")]:
        monkeypatch.delitem(sys.modules, name)
    first = write_shim(tmp_path / "one", server.host, server.port, TOKEN)
    second = write_shim(tmp_path / "two", server.host, server.port + 1, TOKEN)
    try:
        sdk1 = load_vendor_sdk(str(first))
        assert sys.modules["qmixsdk"].__file__.startswith(str(first.resolve()))
        sdk2 = load_vendor_sdk(str(second))  # another folder: not the cached module
        assert sys.modules["qmixsdk"].__file__.startswith(str(second.resolve()))
        assert sdk1.qmixbus.Bus is not sdk2.qmixbus.Bus
        bus = sdk1.qmixbus.Bus()  # the shim really talks to the server
        bus.open("cfg", "")
        bus.close()
    finally:
        sys.modules.pop("qmixsdk", None)
    with pytest.raises(TransportError, match="not a folder"):
        load_vendor_sdk(str(tmp_path / "missing"))


# --------------------------------------------------------------------------- written config
def test_written_config_points_at_the_simulators_and_scales_times(bench_config, tmp_path) -> None:
    endpoints = Endpoints(serial_urls={"balance": "socket://127.0.0.1:5555"},
                          lims=(str(tmp_path / "in"), str(tmp_path / "out")),
                          sdk_path=str(tmp_path / "sdk"))
    write_bench_config(HIU_2023, tmp_path / "bench", bench_config, endpoints, speed=300.0,
                       note="test")
    cfg = load_bench(tmp_path / "bench")
    assert cfg.balance.serial.url == "socket://127.0.0.1:5555"
    assert cfg.balance.serial.parity == bench_config.balance.serial.parity
    assert cfg.densimeter.lims_input_dir == str(tmp_path / "in")
    assert cfg.cetoni.sdk_path == str(tmp_path / "sdk")
    assert cfg.settings.poll_interval == pytest.approx(0.01)  # 0.5 s / 300, floored
    assert cfg.settings.pump_timeout == bench_config.settings.pump_timeout
    assert cfg.densimeter.result_timeout == pytest.approx(MIN_WAIT_BOUND)  # 900 / 300 < floor
    assert cfg.tubing == bench_config.tubing and cfg.stocks == bench_config.stocks
    assert cfg.pumps == bench_config.pumps and cfg.valves == bench_config.valves
    assert (tmp_path / "bench" / "demo_requests.json").exists()
    assert shrink(0.5, 10.0, 0.01) == pytest.approx(0.05) and shrink(2.0, 0.5, 5.0) == 2.0


def test_fault_spec_parsing() -> None:
    assert parse_fault_spec("V3:stuck") == ("V3", "stuck", {})
    assert parse_fault_spec(" A0.0 : overload : after=0.5 ") == ("A0.0", "overload", {"after": 0.5})
    assert parse_fault_spec("densiVisco:fw_bw:deviation=0.02,count=1") == (
        "densiVisco", "fw_bw", {"deviation": 0.02, "count": 1.0})
    for bad in ("V3", ":stuck", "V3:", "V3:slow:delay", "V3:slow:delay=soon", "V3:slow:=1",
                "V3:slow:delay=1,", "a:b:c:d"):
        with pytest.raises(ValueError, match="fault"):
            parse_fault_spec(bad)
    assert json.loads(json.dumps(parse_fault_spec("balance:no_reply"))) == ["balance", "no_reply", {}]


# --------------------------------------------------------------------------- launcher
def test_launch_serves_everything_and_forwards_faults(tmp_path) -> None:
    faults = (("V3", "stuck"), parse_fault_spec("A0.0:overload:after=0.5"))
    options = LaunchOptions(HIU_2023, tmp_path / "w", speed=50.0, faults=faults)
    host = launch(options)
    try:
        ready = json.loads((tmp_path / "w" / "ready.json").read_text())
        assert ready["faults"] == [["V3", "stuck", {}], ["A0.0", "overload", {"after": 0.5}]]
        assert host.sim.world.faults == {"V3": "stuck", "A0.0": "overload"}
        assert host.sim.world.fault_after == {"A0.0": 0.5}
        assert ready["config_dir"] == str(tmp_path / "w" / "bench")
        assert ready["serial_urls"]["balance"] == f"socket://127.0.0.1:{ready['ports']['balance']}"
        cfg = load_bench(ready["config_dir"])
        assert cfg.cetoni.sdk_path == ready["sdk_path"] == str(tmp_path / "w" / "sdk")
        sdk = client_namespace("127.0.0.1", ready["ports"]["qmixsdk"], host.rpc.token, timeout=5.0)
        bus = sdk.qmixbus.Bus()
        bus.open("cfg", "")
        bus.start()
        stuck, free = sdk.qmixvalve.Valve(), sdk.qmixvalve.Valve()
        stuck.lookup_by_name("Qmix_V_3")
        free.lookup_by_name("Qmix_V_4")
        stuck.switch_valve_to_position(2)
        free.switch_valve_to_position(2)
        time.sleep(0.2)  # 10 s simulated, 20 switch times
        assert (stuck.actual_valve_position(), free.actual_valve_position()) == (0, 2)
        sdk.connection.close()
    finally:
        host.close()
    assert not (tmp_path / "w" / "ready.json").exists()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", ready["ports"]["qmixsdk"]), timeout=1.0).close()


def test_an_rs232_densimeter_gets_its_own_port(tmp_path) -> None:
    bench = tmp_path / "rs232_bench"
    shutil.copytree(HIU_2023, bench)
    doc = tomllib.loads((bench / "bench.toml").read_text(encoding="utf-8"))
    doc["densimeter"] = {"name": "densiVisco", "instrument": "densiVisco", "interface": "rs232",
                         "method": "Density_Viscosity", "serial": {"url": "/dev/ttyUSB1"}}
    (bench / "bench.toml").write_text(tomli_w.dumps(doc), encoding="utf-8")
    host = launch(LaunchOptions(bench, tmp_path / "w", speed=20.0))
    try:
        ready = host.ready
        assert set(ready["ports"]) == {"qmixsdk", "balance", "densimeter"} and ready["lims"] is None
        cfg = load_bench(ready["config_dir"])
        assert cfg.densimeter.serial.url == ready["serial_urls"]["densimeter"]
        assert cfg.densimeter.serial.parity == "N"
        port = serial.serial_for_url(cfg.densimeter.serial.url, timeout=2.0)
        try:
            port.write(b"getid\r")
            reply = port.read_until(b"\r")
        finally:
            port.close()
        assert reply.endswith(b"\r") and b";" in reply  # <serial>;<model> <firmware>;<protocol>
    finally:
        host.close()



@pytest.mark.parametrize("spec, message", [
    ("V99:stuck", "no device or vessel 'V99'"),
    ("V3:overload", "unknown kind 'overload' for valve V3 (known: stuck, slow, no_reply)"),
    ("A0.0:overload:speed=2", "unknown parameter(s) speed (takes: after)"),
    ("densiVisco:heating", "unknown kind 'heating' for densimeter densiVisco (lims)"),
    ("Reservoir3:stuck", "unknown kind 'stuck' for vessel Reservoir3"),
    ("V3", "expected DEVICE:KIND"),
])
def test_launcher_refuses_an_unknown_fault_before_serving(tmp_path, caplog, spec, message) -> None:
    workdir = tmp_path / "w"
    with caplog.at_level("ERROR", logger="simulators.launcher"):
        code = main(["--config", str(HIU_2023), "--workdir", str(workdir), "--speed", "50",
                     "--fault", "balance:busy:duration=5", "--fault", spec])
    assert code == 1
    assert message in caplog.text and "cannot start the simulated bench" in caplog.text
    assert not (workdir / "ready.json").exists() and not (workdir / "bench").exists()


def test_asab_simulate_refuses_an_unknown_fault_with_exit_1(tmp_path) -> None:
    from typer.testing import CliRunner

    from asab.cli.main import app

    result = CliRunner().invoke(app, ["simulate", "--workdir", str(tmp_path / "w"),
                                      "--fault", "V3:melted"])
    assert result.exit_code == 1, result.output
    assert "unknown kind 'melted' for valve V3" in " ".join(result.output.split())
    assert not (tmp_path / "w" / "ready.json").exists()


def test_simulate_help_documents_the_fault_syntax_and_every_kind() -> None:
    from asab.cli.cmd_simulate import simulate
    from simulators.launcher import build_parser

    doc = " ".join((simulate.__doc__ or "").split())
    assert "--fault DEVICE:KIND[:PARAM=VALUE,...]" in doc
    for fault in CATALOGUE:
        assert fault.kind in doc, fault
        for param in fault.params:
            assert param in doc, (fault, param)
    assert "DEVICE:KIND[:PARAM=VALUE,...]" in build_parser().format_help()
