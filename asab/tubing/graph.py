"""The tubing network of a bench as a directed graph.

:class:`TubingGraph` turns ``config.tubing`` (nodes, edges) and ``config.valves`` into a
:class:`networkx.DiGraph`:

* every undirected :class:`~asab.config.models.TubingEdge` becomes two arcs (start→end and
  end→start), a directed one a single arc start→end;
* each arc carries ``label``, ``dead_volume`` (mL), ``length`` (mm), ``inner_diameter`` (mm),
  ``directed``, ``fixed`` and ``valve``/``position``: when the edge joins a valve's ``common``
  node to one of its ``positions`` nodes it is a *channel* of that valve, ``valve`` is the
  valve's name and ``position`` the port's index; otherwise both are ``None``.

Every channel a valve declares (common ↔ each outer port) must be present in the layout, in at
least one direction: the 2023 rotary valves' internal channels ``Vn.0–Vn.i`` are fixed edges, the
3/2 solenoid valve ``ArdV_0_1`` has the directed channels ``ArdV_0_1.0→ArdV_0_1_0.0`` and
``ArdV_0_1.1→ArdV_0_1_0.0`` (shared/data/README.md).

Route finding (:meth:`TubingGraph.route`) is in :mod:`asab.tubing.routing`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence

import networkx as nx

from asab.config.models import BenchConfig, TubingEdge, Valve
from asab.errors import ConfigError, Problem
from asab.tubing.route import Route
from asab.tubing.routing import Network, compile_network, find_route

log = logging.getLogger(__name__)

_EDGES = "tubing.edges"
_VALVES = "valves"


class TubingGraph:
    """Directed graph of the tubing network plus its valves, ready for route finding.

    Attributes:
        graph: the :class:`networkx.DiGraph` (arc attributes described in the module docstring).
            Treat it as read-only: the routing index is compiled from it once, at construction.
        valves: valve name → :class:`~asab.config.models.Valve`.
    """

    def __init__(self, graph: nx.DiGraph, valves: Mapping[str, Valve]):
        """Wrap an already validated graph (use :meth:`from_config` to build one from a bench).

        Args:
            graph: arcs with the attributes described in the module docstring; ``dead_volume``
                in mL, ≥ 0.
            valves: valve name → valve.
        """
        self.graph = graph
        self.valves: dict[str, Valve] = dict(valves)
        self._network: Network = compile_network(graph, list(self.valves))

    @classmethod
    def from_config(cls, config: BenchConfig) -> "TubingGraph":
        """Build the graph from ``config.tubing`` and ``config.valves``.

        Raises:
            ConfigError: listing every problem found: duplicate node names, edges that name an
                unknown node or join a node to itself, two edges giving the same arc, valves
                whose common/port nodes are unknown, a pair of nodes claimed as a channel by two
                valves, and valve channels missing from the layout.
        """
        problems: list[Problem] = []
        graph = nx.DiGraph()
        for node in config.tubing.nodes:
            if node.name in graph:
                problems.append(Problem("tubing.nodes", None, f"node {node.name!r} listed twice"))
            graph.add_node(node.name, position=node.position)
        channels = _channel_index(config.valves, graph, problems)
        for row, edge in enumerate(config.tubing.edges, start=1):
            _add_edge(graph, edge, row, channels, problems)
        _check_channels(graph, config.valves, problems)
        if problems:
            raise ConfigError(problems)
        log.debug(
            "tubing graph: %d nodes, %d arcs, %d valves",
            graph.number_of_nodes(), graph.number_of_edges(), len(config.valves),
        )
        return cls(graph, {v.name: v for v in config.valves})

    @property
    def nodes(self) -> tuple[str, ...]:
        """All node names, sorted."""
        return self._network.names

    def route(
        self,
        source: str,
        target: str,
        via: Sequence[str] = (),
        avoid: Iterable[str] = (),
    ) -> Route:
        """The valid route with the least total dead volume from ``source`` to ``target``.

        Valid: no node repeats, directed arcs are followed forwards only, at most one channel of
        each valve is used, the ``via`` nodes are passed in the given order and no ``avoid``
        node is touched. Ties on dead volume go to fewer arcs, then to the lexicographically
        smallest node-name sequence (see :mod:`asab.tubing.routing`).

        Args:
            source: node the liquid starts from.
            target: node the liquid must reach. ``target == source`` (no ``via``) gives the
                one-node route with no edges.
            via: nodes to pass, in this order.
            avoid: nodes never to touch (e.g. an instrument cell on the way to a vial).

        Returns:
            the :class:`Route`, with ``dead_volume`` in mL.

        Raises:
            UnknownNodeError: a node named in the request is not in the layout (a
                :class:`~asab.errors.NoRouteError`).
            ValueError: ``source``/``target``/``via`` inside ``avoid``, or a node repeated among
                source, via and target.
            TypeError: ``via`` or ``avoid`` given as a bare string instead of a sequence.
            NoRouteError: no path at all, even ignoring the one-channel-per-valve rule.
            ValveConflictError: paths exist, but each needs two positions of one valve;
                ``valves`` names the valves used twice by the least-dead-volume such path.
        """
        for name, value in (("via", via), ("avoid", avoid)):
            if isinstance(value, str):
                raise TypeError(f"{name} must be a sequence of node names, not {value!r}")
        return find_route(self._network, source, target, tuple(via), tuple(avoid))


def _channel_index(
    valves: Sequence[Valve], graph: nx.DiGraph, problems: list[Problem]
) -> dict[frozenset[str], tuple[str, int]]:
    """Map each {common, port} node pair to (valve name, position), reporting bad valves."""
    index: dict[frozenset[str], tuple[str, int]] = {}
    names: set[str] = set()
    for valve in valves:
        if valve.name in names:
            problems.append(Problem(_VALVES, None, f"valve {valve.name!r} listed twice"))
        names.add(valve.name)
        for node in (valve.common, *valve.positions):
            if node not in graph:
                reason = f"valve {valve.name}: unknown node {node!r}"
                problems.append(Problem(_VALVES, None, reason))
        for port, position in valve.positions.items():
            pair = frozenset((valve.common, port))
            if len(pair) == 1:
                reason = f"valve {valve.name}: port {port!r} is its common node"
                problems.append(Problem(_VALVES, None, reason))
            elif pair in index:
                reason = (f"valves {index[pair][0]} and {valve.name} both claim channel "
                          f"{valve.common}–{port}")
                problems.append(Problem(_VALVES, None, reason))
            else:
                index[pair] = (valve.name, position)
    return index


def _add_edge(
    graph: nx.DiGraph,
    edge: TubingEdge,
    row: int,
    channels: Mapping[frozenset[str], tuple[str, int]],
    problems: list[Problem],
) -> None:
    """Add the arc(s) of one edge, or record why it cannot be added."""
    ends = (edge.start, edge.end)
    bad = [f"edge {edge.label!r}: unknown node {n!r}" for n in ends if n not in graph]
    if edge.start == edge.end:
        bad.append(f"edge {edge.label!r} joins {edge.start!r} to itself")
    if bad:
        problems.extend(Problem(_EDGES, row, reason) for reason in bad)
        return
    valve, position = channels.get(frozenset((edge.start, edge.end)), (None, None))
    arcs = [(edge.start, edge.end)]
    if not edge.directed:
        arcs.append((edge.end, edge.start))
    for u, v in arcs:
        if graph.has_edge(u, v):
            other = graph.edges[u, v]["label"]
            reason = f"edge {edge.label!r} duplicates arc {u}→{v} of edge {other!r}"
            problems.append(Problem(_EDGES, row, reason))
            continue
        graph.add_edge(
            u, v, label=edge.label, dead_volume=edge.dead_volume, length=edge.length,
            inner_diameter=edge.inner_diameter, directed=edge.directed, fixed=edge.fixed,
            valve=valve, position=position,
        )


def _check_channels(
    graph: nx.DiGraph, valves: Sequence[Valve], problems: list[Problem]
) -> None:
    """Report every declared valve channel that no edge of the layout provides."""
    for valve in valves:
        for port, position in valve.positions.items():
            if port == valve.common or valve.common not in graph or port not in graph:
                continue  # already reported by _channel_index
            if not (graph.has_edge(valve.common, port) or graph.has_edge(port, valve.common)):
                reason = (f"valve {valve.name}: channel {valve.common}–{port} "
                          f"(position {position}) missing from the layout")
                problems.append(Problem(_EDGES, None, reason))
