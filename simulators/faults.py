"""The fault catalogue of the simulated bench: what can be injected where, and what it does.

Every simulator has ``inject(kind, **params)`` and ``clear_faults()`` (the CETONI stand-in and
the world take the device name first, as they hold several devices);
:meth:`simulators.bench.SimulatedBench.inject` dispatches ``(device, kind, **params)`` by
device name, so ``asab simulate --fault DEVICE:KIND`` can use :func:`parse_fault_spec` and
:data:`CATALOGUE`.

======================  ===============  ==========================================================
device                  kind             effect (parameters)
======================  ===============  ==========================================================
pump (e.g. ``A0.0``)    ``overload``     the drive faults (world) at the start of a move, or after
                                         ``after`` mL dosed: a blocked line or plunger overload
pump                    ``busy``         the drive reports pumping and refuses moves for
                                         ``duration`` s (default 60; a stop ends it)
pump                    ``no_reply``     every SDK call on it fails with NO_REPLY, or only the next
                                         ``calls`` ones (a transient CAN timeout)
valve (e.g. ``V6``)     ``stuck``        the valve never moves (world)
valve                   ``slow``         every switch takes ``delay`` s more (default 30 s, beyond
                                         the driver's 10 s timeout): position not reached in time
valve                   ``no_reply``     as for pumps (``calls``)
reservoir / solvent     ``empty``        the vessel's liquid is taken away down to ``keep`` mL
node (``Reservoir6``)                    (default 0): a syringe drawing from it draws air, so
                                         less liquid reaches the cell and the balance
balance                 ``no_reply``     the balance never answers
balance                 ``garbled``      bit errors in the value field of the next ``lines`` lines
                                         (default all)
balance                 ``truncated``    the next ``lines`` lines are cut in half (no CR LF)
balance                 ``busy``         the next command starts an internal adjustment: no
                                         answers for ``duration`` s (default 5), then unstable
balance                 ``overload``     ``mass`` g put on the pan (default capacity + 1 g):
                                         ``Stat High``
densimeter              see its          ``no_reply``, ``garbled``, ``truncated``, ``busy``
                        simulator        (RS-232 front end), ``heating``, ``invalid_method``,
                                         ``fw_bw``, ``no_new_data``, ``late_export``,
                                         ``half_written``, ``no_export`` (LIMS/measurement);
                                         forwarded to ``densimeter.inject``
======================  ===============  ==========================================================

Faults stay until ``clear_faults()``; ``clear_faults`` also refills emptied vessels and clears
the pumps' fault states in the world.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CATALOGUE", "FaultKind", "kinds_for", "parse_fault_spec"]


@dataclass(frozen=True)
class FaultKind:
    """One entry of the catalogue.

    Attributes:
        device: device class: ``pump``, ``valve``, ``vessel``, ``balance`` or ``densimeter``.
        kind: fault name as given to ``inject``.
        params: parameter names ``inject`` accepts for it.
        effect: one line on what it does.
    """

    device: str
    kind: str
    params: tuple[str, ...]
    effect: str


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
    *(FaultKind("densimeter", k, (), "see the densimeter simulator") for k in (
        "no_reply", "garbled", "truncated", "busy", "heating", "invalid_method", "fw_bw",
        "no_new_data", "late_export", "half_written", "no_export")),
)
"""Every injectable fault (the table of the module docstring as data)."""


def kinds_for(device_class: str) -> tuple[str, ...]:
    """Fault kinds of one device class (``pump``, ``valve``, ``vessel``, ``balance``,
    ``densimeter``), in catalogue order. Raises KeyError for an unknown class."""
    kinds = tuple(f.kind for f in CATALOGUE if f.device == device_class)
    if not kinds:
        raise KeyError(f"unknown device class {device_class!r}")
    return kinds


def parse_fault_spec(spec: str) -> tuple[str, str, dict[str, float]]:
    """Parse ``DEVICE:KIND[:PARAM=VALUE,...]``, e.g. ``"A0.0:overload:after=0.5"``.

    Returns:
        ``(device, kind, params)`` with numeric parameter values.

    Raises:
        ValueError: not of that form, or a parameter value that is not a number.
    """
    parts = spec.split(":")
    if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
        raise ValueError(f"fault {spec!r}: expected DEVICE:KIND[:PARAM=VALUE,...]")
    params: dict[str, float] = {}
    if len(parts) == 3 and parts[2]:
        for item in parts[2].split(","):
            name, sep, value = item.partition("=")
            if not sep or not name:
                raise ValueError(f"fault {spec!r}: bad parameter {item!r}")
            try:
                params[name] = float(value)
            except ValueError:
                raise ValueError(f"fault {spec!r}: {name} must be a number") from None
    return parts[0], parts[1], params
