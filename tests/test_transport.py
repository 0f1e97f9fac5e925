"""The serial transport: pyserial URLs, the JSON-lines recording of every exchange, and
:class:`SerialTransport` (exchange, listen: terminator, timeout, errors, the lock)."""

from __future__ import annotations

import json
import threading
import time

import pytest
import serial

from asab.config.models import SerialSettings
from asab.drivers.transport import RecordingSerial, SerialTransport, open_serial, read_records
from asab.errors import TransportError, TransportTimeout
from simulators import urlhandler
from simulators.clock import VirtualClock


def test_recording_writes_every_exchange_in_order(tmp_path):
    record = tmp_path / "traffic" / "balance.jsonl"
    port = open_serial(SerialSettings(url="loop://", timeout=0.05, record=str(record)), "balance")
    assert isinstance(port, RecordingSerial)
    port.write(b"\x1bP\r\n")
    assert port.read_until(b"\n") == b"\x1bP\r\n"
    assert port.read(4) == b""  # a timeout is not recorded
    port.timeout = 0.01  # attribute writes reach the real port
    assert port._port.timeout == 0.01
    port.close()
    entries = read_records(record)
    assert [(e["dir"], e["data"], e["device"]) for e in entries] == [
        ("tx", b"\x1bP\r\n", "balance"), ("rx", b"\x1bP\r\n", "balance")]
    raw = json.loads(record.read_text().splitlines()[0])
    assert raw["hex"] == "1b500d0a" and raw["text"] == "\x1bP\r\n"


def test_without_record_the_port_is_pyserials_own():
    port = open_serial(SerialSettings(url="loop://"), "x")
    assert not isinstance(port, RecordingSerial)
    port.close()


def test_unopenable_port_is_a_transport_error_naming_the_device():
    with pytest.raises(TransportError) as info:
        open_serial(SerialSettings(url="/dev/does-not-exist-asab"), "densimeter")
    assert "densimeter" in str(info.value) and "/dev/does-not-exist-asab" in str(info.value)


# --------------------------------------------------------------------------- SerialTransport
class Scripted:
    """A simbench device answering each command with the next scripted reply (b"" = silent)."""

    def __init__(self, *replies: bytes) -> None:
        self.replies, self.received, self.out = list(replies), [], b""

    def receive(self, data: bytes) -> None:
        self.received.append(data)
        self.out += self.replies.pop(0) if self.replies else b""

    def transmit(self) -> bytes:
        out, self.out = self.out, b""
        return out


@pytest.fixture
def scripted():
    """``make(*replies)`` → (transport on ``simbench://<name>``, device, virtual clock)."""
    names = []

    def make(*replies: bytes, timeout: float = 0.5):
        clock, device = VirtualClock(0.05), Scripted(*replies)
        name = f"scripted-{len(names)}"
        urlhandler.install()
        urlhandler.register(name, device, clock, replace=True)
        names.append(name)
        settings = SerialSettings(url=f"simbench://{name}", timeout=timeout)
        return SerialTransport.open(settings, "dens"), device, clock

    yield make
    for name in names:
        urlhandler.unregister(name)


def test_exchange_reads_up_to_the_terminator_and_drops_stale_input(scripted) -> None:
    transport, device, _ = scripted(b"accepted\rlate\r", b"measurement started\r")
    assert transport.exchange(b"set temperature 25.000\r", terminator=b"\r") == b"accepted\r"
    # "late\r" is still waiting: it is a stale reply, discarded before the next command
    assert transport.exchange(b"start\r", terminator=b"\r") == b"measurement started\r"
    assert device.received == [b"set temperature 25.000\r", b"start\r"]


def test_exchange_returns_a_truncated_reply_for_the_codec_to_judge(scripted) -> None:
    transport, _, clock = scripted(b"Measurement fin")
    t0 = clock.now()
    assert transport.exchange(b"finished\r", terminator=b"\r") == b"Measurement fin"
    assert clock.now() - t0 == pytest.approx(0.5)  # waited the whole read timeout for CR


