"""The error taxonomy: device-error causes are :class:`~asab.errors.Cause` members, never free text."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from asab.drivers.antonpaar_rs232_codec import ReplyError
from asab.errors import Cause, DeviceBusy, DeviceError, DeviceFault, WaitTimeout, as_cause, describe

ROOT = Path(__file__).resolve().parents[1]
RAISERS = {"DeviceError", "DeviceFault", "DeviceBusy", "ReplyError"}


def test_a_member_is_kept_and_its_value_is_coerced() -> None:
    assert DeviceError("A0.0", Cause.DRIVE_FAULT).cause is Cause.DRIVE_FAULT
    coerced = DeviceFault("A0.0", "drive fault", "pump faulted")
    assert coerced.cause is Cause.DRIVE_FAULT and coerced.cause == "drive fault"
    assert str(coerced) == "A0.0: pump faulted"
    assert str(DeviceBusy("pumps", Cause.BUSY)) == "pumps: busy"  # the value, not "Cause.BUSY"
    assert ReplyError("dens", "garbled reply", "x").cause is Cause.GARBLED_REPLY


def test_free_text_and_other_types_are_refused() -> None:
    with pytest.raises(ValueError, match="not a Cause"):
        DeviceError("A0.0", "the pump is sad")
    with pytest.raises(TypeError):
        DeviceError("A0.0", 42)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        as_cause("Drive Fault")  # values are exact


def test_describe_puts_the_value_and_the_detail_in_json() -> None:
    plain = describe(DeviceFault("balance", Cause.OVERLOAD))
    assert type(plain["cause"]) is str and plain["cause"] == "overload" and "detail" not in plain
    family = describe(DeviceFault("balance", Cause.BALANCE_ERROR, "ERR 101", detail="ERR 101"))
    assert json.loads(json.dumps(family)) == {
        "type": "DeviceFault", "message": "balance: ERR 101", "device": "balance",
        "cause": "balance error", "detail": "ERR 101"}


def test_wait_timeout_names_what_and_is_a_transport_timeout() -> None:
    exc = WaitTimeout("V3", "position 2", 10.0)
    assert (exc.device, exc.what, exc.timeout) == ("V3", "position 2", 10.0)
    assert str(exc) == "V3: timed out after 10 s waiting for position 2"


def test_members_are_unique_and_documented() -> None:
    values = [c.value for c in Cause]
    assert len(values) == len(set(values))
    source = (ROOT / "asab" / "errors.py").read_text(encoding="utf-8")
    body = next(n for n in ast.parse(source).body if isinstance(n, ast.ClassDef) and n.name == "Cause")
    documented = {stmt.targets[0].id for stmt, doc in zip(body.body, body.body[1:], strict=False)
                  if isinstance(stmt, ast.Assign) and isinstance(doc, ast.Expr)
                  and isinstance(doc.value, ast.Constant) and isinstance(doc.value.value, str)}
    assert documented == {c.name for c in Cause}


def _literal_causes() -> list[tuple[str, int, str]]:
    """(file, line, text) of every string literal passed as the cause of a device error."""
    found = []
    for path in [*(ROOT / "asab").rglob("*.py"), *(ROOT / "simulators").rglob("*.py")]:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                    and node.func.id in RAISERS and len(node.args) >= 2
                    and isinstance(node.args[1], ast.Constant)):
                found.append((str(path.relative_to(ROOT)), node.lineno, node.args[1].value))
    return found


def test_every_literal_cause_in_the_tree_is_a_member() -> None:
    """A cause written as text (code not yet switched to members) must still be a member's
    value: otherwise that error would raise ValueError instead of itself."""
    values = {c.value for c in Cause}
    assert [f for f in _literal_causes() if f[2] not in values] == []
