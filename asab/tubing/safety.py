"""Which liquids can reach which vessels for given valve positions, and where to park valves.

Pure functions over a :class:`~asab.tubing.graph.TubingGraph` and a map of valve positions
(valve name → 0-based position, as read back from the drivers). They answer the safety
question asked after every failed job: *is any reservoir joined to a waste through open
channels?* — a reservoir joined to a waste can siphon empty, or be contaminated, while nobody
watches.

Rules (conservative on purpose):

* A tube (an arc that is not a valve channel) is always open. A valve channel is open only
  when its valve is at that channel's position. A valve missing from ``positions`` (no driver,
  or its position could not be read) has *every* channel open.
* Connection ignores the ``directed`` flag of tubes: gravity and pressure do not read the
  labels, so "joined" means connected in the undirected sense.
* A syringe pump's node is a dead end (a stopped plunger passes nothing); the layout already
  models it that way (one tube to its valve).

Parking rule (:func:`parking_positions`), used by recovery after a failure: every valve whose
common port is connected through open arcs to a *source* (stock reservoir or solvent bottle)
is turned to its *parking position*: the lowest blind position (a port with no tube on it);
failing that, the lowest whose port, through tubes alone (no valve channels), reaches no source
and no sink; failing that, the lowest whose port reaches no source. Valves not
connected to a source stay where they are (every extra move is a chance to fail). On the 2023
bench this turns the pump valves V1–V6 from their reservoir or solvent port to a blind port, so
each reservoir is closed at its valve.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import networkx as nx

from asab.tubing.graph import TubingGraph


def open_graph(tubing: TubingGraph, positions: Mapping[str, int]) -> nx.Graph:
    """The undirected graph of the arcs open at ``positions``.

    Args:
        tubing: the bench's tubing graph.
        positions: valve name → current position; valves left out count as fully open.

    Returns:
        A new :class:`networkx.Graph` on every node of the layout, with an edge wherever an
        open tube or open valve channel joins two nodes.
    """
    out = nx.Graph()
    out.add_nodes_from(tubing.graph.nodes)
    for u, v, data in tubing.graph.edges(data=True):
        valve = data.get("valve")
        if valve is None or valve not in positions or positions[valve] == data.get("position"):
            out.add_edge(u, v)
    return out


def joins(
    tubing: TubingGraph,
    positions: Mapping[str, int],
    sources: Iterable[str],
    sinks: Iterable[str],
) -> list[tuple[str, str]]:
    """Every (source, sink) pair joined through open arcs at ``positions``.

    Args:
        tubing: the bench's tubing graph.
        positions: valve name → position (valves left out count as fully open).
        sources: nodes holding liquid that must stay put (stock reservoirs, solvent).
        sinks: nodes it must not reach (waste vessels).

    Returns:
        Sorted ``(source, sink)`` pairs; empty when no source is joined to any sink. Names not
        in the layout are ignored.
    """
    graph = open_graph(tubing, positions)
    sink_set = {s for s in sinks if s in graph}
    pairs: set[tuple[str, str]] = set()
    for source in sources:
        if source in graph:
            reached = nx.node_connected_component(graph, source)
            pairs.update((source, sink) for sink in reached & sink_set if sink != source)
    return sorted(pairs)


def _tube_graph(tubing: TubingGraph) -> nx.Graph:
    """Undirected graph of the tubes only (every valve channel closed)."""
    return open_graph(tubing, {name: -1 for name in tubing.valves})


def parking_positions(
    tubing: TubingGraph,
    positions: Mapping[str, int],
    sources: Iterable[str],
    sinks: Iterable[str],
) -> dict[str, int]:
    """Where to turn valves so that no source is connected past its own valve (module rule).

    Args:
        tubing: the bench's tubing graph.
        positions: valve name → current position (valves left out count as fully open and are
            candidates for parking like any other).
        sources: stock reservoirs and solvent nodes.
        sinks: waste nodes.

    Returns:
        valve name → parking position, only for valves that must move. Applying them gives
        ``joins(...) == []`` whenever every valve connected to a source has a port that reaches
        no source through tubes; valves with no such port are left out (the caller's final
        :func:`joins` check then reports what stays joined).
    """
    sources, sinks = set(sources), set(sinks)
    tubes = _tube_graph(tubing)
    current = dict(positions)
    moves: dict[str, int] = {}
    for _ in range(len(tubing.valves) + 1):  # each round parks ≥ 1 valve, or ends
        graph = open_graph(tubing, current)
        wet = set().union(*(nx.node_connected_component(graph, s) for s in sources if s in graph))
        pending = {
            name: valve for name, valve in sorted(tubing.valves.items())
            if valve.common in wet and name not in moves
        }
        parked = {name: _park(tubes, valve, sources, sinks) for name, valve in pending.items()}
        parked = {k: v for k, v in parked.items() if v is not None and current.get(k) != v}
        if not parked:
            break
        moves.update(parked)
        current.update(parked)
    return moves


def _park(tubes: nx.Graph, valve, sources: set[str], sinks: set[str]) -> int | None:
    """The valve's parking position (module rule), or None if every port reaches a source."""
    blind: list[int] = []
    quiet: list[int] = []
    dry: list[int] = []
    for port, position in sorted(valve.positions.items(), key=lambda kv: kv[1]):
        reached = nx.node_connected_component(tubes, port) if port in tubes else {port}
        if reached & sources:
            continue
        dry.append(position)
        if not reached & sinks:
            quiet.append(position)
        if reached == {port}:
            blind.append(position)
    return (blind or quiet or dry or [None])[0]
