"""A synthetic bench ten times the 2023 layout, for routing benchmarks.

How it is built (:func:`chained_copies`):

* ``copies`` copies of a base bench (the 2023 layout: 151 nodes, 11 valves). Every node, edge
  label and valve of copy ``c`` gets the prefix ``c{c}:`` (``c3:V6.0``, valve ``c3:V6``).
* ``copies − 1`` extra 10-port rotary valves ``X0 … X{copies-2}`` chain neighbouring copies.
  Valve ``Xc`` (common ``Xc.0``, ports ``Xc.1 … Xc.10`` at positions 0 … 9, undirected channels
  of 0.0116 mL like the 2023 rotary valves) is joined by undirected tubes of 0.0346 mL
  (489 mm × 0.3 mm, the 2023 drawer tube 0489-CC-*) to spare ports of the copies:

  =========  ===========================  =========================================
  port       joined to                    role
  =========  ===========================  =========================================
  ``Xc.1``   ``c{c}:V8.1``                out of copy c's distribution valve
  ``Xc.2``   ``c{c}:V9.1``                out of copy c's collector valve
  ``Xc.3``   ``c{c+1}:V7.2``              into copy c+1's mixer-outlet valve
  ``Xc.4``   ``c{c+1}:V8.2``              into copy c+1's distribution valve
  ``Xc.5``   ``c{c+1}:Solvent``           copy c+1's solvent line (all its pump valves)
  ``Xc.6``   ``c{c}:Solvent``             copy c's solvent line
  ``Xc.7``   ``c{c+1}:V9.2``              into copy c+1's collector valve
  ``Xc.0``   ``X{c+1}.0``                 common-to-common link to the next chain valve
  =========  ===========================  =========================================

  Ports 8–10 stay free. So a liquid can travel from copy 0 to copy 9 only by entering each
  copy through one chain valve and leaving it through the next, one channel of each valve at
  a time (e.g. ``c0:V8.1 → X0.1 → X0.0 → X0.3 → c1:V7.2 → c1:V7.0 → c1:V8.0 → c1:V8.1 → X1.1
  …``); many relaxed paths (through the solvent lines, or back out of a collector valve)
  exist but need two positions of one valve, which the router has to rule out.

With 10 copies of the 2023 layout: 1609 nodes, 119 valves (110 copied + 9 chain valves).
"""

from __future__ import annotations

from asab.config.models import BenchConfig, Tubing, TubingEdge, TubingNode, Valve

CHANNEL_VOLUME = 0.0116  # mL, 2023 rotary valve channel (edges.csv 0004-XX-*)
TUBE_VOLUME = 0.0346  # mL, 2023 drawer tube 0489-CC-* (489 mm, 0.3 mm inner diameter)

# chain-valve port → (copy offset, node of that copy); see the module docstring
LINKS: dict[int, tuple[int, str]] = {
    1: (0, "V8.1"), 2: (0, "V9.1"), 3: (1, "V7.2"), 4: (1, "V8.2"),
    5: (1, "Solvent"), 6: (0, "Solvent"), 7: (1, "V9.2"),
}


def prefixed(copy: int, name: str) -> str:
    """Name of node/edge/valve ``name`` in copy ``copy``."""
    return f"c{copy}:{name}"


def _copy(base: BenchConfig, c: int) -> tuple[list[TubingNode], list[TubingEdge], list[Valve]]:
    nodes = [TubingNode(name=prefixed(c, n.name)) for n in base.tubing.nodes]
    edges = [
        e.model_copy(update={"label": prefixed(c, e.label), "start": prefixed(c, e.start),
                             "end": prefixed(c, e.end)})
        for e in base.tubing.edges
    ]
    valves = [
        v.model_copy(update={"name": prefixed(c, v.name), "common": prefixed(c, v.common),
                             "positions": {prefixed(c, p): i for p, i in v.positions.items()}})
        for v in base.valves
    ]
    return nodes, edges, valves


def _tube(label: str, a: str, b: str, volume: float, fixed: bool) -> TubingEdge:
    return TubingEdge(label=label, start=a, end=b, length=489.0 if not fixed else 14.77,
                      inner_diameter=0.3 if not fixed else 1.0, dead_volume=volume, fixed=fixed)


def _chain_valve(c: int, last: bool) -> tuple[list[TubingNode], list[TubingEdge], Valve]:
    ports = [f"X{c}.{i}" for i in range(1, 11)]
    nodes = [TubingNode(name=n) for n in (f"X{c}.0", *ports)]
    edges = [_tube(f"X{c}-ch{i}", f"X{c}.0", p, CHANNEL_VOLUME, True)
             for i, p in enumerate(ports, 1)]
    edges += [_tube(f"X{c}-link{i}", f"X{c}.{i}", prefixed(c + off, node), TUBE_VOLUME, False)
              for i, (off, node) in LINKS.items()]
    if not last:
        edges.append(_tube(f"X{c}-next", f"X{c}.0", f"X{c + 1}.0", TUBE_VOLUME, False))
    valve = Valve(name=f"X{c}", common=f"X{c}.0", positions={p: i for i, p in enumerate(ports)},
                  driver="none")
    return nodes, edges, valve


def chained_copies(base: BenchConfig, copies: int = 10) -> BenchConfig:
    """``copies`` prefixed copies of ``base`` chained by extra rotary valves (module docstring).

    Args:
        base: a bench with the 2023 node names (``V7.2``, ``V8.1``, ``V8.2``, ``V9.1``,
            ``V9.2`` free and a ``Solvent`` node).
        copies: number of copies, ≥ 1.

    Returns:
        a BenchConfig with only tubing and valves filled in.
    """
    nodes: list[TubingNode] = []
    edges: list[TubingEdge] = []
    valves: list[Valve] = []
    for c in range(copies):
        n, e, v = _copy(base, c)
        nodes += n
        edges += e
        valves += v
    for c in range(copies - 1):
        n, e, v = _chain_valve(c, last=c == copies - 2)
        nodes += n
        edges += e
        valves.append(v)
    return BenchConfig(
        name=f"{base.name}_x{copies}", chemicals=(), stocks=(), syringes=(), pumps=(),
        instruments=(), valves=tuple(valves), tubing=Tubing(nodes=tuple(nodes), edges=tuple(edges)),
    )
