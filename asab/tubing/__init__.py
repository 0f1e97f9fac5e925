"""Tubing network of a bench: the graph, routes and route finding.

Public API:
    :class:`TubingGraph` — the directed graph built from a
    :class:`~asab.config.models.BenchConfig`, with :meth:`TubingGraph.route`;
    :class:`Route` — nodes, edges, valve settings and dead volume of one route;
    :func:`merge_settings` — valve settings of routes that are open at the same time;
    :class:`UnknownNodeError` — a :class:`~asab.errors.NoRouteError` for names not in the layout;
    :func:`joins` — which sources are joined to which sinks for given valve positions;
    :func:`parking_positions` — where to turn valves so that no source is joined past its valve.
"""

from asab.tubing.graph import TubingGraph
from asab.tubing.route import Route, merge_settings
from asab.tubing.routing import UnknownNodeError
from asab.tubing.safety import joins, open_graph, parking_positions

__all__ = [
    "Route", "TubingGraph", "UnknownNodeError", "joins", "merge_settings", "open_graph",
    "parking_positions",
]
