"""Exact least-dead-volume routing under the one-channel-per-valve rule.

Problem
    Find, from ``source`` to ``target`` through the ``via`` nodes in order and around the
    ``avoid`` nodes, the *simple* directed path (no node twice) that uses at most one channel of
    each valve (a valve joins its common port to one outer port at a time) and has the least
    total dead volume (sum over its arcs, mL). This is a shortest path with a resource
    constraint; plain Dijkstra is not enough (on the 2023 bench the cheapest path from
    ``densiViscoOUT`` to ``waste_1`` would use V9 twice).

Algorithm: label setting with dominance, ordered as A*
    A label is ``(cost, arcs, path, leg, valves, visited)``: the path so far (node indices),
    its exact cost, which leg it is on (leg k runs from waypoint k to waypoint k+1, where the
    waypoints are source, *via, target), the bit set of valves whose channel it used, and a bit
    set of nodes it may not enter again. Labels are popped from a heap in order of
    ``(cost + h, arcs, path)``, where the lower bound ``h`` is the exact cost of the rest of the
    route *ignoring* the valve and simple-path rules (one reverse Dijkstra per leg around the
    avoided nodes, plus the relaxed costs of the later legs). An arc is never taken into an
    ``avoid`` node, into a node from which the leg's goal is unreachable (``h`` undefined),
    into a node in ``visited``, through a second channel of a valve already used, or (pure
    pruning) into a waypoint other than the leg's goal. A popped label is discarded when an
    already settled label of the same (leg, node) *dominates* it: ``valves ⊆`` and
    ``visited ⊆``; settled labels were popped earlier and share ``h``, so their key
    ``(cost, arcs, path)`` is ≤. The first label popped at the target is the answer.

Why it is exact
    * Costs are exact integers: every dead volume (a float, i.e. a dyadic rational) is scaled
      by 2**K to an integer, so sums and comparisons have no rounding and the key
      ``(cost, arcs, path)`` grows strictly along a path (arcs + 1, dead volumes ≥ 0).
    * ``h`` is a consistent lower bound (h(u) ≤ w(u, v) + h(v) on every usable arc, equal on
      both sides of a leg change, 0 at the target): relaxed shortest-path distances are. So
      ``cost + h`` never decreases along a path and the first target label popped is minimal:
      any better route would have a prefix label still in the heap with a smaller or equal
      ``cost + h`` and fewer arcs, which would have been popped first.
    * Dominance is safe: if settled label A dominates B at the same (leg, node), any completion
      C of B that is valid for B is valid for A (it avoids B's visited nodes ⊇ A's and uses
      none of B's valves ⊇ A's), and key(A + C) ≤ key(B + C) because the key order is kept
      when both are extended by the same arcs.
    * In the *last* leg (the only leg when there is no ``via``), ``visited`` holds just the
      nodes of the earlier legs; the current leg's nodes are not tracked. A completion of B may
      then meet one of A's last-leg nodes, making A + C a walk with a cycle; cutting the cycle
      gives a simple path of no larger cost, strictly fewer arcs (so a strictly smaller key)
      and a subset of the valve uses (cutting only removes channel uses), which is still
      valid. Hence nothing better than the optimum is lost. The same argument shows no label
      with a repeated node is ever expanded: the label's own earlier visit of that node is
      settled and dominates it. Dead volumes of 0 are handled by the ``arcs`` component.
    * In the earlier legs, ``visited`` holds *all* nodes of the path, including the current
      leg's. (Tracking only the earlier legs' nodes there would not be exact: a cheaper label
      A could use, in leg k, a node that leg k+1 must pass, and wrongly dominate a label B that
      kept it free; cycle cutting cannot help because the cycle would cut out the waypoint.
      tests/test_tubing.py::test_via_legs_keep_their_own_nodes_free is such a case.)
    With non-negative costs these properties give the usual label-setting optimality proof,
    so the returned route is the minimum of the total order below.

Deterministic tie rule
    Routes are ordered by (exact dead volume, number of arcs, sequence of node names compared
    lexicographically); the first in this order is returned. Node indices are assigned in
    sorted-name order, so comparing index tuples compares name tuples.

Errors
    When the constrained search finds nothing, the same search runs with the valve rule
    switched off: nothing again → :class:`~asab.errors.NoRouteError`; otherwise every path
    needs two positions of some valve → :class:`~asab.errors.ValveConflictError`, naming the
    valves used more than once by the best path found without the rule.

Cost
    Each (leg, node) keeps only labels with pairwise incomparable (valves, visited) sets; on
    tree-like bench layouts that is one or a few, and the bound ``h`` steers the search along
    the relaxed shortest path, so a valid route costs about two Dijkstra runs; proving that no
    valid route exists means exhausting the labels that can still reach the target
    (benchmarks/bench_routes.py measures both).
    The worst case is exponential in the number of valves, as for any exact method (the
    problem generalises finding disjoint paths).
"""

