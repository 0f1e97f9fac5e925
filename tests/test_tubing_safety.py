"""asab.tubing.safety: which sources are joined to which sinks, and where to park valves."""

from __future__ import annotations

import functools

import networkx as nx

from hypothesis import given, settings
from hypothesis import strategies as st

from asab.config.models import BenchConfig, Tubing, TubingEdge, TubingNode, Valve
from asab.tubing import TubingGraph, joins, open_graph, parking_positions

from conftest import HIU_2023


def _edge(label: str, start: str, end: str, directed: bool = False) -> TubingEdge:
    return TubingEdge(label=label, start=start, end=end, length=10.0, inner_diameter=1.0,
                      dead_volume=0.01, directed=directed)


@functools.cache
def distribution_bench() -> TubingGraph:
    """A selector valve S whose common goes to waste: port 0 = reservoir R, port 1 = blind,
    port 2 = solvent L (via valve T, common on L, ports: S.2 or blind T.1)."""
    nodes = ["R", "L", "waste", "S.0", "S.1", "S.2", "S.3", "T.0", "T.1", "T.2"]
    edges = [
        _edge("r", "R", "S.1"), _edge("w", "S.0", "waste", directed=True),
        _edge("l", "L", "T.0"), _edge("ts", "T.1", "S.3"),
        *(_edge(f"s{i}", "S.0", f"S.{i}") for i in (1, 2, 3)),
        *(_edge(f"t{i}", "T.0", f"T.{i}") for i in (1, 2)),
    ]
    valves = [Valve(name="S", common="S.0", positions={"S.1": 0, "S.2": 1, "S.3": 2}),
              Valve(name="T", common="T.0", positions={"T.1": 0, "T.2": 1})]
    config = BenchConfig(
        name="t", chemicals=(), stocks=(), syringes=(), pumps=(), instruments=(),
        valves=tuple(valves),
        tubing=Tubing(nodes=tuple(TubingNode(name=n) for n in nodes), edges=tuple(edges)))
    return TubingGraph.from_config(config)


def test_joins_follows_open_channels_only():
    g = distribution_bench()
    assert joins(g, {"S": 0, "T": 1}, ["R", "L"], ["waste"]) == [("R", "waste")]
    assert joins(g, {"S": 1, "T": 1}, ["R", "L"], ["waste"]) == []
    assert joins(g, {"S": 2, "T": 0}, ["R", "L"], ["waste"]) == [("L", "waste")]
    assert joins(g, {"S": 2, "T": 1}, ["R", "L"], ["waste"]) == []


def test_unknown_positions_count_as_open_and_direction_is_ignored():
    g = distribution_bench()
    # T unreadable: every channel of T open; the tube S.0 → waste is directed, still joined
    assert joins(g, {"S": 2}, ["L"], ["waste"]) == [("L", "waste")]
    assert joins(g, {}, ["R", "L"], ["waste"]) == [("L", "waste"), ("R", "waste")]
    assert open_graph(g, {}).has_edge("waste", "S.0")


def test_parking_closes_every_source_on_a_blind_port():
    g = distribution_bench()
    moves = parking_positions(g, {"S": 0, "T": 0}, ["R", "L"], ["waste"])
    assert moves == {"S": 1, "T": 1}  # S.2 and T.2 are the blind ports
    assert joins(g, moves, ["R", "L"], ["waste"]) == []
    assert parking_positions(g, {"S": 1, "T": 0}, ["R", "L"], ["waste"]) == {"T": 1}
    assert parking_positions(g, {"S": 1, "T": 1}, ["R", "L"], ["waste"]) == {}


@functools.cache
def bench_2023() -> tuple[TubingGraph, list[str], list[str], dict[str, int]]:
    from asab.config.loader import load_bench

    config = load_bench(HIU_2023)
    sources = sorted({s.reservoir for s in config.stocks} | {config.settings.solvent_node})
    counts = {v.name: len(v.positions) for v in config.valves}
    return TubingGraph.from_config(config), sources, list(config.settings.waste_nodes), counts


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_parking_the_2023_bench_from_any_positions_isolates_the_reservoirs(data):
    graph, sources, sinks, counts = bench_2023()
    positions = {name: data.draw(st.integers(0, n - 1), label=name) for name, n in counts.items()}
    parked = {**positions, **parking_positions(graph, positions, sources, sinks)}
    assert joins(graph, parked, sources, sinks) == []
    assert parking_positions(graph, parked, sources, sinks) == {}
    opened = open_graph(graph, parked)
    wet = set().union(*(nx.node_connected_component(opened, s) for s in sources))
    assert not {n for n in wet if n.endswith(".0") and n[:-2] in counts}  # no valve common
