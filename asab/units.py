"""The one pint unit registry and conversions at the edges.

Inside asab, quantities are plain floats in canonical units: mL, mL/s, g, s, K, g/cm³, mPa·s,
mm (lengths, diameters), mol. Use :func:`to_canonical` where a user may give a unit.
"""

from __future__ import annotations

import math
import re

import pint

ureg = pint.UnitRegistry(autoconvert_offset_to_baseunit=True)
Q_ = ureg.Quantity

CANONICAL = {
    "volume": "mL",
    "flow": "mL/s",
    "mass": "g",
    "time": "s",
    "temperature": "K",
    "density": "g/cm**3",
    "viscosity": "mPa*s",
    "length": "mm",
}


MAX_QUANTITY_TEXT = 64
"""Longest quantity string read (``"14.5673 mm"``, ``"3 mL/min"`` are ~10 characters)."""

_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]{1,3})?")
_UNIT_NAME = r"[A-Za-zµμΩ°]+"
_UNIT_POWER = r"(?:\*\*[0-9]|\^[0-9])?"
_UNIT = re.compile(rf"{_UNIT_NAME}{_UNIT_POWER}(?:\s*[*/·]\s*{_UNIT_NAME}{_UNIT_POWER})*")


def ascii_float(text: str) -> float:
    """A decimal number written with ASCII digits only (``float()`` also takes '٣' or '３',
    which no operator means), finite.

    Raises:
        ValueError: not such a number.
    """
    stripped = text.strip()
    if not _NUMBER.fullmatch(stripped):
        raise ValueError(f"{text!r} is not a number (ASCII digits, e.g. 0.07 or 1e-3)")
    value = float(stripped)
    if not math.isfinite(value):
        raise ValueError(f"{text!r} is not a finite number")
    return value


def parse_quantity(text: str) -> tuple[float, str]:
    """Split ``"<number> <unit>"`` into a finite float and a unit expression, evaluating
    nothing: the number is ASCII digits (optional sign, decimals, exponent ≤ 3 digits); the
    unit is unit names joined by ``*``, ``/`` or ``·`` with single-digit powers (``**3`` or
    ``^3``). ``"1/0 mL/min"``, ``"10**10**10 mL/min"``, ``"3 mL/min)"`` are refused.

    Raises:
        ValueError: longer than :data:`MAX_QUANTITY_TEXT`, not of that form, or not finite.
    """
    if len(text) > MAX_QUANTITY_TEXT:
        raise ValueError(f"longer than {MAX_QUANTITY_TEXT} characters")
    stripped = text.strip()
    number = _NUMBER.match(stripped)
    if number is None:
        raise ValueError("expected a number, then a unit, e.g. '3 mL/min'")
    unit = stripped[number.end():].strip()
    if unit and not _UNIT.fullmatch(unit):
        raise ValueError(f"{unit!r} is not a unit (unit names joined by *, / or ·, powers "
                         "like **3)")
    value = float(number.group())
    if not math.isfinite(value):
        raise ValueError("not a finite number")
    return value, unit


def to_canonical(value: str | float | int, kind: str) -> float:
    """Convert ``value`` (a number already in canonical units, or a string like ``"2.5 mL"``
    or ``"25 degC"``) to the canonical unit of ``kind`` (a key of :data:`CANONICAL`).

    Strings are split by :func:`parse_quantity` (nothing is evaluated); only the unit
    expression goes to pint.

    Raises:
        ValueError: unknown kind, unparsable string, a number that is not finite, or an
            incompatible dimension.
    """
    if kind not in CANONICAL:
        raise ValueError(f"unknown quantity kind {kind!r}")
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"expected a number or a quantity string, not {type(value).__name__}")
    if not isinstance(value, str):
        number = float(value)
        if not math.isfinite(number):
            raise ValueError(f"{value!r} is not a finite number")
        return number
    try:
        number, unit = parse_quantity(value)
        if not unit:
            return number
        q = Q_(number, ureg.parse_units(unit.replace("·", "*").replace("^", "**")))
        result = float(q.to(CANONICAL[kind]).magnitude)
    except (pint.errors.PintError, ValueError, TypeError, AttributeError) as exc:
        raise ValueError(f"cannot read {value!r} as a {kind} in {CANONICAL[kind]}: {exc}") from exc
    if not math.isfinite(result):
        raise ValueError(f"{value!r} is out of range as a {kind} in {CANONICAL[kind]}")
    return result