from __future__ import annotations

import heapq
import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import networkx as nx

from asab.errors import ConfigError, NoRouteError, ValveConflictError
from asab.names import did_you_mean
from asab.tubing.route import Route

log = logging.getLogger(__name__)

# (successor index, exact integer weight, valve bit or 0, arc id)
_Arc = tuple[int, int, int, int]


class UnknownNodeError(NoRouteError):
    """A node named in a route request is not in the tubing layout.

    Attributes:
        nodes: the unknown node names, in request order.
    """

    def __init__(self, nodes: tuple[str, ...], known: Iterable[str] = ()):
        self.nodes = nodes
        known = tuple(known)
        named = ", ".join(f"{n!r}{did_you_mean(n, known)}" for n in nodes)
        super().__init__(f"unknown tubing node(s): {named}")


@dataclass(frozen=True)
class Network:
    """The routing index compiled once from a :class:`networkx.DiGraph`.

    Attributes:
        names: node names, sorted; a node's index is its rank here.
        index: node name → index.
        succ: per node index, its outgoing arcs ``(successor, weight, valve bit, arc id)``,
            where ``weight`` is the arc's dead volume times ``2**scale_bits`` (an exact int).
        pred: per node index, its incoming arcs ``(predecessor, weight)``.
        arc_of: ``(u, v)`` node indices → arc id.
        labels, volumes: per arc id, the edge label and dead volume (mL).
        valves, positions: per arc id, the valve name (``None`` for a plain tube) and position
            (-1 for a plain tube).
        scale_bits: the K in the integer scaling 2**K.
    """

    names: tuple[str, ...]
    index: dict[str, int]
    succ: tuple[tuple[_Arc, ...], ...]
    pred: tuple[tuple[tuple[int, int], ...], ...]
    arc_of: dict[tuple[int, int], int]
    labels: tuple[str, ...]
    volumes: tuple[float, ...]
    valves: tuple[str | None, ...]
    positions: tuple[int, ...]
    scale_bits: int


def compile_network(graph: nx.DiGraph, valve_names: list[str]) -> Network:
    """Compile the routing index of ``graph`` (see :class:`Network`).

    Args:
        graph: arcs with ``label``, ``dead_volume`` (mL) and ``valve``/``position`` attributes.
        valve_names: valve names; bits are given in this order (plus any other valve an arc
            names).

    Raises:
        ConfigError: a dead volume is negative or not finite.
    """
    names = tuple(sorted(graph.nodes))
    index = {name: i for i, name in enumerate(names)}
    arcs = sorted(graph.edges(data=True), key=lambda a: (index[a[0]], index[a[1]]))
    _check_arcs(arcs)
    ratios = [float(d["dead_volume"]).as_integer_ratio() for _, _, d in arcs]
    scale_bits = max((den.bit_length() - 1 for _, den in ratios), default=0)
    bits = {name: 1 << i for i, name in enumerate(valve_names)}
    succ: list[list[_Arc]] = [[] for _ in names]
    pred: list[list[tuple[int, int]]] = [[] for _ in names]
    for arc_id, ((u, v, d), (num, den)) in enumerate(zip(arcs, ratios)):
        valve = d.get("valve")
        if valve is not None and valve not in bits:
            bits[valve] = 1 << len(bits)
        weight = num << (scale_bits - (den.bit_length() - 1))
        succ[index[u]].append((index[v], weight, bits[valve] if valve else 0, arc_id))
        pred[index[v]].append((index[u], weight))
    return Network(
        names=names,
        index=index,
        succ=tuple(tuple(s) for s in succ),
        pred=tuple(tuple(p) for p in pred),
        arc_of={(index[u], index[v]): i for i, (u, v, _) in enumerate(arcs)},
        labels=tuple(d["label"] for _, _, d in arcs),
        volumes=tuple(float(d["dead_volume"]) for _, _, d in arcs),
        valves=tuple(d.get("valve") for _, _, d in arcs),
        positions=tuple(-1 if d.get("valve") is None else d["position"] for _, _, d in arcs),
        scale_bits=scale_bits,
    )


