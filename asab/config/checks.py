"""Cross-reference checks over a whole :class:`BenchConfig`, and its summary.

The per-file checks (numbers, duplicates, placements, mass balance, InChIKeys of stock
columns) happen while loading each file; :func:`check_bench` checks that the sections refer to
each other correctly: every node named by a pump, valve, instrument, stock, setting or the
balance exists in the tubing layout; every pump's syringe and every stock's pump is
configured; every valve channel common ↔ port is an edge of the layout.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from asab.config.models import BenchConfig, Tubing
from asab.errors import Problem
from asab.names import did_you_mean, known_names


@dataclass(frozen=True)
class Origin:
    """Where the parts of a configuration came from, to place the problems.

    Attributes:
        bench: file name of the bench description (problems there have ``row=None``).
        stocks: file name of the stock table.
        stock_lines: stock name → physical line of its row in ``stocks``.
    """

    bench: str = "bench.toml"
    stocks: str = "stockSolutions.csv"
    stock_lines: Mapping[str, int] = field(default_factory=dict)


def check_bench(config: BenchConfig, *, origin: Origin | None = None) -> list[Problem]:
    """Check the cross-references of a bench configuration.

    Args:
        config: the configuration.
        origin: file names (and stock lines) used in the problems; defaults to
            ``bench.toml`` / ``stockSolutions.csv`` without stock lines.

    Returns:
        Every problem found (empty when consistent). Nothing is raised.
    """
    origin = origin or Origin()
    nodes = {n.name for n in config.tubing.nodes}
    problems = _check_unique_names(config, origin.bench)
    problems += _check_pumps(config, nodes, origin.bench)
    problems += _check_valves(config, nodes, origin.bench)
    problems += _check_instruments(config, nodes, origin.bench)
    problems += _check_stocks(config, nodes, origin)
    problems += _check_settings(config, nodes, origin.bench)
    problems += _check_devices(config, nodes, origin.bench)
    problems += _check_valve_hubs(config, origin.bench)
    return problems


def valve_hubs(tubing: Tubing) -> dict[str, list[str]]:
    """Nodes that look like a rotary valve's common port: ``X.0`` joined by undirected fixed
    edges to two or more ``X.k`` nodes (a passive mixer's channels are directed into its
    outlet, so a mixer is not one). Returns hub → its ports, sorted."""
    hubs: dict[str, list[str]] = {}
    for node, others in channel_neighbours(tubing).items():
        prefix, dot, index = node.rpartition(".")
        ports = sorted(n for n in others if dot and n.rpartition(".")[0] == prefix)
        if index == "0" and len(ports) >= 2:
            hubs[node] = ports
    return dict(sorted(hubs.items()))


def channel_neighbours(tubing: Tubing) -> dict[str, set[str]]:
    """Node → the nodes it is joined to by undirected fixed edges (valve channels)."""
    near: dict[str, set[str]] = {}
    for e in tubing.edges:
        if e.fixed and not e.directed:
            near.setdefault(e.start, set()).add(e.end)
            near.setdefault(e.end, set()).add(e.start)
    return near


def _check_valve_hubs(config: BenchConfig, file: str) -> list[Problem]:
    """A valve channel of the layout without its [[valves]] entry would be routed as a plain
    tube: two of its ports open at once, which the valve cannot do."""
    commons = {v.common for v in config.valves}
    claimed = {port for v in config.valves for port in v.positions}  # a wrong common: reported
    return [Problem(file, None, (
        f"node {hub} is joined by fixed edges to {', '.join(ports)} like a valve's common "
        f"port, but no [[valves]] entry has common = {hub!r}; add the valve (name, common, "
        "ports or positions, device)"))
        for hub, ports in valve_hubs(config.tubing).items()
        if hub not in commons and not claimed.intersection(ports)]


def summarize(config: BenchConfig) -> dict[str, Any]:
    """Counts and names of the parts of a bench, for ``asab check-config``.

    Returns:
        ``{"name": str, "<part>": {"count": int, "names": [str, ...]}}``
        for the parts nodes, edges (labels), syringes, pumps, valves, instruments, stocks,
        chemicals; JSON-ready.
    """
    parts: dict[str, Iterable[str]] = {
        "nodes": (n.name for n in config.tubing.nodes),
        "edges": (e.label for e in config.tubing.edges),
        "syringes": (s.name for s in config.syringes),
        "pumps": (p.name for p in config.pumps),
        "valves": (v.name for v in config.valves),
        "instruments": (i.name for i in config.instruments),
        "stocks": (s.name for s in config.stocks),
        "chemicals": (c.name for c in config.chemicals),
    }
    summary: dict[str, Any] = {"name": config.name}
    for part, names in parts.items():
        listed = list(names)
        summary[part] = {"count": len(listed), "names": listed}
    return summary


# ---------------------------------------------------------------------------------- checks
def _missing_node(file: str, what: str, node: str, nodes: set[str]) -> list[Problem]:
    if node in nodes:
        return []
    return [Problem(file, None, f"{what}: {node!r} is not a node of the tubing layout"
                    f"{did_you_mean(node, nodes)}")]


def _check_unique_names(config: BenchConfig, file: str) -> list[Problem]:
    problems: list[Problem] = []
    sections: dict[str, Iterable[str]] = {
        "syringes": (s.name for s in config.syringes),
        "pumps": (p.name for p in config.pumps),
        "valves": (v.name for v in config.valves),
        "instruments": (i.name for i in config.instruments),
    }
    for section, names in sections.items():
        seen: set[str] = set()
        for name in names:
            if name in seen:
                problems.append(Problem(file, None, f"{section}: name {name!r} used twice"))
            seen.add(name)
    return problems


def _check_pumps(config: BenchConfig, nodes: set[str], file: str) -> list[Problem]:
    syringes = {s.name for s in config.syringes}
    problems: list[Problem] = []
    for pump in config.pumps:
        problems += _missing_node(file, f"pump {pump.name!r} node", pump.node, nodes)
        if pump.syringe not in syringes:
            reason = (
                f"pump {pump.name!r} without syringe: syringe {pump.syringe!r} is not configured"
                f"{did_you_mean(pump.syringe, syringes)}; {known_names(syringes, '[[syringes]]')}"
            )
            problems.append(Problem(file, None, reason))
    return problems


def _check_valves(config: BenchConfig, nodes: set[str], file: str) -> list[Problem]:
    channels = {frozenset((e.start, e.end)) for e in config.tubing.edges}
    problems: list[Problem] = []
    for valve in config.valves:
        problems += _missing_node(file, f"valve {valve.name!r} common", valve.common, nodes)
        for port in valve.positions:
            missing = _missing_node(file, f"valve {valve.name!r} port", port, nodes)
            problems += missing
            if missing or valve.common not in nodes:
                continue  # an unknown node is the problem; no follow-on channel problems
            if frozenset((valve.common, port)) not in channels:
                reason = (
                    f"valve {valve.name!r}: channel {valve.common!r} <-> {port!r} is not an edge "
                    "of the tubing layout"
                )
                problems.append(Problem(file, None, reason))
    return problems


def _check_instruments(config: BenchConfig, nodes: set[str], file: str) -> list[Problem]:
    problems: list[Problem] = []
    for inst in config.instruments:
        problems += _missing_node(file, f"instrument {inst.name!r} inlet", inst.inlet, nodes)
        problems += _missing_node(file, f"instrument {inst.name!r} outlet", inst.outlet, nodes)
    return problems


def _check_stocks(config: BenchConfig, nodes: set[str], origin: Origin) -> list[Problem]:
    pumps = {p.name for p in config.pumps}
    problems: list[Problem] = []
    for stock in config.stocks:
        line = origin.stock_lines.get(stock.name)
        if stock.reservoir not in nodes:
            reason = (
                f"stock {stock.name!r}: reservoir {stock.reservoir!r} is not a node of the "
                f"tubing layout{did_you_mean(stock.reservoir, nodes)}"
            )
            problems.append(Problem(origin.stocks, line, reason))
        if stock.pump not in pumps:
            reason = (f"stock {stock.name!r}: pump {stock.pump!r} is not configured"
                      f"{did_you_mean(stock.pump, pumps)}; {known_names(pumps, '[[pumps]]')}")
            problems.append(Problem(origin.stocks, line, reason))
    return problems


def _check_settings(config: BenchConfig, nodes: set[str], file: str) -> list[Problem]:
    s = config.settings
    named: list[tuple[str, str]] = [(f"settings.waste_nodes {n!r}", n) for n in s.waste_nodes]
    named += [(f"settings.gas_nodes {n!r}", n) for n in s.gas_nodes]
    named += [(f"settings.vial_nodes {n!r}", n) for n in s.vial_nodes]
    named += [("settings.solvent_node", s.solvent_node), ("settings.mixer_outlet", s.mixer_outlet)]
    problems: list[Problem] = []
    for what, node in named:
        problems += _missing_node(file, what, node, nodes)
    pumps = {p.name for p in config.pumps}
    for key, pump in (("solvent_pump", s.solvent_pump), ("gas_pump", s.gas_pump)):
        if pump and pump not in pumps:
            reason = (f"settings.{key}: pump {pump!r} is not configured"
                      f"{did_you_mean(pump, pumps)}; {known_names(pumps, '[[pumps]]')}")
            problems.append(Problem(file, None, reason))
    try:
        solvent = config.chemical(s.solvent_chemical)
        if solvent.density is None or solvent.density_temperature is None:
            problems.append(Problem("chemicals.csv", None, (
                f"solvent chemical {solvent.name!r} has no density (columns density_g_per_cm3 "
                "and density_temperature_K): cleaning, calibration and the simulated bench "
                "need it")))
    except KeyError:
        names = [c.name for c in config.chemicals]
        reason = (f"settings.solvent_chemical: {s.solvent_chemical!r} is not a configured "
                  f"chemical{did_you_mean(s.solvent_chemical, names)}; "
                  f"{known_names(names, 'chemicals')}")
        problems.append(Problem(file, None, reason))
    return problems


def _check_devices(config: BenchConfig, nodes: set[str], file: str) -> list[Problem]:
    problems: list[Problem] = []
    if config.balance is not None:
        problems += _missing_node(file, "balance.vessel", config.balance.vessel, nodes)
    if config.densimeter is not None:
        instrument = config.densimeter.instrument
        names = [i.name for i in config.instruments]
        if instrument not in names:
            reason = (f"densimeter.instrument: {instrument!r} is not a configured instrument"
                      f"{did_you_mean(instrument, names)}; {known_names(names, '[[instruments]]')}")
            problems.append(Problem(file, None, reason))
    return problems
