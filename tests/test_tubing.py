"""Tests of asab.tubing: graph construction, exact routing, errors, merge_settings.

The property tests compare :meth:`TubingGraph.route` against exhaustive enumeration of all
simple paths (``nx.all_simple_paths``) filtered by the valve rule, with exact (Fraction) costs.
"""

from __future__ import annotations

import csv
import json
from fractions import Fraction
from pathlib import Path

import networkx as nx
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from asab.config.loader import load_bench
from asab.config.models import BenchConfig, Tubing, TubingEdge, TubingNode, Valve
from asab.errors import ConfigError, NoRouteError, RoutingError, ValveConflictError
from asab.tubing import Route, TubingGraph, UnknownNodeError, merge_settings

LAYOUT_2023 = Path(__file__).resolve().parents[1] / "hardware_configs" / "hiu_2023"


# --------------------------------------------------------------------------- helpers
def _bare_config(nodes: list[str], edges: list[TubingEdge], valves: list[Valve]) -> BenchConfig:
    """A BenchConfig holding only tubing and valves."""
    return BenchConfig(
        name="test", chemicals=(), stocks=(), syringes=(), pumps=(), instruments=(),
        valves=tuple(valves),
        tubing=Tubing(nodes=tuple(TubingNode(name=n) for n in nodes), edges=tuple(edges)),
    )


def _read_rows(path: Path) -> list[list[str]]:
    with path.open(encoding="utf-8-sig", newline="") as fh:
        return [row for row in csv.reader(fh, delimiter=";") if any(c.strip() for c in row)]


def _edge(row: list[str], start: str, end: str) -> TubingEdge:
    return TubingEdge(
        label=row[1], start=start, end=end, length=float(row[5]), inner_diameter=float(row[6]),
        dead_volume=float(row[7]), directed=row[8].strip() == "directed",
        fixed=row[0] == "fixed", note=row[10] if len(row) > 10 else "",
    )


def _bench_2023_from_csv() -> BenchConfig:
    """The 2023 layout read straight from its CSV files, independently of asab.config.loader.

    ``fixed`` rows are channels with start/end; ``available`` rows are drawer tubes placed by
    tubing.csv (start;label;end). Valves as in shared/data/README.md.
    """
    nodes = [r[0] for r in _read_rows(LAYOUT_2023 / "nodes.csv")[1:]]
    rows = _read_rows(LAYOUT_2023 / "edges.csv")[1:]
    edges = [_edge(r, r[2], r[3]) for r in rows if r[0] == "fixed"]
    drawer = {r[1]: r for r in rows if r[0] == "available"}
    edges += [_edge(drawer[lab], s, e) for s, lab, e in _read_rows(LAYOUT_2023 / "tubing.csv")[1:]]
    valves = [
        Valve(name=f"V{n}", common=f"V{n}.0", positions={f"V{n}.{i}": i - 1 for i in range(1, 11)})
        for n in range(1, 11)
    ]
    valves.append(
        Valve(name="ArdV_0_1", kind="solenoid", common="ArdV_0_1_0.0", driver="none",
              positions={"ArdV_0_1.0": 0, "ArdV_0_1.1": 1})
    )
    return _bare_config(nodes, edges, valves)


@pytest.fixture(scope="module")
def config_2023() -> BenchConfig:
    return load_bench(LAYOUT_2023)


@pytest.fixture(scope="module")
def bench(config_2023: BenchConfig) -> TubingGraph:
    return TubingGraph.from_config(config_2023)


def _channel_uses(graph: nx.DiGraph, nodes: tuple[str, ...]) -> list[tuple[str, int]]:
    data = [graph.edges[u, v] for u, v in zip(nodes, nodes[1:])]
    return [(d["valve"], d["position"]) for d in data if d["valve"] is not None]


def _assert_valid(graph: nx.DiGraph, route: Route) -> None:
    """Simple, arcs exist, ≤ 1 channel per valve, labels/settings/volume consistent."""
    nodes = route.nodes
    assert len(set(nodes)) == len(nodes)
    assert all(graph.has_edge(u, v) for u, v in zip(nodes, nodes[1:]))
    assert route.edges == tuple(graph.edges[u, v]["label"] for u, v in zip(nodes, nodes[1:]))
    uses = _channel_uses(graph, nodes)
    assert len({v for v, _ in uses}) == len(uses)
    assert route.valve_settings == dict(uses)
    vol = sum(graph.edges[u, v]["dead_volume"] for u, v in zip(nodes, nodes[1:]))
    assert route.dead_volume == pytest.approx(vol, abs=1e-12)