def _check_arcs(arcs: list[tuple[str, str, dict[str, Any]]]) -> None:
    """Raise ConfigError for negative/non-finite dead volumes or channels without a position."""
    volume = [d["label"] for _, _, d in arcs
              if not (math.isfinite(d["dead_volume"]) and d["dead_volume"] >= 0)]
    position = [d["label"] for _, _, d in arcs
                if d.get("valve") is not None and not isinstance(d.get("position"), int)]
    problems = []
    if volume:
        problems.append(f"dead volume must be finite and ≥ 0 mL: edges {sorted(set(volume))}")
    if position:
        problems.append(f"valve channels without integer position: {sorted(set(position))}")
    if problems:
        raise ConfigError("; ".join(problems))


def find_route(
    net: Network,
    source: str,
    target: str,
    via: tuple[str, ...] = (),
    avoid: tuple[str, ...] = (),
) -> Route:
    """The least-dead-volume valid route (see the module docstring and ``TubingGraph.route``).

    Raises:
        UnknownNodeError: a named node is not in the network.
        ValueError: source/target/via inside ``avoid``, or a node repeated among them.
        NoRouteError: no path even ignoring the valve rule.
        ValveConflictError: only paths that need two positions of one valve.
    """
    waypoints, avoid_mask = _resolve(net, source, target, via, avoid)
    if len(waypoints) == 1:
        return Route(nodes=(source,), edges=(), valve_settings={}, dead_volume=0.0)
    desc = _describe(source, target, via, avoid)
    bounds = _leg_bounds(net, waypoints, avoid_mask)
    if bounds is None:
        raise NoRouteError(f"no path {desc}")
    path = _search(net, waypoints, avoid_mask, bounds, use_valves=True)
    if path is None:
        _raise_conflict_or_no_route(net, waypoints, avoid_mask, bounds, desc)
    route = _to_route(net, path)
    log.debug("route %s → %s: %s (%.4g mL)", source, target, route.nodes, route.dead_volume)
    return route


def _resolve(
    net: Network, source: str, target: str, via: tuple[str, ...], avoid: tuple[str, ...]
) -> tuple[list[int], int]:
    """Check the request; return the waypoint indices and the bit mask of avoided nodes."""
    requested = (source, *via, target)
    unknown = tuple(dict.fromkeys(n for n in (*requested, *avoid) if n not in net.index))
    if unknown:
        raise UnknownNodeError(unknown, net.names)
    clash = [n for n in requested if n in set(avoid)]
    if clash:
        raise ValueError(f"route endpoints or via nodes inside avoid: {sorted(set(clash))}")
    if source == target and not via:
        return [net.index[source]], 0
    if len(set(requested)) != len(requested):
        raise ValueError(f"a route cannot pass a node twice: source, via, target = {requested}")
    avoid_mask = 0
    for name in avoid:
        avoid_mask |= 1 << net.index[name]
    return [net.index[n] for n in requested], avoid_mask


def _distances_to(net: Network, goal: int, avoid_mask: int) -> list[int | None]:
    """Exact least cost from every node to ``goal`` ignoring the valve and simple-path rules
    (reverse Dijkstra around the avoided nodes); ``None`` where ``goal`` is unreachable."""
    dist: list[int | None] = [None] * len(net.names)
    heap = [(0, goal)]
    while heap:
        d, v = heapq.heappop(heap)
        if dist[v] is not None:
            continue
        dist[v] = d
        for u, weight in net.pred[v]:
            if dist[u] is None and not (avoid_mask >> u) & 1:
                heapq.heappush(heap, (d + weight, u))
    return dist


