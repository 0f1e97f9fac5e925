"""Sartorius Entris II: SBI codec, simulator, simbench:// attachment, driver against simulator.

Golden frames are written out by hand from shared/docs/device_protocols.md (16-character
line: sign, space, 8-character value, space, 3-character unit, CR LF; 6-character ID prefix;
``Stat`` lines) and checked separately against the driver's codec and the simulator.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import serial
from hypothesis import given, settings
from hypothesis import strategies as st
from serial.serialutil import PortNotOpenError, SerialException

from asab.config.models import BalanceSettings, SerialSettings
from asab.drivers.base import Balance
from asab.drivers.sartorius import FrameError, SartoriusEntrisII, encode_command, parse_line
from asab.errors import AsabError, Cause, DeviceError, DeviceFault, TransportError, TransportTimeout
from simulators import urlhandler
from simulators.clock import VirtualClock
from simulators.sartorius import EntrisIIParams, EntrisIISimulator, load_params

ROOT = Path(__file__).resolve().parents[1]
NAME = "balance"
URL = f"simbench://{NAME}"
SETTLE = 2.0
READABILITY = 1e-4

# --------------------------------------------------------------------------- golden frames
GOLDEN_REQUESTS = [
    ("P", b"\x1bP\r\n"),
    ("T", b"\x1bT\r\n"),
    ("U", b"\x1bU\r\n"),
    ("V", b"\x1bV\r\n"),
    ("x1_", b"\x1bx1_\r\n"),
    ("x2_", b"\x1bx2_\r\n"),
]

# (line, value in g, unit as printed, stable)
GOLDEN_LINES = [
    (b"+ 123.5600 g  \r\n", 123.56, "g", True),
    (b"-   0.0012 g  \r\n", -0.0012, "g", True),
    (b"    0.0000 g  \r\n", 0.0, "g", True),
    (b"+ 220.0000 g  \r\n", 220.0, "g", True),
    (b"+ 123560.0 mg \r\n", 123.56, "mg", True),
    (b"+   0.1235 kg \r\n", 123.5, "kg", True),
    (b"+  50.0000 ct \r\n", 10.0, "ct", True),
    (b"N     + 123.5600 g  \r\n", 123.56, "g", True),
    (b"G     -  12.0001 g  \r\n", -12.0001, "g", True),
    ("+ 123.5600 g  ", 123.56, "g", True),  # str, CR LF already stripped
]

GOLDEN_STATUS = [  # (line, cause, detail)
    (b"Stat     High  \r\n", "overload", None),
    (b"Stat     Low   \r\n", "underload", None),
    (b"Stat     ERR 101\r\n", "balance error", "ERR 101"),
    (b"Stat     APP.ERR\r\n", "application error", None),
    (b"Stat     Busy  \r\n", "balance status", "Busy"),
    (b"N     Stat     High\r\n", "overload", None),
]

GARBLED = [
    b"+ 12x.5600 g  \r\n",
    b"+ 123.56\r\n",
    b"+123.5600 g   \r\n",
    b"+ 123.5600 g\r\n",
    b"* 123.5600 g  \r\n",
    b"+ 12 3.560 g  \r\n",
    b"- -123.560 g  \r\n",
    b"\xff\xfe123.5600 g  \r\n",
    b"",
]

LINE_SHAPE = re.compile(rb"^(?:[NG] {5})?[+\- ] [ 0-9.]{8} (?:g  |mg |   )\r\n\Z")
"""Documented shape, written independently of both codecs."""


@pytest.mark.parametrize(("cmd", "frame"), GOLDEN_REQUESTS)
def test_encode_command_golden(cmd: str, frame: bytes) -> None:
    assert encode_command(cmd) == frame


@pytest.mark.parametrize("cmd", ["", "P\r", "\x1bP", "x 1", "é"])
def test_encode_command_rejects_bad_commands(cmd: str) -> None:
    with pytest.raises(ValueError):
        encode_command(cmd)


@pytest.mark.parametrize(("line", "grams", "unit", "stable"), GOLDEN_LINES)
def test_parse_line_golden(line: bytes | str, grams: float, unit: str, stable: bool) -> None:
    reading = parse_line(line)
    assert reading.value == pytest.approx(grams, abs=1e-9)
    assert (reading.unit, reading.stable) == (unit, stable)
    assert reading.raw == (line.decode() if isinstance(line, bytes) else line)


def test_parse_line_blank_unit_is_unstable_and_needs_a_known_unit() -> None:
    line = b"+ 123560.0    \r\n"
    reading = parse_line(line, unit_hint="mg")
    assert (reading.value, reading.unit, reading.stable) == (pytest.approx(123.56), "mg", False)
    with pytest.raises(DeviceError) as info:
        parse_line(line)
    assert info.value.cause == "unknown unit"


@pytest.mark.parametrize(("line", "cause", "detail"), GOLDEN_STATUS)
def test_parse_line_status_lines_raise_faults(line: bytes, cause: str, detail: str | None) -> None:
    with pytest.raises(DeviceFault) as info:
        parse_line(line, device="bal1")
    assert (info.value.cause, info.value.detail, info.value.device) == (cause, detail, "bal1")
    assert isinstance(info.value.cause, Cause)


@pytest.mark.parametrize("line", GARBLED)
def test_parse_line_garbled_is_a_transport_error(line: bytes) -> None:
    with pytest.raises(FrameError):
        parse_line(line)
    assert issubclass(FrameError, TransportError) and not issubclass(FrameError, TransportTimeout)


@pytest.mark.parametrize("unit", [b"pcs", b"%  ", b"N  ", b"xyz"])
def test_parse_line_unknown_unit(unit: bytes) -> None:
    with pytest.raises(DeviceError) as info:
        parse_line(b"+  12.0000 " + unit + b"\r\n")
    assert info.value.cause == "unknown unit"


def test_parse_line_grain_is_not_giganewton() -> None:
    assert parse_line(b"+ 100.0000 GN \r\n").value == pytest.approx(6.479891)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=30) | st.text(max_size=30))
def test_parse_line_raises_only_asab_errors(line: bytes | str) -> None:
    try:
        reading = parse_line(line, unit_hint="g")
    except AsabError:
        return
    assert reading.value == reading.value  # not NaN


# --------------------------------------------------------------------------- simulator alone
@dataclass
class Pan:
    """Gross load on the pan in g, set by tests."""

    grams: float = 0.0

    def __call__(self) -> float:
        return self.grams


def make_sim(pan: Pan, clock: VirtualClock, **overrides: object) -> EntrisIISimulator:
    return EntrisIISimulator(pan, clock, load_params(**overrides))


def ask(sim: EntrisIISimulator, clock: VirtualClock, request: bytes) -> bytes:
    sim.receive(request)
    clock.sleep(0.1)
    return sim.transmit()


def test_params_from_packaged_toml() -> None:
    p = load_params()
    assert (p.readability, p.capacity, p.unit, p.auto_print, p.id_code) == (1e-4, 220.0, "g", False, False)
    assert 1.0 <= p.settle_time <= 3.0 and p.stable_noise < p.readability < p.unstable_noise
    with pytest.raises(ValueError):
        load_params(unit="lb")
    with pytest.raises(TypeError):
        load_params(colour="red")


@pytest.mark.parametrize(("cmd", "frame"), GOLDEN_REQUESTS[:1])
def test_simulator_answers_print_with_documented_shape(cmd: str, frame: bytes) -> None:
    clock, pan = VirtualClock(0.05), Pan(123.56)
    sim = make_sim(pan, clock)
    line = ask(sim, clock, frame)
    assert len(line) == 16 and LINE_SHAPE.match(line), line
    assert line.startswith(b"+ 123.56") and line[11:14] == b"g  "


def test_simulator_esc_is_optional_and_unknown_commands_are_ignored() -> None:
    clock = VirtualClock(0.05)
    sim = make_sim(Pan(1.0), clock)
    assert LINE_SHAPE.match(ask(sim, clock, b"P\r\n"))
    assert ask(sim, clock, b"\x1bQ\r\n") == b""
    assert ask(sim, clock, b"\x1bPP\r\n") == b""
    assert ask(sim, clock, b"garbage without line end") == b""


def test_simulator_replies_after_the_line_delay() -> None:
    clock = VirtualClock(0.005)
    sim = make_sim(Pan(1.0), clock)
    sim.receive(b"\x1bP\r\n")
    assert sim.transmit() == b""
    clock.sleep(0.025)
    assert LINE_SHAPE.match(sim.transmit())


def test_simulator_id_code_and_mg_lines() -> None:
    clock, pan = VirtualClock(0.05), Pan(12.3456)
    sim = make_sim(pan, clock, id_code=True, unit="mg")
    line = ask(sim, clock, b"\x1bP\r\n")
    assert len(line) == 22 and LINE_SHAPE.match(line) and line.startswith(b"G     +  12345.")
    assert line[17:20] == b"mg "
    ask(sim, clock, b"\x1bU\r\n")
    assert ask(sim, clock, b"\x1bP\r\n").startswith(b"N     ")


def test_simulator_unstable_after_load_change_then_stable() -> None:
    clock, pan = VirtualClock(0.05), Pan(5.0)
    sim = make_sim(pan, clock)
    pan.grams = 15.0
    line = ask(sim, clock, b"\x1bP\r\n")
    assert LINE_SHAPE.match(line) and line[11:14] == b"   "
    clock.sleep(SETTLE)
    line = ask(sim, clock, b"\x1bP\r\n")
    assert line[11:14] == b"g  " and abs(float(line[2:10]) - 15.0) <= 2 * READABILITY


@pytest.mark.parametrize(("grams", "status"), [(220.5, b"Stat     High"), (-221.0, b"Stat     Low")])
def test_simulator_status_lines(grams: float, status: bytes) -> None:
    clock = VirtualClock(0.05)
    sim = make_sim(Pan(grams), clock)
    line = ask(sim, clock, b"\x1bP\r\n")
    assert line.startswith(status) and line.endswith(b"\r\n") and len(line) == 16


def test_simulator_model_and_serial_number() -> None:
    clock = VirtualClock(0.05)
    sim = make_sim(Pan(), clock)
    assert ask(sim, clock, b"\x1bx1_\r\n").strip() == b"BCE224I-1S"
    assert ask(sim, clock, b"\x1bx2_\r\n").strip() == load_params().serial_number.encode()


def test_simulator_tare_and_zero_state() -> None:
    clock, pan = VirtualClock(0.05), Pan(1.0)
    sim = make_sim(pan, clock)
    ask(sim, clock, b"\x1bT\r\n")  # within zero range: zero
    assert (sim.zero_offset, sim.tare_mass) == (1.0, 0.0)
    pan.grams = 51.0
    ask(sim, clock, b"\x1bT\r\n")  # beyond zero range: tare
    assert (sim.zero_offset, sim.tare_mass) == (1.0, 50.0)
    ask(sim, clock, b"\x1bV\r\n")  # zero outside range: ignored
    assert (sim.zero_offset, sim.tare_mass) == (1.0, 50.0)
    pan.grams = 2.0
    ask(sim, clock, b"\x1bV\r\n")
    assert (sim.zero_offset, sim.tare_mass) == (2.0, 0.0)
    ask(sim, clock, b"\x1bU\r\n")
    assert sim.tare_mass == 0.0
    pan.grams = 3.0
    ask(sim, clock, b"\x1bU\r\n")
    assert sim.tare_mass == pytest.approx(1.0)


def test_simulator_auto_print_streams_and_p_toggles() -> None:
    clock = VirtualClock(0.05)
    sim = make_sim(Pan(7.0), clock, auto_print=True)
    clock.sleep(1.0)
    lines = sim.transmit().split(b"\r\n")[:-1]
    assert 9 <= len(lines) <= 11 and all(LINE_SHAPE.match(x + b"\r\n") for x in lines)
    ask(sim, clock, b"\x1bP\r\n")
    sim.transmit()
    clock.sleep(1.0)
    assert sim.transmit() == b""


@settings(max_examples=60, deadline=None)
@given(
    grams=st.floats(-200.0, 219.0, allow_nan=False),
    unit=st.sampled_from(["g", "mg"]),
    id_code=st.booleans(),
)
def test_simulator_lines_parse_back_within_readability(grams: float, unit: str, id_code: bool) -> None:
    clock = VirtualClock(0.05)
    sim = make_sim(Pan(grams), clock, unit=unit, id_code=id_code, stable_noise=0.0)
    line = ask(sim, clock, b"\x1bP\r\n")
    assert LINE_SHAPE.match(line)
    reading = parse_line(line)
    assert reading.stable and reading.unit == unit
    assert reading.value == pytest.approx(grams, abs=READABILITY / 2 + 1e-9)


# --------------------------------------------------------------------------- simbench:// handler
class Echo:
    """Generic device: echoes what it receives (upper-cased)."""

    def __init__(self) -> None:
        self.out = b""

    def receive(self, data: bytes) -> None:
        self.out += data.upper()

    def transmit(self) -> bytes:
        out, self.out = self.out, b""
        return out


@pytest.fixture
def echo_port() -> Iterator[tuple[serial.SerialBase, VirtualClock]]:
    clock = VirtualClock(0.5)
    urlhandler.install()
    urlhandler.register("echo", Echo(), clock)
    port = serial.serial_for_url("simbench://echo", baudrate=9600, parity="O", timeout=1.0)
    yield port, clock
    port.close()
    urlhandler.unregister("echo")


def test_handler_install_is_idempotent_and_unknown_names_fail() -> None:
    urlhandler.install()
    urlhandler.install()
    assert serial.protocol_handler_packages.count("simulators.urlhandler") == 1
    with pytest.raises(SerialException):
        serial.serial_for_url("simbench://nobody-here")


def test_handler_register_rejects_duplicates() -> None:
    clock = VirtualClock()
    urlhandler.register("dup", Echo(), clock)
    try:
        with pytest.raises(ValueError):
            urlhandler.register("dup", Echo(), clock)
        urlhandler.register("dup", Echo(), clock, replace=True)
    finally:
        urlhandler.unregister("dup")
    assert "dup" not in urlhandler.registered()


def test_handler_read_timeout_is_virtual(echo_port: tuple[serial.SerialBase, VirtualClock]) -> None:
    port, clock = echo_port
    assert (port.baudrate, port.parity, port.timeout) == (9600, "O", 1.0)
    wall, t0 = time.monotonic(), clock.now()
    assert port.read(4) == b""
    assert clock.now() - t0 == pytest.approx(1.0)
    assert time.monotonic() - wall < 0.5
    port.write(b"ab")
    t0 = clock.now()
    assert port.read(4) == b"AB"
    assert clock.now() - t0 == pytest.approx(1.0)


def test_handler_read_returns_early_and_buffers(echo_port: tuple[serial.SerialBase, VirtualClock]) -> None:
    port, clock = echo_port
    port.write(b"hello")
    t0 = clock.now()
    assert port.in_waiting == 5
    assert port.read(2) == b"HE" and clock.now() == t0
    port.timeout = 0
    assert port.read(10) == b"LLO"
    port.write(b"xyz")
    port.reset_input_buffer()
    assert port.in_waiting == 0 and port.read(1) == b""
    port.reset_output_buffer()
    port.close()
    with pytest.raises(PortNotOpenError):
        port.read(1)


# --------------------------------------------------------------------------- driver ↔ simulator
@dataclass
class Rig:
    clock: VirtualClock
    pan: Pan
    sim: EntrisIISimulator
    balance: SartoriusEntrisII


def balance_settings(url: str = URL, stable_timeout: float = 10.0) -> BalanceSettings:
    return BalanceSettings(
        serial=SerialSettings(url=url, timeout=0.5), vessel="vial", stable_timeout=stable_timeout
    )


def build_rig(params: EntrisIIParams | None = None, grams: float = 0.0) -> Iterator[Rig]:
    clock, pan = VirtualClock(0.05), Pan(grams)
    sim = EntrisIISimulator(pan, clock, params or load_params())
    urlhandler.install()
    urlhandler.register(NAME, sim, clock)
    balance = SartoriusEntrisII(balance_settings(), clock)
    try:
        yield Rig(clock, pan, sim, balance)
    finally:
        balance.close()
        sim.close()
        urlhandler.unregister(NAME)


@pytest.fixture
def rig() -> Iterator[Rig]:
    yield from build_rig(grams=10.0)


def test_driver_is_a_balance(rig: Rig) -> None:
    assert isinstance(rig.balance, Balance) and rig.balance.name == "balance"
    assert rig.balance.model() == "BCE224I-1S"
    assert rig.balance.serial_number() == load_params().serial_number


def test_stable_read_waits_through_settling(rig: Rig) -> None:
    assert rig.balance.read().value == pytest.approx(10.0, abs=2 * READABILITY)
    rig.pan.grams = 30.0
    t0 = rig.clock.now()
    early = rig.balance.read(stable=False)
    assert not early.stable and early.unit == "g" and early.value == pytest.approx(30.0, abs=0.01)
    reading = rig.balance.read(stable=True)
    assert reading.stable and reading.value == pytest.approx(30.0, abs=2 * READABILITY)
    assert SETTLE <= rig.clock.now() - t0 <= SETTLE + 0.5


def test_tare_then_added_mass(rig: Rig) -> None:
    rig.pan.grams = 42.1234
    rig.balance.read()
    rig.balance.tare()
    assert rig.balance.read().value == pytest.approx(0.0, abs=2 * READABILITY)
    rig.pan.grams += 1.2345
    assert rig.balance.read().value == pytest.approx(1.2345, abs=READABILITY)


def test_zero_command_reaches_the_simulator(rig: Rig) -> None:
    rig.pan.grams = 0.5
    rig.balance.zero()
    assert rig.sim.zero_offset == 0.5
    assert rig.balance.read().value == pytest.approx(0.0, abs=2 * READABILITY)


@pytest.mark.parametrize(("grams", "cause"), [(250.0, "overload"), (-300.0, "underload")])
def test_status_becomes_device_fault(rig: Rig, grams: float, cause: str) -> None:
    rig.pan.grams = grams
    t0 = rig.clock.now()
    with pytest.raises(DeviceFault) as info:
        rig.balance.read()
    assert info.value.cause == cause and info.value.device == "balance"
    assert rig.clock.now() - t0 < 0.5  # no retrying a fault


def test_silent_balance_times_out_in_virtual_time(rig: Rig) -> None:
    rig.sim.silent = True
    wall, t0 = time.monotonic(), rig.clock.now()
    with pytest.raises(TransportTimeout):
        rig.balance.read(timeout=3.0)
    assert 3.0 - 1e-6 <= rig.clock.now() - t0 <= 3.0 + 0.1
    assert time.monotonic() - wall < 5.0
    with pytest.raises(TransportTimeout):
        rig.balance.model()


def test_never_stable_times_out_with_default_timeout(rig: Rig) -> None:
    rig.balance.read()  # learn the unit
    rig.clock.add_listener(lambda now, dt: setattr(rig.pan, "grams", 10.0 + now))
    rig.clock.sleep(0.1)  # the load starts drifting (≫ stability band per step)
    t0 = rig.clock.now()
    with pytest.raises(TransportTimeout):
        rig.balance.read()
    assert 10.0 - 1e-6 <= rig.clock.now() - t0 <= 10.1
    assert not rig.balance.read(stable=False).stable


def test_mg_output_is_converted_to_grams() -> None:
    for rig in build_rig(load_params(unit="mg", id_code=True), grams=12.3456):
        reading = rig.balance.read()
        assert reading.unit == "mg" and reading.value == pytest.approx(12.3456, abs=2 * READABILITY)
        rig.pan.grams = 20.0
        early = rig.balance.read(stable=False)
        assert early.unit == "mg" and early.value == pytest.approx(20.0, abs=0.01)


def test_unstable_read_never_assumes_a_unit() -> None:
    for rig in build_rig(grams=5.0):
        rig.sim.receive(b"\x1bZ\r\n")  # adjustment: unstable for a settle time
        t0 = rig.clock.now()
        reading = rig.balance.read(stable=False)
        assert reading.stable and rig.clock.now() - t0 >= SETTLE


def test_read_stream_reads_auto_print_lines() -> None:
    for rig in build_rig(load_params(auto_print=True), grams=3.0):
        t0 = rig.clock.now()
        readings = rig.balance.read_stream(5, timeout=2.0)
        assert len(readings) == 5 and all(r.stable for r in readings)
        assert all(r.value == pytest.approx(3.0, abs=2 * READABILITY) for r in readings)
        assert 0.4 <= rig.clock.now() - t0 <= 0.7
        rig.sim.receive(b"\x1bP\r\n")  # stop the stream
        with pytest.raises(TransportTimeout):
            rig.balance.read_stream(1, timeout=1.0)
        with pytest.raises(ValueError):
            rig.balance.read_stream(0, timeout=1.0)


class Scripted:
    """Generic device answering each request with the next scripted reply (last one repeats)."""

    def __init__(self, replies: list[bytes]) -> None:
        self.replies, self.out, self.requests = replies, b"", 0

    def receive(self, data: bytes) -> None:
        self.out += self.replies[min(self.requests, len(self.replies) - 1)]
        self.requests += 1

    def transmit(self) -> bytes:
        out, self.out = self.out, b""
        return out


def scripted_balance(replies: list[bytes]) -> tuple[SartoriusEntrisII, VirtualClock, Scripted]:
    clock, device = VirtualClock(0.05), Scripted(replies)
    urlhandler.install()
    urlhandler.register("scripted", device, clock, replace=True)
    return SartoriusEntrisII(balance_settings("simbench://scripted"), clock), clock, device


def test_garbled_line_is_retried() -> None:
    balance, _, device = scripted_balance([b"+ 1#.0000 g  \r\n", b"+  10.0000 g  \r\n"])
    try:
        assert balance.read(timeout=1.0).value == 10.0 and device.requests == 2
    finally:
        urlhandler.unregister("scripted")


@pytest.mark.parametrize("reply", [b"+ 1#.0000 g  \r\n", b"+  10.00"])
def test_only_garbled_or_truncated_lines_give_transport_error(reply: bytes) -> None:
    balance, clock, device = scripted_balance([reply])
    try:
        t0 = clock.now()
        with pytest.raises(TransportError) as info:
            balance.read(timeout=1.0)
        assert not isinstance(info.value, TransportTimeout)
        assert device.requests >= 2 and clock.now() - t0 <= 1.1
    finally:
        urlhandler.unregister("scripted")


def test_unknown_unit_from_device_is_a_device_error() -> None:
    balance, _, _ = scripted_balance([b"+  10.0000 pcs\r\n"])
    try:
        with pytest.raises(DeviceError) as info:
            balance.read(timeout=1.0)
        assert info.value.cause == "unknown unit"
    finally:
        urlhandler.unregister("scripted")


# --------------------------------------------------------------------------- layering
def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_driver_does_not_import_simulators() -> None:
    assert not any(n.split(".")[0] == "simulators" for n in _imports(ROOT / "asab/drivers/sartorius.py"))
    code = (
        "import sys, asab.drivers.sartorius\n"
        "bad = [m for m in sys.modules if m.split('.')[0] == 'simulators']\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_simulator_does_not_use_the_driver_codec() -> None:
    for path in (ROOT / "simulators/sartorius.py", *ROOT.glob("simulators/urlhandler/*.py")):
        assert not any(n.startswith("asab.drivers") for n in _imports(path)), path


def test_unopenable_port_is_a_transport_error() -> None:
    from asab.config.models import BalanceSettings, SerialSettings
    from asab.drivers.sartorius import SartoriusEntrisII
    from asab.errors import TransportError
    from simulators.clock import VirtualClock

    settings = BalanceSettings(serial=SerialSettings(url="/dev/no-such-balance"), vessel="waste_2")
    with pytest.raises(TransportError, match="cannot open /dev/no-such-balance"):
        SartoriusEntrisII(settings, VirtualClock())


# --------------------------------------------------------------------------- golden traffic file
GOLDEN_FILE = ROOT / "tests" / "golden" / "sartorius_sbi.jsonl"


def _golden(direction: str) -> list[dict]:
    from asab.drivers.transport import read_records

    return [e for e in read_records(GOLDEN_FILE) if e["dir"] == direction]


@pytest.mark.parametrize("entry", _golden("tx"), ids=lambda e: e["expect"]["cmd"])
def test_golden_requests_driver_and_simulator(entry: dict) -> None:
    cmd, effect, frame = entry["expect"]["cmd"], entry["expect"]["effect"], entry["data"]
    assert encode_command(cmd) == frame  # the driver's codec
    clock = VirtualClock(0.05)
    far, near = Pan(42.1234), Pan(1.0)  # beyond / within the 4.4 g zero range
    sim_far, sim_near = make_sim(far, clock), make_sim(near, clock)
    answer = ask(sim_far, clock, frame)  # the simulator's own parser
    ask(sim_near, clock, frame)
    params = sim_far.params
    if effect == "value_line":
        assert LINE_SHAPE.match(answer) and answer.startswith(b"+  42.123")
    elif effect in ("model", "serial_number"):
        assert answer.strip() == getattr(params, effect).encode()
    else:
        assert answer == b""
        expected = {"zero_or_tare": ((0.0, 42.1234), (1.0, 0.0)), "tare": ((0.0, 42.1234), (0.0, 1.0)),
                    "zero": ((0.0, 0.0), (1.0, 0.0))}[effect]
        got = (sim_far.zero_offset, sim_far.tare_mass, sim_near.zero_offset, sim_near.tare_mass)
        assert got == pytest.approx(expected[0] + expected[1])


@pytest.mark.parametrize("entry", _golden("rx"), ids=lambda e: e["text"].strip())
def test_golden_lines_driver_and_simulator(entry: dict) -> None:
    from simulators.sartorius import format_text_line, format_value_line

    line, want = entry["data"], entry["expect"]
    if "status" in want:
        with pytest.raises(DeviceFault) as info:
            parse_line(line)
        assert (info.value.cause, info.value.detail) == (want["status"], want.get("detail"))
    else:
        reading = parse_line(line, unit_hint="g")
        assert (reading.unit, reading.stable) == (want["unit"], want["stable"])
        assert reading.value == pytest.approx(want["grams"], abs=1e-9)
    if not entry["simulator"]:
        return
    if "status" in want:  # the simulator's own formatter, and what it prints when overloaded
        assert format_text_line(want["text"]) == line
        clock = VirtualClock(0.05)
        grams = 250.0 if want["status"] == "overload" else -250.0
        assert ask(make_sim(Pan(grams), clock), clock, b"\x1bP\r\n") == line
    else:
        params = load_params(unit=want["unit"], id_code=bool(want.get("id")))
        assert format_value_line(want["grams"], params, want["stable"], want.get("id", "")) == line


# --------------------------------------------------------------------------- injected faults
def test_inject_garbled_and_truncated_lines(rig: Rig) -> None:
    rig.balance.read()
    rig.sim.inject("garbled", lines=1)
    assert rig.balance.read().value == pytest.approx(10.0, abs=2 * READABILITY)  # re-asked
    for kind in ("garbled", "truncated"):
        rig.sim.inject(kind)
        with pytest.raises(FrameError):
            rig.balance.read(timeout=1.0)
        rig.sim.clear_faults()
    rig.sim.inject("truncated", lines=2)
    assert rig.balance.read().stable


def test_inject_busy_balance_answers_after_its_adjustment(rig: Rig) -> None:
    rig.balance.read()
    rig.sim.inject("busy", duration=3.0)
    t0 = rig.clock.now()
    assert rig.balance.read(timeout=10.0).value == pytest.approx(10.0, abs=2 * READABILITY)
    assert rig.clock.now() - t0 >= 3.0 + SETTLE - 0.2  # silent, then settling
    rig.sim.inject("busy", duration=30.0)
    with pytest.raises(TransportTimeout):
        rig.balance.read(timeout=10.0)


def test_inject_overload_and_no_reply(rig: Rig) -> None:
    rig.sim.inject("overload")
    with pytest.raises(DeviceFault) as info:
        rig.balance.read()
    assert info.value.cause == "overload"
    rig.sim.clear_faults()
    rig.sim.inject("no_reply")
    with pytest.raises(TransportTimeout):
        rig.balance.read(timeout=1.0)
    rig.sim.clear_faults()
    assert rig.balance.read().value == pytest.approx(10.0, abs=2 * READABILITY)
    with pytest.raises(ValueError):
        rig.sim.inject("melted")
    with pytest.raises(ValueError):
        rig.sim.inject("busy", lines=1)