# --------------------------------------------------------------------------- random networks
# Few distinct values (and zeros) so that equal-volume routes of different lengths are common.
VOLUMES = st.one_of(
    st.sampled_from([0.0, 0.5, 1.0]),
    st.sampled_from([0.0116, 0.02, 0.1]),
    st.floats(0, 3, allow_nan=False, allow_infinity=False),
)
DIRECTIONS = st.sampled_from(["both", "both", "forward", "backward"])
CHANNEL_DIRECTIONS = st.sampled_from(["both", "both", "both", "forward", "backward"])


def _oriented(label: str, a: str, b: str, direction: str, volume: float, fixed: bool) -> TubingEdge:
    start, end = (b, a) if direction == "backward" else (a, b)
    return TubingEdge(label=label, start=start, end=end, length=1.0, inner_diameter=1.0,
                      dead_volume=volume, directed=direction != "both", fixed=fixed)


@st.composite
def networks(draw: st.DrawFn) -> BenchConfig:
    """2–4 valves of 2–4 ports, plain nodes, random tubes; at most 14 nodes."""
    n_valves = draw(st.integers(2, 4))
    nodes: list[str] = []
    valves: list[Valve] = []
    edges: list[TubingEdge] = []
    for i in range(n_valves):
        room = 14 - len(nodes) - 3 * (n_valves - i - 1) - 1
        ports = [f"V{i}.{j}" for j in range(1, draw(st.integers(2, min(4, room))) + 1)]
        nodes += [f"V{i}.0", *ports]
        valves.append(Valve(name=f"V{i}", common=f"V{i}.0",
                            positions={p: j for j, p in enumerate(ports)}))
        edges += [_oriented(f"ch{p}", f"V{i}.0", p, draw(CHANNEL_DIRECTIONS), draw(VOLUMES), True)
                  for p in ports]
    nodes += [f"P{k}" for k in range(draw(st.integers(0, min(3, 14 - len(nodes)))))]
    joined = {frozenset((e.start, e.end)) for e in edges}
    free = [(a, b) for i, a in enumerate(nodes) for b in nodes[i + 1:] if {a, b} not in joined]
    n_tubes = draw(st.integers(len(nodes) // 2, len(nodes) + 2))
    for a, b in draw(st.permutations(free))[:n_tubes]:
        edges.append(_oriented(f"t{len(edges)}", a, b, draw(DIRECTIONS), draw(VOLUMES), False))
    return _bare_config(nodes, edges, valves)


def _brute_force(config: BenchConfig, source: str, target: str, via: list[str], avoid: list[str]):
    """(best valid path or None, whether any path ignoring the valve rule exists)."""
    channel = {frozenset((v.common, p)): v.name for v in config.valves for p in v.positions}
    g = nx.DiGraph()
    g.add_nodes_from(n.name for n in config.tubing.nodes if n.name not in avoid)
    for e in config.tubing.edges:
        for u, v in [(e.start, e.end)] + ([] if e.directed else [(e.end, e.start)]):
            if u in g and v in g:
                g.add_edge(u, v, w=Fraction(e.dead_volume), valve=channel.get(frozenset((u, v))))
    best, any_path = None, False
    for path in nx.all_simple_paths(g, source, target):
        if [n for n in path if n in via] != via:
            continue
        any_path = True
        used = [g.edges[u, v]["valve"] for u, v in zip(path, path[1:])]
        used = [v for v in used if v is not None]
        if len(used) == len(set(used)):
            cost = sum((g.edges[u, v]["w"] for u, v in zip(path, path[1:])), Fraction(0))
            key = (cost, len(path), tuple(path))
            best = key if best is None or key < best else best
    return best, any_path


def _check_against_brute_force(config: BenchConfig, source: str, target: str,
                               via: list[str], avoid: list[str]) -> None:
    tg = TubingGraph.from_config(config)
    best, any_path = _brute_force(config, source, target, via, avoid)
    if best is None:
        expected = ValveConflictError if any_path else NoRouteError
        event(f"outcome: {expected.__name__}")
        with pytest.raises(RoutingError) as info:
            tg.route(source, target, via=via, avoid=avoid)
        assert type(info.value) is expected
        if any_path:
            assert info.value.valves and set(info.value.valves) <= set(tg.valves)
        return
    event(f"outcome: route (via {len(via)}, avoid {len(avoid)})")
    route = tg.route(source, target, via=via, avoid=avoid)
    _assert_valid(tg.graph, route)
    assert abs(route.dead_volume - float(best[0])) <= 1e-12
    assert route.nodes == best[2]  # the documented tie rule: volume, then arcs, then names
    assert not set(route.nodes) & set(avoid)
    assert [n for n in route.nodes if n in via] == via


FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(config=networks(), data=st.data())
def test_random_networks_match_exhaustive_enumeration(
    config: BenchConfig, data: st.DataObject
) -> None:
    names = [n.name for n in config.tubing.nodes]
    ends = st.lists(st.sampled_from(names), min_size=2, max_size=2, unique=True)
    source, target = data.draw(ends)
    _check_against_brute_force(config, source, target, [], [])


@FAST
@given(config=networks(), data=st.data())
def test_random_networks_with_via_and_avoid(config: BenchConfig, data: st.DataObject) -> None:
    names = [n.name for n in config.tubing.nodes]
    n_via, n_avoid = data.draw(st.integers(1, 2)), data.draw(st.integers(0, 2))
    size = 2 + n_via + n_avoid  # at most 6: every network has at least 6 nodes
    picked = data.draw(st.lists(st.sampled_from(names), min_size=size, max_size=size, unique=True))
    source, target, via, avoid = picked[0], picked[1], picked[2:2 + n_via], picked[2 + n_via:]
    _check_against_brute_force(config, source, target, via, avoid)


def test_via_legs_keep_their_own_nodes_free() -> None:
    # s→u→x is cheaper than s→b→x, but the leg after the via node w must pass u. A search that
    # let the first label dominate the second at x (ignoring the current leg's nodes) would
    # lose the only valid route s→b→x→w→u→t.
    tube = lambda a, b, vol: _oriented(f"{a}{b}", a, b, "forward", vol, False)  # noqa: E731
    edges = [tube("s", "u", 0.0), tube("u", "x", 0.0), tube("s", "b", 1.0), tube("b", "x", 0.0),
             tube("x", "w", 0.0), tube("w", "u", 0.0), tube("u", "t", 0.0)]
    tg = TubingGraph.from_config(_bare_config(["s", "u", "b", "x", "w", "t"], edges, []))
    assert tg.route("s", "t", via=["w"]).nodes == ("s", "b", "x", "w", "u", "t")
    assert tg.route("s", "t").nodes == ("s", "u", "t")


def test_ties_prefer_fewer_arcs_then_names() -> None:
    tube = lambda a, b, vol: _oriented(f"{a}{b}", a, b, "both", vol, False)  # noqa: E731
    edges = [tube("s", "a", 0.0), tube("a", "b", 0.0), tube("b", "t", 1.0), tube("s", "c", 0.5),
             tube("c", "t", 0.5), tube("s", "d", 0.5), tube("d", "t", 0.5)]
    tg = TubingGraph.from_config(_bare_config(["s", "a", "b", "c", "d", "t"], edges, []))
    assert tg.route("s", "t").nodes == ("s", "c", "t")


# --------------------------------------------------------------------------- graph building
def test_graph_arcs_and_channels(bench: TubingGraph) -> None:
    g = bench.graph
    assert g.number_of_nodes() == 151
    assert g.edges["V6.0", "V6.1"]["valve"] == "V6" and g.edges["V6.1", "V6.0"]["position"] == 0
    assert g.edges["V10.0", "V10.10"]["position"] == 9
    assert g.edges["ArdV_0_1.1", "ArdV_0_1_0.0"]["valve"] == "ArdV_0_1"
    assert g.edges["ArdV_0_1.1", "ArdV_0_1_0.0"]["position"] == 1
    assert not g.has_edge("ArdV_0_1_0.0", "ArdV_0_1.0")  # directed channel
    assert g.has_edge("V1.10", "waste_1") and not g.has_edge("waste_1", "V1.10")
    tube = g.edges["A0.0", "V6.0"]
    assert tube["valve"] is None and tube["dead_volume"] == 0.0353 and tube["label"] == "0500-NC-3"
    assert set(bench.valves) == {f"V{n}" for n in range(1, 11)} | {"ArdV_0_1"}


def test_loader_and_raw_csv_give_the_same_graph(bench: TubingGraph) -> None:
    raw = TubingGraph.from_config(_bench_2023_from_csv()).graph
    keys = ("label", "dead_volume", "valve", "position")
    arcs = lambda g: {(u, v, *(d[k] for k in keys)) for u, v, d in g.edges(data=True)}  # noqa: E731
    assert set(raw.nodes) == set(bench.graph.nodes)
    assert arcs(raw) == arcs(bench.graph)


def test_missing_valve_channel_is_a_config_error(config_2023: BenchConfig) -> None:
    edges = tuple(e for e in config_2023.tubing.edges if e.label not in {"0004-XX-5", "0000-YY-2"})
    tubing = Tubing(nodes=config_2023.tubing.nodes, edges=edges)
    with pytest.raises(ConfigError) as info:
        TubingGraph.from_config(config_2023.model_copy(update={"tubing": tubing}))
    text = str(info.value)
    assert len(info.value.problems) == 2 and "V1.0–V1.5" in text and "ArdV_0_1.1" in text


def test_negative_dead_volume_in_a_hand_built_graph() -> None:
    graph = nx.DiGraph()
    graph.add_edge("a", "b", label="t", dead_volume=-0.1, valve=None, position=None)
    with pytest.raises(ConfigError, match="dead volume"):
        TubingGraph(graph, {})


def test_bad_edges_are_config_errors() -> None:
    valve = Valve(name="V", common="c", positions={"p": 0, "q": 1})
    edges = [
        _oriented("a", "c", "p", "both", 0.1, True),
        _oriented("b", "c", "q", "forward", 0.1, True),
        _oriented("dup", "q", "c", "both", 0.1, False),  # duplicates arc c→q
        _oriented("ghost", "p", "nowhere", "both", 0.1, False),
    ]
    with pytest.raises(ConfigError) as info:
        TubingGraph.from_config(_bare_config(["c", "p", "q"], edges, [valve]))
    reasons = " ".join(p.reason for p in info.value.problems)
    assert "duplicates arc c→q" in reasons and "unknown node 'nowhere'" in reasons


def test_two_way_pump_valve_follows_the_same_rule() -> None:
    # 2022 style: syringe A0.0 — A0.1 (pump-valve common) — Av.0 (to V6) / Av.1 (to the mixer).
    tube = lambda a, b, d="both": _oriented(f"{a}-{b}", a, b, d, 0.03, False)  # noqa: E731
    edges = [tube("A0.0", "A0.1"), tube("A0.1", "Av.0"), tube("A0.1", "Av.1"),
             tube("Av.0", "V6.0"), tube("V6.0", "V6.1"), tube("V6.1", "Reservoir6"),
             tube("Av.1", "M1.6"), tube("M1.6", "M1.0", "forward")]
    valves = [Valve(name="Av", kind="pump_valve", common="A0.1", positions={"Av.0": 0, "Av.1": 1}),
              Valve(name="V6", common="V6.0", positions={"V6.1": 0})]
    nodes = ["A0.0", "A0.1", "Av.0", "Av.1", "V6.0", "V6.1", "Reservoir6", "M1.6", "M1.0"]
    tg = TubingGraph.from_config(_bare_config(nodes, edges, valves))
    assert tg.graph.edges["Av.1", "A0.1"]["valve"] == "Av"
    assert tg.route("Reservoir6", "A0.0").valve_settings == {"V6": 0, "Av": 0}
    assert tg.route("A0.0", "M1.0").valve_settings == {"Av": 1}
    with pytest.raises(ValveConflictError) as info:  # straight from reservoir to mixer
        tg.route("Reservoir6", "M1.0", avoid=["A0.0"])
    assert info.value.valves == ("Av",)


# --------------------------------------------------------------------------- 2023 layout
def test_reservoir_to_pump_uses_one_channel(bench: TubingGraph) -> None:
    route = bench.route("Reservoir6", "A0.0")
    assert route.nodes == ("Reservoir6", "V6.1", "V6.0", "A0.0")
    assert route.valve_settings == {"V6": 0}
    assert route.dead_volume == pytest.approx(0.0346 + 0.0116 + 0.0353, abs=1e-12)
    assert json.loads(json.dumps(route.to_dict())) == route.to_dict()
    assert Route.from_dict(route.to_dict()) == route


def test_valve_rule_changes_the_answer(bench: TubingGraph) -> None:
    unconstrained = nx.dijkstra_path(bench.graph, "densiViscoOUT", "waste_1", weight="dead_volume")
    assert [v for v, _ in _channel_uses(bench.graph, tuple(unconstrained))].count("V9") == 2
    route = bench.route("densiViscoOUT", "waste_1")
    assert route.nodes == ("densiViscoOUT", "V9.8", "V9.0", "V10.0", "V10.10", "waste_1")
    assert route.valve_settings == {"V9": 7, "V10": 9}
    _assert_valid(bench.graph, route)


def test_gas_through_solenoid_valve(bench: TubingGraph) -> None:
    route = bench.route("ambient", "V7.0")
    assert route.nodes == ("ambient", "ArdV_0_1.0", "ArdV_0_1_0.0", "V7.5", "V7.0")
    assert route.valve_settings == {"ArdV_0_1": 0, "V7": 4}


def test_pump_to_densimeter(bench: TubingGraph) -> None:
    route = bench.route("A0.0", "densiViscoIN")
    assert route.nodes[:5] == ("A0.0", "V6.0", "V6.5", "M1.6", "M1.0")
    assert route.valve_settings == {"V6": 4, "V7": 0, "V8": 7}
    _assert_valid(bench.graph, route)


def test_avoid_keeps_sample_out_of_cells(bench: TubingGraph) -> None:
    route = bench.route("M1.0", "vial_1", avoid=["densiViscoIN"])
    assert "densiViscoIN" not in route.nodes and route.nodes[-2:] == ("V10.1", "vial_1")
    through_ec = bench.route("M1.0", "vial_1", avoid=["V9.6"])
    assert "electrochemistryIN" in through_ec.nodes
    cells = ["V9.6", "electrochemistryIN", "densiViscoIN"]
    through_nmr = bench.route("M1.0", "vial_1", avoid=cells)
    assert "nmrIN" in through_nmr.nodes and not set(cells) & set(through_nmr.nodes)
    _assert_valid(bench.graph, through_nmr)


def test_via_forces_the_detour(bench: TubingGraph) -> None:
    direct = bench.route("A0.0", "waste_1")
    assert direct.nodes == ("A0.0", "V6.0", "V6.10", "waste_1")
    route = bench.route("A0.0", "waste_1", via=["densiViscoIN"])
    i = route.nodes.index("densiViscoIN")
    assert route.nodes[i:] == (
        "densiViscoIN", "densiViscoOUT", "V9.8", "V9.0", "V10.0", "V10.10", "waste_1"
    )
    _assert_valid(bench.graph, route)
    with pytest.raises(NoRouteError):  # the cell is directed: OUT cannot come before IN
        bench.route("A0.0", "waste_1", via=["densiViscoOUT", "densiViscoIN"])


def test_valve_conflict_between_reservoirs(bench: TubingGraph) -> None:
    # Reservoir6 → V6.1 → V6.0 → V6.2 → Solvent → V5.2 → V5.0 → V5.1 → Reservoir5 exists, but
    # needs V6 at ports 1 and 2 (and V5 likewise) at once: a valve conflict, not "no path".
    with pytest.raises(ValveConflictError) as info:
        bench.route("Reservoir6", "Reservoir5")
    assert info.value.valves == ("V5", "V6")
    assert "V5" in str(info.value) and "Solvent" in str(info.value)


def test_no_route_errors(bench: TubingGraph) -> None:
    with pytest.raises(NoRouteError) as info:
        bench.route("waste_1", "vial_1")  # waste only has incoming tubes
    assert not isinstance(info.value, ValveConflictError)
    with pytest.raises(NoRouteError):  # the mixer outlet is the only way out of the mixer
        bench.route("A0.0", "densiViscoIN", avoid=["V7.1"])
    with pytest.raises(UnknownNodeError, match="'nowhere'") as unknown:
        bench.route("A0.0", "nowhere")
    assert isinstance(unknown.value, NoRouteError) and unknown.value.nodes == ("nowhere",)
    with pytest.raises(UnknownNodeError, match="'typo'"):
        bench.route("A0.0", "waste_1", avoid=["typo"])


def test_bad_requests(bench: TubingGraph) -> None:
    with pytest.raises(ValueError, match="avoid"):
        bench.route("A0.0", "waste_1", avoid=["A0.0"])
    with pytest.raises(ValueError, match="avoid"):
        bench.route("A0.0", "waste_1", via=["V6.0"], avoid=["V6.0"])
    with pytest.raises(ValueError, match="twice"):
        bench.route("A0.0", "waste_1", via=["waste_1"])
    with pytest.raises(TypeError, match="sequence"):
        bench.route("M1.0", "vial_1", avoid="densiViscoIN")
    assert bench.route("A0.0", "A0.0") == Route(("A0.0",), (), {}, 0.0)


def test_merge_settings(bench: TubingGraph) -> None:
    to_mixer = [bench.route(p, "M1.0") for p in ("A0.0", "B0.0", "C0.0")]
    assert merge_settings(to_mixer) == {"V6": 4, "V5": 4, "V4": 4}
    assert merge_settings([]) == {}
    with pytest.raises(ValveConflictError) as info:
        fill = [bench.route("Reservoir6", "A0.0"), bench.route("Reservoir5", "B0.0")]
        merge_settings([*to_mixer, *fill])
    assert info.value.valves == ("V5", "V6")
