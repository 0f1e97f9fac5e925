"""The one pint unit registry and conversions at the edges.

Inside asab, quantities are plain floats in canonical units: mL, mL/s, g, s, K, g/cm³, mPa·s,
mm (lengths, diameters), mol. Use :func:`to_canonical` where a user may give a unit.
"""

from __future__ import annotations

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


def to_canonical(value: str | float | int, kind: str) -> float:
    """Convert ``value`` (a number already in canonical units, or a string like ``"2.5 mL"``
    or ``"25 degC"``) to the canonical unit of ``kind`` (a key of :data:`CANONICAL`).

    Raises:
        ValueError: unknown kind, unparsable string or incompatible dimension.
    """
    if kind not in CANONICAL:
        raise ValueError(f"unknown quantity kind {kind!r}")
    if isinstance(value, (int, float)):
        return float(value)
    try:
        q = Q_(value)
        if not isinstance(q, pint.Quantity):
            return float(q)
        return float(q.to(CANONICAL[kind]).magnitude)
    except (pint.errors.PintError, ValueError, TypeError) as exc:
        raise ValueError(f"cannot read {value!r} as a {kind} in {CANONICAL[kind]}: {exc}") from exc
