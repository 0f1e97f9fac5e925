"""Pictures of the tubing network (asab.tubing.draw) and the ``asab draw`` command."""

from __future__ import annotations

import json
import re
import sys

import pytest
from typer.testing import CliRunner

from asab.cli.main import app
from asab.config.models import Tubing, TubingNode
from asab.errors import ValveConflictError
from asab.tubing import TubingGraph
from asab.tubing.draw import (
    ACTIVE_COLOR,
    ROUTE_COLOR,
    active_positions,
    draw,
    layout,
    output_format,
    vessel_kinds,
)

runner = CliRunner()


@pytest.fixture(scope="module")
def graph(bench_config) -> TubingGraph:
    return TubingGraph.from_config(bench_config)


@pytest.fixture(scope="module")
def route(graph):
    return graph.route("A0.0", "densiViscoIN", via=["M1.0"])


def _svg_texts(svg: str) -> set[str]:
    return set(re.findall(r"<text[^>]*>([^<]*)</text>", svg))


@pytest.fixture(scope="module")
def route_svg(tmp_path_factory, graph, route, bench_config):
    """The route A0.0 → densiViscoIN via M1.0 drawn once as SVG, with V10 at position 3."""
    path = tmp_path_factory.mktemp("draw") / "sub" / "r.svg"
    return draw(graph, route, {"V10": 3}, path=path, vessels=vessel_kinds(bench_config))


def test_svg_written(route_svg):
    text = route_svg.read_text(encoding="utf-8")
    assert text.lstrip().startswith("<?xml") and text.rstrip().endswith("</svg>")
    assert route_svg.stat().st_size > 10_000


def test_svg_shows_route_labels_style_and_dead_volume(route_svg, route):
    text = route_svg.read_text(encoding="utf-8")
    labels = _svg_texts(text)
    assert set(route.nodes) <= labels  # every route node is named in the picture
    assert 'id="route"' in text and ROUTE_COLOR in text  # the highlighted route line
    assert 'id="active-channels"' in text and ACTIVE_COLOR in text
    assert f"{route.dead_volume:.4f} mL" in text
    for valve, position in {**route.valve_settings, "V10": 3}.items():
        assert f"{valve}={position}" in labels
    for vessel in ("Reservoir6", "waste_1", "vial_3", "densiViscoOUT", "F0.0"):
        assert vessel in labels


def test_without_route_no_highlight(tmp_path, graph):
    text = draw(graph, path=tmp_path / "n.svg").read_text(encoding="utf-8")
    assert 'id="route"' not in text and 'id="active-channels"' not in text
    assert {"waste_1", "V10"} <= _svg_texts(text)


def test_same_input_same_svg_bytes(tmp_path, graph, route, bench_config, route_svg):
    again = draw(graph, route, {"V10": 3}, path=tmp_path / "again.svg",
                 vessels=vessel_kinds(bench_config))
    assert again.read_bytes() == route_svg.read_bytes()


def test_valve_positions_by_index_or_port_and_conflicts(graph, route):
    assert active_positions(graph, route, {"V10": "V10.4"}) == {**route.valve_settings, "V10": 3}
    assert active_positions(graph, None, {"V10": "3"}) == {"V10": 3}
    with pytest.raises(ValueError, match="no position"):
        active_positions(graph, None, {"V10": 10})
    with pytest.raises(ValueError, match="unknown valve"):
        active_positions(graph, None, {"V99": 0})
    with pytest.raises(ValveConflictError) as err:
        active_positions(graph, route, {"V6": 0})
    assert err.value.valves == ("V6",)


def test_output_format():
    assert output_format("x.SVG") == "svg" and output_format("x", "png") == "png"
    with pytest.raises(ValueError):
        output_format("x.pdf")
    with pytest.raises(ValueError):
        output_format("x.png", "svg")


def test_layout_places_nodes_without_position_deterministically(bench_config):
    nodes = tuple(TubingNode(name=n.name, position=None if n.name.startswith("vial") else n.position)
                  for n in bench_config.tubing.nodes)
    cfg = bench_config.model_copy(update={"tubing": Tubing(nodes=nodes, edges=bench_config.tubing.edges)})
    first, second = layout(TubingGraph.from_config(cfg)), layout(TubingGraph.from_config(cfg))
    assert first == second and len(first) == len(nodes)
    assert first["V1.0"] == tuple(bench_config.tubing.nodes[6].position)  # fixed nodes stay put
    assert len({first[f"vial_{i}"] for i in range(1, 9)}) == 8


def test_importing_asab_tubing_does_not_import_matplotlib():
    import subprocess

    code = "import asab.tubing.draw, asab.cli.main, sys; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ------------------------------------------------------------------------- the command
def test_cli_draw_json(tmp_path, route):
    out = tmp_path / "route.svg"
    res = runner.invoke(app, ["draw", "A0.0", "densiViscoIN", "--via", "M1.0", "--out", str(out),
                              "--valve", "V10=3", "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data == {"path": str(out), "route": route.to_dict()}
    assert "V10=3" in out.read_text(encoding="utf-8")


def test_cli_draw_png_by_format(tmp_path):
    out = tmp_path / "net"
    res = runner.invoke(app, ["draw", "--out", str(out), "--format", "png"])
    assert res.exit_code == 0, res.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000


@pytest.mark.parametrize("args", [
    ["A0.0", "nowhere"],                       # unknown node
    ["--valve", "V99=1"],                      # unknown valve
    ["A0.0", "densiViscoIN", "--valve", "V6=0"],  # contradicts the route (V6=4)
    ["--out", "x.pdf"],                        # unknown format
])
def test_cli_draw_bad_input_exit_1(tmp_path, args):
    res = runner.invoke(app, ["draw", *args] + ([] if "--out" in args else ["--out", str(tmp_path / "x.svg")]))
    assert res.exit_code == 1, res.output
    assert not (tmp_path / "x.svg").exists()


@pytest.mark.parametrize("args", [["A0.0"], ["--valve", "V6"], ["--via", "M1.0"]])
def test_cli_draw_usage_error_exit_2(tmp_path, args):
    res = runner.invoke(app, ["draw", *args, "--out", str(tmp_path / "x.svg")])
    assert res.exit_code == 2, res.output