def _leg_bounds(
    net: Network, waypoints: list[int], avoid_mask: int
) -> list[list[int | None]] | None:
    """Per leg k, the A* lower bound h_k(v) = dist(v → goal_k) + R_k, where R_k is the relaxed
    cost of the remaining legs; ``None`` when some leg cannot be done even relaxed."""
    bounds: list[list[int | None]] = []
    rest = 0
    for k in reversed(range(len(waypoints) - 1)):
        dist = _distances_to(net, waypoints[k + 1], avoid_mask)
        start = dist[waypoints[k]]
        if start is None:
            return None
        bounds.append([None if d is None else d + rest for d in dist])
        rest += start
    bounds.reverse()
    return bounds


def _search(
    net: Network, waypoints: list[int], avoid_mask: int, bounds: list[list[int | None]],
    use_valves: bool,
) -> tuple[int, ...] | None:
    """Label-setting A* search (module docstring); the best node-index path or ``None``."""
    goals, last = waypoints[1:], len(waypoints) - 2
    all_waypoints = sum(1 << w for w in set(waypoints))
    forbid = [avoid_mask | (all_waypoints & ~(1 << g)) for g in goals]
    valve_filter = -1 if use_valves else 0
    src = waypoints[0]
    heap: list[tuple[int, int, tuple[int, ...], int, int, int, int]] = [
        (bounds[0][src] or 0, 0, (src,), 0, 0, 0, 1 << src)  # bound never None here
    ]
    settled: dict[tuple[int, int], list[tuple[int, int]]] = {}
    while heap:
        _, arcs, path, cost, leg, vmask, vis = heapq.heappop(heap)
        if leg > last:
            return path
        seen = settled.setdefault((leg, path[-1]), [])
        if any(not (sv & ~vmask or sw & ~vis) for sv, sw in seen):
            continue
        seen.append((vmask, vis))
        blocked, goal, track = forbid[leg] | vis, goals[leg], leg < last
        for v, weight, vbit, _ in net.succ[path[-1]]:
            vbit &= valve_filter
            nleg = leg + (v == goal)
            h = bounds[nleg][v] if nleg <= last else 0
            if h is None or (blocked >> v) & 1 or vmask & vbit:
                continue
            g = cost + weight
            nvis = vis | (1 << v) if track else vis
            heapq.heappush(heap, (g + h, arcs + 1, path + (v,), g, nleg, vmask | vbit, nvis))
    return None


def _raise_conflict_or_no_route(
    net: Network, waypoints: list[int], avoid_mask: int, bounds: list[list[int | None]], desc: str
) -> None:
    """Raise the right error once the constrained search found nothing."""
    relaxed = _search(net, waypoints, avoid_mask, bounds, use_valves=False)
    if relaxed is None:
        raise NoRouteError(f"no path {desc}")
    uses: dict[str, int] = {}
    for u, v in zip(relaxed, relaxed[1:]):
        valve = net.valves[net.arc_of[u, v]]
        if valve is not None:
            uses[valve] = uses.get(valve, 0) + 1
    valves = tuple(sorted(name for name, n in uses.items() if n > 1))
    shown = " → ".join(net.names[i] for i in relaxed)
    raise ValveConflictError(
        f"no route {desc} with one channel per valve: every path needs two positions of "
        f"valve(s) {', '.join(valves)} (best such path: {shown})",
        valves=valves,
    )


def _describe(source: str, target: str, via: tuple[str, ...], avoid: tuple[str, ...]) -> str:
    """Human-readable request, for error messages."""
    text = f"from {source} to {target}"
    if via:
        text += f" via {', '.join(via)}"
    if avoid:
        text += f" avoiding {', '.join(avoid)}"
    return text


def _to_route(net: Network, path: tuple[int, ...]) -> Route:
    """Turn a node-index path into a :class:`Route`."""
    arc_ids = [net.arc_of[u, v] for u, v in zip(path, path[1:])]
    settings: dict[str, int] = {}
    for a in arc_ids:
        valve = net.valves[a]
        if valve is not None:
            settings[valve] = net.positions[a]
    return Route(
        nodes=tuple(net.names[i] for i in path),
        edges=tuple(net.labels[a] for a in arc_ids),
        valve_settings=settings,
        dead_volume=math.fsum(net.volumes[a] for a in arc_ids),
    )