def test_exchange_timeout_names_device_port_command_and_wait_in_virtual_time(scripted) -> None:
    transport, _, clock = scripted(b"")
    wall, t0 = time.monotonic(), clock.now()
    with pytest.raises(TransportTimeout) as info:
        transport.exchange(b"getdata\r", terminator=b"\r", timeout=0.2)
    message = str(info.value)
    assert message.startswith("dens: ") and "simbench://scripted-0" in message
    assert "'getdata'" in message and "0.2 s" in message
    assert (info.value.device, info.value.port, info.value.command) == (
        "dens", "simbench://scripted-0", "'getdata'")
    assert clock.now() - t0 == pytest.approx(0.2) and time.monotonic() - wall < 1.0
    with pytest.raises(TransportTimeout, match="within 0.5 s"):  # never longer than configured
        transport.exchange(b"getdata\r", terminator=b"\r", timeout=60.0)


def test_exchange_without_reply_only_writes(scripted) -> None:
    transport, device, clock = scripted(b"ignored\r\n")
    t0 = clock.now()
    assert transport.exchange(b"\x1bT\r\n", reply=False) == b""
    assert device.received == [b"\x1bT\r\n"] and clock.now() == t0


def test_listen_reads_a_stream_without_writing(scripted) -> None:
    transport, device, _ = scripted()
    device.out = b"+  1.0000 g  \r\n+  2.0"
    assert transport.listen(terminator=b"\n") == b"+  1.0000 g  \r\n"
    assert transport.listen(terminator=b"\n", timeout=0.1) == b"+  2.0"  # a pause is not an error
    assert transport.listen(terminator=b"\n", timeout=0.1) == b""
    assert device.received == []


class FailingPort:
    timeout = 1.0
    port = "/dev/ttyUSB7"

    def reset_input_buffer(self) -> None:
        pass

    def write(self, data: bytes) -> int:
        raise serial.SerialException("device reports readiness to read but returned no data")


def test_a_failing_port_is_a_transport_error_naming_port_and_command() -> None:
    transport = SerialTransport(FailingPort(), "balance")
    with pytest.raises(TransportError) as info:
        transport.exchange(b"\x1bP\r\n")
    assert not isinstance(info.value, TransportTimeout)
    assert "/dev/ttyUSB7" in str(info.value) and "'P'" in str(info.value)
    assert (info.value.port, info.value.command) == ("/dev/ttyUSB7", "'P'")


class SlowEchoPort:
    """Answers every command after a short real-time delay; logs what happened when."""

    def __init__(self) -> None:
        self.timeout = 1.0
        self.port = "slow://echo"
        self.events: list[tuple[str, bytes]] = []
        self._pending = b""

    def reset_input_buffer(self) -> None:
        pass

    def write(self, data: bytes) -> int:
        self.events.append(("tx", data))
        self._pending = data
        return len(data)

    def read_until(self, expected: bytes = b"\n", size: int | None = None) -> bytes:
        time.sleep(0.01)  # an interleaved write from another thread would land here
        reply, self._pending = self._pending.upper(), b""
        self.events.append(("rx", reply))
        return reply


def test_the_lock_serialises_concurrent_exchanges() -> None:
    port = SlowEchoPort()
    transport = SerialTransport(port, "dens")
    commands = [f"cmd{i}\r".encode() for i in range(16)]
    replies: dict[bytes, bytes] = {}

    def ask(command: bytes) -> None:
        replies[command] = transport.exchange(command, terminator=b"\r")

    threads = [threading.Thread(target=ask, args=(c,)) for c in commands]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert replies == {c: c.upper() for c in commands}  # every thread got its own answer
    kinds = [kind for kind, _ in port.events]
    assert kinds == ["tx", "rx"] * len(commands)  # never two writes without a read between
    for (_, sent), (_, got) in zip(port.events[::2], port.events[1::2], strict=True):
        assert got == sent.upper()
