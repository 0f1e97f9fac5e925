"""The fault catalogue of the simulated bench: what can be injected where, and what it does.

Every simulator has ``inject(kind, **params)`` and ``clear_faults()`` (the CETONI stand-in and
the world take the device name first, as they hold several devices);
:meth:`simulators.bench.SimulatedBench.inject` dispatches ``(device, kind, **params)`` by
device name. ``asab simulate --fault DEVICE:KIND[:PARAM=VALUE,...]`` (and
``python -m simulators``) parses with :func:`parse_fault_spec` and checks the fault against
:data:`CATALOGUE` and the bench with :func:`check_fault` before anything starts.

======================  ==================  ========================================================
device                  kind                effect (parameters)
======================  ==================  ========================================================
pump (e.g. ``A0.0``)    ``overload``        the drive faults (world) at the start of a move, or
                                            after ``after`` mL dosed: a blocked line or overload
pump                    ``busy``            the drive reports pumping and refuses moves for
                                            ``duration`` s (default 60; a stop ends it)
pump                    ``no_reply``        every SDK call on it fails with NO_REPLY, or only the
                                            next ``calls`` ones (a transient CAN timeout)
valve (e.g. ``V6``)     ``stuck``           the valve never moves (world)
valve                   ``slow``            every switch takes ``delay`` s more (default 30 s,
                                            beyond the driver's 10 s timeout): position not reached
valve                   ``no_reply``        as for pumps (``calls``)
reservoir / solvent     ``empty``           the vessel's liquid is taken away down to ``keep`` mL
node (``Reservoir6``)                       (default 0): a syringe drawing from it draws air, so
                                            less liquid reaches the cell and the balance
balance                 ``no_reply``        the balance never answers
balance                 ``garbled``         bit errors in the value field of the next ``lines``
                                            lines (default all)
balance                 ``truncated``       the next ``lines`` lines are cut in half (no CR LF)
balance                 ``busy``            the next command starts an internal adjustment: no
                                            answers for ``duration`` s (default 5), then unstable
balance                 ``overload``        ``mass`` g put on the pan (default capacity + 1 g):
                                            ``Stat High``
densimeter, RS-232      ``no_reply``        replies dropped (all, or the next ``count``)
densimeter, RS-232      ``garbled``         high bit of every third byte flipped (``count``)
densimeter, RS-232      ``truncated``       replies cut in half, without CR (``count``)
densimeter, RS-232      ``busy``            ``start`` answered ``measurement already started``
densimeter, RS-232      ``heating``         ``start`` answered ``heating`` (``count``)
densimeter, RS-232      ``invalid_method``  ``start`` answered ``invalid method``
densimeter, RS-232      ``no_new_data``     ``getdata`` loses the data (``count``)
densimeter, RS-232      ``fw_bw``           Lovis ``FW/BW dev. too high`` (``deviation``, ``count``)
densimeter, LIMS        ``fw_bw``           as on RS-232 (``deviation``, ``count``)
densimeter, LIMS        ``late_export``     the export appears ``delay`` s late (default 200 s)
densimeter, LIMS        ``half_written``    the export is written in two steps
densimeter, LIMS        ``no_export``       jobs are consumed, nothing is exported
densimeter, LIMS        ``invalid_method``  every job is rejected (``_error.txt``)
======================  ==================  ========================================================

Parameters given on the command line are numbers; the RS-232 densimeter's ``commands``
(which command words a line fault hits, e.g. ``["getdata"]``) is for the Python API only.

Faults stay until ``clear_faults()``; ``clear_faults`` also refills emptied vessels. It removes
injected *causes* only: a pump drive that faulted stays latched until the SDK's
``clear_fault()`` (as on a real drive; asab's ``reset_faults`` does that for the operator).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from asab.config import BenchConfig

__all__ = ["CATALOGUE", "FaultKind", "check_fault", "device_class", "kinds_for",
           "parse_fault_spec"]

DEVICE_CLASSES = ("pump", "valve", "vessel", "balance", "densimeter")


@dataclass(frozen=True)
class FaultKind:
    """One entry of the catalogue.

    Attributes:
        device: device class: ``pump``, ``valve``, ``vessel``, ``balance`` or ``densimeter``.
        kind: fault name as given to ``inject``.
        params: parameter names ``inject`` accepts for it from the command line (numbers).
        effect: one line on what it does.
        interface: for the densimeter, the front end that offers it (``"rs232"`` or
            ``"lims"``); ``None`` for the other devices.
    """

    device: str
    kind: str
    params: tuple[str, ...]
    effect: str
    interface: str | None = None


_RS232 = (
    ("no_reply", ("count",), "replies dropped (all, or the next `count`)"),
    ("garbled", ("count",), "high bit of every third byte flipped"),
    ("truncated", ("count",), "replies cut in half, without CR"),
    ("busy", ("count",), "`start` answered `measurement already started`"),
    ("heating", ("count",), "`start` answered `heating`"),
    ("invalid_method", ("count",), "`start` answered `invalid method`"),
    ("no_new_data", ("count",), "`getdata` loses the data"),
    ("fw_bw", ("deviation", "count"), "Lovis: FW/BW dev. too high"),
)
_LIMS = (
    ("fw_bw", ("deviation", "count"), "Lovis: FW/BW dev. too high"),
    ("late_export", ("delay",), "export `delay` s late (default 200 s)"),
    ("half_written", (), "export written in two steps"),
    ("no_export", (), "jobs consumed, nothing exported"),
    ("invalid_method", (), "every job rejected as an unknown method"),
)

CATALOGUE: tuple[FaultKind, ...] = (
    FaultKind("pump", "overload", ("after",), "drive fault at start or after `after` mL"),
    FaultKind("pump", "busy", ("duration",), "reports pumping, refuses moves for `duration` s"),
    FaultKind("pump", "no_reply", ("calls",), "SDK calls fail (all, or the next `calls`)"),
    FaultKind("valve", "stuck", (), "never moves"),
    FaultKind("valve", "slow", ("delay",), "each switch takes `delay` s more (default 30 s)"),
    FaultKind("valve", "no_reply", ("calls",), "SDK calls fail (all, or the next `calls`)"),
    FaultKind("vessel", "empty", ("keep",), "liquid taken away down to `keep` mL"),
    FaultKind("balance", "no_reply", (), "never answers"),
    FaultKind("balance", "garbled", ("lines",), "bit errors in the next `lines` lines"),
    FaultKind("balance", "truncated", ("lines",), "next `lines` lines cut in half"),
    FaultKind("balance", "busy", ("duration",), "next command: no answers for `duration` s"),
    FaultKind("balance", "overload", ("mass",), "`mass` g on the pan: Stat High"),
    *(FaultKind("densimeter", k, p, e, "rs232") for k, p, e in _RS232),
    *(FaultKind("densimeter", k, p, e, "lims") for k, p, e in _LIMS),
)
"""Every injectable fault (the table of the module docstring as data)."""


def kinds_for(device_class: str, interface: str | None = None) -> tuple[str, ...]:
    """Fault kinds of one device class, in catalogue order.

    Args:
        device_class: ``pump``, ``valve``, ``vessel``, ``balance`` or ``densimeter``.
        interface: for the densimeter, ``"rs232"`` or ``"lims"``; ``None``: every front end.

    Raises:
        KeyError: unknown class (or interface).
    """
    kinds = tuple(dict.fromkeys(f.kind for f in CATALOGUE if f.device == device_class
                                and interface in (None, f.interface)))
    if not kinds:
        raise KeyError(f"unknown device class {device_class!r}"
                       + (f" with interface {interface!r}" if interface else ""))
    return kinds


def parse_fault_spec(spec: str) -> tuple[str, str, dict[str, float]]:
    """Parse ``DEVICE:KIND[:PARAM=VALUE,...]``, e.g. ``"A0.0:overload:after=0.5"``.

    Returns:
        ``(device, kind, params)`` with numeric parameter values.

    Raises:
        ValueError: not of that form, or a parameter value that is not a number.
    """
    parts = [p.strip() for p in spec.split(":")]
    if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
        raise ValueError(f"fault {spec!r}: expected DEVICE:KIND[:PARAM=VALUE,...] "
                         "(e.g. V3:stuck or A0.0:overload:after=0.5)")
    params: dict[str, float] = {}
    if len(parts) == 3 and parts[2]:
        for item in parts[2].split(","):
            name, sep, value = (x.strip() for x in item.partition("="))
            if not sep or not name:
                raise ValueError(f"fault {spec!r}: bad parameter {item!r} (want NAME=NUMBER)")
            try:
                params[name] = float(value)
            except ValueError:
                raise ValueError(f"fault {spec!r}: {name} must be a number") from None
    return parts[0], parts[1], params


def device_class(config: BenchConfig, vessels: Iterable[str],
                 device: str) -> tuple[str, str | None] | None:
    """Which catalogue class ``device`` belongs to on this bench.

    Args:
        config: the bench configuration (pump, CETONI valve, balance and densimeter names).
        vessels: the vessel nodes of the simulated world (``World.vessel_names()``).
        device: the name given to ``inject``.

    Returns:
        ``(class, interface)`` (interface only for the densimeter), or ``None`` when the bench
        has no device or vessel of that name.
    """
    if config.balance is not None and device == config.balance.name:
        return "balance", None
    if config.densimeter is not None and device == config.densimeter.name:
        return "densimeter", config.densimeter.interface
    if device in {p.name for p in config.pumps} | {p.device for p in config.pumps if p.device}:
        return "pump", None
    cetoni = [v for v in config.valves if v.driver == "cetoni"]
    if device in {v.name for v in cetoni} | {v.device for v in cetoni if v.device}:
        return "valve", None
    if device in set(vessels):
        return "vessel", None
    return None


def check_fault(config: BenchConfig, vessels: Iterable[str], device: str, kind: str,
                params: Mapping[str, Any] | None = None) -> FaultKind:
    """Check a fault against the catalogue and the bench before injecting it.

    Returns:
        The catalogue entry.

    Raises:
        ValueError: no device or vessel of that name on the bench, a kind its class does not
            offer, or a parameter the kind does not take; the message lists what is allowed.
    """
    vessels = list(vessels)
    found = device_class(config, vessels, device)
    if found is None:
        raise ValueError(f"fault {device}:{kind}: no device or vessel {device!r} on bench "
                         f"{config.name} (known: {', '.join(_fault_targets(config, vessels))})")
    cls, interface = found
    entry = next((f for f in CATALOGUE if (f.device, f.kind) == (cls, kind)
                  and f.interface == interface), None)
    where = f"{cls} {device}" + (f" ({interface})" if interface else "")
    if entry is None:
        raise ValueError(f"fault {device}:{kind}: unknown kind {kind!r} for {where} "
                         f"(known: {', '.join(kinds_for(cls, interface))})")
    unknown = sorted(set(params or {}) - set(entry.params))
    if unknown:
        raise ValueError(f"fault {device}:{kind}: unknown parameter(s) {', '.join(unknown)} "
                         f"(takes: {', '.join(entry.params) or 'none'})")
    return entry


def _fault_targets(config: BenchConfig, vessels: list[str]) -> list[str]:
    """Names ``inject`` accepts on this bench (configured names, not SDK device names)."""
    names = [p.name for p in config.pumps]
    names += [v.name for v in config.valves if v.driver == "cetoni"]
    names += [d.name for d in (config.balance, config.densimeter) if d is not None]
    return names + vessels
