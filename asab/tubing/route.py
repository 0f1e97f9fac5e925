"""The :class:`Route` record and :func:`merge_settings`.

A route is the planning result handed to actions: which nodes the liquid passes, which tubes and
channels it flows through, and which valve positions make that path physically open.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from asab.errors import ValveConflictError


@dataclass(frozen=True)
class Route:
    """A physically possible route through the tubing network.

    Attributes:
        nodes: the tubing nodes in flow order, source first, target last; no node repeats.
            ``len(nodes) == len(edges) + 1``.
        edges: labels of the traversed arcs (tubes and valve channels), in flow order.
        valve_settings: valve name → position index (0-based, as the SDK counts) for every
            valve whose channel the route uses; valves the route does not enter are absent.
        dead_volume: sum of the dead volumes of the traversed arcs in mL (correctly rounded sum,
            :func:`math.fsum`).
    """

    nodes: tuple[str, ...]
    edges: tuple[str, ...]
    valve_settings: dict[str, int] = field(default_factory=dict)
    dead_volume: float = 0.0

    def __post_init__(self) -> None:
        if len(self.nodes) != len(self.edges) + 1:
            raise ValueError(
                f"a route with {len(self.edges)} edge(s) needs {len(self.edges) + 1} node(s), "
                f"got {len(self.nodes)}"
            )

    def __hash__(self) -> int:
        return hash((self.nodes, self.edges, tuple(sorted(self.valve_settings.items()))))

    @property
    def source(self) -> str:
        """First node of the route."""
        return self.nodes[0]

    @property
    def target(self) -> str:
        """Last node of the route."""
        return self.nodes[-1]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: ``{"nodes": [...], "edges": [...], "valve_settings": {...},
        "dead_volume": float (mL)}``."""
        return {
            "nodes": list(self.nodes),
            "edges": list(self.edges),
            "valve_settings": dict(self.valve_settings),
            "dead_volume": self.dead_volume,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Route":
        """Inverse of :meth:`to_dict`.

        Raises:
            KeyError: a field is missing.
            ValueError: node and edge counts do not match.
        """
        return cls(
            nodes=tuple(data["nodes"]),
            edges=tuple(data["edges"]),
            valve_settings={str(k): int(v) for k, v in data["valve_settings"].items()},
            dead_volume=float(data["dead_volume"]),
        )


def merge_settings(routes: Iterable[Route]) -> dict[str, int]:
    """Combine the valve settings of routes that must be open at the same time.

    Used when several pumps dispense into the passive mixer together: every route's valves must
    be set at once, so no valve may be asked for two positions.

    Args:
        routes: the routes to open simultaneously.

    Returns:
        valve name → position index, the union of all routes' ``valve_settings``.

    Raises:
        ValveConflictError: two routes need different positions of one valve; ``valves`` names
            every such valve (sorted), the message lists the positions asked for.
    """
    merged: dict[str, int] = {}
    asked: dict[str, set[int]] = {}
    for route in routes:
        for valve, position in route.valve_settings.items():
            asked.setdefault(valve, set()).add(position)
            merged.setdefault(valve, position)
    conflicts = sorted(v for v, positions in asked.items() if len(positions) > 1)
    if conflicts:
        detail = "; ".join(f"{v} asked for positions {sorted(asked[v])}" for v in conflicts)
        raise ValveConflictError(
            f"routes cannot be open together: {detail}", valves=tuple(conflicts)
        )
    return merged
