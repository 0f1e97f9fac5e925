"""The serial transport: pyserial URLs and the JSON-lines recording of every exchange."""

from __future__ import annotations

import json

import pytest

from asab.config.models import SerialSettings
from asab.drivers.transport import RecordingSerial, open_serial, read_records
from asab.errors import TransportError


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
