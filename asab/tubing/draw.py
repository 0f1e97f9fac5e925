"""Pictures of a tubing network: tubes, valves with their active channel, a route, vessels.

:func:`draw` writes a PNG or SVG image of a :class:`~asab.tubing.TubingGraph`:

* tubes (arcs that are no valve channel) as grey lines, directed ones with an arrow head;
* each valve as a group: a shaded disc around its common port and outer ports, the inactive
  channels dotted, the *active* channel (from the route's valve settings or given positions)
  orange (over the route line), the valve's name and active position written above the disc;
* the route, if any, as a thick red line (SVG group id ``route``) over the nodes it passes,
  its valve ports labelled in red, its dead volume (mL) in the title;
* vessels and other non-port nodes (reservoirs, solvent, waste, vials, instruments, pumps,
  gas inlets, mixer) as markers by kind, each labelled with its node name.

Node positions come from the layout (``nodes.csv``'s ``position_node``); nodes without one are
placed by :func:`networkx.spring_layout` with the seed :data:`LAYOUT_SEED`, the positioned
nodes held fixed. The same input gives the same bytes: the SVG writer's hash salt is fixed
and no date is written (matplotlib ``svg.hashsalt``, ``metadata={"Date": None}``); text is
kept as SVG ``<text>`` (``svg.fonttype = "none"``) so node names are searchable.

matplotlib is imported inside :func:`draw` only (Agg canvas, no pyplot), so importing
:mod:`asab.tubing` stays light.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping
from pathlib import Path

import networkx as nx

from asab.config.models import BenchConfig
from asab.errors import ValveConflictError
from asab.names import did_you_mean
from asab.tubing.graph import TubingGraph
from asab.tubing.route import Route

log = logging.getLogger(__name__)

FORMATS = ("png", "svg")
LAYOUT_SEED = 2023
ROUTE_COLOR = "#d62728"
ACTIVE_COLOR = "#ff7f0e"
TUBE_COLOR = "#9e9e9e"
CHANNEL_COLOR = "#bdbdbd"
VALVE_FILL = "#eef3fb"
#: vessel kind → (matplotlib marker, colour), in legend order.
VESSEL_STYLE: dict[str, tuple[str, str]] = {
    "reservoir": ("s", "#1f77b4"),
    "solvent": ("s", "#17becf"),
    "pump": ("p", "#e377c2"),
    "mixer": ("h", "#bcbd22"),
    "instrument": ("D", "#9467bd"),
    "vial": ("o", "#2ca02c"),
    "waste": ("v", "#8c564b"),
    "gas": ("^", "#7f7f7f"),
    "other": ("o", "#404040"),
}
#: (dx, dy) in layout units within which two labels above their nodes would collide.
_LABEL_GAP = (0.8, 0.3)
_RC = {"svg.hashsalt": "asab-tubing", "svg.fonttype": "none", "font.family": "DejaVu Sans"}
_METADATA = {"svg": {"Date": None}, "png": {"Software": None}}


def vessel_kinds(config: BenchConfig) -> dict[str, str]:
    """Node name → vessel kind (a key of :data:`VESSEL_STYLE`) for the named nodes of a bench.

    Stock reservoirs, the solvent reservoir, pump outlets, the mixer outlet, instrument inlets and
    outlets, vials, waste and gas nodes, as named in ``config`` (stocks, pumps, instruments and
    ``config.settings``); later kinds in that list win for a node named twice.
    """
    s = config.settings
    groups: list[tuple[str, list[str]]] = [
        ("reservoir", [st.reservoir for st in config.stocks]),
        ("solvent", [s.solvent_node]),
        ("pump", [p.node for p in config.pumps]),
        ("mixer", [s.mixer_outlet]),
        ("instrument", [n for i in config.instruments for n in (i.inlet, i.outlet)]),
        ("vial", list(s.vial_nodes)),
        ("waste", list(s.waste_nodes)),
        ("gas", list(s.gas_nodes)),
    ]
    return {node: kind for kind, nodes in groups for node in nodes}


def output_format(path: Path | str, fmt: str | None = None) -> str:
    """The image format, ``"png"`` or ``"svg"``: ``fmt`` if given, else the file suffix.

    Raises:
        ValueError: neither names a known format, or ``fmt`` contradicts a known suffix.
    """
    suffix = Path(path).suffix.lstrip(".").lower()
    chosen = (fmt or suffix).lower()
    if chosen not in FORMATS:
        raise ValueError(f"cannot tell the image format of {str(path)!r}: "
                         f"name the file .png or .svg, or give --format png|svg")
    if suffix in FORMATS and suffix != chosen:
        raise ValueError(f"format {chosen!r} contradicts the file name {str(path)!r}")
    return chosen


def resolve_positions(graph: TubingGraph, given: Mapping[str, int | str]) -> dict[str, int]:
    """Valve name → position index from positions given as an index or an outer-port node name.

    Args:
        graph: the tubing graph whose valves are meant.
        given: valve name → 0-based position index (int or digit string) or outer-port node.

    Raises:
        ValueError: an unknown valve, or a position that valve does not have.
    """
    resolved: dict[str, int] = {}
    for name, position in given.items():
        valve = graph.valves.get(name)
        if valve is None:
            raise ValueError(f"unknown valve {name!r}{did_you_mean(name, graph.valves)}; "
                             f"valves: {', '.join(sorted(graph.valves))}")
        if isinstance(position, str) and position in valve.positions:
            resolved[name] = valve.positions[position]
            continue
        try:
            index = int(position)
        except ValueError:
            index = -1
        if index not in valve.positions.values():
            raise ValueError(f"valve {name} has no position {position!r}: give an index "
                             f"{sorted(valve.positions.values())} or a port node")
        resolved[name] = index
    return resolved


def active_positions(graph: TubingGraph, route: Route | None,
                     valve_positions: Mapping[str, int | str] | None) -> dict[str, int]:
    """The valve positions to draw: the route's valve settings plus the given positions.

    Raises:
        ValueError: see :func:`resolve_positions`.
        ValveConflictError: a given position contradicts the route's setting of that valve.
    """
    given = resolve_positions(graph, valve_positions or {})
    active = dict(route.valve_settings) if route else {}
    clash = sorted(v for v, p in given.items() if v in active and active[v] != p)
    if clash:
        detail = "; ".join(f"{v}: route needs {active[v]}, given {given[v]}" for v in clash)
        raise ValveConflictError(f"valve positions contradict the route: {detail}",
                                 valves=tuple(clash))
    return {**active, **given}


def layout(graph: TubingGraph) -> dict[str, tuple[float, float]]:
    """Node name → (x, y) drawing position: the layout's own, the rest by a seeded spring layout."""
    given = {n: (float(p[0]), float(p[1]))
             for n, p in graph.graph.nodes(data="position") if p is not None}
    if len(given) == graph.graph.number_of_nodes():
        return given
    log.debug("placing %d node(s) without a position", graph.graph.number_of_nodes() - len(given))
    placed = nx.spring_layout(graph.graph.to_undirected(as_view=True), pos=given or None,
                              fixed=list(given) or None, seed=LAYOUT_SEED)
    return {n: (float(x), float(y)) for n, (x, y) in placed.items()}


def draw(graph: TubingGraph, route: Route | None = None,
         valve_positions: Mapping[str, int | str] | None = None, *, path: Path | str,
         fmt: str | None = None, vessels: Mapping[str, str] | None = None,
         title: str | None = None) -> Path:
    """Write an image of the tubing network, with a route and valve positions highlighted.

    Args:
        graph: the tubing network.
        route: a route to highlight (its valve settings become active channels).
        valve_positions: further valve positions, valve name → index or outer-port node.
        path: the image file to write (parent folders are created).
        fmt: ``"png"`` or ``"svg"``; default from the suffix of ``path``.
        vessels: node → vessel kind (see :func:`vessel_kinds`) for markers and the legend;
            unnamed non-port nodes are drawn as ``"other"``.
        title: first title line (default: the route, or "tubing network").

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: unknown format, valve or position; a route node not in the graph.
        ValveConflictError: ``valve_positions`` contradicts ``route``.
    """
    path = Path(path)
    fmt = output_format(path, fmt)
    active = active_positions(graph, route, valve_positions)
    pos = layout(graph)
    if route is not None and (missing := [n for n in route.nodes if n not in pos]):
        raise ValueError(f"route nodes not in the tubing graph: {', '.join(missing)}")
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path.parent.mkdir(parents=True, exist_ok=True)
    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=(16, 10), dpi=100)
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        _draw_tubes(ax, graph, pos)
        _draw_valves(ax, graph, pos, active)
        if route is not None:
            _draw_route(ax, route, pos, _port_nodes(graph))
        _draw_nodes(ax, graph, pos, vessels or {})
        ax.set_title(_title(route, active, title), fontsize=12)
        ax.set_aspect("equal")
        ax.axis("off")
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
        fig.savefig(path, format=fmt, metadata=_METADATA[fmt], bbox_inches="tight")
    log.info("wrote %s (%s)", path, fmt)
    return path


def _title(route: Route | None, active: Mapping[str, int], title: str | None) -> str:
    """Title lines: what is shown, the dead volume (mL), the active valve positions."""
    if route is not None:
        head = title or f"route {route.source} → {route.target}"
        head += f" — dead volume {route.dead_volume:.4f} mL, {len(route.edges)} arcs"
    else:
        head = title or "tubing network"
    valves = ", ".join(f"{v}={active[v]}" for v in sorted(active, key=_natural))
    return head + ("\nvalves: " + valves if valves else "")


def _natural(name: str) -> tuple:
    """Sort key putting V2 before V10."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name))


def _port_nodes(graph: TubingGraph) -> set[str]:
    return {n for v in graph.valves.values() for n in (v.common, *v.positions)}


def _draw_tubes(ax, graph: TubingGraph, pos) -> None:
    """Every arc that is no valve channel: undirected pairs once, directed arcs with arrows."""
    from matplotlib.collections import LineCollection

    seen: set[frozenset[str]] = set()
    lines = []
    for u, v, data in graph.graph.edges(data=True):
        if data["valve"] is not None:
            continue
        if data["directed"]:
            ax.annotate("", xy=pos[v], xytext=pos[u], zorder=1, arrowprops={
                "arrowstyle": "-|>", "color": TUBE_COLOR, "lw": 0.9, "shrinkA": 3, "shrinkB": 3})
        elif frozenset((u, v)) not in seen:
            seen.add(frozenset((u, v)))
            lines.append((pos[u], pos[v]))
    ax.add_collection(LineCollection(lines, colors=TUBE_COLOR, linewidths=0.9, zorder=1,
                                     label="tube", gid="tubes"))


def _draw_valves(ax, graph: TubingGraph, pos, active: Mapping[str, int]) -> None:
    """Each valve: a disc around its ports, dotted channels, the active channel highlighted."""
    from matplotlib.collections import LineCollection
    from matplotlib.patches import Circle

    idle, live = [], []
    for name in sorted(graph.valves):
        valve = graph.valves[name]
        centre = pos[valve.common]
        radius = max(math.dist(centre, pos[p]) for p in valve.positions) * 1.35
        ax.add_patch(Circle(centre, radius, facecolor=VALVE_FILL, edgecolor=CHANNEL_COLOR,
                            lw=0.6, zorder=0, gid=f"valve-{name}"))
        for port, index in valve.positions.items():
            (live if active.get(name) == index else idle).append((centre, pos[port]))
        text = name if name not in active else f"{name}={active[name]}"
        ax.text(centre[0], centre[1] + radius * 1.1, text, ha="center", va="bottom",
                fontsize=7, fontweight="bold" if name in active else "normal", zorder=5)
    ax.add_collection(LineCollection(idle, colors=CHANNEL_COLOR, linewidths=0.6,
                                     linestyles="dotted", zorder=1, label="valve channel"))
    if live:
        ax.add_collection(LineCollection(live, colors=ACTIVE_COLOR, linewidths=1.8, zorder=5,
                                         label="active channel", gid="active-channels"))


def _draw_route(ax, route: Route, pos, ports: set[str]) -> None:
    """The route as one thick red polyline; its valve ports labelled (vessels always are)."""
    from matplotlib.collections import LineCollection

    segments = [(pos[u], pos[v]) for u, v in zip(route.nodes, route.nodes[1:])]
    ax.add_collection(LineCollection(segments, colors=ROUTE_COLOR, linewidths=3.5, alpha=0.85,
                                     zorder=4, label="route", gid="route"))
    x, y = zip(*(pos[n] for n in route.nodes))
    ax.scatter(x, y, s=22, color=ROUTE_COLOR, zorder=6, gid="route-nodes")
    for node in (n for n in route.nodes if n in ports):
        ax.annotate(node, pos[node], xytext=(4, -9), textcoords="offset points", fontsize=7,
                    color=ROUTE_COLOR, zorder=7, gid=f"route-label-{node}")


def _draw_nodes(ax, graph: TubingGraph, pos, vessels: Mapping[str, str]) -> None:
    """Valve ports as small dots; every other node as a labelled marker of its vessel kind."""
    ports = _port_nodes(graph)
    dots = [pos[n] for n in graph.graph.nodes if n in ports]
    if dots:
        ax.scatter(*zip(*dots), s=4, color="#606060", zorder=2, label="valve port")
    by_kind: dict[str, list[str]] = {}
    for node in graph.graph.nodes:
        if node not in ports:
            kind = vessels.get(node, "other")
            by_kind.setdefault(kind if kind in VESSEL_STYLE else "other", []).append(node)
    for kind, (marker, colour) in VESSEL_STYLE.items():
        nodes = by_kind.get(kind, [])
        if not nodes:
            continue
        ax.scatter(*zip(*(pos[n] for n in nodes)), s=60, marker=marker, color=colour,
                   zorder=5, label=kind)
    _label_nodes(ax, [n for nodes in by_kind.values() for n in nodes], pos)


def _label_nodes(ax, nodes: list[str], pos) -> None:
    """Name each node above its marker, or below when a close neighbour's name is above."""
    above: list[tuple[float, float]] = []
    for node in sorted(nodes, key=lambda n: (pos[n][1], pos[n][0], n)):
        x, y = pos[node]
        crowded = any(abs(x - ax_) < _LABEL_GAP[0] and abs(y - ay) < _LABEL_GAP[1]
                      for ax_, ay in above)
        if not crowded:
            above.append((x, y))
        ax.annotate(node, (x, y), xytext=(0, -13 if crowded else 7), textcoords="offset points",
                    ha="center", fontsize=7, zorder=7)
